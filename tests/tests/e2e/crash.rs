//! Crashes at every durable step (`docs/RELIABILITY.md`, section 1): a debug build aborts at
//! a named point (`VEILSHARE_CRASH_AT=<point>:<n>`, see `core/crash.rs`), as `kill -9` would;
//! a restart on the same data directory must find it consistent.

use std::{collections::HashMap, time::Duration};

use reqwest::Method;
use veilshare_shared::{ShareState, ShareView};

use crate::util::{Server, data, fetch};

/// The points a test cannot reach on one instance without Tor: onion keys need the private
/// network and mirrors a second instance (see RELIABILITY.md).
const NOT_REACHED_HERE: &[&str] = &["onion.keys_deleted", "mirror.fetched"];

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

#[tokio::test]
async fn a_crash_at_any_durable_step_leaves_a_consistent_data_directory() {
    let contents: HashMap<&str, Vec<u8>> = [
        ("keep.bin", data(200_000, 31)),
        ("once.bin", data(200_000, 32)),
        ("revoked.bin", data(200_000, 33)),
        ("direct.bin", data(200_000, 34)),
    ]
    .into_iter()
    .collect();
    let mut runs = 0;
    let points: Vec<&str> = veilshare::core::crash::POINTS
        .iter()
        .copied()
        .filter(|point| !NOT_REACHED_HERE.contains(point))
        .collect();
    for point in &points {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(dir.path()).await;
        let keep = server
            .create(&[("keep.bin", &contents["keep.bin"])], &[])
            .await;
        server.stop().await;

        let mut server =
            Server::start_with_env(dir.path(), &[("VEILSHARE_CRASH_AT", &format!("{point}:1"))])
                .await;
        let seen = scenario(&server, &contents).await;
        let exited = tokio::time::timeout(Duration::from_secs(30), server.child.wait()).await;
        assert!(
            exited.is_ok(),
            "{point}: the scenario never reached the point (the process still runs)"
        );
        assert!(
            server.log().contains("crash point reached"),
            "{point}: {}",
            server.log()
        );
        drop(server);
        runs += 1;

        let server = Server::start(dir.path()).await;
        let now = server.list().await;
        let by_id: HashMap<_, _> = now.iter().map(|v| (v.id.clone(), v)).collect();
        // What was seen before the crash still holds: an ended share stays ended, counts
        // never go down.
        for before in &seen {
            let Some(after) = by_id.get(&before.id) else {
                panic!("{point}: share {} seen before the crash is gone", before.id);
            };
            if before.state.is_ended() {
                assert!(
                    after.state.is_ended(),
                    "{point}: {} came back to life",
                    before.id
                );
            }
            assert!(
                after.downloads_completed >= before.downloads_completed,
                "{point}: a count went down"
            );
        }
        let mut live_blobs = Vec::new();
        for view in &now {
            if let Some(max) = view.policy.max_downloads {
                assert!(
                    view.downloads_completed <= max,
                    "{point}: more copies than allowed"
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
                "{point}: live share {} answers {status}",
                view.files[0].name
            );
            assert!(
                body == contents[view.files[0].name.as_str()],
                "{point}: {} is not byte-identical",
                view.files[0].name
            );
            live_blobs.push(format!("{}.data", view.files[0].hash));
        }
        assert!(
            now.iter()
                .any(|v| v.id == keep.id && v.state == ShareState::Live)
        );
        // No data of an ended share after start-up.
        live_blobs.sort();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut stored = server.stored_blob_files();
            stored.sort();
            if stored == live_blobs {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{point}: data on disk {stored:?}, live shares' {live_blobs:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And the store still takes new shares.
        server.create(&[("after.bin", b"after")], &[]).await;
        server.stop().await;
    }
    assert_eq!(runs, 9);
}
