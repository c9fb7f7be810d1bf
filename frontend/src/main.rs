//! The veilshare management UI, compiled to WASM. This is the skeleton the UI issue fills in:
//! it renders the app shell and proves the front end builds for `wasm32-unknown-unknown`.

use yew::prelude::*;

/// The app shell.
#[component]
fn App() -> Html {
    html! {
        <main>
            <h1>{ "veilshare" }</h1>
            <p>{ format!("Files up to {} per share.", veilshare_shared::MAX_FILES_PER_SHARE) }</p>
        </main>
    }
}

fn main() {
    yew::Renderer::<App>::new().render();
}
