//! Checks the architectural rules of `ARCHITECTURE.md` that a machine can check.

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read source")
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_module_opens_with_a_doc_comment_saying_what_it_is_for() {
    for path in sources(&crate_dir().join("src")) {
        assert!(
            read(&path).starts_with("//!"),
            "{} does not open with a `//!` comment",
            path.display()
        );
    }
}

#[test]
fn policy_does_no_io_and_reads_no_clock() {
    let text = read(&crate_dir().join("src/policy.rs"));
    for forbidden in [
        "std::fs",
        "tokio",
        "SystemTime",
        "Instant::now",
        "std::net",
        "reqwest",
    ] {
        assert!(!text.contains(forbidden), "policy.rs mentions {forbidden}");
    }
}

#[test]
fn public_knows_nothing_of_tor_or_the_api() {
    for path in sources(&crate_dir().join("src/public")) {
        let text = read(&path);
        for forbidden in [
            "arti_client",
            "tor_hsservice",
            "tor_proto",
            "TorClient",
            "crate::admin",
            "crate::tor",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} mentions {forbidden}",
                path.display()
            );
        }
    }
}

#[test]
fn shared_has_no_runtime_or_web_dependencies() {
    let manifest = read(&crate_dir().join("../shared/Cargo.toml"));
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or_default();
    for forbidden in ["tokio", "axum", "web-sys", "hyper", "reqwest"] {
        assert!(!deps.contains(forbidden), "shared depends on {forbidden}");
    }
}
