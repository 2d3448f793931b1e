//! A `plinth` that xtask runs for a tool to talk to (Schemathesis, the TypeScript client's smoke
//! test), and the one-request HTTP client it is probed with.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::plinth_command;

/// The running server; stopped when dropped.
pub struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `plinth` with exactly `env` of the PLINTH_* variables, its output in `log`.
    pub fn start(plinth: &Path, env: &[(&'static str, String)], log: &Path) -> Result<Self, String> {
        let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        eprintln!("\n==> start plinth (log: {})", log.display());
        let child = plinth_command(plinth, env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", plinth.display()))?;
        Ok(Self { child, log: log.to_path_buf() })
    }

    /// Waits up to a minute for `/healthz` at `addr` to answer 200.
    pub fn wait_until_healthy(&mut self, addr: SocketAddr) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("plinth exited ({status}); see {}", self.log.display()));
            }
            if http(addr, "GET", "/healthz", "localhost", None).is_ok_and(|(status, _)| status == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("plinth did not become healthy in 60 s; see {}", self.log.display()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange over a fresh connection: the status and the whole answer.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let body = body.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let status =
        answer.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad answer: {answer}"))?;
    Ok((status, answer))
}
