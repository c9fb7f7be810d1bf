//! `veilshare send LINK FILE…`: uploads files, and a message, into someone's drop box from a
//! terminal, as the box's own form would (one multipart `POST`), over Tor with this command's
//! own Arti client, or over a plain link.
//!
//! Invariants:
//! - Files are streamed from disk, never held whole in memory; a file that changes size while
//!   it is sent stops the upload (the box then keeps nothing of it).
//! - Each file's BLAKE3 is computed as it is read, and the box's confirmation must list every
//!   one of those hashes: a success means the box holds exactly the bytes that were sent.
//! - Nothing is sent before the link was seen to be a drop box (its form), so a share's link
//!   given by mistake gets a clear error, not an upload.

use std::{path::PathBuf, time::Duration};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use veilshare_shared::{ContentHash, FileEntry, MetadataReport, dropbox::MAX_MESSAGE_BYTES};

use crate::core::metadata;
use crate::receive::{
    error::{IoContext, ReceiveError, Refusal, Result},
    link::{self, Circuit, FetchSettings, Transport},
    local::{self, Patience},
};

/// The form fields of a drop box (its page names them so).
const FILE_FIELD: &str = "file";
const MESSAGE_FIELD: &str = "message";
/// Pieces files are read and sent in.
const PIECE: usize = 256 << 10;
/// The most a drop box's page or its answer to an upload may take.
const MAX_PAGE_BYTES: usize = 1 << 20;

/// What to send, where, and how.
#[derive(Debug, Clone)]
pub struct SendSettings {
    /// The drop box's link (`http://….onion/` or a plain `http://host:port/s/<id>/`).
    pub link: String,
    /// Files to send (their names are what the owner sees).
    pub files: Vec<PathBuf>,
    /// A text message, when the box takes one.
    pub message: Option<String>,
    /// The client key of a restricted drop box.
    pub key: Option<String>,
    /// Where this command keeps its Tor state.
    pub state_dir: PathBuf,
    /// How Tor reaches the network (bridges, a test network).
    pub tor: crate::transport::tor::TorSetup,
    /// No progress bar.
    pub quiet: bool,
    /// How long to keep trying to reach the drop box.
    pub patience: Duration,
    /// Send files with their metadata. Without it, photos (JPEG, PNG, WebP) are sent without
    /// theirs (pixels unchanged), and a file whose metadata cannot be removed (PDF, Office,
    /// HEIF) is refused before anything is sent, saying what it holds.
    pub keep_metadata: bool,
}

/// What a drop box confirmed, and what the files' metadata held.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The files as the box received them (for cleaned photos: the cleaned copy).
    pub received: Vec<FileEntry>,
    /// Per file that had identifying metadata: what, and whether it was removed.
    pub metadata: Vec<MetadataReport>,
}

/// A file to send: where it is, the name the box gets, its size when the upload began, and
/// the cleaned copy to send instead when its metadata was removed.
struct Outgoing {
    path: PathBuf,
    name: String,
    size: u64,
    cleaned: Option<Bytes>,
}

/// Sends the files and the message; returns what the drop box confirmed it received.
pub async fn send(settings: &SendSettings) -> Result<Sent> {
    let keep = settings.keep_metadata;
    let mut outgoing = outgoing_files(&settings.files)?;
    let (outgoing, metadata) = tokio::task::spawn_blocking(move || {
        clean(&mut outgoing, keep).map(|metadata| (outgoing, metadata))
    })
    .await
    .map_err(|error| ReceiveError::io("checking the files' metadata failed").because(error))??;
    if outgoing.is_empty() && settings.message.is_none() {
        return Err(ReceiveError::bad_source(
            "nothing to send: give at least one file, or --message",
        ));
    }
    if let Some(message) = &settings.message
        && message.len() > MAX_MESSAGE_BYTES
    {
        return Err(ReceiveError::bad_source(format!(
            "the message is {} bytes; a drop box takes at most {MAX_MESSAGE_BYTES}",
            message.len()
        )));
    }
    let base = link::link_base(&settings.link)?;
    let transport = link::open_transport(
        &base,
        &FetchSettings {
            link: base.clone(),
            // Nothing is written: the fetch settings only say how to reach the box.
            out_dir: PathBuf::new(),
            state_dir: settings.state_dir.clone(),
            tor: settings.tor.clone(),
            parallel: Some(1),
            quiet: settings.quiet,
            patience: settings.patience,
            key: settings.key.clone(),
            allow_hidden: false,
            progress: None,
        },
    )
    .await?;
    let form = fetch_form(&transport, &base, settings.patience).await?;
    if !form.contains("enctype=\"multipart/form-data\"") {
        return Err(ReceiveError::bad_source(
            "this link is not a drop box (it does not take uploads); to download a share, use `veilshare get`",
        ));
    }
    if settings.message.is_some() && !form.contains(&format!("name=\"{MESSAGE_FIELD}\"")) {
        return Err(ReceiveError::bad_source(
            "this drop box takes files only, no message; send without --message",
        ));
    }

    let boundary = boundary();
    let total: u64 = outgoing.iter().map(|file| file.size).sum();
    let bar = local::progress_bar(settings.quiet, Some(total), "sending".to_owned(), None);
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let reader = tokio::spawn(stream_form(
        outgoing,
        settings.message.clone(),
        boundary.clone(),
        tx,
        bar.clone(),
    ));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    })
    .boxed();
    let sent = transport
        .post(
            &base,
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        )
        .await;
    // Reading ends once the request does (its channel closes), whatever the answer.
    let read = reader
        .await
        .map_err(|error| ReceiveError::io("reading the files stopped").because(error))?;
    bar.finish_and_clear();
    let reply = sent?;
    let status = reply.status;
    let page =
        String::from_utf8_lossy(&link::collect(reply.body, MAX_PAGE_BYTES).await?).into_owned();
    if status != 200 {
        return Err(refusal(status, &page));
    }
    let entries = read?;
    for entry in &entries {
        if !page.contains(entry.hash.as_str()) {
            return Err(ReceiveError::integrity(format!(
                "the drop box's confirmation does not list the BLAKE3 of {} ({}): it may not hold what was sent",
                entry.name,
                entry.hash.as_str()
            )));
        }
    }
    Ok(Sent {
        received: entries,
        metadata,
    })
}

/// Looks for identifying metadata in each file (see [`crate::core::metadata`]): photos are
/// replaced by cleaned copies unless `keep`; a file whose metadata cannot be removed is
/// refused unless `keep`.
fn clean(files: &mut [Outgoing], keep: bool) -> Result<Vec<MetadataReport>> {
    let mut reports = Vec::new();
    for file in files {
        let Some(bytes) = metadata::read_inspectable(&file.path)
            .io_context(|| format!("cannot read {}", file.path.display()))?
        else {
            continue;
        };
        let Some(inspection) = metadata::inspect(&bytes).filter(|i| !i.found.is_empty()) else {
            continue;
        };
        if keep {
            reports.push(inspection.report(&file.name, false));
            continue;
        }
        if !inspection.removable {
            return Err(ReceiveError::bad_source(format!(
                "{}; nothing was sent. Send it anyway with --keep-metadata",
                inspection.report(&file.name, false).summary()
            )));
        }
        let cleaned = metadata::strip(Bytes::from(bytes)).map_err(|error| {
            ReceiveError::bad_source(format!(
                "{}: cannot remove its metadata ({error}); nothing was sent. Clean it first, or send it as it is with --keep-metadata",
                file.path.display()
            ))
        })?;
        file.size = cleaned.len() as u64;
        file.cleaned = Some(cleaned);
        reports.push(inspection.report(&file.name, true));
    }
    Ok(reports)
}

/// The files' names and sizes, checked before anything is sent.
fn outgoing_files(paths: &[PathBuf]) -> Result<Vec<Outgoing>> {
    let mut seen = std::collections::HashSet::new();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let metadata =
            std::fs::metadata(path).io_context(|| format!("cannot read {}", path.display()))?;
        if !metadata.is_file() {
            return Err(ReceiveError::bad_source(format!(
                "{} is not a file",
                path.display()
            )));
        }
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| {
                ReceiveError::bad_source(format!(
                    "{} has no name a drop box can take (it is not valid UTF-8); rename it",
                    path.display()
                ))
            })?
            .to_owned();
        if !seen.insert(name.clone()) {
            return Err(ReceiveError::bad_source(format!(
                "two files are named {name:?}; a drop box keeps one name once per upload, so rename one"
            )));
        }
        files.push(Outgoing {
            path: path.clone(),
            name,
            size: metadata.len(),
            cleaned: None,
        });
    }
    Ok(files)
}

/// The drop box's form page, waiting for the box to be reachable (a new onion service may not
/// have published its descriptor yet).
async fn fetch_form(transport: &Transport, base: &str, patience: Duration) -> Result<String> {
    let mut patience = Patience::new(patience);
    let reply = loop {
        match transport
            .get(base, None, None, Circuit::for_attempt(patience.attempt()))
            .await
        {
            Ok(reply) => break reply,
            Err(error) => {
                tracing::debug!(%error, attempt = patience.attempt(), "drop box not reached");
                if !patience.again().await {
                    return Err(patience.gave_up(
                        error,
                        "the drop box is not reachable (closed, or its owner is offline)",
                    ));
                }
            }
        }
    };
    let status = reply.status;
    let page = link::collect(reply.body, MAX_PAGE_BYTES).await?;
    let page = String::from_utf8_lossy(&page).into_owned();
    if status != 200 {
        return Err(refusal(status, &page));
    }
    Ok(page)
}

/// A random multipart boundary (it cannot occur in the files by chance).
fn boundary() -> String {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("veilshare-{hex}")
}

/// A file name as a quoted form value: the three characters that would end or break the
/// header are percent-encoded, as browsers do (the HTML standard's form encoding).
fn quoted_name(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Writes the form into `tx`: each file as it is read (hashed on the way), then the message.
/// Returns each file's name, size and BLAKE3.
async fn stream_form(
    files: Vec<Outgoing>,
    message: Option<String>,
    boundary: String,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    bar: indicatif::ProgressBar,
) -> Result<Vec<FileEntry>> {
    let closed = || ReceiveError::unreachable("the upload was cut off");
    let mut entries = Vec::with_capacity(files.len());
    for file in files {
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{FILE_FIELD}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            quoted_name(&file.name)
        );
        tx.send(Ok(Bytes::from(head))).await.map_err(|_| closed())?;
        let hash = match &file.cleaned {
            Some(cleaned) => send_cleaned(cleaned, &tx, &bar).await?,
            None => send_from_disk(&file, &tx, &bar).await?,
        };
        tx.send(Ok(Bytes::from_static(b"\r\n")))
            .await
            .map_err(|_| closed())?;
        entries.push(FileEntry {
            name: file.name,
            size: file.size,
            hash: ContentHash::parse(hash.to_hex().as_str())
                .ok_or_else(|| ReceiveError::io("a BLAKE3 hash did not format"))?,
        });
    }
    if let Some(message) = message {
        let part = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{MESSAGE_FIELD}\"\r\n\r\n{message}\r\n"
        );
        tx.send(Ok(Bytes::from(part))).await.map_err(|_| closed())?;
    }
    tx.send(Ok(Bytes::from(format!("--{boundary}--\r\n"))))
        .await
        .map_err(|_| closed())?;
    Ok(entries)
}

/// Sends a cleaned copy held in memory; returns its BLAKE3.
async fn send_cleaned(
    cleaned: &Bytes,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    bar: &indicatif::ProgressBar,
) -> Result<blake3::Hash> {
    for piece in cleaned.chunks(PIECE) {
        tx.send(Ok(cleaned.slice_ref(piece)))
            .await
            .map_err(|_| ReceiveError::unreachable("the upload was cut off"))?;
        bar.inc(piece.len() as u64);
    }
    Ok(blake3::hash(cleaned))
}

/// Sends a file as it is read from disk, hashing it on the way; refuses to end the part as if
/// complete when the file is shorter or longer than when the upload began.
async fn send_from_disk(
    file: &Outgoing,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    bar: &indicatif::ProgressBar,
) -> Result<blake3::Hash> {
    let closed = || ReceiveError::unreachable("the upload was cut off");
    let mut reader = tokio::fs::File::open(&file.path)
        .await
        .io_context(|| format!("cannot open {}", file.path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut read = 0u64;
    loop {
        let mut piece = BytesMut::with_capacity(PIECE);
        let n = reader
            .read_buf(&mut piece)
            .await
            .io_context(|| format!("cannot read {}", file.path.display()));
        let n = match n {
            Ok(n) => n,
            Err(error) => {
                // The upload must not end as if the file were complete.
                let _ = tx
                    .send(Err(std::io::Error::other("a file could not be read")))
                    .await;
                return Err(error);
            }
        };
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > file.size {
            break;
        }
        let piece = piece.freeze();
        hasher.update(&piece);
        tx.send(Ok(piece)).await.map_err(|_| closed())?;
        bar.inc(n as u64);
    }
    if read != file.size {
        let _ = tx
            .send(Err(std::io::Error::other(
                "a file changed while it was sent",
            )))
            .await;
        return Err(ReceiveError::io(format!(
            "{} changed while it was sent ({} bytes when the upload began); nothing of this upload was kept, send it again",
            file.path.display(),
            file.size
        )));
    }
    Ok(hasher.finalize())
}

/// Why the drop box refused, in its own words (the paragraph of its error page) and ours.
fn refusal(status: u16, page: &str) -> ReceiveError {
    let said = page_text(page);
    let what = match status {
        404 => "there is no drop box at this link (404); check that you copied the whole link",
        410 => "the drop box is closed (410)",
        413 => "the drop box refused the upload as too large (413)",
        429 => "the drop box is busy with other uploads (429); try again in a minute",
        507 => "the drop box's owner is out of disk space (507)",
        400 => "the drop box refused the upload (400)",
        _ => {
            return ReceiveError::refused(
                Refusal::from_status(status).unwrap_or(Refusal::Status(status)),
            )
            .context(format!("the drop box refused: {said}"));
        }
    };
    let message = if said.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {said}")
    };
    match Refusal::from_status(status) {
        Some(refusal @ (Refusal::NotFound | Refusal::Ended | Refusal::Busy)) => {
            ReceiveError::refused(refusal).context(message)
        }
        _ => ReceiveError::bad_source(message),
    }
}

/// The text of an error page's first paragraph, unescaped (our pages are `<h1>…</h1><p>…</p>`).
fn page_text(page: &str) -> String {
    let Some(start) = page.find("<p>") else {
        return String::new();
    };
    let rest = &page[start + 3..];
    let end = rest.find("</p>").unwrap_or(rest.len());
    let mut text = String::new();
    let mut in_tag = false;
    for c in rest[..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag && !c.is_control() => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_break_the_form_header() {
        assert_eq!(quoted_name("a\"b\r\nc.txt"), "a%22b%0D%0Ac.txt");
        assert_eq!(quoted_name("plain é.txt"), "plain é.txt");
    }

    #[test]
    fn an_error_page_says_why_in_its_own_words() {
        let page = "<html><body><h1>Too large</h1><p>Files here may be at most 1.0 MiB &amp; \
                    <strong>nothing</strong> was kept.</p></body></html>";
        assert_eq!(
            page_text(page),
            "Files here may be at most 1.0 MiB & nothing was kept."
        );
        let error = format!("{:#}", anyhow::Error::from(refusal(413, page)));
        assert!(error.contains("too large (413)") && error.contains("at most 1.0 MiB"));
        assert_eq!(page_text("no paragraph"), "");
    }
}
