//! `cargo xtask bench` options, parsed by clap; defaults that `--quick` changes are resolved
//! after parsing.

use clap::Parser;

use super::scenario::Scenario;

const AFTER_HELP: &str = "\
scenarios (default: all of them but reset-enumeration, their references and the scale curve):
  cached         GET /v1/projects from L1, one instance, in-process limiter (no Redis)
  cached-shared  the same with Redis configured: L1 hits, the shared Redis limiter
  l2             L1 disabled: served from Redis (Redis limiter)
  db             lists from PostgreSQL with RLS every time (PLINTH_CACHE_TTL_S=0; tenant and
                 token checks cached), in-process limiter
  tenant         GET /v1/tenant (public, counted by client IP)
  mixed          90% list / 10% create, spread over tenants
  mixed-unaudited  the same with the audit log off (PLINTH_AUDIT=false); the report compares
                 the writes (POST /v1/projects) of the two
  jobs           no-op jobs completed per second by the in-process worker; also runs jobs-flood
  jobs-flood     the same while one more tenant holds 50,000 ready jobs (claims must not slow)
  scale          db and cached p99 at every size of --scale
  capacity       open loop: a SaaS mix (70% list, 15% get, 8% create, 4% rename, 2% delete,
                 1% login) at fixed arrival rates over 1,000 tenants x 100 users x 100 projects,
                 PostgreSQL + Redis; the rate steps up from --start-rate by --step-factor until
                 p99 > 50 ms, p99.9 > 200 ms or errors > 0.1%, then once more; latency counted
                 from when each request was due. Writes target/bench/capacity.svg
  reset-enumeration  run by name only (not in the default set: it adds warm-up + duration):
                 POST /v1/auth/password-reset for a seeded member's address and an unknown
                 one, alternately in a seeded random order, 8 in flight, PostgreSQL + Redis,
                 worker on. Every answer must be 202 with one body; target: member/nobody
                 p50 ratio within 0.90-1.10
references (run automatically with the scenarios they are compared to):
  ceiling        a bare actix-web server answering a precomputed body of the list's size
  pgbench        the db scenario's transaction, driven by pgbench at the same concurrency

environment:
  PLINTH_BENCH_PG     admin connection to the PostgreSQL server
                      (default postgres://postgres@127.0.0.1:5432/postgres)
  PLINTH_BENCH_REDIS  Redis (default redis://127.0.0.1:6379); only keys under the prefix
                      plinth-bench: are written and flushed
  PLINTH_BENCH_SERVER_TIMING  true: plinth runs with PLINTH_SERVER_TIMING=true (what the
                      Server-Timing header costs)";

/// A positional argument: a scenario, or `scale` (the scale curve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Scenario(Scenario),
    Scale,
}

fn named(name: &str) -> Result<Named, String> {
    if name == "scale" {
        return Ok(Named::Scale);
    }
    Scenario::from_name(name).map(Named::Scenario).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).chain(["scale"]).collect();
        format!("unknown scenario (one of {})", names.join(", "))
    })
}

/// A count, `_` allowed as a digit separator (`10_000`).
fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value.replace('_', "").parse().map_err(|_| format!("{value:?} is not a valid number"))
}

/// `--scale A,B,...`.
#[derive(Debug, Clone)]
struct TenantCounts(Vec<u32>);

fn tenant_counts(list: &str) -> Result<TenantCounts, String> {
    list.split(',').map(|n| number(n.trim())).collect::<Result<_, _>>().map(TenantCounts)
}

/// `--auth`: what the list scenarios' requests authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Auth {
    /// The owner's access token (a JWT) of each tenant.
    Jwt,
    /// An API key (`projects:read`) of each tenant, created through the API before the run.
    ApiKey,
}

/// `--profile-with`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ProfileTool {
    Perf,
    Callgrind,
}

/// The command line as clap sees it; [`Options`] is what the bench uses.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask bench",
    bin_name = "cargo xtask bench",
    about = "How fast plinth is, against a bare actix-web server and pgbench",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Scenarios to run, and `scale` for the scale curve (see below)
    #[arg(value_name = "SCENARIO", value_parser = named)]
    named: Vec<Named>,
    /// Tenants in the main data set (default 10000; --quick 100)
    #[arg(long, value_name = "N", value_parser = number::<u32>)]
    tenants: Option<u32>,
    /// Users per tenant (default 10; --quick 2)
    #[arg(long, value_name = "M", value_parser = number::<u32>)]
    users_per_tenant: Option<u32>,
    /// Projects per tenant
    #[arg(long, value_name = "K", value_parser = number::<u32>, default_value = "100")]
    projects_per_tenant: u32,
    /// Seconds per measured run (default 30; --quick 5)
    #[arg(long, value_name = "S", value_parser = number::<u32>)]
    duration: Option<u32>,
    /// Seconds of unmeasured load before each run (default 5; --quick 2)
    #[arg(long, value_name = "S", value_parser = number::<u32>)]
    warmup: Option<u32>,
    /// Concurrent connections
    #[arg(long, value_name = "C", value_parser = number::<u32>, default_value = "64")]
    connections: u32,
    /// wrk and pgbench threads
    #[arg(long, value_name = "T", value_parser = number::<u32>, default_value = "2")]
    threads: u32,
    /// Tenant counts of the scale curve, x projects-per-tenant (default 100,1000,10000;
    /// --quick 10,100)
    #[arg(long, value_name = "A,B,...", value_parser = tenant_counts)]
    scale: Option<TenantCounts>,
    /// Skip the scale curve
    #[arg(long)]
    no_scale: bool,
    /// Small data and short runs, for development
    #[arg(long)]
    quick: bool,
    /// Also profile the first list scenario asked for (cached, cached-shared, l2 or db; else
    /// cached) once (perf when hardware counters work, else valgrind --tool=callgrind) into
    /// target/bench/profile.txt
    #[arg(long)]
    profile: bool,
    /// The same with TOOL: perf (sampling cpu-clock when there are no hardware counters) or
    /// callgrind
    #[arg(long, value_name = "TOOL")]
    profile_with: Option<ProfileTool>,
    /// What the list scenarios (cached, cached-shared, l2, db) authenticate with
    #[arg(long, value_name = "AUTH", value_enum, default_value = "jwt")]
    auth: Auth,
    /// plinth listens on 127.0.0.1:P, the ceiling on P+1
    #[arg(long, value_name = "P", value_parser = number::<u16>, default_value = "18080")]
    port: u16,
    /// Use the release binaries already built
    #[arg(long)]
    no_build: bool,
    /// capacity: the first step's arrival rate, requests per second
    #[arg(long, value_name = "R", value_parser = number::<f64>, default_value = "500")]
    start_rate: f64,
    /// capacity: each step's rate is the previous one's times this
    #[arg(long, value_name = "F", value_parser = number::<f64>, default_value = "1.25")]
    step_factor: f64,
    /// capacity: steps at most
    #[arg(long, value_name = "N", value_parser = number::<u32>, default_value = "12")]
    max_steps: u32,
}

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The plinth scenarios, in the order given (or the default order).
    pub scenarios: Vec<Scenario>,
    /// Whether to measure the scale curve.
    pub scale: bool,
    /// Tenant counts of the scale curve.
    pub scale_tenants: Vec<u32>,
    pub tenants: u32,
    pub users_per_tenant: u32,
    pub projects_per_tenant: u32,
    pub duration: u32,
    pub warmup: u32,
    pub connections: u32,
    pub threads: u32,
    pub quick: bool,
    /// Profile `cached` once: `Some("auto" | "perf" | "callgrind")`.
    pub profile: Option<String>,
    pub port: u16,
    pub build: bool,
    /// What the list scenarios authenticate with.
    pub auth: Auth,
    /// `capacity`: the first rate, the factor between steps, and the most steps.
    pub capacity_start: f64,
    pub capacity_factor: f64,
    pub capacity_max_steps: u32,
    /// The command line, for the report.
    pub command_line: String,
}

impl Options {
    /// Parses `cargo xtask bench` arguments (without the program name).
    pub fn parse(args: &[String]) -> Result<Self, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("plinth-bench").chain(args.iter().map(String::as_str)))?;
        let invalid = |message: &str| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{message}\n"));
        let quick = cli.quick;
        let mut scenarios = Vec::new();
        for n in &cli.named {
            let Named::Scenario(s) = *n else { continue };
            // `jobs` is measured with and without a flooding tenant, side by side.
            let with = if s == Scenario::Jobs { vec![s, Scenario::JobsFlood] } else { vec![s] };
            for s in with {
                if !scenarios.contains(&s) {
                    scenarios.push(s);
                }
            }
        }
        let named_scale = cli.named.contains(&Named::Scale) || cli.scale.is_some();
        let everything = cli.named.is_empty();
        if everything {
            scenarios = Scenario::ALL.into_iter().filter(|s| s.by_default()).collect();
        }
        let mut scale_tenants =
            cli.scale.map_or_else(|| if quick { vec![10, 100] } else { vec![100, 1_000, 10_000] }, |counts| counts.0);
        scale_tenants.sort_unstable();
        scale_tenants.dedup();
        let o = Self {
            scenarios,
            scale: (everything || named_scale) && !cli.no_scale,
            scale_tenants,
            tenants: cli.tenants.unwrap_or(if quick { 100 } else { 10_000 }),
            users_per_tenant: cli.users_per_tenant.unwrap_or(if quick { 2 } else { 10 }),
            projects_per_tenant: cli.projects_per_tenant,
            duration: cli.duration.unwrap_or(if quick { 5 } else { 30 }),
            warmup: cli.warmup.unwrap_or(if quick { 2 } else { 5 }),
            connections: cli.connections,
            // More threads than connections would leave threads without one.
            threads: cli.threads.min(cli.connections),
            quick,
            profile: match (cli.profile_with, cli.profile) {
                (Some(ProfileTool::Perf), _) => Some("perf".into()),
                (Some(ProfileTool::Callgrind), _) => Some("callgrind".into()),
                (None, true) => Some("auto".into()),
                (None, false) => None,
            },
            port: cli.port,
            build: !cli.no_build,
            auth: cli.auth,
            capacity_start: cli.start_rate,
            capacity_factor: cli.step_factor,
            capacity_max_steps: cli.max_steps,
            command_line: std::iter::once("cargo xtask bench")
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
        };
        if o.tenants == 0 || o.projects_per_tenant == 0 || o.users_per_tenant == 0 {
            return Err(invalid("--tenants, --users-per-tenant and --projects-per-tenant must be at least 1"));
        }
        if o.duration == 0 || o.connections == 0 || o.threads == 0 {
            return Err(invalid("--duration, --connections and --threads must be at least 1"));
        }
        if !(o.capacity_start >= 1.0 && o.capacity_factor > 1.0 && o.capacity_max_steps >= 1) {
            return Err(invalid("--start-rate must be at least 1, --step-factor above 1 and --max-steps at least 1"));
        }
        Ok(o)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::parse(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn quick_changes_the_defaults_that_were_not_given() {
        let o = parse(&["--quick", "--duration", "3", "--tenants", "1_000"]).unwrap();
        assert_eq!((o.tenants, o.users_per_tenant, o.duration, o.warmup), (1_000, 2, 3, 2));
        assert_eq!(o.scale_tenants, [10, 100]);
        assert_eq!(o.scenarios, Scenario::ALL[..Scenario::ALL.len() - 1]);
        assert!(!o.scenarios.contains(&Scenario::ResetEnumeration));
        assert!(o.scale && o.build && o.quick);
        let o = parse(&[]).unwrap();
        assert_eq!((o.tenants, o.users_per_tenant, o.duration, o.warmup, o.connections), (10_000, 10, 30, 5, 64));
    }

    #[test]
    fn named_scenarios_run_alone_and_jobs_brings_jobs_flood() {
        let o = parse(&["jobs", "cached", "--no-build", "--profile-with", "callgrind"]).unwrap();
        assert_eq!(o.scenarios, [Scenario::Jobs, Scenario::JobsFlood, Scenario::Cached]);
        assert!(!o.scale && !o.build);
        assert_eq!(o.profile.as_deref(), Some("callgrind"));
    }

    #[test]
    fn an_unknown_scenario_or_a_zero_is_refused() {
        assert!(parse(&["cahced"]).unwrap_err().to_string().contains("unknown scenario"));
        assert!(parse(&["--connections", "0"]).is_err());
        assert!(parse(&["--tenants", "ten"]).is_err());
        assert!(parse(&["capacity", "--step-factor", "1"]).is_err());
        assert!(parse(&["capacity", "--start-rate", "0"]).is_err());
    }
}
