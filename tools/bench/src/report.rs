//! The report: a table for the terminal, `report.md` and `report.json`.

use std::fmt::Write as _;

use serde::Serialize;

use super::load::Measured;
use super::scenario::{Reference, Scenario};
use super::{Figures, Outcome, Report, Run, Subject};

/// Microseconds as milliseconds.
fn ms(us: f64) -> String {
    if us >= 100_000.0 { format!("{:.0}", us / 1000.0) } else { format!("{:.2}", us / 1000.0) }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.decimals$}"))
}

/// A rate with thousands separators.
pub fn rate(v: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a non-negative rate, far below 2^53")]
    let n = v.max(0.0).round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The one-line summary printed as each run ends.
pub fn one_line(subject: Subject, f: &Figures) -> String {
    let m = &f.m;
    let latency = if m.p99_us > 0.0 {
        format!(", p50 {} ms, p99 {} ms, p99.9 {} ms", ms(m.p50_us), ms(m.p99_us), ms(m.p999_us))
    } else {
        String::new()
    };
    let errors = if m.errors > 0 { format!(", {} errors ({})", m.errors, m.error_detail) } else { ", 0 errors".into() };
    let cpu = f.cpu_s_per_1k.map(|c| format!(", {c:.3} CPU s/1k")).unwrap_or_default();
    let rss = f.peak_rss_mb.map(|r| format!(", peak RSS {r:.0} MB")).unwrap_or_default();
    let ratio = f.vs_reference.map(|(r, _, x)| format!(", {x:.2} × {}", r.name())).unwrap_or_default();
    let note = if m.note.is_empty() { String::new() } else { format!(" ({})", m.note) };
    format!("{}: {} {}{latency}{errors}{cpu}{rss}{ratio}{note}", subject.name(), rate(m.rate), f.unit)
}

fn main_runs(r: &Report) -> impl Iterator<Item = &Run> {
    r.runs.iter().filter(|run| run.main)
}

/// The last completed main run of `subject`.
fn find(r: &Report, subject: Subject) -> Option<&Figures> {
    main_runs(r).filter(|run| run.subject == subject).filter_map(Run::figures).last()
}

/// Every reference run of a kind, for its mean.
fn reference_rates(r: &Report, reference: Reference) -> Vec<f64> {
    main_runs(r)
        .filter(|run| run.subject == Subject::Reference(reference))
        .filter_map(|run| run.figures().map(|f| f.m.rate))
        .collect()
}

/// A point of the scale curve: projects, and the p99 (µs) and rate of cached and db there, each
/// the mean of that size's scale runs (one per round).
#[derive(Debug, Clone)]
pub struct ScalePoint {
    pub projects: u64,
    pub cached_rate: Option<f64>,
    pub db_rate: Option<f64>,
    /// Every run's p99 (µs), cached then db, in the order they ran.
    pub cached_p99s: Vec<f64>,
    pub db_p99s: Vec<f64>,
}

impl ScalePoint {
    /// The mean p99 (µs) of `cached` here.
    pub fn cached_p99_us(&self) -> Option<f64> {
        mean(&self.cached_p99s)
    }

    /// The mean p99 (µs) of `db` here.
    pub fn db_p99_us(&self) -> Option<f64> {
        mean(&self.db_p99s)
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The scale curve, from the scale runs (or, in a report without any, the main ones).
pub fn scale(r: &Report) -> Vec<ScalePoint> {
    let is_point = |run: &&Run| matches!(run.subject, Subject::Plinth(Scenario::Cached | Scenario::Db));
    let scale_runs: Vec<&Run> = r.runs.iter().filter(is_point).filter(|run| !run.main).collect();
    let runs = if scale_runs.is_empty() { r.runs.iter().filter(is_point).collect() } else { scale_runs };
    let mut sizes: Vec<u64> = runs.iter().map(|run| run.data.projects()).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let at = |projects: u64, s: Scenario, field: fn(&Measured) -> f64| -> Vec<f64> {
        runs.iter()
            .filter(|run| run.subject == Subject::Plinth(s) && run.data.projects() == projects)
            .filter_map(|run| run.figures())
            .map(|f| field(&f.m))
            .collect()
    };
    let p99 = |m: &Measured| m.p99_us;
    let rate = |m: &Measured| m.rate;
    sizes
        .into_iter()
        .map(|projects| {
            let (cached_p99s, db_p99s) = (at(projects, Scenario::Cached, p99), at(projects, Scenario::Db, p99));
            ScalePoint {
                projects,
                cached_rate: mean(&at(projects, Scenario::Cached, rate)),
                db_rate: mean(&at(projects, Scenario::Db, rate)),
                cached_p99s,
                db_p99s,
            }
        })
        .collect()
}

/// One of the issue's targets.
#[derive(Debug, Clone)]
pub struct Target {
    pub goal: String,
    pub measured: String,
    pub met: Option<bool>,
}

pub fn targets(r: &Report) -> Vec<Target> {
    let mut t = Vec::new();
    let ratio_target = |t: &mut Vec<Target>, s: Scenario, min: f64| {
        let reference = s.reference().map_or("?", Reference::name);
        let f = find(r, Subject::Plinth(s));
        let ratio = f.and_then(|f| f.vs_reference);
        t.push(Target {
            goal: format!("`{}` ≥ {min:.2} × `{reference}`", s.name()),
            measured: ratio.map_or_else(
                || "not measured".into(),
                |(_, reference_rate, x)| {
                    format!("{x:.2} ({} vs {})", rate(f.map_or(0.0, |f| f.m.rate)), rate(reference_rate))
                },
            ),
            met: ratio.map(|(_, _, x)| x >= min),
        });
    };
    ratio_target(&mut t, Scenario::Cached, 0.70);
    let cached = find(r, Subject::Plinth(Scenario::Cached));
    t.push(Target {
        goal: format!("`cached` p99 < 5 ms at {} connections", r.options.connections),
        measured: cached.map_or_else(|| "not measured".into(), |f| format!("{} ms", ms(f.m.p99_us))),
        met: cached.map(|f| f.m.p99_us < 5000.0),
    });
    ratio_target(&mut t, Scenario::CachedShared, 0.40);
    ratio_target(&mut t, Scenario::Db, 0.80);
    let points = scale(r);
    for (name, p99) in
        [("cached", ScalePoint::cached_p99_us as fn(&ScalePoint) -> Option<f64>), ("db", ScalePoint::db_p99_us)]
    {
        let measured: Vec<(u64, f64)> = points.iter().filter_map(|p| p99(p).map(|v| (p.projects, v))).collect();
        let (first, last) = (measured.first(), measured.last());
        let (goal, measured, met) = match (first, last) {
            (Some(&(small, a)), Some(&(big, b))) if big > small => (
                format!("`{name}` p99 at {} projects ≤ 1.5 × p99 at {}", rate(big as f64), rate(small as f64)),
                format!("{:.2} × ({} ms vs {} ms)", b / a, ms(b), ms(a)),
                Some(b <= 1.5 * a),
            ),
            _ => (format!("`{name}` p99 at the largest data set ≤ 1.5 × at the smallest"), "not measured".into(), None),
        };
        t.push(Target { goal, measured, met });
    }
    // Only when it ran: it is not in the default set.
    if let Some(e) = &r.enumeration {
        for (goal, measured, met) in super::enumeration::targets(e) {
            t.push(Target { goal, measured, met: Some(met) });
        }
    }
    if let (Some(on), Some(off)) =
        (find(r, Subject::Plinth(Scenario::Db)), find(r, Subject::Plinth(Scenario::DbNoStatementCache)))
    {
        t.push(Target {
            goal: "what the statement cache saves `db` (`db` vs `db-no-statement-cache`, as behind PgBouncer)".into(),
            measured: format!(
                "{} vs {} req/s ({:+.0}%); p99 {} vs {} ms",
                rate(on.m.rate),
                rate(off.m.rate),
                (off.m.rate / on.m.rate.max(f64::EPSILON) - 1.0) * 100.0,
                ms(on.m.p99_us),
                ms(off.m.p99_us),
            ),
            met: None,
        });
    }
    let mixed = find(r, Subject::Plinth(Scenario::Mixed));
    let writes = |s| {
        let f = find(r, Subject::Plinth(s))?;
        Some((f.m.rate, f.breakdown.as_ref()?.route("POST /v1/projects")?.clone()))
    };
    if let (Some((rate_on, on)), Some((rate_off, off))) = (writes(Scenario::Mixed), writes(Scenario::MixedUnaudited)) {
        let extra = on.mean_ms - off.mean_ms;
        let p99 = |t: &crate::breakdown::OpTime| t.p99_ms.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"));
        t.push(Target {
            goal: "what auditing costs `mixed`'s writes (POST /v1/projects, `mixed` vs `mixed-unaudited`)".into(),
            measured: format!(
                "mean {:.3} vs {:.3} ms ({extra:+.3} ms, {:+.0}%); p99 {} vs {} ms; whole run {} vs {}",
                on.mean_ms,
                off.mean_ms,
                extra / off.mean_ms.max(f64::EPSILON) * 100.0,
                p99(&on),
                p99(&off),
                rate(rate_on),
                rate(rate_off)
            ),
            met: None,
        });
    }
    let rss = mixed.and_then(|f| f.peak_rss_mb);
    t.push(Target {
        goal: "plinth's peak RSS under `mixed` ≤ 150 MB".into(),
        measured: rss.map_or_else(|| "not measured".into(), |v| format!("{v:.0} MB")),
        met: rss.map(|v| v <= 150.0),
    });
    t
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "–",
    }
}

const HEADERS: [&str; 13] = [
    "scenario",
    "rate",
    "unit",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "errors",
    "CPU s/1k",
    "peak RSS MB",
    "PG tx/req",
    "Redis cmd/req",
    "log B/req",
    "vs reference",
];

fn row(run: &Run) -> Vec<String> {
    let name = run.subject.name().to_owned();
    match &run.outcome {
        Outcome::Done(f) => {
            let m = &f.m;
            let lat = |v: f64| if m.p99_us > 0.0 { ms(v) } else { "–".into() };
            vec![
                name,
                rate(m.rate),
                f.unit.into(),
                lat(m.p50_us),
                lat(m.p99_us),
                lat(m.p999_us),
                if m.errors > 0 { format!("{} ({})", m.errors, m.error_detail) } else { "0".into() },
                opt(f.cpu_s_per_1k, 3),
                opt(f.peak_rss_mb, 0),
                opt(f.pg_tx_per_req, 2),
                opt(f.redis_cmds_per_req, 2),
                opt(f.log_bytes_per_req, 0),
                f.vs_reference.map(|(r, _, x)| format!("{x:.2} × {}", r.name())).unwrap_or_default(),
            ]
        }
        Outcome::Skipped(why) => {
            let mut v = vec![name, format!("skipped: {why}")];
            v.resize(HEADERS.len(), String::new());
            v
        }
        Outcome::Failed(why) => {
            let first = why.lines().next().unwrap_or_default();
            let mut v = vec![name, format!("FAILED: {first}")];
            v.resize(HEADERS.len(), String::new());
            v
        }
    }
}

/// Aligned plain-text columns.
pub fn text_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            // A skip or failure message spans the row: don't let it widen its column.
            if i < widths.len() && !(i == 1 && r.get(2).is_some_and(String::is_empty)) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(c.chars().count());
            if i == 0 || i == 2 {
                let _ = write!(s, "{c}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(s, "{}{c}  ", " ".repeat(pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

pub fn md_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", headers.join(" | "), " --- |".repeat(headers.len()));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

fn scale_rows(r: &Report) -> Vec<Vec<String>> {
    // The mean p99, and each run's when there were several.
    let p99 = |mean: Option<f64>, each: &[f64]| match mean {
        None => "–".into(),
        Some(m) if each.len() > 1 => {
            format!("{} ({})", ms(m), each.iter().map(|&v| ms(v)).collect::<Vec<_>>().join(", "))
        }
        Some(m) => ms(m),
    };
    scale(r)
        .iter()
        .map(|p| {
            let seed =
                r.seeded.iter().find(|s| s.data.projects() == p.projects).map(|s| format!("{:.1}", s.seed_seconds));
            vec![
                rate(p.projects as f64),
                p.cached_rate.map(rate).unwrap_or_else(|| "–".into()),
                p99(p.cached_p99_us(), &p.cached_p99s),
                p.db_rate.map(rate).unwrap_or_else(|| "–".into()),
                p99(p.db_p99_us(), &p.db_p99s),
                seed.unwrap_or_else(|| "–".into()),
            ]
        })
        .collect()
}

const SCALE_HEADERS: [&str; 6] = ["projects", "cached req/s", "cached p99 ms", "db req/s", "db p99 ms", "seed s"];

fn target_rows(r: &Report) -> Vec<Vec<String>> {
    targets(r).into_iter().map(|t| vec![t.goal.replace('`', ""), t.measured, verdict(t.met).into()]).collect()
}

/// The table printed at the end of a run.
pub fn terminal(r: &Report) -> String {
    let rows: Vec<Vec<String>> = main_runs(r).map(row).collect();
    let mut out = format!(
        "plinth bench: {} tenants × {} projects, {} connections, {} s runs ({} s warm-up) on {}\n\n",
        r.options.tenants,
        r.options.projects_per_tenant,
        r.options.connections,
        r.options.duration,
        r.options.warmup,
        r.machine
    );
    if !rows.is_empty() {
        out.push_str(&text_table(&HEADERS, &rows));
        out.push('\n');
    }
    let scale_rows = scale_rows(r);
    if scale_rows.len() > 1 {
        out.push_str("scale:\n");
        out.push_str(&text_table(&SCALE_HEADERS, &scale_rows));
        out.push('\n');
    }
    if let Some(c) = &r.capacity {
        out.push_str(&super::capacity::terminal(c));
        out.push('\n');
    }
    if let Some(e) = &r.enumeration {
        out.push_str(&super::enumeration::terminal(e));
        out.push('\n');
    }
    out.push_str("targets:\n");
    out.push_str(&text_table(&["target", "measured", ""], &target_rows(r)));
    for s in &r.seeded {
        let _ = writeln!(
            out,
            "seed: {} tenants × {} users × {} projects in {:.1} s",
            s.data.tenants, s.data.users_per_tenant, s.data.projects_per_tenant, s.seed_seconds
        );
    }
    out
}

/// Per-request costs derived from pairs of scenarios.
fn derived(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let get = |s: Scenario| find(r, Subject::Plinth(s));
    if let (Some(l1), Some(l2)) = (get(Scenario::CachedShared), get(Scenario::L2)) {
        out.push(format!(
            "L1 hits vs L2-only hits (both with the Redis limiter): `cached-shared` {} req/s, `l2` {} req/s \
             ({:.2} ×); p99 {} ms vs {} ms; CPU {:.0} µs vs {:.0} µs per request.",
            rate(l1.m.rate),
            rate(l2.m.rate),
            l2.m.rate / l1.m.rate,
            ms(l1.m.p99_us),
            ms(l2.m.p99_us),
            l1.cpu_s_per_1k.unwrap_or(0.0) * 1000.0,
            l2.cpu_s_per_1k.unwrap_or(0.0) * 1000.0,
        ));
    }
    if let (Some(local), Some(shared)) = (get(Scenario::Cached), get(Scenario::CachedShared)) {
        out.push(format!(
            "The Redis limiter (`cached` → `cached-shared`, both L1 hits): {} → {} req/s ({:.2} ×); \
             +{:.0} µs of wall time per request at saturation (1/rate), {:+.0} µs of plinth CPU per request, \
             p99 {} → {} ms.",
            rate(local.m.rate),
            rate(shared.m.rate),
            shared.m.rate / local.m.rate,
            1e6 / shared.m.rate - 1e6 / local.m.rate,
            (shared.cpu_s_per_1k.unwrap_or(0.0) - local.cpu_s_per_1k.unwrap_or(0.0)) * 1000.0,
            ms(local.m.p99_us),
            ms(shared.m.p99_us),
        ));
    }
    for s in [Scenario::Cached, Scenario::CachedShared, Scenario::L2, Scenario::Tenant] {
        let Some(f) = get(s) else { continue };
        let fetches = f.cache_per_req.iter().find(|(k, _)| k == "fetch").map_or(0.0, |(_, v)| *v);
        if fetches > 0.25 {
            out.push(format!(
                "`{}` is mostly not served from its cache on this data set: {fetches:.2} fetches from the origin per request \
                 ({} PostgreSQL transactions per request). With {} tenants visited in turn at {} req/s, each tenant \
                 comes back every {:.1} s: compare with the cache TTLs and the L1 size bound.",
                s.name(),
                opt(f.pg_tx_per_req, 2),
                rate(f64::from(r.options.tenants)),
                rate(f.m.rate),
                f64::from(r.options.tenants) / f.m.rate.max(1e-9),
            ));
        }
    }
    if let Some(db) = get(Scenario::Db) {
        out.push(format!(
            "`db` at {} projects (lists from PostgreSQL every time): p50 {} ms, p99 {} ms, p99.9 {} ms, {} req/s; {} PostgreSQL \
             transactions per request (pgbench runs 1).",
            rate(r.options.tenants as f64 * f64::from(r.options.projects_per_tenant)),
            ms(db.m.p50_us),
            ms(db.m.p99_us),
            ms(db.m.p999_us),
            rate(db.m.rate),
            opt(db.pg_tx_per_req, 2),
        ));
    }
    out
}

/// `report.md`.
pub fn markdown(r: &Report) -> String {
    let o = &r.options;
    let mut md = String::new();
    let _ = writeln!(md, "# plinth bench\n");
    let _ = writeln!(md, "- run: {} (took {:.0} s): `{}`", r.started_at, r.total_seconds, o.command_line);
    let _ = writeln!(md, "- machine: {}", r.machine);
    let _ = writeln!(
        md,
        "- load average (1 min) before/after: {} / {}. Other work shares this machine (compiles, tests), so \
         figures are noisy; compare ratios measured in the same run rather than absolute figures.",
        r.load_average_before, r.load_average_after
    );
    let versions: Vec<String> = r.versions.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(md, "- versions: {}", versions.join("; "));
    let _ = writeln!(
        md,
        "- load: wrk, {} threads, {} connections, {} s measured after {} s of warm-up, over every tenant (its own \
         `Host: {{slug}}.localhost` and owner token); every non-2xx answer and socket error is an error.",
        o.threads, o.connections, o.duration, o.warmup
    );
    let _ = writeln!(
        md,
        "- data set: {} tenants × {} users × {} projects; quotas raised to 10,000,000/min so nothing is limited.",
        o.tenants, o.users_per_tenant, o.projects_per_tenant
    );
    let _ = writeln!(md, "- logs: {}.", r.log_destination);
    if let (Some(body), Some(head)) = (r.list_body_bytes, r.list_head_bytes) {
        let _ = writeln!(
            md,
            "- `GET /v1/projects` answers {body} bytes of body ({head} of head); `ceiling` answers a precomputed body \
             of the same size."
        );
    }
    let _ = writeln!(md, "\n## Results\n");
    let rows: Vec<Vec<String>> = main_runs(r).map(row).collect();
    md.push_str(&md_table(&HEADERS, &rows));
    let _ = writeln!(
        md,
        "\nCPU and peak RSS are the server's own (from /proc: utime+stime over the measured window, VmHWM; \
         plinth is restarted for every scenario). PG tx/req counts transactions committed in the bench \
         database per request, warm-up included (pg_stat_database); Redis cmd/req counts every command the \
         shared Redis processed, so other clients add noise. `vs reference` is taken against the mean of \
         the reference's runs just before and just after the scenario."
    );
    let redis = per_run(r, |f| &f.redis_by_command);
    if !redis.is_empty() {
        let _ = writeln!(
            md,
            "\nRedis commands per request, by command (`INFO commandstats`: commands run inside Lua scripts count \
             too; other clients of the shared Redis add noise):\n\n{}",
            redis.join("\n")
        );
    }
    let cache = per_run(r, |f| &f.cache_per_req);
    if !cache.is_empty() {
        let _ = writeln!(
            md,
            "\nCache reads per request, by level and result, and fetches from the origin (plinth's \
             `cache_requests_total` and `cache_fetches_total`, warm-up included):\n\n{}",
            cache.join("\n")
        );
    }
    md.push_str(&crate::breakdown::markdown(
        main_runs(r).filter_map(|run| Some((run.subject.name(), run.figures()?.breakdown.as_ref()?))),
    ));
    if let Some(c) = &r.capacity {
        md.push_str(&super::capacity::markdown(c));
    }
    if let Some(e) = &r.enumeration {
        md.push_str(&super::enumeration::markdown(e));
    }
    let _ = writeln!(md, "\n## Targets\n");
    md.push_str(&md_table(&["target", "measured", ""], &target_rows(r)));
    let derived = derived(r);
    if !derived.is_empty() {
        let _ = writeln!(md, "\n## Per-request costs\n");
        for d in derived {
            let _ = writeln!(md, "- {d}");
        }
    }
    let scale_rows = scale_rows(r);
    if !scale_rows.is_empty() {
        let _ = writeln!(md, "\n## Scale\n");
        let _ = writeln!(
            md,
            "`cached` and `db` on every data set, each in its own database, in two rounds (smallest to largest, \
             then back), so that drift in the machine's speed weighs on every size alike. Rates and p99 are the \
             means of the rounds; each round's p99 is in brackets.\n"
        );
        md.push_str(&md_table(&SCALE_HEADERS, &scale_rows));
    }
    let _ = writeln!(md, "\n## Seeding\n");
    let seed_rows: Vec<Vec<String>> = r
        .seeded
        .iter()
        .map(|s| {
            vec![
                rate(f64::from(s.data.tenants)),
                rate(s.data.users() as f64),
                rate(s.data.projects() as f64),
                format!("{:.1}", s.seed_seconds),
                format!("{:.1}", s.vacuum_seconds),
            ]
        })
        .collect();
    md.push_str(&md_table(&["tenants", "users", "projects", "seed s", "VACUUM ANALYZE + CHECKPOINT s"], &seed_rows));
    let _ = writeln!(md, "\n## Scenarios\n");
    for s in &o.scenarios {
        let _ = writeln!(md, "- `{}`: {}", s.name(), s.setup());
    }
    let _ = writeln!(
        md,
        "- `ceiling`: `crates/web/examples/ceiling.rs`, actix-web with the default worker count (as plinth), no \
         middleware, a precomputed body of the list response's size.\n\
         - `pgbench`: `pgbench -n -M prepared -c {c} -j {j} -T {d}` as `plinth_app` (under RLS) running \
         `target/bench/pgbench.sql`:\n\n```sql\n{}```",
        super::load::pgbench_script(),
        c = o.connections,
        j = o.threads,
        d = o.duration
    );
    if let Some(p) = &r.profile {
        let _ = writeln!(md, "\n## Profile of `cached`\n\n```\n{p}\n```");
    }
    md
}

/// One `- `scenario`: counter n, …` line per main run that has counters of this kind.
fn per_run(r: &Report, counters: fn(&Figures) -> &Vec<(String, f64)>) -> Vec<String> {
    main_runs(r)
        .filter_map(|run| {
            let c = counters(run.figures()?);
            (!c.is_empty()).then(|| format!("- `{}`: {}", run.subject.name(), by_command(c)))
        })
        .collect()
}

/// `evalsha 1.00, get 0.98` (below 0.01 left out).
fn by_command(commands: &[(String, f64)]) -> String {
    commands.iter().filter(|(_, n)| *n >= 0.01).map(|(c, n)| format!("{c} {n:.2}")).collect::<Vec<_>>().join(", ")
}

/// Pairs serialized as a JSON object, in their order (most frequent first, for counters).
#[derive(Debug)]
struct Pairs<'a, K, V>(&'a [(K, V)]);

impl<K: Serialize, V: Serialize> Serialize for Pairs<'_, K, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// `report.json`, field by field in this order; non-finite figures are `null`.
#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    started_at: &'a str,
    command: &'a str,
    total_seconds: f64,
    machine: &'a str,
    load_average_before: &'a str,
    load_average_after: &'a str,
    versions: Pairs<'a, &'static str, String>,
    options: JsonOptions,
    logs: &'a str,
    list_body_bytes: Option<usize>,
    ceiling_rates: Vec<f64>,
    seeded: Vec<JsonSeeded>,
    runs: Vec<JsonRun<'a>>,
    scale: Vec<JsonScale>,
    targets: Vec<JsonTarget>,
    /// The open-loop capacity search: latency counted from when each request was due.
    capacity: Option<&'a super::capacity::Capacity>,
    /// `reset-enumeration`: member and unknown addresses' latencies and their ratios.
    enumeration: Option<&'a super::enumeration::Enumeration>,
    profile: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct JsonOptions {
    tenants: u32,
    users_per_tenant: u32,
    projects_per_tenant: u32,
    duration_s: u32,
    warmup_s: u32,
    connections: u32,
    threads: u32,
    quick: bool,
}

#[derive(Debug, Serialize)]
struct JsonSeeded {
    tenants: u32,
    users_per_tenant: u32,
    projects_per_tenant: u32,
    projects: u64,
    seed_seconds: f64,
    vacuum_seconds: f64,
}

#[derive(Debug, Serialize)]
struct JsonRun<'a> {
    name: &'static str,
    main: bool,
    tenants: u32,
    projects: u64,
    status: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    detail: &'a str,
    #[serde(flatten)]
    figures: Option<JsonFigures<'a>>,
}

#[derive(Debug, Serialize)]
struct JsonFigures<'a> {
    rate: f64,
    unit: &'static str,
    requests: u64,
    seconds: f64,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
    p999_ms: Option<f64>,
    max_ms: Option<f64>,
    errors: u64,
    error_detail: &'a str,
    tool_rate: f64,
    cpu_s_per_1k: Option<f64>,
    peak_rss_mb: Option<f64>,
    pg_tx_per_req: Option<f64>,
    redis_cmds_per_req: Option<f64>,
    redis_by_command: Pairs<'a, String, f64>,
    log_bytes_per_req: Option<f64>,
    cache_per_req: Pairs<'a, String, f64>,
    note: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_reference: Option<JsonReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    breakdown: Option<&'a crate::breakdown::Breakdown>,
}

#[derive(Debug, Serialize)]
struct JsonReference {
    name: &'static str,
    rate: f64,
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct JsonScale {
    projects: u64,
    cached_p99_ms: Option<f64>,
    db_p99_ms: Option<f64>,
    cached_rate: Option<f64>,
    db_rate: Option<f64>,
    cached_p99_ms_each: Vec<f64>,
    db_p99_ms_each: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct JsonTarget {
    goal: String,
    measured: String,
    met: Option<bool>,
}

fn figures_json(f: &Figures) -> JsonFigures<'_> {
    let m = &f.m;
    // Latencies only where the tool measured them (wrk, pgbench), not for jobs.
    let lat = |v: f64| (m.p99_us > 0.0).then_some(v / 1000.0);
    JsonFigures {
        rate: m.rate,
        unit: f.unit,
        requests: m.requests,
        seconds: m.seconds,
        p50_ms: lat(m.p50_us),
        p90_ms: lat(m.p90_us),
        p99_ms: lat(m.p99_us),
        p999_ms: lat(m.p999_us),
        max_ms: lat(m.max_us),
        errors: m.errors,
        error_detail: &m.error_detail,
        tool_rate: m.tool_rate,
        cpu_s_per_1k: f.cpu_s_per_1k,
        peak_rss_mb: f.peak_rss_mb,
        pg_tx_per_req: f.pg_tx_per_req,
        redis_cmds_per_req: f.redis_cmds_per_req,
        redis_by_command: Pairs(&f.redis_by_command),
        log_bytes_per_req: f.log_bytes_per_req,
        cache_per_req: Pairs(&f.cache_per_req),
        note: &m.note,
        vs_reference: f.vs_reference.map(|(reference, rate, ratio)| JsonReference {
            name: reference.name(),
            rate,
            ratio,
        }),
        breakdown: f.breakdown.as_ref(),
    }
}

/// `report.json`.
pub fn json(r: &Report) -> String {
    let o = &r.options;
    let runs = r
        .runs
        .iter()
        .map(|run| {
            let (status, detail) = match &run.outcome {
                Outcome::Done(_) => ("done", ""),
                Outcome::Skipped(w) => ("skipped", w.as_str()),
                Outcome::Failed(w) => ("failed", w.as_str()),
            };
            JsonRun {
                name: run.subject.name(),
                main: run.main,
                tenants: run.data.tenants,
                projects: run.data.projects(),
                status,
                detail,
                figures: run.figures().map(figures_json),
            }
        })
        .collect();
    let ms_each = |v: &[f64]| v.iter().map(|us| us / 1000.0).collect();
    let report = JsonReport {
        started_at: &r.started_at,
        command: &o.command_line,
        total_seconds: r.total_seconds,
        machine: &r.machine,
        load_average_before: &r.load_average_before,
        load_average_after: &r.load_average_after,
        versions: Pairs(&r.versions),
        options: JsonOptions {
            tenants: o.tenants,
            users_per_tenant: o.users_per_tenant,
            projects_per_tenant: o.projects_per_tenant,
            duration_s: o.duration,
            warmup_s: o.warmup,
            connections: o.connections,
            threads: o.threads,
            quick: o.quick,
        },
        logs: &r.log_destination,
        list_body_bytes: r.list_body_bytes,
        ceiling_rates: reference_rates(r, Reference::Ceiling),
        seeded: r
            .seeded
            .iter()
            .map(|s| JsonSeeded {
                tenants: s.data.tenants,
                users_per_tenant: s.data.users_per_tenant,
                projects_per_tenant: s.data.projects_per_tenant,
                projects: s.data.projects(),
                seed_seconds: s.seed_seconds,
                vacuum_seconds: s.vacuum_seconds,
            })
            .collect(),
        runs,
        scale: scale(r)
            .iter()
            .map(|p| JsonScale {
                projects: p.projects,
                cached_p99_ms: p.cached_p99_us().map(|v| v / 1000.0),
                db_p99_ms: p.db_p99_us().map(|v| v / 1000.0),
                cached_rate: p.cached_rate,
                db_rate: p.db_rate,
                cached_p99_ms_each: ms_each(&p.cached_p99s),
                db_p99_ms_each: ms_each(&p.db_p99s),
            })
            .collect(),
        targets: targets(r)
            .into_iter()
            .map(|t| JsonTarget { goal: t.goal.replace('`', ""), measured: t.measured, met: t.met })
            .collect(),
        capacity: r.capacity.as_ref(),
        enumeration: r.enumeration.as_ref(),
        profile: r.profile.as_deref(),
    };
    // Serializing these structs has no way to fail: every map key is a string.
    serde_json::to_string_pretty(&report).map_or_else(|e| format!("{{\"error\":\"{e}\"}}\n"), |s| s + "\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::DataSet;
    use super::super::options::Options;
    use super::*;

    #[test]
    fn formats_rates_with_thousands_separators() {
        assert_eq!(rate(1234567.4), "1,234,567");
        assert_eq!(rate(999.0), "999");
    }

    #[test]
    fn the_json_report_keeps_strings_intact_and_writes_no_number_for_a_missing_figure() {
        let data = DataSet { tenants: 10, users_per_tenant: 2, projects_per_tenant: 100 };
        let figures = Figures {
            m: Measured { requests: 10, rate: f64::NAN, error_detail: "503×2 \"x\"\n".into(), ..Measured::default() },
            unit: "req/s",
            cpu_s_per_1k: Some(0.5),
            peak_rss_mb: None,
            pg_tx_per_req: None,
            redis_cmds_per_req: None,
            redis_by_command: vec![("evalsha".into(), 1.0), ("get".into(), 0.5)],
            log_bytes_per_req: None,
            cache_per_req: Vec::new(),
            vs_reference: None,
            breakdown: None,
        };
        let report = Report {
            options: Options::parse(&["cached".to_owned()]).unwrap(),
            started_at: "now".into(),
            machine: "m".into(),
            load_average_before: String::new(),
            load_average_after: String::new(),
            versions: vec![("wrk", "4.2".into())],
            seeded: Vec::new(),
            list_body_bytes: None,
            list_head_bytes: None,
            runs: vec![
                Run {
                    subject: Subject::Plinth(Scenario::Cached),
                    data,
                    main: true,
                    outcome: Outcome::Done(Box::new(figures)),
                },
                Run {
                    subject: Subject::Plinth(Scenario::Db),
                    data,
                    main: true,
                    outcome: Outcome::Skipped("why".into()),
                },
            ],
            capacity: Some(super::super::capacity::fixtures::sample()),
            enumeration: Some(super::super::enumeration::sample()),
            profile: None,
            total_seconds: 1.0,
            log_destination: String::new(),
        };
        let v: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
        let run = &v["runs"][0];
        assert_eq!(run["name"], "cached");
        assert_eq!(run["error_detail"], "503×2 \"x\"\n");
        assert!(run["rate"].is_null() && run["p99_ms"].is_null());
        assert_eq!(run["redis_by_command"]["evalsha"], 1.0);
        assert_eq!(v["runs"][1]["detail"], "why");
        assert!(v["runs"][1].get("rate").is_none());
        assert_eq!(v["versions"]["wrk"], "4.2");
        assert_eq!(v["options"]["tenants"], 10_000);
        // The capacity search, latency-corrected figures per step and the held rate.
        let capacity = &v["capacity"];
        assert_eq!((capacity["held_rate"].as_f64(), capacity["active_users"].as_f64()), (Some(500.0), Some(2500.0)));
        assert_eq!(capacity["steps"][1]["p99_ms"], 2500.0);
        assert_eq!(capacity["steps"][1]["held"], false);
        assert_eq!(capacity["steps"][0]["by_kind"][0]["kind"], "list");
        assert_eq!(capacity["steps"][0]["curve"][1], serde_json::json!([50.0, 1.0]));
        // The enumeration comparison, and its two targets.
        let enumeration = &v["enumeration"];
        assert_eq!(enumeration["kinds"][1]["who"], "nobody");
        assert_eq!((enumeration["p50_ratio"].as_f64(), enumeration["p50_ratio_max"].as_f64()), (Some(1.02), Some(1.1)));
        let goals: Vec<&str> =
            v["targets"].as_array().into_iter().flatten().filter_map(|t| t["goal"].as_str()).collect();
        assert!(goals.iter().any(|g| g.contains("member p50 / nobody p50 within 0.90–1.10")), "{goals:?}");
    }
}
