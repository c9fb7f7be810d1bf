//! Embeds the management UI built by `cargo xtask dist` (or `run`): the folder named by
//! `VEILSHARE_UI_DIR`, each file with its `.br` and `.gz` siblings when present. Without it (a
//! plain `cargo build`), nothing is embedded and the app serves a page saying how to build
//! the UI. Never runs cargo itself (the target directory is locked while this runs).

use std::{fmt::Write as _, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=VEILSHARE_UI_DIR");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut code = String::from(
        "/// The embedded UI files (empty: no UI in this build).\npub static ASSETS: &[Asset] = &[\n",
    );
    if let Some(dir) = std::env::var_os("VEILSHARE_UI_DIR").map(PathBuf::from)
        && dir.join("index.html").is_file()
    {
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("VEILSHARE_UI_DIR is readable")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.is_file())
            .filter(|path| !matches!(path.extension().and_then(|e| e.to_str()), Some("br" | "gz")))
            .collect();
        files.sort();
        for path in files {
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UI file names are UTF-8");
            let sibling = |ext: &str| {
                let mut encoded = path.clone().into_os_string();
                encoded.push(format!(".{ext}"));
                let encoded = PathBuf::from(encoded);
                if encoded.is_file() {
                    println!("cargo:rerun-if-changed={}", encoded.display());
                    format!("Some(include_bytes!({:?}))", encoded.display().to_string())
                } else {
                    "None".to_owned()
                }
            };
            let _ = writeln!(
                code,
                "    Asset {{ name: {name:?}, identity: include_bytes!({:?}), br: {}, gz: {} }},",
                path.display().to_string(),
                sibling("br"),
                sibling("gz"),
            );
        }
    }
    code.push_str("];\n");
    std::fs::write(out.join("ui_assets.rs"), code).expect("write ui_assets.rs");
}
