//! Helpers for tests that need a real database (feature `testing`; not part of the stable API).
//!
//! PostgreSQL tests run when `AUDIT_TEST_POSTGRES_URL` is set and print that they were
//! skipped otherwise; with `AUDIT_TEST_REQUIRE_ALL=1` a missing service fails the test
//! instead, so CI can never pass by skipping.

/// True when `AUDIT_TEST_REQUIRE_ALL` asks that no test skip.
pub fn require_all() -> bool {
    std::env::var("AUDIT_TEST_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The PostgreSQL URL for tests, or `None` after printing that `test` was skipped.
///
/// # Panics
///
/// When no URL is configured and [`require_all`] is set.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("AUDIT_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !require_all(),
                "{test}: AUDIT_TEST_POSTGRES_URL is not set and AUDIT_TEST_REQUIRE_ALL forbids skipping"
            );
            eprintln!("skipped {test}: AUDIT_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// A PostgreSQL store in a fresh schema of its own, migrated, so tests run in parallel
/// without seeing each other's rows. Drop the schema with [`drop_postgres_schema`].
#[cfg(feature = "postgres")]
pub async fn isolated_postgres_store(url: &str) -> Result<crate::PostgresStore, crate::StoreError> {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(url)?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    let schema = format!("audit_test_{}", uuid::Uuid::now_v7().simple());
    let store = crate::PostgresStore::new(pool, &schema)?;
    store.migrate().await?;
    Ok(store)
}

/// Drops the schema of a store made by [`isolated_postgres_store`].
#[cfg(feature = "postgres")]
pub async fn drop_postgres_schema(store: &crate::PostgresStore) -> Result<(), crate::StoreError> {
    let statement = format!("DROP SCHEMA IF EXISTS {} CASCADE", store.schema());
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(store.pool())
        .await?;
    Ok(())
}
