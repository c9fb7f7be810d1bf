//! Direct sharing over iroh: the publisher that keeps the app's endpoint open while a direct
//! share lives and hands out its ticket, and iroh-blobs' provider behind an event handler that
//! serves shares' collections with the same policy as the public site.
//!
//! Invariants:
//! - The provider answers only `get` requests for the collection of a live direct share, each
//!   admitted by [`Shares::begin_transfer`] with the content bytes it can send (ranges widened
//!   to bao's 16 KiB chunk groups), and reports what it sent when the request ends. Pushes,
//!   multi-blob gets and observe requests are refused. Revoking a share closes the connections
//!   of its running requests.
//! - A live direct share holds a lease on the endpoint; the lease is returned once the share
//!   ended and its last transfer is over, so the endpoint closes when no direct share is left.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use iroh::{
    endpoint::Connection,
    protocol::{AcceptError, ProtocolHandler},
};
use iroh_blobs::{
    api::Store as BlobStore,
    protocol::GetRequest,
    provider::events::{
        AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage,
        RequestMode, RequestUpdate, ThrottleMode,
    },
};
use veilshare_shared::{ShareId, ShareLinks, ShareState};

use crate::{
    core::{
        bao::ranges_size,
        log_id,
        policy::Refusal,
        shares::{Admission, PublishError, Publisher, Shares, Transfer, now_secs},
        store::ShareRecord,
    },
    transport::iroh::{CLOSE_REVOKED, Endpoints, Lease, P2pConfig},
};

/// Publishes direct shares over the app's iroh endpoint.
#[derive(Debug)]
pub struct DirectPublisher {
    shares: Shares,
    endpoints: Arc<Endpoints>,
    leases: Mutex<HashMap<ShareId, Lease>>,
}

impl DirectPublisher {
    /// The publisher and the app's endpoint (data in `data_dir`), which answers with
    /// iroh-blobs' provider for the shares of `shares`. Opens nothing yet.
    pub fn new(shares: Shares, config: P2pConfig, data_dir: &Path) -> Arc<Self> {
        let mask = EventMask {
            connected: ConnectMode::None,
            get: RequestMode::InterceptLog,
            get_many: RequestMode::Disabled,
            push: RequestMode::Disabled,
            observe: ObserveMode::Intercept,
            throttle: ThrottleMode::None,
        };
        let (events, rx) = EventSender::channel(64, mask);
        let connections = Connections::default();
        // Ends when the last provider (and the endpoint's handler factory) is gone.
        tokio::spawn(handle_events(rx, shares.clone(), connections.clone()));
        let blobs = shares.store().blobs().clone();
        let endpoints = Endpoints::new(
            config,
            data_dir,
            iroh_blobs::ALPN,
            Box::new(move || {
                Box::new(Provider {
                    blobs: blobs.clone(),
                    events: events.clone(),
                    connections: connections.clone(),
                })
            }),
        );
        Arc::new(Self {
            shares,
            endpoints,
            leases: Mutex::new(HashMap::new()),
        })
    }

    /// The app's endpoint (mirrors fetch through it; `/api/status` reports it).
    pub fn endpoints(&self) -> &Arc<Endpoints> {
        &self.endpoints
    }
}

impl Publisher for DirectPublisher {
    fn prepare<'a>(&'a self, share: &'a ShareRecord) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            if !share.direct {
                return Ok(());
            }
            let lease = self
                .endpoints
                .lease()
                .await
                .map_err(|e| PublishError(e.to_string()))?;
            if let Ok(mut leases) = self.leases.lock() {
                leases.insert(share.id.clone(), lease);
            }
            crate::core::crash::point("direct.leased");
            Ok(())
        })
    }

    fn start(&self, _share: &ShareRecord) {}

    fn stop(&self, id: &ShareId, _reason: ShareState) {
        let lease = self.leases.lock().ok().and_then(|mut l| l.remove(id));
        if let Some(lease) = lease {
            // The endpoint may close once no direct share is left, but not under a transfer
            // that is still running (a revoked share's transfers are cut first).
            let shares = self.shares.clone();
            let id = id.clone();
            tokio::spawn(async move {
                shares.wait_idle(&id).await;
                drop(lease);
            });
        }
    }

    fn links(&self, share: &ShareRecord, links: &mut ShareLinks) {
        if share.direct {
            links.ticket = self.endpoints.ticket(&share.collection);
        }
    }
}

/// Open provider connections by their stable id, so that revocation can close them.
#[derive(Debug, Clone, Default)]
struct Connections(Arc<(Mutex<HashMap<u64, Connection>>, tokio::sync::Notify)>);

/// How long closing the endpoint waits for recipients to close their connections.
const LAST_BYTES: Duration = Duration::from_secs(5);

impl Connections {
    fn insert(&self, id: u64, connection: Connection) {
        if let Ok(mut map) = self.0.0.lock() {
            map.insert(id, connection);
        }
    }

    fn remove(&self, id: u64) {
        if let Ok(mut map) = self.0.0.lock() {
            map.remove(&id);
        }
        self.0.1.notify_waiters();
    }

    /// Waits until every connection is closed, or `deadline` passes.
    async fn closed(&self, deadline: Duration) {
        let _ = tokio::time::timeout(deadline, async {
            loop {
                let notified = self.0.1.notified();
                if self.0.0.lock().map_or(true, |map| map.is_empty()) {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    fn close(&self, id: u64, reason: &[u8]) {
        let conn = self.0.0.lock().ok().and_then(|c| c.get(&id).cloned());
        if let Some(conn) = conn {
            conn.close(CLOSE_REVOKED.into(), reason);
        }
    }
}

/// iroh-blobs' provider, with the connections kept for revocation. (Unlike `BlobsProtocol`,
/// its shutdown leaves the store open: the app's store outlives the endpoint.)
#[derive(Debug, Clone)]
struct Provider {
    blobs: BlobStore,
    events: EventSender,
    connections: Connections,
}

impl ProtocolHandler for Provider {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let id = connection.stable_id() as u64;
        self.connections.insert(id, connection.clone());
        iroh_blobs::provider::handle_connection(
            connection,
            self.blobs.clone(),
            self.events.clone(),
        )
        .await;
        self.connections.remove(id);
        Ok(())
    }

    /// Before the endpoint closes (its last direct share ended, or the app stops): a
    /// transfer counts as complete once all its bytes are written to the connection, and
    /// closing the endpoint then would throw away what is still on its way. Waits (at most
    /// [`LAST_BYTES`]) for the recipients to close their connections, which they do once they
    /// have every byte. A revoked share's connections were closed already.
    async fn shutdown(&self) {
        self.connections.closed(LAST_BYTES).await;
    }
}

/// Answers the provider's questions: which requests may run, and what they sent.
async fn handle_events(
    mut rx: tokio::sync::mpsc::Receiver<ProviderMessage>,
    shares: Shares,
    connections: Connections,
) {
    while let Some(message) = rx.recv().await {
        match message {
            ProviderMessage::GetRequestReceived(msg) => {
                let request = &msg.inner.request;
                let connection = msg.inner.connection_id;
                match admit(&shares, request) {
                    Ok(Some(transfer)) => {
                        if msg.tx.send(Ok(())).await.is_ok() {
                            tokio::spawn(follow(transfer, msg.rx, connections.clone(), connection));
                        }
                    }
                    Ok(None) => {
                        if msg.tx.send(Ok(())).await.is_ok() {
                            // The provider reports to this channel until the request ends; a
                            // closed one would abort it.
                            let mut updates = msg.rx;
                            tokio::spawn(
                                async move { while let Ok(Some(_)) = updates.recv().await {} },
                            );
                        }
                    }
                    Err(reason) => {
                        let _ = msg.tx.send(Err(reason)).await;
                    }
                }
            }
            ProviderMessage::ObserveRequestReceived(msg) => {
                let _ = msg.tx.send(Err(AbortReason::Permission)).await;
            }
            // The mask sends nothing else: connections and throttling are not intercepted,
            // `get_many` and `push` are refused by the provider itself.
            _ => {}
        }
    }
}

/// Admits a `get` for the collection of a live direct share, or says why not.
///
/// A request without content bytes (the hash sequence and the names, or only empty files)
/// counts nothing, but is refused like any other once the share stopped serving.
fn admit(shares: &Shares, request: &GetRequest) -> Result<Option<Transfer>, AbortReason> {
    let collection = request.hash.to_hex().to_string();
    let candidates: Vec<_> = shares
        .with_collection(&collection)
        .into_iter()
        .filter(|share| share.record.direct)
        .collect();
    if candidates.is_empty() {
        tracing::debug!(hash = %collection, "refused a direct request for content we do not share");
        return Err(AbortReason::Permission);
    }
    let mut refusal = AbortReason::Permission;
    for share in candidates {
        let id = &share.record.id;
        let sizes: Vec<u64> = share.record.files.iter().map(|f| f.size).collect();
        let payload = request_size(request, &sizes);
        if payload == 0 {
            if share.accepts_downloads(now_secs()) {
                return Ok(None);
            }
            continue;
        }
        match shares.begin_transfer(
            id,
            veilshare_shared::Transport::Direct,
            "iroh",
            0,
            payload,
            payload,
        ) {
            Ok(transfer) => return Ok(Some(transfer)),
            Err(Admission::Refused(Refusal::Busy)) => {
                refusal = AbortReason::RateLimited;
            }
            Err(_) => {}
        }
        tracing::debug!(share = %log_id(id), "refused a direct request");
    }
    Err(refusal)
}

/// Follows an admitted request to its end and reports what it sent; cuts its connection when
/// the share is revoked.
///
/// An aborted request counts every payload byte it sent, the hash sequence and the names
/// included (a few bytes per file): never less than the content it delivered.
async fn follow(
    mut transfer: Transfer,
    mut updates: irpc::channel::mpsc::Receiver<RequestUpdate>,
    connections: Connections,
    connection: u64,
) {
    let cancelled = transfer.cancelled().clone();
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Ok(Some(RequestUpdate::Completed(_))) => {
                    tracing::debug!(connection, "direct transfer completed");
                    transfer.finish();
                    return;
                }
                Ok(Some(RequestUpdate::Aborted(done))) => {
                    tracing::debug!(connection, sent = done.stats.payload_bytes_sent, "direct transfer aborted");
                    transfer.set_sent(done.stats.payload_bytes_sent);
                    return;
                }
                Ok(Some(_)) => {}
                // The provider went away without an end event: count all it may have sent
                // (`set_sent` caps at what was reserved).
                Ok(None) | Err(_) => {
                    tracing::debug!(connection, "direct transfer's provider went away without an end");
                    transfer.set_sent(u64::MAX);
                    return;
                }
            },
            () = cancelled.cancelled() => {
                connections.close(connection, b"share revoked");
                return;
            }
        }
    }
}

/// The content bytes a `get` of a collection can send: each file's ranges widened to whole
/// chunk groups, as bao sends them. `sizes` are the sizes of the collection's files in order.
pub fn request_size(request: &GetRequest, sizes: &[u64]) -> u64 {
    // Offset 0 is the hash sequence, 1 the names, 2.. the files.
    request
        .ranges
        .iter_infinite()
        .skip(2)
        .zip(sizes)
        .map(|(ranges, &size)| ranges_size(ranges, size))
        .sum()
}

#[cfg(test)]
mod tests {
    use iroh_blobs::{
        Hash,
        protocol::{ChunkRanges, ChunkRangesSeq},
    };

    use super::*;

    #[test]
    fn whole_collection_counts_every_file_byte() {
        let request = GetRequest::all(Hash::new(b"x"));
        assert_eq!(request_size(&request, &[10, 100_000, 0]), 100_010);
    }

    #[test]
    fn names_only_request_carries_no_content() {
        let request = GetRequest::new(
            Hash::new(b"x"),
            ChunkRangesSeq::from_ranges([ChunkRanges::all(), ChunkRanges::all()]),
        );
        assert_eq!(request_size(&request, &[1 << 20]), 0);
    }
}
