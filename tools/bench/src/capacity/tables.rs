//! The capacity search as tables: per step, and each request kind's p99 per step, for the
//! terminal and for `report.md`.

use std::fmt::Write as _;

use super::super::report::{md_table, rate, text_table};
use super::driver::Kind;
use super::{Capacity, ERROR_RATIO, P99_MS, P999_MS, Step};

const HEADERS: [&str; 15] = [
    "target req/s",
    "achieved",
    "held",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "errors",
    "plinth cores",
    "plinth µs/req",
    "machine busy %",
    "plinth RSS MB",
    "driver µs/req",
    "send lag p99 ms",
];

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.decimals$}"))
}

fn ms(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

fn row(s: &Step) -> Vec<String> {
    vec![
        rate(s.target_rate),
        rate(s.achieved_rate),
        if s.held { "yes".into() } else { "no".into() },
        ms(s.p50_ms),
        ms(s.p90_ms),
        ms(s.p99_ms),
        ms(s.p999_ms),
        ms(s.max_ms),
        if s.errors > 0 { format!("{} ({})", s.errors, s.error_detail) } else { "0".into() },
        opt(s.plinth_cores, 2),
        opt(s.plinth_cpu_us_per_req, 0),
        opt(s.machine_busy_percent, 0),
        opt(s.plinth_rss_mb, 0),
        opt(s.driver_cpu_us_per_req, 0),
        ms(s.send_lag_p99_ms),
    ]
}

fn kind_headers() -> Vec<&'static str> {
    std::iter::once("target req/s").chain(Kind::ALL.iter().map(|k| k.name())).collect()
}

fn kind_row(s: &Step) -> Vec<String> {
    std::iter::once(rate(s.target_rate)).chain(s.by_kind.iter().map(|k| ms(k.p99_ms))).collect()
}

/// The verdict in one sentence.
fn summary(c: &Capacity) -> String {
    match (c.held_rate, c.active_users) {
        (Some(held), Some(users)) => format!(
            "Held: {} req/s (p99 ≤ {P99_MS} ms, p99.9 ≤ {P999_MS} ms, errors ≤ {}%), that is about {} active users \
             of this mix at one request every {} s each, on this one 2-core machine shared with PostgreSQL, Redis \
             and the driver.",
            rate(held),
            ERROR_RATIO * 100.0,
            rate(users),
            c.seconds_per_user_request
        ),
        _ => format!("Not held: the first step ({} req/s) already missed the bar.", rate(c.start_rate)),
    }
}

/// The section of `report.md`.
pub fn markdown(c: &Capacity) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "\n## Capacity (open loop)\n");
    let _ = writeln!(
        md,
        "{} tenants × {} users × {} projects, PostgreSQL + Redis (`PLINTH_CACHE=l1,l2`, Redis limiter, default \
         L1 bound, quotas raised). Mix: {}. Each step: {} s at the rate unmeasured, then {} s measured; requests are \
         due at fixed intervals and sent whatever the earlier ones are doing (at most {} in flight: past that a due \
         request counts as an error), and latency is counted from when each was due, not when it was sent. Steps \
         go up ×{} from {} req/s until one misses p99 ≤ {P99_MS} ms, p99.9 ≤ {P999_MS} ms or errors ≤ {}%, then \
         once more. Load average (1 min) before/after: {} / {}.\n",
        rate(f64::from(c.tenants)),
        rate(c.users as f64 / f64::from(c.tenants.max(1))),
        rate(c.projects as f64 / f64::from(c.tenants.max(1))),
        Kind::ALL.iter().map(|k| format!("{}% `{}`", k.percent(), k.route())).collect::<Vec<_>>().join(", "),
        c.warmup_s,
        c.window_s,
        c.max_in_flight,
        c.step_factor,
        rate(c.start_rate),
        ERROR_RATIO * 100.0,
        c.load_average_before,
        c.load_average_after,
    );
    let _ = writeln!(md, "{}\n", summary(c));
    let rows: Vec<Vec<String>> = c.steps.iter().map(row).collect();
    md.push_str(&md_table(&HEADERS, &rows));
    let _ = writeln!(
        md,
        "\n`achieved` counts answers that arrived during the window. `driver µs/req` is the driver thread's own \
         CPU per request (it shares the two cores), `send lag` how late it sent requests after they were due \
         (already inside the latencies). p99 by request kind, ms:\n"
    );
    let kind_rows: Vec<Vec<String>> = c.steps.iter().map(kind_row).collect();
    md.push_str(&md_table(&kind_headers(), &kind_rows));
    md
}

/// The lines printed at the end of a run.
pub fn terminal(c: &Capacity) -> String {
    let mut out = String::from("capacity (open loop, latency from when each request was due):\n");
    let rows: Vec<Vec<String>> = c.steps.iter().map(row).collect();
    out.push_str(&text_table(&HEADERS, &rows));
    out.push_str("p99 by request kind, ms:\n");
    let kind_rows: Vec<Vec<String>> = c.steps.iter().map(kind_row).collect();
    out.push_str(&text_table(&kind_headers(), &kind_rows));
    out.push_str(&summary(c));
    out.push('\n');
    out
}
