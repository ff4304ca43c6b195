//! Shared by the integration tests: real stores, a test access policy, seeded events and a
//! small client over the real router.
#![allow(dead_code)] // each test binary uses a different part

use std::sync::Arc;

use audit_api::{Access, AuditRouter, Viewer};
use audit_store::{Action, AuditEvent, AuditStore, HttpFacts, Outcome, SqliteStore, TenantScope};
use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};
use http::request::Parts;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Where the tests mount the router.
pub const PREFIX: &str = "/admin/audit";

/// Runs one async test body against SQLite and, when configured, PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let store = $crate::common::sqlite_store().await;
                super::$name(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(url) = audit_store::testing::postgres_url(concat!(stringify!($name), "_postgres")) else {
                    return;
                };
                let store = audit_store::testing::isolated_postgres_store(&url).await.unwrap();
                super::$name(std::sync::Arc::new(store.clone())).await;
                audit_store::testing::drop_postgres_schema(&store).await.unwrap();
            }
        }
    )*};
}

/// A fresh SQLite store in a file of its own (the file is removed when the process ends).
pub async fn sqlite_store() -> Arc<dyn AuditStore> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    // Keep the directory for the life of the test process.
    std::mem::forget(dir);
    Arc::new(
        SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap(),
    )
}

/// The test policy: `x-test-user` names the viewer.
///
/// | user | tenants | view | export |
/// |---|---|---|---|
/// | alice | acme | yes | yes |
/// | erin | acme | yes | no |
/// | bob | acme | no | no |
/// | dave | globex | yes | yes |
/// | root | all | yes | yes |
/// | multi | acme, globex | yes | yes |
pub fn test_policy(request: &Parts) -> std::future::Ready<Access> {
    let user = request
        .headers
        .get("x-test-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let acme = || TenantScope::only(["acme"]);
    let access = match user {
        "alice" => Access::Viewer(
            Viewer::new(acme())
                .id("u-alice")
                .email("alice@acme.test")
                .name("Alice")
                .can_view(true)
                .can_export(true),
        ),
        "erin" => Access::Viewer(Viewer::new(acme()).email("erin@acme.test").can_view(true)),
        "bob" => Access::Viewer(Viewer::new(acme()).email("bob@acme.test")),
        "dave" => Access::Viewer(
            Viewer::new(TenantScope::only(["globex"]))
                .email("dave@globex.test")
                .can_view(true)
                .can_export(true),
        ),
        "root" => Access::Viewer(
            Viewer::new(TenantScope::All)
                .email("root@ops.test")
                .can_view(true)
                .can_export(true),
        ),
        "multi" => Access::Viewer(
            Viewer::new(TenantScope::only(["acme", "globex"]))
                .email("multi@ops.test")
                .can_view(true)
                .can_export(true),
        ),
        _ => Access::Unauthenticated,
    };
    std::future::ready(access)
}

/// The router nested under [`PREFIX`], over `store`.
pub fn app(store: Arc<dyn AuditStore>) -> Router {
    Router::new().nest(
        PREFIX,
        AuditRouter::from_shared(store, test_policy).into_router(),
    )
}

/// One answered request.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }
    /// The ids of a `/events` page.
    pub fn ids(&self) -> Vec<String> {
        assert_eq!(self.status, 200, "{}", self.text());
        self.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    }
    /// Asserts a 400 naming `parameter`, with the contract's body.
    pub fn assert_invalid(&self, parameter: &str) {
        assert_eq!(self.status, 400, "{}", self.text());
        let body = self.json();
        assert_eq!(body["error"], "invalid_parameter");
        assert_eq!(body["parameter"], parameter, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// `GET PREFIX + path` as `user` (None: anonymous), body fully read.
pub async fn get(app: &Router, user: Option<&str>, path: &str) -> Answer {
    let mut request = Request::get(format!("{PREFIX}{path}"));
    if let Some(user) = user {
        request = request.header("x-test-user", user);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A fixed base time, so dates in tests are stable.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
}

/// A realistic event at `base_time() - minutes_ago`.
pub fn event(minutes_ago: i64, tenant: Option<&str>, category: &str, action: Action) -> AuditEvent {
    let mut builder = AuditEvent::builder(category, action)
        .occurred_at(base_time() - Duration::minutes(minutes_ago))
        .http(HttpFacts::new(
            "POST",
            "/api/things/{id}",
            "/api/things/1",
            200,
        ))
        .duration_ms(3.5);
    if let Some(tenant) = tenant {
        builder = builder.tenant(tenant);
    }
    builder.build()
}

/// The seeded events, by name, to compare answers against.
pub struct Seeded {
    pub all: Vec<AuditEvent>,
}

impl Seeded {
    /// The ids of the events matching `keep`, newest first (the API's order).
    pub fn ids(&self, keep: impl Fn(&AuditEvent) -> bool) -> Vec<String> {
        let mut matching: Vec<&AuditEvent> = self.all.iter().filter(|e| keep(e)).collect();
        matching.sort_by_key(|e| std::cmp::Reverse((e.occurred_at, e.id)));
        matching.iter().map(|e| e.id.to_string()).collect()
    }
}

/// A small varied data set across two tenants plus tenantless events.
pub async fn seed(store: &Arc<dyn AuditStore>) -> Seeded {
    let mut all = Vec::new();
    let users = [
        ("u-alice", "alice@acme.test"),
        ("u-bob", "Bob@Acme.test"),
        ("u-dave", "dave@globex.test"),
    ];
    let categories = ["Model", "Dataset Rule", "Field", "Plan"];
    let actions = [
        Action::Create,
        Action::Update,
        Action::Train,
        Action::Delete,
    ];
    for i in 0..40i64 {
        let tenant = match i % 5 {
            0..=2 => Some("acme"),
            3 => Some("globex"),
            _ => None,
        };
        let (actor_id, email) = users[(i % 3) as usize];
        let index = usize::try_from(i).unwrap();
        let mut e = event(
            i * 60,
            tenant,
            categories[index % 4],
            actions[(index / 4) % 4].clone(),
        );
        e.actor_id = Some(actor_id.into());
        e.actor_email = Some(email.into());
        e.request_id = format!("req-{i}");
        e.resource_id = Some(format!("res-{}", i % 7));
        e.resource_name = Some(if i % 2 == 0 {
            format!("Churn Model {i}")
        } else {
            format!("weekly plan {i}")
        });
        if i % 6 == 0 {
            e.outcome = Outcome::Deny;
            e.reason = Some("forbidden".into());
        }
        e.attributes.insert("index".into(), i.into());
        all.push(e);
    }
    store.append(&all).await.unwrap();
    // Keep the events as the store returns them, with their place in the hash chain.
    let mut stored = Vec::with_capacity(all.len());
    for event in &all {
        stored.push(
            store
                .get(event.id, &TenantScope::All)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    Seeded { all: stored }
}
