//! Direct transfer benchmark: 1 GiB over loopback, veilshare (`share --direct` → `get <ticket>`)
//! against iroh's `sendme` (`send` → `receive`), side by side in one run, rounds interleaved,
//! median of [`ROUNDS`]. Both receivers end with the file verified and in place.
//!
//! Everything runs inside a fresh network namespace (`unshare -rn`) with only a loopback
//! interface: sendme's endpoint uses iroh's N0 preset (DNS discovery, pkarr publishing), and no
//! byte of either tool may leave the machine. Both use no relay and bind 127.0.0.1.

// The results are this program's output.
#![allow(clippy::print_stdout)]

mod common;

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{binary, median, mib_per_s};

const SIZE: usize = 1 << 30;
const ROUNDS: usize = 3;
const INNER: &str = "VEILSHARE_DIRECT_BENCH_WORK";

fn sendme() -> PathBuf {
    std::env::var_os("VEILSHARE_SENDME")
        .map(PathBuf::from)
        .expect("VEILSHARE_SENDME is not set: run `cargo xtask bench direct`")
}

/// A sender, killed on drop, and the ticket it printed.
struct Sender {
    child: Child,
    ticket: String,
    ready_after: Duration,
}

impl Sender {
    /// Starts `command` and waits for a word starting with `blob` on its standard output;
    /// its standard error goes to `log`.
    fn start(command: &mut Command, log: &Path) -> Self {
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log"))
            .spawn()
            .expect("start sender");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(ticket) = line.split_whitespace().find(|w| w.starts_with("blob")) {
                    let _ = tx.send(ticket.to_owned());
                }
            }
        });
        let ticket = rx
            .recv_timeout(Duration::from_secs(300))
            .unwrap_or_else(|_| {
                panic!(
                    "the sender printed no ticket; it said:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        Self {
            child,
            ticket,
            ready_after: started.elapsed(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Runs a receiver (`program` and its arguments, in `cwd`) to its end under GNU time;
/// returns the wall time and the peak resident memory in MiB.
fn timed(program: &Path, args: &[&str], cwd: &Path) -> (Duration, f64) {
    let rss = cwd.join(".peak-rss");
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(program)
        .args(args)
        .current_dir(cwd)
        .env("VEILSHARE_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("receiver");
    let elapsed = started.elapsed();
    assert!(status.success(), "{program:?} {args:?} failed");
    let kib: f64 = std::fs::read_to_string(&rss)
        .expect("peak rss")
        .trim()
        .parse()
        .expect("kib");
    let _ = std::fs::remove_file(&rss);
    (elapsed, kib / 1024.0)
}

fn blake3_file(path: &Path) -> blake3::Hash {
    let mut file = std::fs::File::open(path).expect("open");
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            return hasher.finalize();
        }
        hasher.update(&buf[..n]);
    }
}

/// Inside the namespace: both senders, then interleaved receives.
fn inner(work: &Path) {
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip");
    assert!(up.success(), "cannot bring up loopback in the namespace");
    let file = work.join("big.bin");
    let expected = blake3_file(&file);
    let loopback = ["--no-iroh-relay", "--iroh-bind", "127.0.0.1:0"];
    let sendme_loopback = ["--relay", "disabled", "--magic-ipv4-addr", "127.0.0.1:0"];

    // Ready times: each sender started ROUNDS times, taking turns, each start after `sync` and
    // with a fresh data directory (veilshare imports the file every time); the last of each
    // stays up for the transfers.
    let start_veilshare = |round: usize| {
        common::settle_writeback();
        Sender::start(
            Command::new(binary())
                .args(["share", "--no-tor", "--direct", "--data-dir"])
                .arg(work.join(format!("vs-sender-{round}")))
                .args(loopback)
                .arg(&file)
                .env("VEILSHARE_LOG", "error"),
            &work.join("vs-sender.log"),
        )
    };
    let start_sendme = |round: usize| {
        let cwd = work.join(format!("sm-sender-{round}"));
        std::fs::create_dir_all(&cwd).expect("cwd");
        common::settle_writeback();
        Sender::start(
            Command::new(sendme())
                .arg("send")
                .arg(&file)
                .args(sendme_loopback)
                .args(["--ticket-type", "addresses", "--no-progress"])
                .current_dir(&cwd),
            &work.join("sm-sender.log"),
        )
    };
    let (mut our_ready, mut their_ready) = (Vec::new(), Vec::new());
    let mut senders = None;
    for round in 0..ROUNDS {
        drop(senders.take());
        let ours = start_veilshare(round);
        our_ready.push(ours.ready_after.as_secs_f64());
        let theirs = start_sendme(round);
        their_ready.push(theirs.ready_after.as_secs_f64());
        senders = Some((ours, theirs));
    }
    let (veilshare_sender, sendme_sender) = senders.expect("at least one round");
    let our_ready_median = median(our_ready.clone());
    let their_ready_median = median(their_ready.clone());

    let mut veilshare = Vec::new();
    let mut reference = Vec::new();
    let (mut our_rss, mut their_rss) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let out = work.join(format!("vs-out-{round}"));
        std::fs::create_dir_all(&out).expect("out");
        let mut args = vec!["get", "--quiet", &veilshare_sender.ticket, "-o", "."];
        args.extend(loopback);
        let (elapsed, rss) = timed(&binary(), &args, &out);
        veilshare.push(elapsed);
        our_rss.push(rss);
        assert_eq!(blake3_file(&out.join("big.bin")), expected);
        std::fs::remove_dir_all(&out).expect("clean");

        let out = work.join(format!("sm-out-{round}"));
        std::fs::create_dir_all(&out).expect("out");
        let mut args = vec!["receive", &sendme_sender.ticket, "--no-progress"];
        args.extend(sendme_loopback);
        let (elapsed, rss) = timed(&sendme(), &args, &out);
        reference.push(elapsed);
        their_rss.push(rss);
        assert_eq!(blake3_file(&out.join("big.bin")), expected);
        std::fs::remove_dir_all(&out).expect("clean");
    }
    let ours = median(veilshare.iter().map(|d| d.as_secs_f64()).collect());
    let theirs = median(reference.iter().map(|d| d.as_secs_f64()).collect());
    println!(
        "\n=== direct transfer, 1 GiB over loopback (network namespace, no relay), median of {ROUNDS} ==="
    );
    let rounded = |values: &[f64]| {
        values
            .iter()
            .map(|v| (v * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    };
    println!(
        "sender ready (import + endpoint + ticket): veilshare share --direct {our_ready_median:.2} s {:?}, sendme send {their_ready_median:.2} s {:?}; ratio {:.2}x (target >= 0.5x)",
        rounded(&our_ready),
        rounded(&their_ready),
        their_ready_median / our_ready_median
    );
    println!(
        "veilshare get <ticket>: {ours:.2} s ({:.0} MiB/s); runs {:?}",
        mib_per_s(SIZE, Duration::from_secs_f64(ours)),
        veilshare
            .iter()
            .map(|d| (d.as_secs_f64() * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    println!(
        "sendme receive:         {theirs:.2} s ({:.0} MiB/s); runs {:?}",
        mib_per_s(SIZE, Duration::from_secs_f64(theirs)),
        reference
            .iter()
            .map(|d| (d.as_secs_f64() * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    println!("veilshare / sendme throughput: {:.2}x", theirs / ours);
    println!(
        "peak memory of the receiver: veilshare {:.1} MiB, sendme {:.1} MiB",
        median(our_rss),
        median(their_rss)
    );
}

fn main() {
    if let Some(work) = std::env::var_os(INNER) {
        inner(Path::new(&work));
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("veilshare-direct-bench")
        .tempdir_in("/var/tmp")
        .expect("work dir");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(work.path().join("big.bin")).expect("file"),
        );
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..SIZE / block.len() {
            for byte in &mut block {
                // xorshift: content no layer can compress.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            file.write_all(&block).expect("write");
        }
        file.flush().expect("flush");
    }
    let status = Command::new("unshare")
        .args(["-rn", "--"])
        .arg(std::env::current_exe().expect("self"))
        .env(INNER, work.path())
        .status()
        .expect("unshare");
    assert!(
        status.success(),
        "the benchmark failed inside its network namespace"
    );
}
