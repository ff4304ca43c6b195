//! The log audits itself: every export and every denied access to the router becomes an
//! event in category `Audit Log`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use audit_store::{Action, Attributes, AuditEvent, AuditStore, HttpFacts, Recorder};
use axum::extract::{ConnectInfo, MatchedPath, OriginalUri};
use http::StatusCode;
use http::request::Parts;

use crate::access::{Permission, Viewer};

/// The category of the events the router records about itself.
pub const AUDIT_LOG_CATEGORY: &str = "Audit Log";

/// Where the router writes the events it records about itself.
///
/// Every [`AuditStore`] is a sink that appends directly; a host running the batching
/// recorder passes [`RecorderSink`], which enqueues instead (see [`crate::AuditRouter::sink`]).
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

    /// Room for one event to be recorded later without waiting ([`SinkSlot::record`]).
    ///
    /// The router takes one before a download's first byte, refusing the download with 503
    /// `audit_unavailable` when the sink has none, and records the download's event in it
    /// when the stream ends, completely, by a failure or by the client going away, so the
    /// event can carry the rows, bytes and duration of the whole stream. The default slot
    /// records through [`AuditSink::record`] when it is used (a failure then is logged: the
    /// bytes are out); [`RecorderSink`] reserves capacity in the recorder's queue, so its
    /// slot cannot be refused for lack of room.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use audit_api::{AuditSink, RecorderSink};
    /// use audit_store::{Action, AuditEvent, Recorder, SqliteStore};
    ///
    /// let store = SqliteStore::connect("sqlite::memory:").await?;
    /// let recorder = Recorder::builder(store).start()?;
    /// let slot = Arc::new(RecorderSink::new(recorder.clone())).reserve().await?;
    /// let event = AuditEvent::builder("Audit Log", Action::Download).internal("demo").build();
    /// slot.record(event).await?;
    /// recorder.shutdown().await?;
    /// assert_eq!(recorder.metrics().recorded, 1);
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    async fn reserve(self: Arc<Self>) -> Result<Box<dyn SinkSlot>, SinkError> {
        Ok(Box::new(Deferred(self)))
    }
}

/// Room for one event in an [`AuditSink`], from [`AuditSink::reserve`].
#[async_trait]
pub trait SinkSlot: Send + 'static {
    /// Records `event` in the reserved room. A download's body awaits this before its last
    /// bytes, so the event is written by the time the file is complete; a body dropped early
    /// (the client went away) runs it on a background task.
    async fn record(self: Box<Self>, event: AuditEvent) -> Result<(), SinkError>;
}

/// The default slot: records through the sink when used.
struct Deferred<S: AuditSink + ?Sized>(Arc<S>);

#[async_trait]
impl<S: AuditSink + ?Sized> SinkSlot for Deferred<S> {
    async fn record(self: Box<Self>, event: AuditEvent) -> Result<(), SinkError> {
        self.0.record(event).await
    }
}

/// A slot in the recorder's queue.
struct Reserved(audit_store::Reservation);

#[async_trait]
impl SinkSlot for Reserved {
    async fn record(self: Box<Self>, event: AuditEvent) -> Result<(), SinkError> {
        self.0.submit(event).await.map_err(SinkError::new)
    }
}

#[async_trait]
impl<S: AuditStore + ?Sized> AuditSink for S {
    async fn record(&self, event: AuditEvent) -> Result<(), SinkError> {
        self.append(std::slice::from_ref(&event))
            .await
            .map_err(SinkError::new)
    }
}

/// A sink that hands the router's own events to the host's batching [`Recorder`], the
/// same one its [`AuditLayer`](https://docs.rs/audit-layer) writes through, so they share
/// its queue, retries, delivery mode and the drain on [`Recorder::shutdown`].
///
/// A newtype rather than an `AuditSink` impl on `Recorder` itself, which coherence forbids
/// next to the blanket impl for every [`AuditStore`].
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_api::{Access, AuditRouter, RecorderSink};
/// use audit_store::{Recorder, SqliteStore};
/// use http::request::Parts;
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// let recorder = Recorder::builder(store.clone()).start()?;
/// let nobody = |_: &Parts| async { Access::Unauthenticated };
/// let audit_log = AuditRouter::new(store, nobody)
///     .sink(RecorderSink::new(recorder.clone()))
///     .mount("/admin/audit");
/// # drop(audit_log);
/// recorder.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct RecorderSink(Recorder);

impl RecorderSink {
    /// A sink queueing events on `recorder`.
    pub fn new(recorder: Recorder) -> Self {
        RecorderSink(recorder)
    }

    /// The recorder events go to.
    pub fn recorder(&self) -> &Recorder {
        &self.0
    }
}

impl From<Recorder> for RecorderSink {
    fn from(recorder: Recorder) -> Self {
        RecorderSink(recorder)
    }
}

#[async_trait]
impl AuditSink for RecorderSink {
    /// Waits for room in the queue, queues the event and, in durable mode, waits for its
    /// commit; fails only once the recorder is shutting down (or a durable commit failed).
    async fn record(&self, event: AuditEvent) -> Result<(), SinkError> {
        self.0.record(event).await.map_err(SinkError::new)
    }

    /// Reserves capacity in the recorder's queue (waiting up to its admission wait); fails
    /// when the queue stays full or the recorder is shutting down.
    async fn reserve(self: Arc<Self>) -> Result<Box<dyn SinkSlot>, SinkError> {
        let reservation = self.0.reserve().await.map_err(SinkError::new)?;
        Ok(Box::new(Reserved(reservation)))
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
        // Under `Router::nest_service` the page's route is the outer `{prefix}/` followed by
        // the router's own `/`; a pattern never means `//`.
        let route = parts.extensions.get::<MatchedPath>().map_or_else(
            || path.clone(),
            |matched| matched.as_str().replace("//", "/"),
        );
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

    /// When the request arrived.
    pub(crate) fn started(&self) -> Instant {
        self.started
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
/// `attributes`, the file name as `resource_name`. Built when the export starts; the rows,
/// bytes and duration are added when its stream ends ([`crate::export::ExportRecord`]).
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

#[cfg(test)]
mod tests {
    use audit_store::{
        Action, AuditEvent, AuditStore, EventFilter, PageRequest, Recorder, SqliteStore,
        TenantScope,
    };

    use super::{AuditSink, RecorderSink};

    #[tokio::test]
    async fn recorder_sink_queues_on_the_recorder_and_shutdown_drains_it() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let recorder = Recorder::builder(store.clone()).start().unwrap();
        let sink = RecorderSink::new(recorder.clone());
        for n in 0..3 {
            let event = AuditEvent::builder(super::AUDIT_LOG_CATEGORY, Action::Download)
                .internal("sink-test")
                .resource_name(format!("export-{n}.csv"))
                .build();
            sink.record(event).await.unwrap();
        }
        recorder.shutdown().await.unwrap();
        assert_eq!(recorder.metrics().recorded, 3);
        let page = store
            .query(
                &EventFilter::default(),
                &TenantScope::All,
                &PageRequest::default(),
            )
            .await
            .unwrap();
        let mut names: Vec<_> = page
            .items
            .iter()
            .filter_map(|event| event.resource_name.clone())
            .collect();
        names.sort();
        assert_eq!(names, ["export-0.csv", "export-1.csv", "export-2.csv"]);

        // Once the recorder is shutting down the sink says so instead of losing the event.
        let late = AuditEvent::builder(super::AUDIT_LOG_CATEGORY, Action::View)
            .internal("sink-test")
            .build();
        assert!(sink.record(late).await.is_err());
    }
}
