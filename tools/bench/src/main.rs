//! `plinth-bench` (run as `cargo xtask bench`): how fast plinth is, against the limits of this
//! machine.
//!
//! Builds the release binaries, creates a fresh database per data set, seeds it (timed), and
//! for each scenario starts plinth afresh (so peak RSS is per scenario) and drives it with wrk
//! through a generated Lua script that spreads requests over every tenant. References measured
//! in the same run, just before the scenarios they are compared to: `ceiling` (a bare actix-web
//! server, `crates/web/examples/ceiling.rs`) and `pgbench` (the db scenario's transaction).
//! Writes `target/bench/report.{md,json,svg}` and prints a table.
//!
//! `capacity` is driven by the bench's own open-loop driver instead (`capacity.rs`), on a data
//! set of its own, and also writes `target/bench/capacity.svg`. `reset-enumeration` is driven
//! by a closed loop of its own (`enumeration.rs`), run only when named.
//!
//! Adding a scenario: a variant in `scenario.rs` (its name, configuration and load), and, if
//! its load is not a wrk one, an arm in [`Bench::measure_plinth`] (as `jobs`, `capacity` and
//! `reset-enumeration` have).

mod breakdown;
mod capacity;
mod enumeration;
mod http;
mod jobs;
mod load;
mod options;
mod profile;
mod report;
mod scenario;
mod services;
mod svg;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use load::{Measured, PgbenchRun, WrkRun};
use options::Options;
use scenario::{Load, Reference, Scenario};
use services::{PgServer, Redis, Server};

/// The slug prefix of seeded tenants.
const SLUG_PREFIX: &str = "t";
const BASE_DOMAIN: &str = "localhost";
/// Quotas high enough that nothing is limited (the most plinth accepts: 10,000,000/min).
const NO_LIMIT: &str = "10000000";
/// Tenants the profiled run spreads over.
const PROFILE_TENANTS: usize = 100;

/// What was measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Plinth(Scenario),
    Reference(Reference),
}

impl Subject {
    pub fn name(self) -> &'static str {
        match self {
            Self::Plinth(s) => s.name(),
            Self::Reference(r) => r.name(),
        }
    }
}

/// The figures of one completed run.
#[derive(Debug, Clone)]
pub struct Figures {
    pub m: Measured,
    /// `req/s`, `tx/s` or `jobs/s`.
    pub unit: &'static str,
    /// The server's CPU seconds (user + system) per 1,000 requests of the measured window.
    pub cpu_s_per_1k: Option<f64>,
    /// The server's peak RSS, in MB (10^6 bytes).
    pub peak_rss_mb: Option<f64>,
    /// PostgreSQL transactions committed in the bench database per request (warm-up included).
    pub pg_tx_per_req: Option<f64>,
    /// Redis commands per request, those run inside Lua scripts included (server-wide: other
    /// clients of the shared Redis count too).
    pub redis_cmds_per_req: Option<f64>,
    /// The same by command, most frequent first.
    pub redis_by_command: Vec<(String, f64)>,
    /// Bytes of log (stdout) per request.
    pub log_bytes_per_req: Option<f64>,
    /// Cache reads per request by level and result, and origin fetches, from plinth's
    /// `/metrics` (warm-up included); empty when this build has no such metrics.
    pub cache_per_req: Vec<(String, f64)>,
    /// The reference's rate measured just before, and this run's ratio to it.
    pub vs_reference: Option<(Reference, f64, f64)>,
    /// Pool waits, database calls and Redis commands of the measured requests, from plinth's
    /// histograms (HTTP scenarios of a build that has them).
    pub breakdown: Option<breakdown::Breakdown>,
}

/// What [`Bench::drive`] measured: warm-up requests, the measured run, CPU seconds per 1,000
/// requests, peak RSS in MB, and where the measured requests' time went.
type Driven = (u64, Measured, Option<f64>, Option<f64>, Option<breakdown::Breakdown>);

impl Figures {
    /// Figures with the server's CPU and peak RSS and none of plinth's counters.
    pub fn plain(m: Measured, unit: &'static str, cpu_s_per_1k: Option<f64>, peak_rss_mb: Option<f64>) -> Self {
        Self {
            m,
            unit,
            cpu_s_per_1k,
            peak_rss_mb,
            pg_tx_per_req: None,
            redis_cmds_per_req: None,
            redis_by_command: Vec::new(),
            log_bytes_per_req: None,
            cache_per_req: Vec::new(),
            vs_reference: None,
            breakdown: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Done(Box<Figures>),
    Skipped(String),
    Failed(String),
}

/// One run of one subject on one data set.
#[derive(Debug, Clone)]
pub struct Run {
    pub subject: Subject,
    pub data: DataSet,
    /// Part of the main data set's table (else a scale point only).
    pub main: bool,
    pub outcome: Outcome,
}

impl Run {
    pub fn figures(&self) -> Option<&Figures> {
        match &self.outcome {
            Outcome::Done(f) => Some(f),
            _ => None,
        }
    }
}

/// A data set's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSet {
    pub tenants: u32,
    pub users_per_tenant: u32,
    pub projects_per_tenant: u32,
}

impl DataSet {
    pub fn projects(self) -> u64 {
        u64::from(self.tenants) * u64::from(self.projects_per_tenant)
    }
    pub fn users(self) -> u64 {
        u64::from(self.tenants) * u64::from(self.users_per_tenant)
    }
    /// `{tenants}x{users per tenant}x{projects per tenant}`: names its database and tokens file.
    pub fn label(self) -> String {
        format!("{}x{}x{}", self.tenants, self.users_per_tenant, self.projects_per_tenant)
    }
}

/// A seeded data set and how long it took.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub data: DataSet,
    pub seed_seconds: f64,
    pub vacuum_seconds: f64,
}

/// Everything the report is made of.
#[derive(Debug, Clone)]
pub struct Report {
    pub options: Options,
    pub started_at: String,
    pub machine: String,
    pub load_average_before: String,
    pub load_average_after: String,
    pub versions: Vec<(&'static str, String)>,
    pub seeded: Vec<Seeded>,
    pub list_body_bytes: Option<usize>,
    pub list_head_bytes: Option<usize>,
    pub runs: Vec<Run>,
    /// The `capacity` search, when it ran.
    pub capacity: Option<capacity::Capacity>,
    /// The `reset-enumeration` comparison, when it ran.
    pub enumeration: Option<enumeration::Enumeration>,
    pub profile: Option<String>,
    pub total_seconds: f64,
    pub log_destination: String,
}

/// The progress line.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    tty: bool,
    step: std::cell::Cell<usize>,
    steps: usize,
    last_line: std::cell::Cell<Option<Instant>>,
}

impl Progress {
    fn new(steps: usize) -> Self {
        Self {
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            step: std::cell::Cell::new(0),
            steps,
            last_line: std::cell::Cell::new(None),
        }
    }

    fn prefix(&self) -> String {
        let t = self.started.elapsed().as_secs();
        format!("[{}/{} {:>2}m{:02}s]", self.step.get(), self.steps, t / 60, t % 60)
    }

    /// Starts the next step.
    fn begin(&self, what: &str) {
        self.step.set(self.step.get() + 1);
        self.clear();
        eprintln!("{} {what}", self.prefix());
    }

    /// Updates the progress line: in place on a terminal, else a line every 15 s.
    pub fn tick(&self, label: &str, done: Duration, expected: Duration) {
        let line = format!("{} {label}: {}s/{}s", self.prefix(), done.as_secs(), expected.as_secs());
        if self.tty {
            eprint!("\r\x1b[K{line}");
        } else if self.last_line.get().is_none_or(|t| t.elapsed() >= Duration::from_secs(15)) {
            self.last_line.set(Some(Instant::now()));
            eprintln!("{line}");
        }
    }

    fn clear(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }

    /// A finished result line.
    fn result(&self, text: &str) {
        self.clear();
        eprintln!("    {text}");
    }
}

/// Paths and secrets of the run.
#[derive(Debug)]
struct Bench {
    opts: Options,
    pg: PgServer,
    redis: Redis,
    plinth: PathBuf,
    ceiling: PathBuf,
    out: PathBuf,
    jwt_secret: String,
    encryption_key: String,
    clk_tck: u64,
    progress: Progress,
    report: Report,
    /// The latest reference rates, for the ratios of the scenarios that follow them.
    last_ceiling: Option<f64>,
    last_pgbench: Option<f64>,
}

/// One step of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Prepare(DataSet),
    Probe(DataSet),
    Measure(Subject, DataSet, bool),
    Profile(Scenario, DataSet),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--help` and bad arguments end here, the way clap prints and exits for them.
    let opts = Options::parse(&args).unwrap_or_else(|e| e.exit());
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (this crate lives two levels below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs the bench with `opts`.
fn run(opts: Options) -> Result<(), String> {
    check_tools(&opts)?;
    let root = root();
    let target = services::target_dir(&root);
    let out = target.join("bench");
    std::fs::create_dir_all(out.join("logs")).map_err(|e| format!("{}: {e}", out.display()))?;
    let pg = PgServer::parse(
        &std::env::var("PLINTH_BENCH_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )?;
    pg.psql(&pg.admin_url(), "SELECT 1").map_err(|e| format!("PostgreSQL is not answering ({e}); start it first"))?;
    let redis = Redis { url: std::env::var("PLINTH_BENCH_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()) };
    redis.ping().map_err(|e| format!("Redis is not answering ({e}); start it first"))?;
    if opts.build {
        let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        build.current_dir(&root).args([
            "build",
            "--release",
            "-p",
            "plinth-web",
            "--bin",
            "plinth",
            "--example",
            "ceiling",
        ]);
        eprintln!("\n==> build release binaries: {build:?}");
        let status = build.status().map_err(|e| format!("build release binaries: could not start: {e}"))?;
        if !status.success() {
            return Err(format!("build release binaries failed ({status})"));
        }
    }
    let release = target.join("release");
    let plan = plan(&opts);
    let versions = vec![
        ("PostgreSQL", pg.version()),
        ("Redis", redis.version()),
        ("wrk", services::first_line("wrk", &["-v"])),
        ("pgbench", services::first_line("pgbench", &["--version"])),
        ("rustc", services::first_line("rustc", &["--version"])),
    ];
    let mut bench = Bench {
        report: Report {
            options: opts.clone(),
            started_at: services::output("date", Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))
                .unwrap_or_default()
                .trim()
                .into(),
            machine: services::machine(),
            load_average_before: services::load_average(),
            load_average_after: String::new(),
            versions,
            seeded: Vec::new(),
            list_body_bytes: None,
            list_head_bytes: None,
            runs: Vec::new(),
            capacity: None,
            enumeration: None,
            profile: None,
            total_seconds: 0.0,
            log_destination: "JSON lines at info on stdout, through a pipe the bench drains and discards (counting \
                              lines and bytes; the first 200 lines are kept in target/bench/logs/), as a container \
                              runtime's log collector would read them"
                .into(),
        },
        opts,
        pg,
        redis,
        plinth: release.join("plinth"),
        ceiling: release.join("examples").join("ceiling"),
        out,
        jwt_secret: services::hex(&services::random_bytes(32)?),
        encryption_key: services::base64(&services::random_bytes(32)?),
        clk_tck: services::clock_ticks_per_second(),
        progress: Progress::new(plan.len()),
        last_ceiling: None,
        last_pgbench: None,
    };
    for path in [&bench.plinth, &bench.ceiling] {
        if !path.exists() {
            return Err(format!("{} is missing: run without --no-build", path.display()));
        }
    }
    let started = Instant::now();
    bench.pg.drop_bench_dbs()?;
    for step in plan {
        match step {
            Step::Prepare(data) => {
                bench.progress.begin(&format!(
                    "data set: {} tenants × {} users × {} projects ({} projects)",
                    data.tenants,
                    data.users_per_tenant,
                    data.projects_per_tenant,
                    data.projects()
                ));
                bench.prepare(data)?;
            }
            Step::Probe(data) => {
                bench.progress.begin("probe: one list request, to size the ceiling's body");
                let tokens = bench.select(data);
                bench.probe(&tokens)?;
            }
            Step::Measure(subject, data, main) => {
                let tokens = bench.select(data);
                let what = if main { "" } else { ", scale" };
                bench.progress.begin(&format!("{} ({} projects{what})", subject.name(), data.projects()));
                let outcome = bench.measure(subject, data, &tokens);
                let line = match &outcome {
                    Outcome::Done(f) => report::one_line(subject, f),
                    Outcome::Skipped(why) => format!("{}: skipped: {why}", subject.name()),
                    Outcome::Failed(why) => format!("{}: FAILED: {why}", subject.name()),
                };
                bench.progress.result(&line);
                bench.report.runs.push(Run { subject, data, main, outcome });
                if let Some(line) = bench.bracket() {
                    bench.progress.result(&line);
                }
            }
            Step::Profile(scenario, data) => {
                let tokens = bench.select(data);
                bench.progress.begin(&format!("profile: the {} scenario, once, under a profiler", scenario.name()));
                match bench.profile(scenario, &tokens) {
                    Ok(summary) => bench.report.profile = Some(summary),
                    Err(e) => {
                        bench.progress.result(&format!("profile failed: {e}"));
                        bench.report.profile = Some(format!("failed: {e}"));
                    }
                }
            }
        }
    }
    bench.report.total_seconds = started.elapsed().as_secs_f64();
    bench.report.load_average_after = services::load_average();
    bench.finish()
}

fn check_tools(opts: &Options) -> Result<(), String> {
    if !services::has("wrk", "-v") {
        return Err("wrk is not installed; on Debian or Ubuntu:\n  apt-get install -y wrk".into());
    }
    if !services::has("psql", "--version") {
        return Err("psql is not installed; on Debian or Ubuntu:\n  apt-get install -y postgresql-client".into());
    }
    if opts.scenarios.contains(&Scenario::Db) && !services::has("pgbench", "--version") {
        return Err("pgbench is not installed; on Debian or Ubuntu:\n  apt-get install -y postgresql-contrib".into());
    }
    if !services::has("redis-cli", "--version") {
        return Err("redis-cli is not installed; on Debian or Ubuntu:\n  apt-get install -y redis-tools".into());
    }
    Ok(())
}

/// The scenario `--profile` profiles: the first list scenario asked for (`cached`, `cached-shared`,
/// `l2` or `db`), else `cached`.
fn profiled(scenarios: &[Scenario]) -> Scenario {
    scenarios.iter().copied().find(|s| s.load() == Load::List).unwrap_or(Scenario::Cached)
}

/// The steps: every data set seeded into its own database first; then the main data set with
/// every scenario, each reference measured just before and just after the scenarios compared
/// to it; then the
/// scale curve: `cached` and `db` on every data set, in two rounds, smallest to largest and back,
/// so that a machine slowing down or speeding up over the run weighs on every size alike.
fn plan(opts: &Options) -> Vec<Step> {
    let main = DataSet {
        tenants: opts.tenants,
        users_per_tenant: opts.users_per_tenant,
        projects_per_tenant: opts.projects_per_tenant,
    };
    let mut sets: Vec<DataSet> = if opts.scale {
        opts.scale_tenants.iter().map(|&tenants| DataSet { tenants, ..main }).collect()
    } else {
        Vec::new()
    };
    // `capacity` runs on a data set of its own; the other scenarios on the main one.
    let capacity_set = capacity::data_set(opts.quick);
    let on_main = |s: &Scenario| s.load() != Load::Capacity;
    if opts.scenarios.iter().any(on_main) && !sets.contains(&main) {
        sets.push(main);
    }
    if opts.scenarios.contains(&Scenario::Capacity) && !sets.contains(&capacity_set) {
        sets.push(capacity_set);
    }
    sets.sort_by_key(|d| d.tenants);
    let mut steps: Vec<Step> = sets.iter().map(|&d| Step::Prepare(d)).collect();
    if opts.scenarios.iter().any(|s| s.reference() == Some(Reference::Ceiling)) {
        steps.push(Step::Probe(main));
    }
    // A scenario with a reference runs between two runs of it, and its ratio is to their mean:
    // drift in the machine's speed while it runs then weighs on both sides alike. One run of a
    // reference serves as the "after" of one scenario and the "before" of the next.
    for &s in &opts.scenarios {
        let reference = s.reference().map(|r| Step::Measure(Subject::Reference(r), main, true));
        if let Some(before) = reference
            && steps.last() != Some(&before)
        {
            steps.push(before);
        }
        let data = if on_main(&s) { main } else { capacity_set };
        steps.push(Step::Measure(Subject::Plinth(s), data, true));
        steps.extend(reference);
    }
    if opts.scenarios.iter().any(on_main) && opts.profile.is_some() {
        steps.push(Step::Profile(profiled(&opts.scenarios), main));
    }
    if opts.scale && sets.len() > 1 {
        for round in [sets.clone(), sets.iter().rev().copied().collect()] {
            for data in round {
                for s in [Scenario::Cached, Scenario::Db] {
                    steps.push(Step::Measure(Subject::Plinth(s), data, false));
                }
            }
        }
    }
    steps
}

impl Bench {
    /// The data set's tokens file.
    fn tokens_file(&self, data: DataSet) -> PathBuf {
        self.out.join(format!("tokens-{}.tsv", data.label()))
    }

    /// A `plinth` command with a clean environment of our own.
    fn plinth_command(&self) -> Command {
        self.plinth_command_under(&[])
    }

    /// The same, run under `wrapper` (e.g. a profiler) when it is not empty.
    fn plinth_command_under(&self, wrapper: &[String]) -> Command {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.plinth);
                c
            }
            None => Command::new(&self.plinth),
        };
        for (name, _) in std::env::vars_os() {
            let name_str = name.to_string_lossy();
            if name_str.starts_with("PLINTH_") || name_str == "DATABASE_URL" || name_str == "REDIS_URL" {
                cmd.env_remove(&name);
            }
        }
        cmd.env("PLINTH_JWT_SECRET", &self.jwt_secret).env("PLINTH_ENCRYPTION_KEY", &self.encryption_key);
        // To measure what the header costs: plinth's own PLINTH_* variables are not passed on.
        if std::env::var("PLINTH_BENCH_SERVER_TIMING").is_ok_and(|v| v == "true") {
            cmd.env("PLINTH_SERVER_TIMING", "true");
        }
        cmd
    }

    /// When the last run is a reference that followed a scenario compared to it, which itself
    /// followed a run of that reference: sets the scenario's ratio to the mean of the two
    /// reference runs, and says so.
    fn bracket(&mut self) -> Option<String> {
        let [before, scenario, after] = self.report.runs.last_chunk_mut::<3>()?;
        let Subject::Reference(reference) = after.subject else { return None };
        let Subject::Plinth(s) = scenario.subject else { return None };
        if before.subject != after.subject || s.reference() != Some(reference) {
            return None;
        }
        let unit = after.figures()?.unit;
        let (before, after) = (before.figures()?.m.rate, after.figures()?.m.rate);
        let Outcome::Done(f) = &mut scenario.outcome else { return None };
        let mean = (before + after) / 2.0;
        f.vs_reference = Some((reference, mean, f.m.rate / mean));
        Some(format!(
            "{}: {:.2} × {} (against the mean of the runs before and after it: {} and {} {})",
            s.name(),
            f.m.rate / mean,
            reference.name(),
            report::rate(before),
            report::rate(after),
            unit
        ))
    }

    /// Points the bench at `data`'s database, and returns its tokens file.
    fn select(&mut self, data: DataSet) -> PathBuf {
        self.pg.use_db(&data.label());
        self.tokens_file(data)
    }

    /// Creates `data`'s database afresh, migrates, seeds (timed) and vacuums it.
    fn prepare(&mut self, data: DataSet) -> Result<(), String> {
        let tokens = self.select(data);
        self.pg.recreate()?;
        let app_url = if self.pg.app_role_exists()? { self.pg.app_url_no_password() } else { self.pg.app_url() };
        services::output(
            "plinth migrate",
            self.plinth_command()
                .arg("migrate")
                .env("PLINTH_DATABASE_OWNER_URL", self.pg.owner_url())
                .env("DATABASE_URL", app_url)
                .env("PLINTH_LOG", "warn"),
        )?;
        let mut seed = self.plinth_command();
        seed.arg("seed")
            .args(["--tenants", &data.tenants.to_string()])
            .args(["--users-per-tenant", &data.users_per_tenant.to_string()])
            .args(["--projects-per-tenant", &data.projects_per_tenant.to_string()])
            .args(["--slug-prefix", SLUG_PREFIX, "--tokens-file"])
            .arg(&tokens)
            .env("PLINTH_DATABASE_OWNER_URL", self.pg.owner_url())
            .env("DATABASE_URL", self.pg.app_url())
            // Tokens must outlive the whole bench.
            .env("PLINTH_TOKEN_TTL", "604800")
            .env("PLINTH_LOG", "warn");
        let started = Instant::now();
        // A rough guess for the progress line: about 100,000 projects a second.
        let expected = Duration::from_secs(data.projects() / 100_000 + 1);
        load::run_with_progress(&mut seed, "seeding", expected, &self.progress)?;
        let seed_seconds = started.elapsed().as_secs_f64();
        // What autovacuum would do soon after a bulk load, done now so it doesn't run during a
        // measurement; and the helper table pgbench picks tenants from.
        let started = Instant::now();
        let owner = self.pg.owner_url();
        self.pg.psql(&owner, "VACUUM (ANALYZE) tenants, users, projects")?;
        self.pg.psql(
            &owner,
            "CREATE TABLE bench_tenants (n int PRIMARY KEY, id uuid NOT NULL); \
             INSERT INTO bench_tenants SELECT row_number() OVER (ORDER BY slug), id FROM tenants; \
             GRANT SELECT ON bench_tenants TO plinth_app; ANALYZE bench_tenants; CHECKPOINT;",
        )?;
        let vacuum_seconds = started.elapsed().as_secs_f64();
        self.progress.result(&format!(
            "seeded {} tenants, {} users, {} projects in {seed_seconds:.1} s (then VACUUM ANALYZE + CHECKPOINT {vacuum_seconds:.1} s)",
            data.tenants,
            data.users(),
            data.projects()
        ));
        self.report.seeded.push(Seeded { data, seed_seconds, vacuum_seconds });
        Ok(())
    }

    /// A tokens file of API keys (`projects:read`), one per tenant of `tokens`, created by
    /// each owner through `server` (unmeasured: before the run's warm-up).
    fn api_keys(&self, server: &Server, data: DataSet, tokens: &Path) -> Result<PathBuf, String> {
        let text = std::fs::read_to_string(tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
        let owners: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(slug, token)| (format!("{slug}.{BASE_DOMAIN}"), token.trim().to_owned()))
            .collect();
        let started = Instant::now();
        let body = r#"{"name": "bench", "scopes": ["projects:read"]}"#;
        let answers = http::post_each(server.port, "/v1/api-keys", body, &owners, 32)?;
        let mut out = String::with_capacity(owners.len() * 120);
        for ((host, _), answer) in owners.iter().zip(answers) {
            let created: serde_json::Value =
                serde_json::from_slice(&answer).map_err(|e| format!("an API key's answer: {e}"))?;
            let secret = created["key"].as_str().ok_or("an API key's answer has no key")?;
            let slug = host.strip_suffix(&format!(".{BASE_DOMAIN}")).unwrap_or(host);
            out.push_str(&format!("{slug}\t{secret}\n"));
        }
        let path = self.out.join(format!("api-keys-{}.tsv", data.label()));
        std::fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))?;
        self.progress.result(&format!(
            "created {} API keys in {:.1} s (the run authenticates with them)",
            owners.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok(path)
    }

    fn first_tenant(tokens: &Path) -> Result<(String, String), String> {
        let text = std::fs::read_to_string(tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
        let line = text.lines().next().ok_or("the tokens file is empty")?;
        let (slug, token) = line.split_once('\t').ok_or("malformed tokens file")?;
        Ok((slug.to_owned(), token.trim().to_owned()))
    }

    /// Starts plinth configured for `scenario`, under `wrapper` if not empty.
    fn start_plinth(&self, scenario: Scenario, label: &str, wrapper: &[String]) -> Result<Server, String> {
        let mut cmd = self.plinth_command_under(wrapper);
        cmd.env("DATABASE_URL", self.pg.app_url())
            .env("PLINTH_LISTEN", format!("127.0.0.1:{}", self.opts.port))
            .env("PLINTH_BASE_DOMAIN", BASE_DOMAIN)
            .env("PLINTH_CACHE", scenario.cache())
            .env("PLINTH_LOG", "info")
            .env("PLINTH_LOG_FORMAT", "json")
            .env("PLINTH_SHUTDOWN_DRAIN_S", "0")
            .env("PLINTH_SHUTDOWN_GRACE_S", "5");
        for quota in [
            "PLINTH_QUOTA_FREE",
            "PLINTH_QUOTA_PRO",
            "PLINTH_QUOTA_ENTERPRISE",
            "PLINTH_IP_QUOTA",
            "PLINTH_LOGIN_QUOTA",
            "PLINTH_MAILBOX_QUOTA",
        ] {
            cmd.env(quota, NO_LIMIT);
        }
        // The default, said outright: `jobs` and `reset-enumeration` need the in-process worker.
        cmd.env("PLINTH_WORKER", "true");
        if let Some(ttl) = scenario.data_ttl() {
            cmd.env("PLINTH_CACHE_TTL_S", ttl);
        }
        if !scenario.audited() {
            cmd.env("PLINTH_AUDIT", "false");
        }
        if !scenario.statement_cache() {
            cmd.env("PLINTH_DATABASE_STATEMENT_CACHE", "false");
        }
        if scenario.holds_the_hot_set_in_l1() {
            cmd.env("PLINTH_L1_CACHE_MB", self.l1_mb().to_string());
        }
        if scenario.redis() {
            cmd.env("REDIS_URL", &self.redis.url).env("PLINTH_REDIS_PREFIX", services::REDIS_PREFIX);
            self.redis.flush_prefix()?;
        }
        let logs = self.out.join("logs");
        let stderr = logs.join(format!("{label}.stderr"));
        let mut server =
            Server::start("plinth", &mut cmd, self.opts.port, &logs.join(format!("{label}.log")), &stderr)?;
        let patience = if wrapper.is_empty() { 60 } else { 600 };
        server.wait_ready(Duration::from_secs(patience), &stderr)?;
        Ok(server)
    }

    /// An L1 bound that holds every tenant's first page, marker and tenant entry of the largest
    /// data set this run uses (16 KiB a tenant: about twice what they weigh), and never below
    /// the default 32 MiB.
    fn l1_mb(&self) -> u64 {
        let tenants = self.opts.scale_tenants.iter().copied().chain([self.opts.tenants]).max().unwrap_or(0);
        (u64::from(tenants) * 16 / 1024).max(64)
    }

    /// One authenticated list request, to learn the response's size for the ceiling.
    fn probe(&mut self, tokens: &Path) -> Result<(), String> {
        let (slug, token) = Self::first_tenant(tokens)?;
        let server = self.start_plinth(Scenario::Cached, "probe", &[])?;
        let host = format!("{slug}.{BASE_DOMAIN}");
        let list = http::get(self.opts.port, "/v1/projects", &host, Some(&token))?;
        let tenant = http::get(self.opts.port, "/v1/tenant", &host, None)?;
        server.stop(Duration::from_secs(10))?;
        if list.status != 200 || tenant.status != 200 {
            return Err(format!(
                "probe: GET /v1/projects answered {}, GET /v1/tenant {} (expected 200 both): {}",
                list.status,
                tenant.status,
                String::from_utf8_lossy(&list.body)
            ));
        }
        self.progress.result(&format!(
            "GET /v1/projects: {} bytes of body, {} of head ({} items)",
            list.body.len(),
            list.head_bytes,
            String::from_utf8_lossy(&list.body).matches("\"created_at\"").count()
        ));
        self.report.list_body_bytes = Some(list.body.len());
        self.report.list_head_bytes = Some(list.head_bytes);
        Ok(())
    }

    fn measure(&mut self, subject: Subject, data: DataSet, tokens: &Path) -> Outcome {
        let result = match subject {
            Subject::Plinth(s) => self.measure_plinth(s, data, tokens),
            Subject::Reference(Reference::Ceiling) => self.measure_ceiling(tokens),
            Subject::Reference(Reference::Pgbench) => self.measure_pgbench(data),
        };
        match result {
            Ok(Some(f)) => {
                match subject {
                    Subject::Reference(Reference::Ceiling) => self.last_ceiling = Some(f.m.rate),
                    Subject::Reference(Reference::Pgbench) => self.last_pgbench = Some(f.m.rate),
                    Subject::Plinth(_) => {}
                }
                Outcome::Done(Box::new(f))
            }
            Ok(None) => Outcome::Skipped("not available".into()),
            Err(e) if e.starts_with("not available") => Outcome::Skipped(e),
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Warm-up then measured wrk runs against a server, with its CPU and peak RSS.
    fn drive(&self, server: &Server, script: &Path, label: &str, settle: bool) -> Result<Driven, String> {
        let mut run = WrkRun {
            port: server.port,
            connections: self.opts.connections,
            threads: self.opts.threads,
            seconds: self.opts.warmup,
            script,
        };
        let mut warm = 0;
        // plinth's origin fetches so far, read between runs (not at all unless `settle`).
        let mut fetched = if settle { fetches(server.port) } else { None };
        if self.opts.warmup > 0 {
            // A cache serving 10,000 tenants fills at the speed of the database: one warm-up may
            // end before every tenant's entries are in, and the misses would then be measured.
            // Scenarios served from a cache warm up until a round fetches for under 1% of its
            // requests (or for MAX_WARMUP_ROUNDS rounds).
            for round in 1..=MAX_WARMUP_ROUNDS {
                let requests = load::wrk(&run, &format!("{label} warm-up {round}"), &self.progress)?.requests;
                warm += requests;
                let before = fetched;
                fetched = if settle { fetches(server.port) } else { None };
                let settled = match (before, fetched) {
                    (Some(b), Some(a)) => {
                        let per_request = (a - b) / (requests.max(1) as f64);
                        self.progress.result(&format!(
                            "{label} warm-up {round}: {requests} requests, {per_request:.4} fetches per request"
                        ));
                        per_request < 0.01
                    }
                    _ => true,
                };
                if settled {
                    break;
                }
            }
        }
        run.seconds = self.opts.duration;
        let histograms = breakdown::scrape(server.port, BASE_DOMAIN);
        let cpu_before = services::cpu_ticks(server.pid())?;
        let m = load::wrk(&run, label, &self.progress)?;
        let cpu_after = services::cpu_ticks(server.pid())?;
        let breakdown = histograms
            .zip(breakdown::scrape(server.port, BASE_DOMAIN))
            .and_then(|(before, after)| breakdown::between(&before, &after, m.requests));
        if let Some(b) = &breakdown {
            self.progress.result(&format!("{label}: {}", b.line()));
        }
        if let (Some(b), Some(a)) = (fetched, fetched.and_then(|_| fetches(server.port))) {
            let per_request = (a - b) / (m.requests.max(1) as f64);
            self.progress.result(&format!("{label}: {per_request:.4} fetches per request while measured"));
        }
        let cpu_seconds = (cpu_after - cpu_before) as f64 / self.clk_tck as f64;
        let cpu_per_1k = (m.requests > 0).then(|| cpu_seconds * 1000.0 / m.requests as f64);
        let rss = services::peak_rss_kib(server.pid()).map(|k| k as f64 * 1024.0 / 1e6);
        Ok((warm, m, cpu_per_1k, rss, breakdown))
    }

    fn measure_plinth(&mut self, scenario: Scenario, data: DataSet, tokens: &Path) -> Result<Option<Figures>, String> {
        match scenario.load() {
            Load::Capacity => return self.measure_capacity(data, tokens),
            Load::Reset => return self.measure_enumeration(data, tokens),
            Load::List | Load::Tenant | Load::Mixed | Load::Jobs => {}
        }
        let label = format!("{}-{}", scenario.name(), data.tenants);
        if scenario.load() == Load::Jobs
            && let Some(why) = jobs::unavailable(&self.pg)
        {
            return Err(why);
        }
        let server = self.start_plinth(scenario, &label, &[])?;
        let keys;
        let tokens = if self.opts.auth == options::Auth::ApiKey && scenario.load() == Load::List {
            keys = self.api_keys(&server, data, tokens)?;
            keys.as_path()
        } else {
            tokens
        };
        let mut cache = Vec::new();
        let xact_before = self.pg.xact_commit();
        let redis_before = if scenario.redis() { self.redis.command_calls() } else { None };
        let mut breakdown = None;
        let (warm, m, cpu, rss, unit) = if scenario.load() == Load::Jobs {
            let backlog = u64::from(self.opts.duration) * 4_000;
            let cpu_before = services::cpu_ticks(server.pid())?;
            let m = jobs::run(&self.pg, backlog, scenario.flood(), self.opts.duration, &self.progress)?;
            let cpu_after = services::cpu_ticks(server.pid())?;
            let cpu = (m.requests > 0)
                .then(|| (cpu_after - cpu_before) as f64 / self.clk_tck as f64 * 1000.0 / m.requests as f64);
            let rss = services::peak_rss_kib(server.pid()).map(|k| k as f64 * 1024.0 / 1e6);
            (0, m, cpu, rss, "jobs/s")
        } else {
            let script = self.out.join(format!("{}.lua", scenario.name()));
            std::fs::write(&script, load::lua_script(tokens, scenario.load(), BASE_DOMAIN))
                .map_err(|e| format!("{}: {e}", script.display()))?;
            let (warm, m, cpu, rss, timed) = self.drive(&server, &script, scenario.name(), scenario.settles())?;
            breakdown = timed;
            cache = http::get(server.port, "/metrics", BASE_DOMAIN, None)
                .ok()
                .filter(|r| r.status == 200)
                .map(|r| cache_counters(&String::from_utf8_lossy(&r.body)))
                .unwrap_or_default();
            (warm, m, cpu, rss, "req/s")
        };
        let logs = server.logs.clone();
        server.stop(Duration::from_secs(10))?;
        // Backends flush their statistics when they exit.
        std::thread::sleep(Duration::from_millis(700));
        let total = (warm + m.requests).max(1) as f64;
        let per_request = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(b), Some(a)) if a >= b => Some((a - b) as f64 / total),
            _ => None,
        };
        let redis_by_command = match (redis_before, scenario.redis().then(|| self.redis.command_calls()).flatten()) {
            (Some(before), Some(after)) => redis_delta(&before, &after, total),
            _ => Vec::new(),
        };
        let vs_reference = match scenario.reference() {
            Some(Reference::Ceiling) => self.last_ceiling.map(|r| (Reference::Ceiling, r, m.rate / r)),
            Some(Reference::Pgbench) => self.last_pgbench.map(|r| (Reference::Pgbench, r, m.rate / r)),
            None => None,
        };
        Ok(Some(Figures {
            pg_tx_per_req: per_request(xact_before, self.pg.xact_commit()),
            redis_cmds_per_req: (!redis_by_command.is_empty()).then(|| redis_by_command.iter().map(|(_, n)| n).sum()),
            redis_by_command,
            cache_per_req: cache.into_iter().map(|(k, v)| (k, v / total)).collect(),
            log_bytes_per_req: (scenario.load() != Load::Jobs)
                .then(|| logs.bytes.load(Ordering::Relaxed) as f64 / total),
            m,
            unit,
            cpu_s_per_1k: cpu,
            peak_rss_mb: rss,
            vs_reference,
            breakdown,
        }))
    }

    fn measure_ceiling(&mut self, tokens: &Path) -> Result<Option<Figures>, String> {
        let body = self.report.list_body_bytes.ok_or("the probe did not size the body")?;
        let port = self.opts.port + 1;
        let mut cmd = Command::new(&self.ceiling);
        cmd.env("CEILING_LISTEN", format!("127.0.0.1:{port}")).env("CEILING_BODY_BYTES", body.to_string());
        let logs = self.out.join("logs");
        let stderr = logs.join("ceiling.stderr");
        let mut server = Server::start("ceiling", &mut cmd, port, &logs.join("ceiling.log"), &stderr)?;
        server.wait_ready(Duration::from_secs(30), &stderr)?;
        let script = self.out.join("ceiling.lua");
        std::fs::write(&script, load::lua_script(tokens, Load::List, BASE_DOMAIN))
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let (_, m, cpu, rss, _) = self.drive(&server, &script, "ceiling", false)?;
        server.stop(Duration::from_secs(5))?;
        Ok(Some(Figures::plain(m, "req/s", cpu, rss)))
    }

    fn measure_pgbench(&mut self, data: DataSet) -> Result<Option<Figures>, String> {
        let script = self.out.join("pgbench.sql");
        std::fs::write(&script, load::pgbench_script()).map_err(|e| format!("{}: {e}", script.display()))?;
        let url = self.pg.app_url();
        let log_dir = self.out.join("pgbench-log");
        let mut run = PgbenchRun {
            url: &url,
            script: &script,
            tenants: data.tenants,
            clients: self.opts.connections,
            threads: self.opts.threads,
            seconds: self.opts.warmup,
            log_dir: None,
        };
        if self.opts.warmup > 0 {
            load::pgbench(&run, "pgbench warm-up", &self.progress)?;
        }
        run.seconds = self.opts.duration;
        run.log_dir = Some(&log_dir);
        let m = load::pgbench(&run, "pgbench", &self.progress)?;
        Ok(Some(Figures { pg_tx_per_req: Some(1.0), ..Figures::plain(m, "tx/s", None, None) }))
    }

    /// Runs `scenario` (a list scenario) once under a profiler: perf when hardware counters
    /// work here, else valgrind's callgrind (slow: 8 connections; counters zeroed after the
    /// warm-up). Writes `target/bench/profile.txt` and returns its top lines.
    fn profile(&mut self, scenario: Scenario, tokens: &Path) -> Result<String, String> {
        let counters = services::output("perf", Command::new("sh").args(["-c", "perf stat -e instructions true 2>&1"]))
            .is_ok_and(|o| o.contains("instructions") && !o.contains("not supported"));
        let perf = match self.opts.profile.as_deref() {
            Some("perf") => true,
            Some("callgrind") => false,
            _ => counters,
        };
        // Without hardware counters (most VMs) perf can still sample the kernel's cpu-clock.
        let event = if counters { "cycles" } else { "cpu-clock" };
        let text_out = self.out.join("profile.txt");
        // Under callgrind plinth serves a few hundred requests a second: a warm-up over 10,000
        // tenants would leave most of them uncached, so the profile spreads over the first 100.
        let subset = self.out.join("tokens-profile.tsv");
        let all = std::fs::read_to_string(tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
        let first: Vec<&str> = all.lines().take(PROFILE_TENANTS).collect();
        std::fs::write(&subset, first.join("\n") + "\n").map_err(|e| format!("{}: {e}", subset.display()))?;
        let script = self.out.join("profile.lua");
        std::fs::write(&script, load::lua_script(&subset, Load::List, BASE_DOMAIN))
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let seconds = if self.opts.quick { 5 } else { 15 };
        let (tool, report) = if perf {
            let server = self.start_plinth(scenario, "profile", &[])?;
            let run = WrkRun {
                port: server.port,
                connections: self.opts.connections,
                threads: self.opts.threads,
                seconds,
                script: &script,
            };
            load::wrk(&run, "profile warm-up", &self.progress)?;
            let data_file = self.out.join("perf.data");
            let mut rec = Command::new("perf");
            // DWARF unwinding: release builds keep no frame pointers, and without them the
            // callers of libc's memmove or malloc are lost.
            rec.args(["record", "-e", event, "--call-graph", "dwarf,16384", "-F", "499", "-o"])
                .arg(&data_file)
                .args(["-p", &server.pid().to_string(), "--", "sleep", &seconds.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let rec = rec.spawn().map_err(|e| format!("perf record: {e}"))?;
            let m = load::wrk(&run, "profile (perf)", &self.progress);
            let _ = rec.wait_with_output();
            server.stop(Duration::from_secs(10))?;
            m?;
            let perf_report = |sort: &str| {
                services::output(
                    "perf report",
                    Command::new("perf")
                        .args([
                            "report",
                            "--no-children",
                            "-g",
                            "none",
                            "--stdio",
                            "--percent-limit",
                            "0.5",
                            "--sort",
                            sort,
                            "-i",
                        ])
                        .arg(&data_file),
                )
            };
            let by_object = perf_report("dso")?;
            let by_symbol = perf_report("dso,sym")?;
            let callers = services::output(
                "perf report",
                Command::new("perf")
                    .args(["report", "--children", "--stdio", "-g", "caller,0.5,callee,function,percent"])
                    .args(["--percent-limit", "3", "--sort", "sym", "-i"])
                    .arg(&data_file),
            )?;
            let report = format!(
                "by object:\n{}\n\nby symbol:\n{}\n\n== perf report --sort dso ==\n{by_object}\n\n== perf report --sort dso,sym ==\n{by_symbol}\n\n== perf report --children (who calls what) ==\n{callers}",
                top_lines(&by_object, 8),
                top_lines(&by_symbol, 30)
            );
            let how = if counters {
                "perf record --call-graph dwarf -e cycles"
            } else {
                "perf record --call-graph dwarf -e cpu-clock"
            };
            (how, report)
        } else {
            let out_file = self.out.join("callgrind.out");
            let wrapper = [
                "valgrind".to_owned(),
                "--tool=callgrind".to_owned(),
                format!("--callgrind-out-file={}", out_file.display()),
            ];
            let server = self.start_plinth(scenario, "profile", &wrapper)?;
            let run = WrkRun { port: server.port, connections: 8, threads: 1, seconds, script: &script };
            load::wrk(&run, "profile warm-up (callgrind)", &self.progress)?;
            services::output(
                "callgrind_control -z",
                Command::new("callgrind_control").args(["-z", &server.pid().to_string()]),
            )?;
            let m = load::wrk(&run, "profile (callgrind)", &self.progress);
            server.stop(Duration::from_secs(60))?;
            let m = m?;
            self.progress.result(&format!("under callgrind: {:.0} req/s, {} requests profiled", m.rate, m.requests));
            let annotate = |inclusive: &str| {
                services::output(
                    "callgrind_annotate",
                    Command::new("callgrind_annotate")
                        .args(["--auto=no", "--threshold=100", &format!("--inclusive={inclusive}")])
                        .arg(&out_file),
                )
            };
            let (exclusive, inclusive) = (annotate("no")?, annotate("yes")?);
            let summary = profile::summarize(&exclusive, &inclusive, m.requests, 25);
            let report = format!(
                "{summary}\n\n== callgrind_annotate (self cost) ==\n{exclusive}\n\n== callgrind_annotate --inclusive=yes ==\n{inclusive}"
            );
            ("valgrind --tool=callgrind (instructions)", report)
        };
        std::fs::write(&text_out, &report).map_err(|e| format!("{}: {e}", text_out.display()))?;
        let summary = report.split("\n\n==").next().unwrap_or_default();
        Ok(format!("{tool}; full output in {}\n{summary}", text_out.display()))
    }

    /// Writes the report files and prints the table.
    fn finish(self) -> Result<(), String> {
        // Leave nothing behind in the shared Redis (the databases stay, for inspection, until the next run).
        if let Err(e) = self.redis.flush_prefix() {
            eprintln!("could not delete the bench's Redis keys: {e}");
        }
        let md = report::markdown(&self.report);
        let json = report::json(&self.report);
        let chart = svg::chart(&self.report);
        let capacity_chart = self.report.capacity.as_ref().map(capacity::chart);
        let mut files = vec![("report.md", &md), ("report.json", &json), ("report.svg", &chart)];
        files.extend(capacity_chart.as_ref().map(|c| ("capacity.svg", c)));
        for (name, text) in files {
            let path = self.out.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        self.progress.clear();
        eprintln!("\n{}", report::terminal(&self.report));
        eprintln!("wrote {}/report.md, report.json and report.svg", self.out.display());
        Ok(())
    }
}

/// `cache_requests_total{layer="l1",result="hit"} 12` and `cache_fetches_total 3` from a
/// Prometheus exposition, as `("l1 hit", 12)` and `("fetch", 3)`.
/// Warm-up rounds at most, for scenarios that warm up until their cache has settled.
const MAX_WARMUP_ROUNDS: u32 = 8;

/// plinth's origin fetches so far (`cache_fetches_total`), if its `/metrics` answers.
fn fetches(port: u16) -> Option<f64> {
    let r = http::get(port, "/metrics", BASE_DOMAIN, None).ok().filter(|r| r.status == 200)?;
    // No series yet is no fetch yet.
    Some(
        cache_counters(&String::from_utf8_lossy(&r.body))
            .into_iter()
            .find(|(k, _)| k == "fetch")
            .map_or(0.0, |(_, v)| v),
    )
}

fn cache_counters(exposition: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for line in exposition.lines() {
        let (series, value) = match line.rsplit_once(' ') {
            Some((s, v)) => (s, v.trim().parse::<f64>().unwrap_or(0.0)),
            None => continue,
        };
        let key = if let Some(labels) = series.strip_prefix("cache_requests_total{") {
            let label = |name: &str| {
                labels.split(',').find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix("=\"")?.split('"').next())
            };
            format!("{} {}", label("layer").unwrap_or("?"), label("result").unwrap_or("?"))
        } else if series.starts_with("cache_fetches_total") {
            "fetch".to_owned()
        } else {
            continue;
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v += value,
            None => out.push((key, value)),
        }
    }
    out
}

/// Commands per request between two `INFO commandstats` snapshots, most frequent first.
fn redis_delta(before: &[(String, u64)], after: &[(String, u64)], requests: f64) -> Vec<(String, f64)> {
    let mut delta: Vec<(String, f64)> = after
        .iter()
        .filter_map(|(name, calls)| {
            let was = before.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
            (*calls > was).then(|| (name.clone(), (calls - was) as f64 / requests))
        })
        .collect();
    delta.sort_by(|a, b| b.1.total_cmp(&a.1));
    delta
}

/// The first `n` lines of a profiler report that carry a cost.
fn top_lines(report: &str, n: usize) -> String {
    report
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.chars().next().is_some_and(|c| c.is_ascii_digit()) && (t.contains('%') || t.contains('('))
        })
        .take(n)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_cache_counters_from_an_exposition() {
        let text = "# TYPE cache_requests_total counter\n\
                    cache_requests_total{layer=\"l1\",result=\"hit\"} 90\n\
                    cache_requests_total{layer=\"l1\",result=\"miss\"} 10\n\
                    cache_fetches_total 4\nhttp_requests_total{route=\"/v1/projects\"} 100\n";
        let c = cache_counters(text);
        assert_eq!(c, vec![("l1 hit".to_owned(), 90.0), ("l1 miss".to_owned(), 10.0), ("fetch".to_owned(), 4.0)]);
    }

    #[test]
    fn every_data_set_is_seeded_first_and_the_scale_runs_go_up_and_back_down() {
        let args: Vec<String> = ["cached", "scale", "--scale", "10,100", "--tenants", "100"].map(String::from).to_vec();
        let opts = Options::parse(&args).unwrap();
        let set = |tenants| DataSet { tenants, users_per_tenant: 10, projects_per_tenant: 100 };
        let (small, main) = (set(10), set(100));
        let point = |s, d| Step::Measure(Subject::Plinth(s), d, false);
        assert_eq!(
            plan(&opts),
            vec![
                Step::Prepare(small),
                Step::Prepare(main),
                Step::Probe(main),
                Step::Measure(Subject::Reference(Reference::Ceiling), main, true),
                Step::Measure(Subject::Plinth(Scenario::Cached), main, true),
                Step::Measure(Subject::Reference(Reference::Ceiling), main, true),
                point(Scenario::Cached, small),
                point(Scenario::Db, small),
                point(Scenario::Cached, main),
                point(Scenario::Db, main),
                point(Scenario::Cached, main),
                point(Scenario::Db, main),
                point(Scenario::Cached, small),
                point(Scenario::Db, small),
            ]
        );
    }

    #[test]
    fn the_profile_runs_the_first_list_scenario_asked_for() {
        let profiled = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            plan(&Options::parse(&args).unwrap()).into_iter().find_map(|s| match s {
                Step::Profile(scenario, _) => Some(scenario),
                _ => None,
            })
        };
        assert_eq!(
            profiled(&["mixed", "cached-shared", "cached", "--profile", "--no-scale"]),
            Some(Scenario::CachedShared)
        );
        assert_eq!(profiled(&["mixed", "--profile", "--no-scale"]), Some(Scenario::Cached));
        assert_eq!(profiled(&["cached-shared", "--no-scale"]), None);
    }

    #[test]
    fn without_scale_only_the_main_data_set_is_seeded() {
        let args: Vec<String> = ["db", "--no-scale"].map(String::from).to_vec();
        let steps = plan(&Options::parse(&args).unwrap());
        let main = DataSet { tenants: 10_000, users_per_tenant: 10, projects_per_tenant: 100 };
        assert_eq!(
            steps,
            vec![
                Step::Prepare(main),
                Step::Measure(Subject::Reference(Reference::Pgbench), main, true),
                Step::Measure(Subject::Plinth(Scenario::Db), main, true),
                Step::Measure(Subject::Reference(Reference::Pgbench), main, true),
            ]
        );
    }

    #[test]
    fn capacity_runs_on_its_own_data_set_and_alone_seeds_only_that() {
        let args: Vec<String> = ["capacity", "--no-scale"].map(String::from).to_vec();
        let set = DataSet { tenants: 1_000, users_per_tenant: 100, projects_per_tenant: 100 };
        assert_eq!(
            plan(&Options::parse(&args).unwrap()),
            vec![Step::Prepare(set), Step::Measure(Subject::Plinth(Scenario::Capacity), set, true)]
        );
        let args: Vec<String> = ["db", "capacity", "--no-scale"].map(String::from).to_vec();
        let steps = plan(&Options::parse(&args).unwrap());
        let main = DataSet { tenants: 10_000, users_per_tenant: 10, projects_per_tenant: 100 };
        assert_eq!(steps[..2], [Step::Prepare(set), Step::Prepare(main)]);
        assert_eq!(steps.last(), Some(&Step::Measure(Subject::Plinth(Scenario::Capacity), set, true)));
    }

    #[test]
    fn reset_enumeration_runs_on_the_main_data_set_without_a_reference() {
        let args: Vec<String> = ["reset-enumeration", "--no-scale", "--quick"].map(String::from).to_vec();
        let main = DataSet { tenants: 100, users_per_tenant: 2, projects_per_tenant: 100 };
        assert_eq!(
            plan(&Options::parse(&args).unwrap()),
            vec![Step::Prepare(main), Step::Measure(Subject::Plinth(Scenario::ResetEnumeration), main, true)]
        );
    }

    #[test]
    fn scenarios_sharing_a_reference_share_the_run_between_them() {
        let args: Vec<String> = ["cached", "cached-shared", "--no-scale"].map(String::from).to_vec();
        let steps = plan(&Options::parse(&args).unwrap());
        let names: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Measure(subject, _, _) => Some(subject.name()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["ceiling", "cached", "ceiling", "cached-shared", "ceiling"]);
    }
}
