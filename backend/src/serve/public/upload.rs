//! Uploads as they arrive, for both upload paths (the local API's shares, drop boxes' forms):
//! a guard between the body and the multipart parser.

use std::{io, sync::Arc, time::Duration};

/// What multer may hold of an upload without handing it out: a part's headers (buffered until
/// their end) and the pieces read ahead. Beyond it the upload is refused.
pub const UPLOAD_BACKLOG: u64 = 4 << 20;

/// Watches an upload's body on its way to the multipart parser: a body that sends nothing for
/// the idle deadline fails, and so does one whose backlog ([`UPLOAD_BACKLOG`]) grows: part
/// headers without end. A stalled upload must not hold what it holds for ever: through the
/// local API, the import gate (which garbage collection waits for, so a stalled one would keep
/// an ended share's data on disk); into a drop box, one of the box's few upload places and its
/// scratch file.
#[derive(Debug, Default)]
pub struct UploadGuard {
    /// Bytes the handler took out of the parser.
    delivered: std::sync::atomic::AtomicU64,
    /// Why the guard stopped the body.
    stopped: std::sync::OnceLock<String>,
}

impl UploadGuard {
    /// Counts bytes the handler took out of the parser.
    pub fn delivered(&self, bytes: usize) {
        self.delivered
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The body, watched: it fails after `idle` without a byte.
    pub fn watch(self: &Arc<Self>, body: axum::body::Body, idle: Duration) -> axum::body::Body {
        use futures::StreamExt;
        let guard = self.clone();
        let stream = body.into_data_stream();
        let watched = futures::stream::unfold(
            (stream, 0u64, false),
            move |(mut stream, mut passed, stopped)| {
                let guard = guard.clone();
                async move {
                    if stopped {
                        return None;
                    }
                    let next = match tokio::time::timeout(idle, stream.next()).await {
                        Err(_) => Err(format!(
                            "the upload sent nothing for {} s; try again",
                            idle.as_secs()
                        )),
                        Ok(None) => return None,
                        Ok(Some(Err(error))) => {
                            return Some((Err(io::Error::other(error)), (stream, passed, true)));
                        }
                        Ok(Some(Ok(bytes))) => {
                            passed += bytes.len() as u64;
                            let taken = guard.delivered.load(std::sync::atomic::Ordering::Relaxed);
                            if passed.saturating_sub(taken) > UPLOAD_BACKLOG {
                                Err(format!(
                                    "the upload is not a valid form: more than {} without a part's data (are its part headers endless?)",
                                    veilshare_shared::human_size(UPLOAD_BACKLOG)
                                ))
                            } else {
                                Ok(bytes)
                            }
                        }
                    };
                    match next {
                        Ok(bytes) => Some((Ok(bytes), (stream, passed, false))),
                        Err(why) => {
                            let _ = guard.stopped.set(why.clone());
                            Some((Err(io::Error::other(why)), (stream, passed, true)))
                        }
                    }
                }
            },
        );
        axum::body::Body::from_stream(watched)
    }

    /// What to tell the uploader of a parser error: the guard's reason when it stopped the
    /// body.
    pub fn explain(&self, error: axum::extract::multipart::MultipartError) -> String {
        match self.stopped.get() {
            Some(why) => why.clone(),
            None => format!("the upload could not be read: {}", error.body_text()),
        }
    }
}

/// Reads a text field of at most `limit` bytes of UTF-8; the error is a message for the user.
pub async fn read_text(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
    limit: usize,
    guard: &UploadGuard,
) -> Result<String, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| guard.explain(e))? {
        guard.delivered(chunk.len());
        if bytes.len() + chunk.len() > limit {
            return Err(format!(
                "the form field {name:?} is longer than {limit} bytes"
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| format!("the form field {name:?} is not UTF-8 text"))
}
