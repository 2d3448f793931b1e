//! The fleet's HTTP/1.1, std only: a keep-alive client ([`Client`]) that reports every way a
//! request can fail, and the webhook receiver ([`Receiver`]) that records each event id it is
//! sent.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long one exchange may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(30);

/// An answer: its status and body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// A client on one kept-alive connection to `addr`, opened again when the server closes it
/// (after an answer that says `Connection: close`). A connection that fails mid-exchange is a
/// failure of that request: nothing is retried.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    /// A client of `addr`; it connects at its first request.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    /// Sends one request and reads its answer. `body`, when given, is sent as JSON.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        host: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<Response, String> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
                stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
                stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                self.conn.insert(BufReader::new(stream))
            }
        };
        let result = exchange(conn, method, path, host, token, body);
        match &result {
            Ok((_, true)) | Err(_) => self.conn = None,
            Ok((_, false)) => {}
        }
        result.map(|(response, _)| response)
    }
}

/// Writes the request and reads the answer; also says whether the connection must close.
fn exchange(
    conn: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    host: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(Response, bool), String> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or_default());
    conn.get_mut().write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;

    let mut line = String::new();
    if conn.read_line(&mut line).map_err(|e| format!("read the status line: {e}"))? == 0 {
        return Err("the connection closed before an answer".into());
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {:?}", line.trim_end()))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        if conn.read_line(&mut line).map_err(|e| format!("read the headers: {e}"))? == 0 {
            return Err("the connection closed inside the headers".into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else { continue };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = Some(value.parse::<usize>().map_err(|e| format!("content-length: {e}"))?),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut bytes = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line).map_err(|e| format!("read a chunk size: {e}"))?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or_default(), 16)
                .map_err(|e| format!("chunk size {:?}: {e}", line.trim_end()))?;
            if size == 0 {
                line.clear();
                conn.read_line(&mut line).map_err(|e| format!("read the last chunk: {e}"))?;
                break;
            }
            let start = bytes.len();
            bytes.resize(start + size + 2, 0);
            conn.read_exact(&mut bytes[start..]).map_err(|e| format!("read a chunk: {e}"))?;
            bytes.truncate(start + size);
        }
    } else if let Some(length) = length {
        bytes.resize(length, 0);
        conn.read_exact(&mut bytes).map_err(|e| format!("read the body: {e}"))?;
    } else if status != 204 && status != 304 {
        conn.read_to_end(&mut bytes).map_err(|e| format!("read the body: {e}"))?;
        close = true;
    }
    Ok((Response { status, body: String::from_utf8_lossy(&bytes).into_owned() }, close))
}

/// The webhook receiver: answers every POST `200` and counts each `Plinth-Event-Id` it gets
/// (delivery is at least once, so an id may come more than once).
#[derive(Debug, Clone)]
pub struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<HashMap<String, u32>>>,
}

impl Receiver {
    /// Listens on a free loopback port, serving each connection on a thread of its own.
    pub fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("webhook receiver: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("webhook receiver: {e}"))?;
        let receiver = Self { addr, seen: Arc::default() };
        let seen = receiver.seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, &seen));
            }
        });
        Ok(receiver)
    }

    /// Where webhooks are to be sent.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Each event id received, with how many times it came.
    pub fn seen(&self) -> HashMap<String, u32> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Serves one connection's requests until it closes.
fn serve(stream: TcpStream, seen: &Mutex<HashMap<String, u32>>) {
    let Ok(writer) = stream.try_clone() else { return };
    let mut writer = writer;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_or(true, |n| n == 0) {
            return;
        }
        let (mut length, mut event) = (0usize, None);
        loop {
            line.clear();
            if reader.read_line(&mut line).map_or(true, |n| n == 0) {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "plinth-event-id" => event = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Some(event) = event {
            *seen.lock().unwrap_or_else(PoisonError::into_inner).entry(event).or_default() += 1;
        }
        if writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}
