//! The management UI's assets. Until the Yew front end is bundled (`cargo xtask dist`), a
//! placeholder page says how to build it.

use axum::{
    Router,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

/// Routes that serve the UI's static assets (none yet besides the index).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
}

/// The UI's entry page. `authenticated` tells whether the browser holds the session cookie.
pub fn index(authenticated: bool) -> Response {
    let body = if authenticated {
        "<h1>veilshare is running</h1><p>This build has no management UI inside it. Build the \
         app with <code>cargo xtask dist</code> (or start it with <code>cargo xtask run</code>), \
         or use the command line: <code>veilshare list</code>, <code>veilshare revoke ID</code>.</p>"
    } else {
        "<h1>veilshare</h1><p>Open the launch link that veilshare printed when it started; it \
         signs this browser in.</p>"
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>veilshare</title></head><body>{body}</body></html>"),
    )
        .into_response()
}
