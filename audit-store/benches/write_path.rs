//! The write path against the hardware, SQLite and PostgreSQL side by side in one run
//! (BENCHMARKS.md, "The write path"):
//!
//! * the rate of `AuditStore::append` in batches of 1,000 into a table already holding
//!   `AUDIT_BENCH_EVENTS` events (default 1,000,000), beside the rate of inserting the same
//!   rows into a bare table of the same backend (no index, no chain, no trigger: SQLite with
//!   one reused prepared statement per row, PostgreSQL with `COPY`), and their ratio;
//! * hashing's share of append time (the chain links of the same events, computed alone);
//! * the reads that must not regress, over the same table: the filtered first page (user +
//!   category + 30 days), page 1 and page 10,000 of a 50-row walk, a worst-case filter
//!   matching 0.01 % of the rows, a resource-name substring search; on PostgreSQL both right
//!   after the load (before any `ANALYZE`) and after `VACUUM ANALYZE`.
//!
//! ```sh
//! AUDIT_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench -p audit-store --bench write_path
//! ```
//!
//! Realistic data: 300 users, 10,000 resources per 1,000,000 events (each touched many times,
//! one name per resource), attributes of 100–300 bytes, two tenants, events in time order
//! over 90 days; one actor (`rare-auditor`) appears in 0.01 % of them.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_store::{
    AuditEvent, AuditStore, EventFilter, Limit, PageRequest, PostgresStore, SqliteStore,
    TenantScope, content_digests, testing,
};
use chrono::{DateTime, Utc};

#[path = "common/realistic_events.rs"]
mod realistic_events;
use realistic_events::Generator;

/// The events `from..to` of a log of `total`.
fn events(
    generator: &mut Generator,
    from: usize,
    to: usize,
    total: usize,
    end: DateTime<Utc>,
) -> Vec<AuditEvent> {
    (from..to).map(|n| generator.event(n, total, end)).collect()
}

/// The bare table's columns, the same as the store's events table.
const BARE_COLUMNS: &str = "seq, prev_hash, hash, id, occurred_at, tenant, request_id, actor_id, \
     actor_email, actor_name, category, action, outcome, reason, resource_id, resource_name, \
     method, route, path, status, duration_ms, client_ip, user_agent, attributes";

/// Inserts `events` into a bare SQLite table, 1,000 per transaction, one prepared statement.
fn sqlite_bare(connection: &rusqlite::Connection, events: &[AuditEvent], first_seq: i64) {
    let sql = format!(
        "INSERT INTO bare ({BARE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, \
         ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
    );
    let hash = [7u8; 32];
    for (b, chunk) in events.chunks(1000).enumerate() {
        connection.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut statement = connection.prepare_cached(&sql).unwrap();
        for (i, e) in chunk.iter().enumerate() {
            let seq = first_seq + (b * 1000 + i) as i64;
            let attributes = serde_json::to_string(&e.attributes).unwrap();
            statement
                .execute(rusqlite::params![
                    seq,
                    &hash[..],
                    &hash[..],
                    &e.id.as_bytes()[..],
                    e.occurred_at.timestamp_micros(),
                    e.tenant,
                    e.request_id,
                    e.actor_id,
                    e.actor_email,
                    e.actor_name,
                    e.category,
                    e.action.as_str(),
                    e.outcome.as_str(),
                    e.reason,
                    e.resource_id,
                    e.resource_name,
                    e.method,
                    e.route,
                    e.path,
                    i64::from(e.status),
                    e.duration_ms,
                    e.client_ip,
                    e.user_agent,
                    attributes,
                ])
                .unwrap();
        }
        drop(statement);
        connection.execute_batch("COMMIT").unwrap();
    }
}

fn tsv(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("\\N"),
        Some(text) => {
            for c in text.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}

/// `COPY`s `events` into a bare PostgreSQL table, 1,000 per statement.
async fn postgres_bare(pool: &sqlx::PgPool, table: &str, events: &[AuditEvent], first_seq: i64) {
    let hash = format!("\\\\x{}", "07".repeat(32));
    for (b, chunk) in events.chunks(1000).enumerate() {
        let mut text = String::with_capacity(chunk.len() * 700);
        for (i, e) in chunk.iter().enumerate() {
            let seq = first_seq + (b * 1000 + i) as i64;
            let _ = write!(
                text,
                "{seq}\t{hash}\t{hash}\t{}\t{}\t",
                e.id,
                audit_store::rfc3339_micros::format(&e.occurred_at)
            );
            for (n, value) in [
                e.tenant.as_deref(),
                Some(e.request_id.as_str()),
                e.actor_id.as_deref(),
                e.actor_email.as_deref(),
                e.actor_name.as_deref(),
                Some(e.category.as_str()),
                Some(e.action.as_str()),
                Some(e.outcome.as_str()),
                e.reason.as_deref(),
                e.resource_id.as_deref(),
                e.resource_name.as_deref(),
                Some(e.method.as_str()),
                Some(e.route.as_str()),
                Some(e.path.as_str()),
            ]
            .into_iter()
            .enumerate()
            {
                if n > 0 {
                    text.push('\t');
                }
                tsv(&mut text, value);
            }
            let _ = write!(text, "\t{}\t{}\t", e.status, e.duration_ms);
            tsv(&mut text, e.client_ip.as_deref());
            text.push('\t');
            tsv(&mut text, e.user_agent.as_deref());
            text.push('\t');
            tsv(
                &mut text,
                Some(&serde_json::to_string(&e.attributes).unwrap()),
            );
            text.push('\n');
        }
        let statement = format!("COPY {table} ({BARE_COLUMNS}) FROM STDIN");
        let mut copy = sqlx::postgres::PgPoolCopyExt::copy_in_raw(pool, &statement)
            .await
            .unwrap();
        copy.send(text.into_bytes()).await.unwrap();
        copy.finish().await.unwrap();
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn timed<F: std::future::Future>(future: F) -> (F::Output, Duration) {
    let started = Instant::now();
    let output = future.await;
    (output, started.elapsed())
}

async fn page_median(
    store: &dyn AuditStore,
    filter: &EventFilter,
    scope: &TenantScope,
    runs: usize,
) -> Duration {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (page, took) = timed(store.query(filter, scope, &PageRequest::default())).await;
        page.unwrap();
        samples.push(took);
    }
    median(samples)
}

/// Page 1 and page `deep` of a 50-row walk: the median over several walks of each page's time.
async fn walk(store: &dyn AuditStore, scope: &TenantScope, deep: usize) -> (Duration, Duration) {
    let filter = EventFilter::default();
    let mut cursor = None;
    let mut times = Vec::new();
    for _ in 1..=deep {
        let request = PageRequest {
            cursor: cursor.clone(),
            limit: Limit::new(50).unwrap(),
        };
        let (result, took) = timed(store.query(&filter, scope, &request)).await;
        let result = result.unwrap();
        times.push(took);
        cursor = result.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    // The first five pages against the last five reached (page `deep` on a large table).
    let last = times[times.len().saturating_sub(5)..].to_vec();
    times.truncate(5);
    (median(times), median(last))
}

struct Reads {
    filtered: Duration,
    page_1: Duration,
    page_deep: Duration,
    rare: Duration,
    substring: Duration,
}

async fn reads(store: &dyn AuditStore, now: DateTime<Utc>) -> Reads {
    let acme = TenantScope::only(["acme"]);
    let filtered = EventFilter {
        users: vec!["user-17".into()],
        categories: vec!["Model".into()],
        from: Some(now - chrono::Duration::days(30)),
        ..EventFilter::default()
    };
    let rare = EventFilter {
        users: vec!["rare-auditor".into()],
        ..EventFilter::default()
    };
    let substring = EventFilter {
        resource_name: Some("ouchpoint 77".into()),
        ..EventFilter::default()
    };
    let (page_1, page_deep) = walk(store, &acme, 10_000).await;
    Reads {
        filtered: page_median(store, &filtered, &acme, 101).await,
        page_1,
        page_deep,
        rare: page_median(store, &rare, &TenantScope::All, 21).await,
        substring: page_median(store, &substring, &TenantScope::All, 21).await,
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Inserts rows into the backend's bare table, the first at the given seq.
type BareInsert =
    Box<dyn Fn(Vec<AuditEvent>, i64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>;

struct Backend {
    name: &'static str,
    store: Arc<dyn AuditStore>,
    bare: BareInsert,
    analyze: Option<sqlx::PgPool>,
    schema: Option<String>,
}

async fn measure(backend: &Backend, existing: usize, measured: usize, now: DateTime<Utc>) {
    let name = backend.name;
    let total = existing + measured;
    let mut generator = Generator::new(42, total);
    eprintln!("[{name}] seeding {existing} events (store and bare table)");
    let seed_started = Instant::now();
    for from in (0..existing).step_by(100_000) {
        let to = (from + 100_000).min(existing);
        let chunk = events(&mut generator, from, to, total, now);
        (backend.bare)(chunk.clone(), from as i64 + 1).await;
        for batch in chunk.chunks(1000) {
            backend.store.append(batch).await.unwrap();
        }
        if from % 1_000_000 == 0 {
            eprintln!(
                "[{name}]   {to} after {:.0} s",
                seed_started.elapsed().as_secs_f64()
            );
        }
    }
    let more = events(&mut generator, existing, total, total, now);
    // Alternate bare and store in slices, so that both see the same machine.
    let mut bare_time = Duration::ZERO;
    let mut store_time = Duration::ZERO;
    for (slice, chunk) in more.chunks(20_000).enumerate() {
        let first = (existing + slice * 20_000) as i64 + 1;
        let ((), took) = timed((backend.bare)(chunk.to_vec(), first)).await;
        bare_time += took;
        let started = Instant::now();
        for batch in chunk.chunks(1000) {
            backend.store.append(batch).await.unwrap();
        }
        store_time += started.elapsed();
    }
    let bare_rate = measured as f64 / bare_time.as_secs_f64();
    let store_rate = measured as f64 / store_time.as_secs_f64();
    // Hashing alone: what the append computes for the chain, for the same events.
    let hashing_started = Instant::now();
    for batch in more.chunks(1000) {
        let digests = content_digests(batch);
        let _ = audit_store::ChainHead::EMPTY.extend_with(&digests);
    }
    let hashing = hashing_started.elapsed();
    println!(
        "| {name} | {existing} | {store_rate:.0} | {bare_rate:.0} | {:.2} | {:.1} % |",
        store_rate / bare_rate,
        100.0 * hashing.as_secs_f64() / store_time.as_secs_f64()
    );
    // AUDIT_BENCH_APPEND_ONLY=1 stops here (for profiling the append).
    if std::env::var("AUDIT_BENCH_APPEND_ONLY").is_ok_and(|v| v == "1") {
        return;
    }
    if backend.analyze.is_some() {
        let fresh = reads(&*backend.store, now).await;
        print_reads(&format!("{name}, right after the load"), &fresh);
    }
    if let (Some(pool), Some(schema)) = (&backend.analyze, &backend.schema) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "VACUUM ANALYZE {schema}.audit_events"
        )))
        .execute(pool)
        .await
        .unwrap();
    }
    let settled = reads(&*backend.store, now).await;
    print_reads(
        &if backend.analyze.is_some() {
            format!("{name}, after VACUUM ANALYZE")
        } else {
            name.to_owned()
        },
        &settled,
    );
}

fn print_reads(label: &str, reads: &Reads) {
    println!(
        "|  reads: {label} | filtered first page {:.2} ms | page 1 {:.2} ms, page 10,000 {:.2} ms ({:.2}×) | 0.01 % filter {:.2} ms | substring {:.2} ms |",
        ms(reads.filtered),
        ms(reads.page_1),
        ms(reads.page_deep),
        reads.page_deep.as_secs_f64() / reads.page_1.as_secs_f64(),
        ms(reads.rare),
        ms(reads.substring),
    );
}

fn main() {
    let existing: usize = std::env::var("AUDIT_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let measured = 100_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let now = Utc::now();
        let dir = tempfile::tempdir().unwrap();
        println!("\nappend rate into a table already holding N events, batches of 1,000\n");
        println!("| backend | N | store events/s | bare table rows/s | store / bare | hashing share |");
        println!("|---|---:|---:|---:|---:|---:|");

        // AUDIT_BENCH_BACKENDS=postgres (or sqlite) measures only that one.
        let backends = std::env::var("AUDIT_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
        let sqlite = SqliteStore::connect(&format!("sqlite://{}", dir.path().join("audit.db").display()))
            .await
            .unwrap();
        let bare = Arc::new(std::sync::Mutex::new({
            let connection = rusqlite::Connection::open(dir.path().join("bare.db")).unwrap();
            connection
                .execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -65536; \
                     CREATE TABLE bare (seq INTEGER PRIMARY KEY, prev_hash BLOB, hash BLOB, id BLOB, \
                     occurred_at INTEGER, tenant TEXT, request_id TEXT, actor_id TEXT, actor_email TEXT, \
                     actor_name TEXT, category TEXT, action TEXT, outcome TEXT, reason TEXT, \
                     resource_id TEXT, resource_name TEXT, method TEXT, route TEXT, path TEXT, \
                     status INTEGER, duration_ms REAL, client_ip TEXT, user_agent TEXT, attributes TEXT)"
                )
                .unwrap();
            connection
        }));
        let backend = Backend {
            name: "SQLite",
            store: Arc::new(sqlite),
            bare: Box::new(move |events, first| {
                let bare = bare.clone();
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || {
                        let connection = bare.lock().unwrap();
                        sqlite_bare(&connection, &events, first);
                    })
                    .await
                    .unwrap();
                })
            }),
            analyze: None,
            schema: None,
        };
        if backends.contains("sqlite") {
            measure(&backend, existing, measured, now).await;
            // AUDIT_BENCH_KEEP=1 keeps the database file, for EXPLAIN with sqlite3.
            if std::env::var("AUDIT_BENCH_KEEP").is_ok_and(|v| v == "1") {
                eprintln!("kept {}", dir.keep().join("audit.db").display());
                return;
            }
        }

        if !backends.contains("postgres") {
            return;
        }
        if let Some(url) = testing::postgres_url("write_path") {
            let store: PostgresStore = testing::isolated_postgres_store(&url).await.unwrap();
            let schema = store.schema().to_owned();
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(&url)
                .await
                .unwrap();
            let table = format!("{schema}.bare");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {table} (seq BIGINT, prev_hash BYTEA, hash BYTEA, id UUID, \
                 occurred_at TIMESTAMPTZ, tenant TEXT, request_id TEXT, actor_id TEXT, actor_email TEXT, \
                 actor_name TEXT, category TEXT, action TEXT, outcome TEXT, reason TEXT, \
                 resource_id TEXT, resource_name TEXT, method TEXT, route TEXT, path TEXT, \
                 status INTEGER, duration_ms DOUBLE PRECISION, client_ip TEXT, user_agent TEXT, \
                 attributes JSONB)"
            )))
            .execute(&pool)
            .await
            .unwrap();
            let bare_pool = pool.clone();
            let backend = Backend {
                name: "PostgreSQL",
                store: Arc::new(store.clone()),
                bare: Box::new(move |events, first| {
                    let pool = bare_pool.clone();
                    let table = table.clone();
                    Box::pin(async move { postgres_bare(&pool, &table, &events, first).await })
                }),
                analyze: Some(pool.clone()),
                schema: Some(schema),
            };
            measure(&backend, existing, measured, now).await;
            // AUDIT_BENCH_KEEP=1 keeps the schema, for EXPLAIN with psql.
            if std::env::var("AUDIT_BENCH_KEEP").is_ok_and(|v| v == "1") {
                eprintln!("kept schema {}", store.schema());
            } else {
                testing::drop_postgres_schema(&store).await.unwrap();
            }
        }
    });
}
