//! `cargo xtask test`: the workspace's tests, against the real services they need.

use crate::util::{cargo, has_cargo_subcommand, run as step};

/// Runs every test of the workspace; extra arguments go to the test runner.
pub fn run_tests(extra: &[String]) -> Result<(), String> {
    if has_cargo_subcommand("nextest") {
        step(
            "tests (nextest)",
            cargo().args(["nextest", "run", "--workspace", "--all-features", "--no-fail-fast"]).args(extra),
        )?;
        // nextest does not run doctests.
        step("doctests", cargo().args(["test", "--workspace", "--all-features", "--doc"]))
    } else {
        step("tests", cargo().args(["test", "--workspace", "--all-features", "--no-fail-fast"]).args(extra))
    }
}

/// `cargo xtask test [ARGS]`.
pub fn run(extra: &[String]) -> Result<(), String> {
    run_tests(extra)
}
