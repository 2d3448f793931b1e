//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use crate::util::{cargo, has_cargo_subcommand, run as step};

/// fmt, clippy, cargo-deny, then the tests.
///
/// Schemathesis (`cargo xtask schemathesis`) is not part of CI yet: its last run found three
/// failures still to be fixed (see the issue notes); it joins CI once it passes.
pub fn run() -> Result<(), String> {
    step("format", cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("clippy", cargo().args(["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]))?;
    if !has_cargo_subcommand("deny") {
        step("install cargo-deny", cargo().args(["install", "cargo-deny", "--locked"]))?;
    }
    // Advisories need the advisory database from the network, which CI can't reach.
    step("cargo-deny", cargo().args(["deny", "--all-features", "check", "licenses", "bans", "sources"]))?;
    crate::test::run_tests(&[])
}
