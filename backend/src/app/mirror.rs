//! Mirrors: fetch a share from a ticket or a link and publish the same content from this node
//! as a new share, with a policy of this node's owner. The files keep their names and hashes,
//! so the mirror's collection hash is the source's: a recipient can check it is the same
//! content.
//!
//! Invariants:
//! - Every byte of a mirror was received from its source: both kinds of source are fetched
//!   into a scratch folder of their own (never into the app's store, whose blobs another share
//!   may already hold: a crafted source listing them would get that content published without
//!   sending it, and would learn that this node holds it), then imported.
//! - Imported blobs are protected from garbage collection by temporary tags until the new
//!   share's named tag holds them.
//! - Names from the source pass the receiving side's checks before any path is built (the
//!   ticket path before fetching content).

use std::{path::PathBuf, sync::Arc, time::Duration};

use iroh_blobs::api::TempTag;
use veilshare_shared::{
    CreateMirror, DEFAULT_MIRROR_TIMEOUT_SECS, Event, MAX_MIRROR_TIMEOUT_SECS, ShareView,
};

use crate::{
    app::Context,
    core::{
        events::EventBus,
        log_id,
        shares::{ShareError, Shares},
        store::{NewFileError, NewFiles, StoredFile},
    },
    receive::{
        error::ReceiveError,
        local::Progress,
        ticket::{self as ticket_fetch, Progress as TicketProgress},
    },
    transport::iroh as p2p,
};

/// Why a mirror could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The source could not be reached, refused, or sent something invalid; the kind says
    /// which (a share that ended is not a sender that is offline).
    #[error(transparent)]
    Source(#[from] ReceiveError),
    /// A needed service is off.
    #[error("{0}")]
    Unavailable(String),
    /// Creating the share failed.
    #[error(transparent)]
    Share(#[from] ShareError),
}

/// Fetches `request.source` and publishes it as a new share of this node.
pub async fn mirror(node: &Context, request: CreateMirror) -> Result<ShareView, MirrorError> {
    let shares = &node.shares;
    let fields = request.fields.checked().map_err(MirrorError::BadRequest)?;
    if fields.restricted && node.tor.is_none() {
        return Err(MirrorError::BadRequest(
            "a restricted share needs Tor, and veilshare runs with --no-tor".into(),
        ));
    }
    let patience = match request.timeout_secs {
        None => DEFAULT_MIRROR_TIMEOUT_SECS,
        Some(secs @ 1..=MAX_MIRROR_TIMEOUT_SECS) => secs,
        Some(secs) => {
            return Err(MirrorError::BadRequest(format!(
                "timeout_secs must be between 1 and {MAX_MIRROR_TIMEOUT_SECS}, not {secs}"
            )));
        }
    };
    let patience = Duration::from_secs(patience);
    if let Some(id) = &request.progress_id
        && (id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(MirrorError::BadRequest(
            "progress_id: letters, digits, - and _ only, at most 64".into(),
        ));
    }
    let progress = Arc::new(FetchProgress::default());
    let reporter = request
        .progress_id
        .clone()
        .map(|id| report(shares.events().clone(), id, progress.clone()));
    let source = request.source.trim();
    let scratch = tempfile::Builder::new()
        .prefix("mirror-")
        .tempdir_in(shares.store().scratch())
        .map_err(|error| ReceiveError::io("cannot make a scratch folder").because(error))?;
    let written = if p2p::is_ticket(source) {
        from_ticket(node, source, patience, scratch.path(), &progress).await?
    } else {
        let link = LinkSource {
            link: source,
            key: request.source_key,
            progress: progress.clone(),
        };
        from_link(node, link, patience, scratch.path()).await?
    };
    // The last word, whatever the ticks caught: every byte is here (the import follows).
    if let (Some(reporter), Some(id)) = (reporter, request.progress_id) {
        drop(reporter);
        let (done, total, files) = progress.now();
        shares.events().publish(Event::MirrorProgress {
            progress_id: id,
            done,
            total,
            files,
        });
    }
    crate::core::crash::point("mirror.fetched");
    // The temporary tags keep the imported data alive until the share's tag does.
    let (files, _held) = import(shares, written).await?;
    let store = shares.store();
    let permit = store.import_permit().await.map_err(ShareError::from)?;
    let collection = store
        .store_collection(&permit, &files)
        .await
        .map_err(ShareError::from)?;
    let view = shares
        .create("mirror", files, collection, fields, Vec::new(), permit)
        .await?;
    tracing::info!(share = %log_id(&view.id), "mirror published");
    Ok(view)
}

/// What a mirror's fetch has done, for its progress events: a link fetch counts into `link`
/// (as the Get panel's do); a ticket fetch reports its bytes, size and files here.
#[derive(Debug, Default)]
struct FetchProgress {
    link: Arc<Progress>,
    ticket: std::sync::Mutex<(u64, Option<u64>, Option<usize>)>,
}

impl FetchProgress {
    /// Bytes done, total, files.
    fn now(&self) -> (u64, Option<u64>, Option<usize>) {
        if let Some(listing) = self.link.listing() {
            return (
                self.link.done(),
                Some(listing.total()),
                Some(listing.files.len()),
            );
        }
        let (bytes, total, files) = self.ticket.lock().map(|t| *t).unwrap_or_default();
        // A ticket's bytes also count the share's list of names and hashes; its total does not.
        let done = total.map_or(bytes, |total| bytes.min(total));
        (done, total, files)
    }
}

/// Sends the fetch's progress as events until dropped (at most twice a second, on change).
fn report(events: EventBus, id: String, progress: Arc<FetchProgress>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut last = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let now = progress.now();
            if last != Some(now) {
                last = Some(now);
                events.publish(Event::MirrorProgress {
                    progress_id: id.clone(),
                    done: now.0,
                    total: now.1,
                    files: now.2,
                });
            }
        }
    }))
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn from_ticket(
    node: &Context,
    source: &str,
    patience: Duration,
    scratch: &std::path::Path,
    progress: &FetchProgress,
) -> Result<Vec<PathBuf>, MirrorError> {
    let ticket = p2p::parse_ticket(source).map_err(MirrorError::BadRequest)?;
    let p2p = &node.endpoints;
    let _lease = p2p
        .lease()
        .await
        .map_err(|e| MirrorError::Unavailable(e.to_string()))?;
    let endpoint = p2p
        .endpoint()
        .await
        .ok_or_else(|| MirrorError::Unavailable("the direct-sharing endpoint closed".into()))?;
    let id = ticket.addr().id.fmt_short().to_string();
    // Hidden names are fine here: the files go into our scratch folder, then into the store,
    // where no name means anything to another program.
    let written =
        ticket_fetch::fetch_ticket_into(&endpoint, &ticket, scratch, patience, true, |p| {
            let Ok(mut now) = progress.ticket.lock() else {
                return;
            };
            match p {
                TicketProgress::Retrying(why) => {
                    tracing::info!(source = %id, %why, "mirror: retrying")
                }
                TicketProgress::Files(files) => now.2 = Some(files),
                TicketProgress::Total(total) => now.1 = Some(total),
                TicketProgress::Bytes(bytes) => now.0 = bytes,
            }
        })
        .await?;
    Ok(written)
}

/// A link to mirror, its key, and where its fetch counts.
struct LinkSource<'a> {
    link: &'a str,
    key: Option<String>,
    progress: Arc<FetchProgress>,
}

async fn from_link(
    node: &Context,
    source: LinkSource<'_>,
    patience: Duration,
    scratch: &std::path::Path,
) -> Result<Vec<PathBuf>, MirrorError> {
    let LinkSource {
        link,
        key,
        progress,
    } = source;
    if !link.starts_with("http://") {
        return Err(MirrorError::BadRequest(
            "the source is neither a ticket (blob…) nor a link (http://…)".into(),
        ));
    }
    let settings = crate::receive::link::FetchSettings {
        link: link.to_owned(),
        out_dir: scratch.to_owned(),
        state_dir: node.data_dir.join("tor-mirror"),
        tor: node.tor_setup.get(),
        parallel: None,
        quiet: true,
        patience,
        key,
        allow_hidden: true,
        progress: Some(progress.link.clone()),
    };
    Ok(crate::receive::link::fetch(&settings).await?)
}

/// Imports the fetched files into the store under their names; the tags hold them until the
/// share's own tag does.
async fn import(
    shares: &Shares,
    written: Vec<PathBuf>,
) -> Result<(Vec<StoredFile>, Vec<TempTag>), MirrorError> {
    let store = shares.store();
    let permit = store.import_permit().await.map_err(ShareError::from)?;
    let mut files = NewFiles::default();
    for path in written {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ReceiveError::integrity("a fetched file has no usable name"))?
            .to_owned();
        files
            .add_path(store, &permit, &path, name)
            .await
            .map_err(|error| match error {
                NewFileError::Name(message) | NewFileError::Metadata(message) => {
                    MirrorError::from(ReceiveError::integrity(message))
                }
                NewFileError::Store(error) => ShareError::from(error).into(),
            })?;
    }
    let (files, tags) = files.into_parts();
    drop(permit);
    Ok((files, tags))
}
