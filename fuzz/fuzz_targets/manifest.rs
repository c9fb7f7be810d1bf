//! A manifest from a sender: parsed, then its names checked as `veilshare get` checks them.
//! What passes holds 1 to 10,000 files, each name one plain path component that
//! `validate_file_name` accepts, so joined to the output folder it stays inside it.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = veilshare::receive::link::parse_manifest(data) else {
        return;
    };
    let names = manifest.files.iter().map(|file| file.name.as_str());
    if veilshare::receive::local::check_names(names, true).is_err() {
        return;
    }
    assert!(!manifest.files.is_empty());
    assert!(manifest.files.len() <= veilshare_shared::MAX_FILES_PER_SHARE);
    for file in &manifest.files {
        let mut parts = Path::new(&file.name).components();
        assert!(
            matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none(),
            "{:?}",
            file.name
        );
        assert!(veilshare_shared::validate_file_name(&file.name).is_ok());
    }
});
