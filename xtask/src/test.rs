//! `test`: formatting, the UI's assets, lints, the component tests' WASM build, every test (on a private Tor
//! network started once they are compiled), the front end's component tests in headless
//! Chromium, and the UI in a real browser against the tests' build of the app.

use std::{path::Path, process::Command};

use anyhow::{Context, Result};

use crate::{
    cargo,
    dist::{WASM_TARGET, build_ui, ensure_wasm_target},
    exec, root,
    setup::{ensure_debian_packages, which},
    target_dir, testnet,
};

pub(crate) fn test(args: &[String]) -> Result<()> {
    ensure_wasm_target()?;
    exec(cargo().args(["fmt", "--all", "--check"]))?;
    // The UI first: the tests' own debug build of the app embeds it, and the browser tests run
    // that build. A release build only for them compiled Arti and iroh a third time (after
    // clippy's and the tests'), the longest step of a cold run.
    ensure_ui_npm_packages()?;
    let ui = build_ui()?;
    exec(
        cargo()
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
            .env("VEILSHARE_UI_DIR", &ui),
    )?;
    // The front end's component tests only ever build for wasm32 (clippy's native pass does
    // not see them): compiled now, to fail early, exactly as `component_tests` runs them, so
    // that nothing is compiled twice.
    exec(cargo().args([
        "test",
        "-p",
        "veilshare-frontend",
        "--target",
        WASM_TARGET,
        "--no-run",
    ]))?;
    // The end-to-end tests start the real binary, which `cargo test --workspace` builds for the
    // backend's own integration tests (a separate `cargo build` would unify features
    // differently and build Arti twice). Compiled before the private Tor network starts, so
    // that its nine `tor` processes do not take CPU from the compiler.
    let test = || {
        let mut command = cargo();
        command
            .args(["test", "--workspace"])
            .env("VEILSHARE_UI_DIR", &ui)
            .env("VEILSHARE_TESTNET", testnet::arti_toml());
        command
    };
    exec(test().arg("--no-run"))?;
    testnet::up()?;
    // One end-to-end test watches the app's sockets with strace; drop box tests post a form
    // through C tor with curl (Tor Browser's path) and decrypt with age.
    ensure_debian_packages(&[("strace", "strace"), ("curl", "curl"), ("age", "age")])?;
    exec(test().args(args))?;
    component_tests()?;
    ui_e2e(&target_dir().join("debug/veilshare"))
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

/// The npm packages of `tests/ui` (playwright-core, and binaryen for wasm-opt), from the
/// lockfile, installed when missing.
fn ensure_ui_npm_packages() -> Result<()> {
    ensure_debian_packages(&[("node", "nodejs"), ("npm", "npm")])?;
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
    Ok(())
}

/// The UI in a real browser: Playwright (npm `playwright-core`, no downloaded browser) drives
/// Debian's chromium against `binary`, a build of the app with the UI embedded.
fn ui_e2e(binary: &Path) -> Result<()> {
    ensure_debian_packages(&[("chromium", "chromium")])?;
    ensure_ui_npm_packages()?;
    let ui_tests = root().join("tests/ui");
    // A phone photo with a GPS position, made by the tests' own sample code (an example that
    // `cargo test` has built).
    let photo = target_dir().join("ui-sample-photo.jpg");
    exec(Command::new(target_dir().join("debug/examples/sample_photo")).arg(&photo))?;
    exec(
        Command::new("node")
            .arg("e2e.mjs")
            .current_dir(&ui_tests)
            .env("VEILSHARE_DIST", binary)
            .env("VEILSHARE_SAMPLE_PHOTO", &photo)
            .env("SCREENSHOTS", target_dir().join("ui-screenshots")),
    )?;
    // With Tor on, on the private network (started by `test` before the Rust tests).
    testnet::up()?;
    exec(
        Command::new("node")
            .arg("tor.mjs")
            .current_dir(&ui_tests)
            .env("VEILSHARE_DIST", binary)
            .env("VEILSHARE_TESTNET", testnet::arti_toml())
            .env("SCREENSHOTS", target_dir().join("ui-screenshots")),
    )
}
