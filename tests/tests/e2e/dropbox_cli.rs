//! Drop boxes from the terminal: `veilshare receive` makes one in the running app, `veilshare
//! send` uploads into it (here over the plain public listener; over Tor in `tor`), and
//! `veilshare dropbox save` exports what arrived, decrypted with an age identity.

use veilshare_shared::ShareView;

use crate::{
    dropbox::age_key,
    util::{Server, data, run_cli},
};

/// Runs `veilshare` with `args` and the server's data directory; returns (ok, stdout, stderr).
async fn cli(server: &Server, args: &[&str]) -> (bool, String, String) {
    let data_dir = server.data_dir.to_string_lossy().into_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--data-dir", &data_dir]);
    run_cli(&all).await.expect("veilshare runs")
}

/// `veilshare receive --no-wait …`: the new box's view, found through the list.
async fn receive(server: &Server, args: &[&str]) -> ShareView {
    let mut all = vec!["receive", "--no-wait"];
    all.extend_from_slice(args);
    let (ok, out, err) = cli(server, &all).await;
    assert!(ok, "receive failed: {err}");
    let id = out
        .lines()
        .find_map(|line| line.strip_prefix("drop box "))
        .expect("the box's id")
        .trim()
        .to_owned();
    let view = server
        .list()
        .await
        .into_iter()
        .find(|view| view.id.as_str() == id)
        .expect("the new box in the list");
    let link = view.links.local.clone().expect("a local link");
    assert!(out.contains(&link), "the link is printed: {out}");
    view
}

#[tokio::test]
async fn receive_send_and_save_move_exact_bytes_and_a_message_from_the_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data")).await;
    let view = receive(
        &server,
        &[
            "--max-file",
            "2M",
            "--max-uploads",
            "3",
            "--text",
            "--label",
            "Tips",
        ],
    )
    .await;
    let limits = view.dropbox.clone().expect("a drop box").limits;
    assert_eq!(
        (limits.max_file, limits.max_uploads, limits.text),
        (Some(2 << 20), Some(3), true)
    );
    let link = view.links.local.clone().expect("link");

    let files = dir.path().join("out");
    std::fs::create_dir(&files).expect("mkdir");
    let big = data(1_500_000, 7);
    let odd = b"a name with quotes".to_vec();
    std::fs::write(files.join("report.pdf"), &big).expect("write");
    std::fs::write(files.join("say \"hi\".txt"), &odd).expect("write");
    let report = files.join("report.pdf").to_string_lossy().into_owned();
    let quoted = files.join("say \"hi\".txt").to_string_lossy().into_owned();
    let (ok, out, err) = cli(
        &server,
        &[
            "send",
            &link,
            &report,
            &quoted,
            "--message",
            "from a friend",
            "--quiet",
        ],
    )
    .await;
    assert!(ok, "send failed: {err}");
    assert!(
        out.contains(blake3::hash(&big).to_hex().as_str()),
        "send prints the confirmed hashes: {out}"
    );

    let items = server.items(&view.id).await;
    let [item] = items.as_slice() else {
        panic!("one item: {items:?}");
    };
    assert_eq!(item.message.as_deref(), Some("from a friend"));
    let names: Vec<&str> = item.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["report.pdf", "say %22hi%22.txt"]);

    // `list` shows the item; `dropbox save` writes exactly those bytes, never over a file.
    let (ok, out, _) = cli(&server, &["list"]).await;
    assert!(
        ok && out.contains(&item.id) && out.contains("report.pdf") && out.contains("(+ message)"),
        "{out}"
    );
    let saved = dir.path().join("saved");
    let saved_arg = saved.to_string_lossy().into_owned();
    let (ok, _, err) = cli(
        &server,
        &["dropbox", "save", view.id.as_str(), "-o", &saved_arg],
    )
    .await;
    assert!(ok, "save failed: {err}");
    assert!(std::fs::read(saved.join(&item.id).join("report.pdf")).expect("saved") == big);
    assert_eq!(
        std::fs::read(saved.join(&item.id).join("say %22hi%22.txt")).expect("saved"),
        odd
    );
    assert_eq!(
        std::fs::read_to_string(saved.join(format!("{}.message.txt", item.id))).expect("message"),
        "from a friend"
    );
    let (ok, _, err) = cli(
        &server,
        &["dropbox", "save", view.id.as_str(), "-o", &saved_arg],
    )
    .await;
    assert!(!ok && err.contains("already exists"), "{err}");

    // Over the limit: the box's reason, a failure, and nothing kept.
    std::fs::write(files.join("huge.bin"), data((2 << 20) + 1, 8)).expect("write");
    let huge = files.join("huge.bin").to_string_lossy().into_owned();
    let (ok, _, err) = cli(&server, &["send", &link, &huge, "--quiet"]).await;
    assert!(!ok, "an upload over --max-file fails");
    assert!(err.contains("too large (413)"), "{err}");
    assert_eq!(server.items(&view.id).await.len(), 1);

    // A share's link is not a drop box: nothing is sent.
    let share = server.create(&[("a.txt", b"hello")], &[]).await;
    let share_link = share.links.local.clone().expect("link");
    let (ok, _, err) = cli(&server, &["send", &share_link, &report, "--quiet"]).await;
    assert!(!ok && err.contains("not a drop box"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn an_encrypting_box_made_by_receive_is_saved_decrypted_with_the_identity_or_sealed_without()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, recipient) = age_key(dir.path()).await;
    let server = Server::start(&dir.path().join("data")).await;
    let view = receive(&server, &["--encrypt-to", &recipient]).await;
    let link = view.links.local.clone().expect("link");
    let plaintext = data(700_000, 19);
    let file = dir.path().join("evidence.mov");
    std::fs::write(&file, &plaintext).expect("write");
    let (ok, _, err) = cli(
        &server,
        &["send", &link, &file.to_string_lossy(), "--quiet"],
    )
    .await;
    assert!(ok, "send failed: {err}");
    let item = server.items(&view.id).await.remove(0);

    let opened = dir.path().join("opened");
    let (ok, _, err) = cli(
        &server,
        &[
            "dropbox",
            "save",
            view.id.as_str(),
            "-o",
            &opened.to_string_lossy(),
            "--identity",
            &key.to_string_lossy(),
        ],
    )
    .await;
    assert!(ok, "save --identity failed: {err}");
    assert!(
        std::fs::read(opened.join(&item.id).join("evidence.mov")).expect("decrypted") == plaintext
    );

    // Without the identity: the sealed file, which Debian's age opens.
    let sealed = dir.path().join("sealed");
    let (ok, _, err) = cli(
        &server,
        &[
            "dropbox",
            "save",
            view.id.as_str(),
            "-o",
            &sealed.to_string_lossy(),
        ],
    )
    .await;
    assert!(ok && err.contains("encrypted"), "{err}");
    let age_file = sealed.join(&item.id).join("evidence.mov.age");
    let out = tokio::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(&age_file)
        .output()
        .await
        .expect("age -d");
    assert!(
        out.status.success() && out.stdout == plaintext,
        "age decrypted other bytes"
    );

    // Another identity does not open it, and nothing is left behind.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    let (wrong, _) = age_key(&other).await;
    let refused = dir.path().join("refused");
    let (ok, _, err) = cli(
        &server,
        &[
            "dropbox",
            "save",
            view.id.as_str(),
            "-o",
            &refused.to_string_lossy(),
            "--identity",
            &wrong.to_string_lossy(),
        ],
    )
    .await;
    assert!(!ok && err.contains("cannot decrypt"), "{err}");
    let left: Vec<_> = std::fs::read_dir(refused.join(&item.id))
        .expect("folder")
        .collect();
    assert!(
        left.is_empty(),
        "nothing is kept of a file that did not decrypt"
    );
    server.stop().await;
}

/// Without `--no-wait`, `veilshare receive` lists each upload as it arrives (names, never
/// before the box holds all of it), and Ctrl-C stops it while the box stays open.
#[tokio::test]
async fn receive_lists_uploads_as_they_arrive_and_leaves_the_box_open_on_ctrl_c() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data")).await;
    let mut child = tokio::process::Command::new(crate::util::binary())
        .args(["receive", "--data-dir"])
        .arg(&server.data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("veilshare receive");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next_line = async || {
        tokio::time::timeout(crate::util::DEADLINE, lines.next_line())
            .await
            .expect("receive printed nothing in time")
            .expect("read")
            .expect("receive ended early")
    };
    let link = loop {
        let line = next_line().await;
        if let Some(link) = line.trim().strip_prefix("http://") {
            break format!("http://{link}");
        }
    };
    let (status, page) = crate::dropbox::upload(
        &server,
        &link,
        &[("first tip.txt", b"hello"), ("second.txt", b"again")],
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let item = loop {
        let line = next_line().await;
        if line.trim_start().starts_with("item ") {
            break line;
        }
    };
    assert!(
        item.contains("first tip.txt, second.txt") && item.contains("10 bytes"),
        "{item}"
    );
    crate::util::signal(child.id().expect("pid"), "-INT");
    let status = tokio::time::timeout(crate::util::DEADLINE, child.wait())
        .await
        .expect("receive stopped on Ctrl-C")
        .expect("status");
    assert!(status.success());
    let view = server
        .list()
        .await
        .into_iter()
        .find(|view| view.dropbox.is_some())
        .expect("the box");
    assert_eq!(
        view.state,
        veilshare_shared::ShareState::Live,
        "the box stays open"
    );
    server.stop().await;
}

/// A Word document whose properties name its author (stored, not compressed).
fn docx_with_author() -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("[Content_Types].xml", options)
        .expect("part");
    zip.write_all(b"<Types/>").expect("write");
    zip.start_file("docProps/core.xml", options).expect("part");
    zip.write_all(br#"<cp:coreProperties xmlns:cp="c" xmlns:dc="d"><dc:creator>Ana Lima</dc:creator></cp:coreProperties>"#)
        .expect("write");
    zip.finish().expect("zip");
    out.into_inner()
}

#[tokio::test]
async fn send_removes_a_photos_gps_position_and_refuses_a_document_that_names_its_author() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data")).await;
    let view = receive(&server, &["--label", "Tips"]).await;
    let link = view.links.local.clone().expect("link");
    let files = dir.path().join("out");
    std::fs::create_dir(&files).expect("mkdir");
    let photo = veilshare_e2e::samples::jpeg();
    let photo_path = files.join("balcony.jpg");
    std::fs::write(&photo_path, &photo).expect("write");
    let doc_path = files.join("memo.docx");
    std::fs::write(&doc_path, docx_with_author()).expect("write");
    let photo_arg = photo_path.to_string_lossy().into_owned();
    let doc_arg = doc_path.to_string_lossy().into_owned();

    // The document cannot be cleaned: nothing at all is sent, and the reason is given.
    let (ok, _, err) = cli(&server, &["send", &link, &photo_arg, &doc_arg, "--quiet"]).await;
    assert!(!ok);
    assert!(
        err.contains("memo.docx (Office document) contains a person's or organisation's name")
            && err.contains("nothing was sent"),
        "{err}"
    );
    assert!(server.items(&view.id).await.is_empty());

    // The photo alone: it arrives without its metadata, the same picture.
    let (ok, _, err) = cli(&server, &["send", &link, &photo_arg, "--quiet"]).await;
    assert!(ok, "{err}");
    assert!(
        err.contains("balcony.jpg (JPEG) contains a GPS position"),
        "{err}"
    );
    assert!(err.contains("removed from the shared copy"), "{err}");
    let items = server.items(&view.id).await;
    let [item] = items.as_slice() else {
        panic!("one item: {items:?}");
    };
    let (status, arrived) = server.item_file(&view.id, &item.id, "balcony.jpg").await;
    assert_eq!(status, 200);
    assert_eq!(
        veilshare_e2e::samples::exif_fields(&arrived),
        vec!["Orientation = row 0 at right and column 0 at top".to_owned()]
    );
    assert_eq!(
        veilshare_e2e::samples::pixels(&arrived),
        veilshare_e2e::samples::pixels(&photo)
    );

    // Asked to keep it: both files go as they are.
    let (ok, _, err) = cli(
        &server,
        &[
            "send",
            &link,
            &photo_arg,
            &doc_arg,
            "--keep-metadata",
            "--quiet",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let items = server.items(&view.id).await;
    let item = items.last().expect("a second item");
    assert_eq!(
        server.item_file(&view.id, &item.id, "balcony.jpg").await,
        (200, photo)
    );
}
