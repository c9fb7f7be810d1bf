//! The receiving side: `veilshare get <link>` fetches a share's `manifest.json` and every file
//! over Tor (its own Arti client) or plain HTTP, resumes interrupted files with `Range`,
//! verifies each file's BLAKE3 hash before moving it into place, and refuses names that would
//! escape the output folder.
//!
//! Invariants:
//! - A file appears under its final name only after its hash matched the manifest; until then
//!   it lives as `.<name>.veilshare-part` next to it.
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

/// Files at least this big are fetched as several ranges in parallel over Tor.
const PARALLEL_THRESHOLD: u64 = 8 << 20;

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
    /// Parallel ranges (separate circuits) for big files over Tor; 1 = one stream.
    pub parallel: usize,
    /// No progress bars.
    pub quiet: bool,
    /// How long to keep trying to reach the share (descriptors may be between uploads).
    pub patience: Duration,
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
struct Reply {
    status: u16,
    body: BoxStream<'static, io::Result<Bytes>>,
}

/// How requests travel.
enum Transport {
    Plain(reqwest::Client),
    Tor(Arc<TorClient<PreferredRuntime>>),
}

impl Transport {
    /// `GET url`, with an optional byte range and `If-Range`.
    async fn get(
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
                let (host, path) = split_url(url)?;
                let client = if isolated {
                    client.isolated_client()
                } else {
                    client.clone()
                };
                let stream = tokio::time::timeout(
                    Duration::from_secs(60),
                    client.connect((host.as_str(), 80)),
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

/// Splits `http://host[:port]/path` into (host, path).
fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url} is not an http:// link"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((host.to_owned(), path.to_owned()))
}

fn is_onion(link: &str) -> bool {
    split_url(link)
        .map(|(host, _)| host.trim_end_matches(":80").ends_with(".onion"))
        .unwrap_or(false)
}

/// Fetches a share; returns the paths written.
pub async fn fetch(settings: &FetchSettings) -> Result<Vec<PathBuf>> {
    let mut base = settings.link.trim().to_owned();
    if !base.starts_with("http://") {
        bail!(
            "{base:?} is not a veilshare link: links start with http:// (onion links end in .onion/)"
        );
    }
    if !base.ends_with('/') {
        base.push('/');
    }
    let transport = if is_onion(&base) {
        let client = crate::tor::create_client(&settings.state_dir, settings.tor_config.as_deref())
            .await
            .context("cannot set up Tor")?;
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
    };

    let manifest = fetch_manifest(&transport, &base, settings.patience).await?;
    for file in &manifest.files {
        veilshare_shared::validate_file_name(&file.name).map_err(|problem| {
            anyhow::anyhow!(
                "refusing the share: {problem} (a file name must not leave the output folder)"
            )
        })?;
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
            crate::public::human_size(manifest.total_size)
        );
    }
    let mut written = Vec::new();
    for file in &manifest.files {
        let url = format!("{base}{}", file.path);
        written.push(fetch_file(&transport, &url, file, settings).await?);
    }
    Ok(written)
}

async fn fetch_manifest(transport: &Transport, base: &str, patience: Duration) -> Result<Manifest> {
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

async fn collect(mut body: BoxStream<'static, io::Result<Bytes>>, limit: usize) -> Result<Vec<u8>> {
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
) -> Result<PathBuf> {
    let target = settings.out_dir.join(&file.name);
    let part = settings
        .out_dir
        .join(format!(".{}.veilshare-part", file.name));
    if target.exists() && hash_file(&target).await? == file.blake3 {
        if !settings.quiet {
            eprintln!("{}: already here, verified", file.name);
        }
        return Ok(target);
    }
    let have = tokio::fs::metadata(&part)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let parallel = matches!(transport, Transport::Tor(_))
        && settings.parallel > 1
        && have == 0
        && file.size >= PARALLEL_THRESHOLD;
    if parallel {
        fetch_ranges(transport, url, file, &part, settings).await?;
    } else {
        fetch_stream(transport, url, file, &part, have.min(file.size), settings).await?;
    }
    let hash = hash_file(&part).await?;
    if hash != file.blake3 {
        let _ = tokio::fs::remove_file(&part).await;
        bail!(
            "{}: the content does not match its BLAKE3 hash (got {hash}, expected {}); the partial file was deleted, try again",
            file.name,
            file.blake3
        );
    }
    tokio::fs::rename(&part, &target)
        .await
        .with_context(|| format!("cannot move {} into place", target.display()))?;
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
        410 => bail!("this share has ended while downloading {}", file.name),
        429 => bail!(
            "the share is busy: all the downloads it still allows are in progress; try again later"
        ),
        status => bail!("{}: the share answered with HTTP {status}", file.name),
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

/// Several ranges at once, each over its own circuit, written at their offsets.
async fn fetch_ranges(
    transport: &Transport,
    url: &str,
    file: &ManifestFile,
    part: &Path,
    settings: &FetchSettings,
) -> Result<()> {
    let output = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(part)
        .with_context(|| format!("cannot write {}", part.display()))?;
    output.set_len(file.size)?;
    let output = Arc::new(output);
    let etag = format!("\"{}\"", file.blake3);
    let parts = settings.parallel as u64;
    let piece = file.size.div_ceil(parts);
    let bar = progress_bar(settings, file, 0);
    let fetches = (0..parts).map(|index| {
        let start = index * piece;
        let end = ((index + 1) * piece).min(file.size);
        let output = output.clone();
        let etag = etag.clone();
        let bar = bar.clone();
        async move {
            if start >= end {
                return Ok(());
            }
            let reply = transport
                .get(url, Some((start, Some(end))), Some(&etag), true)
                .await?;
            if reply.status != 206 {
                bail!(
                    "{}: range request answered with HTTP {}",
                    file.name,
                    reply.status
                );
            }
            let mut body = reply.body;
            let mut position = start;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.with_context(|| format!("{}: a range broke off", file.name))?;
                let len = chunk.len() as u64;
                if position + len > end {
                    bail!("{}: a range answer was longer than asked", file.name);
                }
                let at = position;
                let writer = output.clone();
                tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    writer.write_all_at(&chunk, at)
                })
                .await??;
                position += len;
                bar.inc(len);
            }
            if position != end {
                bail!(
                    "{}: a range ended early; run the same command again",
                    file.name
                );
            }
            Ok(())
        }
    });
    let results = futures::future::join_all(fetches).await;
    bar.finish_and_clear();
    for result in results {
        result?;
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
