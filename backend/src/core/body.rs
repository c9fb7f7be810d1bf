//! What a response body is made of, for a listener that sends files itself: the vocabulary
//! between the public site (`serve::public`, which answers with a [`FileBody`] when a request
//! carries [`SendfileOk`]) and the plain listener (`transport::http::plain`, which sends file
//! ranges with `sendfile(2)` and counts the content through a [`Meter`]). A leaf: it imports
//! nothing of the crate, so both layers may use it.

use std::{
    io,
    sync::{Arc, Mutex, PoisonError},
};

use bytes::Bytes;
use futures::{future::BoxFuture, stream::BoxStream};
use tokio_util::sync::CancellationToken;

/// Marks a request whose answer the listener writes itself: the router may attach a
/// [`FileBody`].
#[derive(Clone, Copy, Debug)]
pub struct SendfileOk;

/// A response's body given as parts (for [`SendfileOk`] requests), in its response's
/// extensions: content from files leaves with `sendfile`.
pub struct FileBody {
    /// The parts, in order; their lengths add up to the response's `Content-Length`.
    pub parts: Vec<Part>,
    /// Counts the content as it leaves.
    pub meter: Box<dyn Meter>,
}

impl std::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBody")
            .field("parts", &self.parts.len())
            .finish_non_exhaustive()
    }
}

/// One part of a [`FileBody`].
pub enum Part {
    /// Bytes held in memory (a zip's headers): not content.
    Bytes(Bytes),
    /// `len` bytes of content, from what `open` gives when their turn comes.
    Content {
        len: u64,
        open: Box<dyn FnOnce() -> Source + Send>,
    },
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(bytes) => f.debug_tuple("Bytes").field(&bytes.len()).finish(),
            Self::Content { len, .. } => f.debug_struct("Content").field("len", len).finish(),
        }
    }
}

/// Where a [`Part::Content`]'s bytes come from.
pub enum Source {
    /// The file, from `start` on (sent with `sendfile`).
    File { file: std::fs::File, start: u64 },
    /// A stream of the bytes (a small blob kept in the store's database).
    Stream(BoxStream<'static, io::Result<Bytes>>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { file, start } => f
                .debug_struct("File")
                .field("file", file)
                .field("start", start)
                .finish(),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// What counts the content of a [`FileBody`] as it leaves.
pub trait Meter: Send {
    /// `total` bytes of content have been sent so far.
    fn content_sent(&mut self, total: u64);
    /// Every byte of the answer was sent: the future ends once that is recorded (the
    /// connection's next request waits for it).
    fn complete(self: Box<Self>) -> BoxFuture<'static, ()>;
    /// Cancelled to cut the answer short (the share was revoked).
    fn revoked(&self) -> CancellationToken;
}

/// Carries a [`FileBody`] in a response's extensions (which must be `Clone` and `Sync`).
#[derive(Clone, Debug)]
pub struct FileBodySlot(Arc<Mutex<Option<FileBody>>>);

impl FileBodySlot {
    /// Holds `body`.
    pub fn new(body: FileBody) -> Self {
        Self(Arc::new(Mutex::new(Some(body))))
    }

    /// The body, once.
    pub fn take(&self) -> Option<FileBody> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl Part {
    /// Its length in bytes.
    #[allow(clippy::len_without_is_empty)] // a part's length is all its users ask
    pub fn len(&self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::Content { len, .. } => *len,
        }
    }
}
