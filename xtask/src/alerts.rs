//! `cargo xtask alerts`: `promtool` checks the alerting rules in `deploy/prometheus/` and runs
//! their unit tests (each alert firing, and not firing, on series written for it).

use std::process::Command;

use crate::util::{root, run as step, which};

/// The rules and their tests, relative to the workspace root.
const RULES: &str = "deploy/prometheus/alerts.yml";
const TESTS: &str = "deploy/prometheus/alerts.test.yml";

/// `promtool check rules`, then `promtool test rules`.
pub fn run() -> Result<(), String> {
    let promtool = which("promtool").ok_or(
        "promtool is not installed: `apt-get install --no-install-recommends prometheus` (Debian; then \
         `systemctl disable --now prometheus`, the tests run their own), or put Prometheus's promtool on PATH",
    )?;
    let promtool = || {
        let mut c = Command::new(&promtool);
        c.current_dir(root());
        c
    };
    step("promtool check rules", promtool().args(["check", "rules", RULES]))?;
    step("promtool test rules", promtool().args(["test", "rules", TESTS]))
}
