//! Direct sharing over iroh: one endpoint per app, opened only while something needs it (a
//! live direct share, a mirror being fetched), serving shares' collections with the same policy
//! as the public site, and fetching tickets into a store.
//!
//! Invariants:
//! - No endpoint exists until the first [`P2p::lease`]; the last lease dropped closes it. Until
//!   then nothing here opens a socket, resolves a name or contacts a relay: direct sharing
//!   reveals the sender's IP address, so it happens only for shares that asked for it.
//! - The provider answers only `get` requests for the collection of a live direct share, each
//!   admitted by [`Shares::begin_transfer`] with the content bytes it can send (ranges widened
//!   to bao's 16 KiB chunk groups), and reports what it sent when the request ends. Pushes,
//!   multi-blob gets and observe requests are refused. Revoking a share closes the connections
//!   of its running requests.
//! - The endpoint's secret key lives in `<data>/iroh.key` (mode 0600), so a share's ticket
//!   names the same endpoint after a restart. A fetch from the command line uses a fresh key
//!   each time: a recipient is not linkable across fetches.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use iroh::{
    Endpoint, EndpointAddr, RelayMode, RelayUrl, SecretKey,
    endpoint::{Connection, presets},
    protocol::{AcceptError, ProtocolHandler, Router},
};
use iroh_blobs::{
    BlobFormat, Hash, HashAndFormat,
    api::{Store as BlobStore, TempTag},
    protocol::{ChunkRanges, GetRequest},
    provider::events::{
        AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage,
        RequestMode, RequestUpdate, ThrottleMode,
    },
    ticket::BlobTicket,
};
use veilshare_shared::P2pStatus;

use crate::shares::{Admission, Shares};

pub mod fetch;

/// The endpoint's secret key, in the data directory.
pub const KEY_FILE: &str = "iroh.key";
/// The port the endpoint last had, in the data directory.
pub const PORT_FILE: &str = "iroh.port";
/// Bao sends content in chunk groups of this many bytes.
const CHUNK_GROUP: u64 = 16 * 1024;
/// How long to wait for a home relay before handing out a ticket without one.
const RELAY_WAIT: Duration = Duration::from_secs(10);
/// How long a connection may stay silent before it counts as gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(12);
/// Application error code when a revoked share's connection is closed.
const CLOSE_REVOKED: u32 = 0x5653_0001;

/// Errors of direct sharing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum P2pError {
    /// The endpoint could not be opened.
    #[error("cannot open the direct-sharing endpoint: {0}")]
    Bind(String),
    /// The key file could not be read or written.
    #[error("cannot read or write the direct-sharing key {path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Which relays the endpoint uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Relays {
    /// iroh's public relays (n0).
    #[default]
    Default,
    /// No relay: peers need a direct route to each other.
    Disabled,
    /// These relays.
    Custom(Vec<RelayUrl>),
}

/// How the endpoint reaches peers.
#[derive(Debug, Clone, Default)]
pub struct P2pConfig {
    /// Relay servers.
    pub relays: Relays,
    /// Publish and resolve endpoint addresses through iroh's public DNS discovery. Off by
    /// default: tickets carry the addresses.
    pub discovery: bool,
    /// Bind the UDP socket to this address only (default: all interfaces, any port).
    pub bind: Option<SocketAddr>,
}

impl P2pConfig {
    /// Binds an endpoint with this configuration.
    pub async fn bind(&self, secret: SecretKey, alpns: Vec<Vec<u8>>) -> Result<Endpoint, P2pError> {
        self.bind_on(secret, alpns, None).await
    }

    /// [`P2pConfig::bind`], on `port` when the configuration leaves the port open and it is
    /// free (so that tickets keep working across restarts), else on any port.
    pub async fn bind_on(
        &self,
        secret: SecretKey,
        alpns: Vec<Vec<u8>>,
        port: Option<u16>,
    ) -> Result<Endpoint, P2pError> {
        if let Some(port) = port {
            match self
                .try_bind(secret.clone(), alpns.clone(), Some(port))
                .await
            {
                Ok(endpoint) => return self.await_relay(endpoint).await,
                Err(error) => {
                    tracing::info!(%error, port, "the previous direct-sharing port is taken; using another (old tickets without a relay stop working)");
                }
            }
        }
        let endpoint = self.try_bind(secret, alpns, None).await?;
        self.await_relay(endpoint).await
    }

    async fn try_bind(
        &self,
        secret: SecretKey,
        alpns: Vec<Vec<u8>>,
        port: Option<u16>,
    ) -> Result<Endpoint, P2pError> {
        let relay_mode = match &self.relays {
            Relays::Default => RelayMode::Default,
            Relays::Disabled => RelayMode::Disabled,
            Relays::Custom(urls) => RelayMode::custom(urls.iter().cloned()),
        };
        // A peer that vanished (killed, unplugged) sends no close: give up on it after
        // IDLE_TIMEOUT, so that its transfer stops holding a download in flight. Keep-alives
        // (every 5 s) hold live idle connections open.
        let transport = iroh::endpoint::QuicTransportConfig::builder()
            .max_idle_timeout(IDLE_TIMEOUT.try_into().ok())
            .build();
        let mut builder = Endpoint::builder(presets::Minimal)
            .secret_key(secret)
            .alpns(alpns)
            .relay_mode(relay_mode)
            .transport_config(transport);
        if self.discovery {
            builder = builder
                .address_lookup(iroh::address_lookup::pkarr::PkarrPublisher::n0_dns())
                .address_lookup(iroh::address_lookup::dns::DnsAddressLookup::n0_dns());
        }
        let bind_err = |addr: SocketAddr| move |e| P2pError::Bind(format!("{addr}: {e}"));
        match (self.bind, port) {
            (Some(mut addr), port) => {
                if addr.port() == 0
                    && let Some(port) = port
                {
                    addr.set_port(port);
                }
                builder = builder
                    .clear_ip_transports()
                    .bind_addr(addr)
                    .map_err(bind_err(addr))?;
            }
            (None, Some(port)) => {
                let v4 = SocketAddr::from(([0, 0, 0, 0], port));
                let v6 = SocketAddr::from(([0u16; 8], port));
                builder = builder
                    .clear_ip_transports()
                    .bind_addr(v4)
                    .map_err(bind_err(v4))?
                    .bind_addr_with_opts(
                        v6,
                        iroh::endpoint::BindOpts::default().set_is_required(false),
                    )
                    .map_err(bind_err(v6))?;
            }
            (None, None) => {}
        }
        builder
            .bind()
            .await
            .map_err(|e| P2pError::Bind(e.to_string()))
    }

    async fn await_relay(&self, endpoint: Endpoint) -> Result<Endpoint, P2pError> {
        if self.relays != Relays::Disabled
            && tokio::time::timeout(RELAY_WAIT, endpoint.online())
                .await
                .is_err()
        {
            tracing::warn!(
                "no relay answered within {RELAY_WAIT:?}; tickets carry only direct addresses"
            );
        }
        Ok(endpoint)
    }
}

/// Loads the endpoint key from `path`, or creates it (mode 0600).
pub fn load_or_create_key(path: &Path) -> Result<SecretKey, P2pError> {
    let key_err = |source| P2pError::Key {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
                key_err(std::io::Error::other(
                    "not 32 bytes; delete it to get a new endpoint id",
                ))
            })?;
            Ok(SecretKey::from_bytes(&bytes))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            use std::{io::Write, os::unix::fs::OpenOptionsExt};
            let key = SecretKey::generate();
            let temp = path.with_extension("tmp");
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&temp)
                .map_err(key_err)?;
            file.write_all(&key.to_bytes()).map_err(key_err)?;
            file.sync_all().map_err(key_err)?;
            std::fs::rename(&temp, path).map_err(key_err)?;
            Ok(key)
        }
        Err(error) => Err(key_err(error)),
    }
}

/// The running endpoint.
#[derive(Debug)]
struct Running {
    router: Router,
    handler: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    running: Option<Running>,
    users: usize,
}

/// The app's direct-sharing side. Cloning the `Arc` shares it.
#[derive(Debug)]
pub struct P2p {
    config: P2pConfig,
    key_path: PathBuf,
    blobs: BlobStore,
    shares: Shares,
    state: tokio::sync::Mutex<State>,
    /// The endpoint's address while it runs (read synchronously for views and status).
    addr: Mutex<Option<EndpointAddr>>,
}

/// Keeps the endpoint open; dropping the last one closes it.
#[derive(Debug)]
pub struct Lease {
    p2p: Arc<P2p>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let p2p = self.p2p.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { p2p.release().await });
        }
    }
}

impl P2p {
    /// The direct-sharing side of an app with data in `data_dir`. Opens nothing yet.
    pub fn new(config: P2pConfig, data_dir: &Path, shares: Shares) -> Arc<Self> {
        Arc::new(Self {
            config,
            key_path: data_dir.join(KEY_FILE),
            blobs: shares.store().blobs().clone(),
            shares,
            state: tokio::sync::Mutex::new(State::default()),
            addr: Mutex::new(None),
        })
    }

    /// Opens the endpoint unless it is open, and keeps it open while the lease lives.
    pub async fn lease(self: &Arc<Self>) -> Result<Lease, P2pError> {
        let mut state = self.state.lock().await;
        if state.running.is_none() {
            state.running = Some(self.open().await?);
        }
        state.users += 1;
        Ok(Lease { p2p: self.clone() })
    }

    async fn open(&self) -> Result<Running, P2pError> {
        let key = load_or_create_key(&self.key_path)?;
        let port_path = self.key_path.with_file_name(PORT_FILE);
        let previous = std::fs::read_to_string(&port_path)
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok());
        let endpoint = self
            .config
            .bind_on(key, vec![iroh_blobs::ALPN.to_vec()], previous)
            .await?;
        if let Some(port) = endpoint.bound_sockets().iter().map(SocketAddr::port).next()
            && Some(port) != previous
            && let Err(error) = std::fs::write(&port_path, port.to_string())
        {
            tracing::warn!(%error, "cannot remember the direct-sharing port");
        }
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
        let provider = Provider {
            blobs: self.blobs.clone(),
            events,
            connections: connections.clone(),
        };
        let handler = tokio::spawn(handle_events(rx, self.shares.clone(), connections));
        let addr = endpoint.addr();
        tracing::info!(endpoint = %addr.id, addrs = ?addr.addrs, "direct-sharing endpoint open");
        if let Ok(mut slot) = self.addr.lock() {
            *slot = Some(addr);
        }
        let router = Router::builder(endpoint)
            .accept(iroh_blobs::ALPN, provider)
            .spawn();
        Ok(Running { router, handler })
    }

    async fn release(&self) {
        let mut state = self.state.lock().await;
        state.users = state.users.saturating_sub(1);
        if state.users == 0 && self.close(&mut state).await {
            tracing::info!("direct-sharing endpoint closed: no direct share or mirror needs it");
        }
    }

    /// Closes the endpoint now, whoever holds leases (at exit).
    pub async fn shutdown(&self) {
        let mut state = self.state.lock().await;
        self.close(&mut state).await;
    }

    /// Closes the running endpoint, if any: open connections are closed gracefully (for at
    /// most 10 s), so that the last bytes of a finished transfer reach their recipient.
    /// Returns whether one was running.
    async fn close(&self, state: &mut State) -> bool {
        let Some(running) = state.running.take() else {
            return false;
        };
        if let Ok(mut slot) = self.addr.lock() {
            *slot = None;
        }
        match tokio::time::timeout(Duration::from_secs(10), running.router.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "direct-sharing endpoint did not shut down cleanly");
            }
            Err(_) => tracing::warn!("direct-sharing endpoint took over 10 s to shut down"),
        }
        running.handler.abort();
        true
    }

    /// The ticket of a collection served by this endpoint, while it is open.
    pub fn ticket(&self, collection: &veilshare_shared::ContentHash) -> Option<String> {
        let hash: Hash = collection.as_str().parse().ok()?;
        let addr = self.addr.lock().ok()?.clone()?;
        Some(BlobTicket::new(addr, hash, BlobFormat::HashSeq).to_string())
    }

    /// Whether the endpoint is open, and as whom.
    pub fn status(&self) -> P2pStatus {
        match self.addr.lock().ok().and_then(|a| a.as_ref().map(|a| a.id)) {
            Some(id) => P2pStatus::Running {
                endpoint_id: id.to_string(),
            },
            None => P2pStatus::Idle,
        }
    }

    /// The open endpoint (for fetching), while a lease holds it.
    pub async fn endpoint(&self) -> Option<Endpoint> {
        let state = self.state.lock().await;
        state.running.as_ref().map(|r| r.router.endpoint().clone())
    }
}

/// Open provider connections by their stable id, so that revocation can close them.
#[derive(Debug, Clone, Default)]
struct Connections(Arc<Mutex<HashMap<u64, Connection>>>);

impl Connections {
    fn close(&self, id: u64, reason: &[u8]) {
        let conn = self.0.lock().ok().and_then(|c| c.get(&id).cloned());
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
        if let Ok(mut map) = self.connections.0.lock() {
            map.insert(id, connection.clone());
        }
        iroh_blobs::provider::handle_connection(
            connection,
            self.blobs.clone(),
            self.events.clone(),
        )
        .await;
        if let Ok(mut map) = self.connections.0.lock() {
            map.remove(&id);
        }
        Ok(())
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
fn admit(
    shares: &Shares,
    request: &GetRequest,
) -> Result<Option<crate::shares::Transfer>, AbortReason> {
    let collection = request.hash.to_hex().to_string();
    let candidates = shares.direct_shares_of(&collection);
    if candidates.is_empty() {
        tracing::debug!(hash = %collection, "refused a direct request for content we do not share");
        return Err(AbortReason::Permission);
    }
    let mut refusal = AbortReason::Permission;
    for (id, sizes) in candidates {
        let payload = request_size(request, &sizes);
        if payload == 0 {
            let now = crate::shares::now_secs();
            if shares
                .public_share(&id)
                .is_some_and(|share| share.accepts_downloads(now))
            {
                return Ok(None);
            }
            continue;
        }
        match shares.begin_transfer(&id, "iroh", 0, payload, payload) {
            Ok(transfer) => return Ok(Some(transfer)),
            Err(Admission::Refused(crate::policy::Refusal::Busy)) => {
                refusal = AbortReason::RateLimited;
            }
            Err(_) => {}
        }
        tracing::debug!(share = %id, "refused a direct request");
    }
    Err(refusal)
}

/// Follows an admitted request to its end and reports what it sent; cuts its connection when
/// the share is revoked.
///
/// An aborted request counts every payload byte it sent, the hash sequence and the names
/// included (a few bytes per file): never less than the content it delivered.
async fn follow(
    mut transfer: crate::shares::Transfer,
    mut updates: irpc::channel::mpsc::Receiver<RequestUpdate>,
    connections: Connections,
    connection: u64,
) {
    let cancelled = transfer.cancelled().clone();
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Ok(Some(RequestUpdate::Completed(_))) => {
                    transfer.finish();
                    return;
                }
                Ok(Some(RequestUpdate::Aborted(done))) => {
                    transfer.set_sent(done.stats.payload_bytes_sent);
                    return;
                }
                Ok(Some(_)) => {}
                // The provider went away without an end event: count all it may have sent
                // (`set_sent` caps at what was reserved).
                Ok(None) | Err(_) => {
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

/// Bytes of a blob of `size` bytes that a request for `ranges` sends: every range widened to
/// 16 KiB chunk groups, a range past the end as the last group (bao proves the size with it).
pub fn ranges_size(ranges: &ChunkRanges, size: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    let last_group = (size - 1) / CHUNK_GROUP * CHUNK_GROUP;
    let mut total = 0u64;
    let mut covered = 0u64;
    for pair in ranges.boundaries().chunks(2) {
        let start = pair[0].0.saturating_mul(1024);
        let end = pair.get(1).map_or(u64::MAX, |c| c.0.saturating_mul(1024));
        let mut start = start / CHUNK_GROUP * CHUNK_GROUP;
        let mut end = end
            .div_ceil(CHUNK_GROUP)
            .saturating_mul(CHUNK_GROUP)
            .min(size);
        if start >= size {
            start = last_group;
            end = size;
        }
        let start = start.max(covered);
        if end > start {
            total += end - start;
            covered = end;
        }
    }
    total
}

/// Protects `content` from garbage collection while it is being fetched (and until dropped).
pub async fn protect(blobs: &BlobStore, content: HashAndFormat) -> Option<TempTag> {
    blobs.tags().temp_tag(content).await.ok()
}

/// A ticket from the command line or the API, checked.
pub fn parse_ticket(text: &str) -> Result<BlobTicket, String> {
    let ticket: BlobTicket = text.trim().parse().map_err(|e| {
        format!("this is not a valid ticket ({e}); copy the whole ticket, it starts with \"blob\"")
    })?;
    if ticket.format() != BlobFormat::HashSeq {
        return Err(
            "this ticket is for a single blob, not for a share; ask the sender for a veilshare ticket"
                .into(),
        );
    }
    Ok(ticket)
}

/// Whether `text` looks like an iroh ticket rather than a link.
pub fn is_ticket(text: &str) -> bool {
    text.trim_start().starts_with("blob")
}

#[cfg(test)]
mod tests {
    use iroh_blobs::protocol::{ChunkRangesExt, ChunkRangesSeq};

    use super::*;

    #[test]
    fn whole_collection_counts_every_file_byte() {
        let request = GetRequest::all(Hash::new(b"x"));
        assert_eq!(request_size(&request, &[10, 100_000, 0]), 100_010);
    }

    #[test]
    fn ranges_widen_to_chunk_groups_and_past_the_end_is_the_last_group() {
        // One 1 KiB chunk in the middle costs its whole 16 KiB group.
        assert_eq!(
            ranges_size(&ChunkRanges::chunks(20..21), 100_000),
            16 * 1024
        );
        // The last chunk proves the size: the last group is sent.
        assert_eq!(
            ranges_size(&ChunkRanges::last_chunk(), 100_000),
            100_000 - 6 * 16 * 1024
        );
        // Two ranges in one group count the group once.
        let both = ChunkRanges::chunks(0..1) | ChunkRanges::chunks(3..4);
        assert_eq!(ranges_size(&both, 100_000), 16 * 1024);
        // A small file is sent whole for any range.
        assert_eq!(ranges_size(&ChunkRanges::last_chunk(), 500), 500);
        assert_eq!(ranges_size(&ChunkRanges::all(), 0), 0);
    }

    #[test]
    fn names_only_request_carries_no_content() {
        let request = GetRequest::new(
            Hash::new(b"x"),
            ChunkRangesSeq::from_ranges([ChunkRanges::all(), ChunkRanges::all()]),
        );
        assert_eq!(request_size(&request, &[1 << 20]), 0);
    }

    #[test]
    fn tickets_are_checked() {
        assert!(parse_ticket("nonsense").is_err());
        assert!(parse_ticket("blobaaaa").is_err());
        let addr = EndpointAddr::new(SecretKey::generate().public());
        let raw = BlobTicket::new(addr.clone(), Hash::new(b"x"), BlobFormat::Raw).to_string();
        assert!(
            parse_ticket(&raw)
                .expect_err("raw ticket")
                .contains("single blob")
        );
        let ok = BlobTicket::new(addr, Hash::new(b"x"), BlobFormat::HashSeq).to_string();
        assert!(parse_ticket(&ok).is_ok());
        assert!(is_ticket(&ok));
    }
}
