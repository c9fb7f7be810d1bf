//! The Get panel's fetches: shares fetched into this computer's downloads folder by the same
//! engine as `veilshare get`, driven through the local API and followed through events.
//!
//! Invariants:
//! - Nothing is written over an existing file: the engine saves a file whose name is taken
//!   under a new name (`name (1).ext`), and keeps its partial files under hidden names of
//!   their own (`.<blake3>.veilshare-part`) beside them.
//! - What the panel lists is kept in `<data>/gets.json` (replaced atomically), before the
//!   change is announced: a fetch that was running when the app stopped runs again when it
//!   starts, and goes on from its partial files (paused ones stay paused).
//! - Pausing or removing stops the fetch at once (its task is aborted); removing an unfinished
//!   fetch deletes its partial files, never a saved one.
//! - Fetches over Tor use a Tor client of their own (`<data>/tor-get`), and direct ones a fresh
//!   iroh endpoint: what this node shares and what it fetches are not linked.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use veilshare_shared::{DownloadSettings, Event, GetState, GetView, StartGet, gets::GetFile};

use crate::{
    core::{events::EventBus, shares::now_secs},
    receive::{
        link::FetchSettings,
        local::{self, Listing, Progress},
        multi::MultiFetch,
    },
    transport::{iroh::P2pConfig, tor::SharedSetup},
};

/// How long a fetch keeps trying to reach its sources before it fails.
const PATIENCE: Duration = Duration::from_secs(180);
/// How often a running fetch's progress is announced.
const TICK: Duration = Duration::from_millis(500);

/// Why a request about fetches was refused: a message for the user.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No fetch with that id.
    #[error("there is no download with id {0}")]
    NotFound(String),
    /// Its record could not be written.
    #[error("cannot keep the list of downloads: {0}")]
    Storage(String),
}

/// What `gets.json` holds.
#[derive(Serialize, Deserialize, Debug, Default)]
struct Saved {
    /// The folder chosen for downloads (`None`: the user's Downloads folder).
    folder: Option<PathBuf>,
    gets: Vec<GetRecord>,
}

/// One fetch as kept on disk.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct GetRecord {
    id: String,
    sources: Vec<String>,
    key: Option<String>,
    folder: PathBuf,
    state: GetState,
    /// The share's file list, once it arrived.
    listing: Option<Listing>,
    done: u64,
    saved: Vec<String>,
    problem: Option<String>,
    created_at: u64,
}

impl GetRecord {
    fn view(&self, rate: Option<u64>) -> GetView {
        let listing = self.listing.as_ref();
        GetView {
            id: self.id.clone(),
            sources: self.sources.clone(),
            state: self.state,
            label: listing.and_then(|l| l.label.clone()),
            files: listing
                .map(|l| {
                    l.files
                        .iter()
                        .map(|f| GetFile {
                            name: f.name.clone(),
                            size: f.size,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            total: listing.map(Listing::total),
            done: self.done,
            rate: rate.filter(|_| self.state.is_running()),
            folder: self.folder.display().to_string(),
            saved: self.saved.clone(),
            problem: self.problem.clone(),
            created_at: self.created_at,
        }
    }
}

#[derive(Debug)]
struct Entry {
    record: GetRecord,
    /// The running fetch.
    task: Option<tokio::task::AbortHandle>,
    rate: Option<u64>,
}

/// The app's fetches. Cloning gives another handle to the same list.
#[derive(Debug, Clone)]
pub struct Gets(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    data_dir: PathBuf,
    tor: SharedSetup,
    p2p: P2pConfig,
    events: EventBus,
    entries: Mutex<BTreeMap<String, Entry>>,
    folder: Mutex<Option<PathBuf>>,
    /// Serializes writes of `gets.json`.
    writing: tokio::sync::Mutex<()>,
}

/// The user's Downloads folder, or `~/Downloads`, or `<data>/downloads` on a machine with
/// neither.
fn default_folder(data_dir: &Path) -> PathBuf {
    directories::UserDirs::new()
        .and_then(|dirs| dirs.download_dir().map(Path::to_owned))
        .or_else(|| directories::BaseDirs::new().map(|dirs| dirs.home_dir().join("Downloads")))
        .unwrap_or_else(|| data_dir.join("downloads"))
}

impl Gets {
    /// Loads the list kept under `data_dir` and, with `resume`, runs again what was running.
    pub fn start(
        data_dir: &Path,
        tor: SharedSetup,
        p2p: P2pConfig,
        events: EventBus,
        resume: bool,
    ) -> Self {
        // The cards show what `get` says on its terminal.
        local::tell_the_log();
        let saved: Saved = std::fs::read(data_dir.join("gets.json"))
            .ok()
            .and_then(|bytes| match serde_json::from_slice(&bytes) {
                Ok(saved) => Some(saved),
                Err(error) => {
                    tracing::error!(%error, "gets.json is not readable; starting with no downloads");
                    None
                }
            })
            .unwrap_or_default();
        let gets = Self(Arc::new(Inner {
            data_dir: data_dir.to_owned(),
            tor,
            p2p,
            events,
            entries: Mutex::new(BTreeMap::new()),
            folder: Mutex::new(saved.folder),
            writing: tokio::sync::Mutex::new(()),
        }));
        let mut restart = Vec::new();
        if let Ok(mut entries) = gets.0.entries.lock() {
            for record in saved.gets {
                if record.state.is_running() {
                    restart.push(record.id.clone());
                }
                entries.insert(
                    record.id.clone(),
                    Entry {
                        record,
                        task: None,
                        rate: None,
                    },
                );
            }
        }
        if resume {
            for id in restart {
                tracing::info!(get = %id, "resuming a download after a restart");
                gets.spawn(&id);
            }
        }
        gets
    }

    /// Every fetch, oldest first.
    pub fn list(&self) -> Vec<GetView> {
        let mut views: Vec<GetView> = match self.0.entries.lock() {
            Ok(entries) => entries.values().map(|e| e.record.view(e.rate)).collect(),
            Err(_) => Vec::new(),
        };
        views.sort_by_key(|v| (v.created_at, v.id.clone()));
        views
    }

    fn view(&self, id: &str) -> Option<GetView> {
        let entries = self.0.entries.lock().ok()?;
        entries.get(id).map(|e| e.record.view(e.rate))
    }

    /// Where downloads go now.
    pub fn settings(&self) -> DownloadSettings {
        DownloadSettings {
            folder: self.folder().display().to_string(),
        }
    }

    /// The chosen folder, or the default one.
    fn folder(&self) -> PathBuf {
        self.0
            .folder
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| default_folder(&self.0.data_dir))
    }

    /// Chooses the folder for downloads from now on: an absolute path of a folder that exists.
    pub async fn set_settings(
        &self,
        settings: DownloadSettings,
    ) -> Result<DownloadSettings, GetError> {
        let folder = PathBuf::from(settings.folder.trim());
        if !folder.is_absolute() {
            return Err(GetError::BadRequest(format!(
                "{} is not an absolute path: give the whole path of a folder",
                folder.display()
            )));
        }
        if !tokio::fs::metadata(&folder).await.is_ok_and(|m| m.is_dir()) {
            return Err(GetError::BadRequest(format!(
                "{} is not a folder: create it first",
                folder.display()
            )));
        }
        if let Ok(mut chosen) = self.0.folder.lock() {
            *chosen = Some(folder);
        }
        self.persist().await?;
        Ok(self.settings())
    }

    /// Starts fetching a share into the downloads folder.
    pub async fn add(&self, request: StartGet) -> Result<GetView, GetError> {
        let request = request.checked().map_err(GetError::BadRequest)?;
        let folder = self.folder();
        tokio::fs::create_dir_all(&folder).await.map_err(|error| {
            GetError::BadRequest(format!(
                "cannot use the downloads folder {}: {error}",
                folder.display()
            ))
        })?;
        let mut bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut bytes);
        let id = data_encoding::HEXLOWER.encode(&bytes);
        let record = GetRecord {
            id: id.clone(),
            sources: request.sources,
            key: request.key,
            folder,
            state: GetState::Connecting,
            listing: None,
            done: 0,
            saved: Vec::new(),
            problem: None,
            created_at: now_secs(),
        };
        if let Ok(mut entries) = self.0.entries.lock() {
            entries.insert(
                id.clone(),
                Entry {
                    record,
                    task: None,
                    rate: None,
                },
            );
        }
        self.persist().await?;
        self.spawn(&id);
        self.announce(&id);
        self.view(&id).ok_or(GetError::NotFound(id))
    }

    /// Stops a running fetch; its partial files stay for [`Gets::resume`].
    pub async fn pause(&self, id: &str) -> Result<GetView, GetError> {
        self.change(id, |entry| {
            if entry.record.state.is_running() {
                if let Some(task) = entry.task.take() {
                    task.abort();
                }
                entry.record.state = GetState::Paused;
                entry.rate = None;
            }
        })?;
        self.persist().await?;
        self.announce(id);
        self.view(id)
            .ok_or_else(|| GetError::NotFound(id.to_owned()))
    }

    /// Runs a paused or failed fetch again, from its partial files.
    pub async fn resume(&self, id: &str) -> Result<GetView, GetError> {
        let mut start = false;
        self.change(id, |entry| {
            if matches!(entry.record.state, GetState::Paused | GetState::Failed) {
                entry.record.state = GetState::Connecting;
                entry.record.problem = None;
                start = true;
            }
        })?;
        self.persist().await?;
        if start {
            self.spawn(id);
        }
        self.announce(id);
        self.view(id)
            .ok_or_else(|| GetError::NotFound(id.to_owned()))
    }

    /// Removes a fetch from the list: a running one stops, and the partial files of an
    /// unfinished one are deleted. Saved files stay.
    pub async fn remove(&self, id: &str) -> Result<(), GetError> {
        let entry = self
            .0
            .entries
            .lock()
            .ok()
            .and_then(|mut entries| entries.remove(id))
            .ok_or_else(|| GetError::NotFound(id.to_owned()))?;
        if let Some(task) = &entry.task {
            task.abort();
        }
        if entry.record.state != GetState::Done {
            // A fetch from a ticket or from several sources keeps its pieces in a partial
            // store named by the share's hash.
            let roots = entry
                .record
                .sources
                .iter()
                .filter_map(|s| crate::transport::iroh::parse_ticket(s).ok())
                .map(|ticket| ticket.hash().to_hex().to_string())
                .chain(entry.record.listing.iter().filter_map(|l| l.root.clone()));
            for root in roots {
                let store = local::partial_store_dir(&entry.record.folder, &root);
                if let Err(error) = tokio::fs::remove_dir_all(&store).await
                    && error.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %store.display(), %error, "cannot delete a partial store");
                }
            }
            for file in entry.record.listing.iter().flat_map(|l| &l.files) {
                for partial in [
                    local::part_file(&entry.record.folder, &file.blake3),
                    local::journal_file(&entry.record.folder, &file.blake3),
                ] {
                    if let Err(error) = tokio::fs::remove_file(&partial).await
                        && error.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(path = %partial.display(), %error, "cannot delete a partial file");
                    }
                }
            }
        }
        self.persist().await?;
        self.0
            .events
            .publish(Event::GetRemoved { id: id.to_owned() });
        Ok(())
    }

    fn change(&self, id: &str, f: impl FnOnce(&mut Entry)) -> Result<(), GetError> {
        let mut entries = self
            .0
            .entries
            .lock()
            .map_err(|_| GetError::Storage("the list is poisoned".into()))?;
        let entry = entries
            .get_mut(id)
            .ok_or_else(|| GetError::NotFound(id.to_owned()))?;
        f(entry);
        Ok(())
    }

    fn announce(&self, id: &str) {
        if let Some(get) = self.view(id) {
            self.0.events.publish(Event::GetUpdated { get });
        }
    }

    /// Writes `gets.json` (a temporary file renamed over it: a crash leaves the old or the new).
    async fn persist(&self) -> Result<(), GetError> {
        let _writing = self.0.writing.lock().await;
        let saved = Saved {
            folder: self.0.folder.lock().ok().and_then(|f| f.clone()),
            gets: match self.0.entries.lock() {
                Ok(entries) => entries.values().map(|e| e.record.clone()).collect(),
                Err(_) => return Err(GetError::Storage("the list is poisoned".into())),
            },
        };
        let bytes =
            serde_json::to_vec_pretty(&saved).map_err(|e| GetError::Storage(e.to_string()))?;
        let dir = self.0.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            crate::app::replace_file(&dir.join("gets.json"), &bytes)
        })
        .await
        .map_err(|e| GetError::Storage(e.to_string()))?
        .map_err(|e| GetError::Storage(e.to_string()))
    }

    /// Runs the fetch `id` in a task of its own, announcing its progress as it goes.
    fn spawn(&self, id: &str) {
        let record = self
            .0
            .entries
            .lock()
            .ok()
            .and_then(|e| e.get(id).map(|e| e.record.clone()));
        let Some(record) = record else {
            return;
        };
        let progress = Arc::new(Progress::default());
        let settings = MultiFetch {
            sources: record.sources.clone(),
            link: FetchSettings {
                link: String::new(),
                out_dir: record.folder.clone(),
                state_dir: crate::app::get::tor_state_dir(&self.0.data_dir),
                tor: self.0.tor.get(),
                parallel: None,
                quiet: true,
                patience: PATIENCE,
                key: record.key.clone(),
                allow_hidden: false,
                progress: Some(progress.clone()),
            },
            p2p: self.0.p2p.clone(),
        };
        let gets = self.clone();
        let task = tokio::spawn(async move {
            let id = record.id;
            let fetch = crate::app::get::get(&settings);
            tokio::pin!(fetch);
            let mut tick = tokio::time::interval(TICK);
            let mut last = (Instant::now(), 0u64);
            let result = loop {
                tokio::select! {
                    result = &mut fetch => break result,
                    _ = tick.tick() => {
                        gets.follow(&id, &progress, &mut last);
                        gets.announce(&id);
                    }
                }
            };
            gets.follow(&id, &progress, &mut last);
            let _ = gets.change(&id, |entry| {
                entry.task = None;
                entry.rate = None;
                match result {
                    Ok(paths) => {
                        entry.record.state = GetState::Done;
                        entry.record.saved =
                            paths.iter().map(|p| p.display().to_string()).collect();
                        if let Some(listing) = &entry.record.listing {
                            entry.record.done = listing.total();
                        }
                    }
                    Err(error) => {
                        entry.record.state = GetState::Failed;
                        entry.record.problem = Some(error.to_string());
                    }
                }
            });
            if let Err(error) = gets.persist().await {
                tracing::error!(%error, "cannot keep the list of downloads");
            }
            gets.announce(&id);
        });
        let _ = self.change(id, |entry| entry.task = Some(task.abort_handle()));
    }

    /// Copies what the fetch learnt into its record: the listing, the bytes saved, the rate.
    fn follow(&self, id: &str, progress: &Progress, last: &mut (Instant, u64)) {
        let done = progress.done();
        let now = Instant::now();
        let elapsed = now.duration_since(last.0).as_secs_f64();
        let rate = (elapsed > 0.0).then(|| (done.saturating_sub(last.1) as f64 / elapsed) as u64);
        *last = (now, done);
        let _ = self.change(id, |entry| {
            // The list arrives once: copied the first time it is there.
            if entry.record.listing.is_none() {
                entry.record.listing = progress.listing();
            }
            // A direct ticket's fetch lists no files before they are saved: its first bytes
            // say it is fetching.
            if (entry.record.listing.is_some() || done > 0)
                && entry.record.state == GetState::Connecting
            {
                entry.record.state = GetState::Fetching;
            }
            // Before the fetch resumed its files, it counts nothing yet: keep what was known.
            if done > 0 || entry.record.state == GetState::Fetching {
                entry.record.done = done;
            }
            // Smoothed, so that the time left does not jump at every tick.
            entry.rate = match (entry.rate, rate) {
                (Some(before), Some(now)) => Some((before * 3 + now) / 4),
                (None, now) => now,
                (before, None) => before,
            };
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fetch that is connecting, in the list of `gets`.
    fn connecting(gets: &Gets) -> String {
        let id = "00000000000000ff".to_owned();
        let record = GetRecord {
            id: id.clone(),
            sources: vec!["blobticket".into()],
            key: None,
            folder: PathBuf::from("/nowhere"),
            state: GetState::Connecting,
            listing: None,
            done: 0,
            saved: Vec::new(),
            problem: None,
            created_at: 0,
        };
        if let Ok(mut entries) = gets.0.entries.lock() {
            entries.insert(
                id.clone(),
                Entry {
                    record,
                    task: None,
                    rate: None,
                },
            );
        }
        id
    }

    #[tokio::test]
    async fn a_fetch_is_fetching_once_bytes_arrive_even_without_a_file_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gets = Gets::start(
            dir.path(),
            SharedSetup::new(Default::default()),
            P2pConfig::default(),
            EventBus::default(),
            false,
        );
        let id = connecting(&gets);
        let progress = Progress::default();
        let bar = local::progress_bar(true, None, "ticket".into(), Some(&progress));
        let mut last = (Instant::now(), 0);
        gets.follow(&id, &progress, &mut last);
        assert_eq!(gets.view(&id).map(|g| g.state), Some(GetState::Connecting));
        bar.set_position(4096);
        gets.follow(&id, &progress, &mut last);
        let view = gets.view(&id).expect("listed");
        assert_eq!(
            (view.state, view.done, view.total),
            (GetState::Fetching, 4096, None)
        );
    }
}
