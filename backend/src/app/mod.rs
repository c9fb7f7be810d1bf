//! The app: one node's wiring (store, shares, publishers, listeners) started and stopped in one
//! place ([`Node`]), and what runs on it: the local API and UI, the headless share, mirrors.
//! May import every layer below it; nothing below imports it, and it never imports `cli`.

pub mod admin;
pub mod bridges;
pub mod get;
pub mod gets;
pub mod headless;
pub mod mirror;
pub mod ui;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use veilshare_shared::Event;

use crate::{
    core::{events::EventBus, shares::Shares, store::Store},
    serve::{direct::DirectPublisher, onion::OnionPublisher, public},
    transport::{
        http,
        iroh::Endpoints,
        tor::{SharedSetup, Tor},
    },
};

/// The direct-sharing settings the command line fills in.
pub use crate::transport::{
    http::Audience,
    iroh::{P2pConfig, Relays},
    tor::TorSetup,
};

/// How long running downloads get to end cleanly when the node stops.
const DRAIN: Duration = Duration::from_secs(5);

/// Where a running instance tells the CLI how to reach it.
#[derive(Debug, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Base URL of the local API.
    pub api: String,
    /// Base URL of the plain public listener.
    pub public: Option<String>,
    /// Process id.
    pub pid: u32,
}

/// File name of [`InstanceInfo`] in the data directory.
pub const INSTANCE_FILE: &str = "instance.json";

impl InstanceInfo {
    /// Writes it into `data_dir` (atomically).
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        let path = data_dir.join(INSTANCE_FILE);
        let temp = data_dir.join(format!("{INSTANCE_FILE}.tmp"));
        std::fs::write(&temp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", temp.display()))?;
        std::fs::rename(&temp, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// Reads the one of the instance running with `data_dir`.
    pub fn read(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(INSTANCE_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "veilshare is not running with the data directory {} (start it with `veilshare serve`)",
                data_dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))
    }

    /// Removes it from `data_dir` (the instance is stopping).
    pub fn remove(data_dir: &Path) {
        let _ = std::fs::remove_file(data_dir.join(INSTANCE_FILE));
    }
}

/// An exclusive lock on a data directory, held for the life of the process: one instance per
/// data directory.
#[derive(Debug)]
pub struct DataDirLock(#[allow(dead_code)] std::fs::File);

impl DataDirLock {
    /// Takes the lock, or says which instance holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            let running = InstanceInfo::read(data_dir)
                .map(|info| format!(" at {}", info.api))
                .unwrap_or_default();
            bail!(
                "another veilshare is already running with the data directory {}{running}",
                data_dir.display()
            );
        }
        Ok(Self(file))
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// What a node is started with (validated by the CLI).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The data directory (exists).
    pub data_dir: PathBuf,
    /// The plain public listener, when on.
    pub public_listen: Option<SocketAddr>,
    /// Whether Tor is on (onion services for shares).
    pub tor: bool,
    /// How every Tor client reaches the network (the app's, and those that fetch mirrors
    /// and downloads from onion links, which run even when the app's Tor is off): an Arti
    /// TOML, bridges.
    pub tor_setup: TorSetup,
    /// How the direct-sharing endpoint reaches peers.
    pub p2p: P2pConfig,
    /// Revoke every share a previous run left unended before publishing anything (the
    /// headless share: its shares live only as long as its process).
    pub revoke_leftovers: bool,
}

/// The handles a running node's services share: cheap to clone.
#[derive(Debug, Clone)]
pub struct Context {
    /// The share registry (store and events through it).
    pub shares: Shares,
    /// The Tor client, when Tor is on.
    pub tor: Option<Arc<Tor>>,
    /// The direct-sharing endpoint.
    pub endpoints: Arc<Endpoints>,
    /// Base URL of the plain public listener, when on.
    pub public_base: Option<String>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// How every Tor client reaches the network; the bridge settings change it.
    pub tor_setup: SharedSetup,
    /// The Get panel's fetches.
    pub gets: gets::Gets,
}

/// A running node: store, shares, the publishers attached to them, and its listeners. The
/// one start-up path of `serve` and `share`.
#[derive(Debug)]
pub struct Node {
    context: Context,
    store: Store,
    /// Kept alive here: the registry holds publishers weakly.
    _publishers: (
        Option<Arc<public::PlainSite>>,
        Option<Arc<OnionPublisher>>,
        Arc<DirectPublisher>,
    ),
    stop: CancellationToken,
    servers: tokio::task::JoinSet<std::io::Result<()>>,
}

impl Node {
    /// Opens the store, loads the shares, binds the plain public listener, starts Tor and
    /// attaches every publisher (which publishes the shares a restart found live).
    pub async fn start(settings: NodeSettings) -> Result<Self> {
        let public_listener = match settings.public_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for public links"))?,
            ),
            None => None,
        };
        let public_base = match &public_listener {
            Some(listener) => Some(format!("http://{}", listener.local_addr()?)),
            None => None,
        };
        let store = Store::open(&settings.data_dir.join("store"))
            .await
            .context("cannot open the store")?;
        let events = EventBus::default();
        let shares = Shares::start(store.clone(), events.clone())
            .await
            .context("cannot load the shares")?;
        if settings.revoke_leftovers {
            for leftover in shares.list().iter().filter(|v| !v.state.is_ended()) {
                shares.revoke(&leftover.id).await?;
            }
        }
        let plain = public_base
            .clone()
            .map(|base| Arc::new(public::PlainSite::new(base)));
        if let Some(plain) = &plain {
            shares.attach(plain).await?;
        }
        let tor_setup = SharedSetup::new(settings.tor_setup.clone());
        forward_bridges(&tor_setup, &events);
        let (tor, onion) = match settings.tor {
            true => {
                let tor = Tor::start(&settings.data_dir, tor_setup.clone())
                    .await
                    .context("cannot start Tor")?;
                forward_tor_status(&tor, &events);
                let onion = OnionPublisher::new(shares.clone(), tor.clone());
                shares.attach(&onion).await?;
                (Some(tor), Some(onion))
            }
            false => (None, None),
        };
        let direct = DirectPublisher::new(shares.clone(), settings.p2p.clone(), &settings.data_dir);
        shares
            .attach(&direct)
            .await
            .context("cannot resume direct sharing")?;
        let mut node = Self {
            context: Context {
                shares: shares.clone(),
                tor,
                endpoints: direct.endpoints().clone(),
                public_base,
                data_dir: settings.data_dir.clone(),
                tor_setup: tor_setup.clone(),
                // The headless share runs nothing but its share: no fetch is resumed there.
                gets: gets::Gets::start(
                    &settings.data_dir,
                    tor_setup.clone(),
                    settings.p2p.clone(),
                    events.clone(),
                    !settings.revoke_leftovers,
                ),
            },
            store,
            _publishers: (plain, onion, direct),
            stop: CancellationToken::new(),
            servers: tokio::task::JoinSet::new(),
        };
        if let Some(listener) = public_listener {
            node.serve(listener, public::router(shares), http::Audience::Strangers);
        }
        Ok(node)
    }

    /// The handles the node's services share.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Serves `app` to `audience` on `listener` until the node stops.
    pub fn serve(
        &mut self,
        listener: tokio::net::TcpListener,
        app: axum::Router,
        audience: http::Audience,
    ) {
        let stop = self.stop.clone();
        let cap = http::ConnectionCap::new(http::max_connections());
        self.servers
            .spawn(async move { http::serve_listener(listener, app, audience, stop, cap).await });
    }

    /// Stops the listeners (running downloads get a moment to end), the direct-sharing
    /// endpoint and the store.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(DRAIN, async {
            while self.servers.join_next().await.is_some() {}
        })
        .await;
        self.context.endpoints.shutdown().await;
        self.store.shutdown().await;
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never a
/// part of either: written to a temporary file beside it, synced, then renamed over it.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The bridges in use as events: when the settings change, and when Arti reaches a bridge or
/// gives up on one.
fn forward_bridges(setup: &SharedSetup, events: &EventBus) {
    let mut changes = setup.subscribe();
    let mut outcomes = crate::transport::bridges::outcomes().subscribe();
    let events = events.clone();
    tokio::spawn(async move {
        let mut last = changes.borrow().bridges_in_use();
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                changed = outcomes.changed() => if changed.is_err() { break },
            }
            let now = changes.borrow_and_update().bridges_in_use();
            outcomes.mark_unchanged();
            if now != last {
                events.publish(Event::Bridges {
                    bridges: now.clone(),
                });
                last = now;
            }
        }
    });
}

/// Tor's bootstrap progress as events.
fn forward_tor_status(tor: &Tor, events: &EventBus) {
    let mut updates = tor.status_updates();
    let events = events.clone();
    tokio::spawn(async move {
        while updates.changed().await.is_ok() {
            let status = updates.borrow_and_update().clone();
            events.publish(Event::Tor { status });
        }
    });
}
