//! The capacity scenario's open-loop driver. Requests are scheduled at fixed intervals (the
//! `i`th of a step is due `i / rate` seconds after its start), each is sent on its own task
//! whatever the earlier ones are doing, and its latency is counted from when it was *due*, not
//! from when it went out: a stall in plinth then shows as latency, as users would feel it,
//! instead of as fewer requests (wrk's closed loop hides it: coordinated omission). A request
//! that finds the in-flight cap reached is not sent and counts as an error, so a saturated
//! server never slows the schedule down.
//!
//! Why not `oha --latency-correction`: it sends one fixed request, and this mix needs methods,
//! bodies, each tenant's `Host` and token, and ids learned from earlier answers.
//!
//! Its client, histograms and seeded draws also serve `reset-enumeration`'s closed loops
//! (`enumeration.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};

/// Each request's timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One kind of request of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    List,
    Get,
    Create,
    Update,
    Delete,
    Login,
}

impl Kind {
    pub const ALL: [Self; 6] = [Self::List, Self::Get, Self::Create, Self::Update, Self::Delete, Self::Login];

    /// Its share of the requests, in percent.
    pub fn percent(self) -> u32 {
        match self {
            Self::List => 70,
            Self::Get => 15,
            Self::Create => 8,
            Self::Update => 4,
            Self::Delete => 2,
            Self::Login => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Get => "get",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Login => "login",
        }
    }

    pub fn route(self) -> &'static str {
        match self {
            Self::List => "GET /v1/projects",
            Self::Get => "GET /v1/projects/{id}",
            Self::Create => "POST /v1/projects",
            Self::Update => "PATCH /v1/projects/{id}",
            Self::Delete => "DELETE /v1/projects/{id}",
            Self::Login => "POST /v1/auth/login",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// The kind a draw in `0..100` stands for: each kind takes its percent of the range.
    pub fn from_draw(draw: u32) -> Self {
        let mut upto = 0;
        for kind in Self::ALL {
            upto += kind.percent();
            if draw < upto {
                return kind;
            }
        }
        Self::Login
    }
}

/// What to send next: a seeded generator, so that two runs send the same sequence.
#[derive(Debug)]
pub struct Mix {
    rng: SmallRng,
}

impl Mix {
    pub fn new(seed: u64) -> Self {
        Self { rng: SmallRng::seed_from_u64(seed) }
    }

    pub fn kind(&mut self) -> Kind {
        Kind::from_draw(self.rng.random_range(0..100))
    }

    /// A number in `0..n` (`n` at least 1).
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n.max(1))
    }
}

/// When the `i`th request of a step is due, after the step's start, at `rate` requests a second.
pub fn intended(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// How many requests are due before `elapsed` at `rate`: the index of the first due at or after it.
pub fn due_before(elapsed: Duration, rate: f64) -> u64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a count of requests: non-negative, far below 2^53"
    )]
    let n = (elapsed.as_secs_f64() * rate).ceil().max(0.0) as u64;
    n
}

/// A seeded tenant, as the driver addresses it.
#[derive(Debug)]
pub struct Tenant {
    pub slug: String,
    pub host: HeaderValue,
    /// `Bearer {the owner's token}`.
    pub auth: HeaderValue,
    /// Its seeded projects: read and renamed, never deleted.
    pub projects: Vec<String>,
}

/// The server and the data set.
#[derive(Debug)]
pub struct Target {
    /// `http://127.0.0.1:{port}`.
    pub base: String,
    pub tenants: Vec<Tenant>,
    pub users_per_tenant: u32,
    pub password: String,
}

/// One step's schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub rate: f64,
    pub warmup: Duration,
    pub window: Duration,
    pub max_in_flight: usize,
}

/// What the driver tells its caller while a step runs.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// The first measured request is due now.
    WindowStart,
    /// The measured window is over (its requests may still be in flight).
    WindowEnd,
    /// Time since the step started, about once a second.
    Tick(Duration),
}

/// Latencies in µs, up to two minutes, to 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // The bounds are valid constants: 1 ≤ 120,000,000 / 2 and 3 significant digits.
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap_or_else(|_| unreachable!("valid histogram bounds"))
}

/// A duration in whole µs, for the histograms.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The figures of the requests due in one step's measured window.
#[derive(Debug)]
pub struct Recorded {
    /// Every answered or failed request's latency from its due time (not those refused at the
    /// in-flight cap, which were never sent).
    pub all: Histogram<u64>,
    /// The same by kind, with the kind's requests and errors.
    pub by_kind: Vec<(Histogram<u64>, u64, u64)>,
    /// Requests due in the window.
    pub scheduled: u64,
    pub errors: u64,
    /// Errors by cause: a status code, `timeout`, `connect`, `io` or `in-flight cap`.
    pub causes: BTreeMap<String, u64>,
    /// Answers (of any step part) that arrived inside the window.
    pub completed_in_window: u64,
    /// How late the driver sent each request after it was due (its own lag, µs).
    pub send_lag: Histogram<u64>,
    /// Deletes that found no project the driver had created, and created one instead.
    pub deletes_replaced: u64,
}

impl Recorded {
    fn new() -> Self {
        Self {
            all: histogram(),
            by_kind: Kind::ALL.iter().map(|_| (histogram(), 0, 0)).collect(),
            scheduled: 0,
            errors: 0,
            causes: BTreeMap::new(),
            completed_in_window: 0,
            send_lag: histogram(),
            deletes_replaced: 0,
        }
    }

    fn error(&mut self, cause: String) {
        self.errors += 1;
        *self.causes.entry(cause).or_default() += 1;
    }
}

/// A request ready to go.
#[derive(Debug)]
struct Prepared {
    kind: Kind,
    tenant: usize,
    method: Method,
    url: String,
    body: Option<String>,
    /// With the tenant's token (all but login).
    authorized: bool,
    /// A create standing in for a delete that found no project to delete.
    replaces_delete: bool,
}

/// Projects the driver created, oldest first: the only ones it deletes.
pub type Created = Arc<Mutex<VecDeque<(usize, String)>>>;

/// Drives one step: `warmup` then `window` at `rate`, and returns the window's figures once
/// every request due in it has been answered or has timed out.
pub async fn step(
    client: &reqwest::Client,
    target: &Arc<Target>,
    created: &Created,
    mix: &mut Mix,
    schedule: Schedule,
    on: &mut dyn FnMut(Event),
) -> Recorded {
    let record = Arc::new(Mutex::new(Recorded::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + schedule.warmup;
    let window_end = window_start + schedule.window;
    let first_measured = due_before(schedule.warmup, schedule.rate);
    let total = due_before(schedule.warmup + schedule.window, schedule.rate);
    let mut last_tick = start;
    for i in 0..total {
        let due = start + intended(i, schedule.rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let now = Instant::now();
        let measured = i >= first_measured;
        if i == first_measured {
            on(Event::WindowStart);
        }
        if now.duration_since(last_tick) >= Duration::from_secs(1) {
            last_tick = now;
            on(Event::Tick(now.duration_since(start)));
        }
        let prepared = prepare(target, created, mix, i);
        {
            let mut r = record.lock().unwrap_or_else(PoisonError::into_inner);
            if measured {
                r.scheduled += 1;
                r.send_lag.saturating_record(micros(now.duration_since(due)));
                if prepared.replaces_delete {
                    r.deletes_replaced += 1;
                }
            }
            if in_flight.load(Ordering::Relaxed) >= schedule.max_in_flight {
                if measured {
                    r.error("in-flight cap".into());
                }
                continue;
            }
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (client, target, created, record, in_flight) =
            (client.clone(), target.clone(), created.clone(), record.clone(), in_flight.clone());
        tokio::spawn(async move {
            let outcome = send(&client, &target, &prepared).await;
            let done = Instant::now();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            if let Ok(Some(id)) = &outcome {
                created.lock().unwrap_or_else(PoisonError::into_inner).push_back((prepared.tenant, id.clone()));
            }
            let mut r = record.lock().unwrap_or_else(PoisonError::into_inner);
            if done >= window_start && done <= window_end {
                r.completed_in_window += 1;
            }
            if !measured {
                return;
            }
            let latency = micros(done.duration_since(due));
            r.all.saturating_record(latency);
            let k = prepared.kind.index();
            r.by_kind[k].0.saturating_record(latency);
            r.by_kind[k].1 += 1;
            if let Err(cause) = outcome {
                r.by_kind[k].2 += 1;
                r.error(cause);
            }
        });
    }
    if window_end > Instant::now() {
        tokio::time::sleep_until(window_end.into()).await;
    }
    on(Event::WindowEnd);
    // Every request has its own timeout (the client's): the last ones end by then.
    while in_flight.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut r = record.lock().unwrap_or_else(PoisonError::into_inner);
    std::mem::replace(&mut *r, Recorded::new())
}

/// The `i`th request: a kind from the mix, a tenant at random, and for reads and renames one of
/// its seeded projects at random. A delete takes the oldest project the driver created (of
/// whichever tenant); before there is one, it creates one instead.
fn prepare(target: &Target, created: &Created, mix: &mut Mix, i: u64) -> Prepared {
    let mut kind = mix.kind();
    let drawn = kind;
    let mut tenant = mix.below(target.tenants.len());
    let base = &target.base;
    let t = &target.tenants[tenant];
    let (method, url, body) = match kind {
        Kind::List => (Method::GET, format!("{base}/v1/projects"), None),
        Kind::Get => {
            let id = &t.projects[mix.below(t.projects.len())];
            (Method::GET, format!("{base}/v1/projects/{id}"), None)
        }
        Kind::Update => {
            let id = &t.projects[mix.below(t.projects.len())];
            (Method::PATCH, format!("{base}/v1/projects/{id}"), Some(format!(r#"{{"name":"renamed {i}"}}"#)))
        }
        Kind::Create => (Method::POST, format!("{base}/v1/projects"), Some(format!(r#"{{"name":"capacity {i}"}}"#))),
        Kind::Delete => match created.lock().unwrap_or_else(PoisonError::into_inner).pop_front() {
            Some((owner, id)) => {
                tenant = owner;
                (Method::DELETE, format!("{base}/v1/projects/{id}"), None)
            }
            None => {
                kind = Kind::Create;
                (Method::POST, format!("{base}/v1/projects"), Some(format!(r#"{{"name":"capacity {i}"}}"#)))
            }
        },
        Kind::Login => {
            let user = mix.below(usize::try_from(target.users_per_tenant).unwrap_or(1));
            let body = format!(
                r#"{{"email":"user{user}@{}.test","password":"{}"}}"#,
                t.slug,
                target.password.replace('"', "\\\"")
            );
            (Method::POST, format!("{base}/v1/auth/login"), Some(body))
        }
    };
    Prepared { kind, tenant, method, url, body, authorized: kind != Kind::Login, replaces_delete: drawn != kind }
}

/// The client the drivers send with: at most `max_idle` idle connections kept, each request's
/// timeout [`TIMEOUT`], no proxy.
pub fn client(max_idle: usize) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        // Below plinth's keep-alive (5 s), so the driver never reuses a connection plinth is closing.
        .pool_idle_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(max_idle)
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .map_err(|e| format!("driver client: {e}"))
}

/// A failed request's cause, as the error counts name it: `timeout`, `connect` or `io`.
pub fn cause(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "io"
    };
    what.to_owned()
}

/// Sends one request and reads its whole answer: `Ok(Some(id))` for a project created,
/// `Ok(None)` for any other 2xx, else the cause of the error.
async fn send(client: &reqwest::Client, target: &Target, p: &Prepared) -> Result<Option<String>, String> {
    #[derive(serde::Deserialize)]
    struct Created {
        id: String,
    }
    let t = &target.tenants[p.tenant];
    let mut request = client.request(p.method.clone(), &p.url).header(HOST, t.host.clone());
    if p.authorized {
        request = request.header(AUTHORIZATION, t.auth.clone());
    }
    if let Some(body) = &p.body {
        request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json")).body(body.clone());
    }
    let response = request.send().await.map_err(|e| cause(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| cause(&e))?;
    if !status.is_success() {
        return Err(status.as_u16().to_string());
    }
    if p.method == Method::POST && p.kind == Kind::Create {
        return Ok(serde_json::from_slice::<Created>(&body).ok().map(|c| c.id));
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_evenly_spaced_whatever_the_answers() {
        assert_eq!(intended(0, 500.0), Duration::ZERO);
        assert_eq!(intended(1, 500.0), Duration::from_millis(2));
        assert_eq!(intended(500, 500.0), Duration::from_secs(1));
        assert_eq!(intended(3, 1000.0) - intended(2, 1000.0), Duration::from_millis(1));
        // 10 s at 1,250/s: the 12,500th request is due at 10 s exactly.
        assert_eq!(intended(12_500, 1250.0), Duration::from_secs(10));
        // A window holds rate × its length: requests 3,907 to 27,343 at 781.25/s after 5 s.
        let (first, end) = (due_before(Duration::from_secs(5), 781.25), due_before(Duration::from_secs(35), 781.25));
        assert_eq!((first, end - first), (3_907, 23_437));
        assert!(
            intended(first - 1, 781.25) < Duration::from_secs(5) && intended(first, 781.25) >= Duration::from_secs(5)
        );
    }

    #[test]
    fn draws_map_onto_the_kinds_by_their_percent() {
        assert_eq!(Kind::ALL.iter().map(|k| k.percent()).sum::<u32>(), 100);
        assert_eq!(Kind::from_draw(0), Kind::List);
        assert_eq!(Kind::from_draw(69), Kind::List);
        assert_eq!(Kind::from_draw(70), Kind::Get);
        assert_eq!(Kind::from_draw(84), Kind::Get);
        assert_eq!(Kind::from_draw(85), Kind::Create);
        assert_eq!(Kind::from_draw(93), Kind::Update);
        assert_eq!(Kind::from_draw(97), Kind::Delete);
        assert_eq!(Kind::from_draw(99), Kind::Login);
    }

    #[test]
    fn a_seeded_mix_sends_each_kind_in_its_proportion() {
        let mut mix = Mix::new(7);
        let n = 200_000;
        let mut counts = [0u32; 6];
        for _ in 0..n {
            counts[mix.kind().index()] += 1;
        }
        for kind in Kind::ALL {
            let share = f64::from(counts[kind.index()]) / f64::from(n) * 100.0;
            let want = f64::from(kind.percent());
            assert!((share - want).abs() < 0.3 + want * 0.02, "{}: {share:.2}% for {want}%", kind.name());
        }
        // The same seed, the same sequence.
        let (mut a, mut b) = (Mix::new(1), Mix::new(1));
        assert!((0..1000).all(|_| a.kind() == b.kind() && a.below(1000) == b.below(1000)));
    }
}
