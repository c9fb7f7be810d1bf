//! `run` and `dist`: the UI built for wasm32 (wasm-bindgen through its library, wasm-opt when
//! installed, compressed siblings), then the release binary with the UI embedded.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::{cargo, exec, root, setup::which, target_dir};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let binary = dist()?;
    exec(Command::new(binary).arg("serve").args(args))
}

/// Builds the front end into `<target>/ui` (WASM, JS glue, page, styles, each also
/// brotli- and gzip-compressed); returns that folder.
pub(crate) fn build_ui() -> Result<PathBuf> {
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
    // Built afresh in a staging folder, then copied into `ui` only where bytes changed: the
    // backend's build script watches `ui` (its files' and the folder's times), so rewriting
    // identical files would rebuild and relink the release binary on every `run`.
    let out = target_dir().join("ui.staging");
    // The same inputs make the same assets: skip wasm-bindgen, wasm-opt and brotli (about
    // 10 s) when the WASM, the static files and the optimiser are those of the last build.
    let key_file = target_dir().join("ui.staging.key");
    let key = inputs_key(&wasm)?;
    let ui = target_dir().join("ui");
    if out.is_dir() && std::fs::read_to_string(&key_file).ok().as_deref() == Some(key.as_str()) {
        let changed = sync_dir(&out, &ui)?;
        eprintln!(
            "UI assets unchanged since the last build; in {}: {changed} changed",
            ui.display()
        );
        return Ok(ui);
    }
    let _ = std::fs::remove_file(&key_file);
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
    eprintln!("UI assets built in {}:", out.display());
    for (name, plain, br, gz) in &report {
        eprintln!("  {name:32} {plain:>9} bytes, brotli {br:>8}, gzip {gz:>8}");
    }
    let wasm_size = std::fs::metadata(&bound)?.len();
    eprintln!("  (WASM from wasm-bindgen: {raw_size} bytes; after wasm-opt: {wasm_size} bytes)");
    let changed = sync_dir(&out, &ui)?;
    std::fs::write(&key_file, &key)
        .with_context(|| format!("cannot write {}", key_file.display()))?;
    eprintln!("UI assets in {}: {changed} changed", ui.display());
    Ok(ui)
}

/// The wasm-opt to use: the UI tests' npm `binaryen`, else one on `PATH`.
fn wasm_opt() -> Option<PathBuf> {
    let local = root().join("tests/ui/node_modules/.bin/wasm-opt");
    local
        .exists()
        .then_some(local)
        .or_else(|| which("wasm-opt"))
}

/// What the UI assets are built from, as one line: the hash of the WASM, of each static file
/// (by name) and the wasm-opt in use, plus this xtask's own build (its way of building them).
fn inputs_key(wasm: &Path) -> Result<String> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(wasm)
        .with_context(|| format!("cannot read {}", wasm.display()))?
        .hash(&mut hasher);
    let mut statics: Vec<PathBuf> = std::fs::read_dir(root().join("frontend/static"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    statics.sort();
    for path in statics {
        path.file_name().hash(&mut hasher);
        std::fs::read(&path)?.hash(&mut hasher);
    }
    wasm_opt().hash(&mut hasher);
    std::env::current_exe()
        .and_then(std::fs::metadata)
        .and_then(|m| m.modified())
        .ok()
        .hash(&mut hasher);
    Ok(format!("{:016x}", hasher.finish()))
}

/// Makes `to` hold exactly the files of `from`, writing only those whose bytes differ (and
/// removing those `from` lacks), so that unchanged files keep their times. Returns how many
/// files were written or removed.
fn sync_dir(from: &Path, to: &Path) -> Result<usize> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut changed = 0;
    let mut wanted = std::collections::HashSet::new();
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let Some(name) = path.file_name().map(ToOwned::to_owned) else {
            continue;
        };
        let bytes = std::fs::read(&path)?;
        let target = to.join(&name);
        if std::fs::read(&target).ok().as_deref() != Some(&bytes[..]) {
            std::fs::write(&target, &bytes)
                .with_context(|| format!("cannot write {}", target.display()))?;
            changed += 1;
        }
        wanted.insert(name);
    }
    for entry in std::fs::read_dir(to)? {
        let entry = entry?;
        if !wanted.contains(&entry.file_name()) {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Runs `wasm-opt -Oz` on `wasm` when one is installed (npm's `binaryen`, which the test
/// command installs under `tests/ui`, or one on PATH); the UI works without it, only bigger.
pub(crate) fn optimize_wasm(wasm: &Path) {
    let Some(tool) = wasm_opt() else {
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
pub(crate) fn dist() -> Result<PathBuf> {
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

pub(crate) const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Adds the WASM target through rustup when it is missing.
pub(crate) fn ensure_wasm_target() -> Result<()> {
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
