//! Typed models shared by the veilshare UI (WASM) and the backend.
//!
//! Pure data and serde: no tokio, no axum, no web-sys, no I/O. Everything here compiles for
//! `wasm32-unknown-unknown`. The JSON shapes of these types are the local API's contract
//! (see `DESIGN.md`, "Local API").

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod audit;
pub mod bridges;
pub mod dropbox;
pub mod gets;
pub mod metadata;
pub mod recipients;

pub use audit::{AuditEntry, AuditEvent, AuditLogView, RefusalReason, Transport};
pub use bridges::{
    BridgeReach, BridgeSettings, BridgeState, BridgeTransport, BridgesInUse, BridgesView,
};
pub use dropbox::{CreateDropBox, DropBoxLimits, DropBoxView, ReceivedItem};
pub use gets::{DownloadSettings, GetState, GetView, StartGet};
pub use metadata::{MetadataKind, MetadataReport};
pub use recipients::{AddRecipient, RecipientState, RecipientView};

/// Largest number of downloads a policy may allow.
pub const MAX_DOWNLOADS_LIMIT: u32 = 1_000_000;
/// Longest expiry a policy may ask for, in seconds (one year).
pub const MAX_EXPIRES_IN_SECS: u64 = 365 * 24 * 60 * 60;
/// How long a mirror keeps trying to reach its source unless told otherwise, in seconds.
pub const DEFAULT_MIRROR_TIMEOUT_SECS: u64 = 120;
/// Longest a mirror may keep trying to reach its source, in seconds.
pub const MAX_MIRROR_TIMEOUT_SECS: u64 = 60 * 60;
/// Longest label, in bytes of UTF-8.
pub const MAX_LABEL_BYTES: usize = 200;
/// Longest file name, in bytes of UTF-8 (what common file systems accept).
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Most files in one share.
pub const MAX_FILES_PER_SHARE: usize = 10_000;

/// Names of the `multipart/form-data` fields of `POST /api/shares` (besides the file parts).
pub mod form {
    /// Optional maximum number of downloads, a decimal integer ≥ 1.
    pub const MAX_DOWNLOADS: &str = "max_downloads";
    /// Optional lifetime in seconds from creation, a decimal integer ≥ 1.
    pub const EXPIRES_IN_SECS: &str = "expires_in_secs";
    /// Optional free text shown on the share's page.
    pub const LABEL: &str = "label";
    /// Optional `true`/`false`: also share over iroh (reveals the sender's IP address).
    pub const DIRECT: &str = "direct";
    /// Optional `true`/`false`: only recipients holding the share's client key can reach its
    /// onion service ("restricted discovery"; Tor Browser asks for the key).
    pub const RESTRICTED: &str = "restricted";
    /// Optional `true`/`false`: share images as they are, with their metadata (GPS position,
    /// camera serial, …). By default it is removed from images; other formats are reported
    /// in the share's `metadata`, not changed.
    pub const KEEP_METADATA: &str = "keep_metadata";
    /// Optional `true`/`false`: keep the share's history (its audit log) after its data is
    /// deleted. By default the log goes with the data.
    pub const KEEP_LOG: &str = "keep_log";
    /// Optional, repeatable: a named recipient, with an onion service and a key of their own
    /// (see [`crate::recipients`]). Makes the share restricted.
    pub const RECIPIENT: &str = "recipient";
    /// Query parameter naming an upload so that its progress events can be followed.
    pub const UPLOAD_ID_QUERY: &str = "upload";
}

/// The unguessable identifier of a share: 26 characters of lowercase base32 (130 bits, 128 random).
/// Checked when deserialized too: a malformed id in a record or a message is an error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(try_from = "String", into = "String")]
pub struct ShareId(String);

impl TryFrom<String> for ShareId {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
            .ok_or_else(|| format!("{text:?} is not a share id (26 characters, a–z and 2–7)"))
    }
}

impl From<ShareId> for String {
    fn from(id: ShareId) -> Self {
        id.0
    }
}

impl ShareId {
    /// Length of the textual form.
    pub const LEN: usize = 26;

    /// Parses a share id, checking its alphabet and length.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == Self::LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        valid.then(|| Self(text.to_owned()))
    }

    /// The textual form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A BLAKE3 hash in lowercase hex (64 characters). Checked when deserialized too.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash(String);

impl TryFrom<String> for ContentHash {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
            .ok_or_else(|| format!("{text:?} is not a BLAKE3 hash (64 lowercase hex digits)"))
    }
}

impl From<ContentHash> for String {
    fn from(hash: ContentHash) -> Self {
        hash.0
    }
}

impl ContentHash {
    /// Parses 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| Self(text.to_owned()))
    }

    /// The hex form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One file of a share.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// The file name as uploaded (validated: no path separators, no control characters).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 hash of the content.
    pub hash: ContentHash,
}

/// A share's public `manifest.json`: what a share's page serves and what `veilshare get` and
/// mirrors read. One type for both ends, so that the two cannot drift apart; the hashes are
/// checked as they are read ([`ContentHash`] refuses anything but 64 hex digits), the names
/// are not (a reader checks them with [`validate_file_name`] before building a path).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The sender's label.
    pub label: Option<String>,
    /// BLAKE3 hash of the collection (names and file hashes): the same for every copy of the
    /// share (mirrors, direct tickets), so sources can be checked against each other.
    pub content_hash: ContentHash,
    /// Sum of the file sizes.
    pub total_size: u64,
    /// The files, in the share's order.
    pub files: Vec<ManifestFile>,
    /// URL of the whole content (a zip), relative to the link.
    #[serde(default)]
    pub download: String,
    /// Downloads the share still allows; `None` when unlimited.
    #[serde(default)]
    pub downloads_remaining: Option<u32>,
    /// When the share expires, in seconds since the Unix epoch; `None` when never.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Whether a download started now would be admitted.
    #[serde(default)]
    pub accepting_downloads: bool,
}

/// One file of a [`Manifest`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    /// The file's name (unchecked: it comes from the network).
    pub name: String,
    /// Size in bytes, as the sender states it (a reader trusts the hash, not this).
    pub size: u64,
    /// BLAKE3 hash of the content.
    pub blake3: ContentHash,
    /// URL of this file, relative to the link.
    pub path: String,
}

/// What a share allows. Both limits are optional; a share with neither lives until revoked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Policy {
    /// Number of complete downloads after which the share is revoked.
    pub max_downloads: Option<u32>,
    /// Unix time in seconds after which no new download starts.
    pub expires_at: Option<u64>,
}

/// Where a share is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ShareState {
    /// Stored; its onion service is being published.
    Publishing,
    /// Downloads may start.
    Live,
    /// Ended: the download limit was reached.
    Exhausted,
    /// Ended: the expiry passed.
    Expired,
    /// Ended: the owner revoked it.
    Revoked,
}

impl ShareState {
    /// Whether the share has ended for good.
    pub fn is_ended(self) -> bool {
        matches!(self, Self::Exhausted | Self::Expired | Self::Revoked)
    }

    /// A short human word for the state.
    pub fn label(self) -> &'static str {
        match self {
            Self::Publishing => "publishing",
            Self::Live => "live",
            Self::Exhausted => "download limit reached",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// The addresses at which a share can be fetched.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ShareLinks {
    /// `http://<56 chars>.onion/` when Tor is on and the service is published.
    pub onion: Option<String>,
    /// `http://<addr>/s/<id>/` when a plain public listener is on.
    pub local: Option<String>,
    /// An iroh ticket when the share is also shared directly.
    pub ticket: Option<String>,
}

impl ShareLinks {
    /// The link to hand to a recipient: the onion link when there is one, else the local one.
    pub fn preferred(&self) -> Option<&str> {
        self.onion.as_deref().or(self.local.as_deref())
    }
}

/// A share as the API, the UI and the CLI see it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ShareView {
    /// Identifier.
    pub id: ShareId,
    /// Optional label given at creation.
    pub label: Option<String>,
    /// The files, in upload order.
    pub files: Vec<FileEntry>,
    /// Sum of the file sizes.
    pub total_size: u64,
    /// BLAKE3 hash of the share's collection (names and file hashes).
    pub content_hash: ContentHash,
    /// The policy.
    pub policy: Policy,
    /// Unix time in seconds of creation.
    pub created_at: u64,
    /// Complete downloads so far.
    pub downloads_completed: u32,
    /// Transfers running now.
    pub downloads_in_flight: u32,
    /// Downloads still allowed, when limited.
    pub downloads_remaining: Option<u32>,
    /// Where the share is in its life.
    pub state: ShareState,
    /// Unix time in seconds when the share ended.
    pub ended_at: Option<u64>,
    /// Whether the stored copy of an ended share is deleted (it is once no transfer is in
    /// flight and a collection ran).
    #[serde(default)]
    pub data_deleted: bool,
    /// Whether the share was also shared directly over iroh.
    pub direct: bool,
    /// A problem worth showing (publication failed, storage trouble), in plain words.
    pub problem: Option<String>,
    /// Where to fetch it.
    pub links: ShareLinks,
    /// For a restricted share, the key a recipient needs besides the onion link (base32 of an
    /// x25519 secret key: what Tor Browser asks for, and `veilshare get --key` takes).
    #[serde(default)]
    pub client_key: Option<String>,
    /// For a drop box (a share that receives), its limits and what it received; `files` is
    /// then empty.
    #[serde(default)]
    pub dropbox: Option<DropBoxView>,
    /// For a share with named recipients: each one's link, key and state (`links.onion` and
    /// `client_key` are then empty).
    #[serde(default)]
    pub recipients: Vec<RecipientView>,
    /// Identifying metadata found in the files when they were added, per file that had any,
    /// and whether it was removed from the shared copy.
    #[serde(default)]
    pub metadata: Vec<MetadataReport>,
}

/// The validated non-file fields of a create request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(default)]
pub struct CreateShareFields {
    /// See [`form::MAX_DOWNLOADS`].
    pub max_downloads: Option<u32>,
    /// See [`form::EXPIRES_IN_SECS`].
    pub expires_in_secs: Option<u64>,
    /// See [`form::LABEL`].
    pub label: Option<String>,
    /// See [`form::DIRECT`].
    pub direct: bool,
    /// See [`form::RESTRICTED`].
    pub restricted: bool,
    /// See [`form::KEEP_METADATA`].
    pub keep_metadata: bool,
    /// See [`form::KEEP_LOG`].
    pub keep_log: bool,
    /// See [`form::RECIPIENT`].
    pub recipients: Vec<String>,
}

/// `POST /api/mirrors`: fetch a share from elsewhere and publish it from here, with a policy of
/// this node's owner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct CreateMirror {
    /// A direct ticket, or an onion or http link.
    pub source: String,
    /// The client key when the source is a restricted onion link.
    #[serde(default)]
    pub source_key: Option<String>,
    /// How long to keep trying to reach the source, in seconds; `None`:
    /// [`DEFAULT_MIRROR_TIMEOUT_SECS`]; at most [`MAX_MIRROR_TIMEOUT_SECS`].
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// An id of the client's choosing: the fetch's progress comes as
    /// [`Event::MirrorProgress`] events with it (letters, digits, `-` and `_`, at most 64).
    #[serde(default)]
    pub progress_id: Option<String>,
    /// The mirror's own policy and label.
    #[serde(flatten)]
    pub fields: CreateShareFields,
}

impl CreateShareFields {
    /// Checks fields that arrived as JSON by the rules of the form fields.
    pub fn checked(self) -> Result<Self, String> {
        let mut out = Self::default();
        if let Some(max) = self.max_downloads {
            out.set(form::MAX_DOWNLOADS, &max.to_string())?;
        }
        if let Some(secs) = self.expires_in_secs {
            out.set(form::EXPIRES_IN_SECS, &secs.to_string())?;
        }
        if let Some(label) = &self.label {
            out.set(form::LABEL, label)?;
        }
        Self::check_together(self.direct, self.restricted)?;
        out.direct = self.direct;
        out.restricted = self.restricted;
        out.keep_metadata = self.keep_metadata;
        out.keep_log = self.keep_log;
        for name in &self.recipients {
            out.set(form::RECIPIENT, name)?;
        }
        Ok(out)
    }

    /// The fields as `multipart/form-data` name/value pairs: what [`Self::set`] reads back
    /// into the same fields (unset ones are left out; flags are always given).
    pub fn form_fields(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(max) = self.max_downloads {
            out.push((form::MAX_DOWNLOADS, max.to_string()));
        }
        if let Some(secs) = self.expires_in_secs {
            out.push((form::EXPIRES_IN_SECS, secs.to_string()));
        }
        if let Some(label) = &self.label {
            out.push((form::LABEL, label.clone()));
        }
        out.push((form::DIRECT, self.direct.to_string()));
        out.push((form::RESTRICTED, self.restricted.to_string()));
        out.push((form::KEEP_METADATA, self.keep_metadata.to_string()));
        out.push((form::KEEP_LOG, self.keep_log.to_string()));
        for name in &self.recipients {
            out.push((form::RECIPIENT, name.clone()));
        }
        out
    }

    /// Sets one text field from its form name and value, checking it. The error is a message
    /// for the user.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        match name {
            form::MAX_DOWNLOADS => {
                self.max_downloads = if value.is_empty() {
                    None
                } else {
                    Some(parse_max_downloads(value)?)
                }
            }
            form::EXPIRES_IN_SECS => {
                self.expires_in_secs = if value.is_empty() {
                    None
                } else {
                    Some(parse_expires_in(value)?)
                }
            }
            form::LABEL => {
                if value.len() > MAX_LABEL_BYTES {
                    return Err(format!("the label is longer than {MAX_LABEL_BYTES} bytes"));
                }
                if value.chars().any(char::is_control) {
                    return Err("the label contains control characters".into());
                }
                self.label = (!value.is_empty()).then(|| value.to_owned());
            }
            form::DIRECT => {
                let direct = parse_flag(name, value)?;
                Self::check_together(direct, self.restricted)?;
                self.direct = direct;
            }
            form::RESTRICTED => {
                let restricted = parse_flag(name, value)?;
                Self::check_together(self.direct, restricted)?;
                if !restricted && !self.recipients.is_empty() {
                    return Err("a share with named recipients always requires a key".into());
                }
                self.restricted = restricted;
            }
            form::RECIPIENT => {
                Self::check_together(self.direct, true)?;
                let name =
                    recipients::check_new(value, self.recipients.iter().map(String::as_str))?;
                self.recipients.push(name);
                self.restricted = true;
            }
            form::KEEP_METADATA => self.keep_metadata = parse_flag(name, value)?,
            form::KEEP_LOG => self.keep_log = parse_flag(name, value)?,
            other => return Err(format!("unknown form field {other:?}")),
        }
        Ok(())
    }

    /// Rules between fields: a restricted share is not also direct (its ticket would let in
    /// anyone who has it, without the key).
    fn check_together(direct: bool, restricted: bool) -> Result<(), String> {
        if restricted && direct {
            return Err(
                "a share that requires a key cannot also be shared directly: the direct ticket would let anyone who has it in without the key"
                    .into(),
            );
        }
        Ok(())
    }
}

fn parse_flag(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "" | "false" | "0" | "off" => Ok(false),
        "true" | "1" | "on" => Ok(true),
        _ => Err(format!("`{name}` must be true or false, not {value:?}")),
    }
}

fn parse_max_downloads(value: &str) -> Result<u32, String> {
    match value.parse::<u64>() {
        Ok(n) if (1..=u64::from(MAX_DOWNLOADS_LIMIT)).contains(&n) => {
            Ok(u32::try_from(n).unwrap_or(MAX_DOWNLOADS_LIMIT))
        }
        Ok(_) => Err(format!(
            "max_downloads must be between 1 and {MAX_DOWNLOADS_LIMIT} (leave it out for no limit)"
        )),
        Err(_) => Err(format!(
            "max_downloads must be a whole number, not {value:?}"
        )),
    }
}

fn parse_expires_in(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if (1..=MAX_EXPIRES_IN_SECS).contains(&n) => Ok(n),
        Ok(_) => Err(format!(
            "expires_in_secs must be between 1 and {MAX_EXPIRES_IN_SECS} (one year; leave it out for no expiry)"
        )),
        Err(_) => Err(format!(
            "expires_in_secs must be a whole number of seconds, not {value:?}"
        )),
    }
}

/// A size in bytes for people: `1023 bytes`, `1.5 KiB`, `3.0 MiB` (binary units, one decimal).
/// The UI, the public pages and the command line all say sizes this way.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A size as people type it: `500M`, `2 GB`, `1.5GiB`, or bytes; the units are powers of 1024
/// either way (as [`human_size`] says them). The CLI and the UI read sizes with this. The
/// error is a message for the user.
pub fn parse_size(text: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(text.trim())
        .map_err(|_| format!("{text:?} is not a size like 500 MB or 2 GB"))
}

/// Checks a file name, uploaded or received. The error is a message for the user.
///
/// Names are kept as given when they are safe to show and to write on any common file system
/// (ext4, APFS, NTFS, FAT): at most [`MAX_FILE_NAME_BYTES`] bytes; no path separators, no `.`
/// or `..`; none of `<>:"|?*` (refused or given meaning by Windows); no trailing dot or space
/// (Windows drops them, so `a.exe.` turns into `a.exe`); not a Windows device name (`CON`,
/// `NUL.txt`, `COM1`…, which open a device instead of a file); no control characters, and no
/// invisible characters that change how a name reads (bidirectional overrides turn
/// `invoice<U+202E>fdp.exe` into what looks like `invoiceexe.pdf`). Names of one share must also
/// differ by [`file_name_key`].
pub fn validate_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.trim().is_empty() {
        return Err("a file has an empty name".into());
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(format!(
            "the file name starting {:?} is longer than {MAX_FILE_NAME_BYTES} bytes",
            name.chars().take(32).collect::<String>()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a file name"));
    }
    if name.contains(['/', '\\']) {
        return Err(format!(
            "the file name {name:?} looks like a path; send file names without folders"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the file name {name:?} contains control characters"
        ));
    }
    if let Some(c) = name.chars().find(|c| is_misleading(*c)) {
        return Err(format!(
            "the file name {:?} contains the invisible character U+{:04X}, which changes how \
             the name reads; rename the file",
            name.replace(is_misleading, "?"),
            u32::from(c)
        ));
    }
    if let Some(c) = name.chars().find(|c| "<>:\"|?*".contains(*c)) {
        return Err(format!(
            "the file name {name:?} contains {c:?}, which Windows does not allow; rename the file"
        ));
    }
    if name.ends_with(['.', ' ']) {
        return Err(format!(
            "the file name {name:?} ends with a dot or a space, which Windows drops; rename the file"
        ));
    }
    let stem = name.split('.').next().unwrap_or_default().trim_end();
    if is_windows_device(stem) {
        return Err(format!(
            "the file name {name:?} is a device name on Windows ({}); rename the file",
            stem.to_uppercase()
        ));
    }
    Ok(())
}

/// Characters that are invisible and change how a name reads: bidirectional controls, line
/// and paragraph separators, the byte-order mark. (Joiners stay allowed: emoji and several
/// scripts need them.)
fn is_misleading(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{FEFF}'
    )
}

/// Whether `stem` (a name before its first dot, trailing spaces removed) names a Windows
/// device: `CON`, `PRN`, `AUX`, `NUL`, `COM1`–`COM9`, `LPT1`–`LPT9` (and the superscript
/// digits Windows also accepts), in any case.
fn is_windows_device(stem: &str) -> bool {
    let upper = stem.to_ascii_uppercase();
    if matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) {
        return true;
    }
    let (Some(prefix), Some(digit)) = (upper.get(..3), upper.get(3..)) else {
        return false;
    };
    matches!(prefix, "COM" | "LPT")
        && matches!(
            digit,
            "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "\u{B9}" | "\u{B2}" | "\u{B3}"
        )
}

/// The form under which two names are the same file somewhere: Unicode-normalized (NFC; macOS
/// stores another form of `é` than Linux) and case-folded (Windows and macOS ignore case). Two
/// files of one share must have different keys.
pub fn file_name_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.nfc().collect::<String>().to_lowercase()
}

/// The Tor side of the app, as `GET /api/status` and events report it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TorStatus {
    /// Tor is turned off (`--no-tor`).
    Disabled,
    /// Connecting to the Tor network; `progress` in 0.0..=1.0.
    Bootstrapping {
        /// Fraction done.
        progress: f32,
        /// What it is doing, in plain words.
        message: String,
    },
    /// Ready to publish onion services.
    Ready,
    /// It cannot connect; `message` says why and what to do.
    Failed {
        /// The problem in plain words.
        message: String,
    },
}

/// The direct (iroh) side of the app.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum P2pStatus {
    /// No endpoint is open (no direct share needs one).
    Idle,
    /// An endpoint is open with this endpoint id.
    Running {
        /// The endpoint id.
        endpoint_id: String,
    },
}

/// `GET /api/status`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Status {
    /// The program's version.
    pub version: String,
    /// Tor state.
    pub tor: TorStatus,
    /// Direct-sharing state.
    pub p2p: P2pStatus,
    /// Base URL of the plain public listener, when on.
    pub public_base: Option<String>,
    /// The bridges Tor goes through, when it uses any.
    #[serde(default)]
    pub bridges: Option<BridgesInUse>,
}

/// Something that happened, as sent on `GET /api/events`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Bytes of an upload received so far (all parts together).
    UploadProgress {
        /// The id the client gave in the `upload` query parameter, or one made up.
        upload_id: String,
        /// Bytes received so far.
        received: u64,
        /// The request's length, when the client said it.
        total: Option<u64>,
    },
    /// A mirror's fetch moved on (at most twice a second, while it fetches).
    MirrorProgress {
        /// The `progress_id` of the mirror request.
        progress_id: String,
        /// Bytes fetched so far.
        done: u64,
        /// The share's size, once its source said.
        total: Option<u64>,
        /// How many files it has, once its source said.
        files: Option<usize>,
    },
    /// An upload was refused or failed; nothing was kept.
    UploadFailed {
        /// The upload.
        upload_id: String,
        /// Why, in plain words.
        message: String,
    },
    /// A share was created (its state says whether it is live or publishing).
    ShareCreated {
        /// The upload it came from.
        upload_id: String,
        /// The new share.
        share: ShareView,
    },
    /// A share's counters, state or links changed.
    ShareUpdated {
        /// The share as it is now.
        share: ShareView,
    },
    /// A download started.
    DownloadStarted {
        /// The share.
        id: ShareId,
        /// What is being fetched: `download` or `files/<name>`.
        resource: String,
        /// Bytes this transfer will send.
        bytes: u64,
    },
    /// A transfer ended; `completed_downloads` is the share's new count.
    DownloadEnded {
        /// The share.
        id: ShareId,
        /// Bytes sent.
        sent: u64,
        /// Whether the transfer ran to its end.
        finished: bool,
        /// The share's complete downloads now.
        downloads_completed: u32,
    },
    /// A share ended (limit, expiry, owner) and its data is being deleted.
    ShareEnded {
        /// The share as it is now.
        share: ShareView,
    },
    /// Tor's state changed.
    Tor {
        /// The new state.
        status: TorStatus,
    },
    /// The bridges Tor goes through changed, or one was reached or failed.
    Bridges {
        /// The bridges in use now; `None`: none.
        bridges: Option<BridgesInUse>,
    },
    /// A fetch in the Get panel started, moved on, paused or ended.
    GetUpdated {
        /// The fetch as it is now.
        get: gets::GetView,
    },
    /// A fetch was removed from the Get panel.
    GetRemoved {
        /// Its id.
        id: String,
    },
}

/// What kind of failure an API error is; the HTTP status follows from it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or a value is out of range (400).
    BadRequest,
    /// Missing or wrong credentials (401).
    Unauthorized,
    /// Not allowed from here (foreign `Host` or `Origin`) (403).
    Forbidden,
    /// No such share (404).
    NotFound,
    /// The upload is bigger than allowed (413).
    PayloadTooLarge,
    /// Not enough free disk space (507).
    InsufficientStorage,
    /// Something broke on our side (500).
    Internal,
    /// The source of a mirror sent something that is not a share (502).
    Upstream,
    /// The source of a mirror refused for good: that share has ended or does not exist (410).
    SourceEnded,
    /// The source of a mirror refused for now: all its downloads are in progress (429).
    SourceBusy,
    /// The source of a mirror did not answer: its sender is offline, or no route (504).
    SourceUnreachable,
    /// A service this needs (direct sharing, Tor) is not available (503).
    Unavailable,
}

/// The JSON body of every API error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// What happened and what to do, in plain words.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_type_them_in_powers_of_1024() {
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size(" 2 GB "), Ok(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err() && parse_size("").is_err());
    }

    #[test]
    fn ids_and_hashes_are_checked_when_deserialized() {
        let id: ShareId =
            serde_json::from_str("\"abcdefghijklmnopqrstuvwxyz\"").expect("a valid id");
        assert_eq!(
            serde_json::to_string(&id).expect("json"),
            "\"abcdefghijklmnopqrstuvwxyz\""
        );
        assert!(serde_json::from_str::<ShareId>("\"../../etc/passwd\"").is_err());
        assert!(serde_json::from_str::<ShareId>("\"ABCDEFGHIJKLMNOPQRSTUVWXYZ\"").is_err());
        let hash = "0".repeat(64);
        let parsed: ContentHash =
            serde_json::from_str(&format!("\"{hash}\"")).expect("a valid hash");
        assert_eq!(parsed.as_str(), hash);
        assert!(serde_json::from_str::<ContentHash>("\"00\"").is_err());
        assert!(serde_json::from_str::<ContentHash>(&format!("\"{}\"", "G".repeat(64))).is_err());
    }

    #[test]
    fn a_manifest_reads_back_what_was_written_and_refuses_a_bad_hash() {
        let hash = ContentHash::parse(&"ab".repeat(32)).expect("hash");
        let manifest = Manifest {
            label: Some("notes".into()),
            content_hash: hash.clone(),
            total_size: 3,
            files: vec![ManifestFile {
                name: "a b.txt".into(),
                size: 3,
                blake3: hash,
                path: "files/a%20b.txt".into(),
            }],
            download: "download".into(),
            downloads_remaining: Some(2),
            expires_at: None,
            accepting_downloads: true,
        };
        let json = serde_json::to_string(&manifest).expect("json");
        assert_eq!(
            serde_json::from_str::<Manifest>(&json).expect("read"),
            manifest
        );
        let bad = json.replace(&"ab".repeat(32), "not-a-hash");
        assert!(serde_json::from_str::<Manifest>(&bad).is_err());
    }

    #[test]
    fn form_fields_read_back_into_the_same_fields() {
        let fields = CreateShareFields {
            max_downloads: Some(3),
            expires_in_secs: Some(600),
            label: Some("for Ana".into()),
            direct: true,
            restricted: false,
            keep_metadata: true,
            keep_log: true,
            recipients: Vec::new(),
        };
        let mut read = CreateShareFields::default();
        for (name, value) in fields.form_fields() {
            read.set(name, &value).expect("valid");
        }
        assert_eq!(read, fields);
        assert_eq!(
            CreateShareFields::default().form_fields().len(),
            4,
            "unset limits and label are left out"
        );
    }

    #[test]
    fn a_restricted_share_is_never_also_direct() {
        let mut fields = CreateShareFields::default();
        fields.set(form::DIRECT, "true").expect("direct alone");
        assert!(fields.set(form::RESTRICTED, "true").is_err());
        assert!(!fields.restricted, "a refused value is not kept");
        let both = CreateShareFields {
            direct: true,
            restricted: true,
            ..CreateShareFields::default()
        };
        assert!(both.checked().is_err());
    }

    #[test]
    fn named_recipients_make_a_share_restricted_and_round_trip() {
        let mut fields = CreateShareFields::default();
        fields.set(form::RECIPIENT, " alice ").expect("alice");
        fields.set(form::RECIPIENT, "bob").expect("bob");
        assert!(fields.restricted);
        assert_eq!(fields.recipients, ["alice", "bob"]);
        assert!(
            fields.set(form::RECIPIENT, "Alice").is_err(),
            "a name twice"
        );
        assert!(fields.set(form::RESTRICTED, "false").is_err());
        assert!(fields.set(form::DIRECT, "true").is_err());
        let mut back = CreateShareFields::default();
        for (name, value) in fields.form_fields() {
            back.set(name, &value).expect("its own fields read back");
        }
        assert_eq!(back, fields);
        let json = CreateShareFields {
            recipients: vec!["carol".into()],
            ..CreateShareFields::default()
        };
        assert!(json.checked().expect("checked").restricted);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1023), "1023 bytes");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
        assert_eq!(human_size(5 << 40), "5.0 TiB");
        assert_eq!(human_size(5 << 50), "5.0 PiB");
    }

    #[test]
    fn share_id_rejects_foreign_alphabet_and_length() {
        assert!(ShareId::parse("abcdefghijklmnopqrstuvwxyz").is_some());
        assert!(ShareId::parse("abcdefghijklmnopqrstuvwxy").is_none());
        assert!(ShareId::parse("abcdefghijklmnopqrstuvwxy1").is_none());
        assert!(ShareId::parse("../../etc/passwd_________x").is_none());
    }

    #[test]
    fn policy_fields_are_range_checked() {
        let mut fields = CreateShareFields::default();
        assert!(fields.set(form::MAX_DOWNLOADS, "0").is_err());
        assert!(fields.set(form::MAX_DOWNLOADS, "-1").is_err());
        assert!(fields.set(form::MAX_DOWNLOADS, "1000001").is_err());
        assert!(fields.set(form::EXPIRES_IN_SECS, "0").is_err());
        assert!(fields.set(form::EXPIRES_IN_SECS, "99999999999").is_err());
        assert!(fields.set(form::DIRECT, "maybe").is_err());
        assert!(fields.set("colour", "red").is_err());
        assert_eq!(fields, CreateShareFields::default());
        fields.set(form::MAX_DOWNLOADS, " 3 ").expect("valid");
        fields.set(form::EXPIRES_IN_SECS, "600").expect("valid");
        fields.set(form::LABEL, "for Ana").expect("valid");
        assert_eq!(fields.max_downloads, Some(3));
        assert_eq!(fields.expires_in_secs, Some(600));
        assert_eq!(fields.label.as_deref(), Some("for Ana"));
    }

    #[test]
    fn flags_take_true_or_false_only() {
        let mut fields = CreateShareFields::default();
        fields.set(form::RESTRICTED, "true").expect("true");
        assert!(fields.restricted);
        fields.set(form::RESTRICTED, "0").expect("0");
        fields.set(form::DIRECT, "on").expect("on");
        assert!(!fields.restricted && fields.direct);
        let error = fields
            .set(form::RESTRICTED, "yes please")
            .expect_err("refused");
        assert!(error.contains("restricted"), "{error}");
    }

    #[test]
    fn file_names_that_look_like_paths_are_refused() {
        for bad in ["", " ", ".", "..", "a/b", "..\\x", "a\0b", "line\nbreak"] {
            assert!(validate_file_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_file_name(&"é".repeat(128)).is_err());
        for good in ["report.pdf", "Ünïcødé 文件 🎉.txt", ".hidden", "a b"] {
            assert!(validate_file_name(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn file_names_unsafe_on_some_file_system_or_misleading_are_refused() {
        let bad = [
            "CON",
            "con.txt",
            "NUL.tar.gz",
            "aux ",
            "Com1.log",
            "lpt9",
            "COM\u{B9}.txt",
            "prn .txt",
            "a:b",
            "a<b",
            "a>b",
            "a|b",
            "a?b",
            "a*b",
            "a\"b",
            "name.",
            "name ",
            "invoice\u{202E}fdp.exe",
            "a\u{2066}b",
            "\u{FEFF}a",
            "a\u{2028}b",
            "a\u{200F}b",
        ];
        for name in bad {
            assert!(validate_file_name(name).is_err(), "{name:?} accepted");
        }
        let error = validate_file_name("invoice\u{202E}fdp.exe").expect_err("refused");
        assert!(
            !error.contains('\u{202E}'),
            "the message repeats the override: {error}"
        );
        // Near misses stay valid, joiners too (emoji sequences and several scripts need them).
        let good = [
            "CONFIG.txt",
            "console",
            "COM10",
            "nul_results.csv",
            "LPT",
            ".con",
            "👨\u{200D}👩\u{200D}👧.jpg",
            "می\u{200C}خواهم.txt",
        ];
        for name in good {
            assert!(validate_file_name(name).is_ok(), "{name:?} refused");
        }
    }

    #[test]
    fn names_that_are_the_same_file_somewhere_share_a_key() {
        // NFC and NFD forms of "é", and case.
        assert_eq!(
            file_name_key("caf\u{E9}.txt"),
            file_name_key("cafe\u{301}.txt")
        );
        assert_eq!(file_name_key("Report.PDF"), file_name_key("report.pdf"));
        assert_ne!(file_name_key("a.txt"), file_name_key("b.txt"));
    }

    #[test]
    fn event_json_is_tagged() {
        let event = Event::Tor {
            status: TorStatus::Ready,
        };
        let json = serde_json::to_string(&event).expect("serialize");
        assert_eq!(json, r#"{"type":"tor","status":{"state":"ready"}}"#);
    }
}
