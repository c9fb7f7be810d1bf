//! `Range` and `If-Range` against a content length: the answer is the whole, one part inside
//! the content (never all of it), or a 416 that states the length; never a panic.
//! Input: 8 bytes of length, 1 byte choosing how the length is cut down and the `If-Range`,
//! then the `Range` header's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, range)) = data.split_at_checked(9) else {
        return;
    };
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&head[..8]);
    let raw = u64::from_le_bytes(raw);
    let len = match head[8] % 4 {
        0 => raw % 4,
        1 => raw % 100_000,
        2 => raw,
        _ => u64::MAX,
    };
    let if_range: Option<&[u8]> = match head[8] / 4 % 3 {
        0 => None,
        1 => Some(b"\"tag\""),
        _ => Some(b"\"other\""),
    };
    if let Err(broken) = veilshare::serve::public::sound_range_answer(range, len, if_range) {
        panic!("{broken}");
    }
});
