//! A PostgreSQL and a NATS server of a test's own, on free loopback ports, so a test can stop
//! and restart them without disturbing the shared ones other tests use.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Waits until something accepts connections on `port`.
fn wait_listening(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "{what} does not listen on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The directory of PostgreSQL's server programs (`initdb`, `pg_ctl`): `NIYANTA_TEST_PG_BIN`,
/// or the newest `/usr/lib/postgresql/*/bin` (Debian's layout).
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("NIYANTA_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server programs in /usr/lib/postgresql (or set NIYANTA_TEST_PG_BIN)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("initdb under /usr/lib/postgresql/*/bin")
}

/// Runs a PostgreSQL program as the `postgres` user when this process is root (the server
/// refuses to run as root), else as this user.
fn pg_command(program: &Path) -> Command {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL cluster in a temporary directory, trust auth, user `postgres`.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
        let _ = Command::new("chmod").args(["755"]).arg(dir.path()).status();
        let out = pg_command(&pg_bin().join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let pg = Self { dir, port: free_port() };
        pg.pg_ctl_start();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl_start(&self) {
        let data = self.dir.path().join("data");
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let status = pg_command(&pg_bin().join("pg_ctl"))
            .args(["-w", "-D"])
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("server.log"))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl start");
        assert!(status.success(), "pg_ctl start:\n{}", self.log());
        wait_listening(self.port, "PostgreSQL");
    }

    /// Stops the server at once (`-m immediate`: like a crash, no shutdown checkpoint).
    pub fn stop(&self) {
        let status = pg_command(&pg_bin().join("pg_ctl"))
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl stop");
        assert!(status.success(), "pg_ctl stop:\n{}", self.log());
    }

    /// Starts it again on the same port and data.
    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = pg_command(&pg_bin().join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A `nats-server` process (core NATS: what the broker uses).
pub struct PrivateNats {
    child: Option<Child>,
    pub port: u16,
}

impl PrivateNats {
    pub fn start() -> Self {
        let mut n = Self { child: None, port: free_port() };
        n.spawn();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        // Debian installs it in /usr/sbin, which a non-root PATH may lack.
        let program = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = Command::new(program)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on the PATH (scripts/test.sh installs it)");
        self.child = Some(child);
        wait_listening(self.port, "nats-server");
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}
