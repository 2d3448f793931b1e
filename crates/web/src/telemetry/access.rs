//! The access log's JSON line, written straight to the log writer.
//!
//! One line per request is the busiest log there is: through `tracing`'s JSON formatter it
//! cost about a tenth of the server's CPU on cached reads (a registry lookup, a `serde_json`
//! map, a `format!` per field). Its fields are fixed and known to need no escaping but the
//! method, so it is written here by hand, in the same shape as every other JSON line (the
//! `target` is this middleware's, as before, and the same log filter applies to it).

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::SystemTime;

use tracing_appender::non_blocking::NonBlocking;

/// The log writer, when the logs are JSON lines (set once by [`super::init`]).
static WRITER: OnceLock<NonBlocking> = OnceLock::new();

pub(super) fn install(writer: NonBlocking) {
    let _ = WRITER.set(writer);
}

/// One request, as the access log records it.
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub tenant: &'a str,
    pub status: u16,
    pub latency_us: u64,
    /// The request's trace id (32 hex digits), when it has one; no field when not.
    pub trace_id: Option<&'a str>,
}

/// The `target` of the line: the middleware that logs it, as when it went through `tracing`.
pub const TARGET: &str = "plinth_web::middleware::request_id";

/// Writes `line` when the logs are JSON; `false` when they are not (the caller logs it
/// through `tracing` instead).
pub fn write(line: &AccessLine<'_>) -> bool {
    let Some(writer) = WRITER.get() else { return false };
    thread_local! {
        static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        format_line(buf, SystemTime::now(), line);
        // The writer queues the line for its thread; it fails only once that thread is gone.
        let _ = writer.clone().write_all(buf);
    });
    true
}

fn format_line(buf: &mut Vec<u8>, now: SystemTime, line: &AccessLine<'_>) {
    let mut n = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(buf, now);
    buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"request_id\":");
    string(buf, line.request_id);
    buf.extend_from_slice(b",\"method\":");
    string(buf, line.method);
    buf.extend_from_slice(b",\"route\":");
    string(buf, line.route);
    buf.extend_from_slice(b",\"tenant\":");
    string(buf, line.tenant);
    buf.extend_from_slice(b",\"status\":");
    buf.extend_from_slice(n.format(line.status).as_bytes());
    buf.extend_from_slice(b",\"latency_us\":");
    buf.extend_from_slice(n.format(line.latency_us).as_bytes());
    if let Some(trace_id) = line.trace_id {
        buf.extend_from_slice(b",\"trace_id\":");
        string(buf, trace_id);
    }
    buf.extend_from_slice(b",\"target\":\"");
    buf.extend_from_slice(TARGET.as_bytes());
    buf.extend_from_slice(b"\"}\n");
}

/// `s` as a JSON string.
fn string(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            0..0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

/// RFC 3339 in UTC with microseconds, as `tracing-subscriber` writes it:
/// `2026-11-28T17:08:49.042425Z`.
fn timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let t = time::OffsetDateTime::from(now);
    let two = |buf: &mut Vec<u8>, v: u8| {
        buf.push(b'0' + v / 10);
        buf.push(b'0' + v % 10);
    };
    let year = u16::try_from(t.year()).unwrap_or(0);
    two(buf, u8::try_from(year / 100).unwrap_or(0));
    two(buf, u8::try_from(year % 100).unwrap_or(0));
    buf.push(b'-');
    two(buf, u8::from(t.month()));
    buf.push(b'-');
    two(buf, t.day());
    buf.push(b'T');
    two(buf, t.hour());
    buf.push(b':');
    two(buf, t.minute());
    buf.push(b':');
    two(buf, t.second());
    buf.push(b'.');
    let micros = t.microsecond();
    for shift in [100_000, 10_000, 1_000, 100, 10, 1] {
        buf.push(b'0' + u8::try_from(micros / shift % 10).unwrap_or(0));
    }
    buf.push(b'Z');
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_line_is_the_json_tracing_would_write() {
        let mut buf = Vec::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_000_129_042_425);
        let line = AccessLine {
            request_id: "abc-1",
            method: "GET",
            route: "/v1/projects",
            tenant: "acme",
            status: 200,
            latency_us: 16_576,
            trace_id: None,
        };
        format_line(&mut buf, at, &line);
        let text = String::from_utf8(buf).unwrap_or_default();
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let expected = serde_json::json!({
            "timestamp": "2026-11-18T11:08:49.042425Z",
            "level": "INFO",
            "message": "request",
            "request_id": "abc-1",
            "method": "GET",
            "route": "/v1/projects",
            "tenant": "acme",
            "status": 200,
            "latency_us": 16576,
            "target": TARGET,
        });
        assert_eq!(v, expected);

        let mut buf = Vec::new();
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        format_line(&mut buf, at, &AccessLine { trace_id: Some(trace_id), ..line });
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap_or_default();
        assert_eq!(v["trace_id"], trace_id);
    }

    #[test]
    fn strings_are_escaped() {
        let mut buf = Vec::new();
        string(&mut buf, "a\"b\\c\n\u{1}é");
        let back: String = serde_json::from_slice(&buf).unwrap_or_default();
        assert_eq!(back, "a\"b\\c\n\u{1}é");
    }

    #[test]
    fn timestamps_keep_leading_zeros() {
        let mut buf = Vec::new();
        timestamp(&mut buf, SystemTime::UNIX_EPOCH + Duration::from_micros(5));
        assert_eq!(String::from_utf8(buf).unwrap_or_default(), "1970-01-01T00:00:00.000005Z");
    }
}
