//! The management UI's assets, embedded at build time (see `build.rs`): `cargo xtask dist`
//! builds the Yew front end and sets `VEILSHARE_UI_DIR`. A build without them serves a page
//! that says how to build the UI.
//!
//! Invariants: the index carries a strict CSP (scripts and WASM from this origin only, nothing
//! inline, no other origin anywhere), and an asset is served compressed only when the browser
//! accepts that encoding.

use std::{collections::HashMap, sync::OnceLock};

use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

/// One embedded file, with its precompressed forms.
#[derive(Debug)]
pub struct Asset {
    /// File name under `/ui/`.
    pub name: &'static str,
    /// The bytes as they are.
    pub identity: &'static [u8],
    /// Brotli-compressed, when built.
    pub br: Option<&'static [u8]>,
    /// Gzip-compressed, when built.
    pub gz: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The policy of the UI page: everything from this origin, nothing inline but WASM compilation.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

fn etags() -> &'static HashMap<&'static str, String> {
    static ETAGS: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let hash = blake3::hash(asset.identity).to_hex();
                (asset.name, format!("\"{}\"", &hash[..32]))
            })
            .collect()
    })
}

/// Routes that serve the UI's static assets.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/ui/{file}", get(serve_asset))
}

async fn serve_asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match find(&file) {
        Some(asset) => respond(asset, &headers),
        None => (StatusCode::NOT_FOUND, "no such UI file").into_response(),
    }
}

/// `asset` in the best encoding the request accepts, with its ETag (and 304 when it matches).
fn respond(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let etag = etags().get(asset.name).cloned().unwrap_or_default();
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let (body, encoding) = choose_encoding(asset, headers);
        let mut response = body.into_response();
        if let Some(encoding) = encoding {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        let mime = mime_guess::from_path(asset.name).first_or_octet_stream();
        if let Ok(value) = HeaderValue::from_str(mime.as_ref()) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// The best form of `asset` the request accepts: brotli, else gzip, else as is.
fn choose_encoding(asset: &Asset, headers: &HeaderMap) -> (&'static [u8], Option<&'static str>) {
    let accepts = |encoding: &str| {
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|item| {
                let mut parts = item.split(';');
                parts.next().is_some_and(|name| name.trim() == encoding)
                    && parts.all(|p| p.trim() != "q=0")
            })
    };
    match (asset.br, asset.gz) {
        (Some(br), _) if accepts("br") => (br, Some("br")),
        (_, Some(gz)) if accepts("gzip") => (gz, Some("gzip")),
        _ => (asset.identity, None),
    }
}

/// The UI's entry page. `authenticated` tells whether the browser holds the session cookie.
pub fn index(authenticated: bool, headers: &HeaderMap) -> Response {
    if authenticated && let Some(asset) = find("index.html") {
        let mut response = respond(asset, headers);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        return response;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    static ASSET: Asset = Asset {
        name: "app.js",
        identity: b"plain",
        br: Some(b"brotli"),
        gz: Some(b"gzip"),
    };

    fn chosen(accept: Option<&str>) -> Option<&'static str> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(accept).expect("header"),
            );
        }
        choose_encoding(&ASSET, &headers).1
    }

    #[test]
    fn the_best_accepted_encoding_is_served() {
        assert_eq!(chosen(Some("gzip, deflate, br, zstd")), Some("br"));
        assert_eq!(chosen(Some("gzip")), Some("gzip"));
        assert_eq!(chosen(Some("br;q=0, gzip;q=0.5")), Some("gzip"));
        assert_eq!(chosen(Some("identity")), None);
        assert_eq!(chosen(None), None);
        let plain = Asset {
            br: None,
            gz: None,
            ..ASSET
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(choose_encoding(&plain, &headers), (&b"plain"[..], None));
    }
}
