//! The new-drop-box form: a share that receives. Its limits, whether senders may write a
//! message or need a key, and an age recipient to encrypt uploads to as they arrive.

use veilshare_shared::{CreateDropBox, ShareView};
use yew::prelude::*;

use crate::{
    api,
    view::policy::{Inputs, editor, on_check, on_input, on_text},
};

/// The choices of when a box closes, in seconds (empty: never).
const CLOSES: [(&str, &str); 5] = [
    ("3600", "1 hour"),
    ("86400", "1 day"),
    ("604800", "7 days"),
    ("2592000", "30 days"),
    ("", "never"),
];

/// The drop box inputs as the user left them, unchecked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropBoxInput {
    pub label: String,
    /// The most in all, as typed (`2 GB`); empty for no limit.
    pub max_bytes: String,
    /// The most per file, as typed; empty for no limit.
    pub max_file: String,
    /// Uploads taken; empty for no limit.
    pub max_uploads: String,
    /// Seconds until it closes; empty for never.
    pub closes: String,
    pub text: bool,
    pub restricted: bool,
    /// An age recipient; empty to store uploads as received.
    pub encrypt_to: String,
}

impl Default for DropBoxInput {
    /// A box that closes after a day and takes up to 2 GiB, files of up to 500 MiB.
    fn default() -> Self {
        Self {
            label: String::new(),
            max_bytes: "2 GB".into(),
            max_file: "500 MB".into(),
            max_uploads: String::new(),
            closes: "86400".into(),
            text: true,
            restricted: false,
            encrypt_to: String::new(),
        }
    }
}

impl DropBoxInput {
    /// The request, checked by the rules the API applies; or what is wrong, in words.
    pub fn request(&self) -> Result<CreateDropBox, String> {
        let size = |text: &str, what: &str| -> Result<Option<u64>, String> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            veilshare_shared::parse_size(text)
                .map(Some)
                .map_err(|problem| format!("{what}: {problem}"))
        };
        let max_uploads = match self.max_uploads.trim() {
            "" => None,
            text => Some(
                text.parse::<u32>()
                    .map_err(|_| "uploads: a whole number, or empty for no limit".to_owned())?,
            ),
        };
        let encrypt_to = self.encrypt_to.trim();
        CreateDropBox {
            label: Some(self.label.clone()),
            max_bytes: size(&self.max_bytes, "in all")?,
            max_file: size(&self.max_file, "per file")?,
            max_uploads,
            expires_in_secs: self.closes.parse().ok(),
            text: self.text,
            restricted: self.restricted,
            encrypt_to: (!encrypt_to.is_empty()).then(|| encrypt_to.to_owned()),
            keep_log: false,
        }
        .checked()
    }
}

#[derive(Properties, PartialEq)]
pub struct NewDropBoxProps {
    pub on_created: Callback<ShareView>,
    pub tor_on: bool,
}

#[derive(Clone, PartialEq)]
enum Phase {
    Idle,
    Creating,
    Failed(String),
}

/// Make a drop box: its link goes to whoever should send files, who needs nothing but Tor
/// Browser (the form works with JavaScript off).
#[component]
pub fn NewDropBox(props: &NewDropBoxProps) -> Html {
    let input = use_reducer(|| Inputs(DropBoxInput::default()));
    let phase = use_state(|| Phase::Idle);
    let edits = editor(&input);
    let typed = |set: fn(&mut DropBoxInput, String)| on_input(&edits, set);
    let text = |set: fn(&mut DropBoxInput, String)| on_text(&edits, set);
    let check = |set: fn(&mut DropBoxInput, bool)| on_check(&edits, set);
    let submit = {
        let (input, phase) = (input.clone(), phase.clone());
        let on_created = props.on_created.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let request = match input.0.request() {
                Ok(request) => request,
                Err(problem) => {
                    phase.set(Phase::Failed(problem));
                    return;
                }
            };
            phase.set(Phase::Creating);
            let (phase, on_created) = (phase.clone(), on_created.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::create_dropbox(&request).await {
                    Ok(share) => {
                        phase.set(Phase::Idle);
                        on_created.emit(share);
                    }
                    Err(problem) => phase.set(Phase::Failed(problem)),
                }
            });
        })
    };
    let busy = *phase == Phase::Creating;
    let value = &input.0;
    html! {
        <section class="new dropbox" aria-labelledby="dropbox-title">
            <h2 id="dropbox-title">{ "Receive files" }</h2>
            <p class="quiet">{ "Get a link where anyone who has it can send you files, anonymously, \
                with nothing but Tor Browser. Nobody sees what others sent; you see everything here." }</p>
            <form onsubmit={submit}>
                <div class="policy">
                    <label for="box-label">{ "Label (shown to senders)" }
                        <input id="box-label" type="text" maxlength="200" value={value.label.clone()}
                               placeholder="e.g. Documents for the newsroom"
                               oninput={typed(|p, t| p.label = t)} />
                    </label>
                    <label for="box-max-file">{ "Each file up to" }
                        <input id="box-max-file" type="text" placeholder="no limit" value={value.max_file.clone()}
                               oninput={typed(|p, t| p.max_file = t)} />
                    </label>
                    <label for="box-max-bytes">{ "In all up to" }
                        <input id="box-max-bytes" type="text" placeholder="no limit" value={value.max_bytes.clone()}
                               oninput={typed(|p, t| p.max_bytes = t)} />
                    </label>
                    <label for="box-max-uploads">{ "Uploads taken" }
                        <input id="box-max-uploads" type="number" min="1" placeholder="unlimited"
                               value={value.max_uploads.clone()}
                               oninput={typed(|p, t| p.max_uploads = t)} />
                    </label>
                    <label for="box-closes">{ "Closes after" }
                        <select id="box-closes" onchange={text(|p, t| p.closes = t)}>
                            { for CLOSES.iter().map(|(secs, text)| html! {
                                <option value={*secs} selected={value.closes == *secs}>{ *text }</option>
                            }) }
                        </select>
                    </label>
                    <label for="box-encrypt">{ "Encrypt uploads to (age recipient)" }
                        <input id="box-encrypt" type="text" placeholder="age1… (empty: stored as received)"
                               spellcheck="false" autocomplete="off" value={value.encrypt_to.clone()}
                               oninput={typed(|p, t| p.encrypt_to = t)} />
                    </label>
                    <label class="check" for="box-text">
                        <input id="box-text" type="checkbox" checked={value.text}
                               onchange={check(|p, c| p.text = c)} />
                        { "Senders may also write a message" }
                    </label>
                    if props.tor_on {
                        <label class="check" for="box-restricted">
                            <input id="box-restricted" type="checkbox" checked={value.restricted}
                                   onchange={check(|p, c| p.restricted = c)} />
                            { "Require a key: senders need the link and a key (Tor Browser asks for it)" }
                        </label>
                    }
                </div>
                <p class="quiet">{ "With an age recipient, each upload is encrypted as it arrives: nothing \
                    readable is written to this computer, and only the holder of the matching identity \
                    can open it (" }<code>{ "age -d" }</code>{ ")." }</p>
                <div class="actions">
                    <button type="submit" disabled={busy}>{ "Create drop box" }</button>
                </div>
                <div aria-live="polite">
                    { match &*phase {
                        Phase::Idle => html! {},
                        Phase::Creating => html! { <p class="progress">{ "Creating; its link appears below once published…" }</p> },
                        Phase::Failed(problem) => html! { <p class="problem" role="alert">{ problem }</p> },
                    } }
                </div>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inputs_become_a_checked_request() {
        let request = DropBoxInput::default()
            .request()
            .expect("the defaults are valid");
        assert_eq!(request.max_bytes, Some(2 << 30));
        assert_eq!(request.max_file, Some(500 << 20));
        assert_eq!(request.expires_in_secs, Some(86_400));
        assert_eq!(request.label, None, "an empty label is none");
        let open = DropBoxInput {
            max_bytes: String::new(),
            max_file: " ".into(),
            closes: String::new(),
            max_uploads: "3".into(),
            ..DropBoxInput::default()
        }
        .request()
        .expect("valid");
        assert_eq!(
            (
                open.max_bytes,
                open.max_file,
                open.expires_in_secs,
                open.max_uploads
            ),
            (None, None, None, Some(3))
        );
        for bad in [
            DropBoxInput {
                max_file: "lots".into(),
                ..DropBoxInput::default()
            },
            DropBoxInput {
                max_file: "3 GB".into(),
                ..DropBoxInput::default()
            },
            DropBoxInput {
                max_uploads: "0".into(),
                ..DropBoxInput::default()
            },
            DropBoxInput {
                encrypt_to: "not-a-key".into(),
                ..DropBoxInput::default()
            },
        ] {
            assert!(bad.request().is_err(), "{bad:?}");
        }
    }
}
