//! Probing the servers the bench starts (`/healthz`, `/metrics`, one list request) through
//! reqwest, one request per connection, on a current-thread runtime the caller blocks on.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::{HOST, HeaderMap};

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Bytes of the head: status line, headers and the blank line that ends them.
    pub head_bytes: usize,
    pub body: Vec<u8>,
}

/// The client and the runtime it runs on, made once: the bench polls `/healthz` every 100 ms.
#[derive(Debug)]
struct Client {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

fn client() -> Result<&'static Client, String> {
    static CLIENT: OnceLock<Result<Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("http runtime: {e}"))?;
            // No pool: servers restart on the same port between scenarios, and a connection
            // kept from the last one would fail the next request. No proxy: all of it is loopback.
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(0)
                .no_proxy()
                .build()
                .map_err(|e| format!("http client: {e}"))?;
            Ok(Client { runtime, client })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `GET path` on `127.0.0.1:port` with `Host: host` and, when given, a bearer token.
pub fn get(port: u16, path: &str, host: &str, token: Option<&str>) -> Result<Response, String> {
    let Client { runtime, client } = client()?;
    runtime.block_on(async {
        let mut request = client.get(format!("http://127.0.0.1:{port}{path}")).header(HOST, host);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| format!("GET 127.0.0.1:{port}{path}: {e}"))?;
        let status = response.status();
        let head_bytes = head_bytes(status.as_u16(), status.canonical_reason().unwrap_or(""), response.headers());
        let body = response.bytes().await.map_err(|e| format!("GET 127.0.0.1:{port}{path}: body: {e}"))?;
        Ok(Response { status: status.as_u16(), head_bytes, body: body.to_vec() })
    })
}

/// `POST path` with the JSON `body` and a bearer token on `127.0.0.1:port` for each of
/// `requests` (`(host, token)`), `in_flight` at a time; the answers' bodies, in order, or the
/// first failure (any status other than 201).
pub fn post_each(
    port: u16,
    path: &str,
    body: &str,
    requests: &[(String, String)],
    in_flight: usize,
) -> Result<Vec<Vec<u8>>, String> {
    let Client { runtime, client } = client()?;
    runtime.block_on(async {
        let mut out = Vec::with_capacity(requests.len());
        for chunk in requests.chunks(in_flight.max(1)) {
            let mut set = tokio::task::JoinSet::new();
            for (i, (host, token)) in chunk.iter().enumerate() {
                let request = client
                    .post(format!("http://127.0.0.1:{port}{path}"))
                    .header(HOST, host)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .bearer_auth(token)
                    .body(body.to_owned());
                set.spawn(async move {
                    let response = request.send().await.map_err(|e| format!("POST: {e}"))?;
                    let status = response.status().as_u16();
                    let bytes = response.bytes().await.map_err(|e| format!("POST body: {e}"))?;
                    if status != 201 {
                        return Err(format!("POST answered {status}: {}", String::from_utf8_lossy(&bytes)));
                    }
                    Ok::<_, String>((i, bytes.to_vec()))
                });
            }
            let mut answers = vec![Vec::new(); chunk.len()];
            while let Some(joined) = set.join_next().await {
                let (i, bytes) = joined.map_err(|e| format!("POST task: {e}"))??;
                answers[i] = bytes;
            }
            out.extend(answers);
        }
        Ok(out)
    })
}

/// The size of an HTTP/1.1 head as the server wrote it, from its parsed parts: `HTTP/1.1 200 OK`,
/// `name: value` per header, each line ended by CRLF, then a blank line. Exact for servers that
/// write one space after the colon and the canonical reason phrase, as actix-web does.
fn head_bytes(status: u16, reason: &str, headers: &HeaderMap) -> usize {
    let status_line = format!("HTTP/1.1 {status} {reason}").len() + 2;
    let fields: usize = headers.iter().map(|(name, value)| name.as_str().len() + 2 + value.len() + 2).sum();
    status_line + fields + 2
}

#[cfg(test)]
mod tests {
    use reqwest::header::{CONTENT_LENGTH, HeaderValue};

    use super::*;

    #[test]
    fn a_head_is_counted_as_it_went_over_the_wire() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("2"));
        headers.insert("x-a", HeaderValue::from_static("b"));
        let wire = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: b\r\n\r\n";
        assert_eq!(head_bytes(200, "OK", &headers), wire.len());
    }
}
