//! `cargo xtask client [--check]`: the TypeScript client in `clients/typescript`.
//!
//! Its types (`src/schema.d.ts`) are generated from the OpenAPI document that `plinth openapi`
//! prints (the one `GET /openapi.json` serves), by `openapi-typescript` from the package's own
//! `node_modules` (installed with `npm ci` from the committed lockfile when it is missing).
//! `cargo xtask client` writes them; `--check` (CI) generates them into `target/client/`
//! instead and fails when they differ from the committed file, then type-checks the package and
//! its smoke test (`test/smoke.ts`) with the package's `tsc --strict`, which also compiles them
//! into `target/client/smoke/`, and runs the smoke test with Node against a `plinth` of its own,
//! in embedded mode, on a free loopback port.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::server::Server;
use crate::util::{cargo, free_port, plinth_command, root, run as step, target_dir};

/// Quotas no smoke test exhausts.
const UNLIMITED: &str = "100000";

/// `cargo xtask client [--check]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => return Err(format!("client: takes only --check, not {args:?}")),
    };
    let started = Instant::now();
    let package = root().join("clients").join("typescript");
    let work = target_dir().join("client");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    step("build plinth", cargo().args(["build", "-p", "plinth-web", "--bin", "plinth"]))?;
    let plinth = target_dir().join("debug").join("plinth");
    install(&package)?;

    let document = work.join("openapi.json");
    let out = File::create(&document).map_err(|e| format!("{}: {e}", document.display()))?;
    step("plinth openapi", plinth_command(&plinth, &[]).arg("openapi").stdout(out))?;
    let committed = package.join("src").join("schema.d.ts");
    let generated = if check { work.join("schema.d.ts") } else { committed.clone() };
    step(
        "openapi-typescript",
        Command::new(bin(&package, "openapi-typescript")).arg(&document).arg("--output").arg(&generated),
    )?;
    if !check {
        eprintln!("\nclient: wrote {} in {:.0?}", committed.display(), started.elapsed());
        return Ok(());
    }
    compare(&generated, &committed)?;
    smoke(&plinth, &package, &work)?;
    eprintln!("\nclient: checked in {:.0?}", started.elapsed());
    Ok(())
}

/// `npm ci` in the package when it has no `node_modules`.
fn install(package: &Path) -> Result<(), String> {
    if package.join("node_modules").is_dir() {
        return Ok(());
    }
    // `--ignore-scripts`: no dependency runs code at install time.
    step("npm ci", Command::new("npm").args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"]).current_dir(package))
}

/// An executable the package installed.
fn bin(package: &Path, name: &str) -> PathBuf {
    package.join("node_modules").join(".bin").join(name)
}

/// Fails unless `generated` and `committed` hold the same bytes.
fn compare(generated: &Path, committed: &Path) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    if read(generated)? == read(committed)? {
        eprintln!("\n==> {} matches the OpenAPI document", committed.display());
        Ok(())
    } else {
        Err(format!(
            "{} is stale: it differs from what the OpenAPI document generates ({}); run `cargo xtask client`",
            committed.display(),
            generated.display()
        ))
    }
}

/// Type-checks the package and compiles it with its smoke test into `work/smoke`, then runs the
/// smoke test against an embedded `plinth`.
fn smoke(plinth: &Path, package: &Path, work: &Path) -> Result<(), String> {
    let out = work.join("smoke");
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    // One compilation is both the type check (`--strict`, of `src/` and `test/`) and the build:
    // tsc takes most of this command's time, and a `--noEmit` run first would check it all twice.
    step(
        "tsc --strict",
        Command::new(bin(package, "tsc"))
            .args(["--strict", "--noEmitOnError", "--project"])
            .arg(package)
            .arg("--outDir")
            .arg(&out),
    )?;
    // The compiled modules are ES modules, and import openapi-fetch from the package's
    // node_modules, which Node looks for beside them.
    let manifest = out.join("package.json");
    std::fs::write(&manifest, "{\"type\": \"module\"}\n").map_err(|e| format!("{}: {e}", manifest.display()))?;
    std::os::unix::fs::symlink(package.join("node_modules"), out.join("node_modules"))
        .map_err(|e| format!("{}: {e}", out.display()))?;

    let addr = free_port()?;
    let env = [
        ("PLINTH_LISTEN", addr.to_string()),
        ("PLINTH_BASE_DOMAIN", "localhost".to_owned()),
        ("PLINTH_WORKER", "false".to_owned()),
        ("PLINTH_LOG", "warn".to_owned()),
        ("PLINTH_QUOTA_FREE", UNLIMITED.to_owned()),
        ("PLINTH_IP_QUOTA", UNLIMITED.to_owned()),
        ("PLINTH_LOGIN_QUOTA", UNLIMITED.to_owned()),
    ];
    // No DATABASE_URL: the embedded mode, on the memory adapters.
    let mut server = Server::start(plinth, &env, &work.join("plinth.log"))?;
    server.wait_until_healthy(addr)?;
    step(
        "smoke test",
        Command::new("node")
            .arg(out.join("test").join("smoke.js"))
            .env("PLINTH_URL", format!("http://{addr}"))
            .env("PLINTH_BASE_DOMAIN", "localhost"),
    )
}
