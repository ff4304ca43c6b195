//! The log audits itself: every export and every denied access to the router becomes an
//! event in category `Audit Log`.

use std::net::SocketAddr;
use std::time::Instant;

use async_trait::async_trait;
use audit_store::{Action, Attributes, AuditEvent, AuditStore, HttpFacts};
use axum::extract::{ConnectInfo, MatchedPath, OriginalUri};
use http::StatusCode;
use http::request::Parts;

use crate::access::{Permission, Viewer};

/// The category of the events the router records about itself.
pub const AUDIT_LOG_CATEGORY: &str = "Audit Log";

/// Where the router writes the events it records about itself.
///
/// Every [`AuditStore`] is a sink that appends directly; a host running the batching
/// recorder passes a sink that enqueues instead (see [`crate::AuditRouter::sink`]).
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_api::AuditSink;
/// use audit_store::{Action, AuditEvent, SqliteStore};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// let event = AuditEvent::builder("Audit Log", Action::Download).internal("demo").build();
/// store.record(event).await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Records one event; `Ok` once it is durably accepted by the sink.
    async fn record(&self, event: AuditEvent) -> Result<(), SinkError>;
}

#[async_trait]
impl<S: AuditStore + ?Sized> AuditSink for S {
    async fn record(&self, event: AuditEvent) -> Result<(), SinkError> {
        self.append(std::slice::from_ref(&event))
            .await
            .map_err(SinkError::new)
    }
}

/// A sink could not record an event.
#[derive(Debug, thiserror::Error)]
#[error("could not record the audit event: {0}")]
pub struct SinkError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl SinkError {
    /// Wraps the underlying failure.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        SinkError(error.into())
    }
}

/// The longest user agent kept.
const MAX_USER_AGENT_CHARS: usize = 256;

/// What the router knows about a request for the events it records.
#[derive(Debug, Clone)]
pub(crate) struct RequestFacts {
    method: String,
    route: String,
    path: String,
    request_id: Option<String>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    started: Instant,
}

/// The incoming `x-request-id` if valid: 1–128 visible ASCII characters.
fn valid_request_id(parts: &Parts) -> Option<String> {
    let value = parts.headers.get("x-request-id")?.to_str().ok()?;
    let visible = value.bytes().all(|b| (0x21..=0x7e).contains(&b));
    (visible && (1..=128).contains(&value.len())).then(|| value.to_owned())
}

impl RequestFacts {
    pub(crate) fn of(parts: &Parts) -> Self {
        let path = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.path().to_owned(), |uri| uri.path().to_owned());
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| path.clone(), |matched| matched.as_str().to_owned());
        RequestFacts {
            method: parts.method.as_str().to_owned(),
            route,
            path,
            request_id: valid_request_id(parts),
            // Forwarding headers are the layer's business (it knows the trusted proxies);
            // the router only knows the peer address, when the host serves with ConnectInfo.
            client_ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip().to_string()),
            user_agent: parts
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
            started: Instant::now(),
        }
    }

    fn event(&self, action: Action, status: StatusCode, viewer: Option<&Viewer>) -> AuditEvent {
        let mut builder = AuditEvent::builder(AUDIT_LOG_CATEGORY, action)
            .http(HttpFacts::new(
                self.method.clone(),
                self.route.clone(),
                self.path.clone(),
                status.as_u16(),
            ))
            .duration_ms(self.started.elapsed().as_secs_f64() * 1000.0);
        if let Some(request_id) = &self.request_id {
            builder = builder.request_id(request_id.clone());
        }
        if let Some(ip) = &self.client_ip {
            builder = builder.client_ip(ip.clone());
        }
        if let Some(agent) = &self.user_agent {
            builder = builder.user_agent(agent.clone());
        }
        if let Some(viewer) = viewer {
            if let Some(id) = &viewer.id {
                builder = builder.actor_id(id.clone());
            }
            if let Some(email) = &viewer.email {
                builder = builder.actor_email(email.clone());
            }
            if let Some(name) = &viewer.name {
                builder = builder.actor_name(name.clone());
            }
            if let Some(tenant) = viewer.single_tenant() {
                builder = builder.tenant(tenant);
            }
        }
        builder.build()
    }
}

/// The event of a denied request: action `download` for `/export`, `view` otherwise.
pub(crate) fn denial_event(
    facts: &RequestFacts,
    viewer: Option<&Viewer>,
    needed: Permission,
    status: StatusCode,
    reason: &str,
) -> AuditEvent {
    let action = match needed {
        Permission::Export => Action::Download,
        Permission::View => Action::View,
    };
    let mut event = facts.event(action, status, viewer);
    event.outcome = audit_store::Outcome::Deny;
    event.reason = Some(reason.to_owned());
    event
}

/// The event of an export: action `download`, the filters, format and columns in
/// `attributes`, the file name as `resource_name`.
pub(crate) fn export_event(
    facts: &RequestFacts,
    viewer: &Viewer,
    file_name: &str,
    attributes: Attributes,
) -> AuditEvent {
    let mut event = facts.event(Action::Download, StatusCode::OK, Some(viewer));
    event.resource_name = Some(file_name.to_owned());
    event.attributes = attributes;
    event
}
