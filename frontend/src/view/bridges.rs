//! Bridges: the settings panel (paste bridge lines, choose obfs4, Snowflake or plain, the
//! transport's program) and how each bridge in use is doing.

use veilshare_shared::{BridgeReach, BridgeSettings, BridgeTransport, BridgesInUse, BridgesView};
use yew::prelude::*;

use crate::{api, view::policy::text_of};

#[derive(Properties, PartialEq)]
pub struct BridgePanelProps {
    /// The bridges in use now (from the status and its events).
    pub in_use: Option<BridgesInUse>,
}

/// One bridge's state in plain words.
pub fn reach_text(reach: &BridgeReach) -> String {
    match reach {
        BridgeReach::Trying => "trying…".into(),
        BridgeReach::Reached => "connected".into(),
        BridgeReach::Failed { message } => format!("failed: {message}"),
    }
}

/// The settings panel.
#[component]
pub fn BridgePanel(props: &BridgePanelProps) -> Html {
    let loaded = use_state(|| None::<BridgesView>);
    let enabled = use_state(|| false);
    let transport = use_state(BridgeTransport::default);
    let lines = use_state(String::new);
    let program = use_state(String::new);
    let problem = use_state(|| None::<String>);
    let saved = use_state(|| false);
    {
        let (loaded, enabled, transport, lines, program, problem) = (
            loaded.clone(),
            enabled.clone(),
            transport.clone(),
            lines.clone(),
            program.clone(),
            problem.clone(),
        );
        use_effect_with((), move |()| {
            wasm_bindgen_futures::spawn_local(async move {
                match api::bridge_settings().await {
                    Ok(view) => {
                        enabled.set(view.settings.enabled);
                        transport.set(view.settings.transport);
                        lines.set(view.settings.lines.join("\n"));
                        program.set(view.settings.program.clone().unwrap_or_default());
                        loaded.set(Some(view));
                    }
                    Err(error) => problem.set(Some(error)),
                }
            });
        });
    }
    let submit = {
        let (enabled, transport, lines, program) = (
            enabled.clone(),
            transport.clone(),
            lines.clone(),
            program.clone(),
        );
        let (loaded, problem, saved) = (loaded.clone(), problem.clone(), saved.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let settings = BridgeSettings {
                enabled: *enabled,
                transport: *transport,
                lines: BridgeSettings::lines_from_text(&lines),
                program: Some((*program).trim().to_owned()).filter(|p| !p.is_empty()),
            };
            let (loaded, problem, saved) = (loaded.clone(), problem.clone(), saved.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::set_bridge_settings(&settings).await {
                    Ok(view) => {
                        problem.set(None);
                        saved.set(true);
                        loaded.set(Some(view));
                    }
                    Err(error) => {
                        saved.set(false);
                        problem.set(Some(error));
                    }
                }
            });
        })
    };
    let toggle = {
        let (enabled, saved) = (enabled.clone(), saved.clone());
        Callback::from(move |_: Event| {
            enabled.set(!*enabled);
            saved.set(false);
        })
    };
    let set_lines = {
        let (lines, saved) = (lines.clone(), saved.clone());
        Callback::from(move |event: InputEvent| {
            lines.set(text_of(&event));
            saved.set(false);
        })
    };
    let set_program = {
        let (program, saved) = (program.clone(), saved.clone());
        Callback::from(move |event: InputEvent| {
            program.set(text_of(&event));
            saved.set(false);
        })
    };
    let choice = |kind: BridgeTransport| {
        let chosen = *transport == kind;
        let (transport, saved) = (transport.clone(), saved.clone());
        let onchange = Callback::from(move |_: Event| {
            transport.set(kind);
            saved.set(false);
        });
        let id = format!("bridge-kind-{}", kind.protocol().unwrap_or("plain"));
        html! {
            <label class="inline" for={id.clone()}>
                <input type="radio" name="bridge-kind" id={id} checked={chosen}
                       disabled={!*enabled} onchange={onchange} />
                { kind.title() }
            </label>
        }
    };
    let found = loaded
        .as_ref()
        .and_then(|view| view.found.iter().find(|(t, _)| *t == *transport))
        .and_then(|(_, path)| path.clone());
    let program_hint = match (*transport, &found) {
        (BridgeTransport::Plain, _) => None,
        (kind, Some(path)) => Some(format!(
            "{} program (found: {path}; leave empty to use it)",
            kind.title()
        )),
        (kind, None) => Some(format!(
            "{} program: not found on this computer. Install {} or give its full path",
            kind.title(),
            kind.programs().join(" or ")
        )),
    };
    let from_command_line = props.in_use.as_ref().is_some_and(|b| b.from_command_line);
    html! {
        <section class="new bridges" aria-labelledby="bridges-title">
            <h2 id="bridges-title">{ "Bridges" }</h2>
            <p class="quiet">{ "Where Tor is blocked, bridges get you in: unlisted entry points, disguised by a pluggable transport. \
                Get bridge lines from bridges.torproject.org, by mail to bridges@torproject.org, from the Tor Browser, or from someone you trust. \
                While bridges are on, this app reaches Tor only through them." }</p>
            if from_command_line {
                <p class="quiet" role="note">{ "This run uses the bridges given with --bridge; saved settings apply when veilshare starts without it." }</p>
            }
            <form onsubmit={submit}>
                <label class="check" for="bridges-on">
                    <input type="checkbox" id="bridges-on" checked={*enabled} onchange={toggle} />
                    { "Use bridges" }
                </label>
                <fieldset class="kinds" disabled={!*enabled}>
                    <legend>{ "Type" }</legend>
                    { for BridgeTransport::ALL.into_iter().map(choice) }
                </fieldset>
                <div class="policy">
                    <label class="wide" for="bridge-lines">{ "Bridge lines (one per line)" }
                        <textarea id="bridge-lines" rows="4" spellcheck="false" disabled={!*enabled}
                                  placeholder="obfs4 203.0.113.5:443 4C1F… cert=… iat-mode=0"
                                  value={(*lines).clone()} oninput={set_lines} />
                    </label>
                    if let Some(hint) = program_hint {
                        <label class="wide" for="bridge-program">{ hint }
                            <input id="bridge-program" type="text" spellcheck="false" disabled={!*enabled}
                                   placeholder={found.clone().unwrap_or_else(|| "/usr/bin/…".into())}
                                   value={(*program).clone()} oninput={set_program} />
                        </label>
                    }
                </div>
                <div class="actions">
                    <button type="submit" class="primary" disabled={from_command_line}>{ "Save and connect" }</button>
                    if *saved {
                        <span class="quiet" role="status">{ "Saved; Tor reconnects with these settings." }</span>
                    }
                </div>
                if let Some(problem) = &*problem {
                    <p class="problem" role="alert">{ problem.clone() }</p>
                }
            </form>
            if let Some(in_use) = &props.in_use {
                <h3>{ format!("In use: {} bridges", in_use.transport.title()) }</h3>
                <ul class="bridge-states">
                    { for in_use.bridges.iter().map(|b| html! {
                        <li class={classes!(matches!(b.reach, BridgeReach::Failed { .. }).then_some("problem"))}>
                            <code>{ b.bridge.clone() }</code>{ format!(" — {}", reach_text(&b.reach)) }
                        </li>
                    }) }
                </ul>
            }
        </section>
    }
}
