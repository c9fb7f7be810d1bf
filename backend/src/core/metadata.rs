//! Identifying metadata in the files people share, found when files are added and removed from
//! images unless the share says to keep it.
//!
//! A photo straight from a phone carries the GPS position where it was taken, the phone's
//! model, often a serial number, and the minute it was taken; a Word document carries its
//! author's name and company. A source who shares such a file through Tor has told the
//! recipient who they are. So every file added to a share (UI, API, `share`) is inspected, the
//! owner is told what it contains in plain words before the share is published (the UI calls
//! `POST /api/inspect` as files are dropped), and images are cleaned.
//!
//! What "cleaned" means: the image's container is rewritten without its metadata blocks, and
//! the compressed pixel data is copied byte for byte, so the picture is the same (no
//! re-encoding, no quality loss). JPEG: every APPn segment except JFIF, the ICC colour profile
//! and Adobe's colour-transform marker, and comments, go; so do images appended after the main
//! one (MPF previews and depth maps carry their own EXIF). When the photo had an EXIF
//! orientation other than upright, a new EXIF block with only that tag is written, so the
//! photo is not shown sideways. PNG: `eXIf`, text chunks and `tIME` go. WebP: the `EXIF` and
//! `XMP ` chunks go. The result is inspected again; if anything is still found, the file is
//! refused rather than shared as if clean.
//!
//! What is only reported: HEIF/AVIF and TIFF photos (their metadata is part of the container's
//! structure), PDF (document information and XMP; rewriting a PDF safely is not a byte copy)
//! and Office/OpenDocument files (document properties, and the photos they embed). The owner
//! is told, and decides.
//!
//! Parsing is done by maintained crates: `img-parts` (JPEG/PNG/WebP containers),
//! `kamadak-exif` (EXIF, HEIF, TIFF), `lopdf` (PDF), `zip` and `quick-xml` (Office). Everything
//! here is pure (bytes in, a report or cleaned bytes out) but [`read_inspectable`], which reads
//! a local file for the callers that have one. Files larger than [`MAX_INSPECTED`] are not read
//! (see its doc).

use std::{
    collections::BTreeSet,
    io::{self, Read},
    path::Path,
};

use bytes::Bytes;
use img_parts::{ImageEXIF, jpeg::Jpeg, png::Png, webp::WebP};
use veilshare_shared::{MetadataKind, MetadataReport};

pub use veilshare_shared::metadata::MAX_INSPECTED;

/// Largest piece of embedded metadata (an EXIF block, an Office part) that is parsed.
const MAX_PART: usize = 4 << 20;

/// What one file contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The format it was read as.
    pub format: &'static str,
    /// Each kind found.
    pub found: BTreeSet<MetadataKind>,
    /// Whether [`strip`] can remove it.
    pub removable: bool,
    /// What could not be read, in plain words.
    pub note: Option<String>,
}

impl Inspection {
    fn new(format: &'static str, removable: bool) -> Self {
        Self {
            format,
            found: BTreeSet::new(),
            removable,
            note: None,
        }
    }

    /// The report for the file named `name` (`removed`: a cleaned copy is what is shared).
    pub fn report(&self, name: &str, removed: bool) -> MetadataReport {
        MetadataReport {
            name: name.to_owned(),
            format: self.format.to_owned(),
            found: self.found.iter().copied().collect(),
            removable: self.removable,
            removed,
            note: self.note.clone(),
        }
    }
}

/// Why a file could not be cleaned.
#[derive(Debug, thiserror::Error)]
pub enum StripError {
    /// The container could not be parsed.
    #[error("it is not a well-formed {format} file ({reason})")]
    Malformed {
        /// The format it claimed to be.
        format: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// This format is only reported, not cleaned.
    #[error("veilshare cannot remove metadata from {0} files")]
    NotRemovable(&'static str),
    /// Cleaning left some metadata behind (the file would not be what the owner was promised).
    #[error("after cleaning, it still contains {0}")]
    Remains(String),
}

/// What `bytes` contains, or `None` when it is not a format that carries such metadata.
pub fn inspect(bytes: &[u8]) -> Option<Inspection> {
    let mut inspection = match sniff(bytes)? {
        Format::Jpeg => inspect_jpeg(bytes),
        Format::Png => inspect_png(bytes),
        Format::WebP => inspect_webp(bytes),
        Format::Heif => inspect_container(bytes, "HEIF"),
        Format::Tiff => inspect_container(bytes, "TIFF"),
        Format::Pdf => inspect_pdf(bytes),
        Format::Zip => inspect_office(bytes)?,
    };
    // Whatever the container, XMP packets are plain text and can sit anywhere.
    scan_xmp(bytes, &mut inspection.found);
    Some(inspection)
}

/// `bytes` without its metadata, the picture unchanged (see the module's doc for what goes).
pub fn strip(bytes: Bytes) -> Result<Bytes, StripError> {
    let (format, cleaned) = match sniff(&bytes) {
        Some(Format::Jpeg) => ("JPEG", strip_jpeg(bytes)?),
        Some(Format::Png) => ("PNG", strip_png(bytes)?),
        Some(Format::WebP) => ("WebP", strip_webp(bytes)?),
        Some(Format::Heif) => return Err(StripError::NotRemovable("HEIF")),
        Some(Format::Tiff) => return Err(StripError::NotRemovable("TIFF")),
        Some(Format::Pdf) => return Err(StripError::NotRemovable("PDF")),
        Some(Format::Zip) | None => return Err(StripError::NotRemovable("these")),
    };
    let left = inspect(&cleaned).map(|i| i.found).unwrap_or_default();
    if !left.is_empty() {
        let kinds: Vec<&str> = left.iter().map(|k| k.describe()).collect();
        tracing::warn!(format, ?left, "metadata left after cleaning");
        return Err(StripError::Remains(kinds.join(", ")));
    }
    Ok(cleaned)
}

/// Whether a file starting with `head` (its first 64 bytes) is in a format inspected here.
pub fn may_hold(head: &[u8]) -> bool {
    sniff(head).is_some()
}

/// The whole file at `path` when it is in a format inspected here and not empty nor larger
/// than [`MAX_INSPECTED`]; otherwise `None`, having read at most its first 64 bytes.
/// Blocking.
pub fn read_inspectable(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size == 0 || size > MAX_INSPECTED {
        return Ok(None);
    }
    let mut head = Vec::with_capacity(64);
    (&mut file).take(64).read_to_end(&mut head)?;
    if !may_hold(&head) {
        return Ok(None);
    }
    let mut bytes = head;
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jpeg,
    Png,
    WebP,
    Heif,
    Tiff,
    Pdf,
    Zip,
}

fn sniff(bytes: &[u8]) -> Option<Format> {
    let head = bytes.get(..12).unwrap_or(bytes);
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        Some(Format::WebP)
    } else if head.get(4..8) == Some(b"ftyp") {
        Some(Format::Heif)
    } else if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
        Some(Format::Tiff)
    } else if memchr::memmem::find(bytes.get(..1024).unwrap_or(bytes), b"%PDF-").is_some() {
        Some(Format::Pdf)
    } else if head.starts_with(b"PK\x03\x04") {
        Some(Format::Zip)
    } else {
        None
    }
}

/// The kinds in one EXIF block (TIFF structure, without the `Exif\0\0` prefix).
fn exif_kinds(exif: &exif::Exif, found: &mut BTreeSet<MetadataKind>) {
    use exif::{Context, Tag};
    for field in exif.fields() {
        let kind = match field.tag {
            Tag::GPSLatitude | Tag::GPSLongitude | Tag::GPSDestLatitude | Tag::GPSDestLongitude => {
                MetadataKind::GpsPosition
            }
            Tag::BodySerialNumber | Tag::LensSerialNumber | Tag::ImageUniqueID => {
                MetadataKind::SerialNumber
            }
            Tag::MakerNote => MetadataKind::MakerNotes,
            Tag::Make | Tag::Model | Tag::LensMake | Tag::LensModel => MetadataKind::CameraModel,
            Tag::Artist | Tag::Copyright | Tag::CameraOwnerName => MetadataKind::Author,
            Tag::DateTime
            | Tag::DateTimeOriginal
            | Tag::DateTimeDigitized
            | Tag::GPSDateStamp
            | Tag::GPSTimeStamp => MetadataKind::Dates,
            Tag::Software => MetadataKind::Software,
            Tag::ImageDescription | Tag::UserComment => MetadataKind::Text,
            // The Windows "XP" tags (author, comment, keywords, subject, title).
            Tag(Context::Tiff, 0x9c9b..=0x9c9f) => MetadataKind::Text,
            // Any other GPS field (altitude, speed, area) still says where.
            Tag(Context::Gps, _) if field.tag != Tag::GPSVersionID => MetadataKind::GpsPosition,
            _ => continue,
        };
        found.insert(kind);
    }
}

fn parse_exif(raw: &[u8], found: &mut BTreeSet<MetadataKind>) -> Result<(), exif::Error> {
    let raw = raw.get(..MAX_PART).unwrap_or(raw);
    let exif = exif::Reader::new()
        .continue_on_error(true)
        .read_raw(raw.to_vec())
        .or_else(|e| e.distill_partial_result(|_| {}))?;
    exif_kinds(&exif, found);
    Ok(())
}

/// Marks XMP packets anywhere in `bytes`, and a GPS position inside one.
fn scan_xmp(bytes: &[u8], found: &mut BTreeSet<MetadataKind>) {
    for start in memchr::memmem::find_iter(bytes, b"<x:xmpmeta").take(16) {
        found.insert(MetadataKind::Xmp);
        let packet = &bytes[start..bytes.len().min(start + MAX_PART)];
        let end = memchr::memmem::find(packet, b"</x:xmpmeta>").unwrap_or(packet.len());
        let packet = &packet[..end];
        if memchr::memmem::find(packet, b"GPSLatitude").is_some()
            || memchr::memmem::find(packet, b"GPSLongitude").is_some()
        {
            found.insert(MetadataKind::GpsPosition);
        }
    }
}

/// EXIF blocks anywhere in `bytes` (images appended after a JPEG, chunks of any container).
fn scan_exif(bytes: &[u8], found: &mut BTreeSet<MetadataKind>) {
    for start in memchr::memmem::find_iter(bytes, b"Exif\0\0").take(16) {
        let raw = &bytes[start + 6..];
        if raw.starts_with(b"II*\0") || raw.starts_with(b"MM\0*") {
            // A block that does not parse still revealed nothing: only parsed fields count.
            let _ = parse_exif(raw, found);
        }
    }
}

fn malformed(format: &'static str) -> impl Fn(img_parts::Error) -> StripError {
    move |error| StripError::Malformed {
        format,
        reason: error.to_string(),
    }
}

const APP0: u8 = 0xE0;
const APP1: u8 = 0xE1;
const APP2: u8 = 0xE2;
const APP13: u8 = 0xED;
const APP14: u8 = 0xEE;
const APP15: u8 = 0xEF;
const COM: u8 = 0xFE;

fn inspect_jpeg(bytes: &[u8]) -> Inspection {
    let mut inspection = Inspection::new("JPEG", true);
    match Jpeg::from_bytes(Bytes::copy_from_slice(bytes)) {
        Ok(jpeg) => {
            for segment in jpeg.segments() {
                let contents = segment.contents();
                match segment.marker() {
                    APP1 if contents.starts_with(b"Exif\0\0") => {
                        let _ = parse_exif(&contents[6..], &mut inspection.found);
                    }
                    APP1 if contents.starts_with(b"http://ns.adobe.com/") => {
                        inspection.found.insert(MetadataKind::Xmp);
                    }
                    APP13 => {
                        inspection.found.insert(MetadataKind::Iptc);
                    }
                    COM => {
                        inspection.found.insert(MetadataKind::Text);
                    }
                    _ => {}
                }
            }
        }
        Err(error) => inspection.note = Some(format!("it could not be read in full ({error})")),
    }
    // Images appended after the main one carry their own EXIF.
    scan_exif(bytes, &mut inspection.found);
    inspection
}

/// Whether a JPEG segment is kept by [`strip_jpeg`]: everything but metadata.
fn keep_jpeg_segment(marker: u8, contents: &[u8]) -> bool {
    match marker {
        APP0 => contents.starts_with(b"JFIF\0"),
        APP2 => contents.starts_with(b"ICC_PROFILE\0"),
        APP14 => contents.starts_with(b"Adobe"),
        APP0..=APP15 | COM => false,
        _ => true,
    }
}

/// Length of the main image's scan data in `entropy` (the bytes after the first SOS header),
/// through its EOI marker: what follows it is another file (MPF previews, depth maps).
///
/// Inside scan data a 0xFF byte is followed by 0x00 (a stuffed byte), a restart marker or fill;
/// any other marker (between the scans of a progressive image) has a length to skip, so bytes
/// inside its payload are never mistaken for an EOI.
fn main_image_len(entropy: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + 1 < entropy.len() {
        if entropy[at] != 0xFF {
            at += 1;
            continue;
        }
        match entropy[at + 1] {
            0xFF => at += 1,
            0x00 | 0x01 | 0xD0..=0xD7 => at += 2,
            0xD9 => return Some(at + 2),
            _ => {
                let length = u16::from_be_bytes([*entropy.get(at + 2)?, *entropy.get(at + 3)?]);
                at += 2 + usize::from(length);
            }
        }
    }
    None
}

/// The photo's EXIF orientation, when it is not the default (upright).
fn orientation(jpeg: &Jpeg) -> Option<u16> {
    let raw = jpeg.exif()?;
    let exif = exif::Reader::new().read_raw(raw.to_vec()).ok()?;
    let field = exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?;
    let value = field.value.get_uint(0)?;
    u16::try_from(value).ok().filter(|v| (2..=8).contains(v))
}

/// An EXIF block holding only `orientation`.
fn orientation_exif(orientation: u16) -> Option<Bytes> {
    let field = exif::Field {
        tag: exif::Tag::Orientation,
        ifd_num: exif::In::PRIMARY,
        value: exif::Value::Short(vec![orientation]),
    };
    let mut writer = exif::experimental::Writer::new();
    writer.push_field(&field);
    let mut out = std::io::Cursor::new(Vec::new());
    writer.write(&mut out, false).ok()?;
    Some(Bytes::from(out.into_inner()))
}

fn strip_jpeg(bytes: Bytes) -> Result<Bytes, StripError> {
    use img_parts::jpeg::JpegSegment;
    let mut jpeg = Jpeg::from_bytes(bytes).map_err(malformed("JPEG"))?;
    let upright = orientation(&jpeg);
    let segments = std::mem::take(jpeg.segments_mut());
    for segment in segments {
        if !keep_jpeg_segment(segment.marker(), segment.contents()) {
            continue;
        }
        if segment.has_entropy() {
            // The scan data as it is, up to the main image's end.
            let encoded = segment.clone().encoder().bytes();
            let header = segment.len();
            let entropy = encoded.slice(header.min(encoded.len())..);
            let keep = main_image_len(&entropy).unwrap_or(entropy.len());
            let entropy = entropy.slice(..keep);
            jpeg.segments_mut().push(JpegSegment::new_with_entropy(
                segment.marker(),
                segment.contents().clone(),
                entropy,
            ));
        } else {
            jpeg.segments_mut().push(segment);
        }
    }
    if let Some(exif) = upright.and_then(orientation_exif) {
        jpeg.set_exif(Some(exif));
    }
    Ok(jpeg.encoder().bytes())
}

fn inspect_png(bytes: &[u8]) -> Inspection {
    let mut inspection = Inspection::new("PNG", true);
    match Png::from_bytes(Bytes::copy_from_slice(bytes)) {
        Ok(png) => {
            for chunk in png.chunks() {
                let contents = chunk.contents();
                match &chunk.kind() {
                    b"eXIf" => {
                        let _ = parse_exif(contents, &mut inspection.found);
                    }
                    b"tIME" => {
                        inspection.found.insert(MetadataKind::Dates);
                    }
                    b"tEXt" | b"zTXt" | b"iTXt" => {
                        let keyword = contents.split(|b| *b == 0).next().unwrap_or_default();
                        let kind = match keyword {
                            b"XML:com.adobe.xmp" => MetadataKind::Xmp,
                            b"Author" | b"Copyright" => MetadataKind::Author,
                            b"Creation Time" => MetadataKind::Dates,
                            b"Software" => MetadataKind::Software,
                            b"Source" => MetadataKind::CameraModel,
                            _ => MetadataKind::Text,
                        };
                        inspection.found.insert(kind);
                    }
                    _ => {}
                }
            }
        }
        Err(error) => inspection.note = Some(format!("it could not be read in full ({error})")),
    }
    inspection
}

fn strip_png(bytes: Bytes) -> Result<Bytes, StripError> {
    let mut png = Png::from_bytes(bytes).map_err(malformed("PNG"))?;
    png.chunks_mut().retain(|chunk| {
        !matches!(
            &chunk.kind(),
            b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt" | b"tIME"
        )
    });
    Ok(png.encoder().bytes())
}

fn inspect_webp(bytes: &[u8]) -> Inspection {
    let mut inspection = Inspection::new("WebP", true);
    match WebP::from_bytes(Bytes::copy_from_slice(bytes)) {
        Ok(webp) => {
            if let Some(exif) = webp.exif() {
                let _ = parse_exif(&exif, &mut inspection.found);
            }
            if webp.has_chunk(*b"XMP ") {
                inspection.found.insert(MetadataKind::Xmp);
            }
        }
        Err(error) => inspection.note = Some(format!("it could not be read in full ({error})")),
    }
    inspection
}

fn strip_webp(bytes: Bytes) -> Result<Bytes, StripError> {
    let mut webp = WebP::from_bytes(bytes).map_err(malformed("WebP"))?;
    webp.remove_chunks_by_id(*b"XMP ");
    // Also brings the extended header's flags up to date.
    webp.set_exif(None);
    Ok(webp.encoder().bytes())
}

/// HEIF/AVIF and TIFF: EXIF found through the container's own structure.
fn inspect_container(bytes: &[u8], format: &'static str) -> Inspection {
    let mut inspection = Inspection::new(format, false);
    let read = exif::Reader::new()
        .continue_on_error(true)
        .read_from_container(&mut std::io::Cursor::new(bytes))
        .or_else(|e| e.distill_partial_result(|_| {}));
    match read {
        Ok(exif) => exif_kinds(&exif, &mut inspection.found),
        Err(exif::Error::NotFound(_)) => {}
        Err(error) => inspection.note = Some(format!("its EXIF could not be read ({error})")),
    }
    inspection
}

fn inspect_pdf(bytes: &[u8]) -> Inspection {
    let mut inspection = Inspection::new("PDF", false);
    let document = match lopdf::Document::load_mem(bytes) {
        Ok(document) => document,
        Err(error) => {
            inspection.note = Some(format!(
                "it could not be read ({error}), so it may hold metadata that is not listed"
            ));
            return inspection;
        }
    };
    let info = document
        .trailer
        .get(b"Info")
        .ok()
        .and_then(|info| match info {
            lopdf::Object::Reference(id) => document.get_dictionary(*id).ok(),
            lopdf::Object::Dictionary(dict) => Some(dict),
            _ => None,
        });
    for (key, value) in info.into_iter().flat_map(|dict| dict.iter()) {
        if matches!(value, lopdf::Object::String(text, _) if text.is_empty()) {
            continue;
        }
        let kind = match key.as_slice() {
            b"Author" => MetadataKind::Author,
            b"Creator" | b"Producer" => MetadataKind::Software,
            b"CreationDate" | b"ModDate" => MetadataKind::Dates,
            _ => MetadataKind::Text,
        };
        inspection.found.insert(kind);
    }
    if document
        .catalog()
        .is_ok_and(|catalog| catalog.has(b"Metadata"))
    {
        inspection.found.insert(MetadataKind::Xmp);
    }
    if document.is_encrypted() {
        inspection.note = Some("it is encrypted, so some of its metadata may not be listed".into());
    }
    inspection
}

/// Office Open XML (docx, xlsx, pptx) and OpenDocument (odt, ods, odp) files: their document
/// properties, and the photos they embed. `None` for any other zip.
fn inspect_office(bytes: &[u8]) -> Option<Inspection> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).ok()?;
    let ooxml = archive.index_for_name("[Content_Types].xml").is_some();
    let odf = archive.index_for_name("meta.xml").is_some();
    if !ooxml && !odf {
        return None;
    }
    let mut inspection = Inspection::new(
        if ooxml {
            "Office document"
        } else {
            "OpenDocument"
        },
        false,
    );
    let parts: Vec<String> = archive.file_names().map(str::to_owned).collect();
    let mut embedded = BTreeSet::new();
    for name in parts {
        let properties = matches!(
            name.as_str(),
            "docProps/core.xml" | "docProps/app.xml" | "docProps/custom.xml" | "meta.xml"
        );
        let media = (name.contains("/media/") || name.starts_with("Pictures/"))
            && veilshare_shared::metadata::worth_inspecting(&name);
        if !properties && !media {
            continue;
        }
        let Some(part) = read_part(&mut archive, &name) else {
            continue;
        };
        if properties {
            xml_properties(&part, &mut inspection.found);
        } else if let Some(inner) = inspect(&part) {
            embedded.extend(inner.found);
        }
    }
    if !embedded.is_empty() {
        let kinds: Vec<&str> = embedded.iter().map(|k| k.describe()).collect();
        inspection.note = Some(format!("Photos inside it contain {}", kinds.join(", ")));
        inspection.found.extend(embedded);
    }
    Some(inspection)
}

fn read_part(archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str) -> Option<Vec<u8>> {
    let file = archive.by_name(name).ok()?;
    let mut part = Vec::new();
    file.take(MAX_PART as u64).read_to_end(&mut part).ok()?;
    Some(part)
}

/// The kinds among document properties (`docProps/*.xml`, `meta.xml`): each element with text.
fn xml_properties(xml: &[u8], found: &mut BTreeSet<MetadataKind>) {
    use quick_xml::events::Event;
    let xml = String::from_utf8_lossy(xml);
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut element = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => element = start.local_name().as_ref().to_owned(),
            Ok(Event::Text(text)) if !text.trim().is_empty() => {
                let kind = match element.as_str() {
                    "creator" | "lastModifiedBy" | "initial-creator" | "Company" | "Manager" => {
                        MetadataKind::Author
                    }
                    "created" | "modified" | "lastPrinted" | "creation-date" | "date"
                    | "print-date" => MetadataKind::Dates,
                    "Application" | "AppVersion" | "generator" => MetadataKind::Software,
                    "title" | "subject" | "description" | "keywords" | "keyword" | "category"
                    | "property" | "lpwstr" | "user-defined" => MetadataKind::Text,
                    _ => continue,
                };
                found.insert(kind);
            }
            Ok(Event::End(_)) => element.clear(),
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_the_main_image_skips_markers_with_lengths_and_stuffed_bytes() {
        // scan data with a stuffed 0xFF, a restart marker, a DHT whose payload holds FF D9,
        // the EOI, then an appended image.
        let mut entropy = vec![0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56];
        entropy.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x04, 0xFF, 0xD9]);
        entropy.extend_from_slice(&[0x78, 0xFF, 0xD9]);
        let end = entropy.len();
        entropy.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE1]);
        assert_eq!(main_image_len(&entropy), Some(end));
        assert_eq!(main_image_len(&[0x12, 0x34]), None);
    }

    #[test]
    fn only_colour_and_format_markers_are_kept() {
        assert!(keep_jpeg_segment(APP0, b"JFIF\0\x01\x01"));
        assert!(!keep_jpeg_segment(APP0, b"JFXX\0thumbnail"));
        assert!(keep_jpeg_segment(APP2, b"ICC_PROFILE\0\x01\x01"));
        assert!(!keep_jpeg_segment(APP2, b"MPF\0"));
        assert!(!keep_jpeg_segment(APP1, b"Exif\0\0"));
        assert!(!keep_jpeg_segment(APP13, b"Photoshop 3.0\0"));
        assert!(!keep_jpeg_segment(COM, b"taken at home"));
        assert!(keep_jpeg_segment(APP14, b"Adobe\0"));
        assert!(keep_jpeg_segment(0xDB, b"quantization tables"));
    }

    #[test]
    fn unknown_bytes_are_not_inspected() {
        assert_eq!(inspect(b"plain text, nothing to see"), None);
        let empty_zip = {
            let mut out = std::io::Cursor::new(Vec::new());
            zip::ZipWriter::new(&mut out).finish().expect("zip");
            out.into_inner()
        };
        assert_eq!(inspect(&empty_zip), None);
    }

    #[test]
    fn an_office_document_tells_its_authors_name_and_dates() {
        let mut out = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut out);
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            zip.start_file("[Content_Types].xml", options)
                .expect("part");
            std::io::Write::write_all(&mut zip, b"<Types/>").expect("write");
            zip.start_file("docProps/core.xml", options).expect("part");
            std::io::Write::write_all(
                &mut zip,
                br#"<cp:coreProperties xmlns:cp="c" xmlns:dc="d" xmlns:dcterms="t"><dc:title></dc:title><dc:creator>Ana Lima</dc:creator><dcterms:created>2026-11-30T10:00:00Z</dcterms:created></cp:coreProperties>"#,
            )
            .expect("write");
            zip.finish().expect("zip");
        }
        let inspection = inspect(out.get_ref()).expect("an Office document");
        assert_eq!(inspection.format, "Office document");
        assert!(!inspection.removable);
        assert_eq!(
            inspection.found.into_iter().collect::<Vec<_>>(),
            vec![MetadataKind::Author, MetadataKind::Dates],
            "an empty title is nothing"
        );
    }

    use veilshare_e2e::samples;

    fn kinds(bytes: &[u8]) -> Vec<MetadataKind> {
        inspect(bytes)
            .map(|i| i.found.into_iter().collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_phone_photo_tells_where_which_phone_and_when_and_cleaning_leaves_the_pixels() {
        let photo = samples::jpeg();
        assert_eq!(
            kinds(&photo),
            vec![
                MetadataKind::GpsPosition,
                MetadataKind::SerialNumber,
                MetadataKind::CameraModel,
                MetadataKind::Dates,
                MetadataKind::Text,
                MetadataKind::Xmp,
            ]
        );
        let cleaned = strip(Bytes::from(photo.clone())).expect("cleaned");
        assert_eq!(kinds(&cleaned), Vec::new());
        // An EXIF reader of its own finds only the orientation, kept so the photo stays upright.
        assert_eq!(
            samples::exif_fields(&cleaned),
            vec!["Orientation = row 0 at right and column 0 at top".to_owned()]
        );
        for needle in [&b"Fairphone"[..], b"SN-0042", b"balcony", b"xmpmeta"] {
            assert!(
                memchr::memmem::find(&cleaned, needle).is_none(),
                "{:?} is still in the file",
                String::from_utf8_lossy(needle)
            );
        }
        assert_eq!(samples::pixels(&cleaned), samples::pixels(&photo));
        assert!(
            cleaned.len() < photo.len() / 2 + 400,
            "the appended image is gone too"
        );
    }

    #[test]
    fn png_and_webp_are_cleaned_with_the_same_pixels() {
        for (format, photo) in [("PNG", samples::png()), ("WebP", samples::webp())] {
            let found = kinds(&photo);
            assert!(
                found.contains(&MetadataKind::GpsPosition),
                "{format}: {found:?}"
            );
            if format == "PNG" {
                assert!(found.contains(&MetadataKind::Author), "{format}: {found:?}");
            }
            let cleaned = strip(Bytes::from(photo.clone())).expect(format);
            assert_eq!(kinds(&cleaned), Vec::new(), "{format}");
            assert_eq!(
                samples::exif_fields(&cleaned),
                Vec::<String>::new(),
                "{format}"
            );
            assert_eq!(
                samples::pixels(&cleaned),
                samples::pixels(&photo),
                "{format}"
            );
        }
    }

    #[test]
    fn a_clean_photo_is_left_alone_and_a_broken_one_is_refused() {
        let clean = strip(Bytes::from(samples::jpeg())).expect("cleaned");
        assert_eq!(
            strip(clean.clone()).expect("again"),
            clean,
            "cleaning is idempotent"
        );
        let mut broken = samples::png();
        broken.truncate(40);
        assert!(matches!(
            strip(Bytes::from(broken)),
            Err(StripError::Malformed { .. })
        ));
    }

    #[test]
    fn a_pdf_tells_its_author_and_software_and_is_not_pretended_clean() {
        use lopdf::{Object, dictionary};
        let mut document = lopdf::Document::with_version("1.5");
        let pages = document.new_object_id();
        let page = document.add_object(dictionary! { "Type" => "Page", "Parent" => pages });
        document.objects.insert(
            pages,
            Object::Dictionary(
                dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 },
            ),
        );
        let catalog = document.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages });
        document.trailer.set("Root", catalog);
        let info = document.add_object(dictionary! {
            "Author" => Object::string_literal("Ana Lima"),
            "Producer" => Object::string_literal("Writer 7.6"),
            "Title" => Object::string_literal(""),
        });
        document.trailer.set("Info", info);
        let mut pdf = Vec::new();
        document.save_to(&mut pdf).expect("pdf");
        let inspection = inspect(&pdf).expect("a PDF");
        assert_eq!(inspection.format, "PDF");
        assert_eq!(
            inspection.found.into_iter().collect::<Vec<_>>(),
            vec![MetadataKind::Author, MetadataKind::Software]
        );
        assert!(matches!(
            strip(Bytes::from(pdf)),
            Err(StripError::NotRemovable("PDF"))
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The fuzz target's invariant, bounded, on damaged photos: inspecting never panics,
        /// and cleaning refuses or leaves nothing to find.
        #[test]
        fn damaged_photos_never_panic_and_never_come_out_half_clean(
            which in 0usize..3,
            edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..8),
            cut in 0usize..4096,
        ) {
            let mut photo = match which {
                0 => samples::jpeg(),
                1 => samples::png(),
                _ => samples::webp(),
            };
            for (at, byte) in edits {
                let at = at % photo.len();
                photo[at] = byte;
            }
            photo.truncate(photo.len().saturating_sub(cut % 64));
            let _ = inspect(&photo);
            if let Ok(cleaned) = strip(Bytes::from(photo)) {
                proptest::prop_assert_eq!(kinds(&cleaned), Vec::new());
            }
        }
    }
}
