//! Helpers shared by the benchmarks: where the release binary is, and a running server.

#![allow(dead_code)] // each bench uses its own subset

pub mod ctor;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// `<target>` of the running bench (`<target>/release/deps/<bench>-…`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

/// The `veilshare` binary: `VEILSHARE_BIN`, else the release build next to the bench.
pub fn binary() -> PathBuf {
    std::env::var_os("VEILSHARE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/veilshare"))
}

/// The median of a run's values.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Throughput of `size` bytes in `elapsed`.
pub fn mib_per_s(size: usize, elapsed: Duration) -> f64 {
    size as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// A running `veilshare serve`.
pub struct Veilshare {
    pub child: Child,
    pub api: String,
    pub token: String,
}

impl Veilshare {
    /// Starts a server with its data in `data_dir`: with `tor_config`, Tor on (that Arti
    /// TOML); without, Tor off and a plain public listener on a free port.
    pub fn start(data_dir: &Path, tor_config: Option<&Path>) -> Self {
        Self::start_binary(&binary(), data_dir, tor_config)
    }

    /// [`Veilshare::start`] with another build of the binary.
    pub fn start_binary(binary: &Path, data_dir: &Path, tor_config: Option<&Path>) -> Self {
        let instance = data_dir.join("instance.json");
        let _ = std::fs::remove_file(&instance);
        let mut command = Command::new(binary);
        command.args(["serve", "--no-browser", "--listen", "127.0.0.1:0"]);
        match tor_config {
            Some(config) => {
                command.arg("--tor-config").arg(config);
            }
            None => {
                command
                    .args(["--no-tor", "--public-listen"])
                    .arg(format!("127.0.0.1:{}", free_port()));
            }
        }
        let child = command
            .arg("--data-dir")
            .arg(data_dir)
            .env("VEILSHARE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start veilshare");
        let deadline = Instant::now() + Duration::from_secs(30);
        let info: serde_json::Value = loop {
            if let Some(info) = std::fs::read_to_string(&instance)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
            {
                break info;
            }
            assert!(Instant::now() < deadline, "veilshare did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let token = std::fs::read_to_string(data_dir.join("api-token")).expect("token");
        Self {
            child,
            api: info["api"].as_str().expect("api").to_owned(),
            token: token.trim().to_owned(),
        }
    }

    /// Stops it with SIGTERM and waits.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// A file of `len` pseudo-random bytes (xorshift from `seed`: incompressible, reproducible).
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    use std::io::Write;
    let mut file =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create"));
    let mut state = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < len {
        for chunk in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&buf).expect("write");
        written += buf.len() as u64;
    }
    file.flush().expect("flush");
}

/// Writes every dirty page to disk (`sync`), outside a timing: each sample that writes a
/// gigabyte then starts from the same state, instead of being throttled by the kernel for the
/// previous sample's (or the test file's) writeback.
pub fn settle_writeback() {
    let synced = std::process::Command::new("sync").status().expect("sync");
    assert!(synced.success(), "sync failed");
}

/// Peak resident set size of a process, in bytes (`VmHWM`).
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Debian's nginx serving `root` on 127.0.0.1:`port` (one worker, sendfile), its files in
/// `dir`; `extra` goes into its `server` block (WebDAV `PUT`, for one).
pub fn start_nginx(dir: &Path, root: &Path, port: u16, extra: &str) -> Child {
    let conf = dir.join("nginx.conf");
    let user = if Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
    {
        "user root;"
    } else {
        ""
    };
    std::fs::write(
        &conf,
        format!(
            "{user}\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; sendfile on; tcp_nopush on; \
             client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; \
             uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi; \
             server {{ listen 127.0.0.1:{port}; root {r}; {extra} }} }}\n",
            d = dir.display(),
            r = root.display()
        ),
    )
    .expect("nginx.conf");
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("-v")
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("nginx is not installed: run `cargo xtask bench`");
    let child = Command::new(nginx)
        .args(["-e", &dir.join("error.log").to_string_lossy(), "-c"])
        .arg(&conf)
        .spawn()
        .expect("start nginx");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Median time per iteration of a criterion benchmark, from its saved estimates.
pub fn median_ns(group: &str, function: &str) -> Option<f64> {
    let path = target_dir()
        .join("criterion")
        .join(group)
        .join(function)
        .join("new/estimates.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// Peak RSS of the nginx worker (the child of the master whose pid is in `dir/nginx.pid`).
pub fn nginx_worker_peak_rss(dir: &Path) -> u64 {
    nginx_workers(dir)
        .into_iter()
        .map(peak_rss)
        .max()
        .unwrap_or(0)
}

/// CPU seconds (user + system) a running process has used so far, all its threads.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11..13]
        .iter()
        .map(|f| f.parse::<f64>().expect("ticks"))
        .sum();
    // In USER_HZ, which Linux fixes at 100 for user space on every architecture we run on.
    ticks / 100.0
}

/// The worker processes of the nginx started with [`start_nginx`] in `dir`.
pub fn nginx_workers(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("nginx.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .map(|master| {
            std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default()
}
