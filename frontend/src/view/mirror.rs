//! The mirror form: fetch someone's share by ticket or link and publish it from here too.

use veilshare_shared::ShareView;
use yew::prelude::*;

use crate::{
    api,
    view::policy::{Inputs, PolicyFields, PolicyFor, PolicyInput, editor, text_of},
};

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
    let policy = use_reducer(|| Inputs(PolicyInput::mirror()));
    let phase = use_state(|| Mirroring::Idle);
    let submit = {
        let (source, policy, phase) = (source.clone(), policy.clone(), phase.clone());
        let on_created = props.on_created.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let text = source.trim().to_owned();
            if text.is_empty() {
                phase.set(Mirroring::Failed("paste a ticket or a link first".into()));
                return;
            }
            let fields = match policy.0.fields() {
                Ok(fields) => fields,
                Err(problem) => {
                    phase.set(Mirroring::Failed(problem));
                    return;
                }
            };
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
    let set_source = {
        let source = source.clone();
        // At every keystroke (see `policy::on_input`).
        Callback::from(move |event: InputEvent| source.set(text_of(&event)))
    };
    html! {
        <section class="new mirror" aria-labelledby="mirror-title">
            <h2 id="mirror-title">{ "Mirror a share" }</h2>
            <p class="quiet">{ "Keep someone's share available from here too: paste its ticket or link. \
                Recipients can check it is the same content by its hash." }</p>
            <form onsubmit={submit}>
                <div class="policy">
                    <label for="mirror-source">{ "Ticket or link" }
                        <input id="mirror-source" type="text" placeholder="blob… or http://….onion/"
                               value={(*source).clone()} oninput={set_source} disabled={busy} />
                    </label>
                    <PolicyFields value={policy.0.clone()} form={PolicyFor::Mirror} on_edit={editor(&policy)} />
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
