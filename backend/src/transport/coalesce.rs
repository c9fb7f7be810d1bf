//! Reading an onion stream in bursts. Arti's `DataStream` gives one relay cell (at most 498
//! bytes) per read, so hyper, reading through it, parsed a frame and the body's consumer woke
//! for every cell: about 210,000 times per 100 MiB. [`Coalesced`] reads on until the stream has
//! nothing ready (or the caller's buffer is full), so one read takes every cell that arrived.
//!
//! Invariants: no byte is held back (a read returns as soon as the stream would wait); an end
//! or an error that comes after some bytes is reported by the next read, after those bytes.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose reads take everything that is ready at once; writes pass through.
#[derive(Debug)]
pub struct Coalesced<S> {
    inner: S,
    /// What ended the stream after bytes that were returned first: `Ok` for its end.
    ended: Option<io::Result<()>>,
}

impl<S> Coalesced<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, ended: None }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(ended) = self.ended.take() {
            // Once ended, stays ended (an end is reported again; an error once, then the end).
            self.ended = Some(Ok(()));
            return Poll::Ready(ended);
        }
        let start = buf.filled().len();
        while buf.remaining() > 0 {
            let before = buf.filled().len();
            match Pin::new(&mut self.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() == before => {
                    if before > start {
                        self.ended = Some(Ok(()));
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) if before > start => {
                    self.ended = Some(Err(error));
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending if before > start => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// What the scripted stream does on each read.
    enum Step {
        Bytes(&'static [u8]),
        Wait,
        End,
        Fail,
    }

    /// A stream that gives small pieces, like Arti's cells, by a script.
    struct Script(VecDeque<Step>);

    impl AsyncRead for Script {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.pop_front() {
                Some(Step::Bytes(bytes)) => {
                    let n = bytes.len().min(buf.remaining());
                    buf.put_slice(&bytes[..n]);
                    if n < bytes.len() {
                        self.0.push_front(Step::Bytes(&bytes[n..]));
                    }
                    Poll::Ready(Ok(()))
                }
                Some(Step::Wait) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Some(Step::End) | None => Poll::Ready(Ok(())),
                Some(Step::Fail) => Poll::Ready(Err(io::Error::other("circuit closed"))),
            }
        }
    }

    async fn reads(steps: Vec<Step>) -> Vec<Result<Vec<u8>, String>> {
        let mut stream = Coalesced::new(Script(steps.into()));
        let mut out = Vec::new();
        loop {
            let mut buf = vec![0u8; 8];
            match stream.read(&mut buf).await {
                Ok(0) => {
                    out.push(Ok(Vec::new()));
                    return out;
                }
                Ok(n) => out.push(Ok(buf[..n].to_vec())),
                Err(error) => {
                    out.push(Err(error.to_string()));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn one_read_takes_every_piece_that_is_ready_and_no_more_than_fits() {
        let got = reads(vec![
            Step::Bytes(b"ab"),
            Step::Bytes(b"cd"),
            Step::Wait,
            Step::Bytes(b"ef"),
            Step::Bytes(b"ghij"),
            Step::Bytes(b"klm"),
            Step::End,
        ])
        .await;
        let expected: Vec<Result<Vec<u8>, String>> = vec![
            Ok(b"abcd".to_vec()),
            Ok(b"efghijkl".to_vec()),
            Ok(b"m".to_vec()),
            Ok(Vec::new()),
        ];
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn an_end_or_an_error_after_bytes_comes_after_those_bytes() {
        let got = reads(vec![Step::Bytes(b"ab"), Step::End]).await;
        assert_eq!(got, vec![Ok(b"ab".to_vec()), Ok(Vec::new())]);
        let got = reads(vec![Step::Bytes(b"ab"), Step::Fail]).await;
        assert_eq!(
            got,
            vec![Ok(b"ab".to_vec()), Err("circuit closed".to_owned())]
        );
        let got = reads(vec![Step::Fail]).await;
        assert_eq!(got, vec![Err("circuit closed".to_owned())]);
    }
}
