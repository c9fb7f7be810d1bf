//! What a fetch keeps on this machine, named in one place: part files, journals and partial
//! stores in the output folder, the checks a name from the network passes before it becomes a
//! path, hashing what is on disk, and the progress bars every fetch shows.
//!
//! Invariants:
//! - Scratch files are named by content hash, never by a name from the network: any valid file
//!   name (up to 255 bytes) still leaves room for them, and a resume finds them whatever the
//!   name. They start with a dot and end in `.veilshare-…`, so they are easy to recognise.
//! - A name from the network passes [`check_names`] before any path is built from it; a hidden
//!   name (`.bashrc`) only when the user asked for hidden files, and never one of our scratch
//!   names.
//! - A downloaded file never replaces a file: [`place`] moves it to its name only if that is
//!   free, else to `name (1).ext`, `name (2).ext`, … (an atomic no-replace rename).
//! - Scratch files are opened without following symbolic links, so a link planted at a
//!   predictable name cannot redirect our writes.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::time::Instant;

use crate::receive::error::{IoContext, ReceiveError, Result};

/// Whether what a fetch has to tell its user goes to the log (in the app, whose UI shows the
/// same: its files, where they were saved) instead of the terminal (`get`, `send`).
static TELL_THE_LOG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, fetches in this process tell the log, not the terminal (the app calls it).
pub fn tell_the_log() {
    TELL_THE_LOG.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Tells the user something about a fetch: on the terminal, or in the app's log.
pub(crate) fn tell(message: std::fmt::Arguments<'_>) {
    if TELL_THE_LOG.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::info!("{message}");
    } else {
        eprintln!("{message}");
    }
}

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
fn check_file_name(name: &str) -> Result<()> {
    veilshare_shared::validate_file_name(name).map_err(|problem| {
        ReceiveError::integrity(format!(
            "refusing the share: {problem} (a file name must not leave the output folder)"
        ))
    })
}

/// Whether `name` is one veilshare gives its own scratch files.
fn is_scratch_name(name: &str) -> bool {
    name.starts_with('.')
        && [".veilshare-part", ".veilshare-ranges", ".veilshare-iroh"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

/// Refuses a list of names from the network: any bad name, a duplicate, none at all, one of
/// our scratch names, and a hidden name (`.bashrc`, `.ssh`…: fetched into a home folder, it
/// could change how programs behave) unless `allow_hidden`.
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a str>, allow_hidden: bool) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if seen.len() == veilshare_shared::MAX_FILES_PER_SHARE {
            return Err(ReceiveError::integrity(format!(
                "refusing the share: it lists more than {} files, the most a share can have",
                veilshare_shared::MAX_FILES_PER_SHARE
            )));
        }
        check_file_name(name)?;
        if is_scratch_name(name) {
            return Err(ReceiveError::integrity(format!(
                "refusing the share: {name:?} is a name veilshare uses for its partial downloads"
            )));
        }
        if name.starts_with('.') && !allow_hidden {
            return Err(ReceiveError::integrity(format!(
                "refusing the share: it holds the hidden file {name:?}, which could change how programs on this computer behave; if you trust the sender, run again with --allow-hidden"
            )));
        }
        if !seen.insert(veilshare_shared::file_name_key(name)) {
            return Err(ReceiveError::integrity(format!(
                "refusing the share: two of its files are named {name:?} (or differ only in case or Unicode form, and would be one file on Windows or macOS)"
            )));
        }
    }
    if seen.is_empty() {
        return Err(ReceiveError::integrity("the share has no files"));
    }
    Ok(())
}

/// The names a file called `name` may take, in order: `name`, then `stem (1).ext`,
/// `stem (2).ext`, … (the extension is what follows the last dot, unless the name starts
/// with it).
fn candidate_names(name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, extension) = match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    };
    std::iter::once(name.to_owned()).chain((1..).map(move |n| format!("{stem} ({n}){extension}")))
}

/// How many other names [`place`] tries before it gives up.
const MAX_OTHER_NAMES: usize = 999;

/// Where a file landed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Placed {
    /// Its path.
    pub(crate) path: PathBuf,
    /// Whether its own name was taken (by another file), so it went under another.
    pub(crate) renamed: bool,
}

/// Moves the verified `part` to `name` in `out_dir` without ever replacing a file: the name
/// if nothing has it, else the first free one of `stem (1).ext`, `stem (2).ext`, … Each try is
/// one atomic no-replace rename (a hard link where the file system has no such rename), so a
/// file that appears meanwhile is not replaced either.
pub(crate) fn place(part: &Path, out_dir: &Path, name: &str) -> Result<Placed> {
    use rustix::{fs::RenameFlags, io::Errno};
    for (index, candidate) in candidate_names(name).take(MAX_OTHER_NAMES + 1).enumerate() {
        let target = out_dir.join(&candidate);
        let moved = match rustix::fs::renameat_with(
            rustix::fs::CWD,
            part,
            rustix::fs::CWD,
            &target,
            RenameFlags::NOREPLACE,
        ) {
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                // No such rename here (some file systems): a link cannot replace either.
                std::fs::hard_link(part, &target).and_then(|()| std::fs::remove_file(part))
            }
            other => other.map_err(std::io::Error::from),
        };
        match moved {
            Ok(()) => {
                return Ok(Placed {
                    path: target,
                    renamed: index > 0,
                });
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(ReceiveError::io(format!(
                    "cannot move {} into place as {}",
                    part.display(),
                    target.display()
                ))
                .because(error));
            }
        }
    }
    Err(ReceiveError::io(format!(
        "{name:?} and {MAX_OTHER_NAMES} other names for it are taken in {}; choose another output folder",
        out_dir.display()
    )))
}

/// A file already in `out_dir` under `name` or one of its other names that holds exactly
/// this content (same size, same hash): a rerun finds what an earlier run placed.
pub(crate) async fn existing_copy(
    out_dir: &Path,
    name: &str,
    size: u64,
    hash_hex: &str,
) -> Result<Option<PathBuf>> {
    for candidate in candidate_names(name).take(MAX_OTHER_NAMES + 1) {
        let path = out_dir.join(candidate);
        let Ok(metadata) = tokio::fs::symlink_metadata(&path).await else {
            // The first free name: nothing further was placed by us.
            return Ok(None);
        };
        if metadata.is_file() && metadata.len() == size && hash_file(&path).await? == hash_hex {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Options that open a scratch file for writing without following a symbolic link.
pub(crate) fn scratch_options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    options
}

/// Free bytes for an unprivileged user on the file system of `path`.
fn free_space(path: &Path) -> Result<u64> {
    let stat = rustix::fs::statvfs(path)
        .map_err(std::io::Error::from)
        .io_context(|| format!("cannot tell the free space in {}", path.display()))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Refuses a download of `needed` more bytes into `out_dir` that its disk cannot hold (sizes
/// come from the sender: a lying one must not be able to fill the disk, nor make us allocate
/// a sparse file of terabytes).
pub(crate) fn check_room(out_dir: &Path, needed: u64) -> Result<()> {
    let free = free_space(out_dir)?;
    if needed > free {
        return Err(ReceiveError::io(format!(
            "not enough free disk space in {}: the share needs {} more, {} are free",
            out_dir.display(),
            veilshare_shared::human_size(needed),
            veilshare_shared::human_size(free)
        )));
    }
    Ok(())
}

/// Text from the network made safe to print on a terminal: control characters (escape
/// sequences) and bidirectional overrides become `?`.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control()
                || ('\u{202A}'..='\u{202E}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)
            {
                '?'
            } else {
                c
            }
        })
        .collect()
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

/// What a fetch has done so far, for someone other than a terminal to show (the app's Get
/// panel): the share's file list once known, and the bars of the fetch, whose positions add up
/// to the bytes saved.
#[derive(Debug, Default)]
pub struct Progress {
    bars: std::sync::Mutex<Vec<indicatif::ProgressBar>>,
    manifest: std::sync::Mutex<Option<Listing>>,
}

/// The share's label and files, as its source listed them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Listing {
    /// The share's label.
    pub label: Option<String>,
    /// Its files.
    pub files: Vec<ListedFile>,
    /// The collection's BLAKE3 hash (hex): names the partial store of a fetch from several
    /// sources or a ticket.
    #[serde(default)]
    pub root: Option<String>,
}

/// A file of a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListedFile {
    /// Its name in the share.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its BLAKE3 hash (hex): names its partial files.
    pub blake3: String,
}

impl Listing {
    /// Bytes of all the files.
    pub fn total(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

impl Progress {
    /// Bytes saved so far, over every file.
    pub fn done(&self) -> u64 {
        self.bars
            .lock()
            .map(|bars| bars.iter().map(indicatif::ProgressBar::position).sum())
            .unwrap_or(0)
    }

    /// The share's listing, once it arrived.
    pub fn listing(&self) -> Option<Listing> {
        self.manifest.lock().ok().and_then(|m| m.clone())
    }

    pub(crate) fn set_listing(&self, listing: Listing) {
        if let Ok(mut manifest) = self.manifest.lock() {
            *manifest = Some(listing);
        }
    }

    fn watch(&self, bar: &indicatif::ProgressBar) {
        if let Ok(mut bars) = self.bars.lock() {
            bars.push(bar.clone());
        }
    }
}

/// A progress bar for `total` bytes (unknown yet: `None`), hidden when `quiet`. Every fetch
/// draws the same bar; a bar whose total is learnt later gets it with [`set_total`]. With
/// `progress`, the bar also counts there (hidden or not).
pub(crate) fn progress_bar(
    quiet: bool,
    total: Option<u64>,
    message: String,
    progress: Option<&Progress>,
) -> indicatif::ProgressBar {
    let bar = bar(quiet, total, message);
    if let Some(progress) = progress {
        progress.watch(&bar);
    }
    bar
}

fn bar(quiet: bool, total: Option<u64>, message: String) -> indicatif::ProgressBar {
    if quiet {
        // Hidden, but counting: a hidden bar keeps its position.
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
        assert!(check_names(["a", "b"], false).is_ok());
        assert!(check_names(["a", "a"], false).is_err());
        assert!(check_names(["a", "A"], false).is_err());
        assert!(check_names(["caf\u{E9}", "cafe\u{301}"], false).is_err());
        assert!(check_names(["NUL"], false).is_err());
        assert!(check_names(["../a"], false).is_err());
        assert!(check_names([], false).is_err());
        assert!(check_names([".bashrc"], false).is_err());
        assert!(check_names([".bashrc"], true).is_ok());
        let scratch = format!(".{}.veilshare-part", "ab".repeat(32));
        assert!(check_names([scratch.as_str()], true).is_err());
        // No more files than a share can hold (a manifest of 100,000 entries fits in 16 MiB).
        let most: Vec<String> = (0..veilshare_shared::MAX_FILES_PER_SHARE)
            .map(|i| format!("f{i}"))
            .collect();
        assert!(check_names(most.iter().map(String::as_str), false).is_ok());
        let one_more = most.iter().map(String::as_str).chain(["last"]);
        let error = check_names(one_more, false).expect_err("too many");
        assert!(
            error.to_string().contains("more than 10000 files"),
            "{error}"
        );
    }

    #[test]
    fn placing_never_replaces_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path();
        std::fs::write(out.join("notes.txt"), b"mine").expect("mine");
        std::fs::write(out.join("notes (1).txt"), b"mine too").expect("mine");
        let part = part_file(out, "aa");
        std::fs::write(&part, b"theirs").expect("part");
        let placed = place(&part, out, "notes.txt").expect("placed");
        assert_eq!(
            placed,
            Placed {
                path: out.join("notes (2).txt"),
                renamed: true
            }
        );
        assert_eq!(std::fs::read(out.join("notes.txt")).expect("read"), b"mine");
        assert_eq!(std::fs::read(&placed.path).expect("read"), b"theirs");
        assert!(!part.exists());
        // Names without an extension, and hidden ones, keep their shape.
        assert_eq!(
            candidate_names("README").nth(1).as_deref(),
            Some("README (1)")
        );
        assert_eq!(
            candidate_names(".profile").nth(2).as_deref(),
            Some(".profile (2)")
        );
    }

    #[test]
    fn scratch_files_do_not_follow_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("victim");
        let part = part_file(dir.path(), "bb");
        std::os::unix::fs::symlink(&victim, &part).expect("symlink");
        assert!(scratch_options().open(&part).is_err());
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
    }

    #[test]
    fn terminal_text_loses_its_escapes() {
        assert_eq!(printable("a\u{1b}[2Jb\u{202E}c"), "a?[2Jb?c");
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

#[cfg(test)]
mod names_harness {
    //! Harness "names from a sender" (manifests, tickets, multi-source): whatever names a
    //! manifest lists, either the share is refused, or every name is a plain file name that
    //! stays in the output folder, is not hidden (unless allowed), and no two would be one file
    //! on Windows or macOS.

    use std::path::{Component, Path};

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn names_that_pass_stay_in_the_folder_and_are_distinct(
            names in proptest::collection::vec(
                prop_oneof![
                    any::<String>(),
                    "[./\\\\a-zA-Z0-9 :*?<>|\u{202e}\u{feff}\u{0301}é]{0,12}",
                    Just("..".to_owned()),
                    Just("CON".to_owned()),
                ],
                0..6,
            ),
            allow_hidden in any::<bool>(),
        ) {
            // The names travel in a manifest, as from a sender.
            let hash = veilshare_shared::ContentHash::parse(&"0".repeat(64)).expect("hash");
            let manifest = veilshare_shared::Manifest {
                label: None,
                content_hash: hash.clone(),
                total_size: 0,
                files: names
                    .iter()
                    .map(|name| veilshare_shared::ManifestFile {
                        name: name.clone(),
                        size: 0,
                        blake3: hash.clone(),
                        path: String::new(),
                    })
                    .collect(),
                download: String::new(),
                downloads_remaining: None,
                expires_at: None,
                accepting_downloads: true,
            };
            let text = serde_json::to_string(&manifest).expect("json");
            let parsed: veilshare_shared::Manifest = serde_json::from_str(&text).expect("parsed");
            let names: Vec<String> = parsed.files.into_iter().map(|file| file.name).collect();
            if super::check_names(names.iter().map(String::as_str), allow_hidden).is_ok() {
                let out = Path::new("/out");
                let mut keys = std::collections::HashSet::new();
                for name in &names {
                    let joined = out.join(name);
                    prop_assert_eq!(joined.parent(), Some(out), "{:?}", name);
                    prop_assert!(
                        joined.components().skip(2).all(|c| matches!(c, Component::Normal(_))),
                        "{:?}", name
                    );
                    prop_assert!(allow_hidden || !name.starts_with('.'));
                    prop_assert!(!name.chars().any(char::is_control), "{:?}", name);
                    prop_assert!(keys.insert(veilshare_shared::file_name_key(name)));
                }
            }
        }

        #[test]
        fn any_manifest_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = serde_json::from_slice::<veilshare_shared::Manifest>(&bytes);
        }

        #[test]
        fn any_ticket_text_parses_or_fails_cleanly(text in prop_oneof![any::<String>(), "blob[a-z2-7]{0,120}"]) {
            let _ = text.parse::<iroh_blobs::ticket::BlobTicket>();
        }
    }
}
