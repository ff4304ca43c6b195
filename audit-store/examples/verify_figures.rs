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
    Action, AuditEvent, AuditStore, CheckpointKind, CheckpointSigner, HttpFacts, Outcome,
    PostgresStore, SqliteStore, verify_chain,
};
use chrono::{DateTime, Utc};

const CATEGORIES: [&str; 7] = ["Model", "Dataset", "Plan", "User", "Team", "Billing", "Job"];
const USERS: u64 = 300;
/// 90 days.
const SPAN_MICROS: i64 = 7_776_000_000_000;

/// The generator of `benches/write_path.rs` (xorshift; 300 users, one resource per 100
/// events, attributes of 100–300 bytes, two tenants, time order), with some non-ASCII text.
struct Generator {
    state: u64,
    resources: u64,
}

impl Generator {
    fn new(seed: u64, total: usize) -> Self {
        Generator {
            state: seed.max(1),
            resources: (total as u64 / 100).max(100),
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn event(&mut self, n: usize, total: usize, end: DateTime<Utc>) -> AuditEvent {
        let r = self.next();
        let tenant = if r.is_multiple_of(3) {
            "globex"
        } else {
            "acme"
        };
        let user = format!("user-{}", (r >> 4) % USERS);
        let category = CATEGORIES[(r >> 12) as usize % CATEGORIES.len()];
        let actions = [
            Action::Create,
            Action::Update,
            Action::Delete,
            Action::Train,
        ];
        let action = actions[(r >> 20) as usize % actions.len()].clone();
        let resource = (r >> 28) % self.resources;
        let at = end
            - chrono::Duration::microseconds(SPAN_MICROS - SPAN_MICROS * n as i64 / total as i64);
        let detail_len = 60 + (r >> 40) as usize % 200;
        let denied = r.is_multiple_of(23);
        AuditEvent::builder(category, action)
            .occurred_at(at)
            .http(HttpFacts::new(
                "PUT",
                "/api/models/{id}",
                format!("/api/models/{resource}"),
                if denied { 403 } else { 200 },
            ))
            .outcome(if denied { Outcome::Deny } else { Outcome::Allow })
            .tenant(tenant)
            .request_id(format!("{:032x}", u128::from(self.next()) << 64 | u128::from(r)))
            .actor_id(user.clone())
            .actor_email(format!("{user}@{tenant}.test"))
            .actor_name(format!("Usér {user}"))
            .resource(resource.to_string(), format!("{category} {resource} ✓"))
            .client_ip("10.1.2.3")
            .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
            .duration_ms(2.5 + (r % 100) as f64 / 10.0)
            .attribute(
                "changes",
                serde_json::json!({"name": ["x".repeat(detail_len / 2), "y".repeat(detail_len / 2)]}),
            )
            .attribute("count", r % 1000)
            .build()
    }
}

/// Appends events until the store holds `total`, in batches of 1,000, then signs a
/// checkpoint (so `audit verify` has an anchor).
async fn seed(store: &dyn AuditStore, total: usize) -> Result<(), Box<dyn std::error::Error>> {
    let stored = usize::try_from(store.chain_head().await?.seq)?;
    if stored >= total {
        return Ok(());
    }
    eprintln!("seeding {} events", total - stored);
    let started = Instant::now();
    let mut generator = Generator::new(42 + stored as u64, total);
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
