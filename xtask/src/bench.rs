//! `cargo xtask bench [ARGS]`: the benchmark lives in its own crate (`tools/bench`, package
//! `plinth-bench`, with its own dependencies), so xtask only runs it with ARGS.

use crate::util::cargo;

/// Runs `plinth-bench ARGS` (built like xtask itself, in the dev profile), passing its exit on.
pub fn run(args: &[String]) -> Result<(), String> {
    let status = cargo()
        .args(["run", "--quiet", "--package", "plinth-bench", "--"])
        .args(args)
        .status()
        .map_err(|e| format!("bench: could not start cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("bench failed ({status})")) }
}
