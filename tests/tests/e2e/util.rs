//! Helpers shared by the end-to-end tests: start a real `veilshare serve` on loopback, talk to
//! its API, wait on conditions with deadlines.

#![allow(dead_code)]

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::process::{Child, Command};
use veilshare_shared::ShareView;

/// How long a condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Path of the `veilshare` binary built next to this test binary (or `VEILSHARE_BIN`).
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("VEILSHARE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("veilshare");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo xtask test` (it builds the binary first)",
        bin.display()
    );
    bin
}

/// Polls `check` until it returns `Some`, or fails after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, check).await
}

/// [`eventually`] with its own deadline.
pub async fn eventually_within<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Arguments that keep direct (iroh) transfers on 127.0.0.1, with no relay and no discovery.
pub const IROH_LOOPBACK: [&str; 3] = ["--no-iroh-relay", "--iroh-bind", "127.0.0.1:0"];

/// A running `veilshare serve`. Dropping it (a test that ended or panicked) kills the
/// process, and under a wrapper (strace) the veilshare process itself, which a killed tracer
/// would otherwise leave running.
pub struct Server {
    pub child: Child,
    /// The veilshare process (not the wrapper's).
    pub pid: u32,
    pub data_dir: PathBuf,
    pub api: String,
    pub public: String,
    pub public_port: u16,
    pub token: String,
    pub http: reqwest::Client,
    pub stderr_log: PathBuf,
    pub stdout_log: PathBuf,
}

impl Server {
    /// Starts a server with its data in `data_dir`; its listeners take ports the system
    /// chooses, and report them in `instance.json`.
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_on(data_dir, 0).await
    }

    /// Starts a server whose public listener uses `public_port` (0: any; a test that restarts
    /// a server gives the port the first run had, so that its links stay the same).
    pub async fn start_on(data_dir: &Path, public_port: u16) -> Self {
        Self::start_with(data_dir, public_port, None).await
    }

    /// Starts a server with Tor on, pointed at the private test network.
    pub async fn start_tor(data_dir: &Path) -> Self {
        Self::start_with(data_dir, 0, Some(testnet_config())).await
    }

    /// Starts a server; with `tor_config`, Tor is on and uses that Arti TOML.
    pub async fn start_with(
        data_dir: &Path,
        public_port: u16,
        tor_config: Option<PathBuf>,
    ) -> Self {
        Self::start_wrapped(data_dir, public_port, tor_config, &[]).await
    }

    /// [`Server::start_tor`] with more environment variables.
    pub async fn start_tor_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::launch(data_dir, 0, Some(testnet_config()), &[], env).await
    }

    /// [`Server::start`] with more environment variables.
    pub async fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::launch(data_dir, 0, None, &[], env).await
    }

    /// [`Server::start_with_env`] for a process that may die while it starts (a crash point
    /// passed at start): `None` then, with the log of the run.
    pub async fn try_start_with_env(
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> std::result::Result<Self, String> {
        Self::launch_or_died(data_dir, 0, None, &[], env).await
    }

    /// [`Server::start_with`], run under `wrapper` (a program and its arguments, e.g. strace).
    pub async fn start_wrapped(
        data_dir: &Path,
        public_port: u16,
        tor_config: Option<PathBuf>,
        wrapper: &[&str],
    ) -> Self {
        Self::launch(data_dir, public_port, tor_config, wrapper, &[]).await
    }

    async fn launch(
        data_dir: &Path,
        public_port: u16,
        tor_config: Option<PathBuf>,
        wrapper: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        match Self::launch_or_died(data_dir, public_port, tor_config, wrapper, env).await {
            Ok(server) => server,
            Err(log) => panic!("veilshare exited while starting:\n{log}"),
        }
    }

    async fn launch_or_died(
        data_dir: &Path,
        public_port: u16,
        tor_config: Option<PathBuf>,
        wrapper: &[&str],
        env: &[(&str, &str)],
    ) -> std::result::Result<Self, String> {
        let instance = data_dir.join("instance.json");
        let _ = std::fs::remove_file(&instance);
        std::fs::create_dir_all(data_dir).expect("data dir");
        let stderr_log = data_dir.with_extension(format!("{}.log", rand::random::<u32>()));
        let log = std::fs::File::create(&stderr_log).expect("log file");
        let stdout_log = stderr_log.with_extension("out");
        let out = std::fs::File::create(&stdout_log).expect("output file");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary());
                command
            }
            None => Command::new(binary()),
        };
        command.args(["serve", "--no-browser", "--listen", "127.0.0.1:0"]);
        match &tor_config {
            Some(config) => {
                command.arg("--tor-config").arg(config);
            }
            None => {
                command.arg("--no-tor");
            }
        }
        // Direct sharing stays on loopback, without relays or discovery.
        command.args(IROH_LOOPBACK);
        let mut child = command
            .arg("--public-listen")
            .arg(format!("127.0.0.1:{public_port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .env("VEILSHARE_LOG", "info,veilshare=debug")
            .envs(env.iter().copied())
            .stdout(out)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start veilshare");
        let started = std::time::Instant::now();
        let info: Value = loop {
            if let Some(info) = std::fs::read_to_string(&instance)
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())
            {
                break info;
            }
            if child.try_wait().ok().flatten().is_some() {
                return Err(std::fs::read_to_string(&stderr_log).unwrap_or_default());
            }
            assert!(
                started.elapsed() < DEADLINE,
                "timed out waiting for the server to write instance.json"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let api = info["api"].as_str().expect("api").to_owned();
        let public = info["public"].as_str().expect("public").to_owned();
        let public_port = public
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("public port");
        let pid = info["pid"]
            .as_u64()
            .and_then(|pid| u32::try_from(pid).ok())
            .expect("pid");
        let token = std::fs::read_to_string(data_dir.join("api-token"))
            .expect("token")
            .trim()
            .to_owned();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        Ok(Self {
            child,
            pid,
            data_dir: data_dir.to_owned(),
            api,
            public,
            public_port,
            token,
            http,
            stderr_log,
            stdout_log,
        })
    }

    /// An authenticated API request.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token)
    }

    /// Creates a share from (name, bytes) files and form fields; returns the raw response.
    pub async fn create_raw(
        &self,
        files: &[(&str, &[u8])],
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        self.try_create_raw(files, fields)
            .await
            .expect("POST /api/shares")
    }

    /// [`Server::create_raw`] that tells a failed request (the server is gone) instead of
    /// panicking.
    pub async fn try_create_raw(
        &self,
        files: &[(&str, &[u8])],
        fields: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::Response> {
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        for (name, data) in files {
            let part = reqwest::multipart::Part::bytes(data.to_vec()).file_name(name.to_string());
            form = form.part("files", part);
        }
        self.api(reqwest::Method::POST, "/api/shares")
            .multipart(form)
            .send()
            .await
    }

    /// Creates a share and returns its view.
    pub async fn create(&self, files: &[(&str, &[u8])], fields: &[(&str, &str)]) -> ShareView {
        let response = self.create_raw(files, fields).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 201, "create failed: {text}");
        serde_json::from_str(&text).expect("share view")
    }

    /// What a drop box holds now.
    pub async fn items(
        &self,
        id: &veilshare_shared::ShareId,
    ) -> Vec<veilshare_shared::ReceivedItem> {
        self.view(id).await.dropbox.expect("a drop box").items
    }

    /// The current view of a share.
    pub async fn view(&self, id: &veilshare_shared::ShareId) -> ShareView {
        self.api(reqwest::Method::GET, &format!("/api/shares/{id}"))
            .send()
            .await
            .expect("GET share")
            .json()
            .await
            .expect("share view")
    }

    /// `GET /api/status` as JSON.
    pub async fn status(&self) -> Value {
        self.api(reqwest::Method::GET, "/api/status")
            .send()
            .await
            .expect("GET status")
            .json()
            .await
            .expect("status")
    }

    /// All shares.
    pub async fn list(&self) -> Vec<ShareView> {
        self.api(reqwest::Method::GET, "/api/shares")
            .send()
            .await
            .expect("GET shares")
            .json()
            .await
            .expect("share list")
    }

    /// Waits until a share's view satisfies `pred`.
    pub async fn wait_view(
        &self,
        id: &veilshare_shared::ShareId,
        what: &str,
        pred: impl Fn(&ShareView) -> bool,
    ) -> ShareView {
        eventually(what, || async {
            let view = self.view(id).await;
            pred(&view).then_some(view)
        })
        .await
    }

    /// Stops the server with SIGTERM (to veilshare itself, not a wrapper) and waits for it.
    pub async fn stop(mut self) {
        signal(self.pid, "-TERM");
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
    }

    /// Kills the server with SIGKILL.
    pub async fn kill9(mut self) {
        signal(self.pid, "-KILL");
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Files in the blob store's data folder (large blobs live there).
    pub fn stored_blob_files(&self) -> Vec<String> {
        list_dir(&self.data_dir.join("store/blobs/data"))
    }

    /// Waits until the blob store's data folder holds exactly `expected` (`<hash>.data`,
    /// any order; the collector runs in the background), or panics after 30 s with `what`.
    pub async fn wait_stored_blobs(&self, expected: &[String], what: &str) {
        let mut expected = expected.to_vec();
        expected.sort();
        expected.dedup();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut stored = self.stored_blob_files();
            stored.sort();
            if stored == expected {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: data on disk {stored:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A file a drop box received, as its owner gets it: the status and the bytes.
    pub async fn item_file(
        &self,
        id: &veilshare_shared::ShareId,
        item: &str,
        name: &str,
    ) -> (u16, Vec<u8>) {
        let response = self
            .api(
                reqwest::Method::GET,
                &format!("/api/shares/{id}/items/{item}/files/{name}"),
            )
            .send()
            .await
            .expect("GET item file");
        let status = response.status().as_u16();
        (status, response.bytes().await.expect("bytes").to_vec())
    }

    /// Files in the blob store's temp folder.
    pub fn temp_files(&self) -> Vec<String> {
        list_dir(&self.data_dir.join("store/blobs/temp"))
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The launch URL the server printed on its standard output.
    pub async fn launch_url(&self) -> String {
        eventually("the launch URL", || async {
            let out = std::fs::read_to_string(&self.stdout_log).ok()?;
            launch_url_in(&out)
        })
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.pid, "-KILL");
            let _ = self.child.start_kill();
        }
    }
}

/// Sends `signal` (`-TERM`, `-KILL`, `-INT`) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn list_dir(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Downloads a URL completely; returns (status, body).
pub async fn fetch(http: &reqwest::Client, url: &str) -> Result<(u16, Vec<u8>)> {
    let response = http.get(url).send().await.context("GET")?;
    let status = response.status().as_u16();
    let body = response.bytes().await.context("body")?;
    Ok((status, body.to_vec()))
}

/// A running `veilshare share`, and the lines it prints.
pub struct HeadlessShare {
    pub child: Child,
    pub lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl HeadlessShare {
    /// Starts `veilshare share ARGS… --data-dir DATA FILE` (killed when dropped).
    pub fn start(args: &[&str], data_dir: &Path, file: &Path) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = Command::new(binary())
            .arg("share")
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .arg(file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("veilshare share");
        let stdout = child.stdout.take().expect("stdout");
        let lines = tokio::io::BufReader::new(stdout).lines();
        Self { child, lines }
    }

    /// The first printed word that starts with `prefix` (a link, a ticket), within `deadline`.
    pub async fn wait_for(&mut self, deadline: Duration, prefix: &str) -> String {
        tokio::time::timeout(deadline, async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                if let Some(word) = line.split_whitespace().find(|w| w.starts_with(prefix)) {
                    return word.to_owned();
                }
            }
            panic!("veilshare share ended without printing a word starting with {prefix:?}");
        })
        .await
        .expect("veilshare share printed it in time")
    }
}

/// The names in a folder, sorted, hidden ones (partial downloads) included; none when the
/// folder does not exist.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The launch URL in what `veilshare serve` printed (`… Open <url>`).
pub fn launch_url_in(output: &str) -> Option<String> {
    let (_, rest) = output.split_once(" Open ")?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// Runs `veilshare` with arguments and returns (success, stdout, stderr).
pub async fn run_cli(args: &[&str]) -> Result<(bool, String, String)> {
    let output = Command::new(binary())
        .args(args)
        .kill_on_drop(true)
        .output()
        .await?;
    if output.status.code().is_none() {
        bail!("veilshare was killed by a signal");
    }
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// The arguments that run a program under strace, following its threads and children, with
/// the system calls `calls` written to `log`.
pub fn strace_wrapper(log: &Path, calls: &str) -> Vec<String> {
    ["strace", "-f", "-qq", "-e"]
        .into_iter()
        .map(str::to_owned)
        .chain([format!("trace={calls}"), "-o".to_owned()])
        .chain([log.to_string_lossy().into_owned()])
        .collect()
}

/// The Arti TOML of the private Tor network (`cargo xtask testnet up` writes it; `cargo xtask
/// test` starts the network and sets `VEILSHARE_TESTNET`).
pub fn testnet_config() -> PathBuf {
    let path = std::env::var_os("VEILSHARE_TESTNET")
        .map(PathBuf::from)
        .expect("VEILSHARE_TESTNET is not set: run the tests with `cargo xtask test`, which starts the private Tor network");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask testnet up`",
        path.display()
    );
    path
}

/// Runs `veilshare get LINK -o OUT --data-dir STATE --quiet` (with the test network's Arti
/// config when `tor`); returns (success, stdout + stderr).
pub async fn get_cli(link: &str, out: &Path, state: &Path, tor: bool) -> (bool, String) {
    get_cli_with(link, out, state, tor, "2m").await
}

/// [`get_cli`] with `--timeout`: how long the client keeps trying to reach the share.
pub async fn get_cli_with(
    link: &str,
    out: &Path,
    state: &Path,
    tor: bool,
    timeout: &str,
) -> (bool, String) {
    get_cli_extra(link, out, state, tor, timeout, &[]).await
}

/// [`get_cli_with`] with more arguments for `veilshare get`.
pub async fn get_cli_extra(
    link: &str,
    out: &Path,
    state: &Path,
    tor: bool,
    timeout: &str,
    extra: &[&str],
) -> (bool, String) {
    let mut args = vec![
        "get".to_owned(),
        "--timeout".to_owned(),
        timeout.to_owned(),
        link.to_owned(),
        "-o".to_owned(),
        out.to_string_lossy().into_owned(),
        "--data-dir".to_owned(),
        state.to_string_lossy().into_owned(),
        "--quiet".to_owned(),
    ];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    if tor {
        args.push("--tor-config".to_owned());
        args.push(testnet_config().to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = run_cli(&args).await.expect("veilshare get");
    (ok, format!("{stdout}{stderr}"))
}

/// A Tor client setup for the private network (no bridges).
pub fn testnet_setup() -> veilshare::transport::tor::TorSetup {
    veilshare::transport::tor::TorSetup {
        config_file: Some(testnet_config()),
        ..Default::default()
    }
}

/// The app's event socket (`GET /api/events`), open.
pub async fn event_socket(
    server: &Server,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{}/api/events", server.api.replace("http://", "ws://"))
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", server.token).parse().expect("header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("connect")
        .0
}
