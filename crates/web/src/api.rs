//! The HTTP API: handlers, their extractors, and the one function that registers them.
//!
//! Routes are added only through [`configure`], with utoipa-actix-web's `service`, so that the
//! OpenAPI document lists every one of them. `clippy.toml` forbids the other ways (`.route`,
//! actix's own `service`), and the `ops` tests call every documented operation.

pub mod access;
pub mod admin;
pub mod docs;
pub mod extract;
pub mod fallback;
pub mod openapi;
pub mod platform;
pub mod schemas;

mod accounts;
mod auth;
mod events;
mod export;
mod idempotency;
mod keys;
mod projects;
pub(crate) mod respond;
mod sessions;
mod signup;
mod users;
mod webhooks;

use actix_web::middleware::from_fn;
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::middleware::gate::gate;

/// Registers every route. Within `/v1`, paths without parameters come first: actix tries the
/// routes in order, and a template with a parameter costs a regex match to rule out.
pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(platform::scrape);
    cfg.service(platform::healthz)
        .service(platform::readyz)
        .service(platform::openapi)
        .service(docs::docs)
        .service(docs::script)
        .service(
            scope("/v1")
                .wrap(from_fn(gate))
                .service(signup::signup)
                .service(auth::login)
                .service(sessions::refresh)
                .service(sessions::logout)
                .service(auth::me)
                .service(sessions::list)
                .service(sessions::change_password)
                .service(accounts::request_reset)
                .service(accounts::confirm_reset)
                .service(accounts::verify)
                .service(accounts::resend)
                .service(accounts::accept)
                .service(accounts::create)
                .service(accounts::list)
                .service(auth::get_tenant)
                .service(auth::delete_tenant)
                .service(export::export)
                .service(keys::create)
                .service(keys::list)
                .service(keys::audit_log)
                .service(keys::verify)
                .service(projects::list)
                .service(projects::create)
                .service(users::list)
                .service(users::create)
                .service(webhooks::create)
                .service(webhooks::list)
                .service(webhooks::get)
                .service(webhooks::update)
                .service(webhooks::rotate_secret)
                .service(webhooks::test)
                .service(webhooks::retry)
                .service(webhooks::recover)
                .service(events::list)
                .service(projects::get)
                .service(projects::update)
                .service(projects::remove)
                .service(users::update)
                .service(users::remove)
                .service(sessions::remove)
                .service(sessions::remove_all)
                .service(accounts::revoke)
                .service(webhooks::remove)
                .service(keys::revoke)
                .service(webhooks::deliveries)
                .service(events::get),
        );
    cfg.service(
        scope("/admin/v1")
            .wrap(from_fn(admin::operator_gate))
            .service(admin::list)
            .service(admin::show)
            .service(admin::set_plan)
            .service(admin::suspend)
            .service(admin::resume)
            .service(admin::remove)
            .service(admin::restore)
            .service(admin::export),
    );
}
