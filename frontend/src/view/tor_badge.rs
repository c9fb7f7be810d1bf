//! Tor's state, in plain words, at the top of the page: whether it goes through bridges, and
//! which of them failed.

use veilshare_shared::{BridgeReach, BridgesInUse, TorStatus};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct TorBadgeProps {
    pub tor: Option<TorStatus>,
    #[prop_or_default]
    pub bridges: Option<BridgesInUse>,
}

/// Tor's state in plain words.
pub fn tor_text(tor: Option<&TorStatus>, bridges: Option<&BridgesInUse>) -> (&'static str, String) {
    let through = bridges
        .map(|b| format!(" through {} bridges", b.transport.title()))
        .unwrap_or_default();
    let (class, mut text) = match tor {
        None => ("badge", "Tor: …".to_owned()),
        Some(TorStatus::Disabled) => (
            "badge off",
            "Tor is off (--no-tor): only local links".into(),
        ),
        Some(TorStatus::Bootstrapping { progress, message }) => (
            "badge busy",
            format!(
                "Connecting to Tor{through}: {:.0}% ({message})",
                progress * 100.0
            ),
        ),
        Some(TorStatus::Ready) => ("badge ok", format!("Connected to Tor{through}")),
        Some(TorStatus::Failed { message }) => ("badge bad", format!("Tor problem: {message}")),
    };
    if let Some(bridges) = bridges {
        let failed: Vec<&str> = bridges
            .bridges
            .iter()
            .filter(|b| matches!(b.reach, BridgeReach::Failed { .. }))
            .map(|b| b.bridge.as_str())
            .collect();
        if !failed.is_empty() {
            text.push_str(&format!(
                " · {} of {} bridges failed: {}",
                failed.len(),
                bridges.bridges.len(),
                failed.join(", ")
            ));
        }
    }
    (class, text)
}

/// Tor's state in plain words.
#[component]
pub fn TorBadge(props: &TorBadgeProps) -> Html {
    let (class, text) = tor_text(props.tor.as_ref(), props.bridges.as_ref());
    html! { <p class={class} role="status" aria-live="polite">{ text }</p> }
}

#[cfg(test)]
mod tests {
    use veilshare_shared::{BridgeState, BridgeTransport};

    use super::*;

    fn bridges(reaches: &[BridgeReach]) -> BridgesInUse {
        BridgesInUse {
            transport: BridgeTransport::Obfs4,
            bridges: reaches
                .iter()
                .enumerate()
                .map(|(i, reach)| BridgeState {
                    bridge: format!("obfs4 203.0.113.{i}:443"),
                    reach: reach.clone(),
                })
                .collect(),
            from_command_line: false,
        }
    }

    #[test]
    fn the_badge_says_bridges_are_used_and_which_failed() {
        let failed = BridgeReach::Failed {
            message: "could not connect".into(),
        };
        let (class, text) = tor_text(
            Some(&TorStatus::Ready),
            Some(&bridges(&[BridgeReach::Reached, failed.clone()])),
        );
        assert_eq!(class, "badge ok");
        assert_eq!(
            text,
            "Connected to Tor through obfs4 bridges · 1 of 2 bridges failed: obfs4 203.0.113.1:443"
        );
        let (class, text) = tor_text(
            Some(&TorStatus::Bootstrapping {
                progress: 0.05,
                message: "fetching a consensus".into(),
            }),
            Some(&bridges(&[failed])),
        );
        assert_eq!(class, "badge busy");
        assert!(
            text.starts_with("Connecting to Tor through obfs4 bridges: 5%"),
            "{text}"
        );
        assert!(
            text.ends_with("1 of 1 bridges failed: obfs4 203.0.113.0:443"),
            "{text}"
        );
        let (_, text) = tor_text(Some(&TorStatus::Ready), None);
        assert_eq!(text, "Connected to Tor");
    }
}
