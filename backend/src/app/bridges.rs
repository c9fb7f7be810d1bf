//! The app's bridge settings: kept in `<data>/bridges.json` (replaced atomically), checked
//! before they are saved, and applied to every Tor client at once (the app's is
//! reconfigured in place). `--bridge` on the command line wins over them for one run.

use std::path::{Path, PathBuf};

use veilshare_shared::{BridgeSettings, BridgeTransport, BridgesView};

use crate::transport::{
    bridges::{BridgeError, Bridges, on_path},
    tor::{SharedSetup, TorSetup},
};

pub use crate::transport::bridges::watch_layer;

/// File name of the settings in the data directory.
const FILE: &str = "bridges.json";

/// Why the settings cannot be read or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeSettingsError {
    /// The settings are not usable.
    #[error(transparent)]
    Invalid(#[from] BridgeError),
    /// `--bridge` was given: the saved settings would not apply until a restart without it.
    #[error(
        "this run uses the bridges given with --bridge; restart veilshare without --bridge to use saved bridge settings"
    )]
    CommandLine,
    /// The file cannot be read or written.
    #[error("{0}")]
    Storage(String),
}

/// The saved settings (bridges off when none were saved).
pub fn load(data_dir: &Path) -> Result<BridgeSettings, BridgeSettingsError> {
    let path = data_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            BridgeSettingsError::Storage(format!(
                "{} is not readable ({e}); delete it and set the bridges again",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BridgeSettings::default()),
        Err(e) => Err(BridgeSettingsError::Storage(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// How Tor is set up for a command: `--bridge` lines if given, else the saved settings of
/// `data_dir`, plus an Arti TOML.
pub fn setup(
    data_dir: &Path,
    config_file: Option<PathBuf>,
    lines: &[String],
    program: Option<&str>,
) -> anyhow::Result<TorSetup> {
    use anyhow::Context as _;
    let from_command_line = !lines.is_empty();
    let bridges = if from_command_line {
        Bridges::from_lines(lines, program).context("--bridge")?
    } else {
        let saved = load(data_dir)?;
        Bridges::check(&saved).with_context(|| {
            format!(
                "the saved bridge settings ({}) are not usable; change them in the app, or give --bridge",
                data_dir.join(FILE).display()
            )
        })?
    };
    Ok(TorSetup {
        config_file,
        bridges,
        bridges_from_command_line: from_command_line,
    })
}

/// The saved settings, the programs found, and what Tor uses now.
pub fn view(data_dir: &Path, setup: &SharedSetup) -> Result<BridgesView, BridgeSettingsError> {
    Ok(BridgesView {
        settings: load(data_dir)?,
        found: BridgeTransport::ALL
            .into_iter()
            .map(|t| (t, on_path(t).map(|p| p.display().to_string())))
            .collect(),
        in_use: setup.get().bridges_in_use(),
    })
}

/// Checks `settings`, saves them and applies them to every Tor client.
pub fn save(
    data_dir: &Path,
    setup: &SharedSetup,
    mut settings: BridgeSettings,
) -> Result<BridgesView, BridgeSettingsError> {
    let current = setup.get();
    if current.bridges_from_command_line {
        return Err(BridgeSettingsError::CommandLine);
    }
    settings.program = settings
        .program
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty());
    let bridges = Bridges::check(&settings)?;
    let path = data_dir.join(FILE);
    let bytes = serde_json::to_vec_pretty(&settings)
        .map_err(|e| BridgeSettingsError::Storage(e.to_string()))?;
    crate::app::replace_file(&path, &bytes).map_err(|e| {
        BridgeSettingsError::Storage(format!("cannot save {}: {e}", path.display()))
    })?;
    if bridges != current.bridges {
        setup.set(TorSetup { bridges, ..current });
    }
    view(data_dir, setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "obfs4 203.0.113.5:443 20720BBE438A379389E6D01F36EB1D8FFBD33A5A cert=tgJAem2pvStSKtcfUT6OG/dnOIJRSPosB9LOvxNCBB/NPjb+Fko+VyEijIRPXu7DA9zgWw iat-mode=0";

    fn obfs4(enabled: bool) -> BridgeSettings {
        BridgeSettings {
            enabled,
            transport: BridgeTransport::Obfs4,
            lines: vec![LINE.into()],
            program: Some(" /bin/sh ".into()),
        }
    }

    #[test]
    fn saved_settings_apply_at_once_and_survive_a_restart() {
        let dir = tempfile::tempdir().expect("test value");
        let shared = SharedSetup::new(TorSetup::default());
        let view = save(dir.path(), &shared, obfs4(true)).expect("test value");
        assert_eq!(view.settings.program.as_deref(), Some("/bin/sh"));
        assert!(shared.get().bridges.is_some());
        assert_eq!(
            view.in_use.expect("test value").bridges[0].bridge,
            "obfs4 203.0.113.5:443"
        );
        let restarted = setup(dir.path(), None, &[], None).expect("test value");
        assert_eq!(restarted.bridges, shared.get().bridges);
        assert!(!restarted.bridges_from_command_line);
        save(dir.path(), &shared, obfs4(false)).expect("test value");
        assert!(shared.get().bridges.is_none());
    }

    #[test]
    fn bad_settings_are_refused_and_the_saved_ones_kept() {
        let dir = tempfile::tempdir().expect("test value");
        let shared = SharedSetup::new(TorSetup::default());
        save(dir.path(), &shared, obfs4(true)).expect("test value");
        let mut bad = obfs4(true);
        bad.lines.push("obfs4 not-a-bridge".into());
        let error = save(dir.path(), &shared, bad).expect_err("an error");
        assert!(error.to_string().starts_with("bridge line 2:"), "{error}");
        assert_eq!(
            load(dir.path()).expect("test value"),
            BridgeSettings {
                program: Some("/bin/sh".into()),
                ..obfs4(true)
            }
        );
        assert!(shared.get().bridges.is_some());
    }

    #[test]
    fn command_line_bridges_win_and_the_settings_say_so() {
        let dir = tempfile::tempdir().expect("test value");
        let given =
            setup(dir.path(), None, &[LINE.to_owned()], Some("/bin/sh")).expect("test value");
        assert!(given.bridges_from_command_line);
        let shared = SharedSetup::new(given);
        assert!(matches!(
            save(dir.path(), &shared, obfs4(false)),
            Err(BridgeSettingsError::CommandLine)
        ));
        let error = setup(
            dir.path(),
            None,
            &["obfs4 1.2.3.4:1".to_owned()],
            Some("/bin/sh"),
        )
        .expect_err("an error");
        assert!(
            format!("{error:#}").contains("--bridge: bridge line 1"),
            "{error:#}"
        );
    }
}
