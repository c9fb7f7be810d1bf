//! One share's card: state, counters, countdown, links with copy buttons, QR code, revoke; for a
//! drop box, what it received, each upload with its own Delete.

use veilshare_shared::{
    DropBoxView, ReceivedItem, RecipientState, RecipientView, ShareId, ShareState, ShareView,
};
use yew::prelude::*;

use crate::{
    api,
    view::{human_duration, human_size},
};

#[derive(Properties, PartialEq)]
pub struct ShareCardProps {
    pub share: ShareView,
    pub now: u64,
    pub on_changed: Callback<ShareView>,
}

/// The QR code of `text` as SVG markup.
pub(crate) fn qr_svg(text: &str) -> Option<String> {
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

/// A named value (a link, a key) with its Copy button; `what` names it in the button's label and
/// in "Copied the …".
fn value_row(name: &str, value: &str, what: &str, copied: &UseStateHandle<Option<String>>) -> Html {
    html! {
        <div class="link-row">
            <span class="link-name">{ name.to_owned() }</span>
            <code class="link-value">{ value.to_owned() }</code>
            { copy_button(value, what, copied) }
        </div>
    }
}

/// What a drop box received, in one line: uploads, bytes, and the limits.
fn received(dropbox: &DropBoxView) -> String {
    let limits = &dropbox.limits;
    let uploads = match limits.max_uploads {
        Some(max) => format!("{} of {max} uploads", dropbox.uploads),
        None if dropbox.uploads == 1 => "1 upload".to_owned(),
        None => format!("{} uploads", dropbox.uploads),
    };
    let bytes = match limits.max_bytes {
        Some(max) => format!(
            "{} of {} received",
            human_size(dropbox.bytes),
            human_size(max)
        ),
        None => format!("{} received", human_size(dropbox.bytes)),
    };
    match limits.max_file {
        Some(max) => format!("{uploads}, {bytes}, files up to {}", human_size(max)),
        None => format!("{uploads}, {bytes}"),
    }
}

/// The uploads a drop box received, each file a link to save it (through the local API), each
/// upload with its own Delete.
fn items(id: &ShareId, dropbox: &DropBoxView, on_changed: &Callback<ShareView>) -> Html {
    if dropbox.items.is_empty() {
        return html! { <p class="quiet">{ "Nothing received yet." }</p> };
    }
    html! {
        <ul class="items">
            { for dropbox.items.iter().map(|item| html! {
                <Item key={item.id.clone()} share={id.clone()} item={item.clone()} on_changed={on_changed.clone()} />
            }) }
        </ul>
    }
}

/// The handlers of an action done in two steps: ask (show the confirmation), cancel (hide it).
pub(super) fn confirm_steps(
    confirming: &UseStateHandle<bool>,
) -> (Callback<MouseEvent>, Callback<MouseEvent>) {
    let (yes, no) = (confirming.clone(), confirming.clone());
    (
        Callback::from(move |_: MouseEvent| yes.set(true)),
        Callback::from(move |_: MouseEvent| no.set(false)),
    )
}

#[derive(Properties, PartialEq)]
struct ItemProps {
    share: ShareId,
    item: ReceivedItem,
    on_changed: Callback<ShareView>,
}

/// One upload: when it came, its files (links to save them), its message, and Delete (asked
/// twice: the files are gone for good).
#[component]
fn Item(props: &ItemProps) -> Html {
    let confirming = use_state(|| false);
    let problem = use_state(|| None::<String>);
    let item = &props.item;
    let id = &props.share;
    let (ask, cancel) = confirm_steps(&confirming);
    let delete = {
        let (id, item_id) = (id.clone(), item.id.clone());
        let (confirming, problem) = (confirming.clone(), problem.clone());
        let on_changed = props.on_changed.clone();
        Callback::from(move |_: MouseEvent| {
            let (id, item_id) = (id.clone(), item_id.clone());
            let (confirming, problem) = (confirming.clone(), problem.clone());
            let on_changed = on_changed.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match api::delete_item(&id, &item_id).await {
                    Ok(share) => on_changed.emit(share),
                    Err(message) => {
                        problem.set(Some(format!("could not delete: {message}")));
                        confirming.set(false);
                    }
                }
            });
        })
    };
    let received = format!("Received {}", minute_utc(item.received_at));
    html! {
        <li class="item" aria-label={received.clone()}>
            <span class="quiet">{ received }</span>
            <ul>
                { for item.files.iter().map(|file| {
                    let href = format!(
                        "/api/shares/{id}/items/{}/files/{}",
                        js_sys::encode_uri_component(&item.id),
                        js_sys::encode_uri_component(&file.name)
                    );
                    html! {
                        <li>
                            <a href={href} download={file.name.clone()}>{ file.name.clone() }</a>
                            { format!(" ({})", human_size(file.size)) }
                        </li>
                    }
                }) }
            </ul>
            if item.encrypted {
                <p class="quiet">{ format!(
                    "Encrypted; sent as {}",
                    item.sent
                        .iter()
                        .map(|f| format!("{} ({}, BLAKE3 {})", f.name, human_size(f.size), f.hash.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ) }</p>
            }
            if let Some(message) = &item.message {
                <blockquote class="message">{ message.clone() }</blockquote>
            }
            { for item.metadata.iter().map(|report| html! {
                <p class="metadata warn">{ format!(
                    "{} contains {}: it may identify whoever sent it. Remove it before publishing the file.",
                    report.name,
                    report.found_text()
                ) }</p>
            }) }
            <div class="actions">
                if *confirming {
                    <span role="alert">{ "Delete this upload? Its files and message are removed from this computer for good." }</span>
                    <button type="button" class="danger" onclick={delete}>{ "Yes, delete" }</button>
                    <button type="button" onclick={cancel}>{ "Keep it" }</button>
                } else {
                    <button type="button" class="danger" onclick={ask}>{ "Delete…" }</button>
                }
            </div>
            if let Some(problem) = &*problem {
                <p class="problem" role="alert">{ problem.clone() }</p>
            }
        </li>
    }
}

#[derive(Properties, PartialEq)]
struct RecipientsProps {
    share: ShareId,
    recipients: Vec<RecipientView>,
    /// Whether the share ended (no more adding or revoking).
    ended: bool,
}

/// A share's named recipients: each one's link and key (copy, QR code) and Revoke (asked
/// twice), and a field to add one more.
#[component]
fn Recipients(props: &RecipientsProps) -> Html {
    let name = use_state(String::new);
    let problem = use_state(|| None::<String>);
    let oninput = {
        let name = name.clone();
        Callback::from(move |event: InputEvent| name.set(super::policy::text_of(&event)))
    };
    let add = {
        let (name, problem, id) = (name.clone(), problem.clone(), props.share.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let (name, problem, id) = (name.clone(), problem.clone(), id.clone());
            if let Err(message) = veilshare_shared::recipients::check_name(&name) {
                problem.set(Some(message));
                return;
            }
            wasm_bindgen_futures::spawn_local(async move {
                match api::add_recipient(&id, &name).await {
                    Ok(_) => {
                        problem.set(None);
                        name.set(String::new());
                    }
                    Err(message) => problem.set(Some(format!("could not add: {message}"))),
                }
            });
        })
    };
    html! {
        <section class="recipients" aria-label="Recipients">
            <h4>{ "Recipients" }</h4>
            <p class="quiet">{ "Each has a link and a key of their own. Revoking one stops theirs for good; the others keep working." }</p>
            <ul>
                { for props.recipients.iter().map(|recipient| html! {
                    <Recipient key={recipient.name.clone()} share={props.share.clone()}
                               recipient={recipient.clone()} ended={props.ended} />
                }) }
            </ul>
            if !props.ended {
                <form class="row add-recipient" onsubmit={add}>
                    <input type="text" aria-label="New recipient's name" placeholder="name"
                           maxlength="40" value={(*name).clone()} {oninput} />
                    <button type="submit">{ "Add recipient" }</button>
                </form>
            }
            if let Some(problem) = &*problem {
                <p class="problem" role="alert">{ problem.clone() }</p>
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct RecipientProps {
    share: ShareId,
    recipient: RecipientView,
    ended: bool,
}

/// One recipient: state, link and key with copy buttons, QR code on demand, Revoke.
#[component]
fn Recipient(props: &RecipientProps) -> Html {
    let confirming = use_state(|| false);
    let show_qr = use_state(|| false);
    let copied = use_state(|| None::<String>);
    let problem = use_state(|| None::<String>);
    let recipient = &props.recipient;
    let (ask, cancel) = confirm_steps(&confirming);
    let revoke = {
        let (id, name) = (props.share.clone(), recipient.name.clone());
        let (confirming, problem) = (confirming.clone(), problem.clone());
        Callback::from(move |_: MouseEvent| {
            let (id, name) = (id.clone(), name.clone());
            let (confirming, problem) = (confirming.clone(), problem.clone());
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(message) = api::revoke_recipient(&id, &name).await {
                    problem.set(Some(format!("could not revoke: {message}")));
                }
                confirming.set(false);
            });
        })
    };
    let toggle_qr = {
        let show_qr = show_qr.clone();
        Callback::from(move |_: MouseEvent| show_qr.set(!*show_qr))
    };
    let state = match recipient.state {
        RecipientState::Publishing => html! { <span class="state busy">{ "publishing" }</span> },
        RecipientState::Live => html! { <span class="state ok">{ "live" }</span> },
        RecipientState::Revoked => html! { <span class="state off">{ "revoked" }</span> },
    };
    let active = recipient.state != RecipientState::Revoked && !props.ended;
    let shown = recipient
        .link
        .clone()
        .zip(recipient.client_key.clone())
        .filter(|_| active);
    html! {
        <li class="recipient" aria-label={recipient.name.clone()}>
            <div class="card-head">
                <strong>{ recipient.name.clone() }</strong>
                { state }
            </div>
            if let Some((link, key)) = shown {
                { value_row("Link", &link, &format!("link for {}", recipient.name), &copied) }
                { value_row("Key", &key, &format!("key for {}", recipient.name), &copied) }
                if *show_qr {
                    if let Some(svg) = qr_svg(&link) {
                        <figure class="qr">
                            { Html::from_html_unchecked(AttrValue::from(svg)) }
                            <figcaption>{ format!("{}'s link, for Tor Browser on a phone (it asks for the key)", recipient.name) }</figcaption>
                        </figure>
                    }
                }
            }
            if recipient.state == RecipientState::Revoked {
                <p class="quiet">{ "Revoked: their link and key no longer reach this share." }</p>
            }
            if let Some(what) = &*copied {
                <p class="quiet" role="status">{ format!("Copied the {what}.") }</p>
            }
            if active {
                <div class="actions">
                    if recipient.link.is_some() {
                        <button type="button" class="link" onclick={toggle_qr}>
                            { if *show_qr { "Hide QR code" } else { "QR code" } }
                        </button>
                    }
                    if *confirming {
                        <span role="alert">{ format!("Revoke {}? Their link and key stop working for good; the others keep theirs.", recipient.name) }</span>
                        <button type="button" class="danger" onclick={revoke}>{ "Yes, revoke" }</button>
                        <button type="button" onclick={cancel}>{ "Keep" }</button>
                    } else {
                        <button type="button" class="danger" onclick={ask}
                                aria-label={format!("Revoke {}", recipient.name)}>{ "Revoke…" }</button>
                    }
                </div>
            }
            if let Some(problem) = &*problem {
                <p class="problem" role="alert">{ problem.clone() }</p>
            }
        </li>
    }
}

#[derive(Properties, PartialEq)]
struct HistoryProps {
    share: ShareId,
}

/// The share's history (its audit log), fetched when asked for.
#[component]
fn History(props: &HistoryProps) -> Html {
    let log = use_state(|| None::<Result<veilshare_shared::AuditLogView, String>>);
    let toggle = {
        let log = log.clone();
        let id = props.share.clone();
        Callback::from(move |_: MouseEvent| {
            if log.is_some() {
                log.set(None);
                return;
            }
            let (log, id) = (log.clone(), id.clone());
            wasm_bindgen_futures::spawn_local(async move {
                log.set(Some(api::share_log(&id).await));
            });
        })
    };
    html! {
        <div class="history">
            <button type="button" class="link" onclick={toggle} aria-expanded={log.is_some().to_string()}>
                { if log.is_some() { "Hide history" } else { "History" } }
            </button>
            { match &*log {
                None => html! {},
                Some(Err(problem)) => html! { <p class="problem" role="alert">{ format!("could not read the history: {problem}") }</p> },
                Some(Ok(view)) => html! {
                    <>
                        <ol class="log">
                            { for view.entries.iter().map(|entry| html! {
                                <li>{ format!("{} — {}", minute_utc(entry.at), entry.event.describe()) }</li>
                            }) }
                        </ol>
                        if view.entries.is_empty() {
                            <p class="quiet">{ "No history kept for this share." }</p>
                        }
                        { match &view.broken {
                            Some(broken) => html! { <p class="problem" role="alert">{ format!("This history was changed after it was written: {broken}.") }</p> },
                            None => html! { <p class="quiet">{ "Times to the minute; nothing about recipients is recorded. Each entry is chained to the one before by its hash: this history is intact." }</p> },
                        } }
                    </>
                },
            } }
        </div>
    }
}

/// A moment as `YYYY-MM-DD HH:MM UTC` (drop boxes keep arrivals to the minute).
fn minute_utc(secs: u64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(secs as f64 * 1000.0));
    let iso = String::from(date.to_iso_string());
    format!("{} UTC", iso.get(..16).unwrap_or(&iso).replace('T', " "))
}

/// One share: state, counters, countdown, links, QR code, revoke.
#[component]
pub fn ShareCard(props: &ShareCardProps) -> Html {
    let share = &props.share;
    let confirming = use_state(|| false);
    let problem = use_state(|| None::<String>);
    let copied = use_state(|| None::<String>);

    let (ask, cancel) = confirm_steps(&confirming);
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
    let dropbox = share.dropbox.as_ref();
    let title = share
        .label
        .clone()
        .unwrap_or_else(|| match share.files.as_slice() {
            _ if dropbox.is_some() => "Drop box".to_owned(),
            [one] => one.name.clone(),
            files => format!("{} files", files.len()),
        });
    let state_class = match share.state {
        ShareState::Publishing => "state busy",
        ShareState::Live => "state ok",
        _ => "state off",
    };
    let ended_note = match (share.state, dropbox.is_some()) {
        (ShareState::Exhausted, false) => Some(
            "This share ended: its download limit was reached. Its links no longer work and its data was deleted.",
        ),
        (ShareState::Expired, false) => {
            Some("This share ended: it expired. Its links no longer work and its data was deleted.")
        }
        (ShareState::Revoked, false) => {
            Some("This share ended: revoked. Its links no longer work and its data was deleted.")
        }
        (ShareState::Exhausted, true) => Some(
            "This drop box is closed: it took all the uploads it was set to. Its address no longer works; what it received is kept below.",
        ),
        (ShareState::Expired, true) => Some(
            "This drop box is closed: it expired. Its address no longer works; what it received is kept below.",
        ),
        (ShareState::Revoked, true) => Some(
            "This drop box is closed. Its address no longer works; what it received is kept below.",
        ),
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
        value.as_deref().map_or_else(Html::default, |link| {
            value_row(name, link, &format!("{name} link"), &copied)
        })
    };

    html! {
        <li class={classes!("card", ended.then_some("ended"))} aria-label={title.clone()}>
            <div class="card-head">
                <h3>{ title }</h3>
                <span class={state_class}>{ share.state.label() }</span>
            </div>
            if let Some(dropbox) = dropbox {
                <p class="quiet">
                    <span class="uploads">{ received(dropbox) }</span>
                    if !expiry.is_empty() { { " · " }<span class="expiry">{ expiry.replace("expires", "closes") }</span> }
                </p>
            } else {
                <p class="quiet">
                    { format!("{} file(s), {}", share.files.len(), human_size(share.total_size)) }
                    { " · " }<span class="downloads">{ downloads }</span>
                    if !expiry.is_empty() { { " · " }<span class="expiry">{ expiry }</span> }
                </p>
            }
            { for share.metadata.iter().map(|report| html! {
                <p class={classes!("metadata", (!report.removed).then_some("warn"))}>{ report.summary() }</p>
            }) }
            if let Some(note) = ended_note {
                <p class="quiet">{ note }</p>
            }
            if let Some(dropbox) = dropbox {
                <p class="quiet encryption">{ match &dropbox.limits.encrypt_to {
                    Some(recipient) => format!("Uploads are encrypted as they arrive, to {recipient}: decrypt them where that identity lives (age -d)."),
                    None => "Uploads are stored as received, not encrypted.".to_owned(),
                } }</p>
                { items(&share.id, dropbox, &props.on_changed) }
            }
            if let Some(problem) = &share.problem {
                <p class="problem">{ problem.clone() }</p>
            }
            if !share.recipients.is_empty() {
                <Recipients share={share.id.clone()} recipients={share.recipients.clone()} {ended} />
            }
            if !ended {
                <div class="links">
                    { link_row("Onion", &share.links.onion) }
                    { link_row("Local", &share.links.local) }
                    { link_row("Ticket", &share.links.ticket) }
                    if let Some(key) = &share.client_key {
                        { value_row("Key", key, "key", &copied) }
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
                    if *confirming && dropbox.is_some() {
                        <span role="alert">{ "Close? The address stops working for good; what arrived is kept." }</span>
                        <button type="button" class="danger" onclick={revoke}>{ "Yes, close" }</button>
                        <button type="button" onclick={cancel}>{ "Keep it open" }</button>
                    } else if *confirming {
                        <span role="alert">{ "Revoke? The link stops working for good and the data is deleted." }</span>
                        <button type="button" class="danger" onclick={revoke}>{ "Yes, revoke" }</button>
                        <button type="button" onclick={cancel}>{ "Keep it" }</button>
                    } else if dropbox.is_some() {
                        <button type="button" class="danger" onclick={ask}>{ "Close…" }</button>
                    } else if share.recipients.is_empty() {
                        <button type="button" class="danger" onclick={ask}>{ "Revoke…" }</button>
                    } else {
                        <button type="button" class="danger" onclick={ask}>{ "Revoke for everyone…" }</button>
                    }
                </div>
            }
            if let Some(problem) = &*problem {
                <p class="problem" role="alert">{ problem.clone() }</p>
            }
            <History share={share.id.clone()} />
            if preferred.is_none() && share.links.ticket.is_none() && share.recipients.is_empty() && !ended && share.state == ShareState::Live {
                <p class="quiet">{ "No link yet: start veilshare with Tor, or with --public-listen." }</p>
            }
        </li>
    }
}
