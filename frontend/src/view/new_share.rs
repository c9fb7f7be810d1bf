//! The new-share form: the drop zone, the policy, the upload with its progress and cancel.

use std::{cell::RefCell, rc::Rc};

use veilshare_shared::ShareView;
use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::{
    api,
    view::{
        human_size,
        policy::{Edit, Inputs, PolicyFields, PolicyFor, PolicyInput, editor},
    },
};

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

fn files_of(list: Option<web_sys::FileList>) -> Vec<web_sys::File> {
    let Some(list) = list else { return Vec::new() };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

/// The drop zone and the policy of the next share.
#[component]
pub fn NewShare(props: &NewShareProps) -> Html {
    let files = use_state(Vec::<web_sys::File>::new);
    let policy = use_reducer(|| Inputs(PolicyInput::new_share()));
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

    let submit = {
        let files = files.clone();
        let phase = phase.clone();
        let upload = upload.clone();
        let on_created = props.on_created.clone();
        let policy = policy.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if files.is_empty() {
                phase.set(Phase::Failed(
                    "choose or drop at least one file first".into(),
                ));
                return;
            }
            let fields = match policy.0.fields() {
                Ok(fields) => fields,
                Err(problem) => {
                    phase.set(Phase::Failed(problem));
                    return;
                }
            };
            let Ok(data) = web_sys::FormData::new() else {
                phase.set(Phase::Failed("the browser cannot build the upload".into()));
                return;
            };
            for (name, value) in fields.form_fields() {
                let _ = data.append_with_str(name, &value);
            }
            for file in files.iter() {
                let _ = data.append_with_blob_and_filename("files", file, &file.name());
            }
            let upload_id = format!("ui-{}", js_sys::Date::now() as u64);
            let sending = phase.clone();
            let finished = phase.clone();
            let files_done = files.clone();
            let policy_done = policy.clone();
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
                            policy_done.dispatch(Edit::new(|p: &mut PolicyInput| p.label.clear()));
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
            <h2 id="new-title">{ "Share files" }</h2>
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
                    <PolicyFields value={policy.0.clone()} form={PolicyFor::Share { tor_on: props.tor_on }}
                                  on_edit={editor(&policy)} />
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
