//! Storage: the content-addressed blobs (iroh-blobs' file store, BLAKE3) and the share catalog
//! (records and download ledger, in redb).
//!
//! Invariants:
//! - A share's blobs are held by the named tag `share/<id>`; the tag is set (and synced) before
//!   the catalog record is written, so a crash in between leaves an orphan tag that
//!   [`Store::open`] removes, never a visible record without data.
//! - Blobs are only deleted by garbage collection, which runs only when asked for and never
//!   while an import holds the import gate (iroh-blobs can otherwise lose blobs created during a
//!   collection run).
//! - Every catalog change is one redb write transaction, durable when the call returns.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use iroh_blobs::{
    Hash,
    api::{TempTag, proto::BlobStatus},
    format::collection::Collection,
    store::{
        GcConfig, ProtectOutcome,
        fs::{FsStore, options::Options},
    },
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock, watch};
use veilshare_shared::{ContentHash, MetadataReport, Policy, ShareId, ShareState};

use crate::core::policy::Ledger;

/// Share records by id (JSON values).
const SHARES: TableDefinition<&str, &[u8]> = TableDefinition::new("shares");
/// The download ledger: (share id, sequence number) → JSON [`TransferRecord`].
const TRANSFERS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("transfers");
/// How many of a share's latest transfers the history keeps.
pub const TRANSFERS_KEPT: u64 = 64;

const TAG_PREFIX: &str = "share/";
/// How often the collector wakes to see whether a run was asked for.
const GC_TICK: Duration = Duration::from_millis(100);
/// Chunk size for reading blob data from disk, while the read-ahead budget lasts.
const READ_CHUNK: usize = 256 * 1024;
/// Chunk size when the budget is spent: downloads go on, in small steps.
const READ_CHUNK_SMALL: usize = 32 * 1024;
/// Bytes read from blobs and not yet sent, over all downloads, in full-size chunks. Beyond it
/// each download reads [`READ_CHUNK_SMALL`] at a time: 500 downloads at once hold about
/// this plus 500 × 3 small chunks, not 500 × 4 full ones (a gigabyte in a first measurement).
/// Recipients who stop reading hold at most their chunks of it until the idle deadline, and
/// only slow the others down to small chunks.
const READ_AHEAD_BUDGET: usize = 24 << 20;

/// The catalog's page cache: records and ledgers, a few MiB at most. redb's default (1 GiB)
/// would let its cache grow with every share record rewritten (each counted download rewrites
/// its share's record, all its files) long after those pages matter.
const CATALOG_CACHE: usize = 16 << 20;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The blob store failed.
    #[error("blob store failed while {context}: {message}")]
    Blobs {
        /// What we were doing.
        context: &'static str,
        /// The store's message (its error types are not `'static` friendly).
        message: String,
        /// Whether the disk was full.
        no_space: bool,
    },
    /// The catalog database failed.
    #[error("share catalog failed")]
    Catalog(#[from] redb::Error),
    /// A catalog record could not be (de)serialized.
    #[error("share catalog record is corrupt")]
    Corrupt(#[from] serde_json::Error),
    /// A file-system operation failed.
    #[error("{context}")]
    Io {
        /// What we were doing.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A record to be created exists already.
    #[error("share {0} exists already")]
    Exists(ShareId),
    /// Storage maintenance held the import gate for too long.
    #[error("storage is busy with maintenance; try again in a moment")]
    Busy,
}

impl StoreError {
    fn blobs(context: &'static str, error: impl std::error::Error + 'static) -> Self {
        Self::Blobs {
            context,
            message: error.to_string(),
            no_space: chain_is_no_space(&error),
        }
    }

    /// Whether this failure came from a full disk.
    pub fn is_no_space(&self) -> bool {
        match self {
            Self::Blobs { no_space, .. } => *no_space,
            Self::Io { source, .. } => is_no_space(source),
            _ => false,
        }
    }
}

/// A BLAKE3 hash of the store as the shared models' hex form.
pub fn content_hash(hash: Hash) -> ContentHash {
    ContentHash::parse(&hash.to_hex())
        .unwrap_or_else(|| unreachable!("the hex of a BLAKE3 hash is a content hash"))
}

/// Whether an error, or any error it was caused by, is an I/O error of a full disk (by its
/// kind or OS code, never by its text).
fn chain_is_no_space(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<io::Error>()
            && (is_no_space(io) || io.get_ref().is_some_and(|inner| chain_is_no_space(inner)))
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// Whether an I/O error means the disk is full.
pub fn is_no_space(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull || error.raw_os_error() == Some(28)
}

fn redb_err(error: impl Into<redb::Error>) -> StoreError {
    StoreError::Catalog(error.into())
}

/// One stored file of a share.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// Validated file name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 hash.
    pub hash: ContentHash,
    /// CRC-32 of the content, computed during import, so that zips can be laid out ahead.
    pub crc32: u32,
}

/// The files of a share being made, imported one by one: each name is checked (valid, not
/// already taken, at most [`veilshare_shared::MAX_FILES_PER_SHARE`] files) before its bytes
/// are stored, and each blob is protected by its temporary tag until the share's tag holds it.
/// The one import loop of uploads, `veilshare share` and mirrors.
#[derive(Debug, Default)]
pub struct NewFiles {
    files: Vec<StoredFile>,
    tags: Vec<TempTag>,
}

impl NewFiles {
    /// Checks that a file named `name` may join: the error is a message for the user.
    pub fn check_name(&self, name: &str) -> Result<(), String> {
        veilshare_shared::validate_file_name(name)?;
        let key = veilshare_shared::file_name_key(name);
        if let Some(other) = self
            .files
            .iter()
            .find(|f| veilshare_shared::file_name_key(&f.name) == key)
        {
            return Err(if other.name == name {
                format!("two files are named {name:?}; names in one share must differ")
            } else {
                format!(
                    "{:?} and {name:?} would be the same file on Windows or macOS (they differ \
                     only in case or Unicode form); names in one share must differ",
                    other.name
                )
            });
        }
        if self.files.len() >= veilshare_shared::MAX_FILES_PER_SHARE {
            return Err(format!(
                "a share holds at most {} files; zip them first",
                veilshare_shared::MAX_FILES_PER_SHARE
            ));
        }
        Ok(())
    }

    /// Adds a file imported by the caller (its name checked with [`NewFiles::check_name`]).
    pub fn push(&mut self, file: StoredFile, tag: TempTag) {
        self.files.push(file);
        self.tags.push(tag);
    }

    /// Imports the local file `path` as `name` (checked first).
    pub async fn add_path(
        &mut self,
        store: &Store,
        permit: &ImportPermit,
        path: &Path,
        name: String,
    ) -> Result<(), NewFileError> {
        self.check_name(&name).map_err(NewFileError::Name)?;
        let (tag, file) = store.import_path(permit, path, name).await?;
        self.push(file, tag);
        Ok(())
    }

    /// The files so far, in the order they were added.
    pub fn files(&self) -> &[StoredFile] {
        &self.files
    }

    /// Whether no file was added.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The files, and the tags that protect their blobs (drop them once the share holds them).
    pub fn into_parts(self) -> (Vec<StoredFile>, Vec<TempTag>) {
        (self.files, self.tags)
    }

    /// Looks in every file for identifying metadata (see [`crate::core::metadata`]); with
    /// `strip`, each image that has any is replaced by its cleaned copy (stored as a new blob;
    /// the original is collected with the next garbage collection). Returns a report for each
    /// file that had any. An image that cannot be cleaned is refused, not shared as if clean.
    pub async fn clean_metadata(
        &mut self,
        store: &Store,
        permit: &ImportPermit,
        strip: bool,
    ) -> Result<Vec<MetadataReport>, NewFileError> {
        use crate::core::metadata;
        let mut reports = Vec::new();
        for index in 0..self.files.len() {
            let file = self.files[index].clone();
            if file.size == 0 || file.size > metadata::MAX_INSPECTED {
                continue;
            }
            let head = read_all(store, &file.hash, file.size.min(64)).await?;
            if !metadata::may_hold(&head) {
                continue;
            }
            let bytes = read_all(store, &file.hash, file.size).await?;
            let inspected = tokio::task::spawn_blocking({
                let bytes = bytes.clone();
                move || metadata::inspect(&bytes)
            })
            .await
            .map_err(|e| io_error("inspecting a file for metadata", io::Error::other(e)))?;
            let Some(inspection) = inspected.filter(|i| !i.found.is_empty() || i.note.is_some())
            else {
                continue;
            };
            if !(strip && inspection.removable && !inspection.found.is_empty()) {
                reports.push(inspection.report(&file.name, false));
                continue;
            }
            let cleaned = tokio::task::spawn_blocking(move || metadata::strip(bytes))
                .await
                .map_err(|e| io_error("removing a file's metadata", io::Error::other(e)))?
                .map_err(|error| {
                    NewFileError::Metadata(format!(
                        "{:?}: cannot remove its metadata: {error}. Clean it first, or share it \
                         as it is (\"keep metadata\"), which keeps what it reveals",
                        file.name
                    ))
                })?;
            let crc32 = crc32fast::hash(&cleaned);
            let size = cleaned.len() as u64;
            let tag = store
                .import_stream(permit, futures::stream::iter([Ok(cleaned)]))
                .await?;
            self.files[index] = StoredFile {
                name: file.name.clone(),
                size,
                hash: content_hash(tag.hash()),
                crc32,
            };
            self.tags[index] = tag;
            tracing::debug!(
                from = file.size,
                to = size,
                "metadata removed from an image"
            );
            reports.push(inspection.report(&file.name, true));
        }
        Ok(reports)
    }
}

fn io_error(context: &str, source: io::Error) -> StoreError {
    StoreError::Io {
        context: context.to_owned(),
        source,
    }
}

/// The first `len` bytes of the blob `hash`, in memory.
async fn read_all(store: &Store, hash: &ContentHash, len: u64) -> Result<Bytes, StoreError> {
    let mut out = bytes::BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
    let mut stream = std::pin::pin!(store.read_range(hash, 0, len));
    while let Some(piece) = futures::StreamExt::next(&mut stream).await {
        out.extend_from_slice(&piece.map_err(|e| io_error("reading a stored file", e))?);
    }
    Ok(out.freeze())
}

/// Why a file could not join a new share.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewFileError {
    /// Its name is refused (a message for the user).
    #[error("{0}")]
    Name(String),
    /// Storing it failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Its metadata could not be removed (a message for the user).
    #[error("{0}")]
    Metadata(String),
}

/// A share as persisted in the catalog.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ShareRecord {
    /// Identifier.
    pub id: ShareId,
    /// Label.
    pub label: Option<String>,
    /// Files in upload order.
    pub files: Vec<StoredFile>,
    /// Hash of the collection (hash sequence) holding the files and their names.
    pub collection: ContentHash,
    /// Policy.
    pub policy: Policy,
    /// Unix seconds.
    pub created_at: u64,
    /// Life state.
    pub state: ShareState,
    /// Unix seconds when it ended.
    pub ended_at: Option<u64>,
    /// Download counters.
    pub ledger: Ledger,
    /// Whether the stored copy was deleted after the share ended.
    pub data_deleted: bool,
    /// Whether the share is also shared directly over iroh.
    pub direct: bool,
    /// A problem to show, in plain words.
    pub problem: Option<String>,
    /// `http://<address>.onion/` once the share's onion service was launched.
    #[serde(default)]
    pub onion: Option<String>,
    /// For a restricted share: the recipient's client key (base32 x25519 secret), so that a
    /// restart relaunches the service with the same authorization.
    #[serde(default)]
    pub client_key: Option<String>,
    /// For a drop box (a share that receives): its limits and what it received. `files` is
    /// then empty, and `collection` holds every received file (named `<item>/<name>`).
    #[serde(default)]
    pub dropbox: Option<DropBoxRecord>,
    /// What the files revealed when they were added, and whether it was removed.
    #[serde(default)]
    pub metadata: Vec<MetadataReport>,
    /// Keep the share's audit log after its data is deleted.
    #[serde(default)]
    pub keep_log: bool,
    /// Named recipients, each with an onion service and a key of their own (then `onion` and
    /// `client_key` stay empty). In the order they were added; a revoked one stays, so that
    /// each keeps its index (its service's name).
    #[serde(default)]
    pub recipients: Vec<RecipientRecord>,
}

impl ShareRecord {
    /// Whether the share is reached only through onion services, with a key.
    pub fn is_restricted(&self) -> bool {
        self.client_key.is_some() || !self.recipients.is_empty()
    }

    /// Named recipients who can reach the share (not revoked).
    pub fn active_recipients(&self) -> usize {
        self.recipients.iter().filter(|r| !r.is_revoked()).count()
    }
}

/// A named recipient of a share (see [`veilshare_shared::recipients`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RecipientRecord {
    /// The owner's name for them.
    pub name: String,
    /// Their key (base32 of an x25519 secret); `None` once revoked.
    pub client_key: Option<String>,
    /// `http://<address>.onion/` once their service was launched.
    pub onion: Option<String>,
    /// Whether the probe reached their service.
    pub live: bool,
    /// Unix seconds of the revocation.
    pub revoked_at: Option<u64>,
}

impl RecipientRecord {
    /// A recipient with a fresh key.
    pub fn new(name: String, client_key: String) -> Self {
        Self {
            name,
            client_key: Some(client_key),
            onion: None,
            live: false,
            revoked_at: None,
        }
    }

    /// Whether they were revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// What a drop box keeps: its limits and the uploads it received.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct DropBoxRecord {
    /// Its limits.
    pub limits: veilshare_shared::DropBoxLimits,
    /// Uploads received (deleting an item does not give its place back).
    pub uploads: u32,
    /// What arrived and is kept, oldest first.
    pub items: Vec<StoredItem>,
}

impl DropBoxRecord {
    /// Bytes of the items kept, as their uploaders sent them (what the limits count).
    pub fn bytes(&self) -> u64 {
        self.items.iter().map(StoredItem::sent_bytes).sum()
    }

    /// Every file of every item, named `<item>/<name>` (the box's collection).
    pub fn collection_files(&self) -> Vec<StoredFile> {
        self.items
            .iter()
            .flat_map(|item| {
                item.files.iter().map(|file| StoredFile {
                    name: format!("{}/{}", item.id, file.name),
                    ..file.clone()
                })
            })
            .collect()
    }
}

impl StoredItem {
    /// Bytes the uploader sent (for an encrypted upload, the plaintext's).
    pub fn sent_bytes(&self) -> u64 {
        if self.encrypted {
            self.sent.iter().map(|file| file.size).sum()
        } else {
            self.files.iter().map(|file| file.size).sum()
        }
    }
}

/// One upload a drop box received.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredItem {
    /// Identifier within the box.
    pub id: String,
    /// Unix seconds, on a whole minute.
    pub received_at: u64,
    /// The files.
    pub files: Vec<StoredFile>,
    /// The uploader's message.
    pub message: Option<String>,
    /// Whether the files are age files, encrypted to the box's recipient.
    #[serde(default)]
    pub encrypted: bool,
    /// For an encrypted upload: the plaintext's names, sizes and hashes.
    #[serde(default)]
    pub sent: Vec<veilshare_shared::FileEntry>,
    /// Identifying metadata found in the files as they arrived (unencrypted uploads).
    #[serde(default)]
    pub metadata: Vec<MetadataReport>,
}

impl ShareRecord {
    /// Total content size.
    pub fn content_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// One entry of the download ledger.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TransferRecord {
    /// `download` or `files/<name>`.
    pub resource: String,
    /// First byte of the response.
    pub start: u64,
    /// One past the last byte of the response.
    pub end: u64,
    /// Content bytes sent.
    pub sent: u64,
    /// Whether the response ran to its end.
    pub finished: bool,
    /// Unix seconds.
    pub ended_at: u64,
}

/// The collector's gate and bookkeeping, shared with iroh-blobs' GC callback.
#[derive(Debug)]
struct GcControl {
    gate: Arc<RwLock<()>>,
    wanted: AtomicU64,
    requested: AtomicBool,
    /// The write guard of the run in progress and the request generation it serves.
    held: Mutex<Option<(OwnedRwLockWriteGuard<()>, u64)>>,
    done: watch::Sender<u64>,
}

impl GcControl {
    /// Called by iroh-blobs before each collection run.
    fn before_run(&self) -> ProtectOutcome {
        let finished = self.held.lock().ok().and_then(|mut held| held.take());
        if let Some((guard, generation)) = finished {
            drop(guard);
            self.done
                .send_modify(|done| *done = (*done).max(generation));
        }
        if !self.requested.swap(false, Ordering::SeqCst) {
            return ProtectOutcome::Abort;
        }
        let generation = self.wanted.load(Ordering::SeqCst);
        match self.gate.clone().try_write_owned() {
            Ok(guard) => {
                if let Ok(mut held) = self.held.lock() {
                    *held = Some((guard, generation));
                }
                ProtectOutcome::Continue
            }
            Err(_) => {
                // An import is running; try again at the next tick.
                self.requested.store(true, Ordering::SeqCst);
                ProtectOutcome::Abort
            }
        }
    }
}

/// The blob store and the catalog.
#[derive(Debug, Clone)]
pub struct Store {
    blobs: FsStore,
    blob_root: PathBuf,
    catalog: Arc<redb::Database>,
    gc: Arc<GcControl>,
    /// The shared [`READ_AHEAD_BUDGET`].
    read_ahead: Arc<tokio::sync::Semaphore>,
}

/// Holds the import gate: garbage collection waits while one exists.
#[derive(Debug)]
pub struct ImportPermit(#[allow(dead_code)] OwnedRwLockReadGuard<()>);

impl Store {
    /// Opens (or creates) the store under `data_dir`, removes what a crash may have left
    /// (temporary files, orphan tags) and starts the collector.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let blob_root = data_dir.join("blobs");
        let temp = blob_root.join("temp");
        clear_dir(&temp)?;
        let scratch = scratch_dir(&blob_root);
        match std::fs::remove_dir_all(&scratch) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(StoreError::Io {
                    context: format!("removing {}", scratch.display()),
                    source: e,
                });
            }
            _ => {}
        }
        std::fs::create_dir_all(&scratch).map_err(|source| StoreError::Io {
            context: format!("creating {}", scratch.display()),
            source,
        })?;
        let gc = Arc::new(GcControl {
            gate: Arc::new(RwLock::new(())),
            wanted: AtomicU64::new(0),
            requested: AtomicBool::new(false),
            held: Mutex::new(None),
            done: watch::channel(0).0,
        });
        let mut options = Options::new(&blob_root);
        let callback_gc = gc.clone();
        options.gc = Some(GcConfig {
            interval: GC_TICK,
            add_protected: Some(Arc::new(move |_live| {
                let gc = callback_gc.clone();
                Box::pin(async move { gc.before_run() })
            })),
        });
        let blobs = FsStore::load_with_opts(blob_root.join("blobs.db"), options)
            .await
            .map_err(|e| StoreError::blobs("opening the blob store", e))?;
        let catalog_path = data_dir.join("catalog.redb");
        let catalog = tokio::task::spawn_blocking(move || -> Result<redb::Database, StoreError> {
            let db = redb::Builder::new()
                .set_cache_size(CATALOG_CACHE)
                .create(&catalog_path)
                .map_err(redb_err)?;
            let tx = db.begin_write().map_err(redb_err)?;
            tx.open_table(SHARES).map_err(redb_err)?;
            tx.open_table(TRANSFERS).map_err(redb_err)?;
            tx.commit().map_err(redb_err)?;
            Ok(db)
        })
        .await
        .map_err(|e| StoreError::Io {
            context: "opening the catalog".into(),
            source: io::Error::other(e),
        })??;
        let store = Self {
            blobs,
            blob_root,
            catalog: Arc::new(catalog),
            gc,
            read_ahead: Arc::new(tokio::sync::Semaphore::new(READ_AHEAD_BUDGET)),
        };
        store.remove_unknown_blob_files().await;
        store.remove_orphan_tags().await?;
        Ok(store)
    }

    /// Deletes blob files that the blob store's database does not know. A crash after an
    /// import moved its data file into place but before the store's database recorded it
    /// leaves such a file, and no collection ever sees it (collections walk the database).
    /// Runs at open, before any import.
    async fn remove_unknown_blob_files(&self) {
        let dir = Options::new(&self.blob_root).path.data_path;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(hash) = name
                .to_str()
                .and_then(|name| name.split_once('.'))
                .and_then(|(hex, _)| hex.parse::<Hash>().ok())
            else {
                continue;
            };
            if let Ok(iroh_blobs::api::blobs::BlobStatus::NotFound) =
                self.blobs.blobs().status(hash).await
            {
                tracing::info!("removing a blob file left by a crash");
                if let Err(error) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(%error, "could not remove a blob file left by a crash");
                }
            }
        }
    }

    /// Removes `share/*` tags whose share has no record or whose data was already deleted,
    /// then starts a garbage collection (a crash can leave either, and half-imported blobs).
    async fn remove_orphan_tags(&self) -> Result<(), StoreError> {
        let records = self.list().await?;
        let mut tags = self
            .blobs
            .tags()
            .list_prefix(TAG_PREFIX)
            .await
            .map_err(|e| StoreError::blobs("listing tags", e))?;
        let mut orphans = Vec::new();
        while let Some(tag) = tags.next().await {
            let tag = tag.map_err(|e| StoreError::blobs("listing tags", e))?;
            let name = String::from_utf8_lossy(&tag.name.0).into_owned();
            let id = name.strip_prefix(TAG_PREFIX).unwrap_or_default();
            let keep = records
                .iter()
                .any(|r| r.id.as_str() == id && !r.data_deleted && !r.state.is_ended());
            if !keep {
                orphans.push(name);
            }
        }
        for name in &orphans {
            let share = ShareId::parse(name.strip_prefix(TAG_PREFIX).unwrap_or_default());
            let share = share.as_ref().map_or_else(|| "?".into(), super::log_id);
            tracing::info!(%share, "removing a tag left without a live share");
            self.blobs
                .tags()
                .delete(name)
                .await
                .map_err(|e| StoreError::blobs("removing an orphan tag", e))?;
        }
        // Collect in the background: nothing visible depends on it, and start-up stays fast.
        let store = self.clone();
        tokio::spawn(async move {
            store.collect_garbage().await;
        });
        Ok(())
    }

    /// The blob store itself (for the iroh provider and fetches).
    pub fn blobs(&self) -> &iroh_blobs::api::Store {
        &self.blobs
    }

    /// Waits for the import gate (garbage collection excludes imports).
    pub async fn import_permit(&self) -> Result<ImportPermit, StoreError> {
        let gate = self.gc.gate.clone();
        match tokio::time::timeout(Duration::from_secs(60), gate.read_owned()).await {
            Ok(guard) => Ok(ImportPermit(guard)),
            Err(_) => Err(StoreError::Busy),
        }
    }

    /// Imports a byte stream as one blob, returning a temporary tag (which protects it until
    /// dropped) and its size. Hold an [`ImportPermit`] around the whole share creation.
    pub async fn import_stream(
        &self,
        _permit: &ImportPermit,
        stream: impl Stream<Item = io::Result<Bytes>> + Send + Sync + 'static,
    ) -> Result<TempTag, StoreError> {
        self.blobs
            .blobs()
            .add_stream(stream)
            .await
            .temp_tag()
            .await
            .map_err(|e| StoreError::blobs("importing a file", e))
    }

    /// Imports a local file as one blob (copied into the store, so later changes to the file do
    /// not change the share), to be shared as `name`. Returns the temporary tag and the file's
    /// description; its CRC-32 is computed on another thread while the store copies and hashes.
    ///
    /// That thread reads the file apart from the store's copy: when the file changed meanwhile
    /// (its length or modification time differ after the import), the two reads may have seen
    /// different bytes, so the size and CRC-32 are taken again from the stored copy (the bytes
    /// the share serves; a zip with another CRC would fail to unpack).
    pub async fn import_path(
        &self,
        _permit: &ImportPermit,
        path: &Path,
        name: String,
    ) -> Result<(TempTag, StoredFile), StoreError> {
        let path = std::path::absolute(path).map_err(|source| StoreError::Io {
            context: format!("cannot resolve {}", path.display()),
            source,
        })?;
        let stamp = |path: &Path| {
            std::fs::metadata(path)
                .and_then(|m| Ok((m.len(), m.modified()?)))
                .ok()
        };
        let before = stamp(&path);
        let crc_path = path.clone();
        let crc = tokio::task::spawn_blocking(move || -> io::Result<(u64, u32)> {
            use std::io::Read;
            let mut file = std::fs::File::open(&crc_path)?;
            let mut hasher = crc32fast::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut size = 0u64;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok((size, hasher.finalize()));
                }
                size += n as u64;
                hasher.update(&buf[..n]);
            }
        });
        let tag = self
            .blobs
            .blobs()
            .add_path(&path)
            .temp_tag()
            .await
            .map_err(|e| StoreError::blobs("importing a file", e))?;
        let (mut size, mut crc32) = crc
            .await
            .map_err(|e| StoreError::Io {
                context: "checksum task failed".into(),
                source: io::Error::other(e),
            })?
            .map_err(|source| StoreError::Io {
                context: format!("cannot read {}", path.display()),
                source,
            })?;
        let hash = content_hash(tag.hash());
        if before.is_none() || stamp(&path) != before {
            tracing::warn!(
                "a file changed while it was imported; the share holds the bytes that were copied"
            );
            size = match self.blobs.blobs().status(tag.hash()).await {
                Ok(BlobStatus::Complete { size }) => size,
                Ok(_) => {
                    return Err(StoreError::Io {
                        context: format!("importing {}", path.display()),
                        source: io::Error::other("the stored copy is not complete"),
                    });
                }
                Err(e) => return Err(StoreError::blobs("importing a file", e)),
            };
            crc32 = self
                .crc32(&hash, size)
                .await
                .map_err(|source| StoreError::Io {
                    context: "cannot read the stored copy".into(),
                    source,
                })?;
        }
        let file = StoredFile {
            name,
            size,
            hash,
            crc32,
        };
        Ok((tag, file))
    }

    /// Stores the collection of a share's files (names and hashes) and returns its temp tag.
    pub async fn store_collection(
        &self,
        _permit: &ImportPermit,
        files: &[StoredFile],
    ) -> Result<TempTag, StoreError> {
        let mut collection = Collection::default();
        for file in files {
            let hash: Hash = file
                .hash
                .as_str()
                .parse()
                .map_err(|e| StoreError::blobs("building the collection", e))?;
            collection.push(file.name.clone(), hash);
        }
        collection
            .store(&self.blobs)
            .await
            .map_err(|e| StoreError::blobs("storing the collection", e))
    }

    /// Sets the share's named tag and makes it durable.
    pub async fn tag_share(&self, id: &ShareId, collection: &TempTag) -> Result<(), StoreError> {
        let name = format!("{TAG_PREFIX}{id}");
        self.blobs
            .tags()
            .set(name, collection.hash_and_format())
            .await
            .map_err(|e| StoreError::blobs("tagging a share", e))?;
        self.blobs
            .sync_db()
            .await
            .map_err(|e| StoreError::blobs("syncing the blob store", e))
    }

    /// Removes the share's tag and collects its blobs (unless another live share holds them).
    pub async fn delete_share_data(&self, id: &ShareId) -> Result<(), StoreError> {
        self.blobs
            .tags()
            .delete(format!("{TAG_PREFIX}{id}"))
            .await
            .map_err(|e| StoreError::blobs("removing a share's tag", e))?;
        super::crash::point("data.untagged");
        if self.collect_garbage().await {
            Ok(())
        } else {
            // The tag is gone, so the next run deletes the blobs; until one ran, the data is
            // still on disk and must not be reported deleted.
            Err(StoreError::Busy)
        }
    }

    /// Asks for a collection run and waits until one that started after this call has ended:
    /// whether one did within two minutes (an import holds the gate meanwhile).
    pub async fn collect_garbage(&self) -> bool {
        let generation = self.gc.wanted.fetch_add(1, Ordering::SeqCst) + 1;
        self.gc.requested.store(true, Ordering::SeqCst);
        let mut done = self.gc.done.subscribe();
        let waited = tokio::time::timeout(
            Duration::from_secs(120),
            done.wait_for(|done| *done >= generation),
        )
        .await;
        if waited.is_err() {
            tracing::warn!("garbage collection did not finish within two minutes");
        }
        waited.is_ok_and(|result| result.is_ok())
    }

    /// The folder the store lives in (`<data>/store`).
    pub fn data_dir(&self) -> &Path {
        self.blob_root.parent().unwrap_or(&self.blob_root)
    }

    /// A stream of the bytes `start..end` of a blob of `size` bytes.
    pub fn read_range(
        &self,
        hash: &ContentHash,
        start: u64,
        end: u64,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let file = self.blob_file(hash);
        let hash: Option<Hash> = hash.as_str().parse().ok();
        let blobs = self.blobs.clone();
        let read_ahead = self.read_ahead.clone();
        // One chunk waits here, one is being read and one is being sent.
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(1);
        tokio::spawn(async move {
            let Some(hash) = hash else {
                let _ = tx.send(Err(io::Error::other("bad hash"))).await;
                return;
            };
            match file {
                Some(file) => {
                    // Large blobs live in their own data file.
                    send_file_range(Arc::new(file), start, end, &read_ahead, &tx).await;
                }
                _ => {
                    // Small blobs are inlined in the store's database.
                    let result = blobs.blobs().get_bytes(hash).await;
                    let item = match result {
                        Ok(bytes) => {
                            let len = bytes.len() as u64;
                            if end > len || start > end {
                                Err(io::Error::other("range beyond the stored blob"))
                            } else {
                                Ok(bytes.slice(start as usize..end as usize))
                            }
                        }
                        Err(e) => Err(io::Error::other(e.to_string())),
                    };
                    let _ = tx.send(item).await;
                }
            }
        });
        receiver_stream(rx)
    }

    /// The data file of a stored blob, open for reading; `None` for a blob small enough to be
    /// kept in the store's database (read those with [`Self::read_range`]). A complete blob's
    /// data file is never rewritten, only deleted: an open one keeps its bytes.
    pub fn blob_file(&self, hash: &ContentHash) -> Option<std::fs::File> {
        let hash: Hash = hash.as_str().parse().ok()?;
        let path = Options::new(&self.blob_root).path.data_path(&hash);
        std::fs::File::open(path).ok()
    }

    /// The CRC-32 of a stored blob of `size` bytes (for blobs that arrived without one).
    pub async fn crc32(&self, hash: &ContentHash, size: u64) -> io::Result<u32> {
        let mut hasher = crc32fast::Hasher::new();
        let mut stream = std::pin::pin!(self.read_range(hash, 0, size));
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk?);
        }
        Ok(hasher.finalize())
    }

    /// Scratch space on the store's file system, for what is received before it is imported
    /// (a mirror's files). Emptied when the store opens, so that what a crash left there does
    /// not stay on disk.
    pub fn scratch(&self) -> PathBuf {
        scratch_dir(&self.blob_root)
    }

    /// Free bytes on the file system that holds the blobs.
    pub fn free_space(&self) -> io::Result<u64> {
        free_space(&self.blob_root)
    }

    /// Bytes an upload may bring in: the free space, less a reserve for the store's outboards
    /// and database (64 MiB and 1 % of the free space).
    pub fn room_for_uploads(&self) -> io::Result<u64> {
        let free = self.free_space()?;
        Ok(free.saturating_sub((64 << 20) + free / 100))
    }

    /// All share records.
    pub async fn list(&self) -> Result<Vec<ShareRecord>, StoreError> {
        let db = self.catalog.clone();
        blocking(move || {
            let tx = db.begin_read().map_err(redb_err)?;
            let table = tx.open_table(SHARES).map_err(redb_err)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(redb_err)? {
                let (_, value) = item.map_err(redb_err)?;
                out.push(serde_json::from_slice::<ShareRecord>(value.value())?);
            }
            out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(out)
        })
        .await
    }

    /// Writes a new share record; fails if the id exists.
    pub async fn insert(&self, record: ShareRecord) -> Result<(), StoreError> {
        let db = self.catalog.clone();
        blocking(move || {
            let tx = db.begin_write().map_err(redb_err)?;
            {
                let mut table = tx.open_table(SHARES).map_err(redb_err)?;
                if table.get(record.id.as_str()).map_err(redb_err)?.is_some() {
                    return Err(StoreError::Exists(record.id.clone()));
                }
                let json = serde_json::to_vec(&record)?;
                table
                    .insert(record.id.as_str(), json.as_slice())
                    .map_err(redb_err)?;
            }
            tx.commit().map_err(redb_err)?;
            Ok(())
        })
        .await
    }

    /// Replaces a share record, and appends a ledger entry in the same transaction.
    pub async fn update(
        &self,
        record: ShareRecord,
        transfer: Option<TransferRecord>,
    ) -> Result<(), StoreError> {
        let db = self.catalog.clone();
        blocking(move || {
            let tx = db.begin_write().map_err(redb_err)?;
            {
                let mut table = tx.open_table(SHARES).map_err(redb_err)?;
                let json = serde_json::to_vec(&record)?;
                table
                    .insert(record.id.as_str(), json.as_slice())
                    .map_err(redb_err)?;
            }
            if let Some(transfer) = transfer {
                let mut ledger = tx.open_table(TRANSFERS).map_err(redb_err)?;
                let id = record.id.as_str();
                let next = ledger
                    .range((id, 0)..=(id, u64::MAX))
                    .map_err(redb_err)?
                    .next_back()
                    .transpose()
                    .map_err(redb_err)?
                    .map_or(0, |(key, _)| key.value().1 + 1);
                let json = serde_json::to_vec(&transfer)?;
                ledger
                    .insert((id, next), json.as_slice())
                    .map_err(redb_err)?;
                // A history, not the count (that is in the record): the oldest entries go,
                // so that a stream of small ranges cannot grow the catalog without end.
                if let Some(old) = next.checked_sub(TRANSFERS_KEPT) {
                    ledger.remove((id, old)).map_err(redb_err)?;
                }
            }
            tx.commit().map_err(redb_err)?;
            Ok(())
        })
        .await
    }

    /// The ledger entries of one share, oldest first.
    pub async fn transfers(&self, id: &ShareId) -> Result<Vec<TransferRecord>, StoreError> {
        let db = self.catalog.clone();
        let id = id.clone();
        blocking(move || {
            let tx = db.begin_read().map_err(redb_err)?;
            let table = tx.open_table(TRANSFERS).map_err(redb_err)?;
            let id = id.as_str();
            let mut out = Vec::new();
            for item in table.range((id, 0)..=(id, u64::MAX)).map_err(redb_err)? {
                let (_, value) = item.map_err(redb_err)?;
                out.push(serde_json::from_slice(value.value())?);
            }
            Ok(out)
        })
        .await
    }

    /// Stops the blob store (flushes its database).
    pub async fn shutdown(&self) {
        if let Err(error) = self.blobs.shutdown().await {
            tracing::warn!(%error, "blob store did not shut down cleanly");
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io {
            context: "catalog task failed".into(),
            source: io::Error::other(e),
        })?
}

/// Sends the bytes `start..end` of `file` to `tx`, a chunk at a time, each read on a blocking
/// thread: full-size chunks while [`READ_AHEAD_BUDGET`] lasts (the budget comes back when the
/// chunk's last copy is dropped, i.e. once sent), small ones otherwise.
async fn send_file_range(
    file: Arc<std::fs::File>,
    start: u64,
    end: u64,
    read_ahead: &Arc<tokio::sync::Semaphore>,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
) {
    let mut offset = start;
    while offset < end {
        let left = end - offset;
        let full = usize::try_from(left.min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
        let (want, permit) = match u32::try_from(full)
            .ok()
            .and_then(|bytes| read_ahead.clone().try_acquire_many_owned(bytes).ok())
        {
            Some(permit) => (full, Some(permit)),
            None => (full.min(READ_CHUNK_SMALL), None),
        };
        let reading = file.clone();
        let item = tokio::task::spawn_blocking(move || read_chunk(&reading, offset, want))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
            .map(|buf| {
                offset += buf.len() as u64;
                match permit {
                    Some(permit) => Bytes::from_owner(Budgeted {
                        buf,
                        _permit: permit,
                    }),
                    None => Bytes::from(buf),
                }
            });
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// A chunk holding its part of the read-ahead budget.
struct Budgeted {
    buf: Vec<u8>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

/// Reads up to `want` bytes at `offset` (at least one, or an error).
fn read_chunk(file: &std::fs::File, offset: u64, want: usize) -> io::Result<Vec<u8>> {
    // Read into the vector's spare capacity: no zeroing of memory that is overwritten anyway.
    let mut buf = Vec::with_capacity(want);
    loop {
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stored blob is shorter than its record",
                ));
            }
            Ok(_) => return Ok(buf),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// A stream of what a channel receives.
pub fn receiver_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + Sync + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Gathers a body's chunks (network-sized, from a few to some hundred KiB) into pieces of
/// about `size` bytes for the store and the disk, where per-piece costs dominate with small
/// ones. Each piece's buffer is allocated once at its full size: a `BytesMut` that grows chunk
/// by chunk reallocates, and copies what it holds, at each doubling (after a `split` it starts
/// again from 128 KiB), which cost about one more copy of every uploaded byte. A chunk at
/// least `size` long that finds nothing gathered goes on as it is, uncopied.
#[derive(Debug)]
pub struct Pieces {
    pending: bytes::BytesMut,
    size: usize,
}

impl Pieces {
    pub fn new(size: usize) -> Self {
        Self {
            pending: bytes::BytesMut::new(),
            size,
        }
    }

    /// Adds `chunk`; returns the gathered piece when `chunk` would not fit in it (`chunk` then
    /// starts the next one), or `chunk` itself when it is a piece on its own.
    pub fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.pending.is_empty() && chunk.len() >= self.size {
            return Some(chunk);
        }
        let full = (self.pending.len() + chunk.len() > self.size).then(|| self.take());
        if self.pending.capacity() == 0 {
            self.pending = bytes::BytesMut::with_capacity(self.size.max(chunk.len()));
        }
        self.pending.extend_from_slice(&chunk);
        full.flatten()
    }

    /// The bytes gathered so far, if any, as a piece.
    pub fn take(&mut self) -> Option<Bytes> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending).freeze())
    }
}

/// Free bytes available to us on the file system holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The scratch folder of the store whose blobs live in `blob_root`.
fn scratch_dir(blob_root: &Path) -> PathBuf {
    blob_root.parent().unwrap_or(blob_root).join("scratch")
}

fn clear_dir(dir: &Path) -> Result<(), StoreError> {
    let io_err = |context: String| move |source| StoreError::Io { context, source };
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(io_err(format!("reading {}", dir.display())))?;
                std::fs::remove_file(entry.path())
                    .map_err(io_err(format!("removing {}", entry.path().display())))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("reading {}", dir.display()))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_keep_every_byte_in_order_and_never_grow_a_buffer() {
        let mut pieces = Pieces::new(100);
        let mut out: Vec<Bytes> = Vec::new();
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut at = 0;
        // Chunks of 30, 70 (fills exactly), 1, 250 (larger than a piece, after the 1), 40...
        for len in [30, 70, 1, 250, 40, 99, 2, 100, 0, 408] {
            let chunk = Bytes::copy_from_slice(&data[at..at + len]);
            at += len;
            let gathering = (!pieces.pending.is_empty()).then(|| pieces.pending.capacity());
            let piece = pieces.push(chunk);
            // A chunk added to what was gathered fits the buffer as it is: it was allocated at
            // its full size and is never grown (which copies what it holds).
            if let (Some(before), None) = (gathering, &piece) {
                assert_eq!(
                    pieces.pending.capacity(),
                    before,
                    "grown at a chunk of {len}"
                );
            }
            out.extend(piece);
        }
        out.extend(pieces.take());
        assert!(pieces.take().is_none());
        assert_eq!(out.concat(), data);
        assert!(out.iter().all(|piece| !piece.is_empty()));
        // A large chunk with nothing gathered goes on uncopied.
        let big = Bytes::from(vec![7u8; 300]);
        let piece = pieces.push(big.clone()).expect("a piece");
        assert_eq!(piece.as_ptr(), big.as_ptr());
    }

    #[test]
    fn new_files_refuse_bad_and_duplicate_names() {
        let files = NewFiles::default();
        assert!(files.check_name("notes.txt").is_ok());
        assert!(files.check_name("../notes.txt").is_err());
        assert!(files.check_name("").is_err());
        let mut files = NewFiles::default();
        files.files.push(StoredFile {
            name: "notes.txt".into(),
            size: 0,
            hash: ContentHash::parse(&"0".repeat(64)).expect("hash"),
            crc32: 0,
        });
        let error = files.check_name("notes.txt").expect_err("duplicate");
        assert!(error.contains("must differ"), "{error}");
        let error = files.check_name("Notes.TXT").expect_err("same on Windows");
        assert!(error.contains("only in case"), "{error}");
        assert!(files.check_name("con.txt").is_err());
        assert!(files.check_name("other.txt").is_ok());
    }

    #[test]
    fn a_full_disk_is_known_by_the_error_kind_not_its_text() {
        let full = iroh_blobs::api::Error::Io(io::Error::from_raw_os_error(28));
        assert!(StoreError::blobs("importing", full).is_no_space());
        let wrapped = iroh_blobs::api::Error::Io(io::Error::other(io::Error::from(
            io::ErrorKind::StorageFull,
        )));
        assert!(StoreError::blobs("importing", wrapped).is_no_space());
        let talk = iroh_blobs::api::Error::Io(io::Error::other("No space left, says a file name"));
        assert!(!StoreError::blobs("importing", talk).is_no_space());
    }

    fn record(id: &str) -> ShareRecord {
        ShareRecord {
            id: ShareId::parse(id).expect("id"),
            label: None,
            files: vec![],
            collection: ContentHash::parse(&"0".repeat(64)).expect("hash"),
            policy: Policy::default(),
            created_at: 1,
            state: ShareState::Live,
            ended_at: None,
            ledger: Ledger::default(),
            data_deleted: false,
            direct: false,
            problem: None,
            onion: None,
            client_key: None,
            dropbox: None,
            metadata: Vec::new(),
            keep_log: false,
            recipients: Vec::new(),
        }
    }

    #[tokio::test]
    async fn catalog_round_trips_and_refuses_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        let rec = record("aaaaaaaaaaaaaaaaaaaaaaaaaa");
        store.insert(rec.clone()).await.expect("insert");
        assert!(matches!(
            store.insert(rec.clone()).await,
            Err(StoreError::Exists(_))
        ));
        let transfer = TransferRecord {
            resource: "download".into(),
            start: 0,
            end: 10,
            sent: 10,
            finished: true,
            ended_at: 2,
        };
        store
            .update(rec.clone(), Some(transfer.clone()))
            .await
            .expect("update");
        store
            .update(rec.clone(), Some(transfer.clone()))
            .await
            .expect("update");
        assert_eq!(store.transfers(&rec.id).await.expect("ledger").len(), 2);
        // The history keeps only the latest entries.
        for _ in 0..TRANSFERS_KEPT {
            store
                .update(rec.clone(), Some(transfer.clone()))
                .await
                .expect("update");
        }
        let kept = store.transfers(&rec.id).await.expect("ledger").len();
        assert_eq!(kept as u64, TRANSFERS_KEPT);
        assert_eq!(store.list().await.expect("list"), vec![rec]);
        store.shutdown().await;
    }

    #[tokio::test]
    async fn path_import_reports_size_crc_and_blake3() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).await.expect("open");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let file = dir.path().join("input.bin");
        std::fs::write(&file, &data).expect("write");
        let permit = store.import_permit().await.expect("permit");
        let (tag, stored) = store
            .import_path(&permit, &file, "input.bin".into())
            .await
            .expect("import");
        assert_eq!(stored.size, data.len() as u64);
        assert_eq!(stored.crc32, crc32fast::hash(&data));
        assert_eq!(tag.hash().to_hex(), blake3_hex(&data));
        store.shutdown().await;
    }

    /// A file written to while it is imported: the share must describe the bytes it holds (its
    /// size goes into every download's length, its CRC-32 into zip headers), not those another
    /// read saw. Before, both came from a read apart from the store's copy: seen failing on
    /// the size (32 MiB against 33,558,120 bytes stored) and on the CRC.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_changing_during_its_import_gets_the_crc_of_the_stored_bytes() {
        use std::os::unix::fs::FileExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).await.expect("open");
        let file = dir.path().join("input.bin");
        std::fs::write(&file, vec![0u8; 32 << 20]).expect("write");
        // Another program keeps rewriting the file while it is imported, and writes past its
        // end now and then (it grows by up to 4 KiB).
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, file) = (
                stop.clone(),
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .expect("open"),
            );
            std::thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let offset = round.wrapping_mul(0x9E37_79B9) % (32 << 20);
                    file.write_all_at(&round.to_le_bytes().repeat(512), offset - offset % 8)
                        .expect("rewrite");
                }
            })
        };
        let permit = store.import_permit().await.expect("permit");
        let (_tag, stored) = store
            .import_path(&permit, &file, "input.bin".into())
            .await
            .expect("import");
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
        let mut held = Vec::new();
        let mut range = std::pin::pin!(store.read_range(&stored.hash, 0, stored.size));
        while let Some(chunk) = range.next().await {
            held.extend_from_slice(&chunk.expect("stored bytes"));
        }
        assert_eq!(stored.size, held.len() as u64);
        assert_eq!(blake3_hex(&held), stored.hash.as_str());
        assert_eq!(
            stored.crc32,
            crc32fast::hash(&held),
            "the CRC of other bytes"
        );
        store.shutdown().await;
    }

    /// The store's imports are patched (third_party/iroh-blobs: one pass, hashed in parallel).
    /// Whatever way bytes come in, the blob must have BLAKE3's hash and exactly the outboard
    /// bao-tree builds: compared through the bao encoding the store sends to peers, which holds
    /// every parent node. Sizes around one block (16 KiB), odd block counts, and one large
    /// enough for the outboard to go to its own file; streams cut at awkward places.
    #[tokio::test]
    async fn imports_hash_and_outboard_match_the_reference_construction() {
        use bao_tree::io::outboard::PreOrderMemOutboard;
        use iroh_blobs::protocol::ChunkRanges;
        const BLOCK: usize = 16 * 1024;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).await.expect("open");
        let sizes = [
            0,
            1,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK,
            3 * BLOCK + 7,
            64 * BLOCK,
            100 * BLOCK - 1,
            (5 << 20) + 3,
            // Past 64 MiB the importer spills each 64 MiB group's parents and merges them at
            // the end: one group and a byte, and two groups and a bit more.
            (64 << 20) + 1,
            (128 << 20) + BLOCK + 3,
        ];
        for size in sizes {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
            let expected = PreOrderMemOutboard::create(&data, iroh_blobs::store::IROH_BLOCK_SIZE);
            let mut encoding = (size as u64).to_le_bytes().to_vec();
            bao_tree::io::sync::encode_ranges_validated(
                &data[..],
                &expected,
                &ChunkRanges::all(),
                &mut encoding,
            )
            .expect("reference encoding");
            let file = dir.path().join(format!("input-{size}.bin"));
            std::fs::write(&file, &data).expect("write");
            let permit = store.import_permit().await.expect("permit");
            let mut tags = vec![
                store
                    .import_path(&permit, &file, "f".into())
                    .await
                    .expect("path")
                    .0,
            ];
            for piece in [1000, BLOCK, 3 * BLOCK + 5, 1 << 20] {
                if size > 8 << 20 && piece < 1 << 20 {
                    // Cutting the large ones finely adds time, not cases.
                    continue;
                }
                let pieces: Vec<io::Result<Bytes>> = data
                    .chunks(piece)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                let stream = futures::stream::iter(pieces);
                tags.push(store.import_stream(&permit, stream).await.expect("stream"));
            }
            for tag in &tags {
                assert_eq!(
                    tag.hash().as_bytes(),
                    expected.root.as_bytes(),
                    "hash of {size}"
                );
                let sent = store
                    .blobs()
                    .blobs()
                    .export_bao(tag.hash(), ChunkRanges::all())
                    .bao_to_vec()
                    .await
                    .expect("export");
                assert!(sent == encoding, "the bao encoding of {size} bytes differs");
            }
        }
        // The spills were unnamed, and every outboard moved into place: nothing is left in
        // the blob store's temp folder.
        let temp = dir.path().join("store").join("blobs").join("temp");
        let left: Vec<_> = std::fs::read_dir(&temp)
            .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", temp.display());
        store.shutdown().await;
    }

    fn blake3_hex(data: &[u8]) -> String {
        iroh_blobs::Hash::new(data).to_hex().to_string()
    }

    #[tokio::test]
    async fn deleting_a_share_collects_its_blobs_but_keeps_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        let mut hashes = Vec::new();
        for (id, byte) in [
            ("aaaaaaaaaaaaaaaaaaaaaaaaaa", 1u8),
            ("bbbbbbbbbbbbbbbbbbbbbbbbbb", 2u8),
        ] {
            let permit = store.import_permit().await.expect("permit");
            let data = Bytes::from(vec![byte; 100_000]);
            let tt = store
                .import_stream(&permit, futures::stream::iter([Ok(data)]))
                .await
                .expect("import");
            let hash = content_hash(tt.hash());
            let file = StoredFile {
                name: "f".into(),
                size: 100_000,
                hash: hash.clone(),
                crc32: 0,
            };
            let collection = store
                .store_collection(&permit, &[file])
                .await
                .expect("collection");
            let id = ShareId::parse(id).expect("id");
            store.tag_share(&id, &collection).await.expect("tag");
            hashes.push((id, hash));
        }
        let path = |h: &ContentHash| {
            Options::new(&dir.path().join("blobs"))
                .path
                .data_path(&h.as_str().parse().expect("hash"))
        };
        assert!(path(&hashes[0].1).exists());
        store.delete_share_data(&hashes[0].0).await.expect("delete");
        assert!(!path(&hashes[0].1).exists(), "revoked data still on disk");
        assert!(
            path(&hashes[1].1).exists(),
            "live share's data was collected"
        );
        let kept: Vec<u8> = store
            .read_range(&hashes[1].1, 10, 20)
            .map(|b| b.expect("read").to_vec())
            .concat()
            .await;
        assert_eq!(kept, vec![2u8; 10]);
        store.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn collections_during_concurrent_imports_never_lose_live_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        // Shares are created concurrently while earlier ones are deleted and collected.
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..24u32 {
            let store = store.clone();
            tasks.spawn(async move {
                let permit = store.import_permit().await.expect("permit");
                let data: Vec<u8> = (0..40_000 + n * 3_000)
                    .map(|i| (i.wrapping_mul(n + 7) % 251) as u8)
                    .collect();
                let tt = store
                    .import_stream(
                        &permit,
                        futures::stream::iter([Ok(Bytes::from(data.clone()))]),
                    )
                    .await
                    .expect("import");
                let file = StoredFile {
                    name: "f".into(),
                    size: data.len() as u64,
                    hash: content_hash(tt.hash()),
                    crc32: 0,
                };
                let collection = store
                    .store_collection(&permit, std::slice::from_ref(&file))
                    .await
                    .expect("collection");
                let id =
                    ShareId::parse(&format!("{}{}", "a".repeat(25), char::from(b'a' + n as u8)))
                        .expect("id");
                store.tag_share(&id, &collection).await.expect("tag");
                drop(permit);
                // Every third share ends right away and is collected, others' imports running.
                if n % 3 == 0 {
                    store.delete_share_data(&id).await.expect("delete");
                    None
                } else {
                    Some((file, data))
                }
            });
        }
        let mut live = Vec::new();
        while let Some(result) = tasks.join_next().await {
            if let Some(kept) = result.expect("task") {
                live.push(kept);
            }
        }
        assert!(store.collect_garbage().await);
        assert_eq!(live.len(), 16);
        for (file, data) in live {
            let read: Vec<u8> = store
                .read_range(&file.hash, 0, file.size)
                .map(|b| b.expect("a live share's data was collected").to_vec())
                .concat()
                .await;
            assert!(read == data, "a live share's data changed");
        }
        store.shutdown().await;
    }
}
