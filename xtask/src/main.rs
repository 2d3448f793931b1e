//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! Architecture invariant: no dependencies beyond std, so `cargo xtask` builds in seconds.

mod ci;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci      everything CI checks: fmt, clippy, cargo-deny (licenses, bans, sources), tests
  test    the tests alone (cargo nextest when installed, else cargo test)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("test") => test::run(&args[1..]),
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
