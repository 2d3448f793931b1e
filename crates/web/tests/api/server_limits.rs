//! The server's limits on slow and idle clients: the body deadline (408), the connection cap
//! and the keep-alive period, seen from a raw TCP client.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use crate::helpers::{Backend, PASSWORD, TestApp};

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Reads from `stream` until `raw` holds a whole response (head and `Content-Length` body).
async fn read_response(stream: &mut OwnedReadHalf, raw: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        let text = String::from_utf8_lossy(raw).to_lowercase();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| l.strip_prefix("content-length: ")).and_then(|n| n.parse().ok());
            if length.is_some_and(|n: usize| body.len() >= n) {
                return Ok(());
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => raw.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn a_body_that_trickles_in_past_the_deadline_is_408_and_the_connection_closes() {
    let app = TestApp::spawn_with(Backend::Memory, &[("PLINTH_BODY_TIMEOUT_S", "1")]).await;
    let body = json!({"tenant_slug": "slow", "tenant_name": "Slow", "email": "ada@slow.test", "password": PASSWORD})
        .to_string();
    let head = format!(
        "POST /v1/signup HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let (mut read, mut write) = TcpStream::connect(("127.0.0.1", app.port())).await.unwrap().into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // The client: a byte every 250 ms, so the whole body would take over 20 s.
    let trickle = tokio::spawn(async move {
        for byte in body.into_bytes() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let mut raw = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(8), read_response(&mut read, &mut raw)).await;
    let elapsed = started.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&raw).to_lowercase();
    assert!(matches!(answered, Ok(Ok(()))), "no whole answer within 8 s ({answered:?}): {text}");
    assert!(text.starts_with("http/1.1 408 "), "{text}");
    assert!(text.contains("\r\ncontent-type: application/problem+json\r\n"), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert!(text.contains(r#""code":"request_timeout""#) && text.contains(r#""status":408"#), "{text}");
    // A 1 s deadline: answered after it, and well before the body could have arrived. This is
    // a bound on behaviour, not a benchmark: the upper bound is generous.
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5), "answered after {elapsed:?}");
    // And the connection is closed (an end of stream, or a reset if a late byte crossed it).
    assert!(closed_within(&mut read, Duration::from_secs(5)).await, "the connection is still open");
    // Nothing was created: the slug is still free.
    app.signup("slow").await;
}

/// Whether the peer has closed `stream` within `within` (an end of stream, or a reset).
async fn closed_within(stream: &mut OwnedReadHalf, within: Duration) -> bool {
    let mut rest = [0u8; 64];
    matches!(tokio::time::timeout(within, stream.read(&mut rest)).await, Ok(Ok(0) | Err(_)))
}

/// A connection that has had one `/healthz` answered, and is kept alive.
async fn answered_connection(port: u16) -> (OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf) {
    let (mut read, mut write) = TcpStream::connect(("127.0.0.1", port)).await.unwrap().into_split();
    write.write_all(HEALTHZ).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), read_response(&mut read, &mut raw)).await.unwrap().unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&raw));
    (read, write)
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    // The cap is shared out between the worker threads: one each.
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let cap = workers.to_string();
    let app =
        TestApp::spawn_with(Backend::Memory, &[("PLINTH_MAX_CONNECTIONS", &cap), ("PLINTH_KEEP_ALIVE_S", "60")]).await;
    let mut held = Vec::new();
    for _ in 0..workers {
        held.push(answered_connection(app.port()).await);
    }
    // The kernel completes the handshake, but plinth does not take the connection up.
    let (mut read, mut write) = TcpStream::connect(("127.0.0.1", app.port())).await.unwrap().into_split();
    write.write_all(HEALTHZ).await.unwrap();
    let mut raw = Vec::new();
    let early = tokio::time::timeout(Duration::from_secs(1), read_response(&mut read, &mut raw)).await;
    assert!(early.is_err(), "answered over the cap: {}", String::from_utf8_lossy(&raw));
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(5), read_response(&mut read, &mut raw))
        .await
        .expect("answered once a held connection closed")
        .unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&raw));
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_keep_alive_period() {
    let app = TestApp::spawn_with(Backend::Memory, &[("PLINTH_KEEP_ALIVE_S", "1")]).await;
    let (mut read, _write) = answered_connection(app.port()).await;
    // actix's own default would keep it open for 5 s.
    assert!(closed_within(&mut read, Duration::from_secs(3)).await, "still open 3 s after a 1 s keep-alive");
}
