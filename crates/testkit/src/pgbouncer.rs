//! A private PgBouncer in transaction mode on a free loopback port, in front of the test
//! server (`PLINTH_TEST_PG`), for tests that run plinth through a pooler. Every database of
//! the server is reachable through it under its own name, as the same user. PgBouncer refuses
//! to run as root, so it runs as the `postgres` user when the tests run as root.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::Config;

/// A pgbouncer process of this test's own; killed, and its directory removed, when dropped.
#[derive(Debug)]
pub struct PgBouncer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The test server's host and port, which PgBouncer forwards to.
fn upstream() -> (String, u16) {
    let base: Config = crate::admin_url().parse().expect("PLINTH_TEST_PG is not a valid PostgreSQL URL");
    let host = match base.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    (host, base.get_ports().first().copied().unwrap_or(5432))
}

impl PgBouncer {
    /// Starts PgBouncer (`pool_mode = transaction`, trust authentication for the test
    /// server's owner and `plinth_app`, no prepared statement tracking: 1.18 has none) and
    /// waits until it accepts connections.
    ///
    /// Each server connection is cleared (`DEALLOCATE ALL`) whenever it goes back to the pool,
    /// as plinth's documentation asks of a PgBouncer it runs behind with the statement cache
    /// off.
    pub fn start() -> Self {
        let binary = which_pgbouncer();
        let dir = std::env::temp_dir().join(format!("plinth-pgbouncer-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("pgbouncer directory");
        let port = free_port();
        let (host, upstream_port) = upstream();
        let users = format!("\"{}\" \"\"\n\"{}\" \"\"\n", crate::owner_user(), plinth_postgres::migrate::APP_ROLE);
        std::fs::write(dir.join("users.txt"), users).expect("pgbouncer users file");
        let ini = format!(
            "[databases]\n\
             * = host={host} port={upstream_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = transaction\n\
             server_reset_query = DEALLOCATE ALL\n\
             server_reset_query_always = 1\n\
             default_pool_size = 20\n\
             max_client_conn = 500\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            users = dir.join("users.txt").display(),
            log = dir.join("pgbouncer.log").display(),
            pid = dir.join("pgbouncer.pid").display(),
        );
        let config = dir.join("pgbouncer.ini");
        std::fs::write(&config, ini).expect("pgbouncer configuration");
        let mut cmd = if is_root() {
            let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown of the pgbouncer directory");
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&binary);
            c
        } else {
            Command::new(&binary)
        };
        let child = cmd
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {} ({e}); apt-get install pgbouncer", binary.display()));
        let bouncer = Self { port, dir, child };
        bouncer.wait_until_up();
        bouncer
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default();
                panic!("pgbouncer on port {} did not start; its log:\n{log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `url` (a test database's, as [`crate::TestDatabase`] gives them) with PgBouncer's
    /// address instead of the server's: the same user, password and database, through the pooler.
    pub fn url(&self, url: &str) -> String {
        let config: Config = url.parse().expect("valid URL");
        let user = config.get_user().expect("a URL with a user");
        let db = config.get_dbname().expect("a URL with a database");
        match config.get_password() {
            Some(p) => {
                format!("postgres://{user}:{}@127.0.0.1:{}/{db}", String::from_utf8_lossy(p), self.port)
            }
            None => format!("postgres://{user}@127.0.0.1:{}/{db}", self.port),
        }
    }
}

/// `pgbouncer`: `PLINTH_PGBOUNCER` if set, else Debian's (`/usr/sbin`, not on a user's `PATH`),
/// else whatever `PATH` finds.
fn which_pgbouncer() -> PathBuf {
    if let Ok(path) = std::env::var("PLINTH_PGBOUNCER") {
        return PathBuf::from(path);
    }
    let debian = PathBuf::from("/usr/sbin/pgbouncer");
    if debian.exists() {
        return debian;
    }
    PathBuf::from("pgbouncer")
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Under runuser the child is runuser: pgbouncer itself is the pid in its pid file.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
