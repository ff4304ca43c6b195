//! Verification figures (issue #13): seeds a SQLite file and a PostgreSQL schema with
//! `AUDIT_BENCH_EVENTS` realistic events (default 1,000,000; appended with
//! `AuditStore::append` in batches of 1,000, the generator of `benches/write_path.rs`), signs
//! a checkpoint, then times `verify_chain` over each, `AUDIT_BENCH_RUNS` times (default 3).
//!
//! ```text
//! AUDIT_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p audit-store --features postgres --example verify_figures
//! ```
//!
//! The databases are kept between runs (`AUDIT_BENCH_DB`, default
//! `/tmp/audit-verify-<N>.db`; schema `verify_bench_<N>`) and seeded only when missing or
//! short, so the command can be repeated on other builds. It prints the `audit verify`
//! command lines for measuring the binary's peak RSS (`/usr/bin/time -v`).
//! `AUDIT_BENCH_BACKENDS=sqlite` (or `postgres`) measures only one.

use std::time::Instant;

use audit_store::{
    AuditEvent, AuditStore, CheckpointKind, CheckpointSigner, PostgresStore, SqliteStore,
    verify_chain,
};
use chrono::Utc;

#[path = "../benches/common/realistic_events.rs"]
mod realistic_events;
use realistic_events::Generator;

/// Appends events until the store holds `total`, in batches of 1,000, then signs a
/// checkpoint (so `audit verify` has an anchor).
async fn seed(store: &dyn AuditStore, total: usize) -> Result<(), Box<dyn std::error::Error>> {
    let stored = usize::try_from(store.chain_head().await?.seq)?;
    if stored >= total {
        return Ok(());
    }
    eprintln!("seeding {} events", total - stored);
    let started = Instant::now();
    let mut generator = Generator::new(42 + stored as u64, total).with_non_ascii();
    let end = Utc::now();
    for from in (stored..total).step_by(1000) {
        let to = (from + 1000).min(total);
        let batch: Vec<AuditEvent> = (from..to).map(|n| generator.event(n, total, end)).collect();
        store.append(&batch).await?;
    }
    store.checkpoint(CheckpointKind::Manual).await?;
    eprintln!("seeded in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn measure(
    label: &str,
    store: &dyn AuditStore,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let key = signer().verifying_key();
    for _ in 0..runs {
        let started = Instant::now();
        let report = verify_chain(store, &key).await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{label}: verify_chain {} events in {secs:.2} s ({:.0} events/s), intact {}",
            report.events_checked,
            report.events_checked as f64 / secs,
            report.is_intact()
        );
    }
    Ok(())
}

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed([13; 32])
}

// Two workers, as a host on a two-core machine (and `audit verify`) would have.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = std::env::var("AUDIT_BENCH_EVENTS").map_or(Ok(1_000_000), |v| v.parse())?;
    let runs: usize = std::env::var("AUDIT_BENCH_RUNS").map_or(Ok(3), |v| v.parse())?;
    let backends =
        std::env::var("AUDIT_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let key = signer().public_key_hex();
    if backends.contains("sqlite") {
        let path = std::env::var("AUDIT_BENCH_DB")
            .unwrap_or_else(|_| format!("/tmp/audit-verify-{total}.db"));
        let url = format!("sqlite://{path}?mode=rwc");
        let store = SqliteStore::connect(&url).await?.with_signer(signer());
        seed(&store, total).await?;
        measure("SQLite", &store, runs).await?;
        println!("  audit verify --database sqlite://{path} --public-key {key}");
    }
    if backends.contains("postgres") {
        let url = std::env::var("AUDIT_TEST_POSTGRES_URL")?;
        let schema = format!("verify_bench_{total}");
        let store = PostgresStore::connect_in_schema(&url, &schema)
            .await?
            .with_signer(signer());
        seed(&store, total).await?;
        measure("PostgreSQL", &store, runs).await?;
        println!("  audit verify --database {url} --schema {schema} --public-key {key}");
    }
    Ok(())
}
