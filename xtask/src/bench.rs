//! `cargo xtask bench [ARGS]`: the benchmark lives in its own crate (`tools/bench`, package
//! `plinth-bench`, with its own dependencies), so xtask only runs it with ARGS.

use crate::util::cargo;

/// Runs `plinth-bench ARGS`, passing its exit on. Built in the release profile: its `capacity`
/// driver sends the requests itself, on the cores plinth runs on, and unoptimized it spent
/// several times the CPU per request.
pub fn run(args: &[String]) -> Result<(), String> {
    let status = cargo()
        .args(["run", "--release", "--quiet", "--package", "plinth-bench", "--"])
        .args(args)
        .status()
        .map_err(|e| format!("bench: could not start cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("bench failed ({status})")) }
}
