//! PostgreSQL: is `COPY (SELECT …) TO STDOUT (FORMAT binary)` worth an export path of its
//! own? Over the schema `verify_figures` seeded (`verify_bench_<N>`), side by side in one run,
//! best of three: the store's export batches (keyset walk, rows decoded into batches) against
//! the bytes of one binary COPY of the same rows in the same order merely received (not even
//! parsed), and the same COPY as CSV.
//!
//! ```text
//! AUDIT_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p audit-store --features postgres --example copy_export
//! ```

use std::time::Instant;

use audit_store::{AuditStore, EventFilter, PostgresStore, TenantScope};
use futures_util::TryStreamExt;

const COLUMNS: &str = "seq, prev_hash, hash, id, occurred_at, tenant, request_id, actor_id, \
     actor_email, actor_name, category, action, outcome, reason, resource_id, resource_name, \
     method, route, path, status, duration_ms, client_ip, user_agent, attributes, chain_version";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("AUDIT_TEST_POSTGRES_URL")?;
    let events: usize = std::env::var("AUDIT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let schema = format!("verify_bench_{events}");
    let store = PostgresStore::connect_in_schema(&url, &schema).await?;
    let mut best = [f64::MAX; 3];
    let mut rows = [0usize; 3];
    for _ in 0..3 {
        let started = Instant::now();
        let mut batches = store.export_batches(EventFilter::default(), TenantScope::All);
        let mut read = 0;
        while let Some(batch) = batches.try_next().await? {
            read += batch.len();
        }
        best[0] = best[0].min(started.elapsed().as_secs_f64());
        rows[0] = read;
        for (slot, format) in [(1, "binary"), (2, "csv")] {
            let started = Instant::now();
            let mut connection = store.pool().acquire().await?;
            let statement = format!(
                "COPY (SELECT {COLUMNS} FROM {schema}.audit_events \
                 ORDER BY occurred_at DESC, id DESC) TO STDOUT (FORMAT {format})"
            );
            let mut bytes = connection.copy_out_raw(&statement).await?;
            let mut received = 0;
            while let Some(chunk) = bytes.try_next().await? {
                received += chunk.len();
            }
            best[slot] = best[slot].min(started.elapsed().as_secs_f64());
            rows[slot] = received;
        }
    }
    println!(
        "export batches (keyset walk, decoded): {} rows in {:.2} s = {:.0} rows/s",
        rows[0],
        best[0],
        rows[0] as f64 / best[0]
    );
    for (slot, format) in [(1, "binary"), (2, "CSV")] {
        println!(
            "COPY {format}, bytes received only: {:.0} MB in {:.2} s = {:.0} rows/s ({:.2}× the batches)",
            rows[slot] as f64 / 1e6,
            best[slot],
            rows[0] as f64 / best[slot],
            best[0] / best[slot]
        );
    }
    Ok(())
}
