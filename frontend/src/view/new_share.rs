//! The new-share form: the drop zone, what each file's metadata reveals (asked of veilshare as
//! files are dropped, before anything is shared), the policy, the upload with its progress and
//! cancel.

use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

use veilshare_shared::{MetadataReport, ShareView, metadata};
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

/// What is known of one dropped file's metadata.
#[derive(Clone, PartialEq)]
enum Finding {
    Checking,
    /// `None`: nothing found.
    Checked(Option<MetadataReport>),
    Failed(String),
}

/// Findings by file name; each inspection reports whenever it ends.
#[derive(Default, PartialEq)]
struct Findings(BTreeMap<String, Finding>);

impl Reducible for Findings {
    type Action = (String, Option<Finding>);

    fn reduce(self: Rc<Self>, (name, finding): Self::Action) -> Rc<Self> {
        let mut next = self.0.clone();
        match finding {
            Some(finding) => next.insert(name, finding),
            None => next.remove(&name),
        };
        Rc::new(Self(next))
    }
}

/// What a file's finding says, under its name in the list.
fn finding_line(finding: Option<&Finding>, strip: bool) -> Html {
    match finding {
        Some(Finding::Checking) => {
            html! { <p class="quiet metadata">{ "Checking for metadata…" }</p> }
        }
        Some(Finding::Failed(problem)) => html! {
            <p class="quiet metadata">{ format!("Could not check its metadata ({problem}).") }</p>
        },
        Some(Finding::Checked(Some(report))) if !report.found.is_empty() => {
            let found = report
                .found
                .iter()
                .map(|kind| kind.describe())
                .collect::<Vec<_>>()
                .join(", ");
            let what = if report.removable && strip {
                "veilshare removes it from the shared copy; the picture stays the same.".to_owned()
            } else if report.removable {
                "It will be shared as it is (removing metadata is off).".to_owned()
            } else {
                format!(
                    "veilshare cannot remove it from {} files: if that matters, clean the file first (for example with mat2).",
                    report.format
                )
            };
            html! {
                <p class={classes!("metadata", (!(report.removable && strip)).then_some("warn"))} role="note">
                    <strong>{ format!("This {} contains {found}. ", report.format) }</strong>
                    { what }
                    if let Some(note) = &report.note { { format!(" {note}.") } }
                </p>
            }
        }
        Some(Finding::Checked(_)) | None => html! {},
    }
}

/// A checkbox's `change` handler that keeps `state` equal to whether it is ticked.
fn follow_checkbox(state: &UseStateHandle<bool>) -> Callback<Event> {
    let state = state.clone();
    Callback::from(move |event: Event| {
        if let Some(input) = event
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        {
            state.set(input.checked());
        }
    })
}

fn files_of(list: Option<web_sys::FileList>) -> Vec<web_sys::File> {
    let Some(list) = list else { return Vec::new() };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

/// The drop zone and the policy of the next share.
#[component]
pub fn NewShare(props: &NewShareProps) -> Html {
    let files = use_state(Vec::<web_sys::File>::new);
    let findings = use_reducer(Findings::default);
    let strip = use_state(|| true);
    let keep_log = use_state(|| false);
    let policy = use_reducer(|| Inputs(PolicyInput::new_share()));
    let phase = use_state(|| Phase::Idle);
    let dragging = use_state(|| false);
    let upload: Rc<RefCell<Option<api::Upload>>> = use_mut_ref(|| None);
    let input = use_node_ref();

    let add_files = {
        let files = files.clone();
        let phase = phase.clone();
        let findings = findings.clone();
        move |more: Vec<web_sys::File>| {
            let mut all = (*files).clone();
            for file in more {
                all.retain(|f| f.name() != file.name());
                inspect(&file, &findings);
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
    let on_keep_log = follow_checkbox(&keep_log);
    let on_strip = follow_checkbox(&strip);

    let submit = {
        let files = files.clone();
        let phase = phase.clone();
        let upload = upload.clone();
        let on_created = props.on_created.clone();
        let policy = policy.clone();
        let strip = strip.clone();
        let keep_log = keep_log.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if files.is_empty() {
                phase.set(Phase::Failed(
                    "choose or drop at least one file first".into(),
                ));
                return;
            }
            let fields = match policy.0.fields() {
                Ok(fields) => veilshare_shared::CreateShareFields {
                    keep_metadata: !*strip,
                    keep_log: *keep_log,
                    ..fields
                },
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
                                <li>
                                    { format!("{} — {}", f.name(), human_size(f.size() as u64)) }
                                    { finding_line(findings.0.get(&f.name()), *strip) }
                                </li>
                            }) }
                        </ul>
                        <p class="quiet">{ format!("{} file(s), {}", files.len(), human_size(total)) }
                            { " " }<button type="button" class="link" onclick={clear} disabled={busy}>{ "clear" }</button></p>
                    }
                </div>
                <label class="check">
                    <input id="strip-metadata" type="checkbox" checked={*strip} onchange={on_strip} disabled={busy} />
                    { " Remove metadata from photos (GPS position, camera, serial number, dates); the pictures stay the same" }
                </label>
                <label class="check">
                    <input id="keep-log" type="checkbox" checked={*keep_log} onchange={on_keep_log} disabled={busy} />
                    { " Keep this share's history after it ends (by default it is deleted with the data)" }
                </label>
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

/// Asks veilshare what `file` reveals, when its name says it may carry metadata and it is not
/// too large to check; the answer lands in `findings` under its name.
fn inspect(file: &web_sys::File, findings: &UseReducerHandle<Findings>) {
    let name = file.name();
    if !metadata::worth_inspecting(&name) || file.size() as u64 > metadata::MAX_INSPECTED {
        findings.dispatch((name, None));
        return;
    }
    findings.dispatch((name.clone(), Some(Finding::Checking)));
    let (file, findings) = (file.clone(), findings.clone());
    wasm_bindgen_futures::spawn_local(async move {
        let finding = match api::inspect(&file).await {
            Ok(report) => Finding::Checked(report),
            Err(problem) => Finding::Failed(problem),
        };
        findings.dispatch((name, Some(finding)));
    });
}
