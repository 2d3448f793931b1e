//! `Server-Timing` (W3C), when `PLINTH_SERVER_TIMING=true`: where the request's time went, by
//! phase (see [`plinth_domain::timing`]), on every answer, errors included:
//!
//! `Server-Timing: gate;dur=0.031, cache;desc="1 lookup";dur=0.004, pool;dur=0.002,
//! db;desc="1 call";dur=1.204, ser;dur=0.012, total;dur=1.5`
//!
//! Durations are milliseconds. A phase the request never entered is left out; `desc` counts
//! how many times it was entered, for the phases entered more than once per request as a rule.
//! Phases overlap (the gate's cache lookups count under `gate` and `cache`), so they need not
//! add up to `total`, which runs from this middleware's start to the answer's head.
//!
//! Off by default: it is registered only when configured, so it costs nothing otherwise.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use plinth_domain::timing::{self, Phase, Timings};

/// The header's name.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Times the request (gate and handler included) and writes `Server-Timing` on its answer.
pub async fn server_timing(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    // Handlers, extractors and the gate answer their errors themselves (problem responses), so
    // those get the header; an `Err` here would come from actix itself and carries its own
    // response, which can't be reached from here (holding a clone of the request would stop
    // actix from routing it).
    let (res, timings) = timing::scope(next.call(req)).await;
    let mut res = res?;
    if let Ok(value) = HeaderValue::from_str(&header_value(&timings, started.elapsed())) {
        res.headers_mut().insert(SERVER_TIMING, value);
    }
    Ok(res)
}

/// The header's value: each phase entered, then `total`.
pub fn header_value(timings: &Timings, total: Duration) -> String {
    let mut value = String::with_capacity(160);
    for phase in Phase::ALL {
        let (spent, count) = timings.get(phase);
        if count == 0 {
            continue;
        }
        let _ = write!(value, "{}", phase.name());
        if let Some(unit) = counted(phase) {
            let plural = if count == 1 { "" } else { "s" };
            let _ = write!(value, ";desc=\"{count} {unit}{plural}\"");
        }
        let _ = write!(value, ";dur={}, ", millis(spent));
    }
    let _ = write!(value, "total;dur={}", millis(total));
    value
}

/// What a phase's count counts, for the phases whose count says something.
fn counted(phase: Phase) -> Option<&'static str> {
    match phase {
        Phase::Cache => Some("lookup"),
        Phase::Db => Some("call"),
        Phase::Redis => Some("command"),
        Phase::Gate | Phase::Pool | Phase::Ser => None,
    }
}

/// `d` in milliseconds, to the microsecond.
fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_value_lists_each_phase_entered_with_its_count_then_the_total() {
        let ((), t) = timing::scope(async {
            timing::record(Phase::Gate, Duration::from_micros(31));
            timing::record(Phase::Db, Duration::from_micros(1000));
            timing::record(Phase::Db, Duration::from_micros(204));
            timing::record(Phase::Redis, Duration::from_micros(50));
        })
        .await;
        assert_eq!(
            header_value(&t, Duration::from_micros(1500)),
            "gate;dur=0.031, db;desc=\"2 calls\";dur=1.204, redis;desc=\"1 command\";dur=0.050, total;dur=1.500"
        );
    }
}
