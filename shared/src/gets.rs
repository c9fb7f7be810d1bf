//! Fetching a share inside the app (the Get panel): the same engine as `veilshare get`, driven
//! through the local API (`/api/downloads`), its progress sent as events.

use serde::{Deserialize, Serialize};

/// Most sources one fetch may name.
pub const MAX_SOURCES: usize = 16;

/// `POST /api/downloads`: fetch a share into the downloads folder.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct StartGet {
    /// Onion or plain links, or direct tickets, of one share (several: fetched from all at
    /// once, every piece verified).
    pub sources: Vec<String>,
    /// The client key, for a restricted onion link.
    #[serde(default)]
    pub key: Option<String>,
}

impl StartGet {
    /// The sources trimmed, without blanks; refused when there are none or too many, or one is
    /// neither a link nor a ticket. The error is a message for the user.
    pub fn checked(self) -> Result<Self, String> {
        let sources: Vec<String> = self
            .sources
            .iter()
            .flat_map(|s| s.split_whitespace())
            .map(str::to_owned)
            .collect();
        if sources.is_empty() {
            return Err("paste a link (http://…) or a direct ticket (blob…)".into());
        }
        if sources.len() > MAX_SOURCES {
            return Err(format!(
                "at most {MAX_SOURCES} sources of one share at once"
            ));
        }
        if let Some(bad) = sources
            .iter()
            .find(|s| !(s.starts_with("http://") || s.starts_with("blob")))
        {
            return Err(format!(
                "{bad:?} is neither a link (http://…) nor a direct ticket (blob…)"
            ));
        }
        let key = self
            .key
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty());
        Ok(Self { sources, key })
    }
}

/// Where a fetch is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GetState {
    /// Reaching the sources, reading the file list.
    Connecting,
    /// Bytes are arriving.
    Fetching,
    /// Paused by the user: partial files are kept, and resuming goes on from them.
    Paused,
    /// Every file is saved and verified.
    Done,
    /// It stopped; `problem` says why. Retrying resumes from what arrived.
    Failed,
}

impl GetState {
    /// Whether it is running (connecting or fetching).
    pub fn is_running(self) -> bool {
        matches!(self, Self::Connecting | Self::Fetching)
    }
}

/// A file of the share being fetched.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GetFile {
    /// Its name in the share (may name folders with `/`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One fetch as the UI sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GetView {
    /// Identifier (16 hex digits).
    pub id: String,
    /// What it fetches from.
    pub sources: Vec<String>,
    /// Where it is.
    pub state: GetState,
    /// The share's label, once its file list arrived.
    pub label: Option<String>,
    /// The files, once the list arrived.
    pub files: Vec<GetFile>,
    /// Bytes of all the files, once known.
    pub total: Option<u64>,
    /// Bytes saved so far (resumed bytes included).
    pub done: u64,
    /// Bytes per second lately, while fetching.
    pub rate: Option<u64>,
    /// The folder the files are saved in.
    pub folder: String,
    /// Where each file was saved, once done (a name already taken there gets ` (1)` added).
    pub saved: Vec<String>,
    /// Why it failed, in plain words.
    pub problem: Option<String>,
    /// Unix seconds of its start.
    pub created_at: u64,
}

impl GetView {
    /// Seconds left at the current rate, when it can be told.
    pub fn seconds_left(&self) -> Option<u64> {
        let (total, rate) = (self.total?, self.rate.filter(|r| *r > 0)?);
        Some(total.saturating_sub(self.done).div_ceil(rate))
    }
}

/// `GET`/`PUT /api/settings/downloads`: where fetched files go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DownloadSettings {
    /// An absolute path of a folder that exists.
    pub folder: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_split_trimmed_and_checked() {
        let start = StartGet {
            sources: vec![
                " http://a.onion/ \n http://127.0.0.1:1/s/x/ ".into(),
                "".into(),
            ],
            key: Some("  ".into()),
        }
        .checked()
        .expect("valid");
        assert_eq!(
            start.sources,
            ["http://a.onion/", "http://127.0.0.1:1/s/x/"]
        );
        assert_eq!(start.key, None);
        assert!(StartGet::default().checked().is_err());
        let bad = StartGet {
            sources: vec!["file:///etc/passwd".into()],
            key: None,
        };
        assert!(bad.checked().expect_err("not a link").contains("neither"));
    }

    #[test]
    fn time_left_needs_a_total_and_a_rate() {
        let mut view = GetView {
            id: "0".into(),
            sources: Vec::new(),
            state: GetState::Fetching,
            label: None,
            files: Vec::new(),
            total: Some(1000),
            done: 400,
            rate: Some(100),
            folder: "/tmp".into(),
            saved: Vec::new(),
            problem: None,
            created_at: 0,
        };
        assert_eq!(view.seconds_left(), Some(6));
        view.rate = None;
        assert_eq!(view.seconds_left(), None);
    }
}
