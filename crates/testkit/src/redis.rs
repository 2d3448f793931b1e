//! Throwaway Redis servers for tests that kill and restart Redis or need a cluster (never the
//! shared server on 6379).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared Redis tests use, unless `PLINTH_TEST_REDIS` says otherwise.
pub fn shared_redis_url() -> String {
    let url = std::env::var("PLINTH_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let addr = url.trim_start_matches("redis://").split('/').next().unwrap_or_default().to_owned();
    if std::net::TcpStream::connect(&addr).is_err() {
        panic!(
            "cannot reach Redis at {url}.\nStart it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 \
             --save \"\" --appendonly no\nor point PLINTH_TEST_REDIS at another server."
        );
    }
    url
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn wait_until_up(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server on port {port} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_server(port: u16, dir: &std::path::Path, extra: &[&str]) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start redis-server ({e}); apt-get install redis-server"));
    wait_until_up(port);
    child
}

/// A private redis-server on a free port, which a test may kill and start again.
#[derive(Debug)]
pub struct PrivateRedis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts a server.
    pub fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("plinth-redis-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("redis directory");
        let child = spawn_server(port, &dir, &[]);
        Self { port, dir, child: Some(child) }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): everything in it is lost, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_server(self.port, &self.dir, &[]));
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A three-node Redis Cluster (masters only) on free ports.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<(u16, Child)>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts three nodes and joins them into a cluster covering every slot.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("plinth-cluster-{}", uuid::Uuid::now_v7().simple()));
        let mut nodes = Vec::new();
        for i in 0..3 {
            let node_dir = dir.join(i.to_string());
            std::fs::create_dir_all(&node_dir).expect("node directory");
            let port = free_port();
            let child = spawn_server(
                port,
                &node_dir,
                &["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"],
            );
            nodes.push((port, child));
        }
        let addrs: Vec<String> = nodes.iter().map(|(p, _)| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = Self { nodes, dir };
        cluster.wait_until_ok();
        cluster
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for (port, _) in &self.nodes {
            loop {
                let out = Command::new("redis-cli").args(["-p", &port.to_string(), "cluster", "info"]).output();
                if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok")) {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not become ready");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The nodes' URLs, comma-separated, as `REDIS_URL` takes them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|(p, _)| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
