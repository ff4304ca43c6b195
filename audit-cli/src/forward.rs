//! `audit forward-status` and `audit forward-retry`: what the forwarding cursors in the
//! audit database say, and the operator's word for a halted sink.

use std::str::FromStr;
use std::sync::Arc;

use audit_store::{AuditStore, ForwardingStatus, PostgresStore, SqliteStore};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::Outcome;

/// Opens the store for writing, without creating a database or running migrations: this
/// command must not change a schema behind the application's back.
async fn open(url: &str, schema: Option<&str>) -> Result<Arc<dyn AuditStore>, String> {
    if url.starts_with("sqlite:") {
        if schema.is_some() {
            return Err("--schema applies to PostgreSQL only".into());
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| format!("invalid SQLite URL: {e}"))?
            .create_if_missing(false)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| format!("cannot open the SQLite database: {e}"))?;
        Ok(Arc::new(SqliteStore::new(pool)))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options =
            PgConnectOptions::from_str(url).map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
        let store = PostgresStore::new(pool, schema.unwrap_or(audit_store::DEFAULT_SCHEMA))
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(store))
    } else {
        Err("the database URL must start with sqlite:// or postgres://".into())
    }
}

fn missing_tables(error: impl std::fmt::Display) -> String {
    format!(
        "cannot read the forwarding cursors ({error}); is this the audit database, migrated by a release with forwarding?"
    )
}

async fn print_status(store: &dyn AuditStore) -> Result<usize, String> {
    let sinks = store.forward_states().await.map_err(missing_tables)?;
    for state in &sinks {
        let status = audit_store::SinkStatus::from_state(state);
        let mut line = format!(
            "{:<16} {:<10} delivered seq {} of {}, {} event(s) ({:.0} s) behind",
            status.sink,
            status.state,
            status.delivered_seq,
            status.head_seq,
            status.lag_events,
            status.lag_seconds
        );
        if let Some(holder) = &status.holder {
            line.push_str(&format!(", forwarded by {holder}"));
        }
        if let Some(halt) = &status.halt {
            line.push_str(&format!(
                "\n                 halted at seq {} since {}: {}",
                halt.seq,
                halt.since
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                halt.reason
            ));
        }
        println!("{line}");
    }
    if sinks.is_empty() {
        println!("no forwarding sink has a cursor in this database");
    }
    Ok(sinks.len())
}

/// `audit forward-status`.
pub async fn status(url: &str, schema: Option<&str>) -> Outcome {
    let store = match open(url, schema).await {
        Ok(store) => store,
        Err(error) => return Outcome::Error(error),
    };
    // Through the trait the router uses too, so both read the same thing.
    if let Err(error) = store.forwarding_status().await {
        return Outcome::Error(missing_tables(error));
    }
    match print_status(&*store).await {
        Ok(_) => Outcome::Verified,
        Err(error) => Outcome::Error(error),
    }
}

/// `audit forward-retry`: clears the sink's halt; its forwarder retries the refused batch
/// at its next look (within a few seconds).
pub async fn retry(url: &str, schema: Option<&str>, sink: &str) -> Outcome {
    let store = match open(url, schema).await {
        Ok(store) => store,
        Err(error) => return Outcome::Error(error),
    };
    match store.resume_forwarding(sink).await {
        Ok(true) => {
            println!("{sink}: resumed; its forwarder retries the refused batch now");
            Outcome::Verified
        }
        Ok(false) => {
            let known = store
                .forward_states()
                .await
                .map(|states| states.iter().any(|s| s.sink == sink))
                .unwrap_or(false);
            if known {
                println!("{sink}: was not halted; nothing to do");
                Outcome::Verified
            } else {
                Outcome::Error(format!(
                    "no forwarding sink named {sink:?} in this database"
                ))
            }
        }
        Err(error) => Outcome::Error(missing_tables(error)),
    }
}
