//! The `ceiling` reference of `cargo xtask bench`: the fastest this machine answers plinth's
//! list request with actix-web. Same framework and worker count as `plinth` (actix's default,
//! one per core), no middleware, no logging, no I/O: `GET /v1/projects` answers a body
//! precomputed at start, of the size of plinth's list response; `GET /healthz` answers for
//! readiness.
//!
//! `CEILING_LISTEN` (default `127.0.0.1:18081`), `CEILING_BODY_BYTES` (default 6000).

// A bare actix-web reference, not plinth's API: it has no OpenAPI document to keep complete.
#![allow(clippy::disallowed_methods)]

use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;

/// A JSON document of exactly `size` bytes (at least the 9 of the empty padding).
fn body(size: usize) -> Bytes {
    let pad = size.saturating_sub(r#"{"pad":""}"#.len());
    Bytes::from(format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad)))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::var("CEILING_LISTEN").unwrap_or_else(|_| "127.0.0.1:18081".into());
    let size = match std::env::var("CEILING_BODY_BYTES").map(|s| s.parse::<usize>()) {
        Err(_) => 6000,
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("CEILING_BODY_BYTES: {e}")));
        }
    };
    let body = body(size);
    HttpServer::new(move || {
        let body = body.clone();
        App::new()
            .route(
                "/v1/projects",
                web::get().to(move || {
                    let body = body.clone();
                    async move { HttpResponse::Ok().content_type("application/json").body(body) }
                }),
            )
            .route(
                "/healthz",
                web::get()
                    .to(|| async { HttpResponse::Ok().content_type("application/json").body(r#"{"status":"ok"}"#) }),
            )
    })
    .bind(listen)?
    .run()
    .await
}
