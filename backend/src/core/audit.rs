//! The owner's log of each share (see [`veilshare_shared::audit`] for what it holds and what it
//! never holds): one file of JSON lines per share under `<data>/audit/`, each entry chained to
//! the one before by its BLAKE3 hash.
//!
//! Appending writes one whole line with `O_APPEND` and syncs it. A crash in the middle of a
//! line leaves a last line without its newline: it is cut off the next time the log is
//! appended to, and shown as incomplete until then (a torn write, not an edit).
//!
//! What the chain proves, and what not: an entry changed, removed or inserted anywhere but at
//! the end breaks the chain and [`read`](AuditLog::read) says where. Someone able to rewrite
//! the file can still cut entries off its end, or recompute the whole chain; the log shows
//! careless or partial edits, it is not a signature.
//!
//! Refusals come in floods (a scraper, an attacker): they are written at most once per share,
//! reason and minute, with the count since the last entry, so they cannot fill the disk.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{self, BufRead, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use veilshare_shared::{AuditEntry, AuditEvent, AuditLogView, RefusalReason, ShareId};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The logs of every share. Cloning gives another handle to the same logs.
#[derive(Debug, Clone)]
pub struct AuditLog(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Per share: the next `seq` and the last hash, once known.
    heads: Mutex<HashMap<ShareId, (u64, String)>>,
    /// Per share and reason: the minute of the last refusal entry, and refusals since.
    refusals: Mutex<HashMap<(ShareId, RefusalReason), (u64, u64)>>,
}

/// The hash of an entry's content: BLAKE3 of `[seq, at, event, prev]` as JSON.
fn entry_hash(seq: u64, at: u64, event: &AuditEvent, prev: &str) -> String {
    let json = serde_json::to_vec(&(seq, at, event, prev)).unwrap_or_default();
    blake3::hash(&json).to_hex().to_string()
}

impl AuditLog {
    /// The logs under `<data_dir>/audit`.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join("audit");
        std::fs::create_dir_all(&dir)?;
        Ok(Self(Arc::new(Inner {
            dir,
            heads: Mutex::new(HashMap::new()),
            refusals: Mutex::new(HashMap::new()),
        })))
    }

    fn path(&self, id: &ShareId) -> PathBuf {
        self.0.dir.join(format!("{id}.jsonl"))
    }

    /// Appends `event` at `now` (unix seconds; kept to the minute). A failure is logged, not
    /// returned: the log must never stop a share from working.
    pub async fn record(&self, id: &ShareId, now: u64, event: AuditEvent) {
        let log = self.clone();
        let share = id.clone();
        let done = tokio::task::spawn_blocking(move || log.append(&share, now, event)).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not write a share's audit log"),
            Err(error) => tracing::warn!(%error, "the audit log writer failed"),
        }
    }

    /// Counts a refused request; returns the entry to record when none was recorded for this
    /// share and reason this minute. Synchronous and cheap: a flood of refusals costs a lock
    /// each, not a task or a write.
    pub fn count_refusal(
        &self,
        id: &ShareId,
        now: u64,
        reason: RefusalReason,
    ) -> Option<AuditEvent> {
        let minute = now - now % 60;
        let mut refusals = self.0.refusals.lock().ok()?;
        let slot = refusals
            .entry((id.clone(), reason))
            .or_insert((u64::MAX, 0));
        slot.1 += 1;
        if slot.0 == minute {
            return None;
        }
        let count = slot.1;
        *slot = (minute, 0);
        Some(AuditEvent::Refused { reason, count })
    }

    /// Appends one entry, synchronously.
    fn append(&self, id: &ShareId, now: u64, event: AuditEvent) -> io::Result<()> {
        let mut heads = self
            .0
            .heads
            .lock()
            .map_err(|_| io::Error::other("audit log lock poisoned"))?;
        let path = self.path(id);
        let (seq, prev) = match heads.get(id) {
            Some(head) => head.clone(),
            None => recover_head(&path)?,
        };
        let at = now - now % 60;
        let hash = entry_hash(seq, at, &event, &prev);
        let entry = AuditEntry {
            seq,
            at,
            event,
            prev,
            hash: hash.clone(),
        };
        let mut line = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.write_all(&line)?;
        file.sync_data()?;
        crate::core::crash::point("audit.appended");
        heads.insert(id.clone(), (seq + 1, hash));
        Ok(())
    }

    /// The log of a share, checked.
    pub async fn read(&self, id: &ShareId) -> io::Result<AuditLogView> {
        let path = self.path(id);
        tokio::task::spawn_blocking(move || read_file(&path))
            .await
            .map_err(io::Error::other)?
    }

    /// Deletes a share's log.
    pub async fn delete(&self, id: &ShareId) {
        if let Ok(mut heads) = self.0.heads.lock() {
            heads.remove(id);
        }
        if let Ok(mut refusals) = self.0.refusals.lock() {
            refusals.retain(|(share, _), _| share != id);
        }
        match tokio::fs::remove_file(self.path(id)).await {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(%error, "could not delete a share's audit log"),
        }
    }
}

/// The next `seq` and the last hash of the log at `path`, after cutting off a last line that a
/// crash left without its newline.
fn recover_head(path: &Path) -> io::Result<(u64, String)> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok((0, GENESIS.into())),
        Err(error) => return Err(error),
    };
    let mut head = (0, GENESIS.to_owned());
    let mut whole = 0u64;
    let mut reader = io::BufReader::new(&mut file);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if !line.ends_with('\n') {
            break;
        }
        whole += line.len() as u64;
        if let Ok(entry) = serde_json::from_str::<AuditEntry>(line.trim_end()) {
            head = (entry.seq + 1, entry.hash);
        }
    }
    drop(reader);
    if file.seek(SeekFrom::End(0))? != whole {
        tracing::warn!("cutting off an audit log entry a crash left half-written");
        file.set_len(whole)?;
        file.sync_data()?;
    }
    Ok(head)
}

fn read_file(path: &Path) -> io::Result<AuditLogView> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(AuditLogView {
                entries: Vec::new(),
                broken: None,
            });
        }
        Err(error) => return Err(error),
    };
    let mut entries = Vec::new();
    let mut broken = None;
    let mut prev = GENESIS.to_owned();
    let mut reader = io::BufReader::new(file);
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        number += 1;
        if !line.ends_with('\n') {
            broken.get_or_insert_with(|| {
                format!("line {number} is incomplete (written when veilshare stopped abruptly)")
            });
            break;
        }
        let Ok(entry) = serde_json::from_str::<AuditEntry>(line.trim_end()) else {
            broken.get_or_insert_with(|| format!("line {number} is not a log entry"));
            continue;
        };
        let expected = entry_hash(entry.seq, entry.at, &entry.event, &entry.prev);
        if broken.is_none() {
            if entry.seq != number - 1 {
                broken = Some(format!(
                    "line {number} holds entry {} (entries are missing or were added)",
                    entry.seq
                ));
            } else if entry.hash != expected {
                broken = Some(format!(
                    "entry {} was changed after it was written",
                    entry.seq
                ));
            } else if entry.prev != prev {
                broken = Some(format!(
                    "entry {} does not follow the entry before it (one was removed or changed)",
                    entry.seq
                ));
            }
        }
        prev = entry.hash.clone();
        entries.push(entry);
    }
    Ok(AuditLogView { entries, broken })
}

#[cfg(test)]
mod tests {
    use veilshare_shared::{ShareState, Transport};

    use super::*;

    fn id() -> ShareId {
        ShareId::parse("abcdefghijklmnopqrstuvwxyz").expect("id")
    }

    /// What the registry does with a refusal.
    async fn refused(log: &AuditLog, now: u64) {
        if let Some(event) = log.count_refusal(&id(), now, RefusalReason::Busy) {
            log.record(&id(), now, event).await;
        }
    }

    #[tokio::test]
    async fn a_scripted_history_reads_back_in_order_to_the_minute() {
        let dir = tempfile::tempdir().expect("dir");
        let log = AuditLog::open(dir.path()).expect("log");
        log.record(&id(), 1_000_030, AuditEvent::Live).await;
        for completed in 1..=2 {
            let event = AuditEvent::Download {
                transport: Transport::Onion,
                completed,
            };
            log.record(&id(), 1_000_100, event).await;
        }
        // Three refusals in one minute make one entry now; the next minute's carries the rest.
        for _ in 0..3 {
            refused(&log, 1_000_130).await;
        }
        refused(&log, 1_000_200).await;
        log.record(
            &id(),
            1_000_300,
            AuditEvent::Ended {
                state: ShareState::Exhausted,
            },
        )
        .await;
        let view = log.read(&id()).await.expect("read");
        assert_eq!(view.broken, None);
        let events: Vec<(u64, AuditEvent)> =
            view.entries.into_iter().map(|e| (e.at, e.event)).collect();
        assert_eq!(
            events,
            vec![
                (1_000_020, AuditEvent::Live),
                (
                    1_000_080,
                    AuditEvent::Download {
                        transport: Transport::Onion,
                        completed: 1
                    }
                ),
                (
                    1_000_080,
                    AuditEvent::Download {
                        transport: Transport::Onion,
                        completed: 2
                    }
                ),
                (
                    1_000_080,
                    AuditEvent::Refused {
                        reason: RefusalReason::Busy,
                        count: 1
                    }
                ),
                (
                    1_000_200,
                    AuditEvent::Refused {
                        reason: RefusalReason::Busy,
                        count: 3
                    }
                ),
                (
                    1_000_260,
                    AuditEvent::Ended {
                        state: ShareState::Exhausted
                    }
                ),
            ]
        );
        // A new handle (a restart) goes on from the same chain.
        let again = AuditLog::open(dir.path()).expect("log");
        again
            .record(&id(), 1_000_400, AuditEvent::DataDeleted)
            .await;
        let view = again.read(&id()).await.expect("read");
        assert_eq!((view.entries.len(), view.broken), (7, None));
        again.delete(&id()).await;
        assert!(again.read(&id()).await.expect("read").entries.is_empty());
    }

    #[tokio::test]
    async fn an_edited_or_removed_entry_shows_and_a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().expect("dir");
        let log = AuditLog::open(dir.path()).expect("log");
        for completed in 1..=3 {
            let event = AuditEvent::Download {
                transport: Transport::Plain,
                completed,
            };
            log.record(&id(), 60 * completed as u64, event).await;
        }
        let path = dir.path().join("audit").join(format!("{}.jsonl", id()));
        let original = std::fs::read_to_string(&path).expect("log");

        let edited = original.replacen("\"completed\":2", "\"completed\":1", 1);
        std::fs::write(&path, &edited).expect("edit");
        let view = log.read(&id()).await.expect("read");
        assert_eq!(
            view.broken.as_deref(),
            Some("entry 1 was changed after it was written")
        );

        let lines: Vec<&str> = original.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).expect("remove");
        let view = log.read(&id()).await.expect("read");
        let broken = view.broken.expect("a removed entry shows");
        assert!(broken.contains("line 2 holds entry 2"), "{broken}");

        // A crash in the middle of a line: shown as incomplete, then cut off by the next entry.
        std::fs::write(&path, format!("{original}{{\"seq\":3,\"at\"")).expect("torn");
        let view = log.read(&id()).await.expect("read");
        assert!(view.broken.expect("torn").contains("incomplete"));
        let restarted = AuditLog::open(dir.path()).expect("log");
        restarted.record(&id(), 300, AuditEvent::DataDeleted).await;
        let view = restarted.read(&id()).await.expect("read");
        assert_eq!((view.entries.len(), view.broken), (4, None));
    }
}
