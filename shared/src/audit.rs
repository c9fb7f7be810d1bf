//! A share's history for its owner: what happened to it, and nothing about who fetched it.
//!
//! Each entry carries the BLAKE3 hash of the one before it, so an entry changed or removed
//! in the middle of the log breaks the chain and shows. Times are rounded down to the minute.
//! There are no addresses, circuits, user agents or names of recipients: over Tor there are
//! none to record, and on the plain listener none are kept either.

use serde::{Deserialize, Serialize};

use crate::ShareState;

/// How a download reached its recipient.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// The share's onion service.
    Onion,
    /// The plain (non-Tor) public listener.
    Plain,
    /// Directly over iroh.
    Direct,
}

/// Why a request was refused.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The share had ended.
    Ended,
    /// Every remaining download was already in progress.
    Busy,
    /// Not enough of the download allowance was left.
    OverBudget,
}

/// One thing that happened to a share.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEvent {
    /// The share was made.
    Created {
        /// Files in it.
        files: usize,
        /// Their total size.
        bytes: u64,
        /// Its download limit.
        max_downloads: Option<u32>,
        /// When it expires (unix seconds).
        expires_at: Option<u64>,
        /// Whether a key is needed.
        restricted: bool,
        /// Whether it is also shared directly.
        direct: bool,
        /// Whether it is a drop box.
        dropbox: bool,
        /// Files whose metadata was removed.
        metadata_removed: usize,
    },
    /// Its address was published and could be reached.
    Live,
    /// A complete download was counted.
    Download {
        /// How it was fetched.
        transport: Transport,
        /// Complete downloads so far.
        completed: u32,
    },
    /// Requests were refused (at most one entry per reason and minute; `count` is how many).
    Refused {
        /// Why.
        reason: RefusalReason,
        /// How many since the last entry for this reason.
        count: u64,
    },
    /// A drop box received an upload.
    Upload {
        /// Files in it.
        files: usize,
        /// Bytes received.
        bytes: u64,
    },
    /// The owner deleted an upload of a drop box.
    UploadDeleted,
    /// The share ended.
    Ended {
        /// Why: revoked, expired or exhausted.
        state: ShareState,
    },
    /// Its stored data was deleted.
    DataDeleted,
    /// The owner added a named recipient (the name is not logged).
    RecipientAdded {
        /// Recipients who can reach the share now.
        active: usize,
    },
    /// The owner revoked a named recipient: their address and key are gone.
    RecipientRevoked {
        /// Recipients who can still reach the share.
        active: usize,
    },
}

impl AuditEvent {
    /// The event in plain words.
    pub fn describe(&self) -> String {
        match self {
            Self::Created { dropbox: true, .. } => "drop box created".to_owned(),
            Self::Created {
                files,
                bytes,
                max_downloads,
                expires_at,
                restricted,
                direct,
                metadata_removed,
                ..
            } => {
                let mut line = format!("created: {files} file(s), {}", crate::human_size(*bytes));
                match max_downloads {
                    Some(max) => line.push_str(&format!(", {max} download(s) allowed")),
                    None => line.push_str(", no download limit"),
                }
                if expires_at.is_none() {
                    line.push_str(", no expiry");
                }
                if *restricted {
                    line.push_str(", key required");
                }
                if *direct {
                    line.push_str(", also direct");
                }
                if *metadata_removed > 0 {
                    line.push_str(&format!(
                        ", metadata removed from {metadata_removed} file(s)"
                    ));
                }
                line
            }
            Self::Live => "published: the link works".to_owned(),
            Self::RecipientAdded { active } => {
                format!("a recipient was added ({active} can reach the share)")
            }
            Self::RecipientRevoked { active } => {
                format!("a recipient was revoked ({active} can still reach the share)")
            }
            Self::Download {
                transport,
                completed,
            } => format!(
                "download #{completed} completed ({})",
                match transport {
                    Transport::Onion => "over Tor",
                    Transport::Plain => "plain link",
                    Transport::Direct => "direct",
                }
            ),
            Self::Refused { reason, count } => format!(
                "{count} request(s) refused: {}",
                match reason {
                    RefusalReason::Ended => "the share had ended",
                    RefusalReason::Busy => "every remaining download was in progress",
                    RefusalReason::OverBudget => "not enough download allowance left",
                }
            ),
            Self::Upload { files, bytes } => format!(
                "upload received: {files} file(s), {}",
                crate::human_size(*bytes)
            ),
            Self::UploadDeleted => "an upload was deleted by the owner".to_owned(),
            Self::Ended { state } => format!("ended: {}", state.label()),
            Self::DataDeleted => "its stored data was deleted".to_owned(),
        }
    }
}

/// One entry of the log, as stored (one JSON line each) and as the API gives it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Unix seconds, rounded down to the minute.
    pub at: u64,
    /// What happened.
    pub event: AuditEvent,
    /// The previous entry's `hash` (64 zeros for the first).
    pub prev: String,
    /// BLAKE3 (hex) of this entry's `seq`, `at`, `event` and `prev` as JSON, in that order.
    pub hash: String,
}

/// `GET /api/shares/{id}/log`: the entries, and whether the chain holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AuditLogView {
    /// The entries, oldest first (those that could be read).
    pub entries: Vec<AuditEntry>,
    /// `None` when every entry is readable and chained to the one before; otherwise where the
    /// log was changed, in plain words.
    pub broken: Option<String>,
}
