//! A small host app: routes of each kind, the host's own auth inside the audit layer, and a
//! counter proving whether handlers ran.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use audit_layer::{Actor, AuditContext, AuditLayer};
use audit_store::Action;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;

#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The host's auth: `Bearer alice-token` may do anything, `carol-token` is known but may not
/// mutate (403), anything else is 401. Runs inside the audit layer (`route_layer`).
async fn require_login(audit: AuditContext, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match token {
        Some("alice-token") => {
            audit.set_actor(
                Actor::id("alice")
                    .email("alice@acme.test")
                    .name("Alice")
                    .tenant("acme"),
            );
            next.run(request).await
        }
        Some("carol-token") => {
            audit.set_actor(Actor::id("carol").email("carol@acme.test").tenant("acme"));
            if request.method() == Method::GET {
                return next.run(request).await;
            }
            audit.set_reason("carol may not change anything");
            StatusCode::FORBIDDEN.into_response()
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn create_rule(
    State(calls): State<Calls>,
    audit: AuditContext,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    calls.hit();
    let name = body["name"].as_str().unwrap_or("unnamed").to_owned();
    audit.set_resource_name(&name);
    audit.set_attribute("api_key", "should-not-be-stored");
    (
        StatusCode::CREATED,
        [(header::LOCATION, "/api/dataset-rules/r-77")],
        Json(json!({"id": "r-77", "name": name})),
    )
}

async fn update_rule(
    State(calls): State<Calls>,
    audit: AuditContext,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    calls.hit();
    audit.set_resource_name("Rule one");
    audit.record_change("name", "Rule one", body["name"].clone());
    audit.record_change("password", "old-secret", "new-secret");
    audit.set_attribute(
        "connection",
        json!({"host": "db", "accessToken": "tok-123", "nested": [{"client_secret": "s"}]}),
    );
    Json(json!({"id": id}))
}

async fn counted(State(calls): State<Calls>) -> &'static str {
    calls.hit();
    "ok"
}

/// A read handler that still takes the context (it is detached: reads are not recorded).
async fn read_with_context(State(calls): State<Calls>, audit: AuditContext) -> &'static str {
    calls.hit();
    audit.set_attribute("ignored", true);
    "ok"
}

async fn slow(State(calls): State<Calls>) -> &'static str {
    calls.hit();
    tokio::time::sleep(Duration::from_secs(30)).await;
    "late"
}

async fn panics(State(calls): State<Calls>) -> &'static str {
    calls.hit();
    panic!("handler bug");
}

async fn denied_by_handler(State(calls): State<Calls>, audit: AuditContext) -> StatusCode {
    calls.hit();
    audit.deny("quota exceeded");
    StatusCode::OK
}

async fn overridden(State(calls): State<Calls>, audit: AuditContext) -> StatusCode {
    calls.hit();
    audit.set_category("Plan");
    audit.set_action(Action::custom("change_model").unwrap());
    audit.set_tenant("globex");
    audit.set_resource_id("p-9");
    StatusCode::NO_CONTENT
}

async fn dry_run(State(calls): State<Calls>, audit: AuditContext) -> StatusCode {
    calls.hit();
    audit.skip();
    StatusCode::NO_CONTENT
}

/// The standard rules of the test app.
pub fn rules(layer: AuditLayer) -> AuditLayer {
    layer
        .rule_with(
            Method::POST,
            "/api/models/{model_id}/versions/{version}/train",
            audit_layer::Rule::new("Model", Action::Train).resource_param("model_id"),
        )
        .rule(
            Method::GET,
            "/api/models/{id}/metadata",
            "Model",
            Action::Download,
        )
        .skip(Method::POST, "/api/preview")
        .category("/api/harmonization/sync", "Data Harmonization")
}

/// The app with the host's auth inside `layer`, and a panic catcher inside both.
pub fn app(layer: AuditLayer, calls: Calls) -> Router {
    Router::new()
        .route("/api/dataset-rules", post(create_rule).get(counted))
        .route(
            "/api/dataset-rules/{id}",
            put(update_rule).delete(counted).get(read_with_context),
        )
        .route(
            "/api/models/{model_id}/versions/{version}/train",
            post(counted),
        )
        .route("/api/models/{id}/metadata", get(counted))
        .route("/api/preview", post(counted))
        .route("/api/harmonization/sync", post(counted))
        .route("/api/slow", post(slow))
        .route("/api/panic", post(panics))
        .route("/api/quota", post(denied_by_handler))
        .route("/api/plans/{id}/model", put(overridden))
        .route("/api/dry-run", post(dry_run))
        .route_layer(middleware::from_fn(require_login))
        .layer(CatchPanicLayer::new())
        .layer(layer)
        .with_state(calls)
}

/// A request as alice from 203.0.113.9.
pub fn request(method: Method, uri: &str) -> http::request::Builder {
    request_as("alice-token", method, uri)
}

/// A request bearing `token` from 203.0.113.9.
pub fn request_as(token: &str, method: Method, uri: &str) -> http::request::Builder {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .extension(ConnectInfo(SocketAddr::from(([203, 0, 113, 9], 40000))))
}

pub async fn send(app: &Router, request: http::Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

pub fn json_body(value: Value) -> Body {
    Body::from(value.to_string())
}
