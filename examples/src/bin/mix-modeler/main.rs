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
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use audit_store::{AuditStore, PostgresStore, Recorder, SqliteStore};
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

/// Opens the audit store the URL names, applying its migrations.
async fn open_store(url: &str) -> Result<Arc<dyn AuditStore>, Box<dyn Error>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(format!("unsupported database URL {url:?}: use sqlite://FILE or postgres://...").into())
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    let store = open_store(&cli.database)
        .await
        .map_err(|error| format!("cannot open the audit database: {error}"))?;
    let recorder = Recorder::builder(store.clone()).start()?;

    if cli.demo_traffic > 0 {
        demo_traffic::record(&recorder, cli.demo_traffic).await?;
        tracing::info!(events = cli.demo_traffic, "recorded demo traffic");
    }

    let app = routes::app(recorder.clone(), store)?;
    let listener = TcpListener::bind(cli.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", cli.listen))?;
    let address = listener.local_addr()?;
    // Printed on stdout (logs go to stderr) so scripts and the end-to-end test can read the
    // port chosen for `--listen 127.0.0.1:0`.
    println!("listening on http://{address}/");
    println!("activity log: http://{address}/login?as=alice");

    let served = axum::serve(
        listener,
        // The peer address is the client IP the audit layer records.
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await;

    // Whatever ended the server, every event of an answered request is still queued: write
    // them all before exiting.
    tracing::info!("draining the audit recorder");
    let drained = recorder.shutdown().await;
    served?;
    drained?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM. If a handler cannot be installed, that signal is simply
/// not awaited (the other one still works).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}

#[cfg(test)]
mod tests {
    use audit_store::SqliteStore;
    use http::Method;

    use super::routes;

    #[tokio::test]
    async fn every_mutating_route_has_an_explicit_rule() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let recorder = audit_store::Recorder::builder(store).start().unwrap();
        let layer = routes::audit_layer(recorder.clone()).unwrap();
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
        recorder.shutdown().await.unwrap();
    }
}
