//! Onion-service benchmarks on the private Tor network (`cargo xtask bench tor` starts it):
//! time from share creation to the first successful fetch, and the throughput of a 100 MiB
//! `veilshare get` with one stream and with parallel ranges over separate circuits, side by
//! side in one run. Each fetch uses a fresh client (its own state directory), as a recipient
//! would.

// The results are this program's output.
#![allow(clippy::print_stdout)]

mod common;

use common::{Veilshare, binary};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const SIZE: usize = 100 << 20;
const ROUNDS: usize = 3;

fn testnet() -> PathBuf {
    std::env::var_os("VEILSHARE_TESTNET")
        .map(PathBuf::from)
        .expect("VEILSHARE_TESTNET is not set: run `cargo xtask bench tor`")
}

fn get(link: &str, out: &Path, state: &Path, parallel: u16) -> Duration {
    let started = Instant::now();
    let status = Command::new(binary())
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
    started.elapsed()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let work = tempfile::Builder::new()
        .prefix("veilshare-tor-bench")
        .tempdir_in("/var/tmp")
        .expect("work dir");
    let data_dir = work.path().join("server");
    let server = Veilshare::start(&data_dir, Some(&testnet()));
    let api = server.api.clone();
    let token = server.token.clone();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let content: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();

    let created = Instant::now();
    let view: serde_json::Value = runtime.block_on(async {
        let form = reqwest::multipart::Form::new().part(
            "files",
            reqwest::multipart::Part::bytes(content.clone()).file_name("big.bin"),
        );
        http.post(format!("{api}/api/shares"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("view")
    });
    let id = view["id"].as_str().expect("id").to_owned();
    let onion = loop {
        let view: serde_json::Value = runtime.block_on(async {
            http.get(format!("{api}/api/shares/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("view")
                .json()
                .await
                .expect("json")
        });
        if view["state"] == "live" {
            break view["links"]["onion"].as_str().expect("onion").to_owned();
        }
        assert!(
            created.elapsed() < Duration::from_secs(180),
            "not live: {view}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let live_after = created.elapsed();

    let mut results = Vec::new();
    for (label, parallel) in [("one stream", 1u16), ("4 parallel circuits", 4u16)] {
        let mut rates = Vec::new();
        for round in 0..ROUNDS {
            let out = work.path().join(format!("out-{parallel}-{round}"));
            let state = work.path().join(format!("client-{parallel}-{round}"));
            let elapsed = get(&onion, &out, &state, parallel);
            assert_eq!(std::fs::read(out.join("big.bin")).expect("file"), content);
            if results.is_empty() && round == 0 && parallel == 1 {
                println!(
                    "first fetch done {:.1} s after the share was created (live after {:.2} s)",
                    (created.elapsed()).as_secs_f64(),
                    live_after.as_secs_f64()
                );
            }
            rates.push(SIZE as f64 / (1 << 20) as f64 / elapsed.as_secs_f64());
        }
        results.push((label, median(rates)));
    }
    server.stop();
    println!(
        "\n=== veilshare over Tor (private network, 100 MiB, fresh client each, median of {ROUNDS}, including client bootstrap) ==="
    );
    println!("share created -> live: {:.2} s", live_after.as_secs_f64());
    for (label, rate) in &results {
        println!("veilshare get, {label}: {rate:.1} MiB/s");
    }
    if let [(_, one), (_, many)] = results.as_slice() {
        println!("parallel / single: {:.2}x", many / one);
    }
}
