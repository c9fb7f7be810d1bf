//! Drop boxes: shares that receive. A drop box has its own onion service and key like every
//! share, serves a form where strangers upload files (and a message, when the owner allows
//! one), and keeps what arrived for its owner; nothing received is ever served back on the
//! public side. It ends by expiry, by its upload quota or by its owner, and the address is
//! gone for good; what it received stays until the owner deletes it.

use serde::{Deserialize, Serialize};

use crate::{FileEntry, MAX_EXPIRES_IN_SECS, MAX_LABEL_BYTES};

/// The longest message an uploader may leave, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// The most files one upload may hold.
pub const MAX_FILES_PER_UPLOAD: usize = 1000;
/// The most uploads a drop box may be set to take.
pub const MAX_UPLOADS_LIMIT: u32 = 100_000;

/// `POST /api/dropboxes`: a new drop box. Every limit is optional (`None`: no limit beyond
/// the free disk space).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CreateDropBox {
    /// A label for the owner (shown on the form too).
    pub label: Option<String>,
    /// Bytes the box takes in all, over all uploads.
    pub max_bytes: Option<u64>,
    /// Bytes one file may have.
    pub max_file: Option<u64>,
    /// Uploads the box takes; it ends after the last.
    pub max_uploads: Option<u32>,
    /// Seconds until the box ends.
    pub expires_in_secs: Option<u64>,
    /// Uploaders may leave a text message.
    pub text: bool,
    /// Only uploaders with the box's key reach it (Tor client authorization).
    pub restricted: bool,
    /// An age recipient (`age1…`): every upload is encrypted to it as it arrives, so that no
    /// plaintext byte of it touches the disk; the owner decrypts wherever the identity lives.
    pub encrypt_to: Option<String>,
    /// Keep the box's history after its data is deleted (see `form::KEEP_LOG`).
    pub keep_log: bool,
}

impl CreateDropBox {
    /// Checks the request; the error is a message for the user.
    pub fn checked(self) -> Result<Self, String> {
        if let Some(label) = &self.label {
            if label.len() > MAX_LABEL_BYTES {
                return Err(format!("the label is longer than {MAX_LABEL_BYTES} bytes"));
            }
            if label.chars().any(char::is_control) {
                return Err("the label contains control characters".into());
            }
        }
        for (name, value) in [("max_bytes", self.max_bytes), ("max_file", self.max_file)] {
            if value == Some(0) {
                return Err(format!(
                    "{name} must be at least 1 byte (leave it out for no limit)"
                ));
            }
        }
        if let (Some(file), Some(total)) = (self.max_file, self.max_bytes)
            && file > total
        {
            return Err(format!(
                "max_file ({file} bytes) is larger than max_bytes ({total} bytes): no file could use it"
            ));
        }
        if let Some(uploads) = self.max_uploads
            && !(1..=MAX_UPLOADS_LIMIT).contains(&uploads)
        {
            return Err(format!(
                "max_uploads must be between 1 and {MAX_UPLOADS_LIMIT} (leave it out for no limit)"
            ));
        }
        if let Some(secs) = self.expires_in_secs
            && !(1..=MAX_EXPIRES_IN_SECS).contains(&secs)
        {
            return Err(format!(
                "expires_in_secs must be between 1 and {MAX_EXPIRES_IN_SECS} (one year; leave it out for no expiry)"
            ));
        }
        if let Some(recipient) = &self.encrypt_to
            && !(recipient.starts_with("age1")
                && recipient.len() <= 128
                && recipient.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(
                "encrypt_to must be an age recipient (a public key that starts with age1, from `age-keygen`)"
                    .into(),
            );
        }
        let label = self
            .label
            .map(|label| label.trim().to_owned())
            .filter(|label| !label.is_empty());
        Ok(Self { label, ..self })
    }
}

/// The limits a drop box was made with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct DropBoxLimits {
    /// Bytes in all.
    pub max_bytes: Option<u64>,
    /// Bytes a file.
    pub max_file: Option<u64>,
    /// Uploads.
    pub max_uploads: Option<u32>,
    /// Whether uploaders may leave a message.
    pub text: bool,
    /// The age recipient uploads are encrypted to, when they are.
    #[serde(default)]
    pub encrypt_to: Option<String>,
}

/// What a drop box is and holds, in its share's view.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct DropBoxView {
    /// Its limits.
    pub limits: DropBoxLimits,
    /// Uploads received.
    pub uploads: u32,
    /// Bytes received (of the items still kept).
    pub bytes: u64,
    /// What arrived, oldest first.
    pub items: Vec<ReceivedItem>,
}

/// One upload that arrived in a drop box.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReceivedItem {
    /// Identifier within the box.
    pub id: String,
    /// Unix seconds, on a whole minute (nothing finer about uploaders is kept).
    pub received_at: u64,
    /// The files as stored: for an encrypted upload, each is its age file (`<name>.age`).
    pub files: Vec<FileEntry>,
    /// The uploader's message, when the box takes one and one was left (stored in the clear,
    /// like the names; only file contents are encrypted).
    pub message: Option<String>,
    /// Whether the files are encrypted to the box's age recipient.
    #[serde(default)]
    pub encrypted: bool,
    /// For an encrypted upload, what the uploader sent: names, sizes and BLAKE3 hashes of the
    /// plaintext (what the uploader was shown, to check against after decrypting).
    #[serde(default)]
    pub sent: Vec<FileEntry>,
    /// Identifying metadata found in the files as they arrived (not for encrypted uploads):
    /// what could tie them to whoever sent them, if published as they are.
    #[serde(default)]
    pub metadata: Vec<crate::MetadataReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        assert!(CreateDropBox::default().checked().is_ok());
        let zero = CreateDropBox {
            max_file: Some(0),
            ..CreateDropBox::default()
        };
        assert!(zero.checked().is_err());
        let inverted = CreateDropBox {
            max_file: Some(10),
            max_bytes: Some(5),
            ..CreateDropBox::default()
        };
        let error = inverted.checked().expect_err("inverted limits");
        assert!(error.contains("larger than"), "{error}");
        let uploads = CreateDropBox {
            max_uploads: Some(0),
            ..CreateDropBox::default()
        };
        assert!(uploads.checked().is_err());
        let label = CreateDropBox {
            label: Some("  tips \u{7}".into()),
            ..CreateDropBox::default()
        };
        assert!(label.checked().is_err());
        let blank = CreateDropBox {
            label: Some("   ".into()),
            ..CreateDropBox::default()
        };
        assert_eq!(blank.checked().map(|c| c.label), Ok(None));
        assert!(serde_json::from_str::<CreateDropBox>(r#"{"max_byte": 3}"#).is_err());
        let not_age = CreateDropBox {
            encrypt_to: Some("ssh-ed25519 AAAA".into()),
            ..CreateDropBox::default()
        };
        assert!(not_age.checked().is_err());
    }
}
