//! Bridges: how the app reaches Tor where Tor is blocked. The settings the owner gives
//! (`GET`/`PUT /api/settings/bridges`, `--bridge` on the command line) and what became of
//! each bridge, shown with Tor's state.

use serde::{Deserialize, Serialize};

/// Which pluggable transport the bridges use. One kind at a time, as Tor Browser asks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BridgeTransport {
    /// obfs4: the bridge's traffic looks like random bytes. Lines from
    /// bridges.torproject.org or the Tor Browser.
    #[default]
    Obfs4,
    /// Snowflake: through volunteers' browsers over WebRTC.
    Snowflake,
    /// Plain bridges: unlisted relays, no disguise.
    Plain,
}

impl BridgeTransport {
    /// Every kind, in the order the settings offer them.
    pub const ALL: [Self; 3] = [Self::Obfs4, Self::Snowflake, Self::Plain];

    /// Tor's name of the transport, as the first word of a bridge line; none for plain bridges.
    pub fn protocol(self) -> Option<&'static str> {
        match self {
            Self::Obfs4 => Some("obfs4"),
            Self::Snowflake => Some("snowflake"),
            Self::Plain => None,
        }
    }

    /// Programs that provide the transport, looked for on `PATH` in this order.
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            Self::Obfs4 => &["lyrebird", "obfs4proxy"],
            Self::Snowflake => &["snowflake-client"],
            Self::Plain => &[],
        }
    }

    /// The name people know it by.
    pub fn title(self) -> &'static str {
        match self {
            Self::Obfs4 => "obfs4",
            Self::Snowflake => "Snowflake",
            Self::Plain => "plain bridges",
        }
    }
}

/// `GET`/`PUT /api/settings/bridges`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct BridgeSettings {
    /// Whether Tor goes through the bridges below (and only through them).
    pub enabled: bool,
    /// The transport every line uses.
    pub transport: BridgeTransport,
    /// Bridge lines, one per bridge (`obfs4 IP:PORT FINGERPRINT cert=… iat-mode=0`; a leading
    /// `Bridge`, as in a torrc, is accepted).
    pub lines: Vec<String>,
    /// The transport's program; empty: the first of [`BridgeTransport::programs`] on `PATH`.
    #[serde(default)]
    pub program: Option<String>,
}

/// What became of one bridge.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BridgeReach {
    /// Not tried yet, or being tried.
    Trying,
    /// Tor reached it and fetched its descriptor.
    Reached,
    /// Tor could not use it.
    Failed {
        /// What went wrong, in Tor's words.
        message: String,
    },
}

/// One configured bridge and its state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BridgeState {
    /// Its transport and address (`obfs4 203.0.113.5:443`): enough to tell which line it is.
    pub bridge: String,
    /// What became of it.
    pub reach: BridgeReach,
}

/// The bridges Tor is using now (`None` in [`crate::Status`] when it uses none).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BridgesInUse {
    /// Their transport.
    pub transport: BridgeTransport,
    /// Each bridge, in the order of the lines.
    pub bridges: Vec<BridgeState>,
    /// The bridges came from `--bridge` on the command line (the saved settings wait).
    pub from_command_line: bool,
}

/// `GET /api/settings/bridges`: the saved settings, and where each transport's program is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BridgesView {
    /// The settings as saved.
    pub settings: BridgeSettings,
    /// Per transport (in [`BridgeTransport::ALL`] order), the program found on `PATH`.
    pub found: Vec<(BridgeTransport, Option<String>)>,
    /// What Tor uses now.
    pub in_use: Option<BridgesInUse>,
}

impl BridgeSettings {
    /// The lines of a text box: one per line, trimmed, blank lines and `#` comments left out.
    pub fn lines_from_text(text: &str) -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_becomes_trimmed_lines_without_blanks_or_comments() {
        let text = "  obfs4 1.2.3.4:443 AAAA cert=x iat-mode=0 \n\n# from the bot\nBridge obfs4 5.6.7.8:80 BBBB cert=y iat-mode=1\n";
        assert_eq!(
            BridgeSettings::lines_from_text(text),
            vec![
                "obfs4 1.2.3.4:443 AAAA cert=x iat-mode=0".to_owned(),
                "Bridge obfs4 5.6.7.8:80 BBBB cert=y iat-mode=1".to_owned(),
            ]
        );
    }

    #[test]
    fn settings_keep_their_shape_in_json() {
        let settings = BridgeSettings {
            enabled: true,
            transport: BridgeTransport::Snowflake,
            lines: vec!["snowflake 192.0.2.3:80 AAAA".into()],
            program: None,
        };
        let json = serde_json::to_value(&settings).expect("test value");
        assert_eq!(json["transport"], "snowflake");
        let back: BridgeSettings = serde_json::from_value(json).expect("test value");
        assert_eq!(back, settings);
    }
}
