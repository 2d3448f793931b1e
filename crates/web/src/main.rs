//! `plinth`: serves the API (no arguments), `plinth migrate`, `plinth seed`, `plinth openapi`…

use std::process::ExitCode;

use clap::Parser as _;
use plinth_web::cli::{self, Cli, Command};
use plinth_web::config::{ConfigError, MigrateConfig};
use plinth_web::{Application, Config, telemetry};

/// jemalloc, not the system allocator: it returns freed memory to the operating system a few
/// seconds after it is freed, where glibc's per-thread arenas kept it and grew under the soak
/// mix (see the memory section of docs/performance.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        // Needs no configuration: a token and the hash to configure for it.
        Some(Command::OperatorToken) => cli::run_operator_token(),
        // The document is the code's: no configuration, nothing started.
        Some(Command::Openapi) => cli::run_openapi(),
        // Migrating reads only its own variables: no runtime secret is needed to migrate.
        Some(Command::Migrate { status }) => {
            let config = match MigrateConfig::from_env() {
                Ok(c) => c,
                Err(e) => return refuse(&e),
            };
            let _logs = telemetry::init_for_command(&config.log);
            cli::run_migrate(&config, *status).await
        }
        command => {
            let config = match Config::from_env() {
                Ok(c) => c,
                Err(e) => return refuse(&e),
            };
            let _logs = match command {
                None | Some(Command::Serve | Command::Worker) => telemetry::init(&config.log),
                Some(_) => telemetry::init_for_command(&config.log),
            };
            match command {
                Some(Command::Worker) => cli::run_worker(&config).await,
                Some(seed @ Command::Seed { .. }) => cli::run_seed(&config, seed).await,
                Some(Command::Audit { command }) => cli::run_audit(&config, command).await,
                Some(Command::Tenant { command }) => cli::run_tenant(&config, command).await,
                _ => serve(config).await,
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plinth: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A configuration that can't be used: exit code 2, naming the variable.
fn refuse(e: &ConfigError) -> ExitCode {
    eprintln!("plinth: {e}");
    ExitCode::from(2)
}

async fn serve(config: Config) -> Result<(), String> {
    let listen = config.listen;
    let base = config.base_domain.as_str().to_owned();
    let app = Application::build(config).await.map_err(|e| e.to_string())?;
    if let Some(demo) = app.demo() {
        print_demo(demo, listen, &base);
    }
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

fn print_demo(demo: &plinth_web::composition::DemoLogin, listen: std::net::SocketAddr, base: &str) {
    eprintln!(
        "\nplinth is running in embedded mode (in-memory storage; nothing is kept after exit).\n\
         A demo tenant is seeded: host {slug}.{base}, owner {email} / {password}\n\
         Log in with:\n\n  curl -s -H 'Host: {slug}.{base}' -H 'Content-Type: application/json' \\\n    \
         -d '{{\"email\":\"{email}\",\"password\":\"{password}\"}}' http://{listen}/v1/auth/login\n",
        slug = demo.slug,
        email = demo.email,
        password = demo.password,
    );
}
