//! The app's pieces: the Tor badge, the new-share form with its drop zone, and a share's card.

use std::{cell::RefCell, rc::Rc};

use veilshare_shared::{ShareState, ShareView, TorStatus, form};
use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::api;

pub use veilshare_shared::human_size;

/// `2 d 3 h`, `3 h 05 min`, `4 min 09 s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m:02} min")
    } else if m > 0 {
        format!("{m} min {s:02} s")
    } else {
        format!("{s} s")
    }
}

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

#[derive(Properties, PartialEq)]
pub struct NewShareProps {
    pub on_created: Callback<ShareView>,
    pub tor_on: bool,
}

/// Where an upload is.
#[derive(Clone, PartialEq)]
enum Phase {
    Idle,
    /// The browser is sending: bytes sent, total.
    Sending(f64, f64),
    /// All sent; veilshare is storing and publishing.
    Storing,
    Failed(String),
}

const EXPIRY_PRESETS: [(&str, &str); 6] = [
    ("600", "10 minutes"),
    ("3600", "1 hour"),
    ("86400", "1 day"),
    ("604800", "7 days"),
    ("", "never"),
    ("custom", "custom…"),
];

fn input_value(event: &Event) -> String {
    event
        .target()
        .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        .map(|i| i.value())
        .or_else(|| {
            event
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlSelectElement>().ok())
                .map(|s| s.value())
        })
        .unwrap_or_default()
}

/// Keeps a text field's state in step with it.
fn set(state: &UseStateHandle<String>) -> Callback<Event> {
    let state = state.clone();
    Callback::from(move |event: Event| state.set(input_value(&event)))
}

/// Flips a checkbox's state.
fn toggle(state: &UseStateHandle<bool>) -> Callback<Event> {
    let state = state.clone();
    Callback::from(move |_: Event| state.set(!*state))
}

/// The "downloads allowed" field and the expiry presets (with "custom…" when `custom`), their
/// ids prefixed with `prefix`.
fn downloads_and_expiry(
    prefix: &str,
    max_downloads: &UseStateHandle<String>,
    expiry: &UseStateHandle<String>,
    custom: bool,
) -> Html {
    let (max_id, expiry_id) = (format!("{prefix}max"), format!("{prefix}expiry"));
    html! {
        <>
            <label for={max_id.clone()}>{ "Downloads allowed" }
                <input id={max_id} type="number" min="1" placeholder="unlimited"
                       value={(**max_downloads).clone()} onchange={set(max_downloads)} />
            </label>
            <label for={expiry_id.clone()}>{ "Expires after" }
                <select id={expiry_id} onchange={set(expiry)}>
                    { for EXPIRY_PRESETS.iter().filter(|(v, _)| custom || *v != "custom").map(|(value, text)| html! {
                        <option value={*value} selected={**expiry == *value}>{ *text }</option>
                    }) }
                </select>
            </label>
        </>
    }
}

fn files_of(list: Option<web_sys::FileList>) -> Vec<web_sys::File> {
    let Some(list) = list else { return Vec::new() };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

/// The drop zone and the policy of the next share.
#[component]
pub fn NewShare(props: &NewShareProps) -> Html {
    let files = use_state(Vec::<web_sys::File>::new);
    let max_downloads = use_state(|| "1".to_owned());
    let expiry = use_state(|| "86400".to_owned());
    let custom_amount = use_state(|| "2".to_owned());
    let custom_unit = use_state(|| "3600".to_owned());
    let label = use_state(String::new);
    let direct = use_state(|| false);
    let restricted = use_state(|| false);
    let phase = use_state(|| Phase::Idle);
    let dragging = use_state(|| false);
    let upload: Rc<RefCell<Option<api::Upload>>> = use_mut_ref(|| None);
    let input = use_node_ref();

    let add_files = {
        let files = files.clone();
        let phase = phase.clone();
        move |more: Vec<web_sys::File>| {
            let mut all = (*files).clone();
            for file in more {
                all.retain(|f| f.name() != file.name());
                all.push(file);
            }
            files.set(all);
            if matches!(*phase, Phase::Failed(_)) {
                phase.set(Phase::Idle);
            }
        }
    };
    let on_pick = {
        let add_files = add_files.clone();
        Callback::from(move |event: Event| {
            if let Some(input) = event
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            {
                add_files(files_of(input.files()));
                input.set_value("");
            }
        })
    };
    let on_drop = {
        let add_files = add_files.clone();
        let dragging = dragging.clone();
        Callback::from(move |event: DragEvent| {
            event.prevent_default();
            dragging.set(false);
            add_files(files_of(event.data_transfer().and_then(|d| d.files())));
        })
    };
    let on_drag_over = {
        let dragging = dragging.clone();
        Callback::from(move |event: DragEvent| {
            event.prevent_default();
            dragging.set(true);
        })
    };
    let on_drag_leave = {
        let dragging = dragging.clone();
        Callback::from(move |_: DragEvent| dragging.set(false))
    };
    let open_picker = {
        let input = input.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(input) = input.cast::<web_sys::HtmlInputElement>() {
                input.click();
            }
        })
    };
    let clear = {
        let files = files.clone();
        Callback::from(move |_: MouseEvent| files.set(Vec::new()))
    };

    let expires_in: Result<Option<u64>, String> = match expiry.as_str() {
        "" => Ok(None),
        "custom" => match custom_amount.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(
                n.saturating_mul(custom_unit.parse::<u64>().unwrap_or(3600)),
            )),
            _ => Err("the custom expiry must be a whole number above 0".into()),
        },
        preset => Ok(preset.parse().ok()),
    };

    let submit = {
        let files = files.clone();
        let phase = phase.clone();
        let upload = upload.clone();
        let on_created = props.on_created.clone();
        let (max_downloads, label_done, direct, restricted) = (
            max_downloads.clone(),
            label.clone(),
            direct.clone(),
            restricted.clone(),
        );
        let expires_in = expires_in.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if files.is_empty() {
                phase.set(Phase::Failed(
                    "choose or drop at least one file first".into(),
                ));
                return;
            }
            let expires_in = match &expires_in {
                Ok(value) => *value,
                Err(problem) => {
                    phase.set(Phase::Failed(problem.clone()));
                    return;
                }
            };
            let Ok(data) = web_sys::FormData::new() else {
                phase.set(Phase::Failed("the browser cannot build the upload".into()));
                return;
            };
            let mut fields = vec![
                (form::MAX_DOWNLOADS, max_downloads.trim().to_owned()),
                (form::LABEL, label_done.trim().to_owned()),
                (form::DIRECT, direct.to_string()),
                (form::RESTRICTED, restricted.to_string()),
            ];
            if let Some(secs) = expires_in {
                fields.push((form::EXPIRES_IN_SECS, secs.to_string()));
            }
            for (name, value) in fields {
                let _ = data.append_with_str(name, &value);
            }
            for file in files.iter() {
                let _ = data.append_with_blob_and_filename("files", file, &file.name());
            }
            let upload_id = format!("ui-{}", js_sys::Date::now() as u64);
            let sending = phase.clone();
            let finished = phase.clone();
            let files_done = files.clone();
            let label_done = label_done.clone();
            let on_created = on_created.clone();
            let slot = upload.clone();
            let started = api::upload(
                &upload_id,
                &data,
                move |sent, total| {
                    if sent >= total {
                        sending.set(Phase::Storing);
                    } else {
                        sending.set(Phase::Sending(sent, total));
                    }
                },
                move |result| {
                    slot.borrow_mut().take();
                    match result {
                        Ok(share) => {
                            files_done.set(Vec::new());
                            label_done.set(String::new());
                            finished.set(Phase::Idle);
                            on_created.emit(share);
                        }
                        Err(problem) => finished.set(Phase::Failed(problem)),
                    }
                },
            );
            match started {
                Ok(handle) => {
                    phase.set(Phase::Sending(0.0, 1.0));
                    *upload.borrow_mut() = Some(handle);
                }
                Err(problem) => phase.set(Phase::Failed(problem)),
            }
        })
    };
    let cancel = {
        let upload = upload.clone();
        let phase = phase.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(handle) = upload.borrow_mut().take() {
                handle.abort();
            }
            phase.set(Phase::Failed("upload cancelled; nothing was kept".into()));
        })
    };

    let busy = matches!(*phase, Phase::Sending(..) | Phase::Storing);
    let total: u64 = files.iter().map(|f| f.size() as u64).sum();

    html! {
        <section class="new" aria-labelledby="new-title">
            <h2 id="new-title">{ "New share" }</h2>
            <form onsubmit={submit}>
                <div class={classes!("drop", dragging.then_some("over"))}
                     ondrop={on_drop} ondragover={on_drag_over} ondragleave={on_drag_leave}>
                    <p>{ "Drop files here, or " }
                        <button type="button" class="link" onclick={open_picker} disabled={busy}>{ "choose files" }</button>
                    </p>
                    <input ref={input} id="files" type="file" multiple=true class="hidden"
                           aria-label="Files to share" onchange={on_pick} disabled={busy} />
                    if !files.is_empty() {
                        <ul class="picked" aria-label="Files in this share">
                            { for files.iter().map(|f| html! {
                                <li>{ format!("{} — {}", f.name(), human_size(f.size() as u64)) }</li>
                            }) }
                        </ul>
                        <p class="quiet">{ format!("{} file(s), {}", files.len(), human_size(total)) }
                            { " " }<button type="button" class="link" onclick={clear} disabled={busy}>{ "clear" }</button></p>
                    }
                </div>
                <div class="policy">
                    { downloads_and_expiry("", &max_downloads, &expiry, true) }
                    if *expiry == "custom" {
                        <label for="custom">{ "Custom expiry" }
                            <span class="row">
                                <input id="custom" type="number" min="1" value={(*custom_amount).clone()} onchange={set(&custom_amount)} />
                                <select aria-label="Unit" onchange={set(&custom_unit)}>
                                    <option value="60" selected={*custom_unit == "60"}>{ "minutes" }</option>
                                    <option value="3600" selected={*custom_unit == "3600"}>{ "hours" }</option>
                                    <option value="86400" selected={*custom_unit == "86400"}>{ "days" }</option>
                                </select>
                            </span>
                        </label>
                    }
                    <label for="label">{ "Label (shown to recipients)" }
                        <input id="label" type="text" maxlength="200" value={(*label).clone()} onchange={set(&label)} />
                    </label>
                    if props.tor_on {
                        <label class="check" for="restricted">
                            <input id="restricted" type="checkbox" checked={*restricted} onchange={toggle(&restricted)} />
                            { "Require a key: the recipient needs the link and a key (Tor Browser asks for it)" }
                        </label>
                    }
                    <label class="check" for="direct">
                        <input id="direct" type="checkbox" checked={*direct} onchange={toggle(&direct)} />
                        { "Also share directly (faster, " }<strong>{ "reveals your IP address" }</strong>{ " to the recipient)" }
                    </label>
                </div>
                <div class="actions">
                    <button type="submit" class="primary" disabled={busy}>{ "Share" }</button>
                    if busy {
                        <button type="button" onclick={cancel}>{ "Cancel" }</button>
                    }
                </div>
                <div aria-live="polite">
                    { match &*phase {
                        Phase::Idle => html! {},
                        Phase::Sending(sent, total) => html! {
                            <p class="progress">
                                <label for="upload-progress">{ format!("Uploading: {} of {}", human_size(*sent as u64), human_size(*total as u64)) }</label>
                                <progress id="upload-progress" max={total.to_string()} value={sent.to_string()} />
                            </p>
                        },
                        Phase::Storing => html! { <p class="progress">{ "Uploaded; storing and hashing…" }</p> },
                        Phase::Failed(problem) => html! { <p class="problem" role="alert">{ problem }</p> },
                    } }
                </div>
            </form>
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct MirrorFormProps {
    pub on_created: Callback<ShareView>,
}

/// What the mirror form is doing.
#[derive(Clone, PartialEq)]
enum Mirroring {
    Idle,
    Fetching,
    Failed(String),
}

/// Mirror someone's share: fetch it by ticket or link and publish it from here too, with this
/// node's own policy (the content hash stays the same).
#[component]
pub fn MirrorForm(props: &MirrorFormProps) -> Html {
    let source = use_state(String::new);
    let max_downloads = use_state(String::new);
    let expiry = use_state(|| "604800".to_owned());
    let direct = use_state(|| false);
    let phase = use_state(|| Mirroring::Idle);
    let submit = {
        let (source, max_downloads, expiry, direct, phase) = (
            source.clone(),
            max_downloads.clone(),
            expiry.clone(),
            direct.clone(),
            phase.clone(),
        );
        let on_created = props.on_created.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let text = source.trim().to_owned();
            if text.is_empty() {
                phase.set(Mirroring::Failed("paste a ticket or a link first".into()));
                return;
            }
            let mut fields = veilshare_shared::CreateShareFields::default();
            let checked = fields
                .set(form::MAX_DOWNLOADS, &max_downloads)
                .and_then(|()| fields.set(form::EXPIRES_IN_SECS, &expiry));
            if let Err(problem) = checked {
                phase.set(Mirroring::Failed(problem));
                return;
            }
            fields.direct = *direct;
            let request = veilshare_shared::CreateMirror {
                source: text,
                source_key: None,
                timeout_secs: None,
                fields,
            };
            phase.set(Mirroring::Fetching);
            let (phase, source, on_created) = (phase.clone(), source.clone(), on_created.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::mirror(&request).await {
                    Ok(share) => {
                        source.set(String::new());
                        phase.set(Mirroring::Idle);
                        on_created.emit(share);
                    }
                    Err(problem) => phase.set(Mirroring::Failed(problem)),
                }
            });
        })
    };
    let busy = *phase == Mirroring::Fetching;
    html! {
        <section class="new mirror" aria-labelledby="mirror-title">
            <h2 id="mirror-title">{ "Mirror a share" }</h2>
            <p class="quiet">{ "Keep someone's share available from here too: paste its ticket or link. \
                Recipients can check it is the same content by its hash." }</p>
            <form onsubmit={submit}>
                <div class="policy">
                    <label for="mirror-source">{ "Ticket or link" }
                        <input id="mirror-source" type="text" placeholder="blob… or http://….onion/"
                               value={(*source).clone()} onchange={set(&source)} disabled={busy} />
                    </label>
                    { downloads_and_expiry("mirror-", &max_downloads, &expiry, false) }
                    <label class="check" for="mirror-direct">
                        <input id="mirror-direct" type="checkbox" checked={*direct} onchange={toggle(&direct)} />
                        { "Also share the mirror directly (" }<strong>{ "reveals your IP address" }</strong>{ ")" }
                    </label>
                </div>
                <div class="actions">
                    <button type="submit" disabled={busy}>{ "Mirror" }</button>
                </div>
                <div aria-live="polite">
                    { match &*phase {
                        Mirroring::Idle => html! {},
                        Mirroring::Fetching => html! { <p class="progress">{ "Fetching the share; it appears below when it is stored…" }</p> },
                        Mirroring::Failed(problem) => html! { <p class="problem" role="alert">{ problem }</p> },
                    } }
                </div>
            </form>
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct ShareCardProps {
    pub share: ShareView,
    pub now: u64,
    pub on_changed: Callback<ShareView>,
}

/// The QR code of `text` as SVG markup.
fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(180, 180)
            .quiet_zone(true)
            .build(),
    )
}

fn copy_button(text: &str, what: &str, copied: &UseStateHandle<Option<String>>) -> Html {
    let value = text.to_owned();
    let label = what.to_owned();
    let copied_state = copied.clone();
    let onclick = Callback::from(move |_: MouseEvent| {
        if let Some(window) = web_sys::window() {
            let _ = window.navigator().clipboard().write_text(&value);
            copied_state.set(Some(label.clone()));
        }
    });
    html! { <button type="button" class="copy" onclick={onclick} aria-label={format!("Copy the {what}")}>{ "Copy" }</button> }
}

/// One share: state, counters, countdown, links, QR code, revoke.
#[component]
pub fn ShareCard(props: &ShareCardProps) -> Html {
    let share = &props.share;
    let confirming = use_state(|| false);
    let problem = use_state(|| None::<String>);
    let copied = use_state(|| None::<String>);

    let ask = {
        let confirming = confirming.clone();
        Callback::from(move |_: MouseEvent| confirming.set(true))
    };
    let cancel = {
        let confirming = confirming.clone();
        Callback::from(move |_: MouseEvent| confirming.set(false))
    };
    let revoke = {
        let id = share.id.clone();
        let confirming = confirming.clone();
        let problem = problem.clone();
        let on_changed = props.on_changed.clone();
        Callback::from(move |_: MouseEvent| {
            let id = id.clone();
            let confirming = confirming.clone();
            let problem = problem.clone();
            let on_changed = on_changed.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match api::revoke(&id).await {
                    Ok(share) => {
                        problem.set(None);
                        on_changed.emit(share);
                    }
                    Err(message) => problem.set(Some(format!("could not revoke: {message}"))),
                }
                confirming.set(false);
            });
        })
    };

    let ended = share.state.is_ended();
    let title = share
        .label
        .clone()
        .unwrap_or_else(|| match share.files.as_slice() {
            [one] => one.name.clone(),
            files => format!("{} files", files.len()),
        });
    let state_class = match share.state {
        ShareState::Publishing => "state busy",
        ShareState::Live => "state ok",
        _ => "state off",
    };
    let ended_note = match share.state {
        ShareState::Exhausted => Some("ended: its download limit was reached"),
        ShareState::Expired => Some("ended: it expired"),
        ShareState::Revoked => Some("ended: revoked"),
        _ => None,
    };
    let downloads = match share.policy.max_downloads {
        Some(max) => format!(
            "{} of {max} downloads, {} in progress",
            share.downloads_completed, share.downloads_in_flight
        ),
        None => format!(
            "{} downloads (no limit), {} in progress",
            share.downloads_completed, share.downloads_in_flight
        ),
    };
    let expiry = match share.policy.expires_at {
        Some(at) if !ended && at > props.now => {
            format!("expires in {}", human_duration(at - props.now))
        }
        Some(_) if !ended => "expiring now".to_owned(),
        None if !ended => "no expiry".to_owned(),
        _ => String::new(),
    };
    let preferred = share.links.preferred().map(str::to_owned);
    let link_row = |name: &str, value: &Option<String>| -> Html {
        match value {
            Some(link) => html! {
                <div class="link-row">
                    <span class="link-name">{ name.to_owned() }</span>
                    <code class="link-value">{ link.clone() }</code>
                    { copy_button(link, &format!("{name} link"), &copied) }
                </div>
            },
            None => html! {},
        }
    };

    html! {
        <li class={classes!("card", ended.then_some("ended"))} aria-label={title.clone()}>
            <div class="card-head">
                <h3>{ title }</h3>
                <span class={state_class}>{ share.state.label() }</span>
            </div>
            <p class="quiet">
                { format!("{} file(s), {}", share.files.len(), human_size(share.total_size)) }
                { " · " }<span class="downloads">{ downloads }</span>
                if !expiry.is_empty() { { " · " }<span class="expiry">{ expiry }</span> }
            </p>
            if let Some(note) = ended_note {
                <p class="quiet">{ format!("This share {note}. Its links no longer work and its data was deleted.") }</p>
            }
            if let Some(problem) = &share.problem {
                <p class="problem">{ problem.clone() }</p>
            }
            if !ended {
                <div class="links">
                    { link_row("Onion", &share.links.onion) }
                    { link_row("Local", &share.links.local) }
                    { link_row("Ticket", &share.links.ticket) }
                    if let Some(key) = &share.client_key {
                        <div class="link-row">
                            <span class="link-name">{ "Key" }</span>
                            <code class="link-value">{ key.clone() }</code>
                            { copy_button(key, "key", &copied) }
                        </div>
                    }
                    if share.state == ShareState::Publishing {
                        <p class="quiet">{ "Publishing the onion service; the link works once this says live." }</p>
                    }
                    if let Some(what) = &*copied {
                        <p class="quiet" role="status">{ format!("Copied the {what}.") }</p>
                    }
                </div>
                if let Some(svg) = preferred.as_deref().or(share.links.ticket.as_deref()).and_then(qr_svg) {
                    <figure class="qr">
                        { Html::from_html_unchecked(AttrValue::from(svg)) }
                        <figcaption>{ if share.links.onion.is_some() {
                            "Scan with a phone that has Tor Browser"
                        } else if share.links.local.is_some() {
                            "The local link: works only on this network"
                        } else {
                            "The direct ticket, for `veilshare get` (reveals your IP address)"
                        } }</figcaption>
                    </figure>
                }
                <div class="actions">
                    if *confirming {
                        <span role="alert">{ "Revoke? The link stops working for good and the data is deleted." }</span>
                        <button type="button" class="danger" onclick={revoke}>{ "Yes, revoke" }</button>
                        <button type="button" onclick={cancel}>{ "Keep it" }</button>
                    } else {
                        <button type="button" class="danger" onclick={ask}>{ "Revoke…" }</button>
                    }
                </div>
            }
            if let Some(problem) = &*problem {
                <p class="problem" role="alert">{ problem.clone() }</p>
            }
            if preferred.is_none() && share.links.ticket.is_none() && !ended && share.state == ShareState::Live {
                <p class="quiet">{ "No link yet: start veilshare with Tor, or with --public-listen." }</p>
            }
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_show_the_two_largest_units() {
        assert_eq!(human_duration(9), "9 s");
        assert_eq!(human_duration(249), "4 min 09 s");
        assert_eq!(human_duration(3 * 3600 + 5 * 60 + 7), "3 h 05 min");
        assert_eq!(human_duration(2 * 86_400 + 3 * 3600), "2 d 3 h");
    }

    #[test]
    fn the_qr_code_is_an_svg_of_the_link() {
        let svg = qr_svg("http://abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcd.onion/")
            .expect("svg");
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}

/// Component tests in a real browser (`cargo xtask test` runs them in headless Chromium).
#[cfg(all(test, target_arch = "wasm32"))]
mod browser_tests {
    use veilshare_shared::{ContentHash, FileEntry, Policy, ShareId, ShareLinks};
    use wasm_bindgen::JsCast;
    use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

    use super::*;

    wasm_bindgen_test_configure!(run_in_browser);

    fn root() -> web_sys::Element {
        let document = web_sys::window()
            .and_then(|w| w.document())
            .expect("document");
        let root = document.create_element("div").expect("div");
        document
            .body()
            .expect("body")
            .append_child(&root)
            .expect("append");
        root
    }

    /// Lets Yew render what was scheduled.
    async fn settle() {
        gloo_timers::future::TimeoutFuture::new(10).await;
    }

    /// A card for a share in `state`, rendered at time `now`.
    async fn card(state: ShareState, now: u64) -> web_sys::Element {
        let root = root();
        let props = ShareCardProps {
            share: share(state),
            now,
            on_changed: Callback::noop(),
        };
        yew::Renderer::<ShareCard>::with_root_and_props(root.clone(), props).render();
        settle().await;
        root
    }

    fn share(state: ShareState) -> ShareView {
        ShareView {
            id: ShareId::parse("abcdefghijklmnopqrstuvwxyz").expect("id"),
            label: Some("Report".into()),
            files: vec![FileEntry {
                name: "report.pdf".into(),
                size: 1536,
                hash: ContentHash::parse(&"a".repeat(64)).expect("hash"),
            }],
            total_size: 1536,
            content_hash: ContentHash::parse(&"b".repeat(64)).expect("hash"),
            policy: Policy {
                max_downloads: Some(3),
                expires_at: Some(100_000),
            },
            created_at: 1,
            downloads_completed: 1,
            downloads_in_flight: 1,
            downloads_remaining: Some(2),
            state,
            ended_at: None,
            direct: false,
            problem: None,
            links: ShareLinks {
                onion: Some(format!("http://{}.onion/", "a".repeat(56))),
                local: None,
                ticket: None,
            },
            client_key: Some("K".repeat(52)),
        }
    }

    #[wasm_bindgen_test]
    async fn a_live_card_shows_counts_countdown_links_key_and_qr() {
        let root = card(ShareState::Live, 100_000 - 3 * 3600 - 5 * 60).await;
        let text = root.text_content().unwrap_or_default();
        assert!(text.contains("1 of 3 downloads, 1 in progress"), "{text}");
        assert!(text.contains("expires in 3 h 05 min"), "{text}");
        assert!(text.contains(".onion/"), "{text}");
        assert!(text.contains(&"K".repeat(52)), "{text}");
        assert!(root.query_selector(".qr svg").ok().flatten().is_some());
        assert_eq!(
            root.query_selector_all("button.copy")
                .map(|l| l.length())
                .unwrap_or(0),
            2,
            "a copy button for the link and for the key"
        );
    }

    #[wasm_bindgen_test]
    async fn revoking_asks_for_confirmation_first() {
        let root = card(ShareState::Live, 0).await;
        let ask = root
            .query_selector("button.danger")
            .ok()
            .flatten()
            .and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok())
            .expect("revoke button");
        assert_eq!(ask.text_content().as_deref(), Some("Revoke…"));
        ask.click();
        settle().await;
        let text = root.text_content().unwrap_or_default();
        assert!(
            text.contains("Yes, revoke") && text.contains("Keep it"),
            "{text}"
        );
    }

    #[wasm_bindgen_test]
    async fn an_ended_card_says_why_and_offers_no_link() {
        let root = card(ShareState::Exhausted, 0).await;
        let text = root.text_content().unwrap_or_default();
        assert!(text.contains("download limit reached"), "{text}");
        assert!(!text.contains(".onion/"), "{text}");
        assert!(
            root.query_selector("button.danger")
                .ok()
                .flatten()
                .is_none()
        );
    }

    #[wasm_bindgen_test]
    async fn tor_progress_is_shown_in_plain_words() {
        let root = root();
        let props = TorBadgeProps {
            tor: Some(TorStatus::Bootstrapping {
                progress: 0.42,
                message: "fetching directory".into(),
            }),
        };
        yew::Renderer::<TorBadge>::with_root_and_props(root.clone(), props).render();
        settle().await;
        let text = root.text_content().unwrap_or_default();
        assert_eq!(text, "Connecting to Tor: 42% (fetching directory)");
    }

    #[wasm_bindgen_test]
    async fn a_direct_card_offers_its_ticket_and_the_mirror_form_wants_a_source() {
        let root = root();
        let mut direct = share(ShareState::Live);
        direct.direct = true;
        direct.links.ticket = Some("blobexampleticket".into());
        let props = ShareCardProps {
            share: direct,
            now: 0,
            on_changed: Callback::noop(),
        };
        yew::Renderer::<ShareCard>::with_root_and_props(root.clone(), props).render();
        settle().await;
        let text = root.text_content().unwrap_or_default();
        assert!(text.contains("blobexampleticket"), "{text}");

        let root = self::root();
        let props = MirrorFormProps {
            on_created: Callback::noop(),
        };
        yew::Renderer::<MirrorForm>::with_root_and_props(root.clone(), props).render();
        settle().await;
        for id in [
            "mirror-source",
            "mirror-max",
            "mirror-expiry",
            "mirror-direct",
        ] {
            let label = root
                .query_selector(&format!("label[for={id}]"))
                .ok()
                .flatten();
            assert!(label.is_some(), "{id} has no label");
        }
        let submit = root
            .query_selector("button[type=submit]")
            .ok()
            .flatten()
            .and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok())
            .expect("submit");
        submit.click();
        settle().await;
        let text = root.text_content().unwrap_or_default();
        assert!(text.contains("paste a ticket or a link first"), "{text}");
    }
}
