//! Bridges on the private Tor network: `cargo xtask testnet up` runs an unlisted obfs4
//! bridge (a `tor` bridge relay with Debian's `obfs4proxy` as its server transport). An app
//! given only that bridge line reaches Tor through it and touches no relay itself; a wrong
//! line is reported, bridge by bridge, and fixing it in the settings connects the running app.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    tor::{contacts, testnet_orports, wait_live},
    util::{Server, data, eventually_within},
};

/// The obfs4 bridge's line (`obfs4 127.0.0.1:PORT FINGERPRINT cert=… iat-mode=0`).
fn obfs4_line() -> String {
    let path = crate::util::testnet_config()
        .parent()
        .expect("testnet folder")
        .join("bridge-obfs4");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask testnet up`)", path.display()))
        .trim()
        .to_owned()
}

/// The port the obfs4 bridge's transport listens on.
fn obfs4_port(line: &str) -> u16 {
    line.split_whitespace()
        .nth(1)
        .and_then(|addr| addr.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .expect("a port in the bridge line")
}

fn saved_bridges(data_dir: &std::path::Path, lines: &[String]) {
    std::fs::create_dir_all(data_dir).expect("data dir");
    let settings = json!({ "enabled": true, "transport": "obfs4", "lines": lines });
    std::fs::write(data_dir.join("bridges.json"), settings.to_string()).expect("bridges.json");
}

/// The bridges in `GET /api/status`, once `ready` says so.
async fn bridges_when(server: &Server, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually_within(Duration::from_secs(150), what, || async {
        let status = server.status().await;
        ready(&status).then_some(status)
    })
    .await
}

#[tokio::test]
async fn an_app_given_only_an_obfs4_bridge_shares_and_fetches_through_it_and_touches_no_relay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line = obfs4_line();
    let data_dir = dir.path().join("server");
    saved_bridges(&data_dir, std::slice::from_ref(&line));
    let log = dir.path().join("strace.log");
    let wrapper = crate::util::strace_wrapper(&log, "connect");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let server =
        Server::start_wrapped(&data_dir, 0, Some(crate::util::testnet_config()), &wrapper).await;

    let status = bridges_when(&server, "Tor to connect through the bridge", |s| {
        s["tor"]["state"] == "ready" && s["bridges"]["bridges"][0]["reach"]["state"] == "reached"
    })
    .await;
    assert_eq!(status["bridges"]["transport"], "obfs4", "{status}");
    assert_eq!(
        status["bridges"]["bridges"][0]["bridge"],
        format!("obfs4 127.0.0.1:{}", obfs4_port(&line)),
        "{status}"
    );

    let content = data(2 << 20, 61);
    let view = server
        .create(&[("behind-a-bridge.bin", &content)], &[])
        .await;
    let view = wait_live(&server, &view).await;
    let onion = view.links.onion.clone().expect("onion link");
    let out = dir.path().join("out");
    let (ok, output) = crate::util::get_cli_extra(
        &onion,
        &out,
        &dir.path().join("client"),
        true,
        "2m",
        &["--bridge", &line],
    )
    .await;
    assert!(ok, "get through the bridge failed: {output}");
    assert!(std::fs::read(out.join("behind-a-bridge.bin")).expect("file") == content);
    server.stop().await;

    // Everything went through the bridge: the app and its transport connected to no relay
    // or authority of the network, and the transport did reach the bridge (the control).
    let text = std::fs::read_to_string(&log).expect("strace log");
    let relays = testnet_orports();
    assert!(relays.len() >= 9, "the network's relays: {relays:?}");
    let (touched, _) = contacts(&text, &relays);
    assert!(
        touched.is_empty(),
        "connected to relays {touched:?} despite the bridge"
    );
    let bridge = std::collections::HashSet::from([obfs4_port(&line)]);
    let (reached, _) = contacts(&text, &bridge);
    assert!(
        !reached.is_empty(),
        "strace saw no connection to the bridge"
    );
}

#[tokio::test]
async fn a_wrong_bridge_line_is_reported_by_bridge_and_fixing_it_connects_the_running_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line = obfs4_line();
    // A bridge that is not there: nothing listens at its port, and its fingerprint is no
    // relay's. (Arti knows a bridge by its fingerprint: the real bridge at a wrong port, then
    // at its right one, would wait out Arti's retry delay for that bridge.)
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let fingerprint = line.split_whitespace().nth(2).expect("fingerprint");
    let wrong = line
        .replacen(
            &format!(":{} ", obfs4_port(&line)),
            &format!(":{closed} "),
            1,
        )
        .replacen(fingerprint, &"AB".repeat(20), 1);
    assert_ne!(wrong, line);
    let data_dir = dir.path().join("server");
    saved_bridges(&data_dir, std::slice::from_ref(&wrong));
    let server = Server::start_with(&data_dir, 0, Some(crate::util::testnet_config())).await;

    let status = bridges_when(&server, "the wrong bridge to be reported", |s| {
        s["bridges"]["bridges"][0]["reach"]["state"] == "failed"
    })
    .await;
    assert_ne!(status["tor"]["state"], "ready", "{status}");
    let message = status["bridges"]["bridges"][0]["reach"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(!message.is_empty(), "{status}");
    assert_eq!(
        status["bridges"]["bridges"][0]["bridge"],
        format!("obfs4 127.0.0.1:{closed}")
    );

    // A line that is not one is refused with its number, and the saved settings stay.
    let response = server
        .api(Method::PUT, "/api/settings/bridges")
        .json(&json!({ "enabled": true, "transport": "obfs4", "lines": [line, "obfs4 nonsense"] }))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("bridge line 2"),
        "{body}"
    );
    let saved: Value = server
        .api(Method::GET, "/api/settings/bridges")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(saved["settings"]["lines"][0], wrong.as_str(), "{saved}");
    assert!(saved["found"].to_string().contains("obfs4proxy"), "{saved}");

    // The right line, while running: Tor connects through it and a share goes live.
    let response = server
        .api(Method::PUT, "/api/settings/bridges")
        .json(&json!({ "enabled": true, "transport": "obfs4", "lines": [line] }))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 200);
    bridges_when(&server, "Tor to connect through the right bridge", |s| {
        s["tor"]["state"] == "ready" && s["bridges"]["bridges"][0]["reach"]["state"] == "reached"
    })
    .await;
    let view = server
        .create(&[("fixed.txt", b"through the right bridge\n")], &[])
        .await;
    wait_live(&server, &view).await;

    // And back to the wrong one while connected: Arti keeps its directory, but the app does
    // not say "connected" while its only bridge does not answer. (The settings are applied
    // just after the answer: the same line's failure from before may show a moment earlier,
    // and Arti, waiting out its retry delay for that bridge, may not report it afresh.)
    let response = server
        .api(Method::PUT, "/api/settings/bridges")
        .json(&json!({ "enabled": true, "transport": "obfs4", "lines": [wrong] }))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 200);
    bridges_when(
        &server,
        "the wrong bridge to be reported again, and Tor not said to be connected",
        |s| {
            s["bridges"]["bridges"][0]["reach"]["state"] == "failed"
                && s["tor"]["state"] == "bootstrapping"
        },
    )
    .await;
    server.stop().await;
}
