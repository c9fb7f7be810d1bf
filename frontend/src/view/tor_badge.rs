//! Tor's state, in plain words, at the top of the page.

use veilshare_shared::TorStatus;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct TorBadgeProps {
    pub tor: Option<TorStatus>,
}

/// Tor's state in plain words.
#[component]
pub fn TorBadge(props: &TorBadgeProps) -> Html {
    let (class, text) = match &props.tor {
        None => ("badge", "Tor: …".to_owned()),
        Some(TorStatus::Disabled) => (
            "badge off",
            "Tor is off (--no-tor): only local links".into(),
        ),
        Some(TorStatus::Bootstrapping { progress, message }) => (
            "badge busy",
            format!("Connecting to Tor: {:.0}% ({message})", progress * 100.0),
        ),
        Some(TorStatus::Ready) => ("badge ok", "Connected to Tor".into()),
        Some(TorStatus::Failed { message }) => ("badge bad", format!("Tor problem: {message}")),
    };
    html! { <p class={class} role="status" aria-live="polite">{ text }</p> }
}
