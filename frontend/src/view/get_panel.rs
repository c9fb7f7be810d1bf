//! Get files: fetch a share into this computer (a link, a key for a restricted one, or several
//! sources of one share), and the list of fetches with their progress, pause, resume, cancel.

use veilshare_shared::{GetState, GetView, StartGet};
use yew::prelude::*;

use crate::{
    api,
    view::{human_duration, human_size, policy::text_of, share_card::confirm_steps},
};

#[derive(Properties, PartialEq)]
pub struct GetFormProps {
    pub on_started: Callback<GetView>,
}

/// The form: sources, key, and the folder the files go to.
#[component]
pub fn GetForm(props: &GetFormProps) -> Html {
    let sources = use_state(String::new);
    let key = use_state(String::new);
    let problem = use_state(|| None::<String>);
    let folder = use_state(|| None::<String>);
    let editing = use_state(|| None::<String>);
    {
        let folder = folder.clone();
        use_effect_with((), move |()| {
            wasm_bindgen_futures::spawn_local(async move {
                if let Ok(settings) = api::download_settings().await {
                    folder.set(Some(settings.folder));
                }
            });
        });
    }
    let submit = {
        let (sources, key, problem) = (sources.clone(), key.clone(), problem.clone());
        let on_started = props.on_started.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let request = StartGet {
                sources: vec![(*sources).clone()],
                key: Some((*key).clone()),
            };
            let request = match request.checked() {
                Ok(request) => request,
                Err(message) => {
                    problem.set(Some(message));
                    return;
                }
            };
            let (sources, key, problem) = (sources.clone(), key.clone(), problem.clone());
            let on_started = on_started.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match api::start_get(&request).await {
                    Ok(get) => {
                        sources.set(String::new());
                        key.set(String::new());
                        problem.set(None);
                        on_started.emit(get);
                    }
                    Err(message) => problem.set(Some(message)),
                }
            });
        })
    };
    let set_sources = {
        let sources = sources.clone();
        Callback::from(move |event: InputEvent| sources.set(text_of(&event)))
    };
    let set_key = {
        let key = key.clone();
        Callback::from(move |event: InputEvent| key.set(text_of(&event)))
    };
    let change_folder = {
        let (editing, folder) = (editing.clone(), folder.clone());
        Callback::from(move |_: MouseEvent| {
            editing.set(Some((*folder).clone().unwrap_or_default()))
        })
    };
    let type_folder = {
        let editing = editing.clone();
        Callback::from(move |event: InputEvent| editing.set(Some(text_of(&event))))
    };
    let save_folder = {
        let (editing, folder, problem) = (editing.clone(), folder.clone(), problem.clone());
        Callback::from(move |_: MouseEvent| {
            let Some(chosen) = (*editing).clone() else {
                return;
            };
            let (editing, folder, problem) = (editing.clone(), folder.clone(), problem.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::set_download_folder(&chosen).await {
                    Ok(settings) => {
                        folder.set(Some(settings.folder));
                        editing.set(None);
                        problem.set(None);
                    }
                    Err(message) => problem.set(Some(message)),
                }
            });
        })
    };
    html! {
        <section class="new get" aria-labelledby="get-title">
            <h2 id="get-title">{ "Get files" }</h2>
            <p class="quiet">{ "Fetch a share into this computer: paste its link (an onion link works here without Tor Browser) or a direct ticket. \
                Several links of one share (the sender's and its mirrors') are fetched from all at once. Every file is checked against its BLAKE3 hash." }</p>
            <form onsubmit={submit}>
                <div class="policy">
                    <label class="wide" for="get-sources">{ "Links or tickets (one per line)" }
                        <textarea id="get-sources" rows="3" placeholder="http://….onion/"
                                  value={(*sources).clone()} oninput={set_sources} />
                    </label>
                    <label for="get-key">{ "Key (only for a share that requires one)" }
                        <input id="get-key" type="text" autocomplete="off" spellcheck="false"
                               value={(*key).clone()} oninput={set_key} />
                    </label>
                </div>
                <p class="quiet folder">
                    if let Some(typed) = &*editing {
                        <label for="get-folder">{ "Save into" }
                            <input id="get-folder" type="text" value={typed.clone()} oninput={type_folder} />
                        </label>
                        <button type="button" onclick={save_folder}>{ "Use this folder" }</button>
                    } else {
                        { format!("Saved into {}; a file whose name is taken there gets a new name, nothing is overwritten. ",
                            (*folder).clone().unwrap_or_else(|| "your Downloads folder".into())) }
                        <button type="button" class="link" onclick={change_folder}>{ "Change folder" }</button>
                    }
                </p>
                <div class="actions">
                    <button type="submit" class="primary">{ "Get" }</button>
                </div>
                if let Some(problem) = &*problem {
                    <p class="problem" role="alert">{ problem.clone() }</p>
                }
            </form>
        </section>
    }
}

/// What a fetch's buttons ask of the API.
#[derive(Clone, Copy)]
enum Act {
    Pause,
    Resume,
    /// Cancel an unfinished one, or take a finished one off the list.
    Remove,
}

impl Act {
    fn verb(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Remove => "remove it",
        }
    }
}

#[derive(Properties, PartialEq)]
pub struct GetCardProps {
    pub get: GetView,
    pub on_changed: Callback<GetView>,
    pub on_removed: Callback<String>,
}

/// One fetch: what it gets (the share's files once listed), progress, rate, time left, where
/// the files went; Pause, Resume, Cancel (asked first) or Remove from the list.
#[component]
pub fn GetCard(props: &GetCardProps) -> Html {
    let get = &props.get;
    let confirming = use_state(|| false);
    let problem = use_state(|| None::<String>);
    let act = |action: Act| {
        let (id, problem) = (get.id.clone(), problem.clone());
        let (on_changed, on_removed) = (props.on_changed.clone(), props.on_removed.clone());
        let confirming = confirming.clone();
        Callback::from(move |_: MouseEvent| {
            let (id, problem) = (id.clone(), problem.clone());
            let (on_changed, on_removed) = (on_changed.clone(), on_removed.clone());
            let confirming = confirming.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let done = match action {
                    Act::Pause => api::pause_get(&id).await.map(|g| on_changed.emit(g)),
                    Act::Resume => api::resume_get(&id).await.map(|g| on_changed.emit(g)),
                    Act::Remove => api::remove_get(&id)
                        .await
                        .map(|()| on_removed.emit(id.clone())),
                };
                if let Err(message) = done {
                    problem.set(Some(format!("could not {}: {message}", action.verb())));
                }
                confirming.set(false);
            });
        })
    };
    let (ask, keep) = confirm_steps(&confirming);
    let title = get
        .label
        .clone()
        .or_else(|| match get.files.as_slice() {
            [] => None,
            [one] => Some(one.name.clone()),
            files => Some(format!("{} files", files.len())),
        })
        .unwrap_or_else(|| "A share".to_owned());
    let (state_class, state) = match get.state {
        GetState::Connecting => ("state busy", "connecting"),
        GetState::Fetching => ("state busy", "fetching"),
        GetState::Paused => ("state off", "paused"),
        GetState::Done => ("state ok", "saved"),
        GetState::Failed => ("state bad", "stopped"),
    };
    let mut line = match get.total {
        Some(total) => format!("{} of {}", human_size(get.done), human_size(total)),
        None if get.done > 0 => human_size(get.done),
        None => "Reaching the share…".to_owned(),
    };
    if let Some(rate) = get
        .rate
        .filter(|rate| *rate > 0 && get.state == GetState::Fetching)
    {
        line.push_str(&format!(" · {}/s", human_size(rate)));
        if let Some(left) = get.seconds_left() {
            line.push_str(&format!(" · {} left", human_duration(left.max(1))));
        }
    }
    if get.sources.len() > 1 {
        line.push_str(&format!(" · {} sources", get.sources.len()));
    }
    let finished = get.state == GetState::Done;
    html! {
        <li class="card get-card" aria-label={title.clone()}>
            <div class="card-head">
                <h3>{ title }</h3>
                <span class={state_class}>{ state }</span>
            </div>
            if let Some(total) = get.total.filter(|_| !finished) {
                <progress max={total.to_string()} value={get.done.to_string()} aria-label="Progress"></progress>
            }
            <p class="quiet progress-line">{ line }</p>
            if !get.files.is_empty() {
                <ul class="files">
                    { for get.files.iter().map(|file| html! {
                        <li>{ format!("{} ({})", file.name, human_size(file.size)) }</li>
                    }) }
                </ul>
            }
            if finished {
                <p class="quiet">{ "Saved and verified:" }</p>
                <ul class="saved">
                    { for get.saved.iter().map(|path| html! { <li><code>{ path.clone() }</code></li> }) }
                </ul>
            }
            if let Some(problem) = &get.problem {
                <p class="problem">{ problem.clone() }</p>
            }
            <div class="actions">
                if get.state.is_running() {
                    <button type="button" onclick={act(Act::Pause)}>{ "Pause" }</button>
                }
                if matches!(get.state, GetState::Paused | GetState::Failed) {
                    <button type="button" onclick={act(Act::Resume)}>{ "Resume" }</button>
                }
                if finished {
                    <button type="button" onclick={act(Act::Remove)}>{ "Remove from the list" }</button>
                } else if *confirming {
                    <span role="alert">{ "Cancel? What arrived so far is deleted." }</span>
                    <button type="button" class="danger" onclick={act(Act::Remove)}>{ "Yes, cancel" }</button>
                    <button type="button" onclick={keep}>{ "Keep going" }</button>
                } else {
                    <button type="button" class="danger" onclick={ask}>{ "Cancel…" }</button>
                }
            </div>
            if let Some(problem) = &*problem {
                <p class="problem" role="alert">{ problem.clone() }</p>
            }
        </li>
    }
}
