//! What a fetch keeps on this machine, named in one place: part files, journals and partial
//! stores in the output folder, the checks a name from the network passes before it becomes a
//! path, hashing what is on disk, and the progress bars every fetch shows.
//!
//! Invariants:
//! - Scratch files are named by content hash, never by a name from the network: any valid file
//!   name (up to 255 bytes) still leaves room for them, and a resume finds them whatever the
//!   name. They start with a dot and end in `.veilshare-…`, so they are easy to recognise.
//! - A name from the network passes [`check_file_name`] before any path is built from it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::time::Instant;

use crate::receive::error::{IoContext, ReceiveError, Result};

/// `.<blake3>.veilshare-part`: a file being downloaded or exported, renamed to its name once
/// verified.
pub(crate) fn part_file(out_dir: &Path, hash_hex: &str) -> PathBuf {
    out_dir.join(format!(".{hash_hex}.veilshare-part"))
}

/// `.<blake3>.veilshare-ranges`: the journal of a ranged download, beside its part file.
pub(crate) fn journal_file(out_dir: &Path, hash_hex: &str) -> PathBuf {
    out_dir.join(format!(".{hash_hex}.veilshare-ranges"))
}

/// `.<collection>.veilshare-iroh/`: the partial store of a verified (bao) download, kept until
/// every file is in place so that a rerun resumes.
pub(crate) fn partial_store_dir(out_dir: &Path, collection_hex: &str) -> PathBuf {
    out_dir.join(format!(".{collection_hex}.veilshare-iroh"))
}

/// Refuses a file name from the network that would leave the output folder.
pub(crate) fn check_file_name(name: &str) -> Result<()> {
    veilshare_shared::validate_file_name(name).map_err(|problem| {
        ReceiveError::integrity(format!(
            "refusing the share: {problem} (a file name must not leave the output folder)"
        ))
    })
}

/// Refuses a list of names from the network: any bad name, a duplicate, or none at all.
pub(crate) fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        check_file_name(name)?;
        if !seen.insert(name) {
            return Err(ReceiveError::integrity(format!(
                "refusing the share: two files are named {name:?}"
            )));
        }
    }
    if seen.is_empty() {
        return Err(ReceiveError::integrity("the share has no files"));
    }
    Ok(())
}

/// BLAKE3 of a file in hex, hashed on a blocking thread.
pub async fn hash_file(path: &Path) -> Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || -> Result<String> {
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_mmap_rayon(&path)
            .io_context(|| format!("cannot read {}", path.display()))?;
        Ok(hasher.finalize().to_hex().to_string())
    })
    .await
    .io_context(|| "hashing stopped".into())?
}

/// A progress bar for `total` bytes (unknown yet: `None`), hidden when `quiet`. Every fetch
/// draws the same bar; a bar whose total is learnt later gets it with [`set_total`].
pub(crate) fn progress_bar(
    quiet: bool,
    total: Option<u64>,
    message: String,
) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => indicatif::ProgressBar::new(total),
        None => indicatif::ProgressBar::no_length(),
    };
    style(&bar, total.is_some());
    bar.set_message(message);
    bar
}

/// Gives a bar its total once known.
pub(crate) fn set_total(bar: &indicatif::ProgressBar, total: u64) {
    bar.set_length(total);
    style(bar, true);
}

fn style(bar: &indicatif::ProgressBar, known_total: bool) {
    let template = if known_total {
        "{msg:24!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}"
    } else {
        "{msg:24!} {bytes} {bytes_per_sec} {elapsed}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
}

/// Tries again after failures until `patience` is spent, waiting a little longer each time
/// (1 s, 2 s, … at most 5 s): the one retry loop of the fetches that wait for a sender.
#[derive(Debug)]
pub(crate) struct Patience {
    started: Instant,
    patience: Duration,
    attempt: u32,
}

impl Patience {
    /// Starts counting now.
    pub(crate) fn new(patience: Duration) -> Self {
        Self {
            started: Instant::now(),
            patience,
            attempt: 1,
        }
    }

    /// The attempt under way, from 1.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The time left, at least `floor`.
    pub(crate) fn left(&self, floor: Duration) -> Duration {
        self.patience
            .saturating_sub(self.started.elapsed())
            .max(floor)
    }

    /// After a failure: waits before the next attempt and says `true`, or says `false` when
    /// the patience is spent.
    pub(crate) async fn again(&mut self) -> bool {
        if self.started.elapsed() >= self.patience {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(u64::from(self.attempt.min(5)))).await;
        self.attempt += 1;
        true
    }

    /// What giving up means, with `error`, the last failure, as its cause.
    pub(crate) fn gave_up(&self, error: ReceiveError, what: &str) -> ReceiveError {
        error.context(format!(
            "gave up after {} s: {what}",
            self.started.elapsed().as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_are_hidden_and_named_by_hash() {
        let dir = Path::new("/out");
        assert_eq!(part_file(dir, "ab"), Path::new("/out/.ab.veilshare-part"));
        assert_eq!(
            journal_file(dir, "ab"),
            Path::new("/out/.ab.veilshare-ranges")
        );
        assert_eq!(
            partial_store_dir(dir, "cd"),
            Path::new("/out/.cd.veilshare-iroh")
        );
    }

    #[test]
    fn names_from_the_network_are_checked_together() {
        assert!(check_names(["a", "b"]).is_ok());
        assert!(check_names(["a", "a"]).is_err());
        assert!(check_names(["../a"]).is_err());
        assert!(check_names([]).is_err());
    }

    #[tokio::test]
    async fn patience_waits_and_then_gives_up() {
        let mut patience = Patience::new(Duration::from_millis(500));
        let start = Instant::now();
        assert!(patience.again().await, "no time spent yet: try again");
        assert!(start.elapsed() >= Duration::from_secs(1), "waits 1 s first");
        assert_eq!(patience.attempt(), 2);
        assert!(!patience.again().await, "the patience is spent");
        let gave_up = patience.gave_up(ReceiveError::unreachable("no answer"), "not reachable");
        assert_eq!(gave_up.to_string(), "gave up after 1 s: not reachable");
        assert_eq!(
            gave_up.kind(),
            crate::receive::error::ReceiveErrorKind::Unreachable
        );
    }
}
