//! `cargo xtask test`: the workspace's tests, against the real services they need.

use std::process::Command;

use crate::util::{cargo, has_cargo_subcommand, run as step};
use crate::venv;

/// Runs every test of the workspace; extra arguments go to the test runner. The tests' SMTP
/// server (aiosmtpd) is installed into the venv first, and its python handed to the tests as
/// `PLINTH_TEST_PYTHON` unless that is set already.
pub fn run_tests(extra: &[String]) -> Result<(), String> {
    let python = venv::install_mailbox()?;
    let test_cargo = || {
        let mut cmd: Command = cargo();
        if std::env::var_os("PLINTH_TEST_PYTHON").is_none() {
            cmd.env("PLINTH_TEST_PYTHON", &python);
        }
        cmd
    };
    if has_cargo_subcommand("nextest") {
        step(
            "tests (nextest)",
            test_cargo().args(["nextest", "run", "--workspace", "--all-features", "--no-fail-fast"]).args(extra),
        )?;
        // nextest does not run doctests.
        step("doctests", test_cargo().args(["test", "--workspace", "--all-features", "--doc"]))
    } else {
        step("tests", test_cargo().args(["test", "--workspace", "--all-features", "--no-fail-fast"]).args(extra))
    }
}

/// `cargo xtask test [ARGS]`.
pub fn run(extra: &[String]) -> Result<(), String> {
    run_tests(extra)
}
