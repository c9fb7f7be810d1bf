//! What the tests and benchmarks need on the machine, installed when missing (and said so):
//! Debian packages, the pinned `sendme`.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};

use crate::{cargo, exec, target_dir};

/// Installs Debian packages that provide `binaries` when any is missing.
pub(crate) fn ensure_debian_packages(packages: &[(&str, &str)]) -> Result<()> {
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
pub(crate) fn ensure_sendme() -> Result<PathBuf> {
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

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Where `binary` is on the PATH (or in /usr/sbin, where Debian puts daemons).
pub(crate) fn which(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}
