//! The local API and UI host on 127.0.0.1: share creation by streamed multipart upload, share
//! views, revocation, live events over a WebSocket, and local authentication.
//!
//! Invariants:
//! - Every request's `Host` must be `127.0.0.1:<port>` or `localhost:<port>` (DNS rebinding);
//!   WebSocket `Origin`, when sent, must be one of those origins.
//! - Every `/api/` route needs the installation token, as `Authorization: Bearer` or as the
//!   HttpOnly, SameSite=Strict cookie that the launch URL (`/?token=…`) sets.
//! - An upload is streamed into the blob store chunk by chunk; it becomes a share only when
//!   every part arrived and was imported. A refused or broken upload leaves nothing visible.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{
        DefaultBodyLimit, Multipart, Query, Request, State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{delete, get, post},
};
use bytes::Bytes;
use veilshare_shared::{
    ApiError, CreateShareFields, ErrorKind, Event, ShareId, ShareView, Status, TorStatus, form,
};

use crate::{
    app::{Context, mirror::MirrorError},
    core::{
        shares::ShareError,
        store::{NewFileError, NewFiles, Pieces, StoreError, StoredFile},
    },
    receive::error::ReceiveErrorKind,
    serve::public::upload::UploadGuard,
};

/// Name of the session cookie.
pub const COOKIE: &str = "veilshare_session";
/// Size of the pieces an upload is handed to the store in.
const IMPORT_PIECE: usize = 1 << 20;

/// Settings and shared state of the local API.
#[derive(Debug, Clone)]
pub struct AdminState {
    node: Context,
    token: Arc<str>,
    port: u16,
    /// The session cookies handed out by launches since start, newest last: random values
    /// that are not the token and die with the process (so a cookie that leaks to another
    /// local web service is worth nothing once veilshare restarts, and never shows the token).
    sessions: Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
    /// Launch codes not used yet, with when they were made: the launch URL carries one of
    /// these, never the token. A URL handed to a browser shows on its command line (`ps`) and
    /// stays in its history; a code opens one session, once, within [`LAUNCH_CODE_LIFE`].
    launch_codes: Arc<std::sync::Mutex<std::collections::VecDeque<(String, Instant)>>>,
}

/// Sessions kept at once (one per launch: a browser, a tab opened from the launch URL…).
const MAX_SESSIONS: usize = 16;

/// Launch codes kept at once (the oldest is forgotten beyond).
const MAX_LAUNCH_CODES: usize = 8;

/// How long a launch code can be used.
pub const LAUNCH_CODE_LIFE: Duration = Duration::from_secs(600);

impl AdminState {
    /// State for a listener on `port` of the node whose handles are `node`.
    pub fn new(node: Context, token: String, port: u16) -> Self {
        Self {
            node,
            token: token.into(),
            port,
            sessions: Arc::default(),
            launch_codes: Arc::default(),
        }
    }

    /// A new launch code (the launch URL is `<api>/?launch=<code>`), good for one sign-in
    /// within [`LAUNCH_CODE_LIFE`].
    pub fn new_launch_code(&self) -> String {
        let code = random_secret();
        if let Ok(mut codes) = self.launch_codes.lock() {
            if codes.len() >= MAX_LAUNCH_CODES {
                codes.pop_front();
            }
            codes.push_back((code.clone(), Instant::now()));
        }
        code
    }

    /// Uses up a launch code: whether it was valid.
    fn take_launch_code(&self, presented: &str) -> bool {
        let Ok(mut codes) = self.launch_codes.lock() else {
            return false;
        };
        codes.retain(|(_, made)| made.elapsed() < LAUNCH_CODE_LIFE);
        let found = codes.iter().position(|(code, _)| {
            constant_time_eq::constant_time_eq(code.as_bytes(), presented.as_bytes())
        });
        found.is_some_and(|index| codes.remove(index).is_some())
    }

    /// A new session, remembered (the oldest forgotten beyond [`MAX_SESSIONS`]).
    fn new_session(&self) -> String {
        let session = random_secret();
        if let Ok(mut sessions) = self.sessions.lock() {
            if sessions.len() >= MAX_SESSIONS {
                sessions.pop_front();
            }
            sessions.push_back(session.clone());
        }
        session
    }

    /// Whether `presented` is a live session.
    fn session_matches(&self, presented: &str) -> bool {
        self.sessions.lock().is_ok_and(|sessions| {
            sessions.iter().any(|session| {
                constant_time_eq::constant_time_eq(session.as_bytes(), presented.as_bytes())
            })
        })
    }
}

/// 256 random bits as lowercase base32.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase()
}

/// An API error: status, and JSON body with a message for people.
#[derive(Debug)]
pub struct Failure(StatusCode, ApiError);

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let status = match kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::SourceEnded => StatusCode::GONE,
            ErrorKind::SourceBusy => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::SourceUnreachable => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(
            status,
            ApiError {
                kind,
                message: message.into(),
            },
        )
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.1.message
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        if error.is_no_space() {
            return Self::new(
                ErrorKind::InsufficientStorage,
                "the disk that holds veilshare's data is full; free some space and try again",
            );
        }
        if matches!(error, StoreError::Busy) {
            return Self::new(ErrorKind::Unavailable, error.to_string());
        }
        tracing::error!(error = %error, "storage failed");
        Self::new(
            ErrorKind::Internal,
            format!("storage failed ({error}); see veilshare's log"),
        )
    }
}

impl From<crate::app::bridges::BridgeSettingsError> for Failure {
    fn from(error: crate::app::bridges::BridgeSettingsError) -> Self {
        use crate::app::bridges::BridgeSettingsError;
        match error {
            BridgeSettingsError::Invalid(_) | BridgeSettingsError::CommandLine => {
                Self::bad_request(error.to_string())
            }
            BridgeSettingsError::Storage(_) => {
                tracing::error!(%error, "bridge settings");
                Self::new(ErrorKind::Internal, error.to_string())
            }
        }
    }
}

impl From<crate::app::gets::GetError> for Failure {
    fn from(error: crate::app::gets::GetError) -> Self {
        use crate::app::gets::GetError;
        match error {
            GetError::BadRequest(message) => Self::bad_request(message),
            GetError::NotFound(_) => Self::new(ErrorKind::NotFound, error.to_string()),
            GetError::Storage(_) => {
                tracing::error!(%error, "downloads");
                Self::new(ErrorKind::Internal, error.to_string())
            }
        }
    }
}

impl From<ShareError> for Failure {
    fn from(error: ShareError) -> Self {
        match error {
            ShareError::NotFound(id) => Self::new(
                ErrorKind::NotFound,
                format!("there is no share with id {id}"),
            ),
            ShareError::ItemNotFound(item) => Self::new(
                ErrorKind::NotFound,
                format!("there is no item {item} in this drop box"),
            ),
            ShareError::RecipientNotFound(name) => Self::new(
                ErrorKind::NotFound,
                format!("this share has no recipient named {name:?}"),
            ),
            ShareError::Refused(message) => Self::new(ErrorKind::BadRequest, message),
            ShareError::Store(error) => error.into(),
            ShareError::Publish(error) => Self::new(ErrorKind::Unavailable, error.0),
        }
    }
}

/// The local router.
pub fn router(state: AdminState, ui: Router<AdminState>) -> Router {
    let api = Router::new()
        .route("/api/status", get(status))
        .route(
            "/api/shares",
            get(list_shares)
                .post(create_share)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/api/shares/{id}", get(get_share).delete(revoke_share))
        .route("/api/shares/{id}/log", get(share_log))
        .route(
            "/api/inspect",
            post(inspect).layer(DefaultBodyLimit::max(
                crate::core::metadata::MAX_INSPECTED as usize,
            )),
        )
        .route("/api/mirrors", post(create_mirror))
        .route("/api/dropboxes", post(create_dropbox))
        .route("/api/shares/{id}/items/{item}", delete(delete_item))
        .route("/api/downloads", get(list_gets).post(start_get))
        .route("/api/downloads/{id}", delete(remove_get))
        .route("/api/downloads/{id}/pause", post(pause_get))
        .route("/api/downloads/{id}/resume", post(resume_get))
        .route(
            "/api/settings/downloads",
            get(download_settings).put(set_download_settings),
        )
        .route(
            "/api/settings/bridges",
            get(bridge_settings).put(set_bridge_settings),
        )
        .route("/api/shares/{id}/recipients", post(add_recipient))
        .route(
            "/api/shares/{id}/recipients/{name}",
            delete(revoke_recipient),
        )
        .route("/api/shares/{id}/items/{item}/files/{name}", get(item_file))
        .route("/api/events", get(events))
        .route("/api/launch", post(new_launch))
        .fallback(api_not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(launch))
        .merge(api)
        .merge(ui)
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .with_state(state)
}

fn allowed_origin(state: &AdminState, origin: &str) -> bool {
    origin == format!("http://127.0.0.1:{}", state.port)
        || origin == format!("http://localhost:{}", state.port)
}

async fn check_host(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let ok =
        host == format!("127.0.0.1:{}", state.port) || host == format!("localhost:{}", state.port);
    if !ok {
        return Failure::new(
            ErrorKind::Forbidden,
            "this address only answers as 127.0.0.1 or localhost with its port",
        )
        .into_response();
    }
    next.run(request).await
}

/// What a request offers as its credentials.
enum Credential {
    /// `Authorization: Bearer <token>` (the CLI, scripts).
    Token(String),
    /// The session cookie (the UI, after a launch).
    Session(String),
}

/// The credential of a request: the bearer token, else the session cookie.
fn presented(headers: &HeaderMap) -> Option<Credential> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return value
            .strip_prefix("Bearer ")
            .map(|t| Credential::Token(t.trim().to_owned()));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| Credential::Session(value.to_owned()))
}

fn token_matches(state: &AdminState, presented: &str) -> bool {
    constant_time_eq::constant_time_eq(presented.as_bytes(), state.token.as_bytes())
}

fn signed_in(state: &AdminState, headers: &HeaderMap) -> Option<bool> {
    presented(headers).map(|credential| match credential {
        Credential::Token(token) => token_matches(state, &token),
        Credential::Session(session) => state.session_matches(&session),
    })
}

/// Why a request made by another web page is refused, if it is one. `SameSite` cookies do not
/// help here: every port of 127.0.0.1 is the same site, so a page served by any other local
/// program could send the cookie with a form. Browsers say where a request comes from
/// (`Origin` on everything but plain GETs, `Sec-Fetch-Site` on everything); programs such as
/// the CLI send neither.
fn from_another_page(state: &AdminState, headers: &HeaderMap) -> Option<&'static str> {
    if let Some(origin) = headers.get(header::ORIGIN)
        && !allowed_origin(state, origin.to_str().unwrap_or_default())
    {
        return Some(
            "this API answers only its own pages, and this request came from another (Origin)",
        );
    }
    match headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or_default())
    {
        None | Some("same-origin" | "none") => None,
        Some(_) => Some(
            "this API answers only its own pages, and this request came from another (Sec-Fetch-Site)",
        ),
    }
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if let Some(why) = from_another_page(&state, request.headers()) {
        return Failure::new(ErrorKind::Forbidden, why).into_response();
    }
    match signed_in(&state, request.headers()) {
        Some(true) => next.run(request).await,
        Some(false) => Failure::new(
            ErrorKind::Unauthorized,
            "wrong token; open the launch URL that veilshare printed, or use the token in the api-token file of its data directory",
        )
        .into_response(),
        None => Failure::new(
            ErrorKind::Unauthorized,
            "this API needs the token: open the launch URL that veilshare printed, or send `Authorization: Bearer <token>`",
        )
        .into_response(),
    }
}

async fn api_not_found() -> Failure {
    Failure::new(ErrorKind::NotFound, "no such API route")
}

/// `/`: with `?launch=` (a one-time code, what veilshare prints and opens) or `?token=` (for
/// whoever holds the token file), sets a session cookie and drops the secret from the address
/// bar; without, hands over to the UI.
async fn launch(
    State(state): State<AdminState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let valid = match (query.get("launch"), query.get("token")) {
        (Some(code), _) => state.take_launch_code(code),
        (None, Some(token)) => token_matches(&state, token),
        (None, None) => {
            return crate::app::ui::index(signed_in(&state, &headers) == Some(true), &headers);
        }
    };
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            Html("<!doctype html><title>veilshare</title><p>This launch link was used already or is too old (a link works once, for ten minutes). Run <code>veilshare serve</code> again: it hands over to the running app with a new link.</p>"),
        )
            .into_response();
    }
    let mut response = Redirect::to("/").into_response();
    // A session of its own, not the token: the token stays in the data directory.
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        state.new_session()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `POST /api/launch`: a new one-time launch code (`{"code": …}`), for a second `veilshare
/// serve` to open the running app without putting the token on a command line.
async fn new_launch(State(state): State<AdminState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "code": state.new_launch_code() }))
}

async fn status(State(state): State<AdminState>) -> Json<Status> {
    Json(Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        tor: state
            .node
            .tor
            .as_ref()
            .map_or(TorStatus::Disabled, |tor| tor.status()),
        p2p: state.node.endpoints.status(),
        public_base: state.node.public_base.clone(),
        bridges: state.node.tor_setup.get().bridges_in_use(),
    })
}

/// `GET /api/settings/bridges`: the saved bridge settings, the transport programs found on
/// `PATH`, and the bridges in use with what became of each.
async fn bridge_settings(
    State(state): State<AdminState>,
) -> Result<Json<veilshare_shared::BridgesView>, Failure> {
    Ok(Json(crate::app::bridges::view(
        &state.node.data_dir,
        &state.node.tor_setup,
    )?))
}

/// `PUT /api/settings/bridges`: checks, saves and applies bridge settings (`400` with the
/// bad line's number; the saved ones stay).
async fn set_bridge_settings(
    State(state): State<AdminState>,
    Json(settings): Json<veilshare_shared::BridgeSettings>,
) -> Result<Json<veilshare_shared::BridgesView>, Failure> {
    Ok(Json(crate::app::bridges::save(
        &state.node.data_dir,
        &state.node.tor_setup,
        settings,
    )?))
}

async fn list_shares(State(state): State<AdminState>) -> Json<Vec<ShareView>> {
    Json(state.node.shares.list())
}

fn parse_id(id: String) -> Result<ShareId, Failure> {
    ShareId::try_from(id).map_err(|message| Failure::new(ErrorKind::NotFound, message))
}

async fn get_share(
    State(state): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<ShareView>, Failure> {
    let id = parse_id(id)?;
    state
        .node
        .shares
        .view(&id)
        .map(Json)
        .ok_or_else(|| ShareError::NotFound(id).into())
}

async fn revoke_share(
    State(state): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<ShareView>, Failure> {
    let id = parse_id(id)?;
    Ok(Json(state.node.shares.revoke(&id).await?))
}

async fn events(State(state): State<AdminState>, upgrade: WebSocketUpgrade) -> Response {
    // Pages of other origins were refused with every other API request (`require_token`).
    let receiver = state.node.shares.events().subscribe();
    upgrade.on_upgrade(move |socket| forward_events(socket, receiver))
}

/// Bytes of events a subscriber may have queued and unsent; one that falls further behind is
/// closed (the UI reconnects and reloads), so a client that stops reading costs at most this.
const EVENTS_UNSENT: usize = 4 << 20;

/// Forwards the bus to one socket. The bus is always drained at once (an event waiting for a
/// slow socket in the bus's ring would keep the last thousand events, each a whole share view,
/// in memory); what the socket has not taken yet waits in a queue bounded by [`EVENTS_UNSENT`].
/// A subscriber that fell behind is closed rather than left with a silent gap.
async fn forward_events(socket: WebSocket, mut receiver: tokio::sync::broadcast::Receiver<Event>) {
    use futures::{SinkExt, StreamExt};
    use tokio::sync::broadcast::error::RecvError;
    let (mut sink, mut incoming) = socket.split();
    let budget = Arc::new(tokio::sync::Semaphore::new(EVENTS_UNSENT));
    let (queue, mut queued) =
        tokio::sync::mpsc::unbounded_channel::<(String, tokio::sync::OwnedSemaphorePermit)>();
    let write = async move {
        while let Some((json, _budget)) = queued.recv().await {
            if sink.send(Message::Text(json.into())).await.is_err() {
                return;
            }
        }
    };
    let read = async move {
        loop {
            tokio::select! {
                event = receiver.recv() => {
                    let event = match event {
                        Ok(event) => event,
                        Err(RecvError::Lagged(missed)) => {
                            tracing::debug!(missed, "an event subscriber fell behind; closing it");
                            return;
                        }
                        Err(RecvError::Closed) => return,
                    };
                    let Ok(json) = serde_json::to_string(&event) else { continue };
                    // An event larger than the budget goes alone.
                    let cost = u32::try_from(json.len().min(EVENTS_UNSENT)).unwrap_or(u32::MAX);
                    let Ok(permit) = budget.clone().try_acquire_many_owned(cost) else {
                        tracing::debug!("an event subscriber stopped reading; closing it");
                        return;
                    };
                    if queue.send((json, permit)).is_err() {
                        return;
                    }
                }
                message = incoming.next() => match message {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
            }
        }
    };
    // Whichever ends first ends both: the socket is dropped, and with it the connection.
    tokio::select! {
        () = write => {}
        () = read => {}
    }
}

/// Makes an upload id safe to echo: the client's when sane, else a fresh one.
fn upload_id(query: &HashMap<String, String>) -> String {
    query
        .get(form::UPLOAD_ID_QUERY)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .cloned()
        .unwrap_or_else(|| crate::core::shares::new_share_id().to_string())
}

async fn create_mirror(
    State(state): State<AdminState>,
    Json(request): Json<veilshare_shared::CreateMirror>,
) -> Result<(StatusCode, Json<ShareView>), Failure> {
    let view = crate::app::mirror::mirror(&state.node, request)
        .await
        .map_err(|error| match error {
            MirrorError::BadRequest(message) => Failure::bad_request(message),
            MirrorError::Source(error) => {
                let kind = match error.kind() {
                    ReceiveErrorKind::Refused(refusal) if refusal.is_final() => {
                        ErrorKind::SourceEnded
                    }
                    ReceiveErrorKind::Refused(_) => ErrorKind::SourceBusy,
                    ReceiveErrorKind::Unreachable => ErrorKind::SourceUnreachable,
                    ReceiveErrorKind::BadSource => ErrorKind::BadRequest,
                    ReceiveErrorKind::Io => ErrorKind::Internal,
                    _ => ErrorKind::Upstream,
                };
                Failure::new(kind, format!("cannot mirror the source: {error:#}"))
            }
            MirrorError::Unavailable(message) => Failure::new(ErrorKind::Unavailable, message),
            MirrorError::Share(error) => error.into(),
        })?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `POST /api/dropboxes`: a new drop box (a share that receives).
async fn create_dropbox(
    State(state): State<AdminState>,
    Json(request): Json<veilshare_shared::CreateDropBox>,
) -> Result<(StatusCode, Json<ShareView>), Failure> {
    let request = request.checked().map_err(Failure::bad_request)?;
    if let Some(recipient) = &request.encrypt_to
        && let Err(error) = recipient.parse::<age::x25519::Recipient>()
    {
        return Err(Failure::bad_request(format!(
            "encrypt_to is not a valid age recipient ({error}); give the public key `age-keygen` prints"
        )));
    }
    if request.restricted && state.node.tor.is_none() {
        return Err(Failure::bad_request(
            "a restricted drop box needs Tor, and veilshare runs with --no-tor".to_owned(),
        ));
    }
    let shares = &state.node.shares;
    let permit = shares.store().import_permit().await?;
    let view = shares.create_dropbox(request, permit).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `POST /api/inspect?name=N`, the file's bytes as the body: what identifying metadata the file
/// holds, before it is shared (`null`: nothing found, or not a format that carries any). Nothing
/// is stored. Files over [`crate::core::metadata::MAX_INSPECTED`] are refused (413).
async fn inspect(
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Json<Option<veilshare_shared::MetadataReport>> {
    let name = query.get("name").cloned().unwrap_or_default();
    let report = tokio::task::spawn_blocking(move || {
        crate::core::metadata::inspect(&body)
            .filter(|i| !i.found.is_empty() || i.note.is_some())
            .map(|i| i.report(&name, false))
    })
    .await
    .ok()
    .flatten();
    Json(report)
}

/// `GET /api/shares/{id}/log`: the share's history for its owner, and whether its hash chain
/// holds (`broken` says where it does not).
async fn share_log(
    State(state): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<veilshare_shared::AuditLogView>, Failure> {
    let id = parse_id(id)?;
    let shares = &state.node.shares;
    if shares.view(&id).is_none() {
        return Err(ShareError::NotFound(id).into());
    }
    let log = shares.audit().read(&id).await.map_err(|error| {
        Failure::new(
            ErrorKind::Internal,
            format!("cannot read the share's log: {error}"),
        )
    })?;
    Ok(Json(log))
}

/// `POST /api/shares/{id}/recipients`: adds a named recipient (their own onion service and
/// key) to a share that has named recipients. `201` with the recipient; their link follows
/// in the share's updates once the service is launched.
async fn add_recipient(
    State(state): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(request): Json<veilshare_shared::AddRecipient>,
) -> Result<(StatusCode, Json<veilshare_shared::RecipientView>), Failure> {
    let id = parse_id(id)?;
    if state.node.tor.is_none() {
        return Err(Failure::new(
            ErrorKind::Unavailable,
            "a recipient needs Tor, and veilshare runs with --no-tor".to_owned(),
        ));
    }
    let added = state.node.shares.add_recipient(&id, &request.name).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// `DELETE /api/shares/{id}/recipients/{name}`: revokes one recipient: their address and key
/// stop working for good; the other recipients keep theirs.
async fn revoke_recipient(
    State(state): State<AdminState>,
    axum::extract::Path((id, name)): axum::extract::Path<(String, String)>,
) -> Result<Json<veilshare_shared::RecipientView>, Failure> {
    let id = parse_id(id)?;
    Ok(Json(state.node.shares.revoke_recipient(&id, &name).await?))
}

/// `GET /api/downloads`: the Get panel's fetches, oldest first.
async fn list_gets(State(state): State<AdminState>) -> Json<Vec<veilshare_shared::GetView>> {
    Json(state.node.gets.list())
}

/// `POST /api/downloads`: fetch a share (links or tickets of one share) into the downloads
/// folder; `201` with the fetch, whose progress follows as `get_updated` events.
async fn start_get(
    State(state): State<AdminState>,
    Json(request): Json<veilshare_shared::StartGet>,
) -> Result<(StatusCode, Json<veilshare_shared::GetView>), Failure> {
    Ok((
        StatusCode::CREATED,
        Json(state.node.gets.add(request).await?),
    ))
}

/// `POST /api/downloads/{id}/pause`: stops a fetch; its partial files are kept.
async fn pause_get(
    State(state): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<veilshare_shared::GetView>, Failure> {
    Ok(Json(state.node.gets.pause(&id).await?))
}

/// `POST /api/downloads/{id}/resume`: runs a paused or failed fetch again, from its partial
/// files.
async fn resume_get(
    State(state): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<veilshare_shared::GetView>, Failure> {
    Ok(Json(state.node.gets.resume(&id).await?))
}

/// `DELETE /api/downloads/{id}`: removes a fetch from the list (an unfinished one stops and
/// its partial files are deleted; saved files stay). `204`.
async fn remove_get(
    State(state): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode, Failure> {
    state.node.gets.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/settings/downloads`: where fetched files go.
async fn download_settings(
    State(state): State<AdminState>,
) -> Json<veilshare_shared::DownloadSettings> {
    Json(state.node.gets.settings())
}

/// `PUT /api/settings/downloads`: chooses the folder fetched files go to (it must exist).
async fn set_download_settings(
    State(state): State<AdminState>,
    Json(settings): Json<veilshare_shared::DownloadSettings>,
) -> Result<Json<veilshare_shared::DownloadSettings>, Failure> {
    Ok(Json(state.node.gets.set_settings(settings).await?))
}

/// `DELETE /api/shares/{id}/items/{item}`: deletes what a drop box received in one upload.
async fn delete_item(
    State(state): State<AdminState>,
    axum::extract::Path((id, item)): axum::extract::Path<(String, String)>,
) -> Result<Json<ShareView>, Failure> {
    let id = parse_id(id)?;
    let shares = &state.node.shares;
    shares.delete_item(&id, &item).await?;
    shares
        .view(&id)
        .map(Json)
        .ok_or_else(|| ShareError::NotFound(id).into())
}

/// `GET /api/shares/{id}/items/{item}/files/{name}`: a file a drop box received, to its owner.
async fn item_file(
    State(state): State<AdminState>,
    axum::extract::Path((id, item, name)): axum::extract::Path<(String, String, String)>,
) -> Result<Response, Failure> {
    let id = parse_id(id)?;
    let shares = &state.node.shares;
    let view = shares
        .view(&id)
        .ok_or_else(|| Failure::from(ShareError::NotFound(id.clone())))?;
    let file = view
        .dropbox
        .as_ref()
        .and_then(|dropbox| dropbox.items.iter().find(|i| i.id == item))
        .ok_or_else(|| Failure::from(ShareError::ItemNotFound(item.clone())))?
        .files
        .iter()
        .find(|f| f.name == name)
        .cloned()
        .ok_or_else(|| {
            Failure::new(
                ErrorKind::NotFound,
                format!("item {item} has no file named {name:?}"),
            )
        })?;
    let body = axum::body::Body::from_stream(shares.store().read_range(&file.hash, 0, file.size));
    let disposition = crate::serve::public::content_disposition(&file.name);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, file.size.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

async fn create_share(
    State(state): State<AdminState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<(StatusCode, Json<ShareView>), Failure> {
    use axum::extract::FromRequest;
    let upload_id = upload_id(&query);
    let guard = Arc::new(UploadGuard::default());
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    let request = Request::from_parts(
        parts,
        guard.watch(body, crate::transport::http::idle_deadline()),
    );
    let result = match Multipart::from_request(request, &state).await {
        Ok(multipart) => receive_upload(&state, &upload_id, &headers, multipart, &guard).await,
        Err(rejection) => Err(Failure::bad_request(rejection.body_text())),
    };
    if let Err(failure) = &result {
        // What the refused upload stored goes now, not at some later collection.
        let store = state.node.shares.store().clone();
        tokio::spawn(async move {
            store.collect_garbage().await;
        });
        tracing::info!(upload = %upload_id, reason = failure.message(), "upload refused");
        state.node.shares.events().publish(Event::UploadFailed {
            upload_id: upload_id.clone(),
            message: failure.message().to_owned(),
        });
    }
    result.map(|view| (StatusCode::CREATED, Json(view)))
}

async fn receive_upload(
    state: &AdminState,
    upload_id: &str,
    headers: &HeaderMap,
    mut multipart: Multipart,
    guard: &UploadGuard,
) -> Result<ShareView, Failure> {
    let store = state.node.shares.store().clone();
    let total = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let allowed = store.room_for_uploads().map_err(|e| {
        Failure::new(
            ErrorKind::Internal,
            format!("cannot read the free disk space: {e}"),
        )
    })?;
    if let Some(total) = total
        && total > allowed
    {
        return Err(no_room(total, allowed));
    }
    let permit = store.import_permit().await?;
    tracing::debug!(upload = %upload_id, "the upload holds the import gate");
    let mut fields = CreateShareFields::default();
    let mut files = NewFiles::default();
    let mut progress = Progress::new(state, upload_id, total);
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| Failure::bad_request(guard.explain(e)))?
    {
        let Some(file_name) = field.file_name().map(str::to_owned) else {
            let name = field.name().unwrap_or_default().to_owned();
            let value = read_text_field(&mut field, &name, guard).await?;
            fields.set(&name, &value).map_err(Failure::bad_request)?;
            if fields.restricted && state.node.tor.is_none() {
                return Err(Failure::bad_request(
                    "a restricted share needs Tor, and veilshare runs with --no-tor".to_owned(),
                ));
            }
            continue;
        };
        files.check_name(&file_name).map_err(Failure::bad_request)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
        let import = store.import_stream(&permit, crate::core::store::receiver_stream(rx));
        let pump = async {
            let mut crc = crc32fast::Hasher::new();
            let mut size = 0u64;
            let mut pieces = Pieces::new(IMPORT_PIECE);
            loop {
                let chunk = match field.chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(error) => {
                        let _ = tx.send(Err(io::Error::other("upload broke off"))).await;
                        return Err(Failure::bad_request(guard.explain(error)));
                    }
                };
                guard.delivered(chunk.len());
                size += chunk.len() as u64;
                if progress.received + chunk.len() as u64 > allowed {
                    let _ = tx.send(Err(io::Error::other("no room"))).await;
                    return Err(no_room(progress.received + chunk.len() as u64, allowed));
                }
                crc.update(&chunk);
                progress.add(chunk.len() as u64);
                if let Some(piece) = pieces.push(chunk)
                    && tx.send(Ok(piece)).await.is_err()
                {
                    // The store stopped reading: its error comes from the import.
                    break;
                }
            }
            if let Some(piece) = pieces.take() {
                let _ = tx.send(Ok(piece)).await;
            }
            drop(tx);
            Ok((size, crc.finalize()))
        };
        let started = Instant::now();
        let pump = async {
            let result = pump.await;
            tracing::debug!(elapsed = ?started.elapsed(), "upload part received");
            result
        };
        let (imported, pumped) = tokio::join!(import, pump);
        tracing::debug!(elapsed = ?started.elapsed(), "upload part imported");
        let (size, crc32) = pumped?;
        let temp_tag = imported?;
        let file = StoredFile {
            name: file_name,
            size,
            hash: crate::core::store::content_hash(temp_tag.hash()),
            crc32,
        };
        files.push(file, temp_tag);
        crate::core::crash::point("upload.part_stored");
    }
    progress.finish();
    if files.is_empty() {
        return Err(Failure::bad_request(
            "the upload has no files: send at least one file part",
        ));
    }
    let metadata = files
        .clean_metadata(&store, &permit, !fields.keep_metadata)
        .await
        .map_err(|error| match error {
            NewFileError::Store(error) => Failure::from(error),
            other => Failure::bad_request(other.to_string()),
        })?;
    let collection = store.store_collection(&permit, files.files()).await?;
    crate::core::crash::point("upload.collection_stored");
    let (files, temp_tags) = files.into_parts();
    let view = state
        .node
        .shares
        .create(upload_id, files, collection, fields, metadata, permit)
        .await?;
    drop(temp_tags);
    Ok(view)
}

fn no_room(wanted: u64, allowed: u64) -> Failure {
    Failure::new(
        ErrorKind::InsufficientStorage,
        format!(
            "not enough free disk space: the upload needs {} but only {} can be stored; free some space or share fewer files",
            veilshare_shared::human_size(wanted),
            veilshare_shared::human_size(allowed)
        ),
    )
}

async fn read_text_field(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
    guard: &UploadGuard,
) -> Result<String, Failure> {
    crate::serve::public::upload::read_text(field, name, 4096, guard)
        .await
        .map_err(Failure::bad_request)
}

/// Throttled upload progress events.
struct Progress<'a> {
    state: &'a AdminState,
    upload_id: &'a str,
    total: Option<u64>,
    received: u64,
    last: Instant,
}

impl<'a> Progress<'a> {
    fn new(state: &'a AdminState, upload_id: &'a str, total: Option<u64>) -> Self {
        Self {
            state,
            upload_id,
            total,
            received: 0,
            last: Instant::now(),
        }
    }

    fn add(&mut self, bytes: u64) {
        self.received += bytes;
        if self.last.elapsed() >= Duration::from_millis(100) {
            self.publish();
        }
    }

    fn finish(&mut self) {
        self.publish();
    }

    fn publish(&mut self) {
        self.last = Instant::now();
        self.state
            .node
            .shares
            .events()
            .publish(Event::UploadProgress {
                upload_id: self.upload_id.to_owned(),
                received: self.received,
                total: self.total,
            });
    }
}

/// Reads the installation token, creating it (mode 0600) at first start.
pub fn load_or_create_token(data_dir: &Path) -> io::Result<String> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt, os::unix::fs::PermissionsExt};
    let path = token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => {
            let mode = std::fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the token file was readable by others; making it private");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            return Ok(token.trim().to_owned());
        }
        Ok(_) => std::fs::remove_file(&path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = random_secret();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// Where the token lives.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("api-token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_map_to_statuses_people_can_act_on() {
        assert_eq!(
            Failure::from(StoreError::Busy).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let full = StoreError::Io {
            context: "writing".into(),
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        assert_eq!(Failure::from(full).0, StatusCode::INSUFFICIENT_STORAGE);
    }
}
