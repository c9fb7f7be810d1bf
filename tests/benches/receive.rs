//! Receiving benchmark (issue 12), side by side in one run: a 1 GiB upload through a drop box's
//! form on veilshare's plain public listener — stored as received, and encrypted to an age
//! recipient as it arrives — against a reference that receives an upload and hashes it:
//! Debian's nginx taking a WebDAV `PUT` of the same file, followed by `b3sum` of what it wrote
//! (a drop box hashes every file with BLAKE3 as it arrives, and the uploader is shown it).
//! Peak RSS of each receiver is reported next to its time.
//!
//! Run with `cargo xtask bench receive` (it installs nginx and b3sum and builds the release
//! binary). Criterion keeps the details under `<target>/criterion`.

// The results are this program's output.
#![allow(clippy::print_stdout)]

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Veilshare, free_port, median_ns, peak_rss, start_nginx, write_random_file};
use criterion::{Criterion, SamplingMode, Throughput};

const SIZE: u64 = 1 << 30;
const GROUP: &str = "receive_1GiB";

/// The group every variant runs in: 10 samples of one 1 GiB upload each.
fn group(
    criterion: &mut Criterion,
) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = criterion.benchmark_group(GROUP);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(30))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Bytes(SIZE));
    group
}

/// A drop box on `server` (encrypting to `recipient` when given): (id, public link).
fn create_box(
    runtime: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    server: &Veilshare,
    recipient: Option<&str>,
) -> (String, String) {
    let view: serde_json::Value = runtime.block_on(async {
        http.post(format!("{}/api/dropboxes", server.api))
            .bearer_auth(&server.token)
            .json(&serde_json::json!({ "encrypt_to": recipient }))
            .send()
            .await
            .expect("create a drop box")
            .json()
            .await
            .expect("view")
    });
    (
        view["id"].as_str().expect("id").to_owned(),
        view["links"]["local"].as_str().expect("link").to_owned(),
    )
}

/// Posts `path` through the box's form, as a browser does.
async fn post_form(http: &reqwest::Client, link: &str, path: &Path) {
    let file = tokio::fs::File::open(path).await.expect("open");
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), SIZE)
            .file_name("big.bin");
    let response = http
        .post(link)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 200, "the drop box refused the upload");
}

/// Deletes every item of a box and waits until the store holds none of their data (outside the
/// timing: the next upload starts from an empty store).
fn empty_box(
    runtime: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    server: &Veilshare,
    data_dir: &Path,
    id: &str,
) {
    runtime.block_on(async {
        let view: serde_json::Value = http
            .get(format!("{}/api/shares/{id}", server.api))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("view")
            .json()
            .await
            .expect("json");
        for item in view["dropbox"]["items"].as_array().into_iter().flatten() {
            let item = item["id"].as_str().expect("item id");
            http.delete(format!("{}/api/shares/{id}/items/{item}", server.api))
                .bearer_auth(&server.token)
                .send()
                .await
                .expect("delete item");
        }
    });
    let blobs = data_dir.join("store/blobs/data");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&blobs).is_ok_and(|mut entries| entries.next().is_some()) {
        assert!(
            Instant::now() < deadline,
            "the deleted uploads stayed in the store"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Times uploads of `source` into a box of a fresh server; returns the server's peak RSS.
fn bench_box(
    criterion: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    work: &Path,
    source: &Path,
    name: &str,
    recipient: Option<&str>,
) -> u64 {
    let data_dir = work.join(name);
    let server = Veilshare::start(&data_dir, None);
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let (id, link) = create_box(runtime, &http, &server, recipient);
    let mut group = group(criterion);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                runtime.block_on(post_form(&http, &link, source));
                total += start.elapsed();
                empty_box(runtime, &http, &server, &data_dir, &id);
            }
            total
        })
    });
    group.finish();
    let peak = peak_rss(server.child.id());
    server.stop();
    peak
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let work = tempfile::Builder::new()
        .prefix("veilshare-bench-receive")
        .tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))
        .expect("work dir");
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755));
    }
    let source = work.path().join("upload.bin");
    eprintln!("writing a 1 GiB test file");
    write_random_file(&source, SIZE, 12);
    let recipient = age::x25519::Identity::generate().to_public().to_string();

    let mut criterion = Criterion::default()
        .output_directory(&common::target_dir().join("criterion"))
        .configure_from_args();
    let plain_peak = bench_box(
        &mut criterion,
        &runtime,
        work.path(),
        &source,
        "veilshare_dropbox",
        None,
    );
    let sealed_peak = bench_box(
        &mut criterion,
        &runtime,
        work.path(),
        &source,
        "veilshare_dropbox_encrypted",
        Some(&recipient),
    );

    // The reference: nginx takes the PUT into its root, then b3sum hashes what it wrote.
    let root = work.path().join("dav");
    std::fs::create_dir_all(&root).expect("dav root");
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777));
    }
    let port = free_port();
    let mut nginx = start_nginx(
        work.path(),
        &root,
        port,
        "dav_methods PUT DELETE; client_max_body_size 0; client_body_buffer_size 1m;",
    );
    let put_url = format!("http://127.0.0.1:{port}/big.bin");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    {
        let mut group = group(&mut criterion);
        group.bench_function("nginx_dav_put_plus_b3sum", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    runtime.block_on(async {
                        let file = tokio::fs::File::open(&source).await.expect("open");
                        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
                        let response = http
                            .put(&put_url)
                            .header("content-length", SIZE)
                            .body(reqwest::Body::wrap_stream(stream))
                            .send()
                            .await
                            .expect("PUT");
                        assert!(response.status().is_success(), "{}", response.status());
                    });
                    let hashed = Command::new("b3sum")
                        .arg(root.join("big.bin"))
                        .stdout(Stdio::null())
                        .status()
                        .expect("b3sum is not installed: run `cargo xtask bench`");
                    assert!(hashed.success());
                    total += start.elapsed();
                    std::fs::remove_file(root.join("big.bin")).expect("remove the PUT file");
                }
                total
            })
        });
        group.finish();
    }
    let nginx_peak = common::nginx_worker_peak_rss(work.path());
    let _ = nginx.kill();
    let _ = nginx.wait();
    criterion.final_summary();

    let secs = |ns: f64| ns / 1e9;
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!("\n=== veilshare receiving benchmark (1 GiB upload, loopback, medians) ===");
    let reference = median_ns(GROUP, "nginx_dav_put_plus_b3sum");
    if let Some(reference) = reference {
        println!(
            "reference: nginx WebDAV PUT + b3sum {:.2} s, nginx worker peak RSS {:.1} MiB",
            secs(reference),
            mib(nginx_peak)
        );
    }
    for (name, what, peak) in [
        (
            "veilshare_dropbox",
            "drop box, stored as received",
            plain_peak,
        ),
        (
            "veilshare_dropbox_encrypted",
            "drop box, encrypted to an age recipient",
            sealed_peak,
        ),
    ] {
        if let Some(ours) = median_ns(GROUP, name) {
            let ratio = reference.map_or(String::new(), |r| format!("; ratio {:.2}x", r / ours));
            println!(
                "{what}: {:.2} s ({:.2} GiB/s), peak RSS {:.1} MiB{ratio}",
                secs(ours),
                SIZE as f64 / secs(ours) / (1u64 << 30) as f64,
                mib(peak)
            );
        }
    }
}
