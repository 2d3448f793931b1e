//! Tidy: the rules ARCHITECTURE.md and the docs state, checked on the tree so that breaking one
//! fails the build (as rust-analyzer's tidy tests do).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(path: impl AsRef<Path>) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files git tracks, relative to the root.
fn tracked() -> Vec<String> {
    let out = std::process::Command::new("git").arg("ls-files").current_dir(root()).output().expect("git runs");
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

/// The crate names under `[dependencies]` of `manifest` (not dev- or build-dependencies).
fn dependencies(manifest: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut names = BTreeSet::new();
    for line in read(manifest).lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_owned();
        } else if section == "dependencies"
            && let Some((name, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            names.insert(name.trim().split('.').next().unwrap().to_owned());
        }
    }
    names
}

/// Names that do I/O (or pull an adapter's engine in): the domain must depend on none of them.
const IO_CRATES: &[&str] = &[
    "actix-web",
    "tokio-postgres",
    "deadpool-postgres",
    "redis",
    "quick_cache",
    "governor",
    "jsonwebtoken",
    "argon2",
    "reqwest",
    "refinery",
    "tracing-subscriber",
    "metrics-exporter-prometheus",
    "chacha20poly1305",
    "lettre",
];

#[test]
fn the_domain_depends_on_no_workspace_crate_and_no_io_crate() {
    let deps = dependencies("crates/domain/Cargo.toml");
    let bad: Vec<_> = deps.iter().filter(|d| d.starts_with("plinth-") || IO_CRATES.contains(&d.as_str())).collect();
    assert!(bad.is_empty(), "crates/domain depends on {bad:?}");
    // tokio only for its sync primitives and, for the conformance suites, its test runtime.
    let manifest = read("crates/domain/Cargo.toml");
    let tokio = manifest.lines().find(|l| l.starts_with("tokio")).unwrap_or_default();
    for feature in ["net", "fs", "process", "io-util", "signal"] {
        assert!(!tokio.contains(&format!("\"{feature}\"")), "the domain's tokio has {feature}: {tokio}");
    }
}

#[test]
fn every_adapter_depends_on_the_domain_and_never_on_another_adapter() {
    // `plinth-affinity` is shared runtime mechanics (per-thread connection slots), not an adapter.
    for adapter in ["memory", "postgres", "redis", "jwt", "webhooks", "email"] {
        let deps = dependencies(&format!("crates/{adapter}/Cargo.toml"));
        let workspace: Vec<_> = deps.iter().filter(|d| d.starts_with("plinth-") && *d != "plinth-affinity").collect();
        assert_eq!(workspace, ["plinth-domain"], "crates/{adapter} depends on {workspace:?}");
    }
    assert!(dependencies("crates/affinity/Cargo.toml").is_empty(), "crates/affinity depends on nothing");
}

#[test]
fn only_the_web_crate_depends_on_opentelemetry() {
    // The domain and the adapters carry trace context as a plain W3C string, through
    // `plinth_domain::trace::Propagation`; only the composition root knows the tracer.
    for krate in ["domain", "memory", "postgres", "redis", "jwt", "webhooks", "email", "affinity", "testkit"] {
        let manifest = format!("crates/{krate}/Cargo.toml");
        let deps = dependencies(&manifest);
        let otel: Vec<_> = deps.iter().filter(|d| d.contains("opentelemetry")).collect();
        assert!(otel.is_empty(), "{manifest} depends on {otel:?}");
    }
    assert!(dependencies("crates/web/Cargo.toml").contains("tracing-opentelemetry"), "the check reads web's manifest");
}

/// `PLINTH_*` names quoted in `text`.
fn quoted_settings(text: &str) -> BTreeSet<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.starts_with("PLINTH_") && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_setting_the_server_reads_is_documented_and_every_documented_one_is_read() {
    let mut code = BTreeSet::new();
    for file in tracked().into_iter().filter(|f| f.starts_with("crates/web/src/config")) {
        code.extend(quoted_settings(&read(file)));
    }
    assert!(code.contains("PLINTH_LISTEN"), "the settings are read in crates/web/src/config*: {code:?}");
    let api = read("docs/api.md");
    let section = api.split("\n## Configuration").nth(1).expect("docs/api.md has a Configuration section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let documented: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|name| name.starts_with("PLINTH_"))
        .map(str::to_owned)
        .collect();
    let undocumented: Vec<_> = code.difference(&documented).collect();
    let unread: Vec<_> = documented.difference(&code).collect();
    assert!(undocumented.is_empty(), "read but not in docs/api.md's configuration table: {undocumented:?}");
    assert!(unread.is_empty(), "in docs/api.md's configuration table but never read: {unread:?}");
}

/// The relative paths in `text` that start by going up (`../…`), as written.
fn upward_paths(text: &str) -> Vec<&str> {
    let is_path = |c: char| c.is_ascii_alphanumeric() || "._-/".contains(c);
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("../") {
        let starts_token = rest[..at].chars().next_back().is_none_or(|c| !is_path(c));
        let len = rest[at..].find(|c: char| !is_path(c)).unwrap_or(rest.len() - at);
        if starts_token {
            found.push(&rest[at..at + len]);
        }
        rest = &rest[at + len.max(3)..];
    }
    found
}

/// Whether `path`, written in a file in `dir` (relative to the root), leaves the repository.
fn leaves_the_repository(dir: &Path, path: &str) -> bool {
    let mut depth = dir.components().count();
    for part in path.split('/') {
        match part {
            ".." if depth == 0 => return true,
            ".." => depth -= 1,
            "" | "." => {}
            _ => depth += 1,
        }
    }
    false
}

#[test]
fn no_relative_path_in_the_repository_leads_out_of_it() {
    let mut found = Vec::new();
    for file in tracked() {
        let Ok(text) = std::fs::read_to_string(root().join(&file)) else { continue };
        let dir = Path::new(&file).parent().unwrap_or(Path::new(""));
        for path in upward_paths(&text) {
            if leaves_the_repository(dir, path) {
                found.push(format!("{file}: {path}"));
            }
        }
    }
    assert!(found.is_empty(), "relative paths that leave the repository: {found:#?}");
}

#[test]
fn an_upward_path_is_judged_from_the_file_that_writes_it() {
    assert_eq!(upward_paths("see [it](../x.md) and \"../../y/z\", not a/../b"), ["../x.md", "../../y/z"]);
    assert!(!leaves_the_repository(Path::new("crates/web/tests/api"), "../common/harness.rs"));
    assert!(!leaves_the_repository(Path::new("crates/postgres"), "../../migrations"));
    assert!(leaves_the_repository(Path::new(""), "../elsewhere/README.md"));
    assert!(leaves_the_repository(Path::new("docs"), "../../notes.md"));
}

#[test]
fn every_rust_file_says_what_it_is_for() {
    let missing: Vec<_> = tracked()
        .into_iter()
        .filter(|f| f.ends_with(".rs"))
        .filter(|f| !read(f).trim_start().starts_with("//!"))
        .collect();
    assert!(missing.is_empty(), "files without a leading //! line: {missing:?}");
}
