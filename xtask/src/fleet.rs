//! `cargo xtask fleet [--duration S] [--release]`: a rolling deploy under load must drop
//! nothing.
//!
//! It makes a fresh database (`plinth_fleet`), runs `plinth migrate`, and starts three `plinth`
//! instances (the debug binary, or the release one with `--release`), each on a private
//! loopback port, on that database and one Redis key prefix, behind HAProxy on another private
//! port (its configuration is generated: [`haproxy_config`] says why each setting is what it
//! is). A webhook receiver on loopback records every event id it is sent. Then a mixed load
//! runs through HAProxy for `S` seconds (default 60): signups, logins, project creates, reads,
//! lists and renames on several tenants, each with a webhook subscribed to the projects'
//! events. While it runs, every instance is rolled in turn: SIGTERM, wait for it to exit
//! (with status 0), start its successor on the same port, wait for `/readyz` to answer 200 and
//! for HAProxy to see it up. The load goes on until both the duration and the roll are over.
//!
//! It passes only with zero failed requests (every answer the expected status: no 5xx, no
//! connection error), zero lost writes (every acknowledged create reads back, with the name its
//! last acknowledged rename gave it) and every webhook delivered (each acknowledged create and
//! rename has its event in `GET /v1/events`, and the receiver got every one of those ids), and
//! prints the figures. The servers' and HAProxy's logs are under `target/fleet/`.
//!
//! `cargo xtask ci` runs it for [`CI_DURATION`].

mod http;
mod json;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use self::http::{Client, Receiver, Response};
use self::json::{Json, quote};
use crate::util::{
    cargo, free_port, fresh_database, plinth_command, plinth_environment, run as step, target_dir, which,
};

/// The load's length in CI: long enough for a whole roll of the fleet under load.
pub const CI_DURATION: Duration = Duration::from_secs(25);

/// The fleet's database, dropped and made again at every run.
const DATABASE: &str = "plinth_fleet";
/// How many instances run behind HAProxy.
const INSTANCES: usize = 3;
/// Tenants signed up before the load, each with a webhook; the load's own signups come on top.
const TENANTS: usize = 4;
/// Threads sending the load, each on its own kept-alive connection to HAProxy, one request at
/// a time.
const CLIENTS: usize = 8;
/// The load's run before the first instance is stopped.
const WARM_UP: Duration = Duration::from_secs(3);

/// `PLINTH_SHUTDOWN_DRAIN_S` of the fleet: `/readyz` answers 503 this long before the
/// listener closes. It must exceed the time HAProxy takes to see the instance down, at most
/// `FALL` checks `CHECK_INTERVAL` apart, each answered within `CHECK_TIMEOUT` (see
/// [`haproxy_config`]): 2 × 500 ms + 1 s = 2 s, so 3 s leaves a second to spare.
const DRAIN_S: u64 = 3;
/// `PLINTH_SHUTDOWN_GRACE_S`: in-flight requests' time to finish once the listener is closed.
const GRACE_S: u64 = 10;
/// HAProxy's health check interval.
const CHECK_INTERVAL_MS: u64 = 500;
/// HAProxy's health check timeout.
const CHECK_TIMEOUT_MS: u64 = 1000;
/// Failed checks before HAProxy takes a server out.
const FALL: u32 = 2;
/// Passed checks before HAProxy puts a server (back) in.
const RISE: u32 = 2;
/// The longest wait for an instance to stop, to start, or for HAProxy to see it up.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait, after the load, for the last webhooks to arrive.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Every password the fleet signs up with.
const PASSWORD: &str = "correct horse battery staple";

/// `cargo xtask fleet [--duration S] [--release]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut duration = Duration::from_secs(60);
    let mut release = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                let value = args.next().ok_or("fleet: --duration takes a number of seconds")?;
                let seconds =
                    value.parse::<u64>().map_err(|_| format!("fleet: {value:?} is not a number of seconds"))?;
                duration = Duration::from_secs(seconds);
            }
            "--release" => release = true,
            other => return Err(format!("fleet: unknown argument {other:?} (takes --duration S and --release)")),
        }
    }
    fleet(duration, release)
}

/// Builds plinth, starts the fleet, runs the load and the roll, checks and prints the outcome.
pub fn fleet(duration: Duration, release: bool) -> Result<(), String> {
    let haproxy = which("haproxy").ok_or(
        "fleet: haproxy is not installed (Debian: apt-get install -y haproxy; `.ci/run` installs it)".to_owned(),
    )?;
    let target = target_dir();
    let work = target.join("fleet");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let mut build = cargo();
    build.args(["build", "-p", "plinth-web", "--bin", "plinth"]);
    if release {
        build.arg("--release");
    }
    step("build plinth", &mut build)?;
    let plinth = target.join(if release { "release" } else { "debug" }).join("plinth");

    fresh_database(DATABASE)?;
    let receiver = Receiver::start()?;
    let ports = (0..INSTANCES).map(|_| free_port().map(|a| a.port())).collect::<Result<Vec<_>, _>>()?;
    let env = environment()?;
    step("plinth migrate", plinth_on(&plinth, &env, ports[0]).arg("migrate"))?;

    let mut instances = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        instances.push(Instance::start(&plinth, &env, *port, &work, i, 0)?);
    }
    for instance in &mut instances {
        instance.wait_until_ready()?;
    }
    let front = free_port()?;
    let balancer = Balancer::start(&haproxy, &work, front, &ports)?;
    for i in 0..INSTANCES {
        balancer.wait_for(&server_name(i), |s| s == "UP", "up")?;
    }
    eprintln!("\n==> fleet: {INSTANCES} instances behind HAProxy on {front}; webhooks to {}", receiver.url());

    let tenants =
        (0..TENANTS).map(|i| Tenant::sign_up(front, &format!("fleet{i}"), &receiver)).collect::<Result<Vec<_>, _>>()?;

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let clients = (0..CLIENTS)
        .map(|i| {
            let mut load = Load::new(i, front, tenants[i % TENANTS].clone(), started, failures.clone());
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    load.step();
                }
                load
            })
        })
        .collect::<Vec<_>>();

    std::thread::sleep(WARM_UP);
    let roll = roll(&mut instances, &balancer, &plinth, &env, &work);
    if let Some(rest) = duration.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    stop.store(true, Ordering::Relaxed);
    let loads = clients
        .into_iter()
        .map(|c| c.join().map_err(|_| "a load thread panicked".to_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    let elapsed = started.elapsed();
    let restarts = roll?;

    let figures = Figures::gather(&loads, elapsed);
    let failures = std::mem::take(&mut *failures.lock().unwrap_or_else(PoisonError::into_inner));
    let checked = check(front, &tenants, &loads, &receiver)?;
    eprintln!("{}", summary(&figures, &restarts, &failures, &checked, duration));
    drop(balancer);
    drop(instances);

    let mut problems = Vec::new();
    if !failures.is_empty() {
        problems.push(format!("{} failed requests", failures.len()));
    }
    if !checked.lost.is_empty() {
        problems.push(format!("{} lost writes: {:?}", checked.lost.len(), first(&checked.lost)));
    }
    if !checked.missing_events.is_empty() {
        problems.push(format!(
            "{} acknowledged writes without their event: {:?}",
            checked.missing_events.len(),
            first(&checked.missing_events)
        ));
    }
    if !checked.undelivered.is_empty() {
        problems.push(format!(
            "{} events never delivered: {:?}",
            checked.undelivered.len(),
            first(&checked.undelivered)
        ));
    }
    if problems.is_empty() {
        eprintln!("fleet: passed");
        Ok(())
    } else {
        Err(format!("fleet failed: {} (logs under {})", problems.join("; "), work.display()))
    }
}

/// The first few of `items`, for an error message.
fn first(items: &[String]) -> &[String] {
    &items[..items.len().min(5)]
}

/// The instances' configuration: the shared one (one database, one Redis prefix, the same
/// secrets for all), webhook targets on loopback only, and the drain and grace the HAProxy
/// timing is made for.
fn environment() -> Result<Vec<(&'static str, String)>, String> {
    let mut env = plinth_environment(DATABASE, "fleet")?;
    env.extend([
        ("PLINTH_WEBHOOK_ALLOW_PRIVATE", "true".into()),
        ("PLINTH_WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32".into()),
        ("PLINTH_WEBHOOK_BACKOFF_MS", "200".into()),
        ("PLINTH_SHUTDOWN_DRAIN_S", DRAIN_S.to_string()),
        ("PLINTH_SHUTDOWN_GRACE_S", GRACE_S.to_string()),
        ("PLINTH_LOG", "warn,plinth_web::startup=info".into()),
    ]);
    Ok(env)
}

/// `plinth` with `env`, listening on `port`.
fn plinth_on(plinth: &Path, env: &[(&'static str, String)], port: u16) -> Command {
    let mut cmd = plinth_command(plinth, env);
    cmd.env("PLINTH_LISTEN", format!("127.0.0.1:{port}"));
    cmd
}

/// HAProxy's name for the instance at `index`.
fn server_name(index: usize) -> String {
    format!("plinth{}", index + 1)
}

/// One running `plinth`; killed if still running when dropped.
#[derive(Debug)]
struct Instance {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Instance {
    /// Starts generation `generation` of instance `index` on `port`, its log in `work`.
    fn start(
        plinth: &Path,
        env: &[(&'static str, String)],
        port: u16,
        work: &Path,
        index: usize,
        generation: usize,
    ) -> Result<Self, String> {
        let log = work.join(format!("{}.{generation}.log", server_name(index)));
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        let child = plinth_on(plinth, env, port)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", plinth.display()))?;
        Ok(Self { child, port, log })
    }

    /// Waits until `/readyz` answers 200.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + STEP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("plinth exited ({status}); see {}", self.log.display()));
            }
            if Client::new(addr).send("GET", "/readyz", "localhost", None, None).is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("plinth was not ready in {STEP_TIMEOUT:?}; see {}", self.log.display()))
    }

    /// Sends SIGTERM (std has no signals: `kill` does it).
    fn terminate(&self) -> Result<(), String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(|e| format!("kill -TERM: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("kill -TERM {} failed ({status})", self.child.id())) }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy in the foreground, with its stats socket to ask how it sees each server; killed
/// when dropped.
#[derive(Debug)]
struct Balancer {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Balancer {
    /// Writes the configuration to `work/haproxy.cfg` and starts HAProxy with it.
    fn start(haproxy: &Path, work: &Path, front: SocketAddr, ports: &[u16]) -> Result<Self, String> {
        let socket = work.join("haproxy.sock");
        let _ = std::fs::remove_file(&socket);
        let config = work.join("haproxy.cfg");
        std::fs::write(&config, haproxy_config(front, ports, &socket))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        step("check the HAProxy configuration", Command::new(haproxy).arg("-c").arg("-q").arg("-f").arg(&config))?;
        let log = work.join("haproxy.log");
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", haproxy.display()))?;
        let mut balancer = Self { child, socket, log };
        let deadline = Instant::now() + STEP_TIMEOUT;
        while balancer.statuses().is_err() {
            if let Ok(Some(status)) = balancer.child.try_wait() {
                return Err(format!("haproxy exited ({status}); see {}", balancer.log.display()));
            }
            if Instant::now() > deadline {
                return Err(format!("haproxy's stats socket did not answer; see {}", balancer.log.display()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(balancer)
    }

    /// Each server's status as HAProxy sees it (`UP`, `DOWN`, `UP 1/2` while going down…).
    fn statuses(&self) -> Result<HashMap<String, String>, String> {
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| format!("{}: {e}", self.socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        stream.write_all(b"show stat\n").map_err(|e| format!("stats socket: {e}"))?;
        let mut csv = String::new();
        stream.read_to_string(&mut csv).map_err(|e| format!("stats socket: {e}"))?;
        let mut lines = csv.lines();
        let header = lines.next().ok_or("stats socket: empty answer")?.trim_start_matches("# ");
        let column = |name: &str| header.split(',').position(|c| c == name);
        let (Some(proxy), Some(server), Some(status)) = (column("pxname"), column("svname"), column("status")) else {
            return Err(format!("stats socket: unexpected header {header:?}"));
        };
        Ok(lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|row| row.get(proxy) == Some(&"plinth"))
            .filter_map(|row| Some(((*row.get(server)?).to_owned(), (*row.get(status)?).to_owned())))
            .collect())
    }

    /// Waits until HAProxy's status for `server` satisfies `wanted` (described by `what`).
    fn wait_for(&self, server: &str, wanted: impl Fn(&str) -> bool, what: &str) -> Result<Duration, String> {
        let started = Instant::now();
        while started.elapsed() < STEP_TIMEOUT {
            if self.statuses()?.get(server).is_some_and(|s| wanted(s)) {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("HAProxy did not see {server} {what} within {STEP_TIMEOUT:?}"))
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HAProxy configuration of the fleet.
///
/// - Health checks: `GET /readyz` every [`CHECK_INTERVAL_MS`], out after [`FALL`] failures, in
///   after [`RISE`] passes. On SIGTERM `/readyz` answers 503 at once, so HAProxy stops sending
///   within `FALL × inter + timeout check` (2 s), before the drain ([`DRAIN_S`]) ends and the
///   listener closes.
/// - `option http-server-close`: one connection to a server per request. HAProxy then holds no
///   idle connection to plinth that plinth's keep-alive timeout could close at the moment
///   HAProxy reuses it (HAProxy would answer that request 502, and may not retry a POST), and a
///   stopping instance has no idle connections to wait out before it exits. Loopback
///   connections cost microseconds.
/// - `retries 3` and `option redispatch 1` on HAProxy's default `retry-on conn-failure`: only a
///   connection that could not be made is retried (on another server), never a request that
///   was sent, so a POST is never sent twice. No L7 retries (`retry-on` with
///   `empty-response` or status codes): they would resend writes.
fn haproxy_config(front: SocketAddr, ports: &[u16], socket: &Path) -> String {
    let servers = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("    server {} 127.0.0.1:{port} check\n", server_name(i)))
        .collect::<String>();
    format!(
        "\
global
    maxconn 4096
    stats socket {socket} mode 600 level admin
    log stdout format raw local0

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    option http-server-close
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 30s
    timeout check {CHECK_TIMEOUT_MS}ms
    retries 3
    option redispatch 1

frontend fleet
    bind {front}
    default_backend plinth

backend plinth
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server inter {CHECK_INTERVAL_MS}ms fall {FALL} rise {RISE}
{servers}",
        socket = socket.display()
    )
}

/// What one instance's restart took.
#[derive(Debug)]
struct Restart {
    /// HAProxy's name for it.
    server: String,
    /// From SIGTERM until HAProxy had taken it out.
    out_after: Duration,
    /// From SIGTERM until it exited.
    exited_after: Duration,
    /// From the successor's start until its `/readyz` answered 200.
    ready_after: Duration,
    /// From then until HAProxy had put it in.
    in_after: Duration,
}

/// Rolls every instance in turn: SIGTERM, wait for a clean exit (watching HAProxy take it out
/// meanwhile), start its successor on the same port, wait for it to be ready and in.
fn roll(
    instances: &mut [Instance],
    balancer: &Balancer,
    plinth: &Path,
    env: &[(&'static str, String)],
    work: &Path,
) -> Result<Vec<Restart>, String> {
    let mut restarts = Vec::new();
    for (i, instance) in instances.iter_mut().enumerate() {
        let server = server_name(i);
        eprintln!("==> fleet: rolling {server}");
        let signalled = Instant::now();
        instance.terminate()?;
        let mut out_after = None;
        let status = loop {
            if out_after.is_none() && balancer.statuses()?.get(&server).is_some_and(|s| s == "DOWN") {
                out_after = Some(signalled.elapsed());
            }
            if let Some(status) = instance.child.try_wait().map_err(|e| format!("{server}: {e}"))? {
                break status;
            }
            if signalled.elapsed() > STEP_TIMEOUT {
                return Err(format!("{server} did not exit within {STEP_TIMEOUT:?} of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let exited_after = signalled.elapsed();
        if !status.success() {
            return Err(format!("{server} exited with {status} on SIGTERM; see {}", instance.log.display()));
        }
        let out_after = out_after.ok_or_else(|| {
            format!(
                "{server} exited {exited_after:.1?} after SIGTERM before HAProxy took it out: the drain is too short"
            )
        })?;
        let starting = Instant::now();
        *instance = Instance::start(plinth, env, instance.port, work, i, 1)?;
        instance.wait_until_ready()?;
        let ready_after = starting.elapsed();
        let in_after = balancer.wait_for(&server, |s| s == "UP", "up")?;
        restarts.push(Restart { server, out_after, exited_after, ready_after, in_after });
    }
    Ok(restarts)
}

/// A tenant of the fleet: its slug and its owner's current access token.
#[derive(Debug, Clone)]
struct Tenant {
    slug: String,
    email: String,
    token: String,
}

impl Tenant {
    /// Signs `slug` up through HAProxy and subscribes a webhook to its projects' events.
    fn sign_up(front: SocketAddr, slug: &str, receiver: &Receiver) -> Result<Self, String> {
        let mut client = Client::new(front);
        let (email, token) = sign_up(&mut client, slug)?;
        let host = format!("{slug}.localhost");
        let body = format!(r#"{{"url":{},"events":["project.created","project.updated"]}}"#, quote(&receiver.url()));
        let answer = client.send("POST", "/v1/webhooks", &host, Some(&token), Some(&body))?;
        if answer.status != 201 {
            return Err(format!("POST /v1/webhooks for {slug} answered {}: {}", answer.status, answer.body));
        }
        Ok(Self { slug: slug.to_owned(), email, token })
    }

    /// The tenant's host.
    fn host(&self) -> String {
        format!("{}.localhost", self.slug)
    }
}

/// Signs up the tenant `slug`: its owner's email and access token.
fn sign_up(client: &mut Client, slug: &str) -> Result<(String, String), String> {
    let email = format!("owner@{slug}.test");
    let body = format!(
        r#"{{"tenant_slug":{},"tenant_name":{},"email":{},"password":{}}}"#,
        quote(slug),
        quote(slug),
        quote(&email),
        quote(PASSWORD)
    );
    let answer = client.send("POST", "/v1/signup", "localhost", None, Some(&body))?;
    if answer.status != 201 {
        return Err(format!("signup of {slug} answered {}: {}", answer.status, answer.body));
    }
    let token = access_token(&answer)?;
    Ok((email, token))
}

/// The `access_token` of a signup's or a login's answer.
fn access_token(answer: &Response) -> Result<String, String> {
    let json = Json::parse(&answer.body).map_err(|e| format!("{e}: {}", answer.body))?;
    json.str_at("access_token")
        .or_else(|| json.get("session").and_then(|s| s.str_at("access_token")))
        .map(str::to_owned)
        .ok_or_else(|| format!("no access_token in {}", answer.body))
}

/// A request that did not get the answer it should have.
#[derive(Debug)]
struct Failure {
    /// Seconds into the load.
    at: f64,
    /// What was asked.
    request: String,
    /// What came back instead.
    outcome: String,
}

/// An acknowledged project: its id and the name its last acknowledged write gave it.
#[derive(Debug, Clone)]
struct Project {
    id: String,
    name: String,
}

/// One load thread's state and tally.
#[derive(Debug)]
struct Load {
    index: usize,
    client: Client,
    tenant: Tenant,
    started: Instant,
    failures: Arc<Mutex<Vec<Failure>>>,
    rng: u64,
    sequence: u64,
    projects: Vec<Project>,
    /// Every acknowledged rename's (unique) name, with its project's id.
    renames: Vec<(String, String)>,
    creates: usize,
    signups: u64,
    logins: u64,
    /// Every request's latency, in microseconds.
    latencies: Vec<u32>,
}

impl Load {
    fn new(
        index: usize,
        front: SocketAddr,
        tenant: Tenant,
        started: Instant,
        failures: Arc<Mutex<Vec<Failure>>>,
    ) -> Self {
        Self {
            index,
            client: Client::new(front),
            tenant,
            started,
            failures,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
            sequence: 0,
            projects: Vec::new(),
            renames: Vec::new(),
            creates: 0,
            signups: 0,
            logins: 0,
            latencies: Vec::new(),
        }
    }

    /// A pseudo-random number below `n` (xorshift: the mix needs no better).
    fn below(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    /// The index of one of the thread's projects (there is one: the first step creates it).
    fn any_project(&mut self) -> usize {
        let count = u64::try_from(self.projects.len()).unwrap_or(u64::MAX);
        usize::try_from(self.below(count)).unwrap_or(0)
    }

    /// Sends one request and checks its status; the answer when it was `expected`.
    fn request(&mut self, method: &str, path: &str, host: &str, body: Option<&str>, expected: u16) -> Option<Response> {
        let token = (host != "localhost").then(|| self.tenant.token.clone());
        let sent = Instant::now();
        let result = self.client.send(method, path, host, token.as_deref(), body);
        let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.latencies.push(micros);
        let outcome = match result {
            Ok(answer) if answer.status == expected => return Some(answer),
            Ok(answer) => format!("{} {}", answer.status, answer.body.chars().take(300).collect::<String>()),
            Err(e) => e,
        };
        let failure =
            Failure { at: self.started.elapsed().as_secs_f64(), request: format!("{method} {path} ({host})"), outcome };
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).push(failure);
        None
    }

    /// One request of the mix: creates 30 %, reads 35 %, renames 15 %, lists 15 %, logins 4 %,
    /// signups 1 %.
    fn step(&mut self) {
        self.sequence += 1;
        let host = self.tenant.host();
        let roll = if self.projects.is_empty() { 0 } else { self.below(100) };
        match roll {
            0..30 => {
                let name = format!("p{}-{}", self.index, self.sequence);
                let body = format!(r#"{{"name":{}}}"#, quote(&name));
                if let Some(answer) = self.request("POST", "/v1/projects", &host, Some(&body), 201) {
                    match Json::parse(&answer.body).ok().and_then(|j| j.str_at("id").map(str::to_owned)) {
                        Some(id) => {
                            self.creates += 1;
                            self.projects.push(Project { id, name });
                        }
                        None => self.fail_parse("POST /v1/projects", &answer),
                    }
                }
            }
            30..65 => {
                let at = self.any_project();
                let path = format!("/v1/projects/{}", self.projects[at].id);
                self.request("GET", &path, &host, None, 200);
            }
            65..80 => {
                let at = self.any_project();
                let name = format!("r{}-{}", self.index, self.sequence);
                let body = format!(r#"{{"name":{}}}"#, quote(&name));
                let path = format!("/v1/projects/{}", self.projects[at].id);
                if self.request("PATCH", &path, &host, Some(&body), 200).is_some() {
                    self.renames.push((name.clone(), self.projects[at].id.clone()));
                    self.projects[at].name = name;
                }
            }
            80..95 => {
                self.request("GET", "/v1/projects?limit=10", &host, None, 200);
            }
            95..99 => {
                let body = format!(r#"{{"email":{},"password":{}}}"#, quote(&self.tenant.email), quote(PASSWORD));
                if let Some(answer) = self.request("POST", "/v1/auth/login", &host, Some(&body), 200) {
                    match access_token(&answer) {
                        Ok(token) => {
                            self.logins += 1;
                            self.tenant.token = token;
                        }
                        Err(_) => self.fail_parse("POST /v1/auth/login", &answer),
                    }
                }
            }
            _ => {
                let slug = format!("fleet-{}-{}", self.index, self.sequence);
                let email = format!("owner@{slug}.test");
                let body = format!(
                    r#"{{"tenant_slug":{},"tenant_name":{},"email":{},"password":{}}}"#,
                    quote(&slug),
                    quote(&slug),
                    quote(&email),
                    quote(PASSWORD)
                );
                if self.request("POST", "/v1/signup", "localhost", Some(&body), 201).is_some() {
                    self.signups += 1;
                }
            }
        }
    }

    /// Records an expected status whose body could not be read.
    fn fail_parse(&self, request: &str, answer: &Response) {
        let failure = Failure {
            at: self.started.elapsed().as_secs_f64(),
            request: request.to_owned(),
            outcome: format!("unreadable answer: {}", answer.body.chars().take(300).collect::<String>()),
        };
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).push(failure);
    }
}

/// The load's figures.
#[derive(Debug)]
struct Figures {
    requests: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    creates: usize,
    renames: usize,
    signups: u64,
    logins: u64,
}

impl Figures {
    fn gather(loads: &[Load], elapsed: Duration) -> Self {
        let mut latencies = loads.iter().flat_map(|l| l.latencies.iter().copied()).collect::<Vec<_>>();
        latencies.sort_unstable();
        // The nearest-rank quantile, in milliseconds: the smallest latency that at least
        // `per_mille` of the requests did not exceed.
        let quantile = |per_mille: usize| {
            let at = (latencies.len() * per_mille).div_ceil(1000).saturating_sub(1);
            latencies.get(at).map_or(0.0, |us| f64::from(*us) / 1000.0)
        };
        Self {
            requests: latencies.len(),
            seconds: elapsed.as_secs_f64(),
            p50_ms: quantile(500),
            p99_ms: quantile(990),
            max_ms: quantile(1000),
            creates: loads.iter().map(|l| l.creates).sum(),
            renames: loads.iter().map(|l| l.renames.len()).sum(),
            signups: loads.iter().map(|l| l.signups).sum(),
            logins: loads.iter().map(|l| l.logins).sum(),
        }
    }
}

/// What the checks after the load found.
#[derive(Debug, Default)]
struct Checked {
    /// Acknowledged projects read back with their last acknowledged name.
    readable: usize,
    /// Acknowledged writes not found as acknowledged.
    lost: Vec<String>,
    /// Events of acknowledged writes found in the events API.
    events: usize,
    /// Acknowledged writes with no event.
    missing_events: Vec<String>,
    /// Events the receiver got (each counted once).
    delivered: usize,
    /// Deliveries beyond the first of an event (delivery is at least once).
    duplicates: u32,
    /// Events of acknowledged writes the receiver never got.
    undelivered: Vec<String>,
    /// How long the last deliveries took to arrive after the load.
    delivery_wait: Duration,
}

/// Reads every acknowledged project back, finds each acknowledged write's event through
/// `GET /v1/events`, and waits for the receiver to have every one of them.
fn check(front: SocketAddr, tenants: &[Tenant], loads: &[Load], receiver: &Receiver) -> Result<Checked, String> {
    let mut checked = Checked::default();
    let mut client = Client::new(front);
    let mut expected = HashSet::new();
    for tenant in tenants {
        // The signup's token: logins start sessions of their own and end none.
        let token = tenant.token.clone();
        let host = tenant.host();
        let mine = loads.iter().filter(|l| l.tenant.slug == tenant.slug).collect::<Vec<_>>();
        for project in mine.iter().flat_map(|l| l.projects.iter()) {
            let answer = client.send("GET", &format!("/v1/projects/{}", project.id), &host, Some(&token), None)?;
            let name = Json::parse(&answer.body).ok().and_then(|j| j.str_at("name").map(str::to_owned));
            if answer.status == 200 && name.as_deref() == Some(&project.name) {
                checked.readable += 1;
            } else {
                checked.lost.push(format!("{} {}: {} {}", tenant.slug, project.id, answer.status, answer.body));
            }
        }
        let created = events(&mut client, &host, &token, "project.created", |data| data.str_at("id"))?;
        let updated = events(&mut client, &host, &token, "project.updated", |data| data.str_at("name"))?;
        for project in mine.iter().flat_map(|l| l.projects.iter()) {
            match created.get(&project.id).map(Vec::as_slice) {
                Some([event]) => {
                    expected.insert(event.clone());
                }
                found => checked.missing_events.push(format!("project.created of {}: {found:?}", project.id)),
            }
        }
        for (name, id) in mine.iter().flat_map(|l| l.renames.iter()) {
            match updated.get(name).map(Vec::as_slice) {
                Some([event]) => {
                    expected.insert(event.clone());
                }
                found => checked.missing_events.push(format!("project.updated of {id} to {name}: {found:?}")),
            }
        }
    }
    checked.events = expected.len();
    let waiting = Instant::now();
    loop {
        let seen = receiver.seen();
        let undelivered = expected.iter().filter(|id| !seen.contains_key(*id)).cloned().collect::<Vec<_>>();
        if undelivered.is_empty() || waiting.elapsed() > DELIVERY_TIMEOUT {
            checked.delivered = expected.iter().filter(|id| seen.contains_key(*id)).count();
            checked.duplicates = expected.iter().filter_map(|id| seen.get(id)).map(|n| n - 1).sum();
            checked.undelivered = undelivered;
            checked.delivery_wait = waiting.elapsed();
            return Ok(checked);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every event of `kind` in the tenant's events API, by the key `key` reads from its `data`:
/// each key's event ids.
fn events(
    client: &mut Client,
    host: &str,
    token: &str,
    kind: &str,
    key: impl Fn(&Json) -> Option<&str>,
) -> Result<HashMap<String, Vec<String>>, String> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/events?type={kind}&limit=100");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", percent_encode(cursor)));
        }
        let answer = client.send("GET", &path, host, Some(token), None)?;
        if answer.status != 200 {
            return Err(format!("GET {path} on {host} answered {}: {}", answer.status, answer.body));
        }
        let page = Json::parse(&answer.body).map_err(|e| format!("GET {path}: {e}"))?;
        for item in page.get("items").and_then(Json::as_array).unwrap_or_default() {
            if let (Some(id), Some(k)) = (item.str_at("id"), item.get("data").and_then(&key)) {
                found.entry(k.to_owned()).or_default().push(id.to_owned());
            }
        }
        match page.str_at("next_cursor") {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(found),
        }
    }
}

/// `s` with every byte but the unreserved ones percent-encoded, for a query string.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The figures, for people.
fn summary(
    figures: &Figures,
    restarts: &[Restart],
    failures: &[Failure],
    checked: &Checked,
    asked: Duration,
) -> String {
    let mut out = format!(
        "\nfleet: {INSTANCES} instances behind HAProxy, {CLIENTS} clients, {:.1} s of load (asked {} s), {} restarts\n",
        figures.seconds,
        asked.as_secs(),
        restarts.len()
    );
    out.push_str(&format!(
        "  requests    {} ({:.0}/s), latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
        figures.requests,
        figures.requests as f64 / figures.seconds,
        figures.p50_ms,
        figures.p99_ms,
        figures.max_ms
    ));
    out.push_str(&format!("  failures    {}\n", failures.len()));
    for failure in failures.iter().take(10) {
        out.push_str(&format!("    at {:6.2} s  {}: {}\n", failure.at, failure.request, failure.outcome));
    }
    out.push_str(&format!(
        "  writes      {} acknowledged ({} creates, {} renames), {} projects read back as written, {} lost\n",
        figures.creates + figures.renames,
        figures.creates,
        figures.renames,
        checked.readable,
        checked.lost.len()
    ));
    out.push_str(&format!("  accounts    {} signups, {} logins\n", figures.signups, figures.logins));
    out.push_str(&format!(
        "  webhooks    {} events of acknowledged writes ({} writes without one), {} delivered ({} duplicates), {} \
         undelivered; the last arrived {:.1} s after the load\n",
        checked.events,
        checked.missing_events.len(),
        checked.delivered,
        checked.duplicates,
        checked.undelivered.len(),
        checked.delivery_wait.as_secs_f64()
    ));
    for r in restarts {
        out.push_str(&format!(
            "  restart     {}: out of HAProxy {:.1} s after SIGTERM, exited after {:.1} s; successor ready in {:.1} s, \
             in HAProxy {:.1} s later\n",
            r.server,
            r.out_after.as_secs_f64(),
            r.exited_after.as_secs_f64(),
            r.ready_after.as_secs_f64(),
            r.in_after.as_secs_f64()
        ));
    }
    out
}
