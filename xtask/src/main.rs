//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! Architecture invariant: no dependencies beyond std, so `cargo xtask` builds in seconds; the
//! benchmark, which needs more, is its own crate (`tools/bench`) that `bench` runs.

mod alerts;
mod bench;
mod ci;
mod client;
mod db;
mod fleet;
mod schemathesis;
mod server;
mod soak;
mod test;
mod util;
mod venv;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci      everything CI checks: fmt, clippy, cargo-deny (licenses, bans, sources), the
          alerting rules, tests, the fleet, the TypeScript client (client --check), Schemathesis
  alerts  promtool checks deploy/prometheus/alerts.yml and runs its unit tests
          (deploy/prometheus/alerts.test.yml)
  test    the tests alone (cargo nextest when installed, else cargo test), after installing
          the tests' SMTP server (aiosmtpd, pinned, in the venv under target/)
  migrate [--status]
          apply the migrations (as PLINTH_DATABASE_OWNER_URL), or list them
  seed [--tenants N] [--users-per-tenant M] [--projects-per-tenant K] [--tokens-file F]
          bulk-load a data set (default 10,000 x 10 x 100) and write one token per tenant
  soak [SECONDS]
          two instances under a mixed load for SECONDS (default 300), checking errors,
          isolation, webhook delivery and memory growth
  fleet [--duration S] [--release]
          three instances behind HAProxy under a mixed load for S seconds (default 60), each
          restarted in turn: no failed request, no lost write, every webhook delivered
  client [--check]
          regenerate the TypeScript client's types (clients/typescript/src/schema.d.ts) from
          `plinth openapi`; with --check, fail if they are stale, type-check the package and run
          its smoke test against an embedded plinth (npm ci first when node_modules is missing)
  schemathesis [ARGS]
          Schemathesis (pinned, in a venv under target/) against a Postgres+Redis-backed plinth:
          no 5xx, every response true to /openapi.json; ARGS go to `schemathesis run`
  bench [SCENARIO...] [--quick] [--duration S] [--connections C] [--tenants N] ...
          how fast plinth is, against a bare actix-web server and pgbench: runs the
          plinth-bench crate (tools/bench) with these arguments (`bench --help`)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("alerts") => alerts::run(),
        Some("test") => test::run(&args[1..]),
        Some("migrate") => db::migrate(&args[1..]),
        Some("seed") => db::seed(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("client") => client::run(&args[1..]),
        Some("schemathesis") => schemathesis::run(&args[1..]),
        Some("soak") => soak::soak(&args[1..]),
        Some("fleet") => fleet::run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            eprint!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
