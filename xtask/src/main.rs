//! Project automation: `cargo xtask <command>`. Each command prints what it runs.
//!
//! - `run [ARGS…]`: build the app as `dist` does, then start it (`veilshare serve ARGS…`).
//! - `dist`: the one-file app, `<target>/dist/veilshare`, with the Yew UI embedded.
//! - `test`: install what the tests need when it is missing (the WASM target, Debian's `tor`,
//!   `strace`, `chromium` and `nodejs`/`npm`, the npm packages of `tests/ui`), then formatting, lints,
//!   the WASM build check, a private Tor network, every test, the front end's component tests
//!   in headless Chromium, and the UI in a real browser against the `dist` build.
//! - `bench [foundation|tor|direct]`: the side-by-side benchmarks (installs nginx, b3sum,
//!   onionshare-cli and sendme when missing).
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
        "dist" => dist().map(|_| ()),
        "test" => test(&rest),
        "bench" => bench(&rest),
        "testnet" => testnet::main(&rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 run [ARGS…]   build and start veilshare (ARGS go to `veilshare serve`)\n  \
                 dist          build the one-file app into <target>/dist/veilshare\n  \
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
    let binary = dist()?;
    exec(Command::new(binary).arg("serve").args(args))
}

/// Builds the front end into `<target>/ui` (WASM, JS glue, page, styles, each also
/// brotli- and gzip-compressed); returns that folder.
fn build_ui() -> Result<PathBuf> {
    ensure_wasm_target()?;
    exec(cargo().args([
        "build",
        "-p",
        "veilshare-frontend",
        "--target",
        WASM_TARGET,
        "--profile",
        "wasm-release",
    ]))?;
    let wasm = target_dir()
        .join(WASM_TARGET)
        .join("wasm-release/veilshare-frontend.wasm");
    let out = target_dir().join("ui");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    std::fs::create_dir_all(&out)?;
    eprintln!("$ wasm-bindgen --target web {}", wasm.display());
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .web(true)?
        .typescript(false)
        .out_name("veilshare_frontend")
        .generate(&out)
        .context("wasm-bindgen failed")?;
    let bound = out.join("veilshare_frontend_bg.wasm");
    let raw_size = std::fs::metadata(&bound)?.len();
    optimize_wasm(&bound);
    for entry in std::fs::read_dir(root().join("frontend/static"))? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, out.join(name))?;
        }
    }
    let mut report = Vec::new();
    for entry in std::fs::read_dir(&out)? {
        let path = entry?.path();
        let data = std::fs::read(&path)?;
        let mut br = Vec::new();
        {
            let mut writer = brotli::CompressorWriter::new(&mut br, 64 << 10, 11, 22);
            std::io::Write::write_all(&mut writer, &data)?;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &data)?;
        let gz = gz.finish()?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::write(out.join(format!("{name}.br")), &br)?;
        std::fs::write(out.join(format!("{name}.gz")), &gz)?;
        report.push((name, data.len(), br.len(), gz.len()));
    }
    report.sort();
    eprintln!("UI assets in {}:", out.display());
    for (name, plain, br, gz) in &report {
        eprintln!("  {name:32} {plain:>9} bytes, brotli {br:>8}, gzip {gz:>8}");
    }
    let wasm_size = std::fs::metadata(&bound)?.len();
    eprintln!("  (WASM from wasm-bindgen: {raw_size} bytes; after wasm-opt: {wasm_size} bytes)");
    Ok(out)
}

/// Runs `wasm-opt -Oz` on `wasm` when one is installed (npm's `binaryen`, which the test
/// command installs under `tests/ui`, or one on PATH); the UI works without it, only bigger.
fn optimize_wasm(wasm: &Path) {
    let local = root().join("tests/ui/node_modules/.bin/wasm-opt");
    let Some(tool) = local
        .exists()
        .then_some(local)
        .or_else(|| which("wasm-opt"))
    else {
        eprintln!("wasm-opt not found: the WASM stays unoptimised (npm's `binaryen` provides it)");
        return;
    };
    let optimized = wasm.with_extension("opt.wasm");
    let status = Command::new(&tool)
        .arg("-Oz")
        .arg("--enable-bulk-memory")
        .arg("--enable-nontrapping-float-to-int")
        .arg("--enable-sign-ext")
        .arg("--enable-reference-types")
        .arg("--enable-multivalue")
        .arg(wasm)
        .arg("-o")
        .arg(&optimized)
        .status();
    match status {
        Ok(status) if status.success() => {
            if let Err(error) = std::fs::rename(&optimized, wasm) {
                eprintln!("could not keep wasm-opt's output ({error}); using the unoptimised WASM");
            }
        }
        _ => {
            let _ = std::fs::remove_file(&optimized);
            eprintln!("{} failed; using the unoptimised WASM", tool.display());
        }
    }
}

/// `dist`: the UI, then the release binary with it embedded, copied to
/// `<target>/dist/veilshare`. Returns that path.
fn dist() -> Result<PathBuf> {
    let ui = build_ui()?;
    exec(
        cargo()
            .args(["build", "--release", "-p", "veilshare"])
            .env("VEILSHARE_UI_DIR", &ui),
    )?;
    let dist = target_dir().join("dist");
    std::fs::create_dir_all(&dist)?;
    let binary = dist.join("veilshare");
    std::fs::copy(target_dir().join("release/veilshare"), &binary)
        .context("cannot copy the release binary into dist")?;
    eprintln!(
        "one-file app: {} ({:.1} MiB)",
        binary.display(),
        std::fs::metadata(&binary)?.len() as f64 / f64::from(1 << 20)
    );
    Ok(binary)
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

/// The reference for direct transfers: iroh's `sendme`, pinned, installed from crates.io into
/// `<target>/tools` when missing.
fn ensure_sendme() -> Result<PathBuf> {
    const VERSION: &str = "0.37.1";
    let root = target_dir().join("tools");
    let binary = root.join("bin/sendme");
    let stamp = root.join(format!("sendme-{VERSION}"));
    if binary.is_file() && stamp.is_file() {
        return Ok(binary);
    }
    eprintln!("installing sendme {VERSION} from crates.io (the direct-transfer reference)");
    exec(
        cargo()
            .args([
                "install",
                "sendme",
                "--locked",
                "--version",
                VERSION,
                "--root",
            ])
            .arg(&root),
    )?;
    std::fs::write(&stamp, VERSION).context("cannot write the sendme stamp")?;
    Ok(binary)
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
    // One end-to-end test watches the app's sockets with strace.
    ensure_debian_packages(&[("strace", "strace")])?;
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
fn component_tests() -> Result<()> {
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
fn ui_e2e() -> Result<()> {
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
    exec(
        Command::new("node")
            .arg("e2e.mjs")
            .current_dir(&ui_tests)
            .env("VEILSHARE_DIST", &binary)
            .env("SCREENSHOTS", target_dir().join("ui-screenshots")),
    )
}

/// `bench [foundation|tor] [criterion args…]`: both suites when none is named.
fn bench(args: &[String]) -> Result<()> {
    let (suites, rest): (Vec<&str>, &[String]) = match args.first().map(String::as_str) {
        Some(name @ ("foundation" | "tor" | "direct")) => (vec![name], &args[1..]),
        _ => (vec!["foundation", "tor", "direct"], args),
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
        } else if suite == "direct" {
            ensure_debian_packages(&[("time", "time")])?;
            command.env("VEILSHARE_SENDME", ensure_sendme()?);
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
