//! Profiling aid: seeds a SQLite store, then exports it and verifies its chain repeatedly,
//! so `perf record` sees those read paths. `cargo run --release -p audit-store --example export_profile`;
//! `-- export` or `-- verify` runs only one of them. The runtime has two worker threads,
//! as a host on a two-core machine would.

use audit_store::{
    Action, AuditEvent, AuditStore, EventFilter, HttpFacts, SqliteStore, TenantScope,
};
use futures_util::TryStreamExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let only = std::env::args().nth(1);
    let runs = |phase: &str| only.as_deref().is_none_or(|only| only == phase);
    let dir = tempfile::tempdir()?;
    // AUDIT_PROFILE_DB keeps the database for a look with other tools.
    let path = std::env::var("AUDIT_PROFILE_DB")
        .map_or_else(|_| dir.path().join("profile.db"), std::path::PathBuf::from);
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = SqliteStore::connect(&url).await?;
    let now = chrono::Utc::now();
    let events: Vec<AuditEvent> = (0..200_000)
        .map(|i| {
            AuditEvent::builder("Model", Action::Train)
                .occurred_at(now - chrono::Duration::milliseconds(200_000 - i))
                .http(HttpFacts::new(
                    "POST",
                    "/api/models/{id}/train",
                    format!("/api/models/{i}/train"),
                    200,
                ))
                .tenant("acme")
                .actor_id("user-1")
                .actor_email("user1@acme.test")
                .actor_name("User One")
                .resource(i.to_string(), format!("Model {i}"))
                .client_ip("10.0.0.7")
                .user_agent("Mozilla/5.0 bench")
                .attribute("changes", serde_json::json!({"name": ["old", "new"]}))
                .build()
        })
        .collect();
    for chunk in events.chunks(10_000) {
        store.append(chunk).await?;
    }
    eprintln!("seeded");
    for _ in 0..if runs("export") { 5 } else { 0 } {
        let started = std::time::Instant::now();
        let rows: usize = store
            .export(EventFilter::default(), TenantScope::All)
            .try_fold(0, |n, _| async move { Ok(n + 1) })
            .await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{rows} rows in {secs:.3} s: {:.0} rows/s",
            rows as f64 / secs
        );
    }
    let key = audit_store::CheckpointSigner::from_seed([1; 32]).verifying_key();
    for _ in 0..if runs("verify") { 3 } else { 0 } {
        let started = std::time::Instant::now();
        let report = audit_store::verify_chain(&store, &key).await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "verified {} events in {secs:.3} s: {:.0} events/s",
            report.events_checked,
            report.events_checked as f64 / secs
        );
    }
    Ok(())
}
