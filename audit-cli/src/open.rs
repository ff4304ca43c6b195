//! Opening the audit store a URL names, without changing the database.
//!
//! `verify` must never create tables or a database file: SQLite files are opened read-only
//! (and must exist), PostgreSQL sessions run with `default_transaction_read_only`, and both
//! first check that the store's tables are there, so a wrong URL or schema is a clear error
//! instead of an empty, "intact" log.

use std::str::FromStr;
use std::sync::Arc;

use audit_store::{AuditStore, PostgresStore, SqliteStore};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// Opens the store at `url` read-only; `schema` is the PostgreSQL schema (default `audit`).
pub async fn open_read_only(
    url: &str,
    schema: Option<&str>,
) -> Result<Arc<dyn AuditStore>, String> {
    if url.starts_with("sqlite:") {
        if schema.is_some() {
            return Err("--schema applies to PostgreSQL only".into());
        }
        open_sqlite(url).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        open_postgres(url, schema.unwrap_or(audit_store::DEFAULT_SCHEMA)).await
    } else {
        Err("the database URL must start with sqlite:// or postgres://".into())
    }
}

async fn open_sqlite(url: &str) -> Result<Arc<dyn AuditStore>, String> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| format!("invalid SQLite URL: {e}"))?
        .create_if_missing(false)
        .read_only(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .map_err(|e| format!("cannot open the SQLite database: {e}"))?;
    let (tables,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
         AND name IN ('audit_events', 'audit_chain_head', 'audit_checkpoints')",
    )
    .fetch_one(&pool)
    .await
    .map_err(|e| format!("cannot read the SQLite database: {e}"))?;
    if tables != 3 {
        return Err("this database holds no chained audit log (its tables are missing)".into());
    }
    Ok(Arc::new(SqliteStore::new(pool)))
}

async fn open_postgres(url: &str, schema: &str) -> Result<Arc<dyn AuditStore>, String> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?
        .options([("default_transaction_read_only", "on")]);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
    let store = PostgresStore::new(pool.clone(), schema).map_err(|e| e.to_string())?;
    // The schema name was validated by `PostgresStore::new` (a lowercase identifier).
    let statement = format!(
        "SELECT to_regclass('{schema}.audit_events') IS NOT NULL \
           AND to_regclass('{schema}.audit_chain_head') IS NOT NULL \
           AND to_regclass('{schema}.audit_checkpoints') IS NOT NULL"
    );
    let (present,): (bool,) = sqlx::query_as(AssertSqlSafe(statement))
        .fetch_one(&pool)
        .await
        .map_err(|e| format!("cannot read PostgreSQL: {e}"))?;
    if !present {
        return Err(format!(
            "schema {schema:?} holds no chained audit log (its tables are missing; pass --schema?)"
        ));
    }
    Ok(Arc::new(store))
}
