//! The owner's log of a share: the entries of a scripted life (created, live, two downloads on
//! the plain link, refusals, exhausted, data deleted), nothing about recipients, an edited
//! entry detected by `veilshare log`, and the log gone with the data unless kept.

use veilshare_shared::{AuditEvent, AuditLogView, ShareState, Transport};

use crate::util::*;

async fn log(server: &Server, id: &veilshare_shared::ShareId) -> AuditLogView {
    server
        .api(reqwest::Method::GET, &format!("/api/shares/{id}/log"))
        .send()
        .await
        .expect("GET log")
        .json()
        .await
        .expect("log")
}

#[tokio::test]
async fn a_shares_life_is_logged_to_the_minute_without_recipients_and_an_edit_shows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let content = data(200_000, 7);
    let view = server
        .create(
            &[("report.pdf", &content)],
            &[("max_downloads", "2"), ("keep_log", "true")],
        )
        .await;
    let id = view.id.clone();
    let link = view.links.local.clone().expect("local link");
    for _ in 0..2 {
        let (status, body) = fetch(&server.http, &format!("{link}download"))
            .await
            .expect("download");
        assert_eq!((status, body.len()), (200, content.len()));
    }
    server
        .wait_view(&id, "the share to end and its data to go", |v| {
            v.state == ShareState::Exhausted && v.data_deleted
        })
        .await;
    let history = eventually("the data deletion to be logged", || async {
        let history = log(&server, &id).await;
        (history.entries.last().map(|e| &e.event) == Some(&AuditEvent::DataDeleted))
            .then_some(history)
    })
    .await;
    assert_eq!(history.broken, None);
    let events: Vec<AuditEvent> = history.entries.iter().map(|e| e.event.clone()).collect();
    assert!(
        matches!(
            events[0],
            AuditEvent::Created {
                files: 1,
                max_downloads: Some(2),
                restricted: false,
                ..
            }
        ),
        "{events:?}"
    );
    assert_eq!(
        events[1..],
        [
            AuditEvent::Live,
            AuditEvent::Download {
                transport: Transport::Plain,
                completed: 1
            },
            AuditEvent::Download {
                transport: Transport::Plain,
                completed: 2
            },
            AuditEvent::Ended {
                state: ShareState::Exhausted
            },
            AuditEvent::DataDeleted,
        ]
    );
    assert!(
        history.entries.iter().all(|e| e.at % 60 == 0),
        "to the minute"
    );
    let file = server
        .data_dir
        .join("store/audit")
        .join(format!("{id}.jsonl"));
    let stored = std::fs::read_to_string(&file).expect("the log file");
    for leak in ["127.0.0.1", "reqwest", "report.pdf", "user-agent"] {
        assert!(!stored.contains(leak), "the log holds {leak:?}: {stored}");
    }

    // `veilshare log` prints it; an edited entry makes it fail and say which.
    let data_dir = server.data_dir.to_string_lossy().into_owned();
    let (ok, out, err) = run_cli(&["log", id.as_str(), "--data-dir", &data_dir])
        .await
        .expect("log");
    assert!(ok, "{err}");
    assert!(out.contains("download #2 completed (plain link)"), "{out}");
    let edited = stored.replacen("\"completed\":2", "\"completed\":1", 1);
    assert_ne!(edited, stored);
    std::fs::write(&file, edited).expect("edit the log");
    let (ok, _, err) = run_cli(&["log", id.as_str(), "--data-dir", &data_dir])
        .await
        .expect("log");
    assert!(!ok);
    assert!(
        err.contains("entry 3 was changed after it was written"),
        "{err}"
    );

    // Without keep_log the history goes with the data.
    let other = server.create(&[("a.txt", b"a")], &[]).await;
    assert_eq!(
        log(&server, &other.id).await.entries.len(),
        2,
        "created, live"
    );
    let revoke = server
        .api(
            reqwest::Method::DELETE,
            &format!("/api/shares/{}", other.id),
        )
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoke.status(), 200);
    server
        .wait_view(&other.id, "the data to go", |v| v.data_deleted)
        .await;
    assert_eq!(log(&server, &other.id).await.entries, Vec::new());
    assert!(
        !server
            .data_dir
            .join(format!("store/audit/{}.jsonl", other.id))
            .exists()
    );
}

#[tokio::test]
async fn refusals_are_logged_at_most_once_a_minute_per_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    // Larger than loopback's socket buffers (which grow to several MiB): the held download
    // cannot be sent whole, and so counted, while nobody reads it (with 4 MiB it sometimes was,
    // and the next requests got 410 instead of 429).
    let content = data(32 << 20, 3);
    let view = server
        .create(&[("big.bin", &content)], &[("max_downloads", "1")])
        .await;
    let link = view.links.local.clone().expect("local link");
    // One download holds the only one allowed; the next five are refused (busy).
    let held = server
        .http
        .get(format!("{link}download"))
        .send()
        .await
        .expect("first");
    assert_eq!(held.status(), 200);
    for _ in 0..5 {
        let (status, _) = fetch(&server.http, &format!("{link}download"))
            .await
            .expect("refused");
        assert_eq!(status, 429);
    }
    drop(held);
    let history = eventually("the refusal to be logged", || async {
        let history = log(&server, &view.id).await;
        history
            .entries
            .iter()
            .any(|e| matches!(e.event, AuditEvent::Refused { .. }))
            .then_some(history)
    })
    .await;
    let refusals: Vec<&AuditEvent> = history
        .entries
        .iter()
        .map(|e| &e.event)
        .filter(|e| matches!(e, AuditEvent::Refused { .. }))
        .collect();
    // Five refusals within a minute (rarely two minutes): one entry, or two if a minute turned.
    assert!(!refusals.is_empty() && refusals.len() <= 2, "{refusals:?}");
    assert!(matches!(
        refusals[0],
        AuditEvent::Refused {
            reason: veilshare_shared::RefusalReason::Busy,
            count: 1
        }
    ));
}
