//! A deterministic, uncompressed ("stored") ZIP layout computed before a byte is sent.
//!
//! Because every file's size and CRC-32 are known from import, the whole archive — headers,
//! data, central directory, ZIP64 records where needed — is laid out ahead: its length is known
//! (`Content-Length`), and any byte range can be produced without writing a temporary copy or
//! re-reading earlier files. That is what makes resumable (`Range`) zip downloads possible;
//! the streaming zip crates compute CRCs on the fly and cannot seek.

use bytes::{BufMut, Bytes, BytesMut};

/// One file to put in the archive.
#[derive(Debug, Clone)]
pub struct ZipInput {
    /// Name inside the archive (UTF-8, flagged as such).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32 of the content.
    pub crc32: u32,
}

/// A part of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Header bytes generated here.
    Header(Bytes),
    /// The content of input file `index`.
    File {
        /// Index into the inputs.
        index: usize,
        /// Its size.
        size: u64,
    },
}

/// The laid-out archive: segments with their offsets.
#[derive(Debug, Clone)]
pub struct ZipLayout {
    segments: Vec<(u64, Segment)>,
    len: u64,
}

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const FLAG_UTF8: u16 = 1 << 11;
const U32_MAX: u64 = 0xFFFF_FFFF;

/// The date of every entry: 1980-01-01 00:00, the first a zip can hold. A real date (the
/// share's creation, a file's modification) would tell recipients the sender's clock and link
/// shares made together; a fixed one also makes the zip a function of its files alone.
pub const ENTRY_DATE: u64 = 0;

/// Bumped whenever the layout changes the bytes of a zip of the same files (it is part of the
/// zip's ETag, so a client never resumes across two layouts).
pub const LAYOUT_VERSION: u32 = 2;

/// Unix seconds to MS-DOS (time, date), UTC; clamped to 1980..=2107.
fn dos_datetime(unix: u64) -> (u16, u16) {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if year < 1980 {
        return (0, (1 << 5) | 1);
    }
    let year = year.min(2107);
    let time = ((secs / 3600) << 11) | (((secs % 3600) / 60) << 5) | ((secs % 60) / 2);
    let date = ((year - 1980) << 9) | (month << 5) | day;
    (time as u16, date as u16)
}

impl ZipLayout {
    /// Lays out an archive of `inputs`, every entry dated [`ENTRY_DATE`].
    pub fn new(inputs: &[ZipInput]) -> Self {
        Self::build(inputs, ENTRY_DATE, false)
    }

    fn build(inputs: &[ZipInput], mtime: u64, force_zip64: bool) -> Self {
        let (time, date) = dos_datetime(mtime);
        let mut segments = Vec::with_capacity(inputs.len() * 2 + 1);
        let mut central = BytesMut::new();
        let mut offset = 0u64;
        for (index, input) in inputs.iter().enumerate() {
            let name = input.name.as_bytes();
            let big_size = force_zip64 || input.size >= U32_MAX;
            let big_offset = force_zip64 || offset >= U32_MAX;
            let version: u16 = if big_size || big_offset { 45 } else { 20 };

            let mut local = BytesMut::with_capacity(30 + name.len() + 20);
            local.put_u32_le(LOCAL_SIG);
            local.put_u16_le(version);
            local.put_u16_le(FLAG_UTF8);
            local.put_u16_le(0); // stored
            local.put_u16_le(time);
            local.put_u16_le(date);
            local.put_u32_le(input.crc32);
            let small = if big_size {
                U32_MAX as u32
            } else {
                input.size as u32
            };
            local.put_u32_le(small);
            local.put_u32_le(small);
            local.put_u16_le(name.len() as u16);
            local.put_u16_le(if big_size { 20 } else { 0 });
            local.put_slice(name);
            if big_size {
                local.put_u16_le(0x0001);
                local.put_u16_le(16);
                local.put_u64_le(input.size);
                local.put_u64_le(input.size);
            }
            let header_offset = offset;
            let local_len = local.len() as u64;
            segments.push((offset, Segment::Header(local.freeze())));
            offset += local_len;
            segments.push((
                offset,
                Segment::File {
                    index,
                    size: input.size,
                },
            ));
            offset += input.size;

            let mut extra = BytesMut::new();
            if big_size {
                extra.put_u64_le(input.size);
                extra.put_u64_le(input.size);
            }
            if big_offset {
                extra.put_u64_le(header_offset);
            }
            central.put_u32_le(CENTRAL_SIG);
            central.put_u16_le((3 << 8) | 45); // made by Unix, spec 4.5
            central.put_u16_le(version);
            central.put_u16_le(FLAG_UTF8);
            central.put_u16_le(0);
            central.put_u16_le(time);
            central.put_u16_le(date);
            central.put_u32_le(input.crc32);
            central.put_u32_le(small);
            central.put_u32_le(small);
            central.put_u16_le(name.len() as u16);
            central.put_u16_le(if extra.is_empty() {
                0
            } else {
                extra.len() as u16 + 4
            });
            central.put_u16_le(0); // comment
            central.put_u16_le(0); // disk
            central.put_u16_le(0); // internal attributes
            central.put_u32_le(0o100_644 << 16); // regular file, rw-r--r--
            central.put_u32_le(if big_offset {
                U32_MAX as u32
            } else {
                header_offset as u32
            });
            central.put_slice(name);
            if !extra.is_empty() {
                central.put_u16_le(0x0001);
                central.put_u16_le(extra.len() as u16);
                central.put_slice(&extra);
            }
        }
        let cd_offset = offset;
        let cd_size = central.len() as u64;
        let entries = inputs.len() as u64;
        let zip64 = force_zip64 || entries >= 0xFFFF || cd_offset >= U32_MAX || cd_size >= U32_MAX;
        let mut end = central;
        if zip64 {
            let zip64_eocd_offset = cd_offset + cd_size;
            end.put_u32_le(ZIP64_EOCD_SIG);
            end.put_u64_le(44);
            end.put_u16_le((3 << 8) | 45);
            end.put_u16_le(45);
            end.put_u32_le(0);
            end.put_u32_le(0);
            end.put_u64_le(entries);
            end.put_u64_le(entries);
            end.put_u64_le(cd_size);
            end.put_u64_le(cd_offset);
            end.put_u32_le(ZIP64_LOCATOR_SIG);
            end.put_u32_le(0);
            end.put_u64_le(zip64_eocd_offset);
            end.put_u32_le(1);
        }
        end.put_u32_le(EOCD_SIG);
        end.put_u16_le(0);
        end.put_u16_le(0);
        let short_entries = if zip64 { 0xFFFF } else { entries as u16 };
        end.put_u16_le(short_entries);
        end.put_u16_le(short_entries);
        end.put_u32_le(if zip64 {
            U32_MAX as u32
        } else {
            cd_size as u32
        });
        end.put_u32_le(if zip64 {
            U32_MAX as u32
        } else {
            cd_offset as u32
        });
        end.put_u16_le(0);
        let end_len = end.len() as u64;
        segments.push((offset, Segment::Header(end.freeze())));
        offset += end_len;
        Self {
            segments,
            len: offset,
        }
    }

    /// Length of the whole archive.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the archive is empty (never: it always has an end record).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The parts that overlap `start..end`, each with the sub-range to take from it
    /// (relative to the part's own start).
    pub fn slice(&self, start: u64, end: u64) -> Vec<(Segment, u64, u64)> {
        let mut out = Vec::new();
        for (index, (offset, segment)) in self.segments.iter().enumerate() {
            let seg_end = self
                .segments
                .get(index + 1)
                .map_or(self.len, |(next, _)| *next);
            if seg_end <= start || *offset >= end || seg_end == *offset {
                continue;
            }
            let from = start.max(*offset) - offset;
            let to = end.min(seg_end) - offset;
            out.push((segment.clone(), from, to));
        }
        out
    }

    /// Content (file data) bytes within `start..end`.
    pub fn payload_in(&self, start: u64, end: u64) -> u64 {
        self.slice(start, end)
            .iter()
            .filter(|(segment, _, _)| matches!(segment, Segment::File { .. }))
            .map(|(_, from, to)| to - from)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use proptest::prelude::*;

    use super::*;

    fn materialize(layout: &ZipLayout, contents: &[Vec<u8>], start: u64, end: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for (segment, from, to) in layout.slice(start, end) {
            match segment {
                Segment::Header(bytes) => out.extend_from_slice(&bytes[from as usize..to as usize]),
                Segment::File { index, .. } => {
                    out.extend_from_slice(&contents[index][from as usize..to as usize])
                }
            }
        }
        out
    }

    fn inputs(files: &[(&str, Vec<u8>)]) -> Vec<ZipInput> {
        files
            .iter()
            .map(|(name, data)| ZipInput {
                name: (*name).to_owned(),
                size: data.len() as u64,
                crc32: crc32fast::hash(data),
            })
            .collect()
    }

    fn check_readable(force_zip64: bool) {
        let files = vec![
            ("a.txt", b"hello".to_vec()),
            ("Ünïcødé 文件.bin", vec![7u8; 70_000]),
            ("empty", Vec::new()),
        ];
        let layout = ZipLayout::build(&inputs(&files), 1_764_000_000, force_zip64);
        let contents: Vec<Vec<u8>> = files.iter().map(|(_, d)| d.clone()).collect();
        let bytes = materialize(&layout, &contents, 0, layout.len());
        assert_eq!(bytes.len() as u64, layout.len());
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("valid zip");
        assert_eq!(archive.len(), files.len());
        for (name, data) in &files {
            let mut entry = archive.by_name(name).expect("entry by name");
            let mut read = Vec::new();
            entry
                .read_to_end(&mut read)
                .expect("read entry (CRC checked)");
            assert_eq!(&read, data);
        }
    }

    #[test]
    fn archive_is_readable_by_the_zip_crate() {
        check_readable(false);
    }

    #[test]
    fn zip64_archive_is_readable_by_the_zip_crate() {
        check_readable(true);
    }

    #[test]
    fn huge_files_switch_to_zip64() {
        let big = ZipInput {
            name: "big".into(),
            size: 5 << 30,
            crc32: 0,
        };
        let layout = ZipLayout::new(&[big.clone(), big]);
        assert!(layout.len() > 10 << 30);
        assert_eq!(layout.payload_in(0, layout.len()), 10 << 30);
    }

    proptest! {
        #[test]
        fn any_range_equals_the_same_slice_of_the_whole(
            sizes in proptest::collection::vec(0usize..3000, 1..6),
            a in 0.0f64..1.0, b in 0.0f64..1.0,
        ) {
            let contents: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, n)| vec![i as u8; *n]).collect();
            let named: Vec<(String, Vec<u8>)> = contents.iter().enumerate().map(|(i, d)| (format!("f{i}"), d.clone())).collect();
            let refs: Vec<(&str, Vec<u8>)> = named.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
            let layout = ZipLayout::new(&inputs(&refs));
            let whole = materialize(&layout, &contents, 0, layout.len());
            let (mut s, mut e) = ((a * layout.len() as f64) as u64, (b * layout.len() as f64) as u64);
            if s > e { std::mem::swap(&mut s, &mut e); }
            let part = materialize(&layout, &contents, s, e);
            prop_assert_eq!(&part[..], &whole[s as usize..e as usize]);
            prop_assert_eq!(layout.payload_in(0, layout.len()), sizes.iter().sum::<usize>() as u64);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Harness "zip layout against a reader": any set of valid names (any script, any
        /// length up to the limit) and sizes makes an archive the `zip` crate reads back, entry
        /// by entry, with the same names and bytes (its CRC checks included).
        #[test]
        fn any_valid_files_make_an_archive_a_reader_reads_back(
            files in proptest::collection::vec(("[^/\\\\\\x00-\\x1f]{1,40}", 0usize..5000), 1..8),
        ) {
            let mut seen = std::collections::HashSet::new();
            let files: Vec<(String, Vec<u8>)> = files
                .into_iter()
                .filter(|(name, _)| veilshare_shared::validate_file_name(name).is_ok())
                .filter(|(name, _)| seen.insert(veilshare_shared::file_name_key(name)))
                .enumerate()
                .map(|(i, (name, size))| (name, vec![i as u8 ^ 0x5a; size]))
                .collect();
            prop_assume!(!files.is_empty());
            let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
            let layout = ZipLayout::new(&inputs(&refs));
            let contents: Vec<Vec<u8>> = files.iter().map(|(_, d)| d.clone()).collect();
            let bytes = materialize(&layout, &contents, 0, layout.len());
            let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
            prop_assert_eq!(archive.len(), files.len());
            for (i, (name, data)) in files.iter().enumerate() {
                let mut entry = archive.by_index(i).expect("entry");
                prop_assert_eq!(entry.name(), name.as_str());
                let mut read = Vec::new();
                entry.read_to_end(&mut read).expect("bytes and CRC");
                prop_assert_eq!(&read, data);
            }
        }
    }
}
