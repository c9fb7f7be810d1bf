//! The onion publisher: each share that is not ended gets its own onion service (its own key,
//! so addresses are unlinkable) serving that share's public site at its root; a separate Tor
//! client probes each new service until it answers, which is what turns a share from
//! `publishing` to `live` (Arti's own reachability status is not usable on small networks).
//!
//! Invariants:
//! - An onion service reaches exactly one share: it is launched with
//!   [`public::single_share_router`] for that share and nothing else.
//! - A share that ends loses its service, keys and state: its address never returns. Ended
//!   shares whose keys survived a crash lose them when the publisher is attached.

use std::{sync::Arc, time::Duration};

use veilshare_shared::{ShareId, ShareLinks, ShareState};

use crate::{
    core::{
        log_id,
        shares::{Publisher, Shares},
        store::ShareRecord,
    },
    serve::public,
    transport::tor::Tor,
};

/// How long a new onion service may take to answer its first probe before the share shows a
/// problem (probing goes on in the background).
const PROBE_DEADLINE: Duration = Duration::from_secs(180);
/// Pause between probing rounds after a round failed.
const PROBE_PAUSE: Duration = Duration::from_secs(30);

/// Publishes shares as onion services of the app's Tor client.
#[derive(Debug)]
pub struct OnionPublisher {
    shares: Shares,
    tor: Arc<Tor>,
}

impl OnionPublisher {
    /// The publisher for the shares of `shares`, over `tor`.
    pub fn new(shares: Shares, tor: Arc<Tor>) -> Arc<Self> {
        Arc::new(Self { shares, tor })
    }
}

impl Publisher for OnionPublisher {
    fn confirms_reachability(&self) -> bool {
        true
    }

    fn start(&self, share: &ShareRecord) {
        let shares = self.shares.clone();
        let tor = self.tor.clone();
        let id = share.id.clone();
        let client_key = share.client_key.clone();
        tokio::spawn(async move { publish(shares, tor, id, client_key).await });
    }

    fn stop(&self, id: &ShareId, _reason: ShareState) {
        self.tor.unpublish(id, true);
    }

    fn links(&self, share: &ShareRecord, links: &mut ShareLinks) {
        links.onion = share.onion.clone();
    }
}

/// Launches the share's onion service, records its address, and declares the share live once
/// the probe client reached it.
async fn publish(shares: Shares, tor: Arc<Tor>, id: ShareId, client_key: Option<String>) {
    let router = public::single_share_router(shares.clone(), id.clone());
    let url = match tor.publish(&id, router, client_key.as_deref()) {
        Ok(url) => url,
        Err(error) => {
            tracing::error!(share = %log_id(&id), %error, "could not launch the onion service");
            let _ = shares.report_problem(&id, error.to_string()).await;
            return;
        }
    };
    tracing::info!(share = %log_id(&id), "onion service launched");
    let _ = shares.set_address(&id, url.clone()).await;
    while !shares.is_ended(&id) {
        match tor.probe(&url, client_key.as_deref(), PROBE_DEADLINE).await {
            Ok(elapsed) => {
                tracing::info!(share = %log_id(&id), ?elapsed, "onion service reachable");
                let _ = shares.reachable(&id).await;
                return;
            }
            Err(error) => {
                tracing::warn!(share = %log_id(&id), %error, "onion service not reachable yet");
                let _ = shares
                    .report_problem(&id, format!("{error}; still trying"))
                    .await;
                tokio::time::sleep(PROBE_PAUSE).await;
            }
        }
    }
}
