//! Onion-service benchmarks on the private Tor network (`cargo xtask bench tor` starts it),
//! side by side in one run, 100 MiB, median of [`ROUNDS`], rounds interleaved:
//! - time from share creation to live and to the first successful fetch;
//! - Tor Browser's path (most recipients open the link in Tor Browser): curl through a C tor
//!   client fetching veilshare's onion service, against the same curl fetching OnionShare
//!   (Debian's `onionshare-cli` on a C tor), the reference users compare us with;
//! - `veilshare get` with one stream and with 2, 4 and 8 ranges over separate circuits;
//! - one share from 1, 2 and 3 onion sources at once (the sender and two mirrors, each its
//!   own veilshare instance and onion service);
//! - CPU time: of each `veilshare get` (user + system, GNU time), also without a fresh client's
//!   fixed cost (the same `get` of a 1 KiB share: bootstrap, descriptor, circuits), and of the
//!   serving side while curl fetches (veilshare's process against OnionShare's and its tor's).
//!
//! Each veilshare fetch uses a fresh client (its own state directory, bootstrap included), as a
//! recipient would; curl goes through an already bootstrapped C tor, which favours OnionShare.

// The results are this program's output.
#![allow(clippy::print_stdout)]

mod common;

use common::{Veilshare, binary, cpu_seconds, ctor::CTor, median, mib_per_s};
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

const SIZE: usize = 100 << 20;
const ROUNDS: usize = 3;
/// curl fetches of each service per round, each on a circuit of its own: one stream's rate
/// depends on its circuit's path (the same service gave one C tor client 2.0–2.2 MiB/s and
/// another 4.5–6.3 on circuits kept from fetch to fetch), so the Tor Browser rows sample
/// circuits, not one circuit many times.
const BROWSER_FETCHES: usize = 2;
/// The range counts of `veilshare get --parallel` compared with one stream.
const PARALLEL: [u16; 3] = [2, 4, 8];

fn env_path(name: &str) -> PathBuf {
    std::env::var_os(name)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{name} is not set: run `cargo xtask bench tor`"))
}

fn testnet() -> PathBuf {
    env_path("VEILSHARE_TESTNET")
}

/// Runs `veilshare get` on `links` (one share, several sources); returns the wall time and the
/// CPU seconds (user + system).
fn get(links: &[&str], out: &Path, state: &Path, parallel: Option<u16>) -> (Duration, f64) {
    let times = out.with_extension("time");
    let mut command = Command::new("/usr/bin/time");
    command
        .args(["-f", "%U %S", "-o"])
        .arg(&times)
        .arg(binary())
        .arg("get")
        .args(links)
        .args(["--quiet", "-o"])
        .arg(out)
        .arg("--data-dir")
        .arg(state)
        .arg("--tor-config")
        .arg(testnet())
        .env("VEILSHARE_LOG", "error")
        .stdout(Stdio::null());
    if let Some(parallel) = parallel {
        command.args(["--parallel", &parallel.to_string()]);
    }
    let started = Instant::now();
    let status = command.status().expect("veilshare get");
    assert!(status.success(), "veilshare get failed");
    let elapsed = started.elapsed();
    let cpu = std::fs::read_to_string(&times)
        .expect("GNU time's output")
        .split_whitespace()
        .filter_map(|t| t.parse::<f64>().ok())
        .sum();
    (elapsed, cpu)
}

/// The machine's CPU time so far, in USER_HZ ticks: (busy, all). A fetch's share of busy
/// time shows whether the machine (every relay, service and client on its 2 cores) was the
/// limit.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .expect("cpu line")
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().expect("ticks"))
        .collect();
    let all: u64 = ticks.iter().sum();
    // idle and iowait are the 4th and 5th.
    (all - ticks[3] - ticks[4], all)
}

/// The fraction of the machine that was busy since `before` ([`machine_ticks`]).
fn busy_since(before: (u64, u64)) -> f64 {
    let after = machine_ticks();
    (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64
}

/// Shares `content` on `server` and waits until it is live; returns (onion link, time to live).
fn share(
    runtime: &tokio::runtime::Runtime,
    server: &Veilshare,
    name: &str,
    content: &[u8],
) -> (String, Duration) {
    let created = Instant::now();
    let view: serde_json::Value = runtime.block_on(async {
        let form = reqwest::multipart::Form::new().part(
            "files",
            reqwest::multipart::Part::bytes(content.to_vec()).file_name(name.to_owned()),
        );
        http()
            .post(format!("{}/api/shares", server.api))
            .bearer_auth(&server.token)
            .multipart(form)
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("view")
    });
    let onion = wait_live(runtime, server, &view);
    (onion, created.elapsed())
}

/// Makes `server` a mirror of `source` (it fetches the share over Tor and publishes it as its
/// own onion service); returns the mirror's onion link once it is live.
fn mirror(runtime: &tokio::runtime::Runtime, server: &Veilshare, source: &str) -> String {
    let view: serde_json::Value = runtime.block_on(async {
        let response = http()
            .post(format!("{}/api/mirrors", server.api))
            .bearer_auth(&server.token)
            .json(&serde_json::json!({ "source": source }))
            .send()
            .await
            .expect("mirror");
        assert!(
            response.status().is_success(),
            "mirror: {}",
            response.status()
        );
        response.json().await.expect("view")
    });
    wait_live(runtime, server, &view)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Polls the share of `view` on `server` until it is live; returns its onion link.
fn wait_live(
    runtime: &tokio::runtime::Runtime,
    server: &Veilshare,
    view: &serde_json::Value,
) -> String {
    let id = view["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let view: serde_json::Value = runtime.block_on(async {
            http()
                .get(format!("{}/api/shares/{id}", server.api))
                .bearer_auth(&server.token)
                .send()
                .await
                .expect("view")
                .json()
                .await
                .expect("json")
        });
        if view["state"] == "live" {
            return view["links"]["onion"].as_str().expect("onion").to_owned();
        }
        assert!(Instant::now() < deadline, "not live: {view}");
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

/// curl through a C tor's SOCKS port; `None` when the fetch failed. Each `circuit` name is a
/// SOCKS user name, and C tor isolates streams by it (`IsolateSOCKSAuth`, on by default): a
/// new name builds a new rendezvous circuit, as a new Tor Browser tab on a new onion would.
fn curl(tor: &CTor, url: &str, out: &Path, circuit: &str) -> Option<Duration> {
    let started = Instant::now();
    let status = Command::new("curl")
        .args(["--silent", "--fail", "--max-time", "600", "--proxy"])
        .arg(format!("socks5h://{circuit}:x@127.0.0.1:{}", tor.socks))
        .arg("-o")
        .arg(out)
        .arg(url)
        .status()
        .expect("curl");
    status.success().then(|| started.elapsed())
}

/// Per-round figures, one list per line of the report.
#[derive(Default)]
struct Samples {
    /// MiB/s of `veilshare get` with one stream, then with each of [`PARALLEL`].
    get: [Vec<f64>; 1 + PARALLEL.len()],
    /// CPU seconds of the same fetches.
    get_cpu: [Vec<f64>; 1 + PARALLEL.len()],
    /// How busy the machine was during them (0 to 1).
    get_busy: [Vec<f64>; 1 + PARALLEL.len()],
    /// CPU seconds of a fresh client fetching 1 KiB.
    fixed_cpu: Vec<f64>,
    /// MiB/s from 2 and 3 sources (the sender and its mirrors).
    sources: [Vec<f64>; 2],
    /// How busy the machine was during them.
    sources_busy: [Vec<f64>; 2],
    /// MiB/s of curl + C tor from veilshare and from OnionShare.
    browser: [Vec<f64>; 2],
    /// CPU seconds of the serving side during those fetches.
    browser_cpu: [Vec<f64>; 2],
    /// How busy the machine was during them.
    browser_busy: [Vec<f64>; 2],
}

fn main() {
    let work = tempfile::Builder::new()
        .prefix("veilshare-tor-bench")
        .tempdir_in("/var/tmp")
        .expect("work dir");
    let dir = |name: &str| work.path().join(name);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let content: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let file = dir("big.bin");
    std::fs::write(&file, &content).expect("content");

    let server = Veilshare::start(&dir("server"), Some(&testnet()));
    let (onion, live_after) = share(&runtime, &server, "big.bin", &content);
    let created = Instant::now() - live_after;
    let (first, _) = get(&[&onion], &dir("first"), &dir("first-client"), Some(1));
    let first_fetch_done = created.elapsed();
    let (small, _) = share(&runtime, &server, "small.bin", &[7; 1024]);
    let mirrors: Vec<(Veilshare, String)> = (1..=2)
        .map(|n| {
            let node = Veilshare::start(&dir(&format!("mirror-{n}")), Some(&testnet()));
            let link = mirror(&runtime, &node, &onion);
            (node, link)
        })
        .collect();

    let service_tor = CTor::start(
        &dir("ctor-service"),
        &env_path("VEILSHARE_TESTNET_CLIENT_TORRC"),
    );
    let client_tor = CTor::start(
        &dir("ctor-client"),
        &env_path("VEILSHARE_TESTNET_CLIENT_TORRC"),
    );
    let onionshare = OnionShare::start(work.path(), &service_tor, &file);
    let os_download = format!("{}/download", onionshare.url.trim_end_matches('/'));
    let os_out = dir("onionshare-out.bin");
    let os_first = loop {
        if let Some(elapsed) = curl(&client_tor, &os_download, &os_out, "first") {
            break (onionshare.started.elapsed(), elapsed);
        }
        assert!(
            onionshare.started.elapsed() < Duration::from_secs(300),
            "OnionShare never answered"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(std::fs::read(&os_out).expect("onionshare file"), content);

    let mut samples = Samples::default();
    let check = |out: &Path| {
        assert_eq!(std::fs::read(out.join("big.bin")).expect("file"), content);
        std::fs::remove_dir_all(out).expect("clean");
    };
    let vs_download = format!("{onion}download");
    let browser_out = dir("browser-path-out.bin");
    for round in 0..ROUNDS {
        let out = dir(&format!("out-small-{round}"));
        let (_, seconds) = get(
            &[&small],
            &out,
            &dir(&format!("client-small-{round}")),
            None,
        );
        samples.fixed_cpu.push(seconds);

        for (index, parallel) in std::iter::once(1).chain(PARALLEL).enumerate() {
            let out = dir(&format!("out-{parallel}-{round}"));
            let state = dir(&format!("client-{parallel}-{round}"));
            let ticks = machine_ticks();
            let (elapsed, seconds) = get(&[&onion], &out, &state, Some(parallel));
            samples.get_busy[index].push(busy_since(ticks));
            check(&out);
            samples.get[index].push(mib_per_s(SIZE, elapsed));
            samples.get_cpu[index].push(seconds);
        }

        for count in [2, 3] {
            let links: Vec<&str> = std::iter::once(onion.as_str())
                .chain(mirrors.iter().map(|(_, link)| link.as_str()))
                .take(count)
                .collect();
            let out = dir(&format!("out-sources-{count}-{round}"));
            let state = dir(&format!("client-sources-{count}-{round}"));
            let ticks = machine_ticks();
            let (elapsed, _) = get(&links, &out, &state, None);
            samples.sources_busy[count - 2].push(busy_since(ticks));
            check(&out);
            samples.sources[count - 2].push(mib_per_s(SIZE, elapsed));
        }

        let servers: [(&str, &Path, Vec<u32>); 2] = [
            (&vs_download, &browser_out, vec![server.child.id()]),
            (
                &os_download,
                &os_out,
                vec![onionshare.child.id(), service_tor.pid()],
            ),
        ];
        for fetch in 0..BROWSER_FETCHES {
            for (index, (url, out, pids)) in servers.iter().enumerate() {
                let _ = std::fs::remove_file(out);
                let before: f64 = pids.iter().copied().map(cpu_seconds).sum();
                let ticks = machine_ticks();
                let circuit = format!("round-{round}-{fetch}");
                let elapsed = curl(&client_tor, url, out, &circuit).expect("fetch with curl");
                samples.browser_busy[index].push(busy_since(ticks));
                let after: f64 = pids.iter().copied().map(cpu_seconds).sum();
                assert_eq!(std::fs::read(out).expect("fetched file"), content);
                samples.browser[index].push(mib_per_s(SIZE, elapsed));
                samples.browser_cpu[index].push(after - before);
            }
        }
    }
    drop(onionshare);
    server.stop();
    for (node, _) in mirrors {
        node.stop();
    }
    report(&samples, live_after, first_fetch_done, first, os_first);
}

fn report(
    samples: &Samples,
    live_after: Duration,
    first_fetch_done: Duration,
    first: Duration,
    os_first: (Duration, Duration),
) {
    let spread = |values: &[f64]| {
        let (low, high) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        format!("{:.2} ({low:.2}-{high:.2})", median(values.to_vec()))
    };
    let m = |values: &[f64]| median(values.to_vec());
    println!(
        "\n=== over Tor (private network, 100 MiB, median (min-max) of {ROUNDS} rounds; veilshare get: fresh client each, bootstrap included; curl: {BROWSER_FETCHES} fetches a round, a new circuit each) ==="
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
    let [vs_browser, os] = &samples.browser;
    let [vs_busy, os_busy] = &samples.browser_busy;
    println!(
        "Tor Browser's path (curl + C tor), MiB/s: veilshare {} (machine {:.0} % busy), OnionShare 2.6 {} ({:.0} % busy)",
        spread(vs_browser),
        100.0 * m(vs_busy),
        spread(os),
        100.0 * m(os_busy)
    );
    let fixed = m(&samples.fixed_cpu);
    println!(
        "veilshare get, a fresh client's fixed CPU (1 KiB share): {}",
        spread(&samples.fixed_cpu)
    );
    for (index, parallel) in std::iter::once(1).chain(PARALLEL).enumerate() {
        let cpu = m(&samples.get_cpu[index]);
        println!(
            "veilshare get --parallel {parallel}: {} MiB/s, {:.2}x OnionShare; CPU {cpu:.2} s per 100 MiB, {:.2} s without the fixed cost; machine {:.0} % busy",
            spread(&samples.get[index]),
            m(&samples.get[index]) / m(os),
            cpu - fixed,
            100.0 * m(&samples.get_busy[index])
        );
    }
    let four = 1 + PARALLEL
        .iter()
        .position(|p| *p == 4)
        .expect("4 in PARALLEL");
    let one = m(&samples.get[four]);
    for (index, count) in [2, 3].into_iter().enumerate() {
        println!(
            "{count} sources (sender + {} mirror(s)): {} MiB/s, {:.2}x one source (get --parallel 4); machine {:.0} % busy",
            count - 1,
            spread(&samples.sources[index]),
            m(&samples.sources[index]) / one,
            100.0 * m(&samples.sources_busy[index])
        );
    }
    let [vs_cpu, os_cpu] = &samples.browser_cpu;
    println!(
        "serving 100 MiB to curl + C tor, CPU s: veilshare (Arti onion service) {}, OnionShare + its C tor {}",
        spread(vs_cpu),
        spread(os_cpu)
    );
    println!(
        "Tor Browser's path, veilshare / OnionShare: {:.2}x; get one stream / OnionShare: {:.2}x",
        m(vs_browser) / m(os),
        m(&samples.get[0]) / m(os)
    );
}
