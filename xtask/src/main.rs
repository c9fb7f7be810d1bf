//! Project automation: `cargo xtask <command>`. Each command prints what it runs.
//!
//! - `run [ARGS…]`: build the app as `dist` does, then start it (`veilshare serve ARGS…`).
//! - `dist`: the one-file app, `<target>/dist/veilshare`, with the Yew UI embedded.
//! - `test`: install what the tests need when it is missing (the WASM target, Debian's `tor`,
//!   `strace`, `curl`, `age`, `chromium` and `nodejs`/`npm`, the npm packages of `tests/ui`), then formatting, lints,
//!   the WASM build check, a private Tor network, every test, the front end's component tests
//!   in headless Chromium, and the UI in a real browser against the `dist` build.
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
    process::Command,
};

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "run" => dist::run(&rest),
        "dist" => dist::dist().map(|_| ()),
        "test" => test::test(&rest),
        "bench" => bench::bench(&rest),
        "testnet" => testnet::main(&rest),
        "fuzz" => fuzz::fuzz(&rest),
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
    // `cargo run` gave this process the xtask's manifest dir. Passed on, it would differ from
    // checkout to checkout, and build scripts that watch it (ring's does) would rebuild ring,
    // rustls and all of Arti whenever two clones share the target directory.
    command
        .current_dir(root())
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("CARGO_MANIFEST_PATH");
    command
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
