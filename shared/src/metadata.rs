//! What a file says about the person who made it: the kinds of identifying metadata veilshare
//! looks for when files are added to a share, and what it did about them.
//!
//! The detection itself runs in the backend (`core::metadata`); these are the shapes the UI,
//! the API (`POST /api/inspect`, `ShareView::metadata`) and the CLI show.

use serde::{Deserialize, Serialize};

/// Largest file inspected (and cleaned), in bytes. Inspection holds the file in memory; photos
/// and documents are far smaller, and larger files are shared as they are, not inspected.
pub const MAX_INSPECTED: u64 = 256 << 20;

/// One kind of identifying metadata, as a person would name it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum MetadataKind {
    /// GPS coordinates: where a photo was taken (often someone's home).
    GpsPosition,
    /// A serial number of the camera body or lens, or a unique image id.
    SerialNumber,
    /// The camera maker's private data, which often holds a serial number.
    MakerNotes,
    /// Make and model of the camera, phone or lens.
    CameraModel,
    /// A person's or organisation's name: author, artist, owner, last editor, company.
    Author,
    /// When the file was made, taken or edited.
    Dates,
    /// The program that made or edited it (and often its version).
    Software,
    /// Title, description, comments, keywords or other text notes.
    Text,
    /// An XMP packet: editing history, names, places.
    Xmp,
    /// IPTC data: captions, names, places.
    Iptc,
}

impl MetadataKind {
    /// The kind in plain words, to follow "contains".
    pub fn describe(self) -> &'static str {
        match self {
            Self::GpsPosition => "a GPS position (where it was taken)",
            Self::SerialNumber => "a serial number of the device",
            Self::MakerNotes => "the camera maker's notes (often a serial number)",
            Self::CameraModel => "the camera or phone model",
            Self::Author => "a person's or organisation's name",
            Self::Dates => "when it was made or edited",
            Self::Software => "the software that made it",
            Self::Text => "a title, description or comments",
            Self::Xmp => "XMP data (editing history, names, places)",
            Self::Iptc => "IPTC data (captions, names, places)",
        }
    }
}

/// What veilshare found in one file, and what it did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MetadataReport {
    /// The file's name in the share.
    pub name: String,
    /// The format it was read as: "JPEG", "PNG", "WebP", "HEIF", "PDF", "Office document", …
    pub format: String,
    /// What it contains, each kind once, most revealing first.
    pub found: Vec<MetadataKind>,
    /// Whether veilshare can remove it from this format (images: yes; HEIF, PDF, Office: no).
    pub removable: bool,
    /// Whether the share holds a copy with it removed (the pixels are the same).
    #[serde(default)]
    pub removed: bool,
    /// Anything else to know, in plain words (why it could not be read or removed).
    #[serde(default)]
    pub note: Option<String>,
}

impl MetadataReport {
    /// What was found, in plain words: "a GPS position (where it was taken), …".
    pub fn found_text(&self) -> String {
        self.found
            .iter()
            .map(|kind| kind.describe())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One line: "photo.jpg (JPEG) contains a GPS position, …", and what was done.
    pub fn summary(&self) -> String {
        let found = self.found_text();
        let done = if self.removed {
            "; removed from the shared copy"
        } else if self.removable {
            "; kept (removing it was turned off)"
        } else {
            "; veilshare cannot remove it from this format: clean the file first (for example with mat2) if that matters"
        };
        let mut line = format!("{} ({}) contains {found}{done}", self.name, self.format);
        if let Some(note) = &self.note {
            line.push_str(". ");
            line.push_str(note);
        }
        line
    }
}

/// Whether a file named `name` may carry metadata worth checking, by its extension (what the
/// UI sends to `POST /api/inspect` before a share is made).
pub fn worth_inspecting(name: &str) -> bool {
    const EXTENSIONS: &[&str] = &[
        "jpg", "jpeg", "jpe", "jfif", "png", "webp", "heic", "heif", "avif", "tif", "tiff", "pdf",
        "docx", "xlsx", "pptx", "docm", "xlsm", "pptm", "odt", "ods", "odp",
    ];
    name.rsplit_once('.')
        .map(|(_, ext)| EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_as_a_sentence_that_says_what_was_done() {
        let report = MetadataReport {
            name: "home.jpg".into(),
            format: "JPEG".into(),
            found: vec![MetadataKind::GpsPosition, MetadataKind::CameraModel],
            removable: true,
            removed: true,
            note: None,
        };
        assert_eq!(
            report.summary(),
            "home.jpg (JPEG) contains a GPS position (where it was taken), the camera or phone model; removed from the shared copy"
        );
        let pdf = MetadataReport {
            removable: false,
            removed: false,
            format: "PDF".into(),
            ..report
        };
        assert!(pdf.summary().contains("cannot remove"), "{}", pdf.summary());
    }

    #[test]
    fn only_formats_that_carry_metadata_are_inspected() {
        assert!(worth_inspecting("IMG_0001.JPG"));
        assert!(worth_inspecting("brief.docx"));
        assert!(!worth_inspecting("notes.txt"));
        assert!(!worth_inspecting("jpg"));
    }
}
