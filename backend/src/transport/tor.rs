//! Tor through Arti, in-process: one client for the app, onion services hosted with a router
//! given by the caller (one per share, its own key, nickname `vs-<share id>`); a separate
//! client that probes new services; bootstrap status; clients for fetching and their keys.
//! Knows nothing of what is served: the caller hands it a router.
//!
//! Invariants:
//! - An onion service's streams all go to the router it was launched with and nowhere else;
//!   only `BEGIN` to port 80 is accepted, anything else closes the circuit.
//! - Retiring a service deletes its keys and state: its address can never come back.
//! - Nothing here listens on or connects to anything but the Tor network.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arti_client::{HsClientDescEncKey, HsId, KeystoreSelector};
use arti_client::{TorClient, TorClientConfig, config::onion_service::OnionServiceConfigBuilder};
use futures::StreamExt;
use safelog::DisplayRedacted;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::watch,
};
use tor_cell::relaycell::msg::Connected;
use tor_hscrypto::pk::HsClientDescEncSecretKey;
use tor_hsservice::{
    HsNickname, RunningOnionService, config::restricted_discovery::HsClientNickname,
};
use tor_llcrypto::pk::curve25519;
use tor_proto::stream::IncomingStreamRequest;
use tor_rtcompat::PreferredRuntime;
use veilshare_shared::{BridgesInUse, ShareId, TorStatus};

use crate::transport::{bridges::Bridges, http};

/// Streams one onion service serves at once; beyond it, a newcomer takes the place of an
/// idle stream, or is told to come back later (see [`http::ConnectionCap`]).
const STREAMS_PER_SERVICE: usize = 256;

/// Streams one circuit may hold open on a service: twice what `veilshare get --parallel`
/// opens at most (16), five times a browser's usual six. A client that opens more has its
/// circuit torn down (C tor's `HiddenServiceMaxStreamsCloseCircuit`), so one circuit cannot
/// take a service's places from the other recipients.
const STREAMS_PER_CIRCUIT: u32 = 32;

/// The rate (per second) and burst of introductions a service asks its introduction points
/// to let through (C tor's defaults for `HiddenServiceEnableIntroDoS`): a flood of
/// introductions is cut at the introduction point, before it costs this machine anything.
const INTRODUCTIONS: (u32, u32) = (25, 200);

/// Arti's defaults that veilshare changes, read before the user's configuration file (which
/// may override them). The memory quota bounds what Arti's queues may hold before it starts
/// killing the circuits with the oldest data; its "auto" default is 40% of the machine's
/// memory, up to 8 GiB, which is sized for relays, not for an app.
const ARTI_DEFAULTS: &str = "[system]\nmemory.max = \"256 MiB\"\n";

/// Errors of the Tor side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TorError {
    /// The configuration could not be read or is invalid.
    #[error("Tor configuration: {0}")]
    Config(String),
    /// Arti failed.
    #[error("Tor failed: {0}")]
    Client(#[from] arti_client::Error),
    /// An onion service could not be launched.
    #[error("the onion service could not start: {0}")]
    Launch(String),
    /// A fetch through Tor failed.
    #[error("{0}")]
    Unreachable(String),
}

/// Where Arti keeps a client's state and cache under `dir`.
fn dirs(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("state"), dir.join("cache"))
}

/// How every Tor client of the process reaches the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TorSetup {
    /// An Arti TOML merged into the configuration (a private test network, expert settings).
    pub config_file: Option<PathBuf>,
    /// The bridges to go through (and through nothing else), if any.
    pub bridges: Option<Bridges>,
    /// The bridges came from `--bridge` (the saved settings do not apply in this run).
    pub bridges_from_command_line: bool,
}

impl TorSetup {
    /// The bridges in use, as the UI shows them.
    pub fn bridges_in_use(&self) -> Option<BridgesInUse> {
        self.bridges.as_ref().map(|bridges| BridgesInUse {
            transport: bridges.transport(),
            bridges: bridges.states(),
            from_command_line: self.bridges_from_command_line,
        })
    }
}

/// The [`TorSetup`] of a running app, which the bridge settings change: clients made later
/// use the new one, and the app's client is reconfigured in place. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedSetup(Arc<watch::Sender<TorSetup>>);

impl SharedSetup {
    /// Starts with `setup`.
    pub fn new(setup: TorSetup) -> Self {
        Self(Arc::new(watch::channel(setup).0))
    }

    /// The setup now.
    pub fn get(&self) -> TorSetup {
        self.0.borrow().clone()
    }

    /// Replaces the setup.
    pub fn set(&self, setup: TorSetup) {
        self.0.send_replace(setup);
    }

    /// Follows changes.
    pub fn subscribe(&self) -> watch::Receiver<TorSetup> {
        self.0.subscribe()
    }
}

/// Builds a client configuration with its storage under `dir`: veilshare's defaults, then
/// the setup's Arti TOML file (a private test network, expert settings), then its bridges.
pub fn client_config(dir: &Path, setup: &TorSetup) -> Result<TorClientConfig, TorError> {
    let config_file = setup.config_file.as_deref();
    let (state, cache) = dirs(dir);
    for d in [&state, &cache] {
        std::fs::create_dir_all(d)
            .map_err(|e| TorError::Config(format!("cannot create {}: {e}", d.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700));
        }
    }
    let mut sources = tor_config::ConfigurationSources::new_empty();
    sources.push_source(
        tor_config::ConfigurationSource::from_verbatim(ARTI_DEFAULTS.to_owned()),
        tor_config::sources::MustRead::MustRead,
    );
    if let Some(file) = config_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            TorError::Config(format!(
                "cannot read the Tor configuration {}: {e}",
                file.display()
            ))
        })?;
        sources.push_source(
            tor_config::ConfigurationSource::from_verbatim(text),
            tor_config::sources::MustRead::MustRead,
        );
    }
    if let Some(bridges) = &setup.bridges {
        sources.push_source(
            tor_config::ConfigurationSource::from_verbatim(bridges.toml()),
            tor_config::sources::MustRead::MustRead,
        );
    }
    let quote =
        |p: &Path| serde_json::to_string(&p.to_string_lossy()).unwrap_or_else(|_| "\"\"".into());
    sources.push_option(format!("storage.state_dir={}", quote(&state)));
    sources.push_option(format!("storage.cache_dir={}", quote(&cache)));
    let tree = sources
        .load()
        .map_err(|e| TorError::Config(e.to_string()))?;
    tor_config::resolve::<TorClientConfig>(&tree).map_err(|e| TorError::Config(e.to_string()))
}

/// Installs the TLS crypto provider Arti's rustls backend needs (once per process).
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Creates an unbootstrapped client with its storage under `dir`.
pub async fn create_client(
    dir: &Path,
    setup: &TorSetup,
) -> Result<Arc<TorClient<PreferredRuntime>>, TorError> {
    install_crypto_provider();
    let config = client_config(dir, setup)?;
    Ok(TorClient::builder()
        .config(config)
        .create_unbootstrapped_async()
        .await?)
}

struct Service {
    _handle: Arc<RunningOnionService>,
    task: tokio::task::JoinHandle<()>,
    /// Tells the service's open streams that it ended: the next request on one closes it.
    gone: tokio_util::sync::CancellationToken,
}

/// The app's Tor side.
pub struct Tor {
    client: Arc<TorClient<PreferredRuntime>>,
    /// The client's own folder (state and cache).
    dir: PathBuf,
    state_dir: PathBuf,
    probe_dir: PathBuf,
    setup: SharedSetup,
    probe: tokio::sync::Mutex<Option<Arc<TorClient<PreferredRuntime>>>>,
    status: watch::Sender<TorStatus>,
    /// Running services by nickname (see [`ServiceName`]).
    services: Mutex<HashMap<String, Service>>,
    /// Onion streams open now, across all services.
    streams: Arc<watch::Sender<usize>>,
    /// Counts setup changes: a wait for the bridges of an older setup gives up.
    generation: std::sync::atomic::AtomicU64,
}

/// Counts one open onion stream while it lives.
struct StreamGuard(Arc<watch::Sender<usize>>);

impl StreamGuard {
    fn new(streams: &Arc<watch::Sender<usize>>) -> Self {
        streams.send_modify(|open| *open += 1);
        Self(streams.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.send_modify(|open| *open = open.saturating_sub(1));
    }
}

impl std::fmt::Debug for Tor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tor")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// Which onion service: a share's own, or one of its named recipients'. Its nickname names
/// its keys and state on disk: `vs-<share id>`, or `vs-<share id>-r<index>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceName(String);

impl ServiceName {
    /// The share's own service.
    pub fn share(id: &ShareId) -> Self {
        Self(format!("vs-{id}"))
    }

    /// The service of the share's recipient number `index`.
    pub fn recipient(id: &ShareId, index: usize) -> Self {
        Self(format!("vs-{id}-r{index}"))
    }

    /// Whether this is the share's service or one of its recipients'.
    fn belongs_to(nick: &str, id: &ShareId) -> bool {
        let own = Self::share(id).0;
        nick == own
            || nick
                .strip_prefix(&own)
                .and_then(|rest| rest.strip_prefix("-r"))
                .is_some_and(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
    }
}

impl Tor {
    /// Creates the client (state under `<data>/tor`) and bootstraps it in the background;
    /// [`Tor::status_updates`] follows the progress. When `setup` changes (new bridges), the
    /// client is reconfigured in place and, if it had given up, bootstraps again.
    pub async fn start(data_dir: &Path, setup: SharedSetup) -> Result<Arc<Self>, TorError> {
        let dir = data_dir.join("tor");
        let client = create_client(&dir, &setup.get()).await?;
        let (status, _) = watch::channel(TorStatus::Bootstrapping {
            progress: 0.0,
            message: "starting".into(),
        });
        let tor = Arc::new(Self {
            client: client.clone(),
            state_dir: dirs(&dir).0,
            dir,
            probe_dir: data_dir.join("tor-probe"),
            setup: setup.clone(),
            probe: tokio::sync::Mutex::new(None),
            status,
            services: Mutex::new(HashMap::new()),
            streams: Arc::new(watch::channel(0).0),
            generation: std::sync::atomic::AtomicU64::new(0),
        });
        let watcher = tor.clone();
        let mut bootstrap_events = client.bootstrap_events();
        tokio::spawn(async move {
            while let Some(event) = bootstrap_events.next().await {
                // Once connected, a later dip (a consensus being replaced) is not news.
                if event.ready_for_traffic() || matches!(watcher.status(), TorStatus::Ready) {
                    continue;
                }
                // Arti's own guess of why it is stuck ("our internet connection seems
                // filtered"), said along with the progress.
                let message = match event.blocked() {
                    Some(blockage) => format!("{event}; {blockage}"),
                    None => event.to_string(),
                };
                watcher.set_status(TorStatus::Bootstrapping {
                    progress: event.as_frac(),
                    message,
                });
            }
        });
        tor.clone().bootstrap(0);
        let reconfigurer = Arc::downgrade(&tor);
        let mut changes = setup.subscribe();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let setup = changes.borrow_and_update().clone();
                let Some(tor) = reconfigurer.upgrade() else {
                    break;
                };
                tor.reconfigure(&setup).await;
            }
        });
        Ok(tor)
    }

    /// Bootstraps in the background and says how it went in the status, unless the setup
    /// changed since `generation` (the new one says for itself).
    fn bootstrap(self: Arc<Self>, generation: u64) {
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = self.client.bootstrap().await;
            if self.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
                tracing::debug!("a bootstrap of earlier Tor settings ended");
                return;
            }
            match outcome {
                Ok(()) => {
                    tracing::info!(elapsed = ?started.elapsed(), "connected to the Tor network");
                    self.set_status(TorStatus::Ready);
                }
                Err(error) => {
                    tracing::error!(%error, "cannot connect to the Tor network");
                    self.set_status(TorStatus::Failed {
                        message: format!(
                            "cannot connect to the Tor network ({error}); check the network, or use bridges (Bridges above, or --bridge)"
                        ),
                    });
                }
            }
        });
    }

    /// Applies a new setup (bridges on, off or changed) to the running client; circuits
    /// built the old way are retired by Arti. The probe client is made again on next use.
    async fn reconfigure(self: &Arc<Self>, setup: &TorSetup) {
        let config = match client_config(&self.dir, setup) {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(%error, "cannot apply the new Tor settings");
                return;
            }
        };
        // A new generation first: what earlier setups still wait for (a bridge to answer, a
        // bootstrap to finish) no longer changes the status.
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        // Arti keeps its directory and says it is ready at once, but every circuit now has to
        // go through the new bridges: connected only once one of them answered. Said before
        // Arti hears of them, so that no report on them comes earlier.
        if let Some(bridges) = &setup.bridges {
            self.set_status(TorStatus::Bootstrapping {
                progress: 0.0,
                message: format!(
                    "connecting through the new {} bridges",
                    bridges.transport().title()
                ),
            });
        }
        if let Err(error) = self
            .client
            .reconfigure(&config, tor_config::Reconfigure::WarnOnFailures)
        {
            tracing::error!(%error, "cannot apply the new Tor settings");
            self.set_status(TorStatus::Failed {
                message: format!(
                    "the new Tor settings could not be applied ({error}); restart veilshare"
                ),
            });
            return;
        }
        *self.probe.lock().await = None;
        tracing::info!(bridges = setup.bridges.is_some(), "Tor settings changed");
        let Some(bridges) = setup.bridges.clone() else {
            if !matches!(self.status(), TorStatus::Ready) {
                self.clone().bootstrap(generation);
            }
            return;
        };
        let tor = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut outcomes = super::bridges::outcomes().subscribe();
            loop {
                let current = tor.upgrade().is_some_and(|tor| {
                    tor.generation.load(std::sync::atomic::Ordering::SeqCst) == generation
                });
                if !current {
                    return;
                }
                let reached = bridges
                    .states()
                    .iter()
                    .any(|b| b.reach == veilshare_shared::BridgeReach::Reached);
                if reached {
                    break;
                }
                if outcomes.changed().await.is_err() {
                    return;
                }
            }
            if let Some(tor) = tor.upgrade() {
                tor.bootstrap(generation);
            }
        });
    }

    fn set_status(&self, status: TorStatus) {
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    /// The current bootstrap state.
    pub fn status(&self) -> TorStatus {
        self.status.borrow().clone()
    }

    /// Follows the bootstrap state: changes as they happen (a slow reader sees the latest).
    pub fn status_updates(&self) -> watch::Receiver<TorStatus> {
        self.status.subscribe()
    }

    /// Launches (or relaunches, at the same address) the onion service `name`, serving
    /// `router` at its root (and nothing else). With `client_key`, the service runs in restricted discovery mode:
    /// only a client holding that key can fetch its descriptor. Returns `http://<address>.onion/`.
    pub fn publish(
        &self,
        name: &ServiceName,
        router: axum::Router,
        client_key: Option<&str>,
    ) -> Result<String, TorError> {
        self.stop_service(&name.0);
        let nick: HsNickname = name
            .0
            .parse()
            .map_err(|e| TorError::Launch(format!("bad nickname: {e}")))?;
        let mut builder = OnionServiceConfigBuilder::default();
        builder.nickname(nick);
        builder.max_concurrent_streams_per_circuit(STREAMS_PER_CIRCUIT);
        builder.rate_limit_at_intro(Some(tor_hsservice::config::TokenBucketConfig::new(
            INTRODUCTIONS.0,
            INTRODUCTIONS.1,
        )));
        #[cfg(feature = "hs-pow")]
        builder.enable_pow(true);
        if let Some(key) = client_key {
            let secret = parse_client_key(key)?;
            let public = HsClientDescEncKey::from(curve25519::PublicKey::from(&secret));
            let recipient: HsClientNickname = "recipient"
                .parse()
                .map_err(|e| TorError::Launch(format!("bad client nickname: {e}")))?;
            builder.restricted_discovery().enabled(true);
            builder
                .restricted_discovery()
                .static_keys()
                .access()
                .push((recipient, public));
        }
        let config = builder
            .build()
            .map_err(|e| TorError::Launch(e.to_string()))?;
        let (handle, requests) = self
            .client
            .launch_onion_service(config)?
            .ok_or_else(|| TorError::Launch("the service is disabled".into()))?;
        let address = handle
            .onion_address()
            .ok_or_else(|| TorError::Launch("the service has no address yet".into()))?;
        let url = format!("http://{}/", address.display_unredacted());
        let open_streams = self.streams.clone();
        // Each service has its own cap: one share's crowd cannot starve another's.
        let cap = http::ConnectionCap::new(STREAMS_PER_SERVICE);
        let gone = tokio_util::sync::CancellationToken::new();
        let service_gone = gone.clone();
        let task = tokio::spawn(async move {
            // Each request is a recipient's circuit, built with an introduction and a
            // rendezvous: logged, so that tests can count what a fetch costs the service.
            let requests = requests.inspect(|_| tracing::debug!("rendezvous: a new circuit"));
            let mut streams = tor_hsservice::handle_rend_requests(requests);
            while let Some(request) = streams.next().await {
                let port_80 = matches!(request.request(), IncomingStreamRequest::Begin(begin) if begin.port() == 80);
                if !port_80 {
                    let _ = request.shutdown_circuit();
                    continue;
                }
                let (router, gone) = (router.clone(), gone.clone());
                let guard = StreamGuard::new(&open_streams);
                let admission = cap.try_admit();
                tokio::spawn(async move {
                    let _guard = guard;
                    match request.accept(Connected::new_empty()).await {
                        Ok(stream) => match admission {
                            Some(admission) => {
                                // Streams are never cut from this side: the client closes
                                // them once it has every byte (closing first can lose the
                                // tail still queued on the circuit).
                                http::serve_connection(
                                    super::coalesce::Coalesced::new(Ending(Some(stream))),
                                    bytes::Bytes::new(),
                                    router,
                                    http::Audience::Strangers,
                                    tokio_util::sync::CancellationToken::new(),
                                    admission,
                                    Some(gone),
                                )
                                .await;
                            }
                            None => http::refuse_busy(Ending(Some(stream))).await,
                        },
                        Err(error) => {
                            tracing::debug!(%error, "could not accept an onion stream");
                        }
                    }
                });
            }
        });
        if let Ok(mut services) = self.services.lock() {
            services.insert(
                name.0.clone(),
                Service {
                    _handle: handle,
                    task,
                    gone: service_gone,
                },
            );
        }
        Ok(url)
    }

    /// Onion streams open now. A stream stays open until its client closes it, which is the
    /// only sign that the bytes written to it reached the other end.
    pub fn open_streams(&self) -> usize {
        *self.streams.borrow()
    }

    /// Waits until every onion stream is closed, or `deadline` passes; returns whether they
    /// all closed. Used before exiting, so that the last download is not cut off while its
    /// final bytes are still on their way through the circuit.
    pub async fn streams_closed(&self, deadline: Duration) -> bool {
        let mut open = self.streams.subscribe();
        tokio::time::timeout(deadline, open.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops every onion service of a share (its own and its recipients'); with `forget`,
    /// deletes their keys and state so that the addresses are gone for good.
    pub fn unpublish(&self, id: &ShareId, forget: bool) {
        let running: Vec<String> = match self.services.lock() {
            Ok(services) => services
                .keys()
                .filter(|nick| ServiceName::belongs_to(nick, id))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        for nick in running {
            self.stop_service(&nick);
        }
        if forget {
            self.forget_services(|nick| ServiceName::belongs_to(nick, id));
        }
    }

    /// Stops one onion service and deletes its keys and state: its address is gone for good.
    pub fn unpublish_service(&self, name: &ServiceName) {
        self.stop_service(&name.0);
        self.forget_services(|nick| nick == name.0);
    }

    fn stop_service(&self, nick: &str) {
        let service = self.services.lock().ok().and_then(|mut s| s.remove(nick));
        if let Some(service) = service {
            // No new stream; on the open ones (a keep-alive stream of a recipient who fetched
            // a moment ago), the next request closes the stream instead of being answered.
            service.task.abort();
            service.gone.cancel();
        }
    }

    /// Deletes the keys and state of every service whose nickname `matches`.
    fn forget_services(&self, matches: impl Fn(&str) -> bool) {
        for dir in self.service_dirs(&matches) {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    crate::core::crash::point("onion.keys_deleted");
                    tracing::debug!(path = %dir.display(), "deleted onion service keys/state")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::error!(path = %dir.display(), %error, "could not delete an onion service's keys")
                }
            }
        }
    }

    /// Where Arti keeps the keys and state of the services whose nickname `matches`.
    fn service_dirs(&self, matches: impl Fn(&str) -> bool) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for parent in [
            self.state_dir.join("keystore/hss"),
            self.state_dir.join("hss"),
        ] {
            let Ok(entries) = std::fs::read_dir(&parent) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_str().is_some_and(&matches) {
                    dirs.push(entry.path());
                }
            }
        }
        dirs
    }

    async fn probe_client(&self) -> Result<Arc<TorClient<PreferredRuntime>>, TorError> {
        let mut probe = self.probe.lock().await;
        if let Some(client) = probe.as_ref() {
            return Ok(client.isolated_client());
        }
        let client = create_client(&self.probe_dir, &self.setup.get()).await?;
        client.bootstrap().await?;
        *probe = Some(client.clone());
        Ok(client.isolated_client())
    }

    /// Fetches `url` through the separate probe client until it answers `200`, retrying until
    /// `deadline` passes; `client_key` is the recipient's key of a restricted share. Returns how
    /// long it took.
    pub async fn probe(
        &self,
        url: &str,
        client_key: Option<&str>,
        deadline: Duration,
    ) -> Result<Duration, TorError> {
        let started = Instant::now();
        let host = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        if let Some(key) = client_key {
            authorize(&*self.probe_client().await?, &host, key)?;
        }
        let mut pause = Duration::from_millis(250);
        let mut last_error = String::from("no attempt");
        while started.elapsed() < deadline {
            let attempt = async {
                let client = self.probe_client().await?;
                let mut stream = client.connect((host.as_str(), 80)).await?;
                stream
                    .write_all(
                        format!("HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                            .as_bytes(),
                    )
                    .await
                    .map_err(|e| TorError::Unreachable(e.to_string()))?;
                stream
                    .flush()
                    .await
                    .map_err(|e| TorError::Unreachable(e.to_string()))?;
                let mut head = vec![0u8; 64];
                let n = stream
                    .read(&mut head)
                    .await
                    .map_err(|e| TorError::Unreachable(e.to_string()))?;
                let line = String::from_utf8_lossy(&head[..n]).into_owned();
                if line.starts_with("HTTP/1.1 200") {
                    Ok(())
                } else {
                    Err(TorError::Unreachable(format!(
                        "unexpected answer {:?}",
                        line.lines().next().unwrap_or_default()
                    )))
                }
            };
            match tokio::time::timeout(Duration::from_secs(20), attempt).await {
                Ok(Ok(())) => return Ok(started.elapsed()),
                Ok(Err(error)) => last_error = error.to_string(),
                Err(_) => last_error = "timed out after 20 s".into(),
            }
            tracing::debug!(url, error = %last_error, "probe failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        Err(TorError::Unreachable(format!(
            "the onion service did not answer within {} s ({last_error})",
            deadline.as_secs()
        )))
    }
}

/// Parses a client key (base32 of an x25519 secret, as the core's `new_recipient_key` writes it) (any case, surrounding spaces ignored).
pub fn parse_client_key(key: &str) -> Result<curve25519::StaticSecret, TorError> {
    let bad = || {
        TorError::Launch(
            "the client key is not valid: it is 52 letters and digits (base32), as veilshare showed it"
                .into(),
        )
    };
    let bytes = data_encoding::BASE32_NOPAD
        .decode(key.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| bad())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    Ok(curve25519::StaticSecret::from(bytes))
}

/// Removes the client key of the onion service `host` from `client`'s keystore (a client that
/// fetched or sent with `--key` must not keep reaching the service, nor keep a record of it,
/// afterwards).
pub fn forget(client: &TorClient<PreferredRuntime>, host: &str) -> Result<(), TorError> {
    let hsid: HsId = host
        .parse()
        .map_err(|e| TorError::Launch(format!("{host} is not an onion address: {e}")))?;
    client
        .remove_service_discovery_key(KeystoreSelector::Primary, hsid)
        .map_err(|e| TorError::Launch(format!("cannot remove the client key: {e}")))?;
    Ok(())
}

/// Gives `client` the key of the restricted onion service `host` (`<56 chars>.onion`),
/// replacing any key it held for that address.
pub fn authorize(
    client: &TorClient<PreferredRuntime>,
    host: &str,
    key: &str,
) -> Result<(), TorError> {
    let secret = parse_client_key(key)?;
    let hsid: HsId = host
        .parse()
        .map_err(|e| TorError::Launch(format!("{host} is not an onion address: {e}")))?;
    let failed =
        |e: arti_client::Error| TorError::Launch(format!("cannot store the client key: {e}"));
    client
        .remove_service_discovery_key(KeystoreSelector::Primary, hsid)
        .map_err(failed)?;
    client
        .insert_service_discovery_key(
            KeystoreSelector::Primary,
            hsid,
            HsClientDescEncSecretKey::from(secret),
        )
        .map_err(failed)?;
    Ok(())
}

/// How long an ended onion stream is kept while its END cell goes out.
const END_GRACE: Duration = Duration::from_secs(3);

/// An onion stream that ends with an END cell when it is dropped.
///
/// Dropping an Arti stream that holds the last handle on its circuit closes the circuit at once,
/// and the circuit's reactor may stop before it sends the stream's END. The recipient then
/// learns that the stream ended only from the circuit's DESTROY, which a quiet relay channel
/// can hold back for seconds (seen on the private network: 8 to 10 s, until the next cell on the
/// channel). A stream closed after its service ended (a request after a revocation) hung that
/// long instead of failing at once. So the stream is shut down first (its END is sent), and
/// kept until the other end closes too or [`END_GRACE`] passes.
struct Ending(Option<arti_client::DataStream>);

impl Drop for Ending {
    fn drop(&mut self) {
        let Some(mut stream) = self.0.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _ = tokio::time::timeout(END_GRACE, async {
                stream.shutdown().await.ok()?;
                // Whatever still arrives is not read by anyone; wait for the other end's END.
                let mut sink = [0u8; 512];
                while stream.read(&mut sink).await.ok()? > 0 {}
                Some(())
            })
            .await;
        });
    }
}

impl tokio::io::AsyncRead for Ending {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(stream) => std::pin::Pin::new(stream).poll_read(cx, buf),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}

impl tokio::io::AsyncWrite for Ending {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(stream) => std::pin::Pin::new(stream).poll_write(cx, data),
            None => std::task::Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(stream) => std::pin::Pin::new(stream).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(stream) => std::pin::Pin::new(stream).poll_shutdown(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_keys_round_trip_and_bad_ones_are_refused() {
        let key = data_encoding::BASE32_NOPAD.encode(&[7u8; 32]);
        assert_eq!(key.len(), 52);
        let secret = super::parse_client_key(&format!(" {} ", key.to_ascii_lowercase()))
            .expect("a fresh key parses");
        assert_eq!(data_encoding::BASE32_NOPAD.encode(&secret.to_bytes()), key);
        assert!(super::parse_client_key("not a key").is_err());
        assert!(super::parse_client_key(&key[..50]).is_err());
    }

    #[test]
    fn arti_memory_is_capped_unless_the_configuration_file_says_otherwise() {
        // The configuration does not show its quota but through `Debug`.
        let quota = |config: &arti_client::TorClientConfig| {
            let text = format!("{config:?}");
            let at = text.find("memory:").expect("a memory section");
            text[at..]
                .split_once("low_water")
                .expect("a quota")
                .0
                .to_owned()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let config = super::client_config(dir.path(), &super::TorSetup::default()).expect("config");
        assert!(quota(&config).contains("268435456"), "{}", quota(&config));
        let file = dir.path().join("arti.toml");
        std::fs::write(&file, "[system]\nmemory.max = \"1 GiB\"\n").expect("file");
        let setup = super::TorSetup {
            config_file: Some(file),
            ..Default::default()
        };
        let config = super::client_config(dir.path(), &setup).expect("config");
        assert!(quota(&config).contains("1073741824"), "{}", quota(&config));
    }
}
