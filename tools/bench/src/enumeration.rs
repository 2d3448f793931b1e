//! The `reset-enumeration` scenario: whether `POST /v1/auth/password-reset` tells a member's
//! address from an unknown one. Both kinds of address are sent in turn (each pair of requests
//! holds one of each, in a seeded random order), to tenants drawn at random, by a closed loop of
//! [`IN_FLIGHT`] requests on the production configuration. Every answer must be `202` with one
//! and the same body; the latencies of the two kinds are compared, and the target is that their
//! p50s differ by no more than [`P50_RATIO`]: a benchmark's figure, not a timed test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HOST, HeaderValue};
use serde::Serialize;

use super::capacity::driver::{self, Mix};
use super::capacity::{ms, quantile};
use super::load::Measured;
use super::report::{md_table, rate, text_table};
use super::scenario::Scenario;
use super::{BASE_DOMAIN, Bench, DataSet, Figures, services};

/// Requests in flight: each of these loops sends its next request when its answer is in.
pub const IN_FLIGHT: usize = 8;
/// The request order's seed: every run sends the same sequence.
const SEED: u64 = 0x5eed_0e5e;
/// The target: member p50 / nobody p50 within this range.
pub const P50_RATIO: (f64, f64) = (0.90, 1.10);
/// The status every answer must have.
const ACCEPTED: StatusCode = StatusCode::ACCEPTED;

/// Whose address a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// A seeded user of the tenant: `user{j}@{slug}.test`.
    Member,
    /// An address no one in the tenant has: `nobody-{i}@{slug}.test`.
    Nobody,
}

impl Who {
    pub const ALL: [Self; 2] = [Self::Member, Self::Nobody];

    pub fn name(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Nobody => "nobody",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Member => 0,
            Self::Nobody => 1,
        }
    }
}

/// One request: whose address, for which tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub who: Who,
    /// Its index in the tenants list.
    pub tenant: usize,
    pub email: String,
}

/// The sequence of requests: pairs of one member and one nobody, in a seeded random order
/// within each pair, each to a tenant (and a member) drawn at random.
#[derive(Debug)]
pub struct Plan {
    mix: Mix,
    slugs: Vec<String>,
    users_per_tenant: u32,
    /// Requests drawn so far (the next one's index).
    drawn: u64,
    /// The second of the current pair, once its first was drawn.
    second: Option<Who>,
}

impl Plan {
    pub fn new(seed: u64, slugs: Vec<String>, users_per_tenant: u32) -> Self {
        Self { mix: Mix::new(seed), slugs, users_per_tenant, drawn: 0, second: None }
    }

    /// The next request.
    pub fn next_request(&mut self) -> Request {
        let who = self.second.take().unwrap_or_else(|| {
            let (first, second) =
                if self.mix.below(2) == 0 { (Who::Member, Who::Nobody) } else { (Who::Nobody, Who::Member) };
            self.second = Some(second);
            first
        });
        let i = self.drawn;
        self.drawn += 1;
        let tenant = self.mix.below(self.slugs.len());
        let slug = self.slugs.get(tenant).map_or("", String::as_str);
        let email = match who {
            Who::Member => {
                format!("user{}@{slug}.test", self.mix.below(usize::try_from(self.users_per_tenant).unwrap_or(1)))
            }
            Who::Nobody => format!("nobody-{i}@{slug}.test"),
        };
        Request { who, tenant, email }
    }
}

/// One kind's measured requests.
#[derive(Debug)]
struct Tally {
    /// Latencies (µs) of the answers that passed the check.
    latency: Histogram<u64>,
    /// Requests sent in the measured window.
    requests: u64,
    /// Answers that failed the check, warm-up included.
    errors: u64,
}

/// What the loops recorded.
#[derive(Debug)]
struct Recorded {
    by_who: [Tally; 2],
    /// Both kinds' latencies together.
    all: Histogram<u64>,
    /// Answers checked, warm-up included.
    checked: u64,
    /// Errors by cause: a status, `body`, `timeout`, `connect` or `io`.
    causes: BTreeMap<String, u64>,
    /// The first answer's body, which every other must equal.
    body: Option<Vec<u8>>,
    first_difference: Option<String>,
}

/// An answer, or why there was none.
type Answer = Result<(StatusCode, Vec<u8>), String>;

impl Recorded {
    fn new() -> Self {
        let tally = || Tally { latency: driver::histogram(), requests: 0, errors: 0 };
        Self {
            by_who: [tally(), tally()],
            all: driver::histogram(),
            checked: 0,
            causes: BTreeMap::new(),
            body: None,
            first_difference: None,
        }
    }

    /// Checks one answer, and records its latency if it is `measured` and passed.
    fn answer(&mut self, request: &Request, answer: Answer, latency: Duration, measured: bool) {
        self.checked += 1;
        let difference = self.difference(answer);
        let tally = &mut self.by_who[request.who.index()];
        if measured {
            tally.requests += 1;
        }
        match difference {
            None => {
                if measured {
                    let us = driver::micros(latency);
                    tally.latency.saturating_record(us);
                    self.all.saturating_record(us);
                }
            }
            Some((cause, detail)) => {
                tally.errors += 1;
                *self.causes.entry(cause).or_default() += 1;
                self.first_difference
                    .get_or_insert_with(|| format!("{} {}: {detail}", request.who.name(), request.email));
            }
        }
    }

    /// How `answer` differs from what every answer must be: `(cause, detail)`, or `None`.
    fn difference(&mut self, answer: Answer) -> Option<(String, String)> {
        let (status, body) = match answer {
            Ok(a) => a,
            Err(cause) => return Some((cause.clone(), cause)),
        };
        if status != ACCEPTED {
            let detail = format!("answered {status}: {}", String::from_utf8_lossy(&body));
            return Some((status.as_u16().to_string(), detail));
        }
        let first = self.body.get_or_insert_with(|| body.clone());
        (*first != body).then(|| {
            let detail = format!(
                "body {:?}, not the first answer's {:?}",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(first)
            );
            ("body".to_owned(), detail)
        })
    }
}

/// One kind's figures.
#[derive(Debug, Clone, Serialize)]
pub struct KindFigures {
    pub who: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

/// The comparison, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Enumeration {
    pub tenants: u32,
    pub users_per_tenant: u32,
    pub in_flight: usize,
    pub warmup_s: u32,
    pub window_s: u32,
    /// Member then nobody.
    pub kinds: Vec<KindFigures>,
    /// Member / nobody.
    pub p50_ratio: f64,
    pub mean_ratio: f64,
    pub p50_ratio_min: f64,
    pub p50_ratio_max: f64,
    /// Answers checked (warm-up included), and those that were not `202` with the one body.
    pub checked: u64,
    pub errors: u64,
    pub error_detail: String,
    pub first_difference: Option<String>,
    /// The body every answer had (the first one's).
    pub body: Option<String>,
}

impl Enumeration {
    /// Whether every answer was `202` with one body.
    pub fn same_answers(&self) -> bool {
        self.errors == 0 && self.checked > 0
    }

    /// Whether the p50 ratio is within the tolerance.
    pub fn timing_met(&self) -> bool {
        (self.p50_ratio_min..=self.p50_ratio_max).contains(&self.p50_ratio)
    }

    fn kind(&self, who: Who) -> Option<&KindFigures> {
        self.kinds.iter().find(|k| k.who == who.name())
    }
}

impl Enumeration {
    /// The figures of what the loops recorded on `data`, `warmup_s` then `window_s` seconds.
    fn new(r: &Recorded, data: DataSet, warmup_s: u32, window_s: u32) -> Self {
        let kinds: Vec<KindFigures> = Who::ALL
            .iter()
            .zip(&r.by_who)
            .map(|(who, t)| KindFigures {
                who: who.name(),
                requests: t.requests,
                errors: t.errors,
                p50_ms: quantile(&t.latency, 50.0),
                p90_ms: quantile(&t.latency, 90.0),
                p99_ms: quantile(&t.latency, 99.0),
                mean_ms: if t.latency.is_empty() { 0.0 } else { t.latency.mean() / 1000.0 },
            })
            .collect();
        let ratio = |field: fn(&KindFigures) -> f64| match kinds.as_slice() {
            [member, nobody] if field(nobody) > 0.0 => field(member) / field(nobody),
            _ => f64::NAN,
        };
        Self {
            tenants: data.tenants,
            users_per_tenant: data.users_per_tenant,
            in_flight: IN_FLIGHT,
            warmup_s,
            window_s,
            p50_ratio: ratio(|k| k.p50_ms),
            mean_ratio: ratio(|k| k.mean_ms),
            kinds,
            p50_ratio_min: P50_RATIO.0,
            p50_ratio_max: P50_RATIO.1,
            checked: r.checked,
            errors: r.causes.values().sum(),
            error_detail: r.causes.iter().map(|(c, n)| format!("{c}×{n}")).collect::<Vec<_>>().join(", "),
            first_difference: r.first_difference.clone(),
            body: r.body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
        }
    }
}

/// What the loops share.
#[derive(Debug)]
struct Shared {
    client: reqwest::Client,
    url: String,
    hosts: Vec<HeaderValue>,
    plan: Mutex<Plan>,
    record: Mutex<Recorded>,
}

/// Sends one reset request and reads its whole answer.
async fn send(shared: &Shared, request: &Request) -> Answer {
    let host = shared.hosts.get(request.tenant).cloned().ok_or_else(|| "no such tenant".to_owned())?;
    let body = serde_json::json!({ "email": request.email }).to_string();
    let response = shared
        .client
        .post(&shared.url)
        .header(HOST, host)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body)
        .send()
        .await
        .map_err(|e| driver::cause(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| driver::cause(&e))?;
    Ok((status, body.to_vec()))
}

/// One closed loop: sends a request, waits for its answer, and again, until `end`.
async fn closed_loop(shared: Arc<Shared>, end: Instant, measured: bool) {
    while Instant::now() < end {
        let request = shared.plan.lock().unwrap_or_else(PoisonError::into_inner).next_request();
        let sent = Instant::now();
        let answer = send(&shared, &request).await;
        let latency = sent.elapsed();
        shared.record.lock().unwrap_or_else(PoisonError::into_inner).answer(&request, answer, latency, measured);
    }
}

/// The tenants' slugs, from the tokens file (`slug\ttoken` lines).
fn slugs(tokens: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
    Ok(text.lines().filter_map(|l| l.split_once('\t')).map(|(slug, _)| slug.to_owned()).collect())
}

impl Bench {
    /// Runs [`IN_FLIGHT`] closed loops for `seconds`, and returns once every answer is in.
    fn run_loops(
        &self,
        runtime: &tokio::runtime::Runtime,
        shared: &Arc<Shared>,
        seconds: u32,
        label: &str,
        measured: bool,
    ) -> Result<(), String> {
        let length = Duration::from_secs(seconds.into());
        let start = Instant::now();
        runtime.block_on(async {
            let loops: Vec<_> =
                (0..IN_FLIGHT).map(|_| tokio::spawn(closed_loop(shared.clone(), start + length, measured))).collect();
            while start.elapsed() < length {
                tokio::time::sleep(Duration::from_secs(1).min(length.saturating_sub(start.elapsed()))).await;
                self.progress.tick(label, start.elapsed(), length);
            }
            for l in loops {
                l.await.map_err(|e| format!("{label}: a loop ended: {e}"))?;
            }
            Ok(())
        })
    }

    /// Measures `reset-enumeration` on `data` against one plinth started for it, keeps the
    /// comparison in the report, and returns both kinds' figures together for the main table.
    pub(super) fn measure_enumeration(&mut self, data: DataSet, tokens: &Path) -> Result<Option<Figures>, String> {
        let slugs = slugs(tokens)?;
        if slugs.len() != data.tenants as usize {
            return Err(format!("{} tenants in {}, expected {}", slugs.len(), tokens.display(), data.tenants));
        }
        let hosts = slugs
            .iter()
            .map(|s| HeaderValue::try_from(format!("{s}.{BASE_DOMAIN}")).map_err(|e| format!("tokens file: {e}")))
            .collect::<Result<_, _>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("driver runtime: {e}"))?;
        let shared = Arc::new(Shared {
            client: driver::client(IN_FLIGHT)?,
            url: format!("http://127.0.0.1:{}/v1/auth/password-reset", self.opts.port),
            hosts,
            plan: Mutex::new(Plan::new(SEED, slugs, data.users_per_tenant)),
            record: Mutex::new(Recorded::new()),
        });
        let name = Scenario::ResetEnumeration.name();
        let server = self.start_plinth(Scenario::ResetEnumeration, name, &[])?;
        let pid = server.pid();
        self.run_loops(&runtime, &shared, self.opts.warmup, &format!("{name} warm-up"), false)?;
        let cpu_before = services::cpu_ticks(pid)?;
        let started = Instant::now();
        self.run_loops(&runtime, &shared, self.opts.duration, name, true)?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu_after = services::cpu_ticks(pid)?;
        let rss = services::peak_rss_kib(pid).map(|k| k as f64 * 1024.0 / 1e6);
        server.stop(Duration::from_secs(10))?;
        let record = shared.record.lock().unwrap_or_else(PoisonError::into_inner);
        let e = Enumeration::new(&record, data, self.opts.warmup, self.opts.duration);
        let requests: u64 = e.kinds.iter().map(|k| k.requests).sum();
        self.progress.result(&format!(
            "{name}: {}; {}",
            summary(&e),
            e.first_difference
                .as_deref()
                .map_or_else(|| "every answer 202 with one body".into(), |d| { format!("first difference: {d}") })
        ));
        let all = &record.all;
        let m = Measured {
            requests,
            seconds,
            rate: requests as f64 / seconds.max(1e-9),
            p50_us: quantile(all, 50.0) * 1e3,
            p90_us: quantile(all, 90.0) * 1e3,
            p99_us: quantile(all, 99.0) * 1e3,
            p999_us: quantile(all, 99.9) * 1e3,
            max_us: ms(all.max()) * 1e3,
            errors: e.errors,
            error_detail: e.error_detail.clone(),
            tool_rate: requests as f64 / seconds.max(1e-9),
            note: format!(
                "closed loop, {IN_FLIGHT} in flight; member/nobody p50 {:.3}, mean {:.3}",
                e.p50_ratio, e.mean_ratio
            ),
        };
        let cpu =
            (requests > 0).then(|| (cpu_after - cpu_before) as f64 / self.clk_tck as f64 * 1000.0 / requests as f64);
        self.report.enumeration = Some(e);
        Ok(Some(Figures::plain(m, "req/s", cpu, rss)))
    }
}

const HEADERS: [&str; 7] = ["address", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "mean ms"];

fn rows(e: &Enumeration) -> Vec<Vec<String>> {
    e.kinds
        .iter()
        .map(|k| {
            vec![
                k.who.into(),
                rate(k.requests as f64),
                k.errors.to_string(),
                format!("{:.3}", k.p50_ms),
                format!("{:.3}", k.p90_ms),
                format!("{:.3}", k.p99_ms),
                format!("{:.3}", k.mean_ms),
            ]
        })
        .collect()
}

/// `met` or `NOT met`.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// The ratios and the verdicts in one line.
fn summary(e: &Enumeration) -> String {
    format!(
        "member/nobody p50 {:.3}, mean {:.3} (target: p50 within {:.2}–{:.2}: {}); {} answers checked, {} not 202 \
         with the one body{}",
        e.p50_ratio,
        e.mean_ratio,
        e.p50_ratio_min,
        e.p50_ratio_max,
        verdict(e.timing_met()),
        rate(e.checked as f64),
        e.errors,
        if e.errors > 0 { format!(" ({})", e.error_detail) } else { String::new() }
    )
}

/// The tolerance, and why a difference within it does not tell the kinds apart.
fn tolerance(e: &Enumeration) -> String {
    format!(
        "Target: the member p50 / nobody p50 ratio within {:.2}–{:.2}. A difference smaller than that is noise \
         next to network jitter: over any real network a client's round trips typically vary by more than a tenth of this \
         route's latency on loopback, so it cannot tell the two kinds apart by timing. It is a figure of the bench, \
         not a timed test.",
        e.p50_ratio_min, e.p50_ratio_max
    )
}

/// The section of `report.md`.
pub fn markdown(e: &Enumeration) -> String {
    let mut md = format!(
        "\n## Password reset: enumeration\n\n`POST /v1/auth/password-reset` on {} tenants × {} users, for a seeded \
         member's address (`user{{j}}@{{slug}}.test`) and an unknown one (`nobody-{{i}}@{{slug}}.test`) in turn, \
         each pair in a seeded random order, tenants drawn at random; {} closed loops, {} s of warm-up then {} s \
         measured; PostgreSQL + Redis, the worker sending the queued messages meanwhile. Every answer, warm-up \
         included, must be 202 with the same body.\n\n",
        rate(f64::from(e.tenants)),
        e.users_per_tenant,
        e.in_flight,
        e.warmup_s,
        e.window_s,
    );
    md.push_str(&md_table(&HEADERS, &rows(e)));
    let _ = writeln!(
        md,
        "\nErrors count every answer, warm-up included; latencies are those of the measured answers that \
         passed.\n\n{}.\n\n{}",
        summary(e),
        tolerance(e)
    );
    if let Some(d) = &e.first_difference {
        let _ = writeln!(md, "\nFirst difference: {d}");
    }
    md
}

/// The lines printed at the end of a run.
pub fn terminal(e: &Enumeration) -> String {
    let mut out = format!("reset-enumeration ({} closed loops):\n", e.in_flight);
    out.push_str(&text_table(&HEADERS, &rows(e)));
    out.push_str(&summary(e));
    out.push('\n');
    if let Some(d) = &e.first_difference {
        let _ = writeln!(out, "first difference: {d}");
    }
    out
}

/// The two targets: the same answers, and the p50 ratio.
pub fn targets(e: &Enumeration) -> [(String, String, bool); 2] {
    let p50 = |who| e.kind(who).map_or(0.0, |k| k.p50_ms);
    [
        (
            "`reset-enumeration`: every answer 202 with the same body".into(),
            format!("{} of {} differ", e.errors, rate(e.checked as f64)),
            e.same_answers(),
        ),
        (
            format!(
                "`reset-enumeration`: member p50 / nobody p50 within {:.2}–{:.2}",
                e.p50_ratio_min, e.p50_ratio_max
            ),
            format!("{:.3} ({:.3} ms vs {:.3} ms)", e.p50_ratio, p50(Who::Member), p50(Who::Nobody)),
            e.timing_met(),
        ),
    ]
}

/// A comparison that met both targets, for the report's tests.
#[cfg(test)]
pub fn sample() -> Enumeration {
    let kind = |who, p50_ms| KindFigures {
        who,
        requests: 1000,
        errors: 0,
        p50_ms,
        p90_ms: 2.0,
        p99_ms: 4.0,
        mean_ms: p50_ms * 1.1,
    };
    Enumeration {
        tenants: 100,
        users_per_tenant: 2,
        in_flight: IN_FLIGHT,
        warmup_s: 2,
        window_s: 5,
        kinds: vec![kind("member", 1.02), kind("nobody", 1.0)],
        p50_ratio: 1.02,
        mean_ratio: 1.02,
        p50_ratio_min: P50_RATIO.0,
        p50_ratio_max: P50_RATIO.1,
        checked: 2600,
        errors: 0,
        error_detail: String::new(),
        first_difference: None,
        body: Some("{\"status\":\"accepted\"}".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::new(3, vec!["t1".into(), "t2".into(), "t3".into()], 4)
    }

    #[test]
    fn each_pair_holds_one_member_and_one_nobody_in_a_random_order() {
        let mut p = plan();
        let requests: Vec<Request> = (0..2000).map(|_| p.next_request()).collect();
        for pair in requests.chunks(2) {
            let whos: Vec<Who> = pair.iter().map(|r| r.who).collect();
            assert!(whos.contains(&Who::Member) && whos.contains(&Who::Nobody), "{whos:?}");
        }
        let member_first = requests.chunks(2).filter(|pair| pair[0].who == Who::Member).count();
        assert!((400..600).contains(&member_first), "member first in {member_first} pairs of 1000");
        let mut again = plan();
        assert!(requests.iter().all(|r| *r == again.next_request()), "the same seed, the same sequence");
    }

    #[test]
    fn members_are_seeded_users_and_nobodies_are_unique_addresses_of_the_tenant() {
        let mut p = plan();
        for i in 0..200 {
            let r = p.next_request();
            let slug = ["t1", "t2", "t3"][r.tenant];
            match r.who {
                Who::Member => {
                    let user =
                        r.email.strip_prefix("user").and_then(|rest| rest.strip_suffix(&format!("@{slug}.test")));
                    assert!(user.and_then(|u| u.parse::<u32>().ok()).is_some_and(|u| u < 4), "{}", r.email);
                }
                Who::Nobody => assert_eq!(r.email, format!("nobody-{i}@{slug}.test")),
            }
        }
    }

    fn accepted(body: &str) -> Answer {
        Ok((StatusCode::ACCEPTED, body.as_bytes().to_vec()))
    }

    #[test]
    fn any_other_status_or_body_is_an_error_and_the_first_is_kept() {
        let mut r = Recorded::new();
        let mut p = plan();
        let ms = Duration::from_millis(1);
        let (a, b, c, d) = (p.next_request(), p.next_request(), p.next_request(), p.next_request());
        r.answer(&a, accepted("{\"ok\":1}"), ms, true);
        r.answer(&b, accepted("{\"ok\":1}"), ms, false);
        r.answer(&c, accepted("{\"ok\":2}"), ms, true);
        r.answer(&d, Ok((StatusCode::TOO_MANY_REQUESTS, b"slow down".to_vec())), ms, true);
        r.answer(&a, Err("timeout".into()), ms, true);
        assert_eq!(r.checked, 5);
        assert_eq!(
            r.causes.iter().map(|(k, n)| (k.as_str(), *n)).collect::<Vec<_>>(),
            [("429", 1), ("body", 1), ("timeout", 1)]
        );
        assert_eq!(r.all.len(), 1, "only measured answers that passed are timed");
        let first = r.first_difference.unwrap_or_default();
        assert!(first.starts_with(&format!("{} {}: body", c.who.name(), c.email)), "{first}");
    }

    #[test]
    fn the_ratios_are_member_over_nobody_and_the_tolerance_is_inclusive() {
        let mut e = sample();
        assert!(e.timing_met() && e.same_answers());
        e.p50_ratio = 1.10;
        assert!(e.timing_met());
        e.p50_ratio = 0.899;
        assert!(!e.timing_met());
        e.p50_ratio = f64::NAN;
        assert!(!e.timing_met());
        e.errors = 1;
        assert!(!e.same_answers());
        let [answers, timing] = targets(&sample());
        assert!(answers.2 && timing.2);
        assert_eq!(timing.1, "1.020 (1.020 ms vs 1.000 ms)");
    }
}
