//! Fetching a share by ticket: into a store (the app's, for a mirror; a partial one next to the
//! output, for `veilshare get`), verified by construction (iroh-blobs checks every 16 KiB chunk
//! group against the BLAKE3 tree before storing it), asking only for what is missing.
//!
//! Invariants:
//! - The names come from the network: all are checked with `shared::validate_file_name` (and
//!   for duplicates) after fetching only the hash sequence and the names, before any content
//!   is fetched or any path is built.
//! - `get` keeps what it fetched in a partial store in the output folder
//!   ([`local::partial_store_dir`]) until every file is in place, so a rerun resumes; a file
//!   appears under its final name only complete and verified (exported to its part file, then
//!   renamed).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use futures::StreamExt;
use iroh::{Endpoint, EndpointAddr, SecretKey};
use iroh_blobs::{
    Hash,
    api::{
        Store as BlobStore,
        blobs::{ExportMode, ExportOptions, ExportProgressItem},
        proto::BlobStatus,
        remote::GetProgressItem,
    },
    format::collection::Collection,
    get::GetError,
    protocol::{
        ChunkRanges, ChunkRangesExt, ChunkRangesSeq, ERR_LIMIT, ERR_PERMISSION, GetRequest,
    },
    store::fs::FsStore,
    ticket::BlobTicket,
};

use crate::{
    receive::{
        error::{IoContext, ReceiveError, ReceiveErrorKind, Refusal, Result},
        local::{self, Patience},
    },
    transport::iroh::{CLOSE_REVOKED, P2pConfig},
};

/// The longest wait for one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What `veilshare get <ticket>` needs.
#[derive(Debug, Clone)]
pub struct TicketFetch {
    /// The ticket.
    pub ticket: BlobTicket,
    /// Where the files go.
    pub out_dir: PathBuf,
    /// No progress bar.
    pub quiet: bool,
    /// How long to keep trying to reach the sender.
    pub patience: Duration,
    /// How to reach peers.
    pub config: P2pConfig,
    /// Accept hidden files (`.bashrc`…) in the share.
    pub allow_hidden: bool,
    /// Where the app follows the fetch (its Get panel); `None` from the command line.
    pub progress: Option<std::sync::Arc<local::Progress>>,
}

/// The refusal an iroh error means; `None` when it is not one (the network, worth another
/// attempt).
fn refusal(error: &GetError) -> Option<Refusal> {
    let code = error.iroh_error_code()?;
    if code == ERR_PERMISSION {
        Some(Refusal::Ended)
    } else if code == ERR_LIMIT {
        Some(Refusal::Busy)
    } else if code.into_inner() == u64::from(CLOSE_REVOKED) {
        Some(Refusal::Revoked)
    } else {
        None
    }
}

/// An iroh transfer's error as a [`ReceiveError`].
fn classify(error: GetError) -> ReceiveError {
    if let Some(refusal) = refusal(&error) {
        ReceiveError::refused(refusal)
    } else if matches!(error, GetError::LocalFailure { .. }) {
        ReceiveError::io("storing the download failed").because(error)
    } else {
        ReceiveError::unreachable("the transfer failed").because(error)
    }
}

/// A failure of the local blob store.
fn store_failed(error: impl std::fmt::Display) -> ReceiveError {
    ReceiveError::io(format!("local store failed: {error}"))
}

/// Fetches the collection of `ticket` into `blobs`, retrying broken connections (and a sender
/// busy with other downloads) until `patience` runs out; `progress` gets the payload bytes of
/// each attempt. Checks the names before fetching any content. Returns the collection.
pub async fn download(
    endpoint: &Endpoint,
    blobs: &BlobStore,
    ticket: &BlobTicket,
    patience: Duration,
    allow_hidden: bool,
    progress: impl Fn(Progress),
) -> Result<Collection> {
    let hash = ticket.hash();
    let addr = ticket.addr().clone();
    let mut patience = Patience::new(patience);
    let mut names_checked = None;
    loop {
        let result = attempt_download(
            endpoint,
            blobs,
            hash,
            &addr,
            (&mut names_checked, allow_hidden),
            patience.left(Duration::from_secs(1)).min(CONNECT_TIMEOUT),
            &progress,
        )
        .await;
        let error = match result {
            Ok(()) => break,
            Err(error) => error,
        };
        // Busy: the remaining downloads are in flight, perhaps our own broken earlier attempt,
        // which the sender drops once the connection times out.
        let retry = match error.kind() {
            ReceiveErrorKind::Refused(refusal) => !refusal.is_final(),
            ReceiveErrorKind::Unreachable => true,
            _ => false,
        };
        if !retry {
            return Err(error);
        }
        tracing::debug!(%error, attempt = patience.attempt(), "direct fetch failed");
        progress(Progress::Retrying(error.to_string()));
        if !patience.again().await {
            return Err(match error.refusal() {
                Some(_) => error,
                None => patience.gave_up(
                    error.context(format!("no transfer from {}", addr.id.fmt_short())),
                    "the sender is not reachable (offline, the share ended, or no route between you; a relay may help)",
                ),
            });
        }
    }
    match names_checked {
        Some(collection) => Ok(collection),
        None => load_collection(blobs, hash).await,
    }
}

/// What a fetch reports.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Connected; the share has these files.
    Files(usize),
    /// The content's size.
    Total(u64),
    /// Payload bytes stored so far (including what was stored before).
    Bytes(u64),
    /// A connection broke; trying again.
    Retrying(String),
}

async fn attempt_download(
    endpoint: &Endpoint,
    blobs: &BlobStore,
    hash: Hash,
    addr: &EndpointAddr,
    (names, allow_hidden): (&mut Option<Collection>, bool),
    connect_timeout: Duration,
    progress: &impl Fn(Progress),
) -> Result<()> {
    let connection = tokio::time::timeout(
        connect_timeout,
        endpoint.connect(addr.clone(), iroh_blobs::ALPN),
    )
    .await
    .map_err(|_| {
        ReceiveError::unreachable(format!(
            "no answer from the sender within {} s",
            connect_timeout.as_secs()
        ))
    })?
    .map_err(|error| ReceiveError::unreachable("cannot connect to the sender").because(error))?;
    let remote = blobs.remote();
    if names.is_none() {
        let collection = fetch_names(blobs, &connection, hash, allow_hidden).await?;
        progress(Progress::Files(collection.len()));
        // The sizes, for the progress bar: the last group of each file proves its size, and
        // is part of the download anyway (never fetched twice, so never counted twice).
        match learn_sizes(blobs, &connection, hash, &collection).await {
            Ok(sizes) => progress(Progress::Total(sizes.iter().sum())),
            Err(error) if error.refusal().is_some() => return Err(error),
            Err(_) => {}
        }
        *names = Some(collection);
    }
    let local = remote
        .local(iroh_blobs::HashAndFormat::hash_seq(hash))
        .await
        .map_err(store_failed)?;
    let before = local.local_bytes();
    progress(Progress::Bytes(before));
    if local.is_complete() {
        return Ok(());
    }
    let mut stream = remote.execute_get(connection, local.missing()).stream();
    while let Some(item) = stream.next().await {
        match item {
            GetProgressItem::Progress(bytes) => progress(Progress::Bytes(before + bytes)),
            GetProgressItem::Done(_) => return Ok(()),
            GetProgressItem::Error(error) => return Err(classify(error)),
        }
    }
    Err(ReceiveError::unreachable(
        "the transfer ended without a result",
    ))
}

/// The most bytes a share's hash sequence may have: the hash of its names, and one per file.
const MAX_HASH_SEQ_BYTES: u64 = 32 * (veilshare_shared::MAX_FILES_PER_SHARE as u64 + 1);
/// The most bytes a share's names may take: every name at its longest, each with its length
/// (postcard: 2 bytes up to 16383), and the header.
const MAX_NAMES_BYTES: u64 = (veilshare_shared::MAX_FILES_PER_SHARE as u64)
    * (veilshare_shared::MAX_FILE_NAME_BYTES as u64 + 2)
    + 64;

/// Fetches the hash sequence and the names only (no content before the names are checked),
/// unless they are stored already; returns the checked collection. The two lists' sizes are
/// learnt first (the last chunk group of each, with its proof): a sender cannot make us store
/// or load lists larger than a share can have.
pub(crate) async fn fetch_names(
    blobs: &BlobStore,
    connection: &iroh::endpoint::Connection,
    root: Hash,
    allow_hidden: bool,
) -> Result<Collection> {
    let sizes = GetRequest::builder()
        .root(ChunkRanges::last_chunk())
        .build(root);
    fetch_missing(blobs, connection, sizes).await?;
    check_list_size(blobs, root, List::Hashes).await?;
    let names_size = GetRequest::builder()
        .root(ChunkRanges::all())
        .next(ChunkRanges::last_chunk())
        .build(root);
    fetch_missing(blobs, connection, names_size).await?;
    check_list_size(blobs, names_hash(blobs, root).await?, List::Names).await?;
    let request = GetRequest::new(
        root,
        ChunkRangesSeq::from_ranges([ChunkRanges::all(), ChunkRanges::all()]),
    );
    fetch_missing(blobs, connection, request).await?;
    let collection = load_collection(blobs, root).await?;
    check_names(&collection, allow_hidden)?;
    Ok(collection)
}

/// The two lists a share's collection is made of.
#[derive(Debug, Clone, Copy)]
enum List {
    /// The hash sequence: the names' hash, then one hash per file.
    Hashes,
    /// The names.
    Names,
}

/// Refuses a list larger than a share can have (its size as proven by its last chunk group,
/// or as stored).
async fn check_list_size(blobs: &BlobStore, hash: Hash, list: List) -> Result<()> {
    let size = match blobs.blobs().status(hash).await.map_err(store_failed)? {
        BlobStatus::Complete { size } | BlobStatus::Partial { size: Some(size) } => size,
        _ => {
            return Err(ReceiveError::integrity(
                "the sender did not prove the size of the share's list of files",
            ));
        }
    };
    let max_files = veilshare_shared::MAX_FILES_PER_SHARE;
    match list {
        List::Hashes if size > MAX_HASH_SEQ_BYTES => Err(ReceiveError::integrity(format!(
            "refusing the share: its list of files takes {size} bytes, so it holds more than {max_files} files, the most a share can have"
        ))),
        List::Names if size > MAX_NAMES_BYTES => Err(ReceiveError::integrity(format!(
            "refusing the share: its file names take {size} bytes, more than {max_files} names of at most {} bytes can",
            veilshare_shared::MAX_FILE_NAME_BYTES
        ))),
        _ => Ok(()),
    }
}

/// The hash of the names: the first of the (stored, size-checked) hash sequence.
async fn names_hash(blobs: &BlobStore, root: Hash) -> Result<Hash> {
    let bytes = blobs.blobs().get_bytes(root).await.map_err(store_failed)?;
    let hashes = iroh_blobs::hashseq::HashSeq::try_from(bytes).map_err(|error| {
        ReceiveError::integrity(format!("the share's list of files is not valid: {error}"))
    })?;
    hashes
        .iter()
        .next()
        .ok_or_else(|| ReceiveError::integrity("the share's list of files is empty"))
}

/// Asks `connection` for what of `request` is not stored yet.
async fn fetch_missing(
    blobs: &BlobStore,
    connection: &iroh::endpoint::Connection,
    request: GetRequest,
) -> Result<()> {
    let local = blobs
        .remote()
        .local_for_request(request)
        .await
        .map_err(store_failed)?;
    if local.is_complete() {
        return Ok(());
    }
    blobs
        .remote()
        .execute_get(connection.clone(), local.missing())
        .complete()
        .await
        .map(|_| ())
        .map_err(classify)
}

/// Fetches the last chunk group of every file not stored yet and returns the files' sizes.
pub(crate) async fn learn_sizes(
    blobs: &BlobStore,
    connection: &iroh::endpoint::Connection,
    root: Hash,
    collection: &Collection,
) -> Result<Vec<u64>> {
    let mut builder = GetRequest::builder();
    for index in 0..collection.len() {
        builder = builder.offset(index as u64 + 2, ChunkRanges::last_chunk());
    }
    fetch_missing(blobs, connection, builder.build(root)).await?;
    let mut sizes = Vec::new();
    for (_, hash) in collection.iter() {
        let status = blobs.blobs().status(*hash).await.map_err(store_failed)?;
        sizes.push(match status {
            BlobStatus::Complete { size } | BlobStatus::Partial { size: Some(size) } => size,
            _ => {
                return Err(ReceiveError::integrity(
                    "the sender did not prove a file's size",
                ));
            }
        });
    }
    Ok(sizes)
}

/// Loads a stored collection, refusing lists larger than a share can have (a partial store
/// left by an earlier run is as hostile as the sender that filled it).
pub(crate) async fn load_collection(blobs: &BlobStore, hash: Hash) -> Result<Collection> {
    check_list_size(blobs, hash, List::Hashes).await?;
    check_list_size(blobs, names_hash(blobs, hash).await?, List::Names).await?;
    Collection::load(hash, blobs).await.map_err(|error| {
        ReceiveError::integrity(format!("the share's list of files is not valid: {error}"))
    })
}

/// Refuses names that would leave the output folder, duplicates, an empty share, and hidden
/// names unless `allow_hidden` (see [`local::check_names`]).
pub fn check_names(collection: &Collection, allow_hidden: bool) -> Result<()> {
    local::check_names(
        collection.iter().map(|(name, _)| name.as_str()),
        allow_hidden,
    )
}

/// The size of a stored complete blob.
pub async fn stored_size(blobs: &BlobStore, hash: Hash) -> Result<u64> {
    match blobs.blobs().status(hash).await.map_err(store_failed)? {
        BlobStatus::Complete { size } => Ok(size),
        _ => Err(ReceiveError::io(format!("{hash} is not completely stored"))),
    }
}

/// The partial store of a download into `out_dir`: `<out>/.<collection>.veilshare-iroh/`.
pub(crate) struct PartialStore {
    pub(crate) store: FsStore,
    dir: PathBuf,
}

impl PartialStore {
    /// Opens (or creates) the partial store of `root` in `out_dir` (created too).
    pub(crate) async fn open(out_dir: &Path, root: Hash) -> Result<Self> {
        tokio::fs::create_dir_all(out_dir)
            .await
            .io_context(|| format!("cannot create {}", out_dir.display()))?;
        let dir = local::partial_store_dir(out_dir, root.to_hex().as_str());
        let store = FsStore::load(&dir)
            .await
            .io_context(|| format!("cannot open {}", dir.display()))?;
        Ok(Self { store, dir })
    }

    /// Shuts the store down; deletes it unless `keep` (for a resume).
    pub(crate) async fn close(self, keep: bool) {
        if let Err(error) = self.store.shutdown().await {
            tracing::warn!(%error, "partial store did not shut down cleanly");
        }
        if !keep {
            let _ = tokio::fs::remove_dir_all(&self.dir).await;
        }
    }

    /// Puts every file of `collection` (complete in the store) into `out_dir`, never over a
    /// file that is there (see [`local::place`]; a file put under another name is said).
    pub(crate) async fn export_all(
        &self,
        out_dir: &Path,
        collection: &Collection,
    ) -> Result<Vec<PathBuf>> {
        let mut written: Vec<PathBuf> = Vec::new();
        let mut exported: std::collections::HashMap<Hash, PathBuf> = Default::default();
        for (name, blob) in collection.iter() {
            let hex = blob.to_hex();
            let size = stored_size(&self.store, *blob).await?;
            if let Some(copy) = local::existing_copy(out_dir, name, size, hex.as_str()).await? {
                exported.insert(*blob, copy.clone());
                written.push(copy);
                continue;
            }
            let part = local::part_file(out_dir, hex.as_str());
            match exported.get(blob) {
                // The same content under a second name: the store gave its file away already.
                Some(first) => copy_part(first, &part).await?,
                None => export_part(&self.store, *blob, &part).await?,
            }
            let placed = local::place(&part, out_dir, name)?;
            // Said even when quiet: the user looks for the file under its own name.
            if placed.renamed {
                local::tell(format_args!(
                    "{name}: a file of that name is already there and was left alone; saved as {}",
                    placed.path.display()
                ));
            }
            exported.insert(*blob, placed.path.clone());
            written.push(placed.path);
        }
        Ok(written)
    }
}

/// `veilshare get <ticket>`: fetches every file into `out_dir` through a fresh endpoint (a
/// fresh key for every fetch: recipients are not linkable across fetches); returns the paths
/// written.
pub async fn fetch_ticket(settings: &TicketFetch) -> Result<Vec<PathBuf>> {
    let endpoint = settings
        .config
        .bind(SecretKey::generate(), Vec::new())
        .await
        .map_err(|error| ReceiveError::io("cannot open a direct endpoint").because(error))?;
    let bar = local::progress_bar(
        settings.quiet,
        None,
        "connecting".into(),
        settings.progress.as_deref(),
    );
    let shown = bar.clone();
    let quiet = settings.quiet;
    let result = fetch_ticket_into(
        &endpoint,
        &settings.ticket,
        &settings.out_dir,
        settings.patience,
        settings.allow_hidden,
        move |p| match p {
            Progress::Files(n) => shown.set_message(format!("{n} file(s)")),
            Progress::Bytes(b) => shown.set_position(b),
            Progress::Total(total) => local::set_total(&shown, total),
            Progress::Retrying(why) if !quiet => shown.println(format!("{why}; trying again")),
            Progress::Retrying(_) => {}
        },
    )
    .await;
    bar.finish_and_clear();
    endpoint.close().await;
    result
}

/// Fetches every file of `ticket` into `out_dir` through `endpoint`, by way of a partial store
/// there (kept for a resume when the fetch fails after content arrived); every byte comes from
/// the ticket's sender, whatever this machine holds already. Returns the paths written.
pub async fn fetch_ticket_into(
    endpoint: &Endpoint,
    ticket: &BlobTicket,
    out_dir: &Path,
    patience: Duration,
    allow_hidden: bool,
    progress: impl Fn(Progress),
) -> Result<Vec<PathBuf>> {
    let partial = PartialStore::open(out_dir, ticket.hash()).await?;
    let started = std::sync::atomic::AtomicBool::new(false);
    let result = async {
        let collection = download(
            endpoint,
            &partial.store,
            ticket,
            patience,
            allow_hidden,
            |p| {
                if let Progress::Files(_) = p {
                    started.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                progress(p);
            },
        )
        .await?;
        partial.export_all(out_dir, &collection).await
    }
    .await;
    // Kept for a resume only when something arrived.
    let keep = result.is_err() && started.load(std::sync::atomic::Ordering::SeqCst);
    partial.close(keep).await;
    result
}

/// Copies a file already placed to a new part file (created afresh, not through a link).
async fn copy_part(from: &Path, part: &Path) -> Result<()> {
    let (from, part) = (from.to_owned(), part.to_owned());
    tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_file(&part);
        let mut source = std::fs::File::open(&from)?;
        let mut output = local::scratch_options().create_new(true).open(&part)?;
        std::io::copy(&mut source, &mut output)?;
        output.sync_all()
    })
    .await
    .io_context(|| "copying stopped".into())?
    .io_context(|| "cannot copy a file for its second name".into())
}

/// Moves one verified blob out of the partial store into `part`.
async fn export_part(store: &FsStore, hash: Hash, part: &Path) -> Result<()> {
    let part =
        std::path::absolute(part).io_context(|| format!("cannot find {}", part.display()))?;
    let _ = tokio::fs::remove_file(&part).await;
    // The store is thrown away afterwards: let it move its file instead of copying it.
    let mut stream = store
        .export_with_opts(ExportOptions {
            hash,
            target: part.clone(),
            mode: ExportMode::TryReference,
        })
        .stream()
        .await;
    while let Some(item) = stream.next().await {
        if let ExportProgressItem::Error(error) = item {
            return Err(ReceiveError::io(format!(
                "cannot write {}: {error}",
                part.display()
            )));
        }
    }
    Ok(())
}
