//! The foundation end to end: real `veilshare serve` processes on loopback, real HTTP clients,
//! real files on disk.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use veilshare_shared::{ApiError, ShareState};

use crate::util::{Server, data, eventually, fetch, launch_url_in, run_cli};

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[tokio::test]
async fn share_is_created_through_the_api_and_downloaded_byte_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let big = data(3 << 20, 1);
    let small = b"hello, world\n".to_vec();
    let view = server
        .create(
            &[("report final.pdf", &big), ("naïve – 文件.txt", &small)],
            &[("label", "For Ana <3"), ("max_downloads", "5")],
        )
        .await;
    assert_eq!(view.state, ShareState::Live);
    assert_eq!(view.files[0].hash.as_str(), blake3_hex(&big));
    assert_eq!(view.files[1].hash.as_str(), blake3_hex(&small));
    assert_eq!(view.total_size, (big.len() + small.len()) as u64);
    let link = view.links.local.clone().expect("local link");
    assert!(link.starts_with(&server.public) && link.ends_with(&format!("/s/{}/", view.id)));

    // The page works without JavaScript, escapes the label, and carries the headers.
    let page = server.http.get(&link).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.expect("html");
    assert!(html.contains("For Ana &lt;3"), "label not escaped");
    assert!(
        !html.contains("<script"),
        "public page must not need JavaScript"
    );
    assert!(html.contains(&blake3_hex(&big)));
    assert!(html.contains("files/na%C3%AFve%20%E2%80%93%20%E6%96%87%E4%BB%B6.txt"));

    // The manifest lists the files with their hashes.
    let manifest: serde_json::Value = server
        .http
        .get(format!("{link}manifest.json"))
        .send()
        .await
        .expect("manifest")
        .json()
        .await
        .expect("json");
    assert_eq!(manifest["files"][0]["blake3"], blake3_hex(&big));
    assert_eq!(manifest["downloads_remaining"], 5);

    // One file, with its Unicode name in Content-Disposition.
    let response = server
        .http
        .get(format!(
            "{link}{}",
            manifest["files"][1]["path"].as_str().expect("path")
        ))
        .send()
        .await
        .expect("file");
    let disposition = response.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        disposition.contains("filename*=UTF-8''na%C3%AFve%20%E2%80%93%20%E6%96%87%E4%BB%B6.txt"),
        "{disposition}"
    );
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        small.as_slice()
    );

    // Everything, as a zip that a standard reader accepts (CRCs checked).
    let (status, zip_bytes) = fetch(&server.http, &format!("{link}download"))
        .await
        .expect("zip");
    assert_eq!(status, 200);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).expect("zip");
    let mut first = Vec::new();
    std::io::Read::read_to_end(
        &mut archive.by_name("report final.pdf").expect("entry"),
        &mut first,
    )
    .expect("read");
    assert_eq!(blake3_hex(&first), blake3_hex(&big));
    // The big file's bytes left the plain listener with sendfile (the small one is kept in
    // the store's database, and streamed).
    // A log read through a pipe is plain text: no terminal colour codes around the fields.
    assert!(
        !server.log().contains('\u{1b}'),
        "colour codes in a piped log"
    );
    let sendfile = format!("sendfile={}", big.len());
    eventually("the zip's big file to be sent with sendfile", || async {
        let log = server.log();
        log.lines()
            .filter(|line| line.contains("an answer left with sendfile"))
            .any(|line| line.contains(&sendfile))
            .then_some(())
    })
    .await;

    // HEAD answers with the length and does not count.
    let head = server
        .http
        .head(format!("{link}download"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert!(
        head.headers()[header::ETAG]
            .to_str()
            .expect("etag")
            .starts_with("\"zip")
    );
    // Per-file download (13 bytes) plus one zip: one copy and 13 bytes; HEAD adds nothing.
    let view = server
        .wait_view(&view.id, "the zip download to count", |v| {
            v.downloads_completed == 1 && v.downloads_in_flight == 0
        })
        .await;
    assert_eq!(view.downloads_remaining, Some(4));
    server.stop().await;
}

#[tokio::test]
async fn max_downloads_two_under_ten_concurrent_downloads_gives_exactly_two_copies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let content = data(8 << 20, 2);
    let view = server
        .create(&[("data.bin", &content)], &[("max_downloads", "2")])
        .await;
    let url = format!("{}download", view.links.local.expect("link"));
    let attempts = (0..10).map(|_| {
        let http = server.http.clone();
        let url = url.clone();
        tokio::spawn(async move { fetch(&http, &url).await })
    });
    let results = futures::future::join_all(attempts).await;
    let mut complete = 0;
    for result in results {
        let (status, body) = result.expect("task").expect("request");
        match status {
            200 => {
                assert_eq!(body.len(), content.len(), "a 200 must carry the whole file");
                assert_eq!(blake3_hex(&body), blake3_hex(&content));
                complete += 1;
            }
            429 | 410 => {
                let text = String::from_utf8_lossy(&body);
                assert!(text.contains("<h1>"), "refusals come with a page: {text}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(complete, 2);
    let view = server
        .wait_view(&view.id, "the share to be exhausted and deleted", |v| {
            v.state == ShareState::Exhausted && v.downloads_in_flight == 0
        })
        .await;
    assert_eq!(view.downloads_completed, 2);
    let (status, _) = fetch(&server.http, &url).await.expect("after");
    assert_eq!(status, 410);
    eventually("the stored copy to be deleted", || async {
        server.stored_blob_files().is_empty().then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn interrupted_download_does_not_count_and_resumes_with_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let content = data(64 << 20, 3);
    let view = server
        .create(&[("big.bin", &content)], &[("max_downloads", "1")])
        .await;
    let url = format!("{}download", view.links.local.clone().expect("link"));

    let response = server.http.get(&url).send().await.expect("GET");
    assert_eq!(response.status(), 200);
    let etag = response.headers()[header::ETAG].clone();
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    while received.len() < 16 << 20 {
        received.extend_from_slice(&stream.next().await.expect("more").expect("chunk"));
    }
    drop(stream);
    let view = server
        .wait_view(&view.id, "the interrupted transfer to end", |v| {
            v.downloads_in_flight == 0
        })
        .await;
    assert_eq!(
        view.downloads_completed, 0,
        "an interrupted download must not count"
    );
    assert_eq!(view.state, ShareState::Live);

    let resumed = server
        .http
        .get(&url)
        .header(header::RANGE, format!("bytes={}-", received.len()))
        .header(header::IF_RANGE, etag)
        .send()
        .await
        .expect("resume");
    assert_eq!(resumed.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resumed.headers()[header::CONTENT_RANGE],
        format!(
            "bytes {}-{}/{}",
            received.len(),
            content.len() - 1,
            content.len()
        )
        .as_str()
    );
    received.extend_from_slice(&resumed.bytes().await.expect("rest"));
    assert_eq!(blake3_hex(&received), blake3_hex(&content));
    let view = server
        .wait_view(&view.id, "the download to count", |v| {
            v.downloads_completed == 1
        })
        .await;
    assert_eq!(view.downloads_remaining, Some(0));
    server
        .wait_view(&view.id, "the share to end", |v| {
            v.state == ShareState::Exhausted
        })
        .await;
    server.stop().await;
}

#[tokio::test]
async fn stale_if_range_gets_the_whole_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let content = data(100_000, 4);
    let view = server.create(&[("a.bin", &content)], &[]).await;
    let url = format!("{}download", view.links.local.expect("link"));
    let response = server
        .http
        .get(&url)
        .header(header::RANGE, "bytes=10-")
        .header(header::IF_RANGE, "\"not-the-etag\"")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("body").len(), content.len());
    let response = server
        .http
        .get(&url)
        .header(header::RANGE, "bytes=-10")
        .send()
        .await
        .expect("suffix");
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        &content[content.len() - 10..]
    );
    server.stop().await;
}

#[tokio::test]
async fn conditional_empty_and_many_part_requests_are_answered_right_and_cost_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let content = data(100_000, 5);
    let view = server
        .create(
            &[("a.bin", &content), ("empty.txt", b"")],
            &[("max_downloads", "1")],
        )
        .await;
    let link = view.links.local.clone().expect("link");
    let file = format!("{link}files/a.bin");
    let etag = server
        .http
        .head(&file)
        .send()
        .await
        .expect("HEAD")
        .headers()[header::ETAG]
        .to_str()
        .expect("etag")
        .to_owned();

    // The client has the bytes: 304, nothing sent, nothing counted.
    for tag in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".into(),
    ] {
        let response = server
            .http
            .get(&file)
            .header(header::IF_NONE_MATCH, &tag)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 304, "If-None-Match: {tag}");
        assert!(response.bytes().await.expect("body").is_empty());
    }
    // An empty file has no range to send: the whole of it, empty, and a valid response.
    let response = server
        .http
        .get(format!("{link}files/empty.txt"))
        .header(header::RANGE, "bytes=0-")
        .send()
        .await
        .expect("GET empty");
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.expect("body").is_empty());
    let view = server
        .wait_view(&view.id, "nothing in flight", |v| {
            v.downloads_in_flight == 0
        })
        .await;
    assert_eq!(
        view.downloads_remaining,
        Some(1),
        "a 304 or an empty file counted"
    );

    // 30,000 ranges do not fit in a request head (64 KiB); 4,000 do, and are not checked
    // against each other: the whole is sent.
    let ranges = |n: u32| {
        let list: Vec<String> = (0..n).map(|i| format!("{}-{}", i * 3, i * 3 + 1)).collect();
        format!("bytes={}", list.join(","))
    };
    let response = server
        .http
        .get(&file)
        .header(header::RANGE, ranges(30_000))
        .send()
        .await
        .expect("GET too many");
    assert_eq!(response.status(), 431);
    let response = server
        .http
        .get(&file)
        .header(header::RANGE, ranges(4_000))
        .send()
        .await
        .expect("GET many");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        content.as_slice()
    );

    // Zip entries carry a fixed date, not the sender's clock.
    let two = server
        .create(&[("x.txt", b"x"), ("y.txt", b"y")], &[])
        .await;
    let (status, bytes) = fetch(
        &server.http,
        &format!("{}download", two.links.local.expect("link")),
    )
    .await
    .expect("zip");
    assert_eq!(status, 200);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    for index in 0..archive.len() {
        let entry = archive.by_index(index).expect("entry");
        let date = entry.last_modified().expect("a date");
        assert_eq!(
            (
                date.year(),
                date.month(),
                date.day(),
                date.hour(),
                date.minute()
            ),
            (1980, 1, 1, 0, 0),
            "{} is dated with the sender's clock",
            entry.name()
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn logs_never_carry_a_share_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let once = server
        .create(&[("a.txt", b"secret")], &[("max_downloads", "1")])
        .await;
    let (status, _) = fetch(
        &server.http,
        &format!("{}download", once.links.local.clone().expect("link")),
    )
    .await
    .expect("download");
    assert_eq!(status, 200);
    let revoked = server.create(&[("b.txt", b"other")], &[]).await;
    let response = server
        .api(Method::DELETE, &format!("/api/shares/{}", revoked.id))
        .send()
        .await
        .expect("revoke");
    assert!(response.status().is_success());
    // Positive control: the log does follow these shares (at debug level, as the tests run).
    let log = eventually("both stored copies to be deleted", || async {
        let log = server.log();
        (log.matches("stored copy deleted").count() == 2).then_some(log)
    })
    .await;
    assert_eq!(log.matches("share created").count(), 2, "{log}");
    for view in [&once, &revoked] {
        assert!(
            !log.contains(view.id.as_str()),
            "the log names share {} (the secret of its link):\n{log}",
            view.id
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn expiry_lets_running_transfers_finish_then_revokes_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let content = data(48 << 20, 5);
    let view = server
        .create(&[("slow.bin", &content)], &[("expires_in_secs", "2")])
        .await;
    let url = format!("{}download", view.links.local.clone().expect("link"));
    let response = server.http.get(&url).send().await.expect("GET");
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut received = stream.next().await.expect("first").expect("chunk").to_vec();

    let ended = server
        .wait_view(&view.id, "the share to expire", |v| {
            v.state == ShareState::Expired
        })
        .await;
    assert!(ended.ended_at.is_some());
    let (status, _) = fetch(&server.http, &url).await.expect("after expiry");
    assert_eq!(status, 410, "no new download may start after expiry");
    assert!(
        !server.stored_blob_files().is_empty(),
        "data deleted under a running transfer"
    );

    while let Some(chunk) = stream.next().await {
        received.extend_from_slice(&chunk.expect("the running transfer must finish"));
    }
    assert_eq!(blake3_hex(&received), blake3_hex(&content));
    eventually("the stored copy to be deleted", || async {
        server.stored_blob_files().is_empty().then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn owner_revoke_cuts_running_transfers_and_deletes_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let content = data(64 << 20, 6);
    let view = server.create(&[("x.bin", &content)], &[]).await;
    let url = format!("{}download", view.links.local.clone().expect("link"));
    let response = server.http.get(&url).send().await.expect("GET");
    let mut stream = response.bytes_stream();
    let mut received = stream.next().await.expect("first").expect("chunk").len();

    let (ok, stdout, stderr) = run_cli(&[
        "revoke",
        view.id.as_str(),
        "--data-dir",
        server.data_dir.to_str().expect("utf8"),
    ])
    .await
    .expect("cli");
    assert!(ok, "revoke failed: {stderr}");
    assert!(stdout.contains("revoked"), "{stdout}");

    let mut cut = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => received += bytes.len(),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(
        cut || received < content.len(),
        "a revoked transfer ran to its end"
    );
    let (status, _) = fetch(&server.http, &url).await.expect("after");
    assert_eq!(status, 410);
    eventually("the stored copy to be deleted", || async {
        server.stored_blob_files().is_empty().then_some(())
    })
    .await;
    let view = server.view(&view.id).await;
    assert_eq!(view.state, ShareState::Revoked);
    assert!(view.links.local.is_none());
    server.stop().await;
}

#[tokio::test]
async fn restart_keeps_counts_states_and_links() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let port = server.public_port;
    let content = data(1 << 20, 7);
    let kept = server
        .create(&[("kept.bin", &content)], &[("max_downloads", "3")])
        .await;
    let gone = server.create(&[("gone.bin", b"bye")], &[]).await;
    let link = kept.links.local.clone().expect("link");
    let (status, _) = fetch(&server.http, &format!("{link}download"))
        .await
        .expect("GET");
    assert_eq!(status, 200);
    server
        .wait_view(&kept.id, "the download to count", |v| {
            v.downloads_completed == 1
        })
        .await;
    server
        .api(Method::DELETE, &format!("/api/shares/{}", gone.id))
        .send()
        .await
        .expect("revoke");
    server.stop().await;

    let server = Server::start_on(dir.path(), port).await;
    let after = server.view(&kept.id).await;
    assert_eq!(after.downloads_completed, 1);
    assert_eq!(after.downloads_remaining, Some(2));
    assert_eq!(after.state, ShareState::Live);
    assert_eq!(after.links.local.as_deref(), Some(link.as_str()));
    assert_eq!(server.view(&gone.id).await.state, ShareState::Revoked);
    let (status, body) = fetch(&server.http, &format!("{link}download"))
        .await
        .expect("GET");
    assert_eq!(status, 200);
    assert_eq!(blake3_hex(&body), blake3_hex(&content));
    server
        .wait_view(&kept.id, "the second download to count", |v| {
            v.downloads_completed == 2
        })
        .await;
    server.stop().await;
}

#[tokio::test]
async fn share_that_expired_while_down_is_revoked_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let view = server
        .create(
            &[("soon.bin", &data(200_000, 8))],
            &[("expires_in_secs", "2")],
        )
        .await;
    server.kill9().await;
    // Let the expiry pass while the server is down.
    let expires_at = view.policy.expires_at.expect("expiry");
    eventually("the expiry to pass", || async {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        (now >= expires_at).then_some(())
    })
    .await;
    let server = Server::start(dir.path()).await;
    let view = server
        .wait_view(&view.id, "the share to be expired", |v| {
            v.state == ShareState::Expired
        })
        .await;
    assert!(view.links.local.is_none());
    eventually("the stored copy to be deleted", || async {
        server.stored_blob_files().is_empty().then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_or_refused_upload_keeps_no_data_and_does_not_hold_up_deletion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_env(dir.path(), &[("VEILSHARE_HTTP_IDLE_SECS", "2")]).await;
    let existing = server.create(&[("a.bin", &data(300_000, 12))], &[]).await;
    assert_eq!(server.stored_blob_files().len(), 1);

    // An upload that sends 1 MiB, then nothing.
    let addr = server.api.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let boundary = "XyZ";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"stalled.bin\"\r\n\r\n"
    );
    let request = format!(
        "POST /api/shares HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{head}",
        server.token,
        head.len() + (100 << 20)
    );
    socket.write_all(request.as_bytes()).await.expect("head");
    socket.write_all(&data(1 << 20, 13)).await.expect("body");
    eventually("the upload to hold the import gate", || async {
        server
            .log()
            .contains("the upload holds the import gate")
            .then_some(())
    })
    .await;

    // Revoking a share deletes its data although the upload hangs: the upload is given up.
    let response = server
        .api(Method::DELETE, &format!("/api/shares/{}", existing.id))
        .send()
        .await
        .expect("revoke");
    assert!(response.status().is_success());
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer))
        .await
        .expect("the stalled upload was never answered")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("sent nothing for 2 s"), "{answer}");
    eventually(
        "the revoked share's data and the stalled upload's to go",
        || async { server.stored_blob_files().is_empty().then_some(()) },
    )
    .await;

    // A refused upload leaves nothing behind either.
    let response = server
        .create_raw(&[("big.bin", &data(2 << 20, 14)), ("CON", b"x")], &[])
        .await;
    expect_api_error(response, 400, "device name").await;
    eventually("the refused upload's data to go", || async {
        server.stored_blob_files().is_empty().then_some(())
    })
    .await;

    // A part whose headers never end is refused once they pass 4 MiB, not buffered for ever.
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let endless = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x\"\r\nX-Pad: "
    );
    let padding = vec![b'a'; 6 << 20];
    let request = format!(
        "POST /api/shares HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{endless}",
        server.token,
        endless.len() + padding.len()
    );
    socket.write_all(request.as_bytes()).await.expect("head");
    // The server may answer and close before it read everything.
    let _ = socket.write_all(&padding).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer))
        .await
        .expect("endless part headers were never answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("part headers endless"), "{answer}");
    server.create(&[("again.bin", b"works")], &[]).await;
    server.stop().await;
}

#[tokio::test]
async fn kill_9_in_the_middle_of_an_upload_leaves_no_share_and_a_consistent_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let existing = server.create(&[("keep.bin", &data(300_000, 9))], &[]).await;

    // Stream a large upload by hand and stop feeding it half-way.
    let url = format!("{}/api/shares", server.api);
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("addr")
        .to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let boundary = "XyZ";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"half.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let total = 200 << 20;
    let request = format!(
        "POST /api/shares HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{head}",
        server.token,
        head.len() + total
    );
    socket.write_all(request.as_bytes()).await.expect("headers");
    let chunk = data(1 << 20, 10);
    for _ in 0..40 {
        socket.write_all(&chunk).await.expect("body");
    }
    eventually("the upload to reach the store", || async {
        (!server.temp_files().is_empty()).then_some(())
    })
    .await;
    server.kill9().await;
    drop(socket);

    let server = Server::start(dir.path()).await;
    let shares = server.list().await;
    assert_eq!(shares.len(), 1, "a half-made share became visible");
    assert_eq!(shares[0].id, existing.id);
    assert!(
        server.temp_files().is_empty(),
        "temporary upload files were left behind"
    );
    let kept = vec![format!("{}.data", existing.files[0].hash)];
    eventually("half-imported blobs to be collected", || async {
        (server.stored_blob_files() == kept).then_some(())
    })
    .await;
    let (status, body) = fetch(
        &server.http,
        &format!("{}download", shares[0].links.local.clone().expect("link")),
    )
    .await
    .expect("GET");
    assert_eq!((status, body.len()), (200, 300_000));
    server.create(&[("again.bin", b"works")], &[]).await;
    server.stop().await;
}

async fn expect_api_error(response: reqwest::Response, status: u16, needle: &str) {
    assert_eq!(response.status().as_u16(), status);
    let error: ApiError = response.json().await.expect("JSON error body");
    assert!(
        error.message.contains(needle),
        "message {:?} lacks {needle:?}",
        error.message
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let content = data(50_000, 11);
    let view = server.create(&[("ok.bin", &content)], &[]).await;
    let link = view.links.local.clone().expect("link");

    // Bad ranges.
    for (range, needle) in [("bytes=abc", "malformed"), ("bytes=999999-", "outside")] {
        let response = server
            .http
            .get(format!("{link}download"))
            .header(header::RANGE, range)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 416, "{range}");
        assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes */50000");
        assert!(
            response.text().await.expect("page").contains(needle),
            "{range}"
        );
    }

    // Bad policy values.
    for (field, value, needle) in [
        ("max_downloads", "0", "between 1 and"),
        ("max_downloads", "lots", "whole number"),
        ("expires_in_secs", "-5", "whole number"),
        ("expires_in_secs", "999999999999", "between 1 and"),
        ("direct", "perhaps", "true or false"),
        ("colour", "red", "unknown form field"),
    ] {
        let response = server
            .create_raw(&[("x.bin", b"x")], &[(field, value)])
            .await;
        expect_api_error(response, 400, needle).await;
    }

    // Unknown shares.
    let unknown = "aaaaaaaaaaaaaaaaaaaaaaaaaa";
    let (status, _) = fetch(&server.http, &format!("{}/s/{unknown}/", server.public))
        .await
        .expect("GET");
    assert_eq!(status, 404);
    let (status, _) = fetch(
        &server.http,
        &format!("{}/s/../../etc/passwd", server.public),
    )
    .await
    .expect("GET");
    assert_eq!(status, 404);
    let response = server
        .api(Method::GET, &format!("/api/shares/{unknown}"))
        .send()
        .await
        .expect("GET");
    expect_api_error(response, 404, "no share").await;
    let response = server
        .api(Method::DELETE, "/api/shares/nope")
        .send()
        .await
        .expect("DELETE");
    expect_api_error(response, 404, "not a share id").await;
    let (status, _) = fetch(&server.http, &format!("{link}files/missing.txt"))
        .await
        .expect("GET");
    assert_eq!(status, 404);

    // Path-like, huge, duplicate and missing file names; no files at all.
    let long_name = format!("{}.txt", "n".repeat(300));
    for (files, needle) in [
        (vec![("../../etc/passwd", &b"x"[..])], "looks like a path"),
        (vec![("a\\b.txt", &b"x"[..])], "looks like a path"),
        (vec![("..", &b"x"[..])], "not a file name"),
        (
            vec![(long_name.as_str(), &b"x"[..])],
            "longer than 255 bytes",
        ),
        (
            vec![("same.txt", &b"1"[..]), ("same.txt", &b"2"[..])],
            "two files are named",
        ),
        (
            vec![("Same.txt", &b"1"[..]), ("same.TXT", &b"2"[..])],
            "only in case",
        ),
        (vec![("CON.txt", &b"x"[..])], "device name on Windows"),
        (vec![("a:b.txt", &b"x"[..])], "Windows does not allow"),
        (vec![("notes. ", &b"x"[..])], "ends with a dot or a space"),
        (vec![("invoice\u{202E}fdp.exe", &b"x"[..])], "U+202E"),
    ] {
        let response = server.create_raw(&files, &[]).await;
        expect_api_error(response, 400, needle).await;
    }
    let response = server
        .create_raw(&[], &[("label", "nothing attached")])
        .await;
    expect_api_error(response, 400, "no files").await;

    // Missing and wrong tokens.
    let response = server
        .http
        .get(format!("{}/api/shares", server.api))
        .send()
        .await
        .expect("GET");
    expect_api_error(response, 401, "needs the token").await;
    let response = server
        .http
        .get(format!("{}/api/shares", server.api))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("GET");
    expect_api_error(response, 401, "wrong token").await;

    // A foreign Host (DNS rebinding) is refused, even with the token.
    let response = server
        .api(Method::GET, "/api/shares")
        .header(header::HOST, "attacker.example")
        .send()
        .await
        .expect("GET");
    expect_api_error(response, 403, "127.0.0.1 or localhost").await;

    // A WebSocket from a foreign origin is refused; our own origin is accepted.
    let port = server.api.rsplit(':').next().expect("port").to_owned();
    for (origin, expected) in [
        ("http://attacker.example".to_owned(), 403),
        (format!("http://localhost:{port}"), 101),
    ] {
        let response = server
            .api(Method::GET, "/api/events")
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .header(header::ORIGIN, origin.as_str())
            .send()
            .await
            .expect("upgrade");
        assert_eq!(response.status().as_u16(), expected, "{origin}");
    }

    // An upload bigger than the free disk is refused before a byte is stored.
    let addr = server.api.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let request = format!(
        "POST /api/shares HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n--B\r\n",
        server.token,
        1u64 << 60
    );
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut reply = vec![0u8; 4096];
    let n = socket.read(&mut reply).await.expect("reply");
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 507"), "{reply}");
    assert!(reply.contains("not enough free disk space"), "{reply}");

    // Nothing changed: one share, the same one, still downloadable; only its data is stored.
    let shares = server.list().await;
    assert_eq!(shares.len(), 1);
    assert_eq!(shares[0].id, view.id);
    assert_eq!(shares[0].downloads_completed, 0);
    eventually("refused uploads' blobs to be collected", || async {
        server.temp_files().is_empty().then_some(())
    })
    .await;
    let (status, body) = fetch(&server.http, &format!("{link}download"))
        .await
        .expect("GET");
    assert_eq!((status, body.len()), (200, content.len()));
    server.stop().await;
}

/// Opens `launch`: a session that opens the API, then a refusal when opened again.
async fn assert_launch_works_once(launch: &str, server: &Server) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = http.get(launch).send().await.expect("launch");
    assert_eq!(response.status(), 303, "{launch}");
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_owned();
    let pair = cookie.split(';').next().expect("pair").to_owned();
    let response = http
        .get(format!("{}/api/shares", server.api))
        .header(header::COOKIE, &pair)
        .send()
        .await
        .expect("api");
    assert_eq!(response.status(), 200);
    let again = http.get(launch).send().await.expect("launch again");
    assert_eq!(again.status(), 401, "a launch URL opened twice");
    assert!(again.headers().get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn the_launch_url_carries_no_token_and_works_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let launch = server.launch_url().await;
    // What a browser gets on its command line (`ps`) and keeps in its history.
    assert!(
        !launch.contains(&server.token),
        "the launch URL carries the token: {launch}"
    );
    assert_launch_works_once(&launch, &server).await;
    server.stop().await;
}

#[tokio::test]
async fn launch_url_sets_an_http_only_cookie_that_opens_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = http
        .get(format!("{}/?token={}", server.api, server.token))
        .send()
        .await
        .expect("launch");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[header::LOCATION], "/");
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("pair").to_owned();
    let response = http
        .get(format!("{}/api/shares", server.api))
        .header(header::COOKIE, &pair)
        .send()
        .await
        .expect("api");
    assert_eq!(response.status(), 200);
    // Signed in, `/` is the UI when the build embeds it (`cargo xtask test` builds the app
    // with it, for the browser tests of tests/ui); a build without it says how to build it.
    let page = http
        .get(format!("{}/", server.api))
        .header(header::COOKIE, &pair)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let text = page.text().await.expect("text");
    assert!(
        text.contains("<script type=\"module\" src=\"/ui/app.js\">")
            || text.contains("cargo xtask dist"),
        "{text}"
    );
    let response = http
        .get(format!("{}/?token=wrong", server.api))
        .send()
        .await
        .expect("bad launch");
    assert_eq!(response.status(), 401);
    assert!(response.headers().get(header::SET_COOKIE).is_none());
    server.stop().await;
}

#[tokio::test]
async fn the_api_refuses_other_pages_and_its_cookie_is_not_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("a")).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let launch = || async {
        let response = http
            .get(format!("{}/?token={}", server.api, server.token))
            .send()
            .await
            .expect("launch");
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .expect("cookie")
            .to_owned();
        cookie.split(';').next().expect("pair").to_owned()
    };
    let (first, second) = (launch().await, launch().await);
    let port = server.api.rsplit(':').next().expect("port").to_owned();
    let upload = |cookie: String, headers: Vec<(&'static str, String)>| {
        let form = reqwest::multipart::Form::new().part(
            "files",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("a.txt"),
        );
        let mut request = http
            .post(format!("{}/api/shares", server.api))
            .header(header::COOKIE, cookie)
            .multipart(form);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    // A form on a page of another local program (another port: the same site to the browser)
    // carries the cookie, and its origin.
    for headers in [
        vec![("origin", "http://127.0.0.1:1".to_owned())],
        vec![("origin", "null".to_owned())],
        vec![("sec-fetch-site", "same-site".to_owned())],
        vec![("sec-fetch-site", "cross-site".to_owned())],
    ] {
        let response = upload(first.clone(), headers.clone())
            .await
            .expect("upload");
        assert_eq!(response.status(), 403, "{headers:?}");
    }
    assert!(
        server.list().await.is_empty(),
        "a refused upload made a share"
    );
    // Our own page is answered, with either session.
    for cookie in [&first, &second] {
        let response = upload(
            cookie.clone(),
            vec![
                ("origin", format!("http://localhost:{port}")),
                ("sec-fetch-site", "same-origin".to_owned()),
            ],
        )
        .await
        .expect("upload");
        assert_eq!(response.status(), 201);
    }
    // The token is no cookie, and a session does not outlive the process.
    let response = upload(format!("veilshare_session={}", server.token), vec![])
        .await
        .expect("upload");
    assert_eq!(response.status(), 401);
    let data_dir = dir.path().join("a");
    server.stop().await;
    let server = Server::start(&data_dir).await;
    let response = http
        .get(format!("{}/api/shares", server.api))
        .header(header::COOKIE, &first)
        .send()
        .await
        .expect("api");
    assert_eq!(response.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn events_report_uploads_downloads_and_endings() {
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let mut socket = crate::util::event_socket(&server).await;

    let view = server
        .create(&[("e.bin", &data(2 << 20, 12))], &[("max_downloads", "1")])
        .await;
    let (status, _) = fetch(
        &server.http,
        &format!("{}download", view.links.local.clone().expect("link")),
    )
    .await
    .expect("GET");
    assert_eq!(status, 200);

    let mut seen = Vec::new();
    let wanted = [
        "upload_progress",
        "share_created",
        "download_started",
        "download_ended",
        "share_ended",
    ];
    let all_seen = tokio::time::timeout(crate::util::DEADLINE, async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Text(text)) = message {
                let event: serde_json::Value = serde_json::from_str(&text).expect("json event");
                seen.push(event["type"].as_str().unwrap_or_default().to_owned());
                if wanted.iter().all(|w| seen.iter().any(|s| s == w)) {
                    return true;
                }
            }
        }
        // The socket closed before every event came.
        false
    })
    .await;
    assert_eq!(all_seen, Ok(true), "events seen: {seen:?}");
    server.stop().await;
}

#[tokio::test]
async fn cli_lists_shares_of_the_running_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let view = server
        .create(&[("l.bin", b"listed")], &[("max_downloads", "4")])
        .await;
    let data_dir = server.data_dir.to_str().expect("utf8").to_owned();
    let (ok, stdout, stderr) = run_cli(&["list", "--data-dir", &data_dir])
        .await
        .expect("cli");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(view.id.as_str()) && stdout.contains("0/4"),
        "{stdout}"
    );
    server.stop().await;
    let (ok, _, stderr) = run_cli(&["list", "--data-dir", &data_dir])
        .await
        .expect("cli");
    assert!(!ok);
    assert!(stderr.contains("not running"), "{stderr}");
}

#[tokio::test]
async fn a_restricted_share_without_tor_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server")).await;
    let response = server
        .create_raw(&[("a.txt", b"a")], &[("restricted", "true")])
        .await;
    assert_eq!(response.status(), 400);
    let text = response.text().await.expect("body");
    assert!(text.contains("needs Tor"), "{text}");
    assert!(server.list().await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_second_start_hands_over_to_the_running_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let data_dir = dir.path().to_string_lossy().into_owned();
    let (ok, stdout, stderr) = run_cli(&[
        "serve",
        "--no-browser",
        "--no-tor",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
    ])
    .await
    .expect("second start");
    assert!(ok, "the second start failed: {stderr}");
    // A new launch URL of the running instance, which opens it once.
    let launch = launch_url_in(&stdout).expect("a launch URL");
    assert!(
        launch.starts_with(&format!("{}/?launch=", server.api)),
        "{launch}"
    );
    assert_ne!(launch, server.launch_url().await);
    assert_launch_works_once(&launch, &server).await;
    // The first one still serves.
    assert_eq!(
        server
            .api(Method::GET, "/api/status")
            .send()
            .await
            .expect("status")
            .status(),
        200
    );
    server.stop().await;
}

/// Reads until the server closes the connection (or resets it); the time that took.
async fn closed_within(stream: &mut tokio::net::TcpStream, deadline: Duration) -> Duration {
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    tokio::time::timeout(deadline, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closed the connection in time");
    started.elapsed()
}

#[tokio::test]
async fn idle_slow_and_stalled_connections_are_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_env(
        &dir.path().join("deadlines"),
        &[
            ("VEILSHARE_HTTP_HEAD_SECS", "2"),
            ("VEILSHARE_HTTP_IDLE_SECS", "2"),
        ],
    )
    .await;
    // Big enough that what the stalled reader's socket buffers take stays within the policy's
    // slack (a quarter of a copy): the real recipient must still get a whole copy.
    let content = data(48 << 20, 91);
    let view = server
        .create(&[("big.bin", &content)], &[("max_downloads", "1")])
        .await;
    let link = view.links.local.clone().expect("link");
    let addr = link
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port")
        .to_owned();
    let path = link.split_once(&addr).expect("path").1.to_owned();
    let connect = || tokio::net::TcpStream::connect(addr.clone());

    // Silent, and a request head sent a byte at a time: both closed after the head deadline.
    let mut silent = connect().await.expect("connect");
    let mut slow = connect().await.expect("connect");
    let dribble = tokio::spawn(async move {
        for byte in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        closed_within(&mut slow, Duration::from_secs(15)).await
    });
    let waited = closed_within(&mut silent, Duration::from_secs(15)).await;
    assert!(
        waited >= Duration::from_secs(1),
        "closed too early: {waited:?}"
    );
    dribble.await.expect("slow client");

    // A recipient who stops reading holds the only download, until the idle deadline: then
    // the real recipient gets it.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(16 << 10)
        .expect("small receive buffer");
    let mut stalled = socket
        .connect(addr.parse().expect("address"))
        .await
        .expect("connect");
    stalled
        .write_all(format!("GET {path}download HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut head = [0u8; 12];
    stalled.read_exact(&mut head).await.expect("head");
    assert_eq!(&head, b"HTTP/1.1 200");
    server
        .wait_view(&view.id, "the stalled download to be in flight", |v| {
            v.downloads_in_flight == 1
        })
        .await;
    server
        .wait_view(&view.id, "the stalled download to be dropped", |v| {
            v.downloads_in_flight == 0
        })
        .await;
    drop(stalled);
    let (status, body) = fetch(&server.http, &format!("{link}download"))
        .await
        .expect("GET");
    assert_eq!((status, body.len()), (200, content.len()));

    server.stop().await;
}

#[tokio::test]
async fn a_data_dir_that_holds_other_files_is_refused_and_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("folder");
    std::fs::write(home.join("notes.txt"), b"mine").expect("a file");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let home_arg = home.to_string_lossy();
    let args = [
        "serve",
        "--no-browser",
        "--no-tor",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &home_arg,
    ];
    let refused = run_cli(&args);
    // Taking the folder over, it would run until stopped.
    let (ok, _, stderr) = tokio::time::timeout(Duration::from_secs(30), refused)
        .await
        .expect("veilshare started in a folder holding other files")
        .expect("run");
    assert!(!ok, "veilshare took over a folder holding other files");
    assert!(stderr.contains("new or empty folder"), "{stderr}");
    let mode = std::fs::metadata(&home).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "the folder's permissions were changed");
    assert_eq!(crate::util::names(&home), ["notes.txt"]);

    // An empty folder is made private and used.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("folder");
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let server = Server::start(&empty).await;
    let mode = std::fs::metadata(&empty)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    server.stop().await;
}

#[tokio::test]
async fn the_open_file_limit_is_raised_to_what_the_system_allows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wrapper = ["prlimit", "--nofile=1024:8192", "--"];
    let server = Server::start_wrapped(dir.path(), 0, None, &wrapper).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid)).expect("limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("the open files line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["8192", "8192"], "{line}");
    server.stop().await;
}

#[tokio::test]
async fn two_shares_answer_with_the_same_headers_and_no_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let files: [(&str, &[u8]); 2] = [("a.txt", b"same"), ("b.txt", b"bytes")];
    let one = server.create(&files, &[("max_downloads", "3")]).await;
    let two = server.create(&files, &[("max_downloads", "3")]).await;
    let requests: [(&str, Option<&str>); 7] = [
        ("", None),
        ("manifest.json", None),
        ("files/a.txt", None),
        ("download", None),
        ("download", Some("bytes=999999-")),
        ("files/missing.txt", None),
        ("nothing/here", None),
    ];
    let mut seen = 0;
    for (path, range) in requests {
        let mut answers = Vec::new();
        for view in [&one, &two] {
            let url = format!("{}{path}", view.links.local.clone().expect("link"));
            let mut request = server.http.get(&url);
            if let Some(range) = range {
                request = request.header(header::RANGE, range);
            }
            let response = request.send().await.expect("GET");
            let headers = response.headers().clone();
            for name in ["date", "server", "last-modified", "x-powered-by"] {
                assert!(
                    !headers.contains_key(name),
                    "{path}: a {name} header: {headers:?}"
                );
            }
            let mut pairs: Vec<(String, String)> = headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect();
            pairs.sort();
            answers.push((response.status(), pairs));
        }
        assert_eq!(
            answers[0], answers[1],
            "/{path}: the two shares answer differently"
        );
        seen += answers[0].1.len();
    }
    // Positive control: there were headers to compare (the security headers at least).
    assert!(seen > 7 * 8, "only {seen} headers");

    // An expiry is published on the minute, not at the owner's clock's second.
    let dated = server.create(&files, &[("expires_in_secs", "3600")]).await;
    let manifest: serde_json::Value = server
        .http
        .get(format!(
            "{}manifest.json",
            dated.links.local.clone().expect("link")
        ))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("manifest");
    let expires_at = manifest["expires_at"].as_u64().expect("expires_at");
    assert_eq!(expires_at % 60, 0, "expires_at {expires_at}");
    assert!(expires_at > dated.created_at + 3540 && expires_at <= dated.created_at + 3600);
    server.stop().await;
}
