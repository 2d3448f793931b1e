//! The state every handler and middleware receives.

use std::sync::Arc;

use ipnet::IpNet;
use plinth_domain::host::BaseDomain;
use plinth_domain::usecases::Plinth;

use crate::api::fallback::RouteTable;
use crate::shutdown::ShutdownSignal;
use crate::telemetry::metrics::MetricsEndpoint;

/// Shared by every worker thread, behind `web::Data`.
#[derive(Debug)]
pub struct AppState {
    /// The use cases.
    pub plinth: Arc<Plinth>,
    /// Tenant hosts are `{slug}.{base_domain}`.
    pub base_domain: BaseDomain,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The prefix an IPv6 client is counted by in the per-address limits.
    pub ipv6_prefix: u8,
    /// Known paths and their methods, for 405 answers.
    pub routes: Arc<RouteTable>,
    /// Graceful shutdown: `/readyz` fails from the moment it begins.
    pub shutdown: ShutdownSignal,
    /// `GET /metrics`: the recorder and the token it requires.
    pub metrics: MetricsEndpoint,
    /// The operator tokens `/admin/v1` accepts (none: it is off).
    pub operators: plinth_domain::values::OperatorTokens,
    /// The readiness and queue probes concurrent requests share.
    pub probes: crate::api::platform::Probes,
}
