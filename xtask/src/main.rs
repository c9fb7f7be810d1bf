//! Project automation: `cargo xtask <command>`. Each command prints what it runs.
//!
//! - `run [ARGS…]`: build the app as `dist` does, then start it (`veilshare serve ARGS…`).
//! - `dist`: the one-file app, `<target>/dist/veilshare`, with the Yew UI embedded.
//! - `test`: install what the tests need when it is missing (the WASM target, Debian's `tor`,
//!   `strace`, `curl`, `age`, `chromium` and `nodejs`/`npm`, the npm packages of `tests/ui`),
//!   then formatting, the UI's assets, lints, the component tests' WASM build, every test on a
//!   private Tor network, the front end's component tests in headless Chromium, and the UI in a
//!   real browser against the tests' debug build of the app, with the UI embedded.
//! - `bench [foundation|tor|direct]`: the side-by-side benchmarks (installs nginx, b3sum,
//!   onionshare-cli and sendme when missing).
//! - `testnet up|down|env`: a private Tor network on 127.0.0.1 for the onion tests.
//! - `fuzz [--seconds N] [TARGET…]`: the `cargo fuzz` targets of `fuzz/`, N seconds each
//!   (installs nightly and cargo-fuzz when missing).

mod bench;
mod dist;
mod fuzz;
mod setup;
mod test;
mod testnet;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, Result, bail};

/// Runs the command; a failure is printed as one line of causes, never with a backtrace
/// (`RUST_BACKTRACE` may be set for the tests).
fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let mut rest: Vec<String> = args.collect();
    // `cargo xtask run -- --no-browser`: the cargo habit of `--` before arguments.
    if rest.first().map(String::as_str) == Some("--") {
        rest.remove(0);
    }
    match dispatch(&command, &rest) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: &str, rest: &[String]) -> Result<()> {
    match command {
        "run" => dist::run(rest),
        "dist" => dist::dist().map(|_| ()),
        "test" => test::test(rest),
        "bench" => bench::bench(rest),
        "testnet" => testnet::main(rest),
        "fuzz" => fuzz::fuzz(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 run [ARGS…]   build and start veilshare (ARGS go to `veilshare serve`)\n  \
                 dist          build the one-file app into <target>/dist/veilshare\n  \
                 test          install test prerequisites, then lint and run every test\n  \
                 bench         run the side-by-side benchmarks\n  \
                 testnet up|down|env   a private Tor network on 127.0.0.1\n  \
                 fuzz [--seconds N] [TARGET…]   run the cargo-fuzz targets (nightly)"
            );
            if command.is_empty() || command == "help" || command == "--help" {
                Ok(())
            } else {
                bail!("unknown command {command:?}")
            }
        }
    }
}

/// The workspace root (the parent of this crate's folder). Taken from the environment that
/// `cargo run` sets, not from compile time: checkouts that share a target directory (CI's
/// clean clones) may run an xtask binary compiled for another checkout.
pub(crate) fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    // `cargo run` gave this process the xtask's package variables (`CARGO_PKG_NAME=xtask`,
    // its version, its manifest dir…). Passed on, they differ from a build started in a shell,
    // and build scripts that watch them (ring's watches the package name, version and manifest
    // dir) would rebuild ring, rustls and all of Arti each time the two kinds of build take
    // turns in one target directory.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if is_package_variable(name) {
            command.env_remove(name);
        }
    }
    command
}

/// Whether `name` is one of the variables cargo sets for the package it runs (not one that
/// configures cargo itself, like `CARGO_TARGET_DIR` or `CARGO_HOME`).
fn is_package_variable(name: &str) -> bool {
    ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_EXE_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || [
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_RUSTC_CURRENT_DIR",
        ]
        .contains(&name)
}

/// Runs a command, echoing it first; fails if it fails.
pub(crate) fn exec(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}").replace('"', "");
    eprintln!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// The cargo target directory (honours `CARGO_TARGET_DIR`).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_package_variables_of_cargo_run_are_left_out() {
        for name in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_CRATE_NAME",
        ] {
            assert!(is_package_variable(name), "{name}");
        }
        for name in [
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO",
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            "PATH",
        ] {
            assert!(!is_package_variable(name), "{name}");
        }
    }
}
