//! The share lifecycle: create, admit and count transfers, end (limit, expiry, owner), delete
//! the stored copy; owns the expiry timers and emits events. Knows no transport: the ways a
//! share is reached (the onion service, the plain listener, direct over iroh) are
//! [`Publisher`]s attached with [`Shares::attach`], which this module calls directly when a
//! share starts, ends or is shown, and which report back through [`Shares`]' own methods.
//!
//! Invariants:
//! - Every change of a share's counters or state is persisted (one catalog transaction) before
//!   it is acted on: before events, before revocation, before data deletion.
//! - Changes to one share are serialized by its `persist` lock, so concurrent transfers never
//!   lose a count.
//! - A share that ended has its data deleted once no transfer is in flight; `data_deleted` is
//!   persisted afterwards, and [`Shares::start`] finishes any deletion a crash interrupted.
//! - Admission and the in-flight bookkeeping happen under one lock, so the policy's concurrency
//!   bound holds exactly.
//! - Every attached publisher is told of every share: started when it is live (at creation, or
//!   when attached), stopped when it ends (and, when attached, for every share already ended,
//!   so that what a crash left behind is cleaned up).
//! - The registry holds its publishers weakly: publishers hold the registry (to admit
//!   transfers), the registry never keeps a publisher alive, so there is no reference cycle.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::future::BoxFuture;
use iroh_blobs::api::TempTag;
use rand::RngCore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use veilshare_shared::{
    AuditEvent, CreateShareFields, DropBoxView, Event, FileEntry, Policy, RecipientState,
    RecipientView, RefusalReason, ShareId, ShareLinks, ShareState, ShareView, Transport,
};

use crate::core::{
    audit::AuditLog,
    crash,
    events::EventBus,
    log_id,
    policy::{self, Flight, Ledger, Refusal},
    store::{
        DropBoxRecord, ImportPermit, RecipientRecord, ShareRecord, Store, StoreError, StoredFile,
        TransferRecord,
    },
};

/// Errors of share operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// No share with that id.
    #[error("no share with id {0}")]
    NotFound(ShareId),
    /// No item with that id in the drop box.
    #[error("no item {0} in this drop box")]
    ItemNotFound(String),
    /// No recipient with that name.
    #[error("no recipient named {0:?}")]
    RecipientNotFound(String),
    /// The change cannot be made (a message for the user).
    #[error("{0}")]
    Refused(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A publisher could not take the share (direct sharing could not start, say).
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Why a publisher could not take a share: a message for people.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PublishError(pub String);

/// One way a share is reached: the onion service, the plain listener, direct over iroh.
///
/// The registry calls these methods directly (never through the event bus, which drops events
/// for slow subscribers), holding none of its locks. They return promptly: anything long is
/// spawned. `links` is called while a view is made, so it must not make views itself
/// ([`Shares::view`], [`Shares::list`]). A publisher reports back with
/// [`Shares::set_address`], [`Shares::reachable`] and [`Shares::report_problem`].
pub trait Publisher: Send + Sync + std::fmt::Debug {
    /// Whether a share it publishes is `publishing` until the publisher reports it
    /// [`Shares::reachable`] (an onion service takes a while to be found); otherwise new shares
    /// are `live` at once.
    fn confirms_reachability(&self) -> bool {
        false
    }

    /// Reserves what `share` needs before it is created or resumed (direct sharing opens its
    /// endpoint here). An error refuses the new share, which then leaves nothing behind.
    fn prepare<'a>(&'a self, share: &'a ShareRecord) -> BoxFuture<'a, Result<(), PublishError>> {
        let _ = share;
        Box::pin(async { Ok(()) })
    }

    /// Starts publishing a prepared share that is not ended.
    fn start(&self, share: &ShareRecord);

    /// Stops publishing a share that ended as `reason`. Also called, when the publisher is
    /// attached, for every share already ended: must be idempotent and accept shares it never
    /// started.
    fn stop(&self, id: &ShareId, reason: ShareState);

    /// Adds this publisher's links to the view of a share that is not ended.
    fn links(&self, share: &ShareRecord, links: &mut ShareLinks);

    /// Starts publishing recipient `index` of a share that is not ended (added after the share
    /// started; [`Publisher::start`] starts those it already has).
    fn start_recipient(&self, share: &ShareRecord, index: usize) {
        let _ = (share, index);
    }

    /// Stops publishing a revoked recipient for good. Also called, when the publisher is
    /// attached, for every revoked recipient: must be idempotent.
    fn stop_recipient(&self, id: &ShareId, index: usize) {
        let _ = (id, index);
    }
}

/// Current unix time in seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh unguessable share id (128 random bits, base32).
pub fn new_share_id() -> ShareId {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let text = data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase();
    ShareId::parse(&text).unwrap_or_else(|| unreachable!("base32 of 16 bytes is a share id"))
}

/// A fresh recipient key for a restricted share: base32 (RFC 4648, no padding) of 32 random
/// bytes, an x25519 secret key in the form Tor Browser asks for. Kept in the share's record, so
/// that a restart authorizes the same recipient.
pub fn new_recipient_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    data_encoding::BASE32_NOPAD.encode(&bytes)
}

#[derive(Debug)]
struct Entry {
    record: ShareRecord,
    flight: Flight,
    cancel: CancellationToken,
    idle: Arc<Notify>,
    /// Notified once the stored copy of the ended share is deleted.
    deleted: Arc<Notify>,
    persist: Arc<tokio::sync::Mutex<()>>,
    /// When the last `ShareUpdated` for a transfer went out, and whether one is due.
    counters: CounterEvents,
}

/// Every transfer changes a share's counters, and each change was announced as a whole view
/// (over 100 KB for a share of a thousand files): a stranger downloading a small file in a
/// loop made the server build, clone and queue views as fast as it could answer. A share's
/// counter updates go out at most every [`COUNTER_EVENTS_EVERY`]; the last change is always
/// announced (a due update carries the view as it is when it goes). `DownloadStarted` and
/// `DownloadEnded` (a few bytes each) and every change of state still go out at once.
const COUNTER_EVENTS_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct CounterEvents {
    last: Option<tokio::time::Instant>,
    due: bool,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    events: EventBus,
    audit: AuditLog,
    entries: Mutex<HashMap<ShareId, Entry>>,
    publishers: Mutex<Vec<Weak<dyn Publisher>>>,
}

/// The share registry. Cloning gives another handle to the same registry.
#[derive(Debug, Clone)]
pub struct Shares(Arc<Inner>);

/// What a new record holds besides its files and fields.
struct RecordExtra {
    /// For a drop box: its limits (and no items yet).
    dropbox: Option<DropBoxRecord>,
    /// What the files' metadata revealed, and whether it was removed.
    metadata: Vec<veilshare_shared::MetadataReport>,
}

/// What the public site needs to know of a share.
#[derive(Debug, Clone)]
pub struct PublicShare {
    /// The persisted record.
    pub record: ShareRecord,
    /// Transfers running now.
    pub flight: Flight,
}

impl PublicShare {
    /// Whether new transfers may start now (state and clock).
    pub fn accepts_downloads(&self, now: u64) -> bool {
        !self.record.state.is_ended()
            && !policy::is_expired(&self.record.policy, now)
            && !policy::is_exhausted(&self.record.policy, &self.record.ledger)
    }
}

/// Why a transfer could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// No such share.
    NotFound,
    /// The policy refuses.
    Refused(Refusal),
}

/// A running transfer. Report progress with [`Transfer::set_sent`]; call
/// [`Transfer::finish`] when the response ran to its end. Dropping it without finishing
/// records an interrupted transfer.
#[derive(Debug)]
pub struct Transfer {
    shares: Shares,
    id: ShareId,
    via: Transport,
    resource: String,
    start: u64,
    end: u64,
    reserved: u64,
    sent: u64,
    finished: bool,
    /// Moves no content (zip structure only, on a share that has content): it is admitted like
    /// any other, but announces nothing and leaves the ledger untouched.
    quiet: bool,
    cancel: CancellationToken,
    /// Its end was recorded, or is being (by [`Transfer::finish_recorded`]).
    recorded: bool,
}

impl Transfer {
    /// Cancelled when the owner revokes the share.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Sets the content bytes sent so far.
    pub fn set_sent(&mut self, sent: u64) {
        self.sent = sent.min(self.reserved);
    }

    /// Marks the transfer as having sent everything it was admitted for (recorded in the
    /// background).
    pub fn finish(mut self) {
        self.sent = self.reserved;
        self.finished = true;
        drop(self);
    }

    /// Marks the transfer as having sent everything, and returns once it is recorded (the
    /// count persisted, the audit entry written). A listener waits for this before reading the
    /// connection's next request: a client downloading in a loop then goes at the pace of the
    /// disk's syncs instead of piling up transfers still to record, each holding memory
    /// (seen: 1 KiB per download, growing for as long as the loop ran).
    ///
    /// The recording runs in a task of its own, which goes on if the caller is dropped (a
    /// connection cut, or the onion service stopped by the very end this transfer causes).
    pub async fn finish_recorded(mut self) {
        self.sent = self.reserved;
        self.finished = true;
        if let Some(recording) = self.recording() {
            let _ = tokio::spawn(recording).await;
        }
    }

    /// What records the transfer's end; `None` once taken.
    fn recording(&mut self) -> Option<impl Future<Output = ()> + Send + 'static + use<>> {
        if self.recorded {
            return None;
        }
        self.recorded = true;
        let shares = self.shares.clone();
        let done = TransferRecord {
            resource: std::mem::take(&mut self.resource),
            start: self.start,
            end: self.end,
            sent: self.sent,
            finished: self.finished,
            ended_at: now_secs(),
        };
        let id = self.id.clone();
        let (reserved, quiet, via) = (self.reserved, self.quiet, self.via);
        Some(async move { shares.end_transfer(id, via, reserved, quiet, done).await })
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let (Some(recording), Ok(handle)) =
            (self.recording(), tokio::runtime::Handle::try_current())
        {
            handle.spawn(recording);
        }
    }
}

impl Shares {
    /// Loads the catalog, finishes what a crash interrupted, ends shares that expired while the
    /// program was down and arms the expiry timers. No publisher is attached yet: shares are
    /// published by [`Shares::attach`].
    pub async fn start(store: Store, events: EventBus) -> Result<Self, ShareError> {
        let records = store.list().await?;
        let audit = AuditLog::open(store.data_dir()).map_err(|source| StoreError::Io {
            context: "opening the audit logs".into(),
            source,
        })?;
        let shares = Self(Arc::new(Inner {
            store,
            events,
            audit,
            entries: Mutex::new(HashMap::new()),
            publishers: Mutex::new(Vec::new()),
        }));
        let now = now_secs();
        for record in records {
            let id = record.id.clone();
            let ended = record.state.is_ended();
            let data_deleted = record.data_deleted;
            let expired = policy::is_expired(&record.policy, now);
            let exhausted = policy::is_exhausted(&record.policy, &record.ledger);
            let dropbox = record.dropbox.is_some();
            let keeps = keeps_data(&record);
            shares.insert_entry(record);
            if dropbox && !data_deleted {
                // What a crash left tagged but unlisted goes; what the box lists stays.
                shares.retag_dropbox(&id).await?;
            }
            if ended && keeps {
                // An ended drop box keeps what it received until its owner deletes it.
            } else if ended {
                // A deletion a crash interrupted is finished before anything is served; one
                // that cannot finish now (a collection that timed out) does not stop the start.
                if !data_deleted && let Err(error) = shares.delete_data(&id).await {
                    tracing::warn!(share = %log_id(&id), %error, "could not delete an ended share's data at start; trying again");
                    let shares = shares.clone();
                    tokio::spawn(async move { shares.delete_data_until_done(&id).await });
                }
            } else if exhausted {
                shares.end(&id, ShareState::Exhausted).await?;
            } else if expired {
                tracing::info!(share = %log_id(&id), "share expired while veilshare was not running");
                shares.end(&id, ShareState::Expired).await?;
            } else {
                shares.arm_timer(&id);
            }
        }
        Ok(shares)
    }

    /// The storage layer.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.0.events
    }

    /// The owners' logs of the shares.
    pub fn audit(&self) -> &AuditLog {
        &self.0.audit
    }

    /// Attaches a publisher (held weakly: the caller keeps it alive): prepares and starts every
    /// share that is not ended (at the same address as before a restart), and stops every
    /// ended one (so that keys a crash left behind are deleted). Shares created from now on
    /// are published as they are created. Fails when a live share cannot be prepared.
    pub async fn attach<P: Publisher + 'static>(
        &self,
        publisher: &Arc<P>,
    ) -> Result<(), ShareError> {
        let dynamic: Arc<dyn Publisher> = publisher.clone();
        if let Ok(mut publishers) = self.0.publishers.lock() {
            publishers.push(Arc::downgrade(&dynamic));
        }
        let mut records: Vec<ShareRecord> = match self.0.entries.lock() {
            Ok(entries) => entries.values().map(|e| e.record.clone()).collect(),
            Err(_) => Vec::new(),
        };
        records.sort_by_key(|r| (r.created_at, r.id.clone()));
        for record in records {
            if record.state.is_ended() {
                publisher.stop(&record.id, record.state);
                continue;
            }
            // A crash after a revocation was recorded may have left its keys behind.
            for (index, _) in record
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_revoked())
            {
                publisher.stop_recipient(&record.id, index);
            }
            publisher.prepare(&record).await?;
            publisher.start(&record);
            self.publish_updated(&record.id);
        }
        Ok(())
    }

    /// The attached publishers still alive.
    fn publishers(&self) -> Vec<Arc<dyn Publisher>> {
        match self.0.publishers.lock() {
            Ok(mut publishers) => {
                publishers.retain(|p| p.strong_count() > 0);
                publishers.iter().filter_map(Weak::upgrade).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    fn insert_entry(&self, record: ShareRecord) {
        let entry = Entry {
            record: record.clone(),
            flight: Flight::default(),
            cancel: CancellationToken::new(),
            idle: Arc::new(Notify::new()),
            deleted: Arc::new(Notify::new()),
            persist: Arc::new(tokio::sync::Mutex::new(())),
            counters: CounterEvents::default(),
        };
        if let Ok(mut entries) = self.0.entries.lock() {
            entries.insert(record.id, entry);
        }
    }

    fn with_entry<T>(&self, id: &ShareId, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut entries = self.0.entries.lock().ok()?;
        entries.get_mut(id).map(f)
    }

    /// Creates a share from imported files: every publisher prepares it (a refusal leaves
    /// nothing behind), the data is tagged, the record written (the share becomes visible only
    /// now), its timer armed, its publishers started, and it is announced.
    pub async fn create(
        &self,
        upload_id: &str,
        files: Vec<StoredFile>,
        collection: TempTag,
        fields: CreateShareFields,
        metadata: Vec<veilshare_shared::MetadataReport>,
        permit: ImportPermit,
    ) -> Result<ShareView, ShareError> {
        let extra = RecordExtra {
            dropbox: None,
            metadata,
        };
        self.create_record(upload_id, files, collection, fields, extra, permit)
            .await
    }

    /// [`Shares::create`] for a share that gives `files` away, or for a drop box.
    async fn create_record(
        &self,
        upload_id: &str,
        files: Vec<StoredFile>,
        collection: TempTag,
        fields: CreateShareFields,
        extra: RecordExtra,
        permit: ImportPermit,
    ) -> Result<ShareView, ShareError> {
        let RecordExtra { dropbox, metadata } = extra;
        let id = new_share_id();
        let now = now_secs();
        let publishers = self.publishers();
        let record = ShareRecord {
            id: id.clone(),
            label: fields.label,
            files,
            collection: crate::core::store::content_hash(collection.hash()),
            policy: Policy {
                max_downloads: fields.max_downloads,
                expires_at: fields.expires_in_secs.map(|ttl| policy::expiry(now, ttl)),
            },
            created_at: now,
            state: if publishers.iter().any(|p| p.confirms_reachability()) {
                ShareState::Publishing
            } else {
                ShareState::Live
            },
            ended_at: None,
            ledger: Ledger::default(),
            data_deleted: false,
            direct: fields.direct,
            problem: None,
            onion: None,
            client_key: (fields.restricted && fields.recipients.is_empty()).then(new_recipient_key),
            dropbox,
            metadata,
            keep_log: fields.keep_log,
            recipients: fields
                .recipients
                .into_iter()
                .map(|name| RecipientRecord::new(name, new_recipient_key()))
                .collect(),
        };
        let release = |publishers: &[Arc<dyn Publisher>]| {
            for publisher in publishers {
                publisher.stop(&id, ShareState::Revoked);
            }
        };
        for (prepared, publisher) in publishers.iter().enumerate() {
            if let Err(error) = publisher.prepare(&record).await {
                release(&publishers[..prepared]);
                return Err(error.into());
            }
        }
        let persisted = async {
            self.0.store.tag_share(&id, &collection).await?;
            crash::point("share.tagged");
            self.0.store.insert(record.clone()).await?;
            crash::point("share.recorded");
            Ok::<(), StoreError>(())
        };
        if let Err(error) = persisted.await {
            release(&publishers);
            return Err(error.into());
        }
        drop(collection);
        drop(permit);
        let created = AuditEvent::Created {
            files: record.files.len(),
            bytes: record.content_size(),
            max_downloads: record.policy.max_downloads,
            expires_at: record.policy.expires_at,
            restricted: record.is_restricted(),
            direct: record.direct,
            dropbox: record.dropbox.is_some(),
            metadata_removed: record.metadata.iter().filter(|m| m.removed).count(),
        };
        self.0.audit.record(&id, now, created).await;
        if record.state == ShareState::Live {
            self.0.audit.record(&id, now, AuditEvent::Live).await;
        }
        self.insert_entry(record.clone());
        self.arm_timer(&id);
        for publisher in &publishers {
            publisher.start(&record);
        }
        let view = self
            .view(&id)
            .ok_or_else(|| ShareError::NotFound(id.clone()))?;
        tracing::info!(share = %log_id(&id), files = view.files.len(), bytes = view.total_size, "share created");
        self.0.events.publish(Event::ShareCreated {
            upload_id: upload_id.to_owned(),
            share: view.clone(),
        });
        Ok(view)
    }

    /// Every share, oldest first.
    pub fn list(&self) -> Vec<ShareView> {
        let ids: Vec<ShareId> = match self.0.entries.lock() {
            Ok(entries) => {
                let mut records: Vec<&Entry> = entries.values().collect();
                records.sort_by_key(|e| (e.record.created_at, e.record.id.clone()));
                records.iter().map(|e| e.record.id.clone()).collect()
            }
            Err(_) => Vec::new(),
        };
        ids.iter().filter_map(|id| self.view(id)).collect()
    }

    /// One share's view.
    pub fn view(&self, id: &ShareId) -> Option<ShareView> {
        let (record, flight) = self.with_entry(id, |entry| (entry.record.clone(), entry.flight))?;
        Some(self.make_view(&record, &flight))
    }

    fn make_view(&self, record: &ShareRecord, flight: &Flight) -> ShareView {
        let ended = record.state.is_ended();
        let mut links = ShareLinks::default();
        if !ended {
            for publisher in self.publishers() {
                publisher.links(record, &mut links);
            }
        }
        ShareView {
            id: record.id.clone(),
            label: record.label.clone(),
            files: record
                .files
                .iter()
                .map(|f| FileEntry {
                    name: f.name.clone(),
                    size: f.size,
                    hash: f.hash.clone(),
                })
                .collect(),
            total_size: record.content_size(),
            content_hash: record.collection.clone(),
            policy: record.policy.clone(),
            created_at: record.created_at,
            downloads_completed: record.ledger.completed,
            downloads_in_flight: flight.downloads(record.content_size()),
            downloads_remaining: policy::remaining(&record.policy, &record.ledger),
            state: record.state,
            ended_at: record.ended_at,
            data_deleted: record.data_deleted,
            direct: record.direct,
            problem: record.problem.clone(),
            links,
            client_key: record.client_key.clone().filter(|_| !ended),
            dropbox: record.dropbox.as_ref().map(|dropbox| DropBoxView {
                limits: dropbox.limits.clone(),
                uploads: dropbox.uploads,
                bytes: dropbox.bytes(),
                items: dropbox.items.iter().map(dropbox::item_view).collect(),
            }),
            metadata: record.metadata.clone(),
            recipients: record
                .recipients
                .iter()
                .map(|r| recipient_view(r, ended))
                .collect(),
        }
    }

    /// A snapshot of a share for the public site.
    pub fn public_share(&self, id: &ShareId) -> Option<PublicShare> {
        self.with_entry(id, |entry| PublicShare {
            record: entry.record.clone(),
            flight: entry.flight,
        })
    }

    /// Snapshots of the shares that are not ended and whose collection has the hash
    /// `collection` (hex), oldest first.
    pub fn with_collection(&self, collection: &str) -> Vec<PublicShare> {
        let Ok(entries) = self.0.entries.lock() else {
            return Vec::new();
        };
        let mut found: Vec<PublicShare> = entries
            .values()
            .filter(|e| {
                !e.record.state.is_ended()
                    && e.record.dropbox.is_none()
                    && e.record.collection.as_str() == collection
            })
            .map(|e| PublicShare {
                record: e.record.clone(),
                flight: e.flight,
            })
            .collect();
        found.sort_by_key(|s| (s.record.created_at, s.record.id.clone()));
        found
    }

    /// Admits a transfer of `payload` content bytes (response bytes `start..end` of
    /// `resource`), or says why not.
    pub fn begin_transfer(
        &self,
        id: &ShareId,
        via: Transport,
        resource: &str,
        start: u64,
        end: u64,
        payload: u64,
    ) -> Result<Transfer, Admission> {
        let now = now_secs();
        let admitted = self
            .with_entry(id, |entry| {
                let record = &entry.record;
                policy::admit(
                    &record.policy,
                    record.content_size(),
                    &record.ledger,
                    &entry.flight,
                    !record.state.is_ended(),
                    now,
                    payload,
                )?;
                entry.flight.transfers += 1;
                entry.flight.reserved_bytes += payload;
                let quiet = payload == 0 && record.content_size() > 0;
                Ok((entry.cancel.child_token(), quiet))
            })
            .ok_or(Admission::NotFound)?
            .inspect_err(|refusal| self.audit_refusal(id, now, *refusal))
            .map_err(Admission::Refused)?;
        let (cancel, quiet) = admitted;
        if !quiet {
            self.0.events.publish(Event::DownloadStarted {
                id: id.clone(),
                resource: resource.to_owned(),
                bytes: payload,
            });
            self.publish_counters(id);
        }
        Ok(Transfer {
            shares: self.clone(),
            id: id.clone(),
            via,
            resource: resource.to_owned(),
            start,
            end,
            reserved: payload,
            sent: 0,
            finished: false,
            quiet,
            cancel,
            recorded: false,
        })
    }

    /// Records an ended transfer: the new ledger is persisted (one fsync'd transaction) before
    /// it is announced, unless it did not change — a transfer that moved no content (a
    /// client that went away at once, zip structure only) costs no write, so a flood of them
    /// cannot turn into a flood of disk syncs.
    async fn end_transfer(
        &self,
        id: ShareId,
        via: Transport,
        reserved: u64,
        quiet: bool,
        done: TransferRecord,
    ) {
        let Some(persist) = self.with_entry(&id, |e| e.persist.clone()) else {
            return;
        };
        let guard = persist.lock().await;
        let Some(mut record) = self.with_entry(&id, |e| e.record.clone()) else {
            return;
        };
        let (sent, finished) = (done.sent, done.finished);
        let before = record.ledger;
        record.ledger =
            policy::record_transfer(record.content_size(), record.ledger, sent, finished);
        let changed = record.ledger != before;
        let exhausted = changed
            && !record.state.is_ended()
            && policy::is_exhausted(&record.policy, &record.ledger);
        let completed = record.ledger.completed;
        if changed {
            if let Err(error) = self.0.store.update(record.clone(), Some(done)).await {
                // The count could not be persisted: stop serving rather than risk extra copies.
                tracing::error!(share = %log_id(&id), %error, "could not persist a download; revoking the share");
                drop(guard);
                self.release_flight(&id, reserved);
                let _ = self.end(&id, ShareState::Revoked).await;
                return;
            }
            crash::point("transfer.counted");
            self.with_entry(&id, |e| e.record = record);
        }
        // Released at once: until then the share counts this download twice (done and in
        // flight), and a recipient arriving now would be told it is busy.
        self.release_flight(&id, reserved);
        if changed && completed > before.completed {
            // Under the share's lock, so that downloads are logged in the order they counted.
            let event = AuditEvent::Download {
                transport: via,
                completed,
            };
            self.0.audit.record(&id, now_secs(), event).await;
        }
        drop(guard);
        if !quiet {
            self.0.events.publish(Event::DownloadEnded {
                id: id.clone(),
                sent,
                finished,
                downloads_completed: completed,
            });
            self.publish_counters(&id);
        }
        if exhausted {
            tracing::info!(share = %log_id(&id), "download limit reached");
            if let Err(error) = self.end(&id, ShareState::Exhausted).await {
                tracing::error!(share = %log_id(&id), %error, "could not end an exhausted share");
            }
        }
    }

    /// Notes a refused request in the share's log (in the background: admission is not async).
    fn audit_refusal(&self, id: &ShareId, now: u64, refusal: Refusal) {
        let reason = match refusal {
            Refusal::Ended => RefusalReason::Ended,
            Refusal::Busy => RefusalReason::Busy,
            Refusal::OverBudget => RefusalReason::OverBudget,
        };
        let Some(event) = self.0.audit.count_refusal(id, now, reason) else {
            return;
        };
        let (audit, id) = (self.0.audit.clone(), id.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { audit.record(&id, now, event).await });
        }
    }

    fn release_flight(&self, id: &ShareId, reserved: u64) {
        self.with_entry(id, |e| {
            e.flight.transfers = e.flight.transfers.saturating_sub(1);
            e.flight.reserved_bytes = e.flight.reserved_bytes.saturating_sub(reserved);
            if e.flight.transfers == 0 {
                e.idle.notify_waiters();
            }
        });
    }

    /// Announces a change of a share's counters: now, or when [`COUNTER_EVENTS_EVERY`] has
    /// passed since the last one (nothing more if one is due already: it will carry this).
    /// Without a runtime to wait on (never, in the app), now.
    fn publish_counters(&self, id: &ShareId) {
        enum Announce {
            Now,
            At(tokio::time::Instant, tokio::runtime::Handle),
        }
        let now = tokio::time::Instant::now();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let announce = self.with_entry(id, |entry| {
            let counters = &mut entry.counters;
            match (counters.last, &runtime) {
                _ if counters.due => None,
                (Some(last), Some(runtime)) if now < last + COUNTER_EVENTS_EVERY => {
                    counters.due = true;
                    Some(Announce::At(last + COUNTER_EVENTS_EVERY, runtime.clone()))
                }
                _ => {
                    counters.last = Some(now);
                    Some(Announce::Now)
                }
            }
        });
        match announce.flatten() {
            None => {}
            Some(Announce::Now) => self.publish_updated(id),
            Some(Announce::At(when, runtime)) => {
                let (shares, id) = (self.clone(), id.clone());
                runtime.spawn(async move {
                    tokio::time::sleep_until(when).await;
                    shares.with_entry(&id, |entry| {
                        entry.counters = CounterEvents {
                            last: Some(tokio::time::Instant::now()),
                            due: false,
                        };
                    });
                    shares.publish_updated(&id);
                });
            }
        }
    }

    fn publish_updated(&self, id: &ShareId) {
        if let Some(share) = self.view(id) {
            self.0.events.publish(Event::ShareUpdated { share });
        }
    }

    /// Revokes a share now, on the owner's request: running transfers are cut.
    pub async fn revoke(&self, id: &ShareId) -> Result<ShareView, ShareError> {
        if self.view(id).is_none() {
            return Err(ShareError::NotFound(id.clone()));
        }
        self.end(id, ShareState::Revoked).await?;
        self.view(id)
            .ok_or_else(|| ShareError::NotFound(id.clone()))
    }

    /// Ends a share: persists the new state and announces it, stops its publishers; then, in
    /// the background, waits for running transfers (or, on revocation, cuts them) and deletes
    /// the stored copy. Does nothing to a share already ended.
    async fn end(&self, id: &ShareId, state: ShareState) -> Result<(), ShareError> {
        let ended = self
            .persist_change(id, |record| {
                record.state = state;
                record.ended_at = Some(now_secs());
            })
            .await?;
        if !ended {
            return Ok(());
        }
        crash::point("share.ended");
        tracing::info!(share = %log_id(id), state = state.label(), "share ended");
        if let Some(share) = self.view(id) {
            self.0.events.publish(Event::ShareEnded { share });
        }
        let cut = state == ShareState::Revoked;
        if cut {
            self.with_entry(id, |e| e.cancel.cancel());
        }
        // The addresses go for good; streams already open may finish (unless cut above).
        for publisher in self.publishers() {
            publisher.stop(id, state);
        }
        // Logged once the addresses are gone: the log's write must not delay the revocation.
        self.0
            .audit
            .record(id, now_secs(), AuditEvent::Ended { state })
            .await;
        if self
            .with_entry(id, |e| keeps_data(&e.record))
            .unwrap_or(false)
        {
            // A drop box keeps what it received: its owner deletes items one by one.
            return Ok(());
        }
        // Deleting waits for running transfers (which may take long after an expiry) in the
        // background; a revoked share's transfers are cut, and whatever still holds an open
        // file may read it to the end of its cut.
        let shares = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            if !cut {
                shares.wait_idle(&id).await;
            }
            shares.delete_data_until_done(&id).await;
        });
        Ok(())
    }

    /// Resolves once no transfer of the share is in flight (at once for an unknown share).
    pub async fn wait_idle(&self, id: &ShareId) {
        self.wait_until(id, |e| &e.idle, |e| e.flight.transfers == 0)
            .await;
    }

    /// Waits on the share's `signal` until `done` holds (or the share is unknown). The
    /// notification is armed before `done` is checked, so a change in between is not missed.
    async fn wait_until(
        &self,
        id: &ShareId,
        signal: impl Fn(&Entry) -> &Arc<Notify>,
        done: impl Fn(&Entry) -> bool,
    ) {
        loop {
            let Some(notify) = self.with_entry(id, |e| signal(e).clone()) else {
                return;
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.with_entry(id, |e| done(e)).unwrap_or(true) {
                return;
            }
            notified.await;
        }
    }

    /// Deletes the share's data, trying again with backoff until it is done: the data of an
    /// ended share must not stay on disk, and the record says it is gone only once it is.
    async fn delete_data_until_done(&self, id: &ShareId) {
        let mut pause = Duration::from_secs(5);
        loop {
            match self.delete_data(id).await {
                Ok(()) | Err(ShareError::NotFound(_)) => return,
                Err(error) => {
                    tracing::warn!(share = %log_id(id), %error, "could not delete an ended share's data yet; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(300));
                }
            }
        }
    }

    async fn delete_data(&self, id: &ShareId) -> Result<(), ShareError> {
        self.0.store.delete_share_data(id).await?;
        let persist = self
            .with_entry(id, |e| e.persist.clone())
            .ok_or_else(|| ShareError::NotFound(id.clone()))?;
        let _guard = persist.lock().await;
        if let Some(mut record) = self.with_entry(id, |e| e.record.clone()) {
            record.data_deleted = true;
            self.0.store.update(record.clone(), None).await?;
            crash::point("data.deleted");
            self.with_entry(id, |e| e.record = record);
        }
        tracing::info!(share = %log_id(id), "stored copy deleted");
        if self.with_entry(id, |e| e.record.keep_log).unwrap_or(false) {
            self.0
                .audit
                .record(id, now_secs(), AuditEvent::DataDeleted)
                .await;
        } else {
            // The history goes with the data, as the owner chose when making the share.
            self.0.audit.delete(id).await;
        }
        self.with_entry(id, |e| e.deleted.notify_waiters());
        self.publish_updated(id);
        Ok(())
    }

    /// Resolves once the stored copy of the share is deleted (at once for an unknown share).
    pub async fn wait_data_deleted(&self, id: &ShareId) {
        self.wait_until(id, |e| &e.deleted, |e| e.record.data_deleted)
            .await;
    }

    /// Whether a share has ended (or does not exist): a publisher's background work on it can
    /// stop.
    pub fn is_ended(&self, id: &ShareId) -> bool {
        self.with_entry(id, |e| e.record.state.is_ended())
            .unwrap_or(true)
    }

    /// A publisher reports the address it publishes a share at (kept in the record, so that a
    /// restart shows it at once).
    pub async fn set_address(&self, id: &ShareId, address: String) -> Result<(), ShareError> {
        self.modify(id, |r| r.onion = Some(address)).await
    }

    /// A publisher reports that a share can be reached: `publishing` becomes `live`, and any
    /// problem is cleared.
    pub async fn reachable(&self, id: &ShareId) -> Result<(), ShareError> {
        let mut went_live = false;
        self.modify(id, |r| {
            if r.state == ShareState::Publishing {
                r.state = ShareState::Live;
                went_live = true;
            }
            r.problem = None;
        })
        .await?;
        if went_live {
            self.0.audit.record(id, now_secs(), AuditEvent::Live).await;
        }
        Ok(())
    }

    /// Adds a named recipient to a share that has named recipients and is not ended: their key
    /// is made, the record persisted, then their service started.
    pub async fn add_recipient(
        &self,
        id: &ShareId,
        name: &str,
    ) -> Result<RecipientView, ShareError> {
        let record = self
            .with_entry(id, |entry| entry.record.clone())
            .ok_or_else(|| ShareError::NotFound(id.clone()))?;
        if record.state.is_ended() {
            return Err(ShareError::Refused(format!(
                "this share has ended ({}): it can have no new recipients",
                record.state.label()
            )));
        }
        if record.recipients.is_empty() {
            return Err(ShareError::Refused(
                "this share has no named recipients: make a new share with recipients".into(),
            ));
        }
        // Checked under the share's lock: two adds of one name (or of the 17th) race.
        let mut added = None;
        self.modify(id, |r| {
            added = Some(
                veilshare_shared::recipients::check_new(
                    name,
                    r.recipients.iter().map(|other| other.name.as_str()),
                )
                .map(|name| {
                    r.recipients
                        .push(RecipientRecord::new(name, new_recipient_key()));
                    r.recipients.len() - 1
                }),
            );
        })
        .await?;
        let index = match added {
            Some(result) => result.map_err(ShareError::Refused)?,
            None => {
                return Err(ShareError::Refused(
                    "this share has ended: it can have no new recipients".into(),
                ));
            }
        };
        let record = self
            .with_entry(id, |entry| entry.record.clone())
            .ok_or_else(|| ShareError::NotFound(id.clone()))?;
        let active = record.active_recipients();
        self.0
            .audit
            .record(id, now_secs(), AuditEvent::RecipientAdded { active })
            .await;
        for publisher in self.publishers() {
            publisher.start_recipient(&record, index);
        }
        tracing::info!(share = %log_id(id), index, "recipient added");
        record
            .recipients
            .get(index)
            .map(|added| recipient_view(added, false))
            .ok_or_else(|| ShareError::NotFound(id.clone()))
    }

    /// Revokes a named recipient: the revocation is persisted first (a restart does not bring
    /// their service back), then their service is stopped and its keys deleted. The others'
    /// services go on.
    pub async fn revoke_recipient(
        &self,
        id: &ShareId,
        name: &str,
    ) -> Result<RecipientView, ShareError> {
        let record = self
            .with_entry(id, |entry| entry.record.clone())
            .ok_or_else(|| ShareError::NotFound(id.clone()))?;
        let index = record
            .recipients
            .iter()
            .position(|r| r.name.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| ShareError::RecipientNotFound(name.trim().to_owned()))?;
        if !record.recipients[index].is_revoked() && !record.state.is_ended() {
            let now = now_secs();
            self.modify(id, |r| {
                if let Some(recipient) = r.recipients.get_mut(index) {
                    recipient.revoked_at.get_or_insert(now);
                    recipient.client_key = None;
                    recipient.live = false;
                }
            })
            .await?;
            crash::point("recipient.revoked");
            for publisher in self.publishers() {
                publisher.stop_recipient(id, index);
            }
            let active = self
                .with_entry(id, |entry| entry.record.active_recipients())
                .unwrap_or(0);
            self.0
                .audit
                .record(id, now, AuditEvent::RecipientRevoked { active })
                .await;
            tracing::info!(share = %log_id(id), index, "recipient revoked");
        }
        let view = self
            .view(id)
            .and_then(|view| view.recipients.into_iter().nth(index))
            .ok_or_else(|| ShareError::RecipientNotFound(name.trim().to_owned()))?;
        Ok(view)
    }

    /// Whether recipient `index` of the share was revoked (or the share is gone).
    pub fn is_recipient_revoked(&self, id: &ShareId, index: usize) -> bool {
        self.with_entry(id, |e| {
            e.record.recipients.get(index).map(|r| r.is_revoked())
        })
        .flatten()
        .unwrap_or(true)
    }

    /// A publisher reports the address of recipient `index`'s service.
    pub async fn set_recipient_address(
        &self,
        id: &ShareId,
        index: usize,
        address: String,
    ) -> Result<(), ShareError> {
        self.modify(id, |r| {
            if let Some(recipient) = r.recipients.get_mut(index).filter(|r| !r.is_revoked()) {
                recipient.onion = Some(address);
            }
        })
        .await
    }

    /// A publisher reports that recipient `index`'s service can be reached; once every
    /// recipient's can, the share is reachable (see [`Shares::reachable`]).
    pub async fn recipient_reachable(&self, id: &ShareId, index: usize) -> Result<(), ShareError> {
        let mut all = false;
        self.modify(id, |r| {
            if let Some(recipient) = r.recipients.get_mut(index).filter(|r| !r.is_revoked()) {
                recipient.live = true;
            }
            all = r.recipients.iter().all(|r| r.live || r.is_revoked());
        })
        .await?;
        if all {
            self.reachable(id).await?;
        }
        Ok(())
    }

    /// A publisher reports a problem with a share, in plain words for its owner.
    pub async fn report_problem(&self, id: &ShareId, problem: String) -> Result<(), ShareError> {
        self.modify(id, |r| r.problem = Some(problem)).await
    }

    /// Changes a share's record (unless it has ended), persists it, then announces it.
    async fn modify(
        &self,
        id: &ShareId,
        change: impl FnOnce(&mut ShareRecord),
    ) -> Result<(), ShareError> {
        if self.persist_change(id, change).await? {
            self.publish_updated(id);
        }
        Ok(())
    }

    /// Under the share's lock: applies `change` to its record unless it has ended, persists
    /// the result, then makes it the record in memory. Returns whether it changed anything.
    async fn persist_change(
        &self,
        id: &ShareId,
        change: impl FnOnce(&mut ShareRecord),
    ) -> Result<bool, ShareError> {
        let persist = self
            .with_entry(id, |e| e.persist.clone())
            .ok_or_else(|| ShareError::NotFound(id.clone()))?;
        let _guard = persist.lock().await;
        let Some(mut record) = self.with_entry(id, |e| e.record.clone()) else {
            return Ok(false);
        };
        if record.state.is_ended() {
            return Ok(false);
        }
        change(&mut record);
        self.0.store.update(record.clone(), None).await?;
        self.with_entry(id, |e| e.record = record);
        Ok(true)
    }

    fn arm_timer(&self, id: &ShareId) {
        let Some(expires_at) = self
            .with_entry(id, |e| e.record.policy.expires_at)
            .flatten()
        else {
            return;
        };
        // The timer holds the registry weakly: a registry nobody uses any more goes away.
        let shares = Arc::downgrade(&self.0);
        let id = id.clone();
        tokio::spawn(async move {
            // Sleep in bounded steps and compare with the wall clock: a suspended machine's
            // monotonic clock stands still.
            loop {
                let now = now_secs();
                if now >= expires_at {
                    break;
                }
                let wait = (expires_at - now).min(60);
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            let Some(inner) = shares.upgrade() else {
                return;
            };
            if let Err(error) = Shares(inner).end(&id, ShareState::Expired).await {
                tracing::error!(share = %log_id(&id), %error, "could not end an expired share");
            }
        });
    }
}

/// Whether an ended share keeps its data: a drop box that holds what it received (its owner
/// deletes items one by one; the last deletion marks the data deleted).
fn keeps_data(record: &ShareRecord) -> bool {
    record
        .dropbox
        .as_ref()
        .is_some_and(|dropbox| !dropbox.items.is_empty())
}

mod dropbox;

pub use dropbox::{AddItemError, NewItem, Upload, UploadRefusal};

/// A recipient as the API shows them: link and key until revoked (or the share ended).
fn recipient_view(recipient: &RecipientRecord, share_ended: bool) -> RecipientView {
    let reachable = !recipient.is_revoked() && !share_ended;
    RecipientView {
        name: recipient.name.clone(),
        link: recipient.onion.clone().filter(|_| reachable),
        client_key: recipient.client_key.clone().filter(|_| reachable),
        state: if recipient.is_revoked() {
            RecipientState::Revoked
        } else if recipient.live {
            RecipientState::Live
        } else {
            RecipientState::Publishing
        },
        revoked_at: recipient.revoked_at,
    }
}

#[cfg(test)]
mod tests;
