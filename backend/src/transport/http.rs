//! Serving HTTP/1.1 to strangers, the same way on the plain listener and on onion streams:
//! a connection that sends no complete request head within [`HEAD_TIMEOUT`], or moves no byte
//! either way for [`IDLE_TIMEOUT`] (a recipient who stopped reading holds a download, and so
//! the share's limit, until then), is closed; a listener serves at most [`MAX_CONNECTIONS`] at
//! once.
//!
//! At the cap, a new connection takes the place of the oldest one that has no request in
//! flight (one still sending its first head a byte at a time, or idle between requests): a
//! slowloris crowd then only pushes itself out, and a real client, who sends its head at once,
//! gets in. Only when every connection is in the middle of a request is the newcomer answered
//! a short 503, instead of running out of file descriptors.
//!
//! Invariants:
//! - Every byte a stranger sends is read under a deadline; no connection lives without
//!   progress.
//! - A connection with a request in flight is never pushed out; an upgraded one (the event
//!   socket) counts as always in flight.
//! - A refused connection costs one small write and a close, nothing else.

use std::{
    collections::BTreeMap,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use hyper::body::{Body as HttpBody, Frame, SizeHint};

pub mod plain;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

/// The longest a client may take to send a whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest a connection may move no byte, in or out.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The deadlines in force: [`HEAD_TIMEOUT`] and [`IDLE_TIMEOUT`], or shorter ones from the
/// environment (`VEILSHARE_HTTP_HEAD_SECS`, `VEILSHARE_HTTP_IDLE_SECS`: the tests see the
/// deadlines act in seconds; an operator may tighten them). Read once.
fn deadlines() -> (Duration, Duration) {
    static DEADLINES: std::sync::OnceLock<(Duration, Duration)> = std::sync::OnceLock::new();
    *DEADLINES.get_or_init(|| {
        let shorter = |name: &str, default: Duration| {
            std::env::var(name)
                .ok()
                .and_then(|value| value.parse::<u64>().ok())
                .map(Duration::from_secs)
                .filter(|secs| !secs.is_zero())
                .map_or(default, |secs| secs.min(default))
        };
        (
            shorter("VEILSHARE_HTTP_HEAD_SECS", HEAD_TIMEOUT),
            shorter("VEILSHARE_HTTP_IDLE_SECS", IDLE_TIMEOUT),
        )
    })
}

/// How long a body may send nothing before the request is given up ([`IDLE_TIMEOUT`], or
/// shorter from `VEILSHARE_HTTP_IDLE_SECS`): for handlers that hold something while they read.
pub fn idle_deadline() -> Duration {
    deadlines().1
}

/// The answer to a connection beyond the cap.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 10\r\nConnection: close\r\n\r\n";

/// Connections one listener serves at once: well within the usual limit of 1024 open files
/// (the store, Tor and the other listeners need theirs).
pub const MAX_CONNECTIONS: usize = 512;

/// The cap in force: [`MAX_CONNECTIONS`], or a smaller one from `VEILSHARE_HTTP_MAX_CONNECTIONS`
/// (the tests see the cap act with a few connections). Read once.
pub fn max_connections() -> usize {
    static CAP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| {
        std::env::var("VEILSHARE_HTTP_MAX_CONNECTIONS")
            .ok()
            .and_then(|value| value.parse::<usize>().ok())
            .filter(|cap| *cap > 0)
            .map_or(MAX_CONNECTIONS, |cap| cap.min(MAX_CONNECTIONS))
    })
}

/// Who a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Anyone (the public site, onion streams): the head and idle deadlines apply.
    Strangers,
    /// This machine's user (the local API, whose event socket may rightly be quiet for long):
    /// only the head deadline applies.
    Owner,
}

/// A cap on the connections one listener (or onion service) serves at once, which makes room
/// for a newcomer by pushing out the oldest connection without a request in flight.
#[derive(Clone, Debug)]
pub struct ConnectionCap {
    table: Arc<Mutex<Table>>,
    limit: usize,
}

/// The connections served now, oldest first (ids only grow).
#[derive(Debug, Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Slot>,
}

#[derive(Debug)]
struct Slot {
    in_flight: Arc<AtomicUsize>,
    evict: CancellationToken,
}

/// One admitted connection's place under the cap; the place is given back when it drops.
#[derive(Debug)]
pub struct Admission {
    table: Arc<Mutex<Table>>,
    id: u64,
    in_flight: Arc<AtomicUsize>,
    evict: CancellationToken,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.open.remove(&self.id);
    }
}

impl ConnectionCap {
    /// At most `connections` at once.
    pub fn new(connections: usize) -> Self {
        Self {
            table: Arc::default(),
            limit: connections.max(1),
        }
    }

    /// A place for one more connection: a free one, or the place of the oldest connection
    /// with no request in flight (told to close at once). `None` when every connection is
    /// busy with a request.
    pub fn try_admit(&self) -> Option<Admission> {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.open.len() >= self.limit {
            let idle = table
                .open
                .iter()
                .find(|(_, slot)| slot.in_flight.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some(slot) = table.open.remove(&idle) {
                slot.evict.cancel();
            }
        }
        let id = table.next;
        table.next += 1;
        let (in_flight, evict) = (Arc::new(AtomicUsize::new(0)), CancellationToken::new());
        table.open.insert(
            id,
            Slot {
                in_flight: in_flight.clone(),
                evict: evict.clone(),
            },
        );
        Some(Admission {
            table: self.table.clone(),
            id,
            in_flight,
            evict,
        })
    }

    /// Connections holding a place now.
    pub fn held(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .len()
    }
}

/// Tells a connection beyond the cap to come back later, and closes it.
pub async fn refuse_busy<I: AsyncWrite + Unpin>(mut io: I) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = io.write_all(BUSY).await;
        let _ = io.shutdown().await;
    })
    .await;
}

/// Serves `router` on one connection until the client is done, the connection idles or
/// stalls (strangers only), or `stop` asks for a graceful end (the request under way
/// finishes). Upgrades (the events WebSocket) are served too.
///
/// Once `gone` (if given) is cancelled, a request that arrives is not answered: the connection
/// closes instead (an onion service that ended; a request on a kept-alive stream shows its
/// client has every byte of the previous answer, so nothing sent is cut short).
///
/// `read` holds bytes already read from `io` (the plain listener hands over a head it did not
/// answer itself): hyper reads them first.
pub async fn serve_connection<I>(
    io: I,
    read: bytes::Bytes,
    router: axum::Router,
    audience: Audience,
    stop: CancellationToken,
    admission: Admission,
    gone: Option<CancellationToken>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (head, idle) = deadlines();
    let idle = match audience {
        Audience::Strangers => Some(idle),
        Audience::Owner => None,
    };
    let io = hyper_util::rt::TokioIo::new(Idle::new(io, idle).after(read));
    let close = CancellationToken::new();
    let service = Tracked {
        router,
        in_flight: admission.in_flight.clone(),
        gone,
        close: close.clone(),
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(head)
        // No `Date`: a service's clock skew tells its host apart (and links its shares).
        .auto_date_header(false)
        .max_buf_size(64 << 10)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = admission.evict.cancelled() => {
            tracing::debug!("an idle connection made room for a new one");
            return;
        }
        () = close.cancelled() => {
            tracing::debug!("a request after the service ended; closing its connection");
            return;
        }
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Serves `router` on `listener` until `stop`, each connection as [`serve_connection`], at
/// most `cap` at once; returns once every connection has ended.
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    audience: Audience,
    stop: CancellationToken,
    cap: ConnectionCap,
) -> io::Result<()> {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        // Reap what ended, so the set does not grow with the connections ever served.
        while connections.try_join_next().is_some() {}
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, say: wait a little rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(admission) = cap.try_admit() else {
            connections.spawn(refuse_busy(stream));
            continue;
        };
        let (router, stop) = (router.clone(), stop.clone());
        match audience {
            // Files leave the plain listener with `sendfile`.
            Audience::Strangers => {
                connections.spawn(plain::serve_connection(stream, router, stop, admission));
            }
            Audience::Owner => {
                connections.spawn(serve_connection(
                    stream,
                    bytes::Bytes::new(),
                    router,
                    audience,
                    stop,
                    admission,
                    None,
                ));
            }
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The router, counting the connection's requests in flight: from the moment a head is read
/// until the response's last byte is handed over.
#[derive(Clone)]
struct Tracked {
    router: axum::Router,
    in_flight: Arc<AtomicUsize>,
    /// Cancelled when the service ended: requests from then on close the connection.
    gone: Option<CancellationToken>,
    /// Closes this connection.
    close: CancellationToken,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Tracked {
    type Response = http::Response<axum::body::Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        if self
            .gone
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
        {
            self.close.cancel();
            return Box::pin(std::future::pending());
        }
        let busy = InFlight::new(&self.in_flight);
        let router = self.router.clone();
        Box::pin(async move {
            let response = tower::ServiceExt::oneshot(router, request).await?;
            if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                // The connection now carries the event socket: in flight for good.
                busy.for_good();
                return Ok(response);
            }
            Ok(response.map(|body| axum::body::Body::new(Sending { body, _busy: busy })))
        })
    }
}

/// One request in flight, until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }

    /// Leaves the count raised for as long as the connection lives.
    fn for_good(self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted in flight until it is sent (or dropped).
struct Sending {
    body: axum::body::Body,
    _busy: InFlight,
}

impl HttpBody for Sending {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An I/O object that fails once no byte moved either way for its timeout (if it has one),
/// while a read or a write waits; bytes already read from `inner` can be put in front.
struct Idle<I> {
    inner: I,
    /// The timeout and the deadline it sets.
    deadline: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    /// Read before `inner`.
    read: bytes::Bytes,
}

impl<I> Idle<I> {
    fn new(inner: I, timeout: Option<Duration>) -> Self {
        Self {
            inner,
            deadline: timeout.map(|timeout| (timeout, Box::pin(tokio::time::sleep(timeout)))),
            read: bytes::Bytes::new(),
        }
    }

    /// Reads give `read` before anything from the inner object.
    fn after(mut self, read: bytes::Bytes) -> Self {
        self.read = read;
        self
    }

    fn moved(&mut self) {
        if let Some((timeout, deadline)) = &mut self.deadline {
            let next = tokio::time::Instant::now() + *timeout;
            deadline.as_mut().reset(next);
        }
    }

    /// After a write: bytes written reset the deadline; a pending write fails once it passed.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.check(cx),
        }
    }

    /// On a pending read or write: an error once the deadline passed (the deadline's waker is
    /// registered, so the connection is woken to see it).
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some((_, deadline)) = &mut self.deadline else {
            return Poll::Pending;
        };
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no byte moved for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Idle<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let take = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read.split_to(take));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.check(cx).map(|result| result.map(|_| ())),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Idle<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, data);
        this.wrote(cx, written)
    }

    /// Vectored writes pass through, so hyper queues a body's chunks instead of copying each
    /// into a buffer of its own (a chunk-sized buffer per connection, a copy per byte).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, data);
        this.wrote(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.check(cx).map(|result| result.map(|_| ())),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_talking_one_does_not() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut idle = Idle::new(ours, Some(Duration::from_millis(300)));
        let mut buf = [0u8; 8];
        // Bytes keep arriving more often than the timeout: no error.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            theirs.write_all(b"x").await.expect("write");
            assert_eq!(idle.read(&mut buf).await.expect("read"), 1);
        }
        // Then silence.
        let error = idle.read(&mut buf).await.expect_err("timed out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn bytes_read_before_come_first_then_the_connection() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut idle = Idle::new(ours, None).after(bytes::Bytes::from_static(b"GET / HT"));
        theirs.write_all(b"TP/1.1\r\n").await.expect("write");
        drop(theirs);
        let mut all = Vec::new();
        idle.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_times_out() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut idle = Idle::new(ours, Some(Duration::from_millis(300)));
        let error = idle
            .write_all(&[0u8; 1024])
            .await
            .expect_err("the write stalls");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn the_cap_pushes_out_the_oldest_idle_connection_and_refuses_when_all_are_busy() {
        let cap = ConnectionCap::new(3);
        let a = cap.try_admit().expect("a");
        let b = cap.try_admit().expect("b");
        let c = cap.try_admit().expect("c");
        // a and c serve a request; b waits for its head.
        let (_a_busy, _c_busy) = (InFlight::new(&a.in_flight), InFlight::new(&c.in_flight));
        let d = cap.try_admit().expect("room made");
        assert!(b.evict.is_cancelled() && !a.evict.is_cancelled() && !c.evict.is_cancelled());
        assert_eq!(cap.held(), 3);
        // d waits for its head too: the next newcomer takes its place.
        let e = cap.try_admit().expect("room made");
        assert!(d.evict.is_cancelled());
        // Everyone busy: refused.
        InFlight::new(&e.in_flight).for_good();
        assert!(cap.try_admit().is_none());
        drop(a);
        assert!(cap.try_admit().is_some());
        drop((b, d));
        assert_eq!(cap.held(), 2);
    }
}
