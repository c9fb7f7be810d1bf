//! Serving HTTP/1.1 to strangers, the same way on the plain listener and on onion streams:
//! a connection that sends no complete request head within [`HEAD_TIMEOUT`], or moves no byte
//! either way for [`IDLE_TIMEOUT`] (a recipient who stopped reading holds a download, and so
//! the share's limit, until then), is closed; a listener serves at most [`MAX_CONNECTIONS`] at
//! once and answers the rest with a short 503 instead of running out of file descriptors.
//!
//! Invariants:
//! - Every byte a stranger sends is read under a deadline; no connection lives without
//!   progress.
//! - A refused connection costs one small write and a close, nothing else.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

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

/// Who a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Anyone (the public site, onion streams): the head and idle deadlines apply.
    Strangers,
    /// This machine's user (the local API, whose event socket may rightly be quiet for long):
    /// only the head deadline applies.
    Owner,
}

/// A cap on the connections served at once; a permit is held while one is served.
#[derive(Clone, Debug)]
pub struct ConnectionCap(Arc<tokio::sync::Semaphore>);

impl ConnectionCap {
    /// At most `connections` at once.
    pub fn new(connections: usize) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(connections)))
    }

    /// A permit for one more connection, or `None` when the cap is reached.
    pub fn try_admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
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
pub async fn serve_connection<I>(
    io: I,
    router: axum::Router,
    audience: Audience,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (head, idle) = deadlines();
    let idle = match audience {
        Audience::Strangers => Some(idle),
        Audience::Owner => None,
    };
    let io = hyper_util::rt::TokioIo::new(Idle::new(io, idle));
    let service = hyper_util::service::TowerToHyperService::new(router);
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
        let Some(permit) = cap.try_admit() else {
            connections.spawn(refuse_busy(stream));
            continue;
        };
        let (router, stop) = (router.clone(), stop.clone());
        connections.spawn(async move {
            let _permit = permit;
            serve_connection(stream, router, audience, stop).await;
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// An I/O object that fails once no byte moved either way for its timeout (if it has one),
/// while a read or a write waits.
struct Idle<I> {
    inner: I,
    /// The timeout and the deadline it sets.
    deadline: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl<I> Idle<I> {
    fn new(inner: I, timeout: Option<Duration>) -> Self {
        Self {
            inner,
            deadline: timeout.map(|timeout| (timeout, Box::pin(tokio::time::sleep(timeout)))),
        }
    }

    fn moved(&mut self) {
        if let Some((timeout, deadline)) = &mut self.deadline {
            let next = tokio::time::Instant::now() + *timeout;
            deadline.as_mut().reset(next);
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
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    this.moved();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.check(cx),
        }
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
    async fn the_cap_refuses_beyond_its_count() {
        let cap = ConnectionCap::new(2);
        let (a, b) = (cap.try_admit(), cap.try_admit());
        assert!(a.is_some() && b.is_some());
        assert!(cap.try_admit().is_none());
        drop(a);
        assert!(cap.try_admit().is_some());
    }
}
