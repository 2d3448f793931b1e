//! Two ways to run plinth: in this process on port 0 (`TestApp`, from the shared harness), and
//! as the real `plinth` binary in a child process (`Process`), for signals, exit codes, captured logs, and metrics
//! that no other app in this process adds to (the metrics recorder is process-wide).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, StatusCode};

use crate::harness::DEFAULTS;
pub use crate::harness::{ENCRYPTION_KEY, JWT_SECRET, TestApp, client, signup};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A slug of this test's own.
pub fn slug(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

/// The real `plinth` binary, in embedded mode unless `vars` say otherwise, with its stdout
/// (the logs) and stderr captured. Killed when dropped, if still running.
pub struct Process {
    child: Child,
    pub port: u16,
    pub address: String,
    pub client: reqwest::Client,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn capture(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            let mut all = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            all.push_str(&line);
            all.push('\n');
        }
    });
    text
}

impl Process {
    /// Starts `plinth` on a free port with generous quotas and `vars`, and waits until it
    /// serves.
    pub async fn start(vars: &[(&str, &str)]) -> Self {
        let port = free_port();
        // The binary logs at its default level: the log tests read what it writes.
        let mut env: BTreeMap<String, String> =
            DEFAULTS.iter().filter(|(k, _)| *k != "PLINTH_LOG").map(|(k, v)| ((*k).into(), (*v).into())).collect();
        env.insert("PLINTH_LISTEN".into(), format!("127.0.0.1:{port}"));
        for (k, v) in vars {
            env.insert((*k).into(), (*v).into());
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
            // Nothing from the developer's shell (a DATABASE_URL, a PLINTH_LOG) leaks in.
            .env_clear()
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the plinth binary starts");
        let stdout = capture(child.stdout.take().expect("stdout"));
        let stderr = capture(child.stderr.take().expect("stderr"));
        let process =
            Self { child, port, address: format!("http://127.0.0.1:{port}"), client: client(), stdout, stderr };
        // Serving (and so listening for signals) once `/readyz` answers at all. Tests of the
        // metrics leave `/readyz` out of what they count.
        let deadline = Instant::now() + Duration::from_secs(30);
        while process.request(Method::GET, "localhost", "/readyz").send().await.is_err() {
            assert!(Instant::now() < deadline, "plinth did not start:\n{}", process.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    /// A request to `path` with `Host: host`.
    pub fn request(&self, method: Method, host: &str, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.address)).header("host", host)
    }

    /// The process's id (to read its `/proc` entries).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `INT`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal}");
    }

    /// Waits up to `within` for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything written to stdout (the logs) so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The current metrics.
    pub async fn scrape(&self) -> Metrics {
        self.scrape_as(None).await
    }

    /// The current metrics, with `token` as the bearer when `PLINTH_METRICS_TOKEN` is set.
    pub async fn scrape_as(&self, token: Option<&str>) -> Metrics {
        let mut request = self.request(Method::GET, "localhost", "/metrics");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let res = request.send().await.expect("scrape");
        assert_eq!(res.status(), StatusCode::OK);
        Metrics::parse(&res.text().await.expect("metrics text"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A scrape, as series (name and sorted labels) and their values.
#[derive(Debug)]
pub struct Metrics {
    pub text: String,
    pub series: BTreeMap<String, f64>,
}

impl Metrics {
    /// Parses the Prometheus text format (what plinth writes of it).
    pub fn parse(text: &str) -> Self {
        let mut series = BTreeMap::new();
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a sample value: {line}"));
            series.insert(normalise(key), value);
        }
        Self { text: text.to_owned(), series }
    }

    /// The value of `name` with exactly `labels`, if that series exists.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series.get(&key(name, labels)).copied()
    }

    /// The value of `name` with exactly `labels`; fails when the series is missing.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no series {}\n{}", key(name, labels), self.text))
    }
}

/// `name{a="1",b="2"}` with the labels sorted by name.
pub fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    labels.sort();
    if labels.is_empty() { name.to_owned() } else { format!("{name}{{{}}}", labels.join(",")) }
}

fn normalise(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return series.to_owned();
    };
    let inner = rest.strip_suffix('}').unwrap_or(rest);
    // Label values here never contain `",` (route templates, small words).
    let mut labels: Vec<&str> = inner.split("\",").map(|l| l.trim_end_matches('"')).collect();
    labels.sort_unstable();
    let labels: Vec<String> = labels.into_iter().map(|l| format!("{l}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}
