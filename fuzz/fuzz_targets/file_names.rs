//! File names (uploaded in multipart parts, or received), one per line: a set that
//! `check_names` accepts has names that are safe on any common file system and that differ
//! after case folding and Unicode normalisation.
#![no_main]

use std::{
    collections::HashSet,
    path::{Component, Path},
};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let names: Vec<&str> = text.split('\n').collect();
    for name in &names {
        if veilshare_shared::validate_file_name(name).is_ok() {
            assert!(!name.is_empty() && name.len() <= veilshare_shared::MAX_FILE_NAME_BYTES);
            assert!(
                !name
                    .chars()
                    .any(|c| c.is_control() || "/\\<>:\"|?*".contains(c))
            );
            assert!(!name.ends_with('.') && !name.ends_with(' '), "{name:?}");
            let mut parts = Path::new(name).components();
            assert!(matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none());
        }
    }
    if veilshare::receive::local::check_names(names.iter().copied(), true).is_ok() {
        let keys: HashSet<String> = names
            .iter()
            .map(|name| veilshare_shared::file_name_key(name))
            .collect();
        assert_eq!(keys.len(), names.len());
    }
});
