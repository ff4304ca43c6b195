//! What a bounded count (`AuditStore::count`, the `/events` total and the `/facets` counts)
//! costs beside the page it describes: seeds 200,000 varied events into a SQLite file (and
//! into PostgreSQL when `AUDIT_TEST_POSTGRES_URL` is set), then times, per filter, the first
//! page of 100 and the count bounded at 10,000, best of five.
//! `cargo run --release -p audit-store --features postgres,testing --example count_profile`.

use std::time::Instant;

use audit_store::{
    Action, AuditEvent, AuditStore, EventFilter, HttpFacts, Limit, Outcome, PageRequest,
    SqliteStore, TenantScope,
};

const EVENTS: i64 = 200_000;
const BOUND: u64 = 10_000;

fn events() -> Vec<AuditEvent> {
    let now = chrono::Utc::now();
    let categories = ["Model", "Dataset Rule", "Field", "Plan", "Conversion"];
    let actions = [
        Action::Create,
        Action::Update,
        Action::Train,
        Action::Delete,
    ];
    (0..EVENTS)
        .map(|i| {
            let n = usize::try_from(i).unwrap_or_default();
            let mut builder = AuditEvent::builder(categories[n % 5], actions[n / 5 % 4].clone())
                .occurred_at(now - chrono::Duration::seconds(EVENTS - i))
                .http(HttpFacts::new(
                    "POST",
                    "/api/x/{id}",
                    format!("/api/x/{i}"),
                    200,
                ))
                .tenant(if n % 3 == 0 { "globex" } else { "acme" })
                .actor_id(format!("user-{}", n % 50))
                .actor_email(format!("user{}@acme.test", n % 50))
                .resource((n % 5000).to_string(), format!("Resource {}", n % 5000));
            if n % 97 == 0 {
                builder = builder.outcome(Outcome::Deny);
            }
            builder.build()
        })
        .collect()
}

async fn profile(name: &str, store: &dyn AuditStore) -> Result<(), Box<dyn std::error::Error>> {
    let since = chrono::Utc::now() - chrono::Duration::hours(6);
    let filters: Vec<(&str, EventFilter, TenantScope)> = vec![
        ("no filter", EventFilter::default(), TenantScope::All),
        (
            "category (1 in 5)",
            EventFilter {
                categories: vec!["Model".into()],
                ..EventFilter::default()
            },
            TenantScope::All,
        ),
        (
            "denied (1 in 97), tenant acme",
            EventFilter {
                outcomes: vec![Outcome::Deny],
                ..EventFilter::default()
            },
            TenantScope::only(["acme"]),
        ),
        (
            "one user + category",
            EventFilter {
                users: vec!["user7@acme.test".into()],
                categories: vec!["Field".into()],
                ..EventFilter::default()
            },
            TenantScope::All,
        ),
        (
            "last 6 hours",
            EventFilter {
                from: Some(since),
                ..EventFilter::default()
            },
            TenantScope::All,
        ),
        (
            "resource name substring",
            EventFilter {
                resource_name: Some("resource 12".into()),
                ..EventFilter::default()
            },
            TenantScope::All,
        ),
    ];
    let page = PageRequest {
        limit: Limit::new(100)?,
        cursor: None,
    };
    for (label, filter, scope) in &filters {
        let (mut page_best, mut count_best) = (f64::MAX, f64::MAX);
        let mut total = None;
        for _ in 0..5 {
            let started = Instant::now();
            store.query(filter, scope, &page).await?;
            page_best = page_best.min(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            total = Some(store.count(filter, scope, BOUND).await?);
            count_best = count_best.min(started.elapsed().as_secs_f64() * 1000.0);
        }
        let total = total.map_or_else(String::new, |t| {
            format!("{}{}", t.count, if t.exact { "" } else { "+" })
        });
        println!(
            "{name:<10} {label:<32} page {page_best:>7.2} ms   count {count_best:>7.2} ms   total {total}"
        );
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events = events();
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("count.db").display()
    );
    let sqlite = SqliteStore::connect(&url).await?;
    for chunk in events.chunks(10_000) {
        sqlite.append(chunk).await?;
    }
    profile("sqlite", &sqlite).await?;
    if let Some(url) = audit_store::testing::postgres_url("count_profile") {
        let postgres = audit_store::testing::isolated_postgres_store(&url).await?;
        for chunk in events.chunks(10_000) {
            postgres.append(chunk).await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ANALYZE {}.audit_events",
            postgres.schema()
        )))
        .execute(postgres.pool())
        .await?;
        profile("postgres", &postgres).await?;
        // AUDIT_PROFILE_KEEP=1 keeps the schema, for EXPLAIN with psql.
        if std::env::var("AUDIT_PROFILE_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("kept schema {}", postgres.schema());
        } else {
            audit_store::testing::drop_postgres_schema(&postgres).await?;
        }
    }
    Ok(())
}
