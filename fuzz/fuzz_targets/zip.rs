//! The zip layout against a reader: any set of valid, distinct names and sizes makes an
//! archive that the `zip` crate reads back entry by entry, with the same names and bytes (its
//! CRC checks included), and any byte range of it equals the same slice of the whole.
//! Input: 4 bytes choosing a range, then per file a size byte and a name up to a NUL.
#![no_main]

use std::{collections::HashSet, io::Read};

use libfuzzer_sys::fuzz_target;
use veilshare::serve::public::zip::{Segment, ZipInput, ZipLayout};

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

fuzz_target!(|data: &[u8]| {
    let Some((cut, rest)) = data.split_at_checked(4) else {
        return;
    };
    let mut seen = HashSet::new();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (index, part) in rest.split(|b| *b == 0).enumerate().take(16) {
        let Some((size, name)) = part.split_first() else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if veilshare_shared::validate_file_name(name).is_err()
            || !seen.insert(veilshare_shared::file_name_key(name))
        {
            continue;
        }
        let size = usize::from(*size) * 37;
        files.push((name.to_owned(), vec![index as u8 ^ 0x5a; size]));
    }
    if files.is_empty() {
        return;
    }
    let inputs: Vec<ZipInput> = files
        .iter()
        .map(|(name, bytes)| ZipInput {
            name: name.clone(),
            size: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        })
        .collect();
    let layout = ZipLayout::new(&inputs);
    let contents: Vec<Vec<u8>> = files.iter().map(|(_, bytes)| bytes.clone()).collect();
    let whole = materialize(&layout, &contents, 0, layout.len());
    assert_eq!(whole.len() as u64, layout.len());
    let len = layout.len();
    let a = u64::from(u16::from_le_bytes([cut[0], cut[1]])) * len / 65_535;
    let b = u64::from(u16::from_le_bytes([cut[2], cut[3]])) * len / 65_535;
    let (start, end) = (a.min(b), a.max(b));
    let part = materialize(&layout, &contents, start, end);
    assert_eq!(&part[..], &whole[start as usize..end as usize]);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(whole)).expect("a zip");
    assert_eq!(archive.len(), files.len());
    for (index, (name, bytes)) in files.iter().enumerate() {
        let mut entry = archive.by_index(index).expect("an entry");
        assert_eq!(entry.name(), name.as_str());
        let mut read = Vec::new();
        entry
            .read_to_end(&mut read)
            .expect("its bytes, CRC checked");
        assert_eq!(&read, bytes);
    }
});
