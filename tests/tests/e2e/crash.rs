//! Crashes at every durable step (`docs/RELIABILITY.md`, section 1): a debug build aborts at
//! a named point (`VEILSHARE_CRASH_AT=<point>:<n>`, see `core/crash.rs`), as `kill -9` would;
//! a restart on the same data directory must find it consistent.

use std::{collections::HashMap, time::Duration};

use reqwest::Method;
use veilshare_shared::{ShareState, ShareView};

use crate::util::{Server, data, fetch};

/// The points the scenario below does not reach: onion keys and recipients need the private
/// network (see `tor::a_crash_while_an_ended_share_loses_its_onion_keys…` and
/// `tor::a_crash_after_a_recipient_is_revoked…`), mirrors a second instance and
/// drop boxes an upload (see the tests at the end).
const NOT_IN_SCENARIO: &[&str] = &[
    "onion.keys_deleted",
    "recipient.revoked",
    "mirror.fetched",
    "dropbox.part_written",
    "dropbox.tagged",
    "dropbox.item_recorded",
];

/// Creates a share without panicking (the process may be gone).
async fn try_create(
    server: &Server,
    name: &str,
    bytes: &[u8],
    fields: &[(&str, &str)],
) -> Option<ShareView> {
    let response = server.try_create_raw(&[(name, bytes)], fields).await.ok()?;
    response.json().await.ok()
}

async fn try_view(server: &Server, id: &veilshare_shared::ShareId) -> Option<ShareView> {
    let response = server
        .api(Method::GET, &format!("/api/shares/{}", id))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

/// The life of three shares: one downloaded to its limit (counted, ended, deleted), one
/// revoked, one direct. Returns the views seen, the last one of each share last.
async fn scenario(server: &Server, contents: &HashMap<&str, Vec<u8>>) -> Vec<ShareView> {
    let mut seen = Vec::new();
    if let Some(once) = try_create(
        server,
        "once.bin",
        &contents["once.bin"],
        &[("max_downloads", "1")],
    )
    .await
    {
        seen.push(once.clone());
        if let Some(link) = &once.links.local {
            let _ = fetch(&server.http, &format!("{link}download")).await;
        }
        for _ in 0..100 {
            match try_view(server, &once.id).await {
                Some(view) if view.state.is_ended() => {
                    seen.push(view);
                    break;
                }
                Some(view) => seen.push(view),
                None => break,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let Some(revoked) = try_create(server, "revoked.bin", &contents["revoked.bin"], &[]).await {
        seen.push(revoked.clone());
        let _ = server
            .api(Method::DELETE, &format!("/api/shares/{}", revoked.id))
            .send()
            .await;
        if let Some(view) = try_view(server, &revoked.id).await {
            seen.push(view);
        }
    }
    if let Some(direct) = try_create(
        server,
        "direct.bin",
        &contents["direct.bin"],
        &[("direct", "true")],
    )
    .await
    {
        seen.push(direct);
    }
    seen
}

fn contents() -> HashMap<&'static str, Vec<u8>> {
    [
        ("keep.bin", data(200_000, 31)),
        ("once.bin", data(200_000, 32)),
        ("revoked.bin", data(200_000, 33)),
        ("direct.bin", data(200_000, 34)),
    ]
    .into_iter()
    .collect()
}

/// Runs the scenario on `dir` with `VEILSHARE_CRASH_AT=spec`, then restarts and checks the
/// invariants. Returns whether the process crashed (a point passed fewer than n times does
/// not: the run then ends with a normal stop, and is checked the same way).
async fn crash_and_check(
    dir: &std::path::Path,
    spec: &str,
    contents: &HashMap<&str, Vec<u8>>,
    keep: &veilshare_shared::ShareId,
) -> bool {
    let (seen, crashed) =
        match Server::try_start_with_env(dir, &[("VEILSHARE_CRASH_AT", spec)]).await {
            // Some points are passed at start too (leases of direct shares).
            Err(log) => {
                assert!(log.contains("crash point reached"), "{spec}: {log}");
                (Vec::new(), true)
            }
            Ok(server) => run_to_rest(server, spec, contents).await,
        };
    check_after(dir, spec, &seen, contents, keep).await;
    crashed
}

/// Runs the scenario, then waits for the process to die at its point or to come to rest.
async fn run_to_rest(
    mut server: Server,
    spec: &str,
    contents: &HashMap<&str, Vec<u8>>,
) -> (Vec<ShareView>, bool) {
    let seen = scenario(&server, contents).await;
    // Some points are passed after the scenario's last request (deletions run in the
    // background): wait until the process died, or until it is at rest (only live shares'
    // data on disk), whichever comes first.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let crashed = loop {
        if server.child.try_wait().ok().flatten().is_some() {
            break true;
        }
        if let Ok(response) = server.api(Method::GET, "/api/shares").send().await
            && let Ok(views) = response.json::<Vec<ShareView>>().await
        {
            let mut live: Vec<String> = views
                .iter()
                .filter(|v| !v.state.is_ended())
                .map(|v| format!("{}.data", v.files[0].hash))
                .collect();
            live.sort();
            live.dedup();
            let mut stored = server.stored_blob_files();
            stored.sort();
            let deleted = views.iter().all(|v| !v.state.is_ended() || v.data_deleted);
            if stored == live && deleted {
                break false;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{spec}: neither dead nor at rest"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if crashed {
        assert!(
            server.log().contains("crash point reached"),
            "{spec}: died without reaching its point: {}",
            server.log()
        );
        drop(server);
    } else {
        server.stop().await;
    }
    (seen, crashed)
}

/// Restarts on `dir` and checks the invariants against what was `seen` before.
async fn check_after(
    dir: &std::path::Path,
    spec: &str,
    seen: &[ShareView],
    contents: &HashMap<&str, Vec<u8>>,
    keep: &veilshare_shared::ShareId,
) {
    let server = Server::start(dir).await;
    let now = server.list().await;
    let by_id: HashMap<_, _> = now.iter().map(|v| (v.id.clone(), v)).collect();
    // What was seen before the crash still holds: an ended share stays ended, counts never
    // go down.
    for before in seen {
        let Some(after) = by_id.get(&before.id) else {
            panic!("{spec}: share {} seen before the crash is gone", before.id);
        };
        if before.state.is_ended() {
            assert!(
                after.state.is_ended(),
                "{spec}: {} came back to life",
                before.id
            );
        }
        assert!(
            after.downloads_completed >= before.downloads_completed,
            "{spec}: a count went down"
        );
    }
    let mut live_blobs = Vec::new();
    for view in &now {
        if let Some(max) = view.policy.max_downloads {
            assert!(
                view.downloads_completed <= max,
                "{spec}: more copies than allowed"
            );
        }
        if view.state.is_ended() {
            continue;
        }
        // A live share has all its data, byte for byte.
        let link = view.links.local.clone().expect("link");
        let (status, body) = fetch(&server.http, &format!("{link}download"))
            .await
            .expect("download");
        assert_eq!(
            status, 200,
            "{spec}: live share {} answers {status}",
            view.files[0].name
        );
        assert!(
            body == contents[view.files[0].name.as_str()],
            "{spec}: {} is not byte-identical",
            view.files[0].name
        );
        live_blobs.push(format!("{}.data", view.files[0].hash));
    }
    assert!(
        now.iter()
            .any(|v| &v.id == keep && v.state == ShareState::Live)
    );
    // No data of an ended share after start-up (shares of the same files share their data).
    server
        .wait_stored_blobs(&live_blobs, &format!("{spec}: only live shares' data"))
        .await;
    // And the store still takes new shares.
    server
        .create(&[("keep.bin", &contents["keep.bin"])], &[])
        .await;
    server.stop().await;
}

/// The points this test can reach.
fn points() -> Vec<&'static str> {
    veilshare::core::crash::POINTS
        .iter()
        .copied()
        .filter(|point| !NOT_IN_SCENARIO.contains(point))
        .collect()
}

#[tokio::test]
async fn a_crash_at_any_durable_step_leaves_a_consistent_data_directory() {
    let contents = contents();
    let mut runs = 0;
    for point in points() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(dir.path()).await;
        let keep = server
            .create(&[("keep.bin", &contents["keep.bin"])], &[])
            .await;
        server.stop().await;
        let crashed = crash_and_check(dir.path(), &format!("{point}:1"), &contents, &keep.id).await;
        assert!(crashed, "{point}: the scenario never reached the point");
        runs += 1;
    }
    assert_eq!(runs, 9);
}

/// A randomised mix on one data directory that lives through every run: each run crashes at
/// a random point on its 1st, 2nd or 3rd pass (or not at all, when the scenario passes it
/// fewer times), and the next run starts from what the crash left. The seed is printed; set
/// `VEILSHARE_CRASH_SEED` to replay a failure.
#[tokio::test]
async fn a_random_mix_of_crashes_on_one_data_directory_keeps_it_consistent() {
    use rand::{Rng, SeedableRng};
    const RUNS: usize = 12;
    let seed = std::env::var("VEILSHARE_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("crash mix seed {seed} (VEILSHARE_CRASH_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let contents = contents();
    let points = points();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let keep = server
        .create(&[("keep.bin", &contents["keep.bin"])], &[])
        .await;
    server.stop().await;
    let mut crashed = 0;
    for _ in 0..RUNS {
        let point = points[rng.random_range(0..points.len())];
        let pass = rng.random_range(1..=3);
        let spec = format!("{point}:{pass}");
        eprintln!("crash mix run: {spec}");
        if crash_and_check(dir.path(), &spec, &contents, &keep.id).await {
            crashed += 1;
        }
    }
    eprintln!("crash mix: {RUNS} runs, {crashed} crashed (seed {seed})");
    assert!(crashed > 0, "no run of the mix crashed (seed {seed})");
}

/// A mirror killed between fetching its source's files and importing them: after a restart
/// the half-made mirror is nowhere (no share, no data, no scratch files), and the same mirror
/// then succeeds.
#[tokio::test]
async fn a_crash_after_a_mirror_fetched_its_files_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a")).await;
    let content = data(300_000, 35);
    let source = a
        .create(&[("m.bin", &content)], &[("direct", "true")])
        .await;
    let ticket = source.links.ticket.clone().expect("ticket");
    let b_dir = dir.path().join("b");
    let mut b = Server::start_with_env(&b_dir, &[("VEILSHARE_CRASH_AT", "mirror.fetched:1")]).await;
    let mirror = |b: &Server| {
        b.api(Method::POST, "/api/mirrors")
            .json(&serde_json::json!({ "source": ticket }))
            .send()
    };
    // The process dies under the request.
    assert!(mirror(&b).await.is_err(), "the mirror did not crash");
    let status = tokio::time::timeout(Duration::from_secs(30), b.child.wait())
        .await
        .expect("the process to die")
        .expect("wait");
    assert!(!status.success());
    assert!(b.log().contains("crash point reached"), "{}", b.log());
    drop(b);
    // What the crash left (so that the check after the restart can fail): the fetched files.
    let store = b_dir.join("store");
    assert!(
        !mirror_scratch(&store).is_empty(),
        "no scratch folder after the crash"
    );

    let b = Server::start(&b_dir).await;
    assert!(b.list().await.is_empty(), "a half-made mirror is listed");
    assert_eq!(mirror_scratch(&store), Vec::<std::path::PathBuf>::new());
    assert_eq!(b.stored_blob_files(), Vec::<String>::new());
    let response = mirror(&b).await.expect("mirror");
    assert_eq!(response.status(), 201);
    let view: ShareView = response.json().await.expect("view");
    let link = view.links.local.clone().expect("link");
    let (status, body) = fetch(&b.http, &format!("{link}download"))
        .await
        .expect("download");
    assert_eq!(status, 200);
    assert!(body == content, "the mirror's copy differs");
    b.stop().await;
    a.stop().await;
}

/// A mirror's scratch folders anywhere under `dir`.
fn mirror_scratch(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with("mirror-") {
            found.push(path);
        } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(mirror_scratch(&path));
        }
    }
    found
}

/// A drop box killed at each durable step of an upload (a file written to scratch, the box's
/// tag moved, the item recorded): after a restart no partial item is listed, the data on disk
/// is exactly that of the items listed, no scratch file is left, and the box takes the next
/// upload.
#[tokio::test]
async fn a_crash_in_the_middle_of_an_upload_to_a_drop_box_lists_no_partial_item() {
    use crate::dropbox::{create_dropbox, upload};
    let kept = data(50_000, 36);
    let sent = data(60_000, 37);
    for point in [
        "dropbox.part_written",
        "dropbox.tagged",
        "dropbox.item_recorded",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(dir.path()).await;
        let view = create_dropbox(&server, serde_json::json!({})).await;
        let link = view.links.local.clone().expect("link");
        assert_eq!(
            upload(&server, &link, &[("kept.bin", &kept)], None).await.0,
            200
        );
        server.stop().await;

        let mut server =
            Server::start_with_env(dir.path(), &[("VEILSHARE_CRASH_AT", &format!("{point}:1"))])
                .await;
        let link = server.view(&view.id).await.links.local.expect("link");
        let mut form = reqwest::multipart::Form::new();
        for name in ["x.bin", "y.bin"] {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(sent.clone()).file_name(name),
            );
        }
        let _ = server.http.post(&link).multipart(form).send().await;
        let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
            .await
            .expect("the process to die at its point")
            .expect("wait");
        assert!(!status.success(), "{point}");
        assert!(server.log().contains("crash point reached"), "{point}");
        drop(server);

        let server = Server::start(dir.path()).await;
        let after = server.view(&view.id).await;
        let dropbox = after.dropbox.clone().expect("box");
        let names: Vec<Vec<String>> = dropbox
            .items
            .iter()
            .map(|item| item.files.iter().map(|f| f.name.clone()).collect())
            .collect();
        let recorded = point == "dropbox.item_recorded";
        let expected = if recorded {
            vec![
                vec!["kept.bin".to_owned()],
                vec!["x.bin".to_owned(), "y.bin".to_owned()],
            ]
        } else {
            vec![vec!["kept.bin".to_owned()]]
        };
        assert_eq!(names, expected, "{point}");
        assert!(
            crate::util::names(&dir.path().join("store/scratch")).is_empty(),
            "{point}: scratch files left"
        );
        let listed: Vec<String> = dropbox
            .items
            .iter()
            .flat_map(|item| &item.files)
            .map(|f| format!("{}.data", f.hash))
            .collect();
        server
            .wait_stored_blobs(&listed, &format!("{point}: only the listed items' data"))
            .await;
        for item in &dropbox.items {
            for file in &item.files {
                let (_, bytes) = server.item_file(&view.id, &item.id, &file.name).await;
                let expected = if file.name == "kept.bin" {
                    &kept
                } else {
                    &sent
                };
                assert!(bytes == *expected, "{point}: {} differs", file.name);
            }
        }
        let link = after.links.local.clone().expect("link");
        assert_eq!(
            upload(&server, &link, &[("next.bin", b"next")], None)
                .await
                .0,
            200
        );
        server.stop().await;
    }
}
