//! An audit log for an axum service, in one dependency.
//!
//! [`Audit::connect`] opens the store a URL names (SQLite or PostgreSQL) and starts the
//! recorder; the [`Audit`] it returns hands out the tower layer that records every mutating
//! request ([`Audit::layer`]), the router serving the log's page and API
//! ([`Audit::router`]), and runs the server so that shutdown writes every queued event
//! ([`Audit::serve`]).
//!
//! ```no_run
//! use axum::{Router, http::Method, routing::post};
//! use axum_audit::{Action, Audit, ExtensionPolicy, TenantScope, Viewer};
//!
//! #[derive(Clone)]
//! struct User { id: String, tenant: String, auditor: bool } // what your auth middleware stores
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let audit = Audit::connect("sqlite://audit.db").await?;
//! let policy = ExtensionPolicy::new(|user: &User| {
//!     Viewer::new(TenantScope::only([&user.tenant])).id(&user.id).can_view(user.auditor).can_export(user.auditor)
//! });
//! let app = Router::new()
//!     .route("/api/models/{id}/train", post(|| async { "training" }))
//!     .nest_service("/admin/audit", audit.router(policy))
//!     // .route_layer(from_fn(your_auth)): it inserts `User` and sets the AuditContext actor
//!     .layer(audit.layer().rule(Method::POST, "/api/models/{id}/train", "Model", Action::Train));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! audit.serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! The pieces stay public, re-exported here: [`store`] (`audit-store`: events, queries,
//! backends, the recorder), [`layer`] (`audit-layer`) and [`api`] (`audit-api`), with the
//! types a host names most often at the crate root.
//!
//! Cargo features: `sqlite` (default) and `postgres` choose the backends compiled, for this
//! crate and every one below it, so `default-features = false, features = ["postgres"]`
//! builds no SQLite at all; `utoipa` adds [`openapi()`], the router's OpenAPI document for a
//! host documenting its own API with utoipa.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
mod builder;
mod error;
mod serve;

pub use audit::Audit;
pub use builder::{AuditBuilder, DEFAULT_REQUEST_DRAIN_TIMEOUT, POSTGRES_SPOOL_DIR_PREFIX};
pub use error::Error;

/// The event model, the store trait and backends, and the recorder (`audit-store`).
pub use audit_store as store;

/// The tower layer and the `AuditContext` handlers and middleware add detail through
/// (`audit-layer`).
pub use audit_layer as layer;

/// The mountable router: page, query, export, access policy (`audit-api`).
pub use audit_api as api;

/// The sqlx release the stores are built on, to build a pool for [`Audit::sqlite_pool`] or
/// [`Audit::postgres_pool`] without a version mismatch.
pub use sqlx;

#[cfg(feature = "utoipa")]
pub use audit_api::openapi;
pub use audit_api::{
    AUDIT_LOG_CATEGORY, Access, AccessPolicy, AuditRouter, ExtensionPolicy, Permission,
    RecorderSink, Viewer,
};
pub use audit_layer::{Actor, AuditContext, AuditLayer, TrustedProxies};
#[cfg(feature = "postgres")]
pub use audit_store::PostgresStore;
#[cfg(feature = "sqlite")]
pub use audit_store::SqliteStore;
pub use audit_store::{
    Action, AuditEvent, AuditStore, CheckpointSigner, DeliveryMode, EventFilter, Outcome,
    OverloadPolicy, Recorder, RecorderBuilder, TenantScope,
};
