//! The receiving side: `veilshare get <link>` fetches a share's `manifest.json` and every file
//! over Tor (its own Arti client) or plain HTTP, resumes interrupted files with `Range`,
//! verifies each file's BLAKE3 hash before moving it into place, and refuses names that would
//! escape the output folder.
//!
//! Invariants:
//! - A file appears under its final name only after its hash matched the manifest; until then
//!   it lives as a part file next to it ([`local::part_file`]).
//! - A ranged (parallel) download keeps a journal beside its part file
//!   ([`local::journal_file`]): one byte per chunk, set only after that chunk's bytes are
//!   synced, so a resume after an interruption or a crash refetches only unmarked chunks (the
//!   final hash check catches anything else).
//! - Names come from the network: all are checked ([`local::check_names`]) before any path is
//!   built from them.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arti_client::TorClient;
use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use http_body_util::BodyExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tor_rtcompat::PreferredRuntime;
pub use veilshare_shared::{Manifest, ManifestFile};

use crate::receive::{
    error::{IoContext, ReceiveError, Refusal, Result},
    local::{self, Patience},
};

/// Files at least this big are fetched as several ranges in parallel.
const PARALLEL_THRESHOLD: u64 = 8 << 20;

/// The unit of progress of a ranged download: marked in its journal once on disk.
const CHUNK: u64 = 4 << 20;

/// The longest wait for an answer's head, or for the next bytes of its body (shorter when the
/// user's timeout is): a sender that stalls longer is treated as gone (a rerun resumes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A body that fails once no bytes came for `idle`.
fn with_idle_timeout(
    body: BoxStream<'static, io::Result<Bytes>>,
    idle: Duration,
) -> BoxStream<'static, io::Result<Bytes>> {
    futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(item)) => Some((item, Some(body))),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the sender sent nothing for {} s", idle.as_secs()),
                )),
                None,
            )),
        }
    })
    .boxed()
}

/// What to fetch and how.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// The share's link (`http://….onion/` or `http://host:port/s/<id>/`).
    pub link: String,
    /// Where the files go.
    pub out_dir: PathBuf,
    /// Where this command keeps its Tor state.
    pub state_dir: PathBuf,
    /// How Tor reaches the network (bridges, a test network).
    pub tor: crate::transport::tor::TorSetup,
    /// Parallel ranges (separate circuits over Tor) for big files; 1 = one stream; `None`
    /// = 4 over Tor, 1 on plain links.
    pub parallel: Option<usize>,
    /// No progress bars.
    pub quiet: bool,
    /// How long to keep trying to reach the share (descriptors may be between uploads).
    pub patience: Duration,
    /// The client key of a restricted share.
    pub key: Option<String>,
    /// Accept hidden files (`.bashrc`…) in the share.
    pub allow_hidden: bool,
    /// Where the app follows the fetch (its Get panel); `None` from the command line.
    pub progress: Option<std::sync::Arc<local::Progress>>,
}

/// The folder under a data directory where `get` and `send` keep their Tor client's state
/// (they share what Tor learnt).
pub fn tor_state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tor-get")
}

/// An HTTP response with a streamed body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: BoxStream<'static, io::Result<Bytes>>,
}

/// How requests travel, and how long a silent sender is waited for.
pub(crate) struct Transport {
    via: Via,
    idle: Duration,
    /// The onion host whose client key this transport's Tor client holds, removed when the
    /// transport is dropped.
    authorized: Option<String>,
}

impl Drop for Transport {
    fn drop(&mut self) {
        if let (Via::Tor(client), Some(host)) = (&self.via, &self.authorized)
            && let Err(error) = crate::transport::tor::forget(client, host)
        {
            tracing::warn!(%error, "the client key stays in the Tor state folder");
        }
    }
}

enum Via {
    Plain(reqwest::Client),
    Tor(Arc<TorClient<PreferredRuntime>>),
}

/// Which Tor circuit a request takes (plain HTTP has none and ignores it).
#[derive(Clone, Copy)]
pub(crate) enum Circuit<'a> {
    /// The transport's, shared by every request that takes it.
    Shared,
    /// A new one for this request alone: a long range of its own, or a retry after a failure
    /// (a stale circuit is the usual cause).
    Fresh,
    /// A lane's: the same circuit for every request of the lane.
    Lane(&'a Lane),
}

impl Circuit<'static> {
    /// For a request tried again until it goes through: the shared circuit first, then a
    /// fresh one for each retry.
    pub(crate) fn for_attempt(attempt: u32) -> Self {
        if attempt > 1 {
            Self::Fresh
        } else {
            Self::Shared
        }
    }
}

/// A circuit of one's own, kept for many requests: to an onion service every new circuit
/// costs an introduction and a rendezvous (seconds on the real network), so a worker that
/// fetches piece after piece keeps one lane (see [`Transport::lane`]).
pub(crate) struct Lane(Option<Arc<TorClient<PreferredRuntime>>>);

impl Transport {
    /// Whether requests go over Tor.
    pub(crate) fn is_tor(&self) -> bool {
        matches!(self.via, Via::Tor(_))
    }

    /// A lane of its own: over Tor, a client isolated from every other (its circuits are its
    /// own), whose circuit its requests share.
    pub(crate) fn lane(&self) -> Lane {
        match &self.via {
            Via::Tor(client) => Lane(Some(client.isolated_client())),
            Via::Plain(_) => Lane(None),
        }
    }

    /// `GET url`, with an optional byte range and `If-Range`, over `circuit`.
    pub(crate) async fn get(
        &self,
        url: &str,
        range: Option<(u64, Option<u64>)>,
        if_range: Option<&str>,
        circuit: Circuit<'_>,
    ) -> Result<Reply> {
        let mut headers = Vec::new();
        if let Some((start, end)) = range {
            let range = match end {
                Some(end) => format!("bytes={start}-{}", end - 1),
                None => format!("bytes={start}-"),
            };
            headers.push((http::header::RANGE, range));
        }
        if let Some(tag) = if_range {
            headers.push((http::header::IF_RANGE, tag.to_owned()));
        }
        // Boxed: the request's future is large, and the fetches that await it are deep.
        let answer = Box::pin(self.exchange(http::Method::GET, url, headers, None, circuit));
        tokio::time::timeout(self.idle, answer).await.map_err(|_| {
            ReceiveError::unreachable(format!(
                "{url} did not answer within {} s",
                self.idle.as_secs()
            ))
        })?
    }

    /// `POST url` with `body` (an upload, streamed as it is read). The upload is given up
    /// when the other side takes none of it, or sends no answer, for the idle time.
    pub(crate) async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: BoxStream<'static, io::Result<Bytes>>,
    ) -> Result<Reply> {
        let started = tokio::time::Instant::now();
        let last_taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let taken = last_taken.clone();
        let body = body
            .inspect(move |_| {
                let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                taken.store(millis, std::sync::atomic::Ordering::Relaxed);
            })
            .boxed();
        let headers = vec![(http::header::CONTENT_TYPE, content_type.to_owned())];
        let mut answer = Box::pin(self.exchange(
            http::Method::POST,
            url,
            headers,
            Some(body),
            Circuit::Shared,
        ));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                reply = &mut answer => return reply,
                _ = tick.tick() => {
                    let last = Duration::from_millis(
                        last_taken.load(std::sync::atomic::Ordering::Relaxed),
                    );
                    if started.elapsed().saturating_sub(last) > self.idle {
                        return Err(ReceiveError::unreachable(format!(
                            "{url} took nothing and answered nothing for {} s",
                            self.idle.as_secs()
                        )));
                    }
                }
            }
        }
    }

    /// Sends one request and waits for the answer's head; the body streams on with the idle
    /// timeout.
    async fn exchange(
        &self,
        method: http::Method,
        url: &str,
        headers: Vec<(http::HeaderName, String)>,
        body: Option<BoxStream<'static, io::Result<Bytes>>>,
        circuit: Circuit<'_>,
    ) -> Result<Reply> {
        let (status, body) = match &self.via {
            Via::Plain(http) => {
                let mut request = http.request(method, url);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                if let Some(body) = body {
                    request = request.body(reqwest::Body::wrap_stream(body));
                }
                let response = request.send().await.map_err(|error| {
                    ReceiveError::unreachable(format!("cannot reach {url}")).because(error)
                })?;
                let status = response.status().as_u16();
                let body = response
                    .bytes_stream()
                    .map(|chunk| chunk.map_err(io::Error::other))
                    .boxed();
                (status, body)
            }
            Via::Tor(client) => {
                let (host, port, path) = split_url(url)?;
                let fresh;
                let client = match circuit {
                    Circuit::Shared => client,
                    Circuit::Fresh => {
                        fresh = client.isolated_client();
                        &fresh
                    }
                    Circuit::Lane(Lane(lane)) => lane.as_ref().unwrap_or(client),
                };
                let mut sender = tor_connection(client, &host, port).await?;
                let mut request = http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header(http::header::HOST, &host);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let body = match body {
                    Some(body) => BodyExt::boxed_unsync(http_body_util::StreamBody::new(
                        body.map(|chunk| chunk.map(hyper::body::Frame::data)),
                    )),
                    None => http_body_util::Empty::new()
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                };
                let request = request.body(body).map_err(|error| {
                    ReceiveError::bad_source(format!("{url} is not a valid link")).because(error)
                })?;
                let response = sender.send_request(request).await.map_err(|error| {
                    ReceiveError::unreachable("request over Tor failed").because(error)
                })?;
                let status = response.status().as_u16();
                let body = http_body_util::BodyStream::new(response.into_body())
                    .filter_map(|frame| async move {
                        match frame {
                            Ok(frame) => frame.into_data().ok().map(Ok),
                            Err(error) => Some(Err(io::Error::other(error))),
                        }
                    })
                    .boxed();
                (status, body)
            }
        };
        Ok(Reply {
            status,
            body: batched(with_idle_timeout(body, self.idle), BATCH),
        })
    }
}

/// The least a body hands on at once (but its last piece): files are written, and progress
/// counted, per batch rather than per frame.
const BATCH: usize = 1 << 20;

/// `body` in pieces of at least `min` bytes (the last may be shorter). An error comes after
/// the bytes that arrived before it, so nothing received is lost to a resume.
fn batched(
    body: BoxStream<'static, io::Result<Bytes>>,
    min: usize,
) -> BoxStream<'static, io::Result<Bytes>> {
    futures::stream::unfold(Some((body, None)), move |state| async move {
        let (mut body, failed): (_, Option<io::Error>) = state?;
        if let Some(error) = failed {
            return Some((Err(error), None));
        }
        let mut batch = bytes::BytesMut::new();
        loop {
            match body.next().await {
                Some(Ok(chunk)) if batch.is_empty() && chunk.len() >= min => {
                    return Some((Ok(chunk), Some((body, None))));
                }
                Some(Ok(chunk)) => {
                    batch.extend_from_slice(&chunk);
                    if batch.len() >= min {
                        return Some((Ok(batch.freeze()), Some((body, None))));
                    }
                }
                Some(Err(error)) if batch.is_empty() => return Some((Err(error), None)),
                Some(Err(error)) => return Some((Ok(batch.freeze()), Some((body, Some(error))))),
                None if batch.is_empty() => return None,
                None => return Some((Ok(batch.freeze()), None)),
            }
        }
    })
    .boxed()
}

/// A request body of either transport.
type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, io::Error>;

/// An HTTP/1 connection over a new Tor stream to `host:port`, on one of `client`'s circuits.
async fn tor_connection(
    client: &TorClient<PreferredRuntime>,
    host: &str,
    port: u16,
) -> Result<hyper::client::conn::http1::SendRequest<RequestBody>> {
    let stream = tokio::time::timeout(Duration::from_secs(60), client.connect((host, port)))
        .await
        .map_err(|_| {
            ReceiveError::unreachable(
                "timed out connecting to the onion service (is the link still valid?)",
            )
        })?
        .map_err(|error| {
            ReceiveError::unreachable(format!("cannot connect to {host} over Tor")).because(error)
        })?;
    // Read in bursts, not one relay cell at a time (see `Coalesced`).
    let stream = crate::transport::coalesce::Coalesced::new(stream);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|error| {
                ReceiveError::unreachable("HTTP handshake over Tor failed").because(error)
            })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Splits an `http://` URL into (host, port, path with query).
fn split_url(url: &str) -> Result<(String, u16, String)> {
    let parsed = reqwest::Url::parse(url).map_err(|error| {
        ReceiveError::bad_source(format!("{url} is not a valid link")).because(error)
    })?;
    if parsed.scheme() != "http" {
        return Err(ReceiveError::bad_source(format!(
            "{url} is not an http:// link"
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| ReceiveError::bad_source(format!("{url} has no host")))?
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let mut path = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok((host, port, path))
}

fn is_onion(link: &str) -> bool {
    split_url(link).is_ok_and(|(host, _, _)| host.ends_with(".onion"))
}

/// A link as a base URL ending in `/`, or why it is not a link.
pub(crate) fn link_base(link: &str) -> Result<String> {
    let mut base = link.trim().to_owned();
    if !base.starts_with("http://") {
        return Err(ReceiveError::bad_source(format!(
            "{base:?} is not a veilshare link: links start with http:// (onion links end in .onion/), tickets with blob"
        )));
    }
    if !base.ends_with('/') {
        base.push('/');
    }
    Ok(base)
}

/// Fetches a share; returns the paths written.
pub async fn fetch(settings: &FetchSettings) -> Result<Vec<PathBuf>> {
    let base = link_base(&settings.link)?;
    let transport = open_transport(&base, settings).await?;
    fetch_from(&transport, &base, settings).await
}

/// The Tor client of one run, made by the first onion link that needs it and shared by the
/// others: one bootstrap and one guard, while each link's requests keep circuits of their own.
pub(crate) type SharedTor = tokio::sync::OnceCell<Arc<TorClient<PreferredRuntime>>>;

/// The transport for `base`: a bootstrapped Tor client for onion links (authorized with the
/// settings' key), plain HTTP otherwise.
pub(crate) async fn open_transport(base: &str, settings: &FetchSettings) -> Result<Transport> {
    open_transport_with(base, settings, &SharedTor::new()).await
}

/// [`open_transport`], onion links on `tor`'s client (made on first use).
pub(crate) async fn open_transport_with(
    base: &str,
    settings: &FetchSettings,
    tor: &SharedTor,
) -> Result<Transport> {
    let idle = settings
        .patience
        .clamp(Duration::from_secs(1), IDLE_TIMEOUT);
    let mut authorized = None;
    let via = if is_onion(base) {
        let client = tor
            .get_or_try_init(|| async {
                let client =
                    crate::transport::tor::create_client(&settings.state_dir, &settings.tor)
                        .await
                        .map_err(|error| ReceiveError::io("cannot set up Tor").because(error))?;
                if !settings.quiet {
                    local::tell(format_args!("connecting to the Tor network…"));
                }
                Ok::<_, ReceiveError>(client)
            })
            .await?
            .clone();
        // A key is used for this run only: it is removed when the transport drops, and a run
        // without one removes any a crashed run left (the service must not stay reachable).
        let (host, _, _) = split_url(base)?;
        match &settings.key {
            Some(key) => {
                crate::transport::tor::authorize(&client, &host, key).map_err(|error| {
                    ReceiveError::bad_source("the client key cannot be used").because(error)
                })?;
                authorized = Some(host);
            }
            None => crate::transport::tor::forget(&client, &host).map_err(|error| {
                ReceiveError::io("cannot clear an old client key").because(error)
            })?,
        }
        client.bootstrap().await.map_err(|error| {
            ReceiveError::unreachable("cannot connect to the Tor network").because(error)
        })?;
        Via::Tor(client)
    } else {
        Via::Plain(
            // No redirects: a link names its share's host, and a sender must not be able to
            // send a mirror (which runs in the app) to another host or port.
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .io_context(|| "cannot set up HTTP".into())?,
        )
    };
    Ok(Transport {
        via,
        idle,
        authorized,
    })
}

async fn fetch_from(
    transport: &Transport,
    base: &str,
    settings: &FetchSettings,
) -> Result<Vec<PathBuf>> {
    let manifest = fetch_manifest(transport, base, settings.patience).await?;
    local::check_names(
        manifest.files.iter().map(|f| f.name.as_str()),
        settings.allow_hidden,
    )?;
    if let Some(progress) = &settings.progress {
        progress.set_listing(local::Listing {
            label: manifest.label.clone(),
            root: Some(manifest.content_hash.to_string()),
            files: manifest
                .files
                .iter()
                .map(|f| local::ListedFile {
                    name: f.name.clone(),
                    size: f.size,
                    blake3: f.blake3.as_str().to_owned(),
                })
                .collect(),
        });
    }
    tokio::fs::create_dir_all(&settings.out_dir)
        .await
        .io_context(|| format!("cannot create {}", settings.out_dir.display()))?;
    if !settings.quiet {
        local::tell(format_args!(
            "{}: {} files, {}",
            local::printable(manifest.label.as_deref().unwrap_or("share")),
            manifest.files.len(),
            veilshare_shared::human_size(manifest.total_size)
        ));
    }
    let parallel = settings
        .parallel
        .unwrap_or(if transport.is_tor() { 4 } else { 1 });
    let mut written = Vec::new();
    for file in &manifest.files {
        let url = format!("{base}{}", file.path);
        written.push(fetch_file(transport, &url, file, settings, parallel).await?);
    }
    Ok(written)
}

pub(crate) async fn fetch_manifest(
    transport: &Transport,
    base: &str,
    patience: Duration,
) -> Result<Manifest> {
    let url = format!("{base}manifest.json");
    let mut patience = Patience::new(patience);
    let reply = loop {
        // After a failure, a fresh circuit: a stale one, or a descriptor fetched between two
        // uploads, is the usual cause.
        match transport
            .get(&url, None, None, Circuit::for_attempt(patience.attempt()))
            .await
        {
            Ok(reply) => break reply,
            Err(error) => {
                tracing::debug!(%error, attempt = patience.attempt(), "manifest fetch failed");
                if !patience.again().await {
                    return Err(patience.gave_up(
                        error,
                        "the share is not reachable (ended, or its sender is offline)",
                    ));
                }
            }
        }
    };
    if let Some(refusal) = Refusal::from_status(reply.status) {
        return Err(ReceiveError::refused(refusal));
    }
    let body = collect(reply.body, MAX_MANIFEST_BYTES).await?;
    parse_manifest(&body)
}

/// The most bytes a manifest may take.
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// A manifest from the network, parsed (its names are checked by the caller, with
/// [`local::check_names`]).
pub fn parse_manifest(body: &[u8]) -> Result<Manifest> {
    serde_json::from_slice(body).map_err(|error| {
        ReceiveError::integrity("the share's manifest is not valid").because(error)
    })
}

pub(crate) async fn collect(
    mut body: BoxStream<'static, io::Result<Bytes>>,
    limit: usize,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|error| ReceiveError::unreachable("the answer broke off").because(error))?;
        out.extend_from_slice(&chunk);
        if out.len() > limit {
            return Err(ReceiveError::integrity(format!(
                "the answer is larger than {limit} bytes"
            )));
        }
    }
    Ok(out)
}

fn progress_bar(
    settings: &FetchSettings,
    file: &ManifestFile,
    done: u64,
) -> indicatif::ProgressBar {
    let bar = local::progress_bar(
        settings.quiet,
        Some(file.size),
        file.name.clone(),
        settings.progress.as_deref(),
    );
    bar.set_position(done);
    bar
}

/// Fetches one file into `out_dir`: resumes a partial download, verifies, moves into place.
async fn fetch_file(
    transport: &Transport,
    url: &str,
    file: &ManifestFile,
    settings: &FetchSettings,
    parallel: usize,
) -> Result<PathBuf> {
    let out_dir = &settings.out_dir;
    let hex = file.blake3.as_str();
    let part = local::part_file(out_dir, hex);
    let journal = local::journal_file(out_dir, hex);
    if let Some(copy) = local::existing_copy(out_dir, &file.name, file.size, hex).await? {
        // A crash between the rename and the journal's removal leaves the journal behind.
        let _ = tokio::fs::remove_file(&journal).await;
        if !settings.quiet {
            local::tell(format_args!("{}: already here, verified", copy.display()));
        }
        return Ok(copy);
    }
    let have = tokio::fs::symlink_metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    local::check_room(out_dir, file.size.saturating_sub(have))?;
    let ranged = tokio::fs::try_exists(&journal).await.unwrap_or(false)
        || (have == 0 && parallel > 1 && file.size >= PARALLEL_THRESHOLD);
    if ranged {
        fetch_ranges(transport, url, file, &part, &journal, settings, parallel).await?;
    } else {
        fetch_stream(transport, url, file, &part, have.min(file.size), settings).await?;
    }
    let hash = local::hash_file(&part).await?;
    if hash != hex {
        let _ = tokio::fs::remove_file(&part).await;
        let _ = tokio::fs::remove_file(&journal).await;
        return Err(ReceiveError::integrity(format!(
            "{}: the content does not match its BLAKE3 hash (got {hash}, expected {hex}); the partial file was deleted, try again",
            file.name,
        )));
    }
    let placed = local::place(&part, out_dir, &file.name)?;
    let _ = tokio::fs::remove_file(&journal).await;
    // Said even when quiet: the user looks for the file under its own name.
    if placed.renamed {
        local::tell(format_args!(
            "{}: a file of that name is already there and was left alone; saved as {}",
            file.name,
            placed.path.display()
        ));
    }
    Ok(placed.path)
}

/// One stream from `have` to the end, appending to the part file.
async fn fetch_stream(
    transport: &Transport,
    url: &str,
    file: &ManifestFile,
    part: &Path,
    have: u64,
    settings: &FetchSettings,
) -> Result<()> {
    let etag = format!("\"{}\"", file.blake3);
    let range = (have > 0).then_some((have, None));
    let reply = transport
        .get(url, range, Some(&etag), Circuit::Shared)
        .await?;
    let mut output = tokio::fs::OpenOptions::from({
        let mut options = local::scratch_options();
        options.create(true).truncate(false);
        options
    })
    .open(part)
    .await
    .io_context(|| format!("cannot write {}", part.display()))?;
    let start = match reply.status {
        206 => have,
        200 => {
            output
                .set_len(0)
                .await
                .io_context(|| format!("cannot write {}", part.display()))?;
            0
        }
        416 if have == file.size => return Ok(()),
        status => return Err(status_error(file, status)),
    };
    output
        .seek(io::SeekFrom::Start(start))
        .await
        .io_context(|| format!("cannot write {}", part.display()))?;
    let bar = progress_bar(settings, file, start);
    let mut body = reply.body;
    let mut position = start;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| {
            ReceiveError::unreachable(format!(
                "{}: the transfer broke off at {position} bytes; run the same command again to resume",
                file.name
            ))
            .because(error)
        })?;
        if position + chunk.len() as u64 > file.size {
            return Err(ReceiveError::integrity(format!(
                "{}: the sender sent more than the file's {} bytes",
                file.name, file.size
            )));
        }
        output
            .write_all(&chunk)
            .await
            .io_context(|| format!("cannot write {}", part.display()))?;
        position += chunk.len() as u64;
        bar.set_position(position);
    }
    output
        .flush()
        .await
        .io_context(|| format!("cannot write {}", part.display()))?;
    bar.finish_and_clear();
    if position != file.size {
        return Err(ReceiveError::unreachable(format!(
            "{}: the transfer ended at {position} of {} bytes; run the same command again to resume",
            file.name, file.size
        )));
    }
    Ok(())
}

/// A status that is not the content asked for, as an error about `file`.
fn status_error(file: &ManifestFile, status: u16) -> ReceiveError {
    let refusal = Refusal::from_status(status).unwrap_or(Refusal::Status(status));
    ReceiveError::refused(refusal).context(format!("{}: the download stopped", file.name))
}

/// The journal of a ranged download: one byte per [`CHUNK`] of the file, set once that chunk
/// is on disk (synced). A resume fetches only the chunks not yet marked.
struct Journal {
    file: std::fs::File,
    done: Vec<bool>,
}

impl Journal {
    /// Opens the journal of `part`, or starts a new one (and a new, full-size part file) when
    /// there is none or it does not fit `size`.
    fn open(journal: &Path, part: &Path, size: u64) -> Result<Self> {
        let chunks = usize::try_from(size.div_ceil(CHUNK))
            .map_err(|_| ReceiveError::integrity("the file is too big for this machine"))?;
        let is_file = |path: &Path| std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
        let existing = std::fs::read(journal).ok().filter(|bytes| {
            is_file(journal)
                && bytes.len() == chunks
                && std::fs::symlink_metadata(part).is_ok_and(|m| m.is_file() && m.len() == size)
        });
        if let Some(bytes) = existing {
            let file = local::scratch_options()
                .open(journal)
                .io_context(|| format!("cannot open {}", journal.display()))?;
            let done = bytes.iter().map(|&b| b == 1).collect();
            return Ok(Self { file, done });
        }
        // Fresh start: the part file first, then the (all-zero) journal that vouches for it.
        let output = local::scratch_options()
            .create(true)
            .truncate(true)
            .open(part)
            .io_context(|| format!("cannot write {}", part.display()))?;
        output
            .set_len(size)
            .io_context(|| format!("cannot write {}", part.display()))?;
        let file = local::scratch_options()
            .create(true)
            .truncate(true)
            .open(journal)
            .io_context(|| format!("cannot write {}", journal.display()))?;
        file.set_len(chunks as u64)
            .io_context(|| format!("cannot write {}", journal.display()))?;
        Ok(Self {
            file,
            done: vec![false; chunks],
        })
    }
}

/// The byte spans still to fetch: runs of missing chunks, the longest split until there are at
/// least `workers` spans (when they are long enough to split).
fn plan_spans(done: &[bool], size: u64, workers: usize) -> Vec<(u64, u64)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (index, &is_done) in done.iter().enumerate() {
        if is_done {
            continue;
        }
        match runs.last_mut() {
            Some((_, end)) if *end == index => *end = index + 1,
            _ => runs.push((index, index + 1)),
        }
    }
    while runs.len() < workers {
        let Some((longest, &(start, end))) = runs
            .iter()
            .enumerate()
            .max_by_key(|(_, (start, end))| end - start)
        else {
            break;
        };
        if end - start < 2 {
            break;
        }
        let middle = start + (end - start) / 2;
        runs[longest] = (start, middle);
        runs.insert(longest + 1, (middle, end));
    }
    runs.into_iter()
        .map(|(start, end)| (start as u64 * CHUNK, (end as u64 * CHUNK).min(size)))
        .collect()
}

/// Several ranges at once, each over its own circuit, written at their offsets; each chunk is
/// marked in the journal once synced, so an interrupted download resumes where it stopped.
async fn fetch_ranges(
    transport: &Transport,
    url: &str,
    file: &ManifestFile,
    part: &Path,
    journal: &Path,
    settings: &FetchSettings,
    parallel: usize,
) -> Result<()> {
    let (journal_path, part_path, size) = (journal.to_owned(), part.to_owned(), file.size);
    let journal =
        tokio::task::spawn_blocking(move || Journal::open(&journal_path, &part_path, size))
            .await
            .io_context(|| "the journal could not be read".into())??;
    let output = Arc::new(
        local::scratch_options()
            .open(part)
            .io_context(|| format!("cannot write {}", part.display()))?,
    );
    let done_bytes: u64 = (0u64..)
        .zip(&journal.done)
        .filter(|(_, done)| **done)
        .map(|(index, _)| CHUNK.min(size - index * CHUNK))
        .sum();
    let spans = plan_spans(&journal.done, file.size, parallel.max(1));
    let marks = Arc::new(journal.file);
    let bar = progress_bar(settings, file, done_bytes);
    let results: Vec<Result<()>> = futures::stream::iter(spans)
        .map(|span| {
            fetch_span(
                transport,
                url,
                file,
                span,
                output.clone(),
                marks.clone(),
                bar.clone(),
            )
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    if let Some(first) = results.into_iter().find_map(Result::err) {
        return Err(first.context(format!(
            "{}: part of the download failed; what arrived is kept: run the same command again to resume",
            file.name
        )));
    }
    Ok(())
}

/// Fetches one span, retrying a broken transfer from its first unfinished chunk on a fresh
/// circuit; an answer that is not content (ended, busy, not found) stops at once.
async fn fetch_span(
    transport: &Transport,
    url: &str,
    file: &ManifestFile,
    (start, end): (u64, u64),
    output: Arc<std::fs::File>,
    marks: Arc<std::fs::File>,
    bar: indicatif::ProgressBar,
) -> Result<()> {
    const ATTEMPTS: u32 = 3;
    let etag = format!("\"{}\"", file.blake3);
    let mut from = start;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let reply = match transport
            .get(url, Some((from, Some(end))), Some(&etag), Circuit::Fresh)
            .await
        {
            Ok(reply) => reply,
            Err(error) if attempt < ATTEMPTS => {
                tracing::debug!(%error, attempt, "range request failed; retrying on a new circuit");
                continue;
            }
            Err(error) => return Err(error),
        };
        if reply.status != 206 {
            return Err(status_error(file, reply.status));
        }
        let mut body = reply.body;
        let mut position = from;
        let mut broken = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    broken = Some(ReceiveError::unreachable("the range broke off").because(error));
                    break;
                }
            };
            let len = chunk.len() as u64;
            if position + len > end {
                return Err(ReceiveError::integrity(format!(
                    "{}: a range answer was longer than asked",
                    file.name
                )));
            }
            let (at, writer, marks) = (position, output.clone(), marks.clone());
            tokio::task::spawn_blocking(move || write_and_mark(&writer, &marks, &chunk, at, end))
                .await
                .io_context(|| "writing stopped".into())?
                .io_context(|| format!("cannot write {}", file.name))?;
            position += len;
            bar.inc(len);
        }
        if position == end {
            return Ok(());
        }
        // Resume from the start of the chunk the break fell in: earlier ones are marked.
        let resumed = (position / CHUNK * CHUNK).max(from);
        bar.set_position(bar.position().saturating_sub(position - resumed));
        from = resumed;
        let error = broken.unwrap_or_else(|| ReceiveError::unreachable("the range ended early"));
        if attempt >= ATTEMPTS {
            return Err(error.context(format!("{}: a range broke off {ATTEMPTS} times", file.name)));
        }
        tracing::debug!(%error, attempt, "range broke off; retrying on a new circuit");
    }
}

/// Writes `data` at `at`; for each chunk that this write completes (up to `end`, the span's
/// end), syncs the data and marks the chunk done in the journal.
fn write_and_mark(
    output: &std::fs::File,
    marks: &std::fs::File,
    data: &[u8],
    at: u64,
    end: u64,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    output.write_all_at(data, at)?;
    let after = at + data.len() as u64;
    // Chunks whose last byte lies in [at, after): complete now (spans start on chunk bounds).
    let first = at / CHUNK;
    let mut completed = Vec::new();
    for index in first..=after / CHUNK {
        let chunk_end = ((index + 1) * CHUNK).min(end);
        if chunk_end > at && chunk_end <= after {
            completed.push(index);
        }
    }
    if !completed.is_empty() {
        output.sync_data()?;
        for index in completed {
            marks.write_all_at(&[1], index)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        let (host, port, path) = split_url("http://abc.onion/files/a%20b?x=1").expect("url");
        assert_eq!(
            (host.as_str(), port, path.as_str()),
            ("abc.onion", 80, "/files/a%20b?x=1")
        );
        let (host, port, path) = split_url("http://127.0.0.1:8080/s/id/").expect("url");
        assert_eq!(
            (host.as_str(), port, path.as_str()),
            ("127.0.0.1", 8080, "/s/id/")
        );
        assert!(split_url("https://abc.onion/").is_err());
        assert!(is_onion("http://abc.onion:80/"));
        assert!(!is_onion("http://onion.example/"));
    }

    #[tokio::test]
    async fn bodies_come_in_batches_and_an_error_after_the_bytes_before_it() {
        let piece = |n: usize| Ok(Bytes::from(vec![7u8; n]));
        let sizes = |pieces: Vec<io::Result<Bytes>>| async move {
            batched(futures::stream::iter(pieces).boxed(), 1000)
                .map(|r| r.map(|b| b.len()).map_err(|e| e.to_string()))
                .collect::<Vec<_>>()
                .await
        };
        let got = sizes(vec![
            piece(498),
            piece(498),
            piece(498),
            piece(2000),
            piece(10),
        ])
        .await;
        assert_eq!(got, vec![Ok(1494), Ok(2000), Ok(10)]);
        let got = sizes(vec![
            piece(498),
            Err(io::Error::other("broke off")),
            piece(5),
        ])
        .await;
        assert_eq!(got, vec![Ok(498), Err("broke off".to_owned())]);
    }

    #[test]
    fn spans_cover_exactly_the_missing_chunks() {
        let size = 10 * CHUNK - 5;
        let all_missing = vec![false; 10];
        let spans = plan_spans(&all_missing, size, 4);
        assert_eq!(spans.len(), 4);
        assert_eq!(spans.first().map(|s| s.0), Some(0));
        assert_eq!(spans.last().map(|s| s.1), Some(size));
        assert!(spans.windows(2).all(|w| w[0].1 == w[1].0), "{spans:?}");

        let mut done = vec![true; 10];
        done[2] = false;
        done[9] = false;
        let spans = plan_spans(&done, size, 4);
        assert_eq!(spans, vec![(2 * CHUNK, 3 * CHUNK), (9 * CHUNK, size)]);
        assert!(plan_spans(&[true; 10], size, 4).is_empty());
    }

    #[test]
    fn a_chunk_is_marked_only_once_all_its_bytes_are_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = 2 * CHUNK + 10;
        let (part, journal) = (dir.path().join("part"), dir.path().join("journal"));
        let opened = Journal::open(&journal, &part, size).expect("journal");
        assert_eq!(opened.done, vec![false; 3]);
        let output = std::fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .expect("part");
        let half = vec![7u8; (CHUNK / 2) as usize];
        write_and_mark(&output, &opened.file, &half, 0, size).expect("write");
        assert_eq!(std::fs::read(&journal).expect("read"), vec![0, 0, 0]);
        // The second half of chunk 0 and all of chunk 1 in one write.
        let more = vec![7u8; (CHUNK / 2 + CHUNK) as usize];
        write_and_mark(&output, &opened.file, &more, CHUNK / 2, size).expect("write");
        assert_eq!(std::fs::read(&journal).expect("read"), vec![1, 1, 0]);
        write_and_mark(&output, &opened.file, &[7u8; 10], 2 * CHUNK, size).expect("write");
        assert_eq!(std::fs::read(&journal).expect("read"), vec![1, 1, 1]);
        // Reopened, the journal is kept; with a part file of the wrong size it starts afresh.
        assert_eq!(
            Journal::open(&journal, &part, size).expect("reopen").done,
            vec![true; 3]
        );
        std::fs::write(&part, b"short").expect("truncate");
        assert_eq!(
            Journal::open(&journal, &part, size).expect("restart").done,
            vec![false; 3]
        );
    }
}
