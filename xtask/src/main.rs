//! Project automation: `cargo xtask <command>`. Each command prints what it runs.
//!
//! - `run [ARGS…]`: build and start the app (`veilshare serve ARGS…`).
//! - `test`: install what the tests need when it is missing (the WASM target, Debian's `tor`),
//!   then formatting, lints, the WASM build check, a private Tor network, and every test.
//! - `bench`: the side-by-side benchmarks (installs nginx and b3sum when missing).
//! - `testnet up|down|env`: a private Tor network on 127.0.0.1 for the onion tests.

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
        "run" => run(&rest),
        "test" => test(&rest),
        "bench" => bench(&rest),
        "testnet" => testnet::main(&rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 run [ARGS…]   build and start veilshare (ARGS go to `veilshare serve`)\n  \
                 test          install test prerequisites, then lint and run every test\n  \
                 bench         run the side-by-side benchmarks\n  \
                 testnet up|down|env   a private Tor network on 127.0.0.1"
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
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

/// Runs a command, echoing it first; fails if it fails.
fn exec(command: &mut Command) -> Result<()> {
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
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn run(args: &[String]) -> Result<()> {
    exec(
        cargo()
            .args(["run", "--release", "-p", "veilshare", "--", "serve"])
            .args(args),
    )
}

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Adds the WASM target through rustup when it is missing.
fn ensure_wasm_target() -> Result<()> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup (the WASM target is added through it)")?;
    if String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| line.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    eprintln!("installing the Rust target {WASM_TARGET} (needed to build the front end)");
    exec(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// Installs Debian packages that provide `binaries` when any is missing.
fn ensure_debian_packages(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(binary, _)| which(binary).is_none())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing Debian packages: {}", missing.join(" "));
    let sudo = !is_root();
    let apt = |args: &[&str]| {
        let mut command = if sudo {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        } else {
            Command::new("apt-get")
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    exec(&mut apt(&["update", "-qq"]))?;
    exec(apt(&["install", "-y", "-qq", "--no-install-recommends"]).args(&missing))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Where `binary` is on the PATH (or in /usr/sbin, where Debian puts daemons).
fn which(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

fn test(args: &[String]) -> Result<()> {
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
    exec(
        cargo()
            .args(["test", "--workspace"])
            .env("VEILSHARE_TESTNET", testnet::arti_toml())
            .args(args),
    )
}

/// `bench [foundation|tor] [criterion args…]`: both suites when none is named.
fn bench(args: &[String]) -> Result<()> {
    let (suites, rest): (Vec<&str>, &[String]) = match args.first().map(String::as_str) {
        Some(name @ ("foundation" | "tor")) => (vec![name], &args[1..]),
        _ => (vec!["foundation", "tor"], args),
    };
    // Without congestion-control negotiation, for the Tor suite's before/after: built first
    // and copied aside, since both builds write `release/veilshare`.
    let no_negotiation = target_dir().join("release/veilshare-no-negotiation");
    if suites.contains(&"tor") {
        exec(cargo().args([
            "build",
            "--release",
            "-p",
            "veilshare",
            "--no-default-features",
        ]))?;
        std::fs::copy(target_dir().join("release/veilshare"), &no_negotiation)
            .context("cannot copy the build without negotiation aside")?;
    }
    exec(cargo().args(["build", "--release", "-p", "veilshare"]))?;
    let binary = target_dir().join("release/veilshare");
    for suite in suites {
        let mut command = cargo();
        command
            .args(["bench", "-p", "veilshare-e2e", "--bench", suite])
            .env("VEILSHARE_BIN", &binary);
        if suite == "foundation" {
            ensure_debian_packages(&[("nginx", "nginx"), ("b3sum", "b3sum")])?;
        } else {
            ensure_debian_packages(&[("onionshare-cli", "onionshare-cli")])?;
            testnet::up()?;
            command
                .env("VEILSHARE_TESTNET", testnet::arti_toml())
                .env("VEILSHARE_TESTNET_CLIENT_TORRC", testnet::client_torrc())
                .env("VEILSHARE_BIN_NO_NEGOTIATION", &no_negotiation);
        }
        exec(command.args(["--"]).args(rest))?;
    }
    Ok(())
}
