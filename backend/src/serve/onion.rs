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
//! - A share with named recipients has no service of its own but one per recipient, each
//!   restricted to that recipient's key (see `veilshare_shared::recipients`); a revoked
//!   recipient's service loses its keys the same way, the others go on.

use std::{sync::Arc, time::Duration};

use veilshare_shared::{ShareId, ShareLinks, ShareState};

use crate::{
    core::{
        log_id,
        shares::{Publisher, Shares},
        store::ShareRecord,
    },
    serve::public,
    transport::tor::{ServiceName, Tor},
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
        if share.recipients.is_empty() {
            let service = Service {
                name: ServiceName::share(&share.id),
                recipient: None,
                client_key: share.client_key.clone(),
            };
            tokio::spawn(publish(
                self.shares.clone(),
                self.tor.clone(),
                share.id.clone(),
                service,
            ));
        }
        for (index, recipient) in share.recipients.iter().enumerate() {
            if !recipient.is_revoked() {
                self.start_recipient(share, index);
            }
        }
    }

    fn stop(&self, id: &ShareId, _reason: ShareState) {
        self.tor.unpublish(id, true);
    }

    fn links(&self, share: &ShareRecord, links: &mut ShareLinks) {
        links.onion = share.onion.clone();
    }

    fn start_recipient(&self, share: &ShareRecord, index: usize) {
        let Some(recipient) = share.recipients.get(index) else {
            return;
        };
        let Some(client_key) = recipient.client_key.clone() else {
            return;
        };
        let service = Service {
            name: ServiceName::recipient(&share.id, index),
            recipient: Some(index),
            client_key: Some(client_key),
        };
        tokio::spawn(publish(
            self.shares.clone(),
            self.tor.clone(),
            share.id.clone(),
            service,
        ));
    }

    fn stop_recipient(&self, id: &ShareId, index: usize) {
        self.tor
            .unpublish_service(&ServiceName::recipient(id, index));
    }
}

/// One onion service to publish for a share.
struct Service {
    name: ServiceName,
    /// The recipient it is for, when the share has named recipients.
    recipient: Option<usize>,
    client_key: Option<String>,
}

/// Launches one of the share's onion services, records its address, and declares it live once
/// the probe client reached it.
async fn publish(shares: Shares, tor: Arc<Tor>, id: ShareId, service: Service) {
    let Service {
        name,
        recipient,
        client_key,
    } = service;
    let revoked =
        |shares: &Shares| recipient.is_some_and(|index| shares.is_recipient_revoked(&id, index));
    let router = public::single_share_router(shares.clone(), id.clone());
    let url = match tor.publish(&name, router, client_key.as_deref()) {
        Ok(url) => url,
        Err(error) => {
            tracing::error!(share = %log_id(&id), %error, "could not launch the onion service");
            let _ = shares.report_problem(&id, error.to_string()).await;
            return;
        }
    };
    // Ended or revoked while launching (its stop found nothing running yet): its keys go now.
    if shares.is_ended(&id) || revoked(&shares) {
        tor.unpublish_service(&name);
        return;
    }
    tracing::info!(share = %log_id(&id), ?recipient, "onion service launched");
    let _ = match recipient {
        Some(index) => shares.set_recipient_address(&id, index, url.clone()).await,
        None => shares.set_address(&id, url.clone()).await,
    };
    while !shares.is_ended(&id) && !revoked(&shares) {
        match tor.probe(&url, client_key.as_deref(), PROBE_DEADLINE).await {
            Ok(elapsed) => {
                tracing::info!(share = %log_id(&id), ?recipient, ?elapsed, "onion service reachable");
                let _ = match recipient {
                    Some(index) => shares.recipient_reachable(&id, index).await,
                    None => shares.reachable(&id).await,
                };
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
