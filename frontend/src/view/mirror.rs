//! The mirror form: fetch someone's share by ticket or link and publish it from here too.

use veilshare_shared::ShareView;
use yew::prelude::*;

use crate::{
    api,
    view::{
        human_size,
        policy::{Inputs, PolicyFields, PolicyFor, PolicyInput, editor, text_of},
    },
};

#[derive(Properties, PartialEq)]
pub struct MirrorFormProps {
    pub on_created: Callback<ShareView>,
    /// The latest mirror progress the app heard of (any mirror's: the form shows its own).
    #[prop_or_default]
    pub progress: Option<MirrorProgress>,
}

/// A mirror fetch's progress, from its `mirror_progress` events.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorProgress {
    /// The request's `progress_id`.
    pub id: String,
    /// Bytes fetched.
    pub done: u64,
    /// The share's size, once known.
    pub total: Option<u64>,
    /// Its number of files, once known.
    pub files: Option<usize>,
}

/// What the progress line says: bytes of the total, and the files.
pub fn progress_text(progress: &MirrorProgress) -> String {
    let files = match progress.files {
        Some(1) => " (1 file)".to_owned(),
        Some(n) => format!(" ({n} files)"),
        None => String::new(),
    };
    match progress.total {
        Some(total) => format!(
            "Fetching: {} of {}{files}",
            human_size(progress.done),
            human_size(total)
        ),
        None => format!("Fetching: {}{files}", human_size(progress.done)),
    }
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
    let progress_id = use_state(String::new);
    let submit = {
        let (source, policy, phase) = (source.clone(), policy.clone(), phase.clone());
        let progress_id = progress_id.clone();
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
            let id = format!("mirror-{}", (js_sys::Math::random() * 1e15) as u64);
            progress_id.set(id.clone());
            let request = veilshare_shared::CreateMirror {
                source: text,
                source_key: None,
                timeout_secs: None,
                progress_id: Some(id),
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
                        Mirroring::Fetching => match props.progress.as_ref().filter(|p| p.id == *progress_id) {
                            Some(progress) => html! {
                                <div class="progress">
                                    if let Some(total) = progress.total {
                                        <progress value={progress.done.to_string()} max={total.max(1).to_string()} />
                                    }
                                    <span class="progress-line">{ progress_text(progress) }</span>
                                </div>
                            },
                            None => html! { <p class="progress">{ "Fetching the share; it appears below when it is stored…" }</p> },
                        },
                        Mirroring::Failed(problem) => html! { <p class="problem" role="alert">{ problem }</p> },
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
    fn the_progress_line_says_bytes_of_the_total_and_the_files() {
        let mut progress = MirrorProgress {
            id: "m".into(),
            done: 3 << 20,
            total: None,
            files: None,
        };
        assert_eq!(progress_text(&progress), "Fetching: 3.0 MiB");
        progress.total = Some(24 << 20);
        progress.files = Some(2);
        assert_eq!(
            progress_text(&progress),
            "Fetching: 3.0 MiB of 24.0 MiB (2 files)"
        );
    }
}
