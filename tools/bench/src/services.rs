//! The things a bench run talks to: PostgreSQL (through psql), Redis (through redis-cli), the
//! processes it starts, and what /proc says about them.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http;

/// The bench databases' name: `plinth_bench_{data set}`, one per data set, recreated each run.
pub const DB_NAME: &str = "plinth_bench";
/// Every Redis key plinth writes during a bench starts with this; only these are flushed.
pub const REDIS_PREFIX: &str = "plinth-bench:";
/// The password `plinth_app` gets when the bench has to create the role.
const APP_PASSWORD: &str = "bench";

/// Runs `cmd` to completion; a failure carries its stderr.
pub fn output(step: &str, cmd: &mut Command) -> Result<String, String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{step}: could not start {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{step} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// The first line `program args` prints (stdout, else stderr), whatever its exit status.
pub fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).lines().next().map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// Whether `program` can be started.
pub fn has(program: &str, version_flag: &str) -> bool {
    Command::new(program).arg(version_flag).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// A PostgreSQL URL taken apart: enough to point the same server at another database/user.
#[derive(Debug, Clone)]
pub struct PgServer {
    user: String,
    password: Option<String>,
    host: String,
    port: String,
    admin_db: String,
    /// The bench database the URLs below point at: one per data set.
    db: String,
}

impl PgServer {
    /// Parses `postgres://user[:password]@host[:port][/db]`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let bad = || format!("PLINTH_BENCH_PG: expected postgres://user[:password]@host[:port][/db], got {url:?}");
        let rest = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")).ok_or_else(bad)?;
        let rest = rest.split('?').next().unwrap_or_default();
        let (auth, rest) = rest.rsplit_once('@').ok_or_else(bad)?;
        let (user, password) = match auth.split_once(':') {
            Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
            None => (auth.to_owned(), None),
        };
        let (hostport, db) = rest.split_once('/').unwrap_or((rest, "postgres"));
        let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
        if user.is_empty() || host.is_empty() {
            return Err(bad());
        }
        let admin_db = if db.is_empty() { "postgres".to_owned() } else { db.to_owned() };
        Ok(Self { user, password, host: host.to_owned(), port: port.to_owned(), admin_db, db: DB_NAME.to_owned() })
    }

    fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        let auth = match password {
            Some(p) => format!("{user}:{p}"),
            None => user.to_owned(),
        };
        format!("postgres://{auth}@{}:{}/{db}", self.host, self.port)
    }

    /// The admin connection.
    pub fn admin_url(&self) -> String {
        self.url(&self.user, self.password.as_deref(), &self.admin_db)
    }

    /// Points the URLs below at the database of the data set named `suffix`: `plinth_bench_{suffix}`.
    pub fn use_db(&mut self, suffix: &str) {
        self.db = format!("{DB_NAME}_{suffix}");
    }

    /// Drops every bench database a run left (they stay for inspection until the next run).
    pub fn drop_bench_dbs(&self) -> Result<(), String> {
        let names = self.psql(
            &self.admin_url(),
            &format!("SELECT datname FROM pg_database WHERE datname = '{DB_NAME}' OR datname LIKE '{DB_NAME}\\_%'"),
        )?;
        for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
            self.psql(&self.admin_url(), &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))?;
        }
        Ok(())
    }

    /// The bench database, as its owner (the admin role).
    pub fn owner_url(&self) -> String {
        self.url(&self.user, self.password.as_deref(), &self.db)
    }

    /// The bench database, as the API role.
    pub fn app_url(&self) -> String {
        self.url("plinth_app", Some(APP_PASSWORD), &self.db)
    }

    /// The bench database as the API role, without a password: `plinth migrate` then leaves an
    /// existing role's password alone (the role is cluster-wide; other databases use it too).
    pub fn app_url_no_password(&self) -> String {
        self.url("plinth_app", None, &self.db)
    }

    /// Runs SQL through psql as `url`, returning unaligned, tuples-only output.
    pub fn psql(&self, url: &str, sql: &str) -> Result<String, String> {
        output(
            "psql",
            Command::new("psql").args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]),
        )
        .map(|s| s.trim().to_owned())
    }

    /// Drops and recreates the bench database.
    pub fn recreate(&self) -> Result<(), String> {
        let db = &self.db;
        self.psql(&self.admin_url(), &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))?;
        self.psql(&self.admin_url(), &format!("CREATE DATABASE {db}"))?;
        Ok(())
    }

    /// Whether the role `plinth_app` exists already.
    pub fn app_role_exists(&self) -> Result<bool, String> {
        Ok(self.psql(&self.admin_url(), "SELECT 1 FROM pg_roles WHERE rolname = 'plinth_app'")? == "1")
    }

    /// Transactions committed in the bench database so far (pg_stat_database).
    pub fn xact_commit(&self) -> Option<u64> {
        let sql = format!("SELECT xact_commit FROM pg_stat_database WHERE datname = '{}'", self.db);
        self.psql(&self.admin_url(), &sql).ok()?.parse().ok()
    }

    pub fn version(&self) -> String {
        self.psql(&self.admin_url(), "SHOW server_version").unwrap_or_else(|_| "?".into())
    }
}

/// The shared Redis; the bench only touches keys under [`REDIS_PREFIX`].
#[derive(Debug, Clone)]
pub struct Redis {
    pub url: String,
}

impl Redis {
    fn cli(&self) -> Command {
        let mut c = Command::new("redis-cli");
        c.args(["-u", &self.url]);
        c
    }

    pub fn ping(&self) -> Result<(), String> {
        let out = output("redis-cli ping", self.cli().arg("PING"))?;
        if out.trim() == "PONG" { Ok(()) } else { Err(format!("redis-cli ping answered {out:?}")) }
    }

    /// Deletes every key under the bench prefix (never FLUSHALL: the Redis is shared).
    pub fn flush_prefix(&self) -> Result<u64, String> {
        let keys =
            output("redis-cli --scan", self.cli().args(["--scan", "--pattern"]).arg(format!("{REDIS_PREFIX}*")))?;
        let keys: Vec<&str> = keys.lines().map(str::trim).filter(|k| k.starts_with(REDIS_PREFIX)).collect();
        for chunk in keys.chunks(500) {
            output("redis-cli DEL", self.cli().arg("DEL").args(chunk))?;
        }
        Ok(keys.len() as u64)
    }

    /// Calls of each command the server has processed so far (`INFO commandstats`, without
    /// the INFO commands the bench itself sends); server-wide, so other clients count too.
    pub fn command_calls(&self) -> Option<Vec<(String, u64)>> {
        let info = output("redis-cli INFO", self.cli().args(["INFO", "commandstats"])).ok()?;
        let calls = info
            .lines()
            .filter_map(|l| {
                let (name, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
                (name != "info").then(|| (name.to_owned(), calls))
            })
            .collect();
        Some(calls)
    }

    pub fn version(&self) -> String {
        output("redis-cli INFO", self.cli().args(["INFO", "server"]))
            .ok()
            .and_then(|i| i.lines().find_map(|l| l.strip_prefix("redis_version:")).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| "?".into())
    }
}

/// What a server wrote to stdout: drained through a pipe as a log collector would.
#[derive(Debug, Default)]
pub struct LogCounter {
    pub lines: AtomicU64,
    pub bytes: AtomicU64,
}

/// A server process the bench started; killed if dropped while still running.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    child: Child,
    pub port: u16,
    pub logs: Arc<LogCounter>,
    drain: Option<JoinHandle<()>>,
}

/// How many log lines of each server are kept in `target/bench/logs/`.
const LOG_SAMPLE_LINES: u64 = 200;

impl Server {
    /// Starts `cmd`, piping its stdout into a drain that counts lines and bytes, keeps the first
    /// few lines in `log_sample`, and discards the rest; stderr goes to `stderr_file`.
    pub fn start(
        name: &str,
        cmd: &mut Command,
        port: u16,
        log_sample: &Path,
        stderr_file: &Path,
    ) -> Result<Self, String> {
        if http::get(port, "/healthz", "localhost", None).is_ok() {
            return Err(format!("something already listens on 127.0.0.1:{port}; pass --port"));
        }
        let stderr = std::fs::File::create(stderr_file).map_err(|e| format!("{}: {e}", stderr_file.display()))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("{name}: could not start {cmd:?}: {e}"))?;
        let logs = Arc::new(LogCounter::default());
        let drain = child.stdout.take().map(|stdout| {
            let logs = logs.clone();
            let sample_path = log_sample.to_path_buf();
            std::thread::spawn(move || drain_logs(stdout, &logs, &sample_path))
        });
        Ok(Self { name: name.to_owned(), child, port, logs, drain })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `GET /healthz` answers 200, or the process exits, or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration, stderr_file: &Path) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let err = std::fs::read_to_string(stderr_file).unwrap_or_default();
                return Err(format!("{} exited during start-up ({status}): {}", self.name, err.trim()));
            }
            if let Ok(r) = http::get(self.port, "/healthz", "localhost", None)
                && r.status == 200
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(format!("{} did not answer /healthz within {timeout:?}", self.name));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then SIGKILL if it is still running after `grace`.
    pub fn stop(mut self, grace: Duration) -> Result<(), String> {
        self.terminate(grace);
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
        Ok(())
    }

    fn terminate(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let started = Instant::now();
        while started.elapsed() < grace {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(2));
    }
}

fn drain_logs(stdout: impl std::io::Read, logs: &LogCounter, sample_path: &Path) {
    let mut sample = std::fs::File::create(sample_path).ok();
    let mut reader = BufReader::with_capacity(1 << 16, stdout);
    let mut kept = 0;
    loop {
        let (consumed, newlines) = match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(buf) => {
                let newlines = buf.iter().filter(|&&b| b == b'\n').count() as u64;
                if kept < LOG_SAMPLE_LINES
                    && let Some(f) = sample.as_mut()
                {
                    let _ = f.write_all(buf);
                    kept += newlines.max(1);
                }
                (buf.len(), newlines)
            }
        };
        reader.consume(consumed);
        logs.lines.fetch_add(newlines, Ordering::Relaxed);
        logs.bytes.fetch_add(consumed as u64, Ordering::Relaxed);
    }
}

/// CPU time (user + system) of a process so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    cpu_ticks_at(Path::new(&format!("/proc/{pid}/stat")))
}

/// The same from a `stat` file of /proc: a process's, or a thread's (`/proc/thread-self/stat`).
pub fn cpu_ticks_at(path: &Path) -> Result<u64, String> {
    let stat = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // Fields after the command name (which may contain spaces) start at the state (field 3);
    // utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).ok_or("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or("malformed /proc/<pid>/stat");
    Ok(field(11)? + field(12)?)
}

/// The process's peak resident set (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// The process's resident set now (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux when that is unavailable).
pub fn clock_ticks_per_second() -> u64 {
    output("getconf", Command::new("getconf").arg("CLK_TCK")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(100)
}

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(buf)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding, as `PLINTH_ENCRYPTION_KEY` takes it.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lines of `/proc/cpuinfo` etc. that describe the machine.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:")).map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} × {cpu}, {mem} RAM, Linux {}", kernel.trim())
}

/// The 1-minute load average.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// `target/` (or `CARGO_TARGET_DIR`).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}
