//! `cargo xtask bench` options.

use super::scenario::Scenario;

pub const USAGE: &str = "\
usage: cargo xtask bench [SCENARIO...] [OPTIONS]

scenarios (default: all of them, their references and the scale curve):
  cached         GET /v1/projects from L1, one instance, in-process limiter (no Redis)
  cached-shared  the same with Redis configured: L1 hits, the shared Redis limiter
  l2             L1 disabled: served from Redis (Redis limiter)
  db             lists from PostgreSQL with RLS every time (PLINTH_CACHE_TTL_S=0; tenant and
                 token checks cached), in-process limiter
  tenant         GET /v1/tenant (public, counted by client IP)
  mixed          90% list / 10% create, spread over tenants
  jobs           no-op jobs completed per second by the in-process worker; also runs jobs-flood
  jobs-flood     the same while one more tenant holds 50,000 ready jobs (claims must not slow)
  scale          db and cached p99 at every size of --scale
references (run automatically with the scenarios they are compared to):
  ceiling        a bare actix-web server answering a precomputed body of the list's size
  pgbench        the db scenario's transaction, driven by pgbench at the same concurrency

options:
  --tenants N               tenants in the main data set (default 10000; --quick 100)
  --users-per-tenant M      users per tenant (default 10; --quick 2)
  --projects-per-tenant K   projects per tenant (default 100)
  --duration S              seconds per measured run (default 30; --quick 5)
  --warmup S                seconds of unmeasured load before each run (default 5; --quick 2)
  --connections C           concurrent connections (default 64)
  --threads T               wrk and pgbench threads (default 2)
  --scale A,B,...           tenant counts of the scale curve, x projects-per-tenant
                            (default 100,1000,10000; --quick 10,100)
  --no-scale                skip the scale curve
  --quick                   small data and short runs, for development
  --profile                 also profile the cached scenario once (perf when hardware counters
                            work, else valgrind --tool=callgrind) into target/bench/profile.txt
  --profile-with TOOL       the same with TOOL: perf (sampling cpu-clock when there are no
                            hardware counters) or callgrind
  --port P                  plinth listens on 127.0.0.1:P, the ceiling on P+1 (default 18080)
  --no-build                use the release binaries already built

environment:
  PLINTH_BENCH_PG     admin connection to the PostgreSQL server
                      (default postgres://postgres@127.0.0.1:5432/postgres)
  PLINTH_BENCH_REDIS  Redis (default redis://127.0.0.1:6379); only keys under the prefix
                      plinth-bench: are written and flushed
";

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
    /// The command line, for the report.
    pub command_line: String,
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<&String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value.replace('_', "").parse().map_err(|_| format!("{flag}: {value:?} is not a valid number"))
}

impl Options {
    /// Parses `cargo xtask bench` arguments.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Self {
            scenarios: Vec::new(),
            scale: false,
            scale_tenants: if quick { vec![10, 100] } else { vec![100, 1_000, 10_000] },
            tenants: if quick { 100 } else { 10_000 },
            users_per_tenant: if quick { 2 } else { 10 },
            projects_per_tenant: 100,
            duration: if quick { 5 } else { 30 },
            warmup: if quick { 2 } else { 5 },
            connections: 64,
            threads: 2,
            quick,
            profile: None,
            port: 18080,
            build: true,
            command_line: std::iter::once("cargo xtask bench")
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
        };
        let mut named_scale = false;
        let mut no_scale = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => {}
                "--tenants" => o.tenants = number(arg, it.next())?,
                "--users-per-tenant" => o.users_per_tenant = number(arg, it.next())?,
                "--projects-per-tenant" => o.projects_per_tenant = number(arg, it.next())?,
                "--duration" => o.duration = number(arg, it.next())?,
                "--warmup" => o.warmup = number(arg, it.next())?,
                "--connections" => o.connections = number(arg, it.next())?,
                "--threads" => o.threads = number(arg, it.next())?,
                "--port" => o.port = number(arg, it.next())?,
                "--scale" => {
                    let list = it.next().ok_or("--scale needs a comma-separated list of tenant counts")?;
                    o.scale_tenants = list
                        .split(',')
                        .map(|n| number::<u32>("--scale", Some(&n.trim().to_owned())))
                        .collect::<Result<_, _>>()?;
                    named_scale = true;
                }
                "--no-scale" => no_scale = true,
                "--profile" => o.profile = Some("auto".into()),
                "--profile-with" => match it.next().map(String::as_str) {
                    Some(tool @ ("perf" | "callgrind")) => o.profile = Some(tool.into()),
                    _ => return Err("--profile-with needs perf or callgrind".into()),
                },
                "--no-build" => o.build = false,
                "-h" | "--help" => return Err(USAGE.to_owned()),
                "scale" => named_scale = true,
                name if !name.starts_with('-') => {
                    let s = Scenario::from_name(name).ok_or_else(|| format!("unknown scenario {name:?}\n\n{USAGE}"))?;
                    // `jobs` is measured with and without a flooding tenant, side by side.
                    let with = if s == Scenario::Jobs { vec![s, Scenario::JobsFlood] } else { vec![s] };
                    for s in with {
                        if !o.scenarios.contains(&s) {
                            o.scenarios.push(s);
                        }
                    }
                }
                other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
            }
        }
        let everything = o.scenarios.is_empty() && !args.iter().any(|a| a == "scale");
        if everything {
            o.scenarios = Scenario::ALL.to_vec();
        }
        o.scale = (everything || named_scale) && !no_scale;
        o.scale_tenants.sort_unstable();
        o.scale_tenants.dedup();
        if o.tenants == 0 || o.projects_per_tenant == 0 || o.users_per_tenant == 0 {
            return Err("--tenants, --users-per-tenant and --projects-per-tenant must be at least 1".into());
        }
        if o.duration == 0 || o.connections == 0 || o.threads == 0 {
            return Err("--duration, --connections and --threads must be at least 1".into());
        }
        if o.connections < o.threads {
            o.threads = o.connections;
        }
        Ok(o)
    }
}
