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
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use axum_audit::{Audit, DeliveryMode};
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
    // Tamper evidence out of the box: a signing key beside the database (created on first
    // start), and every signed checkpoint appended to a local file as well as stored.
    let base = local_files(&cli.database);
    let key_file = cli
        .signing_key
        .unwrap_or_else(|| beside(&base, ".signing-key"));
    let checkpoint_log = cli
        .checkpoint_log
        .unwrap_or_else(|| beside(&base, ".checkpoints.ndjson"));
    let mut audit = Audit::builder()
        .signing_key_file(&key_file)
        .checkpoint_log(&checkpoint_log);
    if cli.durable {
        audit = audit.delivery(DeliveryMode::Durable);
    }
    if let Some(dir) = cli.spool_dir {
        audit = audit.spool_dir(dir);
    }
    // SQLite or PostgreSQL, from the URL; migrated, with the recorder running.
    let audit = audit.connect(&cli.database).await?;
    if let Some(signer) = audit.signer() {
        // On stdout, for scripts and `audit verify --public-key`.
        println!(
            "audit signing key: {} (kept in {})",
            signer.public_key_hex(),
            key_file.display()
        );
    }

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

/// Where the demo keeps its files besides the database: next to a SQLite file, else in the
/// current directory under `mix-modeler`.
fn local_files(url: &str) -> PathBuf {
    let file = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .and_then(|rest| rest.split('?').next())
        .filter(|path| !path.is_empty() && !path.starts_with(':'));
    PathBuf::from(file.unwrap_or("mix-modeler"))
}

/// `base` with `suffix` appended to its file name.
fn beside(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
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
