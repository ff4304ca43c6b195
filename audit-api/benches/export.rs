//! Throughput of the mounted router over a real SQLite file (and PostgreSQL when
//! `AUDIT_TEST_POSTGRES_URL` is set), through real HTTP/1.1 on localhost:
//!
//! - CSV export: events per second, measured by a client draining the body;
//! - the list endpoint: median and p95 latency of a filtered first page.
//!
//! `cargo bench -p audit-api --bench export`; sizes via `AUDIT_BENCH_EXPORT_EVENTS`
//! (default 200,000) and `AUDIT_BENCH_LIST_EVENTS` (default 1,000,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_api::AuditRouter;
use audit_store::{Action, AuditEvent, AuditStore, HttpFacts, Outcome, SqliteStore, TenantScope};
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;
use common::{auditor, env_count};

const CATEGORIES: [&str; 7] = [
    "Model",
    "Dataset Rule",
    "Field",
    "Marketing Touchpoint",
    "Conversion",
    "Plan",
    "Data Harmonization",
];
const ACTIONS: [Action; 6] = [
    Action::Create,
    Action::Update,
    Action::Delete,
    Action::Train,
    Action::Clone,
    Action::Download,
];
const USERS: [&str; 5] = [
    "alice@acme.test",
    "bob@acme.test",
    "carol@acme.test",
    "erin@acme.test",
    "dave@globex.test",
];

/// Appends `count` realistic events spread over the last year, tagged `resource_id = tag`.
async fn seed(store: &dyn AuditStore, count: usize, tag: &str) {
    let now = Utc::now();
    for start in (0..count).step_by(10_000) {
        let batch: Vec<AuditEvent> = (start..(start + 10_000).min(count))
            .map(|i| {
                let seconds = i64::try_from(i).unwrap_or(0) * 30;
                let user = USERS[i % USERS.len()];
                let mut builder = AuditEvent::builder(CATEGORIES[i % 7], ACTIONS[i % 6].clone())
                    .occurred_at(now - chrono::Duration::seconds(seconds))
                    .http(HttpFacts::new(
                        "POST",
                        "/api/models/{id}/train",
                        "/api/models/42/train",
                        202,
                    ))
                    .tenant(if user.ends_with("globex.test") {
                        "globex"
                    } else {
                        "acme"
                    })
                    .actor_email(user)
                    .actor_id(user.split('@').next().unwrap_or_default())
                    .resource(tag, format!("Churn model v{i}"))
                    .duration_ms(12.5)
                    .client_ip("10.1.2.3")
                    .user_agent(
                        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                    )
                    .change("name", "old name", "new name");
                if i % 10 == 0 {
                    builder = builder.outcome(Outcome::Deny).denied("lacks permission");
                }
                builder.build()
            })
            .collect();
        store.append(&batch).await.expect("seeding");
    }
}

async fn serve(store: Arc<dyn AuditStore>) -> std::net::SocketAddr {
    let app = axum::Router::new().nest(
        "/admin/audit",
        AuditRouter::from_shared(store, auditor).into_router(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// One GET over a fresh connection; returns the bytes received (head and body).
async fn fetch(address: std::net::SocketAddr, path: &str, sink: &mut [u8]) -> usize {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.set_nodelay(true).ok();
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut total = 0;
    loop {
        let read = stream.read(sink).await.expect("read");
        if read == 0 {
            return total;
        }
        total += read;
    }
}

async fn bench_export(label: &str, store: Arc<dyn AuditStore>, events: usize) {
    seed(store.as_ref(), events, "export").await;
    // The store alone, for attribution: how fast its export stream yields events.
    let started = Instant::now();
    let mut stream = store.export(audit_store::EventFilter::default(), TenantScope::All);
    let mut read = 0usize;
    while let Some(event) = futures_util::StreamExt::next(&mut stream).await {
        event.expect("store export");
        read += 1;
    }
    println!(
        "{label}: store export stream alone: {read} events in {:.3} s = {:.0} events/s",
        started.elapsed().as_secs_f64(),
        read as f64 / started.elapsed().as_secs_f64()
    );
    let address = serve(store).await;
    let mut sink = vec![0; 256 * 1024];
    // Unfiltered: the whole (export-only) database, newest first, as an admin downloads it.
    let path = "/admin/audit/export?format=csv";
    fetch(address, path, &mut sink).await; // warm-up
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let bytes = fetch(address, path, &mut sink).await;
        let elapsed = started.elapsed();
        rates.push(events as f64 / elapsed.as_secs_f64());
        println!(
            "{label}: CSV export of {events} events, {:.1} MB in {:.3} s = {:.0} events/s",
            bytes as f64 / 1e6,
            elapsed.as_secs_f64(),
            events as f64 / elapsed.as_secs_f64()
        );
    }
    rates.sort_by(f64::total_cmp);
    println!("{label}: CSV export median {:.0} events/s", rates[1]);
}

/// Lists over `events` seeded events; the caller seeds them and refreshes the planner's
/// statistics first, as autovacuum (PostgreSQL) or `PRAGMA optimize` (SQLite) would have on a
/// live database; straight after a bulk load PostgreSQL has none and may pick a slow plan.
async fn bench_list(label: &str, store: Arc<dyn AuditStore>, events: usize) {
    let address = serve(store).await;
    let mut sink = vec![0; 256 * 1024];
    let queries = [
        "/admin/audit/events?category=Model&status=deny&limit=50",
        "/admin/audit/events?user=alice%40acme.test&action=train&limit=50",
        "/admin/audit/events?tenant=globex&category=Plan&limit=50",
    ];
    for query in queries {
        for _ in 0..20 {
            fetch(address, query, &mut sink).await;
        }
        let mut timings: Vec<Duration> = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            fetch(address, query, &mut sink).await;
            timings.push(started.elapsed());
        }
        timings.sort();
        println!(
            "{label}: list over {events} events `{query}`: median {:.2} ms, p95 {:.2} ms",
            timings[timings.len() / 2].as_secs_f64() * 1e3,
            timings[timings.len() * 95 / 100].as_secs_f64() * 1e3
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let export_events = env_count("AUDIT_BENCH_EXPORT_EVENTS", 200_000);
    let list_events = env_count("AUDIT_BENCH_LIST_EVENTS", 1_000_000);
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("export.db").display());
        let store: Arc<dyn AuditStore> =
            Arc::new(SqliteStore::connect(&url).await.expect("sqlite"));
        bench_export("sqlite", store, export_events).await;
        let url = format!("sqlite://{}", dir.path().join("list.db").display());
        let sqlite = SqliteStore::connect(&url).await.expect("sqlite");
        seed(&sqlite, list_events, "list").await;
        sqlx::query("ANALYZE")
            .execute(sqlite.writer_pool())
            .await
            .expect("analyze");
        bench_list("sqlite", Arc::new(sqlite), list_events).await;

        if let Ok(url) = std::env::var("AUDIT_TEST_POSTGRES_URL") {
            let store = audit_store::testing::isolated_postgres_store(&url)
                .await
                .expect("postgres");
            bench_export("postgres", Arc::new(store.clone()), export_events).await;
            seed(&store, list_events, "list").await;
            let analyze = format!("VACUUM ANALYZE {}.audit_events", store.schema());
            sqlx::query(sqlx::AssertSqlSafe(analyze))
                .execute(store.pool())
                .await
                .expect("analyze");
            bench_list("postgres", Arc::new(store.clone()), list_events).await;
            audit_store::testing::drop_postgres_schema(&store)
                .await
                .expect("drop schema");
        }
    });
}
