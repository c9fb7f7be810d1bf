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

use std::{path::PathBuf, time::Duration};

use iroh_blobs::api::TempTag;
use veilshare_shared::{
    CreateMirror, DEFAULT_MIRROR_TIMEOUT_SECS, MAX_MIRROR_TIMEOUT_SECS, ShareView,
};

use crate::{
    app::Context,
    core::{
        log_id,
        shares::{ShareError, Shares},
        store::{NewFileError, NewFiles, StoredFile},
    },
    receive::{
        error::ReceiveError,
        ticket::{self as ticket_fetch, Progress},
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
    let source = request.source.trim();
    let scratch = tempfile::Builder::new()
        .prefix("mirror-")
        .tempdir_in(shares.store().scratch())
        .map_err(|error| ReceiveError::io("cannot make a scratch folder").because(error))?;
    let written = if p2p::is_ticket(source) {
        from_ticket(node, source, patience, scratch.path()).await?
    } else {
        from_link(node, source, request.source_key, patience, scratch.path()).await?
    };
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

async fn from_ticket(
    node: &Context,
    source: &str,
    patience: Duration,
    scratch: &std::path::Path,
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
            if let Progress::Retrying(why) = p {
                tracing::info!(source = %id, %why, "mirror: retrying");
            }
        })
        .await?;
    Ok(written)
}

async fn from_link(
    node: &Context,
    link: &str,
    key: Option<String>,
    patience: Duration,
    scratch: &std::path::Path,
) -> Result<Vec<PathBuf>, MirrorError> {
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
        progress: None,
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
