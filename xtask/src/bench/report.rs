//! The report: a table for the terminal, `report.md` and `report.json`.

use std::fmt::Write as _;

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
    let mixed = find(r, Subject::Plinth(Scenario::Mixed));
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
fn text_table(headers: &[&str], rows: &[Vec<String>]) -> String {
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

fn md_table(headers: &[&str], rows: &[Vec<String>]) -> String {
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
    let redis: Vec<String> = main_runs(r)
        .filter_map(|run| {
            let f = run.figures()?;
            (!f.redis_by_command.is_empty())
                .then(|| format!("- `{}`: {}", run.subject.name(), by_command(&f.redis_by_command)))
        })
        .collect();
    if !redis.is_empty() {
        let _ = writeln!(
            md,
            "\nRedis commands per request, by command (`INFO commandstats`: commands run inside Lua scripts count \
             too; other clients of the shared Redis add noise):\n\n{}",
            redis.join("\n")
        );
    }
    let cache: Vec<String> = main_runs(r)
        .filter_map(|run| {
            let f = run.figures()?;
            (!f.cache_per_req.is_empty())
                .then(|| format!("- `{}`: {}", run.subject.name(), by_command(&f.cache_per_req)))
        })
        .collect();
    if !cache.is_empty() {
        let _ = writeln!(
            md,
            "\nCache reads per request, by level and result, and fetches from the origin (plinth's \
             `cache_requests_total` and `cache_fetches_total`, warm-up included):\n\n{}",
            cache.join("\n")
        );
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

/// `evalsha 1.00, get 0.98` (below 0.01 left out).
fn by_command(commands: &[(String, f64)]) -> String {
    commands.iter().filter(|(_, n)| *n >= 0.01).map(|(c, n)| format!("{c} {n:.2}")).collect::<Vec<_>>().join(", ")
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

/// `report.json`.
pub fn json(r: &Report) -> String {
    let o = &r.options;
    let mut runs = Vec::new();
    for run in &r.runs {
        let (status, detail) = match &run.outcome {
            Outcome::Done(_) => ("done", String::new()),
            Outcome::Skipped(w) => ("skipped", w.clone()),
            Outcome::Failed(w) => ("failed", w.clone()),
        };
        let mut fields = vec![
            format!("\"name\":{}", json_str(run.subject.name())),
            format!("\"main\":{}", run.main),
            format!("\"tenants\":{}", run.data.tenants),
            format!("\"projects\":{}", run.data.projects()),
            format!("\"status\":{}", json_str(status)),
        ];
        if !detail.is_empty() {
            fields.push(format!("\"detail\":{}", json_str(&detail)));
        }
        if let Some(f) = run.figures() {
            let m = &f.m;
            let lat = |v: f64| if m.p99_us > 0.0 { Some(v / 1000.0) } else { None };
            fields.extend([
                format!("\"rate\":{}", json_num(Some(m.rate))),
                format!("\"unit\":{}", json_str(f.unit)),
                format!("\"requests\":{}", m.requests),
                format!("\"seconds\":{}", json_num(Some(m.seconds))),
                format!("\"p50_ms\":{}", json_num(lat(m.p50_us))),
                format!("\"p90_ms\":{}", json_num(lat(m.p90_us))),
                format!("\"p99_ms\":{}", json_num(lat(m.p99_us))),
                format!("\"p999_ms\":{}", json_num(lat(m.p999_us))),
                format!("\"max_ms\":{}", json_num(lat(m.max_us))),
                format!("\"errors\":{}", m.errors),
                format!("\"error_detail\":{}", json_str(&m.error_detail)),
                format!("\"tool_rate\":{}", json_num(Some(m.tool_rate))),
                format!("\"cpu_s_per_1k\":{}", json_num(f.cpu_s_per_1k)),
                format!("\"peak_rss_mb\":{}", json_num(f.peak_rss_mb)),
                format!("\"pg_tx_per_req\":{}", json_num(f.pg_tx_per_req)),
                format!("\"redis_cmds_per_req\":{}", json_num(f.redis_cmds_per_req)),
                format!(
                    "\"redis_by_command\":{{{}}}",
                    f.redis_by_command
                        .iter()
                        .map(|(c, n)| format!("{}:{}", json_str(c), json_num(Some(*n))))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                format!("\"log_bytes_per_req\":{}", json_num(f.log_bytes_per_req)),
                format!(
                    "\"cache_per_req\":{{{}}}",
                    f.cache_per_req
                        .iter()
                        .map(|(c, n)| format!("{}:{}", json_str(c), json_num(Some(*n))))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                format!("\"note\":{}", json_str(&m.note)),
            ]);
            if let Some((reference, reference_rate, ratio)) = f.vs_reference {
                fields.push(format!(
                    "\"vs_reference\":{{\"name\":{},\"rate\":{},\"ratio\":{}}}",
                    json_str(reference.name()),
                    json_num(Some(reference_rate)),
                    json_num(Some(ratio))
                ));
            }
        }
        runs.push(format!("    {{{}}}", fields.join(",")));
    }
    let seeded: Vec<String> = r
        .seeded
        .iter()
        .map(|s| {
            format!(
                "    {{\"tenants\":{},\"users_per_tenant\":{},\"projects_per_tenant\":{},\"projects\":{},\"seed_seconds\":{},\"vacuum_seconds\":{}}}",
                s.data.tenants,
                s.data.users_per_tenant,
                s.data.projects_per_tenant,
                s.data.projects(),
                json_num(Some(s.seed_seconds)),
                json_num(Some(s.vacuum_seconds))
            )
        })
        .collect();
    let scale: Vec<String> = scale(r)
        .iter()
        .map(|p| {
            let each = |v: &[f64]| v.iter().map(|&us| json_num(Some(us / 1000.0))).collect::<Vec<_>>().join(",");
            format!(
                "    {{\"projects\":{},\"cached_p99_ms\":{},\"db_p99_ms\":{},\"cached_rate\":{},\"db_rate\":{},\
                 \"cached_p99_ms_each\":[{}],\"db_p99_ms_each\":[{}]}}",
                p.projects,
                json_num(p.cached_p99_us().map(|v| v / 1000.0)),
                json_num(p.db_p99_us().map(|v| v / 1000.0)),
                json_num(p.cached_rate),
                json_num(p.db_rate),
                each(&p.cached_p99s),
                each(&p.db_p99s)
            )
        })
        .collect();
    let targets: Vec<String> = targets(r)
        .iter()
        .map(|t| {
            format!(
                "    {{\"goal\":{},\"measured\":{},\"met\":{}}}",
                json_str(&t.goal.replace('`', "")),
                json_str(&t.measured),
                t.met.map_or_else(|| "null".into(), |m| m.to_string())
            )
        })
        .collect();
    let ceiling = reference_rates(r, Reference::Ceiling);
    let versions: Vec<String> = r.versions.iter().map(|(k, v)| format!("{}:{}", json_str(k), json_str(v))).collect();
    format!(
        "{{\n  \"started_at\":{},\n  \"command\":{},\n  \"total_seconds\":{},\n  \"machine\":{},\n  \
         \"load_average_before\":{},\n  \"load_average_after\":{},\n  \"versions\":{{{}}},\n  \
         \"options\":{{\"tenants\":{},\"users_per_tenant\":{},\"projects_per_tenant\":{},\"duration_s\":{},\"warmup_s\":{},\"connections\":{},\"threads\":{},\"quick\":{}}},\n  \
         \"logs\":{},\n  \"list_body_bytes\":{},\n  \"ceiling_rates\":[{}],\n  \"seeded\":[\n{}\n  ],\n  \"runs\":[\n{}\n  ],\n  \
         \"scale\":[\n{}\n  ],\n  \"targets\":[\n{}\n  ],\n  \"profile\":{}\n}}\n",
        json_str(&r.started_at),
        json_str(&o.command_line),
        json_num(Some(r.total_seconds)),
        json_str(&r.machine),
        json_str(&r.load_average_before),
        json_str(&r.load_average_after),
        versions.join(","),
        o.tenants,
        o.users_per_tenant,
        o.projects_per_tenant,
        o.duration,
        o.warmup,
        o.connections,
        o.threads,
        o.quick,
        json_str(&r.log_destination),
        r.list_body_bytes.map_or_else(|| "null".into(), |b| b.to_string()),
        ceiling.iter().map(|c| json_num(Some(*c))).collect::<Vec<_>>().join(","),
        seeded.join(",\n"),
        runs.join(",\n"),
        scale.join(",\n"),
        targets.join(",\n"),
        r.profile.as_deref().map_or_else(|| "null".into(), json_str),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rates_and_json_strings() {
        assert_eq!(rate(1234567.4), "1,234,567");
        assert_eq!(rate(999.0), "999");
        assert_eq!(json_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        assert_eq!(json_num(Some(f64::NAN)), "null");
    }
}
