//! A private, throwaway PostgreSQL cluster on a free port, for tests that stop and restart
//! the server (never the shared one). PostgreSQL refuses to run as root, so the cluster runs
//! as the `postgres` user when the tests run as root.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

/// A cluster of this test's own; stopped and removed when dropped.
#[derive(Debug)]
pub struct PrivateCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PLINTH_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).filter(|p| p.join("pg_ctl").exists()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect("no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a PostgreSQL tool, as `postgres` when we are root.
fn pg(bin: &std::path::Path, tool: &str, args: &[&str]) -> std::process::Output {
    let exe = bin.join(tool);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args).output().unwrap_or_else(|e| panic!("could not run {}: {e}", exe.display()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl PrivateCluster {
    /// Initialises and starts a cluster with trust authentication for the user `postgres`.
    pub fn start() -> Self {
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(format!("plinth-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        if is_root() {
            let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown of the cluster directory");
        }
        let data = dir.join("data");
        let data_s = data.to_string_lossy().into_owned();
        let out = pg(&bin, "initdb", &["-D", &data_s, "-A", "trust", "-U", "postgres", "--no-sync"]);
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let cluster = Self { dir, bin, port: free_port() };
        cluster.resume();
        cluster
    }

    /// A streaming standby of this cluster (which must be running): a base backup taken with
    /// `pg_basebackup -R` (so it follows this cluster over a replication connection), started
    /// on a port of its own as a hot standby. Stopped and removed when dropped, like any
    /// private cluster; `stop` and `resume` stop and start it.
    pub fn standby(&self) -> Self {
        let dir = std::env::temp_dir().join(format!("plinth-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("standby directory");
        if is_root() {
            let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown of the standby directory");
        }
        let data = dir.join("data").to_string_lossy().into_owned();
        let port = self.port.to_string();
        // initdb's trust authentication already lets `postgres` make replication connections
        // from 127.0.0.1, and PostgreSQL's defaults (`wal_level=replica`, ten WAL senders)
        // serve them.
        let out = pg(
            &self.bin,
            "pg_basebackup",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D", &data, "-R", "-X", "stream", "--no-sync"],
        );
        assert!(out.status.success(), "pg_basebackup failed: {}", String::from_utf8_lossy(&out.stderr));
        let standby = Self { dir, bin: self.bin.clone(), port: free_port() };
        standby.resume();
        standby
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn resume(&self) {
        let log = self.dir.join("log").to_string_lossy().into_owned();
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        let out = pg(&self.bin, "pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "-t", "30", "start"]);
        assert!(out.status.success(), "pg_ctl start failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the server the fast way (sessions are ended, as by an operator's `pg_ctl stop`).
    pub fn stop_fast(&self) {
        let out = pg(&self.bin, "pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the server at once (in-flight transactions are rolled back).
    pub fn stop(&self) {
        let out = pg(&self.bin, "pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A URL for `user` on database `db` of this cluster.
    pub fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        match password {
            Some(p) => format!("postgres://{user}:{p}@127.0.0.1:{}/{db}", self.port),
            None => format!("postgres://{user}@127.0.0.1:{}/{db}", self.port),
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = pg(&self.bin, "pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
