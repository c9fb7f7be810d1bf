//! The veilshare management UI (Yew, compiled to WASM and embedded in the binary by
//! `cargo xtask dist`): drop files, set the policy, watch the upload and the publication live,
//! hand out the links and the QR code, follow downloads, revoke.
//!
//! Everything it shows comes from the local API (`/api/…`, same origin, session cookie) and
//! the events socket; it loads nothing from anywhere else.

mod api;
mod view;

use std::rc::Rc;

use veilshare_shared::{BridgesInUse, Event, GetView, ShareView, Status, TorStatus};
use yew::prelude::*;

use view::{
    BridgePanel, GetCard, GetForm, MirrorForm, MirrorProgress, NewDropBox, NewShare, ShareCard,
    TorBadge,
};

/// Unix seconds now, from the browser's clock.
pub fn now_secs() -> u64 {
    (js_sys::Date::now() / 1000.0) as u64
}

/// The jobs the app does, one place each: the tabs above the lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    Share,
    Receive,
    Get,
    Mirror,
}

impl Job {
    const ALL: [Self; 4] = [Self::Share, Self::Receive, Self::Get, Self::Mirror];

    fn title(self) -> &'static str {
        match self {
            Self::Share => "Share files",
            Self::Receive => "Receive files",
            Self::Get => "Get files",
            Self::Mirror => "Mirror a share",
        }
    }

    fn id(self) -> &'static str {
        match self {
            Self::Share => "tab-share",
            Self::Receive => "tab-receive",
            Self::Get => "tab-get",
            Self::Mirror => "tab-mirror",
        }
    }
}

/// What the app knows.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    status: Option<Status>,
    shares: Vec<ShareView>,
    /// The Get panel's fetches, newest first.
    gets: Vec<GetView>,
    load_problem: Option<String>,
    live_problem: Option<String>,
    now: u64,
    /// The latest progress of a mirror being fetched.
    mirror_progress: Option<MirrorProgress>,
}

enum Action {
    Loaded(Status, Vec<ShareView>, Vec<GetView>),
    UpsertGet(Box<GetView>),
    RemoveGet(String),
    LoadFailed(String),
    Tor(TorStatus),
    Bridges(Option<BridgesInUse>),
    Mirror(MirrorProgress),
    Upsert(Box<ShareView>),
    Live(Option<String>),
    Tick(u64),
}

impl Reducible for Model {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            Action::Loaded(status, mut shares, mut gets) => {
                shares.sort_by_key(|s| std::cmp::Reverse(s.created_at));
                gets.sort_by_key(|g| std::cmp::Reverse(g.created_at));
                next.status = Some(status);
                next.shares = shares;
                next.gets = gets;
                next.load_problem = None;
            }
            Action::UpsertGet(get) => match next.gets.iter_mut().find(|g| g.id == get.id) {
                Some(existing) => *existing = *get,
                None => next.gets.insert(0, *get),
            },
            Action::RemoveGet(id) => next.gets.retain(|g| g.id != id),
            Action::LoadFailed(problem) => next.load_problem = Some(problem),
            Action::Tor(tor) => {
                if let Some(status) = next.status.as_mut() {
                    status.tor = tor;
                }
            }
            Action::Mirror(progress) => next.mirror_progress = Some(progress),
            Action::Bridges(bridges) => {
                if let Some(status) = next.status.as_mut() {
                    status.bridges = bridges;
                }
            }
            Action::Upsert(share) => match next.shares.iter_mut().find(|s| s.id == share.id) {
                Some(existing) => *existing = *share,
                None => next.shares.insert(0, *share),
            },
            Action::Live(problem) => next.live_problem = problem,
            Action::Tick(now) => next.now = now,
        }
        Rc::new(next)
    }
}

async fn load(model: &UseReducerHandle<Model>) {
    match futures::try_join!(api::status(), api::shares(), api::gets()) {
        Ok((status, shares, gets)) => model.dispatch(Action::Loaded(status, shares, gets)),
        Err(problem) => model.dispatch(Action::LoadFailed(problem)),
    }
}

/// The app.
#[component]
fn App() -> Html {
    let model = use_reducer(|| Model {
        now: now_secs(),
        ..Model::default()
    });

    // Load, then follow the events; reconnect (and reload) when the socket drops.
    {
        let model = model.clone();
        use_effect_with((), move |()| {
            wasm_bindgen_futures::spawn_local(async move {
                loop {
                    load(&model).await;
                    let events = model.clone();
                    let problem = api::follow_events(move |event| apply(&events, event)).await;
                    model.dispatch(Action::Live(Some(problem)));
                    gloo_timers::future::sleep(std::time::Duration::from_secs(2)).await;
                    model.dispatch(Action::Live(None));
                }
            });
        });
    }
    // The clock for countdowns.
    {
        let model = model.clone();
        use_effect_with((), move |()| {
            let interval = gloo_timers::callback::Interval::new(1000, move || {
                model.dispatch(Action::Tick(now_secs()));
            });
            move || drop(interval)
        });
    }

    let job_state = use_state(|| Job::Share);
    let upsert = {
        let model = model.clone();
        Callback::from(move |share: ShareView| model.dispatch(Action::Upsert(Box::new(share))))
    };
    let upsert_get = {
        let model = model.clone();
        Callback::from(move |get: GetView| model.dispatch(Action::UpsertGet(Box::new(get))))
    };
    let remove_get = {
        let model = model.clone();
        Callback::from(move |id: String| model.dispatch(Action::RemoveGet(id)))
    };
    let tor = model.status.as_ref().map(|s| s.tor.clone());
    let bridges = model.status.as_ref().and_then(|s| s.bridges.clone());
    let settings_open = use_state(|| false);
    let toggle_settings = {
        let open = settings_open.clone();
        Callback::from(move |_: MouseEvent| open.set(!*open))
    };
    let tor_on = !matches!(
        model.status.as_ref().map(|s| &s.tor),
        Some(TorStatus::Disabled)
    );
    let (boxes, shares): (Vec<&ShareView>, Vec<&ShareView>) =
        model.shares.iter().partition(|s| s.dropbox.is_some());
    let active = shares.iter().filter(|s| !s.state.is_ended()).count();
    let open = boxes.iter().filter(|s| !s.state.is_ended()).count();
    let card = |share: &&ShareView| {
        html! {
            <ShareCard key={share.id.to_string()} share={(*share).clone()} now={model.now} on_changed={upsert.clone()} />
        }
    };
    let tab = |job: Job| {
        let chosen = job_state.clone();
        let onclick = Callback::from(move |_: MouseEvent| chosen.set(job));
        let selected = *job_state == job;
        html! {
            <button type="button" role="tab" id={job.id()} aria-selected={selected.to_string()}
                    aria-controls="job" class={classes!("tab", selected.then_some("selected"))}
                    onclick={onclick}>{ job.title() }</button>
        }
    };
    // Left and right arrows move between the tabs, as in any tab list.
    let arrows = {
        let chosen = job_state.clone();
        Callback::from(move |event: KeyboardEvent| {
            let step: isize = match event.key().as_str() {
                "ArrowRight" => 1,
                "ArrowLeft" => -1,
                _ => return,
            };
            event.prevent_default();
            let at = Job::ALL.iter().position(|j| *j == *chosen).unwrap_or(0) as isize;
            let next = Job::ALL[(at + step).rem_euclid(Job::ALL.len() as isize) as usize];
            chosen.set(next);
            if let Some(button) = web_sys::window()
                .and_then(|w| w.document())
                .and_then(|d| d.get_element_by_id(next.id()))
                .and_then(|e| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(e).ok())
            {
                let _ = button.focus();
            }
        })
    };

    html! {
        <>
            <header class="top">
                <h1>{ "veilshare" }</h1>
                <div class="row">
                    <TorBadge tor={tor} bridges={bridges.clone()} />
                    if tor_on {
                        <button type="button" id="bridges-button" aria-expanded={settings_open.to_string()}
                                aria-controls="bridges-panel" onclick={toggle_settings}>{ "Bridges" }</button>
                    }
                </div>
            </header>
            if *settings_open && tor_on {
                <div id="bridges-panel"><BridgePanel in_use={bridges} /></div>
            }
            if let Some(problem) = &model.load_problem {
                <p class="problem" role="alert">{ problem }</p>
            }
            if let Some(problem) = &model.live_problem {
                <p class="problem" role="status">{ format!("{problem}; reconnecting…") }</p>
            }
            <main>
                <nav class="tabs" role="tablist" aria-label="What to do" onkeydown={arrows}>
                    { for Job::ALL.into_iter().map(tab) }
                </nav>
                <div id="job" role="tabpanel" aria-labelledby={job_state.id()}>
                    { match *job_state {
                        Job::Share => html! { <NewShare on_created={upsert.clone()} tor_on={tor_on} /> },
                        Job::Receive => html! { <NewDropBox on_created={upsert.clone()} tor_on={tor_on} /> },
                        Job::Get => html! { <GetForm on_started={upsert_get.clone()} /> },
                        Job::Mirror => html! { <MirrorForm on_created={upsert.clone()} progress={model.mirror_progress.clone()} /> },
                    } }
                </div>
                if !model.gets.is_empty() {
                    <section aria-labelledby="gets-title">
                        <h2 id="gets-title">{ format!("Downloads ({})", model.gets.len()) }</h2>
                        <ul class="shares">
                            { for model.gets.iter().map(|get| html! {
                                <GetCard key={get.id.clone()} get={get.clone()}
                                         on_changed={upsert_get.clone()} on_removed={remove_get.clone()} />
                            }) }
                        </ul>
                    </section>
                }
                if !boxes.is_empty() {
                    <section aria-labelledby="boxes-title">
                        <h2 id="boxes-title">{ format!("Drop boxes ({open} open)") }</h2>
                        <ul class="shares">{ for boxes.iter().map(card) }</ul>
                    </section>
                }
                <section aria-labelledby="shares-title">
                    <h2 id="shares-title">{ format!("Shares ({active} active)") }</h2>
                    if shares.is_empty() && model.load_problem.is_none() {
                        <p class="quiet">{ "No shares yet. Choose \u{201c}Share files\u{201d} above and drop files to create one." }</p>
                    }
                    <ul class="shares">{ for shares.iter().map(card) }</ul>
                </section>
            </main>
        </>
    }
}

/// Applies one live event: share views replace ours (the server follows every download
/// event with the share's new view, so those need nothing of their own).
fn apply(model: &UseReducerHandle<Model>, event: Event) {
    match event {
        Event::ShareCreated { share, .. }
        | Event::ShareUpdated { share }
        | Event::ShareEnded { share } => model.dispatch(Action::Upsert(Box::new(share))),
        Event::Tor { status } => model.dispatch(Action::Tor(status)),
        Event::Bridges { bridges } => model.dispatch(Action::Bridges(bridges)),
        Event::MirrorProgress {
            progress_id,
            done,
            total,
            files,
        } => model.dispatch(Action::Mirror(MirrorProgress {
            id: progress_id,
            done,
            total,
            files,
        })),
        Event::GetUpdated { get } => model.dispatch(Action::UpsertGet(Box::new(get))),
        Event::GetRemoved { id } => model.dispatch(Action::RemoveGet(id)),
        Event::DownloadStarted { .. }
        | Event::DownloadEnded { .. }
        | Event::UploadProgress { .. }
        | Event::UploadFailed { .. } => {}
    }
}

fn main() {
    let root = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("app"));
    match root {
        Some(root) => {
            root.set_inner_html("");
            let _ = root.remove_attribute("aria-busy");
            yew::Renderer::<App>::with_root(root).render();
        }
        None => {
            yew::Renderer::<App>::new().render();
        }
    }
}
