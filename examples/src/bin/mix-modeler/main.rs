//! Mix Modeler: the demo host app. A small marketing-mix modelling API with its own login,
//! audited by `audit-layer`, its log kept by `audit-store` and browsed through `audit-api`.
//!
//! ```text
//! cargo run --release -p audit-examples --bin mix-modeler -- --demo-traffic 500
//! ```

mod auth;
mod cli;
mod demo_traffic;
mod policy;
mod resources;
mod routes;

use std::error::Error;
use std::process::ExitCode;

use axum_audit::Audit;
use clap::Parser;
use tokio::net::TcpListener;

use crate::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mix-modeler: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    // SQLite or PostgreSQL, from the URL; migrated, with the recorder running.
    let audit = Audit::connect(&cli.database).await?;

    if cli.demo_traffic > 0 {
        demo_traffic::record(audit.recorder(), cli.demo_traffic).await?;
        tracing::info!(events = cli.demo_traffic, "recorded demo traffic");
    }

    let app = routes::app(&audit)?;
    let listener = TcpListener::bind(cli.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", cli.listen))?;
    let address = listener.local_addr()?;
    // Printed on stdout (logs go to stderr) so scripts and the end-to-end test can read the
    // port chosen for `--listen 127.0.0.1:0`.
    println!("listening on http://{address}/");
    println!("activity log: http://{address}/login?as=alice");

    // Until Ctrl-C or SIGTERM; then the requests in flight finish and every queued event is
    // written before it returns.
    audit.serve(listener, app).await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum_audit::Audit;
    use http::Method;

    use super::routes;

    #[tokio::test]
    async fn every_mutating_route_has_an_explicit_rule() {
        let audit = Audit::connect("sqlite::memory:").await.unwrap();
        let layer = routes::audit_layer(audit.layer()).unwrap();
        let api = routes::api_route_list();
        assert!(api.len() >= 30, "the route list looks incomplete: {api:?}");
        let unruled = layer.unruled_routes(api.iter().map(|(m, p)| (m.clone(), p.as_str())));
        assert!(
            unruled.is_empty(),
            "mutating routes without a rule: {unruled:?}"
        );
        for (method, path) in &api {
            let expected = *method != Method::GET || path == "/api/models/{id}/metadata";
            assert_eq!(layer.is_audited(method, path), expected, "{method} {path}");
        }
        audit.shutdown().await.unwrap();
    }
}
