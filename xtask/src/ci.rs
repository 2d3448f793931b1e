//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use crate::util::{cargo, has_cargo_subcommand, run as step};

/// fmt, clippy, cargo-deny, promtool on the alerting rules (see [`crate::alerts`]), the tests, a
/// rolling restart of a fleet under load (see [`crate::fleet`]), the TypeScript client against
/// the document and a running plinth (see [`crate::client`]), then Schemathesis against a
/// running plinth.
pub fn run() -> Result<(), String> {
    step("format", cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("clippy", cargo().args(["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]))?;
    if !has_cargo_subcommand("deny") {
        step("install cargo-deny", cargo().args(["install", "cargo-deny", "--locked"]))?;
    }
    // Advisories need the advisory database from the network, which CI can't reach.
    step("cargo-deny", cargo().args(["deny", "--all-features", "check", "licenses", "bans", "sources"]))?;
    crate::alerts::run()?;
    crate::test::run_tests(&[])?;
    crate::fleet::fleet(crate::fleet::CI_DURATION, false)?;
    crate::client::run(&["--check".to_owned()])?;
    crate::schemathesis::run(&[])
}
