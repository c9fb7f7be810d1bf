//! Command-line parsing and the commands. Arguments are turned into validated settings once
//! ([`ServeSettings`]); nothing downstream re-checks them.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use veilshare_shared::{ApiError, ShareView};

mod dropbox;

use crate::app::{
    DataDirLock, InstanceInfo, Node, NodeSettings, P2pConfig, Relays,
    admin::{self, AdminState},
    get::{FetchSettings, GetSettings},
};

/// Privacy-first file sharing over Tor onion services.
#[derive(Debug, Parser)]
#[command(name = "veilshare", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the app: the local UI and API, and the public sites of the shares.
    Serve(ServeArgs),
    /// List the shares of a running veilshare.
    List {
        #[command(flatten)]
        data: DataDirArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a share of a running veilshare now: its links stop working and its data is deleted.
    Revoke {
        /// The share's id (from `veilshare list`).
        id: String,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// A share's named recipients (each with a link and key of their own): list them, add one,
    /// or revoke one (their link and key stop working for good; the others' go on).
    Recipients {
        /// The share's id (from `veilshare list`).
        id: String,
        /// What to do; without it, lists them.
        #[arg(value_enum)]
        action: Option<RecipientAction>,
        /// The recipient's name.
        name: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// A share's history for its owner (created, published, downloads by transport, refusals,
    /// ended), to the minute and with nothing about recipients; checks that it was not edited.
    Log {
        /// The share's id (from `veilshare list`).
        id: String,
        #[command(flatten)]
        data: DataDirArg,
        /// Print the entries as JSON (with their hash chain), for export.
        #[arg(long)]
        json: bool,
    },
    /// Fetch a share (onion or http link, or a direct ticket): every file, verified by its
    /// BLAKE3 hash.
    Get(GetArgs),
    /// Fetch a share (ticket or link) into a running veilshare and publish it from there too,
    /// with this node's own policy: the content and its hash stay the same.
    Mirror(MirrorArgs),
    /// Share files from the terminal, without the UI: prints the link and a QR code, serves
    /// until the share ends (limit, expiry) or Ctrl-C (which revokes it).
    Share(ShareArgs),
    /// Make a drop box in the running veilshare: prints its link (and key) and a QR code, then
    /// lists uploads as they arrive.
    Receive(dropbox::ReceiveArgs),
    /// Send files (and a message) into someone's drop box, over Tor or a plain link.
    Send(dropbox::SendArgs),
    /// What drop boxes received.
    Dropbox {
        #[command(subcommand)]
        command: dropbox::DropboxCommand,
    },
}

#[derive(Debug, Args, Clone)]
struct GetArgs {
    /// The share's link, or its direct ticket. Give several (the sender's and its mirrors')
    /// to fetch from all at once, every piece verified.
    #[arg(required = true, num_args = 1.., value_name = "LINK|TICKET")]
    links: Vec<String>,
    /// Folder to write the files into.
    #[arg(short = 'o', long, default_value = ".")]
    output: PathBuf,
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    tor: TorArgs,
    /// Fetch big files as this many ranges at once, each over its own Tor circuit [default: 4
    /// over Tor, 1 on plain links].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=16))]
    parallel: Option<u16>,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
    /// How long to keep trying to reach the share before giving up (e.g. 2m, 30s), and to
    /// wait for a sender that went silent (at most 60 s).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The key of a restricted share (the sender gives it with the link).
    #[arg(long, env = "VEILSHARE_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Accept hidden files (names starting with a dot, like .bashrc) in the share; without
    /// it, such a share is refused, as such files can change how programs behave.
    #[arg(long)]
    allow_hidden: bool,
    #[command(flatten)]
    p2p: P2pArgs,
}

#[derive(Debug, Args, Clone)]
struct MirrorArgs {
    /// The share's direct ticket or link.
    source: String,
    #[command(flatten)]
    policy: PolicyArgs,
    /// The key of the source, when it is a restricted onion link.
    #[arg(long, env = "VEILSHARE_KEY", hide_env_values = true)]
    key: Option<String>,
    /// How long to keep trying to reach the source before giving up (e.g. 2m, 30s; at most
    /// 1h).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    data: DataDirArg,
}

#[derive(Debug, Args, Clone)]
struct ShareArgs {
    /// Files to share.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    tor: TorArgs,
    /// Do not use Tor (only useful with --public-listen).
    #[arg(long)]
    no_tor: bool,
    /// Also serve the share over plain HTTP at this address.
    #[arg(long)]
    public_listen: Option<SocketAddr>,
    /// Share photos with their metadata (GPS position, camera, serial number, dates). Without
    /// it veilshare removes that from JPEG, PNG and WebP files, pixels unchanged, and reports
    /// what other files contain.
    #[arg(long)]
    keep_metadata: bool,
    /// Remove metadata from photos (the default; spelled out for scripts).
    #[arg(long, conflicts_with = "keep_metadata")]
    strip_metadata: bool,
    #[command(flatten)]
    p2p: P2pArgs,
}

/// The policy of a share made from the command line (`share`, `mirror`).
#[derive(Debug, Args, Clone)]
struct PolicyArgs {
    /// End the share after this many complete downloads.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_downloads: Option<u32>,
    /// End the share after this long (e.g. 10m, 1h, 7d).
    #[arg(long, value_parser = humantime::parse_duration)]
    expires: Option<Duration>,
    /// A label shown on the share's page.
    #[arg(long)]
    label: Option<String>,
    /// Only recipients who also hold a key (printed with the link) can reach the share.
    #[arg(long)]
    restricted: bool,
    /// A named recipient (repeat for each): each gets a link and a key of their own, and can
    /// be revoked alone (`veilshare recipients ID revoke NAME`). Implies --restricted.
    #[arg(long = "recipient", value_name = "NAME")]
    recipients: Vec<String>,
    /// Also share directly over iroh and print a ticket: fast and verified, but the recipient
    /// learns your IP address.
    #[arg(long)]
    direct: bool,
    /// Keep the share's history (`veilshare log ID`) after it ends and its data is deleted.
    #[arg(long)]
    keep_log: bool,
}

impl PolicyArgs {
    /// The checked fields of the new share.
    fn fields(&self) -> Result<veilshare_shared::CreateShareFields> {
        veilshare_shared::CreateShareFields {
            max_downloads: self.max_downloads,
            expires_in_secs: self.expires.map(|d| d.as_secs().max(1)),
            label: self.label.clone(),
            direct: self.direct,
            restricted: self.restricted || !self.recipients.is_empty(),
            keep_metadata: false,
            keep_log: self.keep_log,
            recipients: self.recipients.clone(),
        }
        .checked()
        .map_err(anyhow::Error::msg)
    }
}

/// How direct (iroh) transfers reach peers; the same on `serve`, `share` and `get`.
#[derive(Debug, Args, Clone, Default)]
pub struct P2pArgs {
    /// Relay server for direct transfers, instead of iroh's public relays (may be repeated). A
    /// relay helps peers behind NATs reach each other, and sees both peers' IP addresses.
    #[arg(long = "iroh-relay", value_name = "URL")]
    relay: Vec<String>,
    /// Use no relay: no third party sees who talks to whom, but direct transfers then need a
    /// direct route between the two peers.
    #[arg(long = "no-iroh-relay", conflicts_with = "relay")]
    no_relay: bool,
    /// Publish and look up endpoint addresses through iroh's public DNS discovery (off by
    /// default: tickets carry the addresses).
    #[arg(long = "iroh-discovery")]
    discovery: bool,
    /// Bind direct transfers' UDP socket to this address [default: all interfaces, any port].
    #[arg(long = "iroh-bind", value_name = "ADDR")]
    bind: Option<SocketAddr>,
}

impl P2pArgs {
    /// The validated configuration.
    pub fn config(&self) -> Result<P2pConfig> {
        let relays = if self.no_relay {
            Relays::Disabled
        } else if self.relay.is_empty() {
            Relays::Default
        } else {
            let urls = self
                .relay
                .iter()
                .map(|url| {
                    url.parse()
                        .map_err(|e| anyhow::anyhow!("--iroh-relay {url:?} is not a URL: {e}"))
                })
                .collect::<Result<Vec<_>>>()?;
            Relays::Custom(urls)
        };
        Ok(P2pConfig {
            relays,
            discovery: self.discovery,
            bind: self.bind,
        })
    }
}

/// How Tor reaches the network.
#[derive(Debug, Args, Clone)]
pub(crate) struct TorArgs {
    /// Reach Tor through this bridge (repeat for each; all of one transport: obfs4,
    /// snowflake, or plain). Wins over the bridges saved in the app for this run.
    #[arg(long, value_name = "LINE")]
    bridge: Vec<String>,
    /// The pluggable transport's program for --bridge [default: lyrebird or obfs4proxy for
    /// obfs4, snowflake-client for snowflake, found on PATH].
    #[arg(long, value_name = "PATH", requires = "bridge")]
    bridge_program: Option<String>,
    /// An Arti TOML file to merge into the Tor configuration (test networks, expert settings).
    #[arg(long, value_name = "ARTI.toml")]
    tor_config: Option<PathBuf>,
}

impl TorArgs {
    /// The setup: `--bridge` lines, else the bridges saved in `data_dir`.
    pub(crate) fn setup(self, data_dir: &Path) -> Result<crate::app::TorSetup> {
        crate::app::bridges::setup(
            data_dir,
            self.tor_config,
            &self.bridge,
            self.bridge_program.as_deref(),
        )
    }
}

#[derive(Debug, Args, Clone)]
struct DataDirArg {
    /// Where veilshare keeps its data [default: the platform's data directory].
    #[arg(long, env = "VEILSHARE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// Address of the local UI and API; loopback only.
    #[arg(long, default_value = "127.0.0.1:7463")]
    listen: SocketAddr,
    /// Also serve public links over plain HTTP at this address (for tests and LANs; off by
    /// default). Anyone who can reach it and has a link can download.
    #[arg(long)]
    public_listen: Option<SocketAddr>,
    /// Do not use Tor.
    #[arg(long)]
    no_tor: bool,
    #[command(flatten)]
    tor: TorArgs,
    /// Do not open the browser; only print the launch URL.
    #[arg(long)]
    no_browser: bool,
    #[command(flatten)]
    p2p: P2pArgs,
}

/// Validated settings of `serve`.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The node (data directory, public listener, Tor, direct sharing).
    pub node: NodeSettings,
    /// Local API address (loopback).
    pub listen: SocketAddr,
    /// Do not open a browser.
    pub no_browser: bool,
}

impl ServeArgs {
    fn validate(self) -> Result<ServeSettings> {
        if !self.listen.ip().is_loopback() {
            bail!(
                "--listen {} is not a loopback address; the local API only listens on 127.0.0.1 or ::1",
                self.listen
            );
        }
        let data_dir = self.data.resolve()?;
        Ok(ServeSettings {
            node: NodeSettings {
                tor_setup: self.tor.setup(&data_dir)?,
                data_dir,
                public_listen: self.public_listen,
                tor: !self.no_tor,
                p2p: self.p2p.config()?,
                revoke_leftovers: false,
            },
            listen: self.listen,
            no_browser: self.no_browser,
        })
    }
}

impl DataDirArg {
    fn resolve(&self) -> Result<PathBuf> {
        let dir = match &self.data_dir {
            Some(dir) => dir.clone(),
            None => directories::ProjectDirs::from("org", "veilshare", "veilshare")
                .context("cannot find a home directory for veilshare's data; pass --data-dir")?
                .data_dir()
                .to_path_buf(),
        };
        prepare_data_dir(&dir)?;
        Ok(dir)
    }
}

/// Names that mark a folder as a veilshare data directory: the app's, the Tor state or
/// headless node that `get`, `send` and `share` alone leave there, and saved bridge settings.
const DATA_DIR_MARKS: [&str; 6] = [
    "api-token",
    "lock",
    "store",
    "tor-get",
    "headless",
    "bridges.json",
];

/// Makes `dir` ready to hold veilshare's data, readable by its owner only. A folder that
/// already holds other things (a home folder, `/tmp`, a project) is refused, not taken over:
/// its permissions stay as they are, and nothing is written into it.
fn prepare_data_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let existed = dir.exists();
    if existed {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the data directory {}", dir.display()))?;
        let empty = entries.next().is_none();
        let ours = DATA_DIR_MARKS.iter().any(|mark| dir.join(mark).exists());
        if !empty && !ours {
            bail!(
                "{} already holds other files and is not a veilshare data directory; give --data-dir a new or empty folder of its own (veilshare makes it private to you)",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make the data directory {} private", dir.display()))?;
        if existed {
            tracing::warn!(
                dir = %dir.display(),
                "the data directory was readable by others (mode {mode:o}); made it private (700)"
            );
        }
    }
    Ok(())
}

/// Runs the program; returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The app logs what it does; one-shot commands only warnings (their output is the result).
    let serving = matches!(cli.command, None | Some(Command::Serve(_)));
    init_tracing(if serving {
        "info,iroh=warn,iroh_blobs=warn"
    } else {
        "warn,tor_netdir=error,tor_circmgr=error,tor_guardmgr=error"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default: &str) {
    let directives = std::env::var("VEILSHARE_LOG").unwrap_or_else(|_| default.into());
    // iroh-blobs reports every skipped collection tick at INFO; they are ours, by design.
    let with_gc = |directives: &str| format!("{directives},iroh_blobs::store::gc=warn");
    let filter = tracing_subscriber::EnvFilter::try_new(with_gc(&directives))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(with_gc(default)));
    use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours only for a person at a terminal: a log written to a file or read by
                // a program gets plain text (and `NO_COLOR` is honoured).
                .with_ansi(colours())
                .with_filter(filter),
        )
        .with(crate::app::bridges::watch_layer())
        .init();
}

/// Whether the log on stderr may use terminal colours.
fn colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => serve(cli.serve.validate()?).await,
        Some(Command::Serve(args)) => serve(args.validate()?).await,
        Some(Command::List { data, json }) => list(&data.resolve()?, json).await,
        Some(Command::Revoke { id, data }) => revoke(&data.resolve()?, &id).await,
        Some(Command::Log { id, data, json }) => log(&data.resolve()?, &id, json).await,
        Some(Command::Recipients {
            id,
            action,
            name,
            data,
        }) => recipients(&data.resolve()?, &id, action, name).await,
        Some(Command::Get(args)) => get(args).await,
        Some(Command::Mirror(args)) => mirror(args).await,
        Some(Command::Share(args)) => crate::app::headless::share(args.into_settings()?).await,
        Some(Command::Receive(args)) => dropbox::receive(args).await,
        Some(Command::Send(args)) => dropbox::send(args).await,
        Some(Command::Dropbox { command }) => dropbox::dropbox(command).await,
    }
}

/// Raises the soft limit on open files to the hard one: each connection, onion stream and
/// stored file takes a descriptor, and the usual soft limit (1024) is below what the
/// listeners' caps allow together, so a flood would otherwise end in accept errors.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files allowed"),
        Err(error) => tracing::warn!(%error, "cannot raise the limit on open files"),
    }
}

/// Runs the app until Ctrl-C or SIGTERM.
pub async fn serve(settings: ServeSettings) -> Result<()> {
    raise_open_file_limit();
    let _lock = match DataDirLock::acquire(&settings.node.data_dir) {
        Ok(lock) => lock,
        // A second start while one runs opens the running one's UI instead of failing.
        Err(error) => return open_running(&settings, error).await,
    };
    let token = admin::load_or_create_token(&settings.node.data_dir)
        .context("cannot read or create the API token")?;
    let api_listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is another program using that port? choose another with --listen)",
                settings.listen
            )
        })?;
    let api_addr = api_listener.local_addr()?;
    let data_dir = settings.node.data_dir.clone();
    let mut node = Node::start(settings.node.clone()).await?;
    let state = AdminState::new(node.context().clone(), token, api_addr.port());
    let launch_code = state.new_launch_code();
    node.serve(
        api_listener,
        admin::router(state, crate::app::ui::router()),
        crate::app::Audience::Owner,
    );

    let info = InstanceInfo {
        api: format!("http://{api_addr}"),
        public: node.context().public_base.clone(),
        pid: std::process::id(),
    };
    info.write(&data_dir)?;
    tracing::info!(api = %info.api, public = ?info.public, "veilshare is running");
    hand_out_launch(
        "veilshare is running",
        &format!("http://{api_addr}/?launch={launch_code}"),
        settings.no_browser,
    );

    crate::app::wait_for_signal().await;
    tracing::info!("stopping");
    node.shutdown().await;
    InstanceInfo::remove(&data_dir);
    Ok(())
}

/// When another instance holds the data directory: prints (and opens) a new one-time launch
/// URL of it; fails with `locked` when there is no running instance to hand over to.
async fn open_running(settings: &ServeSettings, locked: anyhow::Error) -> Result<()> {
    let Ok(client) = ApiClient::connect(&settings.node.data_dir) else {
        return Err(locked);
    };
    let answer: serde_json::Value = client
        .call(client.http.post(format!("{}/api/launch", client.base)))
        .await?;
    let code = answer["code"]
        .as_str()
        .context("the running veilshare gave no launch code")?;
    hand_out_launch(
        "veilshare is already running",
        &format!("{}/?launch={code}", client.base),
        settings.no_browser,
    );
    Ok(())
}

/// Prints the launch URL on standard output (so that scripts and people can pick it up) and,
/// unless `no_browser`, opens it.
fn hand_out_launch(what: &str, launch: &str, no_browser: bool) {
    #[allow(clippy::print_stdout)]
    {
        println!("{what}. Open {launch}");
    }
    if !no_browser && let Err(error) = webbrowser::open(launch) {
        tracing::warn!(%error, "could not open a browser; open the URL above yourself");
    }
}

/// A client of a running instance's API.
struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    fn connect(data_dir: &Path) -> Result<Self> {
        let info = InstanceInfo::read(data_dir)?;
        let token = std::fs::read_to_string(admin::token_path(data_dir))
            .context("cannot read the API token of the running veilshare")?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            base: info.api,
            token: token.trim().to_owned(),
            http,
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach veilshare at {} (is it still running?)",
                    self.base
                )
            })?;
        if !response.status().is_success() {
            let status = response.status();
            let message = match response.json::<ApiError>().await {
                Ok(error) => error.message,
                Err(_) => status.to_string(),
            };
            bail!("{message}");
        }
        Ok(response.json().await?)
    }

    /// A share's (or drop box's) view.
    async fn share(&self, id: &str) -> Result<ShareView> {
        let mut url = reqwest::Url::parse(&self.base)?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("{} is not an http URL", self.base))?
            .extend(["api", "shares", id]);
        self.call(self.http.get(url)).await
    }

    /// The URL of a file a drop box received (each part escaped: names come from uploaders).
    fn item_file_url(&self, id: &str, item: &str, name: &str) -> Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&self.base)?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("{} is not an http URL", self.base))?
            .extend(["api", "shares", id, "items", item, "files", name]);
        Ok(url)
    }
}

async fn list(data_dir: &Path, json: bool) -> Result<()> {
    let client = ApiClient::connect(data_dir)?;
    let shares: Vec<ShareView> = client
        .call(client.http.get(format!("{}/api/shares", client.base)))
        .await?;
    let mut out = String::new();
    if json {
        out = serde_json::to_string_pretty(&shares)?;
    } else if shares.is_empty() {
        out.push_str("no shares");
    } else {
        use std::fmt::Write;
        for share in &shares {
            if let Some(dropbox) = &share.dropbox {
                let link = share.links.preferred().unwrap_or("-");
                let uploads = match dropbox.limits.max_uploads {
                    Some(max) => format!("{}/{max}", dropbox.uploads),
                    None => dropbox.uploads.to_string(),
                };
                let _ = writeln!(
                    out,
                    "{}  {:<22}  drop box   {:>10}  uploads {:<9}  {}",
                    share.id,
                    share.state.label(),
                    veilshare_shared::human_size(dropbox.bytes),
                    uploads,
                    link
                );
                for item in &dropbox.items {
                    let _ = writeln!(out, "{}", dropbox::item_line(item));
                }
                continue;
            }
            let downloads = match share.policy.max_downloads {
                Some(max) => format!("{}/{max}", share.downloads_completed),
                None => share.downloads_completed.to_string(),
            };
            let link = share
                .links
                .preferred()
                .or(share.links.ticket.as_deref())
                .unwrap_or("-");
            let _ = writeln!(
                out,
                "{}  {:<22}  {:>3} files  {:>10}  downloads {:<7}  {}",
                share.id,
                share.state.label(),
                share.files.len(),
                veilshare_shared::human_size(share.total_size),
                downloads,
                link
            );
        }
    }
    #[allow(clippy::print_stdout)]
    {
        println!("{}", out.trim_end());
    }
    Ok(())
}

async fn revoke(data_dir: &Path, id: &str) -> Result<()> {
    let client = ApiClient::connect(data_dir)?;
    let share: ShareView = client
        .call(
            client
                .http
                .delete(format!("{}/api/shares/{id}", client.base)),
        )
        .await?;
    #[allow(clippy::print_stdout)]
    {
        println!("share {} is {}", share.id, share.state.label());
    }
    Ok(())
}

/// What `veilshare recipients` does.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RecipientAction {
    /// Add a recipient: prints their link and key once their onion service is up.
    Add,
    /// Revoke a recipient.
    Revoke,
}

async fn recipients(
    data_dir: &Path,
    id: &str,
    action: Option<RecipientAction>,
    name: Option<String>,
) -> Result<()> {
    let client = ApiClient::connect(data_dir)?;
    let base = format!("{}/api/shares/{id}", client.base);
    let needs_name = || name.clone().context("give the recipient's name");
    let show = |r: &veilshare_shared::RecipientView| {
        let state = match r.state {
            veilshare_shared::RecipientState::Publishing => "publishing",
            veilshare_shared::RecipientState::Live => "live",
            veilshare_shared::RecipientState::Revoked => "revoked",
        };
        let mut line = format!("{}  ({state})", r.name);
        if let (Some(link), Some(key)) = (&r.link, &r.client_key) {
            line.push_str(&format!("\n  link: {link}\n  key:  {key}"));
        }
        line
    };
    #[allow(clippy::print_stdout)]
    match action {
        None => {
            let share: ShareView = client.call(client.http.get(&base)).await?;
            if share.recipients.is_empty() {
                println!("share {id} has no named recipients");
            }
            for recipient in &share.recipients {
                println!("{}", show(recipient));
            }
        }
        Some(RecipientAction::Add) => {
            let name = needs_name()?;
            let request = veilshare_shared::AddRecipient { name: name.clone() };
            let _: veilshare_shared::RecipientView = client
                .call(
                    client
                        .http
                        .post(format!("{base}/recipients"))
                        .json(&request),
                )
                .await?;
            // Their link exists once their onion service is launched; a moment.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let share: ShareView = client.call(client.http.get(&base)).await?;
                let added = share
                    .recipients
                    .into_iter()
                    .find(|r| r.name.eq_ignore_ascii_case(name.trim()));
                match added {
                    Some(r) if r.link.is_some() || std::time::Instant::now() > deadline => {
                        println!("{}", show(&r));
                        break;
                    }
                    None => {
                        bail!("the recipient was added, then not found: was the share revoked?")
                    }
                    Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
        Some(RecipientAction::Revoke) => {
            let name = needs_name()?;
            let mut url =
                reqwest::Url::parse(&format!("{base}/recipients")).context("bad share id")?;
            url.path_segments_mut()
                .map_err(|()| anyhow::anyhow!("bad API address"))?
                .push(&name);
            let revoked: veilshare_shared::RecipientView =
                client.call(client.http.delete(url)).await?;
            println!(
                "{} is revoked: their link and key no longer reach the share",
                revoked.name
            );
        }
    }
    Ok(())
}

async fn log(data_dir: &Path, id: &str, json: bool) -> Result<()> {
    let client = ApiClient::connect(data_dir)?;
    let log: veilshare_shared::AuditLogView = client
        .call(
            client
                .http
                .get(format!("{}/api/shares/{id}/log", client.base)),
        )
        .await?;
    #[allow(clippy::print_stdout)]
    if json {
        println!("{}", serde_json::to_string_pretty(&log)?);
    } else {
        for entry in &log.entries {
            let at = std::time::UNIX_EPOCH + Duration::from_secs(entry.at);
            let at = humantime::format_rfc3339_seconds(at).to_string();
            let minute = at.get(..16).unwrap_or(&at).replace('T', " ");
            println!("{minute} UTC  {}", entry.event.describe());
        }
        if log.entries.is_empty() {
            println!(
                "(no entries: the share was made before veilshare kept logs, or its log was deleted with its data)"
            );
        }
    }
    if let Some(broken) = &log.broken {
        bail!("this log was changed after it was written: {broken}");
    }
    Ok(())
}

async fn mirror(args: MirrorArgs) -> Result<()> {
    let mut client = ApiClient::connect(&args.data.resolve()?)?;
    // Fetching the source takes as long as it takes.
    client.http = reqwest::Client::builder().no_proxy().build()?;
    let request = veilshare_shared::CreateMirror {
        progress_id: None,
        source: args.source,
        source_key: args.key,
        timeout_secs: Some(args.timeout.as_secs().max(1)),
        fields: args.policy.fields()?,
    };
    eprintln!("fetching the source into veilshare at {}…", client.base);
    let share: ShareView = client
        .call(
            client
                .http
                .post(format!("{}/api/mirrors", client.base))
                .json(&request),
        )
        .await?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "mirror {} is {} ({} files, {}, content {})",
            share.id,
            share.state.label(),
            share.files.len(),
            veilshare_shared::human_size(share.total_size),
            share.content_hash.as_str()
        );
        for link in [&share.links.onion, &share.links.local, &share.links.ticket]
            .into_iter()
            .flatten()
        {
            println!("{link}");
        }
    }
    Ok(())
}

async fn get(args: GetArgs) -> Result<()> {
    let data_dir = args.data.resolve()?;
    let settings = GetSettings {
        sources: args.links,
        link: FetchSettings {
            // Each link's own, filled in per source.
            link: String::new(),
            out_dir: args.output,
            state_dir: crate::app::get::tor_state_dir(&data_dir),
            tor: args.tor.setup(&data_dir)?,
            parallel: args.parallel.map(usize::from),
            quiet: args.quiet,
            patience: args.timeout,
            key: args.key,
            allow_hidden: args.allow_hidden,
            progress: None,
        },
        p2p: args.p2p.config()?,
    };
    let written = crate::app::get::get(&settings).await?;
    #[allow(clippy::print_stdout)]
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

impl ShareArgs {
    fn into_settings(self) -> Result<crate::app::headless::HeadlessSettings> {
        let data_dir = self.data.resolve()?;
        let mut fields = self.policy.fields()?;
        fields.keep_metadata = self.keep_metadata;
        for file in &self.files {
            if !file.is_file() {
                bail!("{} is not a file", file.display());
            }
        }
        if self.no_tor && fields.restricted {
            bail!("--restricted needs Tor: a restricted share is an onion service with a key");
        }
        if self.no_tor && self.public_listen.is_none() && !fields.direct {
            bail!("with --no-tor, give --public-listen or --direct, or nobody can reach the share");
        }
        Ok(crate::app::headless::HeadlessSettings {
            files: self.files,
            fields,
            node: NodeSettings {
                tor_setup: self.tor.setup(&data_dir)?,
                data_dir: data_dir.join("headless"),
                public_listen: self.public_listen,
                tor: !self.no_tor,
                p2p: self.p2p.config()?,
                // Its shares live only as long as its process.
                revoke_leftovers: true,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_that_only_get_or_send_used_is_taken_again_and_a_foreign_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        prepare_data_dir(&data).expect("a new folder");
        std::fs::create_dir(crate::app::get::tor_state_dir(&data)).expect("tor state");
        prepare_data_dir(&data).expect("the folder get and send use");
        let foreign = dir.path().join("home");
        std::fs::create_dir(&foreign).expect("mkdir");
        std::fs::write(foreign.join("notes.txt"), b"mine").expect("write");
        let refused = prepare_data_dir(&foreign).expect_err("someone else's folder");
        assert!(
            refused
                .to_string()
                .contains("not a veilshare data directory")
        );
    }
}
