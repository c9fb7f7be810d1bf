//! Server-rendered HTML of the public site: no JavaScript, no external resource, everything
//! user-supplied escaped.

use std::fmt::Write;

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{STYLE, file_path};
use veilshare_shared::human_size;

use crate::core::{policy, shares::PublicShare};

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A duration in seconds for people: `2 days 3 hours`, `5 minutes`.
pub fn human_duration(secs: u64) -> String {
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    match secs {
        0..60 => plural(secs, "second"),
        60..3600 => plural(secs / 60, "minute"),
        3600..86_400 => {
            let (h, m) = (secs / 3600, secs % 3600 / 60);
            if m == 0 {
                plural(h, "hour")
            } else {
                format!("{} {}", plural(h, "hour"), plural(m, "minute"))
            }
        }
        _ => {
            let (d, h) = (secs / 86_400, secs % 86_400 / 3600);
            if h == 0 {
                plural(d, "day")
            } else {
                format!("{} {}", plural(d, "day"), plural(h, "hour"))
            }
        }
    }
}

/// A whole page: `body` (HTML, escaped by the caller) under `title`.
pub fn document(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>\n",
        escape(title)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// A page with a title and one message.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!("<h1>{}</h1><p>{}</p>", escape(title), escape(text));
    document(status, title, &body)
}

/// The page of a share.
pub fn share(share: &PublicShare, now: u64) -> Response {
    let record = &share.record;
    let title = record.label.as_deref().unwrap_or("Shared files");
    let total = record.content_size();
    let count = record.files.len();
    let mut body = String::new();
    let _ = write!(body, "<h1>{}</h1>", escape(title));
    let _ = write!(
        body,
        "<p>{} {}, {} in all.</p>",
        count,
        if count == 1 { "file" } else { "files" },
        human_size(total)
    );
    let mut limits = Vec::new();
    if let Some(remaining) = policy::remaining(&record.policy, &record.ledger) {
        limits.push(format!(
            "{remaining} {} left",
            if remaining == 1 {
                "download"
            } else {
                "downloads"
            }
        ));
    }
    if let Some(at) = record.policy.expires_at {
        limits.push(format!(
            "expires in {}",
            human_duration(at.saturating_sub(now))
        ));
    }
    if !limits.is_empty() {
        let _ = write!(
            body,
            "<p class=\"muted\">This share: {}.</p>",
            escape(&limits.join(", "))
        );
    }
    if share.accepts_downloads(now) {
        let what = if count == 1 {
            "Download".to_owned()
        } else {
            "Download all (zip)".to_owned()
        };
        let _ = write!(
            body,
            "<p><a class=\"button\" href=\"download\" download>{what}</a> <span class=\"muted\">{}</span></p>",
            human_size(total)
        );
    } else {
        body.push_str("<p>This share does not accept new downloads.</p>");
    }
    body.push_str(
        "<table><caption class=\"muted\">Files, with their BLAKE3 hashes to check what you receive</caption>\
         <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Size</th></tr></thead><tbody>",
    );
    for file in &record.files {
        let _ = write!(
            body,
            "<tr><td class=\"name\"><a href=\"{}\" download>{}</a><br><code>{}</code></td><td class=\"size\">{}</td></tr>",
            escape(&file_path(&file.name)),
            escape(&file.name),
            escape(file.hash.as_str()),
            human_size(file.size)
        );
    }
    body.push_str("</tbody></table>");
    let _ = write!(
        body,
        "<footer class=\"muted\"><p>Shared with veilshare. For programs: \
         <a href=\"manifest.json\">manifest.json</a>. Collection hash: <code>{}</code></p></footer>",
        escape(record.collection.as_str())
    );
    document(StatusCode::OK, title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3 * 3600 + 120), "3 hours 2 minutes");
        assert_eq!(human_duration(7 * 86_400), "7 days");
    }
}
