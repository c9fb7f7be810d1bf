//! Talking to the local API: JSON requests (the session cookie goes along, same origin), the
//! upload with progress (XMLHttpRequest: fetch has no upload progress), and the events socket.

use futures::StreamExt;
use gloo_net::{
    http::{Request, RequestBuilder},
    websocket::Message,
    websocket::futures::WebSocket,
};
use veilshare_shared::{ApiError, Event, ShareId, ShareView, Status};
use wasm_bindgen::{JsCast, closure::Closure};

/// What failed, in plain words for the person in front of the screen.
pub type Problem = String;

async fn error_of(response: gloo_net::http::Response) -> Problem {
    match response.json::<ApiError>().await {
        Ok(error) => error.message,
        Err(_) => format!("veilshare answered with HTTP {}", response.status()),
    }
}

fn unreachable_error(error: gloo_net::Error) -> Problem {
    format!("cannot reach veilshare ({error}); is it still running?")
}

/// Sends `request` and reads its JSON answer, or the API's error in plain words.
async fn json<T: serde::de::DeserializeOwned>(request: RequestBuilder) -> Result<T, Problem> {
    answer(request.send().await).await
}

/// `POST path` with `body` as JSON; its JSON answer, or the API's error in plain words.
async fn post_json<T: serde::de::DeserializeOwned>(
    path: &str,
    body: &impl serde::Serialize,
) -> Result<T, Problem> {
    let request = Request::post(path).json(body).map_err(|e| e.to_string())?;
    answer(request.send().await).await
}

/// A response's JSON, or what went wrong in plain words.
async fn answer<T: serde::de::DeserializeOwned>(
    sent: Result<gloo_net::http::Response, gloo_net::Error>,
) -> Result<T, Problem> {
    let response = sent.map_err(unreachable_error)?;
    if !response.ok() {
        return Err(error_of(response).await);
    }
    response.json().await.map_err(|e| e.to_string())
}

/// `GET /api/status`.
pub async fn status() -> Result<Status, Problem> {
    json(Request::get("/api/status")).await
}

/// `GET /api/shares`.
pub async fn shares() -> Result<Vec<ShareView>, Problem> {
    json(Request::get("/api/shares")).await
}

/// `DELETE /api/shares/{id}`.
pub async fn revoke(id: &ShareId) -> Result<ShareView, Problem> {
    json(Request::delete(&format!("/api/shares/{id}"))).await
}

/// `GET /api/downloads`: the Get panel's fetches.
pub async fn gets() -> Result<Vec<veilshare_shared::GetView>, Problem> {
    json(Request::get("/api/downloads")).await
}

/// `POST /api/downloads`: starts fetching a share into the downloads folder.
pub async fn start_get(
    request: &veilshare_shared::StartGet,
) -> Result<veilshare_shared::GetView, Problem> {
    post_json("/api/downloads", request).await
}

/// `POST /api/downloads/{id}/pause`.
pub async fn pause_get(id: &str) -> Result<veilshare_shared::GetView, Problem> {
    let id = String::from(js_sys::encode_uri_component(id));
    json(Request::post(&format!("/api/downloads/{id}/pause"))).await
}

/// `POST /api/downloads/{id}/resume`.
pub async fn resume_get(id: &str) -> Result<veilshare_shared::GetView, Problem> {
    let id = String::from(js_sys::encode_uri_component(id));
    json(Request::post(&format!("/api/downloads/{id}/resume"))).await
}

/// `DELETE /api/downloads/{id}`: cancels (an unfinished one) or removes it from the list.
pub async fn remove_get(id: &str) -> Result<(), Problem> {
    let id = String::from(js_sys::encode_uri_component(id));
    let response = Request::delete(&format!("/api/downloads/{id}"))
        .send()
        .await
        .map_err(unreachable_error)?;
    if !response.ok() {
        return Err(error_of(response).await);
    }
    Ok(())
}

/// `GET /api/settings/downloads`: the folder fetched files go to.
pub async fn download_settings() -> Result<veilshare_shared::DownloadSettings, Problem> {
    json(Request::get("/api/settings/downloads")).await
}

/// `PUT /api/settings/downloads`: chooses that folder.
pub async fn set_download_folder(
    folder: &str,
) -> Result<veilshare_shared::DownloadSettings, Problem> {
    let settings = veilshare_shared::DownloadSettings {
        folder: folder.to_owned(),
    };
    let request = Request::put("/api/settings/downloads")
        .json(&settings)
        .map_err(|e| e.to_string())?;
    answer(request.send().await).await
}

/// `GET /api/settings/bridges`: the saved bridge settings and the programs found.
pub async fn bridge_settings() -> Result<veilshare_shared::BridgesView, Problem> {
    json(Request::get("/api/settings/bridges")).await
}

/// `PUT /api/settings/bridges`: saves bridge settings; Tor reconnects with them.
pub async fn set_bridge_settings(
    settings: &veilshare_shared::BridgeSettings,
) -> Result<veilshare_shared::BridgesView, Problem> {
    let request = Request::put("/api/settings/bridges")
        .json(settings)
        .map_err(|e| e.to_string())?;
    answer(request.send().await).await
}

/// `DELETE /api/shares/{id}/items/{item}`: deletes one upload a drop box received.
pub async fn delete_item(id: &ShareId, item: &str) -> Result<ShareView, Problem> {
    let item = String::from(js_sys::encode_uri_component(item));
    json(Request::delete(&format!("/api/shares/{id}/items/{item}"))).await
}

/// `POST /api/shares/{id}/recipients`: adds a named recipient (their link follows in the
/// share's updates once their onion service is launched).
pub async fn add_recipient(
    id: &ShareId,
    name: &str,
) -> Result<veilshare_shared::RecipientView, Problem> {
    let request = veilshare_shared::AddRecipient {
        name: name.to_owned(),
    };
    post_json(&format!("/api/shares/{id}/recipients"), &request).await
}

/// `DELETE /api/shares/{id}/recipients/{name}`: revokes one recipient.
pub async fn revoke_recipient(
    id: &ShareId,
    name: &str,
) -> Result<veilshare_shared::RecipientView, Problem> {
    let name = String::from(js_sys::encode_uri_component(name));
    json(Request::delete(&format!(
        "/api/shares/{id}/recipients/{name}"
    )))
    .await
}

/// `POST /api/inspect`: the identifying metadata in `file`, before it is shared (`None`:
/// nothing found). The file goes to veilshare on this computer and is not kept.
pub async fn inspect(
    file: &web_sys::File,
) -> Result<Option<veilshare_shared::MetadataReport>, Problem> {
    let name = String::from(js_sys::encode_uri_component(&file.name()));
    let request = Request::post(&format!("/api/inspect?name={name}"))
        .header("content-type", "application/octet-stream")
        .body(wasm_bindgen::JsValue::from(file.clone()))
        .map_err(|e| e.to_string())?;
    answer(request.send().await).await
}

/// `GET /api/shares/{id}/log`: the share's history, and whether its hash chain holds.
pub async fn share_log(id: &ShareId) -> Result<veilshare_shared::AuditLogView, Problem> {
    json(Request::get(&format!("/api/shares/{id}/log"))).await
}

/// `POST /api/mirrors`: resolves when the mirror is a share (fetching can take a while).
pub async fn mirror(request: &veilshare_shared::CreateMirror) -> Result<ShareView, Problem> {
    post_json("/api/mirrors", request).await
}

/// `POST /api/dropboxes`: a new drop box.
pub async fn create_dropbox(
    request: &veilshare_shared::CreateDropBox,
) -> Result<ShareView, Problem> {
    post_json("/api/dropboxes", request).await
}

/// Follows `/api/events` until the socket closes, handing each event to `on_event`.
pub async fn follow_events(on_event: impl Fn(Event)) -> Problem {
    let Some(location) = web_sys::window().map(|w| w.location()) else {
        return "no window".into();
    };
    let host = location.host().unwrap_or_default();
    let mut socket = match WebSocket::open(&format!("ws://{host}/api/events")) {
        Ok(socket) => socket,
        Err(error) => return format!("cannot follow veilshare's events ({error})"),
    };
    while let Some(message) = socket.next().await {
        match message {
            Ok(Message::Text(text)) => {
                if let Ok(event) = serde_json::from_str::<Event>(&text) {
                    on_event(event);
                }
            }
            Ok(Message::Bytes(_)) => {}
            Err(error) => return format!("lost the live updates ({error})"),
        }
    }
    "lost the live updates (veilshare closed the connection)".into()
}

/// An upload in flight: keeps the request and its listeners alive.
pub struct Upload {
    xhr: web_sys::XmlHttpRequest,
    _listeners: Vec<Closure<dyn FnMut(web_sys::ProgressEvent)>>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upload")
    }
}

impl Upload {
    /// Stops the upload; the server keeps nothing of it.
    pub fn abort(&self) {
        let _ = self.xhr.abort();
    }
}

/// Posts `form` to `/api/shares?upload=<id>`; `progress(sent, total)` while the browser sends,
/// then `done` with the new share or the problem.
pub fn upload(
    upload_id: &str,
    form: &web_sys::FormData,
    progress: impl Fn(f64, f64) + 'static,
    done: impl Fn(Result<ShareView, Problem>) + 'static,
) -> Result<Upload, Problem> {
    let xhr = web_sys::XmlHttpRequest::new().map_err(|_| "the browser cannot upload".to_owned())?;
    xhr.open("POST", &format!("/api/shares?upload={upload_id}"))
        .map_err(|_| "the browser cannot upload".to_owned())?;
    let on_progress =
        Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |event: web_sys::ProgressEvent| {
            if event.length_computable() {
                progress(event.loaded(), event.total());
            }
        });
    xhr.upload()
        .map_err(|_| "the browser cannot report upload progress".to_owned())?
        .set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
    let done = std::rc::Rc::new(done);
    let finished = {
        let xhr = xhr.clone();
        let done = done.clone();
        Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |_| {
            let status = xhr.status().unwrap_or(0);
            let text = xhr.response_text().ok().flatten().unwrap_or_default();
            let result = if (200..300).contains(&status) {
                serde_json::from_str::<ShareView>(&text)
                    .map_err(|e| format!("veilshare's answer was not understood ({e})"))
            } else if let Ok(error) = serde_json::from_str::<ApiError>(&text) {
                Err(error.message)
            } else {
                Err(format!("the upload failed (HTTP {status})"))
            };
            done(result);
        })
    };
    xhr.set_onload(Some(finished.as_ref().unchecked_ref()));
    let failed = Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |_| {
        done(Err(
            "the upload broke off: veilshare stopped or the connection was lost; nothing was kept"
                .into(),
        ));
    });
    xhr.set_onerror(Some(failed.as_ref().unchecked_ref()));
    xhr.send_with_opt_form_data(Some(form))
        .map_err(|_| "the browser could not send the files".to_owned())?;
    Ok(Upload {
        xhr,
        _listeners: vec![on_progress, finished, failed],
    })
}
