//! The Get panel's API (`/api/downloads`): a running app fetches a share from another one into
//! its downloads folder, with the engine of `veilshare get`.

use std::{path::Path, time::Duration};

use reqwest::Method;
use veilshare_shared::{GetState, GetView};

use crate::util::{Server, data, eventually};

/// `method path` on the app's API, its JSON answer.
async fn call<T: serde::de::DeserializeOwned>(server: &Server, method: Method, path: &str) -> T {
    server
        .api(method, path)
        .send()
        .await
        .unwrap_or_else(|error| panic!("{path}: {error}"))
        .json()
        .await
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Waits until the fetch `id` is in `state` (a long deadline: a source that comes back is
/// retried once a few seconds); panics with its last view otherwise.
pub(crate) async fn wait_get(server: &Server, id: &str, state: GetState) -> GetView {
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    loop {
        let gets: Vec<GetView> = call(server, Method::GET, "/api/downloads").await;
        let get = gets
            .into_iter()
            .find(|g| g.id == id)
            .expect("the fetch is listed");
        if get.state == state {
            return get;
        }
        assert!(
            std::time::Instant::now() < deadline
                && (state == GetState::Failed || get.state != GetState::Failed),
            "the fetch is {:?}, not {state:?}: {get:?}\n{}",
            get.state,
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Chooses `folder` for the server's downloads.
pub(crate) async fn use_folder(server: &Server, folder: &Path) {
    std::fs::create_dir_all(folder).expect("folder");
    let answer = server
        .api(Method::PUT, "/api/settings/downloads")
        .json(&serde_json::json!({ "folder": folder }))
        .send()
        .await
        .expect("PUT");
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
}

pub(crate) async fn start_get(server: &Server, sources: &[&str], key: Option<&str>) -> GetView {
    let answer = server
        .api(Method::POST, "/api/downloads")
        .json(&serde_json::json!({ "sources": sources, "key": key }))
        .send()
        .await
        .expect("POST /api/downloads");
    assert_eq!(answer.status(), 201, "{:?}", answer.text().await);
    answer.json().await.expect("JSON")
}

/// A share fetched in the app lands in the chosen folder, verified, with its listing and size;
/// a name already taken there is left alone (the new file gets ` (1)`).
#[tokio::test]
async fn the_app_fetches_a_share_into_its_downloads_folder_without_overwriting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sender = Server::start(&dir.path().join("sender")).await;
    let big = data(3 << 20, 81);
    let view = sender
        .create(
            &[("report.pdf", &big), ("notes.txt", b"notes\n")],
            &[("label", "For you")],
        )
        .await;
    let link = view.links.local.clone().expect("plain link");

    let app = Server::start(&dir.path().join("app")).await;
    let folder = dir.path().join("Downloads");
    use_folder(&app, &folder).await;
    std::fs::write(folder.join("notes.txt"), b"mine").expect("an existing file");
    let started = start_get(&app, &[&link], None).await;
    assert_eq!(started.folder, folder.display().to_string());
    let done = wait_get(&app, &started.id, GetState::Done).await;
    assert_eq!(done.label.as_deref(), Some("For you"));
    assert_eq!(done.total, Some(big.len() as u64 + 6));
    assert_eq!(done.done, big.len() as u64 + 6);
    let names: Vec<&str> = done.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["report.pdf", "notes.txt"]);
    assert_eq!(
        std::fs::read(folder.join("report.pdf")).expect("saved"),
        big
    );
    assert_eq!(
        std::fs::read(folder.join("notes.txt")).expect("kept"),
        b"mine"
    );
    assert_eq!(
        std::fs::read(folder.join("notes (1).txt")).expect("renamed"),
        b"notes\n"
    );
    assert!(
        done.saved.iter().any(|p| p.ends_with("notes (1).txt")),
        "{:?}",
        done.saved
    );
    // Removing a finished fetch from the list leaves its files.
    let removed = app
        .api(Method::DELETE, &format!("/api/downloads/{}", done.id))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(removed.status(), 204);
    assert!(folder.join("report.pdf").exists());
    let left: Vec<GetView> = call(&app, Method::GET, "/api/downloads").await;
    assert!(left.is_empty(), "{left:?}");
    app.stop().await;
    sender.stop().await;
}

/// A fetch whose source is offline keeps trying; it pauses and resumes on request; and after
/// the app restarts it runs again by itself and completes once the source is back.
#[tokio::test]
async fn a_fetch_waits_for_its_source_pauses_and_survives_a_restart_of_the_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sender_dir = dir.path().join("sender");
    let sender = Server::start(&sender_dir).await;
    let content = data(1 << 20, 82);
    let view = sender.create(&[("later.bin", &content)], &[]).await;
    let link = view.links.local.clone().expect("plain link");
    let port: u16 = link
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    sender.stop().await;

    let app_dir = dir.path().join("app");
    let app = Server::start(&app_dir).await;
    let folder = dir.path().join("Downloads");
    use_folder(&app, &folder).await;
    let get = start_get(&app, &[&link], None).await;
    assert_eq!(get.state, GetState::Connecting);
    let paused: GetView = call(
        &app,
        Method::POST,
        &format!("/api/downloads/{}/pause", get.id),
    )
    .await;
    assert_eq!(paused.state, GetState::Paused);
    let resumed: GetView = call(
        &app,
        Method::POST,
        &format!("/api/downloads/{}/resume", get.id),
    )
    .await;
    assert_eq!(resumed.state, GetState::Connecting);
    // The app stops while the fetch waits; the sender comes back; the app starts again.
    app.kill9().await;
    let sender = Server::start_on(&sender_dir, port).await;
    let app = Server::start(&app_dir).await;
    let done = wait_get(&app, &get.id, GetState::Done).await;
    assert_eq!(
        std::fs::read(folder.join("later.bin")).expect("saved"),
        content
    );
    assert_eq!(done.done, content.len() as u64);
    // Bad requests say what is wrong.
    let bad = app
        .api(Method::POST, "/api/downloads")
        .json(&serde_json::json!({ "sources": ["ftp://example/"] }))
        .send()
        .await
        .expect("POST");
    assert_eq!(bad.status(), 400);
    let bad = app
        .api(Method::PUT, "/api/settings/downloads")
        .json(&serde_json::json!({ "folder": "relative/path" }))
        .send()
        .await
        .expect("PUT");
    assert_eq!(bad.status(), 400);
    app.stop().await;
    sender.stop().await;
}

/// Cancelling a fetch from a ticket deletes its partial store (`.<hash>.veilshare-iroh`), the
/// hidden folder its pieces go to, and leaves the folder as it was.
#[tokio::test]
async fn cancelling_a_ticket_fetch_deletes_its_partial_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sender = Server::start(&dir.path().join("sender")).await;
    let view = sender
        .create(&[("gone.bin", &data(1 << 20, 83))], &[("direct", "true")])
        .await;
    let ticket = view.links.ticket.clone().expect("ticket");
    // Offline: the fetch opens its partial store, then waits for the sender.
    sender.stop().await;

    let app = Server::start(&dir.path().join("app")).await;
    let folder = dir.path().join("Downloads");
    use_folder(&app, &folder).await;
    let get = start_get(&app, &[&ticket], None).await;
    let store = eventually("the partial store to be made", || async {
        std::fs::read_dir(&folder)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".veilshare-iroh"))
    })
    .await;
    let response = app
        .api(Method::DELETE, &format!("/api/downloads/{}", get.id))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status(), 204);
    eventually("the partial store to be deleted", || async {
        (!store.exists()).then_some(())
    })
    .await;
    assert_eq!(crate::util::names(&folder), Vec::<String>::new());
    app.stop().await;
}
