//! Drop boxes (issue 12) on the plain public listener: the form, uploads under the box's
//! limits, what the owner gets through the API, and the rule that nothing received is served
//! back on the public side.

use std::path::PathBuf;

use reqwest::{Method, multipart::Form, multipart::Part};
use veilshare_shared::{ShareState, ShareView};

use crate::util::{Server, data, eventually};

/// Creates a drop box from a `POST /api/dropboxes` body.
pub async fn create_dropbox(server: &Server, request: serde_json::Value) -> ShareView {
    let response = server
        .api(Method::POST, "/api/dropboxes")
        .json(&request)
        .send()
        .await
        .expect("POST /api/dropboxes");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).expect("view")
}

/// Posts files (and a message) to a drop box's form, as a browser does; returns the status and
/// the page.
pub async fn upload(
    server: &Server,
    link: &str,
    files: &[(&str, &[u8])],
    message: Option<&str>,
) -> (u16, String) {
    let mut form = Form::new();
    for (name, bytes) in files {
        form = form.part(
            "file",
            Part::bytes(bytes.to_vec()).file_name(name.to_string()),
        );
    }
    if let Some(message) = message {
        form = form.text("message", message.to_owned());
    }
    let response = server
        .http
        .post(link)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    (status, response.text().await.expect("page"))
}

/// An age identity made by Debian's `age-keygen` in `dir`: (identity file, recipient).
pub async fn age_key(dir: &std::path::Path) -> (PathBuf, String) {
    let key = dir.join("key.txt");
    let keygen = tokio::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .await
        .expect("age-keygen (Debian's age)");
    let said = String::from_utf8_lossy(&keygen.stderr).into_owned();
    let recipient = said
        .split("Public key: ")
        .nth(1)
        .map(str::trim)
        .expect("a public key")
        .to_owned();
    (key, recipient)
}

fn link(view: &ShareView) -> String {
    view.links.local.clone().expect("a local link")
}

#[tokio::test]
async fn a_drop_box_takes_uploads_through_its_form_and_gives_its_owner_exactly_those_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let view = create_dropbox(
        &server,
        serde_json::json!({ "label": "Tips <b>", "text": true }),
    )
    .await;
    assert!(view.files.is_empty());
    assert_eq!(view.state, ShareState::Live);
    let dropbox = view.dropbox.clone().expect("a drop box");
    assert!(dropbox.items.is_empty() && dropbox.limits.text);
    let link = link(&view);

    // The form: no script, escaped label, the strict policy with posting to itself allowed.
    let response = server.http.get(&link).send().await.expect("form");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let page = response.text().await.expect("page");
    assert!(page.contains("<form method=\"post\" enctype=\"multipart/form-data\">"));
    assert!(page.contains("name=\"message\""));
    assert!(page.contains("Tips &lt;b&gt;"), "{page}");
    assert!(!page.to_lowercase().contains("<script"));
    let csp = headers["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self'"));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers.get("date").is_none() && headers.get("server").is_none());

    let first = data(100_000, 61);
    let second = data(1 << 20, 62);
    let (status, page) = upload(
        &server,
        &link,
        &[("a.txt", &first), ("b 文件.bin", &second)],
        Some("hello\r\nthere"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    for bytes in [&first, &second] {
        assert!(
            page.contains(blake3::hash(bytes).to_hex().as_str()),
            "{page}"
        );
    }
    assert!(page.contains("b 文件.bin") && page.contains("with your message"));

    let view = server.view(&view.id).await;
    let dropbox = view.dropbox.expect("a drop box");
    assert_eq!(
        (dropbox.uploads, dropbox.bytes),
        (1, (100_000 + (1 << 20)) as u64)
    );
    let [item] = dropbox.items.as_slice() else {
        panic!("one item: {:?}", dropbox.items);
    };
    assert_eq!(item.message.as_deref(), Some("hello\nthere"));
    assert_eq!(item.received_at % 60, 0, "arrival kept to the minute only");
    for (name, bytes) in [("a.txt", &first), ("b 文件.bin", &second)] {
        let (status, got) = server.item_file(&view.id, &item.id, name).await;
        assert_eq!(status, 200);
        assert!(got == *bytes, "{name}");
    }

    // Nothing received is served back on the public side.
    for path in [
        "manifest.json",
        "download",
        "files/a.txt",
        &format!("bao/{}", blake3::hash(&first).to_hex()),
    ] {
        let response = server
            .http
            .get(format!("{link}{path}"))
            .send()
            .await
            .expect("public");
        assert_eq!(response.status(), 404, "{path}");
    }

    // `veilshare list` shows the box and what it received.
    let data_dir = server.data_dir.to_str().expect("utf8").to_owned();
    let (ok, stdout, stderr) = crate::util::run_cli(&["list", "--data-dir", &data_dir])
        .await
        .expect("cli");
    assert!(ok, "{stderr}");
    for expected in [
        "drop box",
        "uploads 1",
        item.id.as_str(),
        "a.txt, b 文件.bin",
        "(+ message)",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }

    // The owner deletes the item: the box lists nothing and its data goes.
    let response = server
        .api(
            Method::DELETE,
            &format!("/api/shares/{}/items/{}", view.id, item.id),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 200);
    assert!(server.items(&view.id).await.is_empty());
    eventually("the deleted item's data to go", || async {
        server.stored_blob_files().is_empty().then_some(())
    })
    .await;
    // Closing the empty box ends its address, and its (empty) data is deleted like a share's.
    let response = server
        .api(Method::DELETE, &format!("/api/shares/{}", view.id))
        .send()
        .await
        .expect("close");
    assert_eq!(response.status(), 200);
    let closed = server
        .wait_view(&view.id, "the closed box's data to be deleted", |v| {
            v.data_deleted
        })
        .await;
    assert_eq!(closed.state, ShareState::Revoked);
    assert_eq!(
        server.http.get(&link).send().await.expect("form").status(),
        410
    );
    server.stop().await;
}

#[tokio::test]
async fn a_drop_box_enforces_its_limits_where_bytes_are_written_and_ends_at_its_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let view = create_dropbox(
        &server,
        serde_json::json!({ "max_file": 40_000, "max_bytes": 100_000, "max_uploads": 3 }),
    )
    .await;
    let link = link(&view);
    let items = |view: ShareView| view.dropbox.expect("box").items.len();
    let nothing_left = |server: &Server| {
        assert!(server.stored_blob_files().is_empty(), "data left");
        assert!(
            crate::util::names(&server.data_dir.join("store/scratch")).is_empty(),
            "scratch files left"
        );
    };

    // One byte over the file limit: 413, nothing kept.
    let (status, page) = upload(&server, &link, &[("big.bin", &data(40_001, 1))], None).await;
    assert_eq!(status, 413, "{page}");
    assert!(page.contains("Nothing of it was kept"));
    assert_eq!(items(server.view(&view.id).await), 0);
    nothing_left(&server);

    // Bad names and fields: 400, nothing kept.
    for (name, field) in [("../x", "file"), ("ok.txt", "other")] {
        let form = Form::new().part(
            field.to_owned(),
            Part::bytes(b"x".to_vec()).file_name(name.to_owned()),
        );
        let response = server
            .http
            .post(&link)
            .multipart(form)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 400, "{name} in {field}");
    }
    // A message where the box takes none.
    assert_eq!(
        upload(&server, &link, &[("m.txt", b"m")], Some("hi"))
            .await
            .0,
        400
    );
    assert_eq!(items(server.view(&view.id).await), 0);

    // 40,000 bytes, then an upload whose second file passes what is left (60,000): that
    // upload stops, the first stays.
    let kept = data(40_000, 2);
    assert_eq!(
        upload(&server, &link, &[("one.bin", &kept)], None).await.0,
        200
    );
    let (status, _) = upload(
        &server,
        &link,
        &[
            ("two.bin", &data(35_000, 3)),
            ("three.bin", &data(35_000, 4)),
        ],
        None,
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(items(server.view(&view.id).await), 1);

    // Two more uploads use up the quota of three: the box ends, and keeps what it received.
    assert_eq!(
        upload(&server, &link, &[("two.bin", &data(30_000, 5))], None)
            .await
            .0,
        200
    );
    assert_eq!(
        upload(&server, &link, &[("three.bin", &data(20_000, 6))], None)
            .await
            .0,
        200
    );
    let ended = server
        .wait_view(&view.id, "the box to end at its quota", |v| {
            v.state.is_ended()
        })
        .await;
    assert_eq!(ended.state, ShareState::Exhausted);
    assert!(!ended.data_deleted);
    assert_eq!(ended.dropbox.as_ref().expect("box").uploads, 3);
    assert_eq!(items(ended.clone()), 3);
    assert_eq!(
        server.http.get(&link).send().await.expect("form").status(),
        410
    );
    assert_eq!(
        upload(&server, &link, &[("late.bin", b"late")], None)
            .await
            .0,
        410
    );
    // What it received is still there for its owner, after a restart too.
    let item = ended.dropbox.expect("box").items[0].clone();
    server.stop().await;
    let server = Server::start(dir.path()).await;
    let (status, got) = server.item_file(&view.id, &item.id, "one.bin").await;
    assert_eq!(status, 200);
    assert!(got == kept);
    server.stop().await;
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        {
            found.push(path);
        }
    }
    found
}

/// With `encrypt_to`, an upload is encrypted as it streams: no plaintext byte sequence of it is
/// anywhere in the data directory, and Debian's `age` decrypts what the owner gets to the
/// original bytes. The uploader is shown the plaintext's BLAKE3.
#[tokio::test]
async fn an_encrypting_drop_box_never_writes_plaintext_and_age_decrypts_what_its_owner_gets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, recipient) = age_key(dir.path()).await;
    let server = Server::start(&dir.path().join("data")).await;
    let response = server
        .api(Method::POST, "/api/dropboxes")
        .json(&serde_json::json!({ "encrypt_to": "age1notakey" }))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 400);
    let view = create_dropbox(&server, serde_json::json!({ "encrypt_to": recipient })).await;
    let plaintext = data(300_000, 81);
    let (status, page) = upload(&server, &link(&view), &[("secret.pdf", &plaintext)], None).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(blake3::hash(&plaintext).to_hex().as_str()),
        "{page}"
    );
    assert!(page.contains("encrypted for the owner"), "{page}");

    let dropbox = server.view(&view.id).await.dropbox.expect("box");
    assert_eq!(
        dropbox.limits.encrypt_to.as_deref(),
        Some(recipient.as_str())
    );
    assert_eq!(dropbox.bytes, 300_000, "the limits count what was sent");
    let [item] = dropbox.items.as_slice() else {
        panic!("one item: {:?}", dropbox.items);
    };
    assert!(item.encrypted);
    assert_eq!(item.files[0].name, "secret.pdf.age");
    assert_eq!(
        (item.sent[0].name.as_str(), item.sent[0].size),
        ("secret.pdf", 300_000)
    );
    assert_eq!(
        item.sent[0].hash.as_str(),
        blake3::hash(&plaintext).to_hex().as_str()
    );

    // No plaintext anywhere in the data directory (three windows of it).
    let windows = [
        &plaintext[..64],
        &plaintext[150_000..150_064],
        &plaintext[299_936..],
    ];
    for window in windows {
        let found = files_holding(&server.data_dir, window);
        assert!(found.is_empty(), "plaintext in {found:?}");
    }

    // What the owner gets, `age -d` turns back into the original.
    let (status, got) = server.item_file(&view.id, &item.id, "secret.pdf.age").await;
    assert_eq!(status, 200);
    let sealed = dir.path().join("secret.pdf.age");
    std::fs::write(&sealed, got).expect("write");
    let opened = tokio::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(&sealed)
        .output()
        .await
        .expect("age -d");
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert!(opened.stdout == plaintext, "age decrypted other bytes");

    // The positive control of the search: a box that does not encrypt has the plaintext on
    // disk, and the search finds it.
    let plain = create_dropbox(&server, serde_json::json!({})).await;
    assert_eq!(
        upload(&server, &link(&plain), &[("open.pdf", &plaintext)], None)
            .await
            .0,
        200
    );
    assert!(!files_holding(&server.data_dir, windows[1]).is_empty());
    server.stop().await;
}

/// A drop box takes a few uploads at once (each may fill the scratch folder up to what the
/// box still takes before their limits are checked together): a fifth is told to come back
/// (429, `Retry-After`), and gets in once one of the others ended.
#[tokio::test]
async fn a_drop_box_takes_four_uploads_at_once_and_tells_a_fifth_to_come_back() {
    use futures::SinkExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let view = create_dropbox(&server, serde_json::json!({})).await;
    let link = link(&view);
    let mut held = Vec::new();
    for index in 0..4 {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        let head = format!(
            "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"held{index}.bin\"\r\n\r\nsome bytes"
        );
        tx.send(Ok(head.into_bytes())).await.expect("send");
        let request = server
            .http
            .post(&link)
            .header("content-type", "multipart/form-data; boundary=B")
            .body(reqwest::Body::wrap_stream(rx))
            .send();
        held.push((tx, tokio::spawn(request)));
    }
    // The box counts an upload from when its request arrives (the view shows it as a
    // transfer in flight): once the four are in, a fifth is turned away before its body is read.
    server
        .wait_view(&view.id, "the four held uploads to be taken in", |view| {
            view.downloads_in_flight == 4
        })
        .await;
    let busy = server
        .http
        .post(&link)
        .header("content-type", "multipart/form-data; boundary=B")
        .body("--B--\r\n")
        .send()
        .await
        .expect("fifth upload");
    assert_eq!(busy.status(), 429);
    assert_eq!(busy.headers()["retry-after"], "60");
    assert!(
        busy.text()
            .await
            .expect("page")
            .contains("try again in a minute")
    );

    // One of the four ends: the next upload gets in.
    let (mut tx, request) = held.remove(0);
    tx.send(Ok(b"\r\n--B--\r\n".to_vec())).await.expect("send");
    drop(tx);
    let response = request.await.expect("task").expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        upload(&server, &link, &[("next.bin", b"next")], None)
            .await
            .0,
        200
    );
    let names: Vec<String> = server
        .items(&view.id)
        .await
        .iter()
        .flat_map(|item| item.files.iter().map(|f| f.name.clone()))
        .collect();
    assert_eq!(names, ["held0.bin", "next.bin"]);
    drop(held);
    server.stop().await;
}

/// A drop box on a small disk: an upload larger than the free space is stopped with 507 —
/// before any byte when it declares its length, while it streams when it does not — and leaves
/// nothing in the store; a small upload still fits. The store is a 100 MiB tmpfs mounted in a
/// mount namespace of the server's own (`unshare`, unprivileged through a user namespace).
#[tokio::test]
async fn an_upload_larger_than_the_free_disk_gets_507_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let store = data_dir.join("store");
    std::fs::create_dir_all(&store).expect("store mount point");
    let mount = format!(
        "mount -t tmpfs -o size=100m tmpfs '{}' && exec \"$@\"",
        store.display()
    );
    let wrapper = [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        &mount,
        "sh",
    ];
    let server = Server::start_wrapped(&data_dir, 0, None, &wrapper).await;
    // The store as the server sees it (its mount namespace), from outside.
    let seen_store = PathBuf::from(format!("/proc/{}/root", server.pid))
        .join(store.strip_prefix("/").expect("an absolute path"));
    assert!(
        seen_store.join("scratch").is_dir(),
        "the server's store is not visible at {}",
        seen_store.display()
    );
    let view = create_dropbox(&server, serde_json::json!({})).await;
    let link = link(&view);

    // Declared: refused from the head alone, before any of the body is sent (a raw request,
    // so that the answer is read whatever happens to a body the server does not want).
    let address = link
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port")
        .to_owned();
    let path = link.split_once(&address).expect("path").1.to_owned();
    let mut raw = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(
        &mut raw,
        format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n",
            60u64 << 20
        )
        .as_bytes(),
    )
    .await
    .expect("head");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        crate::util::DEADLINE,
        tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 507"), "{answer}");
    assert!(answer.contains("Nothing of it was kept"), "{answer}");
    // Streamed without a length: stopped once it no longer fits, and its part deleted.
    let body = futures::stream::iter((0..60).map(|i| {
        let mut piece = Vec::new();
        if i == 0 {
            piece.extend_from_slice(
                b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.bin\"\r\n\r\n",
            );
        }
        piece.extend_from_slice(&data(1 << 20, i));
        Ok::<_, std::io::Error>(piece)
    }));
    let response = server
        .http
        .post(&link)
        .header("content-type", "multipart/form-data; boundary=B")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    // The server answers 507 and may close before the client sent everything.
    if let Ok(response) = response {
        assert_eq!(response.status(), 507);
    }
    server
        .wait_view(&view.id, "the refused uploads to end", |v| {
            v.downloads_in_flight == 0
        })
        .await;
    let scratch: Vec<_> = std::fs::read_dir(seen_store.join("scratch"))
        .expect("scratch")
        .collect();
    assert!(scratch.is_empty(), "parts left in scratch: {scratch:?}");
    assert!(server.items(&view.id).await.is_empty());

    // The positive control: what fits is taken.
    let small = data(1 << 20, 9);
    let (status, page) = upload(&server, &link, &[("small.bin", &small)], None).await;
    assert_eq!(status, 200, "{page}");
    let item = server.items(&view.id).await.remove(0);
    assert_eq!(
        server.item_file(&view.id, &item.id, "small.bin").await,
        (200, small)
    );
    server.stop().await;
}
