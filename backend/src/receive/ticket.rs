//! Fetching a share by ticket: into a store (the app's, for a mirror; a partial one next to the
//! output, for `veilshare get`), verified by construction (iroh-blobs checks every 16 KiB chunk
//! group against the BLAKE3 tree before storing it), asking only for what is missing.
//!
//! Invariants:
//! - The names come from the network: all are checked with `shared::validate_file_name` (and
//!   for duplicates) after fetching only the hash sequence and the names, before any content
//!   is fetched or any path is built.
//! - `get` keeps what it fetched in `<out>/.<collection>.veilshare-iroh/` until every file is in
//!   place, so a rerun resumes; a file appears under its final name only complete and verified
//!   (exported to `.<blake3>.veilshare-part`, then renamed).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
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

use crate::transport::iroh::{CLOSE_REVOKED, P2pConfig};

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
}

/// What a refusal by the sender means, in words for the user; `None` when the error is not
/// a refusal (the network, worth another attempt).
fn refusal(error: &GetError) -> Option<&'static str> {
    let code = error.iroh_error_code()?;
    if code == ERR_PERMISSION {
        Some(
            "the sender refused: this share has ended (download limit reached, expired or revoked), or the ticket is for content the sender does not share",
        )
    } else if code == ERR_LIMIT {
        Some(
            "the sender refused for now: all remaining downloads of this share are in progress; try again later",
        )
    } else if code.into_inner() == u64::from(CLOSE_REVOKED) {
        Some("the sender revoked this share during the transfer")
    } else {
        None
    }
}

/// A refusal or failure, in words for the user.
fn explain(error: &GetError, addr: &EndpointAddr) -> anyhow::Error {
    match refusal(error) {
        Some(message) => anyhow!(message),
        None => anyhow!("the transfer from {} failed: {error}", addr.id.fmt_short()),
    }
}

/// Fetches the collection of `ticket` into `blobs`, retrying broken connections until
/// `patience` runs out; `progress` gets the payload bytes of each attempt. Checks the names
/// before fetching any content. Returns the collection.
pub async fn download(
    endpoint: &Endpoint,
    blobs: &BlobStore,
    ticket: &BlobTicket,
    patience: Duration,
    progress: impl Fn(Progress),
) -> Result<Collection> {
    let hash = ticket.hash();
    let addr = ticket.addr().clone();
    let started = Instant::now();
    let mut attempt = 0u32;
    let mut names_checked = None;
    loop {
        attempt += 1;
        let left = patience.saturating_sub(started.elapsed());
        let result = attempt_download(
            endpoint,
            blobs,
            hash,
            &addr,
            &mut names_checked,
            left.clamp(Duration::from_secs(1), CONNECT_TIMEOUT),
            &progress,
        )
        .await;
        match result {
            Ok(()) => break,
            Err(Failure::Refused(error))
                if error.iroh_error_code() == Some(ERR_LIMIT) && started.elapsed() < patience =>
            {
                // The remaining downloads are in flight, perhaps our own broken earlier
                // attempt, which the sender drops once the connection times out.
                progress(Progress::Retrying(explain(&error, &addr).to_string()));
                tokio::time::sleep(Duration::from_secs(u64::from(attempt.min(5)))).await;
            }
            Err(Failure::Refused(error)) => return Err(explain(&error, &addr)),
            Err(Failure::Fatal(error)) => return Err(error),
            Err(Failure::Network(error)) if started.elapsed() < patience => {
                tracing::debug!(%error, attempt, "direct fetch failed; retrying");
                progress(Progress::Retrying(error.to_string()));
                tokio::time::sleep(Duration::from_secs(u64::from(attempt.min(5)))).await;
            }
            Err(Failure::Network(error)) => {
                return Err(error.context(format!(
                    "gave up after {} s: the sender is not reachable (offline, the share ended, or no route between you; a relay may help)",
                    started.elapsed().as_secs()
                )));
            }
        }
    }
    match names_checked {
        Some(collection) => Ok(collection),
        None => load_collection(blobs, hash).await.map_err(|e| anyhow!(e)),
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

pub(crate) enum Failure {
    Refused(GetError),
    Network(anyhow::Error),
    Fatal(anyhow::Error),
}

impl Failure {
    /// The failure in words, for a source at `addr`.
    pub(crate) fn into_error(self, addr: &EndpointAddr) -> anyhow::Error {
        match self {
            Self::Refused(error) => explain(&error, addr),
            Self::Network(error) | Self::Fatal(error) => error,
        }
    }
}

async fn attempt_download(
    endpoint: &Endpoint,
    blobs: &BlobStore,
    hash: Hash,
    addr: &EndpointAddr,
    names: &mut Option<Collection>,
    connect_timeout: Duration,
    progress: &impl Fn(Progress),
) -> Result<(), Failure> {
    let connection = tokio::time::timeout(
        connect_timeout,
        endpoint.connect(addr.clone(), iroh_blobs::ALPN),
    )
    .await
    .map_err(|_| {
        Failure::Network(anyhow!(
            "no answer from the sender within {} s",
            connect_timeout.as_secs()
        ))
    })?
    .map_err(|e| Failure::Network(anyhow!("cannot connect to the sender: {e}")))?;
    let remote = blobs.remote();
    if names.is_none() {
        let collection = fetch_names(blobs, &connection, hash).await?;
        progress(Progress::Files(collection.len()));
        // The sizes, for the progress bar: the last group of each file proves its size, and
        // is part of the download anyway (never fetched twice, so never counted twice).
        match learn_sizes(blobs, &connection, hash, &collection).await {
            Ok(sizes) => progress(Progress::Total(sizes.iter().sum())),
            Err(Failure::Refused(error)) => return Err(Failure::Refused(error)),
            Err(_) => {}
        }
        *names = Some(collection);
    }
    let local = remote
        .local(iroh_blobs::HashAndFormat::hash_seq(hash))
        .await
        .map_err(|e| Failure::Fatal(anyhow!("local store failed: {e}")))?;
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
    Err(Failure::Network(anyhow!(
        "the transfer ended without a result"
    )))
}

/// Fetches the hash sequence and the names only (no content before the names are checked),
/// unless they are stored already; returns the checked collection.
pub(crate) async fn fetch_names(
    blobs: &BlobStore,
    connection: &iroh::endpoint::Connection,
    root: Hash,
) -> Result<Collection, Failure> {
    let request = GetRequest::new(
        root,
        ChunkRangesSeq::from_ranges([ChunkRanges::all(), ChunkRanges::all()]),
    );
    fetch_missing(blobs, connection, request).await?;
    let collection = load_collection(blobs, root).await.map_err(Failure::Fatal)?;
    check_names(&collection).map_err(Failure::Fatal)?;
    Ok(collection)
}

/// Asks `connection` for what of `request` is not stored yet.
async fn fetch_missing(
    blobs: &BlobStore,
    connection: &iroh::endpoint::Connection,
    request: GetRequest,
) -> Result<(), Failure> {
    let local = blobs
        .remote()
        .local_for_request(request)
        .await
        .map_err(|e| Failure::Fatal(anyhow!("local store failed: {e}")))?;
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
) -> Result<Vec<u64>, Failure> {
    let mut builder = GetRequest::builder();
    for index in 0..collection.len() {
        builder = builder.offset(index as u64 + 2, ChunkRanges::last_chunk());
    }
    fetch_missing(blobs, connection, builder.build(root)).await?;
    let mut sizes = Vec::new();
    for (_, hash) in collection.iter() {
        let status = blobs
            .blobs()
            .status(*hash)
            .await
            .map_err(|e| Failure::Fatal(anyhow!("local store failed: {e}")))?;
        sizes.push(match status {
            BlobStatus::Complete { size } | BlobStatus::Partial { size: Some(size) } => size,
            _ => {
                return Err(Failure::Network(anyhow!(
                    "the sender did not prove a file's size"
                )));
            }
        });
    }
    Ok(sizes)
}

fn classify(error: GetError) -> Failure {
    if refusal(&error).is_some() {
        Failure::Refused(error)
    } else if matches!(error, GetError::LocalFailure { .. }) {
        Failure::Fatal(anyhow!("storing the download failed: {error}"))
    } else {
        Failure::Network(anyhow!("{error}"))
    }
}

pub(crate) async fn load_collection(blobs: &BlobStore, hash: Hash) -> Result<Collection> {
    Collection::load(hash, blobs)
        .await
        .map_err(|e| anyhow!("the share's list of files is not valid: {e}"))
}

/// Refuses names that would leave the output folder, and duplicates.
pub fn check_names(collection: &Collection) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (name, _) in collection.iter() {
        crate::receive::link::check_file_name(name)?;
        if !seen.insert(name.as_str()) {
            bail!("refusing the share: two files are named {name:?}");
        }
    }
    if collection.is_empty() {
        bail!("the share has no files");
    }
    Ok(())
}

/// The size of a stored complete blob.
pub async fn stored_size(blobs: &BlobStore, hash: Hash) -> Result<u64> {
    match blobs.blobs().status(hash).await? {
        BlobStatus::Complete { size } => Ok(size),
        _ => bail!("{hash} is not completely stored"),
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
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        let dir = out_dir.join(format!(".{}.veilshare-iroh", root.to_hex()));
        let store = FsStore::load(&dir)
            .await
            .map_err(|e| anyhow!("cannot open {}: {e}", dir.display()))?;
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

    /// Puts every file of `collection` (complete in the store) into `out_dir`.
    pub(crate) async fn export_all(
        &self,
        out_dir: &Path,
        collection: &Collection,
    ) -> Result<Vec<PathBuf>> {
        let mut written: Vec<PathBuf> = Vec::new();
        let mut exported: std::collections::HashMap<Hash, PathBuf> = Default::default();
        for (name, blob) in collection.iter() {
            let target = match exported.get(blob) {
                // The same content under a second name: the store gave its file away already.
                Some(first) => copy_into_place(first, out_dir, name, *blob).await?,
                None => export(&self.store, out_dir, name, *blob).await?,
            };
            exported.insert(*blob, target.clone());
            written.push(target);
        }
        Ok(written)
    }
}

/// `veilshare get <ticket>`: fetches every file into `out_dir`; returns the paths written.
pub async fn fetch_ticket(settings: &TicketFetch) -> Result<Vec<PathBuf>> {
    let partial = PartialStore::open(&settings.out_dir, settings.ticket.hash()).await?;
    let started = std::sync::atomic::AtomicBool::new(false);
    let result = fetch_into(settings, &partial, &started).await;
    // Kept for a resume only when something arrived.
    let keep = result.is_err() && started.load(std::sync::atomic::Ordering::SeqCst);
    partial.close(keep).await;
    result
}

async fn fetch_into(
    settings: &TicketFetch,
    partial: &PartialStore,
    started: &std::sync::atomic::AtomicBool,
) -> Result<Vec<PathBuf>> {
    // A fresh key for every fetch: recipients are not linkable across fetches.
    let endpoint = settings
        .config
        .bind(SecretKey::generate(), Vec::new())
        .await?;
    let bar = bar(settings.quiet);
    let shown = bar.clone();
    let quiet = settings.quiet;
    let downloaded = download(
        &endpoint,
        &partial.store,
        &settings.ticket,
        settings.patience,
        move |p| match p {
            Progress::Files(n) => {
                started.store(true, std::sync::atomic::Ordering::SeqCst);
                shown.set_message(format!("{n} file(s)"));
            }
            Progress::Bytes(b) => shown.set_position(b),
            Progress::Total(total) => {
                shown.set_length(total);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{msg:16} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                ) {
                    shown.set_style(style);
                }
            }
            Progress::Retrying(why) if !quiet => shown.println(format!("{why}; trying again")),
            Progress::Retrying(_) => {}
        },
    )
    .await;
    bar.finish_and_clear();
    endpoint.close().await;
    partial.export_all(&settings.out_dir, &downloaded?).await
}

fn bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::no_length();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:16} {bytes} {bytes_per_sec} {elapsed}")
    {
        bar.set_style(style);
    }
    bar.set_message("connecting");
    bar
}

async fn copy_into_place(from: &Path, out_dir: &Path, name: &str, hash: Hash) -> Result<PathBuf> {
    let target = out_dir.join(name);
    let part = out_dir.join(format!(".{}.veilshare-part", hash.to_hex()));
    tokio::fs::copy(from, &part)
        .await
        .with_context(|| format!("cannot write {}", part.display()))?;
    tokio::fs::rename(&part, &target)
        .await
        .with_context(|| format!("cannot move {} into place", target.display()))?;
    Ok(target)
}

/// Moves one verified file out of the partial store into place.
async fn export(store: &FsStore, out_dir: &Path, name: &str, hash: Hash) -> Result<PathBuf> {
    let target = out_dir.join(name);
    let hex = hash.to_hex();
    if target.exists() && crate::receive::link::hash_file(&target).await? == hex.as_str() {
        return Ok(target);
    }
    let part = std::path::absolute(out_dir.join(format!(".{hex}.veilshare-part")))?;
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
            bail!("cannot write {}: {error}", part.display());
        }
    }
    tokio::fs::rename(&part, &target)
        .await
        .with_context(|| format!("cannot move {} into place", target.display()))?;
    Ok(target)
}
