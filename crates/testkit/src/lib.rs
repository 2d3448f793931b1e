//! Test support against the real PostgreSQL: each test that writes gets its own database,
//! cloned from a template that is migrated once per migration set (across test processes),
//! and dropped when the test ends.
//!
//! The server is `PLINTH_TEST_PG` (an admin URL, default `postgres://postgres@127.0.0.1:5432/postgres`).
//! A test that can't reach it fails with a message that says how to start it; it never skips.
//!
//! Also: throwaway Redis servers and clusters ([`PrivateRedis`], [`RedisCluster`]), a private
//! PostgreSQL cluster ([`PrivateCluster`]), a PgBouncer in transaction mode in front of the test
//! server ([`PgBouncer`]), and a real SMTP server ([`Mailbox`]).

#![allow(clippy::expect_used, clippy::panic, clippy::print_stderr)]

mod cluster;
mod mailbox;
mod pgbouncer;
mod redis;

use std::time::Duration;

pub use cluster::PrivateCluster;
pub use mailbox::{Mailbox, MailboxSecurity, ReceivedMail};
pub use pgbouncer::PgBouncer;
pub use redis::{PrivateRedis, RedisCluster, shared_redis_url};
pub use tokio_postgres::Client as PgClient;

use tokio_postgres::{Client, Config, NoTls};

/// The password the test databases' `plinth_app` connects with (trust auth ignores it).
pub const APP_PASSWORD: &str = "plinth-test";

fn admin_url() -> String {
    std::env::var("PLINTH_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_db(url: &str, db: &str) -> Config {
    let mut c: Config = url.parse().expect("PLINTH_TEST_PG is not a valid PostgreSQL URL");
    c.dbname(db);
    c
}

fn url_for(user: &str, password: Option<&str>, db: &str) -> String {
    let base: Config = admin_url().parse().expect("PLINTH_TEST_PG is not a valid PostgreSQL URL");
    let host = match base.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = base.get_ports().first().copied().unwrap_or(5432);
    match password {
        Some(p) => format!("postgres://{user}:{p}@{host}:{port}/{db}"),
        None => format!("postgres://{user}@{host}:{port}/{db}"),
    }
}

async fn admin(db: &str) -> Client {
    let config = with_db(&admin_url(), db);
    let (client, conn) = match config.connect(NoTls).await {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot reach PostgreSQL at {} ({e}).\nStart it with: \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
             or point PLINTH_TEST_PG at a server where this user may create databases.",
            admin_url()
        ),
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The owner's role in test databases: the admin user of `PLINTH_TEST_PG`.
fn owner_user() -> String {
    let c: Config = admin_url().parse().expect("PLINTH_TEST_PG is not a valid PostgreSQL URL");
    c.get_user().unwrap_or("postgres").to_owned()
}

/// The template for the current migrations, created and migrated when missing.
async fn template() -> String {
    let name = format!("plinth_tpl_{:016x}", plinth_postgres::migrate::fingerprint());
    let client = admin("postgres").await;
    // One process migrates; the others wait on the lock, then find the template ready.
    client.execute("SELECT pg_advisory_lock(727274)", &[]).await.expect("advisory lock");
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate", &[&name])
        .await
        .expect("look up the template")
        .is_some();
    if !exists {
        let building = format!("{name}_building");
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)")).await.expect("drop");
        client.batch_execute(&format!("CREATE DATABASE {building}")).await.expect("create template");
        let owner = url_for(&owner_user(), None, &building);
        plinth_postgres::migrate::migrate(&owner, Some(APP_PASSWORD)).await.expect("migrate the template");
        client
            .batch_execute(&format!(
                "ALTER DATABASE {building} RENAME TO {name}; ALTER DATABASE {name} WITH IS_TEMPLATE true"
            ))
            .await
            .expect("finish the template");
    }
    client.execute("SELECT pg_advisory_unlock(727274)", &[]).await.expect("advisory unlock");
    name
}

/// A fresh, migrated database of this test's own; dropped when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// Connects as the owner (migrations, bulk loads, fixtures that bypass RLS).
    pub owner_url: String,
    /// Connects as `plinth_app`, as the API does.
    pub app_url: String,
}

impl TestDatabase {
    /// Clones the template into a new database.
    pub async fn new() -> Self {
        let template = template().await;
        let name = format!("plinth_test_{}", uuid::Uuid::now_v7().simple());
        let client = admin("postgres").await;
        let mut tries = 0;
        loop {
            match client.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")).await {
                Ok(()) => break,
                // "source database is being accessed by other users": a clone in progress.
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("could not create a test database: {e}"),
            }
        }
        Self {
            owner_url: url_for(&owner_user(), None, &name),
            app_url: url_for(plinth_postgres::migrate::APP_ROLE, Some(APP_PASSWORD), &name),
            name,
        }
    }

    /// A connection as the owner, for fixtures and checks.
    pub async fn owner(&self) -> Client {
        connect(&self.owner_url).await
    }

    /// A connection as `plinth_app`, as the API connects.
    pub async fn app(&self) -> Client {
        connect(&self.app_url).await
    }
}

/// A plain connection to `url`.
pub async fn connect(url: &str) -> Client {
    let config: Config = url.parse().expect("valid URL");
    let (client, conn) = config.connect(NoTls).await.expect("connect to the test database");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any async context we could use: a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let client = admin("postgres").await;
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}

/// A key prefix of this test's own in a shared Redis.
pub fn redis_prefix() -> String {
    format!("plinth-test:{}:", uuid::Uuid::now_v7().simple())
}
