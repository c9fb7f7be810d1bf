//! `veilshare get SOURCE SOURCE…`: one share from several sources at once — direct tickets
//! (iroh) and links (onion or http), say the sender and its mirrors. The content is cut into
//! pieces; every source's workers take the next missing piece, and each piece is verified
//! against the file's BLAKE3 tree before it is stored (iroh verifies as it receives; a link's
//! `bao/{hash}` answer carries the proof). A failing source drops out; its pieces go to others.
//!
//! Invariants:
//! - All sources must name the same collection hash (tickets carry it, links' manifests state
//!   it); names come from the verified collection and pass `shared::validate_file_name`.
//! - Pieces land in the partial store in the output folder ([`local::partial_store_dir`]; a
//!   rerun skips the stored ones); files are exported only when complete.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use iroh::{SecretKey, endpoint::Connection};
use iroh_blobs::{
    Hash,
    api::Store as BlobStore,
    format::collection::Collection,
    protocol::{ChunkRanges, ChunkRangesExt, GetRequest},
};

use crate::{
    receive::{
        error::{ReceiveError, Refusal, Result},
        link::{self, Circuit, FetchSettings, Lane, Manifest, SharedTor, Transport},
        local, ticket,
    },
    transport::iroh::{self as p2p, P2pConfig},
};

/// Size of a piece (a multiple of bao's 16 KiB groups).
const PIECE: u64 = 4 << 20;
/// Consecutive failures after which a source drops out.
const MAX_FAILURES: u32 = 3;

/// One source, ready to serve pieces.
#[derive(Clone)]
enum Source {
    Iroh {
        connection: Connection,
        label: String,
    },
    Link {
        transport: Arc<Transport>,
        base: String,
        workers: usize,
    },
}

impl Source {
    fn label(&self) -> &str {
        match self {
            Self::Iroh { label, .. } => label,
            Self::Link { base, .. } => base,
        }
    }
}

/// A piece of one file: bytes `start..end` of the file at `index` (in the collection).
#[derive(Debug, Clone, Copy)]
struct Piece {
    index: usize,
    hash: Hash,
    start: u64,
    end: u64,
}

impl Piece {
    fn ranges(&self) -> ChunkRanges {
        ChunkRanges::bytes(self.start..self.end)
    }
}

/// What a multi-source fetch needs.
#[derive(Debug, Clone)]
pub struct MultiFetch {
    /// Tickets and links.
    pub sources: Vec<String>,
    /// Settings for links (Tor state, key, output folder, patience, quiet).
    pub link: FetchSettings,
    /// How to reach direct peers.
    pub p2p: P2pConfig,
}

/// Fetches from every source at once; returns the paths written.
pub async fn fetch(settings: &MultiFetch) -> Result<Vec<PathBuf>> {
    let (tickets, links): (Vec<&String>, Vec<&String>) =
        settings.sources.iter().partition(|s| p2p::is_ticket(s));
    let tickets = tickets
        .into_iter()
        .map(|t| p2p::parse_ticket(t).map_err(ReceiveError::bad_source))
        .collect::<Result<Vec<_>>>()?;
    let mut root: Option<Hash> = None;
    let mut agree = |hash: Hash, what: &str| -> Result<()> {
        match root {
            Some(root) if root != hash => Err(ReceiveError::bad_source(format!(
                "{what} is not the same share as the first source (content {hash} instead of {root}); give sources of one share"
            ))),
            _ => {
                root = Some(hash);
                Ok(())
            }
        }
    };
    for ticket in &tickets {
        agree(ticket.hash(), "a ticket")?;
    }

    // Links: one transport each, onion ones on one Tor client (one bootstrap), all reached at
    // once (each onion service takes a descriptor, an introduction and a rendezvous).
    let tor = SharedTor::new();
    let opened = futures::future::join_all(links.iter().map(|link| async {
        let base = link::link_base(link)?;
        let transport = link::open_transport_with(&base, &settings.link, &tor).await?;
        let manifest = link::fetch_manifest(&transport, &base, settings.link.patience).await;
        Ok::<_, ReceiveError>((base, transport, manifest))
    }))
    .await;
    let mut sources = Vec::new();
    let mut first_manifest: Option<Manifest> = None;
    for opened in opened {
        let (base, transport, manifest) = opened?;
        match manifest {
            Ok(manifest) => {
                agree(blake3_hash(&manifest.content_hash)?, &base)?;
                let workers = if transport.is_tor() { 4 } else { 2 };
                sources.push(Source::Link {
                    transport: Arc::new(transport),
                    base,
                    workers,
                });
                first_manifest.get_or_insert(manifest);
            }
            Err(error) => local::tell(format_args!("skipping {base}: {error:#}")),
        }
    }
    let root = root.ok_or_else(|| ReceiveError::unreachable("no source named the share"))?;

    let partial = ticket::PartialStore::open(&settings.link.out_dir, root).await?;
    let endpoint = if tickets.is_empty() {
        None
    } else {
        Some(
            settings
                .p2p
                .bind(SecretKey::generate(), Vec::new())
                .await
                .map_err(|error| {
                    ReceiveError::io("cannot open a direct endpoint").because(error)
                })?,
        )
    };
    for ticket in &tickets {
        let Some(endpoint) = &endpoint else { break };
        let label = format!("direct {}", ticket.addr().id.fmt_short());
        match tokio::time::timeout(
            Duration::from_secs(30),
            endpoint.connect(ticket.addr().clone(), iroh_blobs::ALPN),
        )
        .await
        {
            Ok(Ok(connection)) => sources.push(Source::Iroh { connection, label }),
            Ok(Err(error)) => local::tell(format_args!("skipping {label}: {error}")),
            Err(_) => local::tell(format_args!("skipping {label}: no answer within 30 s")),
        }
    }
    let result = run(&partial, root, sources, first_manifest, &settings.link).await;
    if let Some(endpoint) = endpoint {
        endpoint.close().await;
    }
    partial.close(result.is_err()).await;
    result
}

async fn run(
    partial: &ticket::PartialStore,
    root: Hash,
    sources: Vec<Source>,
    manifest: Option<Manifest>,
    settings: &FetchSettings,
) -> Result<Vec<PathBuf>> {
    let (out_dir, quiet, allow_hidden) = (&settings.out_dir, settings.quiet, settings.allow_hidden);
    if sources.is_empty() {
        return Err(ReceiveError::unreachable(
            "none of the sources could be reached",
        ));
    }
    let blobs: &BlobStore = &partial.store;
    let collection = collection(blobs, root, &sources, manifest.as_ref(), allow_hidden).await?;
    ticket::check_names(&collection, allow_hidden)?;
    let label = manifest.as_ref().and_then(|m| m.label.clone());
    let sizes = match manifest {
        Some(manifest) if manifest.files.len() == collection.len() => {
            manifest.files.iter().map(|f| f.size).collect()
        }
        _ => iroh_sizes(blobs, root, &collection, &sources).await?,
    };
    if let Some(progress) = &settings.progress {
        progress.set_listing(local::Listing {
            label,
            root: Some(root.to_hex().to_string()),
            files: collection
                .iter()
                .zip(&sizes)
                .map(|((name, hash), size)| local::ListedFile {
                    name: name.clone(),
                    size: *size,
                    blake3: hash.to_hex().to_string(),
                })
                .collect(),
        });
    }
    // The sizes come from a source: before cutting pieces, refuse what the disk cannot hold
    // (what is stored already is on that disk).
    let total = sizes
        .iter()
        .fold(0u64, |sum, size| sum.saturating_add(*size));
    let stored_bytes = blobs
        .remote()
        .local(iroh_blobs::HashAndFormat::hash_seq(root))
        .await
        .map_err(|e| ReceiveError::io(format!("local store failed: {e}")))?
        .local_bytes();
    local::check_room(out_dir, total.saturating_sub(stored_bytes))?;
    let mut pieces = VecDeque::new();
    let mut have = 0u64;
    for (index, ((_, hash), &size)) in collection.iter().zip(&sizes).enumerate() {
        let mut start = 0;
        while start < size {
            let end = (start + PIECE).min(size);
            let piece = Piece {
                index,
                hash: *hash,
                start,
                end,
            };
            if stored(blobs, &piece).await? {
                have += end - start;
            } else {
                pieces.push_back(piece);
            }
            start = end;
        }
    }
    let bar = local::progress_bar(
        quiet,
        Some(total),
        format!("{} sources", sources.len()),
        settings.progress.as_deref(),
    );
    bar.set_position(have);
    let queue = Arc::new(Mutex::new(pieces));
    let busy = Arc::new(Busy::default());
    let mut workers = tokio::task::JoinSet::new();
    let mut delivered = Vec::new();
    for source in &sources {
        let count = match source {
            Source::Iroh { .. } => 2,
            Source::Link { workers, .. } => *workers,
        };
        let bytes = Arc::new(AtomicU64::new(0));
        delivered.push((source.label().to_owned(), bytes.clone()));
        for _ in 0..count {
            workers.spawn(worker(
                source.clone(),
                blobs.clone(),
                root,
                queue.clone(),
                busy.clone(),
                bar.clone(),
                bytes.clone(),
            ));
        }
    }
    while workers.join_next().await.is_some() {}
    bar.finish_and_clear();
    if !quiet {
        for (label, bytes) in &delivered {
            local::tell(format_args!(
                "{}: {} from {label}",
                if bytes.load(Ordering::SeqCst) > 0 {
                    "fetched"
                } else {
                    "nothing"
                },
                veilshare_shared::human_size(bytes.load(Ordering::SeqCst))
            ));
        }
    }
    let left = queue.lock().map(|q| q.len()).unwrap_or(usize::MAX);
    if left > 0 {
        return Err(ReceiveError::unreachable(format!(
            "every source failed before the download was complete ({left} pieces missing); run the same command again to resume"
        )));
    }
    partial.export_all(out_dir, &collection).await
}

/// Whether a piece is already stored (verified).
async fn stored(blobs: &BlobStore, piece: &Piece) -> Result<bool> {
    let local = blobs
        .remote()
        .local_for_request(GetRequest::blob_ranges(piece.hash, piece.ranges()))
        .await
        .map_err(|e| ReceiveError::io(format!("local store failed: {e}")))?;
    Ok(local.is_complete())
}

/// The collection (names and hashes): from the store, a direct source, or built from a link's
/// manifest and checked against the root hash.
async fn collection(
    blobs: &BlobStore,
    root: Hash,
    sources: &[Source],
    manifest: Option<&Manifest>,
    allow_hidden: bool,
) -> Result<Collection> {
    if let Ok(collection) = ticket::load_collection(blobs, root).await {
        return Ok(collection);
    }
    for source in sources {
        if let Source::Iroh { connection, label } = source {
            match ticket::fetch_names(blobs, connection, root, allow_hidden).await {
                Ok(collection) => return Ok(collection),
                Err(error) => {
                    local::tell(format_args!(
                        "{label}: cannot get the list of files: {error:#}"
                    ));
                }
            }
        }
    }
    let Some(manifest) = manifest else {
        return Err(ReceiveError::unreachable(
            "no source sent the share's list of files",
        ));
    };
    let mut collection = Collection::default();
    for file in &manifest.files {
        collection.push(file.name.clone(), blake3_hash(&file.blake3)?);
    }
    let tag = collection
        .clone()
        .store(blobs)
        .await
        .map_err(|e| ReceiveError::io(format!("local store failed: {e}")))?;
    if tag.hash() != root {
        return Err(ReceiveError::integrity(
            "a link's list of files does not match the share's content hash",
        ));
    }
    Ok(collection)
}

/// File sizes from a direct source (see [`ticket::learn_sizes`]).
async fn iroh_sizes(
    blobs: &BlobStore,
    root: Hash,
    collection: &Collection,
    sources: &[Source],
) -> Result<Vec<u64>> {
    let Some(connection) = sources.iter().find_map(|s| match s {
        Source::Iroh { connection, .. } => Some(connection.clone()),
        Source::Link { .. } => None,
    }) else {
        return Err(ReceiveError::unreachable(
            "no source can tell the file sizes",
        ));
    };
    ticket::learn_sizes(blobs, &connection, root, collection).await
}

/// A hash from a manifest as iroh's type.
fn blake3_hash(hash: &veilshare_shared::ContentHash) -> Result<Hash> {
    hash.as_str().parse().map_err(|_| {
        ReceiveError::integrity(format!(
            "a link's manifest has a hash that is not BLAKE3: {hash}"
        ))
    })
}

/// Pieces being fetched now, and a signal whenever one ends (it may have gone back to the
/// queue), so idle workers wait for that instead of polling.
#[derive(Debug, Default)]
struct Busy {
    pieces: AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Busy {
    fn take(&self) {
        self.pieces.fetch_add(1, Ordering::SeqCst);
    }

    fn done(&self) {
        self.pieces.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// Takes pieces until none is left; gives up after [`MAX_FAILURES`] failures in a row.
async fn worker(
    source: Source,
    blobs: BlobStore,
    root: Hash,
    queue: Arc<Mutex<VecDeque<Piece>>>,
    busy: Arc<Busy>,
    bar: indicatif::ProgressBar,
    delivered: Arc<AtomicU64>,
) {
    let mut failures = 0;
    // A link's worker keeps its circuit from piece to piece (a new one costs a rendezvous),
    // and takes a new one after a failure.
    let new_lane = || match &source {
        Source::Link { transport, .. } => Some(transport.lane()),
        Source::Iroh { .. } => None,
    };
    let mut lane = new_lane();
    loop {
        // Armed before looking, so that a piece ending in between is not missed.
        let changed = busy.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let piece = {
            let Ok(mut queue) = queue.lock() else { return };
            let piece = queue.pop_front();
            if piece.is_some() {
                busy.take();
            }
            piece
        };
        let Some(piece) = piece else {
            // Another worker's piece may still fail and come back.
            if busy.pieces.load(Ordering::SeqCst) == 0 {
                return;
            }
            changed.await;
            continue;
        };
        let result = fetch_piece(&source, lane.as_ref(), &blobs, root, &piece).await;
        match result {
            Ok(()) => {
                failures = 0;
                bar.inc(piece.end - piece.start);
                delivered.fetch_add(piece.end - piece.start, Ordering::SeqCst);
            }
            Err(error) => {
                failures += 1;
                lane = new_lane();
                if let Ok(mut queue) = queue.lock() {
                    queue.push_back(piece);
                }
                tracing::debug!(source = source.label(), %error, "piece failed");
                if failures >= MAX_FAILURES {
                    bar.println(format!("{}: dropped ({error:#})", source.label()));
                    busy.done();
                    return;
                }
            }
        }
        busy.done();
    }
}

/// Fetches one piece from one source (a link's over `lane`), verified into the store.
async fn fetch_piece(
    source: &Source,
    lane: Option<&Lane>,
    blobs: &BlobStore,
    root: Hash,
    piece: &Piece,
) -> Result<()> {
    match source {
        Source::Iroh { connection, .. } => {
            let request = GetRequest::builder()
                .offset(piece.index as u64 + 2, piece.ranges())
                .build(root);
            blobs
                .remote()
                .execute_get(connection.clone(), request)
                .await
                .map_err(|error| {
                    ReceiveError::unreachable("the piece did not arrive").because(error)
                })?;
        }
        Source::Link {
            transport, base, ..
        } => {
            let url = format!(
                "{base}bao/{}?start={}&end={}",
                piece.hash.to_hex(),
                piece.start,
                piece.end
            );
            let circuit = lane.map_or(Circuit::Fresh, Circuit::Lane);
            let reply = transport.get(&url, None, None, circuit).await?;
            match Refusal::from_status(reply.status) {
                None => {}
                Some(Refusal::Busy) => {
                    // Try again soon, not at once: the share's downloads are all in flight.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    return Err(ReceiveError::refused(Refusal::Busy));
                }
                Some(refusal) => return Err(ReceiveError::refused(refusal)),
            }
            let limit = usize::try_from(crate::core::bao::MAX_BAO_RANGE * 2).unwrap_or(usize::MAX);
            let bytes = crate::receive::link::collect(reply.body, limit).await?;
            blobs
                .blobs()
                .import_bao_bytes(piece.hash, piece.ranges(), bytes)
                .await
                .map_err(|error| {
                    ReceiveError::integrity("the piece failed verification").because(error)
                })?;
        }
    }
    if !stored(blobs, piece).await? {
        return Err(ReceiveError::unreachable("the piece did not arrive whole"));
    }
    Ok(())
}
