//! `veilshare get` on plain `http://` links: verified downloads, resume, and refusal of
//! hostile manifests (served by a deliberately lying server in the test).

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Server, data};

async fn get(link: &str, out: &Path, state: &Path) -> (bool, String) {
    crate::util::get_cli(link, out, state, false).await
}

#[tokio::test]
async fn get_fetches_every_file_verified_and_resumes_a_partial_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server")).await;
    let big = data(6 << 20, 31);
    let small = b"small".to_vec();
    let view = server
        .create(&[("big.bin", &big), ("small.txt", &small)], &[])
        .await;
    let link = view.links.local.clone().expect("link");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    // Half of big.bin is already here from an interrupted run.
    let part = out.join(format!(".{}.veilshare-part", view.files[0].hash));
    std::fs::write(&part, &big[..3 << 20]).expect("part");
    let (ok, output) = get(&link, &out, &dir.path().join("client")).await;
    assert!(ok, "{output}");
    assert_eq!(std::fs::read(out.join("big.bin")).expect("big"), big);
    assert_eq!(std::fs::read(out.join("small.txt")).expect("small"), small);
    assert!(!part.exists());
    // Only the missing half crossed the wire: 3 MiB + 5 bytes of a 6 MiB + 5 bytes share. The
    // count is recorded just after each response ends: wait until nothing is in flight.
    let view = server
        .wait_view(&view.id, "the transfers to be recorded", |v| {
            v.downloads_in_flight == 0
        })
        .await;
    assert_eq!(
        view.downloads_completed, 0,
        "the resume must not have re-sent the whole file"
    );
    server.stop().await;
}

async fn get_parallel(link: &str, out: &Path, state: &Path, parallel: &str) -> (bool, String) {
    crate::util::get_cli_extra(link, out, state, false, "2m", &["--parallel", parallel]).await
}

/// The chunk of a ranged download's journal (`fetch::CHUNK`).
const CHUNK: usize = 4 << 20;

#[tokio::test]
async fn a_parallel_download_counts_once_under_a_limit_of_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server")).await;
    let content = data(10 << 20, 33);
    let view = server
        .create(&[("film.mkv", &content)], &[("max_downloads", "1")])
        .await;
    let link = view.links.local.clone().expect("link");
    let out = dir.path().join("out");
    let (ok, output) = get_parallel(&link, &out, &dir.path().join("client"), "4").await;
    assert!(
        ok,
        "four ranges of one download must pass a limit of one: {output}"
    );
    assert_eq!(std::fs::read(out.join("film.mkv")).expect("file"), content);
    let view = server
        .wait_view(&view.id, "the download to be counted", |v| {
            v.downloads_in_flight == 0 && v.state.is_ended()
        })
        .await;
    assert_eq!(view.downloads_completed, 1);
    assert_eq!(view.state, veilshare_shared::ShareState::Exhausted);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "part or journal left behind: {leftovers:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_parallel_download_resumes_only_the_chunks_its_journal_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server")).await;
    // Three chunks: 4 MiB, 4 MiB and a short last one.
    let content = data(2 * CHUNK + 123_457, 34);
    let view = server
        .create(&[("archive.tar", &content)], &[("max_downloads", "1")])
        .await;
    let link = view.links.local.clone().expect("link");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    // An interrupted run got the first and the last chunk to disk; the middle one is a hole.
    let hash = &view.files[0].hash;
    let part = out.join(format!(".{hash}.veilshare-part"));
    let journal = out.join(format!(".{hash}.veilshare-ranges"));
    let mut partial = content.clone();
    partial[CHUNK..2 * CHUNK].fill(0);
    std::fs::write(&part, &partial).expect("part");
    std::fs::write(&journal, [1u8, 0, 1]).expect("journal");
    let (ok, output) = get_parallel(&link, &out, &dir.path().join("client"), "4").await;
    assert!(ok, "{output}");
    assert_eq!(
        std::fs::read(out.join("archive.tar")).expect("file"),
        content
    );
    assert!(!part.exists() && !journal.exists());
    // Only the missing chunk crossed the wire: less than one copy, so nothing is counted and
    // the single download the share allows is still there.
    let view = server
        .wait_view(&view.id, "the transfer to be recorded", |v| {
            v.downloads_in_flight == 0
        })
        .await;
    assert_eq!(view.downloads_completed, 0);
    assert_eq!(view.state, veilshare_shared::ShareState::Live);
    server.stop().await;
}

#[tokio::test]
async fn a_journal_that_vouches_for_wrong_bytes_is_caught_and_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server")).await;
    let content = data(2 * CHUNK + 10, 35);
    let view = server.create(&[("data.bin", &content)], &[]).await;
    let link = view.links.local.clone().expect("link");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    let hash = &view.files[0].hash;
    let part = out.join(format!(".{hash}.veilshare-part"));
    let journal = out.join(format!(".{hash}.veilshare-ranges"));
    // The journal claims chunk 0, but a crash (or a disk) left garbage there.
    std::fs::write(&part, vec![0xAAu8; content.len()]).expect("part");
    std::fs::write(&journal, [1u8, 0, 0]).expect("journal");
    let (ok, output) = get_parallel(&link, &out, &dir.path().join("client"), "2").await;
    assert!(!ok, "a wrong chunk slipped through");
    assert!(
        output.contains("does not match its BLAKE3 hash"),
        "{output}"
    );
    assert!(!part.exists() && !journal.exists() && !out.join("data.bin").exists());
    // The next run starts afresh and succeeds.
    let (ok, output) = get_parallel(&link, &out, &dir.path().join("client"), "2").await;
    assert!(ok, "{output}");
    assert_eq!(std::fs::read(out.join("data.bin")).expect("file"), content);
    server.stop().await;
}

/// A server whose manifest lists one file `name` with the hash of `claimed`, and that answers
/// every other request with `body`.
async fn lying_server(name: &str, claimed: &[u8], body: &[u8]) -> String {
    let hash = veilshare_shared::ContentHash::parse(&blake3::hash(claimed).to_hex())
        .expect("a BLAKE3 hash");
    let manifest = serde_json::to_string(&veilshare_shared::Manifest {
        label: None,
        content_hash: hash.clone(),
        total_size: body.len() as u64,
        files: vec![veilshare_shared::ManifestFile {
            name: name.to_owned(),
            size: body.len() as u64,
            blake3: hash,
            path: "files/x".into(),
        }],
        download: "download".into(),
        downloads_remaining: None,
        expires_at: None,
        accepting_downloads: true,
    })
    .expect("json");
    let body = body.to_vec();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let manifest = manifest.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]).into_owned();
                let payload = if request.starts_with("GET /manifest.json") {
                    manifest.into_bytes()
                } else {
                    body
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    payload.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&payload).await;
            });
        }
    });
    format!("http://{addr}/")
}

#[tokio::test]
async fn get_refuses_names_that_would_escape_the_output_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = lying_server("../escaped.txt", b"evil", b"evil").await;
    let out = dir.path().join("out");
    let (ok, output) = get(&link, &out, &dir.path().join("client")).await;
    assert!(!ok);
    assert!(output.contains("refusing"), "{output}");
    assert!(!dir.path().join("escaped.txt").exists());
}

#[tokio::test]
async fn get_rejects_content_that_does_not_match_its_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = lying_server("file.txt", b"good", b"evil").await;
    let out = dir.path().join("out");
    let (ok, output) = get(&link, &out, &dir.path().join("client")).await;
    assert!(!ok);
    assert!(
        output.contains("does not match its BLAKE3 hash"),
        "{output}"
    );
    assert!(
        !out.join("file.txt").exists(),
        "unverified content was put in place"
    );
    let part = format!(".{}.veilshare-part", blake3::hash(b"good").to_hex());
    assert!(!out.join(part).exists());
}

#[tokio::test]
async fn get_handles_the_longest_allowed_file_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server")).await;
    let name = format!("{}.txt", "n".repeat(251));
    assert_eq!(name.len(), veilshare_shared::MAX_FILE_NAME_BYTES);
    let view = server.create(&[(name.as_str(), b"long name")], &[]).await;
    let out = dir.path().join("out");
    let link = view.links.local.clone().expect("link");
    let (ok, output) = get(&link, &out, &dir.path().join("client")).await;
    assert!(ok, "{output}");
    assert_eq!(std::fs::read(out.join(&name)).expect("file"), b"long name");
    server.stop().await;
}

#[tokio::test]
async fn headless_share_prints_a_link_and_exits_when_the_limit_is_reached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("report.pdf");
    let content = data(200_000, 32);
    std::fs::write(&file, &content).expect("write");
    let mut share = crate::util::HeadlessShare::start(
        &[
            "--no-tor",
            "--public-listen",
            "127.0.0.1:0",
            "--max-downloads",
            "1",
        ],
        &dir.path().join("data"),
        &file,
    );
    let link = share.wait_for(crate::util::DEADLINE, "http://").await;
    let out = dir.path().join("out");
    let (ok, output) = get(&link, &out, &dir.path().join("client")).await;
    assert!(ok, "{output}");
    assert_eq!(
        std::fs::read(out.join("report.pdf")).expect("file"),
        content
    );
    let status = tokio::time::timeout(crate::util::DEADLINE, share.child.wait())
        .await
        .expect("veilshare share exits by itself after the last download")
        .expect("status");
    assert!(status.success());
}
