//! Direct sharing over iroh, with real endpoints on 127.0.0.1: tickets, the provider's policy,
//! `get <ticket>` (verified, resumed), mirrors, and the rule that nothing opens a socket
//! outside Tor until a direct share needs it.

use std::path::Path;

use veilshare_shared::{ShareState, ShareView};

use crate::util::{IROH_LOOPBACK, Server, data, eventually, names, run_cli};

/// `veilshare get <ticket> -o OUT` on loopback; returns (success, stdout + stderr).
async fn get_ticket(ticket: &str, out: &Path) -> (bool, String) {
    get_ticket_within(ticket, out, "30s").await
}

/// [`get_ticket`] that keeps trying to reach the sender for `timeout` only.
async fn get_ticket_within(ticket: &str, out: &Path, timeout: &str) -> (bool, String) {
    let out = out.to_string_lossy();
    let mut args = vec!["get", "--quiet", "--timeout", timeout, ticket, "-o", &out];
    args.extend(IROH_LOOPBACK);
    let (ok, stdout, stderr) = run_cli(&args).await.expect("veilshare get");
    (ok, format!("{stdout}{stderr}"))
}

fn ticket(view: &ShareView) -> String {
    view.links
        .ticket
        .clone()
        .expect("a direct share has a ticket")
}

#[tokio::test]
async fn three_nodes_share_fetch_mirror_and_outlive_the_sender() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a")).await;
    let b = Server::start(&dir.path().join("b")).await;
    let big = data(5 << 20, 51);
    let small = b"hello over iroh".to_vec();
    let view = a
        .create(
            &[("big.bin", &big), ("small.txt", &small)],
            &[("direct", "true"), ("max_downloads", "5")],
        )
        .await;
    let ticket_a = ticket(&view);
    let status = a.status().await;
    assert!(
        status["p2p"]["state"] == "running",
        "the endpoint runs for a direct share: {status}"
    );

    // B fetches by ticket: bytes verified, counted once by A.
    let out_b = dir.path().join("out-b");
    let (ok, output) = get_ticket(&ticket_a, &out_b).await;
    assert!(ok, "{output}");
    assert_eq!(std::fs::read(out_b.join("big.bin")).expect("big"), big);
    assert_eq!(
        std::fs::read(out_b.join("small.txt")).expect("small"),
        small
    );
    assert_eq!(
        names(&out_b),
        vec!["big.bin", "small.txt"],
        "no partial store left"
    );
    a.wait_view(&view.id, "A to count the download", |v| {
        v.downloads_completed == 1 && v.downloads_in_flight == 0
    })
    .await;

    // B mirrors the share with its own policy (from the command line, through B's API): same
    // content hash, a new direct ticket.
    let b_data = b.data_dir.to_string_lossy().into_owned();
    let (ok, stdout, stderr) = run_cli(&[
        "mirror",
        &ticket_a,
        "--direct",
        "--max-downloads",
        "2",
        "--label",
        "mirror",
        "--data-dir",
        &b_data,
    ])
    .await
    .expect("veilshare mirror");
    assert!(ok, "{stdout}{stderr}");
    let mirrored = b.list().await.into_iter().next().expect("B has the mirror");
    assert!(
        stdout.contains(&format!("mirror {} is live", mirrored.id)),
        "{stdout}"
    );
    assert!(
        stdout.contains(mirrored.links.ticket.as_deref().expect("ticket")),
        "{stdout}"
    );
    assert_eq!(mirrored.content_hash, view.content_hash);
    assert_eq!(mirrored.policy.max_downloads, Some(2));
    assert_eq!(mirrored.label.as_deref(), Some("mirror"));
    let ticket_b = ticket(&mirrored);
    assert_ne!(ticket_b, ticket_a);
    a.wait_view(&view.id, "A to count the mirror's fetch", |v| {
        v.downloads_completed == 2
    })
    .await;

    // A stops; C fetches from B.
    a.stop().await;
    let out_c = dir.path().join("out-c");
    let (ok, output) = get_ticket(&ticket_b, &out_c).await;
    assert!(ok, "{output}");
    assert_eq!(std::fs::read(out_c.join("big.bin")).expect("big"), big);
    assert_eq!(
        std::fs::read(out_c.join("small.txt")).expect("small"),
        small
    );
    b.wait_view(&mirrored.id, "B to count C's download", |v| {
        v.downloads_completed == 1
    })
    .await;
    // The mirror is also on B's public site, same bytes.
    let local = mirrored.links.local.clone().expect("local link");
    let (status, body) = crate::util::fetch(&b.http, &format!("{local}files/small.txt"))
        .await
        .expect("fetch");
    assert_eq!((status, body), (200, small));
    b.stop().await;
}

#[tokio::test]
async fn limits_expiry_and_revocation_hold_on_the_direct_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a")).await;
    let content = data(300_000, 52);
    // Keeps the endpoint open while the others end (it closes with the last direct share).
    let keeper = a.create(&[("k.bin", b"k")], &[("direct", "true")]).await;

    // A limit of one: the first fetch counts, the share ends, the second is refused.
    let once = a
        .create(
            &[("once.bin", &content)],
            &[("direct", "true"), ("max_downloads", "1")],
        )
        .await;
    let (ok, output) = get_ticket(&ticket(&once), &dir.path().join("first")).await;
    assert!(ok, "{output}");
    a.wait_view(&once.id, "the limit to end the share", |v| {
        v.state == ShareState::Exhausted
    })
    .await;
    let second = dir.path().join("second");
    let (ok, output) = get_ticket(&ticket(&once), &second).await;
    assert!(!ok, "a second download of a one-download share succeeded");
    assert!(output.contains("the sender refused"), "{output}");
    assert!(!second.join("once.bin").exists());

    // Expiry.
    let brief = a
        .create(
            &[("brief.bin", &content)],
            &[("direct", "true"), ("expires_in_secs", "1")],
        )
        .await;
    let brief_ticket = ticket(&brief);
    a.wait_view(&brief.id, "the share to expire", |v| {
        v.state == ShareState::Expired
    })
    .await;
    let (ok, output) = get_ticket(&brief_ticket, &dir.path().join("late")).await;
    assert!(!ok && output.contains("the sender refused"), "{output}");

    // Revocation.
    let revoked = a
        .create(&[("r.bin", &content)], &[("direct", "true")])
        .await;
    let revoked_ticket = ticket(&revoked);
    let response = a
        .api(
            reqwest::Method::DELETE,
            &format!("/api/shares/{}", revoked.id),
        )
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status(), 200);
    let (ok, output) = get_ticket(&revoked_ticket, &dir.path().join("revoked")).await;
    assert!(!ok && output.contains("the sender refused"), "{output}");

    // With no direct share left, the endpoint closes: its tickets lead nowhere.
    let response = a
        .api(
            reqwest::Method::DELETE,
            &format!("/api/shares/{}", keeper.id),
        )
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status(), 200);
    eventually("the endpoint to close", || async {
        (a.status().await["p2p"]["state"] == "idle").then_some(())
    })
    .await;
    let out = dir.path().join("closed");
    let out_arg = out.to_string_lossy();
    let keeper_ticket = ticket(&keeper);
    let mut args = vec![
        "get",
        "--quiet",
        "--timeout",
        "2s",
        &keeper_ticket,
        "-o",
        &out_arg,
    ];
    args.extend(IROH_LOOPBACK);
    let (ok, _, stderr) = run_cli(&args).await.expect("get");
    assert!(!ok && stderr.contains("not reachable"), "{stderr}");
    a.stop().await;
}

#[tokio::test]
async fn bad_and_foreign_tickets_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a")).await;
    let out = dir.path().join("out");

    let (ok, output) = get_ticket("blobnotaticket", &out).await;
    assert!(!ok && output.contains("not a valid ticket"), "{output}");

    // A well-formed ticket for A's endpoint, but for content A does not share.
    let view = a.create(&[("x.bin", b"x")], &[("direct", "true")]).await;
    let real: iroh_blobs::ticket::BlobTicket = ticket(&view).parse().expect("ticket");
    let foreign = iroh_blobs::ticket::BlobTicket::new(
        real.addr().clone(),
        iroh_blobs::Hash::new(b"something else"),
        iroh_blobs::BlobFormat::HashSeq,
    );
    let (ok, output) = get_ticket(&foreign.to_string(), &out).await;
    assert!(!ok && output.contains("the sender refused"), "{output}");

    // A ticket for a single raw blob is not a share.
    let raw = iroh_blobs::ticket::BlobTicket::new(
        real.addr().clone(),
        real.hash(),
        iroh_blobs::BlobFormat::Raw,
    );
    let (ok, output) = get_ticket(&raw.to_string(), &out).await;
    assert!(!ok && output.contains("single blob"), "{output}");
    assert_eq!(
        names(&out),
        Vec::<String>::new(),
        "a refused fetch leaves nothing"
    );
    a.stop().await;
}

#[tokio::test]
async fn an_interrupted_direct_fetch_resumes_and_counts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a")).await;
    let content = data(256 << 20, 53);
    let view = a
        .create(
            &[("large.bin", &content)],
            &[("direct", "true"), ("max_downloads", "1")],
        )
        .await;
    let ticket = ticket(&view);
    let out = dir.path().join("out");
    let store = out.join(format!(".{}.veilshare-iroh", view.content_hash.as_str()));

    // The first run is killed once part of the content is stored.
    let out_arg = out.to_string_lossy().into_owned();
    let mut first = tokio::process::Command::new(crate::util::binary())
        .args(["get", "--quiet", &ticket, "-o", &out_arg])
        .args(IROH_LOOPBACK)
        .kill_on_drop(true)
        .spawn()
        .expect("get");
    let stored = || dir_size(&store);
    // A tight poll: on loopback the whole file takes about a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stored() < 16 << 20 {
        assert!(std::time::Instant::now() < deadline, "nothing arrived");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    first.start_kill().expect("kill");
    let status = first.wait().await.expect("wait");
    assert!(status.code().is_none(), "the first run was not interrupted");
    assert!(!out.join("large.bin").exists());
    let kept = stored();
    assert!(kept < 256 << 20, "the whole file arrived before the kill");

    // The rerun fetches the rest, verified; the share counts one download and ends. (It
    // waits until the sender has dropped the killed connection, which still holds the one
    // download allowed.)
    let out_arg = out.to_string_lossy().into_owned();
    let mut args = vec!["get", "--timeout", "60s", &ticket, "-o", &out_arg];
    args.extend(IROH_LOOPBACK);
    let (ok, stdout, stderr) = run_cli(&args).await.expect("get");
    let output = format!("{stdout}{stderr}");
    assert!(ok, "{output} {}", a.log());
    let fetched = std::fs::read(out.join("large.bin")).expect("large");
    assert!(fetched == content, "the resumed file differs");
    let ended = a
        .wait_view(&view.id, "the share to count one download", |v| {
            v.downloads_in_flight == 0 && v.state.is_ended()
        })
        .await;
    assert_eq!(ended.downloads_completed, 1);
    assert_eq!(ended.state, ShareState::Exhausted);
    assert_eq!(names(&out), vec!["large.bin"]);
    a.stop().await;
}

/// Bytes on disk under `dir` (allocated blocks: the store's files are sparse once the size is
/// known).
fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.blocks() * 512),
        })
        .sum()
}

/// Sockets a process opened that leave the machine or use UDP, from an strace log of
/// `socket` and `connect` calls: (UDP sockets, connections to addresses other than loopback).
fn network_use(log: &str) -> (Vec<String>, Vec<String>) {
    let udp = log
        .lines()
        .filter(|l| l.contains("socket(AF_INET") && l.contains("SOCK_DGRAM") && !l.contains("= -1"))
        .map(str::to_owned)
        .collect();
    let outside = log
        .lines()
        .filter(|l| l.contains("connect(") && (l.contains("AF_INET") || l.contains("AF_INET6")))
        .filter(|l| !l.contains("inet_addr(\"127.0.0.1\")") && !l.contains("\"::1\""))
        .map(str::to_owned)
        .collect();
    (udp, outside)
}

#[tokio::test]
async fn nothing_leaves_loopback_until_a_direct_share_needs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("strace.log");
    let wrapper = crate::util::strace_wrapper(&log, "socket,connect,bind,sendto,sendmsg");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let a = Server::start_wrapped(&dir.path().join("a"), 0, None, &wrapper).await;
    // Start, a share over the public listener, a download of it: no UDP, nothing outside.
    let content = data(200_000, 54);
    let plain = a.create(&[("plain.bin", &content)], &[]).await;
    let local = plain.links.local.clone().expect("local link");
    let (status, body) = crate::util::fetch(&a.http, &format!("{local}files/plain.bin"))
        .await
        .expect("fetch");
    assert_eq!((status, body.len()), (200, content.len()));
    let text = std::fs::read_to_string(&log).expect("strace log");
    assert!(text.contains("socket("), "strace recorded nothing: {text}");
    let (udp, outside) = network_use(&text);
    assert!(
        udp.is_empty(),
        "UDP sockets before any direct share: {udp:#?}"
    );
    assert!(
        outside.is_empty(),
        "connections outside loopback: {outside:#?}"
    );

    // The first direct share opens the endpoint's UDP socket (so the check above can see one).
    let direct = a.create(&[("d.bin", b"d")], &[("direct", "true")]).await;
    assert!(direct.links.ticket.is_some());
    let text = std::fs::read_to_string(&log).expect("strace log");
    let (udp, _) = network_use(&text);
    assert!(!udp.is_empty(), "the direct share opened no UDP socket");
    a.stop().await;
}

#[tokio::test]
async fn one_download_from_a_sender_and_its_mirror_over_tickets_and_links_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a")).await;
    let b = Server::start(&dir.path().join("b")).await;
    let big = data(40 << 20, 55);
    let small = b"and a small one".to_vec();
    let view = a
        .create(
            &[("big.bin", &big), ("small.txt", &small)],
            &[("direct", "true")],
        )
        .await;
    let response = b
        .api(reqwest::Method::POST, "/api/mirrors")
        .json(&serde_json::json!({ "source": ticket(&view), "direct": true }))
        .send()
        .await
        .expect("mirror");
    assert_eq!(response.status(), 201);
    let mirror: ShareView = response.json().await.expect("view");
    let sources = [
        ticket(&view),
        view.links.local.clone().expect("link"),
        ticket(&mirror),
        mirror.links.local.clone().expect("link"),
    ];
    let out = dir.path().join("out");
    let out_arg = out.to_string_lossy().into_owned();
    let mut args = vec!["get", "-o", &out_arg];
    args.extend(sources.iter().map(String::as_str));
    args.extend(IROH_LOOPBACK);
    let (ok, stdout, stderr) = run_cli(&args).await.expect("get");
    assert!(ok, "{stdout}{stderr}");
    assert!(std::fs::read(out.join("big.bin")).expect("big") == big);
    assert_eq!(std::fs::read(out.join("small.txt")).expect("small"), small);
    assert_eq!(names(&out), vec!["big.bin", "small.txt"]);
    // Every source delivered verified pieces.
    for source in &sources {
        let label = match source.parse::<iroh_blobs::ticket::BlobTicket>() {
            Ok(ticket) => format!("from direct {}", ticket.addr().id.fmt_short()),
            Err(_) => format!("from {source}"),
        };
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("fetched") && l.ends_with(&label)),
            "{source} delivered nothing:\n{stderr}"
        );
    }
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("fetched")).count(),
        4,
        "{stderr}"
    );

    // A source of another share is refused before anything is fetched.
    let other = a
        .create(&[("o.bin", b"other")], &[("direct", "true")])
        .await;
    let out2 = dir.path().join("out2");
    let out2_arg = out2.to_string_lossy().into_owned();
    let other_ticket = ticket(&other);
    let mut args = vec![
        "get",
        "--quiet",
        "-o",
        &out2_arg,
        &sources[0],
        &other_ticket,
    ];
    args.extend(IROH_LOOPBACK);
    let (ok, _, stderr) = run_cli(&args).await.expect("get");
    assert!(!ok && stderr.contains("not the same share"), "{stderr}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_ticket_keeps_working_after_the_sender_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("a");
    let a = Server::start(&data_dir).await;
    let content = data(500_000, 56);
    let view = a
        .create(&[("kept.bin", &content)], &[("direct", "true")])
        .await;
    let before = ticket(&view);
    a.stop().await;

    // Same key, same port: the same ticket, served again as soon as the app is back.
    let a = Server::start(&data_dir).await;
    let after = a
        .wait_view(&view.id, "the direct share to come back", |v| {
            v.links.ticket.is_some()
        })
        .await;
    assert_eq!(ticket(&after), before);
    let out = dir.path().join("out");
    let (ok, output) = get_ticket(&before, &out).await;
    assert!(ok, "{output}");
    assert!(std::fs::read(out.join("kept.bin")).expect("file") == content);
    a.stop().await;
}

#[tokio::test]
async fn headless_direct_share_serves_its_limit_then_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("note.bin");
    let content = data(3 << 20, 57);
    std::fs::write(&file, &content).expect("file");
    let mut args = vec!["--no-tor", "--direct", "--max-downloads", "1"];
    args.extend(IROH_LOOPBACK);
    let mut share = crate::util::HeadlessShare::start(&args, &dir.path().join("sender"), &file);
    let ticket = share
        .wait_for(std::time::Duration::from_secs(60), "blob")
        .await;
    let mut lines = share.lines;
    let mut share = share.child;
    // Keep reading, so that the share never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let out = dir.path().join("out");
    let (ok, output) = get_ticket(&ticket, &out).await;
    assert!(ok, "{output}");
    assert!(std::fs::read(out.join("note.bin")).expect("file") == content);
    // The limit ends the share, and the process exits by itself.
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), share.wait())
        .await
        .expect("the share did not exit after its limit")
        .expect("wait");
    assert!(status.success());
    let (ok, output) = get_ticket_within(&ticket, &dir.path().join("again"), "1s").await;
    assert!(!ok && output.contains("not reachable"), "{output}");
}

#[tokio::test]
async fn a_mirror_tells_a_share_that_ended_from_a_sender_that_is_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a")).await;
    let b = Server::start(&dir.path().join("b")).await;
    let mirror = |source: String| {
        b.api(reqwest::Method::POST, "/api/mirrors")
            .json(&serde_json::json!({ "source": source, "timeout_secs": 2 }))
            .send()
    };
    let error_of = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: veilshare_shared::ApiError = response.json().await.expect("an API error");
        (status, body)
    };

    // Revoked at the source: over a link and over a ticket, the mirror says it ended (410).
    // (Another live direct share keeps the sender's endpoint open to say so.)
    let live = a.create(&[("b.txt", b"live")], &[("direct", "true")]).await;
    let ended = a
        .create(&[("a.txt", b"ended")], &[("direct", "true")])
        .await;
    let revoked = a
        .api(
            reqwest::Method::DELETE,
            &format!("/api/shares/{}", ended.id),
        )
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    for source in [ended.links.local.clone().expect("link"), ticket(&ended)] {
        let (status, error) = error_of(mirror(source.clone()).await.expect("mirror")).await;
        assert_eq!(
            (status, error.kind),
            (410, veilshare_shared::ErrorKind::SourceEnded),
            "{source}: {}",
            error.message
        );
        assert!(error.message.contains("has ended"), "{}", error.message);
    }

    // The sender offline: the same kind of link, no answer (504), after the asked-for wait.
    let link = live.links.local.clone().expect("link");
    a.stop().await;
    let (status, error) = error_of(mirror(link).await.expect("mirror")).await;
    assert_eq!(
        (status, error.kind),
        (504, veilshare_shared::ErrorKind::SourceUnreachable),
        "{}",
        error.message
    );
    assert!(error.message.contains("not reachable"), "{}", error.message);
    assert!(b.list().await.is_empty(), "a failed mirror leaves no share");

    // A timeout out of range is refused before anything is fetched.
    let response = b
        .api(reqwest::Method::POST, "/api/mirrors")
        .json(&serde_json::json!({ "source": ticket(&live), "timeout_secs": 0 }))
        .send()
        .await
        .expect("mirror");
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn a_ticket_fetch_never_replaces_a_file_nor_brings_hidden_ones_unasked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a")).await;
    let view = a
        .create(
            &[("notes.txt", b"theirs"), (".profile", b"evil")],
            &[("direct", "true")],
        )
        .await;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    std::fs::write(out.join("notes.txt"), b"mine").expect("mine");
    let (ok, output) = get_ticket(&ticket(&view), &out).await;
    assert!(!ok && output.contains("--allow-hidden"), "{output}");
    assert_eq!(names(&out), ["notes.txt"], "a refused share leaves nothing");

    let out_arg = out.to_string_lossy().into_owned();
    let ticket = ticket(&view);
    let mut args = vec!["get", "--quiet", "--allow-hidden", &ticket, "-o", &out_arg];
    args.extend(IROH_LOOPBACK);
    let (ok, stdout, stderr) = run_cli(&args).await.expect("veilshare get");
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(std::fs::read(out.join("notes.txt")).expect("mine"), b"mine");
    assert_eq!(
        std::fs::read(out.join("notes (1).txt")).expect("theirs"),
        b"theirs"
    );
    assert_eq!(
        std::fs::read(out.join(".profile")).expect("hidden"),
        b"evil"
    );
    assert!(stderr.contains("left alone"), "{stderr}");
}

#[tokio::test]
async fn a_mirror_receives_every_byte_from_its_source_even_content_it_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a")).await;
    let b = Server::start(&dir.path().join("b")).await;
    let content = data(1 << 20, 77);
    // B holds this content already, in a share of its own.
    b.create(&[("mine.bin", &content)], &[]).await;
    let view = a
        .create(&[("theirs.bin", &content)], &[("direct", "true")])
        .await;
    let response = b
        .api(reqwest::Method::POST, "/api/mirrors")
        .json(&serde_json::json!({ "source": ticket(&view) }))
        .send()
        .await
        .expect("mirror");
    assert_eq!(response.status(), 201);
    // A sent the whole content: the mirror's fetch counts as a download there. (Had B used
    // what it holds, A would have sent only the list of files, and learnt that B holds it.)
    a.wait_view(&view.id, "A to count the mirror's fetch", |v| {
        v.downloads_completed == 1 && v.downloads_in_flight == 0
    })
    .await;
}

/// A sender outside veilshare: an iroh-blobs provider on loopback serving, from memory,
/// whatever collection the test made.
struct HostileSender {
    ticket: String,
    _router: iroh::protocol::Router,
    _tags: Vec<iroh_blobs::api::TempTag>,
    _store: iroh_blobs::store::mem::MemStore,
}

/// Serves a collection of `names`, each file holding the byte `x`.
async fn hostile_sender(names: impl IntoIterator<Item = String>) -> HostileSender {
    use veilshare::transport::iroh::{P2pConfig, Relays};
    let store = iroh_blobs::store::mem::MemStore::new();
    let file = store
        .add_bytes(b"x".to_vec())
        .temp_tag()
        .await
        .expect("add");
    let collection: iroh_blobs::format::collection::Collection =
        names.into_iter().map(|name| (name, file.hash())).collect();
    let root = collection.store(&store).await.expect("store");
    let config = P2pConfig {
        relays: Relays::Disabled,
        discovery: false,
        bind: Some(([127, 0, 0, 1], 0).into()),
    };
    let endpoint = config
        .bind(iroh::SecretKey::generate(), vec![iroh_blobs::ALPN.to_vec()])
        .await
        .expect("endpoint");
    let ticket = iroh_blobs::ticket::BlobTicket::new(
        endpoint.addr(),
        root.hash(),
        iroh_blobs::BlobFormat::HashSeq,
    )
    .to_string();
    let router = iroh::protocol::Router::builder(endpoint)
        .accept(
            iroh_blobs::ALPN,
            iroh_blobs::BlobsProtocol::new(&store, None),
        )
        .spawn();
    HostileSender {
        ticket,
        _router: router,
        _tags: vec![file, root],
        _store: store,
    }
}

/// A sender's lists are bounded before they are fetched or loaded: a collection of more files
/// than a share can hold, or names larger than any share's, is refused from the proven sizes
/// of its two lists (the last chunk group of each), by `get` and by a mirror alike.
#[tokio::test]
async fn a_ticket_sender_cannot_make_a_receiver_fetch_or_load_lists_of_any_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let too_many =
        hostile_sender((0..=veilshare_shared::MAX_FILES_PER_SHARE).map(|i| format!("f{i}"))).await;
    let long_name = hostile_sender(["n".repeat(5 << 20)]).await;
    let cases = [
        (&too_many, "holds more than 10000 files"),
        (&long_name, "file names take 5242"),
    ];
    for (index, (sender, expected)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("out{index}"));
        let (ok, output) = get_ticket(&sender.ticket, &out).await;
        assert!(!ok, "{expected}: the fetch succeeded");
        assert!(output.contains(expected), "{expected}: {output}");
        let files: Vec<_> = names(&out)
            .into_iter()
            .filter(|name| !name.starts_with('.'))
            .collect();
        assert!(files.is_empty(), "{expected}: {files:?}");
    }

    let b = Server::start(&dir.path().join("b")).await;
    let response = b
        .api(reqwest::Method::POST, "/api/mirrors")
        .json(&serde_json::json!({ "source": too_many.ticket }))
        .send()
        .await
        .expect("mirror");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status}"
    );
    assert!(text.contains("holds more than 10000 files"), "{text}");
    assert!(b.list().await.is_empty(), "a refused mirror left a share");
    b.stop().await;
}

/// A mirror's fetch reports its progress on the event socket under the id the client chose,
/// by ticket and by link: the share's size and files once known, and a last word with every
/// byte.
#[tokio::test]
async fn a_mirror_reports_its_progress_as_events_by_ticket_and_by_link() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a")).await;
    let b = Server::start(&dir.path().join("b")).await;
    let big = data(6 << 20, 57);
    let view = a
        .create(
            &[("big.bin", &big), ("small.txt", b"small")],
            &[("direct", "true")],
        )
        .await;
    let size = big.len() as u64 + 5;
    for (id, source) in [
        ("by-ticket", ticket(&view)),
        ("by-link", view.links.local.clone().expect("link")),
    ] {
        let mut socket = crate::util::event_socket(&b).await;
        let response = b
            .api(reqwest::Method::POST, "/api/mirrors")
            .json(&serde_json::json!({ "source": source, "progress_id": id }))
            .send()
            .await
            .expect("mirror");
        assert_eq!(response.status(), 201, "{id}");
        let mut seen = Vec::new();
        let last = tokio::time::timeout(crate::util::DEADLINE, async {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let event: serde_json::Value = serde_json::from_str(&text).expect("json event");
                if event["type"] == "mirror_progress" && event["progress_id"] == id {
                    seen.push(event.clone());
                    if event["done"] == size {
                        return Some(event);
                    }
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{id}: no progress with every byte; seen {seen:?}"));
        assert_eq!(last["total"], size, "{id}: {last}");
        assert_eq!(last["files"], 2, "{id}: {last}");
    }
    let bad = b
        .api(reqwest::Method::POST, "/api/mirrors")
        .json(&serde_json::json!({ "source": ticket(&view), "progress_id": "../x" }))
        .send()
        .await
        .expect("mirror");
    assert_eq!(bad.status(), 400);
    a.stop().await;
    b.stop().await;
}
