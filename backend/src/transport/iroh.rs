//! iroh endpoints: how they reach peers (relays, discovery, the socket), the app's endpoint
//! opened only while something holds a [`Lease`] on it, its key, and tickets. What the endpoint
//! answers is the caller's protocol handler: this module knows nothing of shares.
//!
//! Invariants:
//! - No endpoint exists until the first [`Endpoints::lease`]; the last lease dropped closes it.
//!   Until then nothing here opens a socket, resolves a name or contacts a relay: direct
//!   sharing reveals the sender's IP address, so it happens only for shares that asked for it.
//! - The endpoint's secret key lives in `<data>/iroh.key` (mode 0600), so a share's ticket
//!   names the same endpoint after a restart. A fetch from the command line uses a fresh key
//!   each time: a recipient is not linkable across fetches.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use iroh::{
    Endpoint, EndpointAddr, RelayMode, RelayUrl, SecretKey,
    endpoint::presets,
    protocol::{DynProtocolHandler, Router},
};
use iroh_blobs::{BlobFormat, Hash, ticket::BlobTicket};
use veilshare_shared::{ContentHash, P2pStatus};

/// The endpoint's secret key, in the data directory.
pub const KEY_FILE: &str = "iroh.key";
/// The port the endpoint last had, in the data directory.
pub const PORT_FILE: &str = "iroh.port";
/// How long to wait for a home relay before handing out a ticket without one.
const RELAY_WAIT: Duration = Duration::from_secs(10);
/// Application close code of a connection whose content was withdrawn for good (a revoked
/// share): the provider closes with it, a fetch gives up on it instead of retrying.
pub const CLOSE_REVOKED: u32 = 0x5653_0001;
/// How long a connection may stay silent before it counts as gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(12);

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
            use std::{io::Write, os::unix::fs::PermissionsExt};
            let key = SecretKey::generate();
            let dir = path
                .parent()
                .ok_or_else(|| key_err(std::io::Error::other("the key's path has no folder")))?;
            // A temp file of its own (never one another process is writing), private from the
            // start, moved into place only if no key is there yet.
            let mut file = tempfile::Builder::new()
                .prefix(".iroh-key")
                .permissions(std::fs::Permissions::from_mode(0o600))
                .tempfile_in(dir)
                .map_err(key_err)?;
            file.write_all(&key.to_bytes()).map_err(key_err)?;
            file.as_file().sync_all().map_err(key_err)?;
            match file.persist_noclobber(path) {
                Ok(_) => {
                    std::fs::File::open(dir)
                        .and_then(|dir| dir.sync_all())
                        .map_err(key_err)?;
                    Ok(key)
                }
                // Another start made it first: everyone uses that one.
                Err(error) if error.error.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create_key(path)
                }
                Err(error) => Err(key_err(error.error)),
            }
        }
        Err(error) => Err(key_err(error)),
    }
}

/// Builds the handler of the endpoint's protocol each time the endpoint opens.
pub type HandlerFactory = Box<dyn Fn() -> Box<dyn DynProtocolHandler> + Send + Sync>;

/// The running endpoint.
#[derive(Debug)]
struct Running {
    router: Router,
}

#[derive(Debug, Default)]
struct State {
    running: Option<Running>,
    users: usize,
}

/// The app's endpoint, opened while leased. Cloning the `Arc` shares it.
pub struct Endpoints {
    config: P2pConfig,
    key_path: PathBuf,
    alpn: Vec<u8>,
    handler: HandlerFactory,
    state: tokio::sync::Mutex<State>,
    /// The endpoint's address while it runs (read synchronously for views and status).
    addr: Mutex<Option<EndpointAddr>>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("config", &self.config)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// Keeps the endpoint open; dropping the last one closes it.
#[derive(Debug)]
pub struct Lease {
    endpoints: Arc<Endpoints>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let endpoints = self.endpoints.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { endpoints.release().await });
        }
    }
}

impl Endpoints {
    /// The endpoint of an app with data in `data_dir`, answering `alpn` with a handler from
    /// `handler`. Opens nothing yet.
    pub fn new(
        config: P2pConfig,
        data_dir: &Path,
        alpn: &[u8],
        handler: HandlerFactory,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            key_path: data_dir.join(KEY_FILE),
            alpn: alpn.to_vec(),
            handler,
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
        Ok(Lease {
            endpoints: self.clone(),
        })
    }

    async fn open(&self) -> Result<Running, P2pError> {
        let key = load_or_create_key(&self.key_path)?;
        let port_path = self.key_path.with_file_name(PORT_FILE);
        let previous = std::fs::read_to_string(&port_path)
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok());
        let endpoint = self
            .config
            .bind_on(key, vec![self.alpn.clone()], previous)
            .await?;
        if let Some(port) = endpoint.bound_sockets().iter().map(SocketAddr::port).next()
            && Some(port) != previous
            && let Err(error) = std::fs::write(&port_path, port.to_string())
        {
            tracing::warn!(%error, "cannot remember the direct-sharing port");
        }
        let addr = endpoint.addr();
        tracing::info!(endpoint = %addr.id, addrs = ?addr.addrs, "direct-sharing endpoint open");
        if let Ok(mut slot) = self.addr.lock() {
            *slot = Some(addr);
        }
        let router = Router::builder(endpoint)
            .accept(self.alpn.clone(), (self.handler)())
            .spawn();
        Ok(Running { router })
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
        true
    }

    /// The ticket of a collection served by this endpoint, while it is open.
    pub fn ticket(&self, collection: &ContentHash) -> Option<String> {
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
    use super::*;

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

    /// Starts that create the endpoint key at the same moment all end up with the one key on
    /// disk. Before, they all wrote and renamed the same `iroh.tmp`: some failed (seen here in
    /// two runs: at least 3 of the 8 racers got an error each time), and a start could go on
    /// with a key that another's rename then replaced, so its tickets changed at the next
    /// start. The key file is private and nothing else is left in the folder.
    #[test]
    fn starts_racing_to_create_the_key_all_get_the_one_on_disk() {
        use std::os::unix::fs::PermissionsExt;
        for _ in 0..20 {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("iroh.key");
            let start = std::sync::Barrier::new(8);
            let keys: Vec<[u8; 32]> = std::thread::scope(|scope| {
                let racers: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            load_or_create_key(&path).expect("key").to_bytes()
                        })
                    })
                    .collect();
                racers
                    .into_iter()
                    .map(|racer| racer.join().expect("racer"))
                    .collect()
            });
            let on_disk = std::fs::read(&path).expect("key file");
            for key in &keys {
                assert_eq!(
                    key.as_slice(),
                    on_disk.as_slice(),
                    "a start kept a lost key"
                );
            }
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let left: Vec<_> = std::fs::read_dir(dir.path())
                .expect("dir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert_eq!(left, ["iroh.key"]);
        }
    }
}
