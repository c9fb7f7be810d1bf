//! The receiving side: `veilshare get <link>` fetches a share's `manifest.json` and every file
//! over Tor (its own Arti client) or plain HTTP, resumes interrupted files with `Range`,
//! verifies each file's BLAKE3 hash before moving it into place, and refuses names that would
//! escape the output folder.
//!
//! Invariants:
//! - A file appears under its final name only after its hash matched the manifest; until then
//!   it lives as `.<blake3>.veilshare-part` next to it (named by hash: any valid file name,
//!   up to 255 bytes, still leaves room for it, and a resume finds it whatever the name).
//! - A ranged (parallel) download keeps a journal `.<blake3>.veilshare-ranges` beside its part
//!   file: one byte per chunk, set only after that chunk's bytes are synced, so a resume after
//!   an interruption or a crash refetches only unmarked chunks (the final hash check catches
//!   anything else).
//! - Names come from the network: each is checked by `shared::validate_file_name` before any
//!   path is built from it.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use arti_client::TorClient;
use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use serde::Deserialize;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tor_rtcompat::PreferredRuntime;

/// Files at least this big are fetched as several ranges in parallel.
const PARALLEL_THRESHOLD: u64 = 8 << 20;

/// The unit of progress of a ranged download: marked in its journal once on disk.
const CHUNK: u64 = 4 << 20;

/// What to fetch and how.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// The share's link (`http://….onion/` or `http://host:port/s/<id>/`).
    pub link: String,
    /// Where the files go.
    pub out_dir: PathBuf,
    /// Where this command keeps its Tor state.
    pub state_dir: PathBuf,
    /// An Arti TOML file to merge (bridges, test networks).
    pub tor_config: Option<PathBuf>,
    /// Parallel ranges (separate circuits over Tor) for big files; 1 = one stream; `None`
    /// = 4 over Tor, 1 on plain links.
    pub parallel: Option<usize>,
    /// No progress bars.
    pub quiet: bool,
    /// How long to keep trying to reach the share (descriptors may be between uploads).
    pub patience: Duration,
    /// The client key of a restricted share.
    pub key: Option<String>,
}

/// The public manifest of a share (what `public` serves as `manifest.json`).
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// Label.
    pub label: Option<String>,
    /// Files.
    pub files: Vec<ManifestFile>,
    /// Sum of sizes.
    pub total_size: u64,
    /// BLAKE3 hash of the collection (names and file hashes): the same for every copy.
    #[serde(default)]
    pub content_hash: Option<String>,
}

/// One file of a manifest.
#[derive(Debug, Deserialize)]
pub struct ManifestFile {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 hash in hex.
    pub blake3: String,
    /// URL relative to the link.
    pub path: String,
}

/// An HTTP response with a streamed body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: BoxStream<'static, io::Result<Bytes>>,
}

/// How requests travel.
pub(crate) enum Transport {
    Plain(reqwest::Client),
    Tor(Arc<TorClient<PreferredRuntime>>),
}

impl Transport {
    /// `GET url`, with an optional byte range and `If-Range`; `isolated` asks for a circuit of
    /// its own over Tor.
    pub(crate) async fn get(
        &self,
        url: &str,
        range: Option<(u64, Option<u64>)>,
        if_range: Option<&str>,
        isolated: bool,
    ) -> Result<Reply> {
        let range_header = range.map(|(start, end)| match end {
            Some(end) => format!("bytes={start}-{}", end - 1),
            None => format!("bytes={start}-"),
        });
        match self {
            Self::Plain(http) => {
                let mut request = http.get(url);
                if let Some(range) = &range_header {
                    request = request.header(http::header::RANGE, range);
                }
                if let Some(tag) = if_range {
                    request = request.header(http::header::IF_RANGE, tag);
                }
                let response = request
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {url}"))?;
                let status = response.status().as_u16();
                let body = response
                    .bytes_stream()
                    .map(|chunk| chunk.map_err(io::Error::other))
                    .boxed();
                Ok(Reply { status, body })
            }
            Self::Tor(client) => {
                let (host, port, path) = split_url(url)?;
                let client = if isolated {
                    client.isolated_client()
                } else {
                    client.clone()
                };
                let stream = tokio::time::timeout(
                    Duration::from_secs(60),
                    client.connect((host.as_str(), port)),
                )
                .await
                .context("timed out connecting to the onion service (is the link still valid?)")?
                .with_context(|| format!("cannot connect to {host} over Tor"))?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .context("HTTP handshake over Tor failed")?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                let mut request = http::Request::get(path).header(http::header::HOST, &host);
                if let Some(range) = &range_header {
                    request = request.header(http::header::RANGE, range);
                }
                if let Some(tag) = if_range {
                    request = request.header(http::header::IF_RANGE, tag);
                }
                let request = request.body(http_body_util::Empty::<Bytes>::new())?;
                let response = sender
                    .send_request(request)
                    .await
                    .context("request over Tor failed")?;
                let status = response.status().as_u16();
                let body = http_body_util::BodyStream::new(response.into_body())
                    .filter_map(|frame| async move {
                        match frame {
                            Ok(frame) => frame.into_data().ok().map(Ok),
                            Err(error) => Some(Err(io::Error::other(error))),
                        }
                    })
                    .boxed();
                Ok(Reply { status, body })
            }
        }
    }
}

/// Splits an `http://` URL into (host, port, path with query).
fn split_url(url: &str) -> Result<(String, u16, String)> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{url} is not a valid link"))?;
    if parsed.scheme() != "http" {
        bail!("{url} is not an http:// link");
    }
    let host = parsed
        .host_str()
        .with_context(|| format!("{url} has no host"))?
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

/// Refuses a file name from the network that would leave the output folder.
pub(crate) fn check_file_name(name: &str) -> Result<()> {
    veilshare_shared::validate_file_name(name).map_err(|problem| {
        anyhow::anyhow!(
            "refusing the share: {problem} (a file name must not leave the output folder)"
        )
    })
}

/// A link as a base URL ending in `/`, or why it is not a link.
pub(crate) fn link_base(link: &str) -> Result<String> {
    let mut base = link.trim().to_owned();
    if !base.starts_with("http://") {
        bail!(
            "{base:?} is not a veilshare link: links start with http:// (onion links end in .onion/), tickets with blob"
        );
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

/// The transport for `base`: a bootstrapped Tor client for onion links (authorized with the
/// settings' key), plain HTTP otherwise.
pub(crate) async fn open_transport(base: &str, settings: &FetchSettings) -> Result<Transport> {
    Ok(if is_onion(base) {
        let client = crate::transport::tor::create_client(
            &settings.state_dir,
            settings.tor_config.as_deref(),
        )
        .await
        .context("cannot set up Tor")?;
        if let Some(key) = &settings.key {
            let (host, _, _) = split_url(base)?;
            crate::transport::tor::authorize(&client, &host, key)?;
        }
        if !settings.quiet {
            eprintln!("connecting to the Tor network…");
        }
        client
            .bootstrap()
            .await
            .context("cannot connect to the Tor network")?;
        Transport::Tor(client)
    } else {
        Transport::Plain(reqwest::Client::builder().no_proxy().build()?)
    })
}

async fn fetch_from(
    transport: &Transport,
    base: &str,
    settings: &FetchSettings,
) -> Result<Vec<PathBuf>> {
    let manifest = fetch_manifest(transport, base, settings.patience).await?;
    for file in &manifest.files {
        check_file_name(&file.name)?;
        if veilshare_shared::ContentHash::parse(&file.blake3).is_none() {
            bail!(
                "the manifest's hash for {:?} is not a BLAKE3 hash",
                file.name
            );
        }
    }
    tokio::fs::create_dir_all(&settings.out_dir)
        .await
        .with_context(|| format!("cannot create {}", settings.out_dir.display()))?;
    if !settings.quiet {
        eprintln!(
            "{}: {} files, {}",
            manifest.label.as_deref().unwrap_or("share"),
            manifest.files.len(),
            veilshare_shared::human_size(manifest.total_size)
        );
    }
    let parallel = settings.parallel.unwrap_or(match transport {
        Transport::Tor(_) => 4,
        Transport::Plain(_) => 1,
    });
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
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    let reply = loop {
        attempt += 1;
        // After a failure, a fresh circuit: a stale one, or a descriptor fetched between two
        // uploads, is the usual cause.
        match transport.get(&url, None, None, attempt > 1).await {
            Ok(reply) => break reply,
            Err(error) if started.elapsed() < patience => {
                tracing::debug!(%error, attempt, "manifest fetch failed; retrying");
                let pause = Duration::from_secs(u64::from(attempt.min(5)));
                tokio::time::sleep(pause).await;
            }
            Err(error) => {
                return Err(error.context(format!(
                    "gave up after {} s: the share is not reachable (ended, or its sender is offline)",
                    started.elapsed().as_secs()
                )));
            }
        }
    };
    match reply.status {
        200 => {}
        404 => bail!("there is no share at this link (404); check that you copied the whole link"),
        410 => bail!(
            "this share has ended: its download limit was reached, it expired, or it was revoked"
        ),
        status => bail!("the share answered with HTTP {status}"),
    }
    let body = collect(reply.body, 16 << 20).await?;
    serde_json::from_slice(&body).context("the share's manifest is not valid")
}

pub(crate) async fn collect(
    mut body: BoxStream<'static, io::Result<Bytes>>,
    limit: usize,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
        if out.len() > limit {
            bail!("answer larger than {limit} bytes");
        }
    }
    Ok(out)
}

fn progress_bar(
    settings: &FetchSettings,
    file: &ManifestFile,
    done: u64,
) -> indicatif::ProgressBar {
    if settings.quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(file.size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:30!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(file.name.clone());
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
    let target = settings.out_dir.join(&file.name);
    let part = settings
        .out_dir
        .join(format!(".{}.veilshare-part", file.blake3));
    let journal = settings
        .out_dir
        .join(format!(".{}.veilshare-ranges", file.blake3));
    if target.exists() && hash_file(&target).await? == file.blake3 {
        // A crash between the rename and the journal's removal leaves the journal behind.
        let _ = tokio::fs::remove_file(&journal).await;
        if !settings.quiet {
            eprintln!("{}: already here, verified", file.name);
        }
        return Ok(target);
    }
    let have = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let ranged = tokio::fs::try_exists(&journal).await.unwrap_or(false)
        || (have == 0 && parallel > 1 && file.size >= PARALLEL_THRESHOLD);
    if ranged {
        fetch_ranges(transport, url, file, &part, &journal, settings, parallel).await?;
    } else {
        fetch_stream(transport, url, file, &part, have.min(file.size), settings).await?;
    }
    let hash = hash_file(&part).await?;
    if hash != file.blake3 {
        let _ = tokio::fs::remove_file(&part).await;
        let _ = tokio::fs::remove_file(&journal).await;
        bail!(
            "{}: the content does not match its BLAKE3 hash (got {hash}, expected {}); the partial file was deleted, try again",
            file.name,
            file.blake3
        );
    }
    tokio::fs::rename(&part, &target)
        .await
        .with_context(|| format!("cannot move {} into place", target.display()))?;
    let _ = tokio::fs::remove_file(&journal).await;
    Ok(target)
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
    let reply = transport.get(url, range, Some(&etag), false).await?;
    let mut output = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(part)
        .await
        .with_context(|| format!("cannot write {}", part.display()))?;
    let start = match reply.status {
        206 => have,
        200 => {
            output.set_len(0).await?;
            0
        }
        416 if have == file.size => return Ok(()),
        status => return Err(status_error(file, status)),
    };
    output.seek(io::SeekFrom::Start(start)).await?;
    let bar = progress_bar(settings, file, start);
    let mut body = reply.body;
    let mut position = start;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| {
            format!(
                "{}: the transfer broke off at {position} bytes; run the same command again to resume",
                file.name
            )
        })?;
        output.write_all(&chunk).await?;
        position += chunk.len() as u64;
        bar.set_position(position);
    }
    output.flush().await?;
    bar.finish_and_clear();
    if position != file.size {
        bail!(
            "{}: the transfer ended at {position} of {} bytes; run the same command again to resume",
            file.name,
            file.size
        );
    }
    Ok(())
}

/// What an HTTP status that is not content means for the user.
fn status_error(file: &ManifestFile, status: u16) -> anyhow::Error {
    match status {
        410 => anyhow::anyhow!("this share has ended while downloading {}", file.name),
        429 => anyhow::anyhow!(
            "the share is busy: all the downloads it still allows are in progress; try again later"
        ),
        status => anyhow::anyhow!("{}: the share answered with HTTP {status}", file.name),
    }
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
        let chunks = usize::try_from(size.div_ceil(CHUNK))?;
        let existing = std::fs::read(journal).ok().filter(|bytes| {
            bytes.len() == chunks && std::fs::metadata(part).is_ok_and(|m| m.len() == size)
        });
        if let Some(bytes) = existing {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(journal)
                .with_context(|| format!("cannot open {}", journal.display()))?;
            let done = bytes.iter().map(|&b| b == 1).collect();
            return Ok(Self { file, done });
        }
        // Fresh start: the part file first, then the (all-zero) journal that vouches for it.
        let output = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(part)
            .with_context(|| format!("cannot write {}", part.display()))?;
        output.set_len(size)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(journal)
            .with_context(|| format!("cannot write {}", journal.display()))?;
        file.set_len(chunks as u64)?;
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
            .await??;
    let output = Arc::new(
        std::fs::OpenOptions::new()
            .write(true)
            .open(part)
            .with_context(|| format!("cannot write {}", part.display()))?,
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
            .get(url, Some((from, Some(end))), Some(&etag), true)
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
                    broken = Some(anyhow::Error::from(error));
                    break;
                }
            };
            let len = chunk.len() as u64;
            if position + len > end {
                bail!("{}: a range answer was longer than asked", file.name);
            }
            let (at, writer, marks) = (position, output.clone(), marks.clone());
            tokio::task::spawn_blocking(move || write_and_mark(&writer, &marks, &chunk, at, end))
                .await??;
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
        let error = broken.unwrap_or_else(|| anyhow::anyhow!("the range ended early"));
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

/// BLAKE3 of a file, hashed on a blocking thread.
pub async fn hash_file(path: &Path) -> Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || -> Result<String> {
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_mmap_rayon(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(hasher.finalize().to_hex().to_string())
    })
    .await?
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
