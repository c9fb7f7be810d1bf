//! The share lifecycle: create, admit and count transfers, end (limit, expiry, owner), delete
//! the stored copy; owns the expiry timers and emits events.
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

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use iroh_blobs::api::TempTag;
use rand::RngCore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use veilshare_shared::{
    CreateShareFields, Event, FileEntry, Policy, ShareId, ShareLinks, ShareState, ShareView,
};

use crate::{
    events::EventBus,
    p2p::{Lease, P2p},
    policy::{self, Flight, Ledger, Refusal},
    store::{ImportPermit, ShareRecord, Store, StoreError, StoredFile, TransferRecord},
    tor::Tor,
};

/// How long a new onion service may take to answer its first probe before the share shows a
/// problem (probing goes on in the background).
const PROBE_DEADLINE: Duration = Duration::from_secs(180);

/// Errors of share operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// No share with that id.
    #[error("no share with id {0}")]
    NotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A direct share was asked for, but direct sharing is not available or failed to start.
    #[error("{0}")]
    Direct(String),
}

/// Settings of the lifecycle.
#[derive(Debug, Clone, Default)]
pub struct SharesConfig {
    /// Base URL of the plain public listener (`http://127.0.0.1:8081`), when on.
    pub public_base: Option<String>,
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

#[derive(Debug)]
struct Entry {
    record: ShareRecord,
    flight: Flight,
    cancel: CancellationToken,
    idle: Arc<Notify>,
    persist: Arc<tokio::sync::Mutex<()>>,
    /// Keeps the direct-sharing endpoint open while this share is direct and not over.
    lease: Option<Lease>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    events: EventBus,
    config: SharesConfig,
    entries: Mutex<HashMap<ShareId, Entry>>,
    tor: OnceLock<Arc<Tor>>,
    p2p: OnceLock<Arc<P2p>>,
}

/// The share registry. Cloning gives another handle to the same registry.
#[derive(Debug, Clone)]
pub struct Shares(Arc<Inner>);

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
    resource: String,
    start: u64,
    end: u64,
    reserved: u64,
    sent: u64,
    finished: bool,
    cancel: CancellationToken,
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

    /// Marks the transfer as having sent everything it was admitted for.
    pub fn finish(mut self) {
        self.sent = self.reserved;
        self.finished = true;
        drop(self);
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
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
        let reserved = self.reserved;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { shares.end_transfer(id, reserved, done).await });
        }
    }
}

impl Shares {
    /// Loads the catalog, finishes what a crash interrupted, ends shares that expired while the
    /// program was down and arms the expiry timers.
    pub async fn start(
        store: Store,
        events: EventBus,
        config: SharesConfig,
    ) -> Result<Self, ShareError> {
        let records = store.list().await?;
        let shares = Self(Arc::new(Inner {
            store,
            events,
            config,
            entries: Mutex::new(HashMap::new()),
            tor: OnceLock::new(),
            p2p: OnceLock::new(),
        }));
        let now = now_secs();
        for record in records {
            let id = record.id.clone();
            let ended = record.state.is_ended();
            let data_deleted = record.data_deleted;
            let expired = policy::is_expired(&record.policy, now);
            let exhausted = policy::is_exhausted(&record.policy, &record.ledger);
            shares.insert_entry(record);
            if ended {
                if !data_deleted {
                    shares.delete_data(&id).await?;
                }
            } else if exhausted {
                shares.end(&id, ShareState::Exhausted).await?;
            } else if expired {
                tracing::info!(share = %id, "share expired while veilshare was not running");
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

    fn insert_entry(&self, record: ShareRecord) {
        let entry = Entry {
            record: record.clone(),
            flight: Flight::default(),
            cancel: CancellationToken::new(),
            idle: Arc::new(Notify::new()),
            persist: Arc::new(tokio::sync::Mutex::new(())),
            lease: None,
        };
        if let Ok(mut entries) = self.0.entries.lock() {
            entries.insert(record.id, entry);
        }
    }

    fn with_entry<T>(&self, id: &ShareId, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut entries = self.0.entries.lock().ok()?;
        entries.get_mut(id).map(f)
    }

    /// Creates a share from imported files: tags the data, writes the record (the share becomes
    /// visible only now), arms its timer and announces it.
    pub async fn create(
        &self,
        upload_id: &str,
        files: Vec<StoredFile>,
        collection: TempTag,
        fields: CreateShareFields,
        permit: ImportPermit,
    ) -> Result<ShareView, ShareError> {
        let lease = if fields.direct {
            let p2p = self.0.p2p.get().ok_or_else(|| {
                ShareError::Direct(
                    "direct sharing is not available in this mode; share over Tor instead".into(),
                )
            })?;
            Some(
                p2p.lease()
                    .await
                    .map_err(|e| ShareError::Direct(e.to_string()))?,
            )
        } else {
            None
        };
        let id = new_share_id();
        let now = now_secs();
        let record = ShareRecord {
            id: id.clone(),
            label: fields.label,
            files,
            collection: crate::store::content_hash(collection.hash()),
            policy: Policy {
                max_downloads: fields.max_downloads,
                expires_at: fields.expires_in_secs.map(|s| now.saturating_add(s)),
            },
            created_at: now,
            state: if self.0.tor.get().is_some() {
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
            client_key: fields.restricted.then(crate::tor::new_client_key),
        };
        self.0.store.tag_share(&id, &collection).await?;
        self.0.store.insert(record.clone()).await?;
        drop(collection);
        drop(permit);
        self.insert_entry(record);
        self.with_entry(&id, |e| e.lease = lease);
        self.arm_timer(&id);
        self.spawn_publish(&id);
        let view = self
            .view(&id)
            .ok_or_else(|| ShareError::NotFound(id.to_string()))?;
        tracing::info!(share = %id, files = view.files.len(), bytes = view.total_size, "share created");
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
        self.with_entry(id, |entry| self.make_view(&entry.record, &entry.flight))
    }

    fn make_view(&self, record: &ShareRecord, flight: &Flight) -> ShareView {
        let local = match (&self.0.config.public_base, record.state.is_ended()) {
            (Some(base), false) => Some(format!("{base}/s/{}/", record.id)),
            _ => None,
        };
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
            direct: record.direct,
            problem: record.problem.clone(),
            links: ShareLinks {
                onion: record.onion.clone().filter(|_| !record.state.is_ended()),
                local,
                ticket: self
                    .0
                    .p2p
                    .get()
                    .filter(|_| record.direct && !record.state.is_ended())
                    .and_then(|p2p| p2p.ticket(&record.collection)),
            },
            client_key: record
                .client_key
                .clone()
                .filter(|_| !record.state.is_ended()),
        }
    }

    /// A snapshot of a share for the public site.
    pub fn public_share(&self, id: &ShareId) -> Option<PublicShare> {
        self.with_entry(id, |entry| PublicShare {
            record: entry.record.clone(),
            flight: entry.flight,
        })
    }

    /// The live direct shares whose collection has the hash `collection` (hex), with the sizes
    /// of their files in order.
    pub fn direct_shares_of(&self, collection: &str) -> Vec<(ShareId, Vec<u64>)> {
        let Ok(entries) = self.0.entries.lock() else {
            return Vec::new();
        };
        entries
            .values()
            .filter(|e| {
                e.record.direct
                    && !e.record.state.is_ended()
                    && e.record.collection.as_str() == collection
            })
            .map(|e| {
                let sizes = e.record.files.iter().map(|f| f.size).collect();
                (e.record.id.clone(), sizes)
            })
            .collect()
    }

    /// Admits a transfer of `payload` content bytes (response bytes `start..end` of
    /// `resource`), or says why not.
    pub fn begin_transfer(
        &self,
        id: &ShareId,
        resource: &str,
        start: u64,
        end: u64,
        payload: u64,
    ) -> Result<Transfer, Admission> {
        let now = now_secs();
        let cancel = self
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
                Ok(entry.cancel.child_token())
            })
            .ok_or(Admission::NotFound)?
            .map_err(Admission::Refused)?;
        self.0.events.publish(Event::DownloadStarted {
            id: id.clone(),
            resource: resource.to_owned(),
            bytes: payload,
        });
        self.publish_updated(id);
        Ok(Transfer {
            shares: self.clone(),
            id: id.clone(),
            resource: resource.to_owned(),
            start,
            end,
            reserved: payload,
            sent: 0,
            finished: false,
            cancel,
        })
    }

    async fn end_transfer(&self, id: ShareId, reserved: u64, done: TransferRecord) {
        let Some(persist) = self.with_entry(&id, |e| e.persist.clone()) else {
            return;
        };
        let guard = persist.lock().await;
        let Some(mut record) = self.with_entry(&id, |e| e.record.clone()) else {
            return;
        };
        let (sent, finished) = (done.sent, done.finished);
        record.ledger =
            policy::record_transfer(record.content_size(), record.ledger, sent, finished);
        let exhausted =
            !record.state.is_ended() && policy::is_exhausted(&record.policy, &record.ledger);
        if let Err(error) = self.0.store.update(record.clone(), Some(done)).await {
            // The count could not be persisted: stop serving rather than risk extra copies.
            tracing::error!(share = %id, %error, "could not persist a download; revoking the share");
            drop(guard);
            self.release_flight(&id, reserved);
            let _ = self.end(&id, ShareState::Revoked).await;
            return;
        }
        let completed = record.ledger.completed;
        self.with_entry(&id, |e| e.record = record);
        drop(guard);
        self.release_flight(&id, reserved);
        self.0.events.publish(Event::DownloadEnded {
            id: id.clone(),
            sent,
            finished,
            downloads_completed: completed,
        });
        self.publish_updated(&id);
        if exhausted {
            tracing::info!(share = %id, "download limit reached");
            if let Err(error) = self.end(&id, ShareState::Exhausted).await {
                tracing::error!(share = %id, %error, "could not end an exhausted share");
            }
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

    fn publish_updated(&self, id: &ShareId) {
        if let Some(share) = self.view(id) {
            self.0.events.publish(Event::ShareUpdated { share });
        }
    }

    /// Revokes a share now, on the owner's request: running transfers are cut.
    pub async fn revoke(&self, id: &ShareId) -> Result<ShareView, ShareError> {
        if self.view(id).is_none() {
            return Err(ShareError::NotFound(id.to_string()));
        }
        self.end(id, ShareState::Revoked).await?;
        self.view(id)
            .ok_or_else(|| ShareError::NotFound(id.to_string()))
    }

    /// Ends a share: persists the new state and announces it; then, in the background, waits
    /// for running transfers (or, on revocation, cuts them) and deletes the stored copy. Does
    /// nothing to a share already ended.
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
        tracing::info!(share = %id, state = state.label(), "share ended");
        if let Some(share) = self.view(id) {
            self.0.events.publish(Event::ShareEnded { share });
        }
        let cut = state == ShareState::Revoked;
        if cut {
            self.with_entry(id, |e| e.cancel.cancel());
        }
        // The address goes for good; streams already open may finish (unless cut above).
        if let Some(tor) = self.0.tor.get() {
            tor.unpublish(id, true);
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
            // The endpoint may close once no direct share is left.
            drop(shares.with_entry(&id, |e| e.lease.take()));
            if let Err(error) = shares.delete_data(&id).await {
                tracing::error!(share = %id, %error, "could not delete an ended share's data; it is retried at the next start");
            }
        });
        Ok(())
    }

    async fn wait_idle(&self, id: &ShareId) {
        loop {
            let Some((idle, busy)) =
                self.with_entry(id, |e| (e.idle.clone(), e.flight.transfers > 0))
            else {
                return;
            };
            if !busy {
                return;
            }
            let notified = idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self
                .with_entry(id, |e| e.flight.transfers == 0)
                .unwrap_or(true)
            {
                return;
            }
            notified.await;
        }
    }

    async fn delete_data(&self, id: &ShareId) -> Result<(), ShareError> {
        self.0.store.delete_share_data(id).await?;
        let persist = self
            .with_entry(id, |e| e.persist.clone())
            .ok_or_else(|| ShareError::NotFound(id.to_string()))?;
        let _guard = persist.lock().await;
        if let Some(mut record) = self.with_entry(id, |e| e.record.clone()) {
            record.data_deleted = true;
            self.0.store.update(record.clone(), None).await?;
            self.with_entry(id, |e| e.record = record);
        }
        tracing::info!(share = %id, "stored copy deleted");
        self.publish_updated(id);
        Ok(())
    }

    /// Attaches the Tor side and publishes every share that is not ended (at the same address
    /// as before a restart). Shares created from now on are published as they are created.
    pub fn attach_tor(&self, tor: Arc<Tor>) {
        if self.0.tor.set(tor.clone()).is_err() {
            return;
        }
        let ids: Vec<ShareId> = match self.0.entries.lock() {
            Ok(entries) => entries
                .values()
                .filter(|e| !e.record.state.is_ended())
                .map(|e| e.record.id.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        for id in ids {
            self.spawn_publish(&id);
        }
        // Ended shares whose keys survived a crash lose them now.
        if let Ok(entries) = self.0.entries.lock() {
            for entry in entries.values().filter(|e| e.record.state.is_ended()) {
                if tor.has_keys(&entry.record.id) {
                    tor.unpublish(&entry.record.id, true);
                }
            }
        }
    }

    /// The Tor side, when attached.
    pub fn tor(&self) -> Option<&Arc<Tor>> {
        self.0.tor.get()
    }

    /// Attaches the direct-sharing side and opens its endpoint if a live direct share needs it
    /// (after a restart). Fails when the endpoint cannot be opened.
    pub async fn attach_p2p(&self, p2p: Arc<P2p>) -> Result<(), ShareError> {
        if self.0.p2p.set(p2p.clone()).is_err() {
            return Ok(());
        }
        let ids: Vec<ShareId> = match self.0.entries.lock() {
            Ok(entries) => entries
                .values()
                .filter(|e| e.record.direct && !e.record.state.is_ended())
                .map(|e| e.record.id.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        for id in ids {
            let lease = p2p
                .lease()
                .await
                .map_err(|e| ShareError::Direct(e.to_string()))?;
            self.with_entry(&id, |e| e.lease = Some(lease));
            self.publish_updated(&id);
        }
        Ok(())
    }

    /// The direct-sharing side, when attached.
    pub fn p2p(&self) -> Option<&Arc<P2p>> {
        self.0.p2p.get()
    }

    fn spawn_publish(&self, id: &ShareId) {
        if self.0.tor.get().is_none() {
            return;
        }
        let shares = self.clone();
        let id = id.clone();
        tokio::spawn(async move { shares.publish(id).await });
    }

    /// Launches the share's onion service, records its address, and declares the share live
    /// once a separate client reached it.
    async fn publish(&self, id: ShareId) {
        let Some(tor) = self.0.tor.get().cloned() else {
            return;
        };
        let router = crate::public::single_share_router(self.clone(), id.clone());
        let client_key = self
            .with_entry(&id, |e| e.record.client_key.clone())
            .flatten();
        let url = match tor.publish(&id, router, client_key.as_deref()) {
            Ok(url) => url,
            Err(error) => {
                tracing::error!(share = %id, %error, "could not launch the onion service");
                let message = error.to_string();
                let _ = self.modify(&id, |r| r.problem = Some(message)).await;
                return;
            }
        };
        tracing::info!(share = %id, "onion service launched");
        let link = url.clone();
        let _ = self.modify(&id, |r| r.onion = Some(link)).await;
        loop {
            if self
                .with_entry(&id, |e| e.record.state.is_ended())
                .unwrap_or(true)
            {
                return;
            }
            match tor.probe(&url, client_key.as_deref(), PROBE_DEADLINE).await {
                Ok(elapsed) => {
                    tracing::info!(share = %id, ?elapsed, "onion service reachable");
                    let _ = self
                        .modify(&id, |r| {
                            if r.state == ShareState::Publishing {
                                r.state = ShareState::Live;
                            }
                            r.problem = None;
                        })
                        .await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(share = %id, %error, "onion service not reachable yet");
                    let message = format!("{error}; still trying");
                    let _ = self.modify(&id, |r| r.problem = Some(message)).await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            }
        }
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
            .ok_or_else(|| ShareError::NotFound(id.to_string()))?;
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
        let shares = self.clone();
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
            if let Err(error) = shares.end(&id, ShareState::Expired).await {
                tracing::error!(share = %id, %error, "could not end an expired share");
            }
        });
    }
}
