//! Profiling aid: seeds a SQLite store and exports it repeatedly, so `perf record` sees
//! the export path alone. `cargo run --release -p audit-store --example export_profile`.

use audit_store::{
    Action, AuditEvent, AuditStore, EventFilter, HttpFacts, SqliteStore, TenantScope,
};
use futures_util::TryStreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("profile.db").display());
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
    for _ in 0..5 {
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
        let started = std::time::Instant::now();
        let rows = json_rows(store.writer_pool()).await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "  json rows: {rows} rows in {secs:.3} s: {:.0} rows/s",
            rows as f64 / secs
        );
    }
    Ok(())
}

/// Experiment: the same rows selected as one JSON object each.
#[allow(dead_code)]
pub async fn json_rows(pool: &sqlx::SqlitePool) -> Result<usize, sqlx::Error> {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Row {
        id: uuid::Uuid,
        occurred_at: i64,
        tenant: Option<String>,
        request_id: String,
        actor_id: Option<String>,
        actor_email: Option<String>,
        actor_name: Option<String>,
        category: String,
        action: String,
        outcome: String,
        reason: Option<String>,
        resource_id: Option<String>,
        resource_name: Option<String>,
        method: String,
        route: String,
        path: String,
        status: u16,
        duration_ms: f64,
        client_ip: Option<String>,
        user_agent: Option<String>,
        attributes: serde_json::Map<String, serde_json::Value>,
    }
    use sqlx::Row as _;
    let mut total = 0;
    let mut after: Option<(i64, Vec<u8>)> = None;
    loop {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT json_object('id', lower(hex(id)), 'occurred_at', occurred_at, 'tenant', tenant, 'request_id', request_id, 'actor_id', actor_id, 'actor_email', actor_email, 'actor_name', actor_name, 'category', category, 'action', action, 'outcome', outcome, 'reason', reason, 'resource_id', resource_id, 'resource_name', resource_name, 'method', method, 'route', route, 'path', path, 'status', status, 'duration_ms', duration_ms, 'client_ip', client_ip, 'user_agent', user_agent, 'attributes', json(attributes)), occurred_at, id FROM audit_events WHERE 1 = 1",
        );
        if let Some((t, id)) = &after {
            qb.push(" AND (occurred_at, id) < (")
                .push_bind(*t)
                .push(", ")
                .push_bind(id.clone())
                .push(")");
        }
        qb.push(" ORDER BY occurred_at DESC, id DESC LIMIT 2000");
        let rows = qb.build().fetch_all(pool).await?;
        for row in &rows {
            let text: &str = row.try_get(0)?;
            let parsed: Row =
                serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            total += usize::from(parsed.status > 0);
        }
        if rows.len() < 2000 {
            return Ok(total);
        }
        let last = rows.last().expect("non-empty");
        after = Some((last.try_get(1)?, last.try_get(2)?));
    }
}
