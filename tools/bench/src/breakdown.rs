//! Where an HTTP scenario's requests spent their time, per request: plinth's `/metrics` is
//! scraped just before and just after the measured run, and the difference of its round-trip
//! histograms (`db_pool_wait_seconds`, `db_query_duration_seconds{op}`,
//! `redis_command_duration_seconds{op}`) gives, for the measured requests only, the pool waits,
//! database calls and Redis commands per request, with their mean and p99 (estimated from the
//! buckets, as Prometheus' `histogram_quantile` does).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

const POOL_WAIT: &str = "db_pool_wait_seconds";
const DB: &str = "db_query_duration_seconds";
const REDIS: &str = "redis_command_duration_seconds";
const HTTP: &str = "http_request_duration_seconds";

/// One histogram: cumulative bucket counts by upper bound, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

/// The round-trip histograms of one scrape, by `(metric, op)` (`op` empty for the pool wait).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot(BTreeMap<(String, String), Histogram>);

/// plinth's histograms now, if its `/metrics` answers.
pub fn scrape(port: u16, host: &str) -> Option<Snapshot> {
    let r = crate::http::get(port, "/metrics", host, None).ok().filter(|r| r.status == 200)?;
    Some(Snapshot::parse(&String::from_utf8_lossy(&r.body)))
}

/// `value` of label `name` in `labels` (`op="x",le="0.1"`).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix("=\"")?.split('"').next())
}

impl Snapshot {
    /// The round-trip histograms of a Prometheus exposition.
    pub fn parse(exposition: &str) -> Self {
        let mut map: BTreeMap<(String, String), Histogram> = BTreeMap::new();
        for line in exposition.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.trim().parse::<f64>() else { continue };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let Some((metric, part)) = [POOL_WAIT, DB, REDIS, HTTP]
                .iter()
                .find_map(|m| Some((*m, name.strip_prefix(m)?)))
                .filter(|(_, part)| matches!(*part, "_bucket" | "_sum" | "_count"))
            else {
                continue;
            };
            // A route's histogram is named by its method and template: `POST /v1/projects`.
            let op = match metric {
                HTTP => format!("{} {}", label(labels, "method").unwrap_or(""), label(labels, "route").unwrap_or("")),
                _ => label(labels, "op").unwrap_or("").to_owned(),
            };
            let h = map.entry((metric.to_owned(), op)).or_default();
            match part {
                "_sum" => h.sum = value,
                "_count" => h.count = value,
                _ => {
                    let le = match label(labels, "le") {
                        Some("+Inf") => f64::INFINITY,
                        Some(le) => le.parse().unwrap_or(f64::INFINITY),
                        None => continue,
                    };
                    h.buckets.push((le, value));
                }
            }
        }
        for h in map.values_mut() {
            h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        Self(map)
    }
}

/// One operation's share of the measured requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpTime {
    pub op: String,
    /// Round trips (pool waits, database calls, Redis commands) per request.
    pub per_request: f64,
    /// Their mean, in milliseconds.
    pub mean_ms: f64,
    /// Their 99th percentile, in milliseconds, estimated from the buckets (`None` when it lies
    /// beyond the last finite bucket).
    pub p99_ms: Option<f64>,
}

/// Pool waits, database calls and Redis commands of the measured requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Breakdown {
    pub pool_wait: Option<OpTime>,
    pub db: Vec<OpTime>,
    pub redis: Vec<OpTime>,
    /// Whole requests by route (`POST /v1/projects`), as plinth timed them.
    pub routes: Vec<OpTime>,
}

/// The estimated `q` quantile of the buckets' counts (cumulative), interpolated linearly
/// within the bucket it falls in.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return None;
            }
            let within = count - below;
            let share = if within > 0.0 { (rank - below) / within } else { 1.0 };
            return Some(lower + (le - lower) * share);
        }
        (lower, below) = (le, count);
    }
    None
}

/// `after` minus `before` for one series, as the time of `requests` requests.
fn op_time(op: &str, before: Option<&Histogram>, after: &Histogram, requests: f64) -> Option<OpTime> {
    let zero = Histogram::default();
    let before = before.unwrap_or(&zero);
    let count = after.count - before.count;
    if count <= 0.0 {
        return None;
    }
    let buckets: Vec<(f64, f64)> = after
        .buckets
        .iter()
        .map(|&(le, n)| (le, n - before.buckets.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, b)| *b)))
        .collect();
    Some(OpTime {
        op: op.to_owned(),
        per_request: count / requests,
        mean_ms: (after.sum - before.sum) / count * 1000.0,
        p99_ms: quantile(&buckets, 0.99).map(|s| s * 1000.0),
    })
}

/// What the `requests` measured between the two scrapes spent; `None` when plinth has no such
/// histograms (an older build).
pub fn between(before: &Snapshot, after: &Snapshot, requests: u64) -> Option<Breakdown> {
    if after.0.is_empty() || requests == 0 {
        return None;
    }
    let requests = requests as f64;
    let mut b = Breakdown::default();
    for ((metric, op), h) in &after.0 {
        let Some(t) = op_time(op, before.0.get(&(metric.clone(), op.clone())), h, requests) else { continue };
        match metric.as_str() {
            POOL_WAIT => b.pool_wait = Some(t),
            DB => b.db.push(t),
            HTTP => b.routes.push(t),
            _ => b.redis.push(t),
        }
    }
    for ops in [&mut b.db, &mut b.redis, &mut b.routes] {
        ops.sort_by(|x, y| y.per_request.total_cmp(&x.per_request));
    }
    Some(b)
}

impl Breakdown {
    /// Database calls per request, all operations together.
    pub fn db_per_request(&self) -> f64 {
        self.db.iter().map(|t| t.per_request).sum()
    }

    /// Redis commands per request, all operations together.
    pub fn redis_per_request(&self) -> f64 {
        self.redis.iter().map(|t| t.per_request).sum()
    }

    /// One line for the terminal: `pool 1.00/req 0.012 ms; db 1.05/req (projects.list 1.00 0.41 ms
    /// p99 1.2); redis 0.30/req (limiter.check 0.30 0.2 ms)`.
    pub fn line(&self) -> String {
        let ops =
            |ops: &[OpTime]| ops.iter().filter(|t| t.per_request >= 0.005).map(short).collect::<Vec<_>>().join(", ");
        let mut s = String::new();
        if let Some(p) = &self.pool_wait {
            let _ = write!(s, "pool wait {:.2}/req mean {:.3} ms p99 {}; ", p.per_request, p.mean_ms, ms(p.p99_ms));
        }
        let _ = write!(s, "db {:.2}/req ({}); ", self.db_per_request(), ops(&self.db));
        let _ = write!(s, "redis {:.2}/req ({})", self.redis_per_request(), ops(&self.redis));
        s
    }

    /// Table rows: `[kind, op, per request, mean ms, p99 ms]`.
    pub fn rows(&self) -> Vec<[String; 5]> {
        let row = |kind: &str, t: &OpTime| {
            [kind.to_owned(), t.op.clone(), format!("{:.3}", t.per_request), format!("{:.3}", t.mean_ms), ms(t.p99_ms)]
        };
        let mut rows: Vec<_> = self.pool_wait.iter().map(|p| row("pool wait", p)).collect();
        rows.extend(self.db.iter().map(|t| row("db call", t)));
        rows.extend(self.redis.iter().map(|t| row("redis command", t)));
        rows.extend(self.routes.iter().map(|t| row("request", t)));
        rows
    }

    /// The whole requests of route `op` (`POST /v1/projects`), if any ran.
    pub fn route(&self, op: &str) -> Option<&OpTime> {
        self.routes.iter().find(|t| t.op == op)
    }
}

fn short(t: &OpTime) -> String {
    format!("{} {:.2} × {:.3} ms p99 {}", t.op, t.per_request, t.mean_ms, ms(t.p99_ms))
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.3}"))
}

/// The report's section: one table of every scenario's breakdown.
pub fn markdown<'a>(runs: impl Iterator<Item = (&'a str, &'a Breakdown)>) -> String {
    let mut md = String::new();
    for (name, b) in runs {
        for r in b.rows() {
            let _ = writeln!(md, "| {name} | {} | `{}` | {} | {} | {} |", r[0], r[1], r[2], r[3], r[4]);
        }
    }
    if md.is_empty() {
        return md;
    }
    format!(
        "\n## Where the time went\n\nFrom plinth's own histograms, scraped just before and just after each \
         measured run (warm-up excluded): pool waits, database calls (every statement of one port call on the \
         connection it took) and Redis commands (a batched limiter script call counts once for the whole \
         batch), per request, with their mean and p99 (estimated from the buckets, 100 µs to 5 s).\n\n\
         | scenario | what | op | per request | mean ms | p99 ms |\n| --- | --- | --- | --- | --- | --- |\n{md}"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE db_query_duration_seconds histogram
db_query_duration_seconds_bucket{op=\"projects.list\",le=\"0.0001\"} 0
db_query_duration_seconds_bucket{op=\"projects.list\",le=\"0.001\"} 10
db_query_duration_seconds_bucket{op=\"projects.list\",le=\"0.01\"} 10
db_query_duration_seconds_bucket{op=\"projects.list\",le=\"+Inf\"} 10
db_query_duration_seconds_sum{op=\"projects.list\"} 0.005
db_query_duration_seconds_count{op=\"projects.list\"} 10
db_pool_wait_seconds_bucket{le=\"0.0001\"} 10
db_pool_wait_seconds_bucket{le=\"+Inf\"} 10
db_pool_wait_seconds_sum 0.0001
db_pool_wait_seconds_count 10
http_requests_total{method=\"GET\",route=\"/v1/projects\",status=\"200\"} 10
";

    const AFTER: &str = "\
db_query_duration_seconds_bucket{op=\"projects.list\",le=\"0.0001\"} 0
db_query_duration_seconds_bucket{op=\"projects.list\",le=\"0.001\"} 60
db_query_duration_seconds_bucket{op=\"projects.list\",le=\"0.01\"} 110
db_query_duration_seconds_bucket{op=\"projects.list\",le=\"+Inf\"} 110
db_query_duration_seconds_sum{op=\"projects.list\"} 0.255
db_query_duration_seconds_count{op=\"projects.list\"} 110
db_pool_wait_seconds_bucket{le=\"0.0001\"} 110
db_pool_wait_seconds_bucket{le=\"+Inf\"} 110
db_pool_wait_seconds_sum 0.0011
db_pool_wait_seconds_count 110
redis_command_duration_seconds_bucket{op=\"limiter.check\",le=\"0.001\"} 5
redis_command_duration_seconds_bucket{op=\"limiter.check\",le=\"+Inf\"} 5
redis_command_duration_seconds_sum{op=\"limiter.check\"} 0.0025
redis_command_duration_seconds_count{op=\"limiter.check\"} 5
";

    #[test]
    fn the_measured_requests_are_the_difference_of_two_scrapes() {
        let b = between(&Snapshot::parse(BEFORE), &Snapshot::parse(AFTER), 50).unwrap();
        let list = &b.db[0];
        assert_eq!(list.op, "projects.list");
        assert!((list.per_request - 2.0).abs() < 1e-9);
        assert!((list.mean_ms - 2.5).abs() < 1e-9, "{}", list.mean_ms);
        // 100 calls: 50 at most 1 ms, 50 in (1, 10] ms; the 99th is 49/50 of the way up that bucket.
        let p99 = list.p99_ms.unwrap();
        assert!((p99 - (1.0 + 9.0 * 49.0 / 50.0)).abs() < 1e-9, "{p99}");
        let pool = b.pool_wait.as_ref().unwrap();
        assert!((pool.per_request - 2.0).abs() < 1e-9 && (pool.mean_ms - 0.01).abs() < 1e-9);
        assert_eq!(b.redis.len(), 1);
        assert!((b.redis_per_request() - 0.1).abs() < 1e-9);
        assert_eq!(b.rows().len(), 3);
        assert!(markdown([("db", &b)].into_iter()).contains("| db | db call | `projects.list` | 2.000 | 2.500 |"));
    }

    #[test]
    fn a_quantile_past_the_last_finite_bucket_is_unknown_and_no_histograms_is_no_breakdown() {
        assert_eq!(quantile(&[(0.001, 0.0), (f64::INFINITY, 10.0)], 0.99), None);
        assert_eq!(quantile(&[(0.001, 10.0), (f64::INFINITY, 10.0)], 0.5), Some(0.0005));
        assert_eq!(between(&Snapshot::default(), &Snapshot::parse("up 1\n"), 10), None);
    }
}
