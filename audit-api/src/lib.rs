//! The audit log's mountable axum router: filtered JSON query, detail, facets, streamed
//! CSV / JSON / NDJSON export, an OpenAPI document, and the place of the web page, all
//! behind an access policy the host supplies.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use audit_api::{Access, AuditRouter, Viewer};
//! use audit_store::{SqliteStore, TenantScope};
//! use axum::{Router, body::Body};
//! use http::{Request, request::Parts};
//! use tower::ServiceExt;
//!
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! let policy = |request: &Parts| {
//!     let auditor = request.headers.get("authorization").is_some_and(|v| v == "Bearer alice-token");
//!     async move {
//!         if auditor {
//!             Access::Viewer(
//!                 Viewer::new(TenantScope::only(["acme"]))
//!                     .email("alice@acme.test")
//!                     .can_view(true)
//!                     .can_export(true),
//!             )
//!         } else {
//!             Access::Unauthenticated
//!         }
//!     }
//! };
//! let app = Router::new().nest("/admin/audit", AuditRouter::new(store, policy).into_router());
//!
//! let response = app
//!     .clone()
//!     .oneshot(Request::get("/admin/audit/events?status=deny").header("authorization", "Bearer alice-token").body(Body::empty())?)
//!     .await?;
//! assert_eq!(response.status(), 200);
//! let response = app.oneshot(Request::get("/admin/audit/events").body(Body::empty())?).await?;
//! assert_eq!(response.status(), 401);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! See the crate's `ARCHITECTURE-section.md` for the data path, and [`export`] for how a
//! download streams and how a failure midway is signalled.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod access;
mod error;
mod evidence;
pub mod export;
mod forwarding;
mod guard;
mod handlers;
mod histogram;
pub mod manifest;
mod openapi;
mod page;
mod params;
mod router;
mod self_audit;

pub use access::{Access, AccessPolicy, ExtensionPolicy, Permission, Viewer};
pub use error::ApiError;
pub use export::{Column, ExportFormat};
#[cfg(feature = "utoipa")]
pub use openapi::openapi;
pub use params::{Endpoint, PARAMETERS, ParameterSpec, ValueKind};
pub use router::{AuditRouter, DEFAULT_COUNT_BOUND, router};
pub use self_audit::{AUDIT_LOG_CATEGORY, AuditSink, RecorderSink, SinkError, SinkSlot};
/// The utoipa release [`openapi()`] returns a document of (feature `utoipa`).
#[cfg(feature = "utoipa")]
pub use utoipa;
