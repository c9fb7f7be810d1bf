//! Unit tests of the share lifecycle on a real store in a temporary folder, with a fake
//! publisher that records what the core tells it.

use std::{
    sync::{Arc, Barrier, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use proptest::prelude::*;
use veilshare_shared::{
    CreateShareFields, Event, ShareId, ShareLinks, ShareState, ShareView, Transport,
};

use super::{Admission, PublishError, Publisher, ShareError, Shares, now_secs};
use crate::core::{
    events::EventBus,
    policy::Refusal,
    store::{ShareRecord, Store, StoredFile, content_hash},
};

/// How long a condition may take before a test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// A publisher that records the calls it gets, and can refuse shares.
#[derive(Debug, Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    refuse: bool,
    confirms: bool,
}

impl Fake {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn count(&self, call: &str) -> usize {
        self.calls().iter().filter(|c| *c == call).count()
    }

    fn record(&self, call: String) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }
}

impl Publisher for Fake {
    fn confirms_reachability(&self) -> bool {
        self.confirms
    }

    fn prepare<'a>(
        &'a self,
        share: &'a ShareRecord,
    ) -> futures::future::BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            self.record(format!("prepare {}", share.id));
            if self.refuse {
                Err(PublishError("refused by the fake".into()))
            } else {
                Ok(())
            }
        })
    }

    fn start(&self, share: &ShareRecord) {
        self.record(format!("start {}", share.id));
    }

    fn stop(&self, id: &ShareId, reason: ShareState) {
        self.record(format!("stop {id} {reason:?}"));
    }

    fn links(&self, share: &ShareRecord, links: &mut ShareLinks) {
        links.local = Some(format!("fake://{}", share.id));
    }
}

struct Setup {
    dir: tempfile::TempDir,
    shares: Shares,
    fake: Arc<Fake>,
}

async fn open(dir: &std::path::Path) -> Shares {
    let store = Store::open(&dir.join("store")).await.expect("store");
    Shares::start(store, EventBus::default())
        .await
        .expect("shares")
}

async fn setup_with(fake: Fake) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let shares = open(dir.path()).await;
    let fake = Arc::new(fake);
    shares.attach(&fake).await.expect("attach");
    Setup { dir, shares, fake }
}

async fn setup() -> Setup {
    setup_with(Fake::default()).await
}

fn fields(max_downloads: Option<u32>, expires_in_secs: Option<u64>) -> CreateShareFields {
    CreateShareFields {
        max_downloads,
        expires_in_secs,
        ..CreateShareFields::default()
    }
}

/// Creates a share of one file holding `content`.
async fn create(
    shares: &Shares,
    content: &[u8],
    fields: CreateShareFields,
) -> Result<ShareView, ShareError> {
    let store = shares.store();
    let permit = store.import_permit().await?;
    let chunk: std::io::Result<Bytes> = Ok(Bytes::from(content.to_vec()));
    let tag = store
        .import_stream(&permit, futures::stream::iter(vec![chunk]))
        .await?;
    let file = StoredFile {
        name: "a.txt".into(),
        size: content.len() as u64,
        hash: content_hash(tag.hash()),
        crc32: crc32fast::hash(content),
    };
    let collection = store
        .store_collection(&permit, std::slice::from_ref(&file))
        .await?;
    let view = shares
        .create("test", vec![file], collection, fields, Vec::new(), permit)
        .await;
    drop(tag);
    view
}

fn data_deleted(shares: &Shares, id: &ShareId) -> bool {
    shares
        .public_share(id)
        .is_some_and(|share| share.record.data_deleted)
}

/// Polls `check` until it holds, or fails after [`DEADLINE`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the event `pick` selects.
async fn next_event<T>(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(event) {
                        return found;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("event bus closed: {error}"),
            }
        }
    })
    .await
    .expect("event within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_share_is_prepared_started_and_shown_with_its_publishers_links() {
    let Setup { shares, fake, .. } = setup().await;
    let view = create(&shares, b"hello", fields(None, None))
        .await
        .expect("share");
    assert_eq!(
        view.state,
        ShareState::Live,
        "no publisher confirms reachability"
    );
    assert_eq!(
        fake.calls(),
        [format!("prepare {}", view.id), format!("start {}", view.id)]
    );
    assert_eq!(
        view.links.local.as_deref(),
        Some(format!("fake://{}", view.id).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_confirms_keeps_new_shares_publishing_until_reachable() {
    let Setup { shares, fake, .. } = setup_with(Fake {
        confirms: true,
        ..Fake::default()
    })
    .await;
    let view = create(&shares, b"hello", fields(None, None))
        .await
        .expect("share");
    assert_eq!(view.state, ShareState::Publishing);
    shares
        .report_problem(&view.id, "not yet".into())
        .await
        .expect("problem");
    assert_eq!(
        shares.view(&view.id).and_then(|v| v.problem).as_deref(),
        Some("not yet")
    );
    shares.reachable(&view.id).await.expect("reachable");
    let live = shares.view(&view.id).expect("view");
    assert_eq!(live.state, ShareState::Live);
    assert_eq!(live.problem, None);
    assert_eq!(fake.count(&format!("start {}", view.id)), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_publisher_leaves_nothing_behind() {
    let Setup { shares, .. } = setup().await;
    let willing = Arc::new(Fake::default());
    let refusing = Arc::new(Fake {
        refuse: true,
        ..Fake::default()
    });
    shares.attach(&willing).await.expect("attach");
    shares.attach(&refusing).await.expect("attach");
    let error = create(&shares, b"hello", fields(None, None))
        .await
        .expect_err("refused");
    assert!(matches!(error, ShareError::Publish(_)), "{error:?}");
    assert!(shares.list().is_empty());
    assert!(shares.store().list().await.expect("catalog").is_empty());
    // What was prepared for it is released; nothing was started.
    let calls = willing.calls();
    assert!(calls.iter().any(|c| c.starts_with("stop ")), "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("start ")), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_is_idempotent_and_final() {
    let Setup { shares, fake, .. } = setup().await;
    let view = create(&shares, b"hello", fields(Some(3), Some(3600)))
        .await
        .expect("share");
    let id = view.id;
    let revoked = shares.revoke(&id).await.expect("revoke");
    assert_eq!(revoked.state, ShareState::Revoked);
    let ended_at = revoked.ended_at.expect("ended_at");
    // Again, and by the other ways a share ends: nothing changes.
    let again = shares.revoke(&id).await.expect("revoke again");
    assert_eq!(
        (again.state, again.ended_at),
        (ShareState::Revoked, Some(ended_at))
    );
    shares.end(&id, ShareState::Expired).await.expect("end");
    shares.end(&id, ShareState::Exhausted).await.expect("end");
    shares.reachable(&id).await.expect("reachable");
    shares
        .set_address(&id, "http://elsewhere/".into())
        .await
        .expect("address");
    let view = shares.view(&id).expect("view");
    assert_eq!(view.state, ShareState::Revoked);
    assert_eq!(view.ended_at, Some(ended_at));
    assert_eq!(
        view.links,
        ShareLinks::default(),
        "an ended share shows no link"
    );
    assert_eq!(fake.count(&format!("stop {id} Revoked")), 1);
    assert_eq!(
        fake.calls()
            .iter()
            .filter(|c| c.starts_with("stop"))
            .count(),
        1
    );
    assert_eq!(
        shares
            .begin_transfer(&id, Transport::Plain, "download", 0, 5, 5)
            .err(),
        Some(Admission::Refused(Refusal::Ended))
    );
    eventually("the data to be deleted", || data_deleted(&shares, &id)).await;
    let persisted = shares.store().list().await.expect("catalog");
    assert_eq!(persisted[0].state, ShareState::Revoked);
    assert!(persisted[0].data_deleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_expires_on_time_and_its_publishers_are_told() {
    let Setup { shares, fake, .. } = setup().await;
    let mut events = shares.events().subscribe();
    let view = create(&shares, b"hello", fields(None, Some(1)))
        .await
        .expect("share");
    let ended = next_event(&mut events, |event| match event {
        Event::ShareEnded { share } if share.id == view.id => Some(share),
        _ => None,
    })
    .await;
    assert_eq!(ended.state, ShareState::Expired);
    // Whole seconds: the expiry may be a moment after creation, never later than the end.
    let expires_at = view.policy.expires_at.expect("an expiry");
    assert!(
        ended.ended_at.is_some_and(|at| at >= expires_at),
        "ended at {:?}, before its expiry {expires_at}",
        ended.ended_at
    );
    // The end is announced before the publishers are stopped, on the same task.
    eventually("the publishers to be told", || {
        fake.count(&format!("stop {} Expired", view.id)) == 1
    })
    .await;
    eventually("the data to be deleted", || data_deleted(&shares, &view.id)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_share_keeps_its_data_until_its_last_transfer_ends() {
    let Setup { shares, .. } = setup().await;
    let mut events = shares.events().subscribe();
    let view = create(&shares, b"hello", fields(None, Some(1)))
        .await
        .expect("share");
    let transfer = shares
        .begin_transfer(&view.id, Transport::Plain, "download", 0, 5, 5)
        .expect("admitted");
    next_event(&mut events, |event| match event {
        Event::ShareEnded { share } if share.id == view.id => Some(()),
        _ => None,
    })
    .await;
    // Expiry lets running transfers finish: the data stays while this one runs.
    let watch_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < watch_until {
        assert!(
            !data_deleted(&shares, &view.id),
            "data deleted under a running transfer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!transfer.cancelled().is_cancelled(), "expiry does not cut");
    transfer.finish();
    tokio::time::timeout(DEADLINE, shares.wait_data_deleted(&view.id))
        .await
        .expect("the data deleted once idle");
    assert!(data_deleted(&shares, &view.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_cuts_running_transfers() {
    let Setup { shares, .. } = setup().await;
    let view = create(&shares, b"hello", fields(None, None))
        .await
        .expect("share");
    let transfer = shares
        .begin_transfer(&view.id, Transport::Plain, "download", 0, 5, 5)
        .expect("admitted");
    shares.revoke(&view.id).await.expect("revoke");
    assert!(transfer.cancelled().is_cancelled());
    drop(transfer);
    eventually("the data to be deleted", || data_deleted(&shares, &view.id)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_counted_download_ends_the_share() {
    let Setup { shares, fake, .. } = setup().await;
    let view = create(&shares, b"hello", fields(Some(1), None))
        .await
        .expect("share");
    shares
        .begin_transfer(&view.id, Transport::Plain, "download", 0, 5, 5)
        .expect("admitted")
        .finish();
    eventually("the share to be exhausted", || {
        shares
            .view(&view.id)
            .is_some_and(|v| v.state == ShareState::Exhausted)
    })
    .await;
    eventually("the publishers to be told", || {
        fake.count(&format!("stop {} Exhausted", view.id)) == 1
    })
    .await;
    let ledger = shares.store().transfers(&view.id).await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert!(ledger[0].finished);
}

/// Rewrites a share's persisted record (what a crash at some moment would have left).
async fn persist(shares: &Shares, id: &ShareId, change: impl FnOnce(&mut ShareRecord)) {
    let mut record = shares.public_share(id).expect("share").record;
    change(&mut record);
    shares.store().update(record, None).await.expect("update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_recovers_every_state() {
    let Setup { dir, shares, fake } = setup_with(Fake {
        confirms: true,
        ..Fake::default()
    })
    .await;
    let publishing = create(&shares, b"one", fields(None, None))
        .await
        .expect("share")
        .id;
    let live = create(&shares, b"two", fields(None, Some(3600)))
        .await
        .expect("share")
        .id;
    shares.reachable(&live).await.expect("reachable");
    let expired = create(&shares, b"three", fields(None, Some(3600)))
        .await
        .expect("share")
        .id;
    let exhausted = create(&shares, b"four", fields(Some(1), None))
        .await
        .expect("share")
        .id;
    let revoked_with_data = create(&shares, b"five", fields(None, None))
        .await
        .expect("share")
        .id;
    let revoked = create(&shares, b"six", fields(None, None))
        .await
        .expect("share")
        .id;
    shares.revoke(&revoked).await.expect("revoke");
    eventually("the data to be deleted", || data_deleted(&shares, &revoked)).await;
    // Crashes at various moments: while the program was down the expiry passed; the last
    // download was counted but the share not yet ended; a revocation was persisted but its
    // data not yet deleted.
    persist(&shares, &expired, |r| {
        r.policy.expires_at = Some(now_secs() - 10)
    })
    .await;
    persist(&shares, &exhausted, |r| r.ledger.completed = 1).await;
    persist(&shares, &revoked_with_data, |r| {
        r.state = ShareState::Revoked;
        r.ended_at = Some(now_secs());
    })
    .await;
    let store = shares.store().clone();
    let registry = Arc::downgrade(&shares.0);
    drop(shares);
    drop(fake);
    eventually("the registry to be freed", || registry.upgrade().is_none()).await;
    store.shutdown().await;
    drop(store);

    let shares = open(dir.path()).await;
    let fake = Arc::new(Fake {
        confirms: true,
        ..Fake::default()
    });
    shares.attach(&fake).await.expect("attach");
    let state = |id: &ShareId| shares.view(id).map(|v| v.state);
    assert_eq!(state(&publishing), Some(ShareState::Publishing));
    assert_eq!(state(&live), Some(ShareState::Live));
    assert_eq!(state(&expired), Some(ShareState::Expired));
    assert_eq!(state(&exhausted), Some(ShareState::Exhausted));
    assert_eq!(state(&revoked_with_data), Some(ShareState::Revoked));
    assert_eq!(state(&revoked), Some(ShareState::Revoked));
    // Live shares are published again; every ended one is stopped (keys left by a crash go).
    for id in [&publishing, &live] {
        assert_eq!(fake.count(&format!("prepare {id}")), 1);
        assert_eq!(fake.count(&format!("start {id}")), 1);
    }
    for (id, reason) in [
        (&expired, "Expired"),
        (&exhausted, "Exhausted"),
        (&revoked_with_data, "Revoked"),
        (&revoked, "Revoked"),
    ] {
        assert_eq!(
            fake.count(&format!("stop {id} {reason}")),
            1,
            "{:?}",
            fake.calls()
        );
        assert_eq!(fake.count(&format!("start {id}")), 0);
    }
    for id in [&expired, &exhausted, &revoked_with_data, &revoked] {
        eventually("an ended share's data to be deleted", || {
            data_deleted(&shares, id)
        })
        .await;
    }
    assert!(!data_deleted(&shares, &live));
    // The live share still serves, with its timer armed again.
    assert!(
        shares
            .begin_transfer(&live, Transport::Plain, "download", 0, 3, 3)
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_does_not_keep_its_publishers_or_itself_alive() {
    #[derive(Debug)]
    struct Holder(#[allow(dead_code)] Shares);
    impl Publisher for Holder {
        fn start(&self, _share: &ShareRecord) {}
        fn stop(&self, _id: &ShareId, _reason: ShareState) {}
        fn links(&self, _share: &ShareRecord, _links: &mut ShareLinks) {}
    }
    let Setup { shares, fake, .. } = setup().await;
    create(&shares, b"hello", fields(None, Some(3600)))
        .await
        .expect("share");
    // A publisher holds the registry, as the real ones do.
    let holder = Arc::new(Holder(shares.clone()));
    shares.attach(&holder).await.expect("attach");
    let weak_registry = Arc::downgrade(&shares.0);
    let weak_fake = Arc::downgrade(&fake);
    drop(fake);
    assert!(
        weak_fake.upgrade().is_none(),
        "the registry kept a publisher alive"
    );
    drop(shares);
    drop(holder);
    eventually("the registry to be freed", || {
        weak_registry.upgrade().is_none()
    })
    .await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// However concurrent requests interleave, exactly the transfers the budget allows are
    /// admitted: the reserved bytes never exceed it, and every refused request would have.
    #[test]
    fn concurrent_admission_is_exact(
        max_downloads in 1u32..4,
        size in 1usize..4096,
        payloads in prop::collection::vec(1u64..=4096, 1..12),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let Setup { shares, .. } = setup().await;
            let content = vec![7u8; size];
            let view = create(&shares, &content, fields(Some(max_downloads), None))
                .await
                .expect("share");
            let size = size as u64;
            let payloads: Vec<u64> = payloads.iter().map(|p| (*p).min(size)).collect();
            let barrier = Arc::new(Barrier::new(payloads.len()));
            let threads: Vec<_> = payloads
                .iter()
                .map(|&payload| {
                    let shares = shares.clone();
                    let id = view.id.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        (payload, shares.begin_transfer(&id, Transport::Plain, "download", 0, payload, payload))
                    })
                })
                .collect();
            let results: Vec<_> = threads
                .into_iter()
                .map(|t| t.join().expect("thread"))
                .collect();
            let budget = u64::from(max_downloads) * size + crate::core::policy::slack(size);
            let admitted: u64 = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(p, _)| p)
                .sum();
            prop_assert!(admitted <= budget, "admitted {admitted} > budget {budget}");
            for (payload, result) in &results {
                if let Err(refusal) = result {
                    prop_assert_eq!(*refusal, Admission::Refused(Refusal::Busy));
                    prop_assert!(admitted + payload > budget, "refused {payload} with room left");
                }
            }
            let flight = shares.public_share(&view.id).expect("share").flight;
            let count = results.iter().filter(|(_, r)| r.is_ok()).count();
            prop_assert_eq!(flight.transfers as usize, count);
            prop_assert_eq!(flight.reserved_bytes, admitted);
            drop(results);
            Ok(())
        })?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_that_move_no_content_write_and_announce_nothing() {
    let Setup { shares, .. } = setup().await;
    let view = create(&shares, b"hello", fields(Some(3), None))
        .await
        .expect("share");
    let mut events = shares.events().subscribe();
    // Zip structure only: admitted, silent.
    shares
        .begin_transfer(&view.id, Transport::Plain, "download", 0, 30, 0)
        .expect("admitted")
        .finish();
    // A client that went away before the first byte: announced, but nothing to write.
    drop(
        shares
            .begin_transfer(&view.id, Transport::Plain, "download", 0, 5, 5)
            .expect("admitted"),
    );
    // One that ran to its end: written.
    shares
        .begin_transfer(&view.id, Transport::Plain, "download", 0, 5, 5)
        .expect("admitted")
        .finish();
    eventually("the counted download", || {
        shares
            .view(&view.id)
            .is_some_and(|v| v.downloads_completed == 1 && v.downloads_in_flight == 0)
    })
    .await;
    let ledger = shares.store().transfers(&view.id).await.expect("ledger");
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    let mut started = 0;
    while let Ok(event) = events.try_recv() {
        if let Event::DownloadStarted { bytes, .. } = event {
            assert_eq!(bytes, 5, "a transfer without content was announced");
            started += 1;
        }
    }
    assert_eq!(started, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_updates_of_a_download_flood_are_spaced_and_the_last_is_announced() {
    let Setup { shares, .. } = setup().await;
    let view = create(&shares, b"hello", fields(None, None))
        .await
        .expect("share");
    let mut events = shares.events().subscribe();
    const DOWNLOADS: u32 = 200;
    let started = Instant::now();
    for _ in 0..DOWNLOADS {
        shares
            .begin_transfer(&view.id, Transport::Plain, "download", 0, 5, 5)
            .expect("admitted")
            .finish();
    }
    eventually("every download to be counted", || {
        shares
            .view(&view.id)
            .is_some_and(|v| v.downloads_completed == DOWNLOADS && v.downloads_in_flight == 0)
    })
    .await;
    // Every event up to the view that shows the last count (announced within a period of the
    // last change), counted.
    let (mut views, mut small) = (0u128, 0);
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.recv().await {
                Ok(Event::ShareUpdated { share }) => {
                    views += 1;
                    if share.downloads_completed == DOWNLOADS && share.downloads_in_flight == 0 {
                        return;
                    }
                }
                Ok(Event::DownloadStarted { .. } | Event::DownloadEnded { .. }) => small += 1,
                Ok(_) => {}
                Err(error) => panic!("events: {error}"),
            }
        }
    })
    .await
    .expect("the last count was announced");
    let elapsed = started.elapsed();
    // Before: two whole views per download (400). Now one per period, plus the first.
    let periods = elapsed.as_millis() / super::COUNTER_EVENTS_EVERY.as_millis() + 2;
    assert!(
        views <= periods,
        "{views} views in {elapsed:?} (at most {periods})"
    );
    assert_eq!(
        small,
        2 * DOWNLOADS,
        "every start and end is still announced"
    );
}
