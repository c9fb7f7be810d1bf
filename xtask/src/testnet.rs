//! `cargo xtask testnet up|down|env`: a private Tor network on 127.0.0.1 built from Debian's
//! `tor` (3 directory authorities and 6 relays, `TestingTorNetwork`, 20-second voting), an
//! unlisted obfs4 bridge (a `tor` bridge relay with Debian's `obfs4proxy` as its server
//! transport; its bridge line in `bridge-obfs4`), and the Arti TOML that points at the
//! network. `up` returns once the consensus lists every relay as an HSDir and the bridge is
//! ready; `env` prints the TOML's path; `down` stops the network.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{exec, setup::ensure_debian_packages, target_dir};

const AUTHORITIES: usize = 3;
const RELAYS: usize = 6;
/// The bridge's nickname: the last node, not listed in the consensus.
const BRIDGE: &str = "bridge0";

struct Node {
    nick: String,
    dir: PathBuf,
    or_port: u16,
    dir_port: u16,
    authority: bool,
}

/// The network's folder.
pub fn dir() -> PathBuf {
    target_dir().join("testnet")
}

/// The Arti TOML that points at the network.
pub fn arti_toml() -> PathBuf {
    dir().join("arti.toml")
}

pub fn main(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("up") => up(),
        Some("down") => down(),
        Some("env") => {
            let path = arti_toml();
            if !path.exists() {
                bail!("the test network is not up: run `cargo xtask testnet up`");
            }
            #[allow(clippy::print_stdout)]
            {
                println!("{}", path.display());
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask testnet up|down|env"),
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn pid_alive(pid_file: &Path) -> bool {
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Stops every node of the network.
pub fn down() -> Result<()> {
    let root = dir();
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let pid_file = entry.path().join("tor.pid");
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&root)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| pid_alive(&e.path().join("tor.pid")))
        })
        .unwrap_or(false)
    {
        if Instant::now() > deadline {
            bail!("tor processes of the test network did not stop");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("test network stopped");
    Ok(())
}

/// Whether a network from an earlier `up` still runs and answers.
fn running(nodes_file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(nodes_file) else {
        return false;
    };
    let dirs: Vec<&str> = text.lines().collect();
    !dirs.is_empty()
        && dirs
            .iter()
            .all(|d| pid_alive(&Path::new(d).join("tor.pid")))
        && arti_toml().exists()
        && client_torrc().exists()
        && obfs4_bridge_line().exists()
}

/// The obfs4 bridge's line, as a bridge distributor hands it out
/// (`obfs4 127.0.0.1:PORT FINGERPRINT cert=… iat-mode=0`).
pub fn obfs4_bridge_line() -> PathBuf {
    dir().join("bridge-obfs4")
}

/// The torrc lines a C `tor` client needs to join the network (the OnionShare side-by-side in
/// `cargo xtask bench tor` starts its own with these).
pub fn client_torrc() -> PathBuf {
    dir().join("client-torrc")
}

pub fn up() -> Result<()> {
    ensure_debian_packages(&[
        ("tor", "tor"),
        ("tor-gencert", "tor"),
        ("obfs4proxy", "obfs4proxy"),
    ])?;
    let root = dir();
    let nodes_file = root.join("nodes");
    if running(&nodes_file) {
        eprintln!(
            "test network already up; Arti config: {}",
            arti_toml().display()
        );
        return Ok(());
    }
    down()?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let empty = root.join("empty-torrc");
    std::fs::write(&empty, "")?;

    let mut nodes = Vec::new();
    for i in 0..=AUTHORITIES + RELAYS {
        let authority = i < AUTHORITIES;
        let nick = if authority {
            format!("auth{i}")
        } else if i == AUTHORITIES + RELAYS {
            BRIDGE.to_owned()
        } else {
            format!("relay{}", i - AUTHORITIES)
        };
        let dir = root.join(&nick);
        std::fs::create_dir_all(dir.join("keys"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        nodes.push(Node {
            nick,
            dir,
            or_port: free_port()?,
            dir_port: free_port()?,
            authority,
        });
    }

    // Keys: authority certificates, then every node's identity fingerprints.
    let mut dir_authority_lines = Vec::new();
    let mut v3idents = Vec::new();
    for node in nodes.iter().filter(|n| n.authority) {
        let mut child = Command::new("tor-gencert")
            .current_dir(&node.dir)
            .args([
                "--create-identity-key",
                "--passphrase-fd",
                "0",
                "-m",
                "12",
                "-a",
            ])
            .arg(format!("127.0.0.1:{}", node.dir_port))
            .args([
                "-i",
                "keys/authority_identity_key",
                "-s",
                "keys/authority_signing_key",
                "-c",
                "keys/authority_certificate",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run tor-gencert")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(b"\n")?;
        }
        if !child.wait()?.success() {
            bail!("tor-gencert failed for {}", node.nick);
        }
        let cert = std::fs::read_to_string(node.dir.join("keys/authority_certificate"))?;
        let v3 = cert
            .lines()
            .find_map(|l| l.strip_prefix("fingerprint "))
            .context("authority certificate without fingerprint")?
            .trim()
            .to_owned();
        v3idents.push(v3);
    }
    let mut fingerprints = Vec::new();
    for node in &nodes {
        let status = Command::new("tor")
            .arg("--defaults-torrc")
            .arg(&empty)
            .arg("-f")
            .arg(&empty)
            .arg("--DataDirectory")
            .arg(&node.dir)
            .arg("--ORPort")
            .arg(node.or_port.to_string())
            .arg("--Nickname")
            .arg(&node.nick)
            .arg("--list-fingerprint")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run tor")?;
        if !status.success() {
            bail!("tor --list-fingerprint failed for {}", node.nick);
        }
        let read_second_field = |file: &str| -> Result<String> {
            let text = std::fs::read_to_string(node.dir.join(file))
                .with_context(|| format!("{} of {}", file, node.nick))?;
            Ok(text.split_whitespace().skip(1).collect::<String>())
        };
        let rsa = read_second_field("fingerprint")?;
        let ed = read_second_field("fingerprint-ed25519")?;
        fingerprints.push((rsa, ed));
    }
    for (index, node) in nodes.iter().enumerate().filter(|(_, n)| n.authority) {
        dir_authority_lines.push(format!(
            "DirAuthority {} orport={} no-v2 v3ident={} 127.0.0.1:{} {}",
            node.nick, node.or_port, v3idents[index], node.dir_port, fingerprints[index].0
        ));
    }

    for node in &nodes {
        let mut torrc = format!(
            "TestingTorNetwork 1\nDataDirectory {dir}\nRunAsDaemon 1\nPidFile {dir}/tor.pid\n\
             Log notice file {dir}/notice.log\nNickname {nick}\nAddress 127.0.0.1\n\
             ORPort 127.0.0.1:{or}\nDirPort 127.0.0.1:{dirport}\nSocksPort 0\n\
             AddressDisableIPv6 1\nUseDefaultFallbackDirs 0\nExitRelay 0\nExitPolicy reject *:*\n\
             AssumeReachable 1\nPathsNeededToBuildCircuits 0.67\nTestingDirAuthVoteGuard *\n\
             TestingDirAuthVoteHSDir *\nV3AuthNIntervalsValid 2\n\
             TestingServerDownloadInitialDelay 0\nTestingServerConsensusDownloadInitialDelay 0\n\
             ContactInfo veilshare-testnet\n{authorities}\n",
            dir = node.dir.display(),
            nick = node.nick,
            or = node.or_port,
            dirport = node.dir_port,
            authorities = dir_authority_lines.join("\n"),
        );
        if node.nick == BRIDGE {
            // A bridge: its descriptor goes to nobody; clients learn of it from its line.
            // The server transport listens on its own port; `ExtORPort` hands the
            // deobfuscated connections back to tor.
            torrc.push_str(&format!(
                "BridgeRelay 1\nPublishServerDescriptor 0\nExtORPort auto\n\
                 ServerTransportPlugin obfs4 exec {obfs4proxy}\n\
                 ServerTransportListenAddr obfs4 127.0.0.1:{obfs4_port}\n",
                obfs4proxy = crate::setup::which("obfs4proxy")
                    .context("obfs4proxy is not installed")?
                    .display(),
                obfs4_port = free_port()?,
            ));
        }
        if node.authority {
            torrc.push_str(
                "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nV3AuthVotingInterval 20\n\
                 V3AuthVoteDelay 4\nV3AuthDistDelay 4\nTestingV3AuthInitialVotingInterval 20\n\
                 TestingV3AuthInitialVoteDelay 4\nTestingV3AuthInitialDistDelay 4\n",
            );
        }
        std::fs::write(node.dir.join("torrc"), torrc)?;
    }
    std::fs::write(
        &nodes_file,
        nodes
            .iter()
            .map(|n| n.dir.display().to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )?;

    eprintln!("starting {} tor nodes in {}", nodes.len(), root.display());
    for node in &nodes {
        exec(
            Command::new("tor")
                .arg("--defaults-torrc")
                .arg(&empty)
                .arg("-f")
                .arg(node.dir.join("torrc"))
                .arg("--quiet"),
        )?;
    }

    // Wait until the consensus lists every node but the bridge as an HSDir.
    let listed = nodes.len() - 1;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    let authority = &nodes[0];
    loop {
        let hsdirs = consensus(authority.dir_port)
            .map(|text| {
                text.lines()
                    .filter(|l| l.starts_with("s ") && l.contains("HSDir"))
                    .count()
            })
            .unwrap_or(0);
        if hsdirs >= listed {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the test network has no full consensus after 3 minutes ({hsdirs} of {listed} HSDirs); see {}/*/notice.log",
                root.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "consensus with {listed} HSDirs after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (bridge, (bridge_rsa, _)) = nodes
        .iter()
        .zip(&fingerprints)
        .find(|(n, _)| n.nick == BRIDGE)
        .context("no bridge node")?;
    let line = bridge_line(bridge, bridge_rsa, deadline)?;
    std::fs::write(obfs4_bridge_line(), format!("{line}\n"))?;
    eprintln!("obfs4 bridge: {}", obfs4_bridge_line().display());

    let caches: Vec<String> = nodes
        .iter()
        .filter(|n| n.nick != BRIDGE)
        .zip(&fingerprints)
        .map(|(node, (rsa, ed))| {
            format!(
                "  {{ rsa_identity = \"{rsa}\", ed_identity = \"{ed}\", orports = [\"127.0.0.1:{}\"] }},",
                node.or_port
            )
        })
        .collect();
    let toml = format!(
        "# Arti configuration for veilshare's private test network ({root}).\n\
         [tor_network]\nfallback_caches = [\n{caches}\n]\n\n\
         [tor_network.authorities]\nv3idents = [{v3}]\n\n\
         [path_rules]\nipv4_subnet_family_prefix = 33\nipv6_subnet_family_prefix = 129\n\n\
         [override_net_params]\nhsdir_interval = 8\nguard-min-filtered-sample-size = 4\n\
         cbtmintimeout = 2000\n\n\
         [preemptive_circuits]\ninitial_predicted_ports = []\n\n\
         [storage.permissions]\ndangerously_trust_everyone = true\n",
        root = root.display(),
        caches = caches.join("\n"),
        v3 = v3idents
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    std::fs::write(arti_toml(), toml)?;
    std::fs::write(
        client_torrc(),
        format!(
            "TestingTorNetwork 1\nUseDefaultFallbackDirs 0\nAddressDisableIPv6 1\n\
             ClientUseIPv6 0\n{}\n",
            dir_authority_lines.join("\n")
        ),
    )?;
    eprintln!("Arti config: {}", arti_toml().display());
    Ok(())
}

/// Waits until the bridge has bootstrapped and its obfs4 transport wrote its line, and
/// returns that line with the address and fingerprint filled in.
fn bridge_line(bridge: &Node, fingerprint: &str, deadline: Instant) -> Result<String> {
    let template = bridge.dir.join("pt_state/obfs4_bridgeline.txt");
    let log = bridge.dir.join("notice.log");
    loop {
        let bootstrapped =
            std::fs::read_to_string(&log).is_ok_and(|text| text.contains("Bootstrapped 100%"));
        let line = std::fs::read_to_string(&template).ok().and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Bridge obfs4 "))
                .map(str::to_owned)
        });
        let torrc = std::fs::read_to_string(bridge.dir.join("torrc"))?;
        let port = torrc
            .lines()
            .find_map(|l| l.strip_prefix("ServerTransportListenAddr obfs4 "))
            .context("bridge torrc without an obfs4 address")?
            .trim()
            .to_owned();
        if let (true, Some(line)) = (bootstrapped, line) {
            // "Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=… iat-mode=0"
            let args: Vec<&str> = line.split_whitespace().skip(5).collect();
            return Ok(format!("obfs4 {port} {fingerprint} {}", args.join(" ")));
        }
        if Instant::now() > deadline {
            bail!(
                "the obfs4 bridge did not get ready within 3 minutes; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The current microdescriptor consensus from an authority's DirPort.
fn consensus(dir_port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", dir_port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(
            b"GET /tor/status-vote/current/consensus-microdesc HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
        )
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.starts_with("HTTP/1.0 200").then_some(response)
}
