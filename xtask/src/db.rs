//! `cargo xtask migrate` and `cargo xtask seed`: the `plinth` binary's own commands, built in
//! release mode and run with the caller's environment.

use crate::util::{cargo, run};

/// `cargo xtask migrate [--status]`: applies migrations as `PLINTH_DATABASE_OWNER_URL`.
pub fn migrate(args: &[String]) -> Result<(), String> {
    plinth(&["migrate"], args)
}

/// `cargo xtask seed [--tenants N] [--users-per-tenant M] [--projects-per-tenant K] [--tokens-file F]`.
pub fn seed(args: &[String]) -> Result<(), String> {
    plinth(&["seed"], args)
}

fn plinth(command: &[&str], args: &[String]) -> Result<(), String> {
    require("PLINTH_DATABASE_OWNER_URL")?;
    require("DATABASE_URL")?;
    run(
        &format!("plinth {}", command.join(" ")),
        cargo()
            .args(["run", "--quiet", "--release", "-p", "plinth-web", "--bin", "plinth", "--"])
            .args(command)
            .args(args),
    )
}

fn require(var: &str) -> Result<(), String> {
    if std::env::var_os(var).is_none() {
        return Err(format!(
            "{var} is not set. Example:\n  \
             DATABASE_URL=postgres://plinth_app:secret@127.0.0.1/plinth \\\n  \
             PLINTH_DATABASE_OWNER_URL=postgres://postgres@127.0.0.1/plinth \\\n  \
             PLINTH_JWT_SECRET=$(openssl rand -hex 32) PLINTH_ENCRYPTION_KEY=$(openssl rand -base64 32) \\\n  \
             cargo xtask migrate"
        ));
    }
    Ok(())
}
