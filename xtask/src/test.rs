//! `test`: formatting, lints, the WASM check, a private Tor network, every test, the front
//! end's component tests in headless Chromium, and the UI in a real browser.

use std::process::Command;

use anyhow::{Context, Result};

use crate::{
    cargo,
    dist::{WASM_TARGET, dist, ensure_wasm_target},
    exec, root,
    setup::{ensure_debian_packages, which},
    target_dir, testnet,
};

pub(crate) fn test(args: &[String]) -> Result<()> {
    ensure_wasm_target()?;
    exec(cargo().args(["fmt", "--all", "--check"]))?;
    exec(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    exec(cargo().args([
        "check",
        "-p",
        "veilshare-shared",
        "-p",
        "veilshare-frontend",
        "--target",
        WASM_TARGET,
    ]))?;
    // The end-to-end tests start the real binary, which `cargo test --workspace` builds for the
    // backend's own integration tests (a separate `cargo build` would unify features
    // differently and build Arti twice); the onion tests need a private Tor network.
    testnet::up()?;
    // One end-to-end test watches the app's sockets with strace; drop box tests post a form
    // through C tor with curl (Tor Browser's path) and decrypt with age.
    ensure_debian_packages(&[("strace", "strace"), ("curl", "curl"), ("age", "age")])?;
    exec(
        cargo()
            .args(["test", "--workspace"])
            .env("VEILSHARE_TESTNET", testnet::arti_toml())
            .args(args),
    )?;
    component_tests()?;
    ui_e2e()
}

/// The front end's component tests (`wasm-bindgen-test`) in headless Chromium, through
/// chromedriver and wasm-bindgen's test runner built from the workspace.
pub(crate) fn component_tests() -> Result<()> {
    ensure_debian_packages(&[
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
    ])?;
    exec(cargo().args(["build", "-p", "wasm-test-runner"]))?;
    let chromedriver = which("chromedriver").context("chromedriver is missing")?;
    exec(
        cargo()
            .args(["test", "-p", "veilshare-frontend", "--target", WASM_TARGET])
            .env(
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
                target_dir().join("debug/wasm-test-runner"),
            )
            .env("CHROMEDRIVER", chromedriver),
    )
}

/// The UI in a real browser: Playwright (npm `playwright-core`, no downloaded browser) drives
/// Debian's chromium against the one-file app from `dist`.
pub(crate) fn ui_e2e() -> Result<()> {
    ensure_debian_packages(&[("chromium", "chromium"), ("node", "nodejs"), ("npm", "npm")])?;
    let ui_tests = root().join("tests/ui");
    if ["playwright-core", "binaryen"]
        .iter()
        .any(|package| !ui_tests.join("node_modules").join(package).exists())
    {
        eprintln!(
            "installing npm packages for the UI test (playwright-core, and binaryen for wasm-opt; from the lockfile)"
        );
        exec(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&ui_tests),
        )?;
    }
    let binary = dist()?;
    // A phone photo with a GPS position, made by the tests' own sample code.
    let photo = target_dir().join("ui-sample-photo.jpg");
    exec(
        cargo()
            .args([
                "run",
                "-q",
                "-p",
                "veilshare-e2e",
                "--example",
                "sample_photo",
                "--",
            ])
            .arg(&photo),
    )?;
    exec(
        Command::new("node")
            .arg("e2e.mjs")
            .current_dir(&ui_tests)
            .env("VEILSHARE_DIST", &binary)
            .env("VEILSHARE_SAMPLE_PHOTO", &photo)
            .env("SCREENSHOTS", target_dir().join("ui-screenshots")),
    )?;
    // With Tor on, on the private network (started by `test` before the Rust tests).
    testnet::up()?;
    exec(
        Command::new("node")
            .arg("tor.mjs")
            .current_dir(&ui_tests)
            .env("VEILSHARE_DIST", &binary)
            .env("VEILSHARE_TESTNET", testnet::arti_toml())
            .env("SCREENSHOTS", target_dir().join("ui-screenshots")),
    )
}
