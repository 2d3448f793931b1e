//! The Python venv under the target directory (`target/venv`) that holds the Python tools the
//! checks run, each at a pinned version: Schemathesis (`cargo xtask schemathesis`) and aiosmtpd
//! (the tests' SMTP server, see `crates/testkit/src/mailbox.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{root, run as step, target_dir};

/// The pin of the tests' SMTP server, shared with plinth-testkit (which names it in its
/// "how to install" message).
const MAILBOX_REQUIREMENTS: &str = "crates/testkit/mailbox-requirements.txt";

/// The venv's directory.
fn dir() -> PathBuf {
    target_dir().join("venv")
}

/// The venv's `python`, with `package` at `version` installed (pip runs only when another
/// version or none is there). Creates the venv when missing.
pub fn install(package: &str, version: &str) -> Result<PathBuf, String> {
    let python = dir().join("bin").join("python");
    if !python.exists() {
        step("create venv", Command::new("python3").arg("-m").arg("venv").arg(dir())).map_err(|e| {
            format!("{e}: `python3 -m venv` needs the venv module (Debian: apt-get install -y python3-venv)")
        })?;
    }
    if installed_version(&python, package).as_deref() != Some(version) {
        step(
            &format!("install {package}"),
            Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &format!("{package}=={version}"),
            ]),
        )?;
    }
    Ok(python)
}

/// The venv's `python` with the tests' SMTP server (aiosmtpd, at its pin) installed.
pub fn install_mailbox() -> Result<PathBuf, String> {
    let path = root().join(MAILBOX_REQUIREMENTS);
    let pin = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (package, version) =
        pin.trim().split_once("==").ok_or_else(|| format!("{}: expected one `package==version`", path.display()))?;
    install(package, version)
}

/// The version of `package` that `python` has, if any.
fn installed_version(python: &Path, package: &str) -> Option<String> {
    let script = format!("import importlib.metadata as m; print(m.version({package:?}))");
    let out = Command::new(python).args(["-c", &script]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
