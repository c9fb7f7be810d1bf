//! The public site of a share: a server-rendered page that works without JavaScript, a
//! `manifest.json` for programs, the whole content at `download` (the file itself, or a zip of
//! several) and each file at `files/{name}`, with `Range`, `If-Range`, ETags and `HEAD`.
//!
//! Invariants:
//! - Knows nothing of Tor or of the local API: listeners hand it streams, it asks `shares` to
//!   admit and count every transfer.
//! - Serves exactly one share per request, chosen by the URL (`/s/{id}/…`) or fixed by the
//!   listener ([`single_share_router`], for onion services); nothing else is reachable.
//! - Every response carries the security headers of `DESIGN.md`; pages load nothing external.
//! - Never leaks a file path, an internal error or another share's existence.

mod dropbox;
mod page;
pub mod upload;
pub mod zip;

use std::{collections::HashMap, io, sync::LazyLock};

use axum::{
    Extension, Router,
    body::Body,
    extract::{FromRequestParts, Path, Query, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use base64::Engine;
use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Digest;
use veilshare_shared::{ContentHash, Manifest, ManifestFile, ShareId, Transport};

use crate::core::{
    bao::{MAX_BAO_RANGE, ranges_size},
    body::{FileBody, FileBodySlot, Meter, Part, SendfileOk, Source},
    policy::Refusal,
    shares::{Admission, PublicShare, Publisher, Shares, Transfer, now_secs},
    store::ShareRecord,
};
use zip::{Segment, ZipInput, ZipLayout};

/// The stylesheet of the public pages, inlined and allowed by its hash in the CSP.
const STYLE: &str = include_str!("public.css");

static CSP: LazyLock<String> = LazyLock::new(|| csp("'none'"));

/// The policy of a drop box's form: the same, but the form may post to its own address.
static CSP_FORM: LazyLock<String> = LazyLock::new(|| csp("'self'"));

fn csp(form_action: &str) -> String {
    let digest = sha2::Sha256::digest(STYLE.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest);
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// The share a listener is bound to (onion services serve one share at their root).
#[derive(Debug, Clone)]
struct FixedShare(ShareId);

/// The router for a plain public listener: every share at `/s/{id}/`.
pub fn router(shares: Shares) -> Router {
    Router::new()
        .route("/s/{id}", get(add_slash))
        .nest("/s/{id}/", share_routes())
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(shares)
}

/// The plain public listener as a publisher: it serves every share that is not ended at
/// `<base>/s/{id}/` (see [`router`]), so it only adds that link to views.
#[derive(Debug)]
pub struct PlainSite {
    base: String,
}

impl PlainSite {
    /// The listener whose base URL is `base` (`http://127.0.0.1:8081`).
    pub fn new(base: String) -> Self {
        Self { base }
    }
}

impl Publisher for PlainSite {
    fn start(&self, _share: &ShareRecord) {}

    fn stop(&self, _id: &ShareId, _reason: veilshare_shared::ShareState) {}

    fn links(&self, share: &ShareRecord, links: &mut veilshare_shared::ShareLinks) {
        // A restricted share is reached only through its onion service, with the key.
        if !share.is_restricted() {
            links.local = Some(format!("{}/s/{}/", self.base, share.id));
        }
    }
}

/// The router for one share at the root (what an onion service serves).
pub fn single_share_router(shares: Shares, id: ShareId) -> Router {
    share_routes()
        .fallback(not_found)
        .layer(axum::Extension(FixedShare(id)))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(shares)
}

fn share_routes() -> Router<Shares> {
    Router::new()
        .route(
            "/",
            get(root_page)
                .post(dropbox::receive)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/manifest.json", get(manifest))
        .route("/download", get(download).head(download))
        .route("/files/{name}", get(file).head(file))
        .route("/bao/{hash}", get(bao))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    // A drop box's form sets its own (the same, but it may post to itself).
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(headers, "content-security-policy", &CSP);
    }
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    set(
        headers,
        "permissions-policy",
        "interest-cohort=(), camera=(), microphone=(), geolocation=()",
    );
    set(headers, "x-robots-tag", "noindex, nofollow");
    set(headers, "cache-control", "no-store");
    response
}

/// The share a request is about: fixed by the listener (an onion service), or taken from the
/// URL (the plain listener, which says so with `false`).
struct ShareKey(ShareId, bool);

impl FromRequestParts<Shares> for ShareKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shares) -> Result<Self, Response> {
        if let Some(FixedShare(id)) = parts.extensions.get::<FixedShare>() {
            return Ok(Self(id.clone(), true));
        }
        let params = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found_page())?;
        params
            .get("id")
            .and_then(|id| ShareId::parse(id))
            .map(|id| Self(id, false))
            .ok_or_else(not_found_page)
    }
}

/// The share or drop box a request is about, looked up and not ended: a rejection is the page
/// to answer with (not found, or ended).
struct Reached {
    id: ShareId,
    share: PublicShare,
    /// Through the share's own onion service, or the plain listener.
    via: Transport,
}

impl FromRequestParts<Shares> for Reached {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shares: &Shares) -> Result<Self, Response> {
        let ShareKey(id, own_listener) = ShareKey::from_request_parts(parts, shares).await?;
        let share = lookup(shares, &id)?;
        // Restricted: only its onion service, where Tor checked the key. Elsewhere it does
        // not exist.
        if share.record.is_restricted() && !own_listener {
            return Err(not_found_page());
        }
        let via = if own_listener {
            Transport::Onion
        } else {
            Transport::Plain
        };
        Ok(Self { id, share, via })
    }
}

/// A share that gives files away (a drop box has only its form: nothing received is ever
/// served back).
struct Found {
    id: ShareId,
    share: PublicShare,
    via: Transport,
}

impl FromRequestParts<Shares> for Found {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shares: &Shares) -> Result<Self, Response> {
        let Reached { id, share, via } = Reached::from_request_parts(parts, shares).await?;
        if share.record.dropbox.is_some() {
            return Err(not_found_page());
        }
        Ok(Self { id, share, via })
    }
}

async fn add_slash(Path(id): Path<String>) -> Response {
    match ShareId::parse(&id) {
        Some(id) => Redirect::permanent(&format!("/s/{id}/")).into_response(),
        None => not_found_page(),
    }
}

async fn not_found() -> Response {
    not_found_page()
}

fn not_found_page() -> Response {
    page::message(
        StatusCode::NOT_FOUND,
        "Nothing here",
        "There is no share at this address. Check that you copied the whole link.",
    )
}

fn ended_page() -> Response {
    page::message(
        StatusCode::GONE,
        "This share has ended",
        "Its download limit was reached, it expired, or its owner revoked it. The files are no \
         longer available here.",
    )
}

// The error is the page to answer with; these helpers run once per request.
#[allow(clippy::result_large_err)]
fn lookup(shares: &Shares, id: &ShareId) -> Result<PublicShare, Response> {
    let share = shares.public_share(id).ok_or_else(not_found_page)?;
    if share.record.state.is_ended() || share.record.data_deleted {
        return Err(ended_page());
    }
    Ok(share)
}

async fn root_page(Reached { share, .. }: Reached) -> Response {
    if share.record.dropbox.is_some() {
        dropbox::form(&share, now_secs())
    } else {
        page::share(&share, now_secs())
    }
}

async fn manifest(Found { share, .. }: Found) -> Response {
    let record = &share.record;
    let manifest = Manifest {
        label: record.label.clone(),
        content_hash: record.collection.clone(),
        total_size: record.content_size(),
        files: record
            .files
            .iter()
            .map(|f| ManifestFile {
                name: f.name.clone(),
                size: f.size,
                blake3: f.hash.clone(),
                path: file_path(&f.name),
            })
            .collect(),
        download: "download".into(),
        downloads_remaining: crate::core::policy::remaining(&record.policy, &record.ledger),
        expires_at: record.policy.expires_at,
        accepting_downloads: share.accepts_downloads(now_secs()),
    };
    match serde_json::to_vec_pretty(&manifest) {
        Ok(json) => (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            json,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Characters left alone in a path segment: RFC 3986 unreserved.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `files/<name>` with the name percent-encoded.
pub fn file_path(name: &str) -> String {
    format!("files/{}", utf8_percent_encode(name, PATH_SEGMENT))
}

/// RFC 5987 `attr-char`s are left alone in `filename*`.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition: attachment` for any Unicode name (RFC 6266): an ASCII fallback in
/// `filename` and the exact name in `filename*`.
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR_CHAR)
    )
}

/// What a content URL serves.
enum Content {
    /// One stored file.
    File { hash: ContentHash, size: u64 },
    /// A zip of all files, with their hashes in layout order.
    Zip {
        layout: ZipLayout,
        hashes: Vec<ContentHash>,
    },
}

struct Resource {
    /// `download` or `files/<name>`, for the ledger and events.
    label: String,
    download_name: String,
    mime: String,
    etag: String,
    content: Content,
}

impl Resource {
    fn len(&self) -> u64 {
        match &self.content {
            Content::File { size, .. } => *size,
            Content::Zip { layout, .. } => layout.len(),
        }
    }

    fn payload_in(&self, start: u64, end: u64) -> u64 {
        match &self.content {
            Content::File { .. } => end - start,
            Content::Zip { layout, .. } => layout.payload_in(start, end),
        }
    }
}

fn whole_resource(record: &ShareRecord) -> Resource {
    if let [_] = record.files.as_slice() {
        return file_resource(record, 0, "download".into());
    }
    let inputs: Vec<ZipInput> = record
        .files
        .iter()
        .map(|f| ZipInput {
            name: f.name.clone(),
            size: f.size,
            crc32: f.crc32,
        })
        .collect();
    let base = record
        .label
        .as_deref()
        .filter(|l| veilshare_shared::validate_file_name(l).is_ok())
        .unwrap_or("veilshare");
    Resource {
        label: "download".into(),
        download_name: format!("{base}.zip"),
        mime: "application/zip".into(),
        // The zip's bytes follow from the names, sizes and CRCs in the collection and from
        // the layout's version: so does its tag.
        etag: format!("\"zip{}-{}\"", zip::LAYOUT_VERSION, record.collection),
        content: Content::Zip {
            layout: ZipLayout::new(&inputs),
            hashes: record.files.iter().map(|f| f.hash.clone()).collect(),
        },
    }
}

fn file_resource(record: &ShareRecord, index: usize, label: String) -> Resource {
    let file = &record.files[index];
    Resource {
        label,
        download_name: file.name.clone(),
        mime: mime_guess::from_path(&file.name)
            .first_or_octet_stream()
            .essence_str()
            .to_owned(),
        etag: format!("\"{}\"", file.hash),
        content: Content::File {
            hash: file.hash.clone(),
            size: file.size,
        },
    }
}

async fn download(
    State(shares): State<Shares>,
    Found { id, share, via }: Found,
    method: Method,
    headers: HeaderMap,
    sendfile: Option<Extension<SendfileOk>>,
) -> Response {
    let resource = whole_resource(&share.record);
    let request = (&method, &headers, sendfile.is_some());
    serve(&shares, (&id, via), &share, resource, request)
}

async fn file(
    State(shares): State<Shares>,
    Found { id, share, via }: Found,
    Path(params): Path<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
    sendfile: Option<Extension<SendfileOk>>,
) -> Response {
    let name = params.get("name").map(String::as_str).unwrap_or_default();
    let Some(index) = share.record.files.iter().position(|f| f.name == name) else {
        return page::message(
            StatusCode::NOT_FOUND,
            "No such file",
            "This share has no file by that name. Go back to the share's page for the list.",
        );
    };
    let resource = file_resource(&share.record, index, file_path(name));
    let request = (&method, &headers, sendfile.is_some());
    serve(&shares, (&id, via), &share, resource, request)
}

/// `start..end` in bytes.
#[derive(serde::Deserialize)]
struct BaoRange {
    start: u64,
    end: u64,
}

/// `bao/{hash}?start=&end=`: bytes of one file with their BLAKE3 proof (bao, in 16 KiB
/// groups, after the 8-byte size), so that a recipient fetching from several sources verifies
/// every range before storing it. Counted like any download: the bytes of the whole groups.
async fn bao(
    State(shares): State<Shares>,
    Found { id, share, via }: Found,
    Path(params): Path<HashMap<String, String>>,
    Query(range): Query<BaoRange>,
) -> Response {
    let wanted = params.get("hash").map(String::as_str).unwrap_or_default();
    let Some(file) = share
        .record
        .files
        .iter()
        .find(|f| f.hash.as_str() == wanted)
    else {
        return not_found_page();
    };
    let Ok(hash) = file.hash.as_str().parse::<iroh_blobs::Hash>() else {
        return not_found_page();
    };
    if range.start >= range.end || range.end > file.size || range.end - range.start > MAX_BAO_RANGE
    {
        return page::message(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "Bad range",
            &format!(
                "Ask for start < end <= {} bytes, at most {MAX_BAO_RANGE} bytes at once.",
                file.size
            ),
        );
    }
    let ranges = <iroh_blobs::protocol::ChunkRanges as iroh_blobs::protocol::ChunkRangesExt>::bytes(
        range.start..range.end,
    );
    let payload = ranges_size(&ranges, file.size);
    let label = format!("bao/{}", file.hash);
    let transfer = match shares.begin_transfer(&id, via, &label, range.start, range.end, payload) {
        Ok(transfer) => transfer,
        Err(Admission::NotFound) => return not_found_page(),
        Err(Admission::Refused(refusal)) => return refusal_page(refusal),
    };
    // Every byte is counted as content, the proof included: never less than was delivered.
    let stream = shares
        .store()
        .blobs()
        .export_bao(hash, ranges)
        .into_byte_stream()
        .map(|item| {
            item.map(|bytes| (bytes, true))
                .map_err(|e| io::Error::other(e.to_string()))
        })
        .boxed();
    let body = metered_body(stream, None, transfer);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The byte range to send, from `Range` and `If-Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// All of it.
    Whole,
    /// Bytes `start..end`.
    Part(u64, u64),
}

// The error is the page to answer with; these helpers run once per request.
#[allow(clippy::result_large_err)]
fn wanted_range(headers: &HeaderMap, len: u64, etag: &str) -> Result<Wanted, Response> {
    let Some(range) = headers.get(header::RANGE) else {
        return Ok(Wanted::Whole);
    };
    // Several ranges: RFC 9110 lets us ignore the header and send the whole, and so we do
    // before parsing them (checking thousands of ranges against each other costs more than
    // the request is worth). An empty content has no range to send: the whole, empty.
    if len == 0 || range.as_bytes().contains(&b',') {
        return Ok(Wanted::Whole);
    }
    // A unit other than bytes must be ignored (RFC 9110, section 14.2), not refused.
    let unit = range
        .as_bytes()
        .split(|b| *b == b'=')
        .next()
        .unwrap_or_default();
    if !unit.trim_ascii().eq_ignore_ascii_case(b"bytes") {
        return Ok(Wanted::Whole);
    }
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        // Only a strong ETag match keeps the range; dates never match (we send no Last-Modified).
        if if_range.as_bytes() != etag.as_bytes() {
            return Ok(Wanted::Whole);
        }
    }
    let unsatisfiable = |message: &str| {
        let mut response = page::message(StatusCode::RANGE_NOT_SATISFIABLE, "Bad range", message);
        if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        response
    };
    let text = range
        .to_str()
        .map_err(|_| unsatisfiable("The Range header is not valid text."))?;
    let parsed = http_range_header::parse_range_header(text).map_err(|_| {
        unsatisfiable("The Range header is malformed; use for example `bytes=100-`.")
    })?;
    let ranges = parsed.validate(len).map_err(|_| {
        unsatisfiable(&format!(
            "The requested range lies outside the content, which is {len} bytes long."
        ))
    })?;
    match ranges.as_slice() {
        [only] => {
            let (start, last) = (*only.start(), *only.end());
            if start == 0 && last + 1 == len {
                Ok(Wanted::Whole)
            } else {
                Ok(Wanted::Part(start, last + 1))
            }
        }
        _ => Ok(Wanted::Whole),
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`): weak comparison, as RFC 9110 asks.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    let Some(value) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn refusal_page(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Ended => ended_page(),
        Refusal::Busy => {
            let mut response = page::message(
                StatusCode::TOO_MANY_REQUESTS,
                "Busy: try again soon",
                "Every download this share still allows is in progress right now. If one of them \
                 fails, a download becomes free again: try again in a minute.",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            response
        }
        Refusal::OverBudget => {
            let mut response = page::message(
                StatusCode::TOO_MANY_REQUESTS,
                "Not enough downloads left for that",
                "What this share still allows is less than a whole copy, because interrupted \
                 downloads used part of it. If your own download was interrupted, resume it \
                 (your browser's Resume button or `veilshare get` do that) instead of starting \
                 again.",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            response
        }
    }
}

/// Answers a request (its method, its headers, and whether its listener sends files with
/// `sendfile`) for `resource`.
fn serve(
    shares: &Shares,
    (id, via): (&ShareId, Transport),
    share: &PublicShare,
    resource: Resource,
    (method, headers, sendfile): (&Method, &HeaderMap, bool),
) -> Response {
    if not_modified(headers, &resource.etag) {
        // The client has these bytes: nothing is sent, nothing is counted.
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, &resource.etag)
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let len = resource.len();
    let (status, start, end) = match wanted_range(headers, len, &resource.etag) {
        Ok(Wanted::Whole) => (StatusCode::OK, 0, len),
        Ok(Wanted::Part(start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
        Err(response) => return response,
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, &resource.mime)
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &resource.etag)
        .header(
            header::CONTENT_DISPOSITION,
            content_disposition(&resource.download_name),
        );
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", end - 1),
        );
    }
    if *method == Method::HEAD {
        if !share.accepts_downloads(now_secs()) {
            return ended_page();
        }
        return builder
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let payload = resource.payload_in(start, end);
    let transfer = match shares.begin_transfer(id, via, &resource.label, start, end, payload) {
        Ok(transfer) => transfer,
        Err(Admission::NotFound) => return not_found_page(),
        Err(Admission::Refused(refusal)) => return refusal_page(refusal),
    };
    if sendfile {
        let body = FileBody {
            parts: content_parts(shares, &resource, start, end),
            meter: Box::new(transfer),
        };
        let mut response = builder
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        response.extensions_mut().insert(FileBodySlot::new(body));
        return response;
    }
    let stream = content_stream(shares, &resource, start, end);
    let body = metered_body(stream, Some(end - start), transfer);
    builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The parts of the response, for a listener that sends files with `sendfile`: each stored
/// file's bytes from its data file (a small blob kept in the store's database is streamed),
/// a zip's headers from memory.
fn content_parts(shares: &Shares, resource: &Resource, start: u64, end: u64) -> Vec<Part> {
    let store = shares.store().clone();
    let blob = move |hash: ContentHash, from: u64, to: u64| {
        let store = store.clone();
        Part::Content {
            len: to - from,
            open: Box::new(move || match store.blob_file(&hash) {
                Some(file) => Source::File { file, start: from },
                None => Source::Stream(store.read_range(&hash, from, to).boxed()),
            }),
        }
    };
    match &resource.content {
        Content::File { hash, .. } => vec![blob(hash.clone(), start, end)],
        Content::Zip { layout, hashes } => layout
            .slice(start, end)
            .into_iter()
            .map(|(segment, from, to)| match segment {
                Segment::Header(bytes) => Part::Bytes(bytes.slice(from as usize..to as usize)),
                Segment::File { index, .. } => match hashes.get(index) {
                    Some(hash) => blob(hash.clone(), from, to),
                    None => Part::Content {
                        len: to - from,
                        open: Box::new(|| {
                            Source::Stream(
                                futures::stream::once(async {
                                    Err(io::Error::other("zip layout out of step with its files"))
                                })
                                .boxed(),
                            )
                        }),
                    },
                },
            })
            .collect(),
    }
}

/// The plain listener counts what `sendfile` sent into the transfer.
impl Meter for Transfer {
    fn content_sent(&mut self, total: u64) {
        self.set_sent(total);
    }

    fn complete(self: Box<Self>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin((*self).finish_recorded())
    }

    fn revoked(&self) -> tokio_util::sync::CancellationToken {
        self.cancelled().clone()
    }
}

/// Bytes of the response, each flagged as content (counted) or zip structure (not counted).
fn content_stream(
    shares: &Shares,
    resource: &Resource,
    start: u64,
    end: u64,
) -> BoxStream<'static, io::Result<(Bytes, bool)>> {
    let store = shares.store().clone();
    match &resource.content {
        Content::File { hash, .. } => store
            .read_range(hash, start, end)
            .map(|chunk| chunk.map(|bytes| (bytes, true)))
            .boxed(),
        Content::Zip { layout, hashes } => {
            let parts = layout.slice(start, end);
            let hashes = hashes.clone();
            futures::stream::iter(parts)
                .flat_map(move |(segment, from, to)| match segment {
                    Segment::Header(bytes) => {
                        let piece = bytes.slice(from as usize..to as usize);
                        futures::stream::once(async move { Ok((piece, false)) }).boxed()
                    }
                    Segment::File { index, .. } => match hashes.get(index) {
                        Some(hash) => store
                            .read_range(hash, from, to)
                            .map(|chunk| chunk.map(|bytes| (bytes, true)))
                            .boxed(),
                        None => futures::stream::once(async {
                            Err(io::Error::other("zip layout out of step with its files"))
                        })
                        .boxed(),
                    },
                })
                .boxed()
        }
    }
}

/// The response body: the bytes of `stream` (each flagged as content or not), content counted
/// into the transfer as it goes, cut when the owner revokes, and the transfer marked finished
/// only when the stream ended (having sent `expected` bytes, when that is known).
fn metered_body(
    stream: BoxStream<'static, io::Result<(Bytes, bool)>>,
    expected: Option<u64>,
    transfer: Transfer,
) -> Body {
    let cancel = transfer.cancelled().clone();
    struct Meter {
        stream: BoxStream<'static, io::Result<(Bytes, bool)>>,
        transfer: Option<Transfer>,
        sent: u64,
        payload: u64,
        expected: Option<u64>,
        failed: bool,
        cancel: tokio_util::sync::CancellationToken,
    }
    let meter = Meter {
        stream,
        transfer: Some(transfer),
        sent: 0,
        payload: 0,
        expected,
        failed: false,
        cancel,
    };
    let body = futures::stream::unfold(meter, |mut meter| async move {
        if meter.failed {
            return None;
        }
        let next = tokio::select! {
            biased;
            () = meter.cancel.cancelled() => Some(Err(io::Error::other("the share was revoked"))),
            item = meter.stream.next() => item,
        };
        match next {
            Some(Ok((bytes, is_payload))) => {
                meter.sent += bytes.len() as u64;
                if is_payload {
                    meter.payload += bytes.len() as u64;
                }
                if let Some(transfer) = meter.transfer.as_mut() {
                    transfer.set_sent(meter.payload);
                }
                Some((Ok(bytes), meter))
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "a download stopped");
                meter.failed = true;
                Some((Err(error), meter))
            }
            None => {
                if meter.expected.is_none_or(|expected| meter.sent == expected) {
                    if let Some(transfer) = meter.transfer.take() {
                        transfer.finish();
                    }
                } else {
                    tracing::error!(
                        sent = meter.sent,
                        expected = meter.expected,
                        "short read from the store"
                    );
                }
                None
            }
        }
    });
    Body::from_stream(body)
}

/// The invariant of the "Range" harness (the proptest below and `fuzz/`): whatever a client
/// puts in `Range` (and `If-Range`), the answer is the whole, one part inside the content and
/// not all of it, or a 416 that states the length. `Ok(None)` for a refusal or for bytes that
/// are no header value; an `Err` says what broke.
#[doc(hidden)]
pub fn sound_range_answer(
    range: &[u8],
    len: u64,
    if_range: Option<&[u8]>,
) -> Result<Option<Wanted>, String> {
    let mut headers = HeaderMap::new();
    let Ok(value) = HeaderValue::from_bytes(range) else {
        return Ok(None);
    };
    headers.insert(header::RANGE, value);
    if let Some(if_range) = if_range {
        let Ok(value) = HeaderValue::from_bytes(if_range) else {
            return Ok(None);
        };
        headers.insert(header::IF_RANGE, value);
    }
    let shown = String::from_utf8_lossy(range);
    match wanted_range(&headers, len, "\"tag\"") {
        Ok(Wanted::Whole) => Ok(Some(Wanted::Whole)),
        Ok(Wanted::Part(start, end))
            if start < end && end <= len && !(start == 0 && end == len) =>
        {
            Ok(Some(Wanted::Part(start, end)))
        }
        Ok(Wanted::Part(start, end)) => Err(format!("{shown}: the part {start}..{end} of {len}")),
        Err(response) => {
            let expected = format!("bytes */{len}");
            let stated = response.headers().get(header::CONTENT_RANGE);
            if response.status() == StatusCode::RANGE_NOT_SATISFIABLE
                && stated.is_some_and(|v| v.as_bytes() == expected.as_bytes())
            {
                Ok(None)
            } else {
                Err(format!(
                    "{shown}: answered {} with {stated:?}",
                    response.status()
                ))
            }
        }
    }
}

#[cfg(test)]
mod range_harness {
    //! Harness "Range": whatever a client puts in `Range` (and `If-Range`), the answer is the
    //! whole, one part inside the content, or a 416 that says the length; never a panic. For
    //! well-formed single ranges, the part is exactly what RFC 9110 says.

    use proptest::prelude::*;

    use super::*;

    fn check(
        range: &str,
        len: u64,
        if_range: Option<&str>,
    ) -> Result<Option<Wanted>, TestCaseError> {
        sound_range_answer(range.as_bytes(), len, if_range.map(str::as_bytes))
            .map_err(TestCaseError::fail)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        #[test]
        fn any_range_header_gets_a_sound_answer(
            range in prop_oneof![
                any::<String>(),
                "[ ]?[bB][yY][tT][eE][sS][ ]?=[ ]?[0-9]{0,22}[ ]?-[ ]?[0-9]{0,22}",
                "bytes=-[0-9]{0,22}",
                "[a-z]{0,8}=[0-9, -]{0,40}",
            ],
            len in prop_oneof![0u64..4, 0u64..100_000, Just(u64::MAX), any::<u64>()],
            if_range in proptest::option::of(prop_oneof![Just("\"tag\"".to_owned()), "[ -~]{0,20}"]),
        ) {
            check(&range, len, if_range.as_deref())?;
        }

        #[test]
        fn a_single_range_is_the_slice_rfc_9110_says(
            first in 0u64..200_000,
            last in 0u64..200_000,
            len in 1u64..100_000,
        ) {
            let got = check(&format!("bytes={first}-{last}"), len, None)?;
            if first > last || first >= len {
                prop_assert!(got.is_none(), "bytes={first}-{last} of {len} accepted");
            } else {
                let end = (last + 1).min(len);
                match got {
                    Some(Wanted::Whole) => prop_assert!(first == 0 && end == len),
                    Some(Wanted::Part(start, stop)) => prop_assert_eq!((start, stop), (first, end)),
                    None => prop_assert!(false, "bytes={first}-{last} of {len} refused"),
                }
            }
        }
    }
}
