//! `cargo xtask schemathesis [ARGS]`: Schemathesis against `/openapi.json` of a running,
//! PostgreSQL- and Redis-backed `plinth`, stateful phase included. Passes only when the server
//! does exactly what the document says: no 5xx, no response outside the document's schemas,
//! and every request the document allows accepted.
//!
//! It installs Schemathesis (pinned) into a venv under `target/`, makes a fresh database, runs
//! `plinth migrate`, starts the debug `plinth` on a free loopback port, signs a tenant up, and
//! runs Schemathesis twice, with every check (`--checks all`: schema-valid requests must be
//! accepted, schema-invalid ones refused, undeclared methods answered 405 with `Allow`): on the
//! tenant's host with the owner's token (every route but signup;
//! `xtask/schemathesis/hooks.py` supplies both, a new tenant when the fuzzer has revoked the
//! token, and the values only the server's state makes valid), and on the platform host
//! (signup), and, last, the operator API on the platform host with an operator token (made by
//! `plinth operator-token`). `xtask/schemathesis/schemathesis.toml` holds the per-operation
//! exceptions. Webhook targets are restricted to loopback and
//! private addresses stay refused, so nothing the fuzzer registers can reach past this machine.
//! Extra `ARGS` go to both `schemathesis run`s (e.g. `--max-examples 500 --seed 1`). The server's
//! log is `target/schemathesis/plinth.log`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::server::{Server, http};
use crate::util::{
    cargo, free_port, fresh_database, plinth_command, plinth_environment, root, run as step, target_dir,
};
use crate::venv;

/// The Schemathesis release this was verified with.
const VERSION: &str = "4.32.5";
/// Examples per operation and phase; the stateful phase runs as many scenarios.
const MAX_EXAMPLES: &str = "100";
/// A run that takes longer than this is stopped and fails.
const TIME_LIMIT: Duration = Duration::from_secs(20 * 60);

const DATABASE: &str = "plinth_schemathesis";
const SLUG: &str = "schemathesis";

/// `cargo xtask schemathesis [ARGS]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let started = Instant::now();
    let target = target_dir();
    let work = target.join("schemathesis");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    let schemathesis = install()?;
    step("build plinth", cargo().args(["build", "-p", "plinth-web", "--bin", "plinth"]))?;
    let plinth = target.join("debug").join("plinth");

    fresh_database(DATABASE)?;
    let addr = free_port()?;
    let (operator_token, operator_hash) = operator_token(&plinth)?;
    let mut env = environment(addr)?;
    env.push(("PLINTH_OPERATOR_TOKEN_HASHES", operator_hash));
    step("plinth migrate", plinth_command(&plinth, &env).arg("migrate"))?;

    let mut server = Server::start(&plinth, &env, &work.join("plinth.log"))?;
    server.wait_until_healthy(addr)?;
    let token = signup(addr)?;

    let schema = format!("http://{addr}/openapi.json");
    // The tenant's host and its owner's token come from the hooks (see hooks.py: the fuzzer
    // can revoke the token, and then they sign up another tenant).
    let hooks = root().join("xtask").join("schemathesis").join("hooks.py");
    let tenant_env = [
        ("SCHEMATHESIS_HOOKS", hooks.display().to_string()),
        ("PLINTH_ST_BASE", format!("http://{addr}")),
        ("PLINTH_ST_SLUG", SLUG.to_owned()),
        ("PLINTH_ST_TOKEN", token),
    ];
    fuzz(
        "schemathesis (tenant routes)",
        &schemathesis,
        &work,
        &[&schema, "--exclude-path", "/v1/signup", "--exclude-path-regex", "^/admin/"],
        &tenant_env,
        args,
    )?;
    fuzz(
        "schemathesis (signup, platform host)",
        &schemathesis,
        &work,
        &[&schema, "--header", "Host: localhost", "--include-path", "/v1/signup"],
        &[],
        args,
    )?;
    // Last: the fuzzer may suspend or delete any tenant it finds. A deleted tenant stays visible
    // to the operator through its grace (with `state: deleted`, so that it can be restored): the
    // check that a deleted resource is gone does not apply here (the stateful phase ignores a
    // per-operation setting, so it is left out of this run only).
    let bearer = format!("Authorization: Bearer {operator_token}");
    fuzz(
        "schemathesis (operator API, platform host)",
        &schemathesis,
        &work,
        &[
            &schema,
            "--header",
            "Host: localhost",
            "--header",
            &bearer,
            "--include-path-regex",
            "^/admin/",
            "--exclude-checks",
            "use_after_free",
        ],
        &[],
        args,
    )?;
    drop(server);
    eprintln!("\nschemathesis: passed in {:.0?}", started.elapsed());
    Ok(())
}

/// A new operator token and its hash, from `plinth operator-token`.
fn operator_token(plinth: &Path) -> Result<(String, String), String> {
    let out = Command::new(plinth).arg("operator-token").output().map_err(|e| format!("plinth operator-token: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().collect::<Vec<_>>()[..] {
        [token, hash] if out.status.success() => Ok((token.to_owned(), hash.to_owned())),
        _ => Err(format!("plinth operator-token answered {}: {stdout}", out.status)),
    }
}

/// The venv's `schemathesis`, at [`VERSION`].
fn install() -> Result<PathBuf, String> {
    let python = venv::install("schemathesis", VERSION)?;
    Ok(python.with_file_name("schemathesis"))
}

/// plinth's configuration for the run: the shared one, and webhook targets confined to
/// loopback (and refused there too, since private addresses are not allowed): nothing the
/// fuzzer registers can leave this machine.
fn environment(addr: SocketAddr) -> Result<Vec<(&'static str, String)>, String> {
    let mut env = plinth_environment(DATABASE, "schemathesis")?;
    env.extend([
        ("PLINTH_LISTEN", addr.to_string()),
        ("PLINTH_WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8,::1/128".into()),
        ("PLINTH_LOG", "warn".into()),
    ]);
    Ok(env)
}

/// Signs the tenant up on the platform host; its owner's access token.
fn signup(addr: SocketAddr) -> Result<String, String> {
    let body = format!(
        r#"{{"tenant_slug":"{SLUG}","tenant_name":"Schemathesis","email":"owner@example.com","password":"correct horse battery staple"}}"#
    );
    let (status, response) = http(addr, "POST", "/v1/signup", "localhost", Some(&body))?;
    if status != 201 {
        return Err(format!("signup answered {status}: {response}"));
    }
    let start = response.find(r#""access_token":""#).map(|i| i + r#""access_token":""#.len());
    let token = start.and_then(|s| response[s..].split('"').next()).filter(|t| !t.is_empty());
    token.map(str::to_owned).ok_or_else(|| format!("no access_token in the signup answer: {response}"))
}

/// Runs `schemathesis run` with the checks and phases this project holds itself to, and `env`,
/// stopping it after [`TIME_LIMIT`].
fn fuzz(
    name: &str,
    schemathesis: &Path,
    work: &Path,
    target: &[&str],
    env: &[(&str, String)],
    extra: &[String],
) -> Result<(), String> {
    let config = root().join("xtask").join("schemathesis").join("schemathesis.toml");
    let mut cmd = Command::new(schemathesis);
    cmd.env_remove("SCHEMATHESIS_HOOKS")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .args(target)
        // Every check, including that schema-valid requests are accepted and undeclared methods
        // get 405: the document must say exactly what the server takes. The exceptions are in
        // `xtask/schemathesis/schemathesis.toml`, the state-dependent values in hooks.py.
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--request-timeout", "10"])
        .args(extra)
        // Hypothesis and Schemathesis keep their caches in the working directory.
        .current_dir(work);
    eprintln!("\n==> {name}: {cmd:?}");
    let mut child = cmd.spawn().map_err(|e| format!("{name}: could not start: {e}"))?;
    let deadline = Instant::now() + TIME_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{name} failed ({status})")),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name} took more than {TIME_LIMIT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
}
