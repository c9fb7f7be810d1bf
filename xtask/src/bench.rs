//! `bench`: the side-by-side benchmarks, each suite with its references installed.

use anyhow::Result;

use crate::{
    cargo, exec,
    setup::{ensure_debian_packages, ensure_sendme},
    target_dir, testnet,
};

/// `bench [foundation|receive|tor|direct] [criterion args…]`: every suite when none is named.
pub(crate) fn bench(args: &[String]) -> Result<()> {
    let (suites, rest): (Vec<&str>, &[String]) = match args.first().map(String::as_str) {
        Some(name @ ("foundation" | "receive" | "tor" | "direct")) => (vec![name], &args[1..]),
        _ => (vec!["foundation", "receive", "tor", "direct"], args),
    };
    exec(cargo().args(["build", "--release", "-p", "veilshare"]))?;
    let binary = target_dir().join("release/veilshare");
    for suite in suites {
        let mut command = cargo();
        command
            .args(["bench", "-p", "veilshare-e2e", "--bench", suite])
            .env("VEILSHARE_BIN", &binary);
        if suite == "foundation" || suite == "receive" {
            ensure_debian_packages(&[("nginx", "nginx"), ("b3sum", "b3sum"), ("curl", "curl")])?;
        } else if suite == "direct" {
            ensure_debian_packages(&[("time", "time")])?;
            command.env("VEILSHARE_SENDME", ensure_sendme()?);
        } else {
            ensure_debian_packages(&[
                ("onionshare-cli", "onionshare-cli"),
                ("curl", "curl"),
                ("time", "time"),
            ])?;
            testnet::up()?;
            command
                .env("VEILSHARE_TESTNET", testnet::arti_toml())
                .env("VEILSHARE_TESTNET_CLIENT_TORRC", testnet::client_torrc());
        }
        exec(command.args(["--"]).args(rest))?;
    }
    Ok(())
}
