//! Foundation benchmarks, side by side in one run on a 1 GiB file:
//! - download through veilshare's public listener vs Debian's nginx (sendfile) serving it, with
//!   the in-process `reqwest` client and with curl;
//! - import (upload through the API into the store) vs `b3sum` + `cp`;
//! - peak RSS of the server under 50 concurrent downloads (nginx's worker as the reference).
//!
//! Run with `cargo xtask bench` (it installs nginx, b3sum and curl and builds the release
//! binary).
//! Prints ratios at the end; criterion keeps the details under `<target>/criterion`.

// The results are this program's output.
#![allow(clippy::print_stdout)]

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    Veilshare, cpu_seconds, free_port, median_ns, nginx_workers, peak_rss, settle_writeback,
    start_nginx, write_random_file,
};
use criterion::{Criterion, SamplingMode, Throughput};
use futures::StreamExt;

const SIZE: u64 = 1 << 30;
const CONCURRENT: usize = 50;

async fn upload(http: &reqwest::Client, server: &Veilshare, path: &Path) -> serde_json::Value {
    let file = tokio::fs::File::open(path).await.expect("open");
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), SIZE)
            .file_name("big.bin");
    let form = reqwest::multipart::Form::new().part("files", part);
    let response = http
        .post(format!("{}/api/shares", server.api))
        .bearer_auth(&server.token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 201);
    response.json().await.expect("view")
}

async fn drain(http: &reqwest::Client, url: &str) -> u64 {
    let response = http.get(url).send().await.expect("GET");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let mut stream = response.bytes_stream();
    let mut total = 0;
    while let Some(chunk) = stream.next().await {
        total += chunk.expect("chunk").len() as u64;
    }
    total
}

/// Fetches `url` with curl into /dev/null; the bytes it received.
fn curl_drain(url: &str) -> u64 {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--fail",
            "--noproxy",
            "*",
            "--output",
            "/dev/null",
        ])
        .args(["--write-out", "%{size_download}", url])
        .output()
        .expect("curl is not installed: run `cargo xtask bench`");
    assert!(output.status.success(), "curl {url}: {:?}", output.status);
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("curl's byte count")
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let work = tempfile::Builder::new()
        .prefix("veilshare-bench")
        .tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
        .expect("work dir");
    let files = work.path().join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755));
    }
    let source = files.join("big.bin");
    eprintln!("writing a 1 GiB test file");
    write_random_file(&source, SIZE, 42);

    let data_dir = work.path().join("veilshare");
    let server = Veilshare::start(&data_dir, None);
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let share = runtime.block_on(upload(&http, &server, &source));
    let share_url = format!(
        "{}download",
        share["links"]["local"].as_str().expect("link")
    );
    let nginx_port = free_port();
    let mut nginx = start_nginx(work.path(), &files, nginx_port, "");
    let nginx_url = format!("http://127.0.0.1:{nginx_port}/big.bin");

    let mut cpu_per_gib: Vec<(String, f64)> = Vec::new();
    let mut criterion = Criterion::default()
        .output_directory(&common::target_dir().join("criterion"))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("download_1GiB");
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .measurement_time(Duration::from_secs(15))
            .warm_up_time(Duration::from_secs(2))
            .throughput(Throughput::Bytes(SIZE));
        // Each server's CPU per GiB served, over all the samples of each function (warm-up
        // included: the count of downloads is the bench's own).
        let servers = |name: &str| {
            if name.starts_with("veilshare") {
                vec![server.child.id()]
            } else {
                nginx_workers(work.path())
            }
        };
        let served = std::sync::atomic::AtomicU64::new(0);
        let count = || {
            served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let mut measure = |name: &str, bench: &mut dyn FnMut(&str)| {
            let pids = servers(name);
            let before: f64 = pids.iter().copied().map(cpu_seconds).sum();
            served.store(0, std::sync::atomic::Ordering::Relaxed);
            bench(name);
            let after: f64 = pids.iter().copied().map(cpu_seconds).sum();
            let gib = served.load(std::sync::atomic::Ordering::Relaxed) as f64 * SIZE as f64
                / (1u64 << 30) as f64;
            // A function left out by a filter served nothing: no figure.
            if gib > 0.0 {
                cpu_per_gib.push((name.to_owned(), (after - before) / gib));
            }
        };
        for (name, url) in [("veilshare", &share_url), ("nginx_sendfile", &nginx_url)] {
            measure(name, &mut |name| {
                group.bench_function(name, |b| {
                    b.to_async(&runtime).iter(|| async {
                        assert_eq!(drain(&http, url).await, SIZE);
                        count();
                    })
                });
            });
        }
        // The same two servers with curl as the client: a process of its own with another HTTP
        // stack (the in-process client and curl disagreed on the ratio before).
        for (name, url) in [
            ("veilshare_curl", &share_url),
            ("nginx_sendfile_curl", &nginx_url),
        ] {
            measure(name, &mut |name| {
                group.bench_function(name, |b| {
                    b.iter(|| {
                        assert_eq!(curl_drain(url), SIZE);
                        count();
                    })
                });
            });
        }
        group.finish();
    }
    {
        let mut group = criterion.benchmark_group("import_1GiB");
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .measurement_time(Duration::from_secs(20))
            .warm_up_time(Duration::from_secs(1))
            .throughput(Throughput::Bytes(SIZE));
        let import_source = files.join("import.bin");
        write_random_file(&import_source, SIZE, 7);
        let store_dir = work.path().join("store-only");
        let store = runtime
            .block_on(veilshare::core::store::Store::open(&store_dir))
            .expect("store");
        group.bench_function("veilshare_import_path", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    settle_writeback();
                    let start = Instant::now();
                    let (tag, file) = runtime.block_on(async {
                        let permit = store.import_permit().await.expect("permit");
                        store
                            .import_path(&permit, &import_source, "big.bin".into())
                            .await
                            .expect("import")
                    });
                    total += start.elapsed();
                    assert_eq!(file.size, SIZE);
                    drop(tag);
                    runtime.block_on(store.collect_garbage());
                }
                total
            })
        });
        runtime.block_on(store.shutdown());
        group.bench_function("veilshare_api_upload", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    settle_writeback();
                    let start = Instant::now();
                    let view = runtime.block_on(upload(&http, &server, &import_source));
                    total += start.elapsed();
                    // Revoke and wait for the copy to be collected, outside the timing.
                    let id = view["id"].as_str().expect("id").to_owned();
                    let hash = view["files"][0]["hash"].as_str().expect("hash").to_owned();
                    runtime.block_on(async {
                        http.delete(format!("{}/api/shares/{id}", server.api))
                            .bearer_auth(&server.token)
                            .send()
                            .await
                            .expect("revoke");
                    });
                    let blob = data_dir.join(format!("store/blobs/data/{hash}.data"));
                    while blob.exists() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                total
            })
        });
        let copy = work.path().join("copy.bin");
        group.bench_function("b3sum_plus_cp", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    settle_writeback();
                    let start = Instant::now();
                    let hashed = Command::new("b3sum")
                        .arg(&import_source)
                        .stdout(Stdio::null())
                        .status()
                        .expect("b3sum is not installed: run `cargo xtask bench`");
                    assert!(hashed.success());
                    assert!(
                        Command::new("cp")
                            .arg(&import_source)
                            .arg(&copy)
                            .status()
                            .expect("cp")
                            .success()
                    );
                    total += start.elapsed();
                    let _ = std::fs::remove_file(&copy);
                }
                total
            })
        });
        group.finish();
        let _ = std::fs::remove_file(&import_source);
    }
    criterion.final_summary();

    // Peak memory under 50 concurrent downloads, on a fresh server (peak counters start at 0).
    server.stop();
    let server = Veilshare::start(&data_dir, None);
    let list: serde_json::Value = runtime.block_on(async {
        http.get(format!("{}/api/shares", server.api))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json")
    });
    let share_url = format!(
        "{}download",
        list[0]["links"]["local"].as_str().expect("link")
    );
    let idle_rss = peak_rss(server.child.id());
    let started = Instant::now();
    runtime.block_on(async {
        let downloads = (0..CONCURRENT).map(|_| {
            let http = http.clone();
            let url = share_url.clone();
            tokio::spawn(async move { drain(&http, &url).await })
        });
        for result in futures::future::join_all(downloads).await {
            assert_eq!(result.expect("task"), SIZE);
        }
    });
    let concurrent_secs = started.elapsed().as_secs_f64();
    let veilshare_peak = peak_rss(server.child.id());
    let nginx_worker_peak = common::nginx_worker_peak_rss(work.path());
    server.stop();
    let _ = nginx.kill();
    let _ = nginx.wait();

    let gib_per_s = |ns: f64| SIZE as f64 / (ns / 1e9) / (1u64 << 30) as f64;
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!("\n=== veilshare foundation benchmark (1 GiB, loopback, medians) ===");
    for (client, ours_name, theirs_name) in [
        ("reqwest in-process", "veilshare", "nginx_sendfile"),
        ("curl", "veilshare_curl", "nginx_sendfile_curl"),
    ] {
        if let (Some(ours), Some(nginx)) = (
            median_ns("download_1GiB", ours_name),
            median_ns("download_1GiB", theirs_name),
        ) {
            let cpu = |name: &str| {
                cpu_per_gib
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or("not measured in this run".to_owned(), |(_, cpu)| {
                        format!("{cpu:.2} s")
                    })
            };
            println!(
                "download ({client}): veilshare {:.2} GiB/s, nginx sendfile {:.2} GiB/s, ratio {:.2}x (target >= 1.0x); server CPU per GiB: veilshare {}, nginx {}",
                gib_per_s(ours),
                gib_per_s(nginx),
                nginx / ours,
                cpu(ours_name),
                cpu(theirs_name)
            );
        }
    }
    if let Some(reference) = median_ns("import_1GiB", "b3sum_plus_cp") {
        for (name, what, target) in [
            (
                "veilshare_import_path",
                "import of a local file into the store",
                0.8,
            ),
            (
                "veilshare_api_upload",
                "upload through the local API (HTTP multipart)",
                0.5,
            ),
        ] {
            if let Some(ours) = median_ns("import_1GiB", name) {
                println!(
                    "{what}: {:.2} s ({:.2} GiB/s); b3sum + cp {:.2} s; ratio {:.2}x (target >= {target}x)",
                    ours / 1e9,
                    gib_per_s(ours),
                    reference / 1e9,
                    reference / ours
                );
            }
        }
    }
    println!(
        "peak RSS under {CONCURRENT} concurrent 1 GiB downloads: veilshare {:.1} MiB (idle {:.1} MiB; target < 150 MB), nginx worker {:.1} MiB; {:.1} GiB served in {:.1} s",
        mib(veilshare_peak),
        mib(idle_rss),
        mib(nginx_worker_peak),
        CONCURRENT as f64,
        concurrent_secs
    );
}
