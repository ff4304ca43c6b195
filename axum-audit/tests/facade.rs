//! The facade end to end, as a host uses it: `Audit::connect`, the layer with rules, the
//! router behind the host's own auth with an `ExtensionPolicy`, `serve` over real TCP, and
//! what is in the store after the shutdown; on a SQLite file and on the real PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_audit::{
    Action, Actor, Audit, AuditContext, AuditEvent, AuditStore, EventFilter, ExtensionPolicy,
    Outcome, TenantScope, Viewer,
};
use serde_json::{Value, json};

/// What the host's auth middleware stores for a signed-in user.
#[derive(Clone)]
struct User {
    id: &'static str,
    tenant: &'static str,
    auditor: bool,
}

async fn require_login(
    audit: AuditContext,
    mut request: Request,
    next: Next,
) -> Result<Response, StatusCode> {
    let token = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok());
    let user = match token {
        Some("Bearer alice") => User {
            id: "alice",
            tenant: "acme",
            auditor: true,
        },
        Some("Bearer bob") => User {
            id: "bob",
            tenant: "acme",
            auditor: false,
        },
        _ => {
            audit.set_reason("no valid bearer token");
            return Err(StatusCode::UNAUTHORIZED);
        }
    };
    audit.set_actor(Actor::id(user.id).tenant(user.tenant));
    request.extensions_mut().insert(user);
    Ok(next.run(request).await)
}

async fn create_model(audit: AuditContext, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    audit.set_resource("m-1", body["name"].as_str().unwrap_or_default());
    (StatusCode::CREATED, Json(json!({"id": "m-1"})))
}

async fn assign_model(audit: AuditContext, Path(id): Path<String>) -> StatusCode {
    audit.set_resource_id(id);
    audit.deny("locked by a training run");
    StatusCode::CONFLICT
}

fn app(audit: &Audit) -> Router {
    let policy = ExtensionPolicy::new(|user: &User| {
        Viewer::new(TenantScope::only([user.tenant]))
            .id(user.id)
            .can_view(user.auditor)
            .can_export(user.auditor)
    });
    Router::new()
        .route("/api/models", post(create_model))
        .route(
            "/api/models/{id}/train",
            post(|| async { StatusCode::ACCEPTED }),
        )
        .route("/api/models/{id}/assign", post(assign_model))
        .nest_service("/admin/audit", audit.router(policy))
        .route_layer(from_fn(require_login))
        .layer(
            audit
                .layer()
                .rule(Method::POST, "/api/models", "Model", Action::Create)
                .rule(
                    Method::POST,
                    "/api/models/{id}/train",
                    "Model",
                    Action::Train,
                )
                .rule(
                    Method::POST,
                    "/api/models/{id}/assign",
                    "Model",
                    Action::custom("assign").unwrap(),
                ),
        )
}

/// Serves the facade's app, sends what a host's users would, stops the server the way a
/// signal would, and checks every event in the store.
async fn serve_record_and_drain(audit: Audit) -> Arc<dyn AuditStore> {
    let store = Arc::clone(audit.store());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = app(&audit);
    let server = tokio::spawn(audit.serve_with_shutdown(listener, app, async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let send = |method: Method, path: &str, token: Option<&str>| {
        let mut request = client.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
    };
    let created = send(Method::POST, "/api/models", Some("alice"))
        .json(&json!({"name": "Churn model"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let trained = send(Method::POST, "/api/models/m-1/train", Some("alice"));
    assert_eq!(trained.send().await.unwrap().status(), 202);
    let assigned = send(Method::POST, "/api/models/m-1/assign", Some("bob"));
    assert_eq!(assigned.send().await.unwrap().status(), 409);
    let anonymous = send(Method::POST, "/api/models/m-1/train", None);
    assert_eq!(anonymous.send().await.unwrap().status(), 401);

    // The page at the trailing slash, the bare prefix redirecting there, the API beside it.
    let bare = send(Method::GET, "/admin/audit", Some("alice"));
    let bare = bare.send().await.unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/admin/audit/");
    let page = send(Method::GET, "/admin/audit/", Some("alice"));
    let page = page.send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(page.headers().contains_key("content-security-policy"));
    // Signed in, but not an auditor: 403, recorded with who it was.
    let refused = send(Method::GET, "/admin/audit/events", Some("bob"));
    assert_eq!(refused.send().await.unwrap().status(), 403);
    let export = send(
        Method::GET,
        "/admin/audit/export?format=json",
        Some("alice"),
    );
    let export = export.send().await.unwrap();
    assert_eq!(export.status(), 200);
    let exported: Vec<Value> = export.json().await.unwrap();
    // Buffered delivery: how many the export saw depends on the writer's timing (the
    // store's check below is exact), but never an event outside alice's tenant.
    assert!(exported.iter().all(|event| event["tenant"] == "acme"));

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("serve returns after the signal")
        .unwrap()
        .unwrap();

    // Everything answered is in the store once `serve` returned: nothing left queued.
    let events = all_events(&*store).await;
    let summary: Vec<(String, String, Outcome, Option<String>)> = events
        .iter()
        .map(|e| {
            (
                e.category.clone(),
                e.action.to_string(),
                e.outcome,
                e.actor_id.clone(),
            )
        })
        .collect();
    let expected = [
        ("Model", "create", Outcome::Allow, Some("alice")),
        ("Model", "train", Outcome::Allow, Some("alice")),
        ("Model", "assign", Outcome::Deny, Some("bob")),
        ("Model", "train", Outcome::Deny, None),
        ("Audit Log", "view", Outcome::Deny, Some("bob")),
        ("Audit Log", "download", Outcome::Allow, Some("alice")),
    ];
    let expected: Vec<(String, String, Outcome, Option<String>)> = expected
        .iter()
        .map(|(c, a, o, who)| (c.to_string(), a.to_string(), *o, who.map(str::to_owned)))
        .collect();
    assert_eq!(summary, expected);
    let create = &events[0];
    assert_eq!(create.tenant.as_deref(), Some("acme"));
    assert_eq!(create.resource_name.as_deref(), Some("Churn model"));
    assert_eq!(create.status, 201);
    // Served with connect info: the peer address is the client IP.
    assert_eq!(create.client_ip.as_deref(), Some("127.0.0.1"));
    let assign = &events[2];
    assert_eq!(assign.reason.as_deref(), Some("locked by a training run"));
    assert_eq!(events[3].status, 401);
    assert_eq!(events[3].reason.as_deref(), Some("no valid bearer token"));
    assert_eq!(events[4].route, "/admin/audit/events");
    store
}

async fn all_events(store: &dyn AuditStore) -> Vec<AuditEvent> {
    let page = store
        .query(
            &EventFilter::default(),
            &TenantScope::All,
            &Default::default(),
        )
        .await
        .unwrap();
    let mut events = page.items;
    events.reverse(); // oldest first
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_from_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.db");
    let audit = Audit::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let store = serve_record_and_drain(audit).await;
    // The shutdown checkpointed the write-ahead log: it is empty, and the database file
    // alone, copied without it, holds every event.
    let wal = dir.path().join("audit.db-wal");
    let wal_len = std::fs::metadata(&wal).map_or(0, |meta| meta.len());
    assert_eq!(wal_len, 0, "{} still holds {wal_len} bytes", wal.display());
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(&file, copy.path().join("audit.db")).unwrap();
    let alone = axum_audit::SqliteStore::connect(&format!(
        "sqlite://{}",
        copy.path().join("audit.db").display()
    ))
    .await
    .unwrap();
    assert_eq!(all_events(&alone).await, all_events(&*store).await);
    assert_eq!(all_events(&alone).await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_from_a_url() {
    let Some(url) = audit_store::testing::postgres_url("facade_postgres_from_a_url") else {
        return;
    };
    let schema = format!("audit_facade_{}", uuid_suffix());
    let audit = Audit::builder()
        .schema(&schema)
        .connect(&url)
        .await
        .unwrap();
    serve_record_and_drain(audit).await;
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_own_pools() {
    let dir = tempfile::tempdir().unwrap();
    let options = axum_audit::sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("host.db"))
        .create_if_missing(true);
    let pool = axum_audit::sqlx::SqlitePool::connect_with(options)
        .await
        .unwrap();
    let sqlite = Audit::sqlite_pool(pool).await.unwrap();
    let mut audits = vec![sqlite];
    let mut schema = None;
    if let Some(url) = audit_store::testing::postgres_url("facade_the_hosts_own_pools") {
        let pool = axum_audit::sqlx::PgPool::connect(&url).await.unwrap();
        let name = format!("audit_facade_{}", uuid_suffix());
        audits.push(Audit::postgres_pool(pool, &name).await.unwrap());
        schema = Some((url, name));
    }
    for audit in audits {
        let event = AuditEvent::builder("Report", Action::custom("publish").unwrap())
            .internal("nightly-report")
            .build();
        audit.recorder().record(event).await.unwrap();
        audit.shutdown().await.unwrap();
        let events = all_events(&**audit.store()).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action.to_string(), "publish");
    }
    if let Some((url, name)) = schema {
        drop_schema(&url, &name).await;
    }
}

#[tokio::test]
async fn a_url_naming_no_backend_is_refused() {
    let error = Audit::connect("mysql://localhost/audit").await.unwrap_err();
    assert!(
        matches!(error, axum_audit::Error::UnsupportedUrl { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("sqlite://"), "{error}");
    let error = Audit::builder()
        .schema("Not An Identifier")
        .connect("postgres://127.0.0.1:1/none")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("schema"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_ends_does_not_hold_up_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Audit::builder()
        .request_drain_timeout(Duration::from_millis(300))
        .connect(&format!(
            "sqlite://{}",
            dir.path().join("audit.db").display()
        ))
        .await
        .unwrap();
    let app = Router::new()
        .route("/stuck", get(std::future::pending::<()>))
        .layer(audit.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(audit.serve_with_shutdown(listener, app, async {
        let _ = stopped.await;
    }));
    let stuck = tokio::spawn(reqwest::get(format!("http://{address}/stuck")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve gives up on the stuck request")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    stuck.abort();
}

fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}_{}", std::process::id())
}

async fn drop_schema(url: &str, schema: &str) {
    let pool = axum_audit::sqlx::PgPool::connect(url).await.unwrap();
    let statement = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    axum_audit::sqlx::query(axum_audit::sqlx::AssertSqlSafe(statement))
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_with_a_key_file_and_a_checkpoint_log() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit-signing.key");
    let log = dir.path().join("audit-checkpoints.ndjson");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let audit = Audit::builder()
        .signing_key_file(&key)
        .checkpoint_log(&log)
        .connect(&url)
        .await
        .unwrap();
    let public_key = audit.signer().unwrap().public_key_hex();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let event = AuditEvent::builder("Report", Action::Create)
        .internal("nightly")
        .build();
    audit.recorder().record(event).await.unwrap();
    audit.shutdown().await.unwrap();
    // The shutdown checkpoint, signed with the file's key, is in the store and in the log.
    let logged = audit_store::read_checkpoint_log(&log).unwrap();
    let last = logged.last().expect("a checkpoint was logged");
    assert_eq!(last.public_key, public_key);
    assert_eq!(last.seq, 1);
    let stored = audit.store().latest_checkpoint().await.unwrap().unwrap();
    assert_eq!(&stored, last);
    let report = audit_store::verify_chain(
        &**audit.store(),
        &audit_store::parse_public_key(&public_key).unwrap(),
    )
    .await
    .unwrap();
    assert!(report.is_intact(), "{report:?}");

    // The next start reads the same key rather than making a new one.
    let again = Audit::builder()
        .signing_key_file(&key)
        .connect(&url)
        .await
        .unwrap();
    assert_eq!(again.signer().unwrap().public_key_hex(), public_key);
    again.shutdown().await.unwrap();
}
