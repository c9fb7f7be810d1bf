//! Why a fetch failed, as a type: what kind of failure (the source refused, could not be
//! reached, sent something that is not the share, or this machine could not store it), a
//! message for the user, and the cause. Callers decide by the kind — a mirror tells "the share
//! ended" from "the sender is offline", `get` keeps partial files for a resume only when that
//! can help — and print the message with its causes (`{:#}` through `anyhow`).
//!
//! The words for a refusal live here once, whatever the transport said it with: HTTP 404,
//! 410 and 429 from a link, iroh's error codes and close code from a ticket.

use std::{error::Error as StdError, fmt};

/// What a source said when it would not give the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing at that address (HTTP 404).
    NotFound,
    /// The share has ended: its download limit was reached, it expired, or it was revoked
    /// (HTTP 410; iroh's permission error, which a sender also gives for content it does not
    /// share).
    Ended,
    /// The sender revoked the share during the transfer (iroh's close code).
    Revoked,
    /// Every download the share still allows is in progress: worth trying later (HTTP 429;
    /// iroh's limit error).
    Busy,
    /// Some other HTTP status.
    Status(u16),
}

impl Refusal {
    /// The refusal an HTTP status means; `None` for content (200, 206).
    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            200 | 206 => None,
            404 => Some(Self::NotFound),
            410 => Some(Self::Ended),
            429 => Some(Self::Busy),
            status => Some(Self::Status(status)),
        }
    }

    /// Whether the share is over for good at this source (asking again cannot help).
    pub fn is_final(self) -> bool {
        matches!(self, Self::NotFound | Self::Ended | Self::Revoked)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str(
                "there is no share at this link (404); check that you copied the whole link",
            ),
            Self::Ended => f.write_str(
                "the sender refused: this share has ended (its download limit was reached, it expired, or it was revoked)",
            ),
            Self::Revoked => f.write_str(
                "the sender refused: the share was revoked during the transfer",
            ),
            Self::Busy => f.write_str(
                "the sender refused for now: all the downloads the share still allows are in progress; try again later",
            ),
            Self::Status(status) => write!(f, "the share answered with HTTP {status}"),
        }
    }
}

/// The kind of a [`ReceiveError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiveErrorKind {
    /// What the user gave is not a link or ticket we can use.
    BadSource,
    /// The source answered, and refused.
    Refused(Refusal),
    /// No answer: the sender is offline, the share's onion service is gone, no route.
    Unreachable,
    /// The source sent something that is not the share: a wrong hash, a bad name or manifest,
    /// a different share than the other sources.
    Integrity,
    /// Reading or writing on this machine failed.
    Io,
}

/// A fetch that failed: its kind, what happened in words, and the cause.
#[derive(Debug)]
pub struct ReceiveError {
    kind: ReceiveErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// A fetch's result.
pub type Result<T, E = ReceiveError> = std::result::Result<T, E>;

impl ReceiveError {
    fn new(kind: ReceiveErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// What the user gave is not a usable source.
    pub fn bad_source(message: impl Into<String>) -> Self {
        Self::new(ReceiveErrorKind::BadSource, message)
    }

    /// The source refused.
    pub fn refused(refusal: Refusal) -> Self {
        Self::new(ReceiveErrorKind::Refused(refusal), refusal.to_string())
    }

    /// The source could not be reached.
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(ReceiveErrorKind::Unreachable, message)
    }

    /// The source sent something that is not the share.
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(ReceiveErrorKind::Integrity, message)
    }

    /// Reading or writing here failed.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ReceiveErrorKind::Io, message)
    }

    /// The same error with its cause.
    pub fn because(mut self, cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(cause.into());
        self
    }

    /// The same kind, said in wider terms: `message`, caused by this error.
    pub fn context(self, message: impl Into<String>) -> Self {
        Self::new(self.kind, message).because(self)
    }

    /// The kind, for callers that act on it.
    pub fn kind(&self) -> ReceiveErrorKind {
        self.kind
    }

    /// The refusal, when the source refused.
    pub fn refusal(&self) -> Option<Refusal> {
        match self.kind {
            ReceiveErrorKind::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }
}

/// `{}` is the message; `{:#}` adds the causes, `: `-separated (as `anyhow` does).
impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if f.alternate() {
            let mut cause = self.source();
            while let Some(error) = cause {
                write!(f, ": {error}")?;
                cause = error.source();
            }
        }
        Ok(())
    }
}

impl StdError for ReceiveError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// Local I/O failures as [`ReceiveError`]s, with what was being done.
pub trait IoContext<T> {
    /// On error: an I/O [`ReceiveError`] saying `what` (built only then), caused by the error.
    fn io_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Box<dyn StdError + Send + Sync>>> IoContext<T> for std::result::Result<T, E> {
    fn io_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|error| ReceiveError::io(what()).because(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_refusals_and_context_keeps_the_kind() {
        assert_eq!(Refusal::from_status(206), None);
        assert_eq!(Refusal::from_status(410), Some(Refusal::Ended));
        assert_eq!(Refusal::from_status(429), Some(Refusal::Busy));
        assert!(!Refusal::Busy.is_final() && Refusal::Ended.is_final());
        let error = ReceiveError::refused(Refusal::Ended).context("a.txt: the download stopped");
        assert_eq!(error.refusal(), Some(Refusal::Ended));
        let chain = format!("{:#}", anyhow::Error::from(error));
        assert!(
            chain.starts_with(
                "a.txt: the download stopped: the sender refused: this share has ended"
            ),
            "{chain}"
        );
        let io: Result<()> =
            Err(std::io::Error::other("disk full")).io_context(|| "cannot write x".into());
        let error = io.expect_err("an error");
        assert_eq!(error.kind(), ReceiveErrorKind::Io);
        assert_eq!(format!("{error:#}"), "cannot write x: disk full");
        assert_eq!(format!("{error}"), "cannot write x");
        assert_eq!(
            format!("{:#}", anyhow::Error::from(error)),
            "cannot write x: disk full"
        );
    }
}
