//! The state every handler and middleware receives.

use std::sync::Arc;

use ipnet::IpNet;
use plinth_domain::host::BaseDomain;
use plinth_domain::usecases::Plinth;
use plinth_postgres::PgStore;

use crate::api::fallback::RouteTable;

/// Shared by every worker thread, behind `web::Data`.
#[derive(Debug)]
pub struct AppState {
    /// The use cases.
    pub plinth: Arc<Plinth>,
    /// Tenant hosts are `{slug}.{base_domain}`.
    pub base_domain: BaseDomain,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Known paths and their methods, for 405 answers.
    pub routes: Arc<RouteTable>,
    /// The PostgreSQL pool, when configured: `/readyz` checks that it answers.
    pub database: Option<PgStore>,
}
