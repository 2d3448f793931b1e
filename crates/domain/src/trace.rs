//! W3C trace context across the job queue: a job remembers the `traceparent` of the span that
//! was current when a write enqueued it, and the worker's span for that job continues it, so a
//! request and the jobs it caused (a webhook delivery, an email) are one trace.
//!
//! The domain knows the format, not OpenTelemetry: the web layer, which owns the exporter,
//! hands [`Propagation`] two functions when traces are exported (what the current span's
//! context is; make a span continue a stored one). Without them (the default) adapters store
//! nothing and the worker's spans start traces of their own, at the cost of one branch.

use std::future::Future;

/// A W3C `traceparent` of version `00`: `00-<trace id>-<parent id>-<flags>`, 55 characters of
/// lowercase hex and dashes, neither id all zeros. Once parsed, well formed: a stored value is
/// parsed again when it is read back, and one that is not well formed is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceParent(String);

impl TraceParent {
    /// The length of a version `00` value, the only version stored.
    pub const LEN: usize = 55;

    /// `value` when it is a well-formed version `00` `traceparent`; else `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let bytes = value.as_bytes();
        let ok = bytes.len() == Self::LEN
            && bytes.starts_with(b"00-")
            && trace_id_of(bytes).is_some()
            && bytes[36..52].iter().any(|&c| c != b'0');
        ok.then(|| Self(value.to_owned()))
    }

    /// The value, as stored and as sent in a `traceparent` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its trace id, 32 hex digits.
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }
}

/// The trace id of a `traceparent` header value (`<version>-<trace id>-<parent id>-<flags>`)
/// when it is well formed and the trace id is not all zeros; a version after `00` may append
/// fields after a dash, as the W3C recommendation allows. A parse of one short value, with no
/// allocation: the access log calls it for every request that carries the header.
pub fn trace_id_of(value: &[u8]) -> Option<&str> {
    let hex = |b: &[u8]| b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' || &value[..2] == b"ff" {
        return None;
    }
    // Version 00 is exactly 55 bytes; a later version may append fields after a dash.
    if (&value[..2] == b"00" && value.len() != 55) || (value.len() > 55 && value[55] != b'-') {
        return None;
    }
    let id = &value[3..35];
    let ok = hex(&value[..2]) && hex(id) && hex(&value[36..52]) && hex(&value[53..55]) && id.iter().any(|&c| c != b'0');
    ok.then(|| std::str::from_utf8(id).ok()).flatten()
}

/// What the web layer installs when traces are exported.
#[derive(Debug, Clone, Copy)]
struct Hooks {
    current: fn() -> Option<TraceParent>,
    resume: fn(&tracing::Span, &TraceParent),
}

/// How trace context crosses the queue; off by default. The composition root hands one to the
/// storage adapters (which ask it for the context of each job they insert) and to the use
/// cases (whose worker span continues a claimed job's).
#[derive(Debug, Clone, Copy, Default)]
pub struct Propagation(Option<Hooks>);

tokio::task_local! {
    /// Set while the worker works a job.
    static WORKING: ();
}

impl Propagation {
    /// Off: no context is stored with jobs, and jobs start traces of their own.
    pub const OFF: Self = Self(None);

    /// On: `current` answers the current span's context (`None` when it is not traced);
    /// `resume` makes a span continue a stored context.
    pub const fn new(current: fn() -> Option<TraceParent>, resume: fn(&tracing::Span, &TraceParent)) -> Self {
        Self(Some(Hooks { current, resume }))
    }

    /// The context a job enqueued now should continue: the current span's, unless propagation
    /// is off or the job is enqueued by the worker (a `webhook.disabled` event's deliveries
    /// start traces of their own rather than chain every later job onto one old request's).
    pub fn current(self) -> Option<TraceParent> {
        let hooks = self.0?;
        if WORKING.try_with(|()| ()).is_ok() {
            return None;
        }
        (hooks.current)()
    }

    /// Makes `span` (a job's, not yet entered) continue `parent`, when there is one and
    /// propagation is on; else `span` starts a trace of its own.
    pub fn resume(self, span: &tracing::Span, parent: Option<&TraceParent>) {
        if let (Some(hooks), Some(parent)) = (self.0, parent) {
            (hooks.resume)(span, parent);
        }
    }
}

/// Runs `job`, the worker's work on one job: jobs it enqueues carry no context (see
/// [`Propagation::current`]).
pub async fn working<F: Future>(job: F) -> F::Output {
    WORKING.scope((), job).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the W3C Trace Context recommendation.
    const W3C: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_gives_its_trace_id() {
        assert_eq!(trace_id_of(W3C.as_bytes()), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let later = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert_eq!(trace_id_of(later), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn a_malformed_traceparent_gives_none() {
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            b"",
        ] {
            assert_eq!(trace_id_of(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn only_a_well_formed_version_00_traceparent_is_kept() {
        let parsed = TraceParent::parse(W3C);
        assert_eq!(parsed.as_ref().map(TraceParent::as_str), Some(W3C));
        assert_eq!(parsed.as_ref().map(TraceParent::trace_id), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
            &"0".repeat(4096),
            "",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    fn always() -> Option<TraceParent> {
        TraceParent::parse(W3C)
    }

    #[tokio::test]
    async fn jobs_enqueued_by_the_worker_carry_no_context() {
        let on = Propagation::new(always, |_, _| {});
        assert_eq!(on.current(), TraceParent::parse(W3C));
        assert_eq!(working(async { on.current() }).await, None);
        assert_eq!(Propagation::OFF.current(), None);
        assert_eq!(Propagation::default().current(), None);
    }
}
