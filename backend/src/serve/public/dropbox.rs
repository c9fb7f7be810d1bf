//! The public side of a drop box: a form that works without JavaScript (Tor Browser's
//! "Safest"), and the upload it posts, received under the box's limits.
//!
//! Invariants:
//! - Nothing received is ever served back here: the only answers are the form, a confirmation
//!   that names what this upload brought (and nothing of others), and error pages.
//! - Limits hold where bytes are written, as they stream: a file over `max_file`, an upload
//!   over what the box still takes, or more than the disk can hold stops the upload, and what
//!   it wrote is deleted (it lives in the store's scratch folder until it is complete, so a
//!   crash leaves nothing either). An item is listed only once all of it is stored.
//! - Names are checked as on the sending side; content is stored by hash.
//! - Nothing about uploaders is logged or kept beyond the minute of arrival.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{FromRequest, Multipart, Request, State},
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use tokio::io::AsyncWriteExt;
use veilshare_shared::{
    MetadataReport,
    dropbox::{MAX_FILES_PER_UPLOAD, MAX_MESSAGE_BYTES},
    human_size,
};

use super::{
    CSP_FORM, Reached,
    page::{self, escape},
    upload::{UploadGuard, read_text},
};
use crate::core::{
    crash, metadata,
    shares::{AddItemError, NewItem, PublicShare, Shares, Upload, UploadRefusal},
    store::{Pieces, StoredFile},
};

/// How long an upload may send nothing before it is refused (the listener closes an idle
/// stranger's connection after as long).
const UPLOAD_IDLE: Duration = Duration::from_secs(60);
/// The form field of the files.
const FILE_FIELD: &str = "file";
/// The form field of the message.
const MESSAGE_FIELD: &str = "message";
/// Pieces an upload is written in.
const WRITE_PIECE: usize = 256 << 10;

/// The form of a drop box.
pub(super) fn form(share: &PublicShare, now: u64) -> Response {
    let record = &share.record;
    let Some(dropbox) = &record.dropbox else {
        return super::not_found_page();
    };
    let limits = &dropbox.limits;
    let title = record.label.as_deref().unwrap_or("Send files");
    let mut body = format!("<h1>{}</h1>", escape(title));
    body.push_str(
        "<p>What you send here goes to the owner of this address only. This page shows \
         nothing of what anyone else sent.</p>",
    );
    let mut takes = Vec::new();
    if let Some(max) = limits.max_file {
        takes.push(format!("files of up to {} each", human_size(max)));
    }
    if let Some(max) = limits.max_bytes {
        takes.push(format!(
            "{} more in all",
            human_size(max.saturating_sub(dropbox.bytes()))
        ));
    }
    if let Some(max) = limits.max_uploads {
        let left = max.saturating_sub(dropbox.uploads);
        takes.push(format!(
            "{left} more {}",
            if left == 1 { "upload" } else { "uploads" }
        ));
    }
    if let Some(at) = record.policy.expires_at {
        takes.push(format!(
            "closes in {}",
            page::human_duration(at.saturating_sub(now))
        ));
    }
    if !takes.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">This drop box takes {}.</p>",
            escape(&takes.join(", "))
        ));
    }
    body.push_str(
        "<form method=\"post\" enctype=\"multipart/form-data\">\
         <p><label for=\"file\">Files</label><br>",
    );
    body.push_str(&format!(
        "<input id=\"file\" type=\"file\" name=\"{FILE_FIELD}\" multiple{}></p>",
        if limits.text { "" } else { " required" }
    ));
    if limits.text {
        body.push_str(&format!(
            "<p><label for=\"message\">Message (optional)</label><br>\
             <textarea id=\"message\" name=\"{MESSAGE_FIELD}\" rows=\"6\" maxlength=\"{MAX_MESSAGE_BYTES}\"></textarea></p>"
        ));
    }
    body.push_str("<p><button type=\"submit\">Send</button></p></form>");
    let mut response = page::document(StatusCode::OK, title, &body);
    if let Ok(csp) = HeaderValue::from_str(&CSP_FORM) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// `POST` to a drop box: receives one upload.
pub(super) async fn receive(
    Reached { id, share, .. }: Reached,
    State(shares): State<Shares>,
    request: Request,
) -> Response {
    if share.record.dropbox.is_none() {
        let mut response = page::message(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "A share is only downloaded here.",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let upload = match shares.begin_upload(&id) {
        Ok(upload) => upload,
        Err(refusal) => return refused(&refusal),
    };
    let store = shares.store().clone();
    let room = match store.room_for_uploads() {
        Ok(room) => room,
        Err(error) => {
            tracing::error!(%error, "cannot read the free disk space");
            return failed();
        }
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared
        && declared > room
    {
        return no_room();
    }
    let guard = Arc::new(UploadGuard::default());
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, guard.watch(body, UPLOAD_IDLE));
    let multipart = match Multipart::from_request(request, &()).await {
        Ok(multipart) => multipart,
        Err(rejection) => return bad_request(&rejection.body_text()),
    };
    let cancelled = upload.cancelled().clone();
    let received = tokio::select! {
        received = read_upload(multipart, &upload, &guard, &shares, room) => received,
        () = cancelled.cancelled() => Err(refused(&UploadRefusal::Closed)),
    };
    let (parts, message) = match received {
        Ok(received) => received,
        Err(response) => return response,
    };
    if parts.is_empty() && message.is_none() {
        return bad_request("choose at least one file to send");
    }
    let result = store_item(&shares, &upload, parts, message).await;
    if result.is_err() {
        // What the refused upload stored goes now, not at some later collection.
        tokio::spawn(async move {
            store.collect_garbage().await;
        });
    }
    match result {
        Ok(item) => confirmation(&item),
        Err(response) => response,
    }
}

/// A file of the upload, received into the scratch folder.
struct Part {
    /// Its name as stored (`<name>.age` when encrypted).
    name: String,
    file: tempfile::TempPath,
    /// When encrypted: the plaintext's name, size and hash.
    sent: Option<veilshare_shared::FileEntry>,
}

/// Where a file's bytes go: the scratch file as sent, or sealed to the box's age recipient
/// (age's writer is blocking: each piece is written on the blocking pool).
enum Sink {
    Plain(tokio::fs::File),
    Sealed(Option<age::stream::StreamWriter<std::fs::File>>),
}

impl Sink {
    fn open(
        file: std::fs::File,
        recipient: Option<&age::x25519::Recipient>,
    ) -> std::io::Result<Self> {
        let Some(recipient) = recipient else {
            return Ok(Self::Plain(tokio::fs::File::from_std(file)));
        };
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                .map_err(std::io::Error::other)?;
        Ok(Self::Sealed(Some(encryptor.wrap_output(file)?)))
    }

    async fn write(&mut self, bytes: bytes::Bytes) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match self {
            Self::Plain(file) => file.write_all(&bytes).await,
            Self::Sealed(slot) => {
                let mut writer = slot
                    .take()
                    .ok_or_else(|| std::io::Error::other("an earlier write failed"))?;
                let writer = tokio::task::spawn_blocking(move || {
                    std::io::Write::write_all(&mut writer, &bytes).map(|()| writer)
                })
                .await
                .map_err(std::io::Error::other)??;
                *slot = Some(writer);
                Ok(())
            }
        }
    }

    async fn finish(self) -> std::io::Result<()> {
        match self {
            Self::Plain(mut file) => file.flush().await,
            Self::Sealed(slot) => {
                let writer =
                    slot.ok_or_else(|| std::io::Error::other("an earlier write failed"))?;
                tokio::task::spawn_blocking(move || {
                    writer
                        .finish()
                        .and_then(|mut file| std::io::Write::flush(&mut file))
                })
                .await
                .map_err(std::io::Error::other)?
            }
        }
    }
}

/// Reads the form: each file into its scratch file, checked against the limits as it streams;
/// the message when the box takes one.
async fn read_upload(
    mut multipart: Multipart,
    upload: &Upload,
    guard: &UploadGuard,
    shares: &Shares,
    room: u64,
) -> Result<(Vec<Part>, Option<String>), Response> {
    let mut names = std::collections::HashSet::new();
    let mut parts = Vec::new();
    let mut message = None;
    let mut total = 0u64;
    let store = shares.store();
    let scratch = store.scratch();
    let recipient = match upload
        .encrypt_to
        .as_deref()
        .map(str::parse::<age::x25519::Recipient>)
    {
        None => None,
        Some(Ok(recipient)) => Some(recipient),
        Some(Err(error)) => {
            tracing::error!(%error, "the drop box's age recipient does not parse");
            return Err(failed());
        }
    };
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad_request(&guard.explain(e)))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match (name.as_str(), field.file_name().map(str::to_owned)) {
            (FILE_FIELD, Some(file_name)) => {
                // A browser sends an empty part when no file was chosen.
                if file_name.is_empty() {
                    while let Some(chunk) = field
                        .chunk()
                        .await
                        .map_err(|e| bad_request(&guard.explain(e)))?
                    {
                        guard.delivered(chunk.len());
                    }
                    continue;
                }
                if parts.len() == MAX_FILES_PER_UPLOAD {
                    return Err(bad_request(&format!(
                        "an upload holds at most {MAX_FILES_PER_UPLOAD} files"
                    )));
                }
                veilshare_shared::validate_file_name(&file_name)
                    .map_err(|why| bad_request(&why))?;
                if !names.insert(veilshare_shared::file_name_key(&file_name)) {
                    return Err(bad_request(&format!(
                        "two files are named {file_name:?} (or differ only in case or Unicode form); names in one upload must differ"
                    )));
                }
                let stored_name = match &recipient {
                    Some(_) => format!("{file_name}.age"),
                    None => file_name.clone(),
                };
                veilshare_shared::validate_file_name(&stored_name)
                    .map_err(|why| bad_request(&why))?;
                let temp = tempfile::Builder::new()
                    .prefix("upload-")
                    .tempfile_in(&scratch)
                    .map_err(|error| {
                        tracing::error!(%error, "cannot create a scratch file");
                        failed()
                    })?;
                let (file, path) = temp.into_parts();
                let mut sink = Sink::open(file, recipient.as_ref()).map_err(|error| {
                    tracing::error!(%error, "cannot start writing an upload");
                    failed()
                })?;
                let write_failed = |error: std::io::Error| {
                    if crate::core::store::is_no_space(&error) {
                        no_room()
                    } else {
                        tracing::error!(%error, "cannot write an upload");
                        failed()
                    }
                };
                let mut size = 0u64;
                let mut hasher = blake3::Hasher::new();
                let mut pieces = Pieces::new(WRITE_PIECE);
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| bad_request(&guard.explain(e)))?
                {
                    guard.delivered(chunk.len());
                    size += chunk.len() as u64;
                    total += chunk.len() as u64;
                    upload.check(size, total).map_err(|why| refused(&why))?;
                    if total > room {
                        return Err(no_room());
                    }
                    hasher.update(&chunk);
                    if let Some(piece) = pieces.push(chunk) {
                        // Other uploads (and shares) take the disk too: look again.
                        if store
                            .room_for_uploads()
                            .is_ok_and(|room| room < piece.len() as u64)
                        {
                            return Err(no_room());
                        }
                        sink.write(piece).await.map_err(write_failed)?;
                    }
                }
                if let Some(piece) = pieces.take() {
                    sink.write(piece).await.map_err(write_failed)?;
                }
                sink.finish().await.map_err(write_failed)?;
                crash::point("dropbox.part_written");
                let sent = recipient.as_ref().map(|_| veilshare_shared::FileEntry {
                    name: file_name.clone(),
                    size,
                    hash: crate::core::store::content_hash(iroh_blobs::Hash::from(
                        *hasher.finalize().as_bytes(),
                    )),
                });
                parts.push(Part {
                    name: stored_name,
                    file: path,
                    sent,
                });
            }
            (MESSAGE_FIELD, None) if upload.text => {
                let text = read_text(&mut field, MESSAGE_FIELD, MAX_MESSAGE_BYTES, guard)
                    .await
                    .map_err(|why| bad_request(&why))?;
                let text = text.replace("\r\n", "\n");
                if text
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t')
                {
                    return Err(bad_request("the message contains control characters"));
                }
                let text = text.trim();
                message = (!text.is_empty()).then(|| text.to_owned());
            }
            _ => {
                return Err(bad_request(&format!(
                    "the form has an unknown field {:?}",
                    name.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    Ok((parts, message))
}

/// Imports the received files into the store and adds them to the box as one item.
async fn store_item(
    shares: &Shares,
    upload: &Upload,
    parts: Vec<Part>,
    message: Option<String>,
) -> Result<veilshare_shared::ReceivedItem, Response> {
    let store = shares.store();
    let permit = store.import_permit().await.map_err(|error| {
        tracing::error!(%error, "cannot import an upload");
        failed()
    })?;
    let mut files: Vec<StoredFile> = Vec::new();
    let mut held = Vec::new();
    let mut sent = Vec::new();
    let mut metadata = Vec::new();
    for part in parts {
        if part.sent.is_none()
            && let Some(report) = inspect_received(&part.file, &part.name).await
        {
            metadata.push(report);
        }
        sent.extend(part.sent);
        let (tag, file) = store
            .import_path(&permit, &part.file, part.name)
            .await
            .map_err(|error| {
                if error.is_no_space() {
                    no_room()
                } else {
                    tracing::error!(%error, "cannot import an upload");
                    failed()
                }
            })?;
        files.push(file);
        held.push(tag);
    }
    let new = NewItem {
        files,
        held,
        message,
        sent: upload.encrypt_to.is_some().then_some(sent),
        metadata,
    };
    shares
        .add_item(upload, new, permit)
        .await
        .map_err(|error| match error {
            AddItemError::Refused(refusal) => refused(&refusal),
            AddItemError::Store(error) => {
                tracing::error!(%error, "cannot record an upload");
                failed()
            }
        })
}

/// What identifying metadata a received file holds, so that its owner knows before publishing
/// it (a source's photo can carry the GPS position of their home). Nothing is changed: the
/// owner keeps exactly what was sent.
async fn inspect_received(path: &std::path::Path, name: &str) -> Option<MetadataReport> {
    let (path, name) = (path.to_owned(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        let bytes = metadata::read_inspectable(&path).ok()??;
        metadata::inspect(&bytes)
            .filter(|i| !i.found.is_empty())
            .map(|i| i.report(&name, false))
    })
    .await
    .ok()
    .flatten()
}

/// The page after an upload: what this upload brought, nothing else.
fn confirmation(item: &veilshare_shared::ReceivedItem) -> Response {
    let mut body = String::from("<h1>Received</h1>");
    if item.files.is_empty() {
        body.push_str("<p>Your message was received.</p>");
    } else {
        let count = item.files.len();
        body.push_str(&format!(
            "<p>{count} {} received{}. You can check them against these BLAKE3 hashes.</p><ul>",
            if count == 1 { "file" } else { "files" },
            if item.message.is_some() {
                ", with your message"
            } else {
                ""
            }
        ));
        let shown = if item.encrypted {
            &item.sent
        } else {
            &item.files
        };
        for file in shown {
            body.push_str(&format!(
                "<li><strong>{}</strong>, {}<br><code>{}</code></li>",
                escape(&file.name),
                escape(&human_size(file.size)),
                escape(file.hash.as_str())
            ));
        }
        body.push_str("</ul>");
        if item.encrypted {
            body.push_str(
                "<p class=\"muted\">They were encrypted for the owner as they arrived.</p>",
            );
        }
    }
    body.push_str("<p><a href=\"./\">Send more</a></p>");
    page::document(StatusCode::OK, "Received", &body)
}

fn refused(refusal: &UploadRefusal) -> Response {
    let (status, title, text) = match refusal {
        UploadRefusal::NotFound => return super::not_found_page(),
        UploadRefusal::Closed => (
            StatusCode::GONE,
            "This drop box is closed",
            "It takes no more uploads. Nothing you sent just now was kept.".to_owned(),
        ),
        UploadRefusal::Busy => {
            let mut response = page::message(
                StatusCode::TOO_MANY_REQUESTS,
                "Busy",
                "This drop box is taking other uploads right now. Nothing you sent just now was \
                 kept; try again in a minute.",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return response;
        }
        UploadRefusal::FileTooLarge(_) | UploadRefusal::TooLarge(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too large",
            format!(
                "Your upload was not received: {refusal}. Nothing of it was kept; send smaller \
                 or fewer files."
            ),
        ),
    };
    page::message(status, title, &text)
}

fn no_room() -> Response {
    page::message(
        StatusCode::INSUFFICIENT_STORAGE,
        "No room",
        "The drop box's computer has not enough free space for this upload. Nothing of it was \
         kept.",
    )
}

fn bad_request(why: &str) -> Response {
    page::message(
        StatusCode::BAD_REQUEST,
        "Not received",
        &format!("Your upload was not received: {why}. Nothing of it was kept."),
    )
}

fn failed() -> Response {
    page::message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Not received",
        "Something went wrong on the drop box's side. Nothing of your upload was kept; try again later.",
    )
}
