//! A tower layer that records an audit event for every mutating request of an axum app.
//!
//! Wiring, in a host:
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use audit_layer::{Actor, AuditContext, AuditLayer, TrustedProxies};
//! use audit_store::{Action, Recorder, SqliteStore};
//! use axum::{Router, extract::Request, middleware::{self, Next}, response::Response, routing::post};
//! use http::{Method, StatusCode};
//!
//! // The host's own auth, placed *inside* the audit layer with `route_layer`: what it sets on
//! // the AuditContext is recorded even when it rejects the request.
//! async fn require_login(audit: AuditContext, request: Request, next: Next) -> Result<Response, StatusCode> {
//!     match request.headers().get("authorization").and_then(|v| v.to_str().ok()) {
//!         Some("Bearer alice-token") => {
//!             audit.set_actor(Actor::id("alice").email("alice@acme.test").tenant("acme"));
//!             Ok(next.run(request).await)
//!         }
//!         _ => Err(StatusCode::UNAUTHORIZED),
//!     }
//! }
//!
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! let recorder = Recorder::builder(store).start()?;
//! let app: Router = Router::new()
//!     .route("/api/models", post(|| async { StatusCode::CREATED }))
//!     .route("/api/models/{id}/train", post(|| async { "ok" }))
//!     .route_layer(middleware::from_fn(require_login))
//!     .layer(
//!         AuditLayer::new(recorder.clone())
//!             .rule(Method::POST, "/api/models/{id}/train", "Model", Action::Train)
//!             .trusted_proxies(TrustedProxies::new(["10.0.0.0/8"])?),
//!     );
//! # drop(app);
//! // axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
//! //     .with_graceful_shutdown(signal).await?;
//! recorder.shutdown().await?; // flushes every accepted event
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! Serve with `into_make_service_with_connect_info::<SocketAddr>()` so the client IP is
//! known. The layer follows tower-http's structure: [`AuditLayer`] → [`AuditService`] →
//! [`ResponseFuture`]; queueing, batching, retries and delivery modes belong to the
//! [`audit_store::Recorder`] it hands events to.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod actor;
mod capture;
mod classify;
mod client_ip;
mod context;
mod future;
mod layer;
mod redact;
mod request_id;
mod service;

pub use actor::{Actor, ActorResolver, RequestHead};
pub use classify::{Rule, derive_category};
pub use client_ip::{InvalidProxy, TrustedProxies};
pub use context::{AuditContext, MissingAuditLayer};
pub use future::ResponseFuture;
pub use layer::{AuditLayer, DEFAULT_MAX_USER_AGENT_LEN};
pub use redact::{DEFAULT_SECRET_WORDS, REDACTED, Redactor};
pub use request_id::{DEFAULT_REQUEST_ID_HEADER, MAX_REQUEST_ID_LEN, is_valid_request_id};
pub use service::AuditService;
