//! `veilshare get`: chooses how to fetch from what the user gave — one link (plain or onion),
//! one ticket, or several sources of one share at once — and runs that fetch.

use std::path::PathBuf;

/// `veilshare send`: uploading into someone's drop box.
pub use crate::receive::send::{SendSettings, Sent, send};
/// The settings of `veilshare get` are those of a multi-source fetch: the sources, the
/// settings every link fetch shares, and how to reach direct peers.
pub use crate::receive::{link::FetchSettings, multi::MultiFetch as GetSettings};
/// Where `get` and `send` keep their Tor state, and the name check for what they write.
pub use crate::receive::{link::tor_state_dir, local::check_names};
use crate::{
    receive::{
        error::{ReceiveError, Result},
        link, multi,
        ticket::{self, TicketFetch},
    },
    transport::iroh,
};

/// Fetches the share; returns the paths written.
pub async fn get(settings: &GetSettings) -> Result<Vec<PathBuf>> {
    match settings.sources.as_slice() {
        [source] if iroh::is_ticket(source) => {
            let fetch = TicketFetch {
                ticket: iroh::parse_ticket(source).map_err(ReceiveError::bad_source)?,
                out_dir: settings.link.out_dir.clone(),
                quiet: settings.link.quiet,
                patience: settings.link.patience,
                config: settings.p2p.clone(),
                allow_hidden: settings.link.allow_hidden,
                progress: settings.link.progress.clone(),
            };
            ticket::fetch_ticket(&fetch).await
        }
        [source] => {
            let fetch = FetchSettings {
                link: source.clone(),
                ..settings.link.clone()
            };
            link::fetch(&fetch).await
        }
        _ => multi::fetch(settings).await,
    }
}
