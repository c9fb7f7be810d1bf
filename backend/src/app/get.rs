//! `veilshare get`: chooses how to fetch from what the user gave — one link (plain or onion),
//! one ticket, or several sources of one share at once — and runs that fetch.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;

use crate::{
    receive::{
        link::{self, FetchSettings},
        multi::{self, MultiFetch},
        ticket::{self, TicketFetch},
    },
    transport::iroh::{self, P2pConfig},
};

/// Validated settings of `veilshare get`.
#[derive(Debug, Clone)]
pub struct GetSettings {
    /// Links and tickets of one share.
    pub sources: Vec<String>,
    /// Where the files go.
    pub out_dir: PathBuf,
    /// The data directory (its `tor-get/` holds the fetching Tor client's state).
    pub data_dir: PathBuf,
    /// An Arti TOML file to merge.
    pub tor_config: Option<PathBuf>,
    /// Parallel ranges for big files over Tor (`None`: the default).
    pub parallel: Option<usize>,
    /// No progress bars.
    pub quiet: bool,
    /// How long to keep trying to reach the share.
    pub patience: Duration,
    /// The key of a restricted share.
    pub key: Option<String>,
    /// How direct transfers reach peers.
    pub p2p: P2pConfig,
}

/// Fetches the share; returns the paths written.
pub async fn get(settings: &GetSettings) -> Result<Vec<PathBuf>> {
    let link_settings = |link: &str| FetchSettings {
        link: link.to_owned(),
        out_dir: settings.out_dir.clone(),
        state_dir: settings.data_dir.join("tor-get"),
        tor_config: settings.tor_config.clone(),
        parallel: settings.parallel,
        quiet: settings.quiet,
        patience: settings.patience,
        key: settings.key.clone(),
    };
    match settings.sources.as_slice() {
        [source] if iroh::is_ticket(source) => {
            let fetch = TicketFetch {
                ticket: iroh::parse_ticket(source).map_err(anyhow::Error::msg)?,
                out_dir: settings.out_dir.clone(),
                quiet: settings.quiet,
                patience: settings.patience,
                config: settings.p2p.clone(),
            };
            ticket::fetch_ticket(&fetch).await
        }
        [source] => link::fetch(&link_settings(source)).await,
        sources => {
            let fetch = MultiFetch {
                sources: sources.to_vec(),
                link: link_settings(""),
                p2p: settings.p2p.clone(),
            };
            multi::fetch(&fetch).await
        }
    }
}
