//! Hostile input where it enters (issue 11, part 3): one table of bad requests to the local
//! API and the public site, sent as raw bytes (so malformed ones are possible), each with the
//! status and the words it must be answered with. After the whole table: the share made before
//! is intact and byte-identical, no share was added, nothing was left in the store's scratch
//! space.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Server, data, fetch};

/// Where a case is sent.
#[derive(Clone, Copy, Debug)]
enum To {
    Api,
    Public,
}

/// One bad input.
struct Case {
    what: String,
    to: To,
    request: Vec<u8>,
    status: u16,
    /// Words the answer's body must contain (empty: any).
    says: &'static str,
}

const BOUNDARY: &str = "veilshareboundary";

/// A multipart body of text fields and (file name, bytes) parts.
fn multipart(fields: &[(&str, &[u8])], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    for (name, content) in files {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Sends `request` on a fresh connection and reads the answer: (status, body).
async fn send(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // A refused request may be answered before all of it was sent.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 15 s");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn a_catalogue_of_hostile_inputs_is_refused_clearly_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let content = data(50_000, 61);
    let view = server.create(&[("ok.bin", &content)], &[]).await;
    let link = view.links.local.clone().expect("link");
    let api = server.api.trim_start_matches("http://").to_owned();
    let public = server.public.trim_start_matches("http://").to_owned();
    let share = link.split_once(&public).expect("share path").1.to_owned();
    let token = server.token.clone();

    let mut cases: Vec<Case> = Vec::new();
    // An API request: method, path, extra header lines, body (multipart when a body is given,
    // unless a content type is among the headers).
    let mut api_case = |what: &str,
                        method: &str,
                        path: &str,
                        headers: &str,
                        body: Vec<u8>,
                        status: u16,
                        says: &'static str| {
        let content_type =
            if headers.to_ascii_lowercase().contains("content-type") || body.is_empty() {
                String::new()
            } else {
                format!("Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n")
            };
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {api}\r\n{headers}{content_type}\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        cases.push(Case {
            what: what.to_owned(),
            to: To::Api,
            request,
            status,
            says,
        });
    };
    let auth = format!("Authorization: Bearer {token}\r\n");
    let upload = |files: &[(&str, &[u8])]| multipart(&[], files);

    // Who may ask.
    api_case(
        "no token",
        "GET",
        "/api/shares",
        "",
        vec![],
        401,
        "needs the token",
    );
    api_case(
        "a wrong token",
        "GET",
        "/api/shares",
        "Authorization: Bearer 0000\r\n",
        vec![],
        401,
        "wrong token",
    );
    api_case(
        "a made-up session cookie",
        "GET",
        "/api/shares",
        "Cookie: veilshare_session=forged\r\n",
        vec![],
        401,
        "",
    );
    api_case(
        "the token as a cookie",
        "GET",
        "/api/shares",
        &format!("Cookie: veilshare_session={token}\r\n"),
        vec![],
        401,
        "",
    );
    api_case(
        "another page's origin",
        "POST",
        "/api/shares",
        &format!("{auth}Origin: http://127.0.0.1:1\r\n"),
        upload(&[("a.txt", b"a")]),
        403,
        "(Origin)",
    );
    api_case(
        "origin null",
        "POST",
        "/api/shares",
        &format!("{auth}Origin: null\r\n"),
        upload(&[("a.txt", b"a")]),
        403,
        "(Origin)",
    );
    api_case(
        "a cross-site fetch",
        "POST",
        "/api/shares",
        &format!("{auth}Sec-Fetch-Site: cross-site\r\n"),
        upload(&[("a.txt", b"a")]),
        403,
        "(Sec-Fetch-Site)",
    );
    api_case(
        "a same-site fetch (another port)",
        "DELETE",
        &format!("/api/shares/{}", view.id),
        &format!("{auth}Sec-Fetch-Site: same-site\r\n"),
        vec![],
        403,
        "(Sec-Fetch-Site)",
    );
    // Routes, methods, ids.
    api_case(
        "an unknown route",
        "GET",
        "/api/nothing",
        &auth,
        vec![],
        404,
        "no such API route",
    );
    api_case(
        "a share id that is not one",
        "GET",
        "/api/shares/..%2F..%2Fetc",
        &auth,
        vec![],
        404,
        "not a share id",
    );
    api_case(
        "an unknown share",
        "DELETE",
        "/api/shares/aaaaaaaaaaaaaaaaaaaaaaaaaa",
        &auth,
        vec![],
        404,
        "no share",
    );
    api_case(
        "a wrong method",
        "PUT",
        "/api/shares",
        &auth,
        vec![],
        405,
        "",
    );

    // Uploads: the form itself.
    api_case(
        "JSON instead of a form",
        "POST",
        "/api/shares",
        &format!("{auth}Content-Type: application/json\r\n"),
        b"{\"files\":[]}".to_vec(),
        400,
        "",
    );
    api_case(
        "a form without a boundary",
        "POST",
        "/api/shares",
        &format!("{auth}Content-Type: multipart/form-data\r\n"),
        b"--x\r\n".to_vec(),
        400,
        "",
    );
    api_case("a form cut short", "POST", "/api/shares", &auth, format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nabc").into_bytes(), 400, "");
    api_case(
        "no files",
        "POST",
        "/api/shares",
        &auth,
        multipart(&[("label", b"x")], &[]),
        400,
        "no files",
    );
    api_case(
        "an empty form",
        "POST",
        "/api/shares",
        &auth,
        format!("--{BOUNDARY}--\r\n").into_bytes(),
        400,
        "no files",
    );
    let many_fields: Vec<(String, Vec<u8>)> =
        (0..500).map(|n| (format!("f{n}"), b"x".to_vec())).collect();
    let many_fields: Vec<(&str, &[u8])> = many_fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    api_case(
        "500 unknown fields",
        "POST",
        "/api/shares",
        &auth,
        multipart(&many_fields, &[("a.txt", b"a")]),
        400,
        "unknown form field",
    );
    let many_files: Vec<(String, Vec<u8>)> = (0..300)
        .map(|n| (format!("part-{n}.txt"), vec![b'x'; 10]))
        .collect();
    let mut many_files: Vec<(&str, &[u8])> = many_files
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    many_files.push(("../last.txt", b"x"));
    api_case(
        "300 good parts, then a bad name",
        "POST",
        "/api/shares",
        &auth,
        upload(&many_files),
        400,
        "looks like a path",
    );
    let huge = format!(
        "POST /api/shares HTTP/1.1\r\nHost: {api}\r\n{auth}Content-Type: multipart/form-data; \
         boundary={BOUNDARY}\r\nContent-Length: 999999999999999\r\nConnection: close\r\n\r\n"
    );

    // Uploads: file names.
    let long = format!("{}.txt", "n".repeat(1000));
    for (what, name, says) in [
        ("a parent path", "../../.bashrc", "looks like a path"),
        ("an absolute path", "/etc/passwd", "looks like a path"),
        (
            "a Windows path",
            "C:\\\\Windows\\\\x.dll",
            "looks like a path",
        ),
        ("dot-dot", "..", "not a file name"),
        ("an empty name", "", ""),
        ("a 1000-byte name", long.as_str(), "longer than 255 bytes"),
        ("a NUL byte", "a\0b.txt", ""),
        ("a bell character", "a\u{7}b.txt", ""),
        ("a newline", "a\nb.txt", ""),
        ("NUL", "NUL", "device name on Windows"),
        ("COM1.txt", "COM1.txt", "device name on Windows"),
        ("lpt9 in lower case", "lpt9.log", "device name on Windows"),
        ("a pipe", "a|b.txt", "Windows does not allow"),
        ("a question mark", "why?.txt", "Windows does not allow"),
        ("an asterisk", "*.txt", "Windows does not allow"),
        ("angle brackets", "<b>.txt", "Windows does not allow"),
        ("a trailing dot", "report.", "ends with a dot or a space"),
        (
            "a trailing space",
            "report.pdf ",
            "ends with a dot or a space",
        ),
        (
            "a right-to-left override",
            "invoice\u{202E}fdp.exe",
            "U+202E",
        ),
        ("a line separator", "a\u{2028}b.txt", ""),
        ("a byte-order mark", "\u{FEFF}a.txt", ""),
    ] {
        api_case(
            &format!("a file name with {what}"),
            "POST",
            "/api/shares",
            &auth,
            upload(&[(name, b"x")]),
            400,
            says,
        );
    }
    api_case(
        "names equal but for case",
        "POST",
        "/api/shares",
        &auth,
        upload(&[("Photo.JPG", b"1"), ("photo.jpg", b"2")]),
        400,
        "only in case",
    );
    api_case(
        "names equal after normalisation",
        "POST",
        "/api/shares",
        &auth,
        upload(&[("caf\u{e9}.txt", b"1"), ("cafe\u{301}.txt", b"2")]),
        400,
        "",
    );
    api_case(
        "the same name twice",
        "POST",
        "/api/shares",
        &auth,
        upload(&[("same.txt", b"1"), ("same.txt", b"2")]),
        400,
        "two files are named",
    );

    // Uploads: fields.
    for (field, value, says) in [
        ("max_downloads", "0", "between 1 and"),
        ("max_downloads", "-1", "whole number"),
        ("max_downloads", "1e3", "whole number"),
        ("max_downloads", "99999999999", "between 1 and"),
        ("max_downloads", "2 copies", "whole number"),
        ("expires_in_secs", "0", "between 1 and"),
        ("expires_in_secs", "18446744073709551616", "whole number"),
        ("expires_in_secs", "999999999999", "between 1 and"),
        ("direct", "yes", "true or false"),
        ("restricted", "2", "true or false"),
        ("colour", "red", "unknown form field"),
    ] {
        api_case(
            &format!("{field}={value:?}"),
            "POST",
            "/api/shares",
            &auth,
            multipart(&[(field, value.as_bytes())], &[("a.txt", b"a")]),
            400,
            says,
        );
    }
    api_case(
        "a 5,000-byte label",
        "POST",
        "/api/shares",
        &auth,
        multipart(
            &[("label", "l".repeat(5000).as_bytes())],
            &[("a.txt", b"a")],
        ),
        400,
        "longer than 4096 bytes",
    );
    api_case(
        "a label that is not UTF-8",
        "POST",
        "/api/shares",
        &auth,
        multipart(&[("label", b"\xff\xfe")], &[("a.txt", b"a")]),
        400,
        "not UTF-8",
    );

    // Mirrors.
    api_case(
        "a mirror of nothing",
        "POST",
        "/api/mirrors",
        &format!("{auth}Content-Type: application/json\r\n"),
        b"{}".to_vec(),
        422,
        "missing field `source`",
    );
    api_case(
        "a mirror request that is not JSON",
        "POST",
        "/api/mirrors",
        &format!("{auth}Content-Type: application/json\r\n"),
        b"link=x".to_vec(),
        400,
        "",
    );
    api_case(
        "a mirror of an ftp link",
        "POST",
        "/api/mirrors",
        &format!("{auth}Content-Type: application/json\r\n"),
        b"{\"source\":\"ftp://127.0.0.1/s/x/\"}".to_vec(),
        400,
        "",
    );
    api_case(
        "a mirror of a malformed ticket",
        "POST",
        "/api/mirrors",
        &format!("{auth}Content-Type: application/json\r\n"),
        b"{\"source\":\"blobQQQQ\"}".to_vec(),
        400,
        "",
    );

    cases.push(Case {
        what: "more bytes announced than any disk holds".to_owned(),
        to: To::Api,
        request: huge.into_bytes(),
        status: 507,
        says: "not enough free disk space",
    });
    // A foreign Host (DNS rebinding) is refused before anything else.
    for host in [
        "evil.example",
        "127.0.0.1",
        "localhost:1",
        "127.0.0.1.nip.io",
    ] {
        let request =
            format!("GET /api/shares HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n");
        cases.push(Case {
            what: format!("Host {host}"),
            to: To::Api,
            request: request.into_bytes(),
            status: 403,
            says: "only answers as 127.0.0.1 or localhost",
        });
    }

    // The public site.
    let mut public_case = |what: &str, request: String, status: u16, says: &'static str| {
        cases.push(Case {
            what: what.to_owned(),
            to: To::Public,
            request: request.into_bytes(),
            status,
            says,
        });
    };
    let get = |path: &str, headers: &str| {
        format!(
            "GET {share}{path} HTTP/1.1\r\nHost: {public}\r\n{headers}Connection: close\r\n\r\n"
        )
    };
    for (what, range, status, says) in [
        ("a malformed range", "bytes=abc", 416, "malformed"),
        ("a range beyond the end", "bytes=999999-", 416, "outside"),
        ("a reversed range", "bytes=500-100", 416, ""),
        ("an empty suffix", "bytes=-0", 416, ""),
        (
            "a range past u64",
            "bytes=0-99999999999999999999999",
            416,
            "",
        ),
        ("a negative start", "bytes=--5", 416, ""),
        ("overlapping ranges", "bytes=0-10,5-20", 200, ""),
        ("another unit", "items=0-5", 200, ""),
    ] {
        public_case(
            &format!("{what} ({range})"),
            get("download", &format!("Range: {range}\r\n")),
            status,
            says,
        );
    }
    let ranges: Vec<String> = (0..4000).map(|n| format!("{n}-{n}")).collect();
    public_case(
        "4,000 ranges in one header",
        get(
            "download",
            &format!("Range: bytes={}\r\n", ranges.join(",")),
        ),
        200,
        "",
    );
    let ranges: Vec<String> = (0..30_000).map(|n| format!("{n}-{n}")).collect();
    public_case(
        "30,000 ranges in one header",
        get(
            "download",
            &format!("Range: bytes={}\r\n", ranges.join(",")),
        ),
        431,
        "",
    );
    public_case(
        "a 10,000-byte header",
        get("download", &format!("X-Pad: {}\r\n", "p".repeat(10_000))),
        200,
        "",
    );
    public_case(
        "a 200,000-byte header",
        get("download", &format!("X-Pad: {}\r\n", "p".repeat(200_000))),
        431,
        "",
    );
    public_case(
        "a stale If-Range",
        get("download", "Range: bytes=0-9\r\nIf-Range: \"other\"\r\n"),
        200,
        "",
    );
    public_case(
        "an If-None-Match of the download",
        get(
            "files/ok.bin",
            &format!("If-None-Match: \"{}\"\r\n", view.files[0].hash),
        ),
        304,
        "",
    );
    for (what, path) in [
        ("an encoded parent path", "files/%2e%2e%2fmanifest.json"),
        (
            "an encoded path to /etc",
            "files/..%2f..%2f..%2fetc%2fpasswd",
        ),
        ("an encoded NUL", "files/ok.bin%00"),
        ("a name in another case", "files/OK.BIN"),
        ("an overlong UTF-8 slash", "files/%c0%af"),
        ("a file of another folder", "files/sub/ok.bin"),
    ] {
        public_case(what, get(path, ""), 404, "");
    }
    public_case(
        "a share path with dot-dots",
        format!("GET /s/../../etc/passwd HTTP/1.1\r\nHost: {public}\r\nConnection: close\r\n\r\n"),
        404,
        "",
    );
    public_case(
        "an unknown share",
        format!(
            "GET /s/aaaaaaaaaaaaaaaaaaaaaaaaaa/ HTTP/1.1\r\nHost: {public}\r\nConnection: close\r\n\r\n"
        ),
        404,
        "",
    );
    public_case(
        "a garbage request line",
        "GARBAGE\r\n\r\n".to_owned(),
        400,
        "",
    );
    public_case(
        "a request smuggled with both lengths",
        format!(
            "POST {share} HTTP/1.1\r\nHost: {public}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
        ),
        405,
        "",
    );
    public_case(
        "a POST to a share",
        format!(
            "POST {share}download HTTP/1.1\r\nHost: {public}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        405,
        "",
    );
    public_case(
        "an unknown method",
        format!("BREW {share} HTTP/1.1\r\nHost: {public}\r\nConnection: close\r\n\r\n"),
        405,
        "",
    );

    let mut failures = Vec::new();
    for case in &cases {
        let addr = match case.to {
            To::Api => &api,
            To::Public => &public,
        };
        let (status, body) = send(addr, &case.request).await;
        if status != case.status || !body.contains(case.says) {
            failures.push(format!(
                "{} ({:?}): expected {} with {:?}, got {status}: {}",
                case.what,
                case.to,
                case.status,
                case.says,
                body.chars().take(300).collect::<String>()
            ));
        }
    }
    eprintln!("{} hostile inputs tried", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 60, "only {} cases", cases.len());

    // Nothing changed: the one share, byte-identical; nothing left in scratch space.
    let shares = server.list().await;
    assert_eq!(shares.len(), 1, "{shares:?}");
    let (status, body) = fetch(&server.http, &format!("{link}download"))
        .await
        .expect("GET");
    assert_eq!((status, body == content), (200, true));
    crate::util::eventually("the scratch space to be empty", || async {
        server.temp_files().is_empty().then_some(())
    })
    .await;
    server.stop().await;
}
