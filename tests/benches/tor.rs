//! Onion-service benchmarks on the private Tor network (`cargo xtask bench tor` starts it),
//! side by side in one run, 100 MiB, median of [`ROUNDS`], rounds interleaved:
//! - time from share creation to live and to the first successful fetch;
//! - `veilshare get` with one stream, and with 4 ranges over separate circuits;
//! - the same with a build without congestion-control negotiation (client and service);
//! - OnionShare (Debian's `onionshare-cli` on C tor, fetched with curl through a C tor client)
//!   as the reference users compare us with;
//! - Tor Browser's path to veilshare: the same curl through the same C tor client, fetching
//!   veilshare's onion service (most recipients open the link in Tor Browser);
//! - the CPU time (user + system, GNU time) of each `veilshare get`, per 100 MiB.
//!
//! Each veilshare fetch uses a fresh client (its own state directory, bootstrap included), as a
//! recipient would; curl goes through an already bootstrapped C tor, which favours OnionShare.

// The results are this program's output.
#![allow(clippy::print_stdout)]

mod common;

use common::{Veilshare, binary, ctor::CTor, median, mib_per_s};
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

const SIZE: usize = 100 << 20;
const ROUNDS: usize = 3;

fn env_path(name: &str) -> PathBuf {
    std::env::var_os(name)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{name} is not set: run `cargo xtask bench tor`"))
}

fn testnet() -> PathBuf {
    env_path("VEILSHARE_TESTNET")
}

/// Runs `veilshare get`; returns the wall time and the CPU seconds (user + system).
fn get(binary: &Path, link: &str, out: &Path, state: &Path, parallel: u16) -> (Duration, f64) {
    let times = out.with_extension("time");
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%U %S", "-o"])
        .arg(&times)
        .arg(binary)
        .args([
            "get",
            link,
            "--quiet",
            "--parallel",
            &parallel.to_string(),
            "-o",
        ])
        .arg(out)
        .arg("--data-dir")
        .arg(state)
        .arg("--tor-config")
        .arg(testnet())
        .env("VEILSHARE_LOG", "error")
        .stdout(Stdio::null())
        .status()
        .expect("veilshare get");
    assert!(status.success(), "veilshare get failed");
    let elapsed = started.elapsed();
    let cpu = std::fs::read_to_string(&times)
        .expect("GNU time's output")
        .split_whitespace()
        .filter_map(|t| t.parse::<f64>().ok())
        .sum();
    (elapsed, cpu)
}

/// Shares `content` on `server` and waits until it is live; returns (onion link, time to live).
fn share(
    runtime: &tokio::runtime::Runtime,
    server: &Veilshare,
    content: &[u8],
) -> (String, Duration) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let created = Instant::now();
    let view: serde_json::Value = runtime.block_on(async {
        let form = reqwest::multipart::Form::new().part(
            "files",
            reqwest::multipart::Part::bytes(content.to_vec()).file_name("big.bin"),
        );
        http.post(format!("{}/api/shares", server.api))
            .bearer_auth(&server.token)
            .multipart(form)
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("view")
    });
    let id = view["id"].as_str().expect("id").to_owned();
    loop {
        let view: serde_json::Value = runtime.block_on(async {
            http.get(format!("{}/api/shares/{id}", server.api))
                .bearer_auth(&server.token)
                .send()
                .await
                .expect("view")
                .json()
                .await
                .expect("json")
        });
        if view["state"] == "live" {
            let onion = view["links"]["onion"].as_str().expect("onion").to_owned();
            return (onion, created.elapsed());
        }
        assert!(
            created.elapsed() < Duration::from_secs(180),
            "not live: {view}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `onionshare-cli` sharing one file through a C tor's control port; stopped on drop.
struct OnionShare {
    child: Child,
    url: String,
    started: Instant,
}

impl OnionShare {
    fn start(work: &Path, tor: &CTor, file: &Path) -> Self {
        let home = work.join("onionshare-home");
        std::fs::create_dir_all(&home).expect("home");
        let config = work.join("onionshare.json");
        let settings = serde_json::json!({
            "connection_type": "control_port",
            "control_port_address": "127.0.0.1",
            "control_port_port": tor.control,
            "socks_address": "127.0.0.1",
            "socks_port": tor.socks,
            "auth_type": "no_auth",
            "auto_connect": false,
        });
        std::fs::write(&config, settings.to_string()).expect("config");
        let started = Instant::now();
        let mut child = Command::new("onionshare-cli")
            .arg("--config")
            .arg(&config)
            .args(["--public", "--no-autostop-sharing"])
            .arg(file)
            // Its gzip copies go under $HOME/.config/onionshare: keep them in the work dir.
            .env("HOME", &home)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("onionshare-cli (Debian package onionshare-cli)");
        let stdout = child.stdout.take().expect("stdout");
        let (found, wait) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let line = line.trim().to_owned();
                if line.starts_with("http://") && line.contains(".onion") {
                    let _ = found.send(line);
                }
            }
        });
        let url = wait
            .recv_timeout(Duration::from_secs(180))
            .expect("onionshare-cli printed no address");
        Self {
            child,
            url,
            started,
        }
    }
}

impl Drop for OnionShare {
    fn drop(&mut self) {
        // It ignores SIGINT when started in the background.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// curl through a C tor's SOCKS port; `None` when the fetch failed.
fn curl(tor: &CTor, url: &str, out: &Path) -> Option<Duration> {
    let started = Instant::now();
    let status = Command::new("curl")
        .args([
            "--silent",
            "--fail",
            "--max-time",
            "600",
            "--socks5-hostname",
        ])
        .arg(format!("127.0.0.1:{}", tor.socks))
        .arg("-o")
        .arg(out)
        .arg(url)
        .status()
        .expect("curl");
    status.success().then(|| started.elapsed())
}

fn main() {
    let work = tempfile::Builder::new()
        .prefix("veilshare-tor-bench")
        .tempdir_in("/var/tmp")
        .expect("work dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let content: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let file = work.path().join("big.bin");
    std::fs::write(&file, &content).expect("content");
    let without = env_path("VEILSHARE_BIN_NO_NEGOTIATION");

    let server = Veilshare::start(&work.path().join("server"), Some(&testnet()));
    let plain = Veilshare::start_binary(&without, &work.path().join("plain"), Some(&testnet()));
    let (onion, live_after) = share(&runtime, &server, &content);
    let created = Instant::now() - live_after;
    let (first, _) = get(
        &binary(),
        &onion,
        &work.path().join("first"),
        &work.path().join("first-client"),
        1,
    );
    let first_fetch_done = created.elapsed();
    let (plain_onion, _) = share(&runtime, &plain, &content);

    let service_tor = CTor::start(
        &work.path().join("ctor-service"),
        &env_path("VEILSHARE_TESTNET_CLIENT_TORRC"),
    );
    let client_tor = CTor::start(
        &work.path().join("ctor-client"),
        &env_path("VEILSHARE_TESTNET_CLIENT_TORRC"),
    );
    let onionshare = OnionShare::start(work.path(), &service_tor, &file);
    let download = format!("{}/download", onionshare.url.trim_end_matches('/'));
    let os_out = work.path().join("onionshare-out.bin");
    let os_first = loop {
        if let Some(elapsed) = curl(&client_tor, &download, &os_out) {
            break (onionshare.started.elapsed(), elapsed);
        }
        assert!(
            onionshare.started.elapsed() < Duration::from_secs(300),
            "OnionShare never answered"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(std::fs::read(&os_out).expect("onionshare file"), content);

    let mut rates: [Vec<f64>; 5] = Default::default();
    let mut cpu: [Vec<f64>; 3] = Default::default();
    let browser_path = format!("{}download", onion);
    let browser_out = work.path().join("browser-path-out.bin");
    for round in 0..ROUNDS {
        let fetches = [
            (&binary(), &onion, 1u16),
            (&binary(), &onion, 4u16),
            (&without, &plain_onion, 1u16),
        ];
        for (index, (bin, link, parallel)) in fetches.into_iter().enumerate() {
            let out = work.path().join(format!("out-{index}-{round}"));
            let state = work.path().join(format!("client-{index}-{round}"));
            let (elapsed, seconds) = get(bin, link, &out, &state, parallel);
            assert_eq!(std::fs::read(out.join("big.bin")).expect("file"), content);
            std::fs::remove_dir_all(&out).expect("clean");
            rates[index].push(mib_per_s(SIZE, elapsed));
            cpu[index].push(seconds * (100 << 20) as f64 / SIZE as f64);
        }
        let _ = std::fs::remove_file(&browser_out);
        let elapsed = curl(&client_tor, &browser_path, &browser_out).expect("veilshare via curl");
        assert_eq!(
            std::fs::read(&browser_out).expect("veilshare file"),
            content
        );
        rates[4].push(mib_per_s(SIZE, elapsed));
        let _ = std::fs::remove_file(&os_out);
        let elapsed = curl(&client_tor, &download, &os_out).expect("OnionShare fetch");
        assert_eq!(std::fs::read(&os_out).expect("onionshare file"), content);
        rates[3].push(mib_per_s(SIZE, elapsed));
    }
    drop(onionshare);
    server.stop();
    plain.stop();

    let [neg_one, neg_four, plain_one, os, browser] = rates.map(median);
    let [cpu_one, cpu_four, cpu_plain] = cpu.map(median);
    println!(
        "\n=== over Tor (private network, 100 MiB, median of {ROUNDS}; veilshare: fresh client each, bootstrap included) ==="
    );
    println!(
        "veilshare: share created -> live {:.2} s; first fetch done {:.1} s after creation ({:.1} s fetch)",
        live_after.as_secs_f64(),
        first_fetch_done.as_secs_f64(),
        first.as_secs_f64()
    );
    println!(
        "OnionShare: started -> first fetch done {:.1} s ({:.1} s fetch)",
        os_first.0.as_secs_f64(),
        os_first.1.as_secs_f64()
    );
    println!("veilshare get, one stream:                 {neg_one:.1} MiB/s");
    println!("veilshare get, 4 parallel circuits:        {neg_four:.1} MiB/s");
    println!("veilshare get, one stream, no negotiation: {plain_one:.1} MiB/s");
    println!("OnionShare 2.6 (C tor) via curl + C tor:   {os:.1} MiB/s");
    println!("veilshare via curl + C tor (Tor Browser's path): {browser:.1} MiB/s");
    println!(
        "CPU of veilshare get per 100 MiB (user + system): one stream {cpu_one:.1} s, 4 circuits {cpu_four:.1} s, no negotiation {cpu_plain:.1} s"
    );
    println!(
        "negotiation on/off: {:.2}x; parallel/single: {:.2}x; veilshare one stream / OnionShare: {:.2}x; veilshare parallel / OnionShare: {:.2}x; Tor Browser's path, veilshare / OnionShare: {:.2}x",
        neg_one / plain_one,
        neg_four / neg_one,
        neg_one / os,
        neg_four / os,
        browser / os
    );
}
