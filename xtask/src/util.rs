//! Running commands and finding tools, fresh databases, free ports and random secrets.

use std::fs::File;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// The path of `program` on `PATH`, if there is one.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Whether `cargo <sub> --version` works.
pub fn has_cargo_subcommand(sub: &str) -> bool {
    cargo().args([sub, "--version"]).output().is_ok_and(|o| o.status.success())
}

/// Drops and creates the database `name`, as `postgres` on 127.0.0.1:5432.
pub fn fresh_database(name: &str) -> Result<(), String> {
    run(
        "fresh database",
        Command::new("psql").args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ]),
    )
}

/// A loopback address with a port that was free a moment ago.
pub fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| format!("no free port: {e}"))
}

/// `N` bytes from `/dev/urandom`.
pub fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| usize::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            out.push(if i <= chunk.len() { char::from(ALPHABET[(n >> (18 - 6 * i)) & 63]) } else { '=' });
        }
    }
    out
}

/// The configuration every `plinth` that xtask runs on PostgreSQL and Redis shares: the database
/// `database` on 127.0.0.1:5432 (as `plinth_app`, and `postgres` to migrate), Redis on
/// 127.0.0.1:6379 under a prefix of its own (`plinth-{namespace}:…`), fresh secrets, the
/// `localhost` base domain, and quotas no run exhausts.
pub fn plinth_environment(database: &str, namespace: &str) -> Result<Vec<(&'static str, String)>, String> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let unlimited = "10000000".to_owned();
    Ok(vec![
        ("DATABASE_URL", format!("postgres://plinth_app:xtask@127.0.0.1:5432/{database}")),
        ("PLINTH_DATABASE_OWNER_URL", format!("postgres://postgres@127.0.0.1:5432/{database}")),
        ("REDIS_URL", "redis://127.0.0.1:6379".into()),
        ("PLINTH_REDIS_PREFIX", format!("plinth-{namespace}:{}-{nanos}:", std::process::id())),
        ("PLINTH_JWT_SECRET", hex(&random::<32>()?)),
        ("PLINTH_ENCRYPTION_KEY", base64(&random::<32>()?)),
        ("PLINTH_BASE_DOMAIN", "localhost".into()),
        ("PLINTH_QUOTA_FREE", unlimited.clone()),
        ("PLINTH_IP_QUOTA", unlimited.clone()),
        ("PLINTH_LOGIN_QUOTA", unlimited.clone()),
        ("PLINTH_MAILBOX_QUOTA", unlimited),
    ])
}

/// `plinth` with exactly `env` of the PLINTH_* variables and of DATABASE_URL and REDIS_URL (none
/// inherited: in particular never `PLINTH_WEBHOOK_ALLOW_PRIVATE`, and the embedded mode when
/// `env` names no database), in the workspace root.
pub fn plinth_command(plinth: &Path, env: &[(&'static str, String)]) -> Command {
    let mut cmd = Command::new(plinth);
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str.starts_with("PLINTH_") || name_str == "DATABASE_URL" || name_str == "REDIS_URL" {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v))).current_dir(root());
    cmd
}
