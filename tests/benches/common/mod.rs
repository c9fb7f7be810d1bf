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
