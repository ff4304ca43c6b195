//! Store figures for BENCHMARKS.md, SQLite and PostgreSQL side by side in one run:
//! batch append rate, filtered first-page latency and deep-page latency over a large table,
//! and export read rate with peak memory.
//!
//! ```sh
//! AUDIT_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench -p audit-store --bench store_figures
//! ```
//!
//! `AUDIT_BENCH_EVENTS` sets the table size (default 1,000,000). Without a PostgreSQL URL
//! only SQLite is measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_store::{
    Action, AuditEvent, AuditStore, EventFilter, HttpFacts, Limit, Outcome, PageRequest,
    PostgresStore, SqliteStore, TenantScope, testing,
};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;

const CATEGORIES: [&str; 7] = [
    "Dataset Rule",
    "Field",
    "Marketing Touchpoint",
    "Conversion",
    "Model",
    "Plan",
    "Data Harmonization",
];
const ACTIONS: [Action; 6] = [
    Action::Create,
    Action::Update,
    Action::Delete,
    Action::Train,
    Action::Clone,
    Action::Rescore,
];

/// `count` realistic events over the 90 days before `now`: 2 tenants, 20 users each.
fn events(seed: u64, count: usize, now: DateTime<Utc>) -> Vec<AuditEvent> {
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let r = next();
            let tenant = if r % 3 == 0 { "globex" } else { "acme" };
            let user = r % 20;
            let category = CATEGORIES[(r >> 8) as usize % CATEGORIES.len()];
            let action = ACTIONS[(r >> 16) as usize % ACTIONS.len()].clone();
            let ago = chrono::Duration::microseconds((next() % SPAN_MICROS as u64) as i64);
            let id = (r >> 24) % 5000;
            AuditEvent::builder(category, action)
                .occurred_at(now - ago)
                .http(HttpFacts::new(
                    "POST",
                    "/api/models/{id}/train",
                    format!("/api/models/{id}/train"),
                    if r % 17 == 0 { 403 } else { 200 },
                ))
                .outcome(if r % 17 == 0 {
                    Outcome::Deny
                } else {
                    Outcome::Allow
                })
                .tenant(tenant)
                .actor_id(format!("user-{tenant}-{user}"))
                .actor_email(format!("user{user}@{tenant}.test"))
                .actor_name(format!("User {user}"))
                .resource(id.to_string(), format!("{category} number {id}"))
                .client_ip("10.0.0.7")
                .user_agent("Mozilla/5.0 (X11; Linux x86_64) bench")
                .duration_ms(3.25)
                .attribute("changes", serde_json::json!({"name": ["old", "new"]}))
                .build()
        })
        .collect()
}

/// 90 days.
const SPAN_MICROS: i64 = 7_776_000_000_000;

/// Seeds `size` events in time order over the 90 days before `now`, as a live service
/// would have written them (each chunk of 50,000 covers the next slice of time).
async fn seed_in_time_order(store: &dyn AuditStore, size: usize, now: DateTime<Utc>) {
    let slices = size.div_ceil(50_000).max(1);
    let slice_micros = SPAN_MICROS / slices as i64;
    for slice in 0..slices {
        let n = (size - slice * 50_000).min(50_000);
        let slice_end =
            now - chrono::Duration::microseconds(SPAN_MICROS - (slice as i64 + 1) * slice_micros);
        let mut chunk = events(slice as u64 + 10, n, slice_end);
        // `events` spreads times over 90 days before its `now`; fold them into this slice.
        for event in &mut chunk {
            let ago = (slice_end - event.occurred_at)
                .num_microseconds()
                .unwrap_or(0);
            event.occurred_at = slice_end - chrono::Duration::microseconds(ago % slice_micros);
            event.id = audit_store::uuid_v7_at(event.occurred_at);
        }
        chunk.sort_by_key(|e| (e.occurred_at, e.id));
        for batch in chunk.chunks(10_000) {
            store.append(batch).await.expect("seed");
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn proc_status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Events arrive in time order in a live service, so the append benchmark writes them so.
async fn append_rate(store: &dyn AuditStore, total: usize, batch: usize, seed: u64) -> f64 {
    let now = Utc::now();
    let mut data = events(seed, total, now);
    data.sort_by_key(|e| (e.occurred_at, e.id));
    let started = Instant::now();
    for chunk in data.chunks(batch) {
        store.append(chunk).await.expect("append");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn query_median(
    store: &dyn AuditStore,
    filter: &EventFilter,
    scope: &TenantScope,
    page: &PageRequest,
    runs: usize,
) -> (Duration, usize) {
    let mut samples = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let result = store.query(filter, scope, page).await.expect("query");
        samples.push(started.elapsed());
        rows = result.items.len();
    }
    (median(samples), rows)
}

struct Figures {
    name: &'static str,
    chain_share: f64,
    verify_all: Duration,
    verified: u64,
    append_batch_1000: f64,
    append_batch_10000: f64,
    first_page: Duration,
    first_page_rows: usize,
    page_1: Duration,
    page_10000: Duration,
    export_100k_rate: f64,
    export_100k_peak: f64,
    export_all_rate: f64,
    export_all_peak: f64,
    export_all_rows: usize,
}

/// One backend under test: a fresh, empty store each time it is opened.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

/// An open store and what the benchmark needs besides the trait.
enum Opened {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Backend {
    async fn open(&self) -> Opened {
        match self {
            Backend::Sqlite(dir) => {
                let path = dir
                    .path()
                    .join(format!("bench-{}.db", uuid::Uuid::now_v7()));
                let url = format!("sqlite://{}", path.display());
                Opened::Sqlite(SqliteStore::connect(&url).await.expect("sqlite"))
            }
            Backend::Postgres(url) => Opened::Postgres(
                testing::isolated_postgres_store(url)
                    .await
                    .expect("postgres"),
            ),
        }
    }
}

impl Opened {
    fn store(&self) -> Arc<dyn AuditStore> {
        match self {
            Opened::Sqlite(store) => Arc::new(store.clone()),
            Opened::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// Statistics as a live database has them (autovacuum on PostgreSQL, `PRAGMA optimize`
    /// on SQLite connections closing).
    async fn analyze(&self) {
        match self {
            Opened::Sqlite(store) => {
                sqlx::query("ANALYZE")
                    .execute(store.writer_pool())
                    .await
                    .expect("analyze");
            }
            Opened::Postgres(store) => {
                let statement = format!("VACUUM ANALYZE {}.audit_events", store.schema());
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(store.pool())
                    .await
                    .expect("analyze");
            }
        }
    }

    async fn close(self) {
        if let Opened::Postgres(store) = self {
            testing::drop_postgres_schema(&store)
                .await
                .expect("drop schema");
        }
    }
}

async fn measure(name: &'static str, backend: &Backend, size: usize) -> Figures {
    let empty = backend.open().await;
    let store = empty.store();
    eprintln!("[{name}] append rate");
    // Append rate into an empty table, then into one of 100,000 rows.
    let append_batch_1000 = append_rate(&*store, 100_000, 1000, 1).await;
    let append_batch_10000 = append_rate(&*store, 100_000, 10_000, 2).await;
    // Chaining's share of appending: hashing 100,000 events alone, against appending them.
    let sample = events(3, 100_000, Utc::now());
    let started = Instant::now();
    let (links, _) = audit_store::ChainHead::EMPTY.extend(&sample);
    let chain_rate = links.len() as f64 / started.elapsed().as_secs_f64();
    let chain_share = append_batch_1000 / chain_rate;
    empty.close().await;
    eprintln!("[{name}] seeding a fresh table of {size} events");
    let opened = backend.open().await;
    let store = opened.store();
    let now = Utc::now();
    seed_in_time_order(&*store, size, now).await;
    opened.analyze().await;

    eprintln!("[{name}] queries");
    let scope = TenantScope::only(["acme"]);
    let filter = EventFilter {
        users: vec!["user3@acme.test".into()],
        categories: vec!["Model".into()],
        from: Some(now - chrono::Duration::days(30)),
        ..EventFilter::default()
    };
    let (first_page, first_page_rows) =
        query_median(&*store, &filter, &scope, &PageRequest::default(), 200).await;

    // A walk of 10,000 pages of 50 (500,000 events deep) over the whole acme scope.
    let everything = EventFilter::default();
    let mut request = PageRequest {
        limit: Limit::default(),
        cursor: None,
    };
    let (page_1, _) = query_median(&*store, &everything, &scope, &request, 200).await;
    let mut pages = 1;
    while pages < 10_000 {
        let page = store
            .query(&everything, &scope, &request)
            .await
            .expect("walk");
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
        pages += 1;
    }
    let (page_10000, _) = query_median(&*store, &everything, &scope, &request, 200).await;
    eprintln!("[{name}] reached page {pages}");

    eprintln!("[{name}] export");
    let last_days = EventFilter {
        from: Some(now - chrono::Duration::days(9)),
        ..EventFilter::default()
    };
    let (export_100k_rate, export_100k_peak, _) = export(&*store, last_days).await;
    let (export_all_rate, export_all_peak, export_all_rows) =
        export(&*store, EventFilter::default()).await;
    eprintln!("[{name}] verify");
    let key = audit_store::CheckpointSigner::from_seed([1; 32]).verifying_key();
    let started = Instant::now();
    let report = audit_store::verify_chain(&*store, &key)
        .await
        .expect("verify");
    let verify_all = started.elapsed();
    assert!(report.is_intact(), "{:?}", report.broken);
    drop(store);
    opened.close().await;
    Figures {
        chain_share,
        verify_all,
        verified: report.events_checked,
        name,
        append_batch_1000,
        append_batch_10000,
        first_page,
        first_page_rows,
        page_1,
        page_10000,
        export_100k_rate,
        export_100k_peak,
        export_all_rate,
        export_all_peak,
        export_all_rows,
    }
}

/// Export rate and the peak growth of anonymous memory (the heap; the memory-mapped
/// database file is excluded, it is page cache) over its level before the export.
async fn export(store: &dyn AuditStore, filter: EventFilter) -> (f64, f64, usize) {
    let baseline = proc_status_mib("RssAnon:");
    let mut peak = baseline;
    let started = Instant::now();
    let mut rows = 0usize;
    let mut stream = store.export(filter, TenantScope::All);
    while let Some(event) = stream.try_next().await.expect("export") {
        rows += usize::from(!event.category.is_empty());
        if rows.is_multiple_of(10_000) {
            peak = peak.max(proc_status_mib("RssAnon:"));
        }
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    (rate, peak - baseline, rows)
}

fn main() {
    let size: usize = std::env::var("AUDIT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut backends = vec![(
            "SQLite (file, WAL)",
            Backend::Sqlite(tempfile::tempdir().expect("temp dir")),
        )];
        if let Ok(url) = std::env::var("AUDIT_TEST_POSTGRES_URL") {
            backends.push(("PostgreSQL", Backend::Postgres(url)));
        }
        let mut figures = Vec::new();
        for (name, backend) in &backends {
            figures.push(measure(name, backend, size).await);
        }
        println!("\nstore figures over {size} events\n");
        println!(
            "| backend | append, batches of 1,000 | append, batches of 10,000 | filtered first page (median) | page 1 / page 10,000 (median) | export ~100k: rate, peak heap growth | export all: rows, rate, peak heap growth |"
        );
        println!("|---|---|---|---|---|---|---|");
        let mut chain_lines = Vec::new();
        for f in figures {
            println!(
                "| {} | {:.0} ev/s | {:.0} ev/s | {:.2} ms ({} rows) | {:.2} ms / {:.2} ms ({:.2}×) | {:.0} ev/s, {:.1} MiB | {}, {:.0} ev/s, {:.1} MiB |",
                f.name,
                f.append_batch_1000,
                f.append_batch_10000,
                f.first_page.as_secs_f64() * 1e3,
                f.first_page_rows,
                f.page_1.as_secs_f64() * 1e3,
                f.page_10000.as_secs_f64() * 1e3,
                f.page_10000.as_secs_f64() / f.page_1.as_secs_f64(),
                f.export_100k_rate,
                f.export_100k_peak,
                f.export_all_rows,
                f.export_all_rate,
                f.export_all_peak,
            );
            chain_lines.push(format!(
                "| {} | {:.1}% | {} events in {:.2} s ({:.0} ev/s) |",
                f.name,
                f.chain_share * 100.0,
                f.verified,
                f.verify_all.as_secs_f64(),
                f.verified as f64 / f.verify_all.as_secs_f64(),
            ));
        }
        println!("\n| backend | hash chaining's share of append time | verify the whole chain |");
        println!("|---|---|---|");
        for line in chain_lines {
            println!("{line}");
        }
    });
}
