//! The plain listener's connections: a file's bytes leave with `sendfile(2)`, from the page
//! cache to the socket, and everything else is served by hyper as on any other listener.
//!
//! Hyper writes every body from user space (hyper#3026): each piece of a file was read into
//! memory on a blocking thread, handed over a channel and written to the socket, which made a
//! download 0.72× nginx's `sendfile`. So this module reads each request head of a connection
//! itself (parsed by `httparse`, hyper's parser) and, for a `GET` or `HEAD` it can judge
//! (HTTP/1.1, no body, no `Upgrade` or `Expect`), calls the router with a [`SendfileOk`] mark
//! and writes the answer here. When the router attached a [`FileBody`] (a file's bytes, or a
//! zip's parts), its content leaves with `sendfile`; any other answer is framed as hyper
//! frames it (its `Content-Length`, or chunked). The first head it cannot judge (an upload, a
//! WebSocket, HTTP/1.0, a malformed or oversized head) hands the connection, with every byte
//! read from it, to [`super::serve_connection`] for the rest of its life: hyper answers those
//! exactly as before.
//!
//! Invariants (those of [`super`], kept here by hand):
//! - A head must be complete within the head deadline; a wait to write that sees no byte move
//!   for the idle deadline ends the connection.
//! - A request is in flight from its complete head until its answer's last byte: the cap
//!   never pushes it out. A connection waiting for a head gives way to the cap, and to `stop`.
//! - Content is counted as it leaves: the meter sees every byte `sendfile` sent, and hears
//!   [`Meter::complete`] only when all were; the next request waits until it is recorded. A
//!   revocation cuts the answer between two calls.
//! - A head this module cannot judge goes to hyper untouched; nothing is answered here that
//!   hyper would have refused.
//!
//! A `sendfile` call that meets pages not in memory waits for the disk on a runtime thread, as
//! nginx's does; each call is at most [`MAX_CALL`] bytes, and the kernel is asked to read ahead
//! of the answer ([`READ_AHEAD`]), so that the wait is rare and short.

use std::{io, time::Duration};

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncWriteExt, Interest},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

use super::{Admission, Audience, InFlight, deadlines};
use crate::core::body::{FileBody, FileBodySlot, Part, SendfileOk, Source};

/// The longest head read here: hyper's buffer limit on this listener. A longer one goes to
/// hyper, which refuses it.
const MAX_HEAD: usize = 64 << 10;

/// Headers in a head read here: hyper's default limit. More go to hyper, which refuses them.
const MAX_HEADERS: usize = 100;

/// The most one `sendfile` call is asked to send (nginx's `sendfile_max_chunk`): a revocation
/// and the other tasks of the thread wait at most that long.
const MAX_CALL: usize = 2 << 20;

/// How far ahead of the answer the kernel is asked to read the file (`POSIX_FADV_WILLNEED`).
const READ_AHEAD: u64 = 8 << 20;

/// Serves `router` on one connection of the plain listener, as [`super::serve_connection`]
/// does for strangers, with the answers this module can write written here.
pub async fn serve_connection(
    stream: TcpStream,
    router: axum::Router,
    stop: CancellationToken,
    admission: Admission,
) {
    let (head_timeout, idle) = deadlines();
    // The last bytes of an answer leave at once instead of waiting for the client's delayed
    // acknowledgement of the ones before (Nagle's algorithm); full segments are unaffected.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let mut buf = BytesMut::with_capacity(4 << 10);
    loop {
        let head = tokio::select! {
            biased;
            () = admission.evict.cancelled() => {
                tracing::debug!("an idle connection made room for a new one");
                return;
            }
            () = stop.cancelled() => return,
            head = read_head(&stream, &mut buf, head_timeout) => head,
        };
        let (request, close) = match head {
            Head::Ours { request, close, .. } => (request, close),
            Head::Hyper => {
                super::serve_connection(
                    stream,
                    buf.freeze(),
                    router,
                    Audience::Strangers,
                    stop,
                    admission,
                    None,
                )
                .await;
                return;
            }
            Head::Gone => return,
        };
        let busy = InFlight::new(&admission.in_flight);
        let head_only = request.method() == Method::HEAD;
        let response = match tower::ServiceExt::oneshot(router.clone(), *request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let close = close || stop.is_cancelled();
        let answered = answer(&stream, response, head_only, close, idle).await;
        drop(busy);
        match answered {
            Ok(()) if !close => {}
            Ok(()) => {
                // The answer is whole: end it with a FIN, as hyper does.
                let mut stream = stream;
                let _ = tokio::time::timeout(idle, stream.shutdown()).await;
                return;
            }
            Err(error) => {
                tracing::debug!(%error, "connection ended with an error");
                return;
            }
        }
    }
}

/// A request head read from a connection.
enum Head {
    /// One this module answers (with whether the client asked to close after it, and the
    /// head's length in bytes).
    Ours {
        request: Box<http::Request<axum::body::Body>>,
        close: bool,
        len: usize,
    },
    /// One for hyper: everything read so far is in the buffer.
    Hyper,
    /// The connection closed, failed or took too long.
    Gone,
}

/// Reads until `buf` holds a complete head (or more); a complete head this module answers is
/// taken out of the buffer.
async fn read_head(stream: &TcpStream, buf: &mut BytesMut, timeout: Duration) -> Head {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if !buf.is_empty() {
            match parse_head(buf) {
                Some(head @ Head::Ours { len, .. }) => {
                    buf.advance(len);
                    return head;
                }
                Some(head) => return head,
                None if buf.len() >= MAX_HEAD => return Head::Hyper,
                None => {}
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4 << 10);
        }
        let read = tokio::time::timeout_at(deadline, async {
            loop {
                stream.readable().await?;
                match stream.try_read_buf(buf) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                    result => return result,
                }
            }
        })
        .await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return Head::Gone,
            Ok(Ok(_)) => {}
            Err(_) => {
                tracing::debug!("no complete request head in time; closing");
                return Head::Gone;
            }
        }
    }
}

/// Judges the head at the start of `buf`: `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let len = match head.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(Head::Hyper),
    };
    let method = match head.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Some(Head::Hyper),
    };
    if head.version != Some(1) {
        return Some(Head::Hyper);
    }
    let Some(uri) = head
        .path
        .filter(|path| path.starts_with('/'))
        .and_then(|path| path.parse::<http::Uri>().ok())
    else {
        return Some(Head::Hyper);
    };
    let mut map = HeaderMap::with_capacity(head.headers.len());
    let mut close = false;
    for field in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) else {
            return Some(Head::Hyper);
        };
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
        {
            return Some(Head::Hyper);
        }
        if name == header::CONNECTION {
            for token in field.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Some(Head::Hyper);
                }
            }
        }
        map.append(name, value);
    }
    let mut request = http::Request::new(axum::body::Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_11;
    *request.headers_mut() = map;
    request.extensions_mut().insert(SendfileOk);
    Some(Head::Ours {
        request: Box::new(request),
        close,
        len,
    })
}

/// How an answer's body is delimited.
enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked (a body of unknown length).
    Chunked,
}

/// Writes `response` as hyper would frame it (`Content-Length` when the body's length is known,
/// chunked when not, no body to `HEAD` nor for 1xx, 204 and 304), its [`FileBody`] (if any)
/// with `sendfile`. `Ok` when the whole answer was sent.
async fn answer(
    stream: &TcpStream,
    mut response: axum::response::Response,
    head_only: bool,
    close: bool,
    idle: Duration,
) -> io::Result<()> {
    let file_body = response
        .extensions_mut()
        .remove::<FileBodySlot>()
        .and_then(|slot| slot.take());
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let may_state_length = !(status.is_informational() || matches!(status.as_u16(), 204 | 304));
    let has_body = may_state_length && !head_only;

    // Hyper's rules: an empty body states 0 (to a `HEAD`, the length the handler stated, which
    // is what a `GET` gets), a stated length is kept, a known one is stated, and an unknown
    // one is chunked.
    let empty = file_body.is_none() && hyper::body::Body::is_end_stream(&body);
    let (framing, stated) = if let Some(file_body) = &file_body {
        let len = file_body.parts.iter().map(Part::len).sum::<u64>();
        if declared.is_some_and(|declared| declared != len) {
            return Err(io::Error::other("an answer's parts differ from its length"));
        }
        (Framing::Length(len), Some(len))
    } else if empty {
        (
            Framing::Length(0),
            if head_only { declared } else { Some(0) },
        )
    } else {
        match declared.or_else(|| hyper::body::Body::size_hint(&body).exact()) {
            Some(len) => (Framing::Length(len), Some(len)),
            None => (Framing::Chunked, None),
        }
    };

    // The head, its fields in hyper's order: a stated `Content-Length` where the handler put
    // it (an empty body's at the end), `Connection: close` after the handler's fields, then
    // the framing hyper adds.
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    head.extend_from_slice(b"\r\n");
    let mut length_written = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            // An empty body's stated length goes at the end (hyper writes its 0 there).
            let in_place = head_only || !empty;
            if let Some(len) = stated.filter(|_| in_place && may_state_length && !length_written) {
                push_field(&mut head, "content-length", len.to_string().as_bytes());
                length_written = true;
            }
            continue;
        }
        if name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        push_field(&mut head, name.as_str(), value.as_bytes());
    }
    if close {
        push_field(&mut head, "connection", b"close");
    }
    if let Some(len) = stated.filter(|_| may_state_length && !length_written) {
        push_field(&mut head, "content-length", len.to_string().as_bytes());
    }
    if matches!(framing, Framing::Chunked) && has_body {
        push_field(&mut head, "transfer-encoding", b"chunked");
    }
    head.extend_from_slice(b"\r\n");
    write_all(stream, &head, idle).await?;
    if !has_body {
        return Ok(());
    }
    match file_body {
        Some(file_body) => send_parts(stream, file_body, stated.unwrap_or(0), idle).await,
        None => send_body(stream, body, framing, idle).await,
    }
}

fn push_field(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Sends a [`FileBody`] of `len` bytes (its parts must add up to that), counting its content.
async fn send_parts(
    stream: &TcpStream,
    file_body: FileBody,
    len: u64,
    idle: Duration,
) -> io::Result<()> {
    let FileBody { parts, mut meter } = file_body;
    let revoked = meter.revoked();
    let mut content = 0u64;
    let mut sent_with_sendfile = 0u64;
    for part in parts {
        if revoked.is_cancelled() {
            return Err(io::Error::other("the share was revoked"));
        }
        match part {
            Part::Bytes(bytes) => write_all(stream, &bytes, idle).await?,
            Part::Content { len, open } => match open() {
                Source::File { file, start } => {
                    let mut progress = |sent: u64| {
                        content += sent;
                        sent_with_sendfile += sent;
                        meter.content_sent(content);
                    };
                    send_file(stream, &file, start, len, idle, &revoked, &mut progress).await?;
                }
                Source::Stream(mut chunks) => {
                    let mut left = len;
                    while left > 0 {
                        let chunk = tokio::select! {
                            biased;
                            () = revoked.cancelled() => {
                                return Err(io::Error::other("the share was revoked"));
                            }
                            chunk = chunks.next() => chunk,
                        };
                        let chunk = chunk.ok_or_else(|| {
                            io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "stored blob is shorter than its record",
                            )
                        })??;
                        let take = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                        write_all(stream, &chunk[..take], idle).await?;
                        left -= take as u64;
                        content += take as u64;
                        meter.content_sent(content);
                    }
                }
            },
        }
    }
    tracing::debug!(
        bytes = len,
        sendfile = sent_with_sendfile,
        "an answer left with sendfile"
    );
    meter.complete().await;
    Ok(())
}

/// Sends `start..start + len` of `file` with `sendfile`, telling `progress` each count sent.
async fn send_file(
    stream: &TcpStream,
    file: &std::fs::File,
    start: u64,
    len: u64,
    idle: Duration,
    revoked: &CancellationToken,
    progress: &mut impl FnMut(u64),
) -> io::Result<()> {
    let end = start + len;
    let mut offset = start;
    let mut advised = start;
    while offset < end {
        if advised < end && advised - offset < READ_AHEAD / 2 {
            let window = READ_AHEAD.min(end - advised);
            // Only a hint: a file system that ignores it costs a wait in `sendfile` instead.
            let _ = rustix::fs::fadvise(
                file,
                advised,
                std::num::NonZeroU64::new(window),
                rustix::fs::Advice::WillNeed,
            );
            advised += window;
        }
        let want = usize::try_from(end - offset).map_or(MAX_CALL, |left| left.min(MAX_CALL));
        let before = offset;
        let sent = loop {
            let attempt = stream.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(stream, file, Some(&mut offset), want).map_err(io::Error::from)
            });
            match attempt {
                Ok(sent) => break sent,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    writable(stream, idle, Some(revoked)).await?;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        };
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stored blob is shorter than its record",
            ));
        }
        // `sendfile` moved the offset by what it sent.
        debug_assert_eq!(offset, before + sent as u64);
        progress(sent as u64);
        if revoked.is_cancelled() {
            return Err(io::Error::other("the share was revoked"));
        }
        // A reader as fast as the disk never makes the socket wait: let the thread's other
        // tasks run now and then all the same.
        tokio::task::coop::consume_budget().await;
    }
    Ok(())
}

/// Waits until `stream` can take bytes: an error once `idle` passed without that, or when
/// `revoked` is cancelled.
async fn writable(
    stream: &TcpStream,
    idle: Duration,
    revoked: Option<&CancellationToken>,
) -> io::Result<()> {
    let revoked = async {
        match revoked {
            Some(revoked) => revoked.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        () = revoked => Err(io::Error::other("the share was revoked")),
        ready = tokio::time::timeout(idle, stream.writable()) => match ready {
            Ok(ready) => ready,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no byte moved for too long")),
        },
    }
}

/// Writes all of `data`; an error once a wait to write saw no byte move for `idle`.
async fn write_all(stream: &TcpStream, mut data: &[u8], idle: Duration) -> io::Result<()> {
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => data = &data[written..],
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                writable(stream, idle, None).await?;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Sends an ordinary body with `framing`: never more than a stated length, and an error (the
/// connection closes, as with hyper) when the body fails or ends short.
async fn send_body(
    stream: &TcpStream,
    mut body: axum::body::Body,
    framing: Framing,
    idle: Duration,
) -> io::Result<()> {
    let mut sent = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        match framing {
            Framing::Length(len) => {
                if sent + data.len() as u64 > len {
                    return Err(io::Error::other("a body longer than its length"));
                }
                write_all(stream, &data, idle).await?;
            }
            Framing::Chunked => {
                let size = format!("{:X}\r\n", data.len());
                write_all(stream, size.as_bytes(), idle).await?;
                write_all(stream, &data, idle).await?;
                write_all(stream, b"\r\n", idle).await?;
            }
        }
        sent += data.len() as u64;
    }
    match framing {
        Framing::Length(len) if sent != len => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "a body shorter than its length",
        )),
        Framing::Length(_) => Ok(()),
        Framing::Chunked => write_all(stream, b"0\r\n\r\n", idle).await,
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, net::SocketAddr};

    use axum::{
        Router,
        body::Body,
        http::StatusCode,
        response::{IntoResponse, Response},
        routing::{get, post},
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use std::sync::{Arc, Mutex};

    use bytes::Bytes;

    use super::*;
    use crate::{core::body::Meter, transport::http::ConnectionCap};

    /// What a test meter heard: the last total, and how many answers completed.
    #[derive(Clone, Default)]
    struct Heard(Arc<Mutex<(u64, usize)>>);

    impl Heard {
        fn get(&self) -> (u64, usize) {
            *self.0.lock().expect("heard")
        }
    }

    struct TestMeter(Heard, CancellationToken);

    impl Meter for TestMeter {
        fn content_sent(&mut self, total: u64) {
            self.0.0.lock().expect("heard").0 = total;
        }

        fn complete(self: Box<Self>) -> futures::future::BoxFuture<'static, ()> {
            self.0.0.lock().expect("heard").1 += 1;
            Box::pin(async {})
        }

        fn revoked(&self) -> CancellationToken {
            self.1.clone()
        }
    }

    /// A zip-like header, a file from byte 100 on, and a tail from a stream.
    const HEADER: &[u8] = b"header bytes, not content";
    const TAIL: &[u8] = b"tail!";

    struct Fixture {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        content: Vec<u8>,
        heard: Heard,
        revoke: CancellationToken,
    }

    impl Fixture {
        fn new(len: usize) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("blob");
            let content: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4093) as u8).collect();
            std::fs::File::create(&path)
                .and_then(|mut file| file.write_all(&content))
                .expect("write");
            Self {
                _dir: dir,
                path,
                content,
                heard: Heard::default(),
                revoke: CancellationToken::new(),
            }
        }

        /// The bytes `/file` answers.
        fn expected(&self) -> Vec<u8> {
            [HEADER, &self.content[100..], TAIL].concat()
        }

        /// `/file` (a [`FileBody`] when the request is marked, the same bytes in memory when
        /// not), and ordinary answers of every framing.
        fn router(&self) -> Router {
            let (path, heard, revoke) =
                (self.path.clone(), self.heard.clone(), self.revoke.clone());
            let expected = self.expected();
            let file = move |method: Method, sendfile: Option<axum::Extension<SendfileOk>>| {
                let (path, heard, revoke, expected) = (
                    path.clone(),
                    heard.clone(),
                    revoke.clone(),
                    expected.clone(),
                );
                async move {
                    let len = expected.len() as u64;
                    let head = || {
                        Response::builder()
                            .header(header::CONTENT_TYPE, "application/zip")
                            .header(header::CONTENT_LENGTH, len)
                            .header("x-after-length", "1")
                    };
                    if sendfile.is_none() || method == Method::HEAD {
                        return head().body(Body::from(expected)).expect("response");
                    }
                    let content = len - (HEADER.len() + TAIL.len()) as u64;
                    let body = FileBody {
                        parts: vec![
                            Part::Bytes(Bytes::from_static(HEADER)),
                            Part::Content {
                                len: content,
                                open: Box::new(move || Source::File {
                                    file: std::fs::File::open(path).expect("open"),
                                    start: 100,
                                }),
                            },
                            Part::Content {
                                len: TAIL.len() as u64,
                                open: Box::new(|| {
                                    Source::Stream(
                                        futures::stream::iter([
                                            Ok(Bytes::from_static(&TAIL[..2])),
                                            Ok(Bytes::from_static(&TAIL[2..])),
                                        ])
                                        .boxed(),
                                    )
                                }),
                            },
                        ],
                        meter: Box::new(TestMeter(heard, revoke)),
                    };
                    let mut response = head().body(Body::empty()).expect("response");
                    response.extensions_mut().insert(FileBodySlot::new(body));
                    response
                }
            };
            Router::new()
                .route("/file", get(file))
                .route("/text", get(|| async { "hello" }))
                .route("/none", get(|| async { StatusCode::NO_CONTENT }))
                .route("/same", get(|| async { StatusCode::NOT_MODIFIED }))
                .route("/empty", get(|| async { "" }))
                .route(
                    "/stream",
                    get(|| async {
                        Body::from_stream(futures::stream::iter([
                            Ok::<_, io::Error>(Bytes::from_static(b"ab")),
                            Ok(Bytes::from_static(b"")),
                            Ok(Bytes::from_static(b"cdefghijklmnopq")),
                        ]))
                    }),
                )
                .route(
                    "/upload",
                    post(|body: Bytes| async move { body.len().to_string().into_response() }),
                )
        }
    }

    /// Serves `router` on a new listener: with this module (`fast`), or with hyper alone.
    async fn listen(router: Router, fast: bool) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cap = ConnectionCap::new(16);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (router, stop) = (router.clone(), CancellationToken::new());
                let admission = cap.try_admit().expect("room");
                if fast {
                    tokio::spawn(serve_connection(stream, router, stop, admission));
                } else {
                    tokio::spawn(super::super::serve_connection(
                        stream,
                        Bytes::new(),
                        router,
                        Audience::Strangers,
                        stop,
                        admission,
                        None,
                    ));
                }
            }
        });
        addr
    }

    /// Sends `request` on a new connection and reads until the server closes it.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("request");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
            .await
            .expect("the server closed the connection")
            .expect("read");
        answer
    }

    fn get_request(method: &str, path: &str, close: bool) -> Vec<u8> {
        let connection = if close { "Connection: close\r\n" } else { "" };
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{connection}\r\n").into_bytes()
    }

    #[tokio::test]
    async fn every_answer_is_byte_for_byte_what_hyper_sends() {
        let fixture = Fixture::new(3 << 20);
        let ours = listen(fixture.router(), true).await;
        let hypers = listen(fixture.router(), false).await;
        let requests = [
            ("GET", "/file"),
            ("HEAD", "/file"),
            ("GET", "/text"),
            ("HEAD", "/text"),
            ("GET", "/none"),
            ("GET", "/same"),
            ("GET", "/empty"),
            ("HEAD", "/empty"),
            ("GET", "/stream"),
            ("HEAD", "/stream"),
            ("GET", "/missing"),
            ("GET", "/upload"),
        ];
        for (method, path) in requests {
            let request = get_request(method, path, true);
            let (a, b) = (
                exchange(ours, &request).await,
                exchange(hypers, &request).await,
            );
            assert!(
                a == b,
                "{method} {path}:\nours:  {:?}\nhyper: {:?}",
                String::from_utf8_lossy(&a[..a.len().min(400)]),
                String::from_utf8_lossy(&b[..b.len().min(400)])
            );
        }
        // The file's bytes, sent once (HEAD sends none), and counted: header bytes are not
        // content.
        let answer = exchange(ours, &get_request("GET", "/file", true)).await;
        let body_at = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("head")
            + 4;
        assert!(
            answer[body_at..] == fixture.expected()[..],
            "the file's bytes"
        );
        let content = (fixture.expected().len() - HEADER.len()) as u64;
        assert_eq!(fixture.heard.get(), (content, 2));
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_and_an_upload_goes_to_hyper() {
        let fixture = Fixture::new(1 << 20);
        let ours = listen(fixture.router(), true).await;
        // Three heads in one write, then an upload (hyper's), then a request after it.
        let mut request = [
            get_request("GET", "/file", false),
            get_request("GET", "/stream", false),
            get_request("HEAD", "/file", false),
        ]
        .concat();
        request.extend_from_slice(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde",
        );
        request.extend_from_slice(&get_request("GET", "/text", true));
        let answer = exchange(ours, &request).await;
        let expected = [
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/zip\r\ncontent-length: {len}\r\nx-after-length: 1\r\n\r\n",
                len = fixture.expected().len()
            )
            .into_bytes(),
            fixture.expected(),
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\nF\r\ncdefghijklmnopq\r\n0\r\n\r\n".to_vec(),
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/zip\r\ncontent-length: {len}\r\nx-after-length: 1\r\n\r\n",
                len = fixture.expected().len()
            )
            .into_bytes(),
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 1\r\n\r\n5".to_vec(),
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello".to_vec(),
        ]
        .concat();
        assert!(
            answer == expected,
            "got {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(2000)])
        );
        assert_eq!(fixture.heard.get().1, 1, "one complete file answer");
    }

    #[tokio::test]
    async fn a_revocation_cuts_a_file_answer_and_it_is_not_complete() {
        let fixture = Fixture::new(64 << 20);
        let ours = listen(fixture.router(), true).await;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(64 << 10).expect("buffer");
        let mut stream = socket.connect(ours).await.expect("connect");
        stream
            .write_all(&get_request("GET", "/file", false))
            .await
            .expect("request");
        let mut first = vec![0u8; 1 << 20];
        stream.read_exact(&mut first).await.expect("first MiB");
        fixture.revoke.cancel();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest))
            .await
            .expect("the connection was cut")
            .ok();
        let (sent, complete) = fixture.heard.get();
        assert_eq!(complete, 0, "a cut answer is not complete");
        assert!(
            sent < fixture.content.len() as u64 - 100 && first.len() + rest.len() < 64 << 20,
            "cut short: {sent} counted"
        );
    }

    #[test]
    fn heads_this_module_cannot_judge_go_to_hyper() {
        for head in [
            &b"POST / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: keep-alive, upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
        ] {
            assert!(
                matches!(parse_head(head), Some(Head::Hyper)),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(parse_head(many.as_bytes()), Some(Head::Hyper)));
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost").is_none());
        match parse_head(b"GET /a?b HTTP/1.1\r\nConnection: Close\r\n\r\nGET") {
            Some(Head::Ours {
                request,
                close,
                len,
            }) => {
                assert_eq!(request.uri(), "/a?b");
                assert!(close && len == 40);
                assert!(request.extensions().get::<SendfileOk>().is_some());
            }
            _ => panic!("a plain GET is ours"),
        }
    }
}
