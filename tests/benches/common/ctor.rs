//! A C `tor` client on the private test network, for the benchmarks (the OnionShare side by
//! side) and the end-to-end tests (Tor Browser's path: C tor and a form or a download). Shared
//! by path: `tests/benches/common` and the `e2e` test binary both include it.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// A C `tor` joined to the private network, killed on drop.
pub struct CTor {
    child: Child,
    /// Its SOCKS port on 127.0.0.1.
    pub socks: u16,
    /// Its control port on 127.0.0.1.
    pub control: u16,
}

impl CTor {
    /// Starts one under `dir` with the network's client lines (`client_torrc`, written by
    /// `cargo xtask testnet up`) and waits until it has bootstrapped.
    pub fn start(dir: &Path, client_torrc: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("tor dir");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        let (socks, control) = (free_port(), free_port());
        let base = std::fs::read_to_string(client_torrc).expect("client torrc");
        let torrc = dir.join("torrc");
        std::fs::write(
            &torrc,
            format!(
                "{base}DataDirectory {}\nSocksPort 127.0.0.1:{socks}\nControlPort 127.0.0.1:{control}\nLog notice stdout\n",
                dir.display()
            ),
        )
        .expect("torrc");
        let mut child = Command::new("tor")
            .arg("--defaults-torrc")
            .arg("/dev/null")
            .arg("-f")
            .arg(&torrc)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tor");
        let stdout = child.stdout.take().expect("stdout");
        let (ready, wait) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Bootstrapped 100%") {
                    let _ = ready.send(());
                }
            }
        });
        wait.recv_timeout(Duration::from_secs(120))
            .expect("C tor did not bootstrap on the private network");
        Self {
            child,
            socks,
            control,
        }
    }

    /// Its process id.
    #[allow(dead_code)] // the benchmarks' (CPU time), not the e2e tests'
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for CTor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
