//! Files a user adds (or a drop box sender sends), read for metadata: inspecting any bytes
//! never panics, and cleaning either refuses or gives a file in which nothing is found.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veilshare::core::metadata;

fuzz_target!(|data: &[u8]| {
    let _ = metadata::inspect(data);
    if let Ok(cleaned) = metadata::strip(bytes::Bytes::copy_from_slice(data)) {
        let left = metadata::inspect(&cleaned).map(|i| i.found).unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }
});
