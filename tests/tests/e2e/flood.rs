//! Floods and slow clients on loopback (issue 11, part 2): a crowd of slow connections, many
//! downloads at once, a full house of busy connections, an event socket nobody reads. Each
//! bounded to seconds; the figures they print go into docs/RELIABILITY.md.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

use crate::util::{Server, data, fetch};

/// The server's peak and current resident memory, in bytes (`VmHWM`, `VmRSS`).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Descriptors the server holds open.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd folder")
        .count()
}

fn host_port(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .and_then(|addr| addr.parse().ok())
        .expect("host:port")
}

/// What a slowloris crowd did.
#[derive(Debug, Default)]
struct Crowd {
    /// Connections opened, first ones and replacements.
    opened: usize,
    /// Connections the server closed.
    closed: usize,
    /// Connections the server answered (a 503 or an error page).
    answered: usize,
}

/// Holds `size` connections to `addr`, each sending a request head one byte a second and never
/// finishing it; a connection the server closes is replaced, at most `reopen_per_second` a
/// second (an attacker with a budget of connections, not a connect storm). Runs until `stop`;
/// `rounds` counts the seconds done.
async fn slowloris(
    addr: SocketAddr,
    size: usize,
    reopen_per_second: usize,
    stop: CancellationToken,
    rounds: tokio::sync::watch::Sender<usize>,
) -> Crowd {
    async fn open(addr: SocketAddr) -> Option<TcpStream> {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .ok()?;
        Some(stream)
    }
    let mut crowd = Crowd::default();
    let mut streams = Vec::with_capacity(size);
    for _ in 0..size {
        let stream = open(addr).await;
        crowd.opened += usize::from(stream.is_some());
        streams.push(stream);
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut buf = [0u8; 256];
    while !stop.is_cancelled() {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let mut reopen = 0;
        for slot in &mut streams {
            let alive = match slot {
                None => false,
                Some(stream) => match stream.try_read(&mut buf) {
                    Ok(0) => {
                        crowd.closed += 1;
                        false
                    }
                    Ok(_) => {
                        crowd.answered += 1;
                        false
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        stream.try_write(b"a").is_ok()
                    }
                    Err(_) => {
                        crowd.closed += 1;
                        false
                    }
                },
            };
            if !alive {
                *slot = None;
                if reopen < reopen_per_second {
                    *slot = open(addr).await;
                    crowd.opened += usize::from(slot.is_some());
                    reopen += 1;
                }
            }
        }
        rounds.send_modify(|done| *done += 1);
    }
    crowd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_crowd_does_not_keep_out_real_clients() {
    const CROWD: usize = 2000;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let content = data(1 << 20, 3);
    let view = server.create(&[("report.pdf", &content)], &[]).await;
    let link = view.links.local.clone().expect("link");
    let public = host_port(&link);
    let api = host_port(&server.api);

    let stop = CancellationToken::new();
    let (rounds, mut seen) = tokio::sync::watch::channel(0usize);
    let (api_rounds, mut api_seen) = tokio::sync::watch::channel(0usize);
    let crowds = [
        tokio::spawn(slowloris(public, CROWD, 200, stop.clone(), rounds)),
        tokio::spawn(slowloris(api, CROWD, 200, stop.clone(), api_rounds)),
    ];
    // Let the crowds hold their connections and dribble for a few seconds first.
    seen.wait_for(|done| *done >= 3).await.expect("crowd");
    api_seen.wait_for(|done| *done >= 3).await.expect("crowd");

    // A fresh connection for every call, as a new visitor would open.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let (status, body) = tokio::time::timeout(
            Duration::from_secs(5),
            fetch(&client, &format!("{link}files/report.pdf")),
        )
        .await
        .expect("the download answered")
        .expect("GET");
        assert_eq!((status, body == content), (200, true));
        slowest = slowest.max(started.elapsed());

        let started = Instant::now();
        let shares = tokio::time::timeout(
            Duration::from_secs(5),
            client
                .get(format!("{}/api/shares", server.api))
                .bearer_auth(&server.token)
                .send(),
        )
        .await
        .expect("the API answered")
        .expect("GET /api/shares");
        assert_eq!(shares.status(), 200);
        slowest = slowest.max(started.elapsed());
    }
    let files = open_files(server.pid);
    stop.cancel();
    let mut reports = Vec::new();
    for crowd in crowds {
        reports.push(crowd.await.expect("crowd"));
    }
    eprintln!(
        "slowloris: {CROWD} connections on each listener: {reports:?}; slowest real call \
         {slowest:?}; server held {files} descriptors"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a real call took {slowest:?} under the crowd"
    );
    // Capped: 512 a listener, not the 4,000 the crowds opened.
    assert!(files < 2 * 512 + 200, "the server held {files} descriptors");
    for crowd in &reports {
        assert!(
            crowd.opened > CROWD && crowd.closed > 0,
            "the crowd was not pushed out: {crowd:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn when_every_connection_is_busy_a_newcomer_is_told_to_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server =
        Server::start_with_env(dir.path(), &[("VEILSHARE_HTTP_MAX_CONNECTIONS", "4")]).await;
    let content = data(32 << 20, 5);
    let view = server.create(&[("big.bin", &content)], &[]).await;
    let link = view.links.local.clone().expect("link");
    let addr = host_port(&link);
    let path = link
        .split_once(&addr.to_string())
        .expect("path")
        .1
        .to_owned();

    // Four downloads that stop reading: busy for as long as the idle deadline allows.
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut stalled = TcpStream::connect(addr).await.expect("connect");
        stalled
            .write_all(format!("GET {path}download HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .expect("request");
        let mut head = [0u8; 12];
        stalled.read_exact(&mut head).await.expect("head");
        assert_eq!(&head, b"HTTP/1.1 200");
        busy.push(stalled);
    }
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), extra.read_to_end(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    assert!(
        answer.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(String::from_utf8_lossy(&answer).contains("Retry-After"));
    // One download ends: a place is free again.
    drop(busy.pop());
    let (status, _) = crate::util::eventually("a free place", || async {
        let answer = fetch(&server.http, &format!("{link}files/big.bin"))
            .await
            .ok()?;
        (answer.0 == 200).then_some(answer)
    })
    .await;
    assert_eq!(status, 200);
    drop(busy);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_downloads_at_once_all_complete_in_bounded_memory() {
    const CLIENTS: usize = 500;
    const SIZE: usize = 8 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let content = data(SIZE, 8);
    let expected = blake3::hash(&content);
    let view = server.create(&[("video.mp4", &content)], &[]).await;
    drop(content);
    let url = format!("{}files/video.mp4", view.links.local.clone().expect("link"));
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let (before, _) = memory(server.pid);
    let started = Instant::now();
    let downloads = futures::stream::iter(0..CLIENTS)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let response = client.get(&url).send().await.expect("GET");
                assert_eq!(response.status(), 200);
                let mut hasher = blake3::Hasher::new();
                let mut body = response.bytes_stream();
                while let Some(chunk) = body.next().await {
                    hasher.update(&chunk.expect("body"));
                }
                hasher.finalize()
            })
        })
        .collect::<Vec<_>>()
        .await;
    let mut verified = 0;
    for download in downloads {
        assert_eq!(download.await.expect("download"), expected);
        verified += 1;
    }
    let elapsed = started.elapsed();
    let (peak, _) = memory(server.pid);
    eprintln!(
        "{verified} downloads of {} MiB at once: {elapsed:?}, server peak RSS {} MiB (before: {} \
         MiB)",
        SIZE >> 20,
        peak >> 20,
        before >> 20
    );
    assert_eq!(verified, CLIENTS);
    assert!(peak < 150 << 20, "peak RSS {} MiB", peak >> 20);
    server
        .wait_view(&view.id, "every download counted", |v| {
            v.downloads_completed == CLIENTS as u32
        })
        .await;
    server.stop().await;
}

/// Opens the API's event socket by hand (upgrade request, then raw frames): a client in these
/// tests must not be the slow side.
async fn open_events(api: SocketAddr, token: &str) -> TcpStream {
    let mut socket = TcpStream::connect(api).await.expect("connect");
    let request = format!(
        "GET /api/events HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.expect("upgrade");
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).await.expect("answer");
    assert_eq!(&head, b"HTTP/1.1 101");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_socket_nobody_reads_does_not_grow_the_server() {
    /// Events the reading socket must get: three times what a socket may have queued, so
    /// that the deaf one was surely cut off.
    const ENOUGH: usize = 12 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    // The socket is opened by hand and read raw: a client in this test must not be the slow
    // side (the server closes one that falls 4 MiB behind).
    let api = host_port(&server.api);
    // One socket never read; one read to count what the server sends (reopened, as the UI
    // does, if the server closes it for falling behind on a busy machine).
    let _deaf = open_events(api, &server.token).await;
    let done = CancellationToken::new();
    let read = Arc::new(AtomicUsize::new(0));
    let counted = tokio::spawn({
        let (done, token, read) = (done.clone(), server.token.clone(), read.clone());
        async move {
            let mut buf = vec![0u8; 1 << 20];
            let mut reopened = 0usize;
            loop {
                let mut listening = open_events(api, &token).await;
                loop {
                    tokio::select! {
                        got = listening.read(&mut buf) => match got {
                            Ok(0) | Err(_) => break,
                            Ok(n) => { read.fetch_add(n, Ordering::Relaxed); }
                        },
                        () = done.cancelled() => return reopened,
                    }
                }
                reopened += 1;
            }
        }
    });

    // A share of many files: a change of its counters is announced with its whole view
    // (~130 KB), at most ten times a second.
    let names: Vec<String> = (0..1000)
        .map(|n| format!("page-{n:04}-of-the-scanned-archive.txt"))
        .collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .map(|name| (name.as_str(), &b"x"[..]))
        .collect();
    let view = server.create(&files, &[]).await;
    let url = format!(
        "{}files/{}",
        view.links.local.clone().expect("link"),
        names[0]
    );
    // Warm up, then measure: downloads one after another until the reader got enough.
    for _ in 0..20 {
        fetch(&server.http, &url).await.expect("GET");
    }
    let (_, settled) = memory(server.pid);
    let started = Instant::now();
    let mut downloads = 0usize;
    while read.load(Ordering::Relaxed) < ENOUGH {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "too few events to tell ({} MiB in 90 s)",
            read.load(Ordering::Relaxed) >> 20
        );
        assert!(matches!(fetch(&server.http, &url).await, Ok((200, _))));
        downloads += 1;
    }
    let (_, after) = memory(server.pid);
    // The server still answers, and the reader got everything meanwhile.
    assert_eq!(server.view(&view.id).await.files.len(), 1000);
    done.cancel();
    let reopened = counted.await.expect("reader");
    server.stop().await;
    let grown = after.saturating_sub(settled);
    eprintln!(
        "event socket: {} MiB of events sent in {:.1} s ({downloads} downloads) while one socket \
         was never read; server RSS grew {} KiB; the reading socket was reopened {reopened} times",
        read.load(Ordering::Relaxed) >> 20,
        started.elapsed().as_secs_f64(),
        grown >> 10
    );
    assert!(grown < 16 << 20, "the server grew {} MiB", grown >> 20);
}
