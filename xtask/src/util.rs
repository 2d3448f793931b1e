//! Running commands and finding tools.

use std::path::PathBuf;
use std::process::Command;

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `CARGO_TARGET_DIR`, or the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The cargo that runs us.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd`, echoing it first; an unsuccessful exit is an error naming the step.
pub fn run(step: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("\n==> {step}: {cmd:?}");
    let status = cmd.status().map_err(|e| format!("{step}: could not start: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{step} failed ({status})")) }
}

/// Whether `cargo <sub> --version` works.
pub fn has_cargo_subcommand(sub: &str) -> bool {
    cargo().args([sub, "--version"]).output().is_ok_and(|o| o.status.success())
}
