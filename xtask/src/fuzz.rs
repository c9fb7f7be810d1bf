//! `cargo xtask fuzz [--seconds N] [TARGET…]`: runs the `cargo fuzz` targets of `fuzz/` (every
//! one unless named), each for N seconds (default 60), and prints the executions of each.
//! Installs a nightly toolchain and `cargo-fuzz` when missing. Builds without a sanitizer: the
//! parsers are safe Rust, and what the targets look for are panics and broken invariants.
//! Findings go to `fuzz/artifacts/<target>/`; the corpus grows in `<target>/fuzz-corpus/`,
//! seeded from `fuzz/seeds/<target>/`.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, exec, root, setup, target_dir};

const TARGETS: &[&str] = &["range", "manifest", "ticket", "file_names", "zip"];
const CARGO_FUZZ: &str = "0.13.2";

pub(crate) fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut chosen = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().context("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .with_context(|| format!("--seconds {value}: not a number of seconds"))?;
            }
            name if TARGETS.contains(&name) => chosen.push(name),
            other => bail!("unknown fuzz target {other:?}; the targets: {TARGETS:?}"),
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.to_vec();
    }
    ensure_tools()?;
    let fuzz_target = target_dir().join("fuzz");
    exec(fuzz_command("build").arg("--target-dir").arg(&fuzz_target))?;
    let mut report = Vec::new();
    for target in chosen {
        let corpus = fuzz_target.join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("cannot create {}", corpus.display()))?;
        let seeds = root().join("fuzz/seeds").join(target);
        let mut command = fuzz_command("run");
        command
            .arg("--target-dir")
            .arg(&fuzz_target)
            .arg(target)
            .arg(&corpus);
        if seeds.is_dir() {
            command.arg(&seeds);
        }
        command.args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-print_final_stats=1",
        ]);
        let shown = format!("{command:?}").replace('"', "");
        eprintln!("$ {shown}");
        let output = command
            .output()
            .with_context(|| format!("cannot start {shown}"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            eprintln!("{log}");
            if log.contains("failed to build fuzz script") {
                bail!("fuzz target {target} did not build (the sources changed during the run?)");
            }
            bail!("fuzz target {target} found a failure (see fuzz/artifacts/{target}/)");
        }
        let stat = |name: &str| {
            log.lines()
                .find_map(|line| line.strip_prefix(&format!("stat::{name}:")))
                .map(|value| value.trim().to_owned())
                .unwrap_or_else(|| "?".into())
        };
        report.push((
            target,
            stat("number_of_executed_units"),
            stat("new_units_added"),
        ));
    }
    eprintln!("\n| target | executions in {seconds} s | new corpus entries |\n| --- | --- | --- |");
    for (target, runs, added) in report {
        eprintln!("| {target} | {runs} | {added} |");
    }
    Ok(())
}

/// `cargo +nightly fuzz SUBCOMMAND`: through rustup's `cargo`, which understands `+nightly`
/// (the `CARGO` that runs the xtask is the stable toolchain's own binary), in a plain
/// environment: `cargo run` gave this process `CARGO_PKG_NAME`, `RUSTUP_TOOLCHAIN` and more,
/// which build scripts watch (ring's does), so passed on they would rebuild every
/// dependency of the instrumented build (17 minutes here) whenever it was last built from a
/// shell.
fn fuzz_command(subcommand: &str) -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(root()).env_clear();
    for key in [
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "TERM",
        "TMPDIR",
        "CARGO_HOME",
        "RUSTUP_HOME",
    ] {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command.args([
        "+nightly",
        "fuzz",
        subcommand,
        "--sanitizer",
        "none",
        "--fuzz-dir",
        "fuzz",
    ]);
    command
}

/// A nightly toolchain and cargo-fuzz, installed when missing.
fn ensure_tools() -> Result<()> {
    let has_nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !has_nightly {
        eprintln!("installing a nightly toolchain (cargo fuzz needs it)");
        exec(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if setup::which("cargo-fuzz").is_none() {
        eprintln!("installing cargo-fuzz {CARGO_FUZZ} from crates.io");
        exec(cargo().args(["install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ]))?;
    }
    Ok(())
}
