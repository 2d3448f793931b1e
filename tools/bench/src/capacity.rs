//! The `capacity` scenario: how many requests a second of a SaaS API's mix plinth serves on the
//! production configuration before its p99 passes 50 ms. The open-loop driver (`driver.rs`)
//! holds a fixed arrival rate per step; the rate steps up from `--start-rate` by
//! `--step-factor` until a step misses the bar, then one more step shows the knee.

mod chart;
pub mod driver;
mod tables;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::header::HeaderValue;
use serde::Serialize;

use super::load::Measured;
use super::scenario::Scenario;
use super::{BASE_DOMAIN, Bench, DataSet, Figures, services};
pub use chart::chart;
use driver::{Event, Kind, Mix, Schedule, Target, Tenant};
pub use tables::{markdown, terminal};

/// The seeded password (`plinth seed` gives it to every user: `SEED_PASSWORD` in the web crate's
/// `cli.rs`).
const SEED_PASSWORD: &str = "seeded-password";
/// The bar a step must pass to hold.
pub const P99_MS: f64 = 50.0;
pub const P999_MS: f64 = 200.0;
pub const ERROR_RATIO: f64 = 0.001;
/// Requests in flight at most; past it a due request is not sent and counts as an error. Below
/// plinth's `PLINTH_MAX_CONNECTIONS` (1,024), so that none waits in the listen backlog.
const MAX_IN_FLIGHT: usize = 1000;
/// One active user sends a request every this many seconds (the users-served estimate).
pub const SECONDS_PER_USER_REQUEST: f64 = 5.0;
/// The mix's seed: every run sends the same sequence.
const SEED: u64 = 0x5eed;
/// The percentiles of each step's latency curve.
const CURVE: [f64; 11] = [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0];

/// The capacity data set: 1,000 tenants × 100 users (100,000 users) × 100 projects; `--quick`
/// 20 × 10 × 100.
pub fn data_set(quick: bool) -> DataSet {
    if quick {
        DataSet { tenants: 20, users_per_tenant: 10, projects_per_tenant: 100 }
    } else {
        DataSet { tenants: 1_000, users_per_tenant: 100, projects_per_tenant: 100 }
    }
}

/// Whether a step held: p99 ≤ 50 ms, p99.9 ≤ 200 ms and errors ≤ 0.1% of its requests.
pub fn holds(p99_ms: f64, p999_ms: f64, errors: u64, requests: u64) -> bool {
    p99_ms <= P99_MS && p999_ms <= P999_MS && (errors as f64) <= ERROR_RATIO * requests as f64 && requests > 0
}

/// The rate of the next step after `done` (each step's rate and whether it held), or `None` to
/// stop: up by `factor` while every step held; after the first that did not, one more to show
/// the knee; never more than `max_steps` in all.
pub fn next_rate(done: &[(f64, bool)], start: f64, factor: f64, max_steps: usize) -> Option<f64> {
    let Some(&(last, _)) = done.last() else { return (max_steps > 0).then_some(start) };
    if done.len() >= max_steps {
        return None;
    }
    match done.iter().position(|(_, held)| !held) {
        Some(first_miss) if first_miss + 1 < done.len() => None,
        _ => Some(last * factor),
    }
}

/// The highest rate that held, of the steps before the first that did not.
pub fn held_rate(done: &[(f64, bool)]) -> Option<f64> {
    done.iter().take_while(|(_, held)| *held).map(|(rate, _)| *rate).reduce(f64::max)
}

/// One kind's figures in a step.
#[derive(Debug, Clone, Serialize)]
pub struct KindFigures {
    pub kind: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One step: a fixed arrival rate, its measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub target_rate: f64,
    /// Answers that arrived during the window, per second.
    pub achieved_rate: f64,
    /// Requests due in the window.
    pub requests: u64,
    pub errors: u64,
    pub error_detail: String,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub by_kind: Vec<KindFigures>,
    /// `(percentile, ms)`, for the chart.
    pub curve: Vec<(f64, f64)>,
    /// plinth's CPU over the window, in cores, and per request.
    pub plinth_cores: Option<f64>,
    pub plinth_cpu_us_per_req: Option<f64>,
    /// The whole machine's CPU busy (all cores), in percent.
    pub machine_busy_percent: Option<f64>,
    /// plinth's resident set at the window's end.
    pub plinth_rss_mb: Option<f64>,
    /// The driver thread's own CPU per request.
    pub driver_cpu_us_per_req: Option<f64>,
    /// How late the driver sent the requests after they were due (p99).
    pub send_lag_p99_ms: f64,
    /// Deletes drawn before the driver had created a project to delete (sent as creates).
    pub deletes_replaced: u64,
    pub held: bool,
}

/// The whole search.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub tenants: u32,
    pub users: u64,
    pub projects: u64,
    pub start_rate: f64,
    pub step_factor: f64,
    pub warmup_s: u32,
    pub window_s: u32,
    pub max_in_flight: usize,
    pub steps: Vec<Step>,
    /// The highest rate that held p99 ≤ 50 ms, p99.9 ≤ 200 ms and errors ≤ 0.1%.
    pub held_rate: Option<f64>,
    /// `held_rate` × 5: active users at one request every 5 s.
    pub active_users: Option<f64>,
    pub seconds_per_user_request: f64,
    pub peak_rss_mb: Option<f64>,
    pub load_average_before: String,
    pub load_average_after: String,
}

/// Microseconds as milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The latency at percentile `p` of `h` (µs), in ms; 0 when it is empty.
pub fn quantile(h: &Histogram<u64>, p: f64) -> f64 {
    if h.is_empty() { 0.0 } else { ms(h.value_at_quantile(p / 100.0)) }
}

/// CPU counters at one moment.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    plinth: Option<u64>,
    /// Busy and total ticks of the machine.
    machine: Option<(u64, u64)>,
    driver: Option<u64>,
}

impl Snapshot {
    /// Taken on the driver's thread (its own CPU is that thread's).
    fn now(plinth_pid: u32) -> Self {
        Self {
            at: Instant::now(),
            plinth: services::cpu_ticks(plinth_pid).ok(),
            machine: machine_ticks(),
            driver: services::cpu_ticks_at(Path::new("/proc/thread-self/stat")).ok(),
        }
    }
}

/// `/proc/stat`'s first line: (busy, total) ticks of every core, idle and iowait not busy.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

impl Bench {
    /// Seeded tenants with their tokens and project ids, as the driver addresses them.
    fn capacity_target(&self, data: DataSet, tokens: &Path) -> Result<Target, String> {
        let text = std::fs::read_to_string(tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
        let rows = self.pg.psql(
            &self.pg.owner_url(),
            "SELECT t.slug || ' ' || p.id FROM projects p JOIN tenants t ON t.id = p.tenant_id ORDER BY t.slug",
        )?;
        let mut projects: std::collections::HashMap<&str, Vec<String>> = std::collections::HashMap::new();
        for (slug, id) in rows.lines().filter_map(|l| l.trim().split_once(' ')) {
            projects.entry(slug).or_default().push(id.to_owned());
        }
        let mut tenants = Vec::new();
        for (slug, token) in text.lines().filter_map(|l| l.split_once('\t')) {
            let header = |v: String| HeaderValue::try_from(v).map_err(|e| format!("tokens file: {e}"));
            let projects = projects.remove(slug).unwrap_or_default();
            if projects.is_empty() {
                return Err(format!("tenant {slug} has no seeded project"));
            }
            tenants.push(Tenant {
                slug: slug.to_owned(),
                host: header(format!("{slug}.{BASE_DOMAIN}"))?,
                auth: header(format!("Bearer {}", token.trim()))?,
                projects,
            });
        }
        if tenants.len() != data.tenants as usize {
            return Err(format!("{} tenants in {}, expected {}", tenants.len(), tokens.display(), data.tenants));
        }
        Ok(Target {
            base: format!("http://127.0.0.1:{}", self.opts.port),
            tenants,
            users_per_tenant: data.users_per_tenant,
            password: SEED_PASSWORD.into(),
        })
    }

    /// Runs the search against one plinth started for it, keeps it in the report, and returns
    /// the figures of the highest step that held (the first step's when none did) for the main
    /// table.
    pub(super) fn measure_capacity(&mut self, data: DataSet, tokens: &Path) -> Result<Option<Figures>, String> {
        let target = Arc::new(self.capacity_target(data, tokens)?);
        let load_before = services::load_average();
        let server = self.start_plinth(Scenario::Capacity, "capacity", &[])?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("driver runtime: {e}"))?;
        let client = driver::client(MAX_IN_FLIGHT)?;
        let created: driver::Created = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let mut mix = Mix::new(SEED);
        let (start, factor, max_steps) =
            (self.opts.capacity_start, self.opts.capacity_factor, self.opts.capacity_max_steps as usize);
        let (warmup, window) =
            (Duration::from_secs(self.opts.warmup.into()), Duration::from_secs(self.opts.duration.into()));
        let mut steps: Vec<Step> = Vec::new();
        let pid = server.pid();
        loop {
            let done: Vec<(f64, bool)> = steps.iter().map(|s| (s.target_rate, s.held)).collect();
            let Some(rate) = next_rate(&done, start, factor, max_steps) else { break };
            let schedule = Schedule { rate, warmup, window, max_in_flight: MAX_IN_FLIGHT };
            let label = format!("capacity {} req/s", super::report::rate(rate));
            let mut marks: Vec<Snapshot> = Vec::new();
            let progress = &self.progress;
            let expected = warmup + window;
            let recorded = runtime.block_on(async {
                let mut on = |event: Event| match event {
                    Event::WindowStart | Event::WindowEnd => marks.push(Snapshot::now(pid)),
                    Event::Tick(done) => progress.tick(&label, done, expected),
                };
                driver::step(&client, &target, &created, &mut mix, schedule, &mut on).await
            });
            let step = self.capacity_step(rate, &recorded, &marks, pid);
            self.progress.result(&format!(
                "{label}: achieved {}, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.0} ms, {} errors{}, plinth {} cores, driver {} µs/req: {}",
                super::report::rate(step.achieved_rate),
                step.p50_ms,
                step.p99_ms,
                step.p999_ms,
                step.max_ms,
                step.errors,
                if step.errors > 0 { format!(" ({})", step.error_detail) } else { String::new() },
                step.plinth_cores.map_or_else(|| "?".into(), |c| format!("{c:.2}")),
                step.driver_cpu_us_per_req.map_or_else(|| "?".into(), |c| format!("{c:.0}")),
                if step.held { "held" } else { "NOT held" }
            ));
            steps.push(step);
        }
        let peak_rss_mb = services::peak_rss_kib(pid).map(|k| k as f64 * 1024.0 / 1e6);
        server.stop(Duration::from_secs(10))?;
        let done: Vec<(f64, bool)> = steps.iter().map(|s| (s.target_rate, s.held)).collect();
        let held = held_rate(&done);
        let shown = held
            .and_then(|h| steps.iter().find(|s| s.target_rate == h))
            .or_else(|| steps.first())
            .ok_or("no capacity step ran")?;
        let m = Measured {
            requests: shown.requests,
            seconds: f64::from(self.opts.duration),
            rate: held.unwrap_or(0.0),
            p50_us: shown.p50_ms * 1e3,
            p90_us: shown.p90_ms * 1e3,
            p99_us: shown.p99_ms * 1e3,
            p999_us: shown.p999_ms * 1e3,
            max_us: shown.max_ms * 1e3,
            errors: shown.errors,
            error_detail: shown.error_detail.clone(),
            tool_rate: shown.achieved_rate,
            note: match held {
                Some(h) => format!(
                    "highest rate held, open loop; latency of its step; {} active users at 1 request / 5 s",
                    super::report::rate(h * SECONDS_PER_USER_REQUEST)
                ),
                None => "not even the first step held; latency of that step".into(),
            },
        };
        let figures = Figures::plain(m, "req/s", shown.plinth_cpu_us_per_req.map(|us| us / 1000.0), peak_rss_mb);
        self.report.capacity = Some(Capacity {
            tenants: data.tenants,
            users: data.users(),
            projects: data.projects(),
            start_rate: start,
            step_factor: factor,
            warmup_s: self.opts.warmup,
            window_s: self.opts.duration,
            max_in_flight: MAX_IN_FLIGHT,
            steps,
            held_rate: held,
            active_users: held.map(|h| h * SECONDS_PER_USER_REQUEST),
            seconds_per_user_request: SECONDS_PER_USER_REQUEST,
            peak_rss_mb,
            load_average_before: load_before,
            load_average_after: services::load_average(),
        });
        Ok(Some(figures))
    }

    /// A step's figures from what the driver recorded and the CPU snapshots at the window's
    /// start and end.
    fn capacity_step(&self, rate: f64, r: &driver::Recorded, marks: &[Snapshot], pid: u32) -> Step {
        let window = f64::from(self.opts.duration);
        let tck = self.clk_tck as f64;
        let requests = r.scheduled;
        let per_request = |ticks: u64| (requests > 0).then(|| ticks as f64 / tck * 1e6 / requests as f64);
        let (mut plinth_cores, mut plinth_us, mut busy, mut driver_us) = (None, None, None, None);
        if let [a, b] = marks {
            let seconds = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
            if let (Some(x), Some(y)) = (a.plinth, b.plinth) {
                plinth_cores = Some((y - x) as f64 / tck / seconds);
                plinth_us = per_request(y - x);
            }
            if let (Some((bx, tx)), Some((by, ty))) = (a.machine, b.machine) {
                busy = Some((by - bx) as f64 * 100.0 / (ty - tx).max(1) as f64);
            }
            if let (Some(x), Some(y)) = (a.driver, b.driver) {
                driver_us = per_request(y - x);
            }
        }
        let (p99, p999) = (quantile(&r.all, 99.0), quantile(&r.all, 99.9));
        let by_kind = Kind::ALL
            .iter()
            .zip(&r.by_kind)
            .map(|(kind, (h, n, e))| KindFigures {
                kind: kind.name(),
                requests: *n,
                errors: *e,
                p50_ms: quantile(h, 50.0),
                p99_ms: quantile(h, 99.0),
                max_ms: ms(h.max()),
            })
            .collect();
        Step {
            target_rate: rate,
            achieved_rate: r.completed_in_window as f64 / window,
            requests,
            errors: r.errors,
            error_detail: r.causes.iter().map(|(c, n)| format!("{c}×{n}")).collect::<Vec<_>>().join(", "),
            p50_ms: quantile(&r.all, 50.0),
            p90_ms: quantile(&r.all, 90.0),
            p99_ms: p99,
            p999_ms: p999,
            max_ms: ms(r.all.max()),
            by_kind,
            curve: CURVE.iter().map(|&p| (p, if p >= 100.0 { ms(r.all.max()) } else { quantile(&r.all, p) })).collect(),
            plinth_cores,
            plinth_cpu_us_per_req: plinth_us,
            machine_busy_percent: busy,
            plinth_rss_mb: services::rss_kib(pid).map(|k| k as f64 * 1024.0 / 1e6),
            driver_cpu_us_per_req: driver_us,
            send_lag_p99_ms: quantile(&r.send_lag, 99.0),
            deletes_replaced: r.deletes_replaced,
            held: holds(p99, p999, r.errors, requests),
        }
    }
}

/// A search of two steps, the second missed, for the tests of the chart and the report.
#[cfg(test)]
pub mod fixtures {
    use super::{Capacity, KindFigures, Step};

    fn step(rate: f64, p99: f64, held: bool) -> Step {
        Step {
            target_rate: rate,
            achieved_rate: rate,
            requests: 1000,
            errors: 0,
            error_detail: String::new(),
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: p99,
            p999_ms: p99 * 2.0,
            max_ms: p99 * 3.0,
            by_kind: vec![KindFigures {
                kind: "list",
                requests: 700,
                errors: 0,
                p50_ms: 1.0,
                p99_ms: p99,
                max_ms: 9.0,
            }],
            curve: vec![(0.0, 0.2), (50.0, 1.0), (99.0, p99), (99.9, p99 * 2.0), (100.0, p99 * 3.0)],
            plinth_cores: Some(1.0),
            plinth_cpu_us_per_req: Some(400.0),
            machine_busy_percent: Some(80.0),
            plinth_rss_mb: Some(60.0),
            driver_cpu_us_per_req: Some(30.0),
            send_lag_p99_ms: 0.5,
            deletes_replaced: 0,
            held,
        }
    }

    pub fn sample() -> Capacity {
        Capacity {
            tenants: 1000,
            users: 100_000,
            projects: 100_000,
            start_rate: 500.0,
            step_factor: 1.25,
            warmup_s: 5,
            window_s: 30,
            max_in_flight: 1000,
            steps: vec![step(500.0, 8.0, true), step(625.0, 2500.0, false)],
            held_rate: Some(500.0),
            active_users: Some(2500.0),
            seconds_per_user_request: 5.0,
            peak_rss_mb: Some(70.0),
            load_average_before: "1.0 <&>".into(),
            load_average_after: "2.0".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_holds_only_under_every_bar() {
        assert!(holds(50.0, 200.0, 10, 10_000));
        assert!(!holds(50.1, 100.0, 0, 10_000));
        assert!(!holds(10.0, 200.5, 0, 10_000));
        assert!(!holds(10.0, 100.0, 11, 10_000));
        assert!(!holds(1.0, 1.0, 0, 0));
    }

    #[test]
    fn the_rate_steps_up_until_a_miss_then_once_more() {
        let next = |done: &[(f64, bool)]| next_rate(done, 500.0, 1.25, 12);
        assert_eq!(next(&[]), Some(500.0));
        assert_eq!(next(&[(500.0, true)]), Some(625.0));
        assert_eq!(next(&[(500.0, true), (625.0, false)]), Some(781.25));
        assert_eq!(next(&[(500.0, true), (625.0, false), (781.25, true)]), None);
        assert_eq!(next(&[(500.0, false)]), Some(625.0));
        assert_eq!(next_rate(&[(500.0, true), (625.0, true)], 500.0, 1.25, 2), None);
        assert_eq!(next_rate(&[], 500.0, 1.25, 0), None);
    }

    #[test]
    fn the_held_rate_is_the_last_before_the_first_miss() {
        assert_eq!(held_rate(&[(500.0, true), (625.0, true), (781.0, false), (976.0, true)]), Some(625.0));
        assert_eq!(held_rate(&[(500.0, false), (625.0, true)]), None);
        assert_eq!(held_rate(&[(500.0, true)]), Some(500.0));
        assert_eq!(held_rate(&[]), None);
    }
}
