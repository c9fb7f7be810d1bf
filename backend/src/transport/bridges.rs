//! Bridges and pluggable transports: bridge lines checked with Arti's own parser, the
//! transport's program found on `PATH` or given by path, both turned into the Arti
//! configuration every Tor client of the process is built with; and what became of each
//! bridge, read from Arti's bridge-descriptor manager as it logs each fetch.
//!
//! Why the log: Arti 0.47 keeps its guards and bridge descriptors private; the places where it
//! says that a given bridge answered or failed are its events:
//! - `tor_guardmgr::guard`: `Could not connect to guard [<bridge>]. Retrying in …` and `We
//!   have found that guard [<bridge>] is usable.`, where a bridge is always shown redacted
//!   (`[127.x.x.x:9 via obfs4 $$20…]`: the port, the transport and the start of its
//!   fingerprint are kept), and
//! - `tor_dirmgr::bridgedesc` (debug): `download succeeded for "<line>"`, `download failed for
//!   "<line>": <error>`, with the line as Arti prints it back.
//!
//! [`watch_layer`] turns those events into [`outcomes`], which [`Bridges::states`] matches to
//! the configured bridges; the Tor e2e test of a wrong bridge line fails if a new Arti stops
//! reporting them so.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use arti_client::config::BridgeConfigBuilder;
use tokio::sync::watch;
use veilshare_shared::{BridgeReach, BridgeSettings, BridgeState, BridgeTransport};

/// At most this many bridge lines (Tor Browser hands out 2–3; 30 is already a list).
pub const MAX_BRIDGES: usize = 30;
/// A bridge line longer than this is not one (Snowflake's, the longest, are ~500 bytes).
const MAX_LINE: usize = 4096;

/// Why bridge settings cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BridgeError {
    /// Bridges are on without a line.
    #[error(
        "bridges are on, but no bridge line was given: paste at least one (from bridges.torproject.org, the Tor Browser, or whoever gave you bridges)"
    )]
    NoLines,
    /// Too many lines.
    #[error("{0} bridge lines is too many; keep at most {MAX_BRIDGES}")]
    TooMany(usize),
    /// A line is not a bridge line, or not of the chosen transport.
    #[error("bridge line {line}: {problem}")]
    Line {
        /// 1-based.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// The transport's program is missing.
    #[error("{0}")]
    Program(String),
}

/// Bridges checked and ready to configure Arti with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridges {
    transport: BridgeTransport,
    /// Each bridge as Arti prints it back (how its events name it).
    lines: Vec<String>,
    /// The transport's program (none for plain bridges).
    program: Option<PathBuf>,
}

impl Bridges {
    /// Checks `settings`: `None` when bridges are off.
    pub fn check(settings: &BridgeSettings) -> Result<Option<Self>, BridgeError> {
        if !settings.enabled {
            return Ok(None);
        }
        if settings.lines.is_empty() {
            return Err(BridgeError::NoLines);
        }
        if settings.lines.len() > MAX_BRIDGES {
            return Err(BridgeError::TooMany(settings.lines.len()));
        }
        let transport = settings.transport;
        let lines = settings
            .lines
            .iter()
            .enumerate()
            .map(|(index, line)| {
                normalize(line, transport).map_err(|problem| BridgeError::Line {
                    line: index + 1,
                    problem,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let program = match transport.protocol() {
            None => None,
            Some(_) => Some(find_program(transport, settings.program.as_deref())?),
        };
        Ok(Some(Self {
            transport,
            lines,
            program,
        }))
    }

    /// Bridges from the command line (`--bridge`, `--bridge-program`): the transport is the
    /// first line's.
    pub fn from_lines(
        lines: &[String],
        program: Option<&str>,
    ) -> Result<Option<Self>, BridgeError> {
        let Some(first) = lines.first() else {
            return Ok(None);
        };
        let word = strip_bridge_keyword(first)
            .split_whitespace()
            .next()
            .unwrap_or_default();
        let transport = BridgeTransport::ALL
            .into_iter()
            .find(|t| t.protocol() == Some(word))
            .unwrap_or(BridgeTransport::Plain);
        Self::check(&BridgeSettings {
            enabled: true,
            transport,
            lines: lines.to_vec(),
            program: program.map(str::to_owned),
        })
    }

    /// The transport.
    pub fn transport(&self) -> BridgeTransport {
        self.transport
    }

    /// The Arti configuration (TOML) that makes a client go through these bridges only.
    pub fn toml(&self) -> String {
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let mut toml = format!(
            "[bridges]\nenabled = true\nbridges = [{}]\n",
            self.lines
                .iter()
                .map(|l| quote(l))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let (Some(protocol), Some(program)) = (self.transport.protocol(), &self.program) {
            toml.push_str(&format!(
                "\n[[bridges.transports]]\nprotocols = [{}]\npath = {}\nrun_on_startup = false\n",
                quote(protocol),
                quote(&program.to_string_lossy())
            ));
        }
        toml
    }

    /// Each bridge and what became of it so far (Arti's latest word on it).
    pub fn states(&self) -> Vec<BridgeState> {
        let outcomes = outcomes().borrow();
        self.lines
            .iter()
            .map(|line| BridgeState {
                bridge: short_name(line),
                reach: outcomes
                    .iter()
                    .filter(|(seen, _)| seen.names(line))
                    .max_by_key(|(_, (order, _))| *order)
                    .map_or(BridgeReach::Trying, |(_, (_, reach))| reach.clone()),
            })
            .collect()
    }
}

/// A line without a leading `Bridge` (as torrc files and some bots write them).
fn strip_bridge_keyword(line: &str) -> &str {
    let line = line.trim();
    match line.split_once(char::is_whitespace) {
        Some((word, rest)) if word.eq_ignore_ascii_case("bridge") => rest.trim_start(),
        _ => line,
    }
}

/// Parses one line with Arti's parser; returns it as Arti prints it back.
fn normalize(line: &str, transport: BridgeTransport) -> Result<String, String> {
    if line.len() > MAX_LINE {
        return Err(format!(
            "longer than {MAX_LINE} bytes; it is not a bridge line"
        ));
    }
    let line = strip_bridge_keyword(line);
    let builder: BridgeConfigBuilder = line
        .parse()
        .map_err(|e| format!("not a bridge line ({e})"))?;
    let printed = builder
        .build()
        .map_err(|e| format!("not a usable bridge ({e})"))?
        .to_string();
    let first = printed.split_whitespace().next().unwrap_or_default();
    let protocol = (!first.contains(':')).then_some(first);
    if protocol != transport.protocol() {
        return Err(match protocol {
            Some(other) => format!(
                "it is a {other} bridge, but {} is chosen; choose {other} or paste {} lines",
                transport.title(),
                transport.title()
            ),
            None => format!(
                "it is a plain bridge (no transport), but {} is chosen",
                transport.title()
            ),
        });
    }
    Ok(printed)
}

/// `obfs4 203.0.113.5:443`, or the address alone for a plain bridge.
fn short_name(printed: &str) -> String {
    let words: Vec<&str> = printed.split_whitespace().collect();
    match words.first() {
        Some(first) if !first.contains(':') => {
            words.iter().take(2).copied().collect::<Vec<_>>().join(" ")
        }
        Some(first) => (*first).to_owned(),
        None => String::new(),
    }
}

/// The transport's program: `given` (which must be an executable file), or the first of its
/// known programs on `PATH`.
fn find_program(transport: BridgeTransport, given: Option<&str>) -> Result<PathBuf, BridgeError> {
    if let Some(given) = given.map(str::trim).filter(|g| !g.is_empty()) {
        let path = Path::new(given);
        if !path.is_absolute() {
            return Err(BridgeError::Program(format!(
                "the {} program must be given as a full path (like /usr/bin/{}), not {given:?}",
                transport.title(),
                transport.programs().last().copied().unwrap_or("program")
            )));
        }
        if !is_executable(path) {
            return Err(BridgeError::Program(format!(
                "{given} is not an executable file; give the path of the {} program",
                transport.title()
            )));
        }
        return Ok(path.to_owned());
    }
    on_path(transport).ok_or_else(|| {
        BridgeError::Program(format!(
            "{} bridges need {}, which is not installed (on Debian and Ubuntu: apt install {}); or give the program's path",
            transport.title(),
            transport.programs().join(" or "),
            match transport {
                BridgeTransport::Snowflake => "snowflake-client",
                _ => "obfs4proxy",
            }
        ))
    })
}

/// The first of the transport's programs on `PATH`.
pub fn on_path(transport: BridgeTransport) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    transport.programs().iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// How one of Arti's events named a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seen {
    /// In full, as Arti prints a bridge line.
    Line(String),
    /// Redacted, as its guard manager shows bridges: the port, the transport (none for a plain
    /// bridge) and the first hex digits of the RSA fingerprint.
    Redacted {
        /// The port.
        port: u16,
        /// The transport.
        transport: Option<String>,
        /// The start of the fingerprint, lowercase.
        id_start: String,
    },
}

impl Seen {
    /// Whether this names the bridge Arti prints as `line`.
    fn names(&self, line: &str) -> bool {
        match self {
            Self::Line(seen) => seen == line,
            Self::Redacted {
                port,
                transport,
                id_start,
            } => {
                let words: Vec<&str> = line.split_whitespace().collect();
                let (own_transport, address, id) = match words.first() {
                    Some(first) if first.contains(':') => (None, *first, words.get(1)),
                    Some(first) => (
                        Some(*first),
                        words.get(1).copied().unwrap_or(""),
                        words.get(2),
                    ),
                    None => return false,
                };
                let own_port = address
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok());
                let id = id.map(|id| id.trim_start_matches('$').to_ascii_lowercase());
                own_port == Some(*port)
                    && own_transport == transport.as_deref()
                    && !id_start.is_empty()
                    && id.is_some_and(|id| id.starts_with(id_start.as_str()))
            }
        }
    }

    /// Reads a redacted guard (`[127.x.x.x:9 via obfs4 $$20…]`, `[1.x.x.x:443 $$ab…]`).
    fn redacted(guard: &str) -> Option<Self> {
        let inner = guard.strip_prefix('[')?.strip_suffix(']')?;
        let words: Vec<&str> = inner.split_whitespace().collect();
        let port = words.first()?.rsplit_once(':')?.1.parse().ok()?;
        let transport = words
            .iter()
            .position(|w| *w == "via")
            .and_then(|at| words.get(at + 1))
            .map(|t| (*t).to_owned());
        let id_start = words
            .iter()
            .rev()
            .find(|w| w.starts_with('$'))?
            .trim_start_matches('$')
            .trim_end_matches('…')
            .to_ascii_lowercase();
        Some(Self::Redacted {
            port,
            transport,
            id_start,
        })
    }
}

/// What Arti reported of each bridge it named, in order of report.
pub type Outcomes = HashMap<Seen, (u64, BridgeReach)>;

/// What Arti reported of the bridges, from every Tor client of the process.
pub fn outcomes() -> &'static watch::Sender<Outcomes> {
    static OUTCOMES: OnceLock<watch::Sender<Outcomes>> = OnceLock::new();
    OUTCOMES.get_or_init(|| watch::channel(HashMap::new()).0)
}

/// Reads one of Arti's guard or bridge-descriptor events (its formatted message).
fn outcome_of(message: &str) -> Option<(Seen, BridgeReach)> {
    if let Some(rest) = message.strip_prefix("Could not connect to guard ") {
        let guard = rest.split_once("]. ")?.0;
        let seen = Seen::redacted(&format!("{guard}]"))?;
        return Some((
            seen,
            BridgeReach::Failed {
                message: "could not connect to it (Tor will retry)".into(),
            },
        ));
    }
    if let Some(rest) = message.strip_prefix("We have found that guard ") {
        let guard = rest.strip_suffix(" is usable.")?;
        return Some((Seen::redacted(guard)?, BridgeReach::Reached));
    }
    if let Some(rest) = message.strip_prefix("download succeeded for \"") {
        let line = rest.strip_suffix('"')?;
        return Some((Seen::Line(line.to_owned()), BridgeReach::Reached));
    }
    let rest = message.strip_prefix("download failed for \"")?;
    let (line, error) = rest.split_once("\": ")?;
    Some((
        Seen::Line(line.to_owned()),
        BridgeReach::Failed {
            message: error.to_owned(),
        },
    ))
}

/// Records one of Arti's events.
fn record(message: &str) {
    let Some((seen, reach)) = outcome_of(message) else {
        return;
    };
    outcomes().send_if_modified(|map| {
        let order = map.values().map(|(order, _)| *order).max().unwrap_or(0) + 1;
        let changed = map.get(&seen).is_none_or(|(_, old)| *old != reach);
        map.insert(seen, (order, reach));
        changed
    });
}

/// A tracing layer that feeds [`outcomes`] from Arti's bridge-descriptor events; it sees
/// nothing else (its own filter), whatever the log level of the rest.
pub fn watch_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer;
    BridgeEvents.with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target("tor_dirmgr::bridgedesc", tracing::Level::DEBUG)
            .with_target("tor_guardmgr::guard", tracing::Level::INFO),
    )
}

struct BridgeEvents;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for BridgeEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(Option<String>);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "message" {
                    self.0 = Some(value.to_owned());
                }
            }
        }
        let mut message = Message(None);
        event.record(&mut message);
        if let Some(message) = message.0 {
            record(&message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBFS4: &str = "obfs4 203.0.113.5:443 20720BBE438A379389E6D01F36EB1D8FFBD33A5A cert=tgJAem2pvStSKtcfUT6OG/dnOIJRSPosB9LOvxNCBB/NPjb+Fko+VyEijIRPXu7DA9zgWw iat-mode=0";

    fn settings(transport: BridgeTransport, lines: &[&str]) -> BridgeSettings {
        BridgeSettings {
            enabled: true,
            transport,
            lines: lines.iter().map(|l| (*l).to_owned()).collect(),
            program: Some("/bin/sh".into()),
        }
    }

    #[test]
    fn an_obfs4_line_becomes_arti_configuration() {
        let bridges = Bridges::check(&settings(
            BridgeTransport::Obfs4,
            &[&format!("Bridge {OBFS4}")],
        ))
        .expect("test value")
        .expect("test value");
        let toml = bridges.toml();
        // As Arti prints it back: the fingerprint marked and in lowercase.
        let printed = OBFS4.replace(
            "20720BBE438A379389E6D01F36EB1D8FFBD33A5A",
            "$20720bbe438a379389e6d01f36eb1d8ffbd33a5a",
        );
        assert!(
            toml.contains(&format!("bridges = [\"{printed}\"]")),
            "{toml}"
        );
        assert!(
            toml.contains("protocols = [\"obfs4\"]\npath = \"/bin/sh\""),
            "{toml}"
        );
        let config: toml::Value = toml::from_str(&toml).expect("test value");
        assert_eq!(config["bridges"]["enabled"].as_bool(), Some(true));
        assert_eq!(bridges.states()[0].bridge, "obfs4 203.0.113.5:443");
    }

    #[test]
    fn off_is_none_and_bad_lines_say_which() {
        let mut off = settings(BridgeTransport::Obfs4, &[OBFS4]);
        off.enabled = false;
        assert_eq!(Bridges::check(&off), Ok(None));
        assert_eq!(
            Bridges::check(&settings(BridgeTransport::Obfs4, &[])),
            Err(BridgeError::NoLines)
        );
        let error = Bridges::check(&settings(
            BridgeTransport::Obfs4,
            &[OBFS4, "obfs4 nonsense"],
        ))
        .expect_err("an error");
        assert!(
            matches!(error, BridgeError::Line { line: 2, .. }),
            "{error}"
        );
        let error =
            Bridges::check(&settings(BridgeTransport::Snowflake, &[OBFS4])).expect_err("an error");
        assert!(
            error
                .to_string()
                .contains("it is a obfs4 bridge, but Snowflake is chosen"),
            "{error}"
        );
        let plain = "203.0.113.9:9001 20720BBE438A379389E6D01F36EB1D8FFBD33A5A";
        let error =
            Bridges::check(&settings(BridgeTransport::Obfs4, &[plain])).expect_err("an error");
        assert!(error.to_string().contains("plain bridge"), "{error}");
        let bridges = Bridges::check(&settings(BridgeTransport::Plain, &[plain]))
            .expect("test value")
            .expect("test value");
        assert!(!bridges.toml().contains("transports"));
        assert_eq!(bridges.states()[0].bridge, "203.0.113.9:9001");
    }

    #[test]
    fn the_program_must_exist_and_be_given_in_full() {
        let mut missing = settings(BridgeTransport::Obfs4, &[OBFS4]);
        missing.program = Some("/nonexistent/obfs4proxy".into());
        assert!(matches!(
            Bridges::check(&missing),
            Err(BridgeError::Program(_))
        ));
        missing.program = Some("obfs4proxy".into());
        let error = Bridges::check(&missing).expect_err("an error");
        assert!(error.to_string().contains("full path"), "{error}");
    }

    #[test]
    fn the_transport_of_command_line_bridges_is_the_first_lines() {
        let bridges = Bridges::from_lines(&[OBFS4.to_owned()], Some("/bin/sh"))
            .expect("test value")
            .expect("test value");
        assert_eq!(bridges.transport(), BridgeTransport::Obfs4);
        assert_eq!(Bridges::from_lines(&[], None), Ok(None));
    }

    #[test]
    fn arti_events_mark_bridges_reached_or_failed() {
        let bridges = Bridges::check(&settings(BridgeTransport::Obfs4, &[OBFS4]))
            .expect("test value")
            .expect("test value");
        let printed = bridges.lines[0].clone();
        record(&format!(
            "download failed for \"{printed}\": connection refused"
        ));
        assert_eq!(
            bridges.states()[0].reach,
            BridgeReach::Failed {
                message: "connection refused".into()
            }
        );
        record(&format!("download succeeded for \"{printed}\""));
        assert_eq!(bridges.states()[0].reach, BridgeReach::Reached);
        record("something else entirely");
        assert_eq!(bridges.states()[0].reach, BridgeReach::Reached);
    }

    #[test]
    fn redacted_guards_are_matched_by_port_transport_and_fingerprint_start() {
        let line = OBFS4.replace("203.0.113.5:443", "198.51.100.7:9443");
        let bridges = Bridges::check(&settings(BridgeTransport::Obfs4, &[&line]))
            .expect("test value")
            .expect("test value");
        // Another bridge on the same port with another fingerprint: not ours.
        record("Could not connect to guard [198.x.x.x:9443 via obfs4 $$ff…]. Retrying in 30s.");
        assert_eq!(bridges.states()[0].reach, BridgeReach::Trying);
        record(
            "Could not connect to guard [198.x.x.x:9443 via obfs4 $$20…]. Retrying in 29s 999ms.",
        );
        assert!(matches!(
            bridges.states()[0].reach,
            BridgeReach::Failed { .. }
        ));
        record("We have found that guard [198.x.x.x:9443 via obfs4 $$20…] is usable.");
        assert_eq!(bridges.states()[0].reach, BridgeReach::Reached);
    }
}
