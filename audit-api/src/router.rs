//! Building the router: shared state, the route table, and the builder a host mounts.

use std::sync::Arc;

use audit_store::{AuditStore, CheckpointSigner, ForwardingStatus};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use bytes::Bytes;

use crate::access::{AccessPolicy, Permission};
use crate::evidence;
use crate::forwarding;
use crate::handlers;
use crate::openapi;
use crate::page;
use crate::params::Endpoint;
use crate::self_audit::AuditSink;

/// What every handler reaches: the store, the host's policy, and the self-audit sink.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn AuditStore>,
    pub(crate) policy: Arc<dyn AccessPolicy>,
    pub(crate) sink: Arc<dyn AuditSink>,
    /// Signs export manifests; `None` makes `/export/manifest` answer 501.
    pub(crate) signer: Option<Arc<CheckpointSigner>>,
    /// What `/forwarding` reports: the host's forwarder, or the store's cursors.
    pub(crate) forwarding: Arc<dyn ForwardingStatus>,
    pub(crate) openapi_json: Bytes,
    /// How far `/events` totals and `/facets` counts are exact ([`AuditRouter::count_bound`]).
    pub(crate) count_bound: u64,
    /// Where the denial pages send a visitor to sign in ([`AuditRouter::sign_in_url`]).
    pub(crate) sign_in_url: Option<String>,
    /// Whether `{prefix}/` is routed to the page ([`AuditRouter::mount`]); if not, the page
    /// is served at the bare prefix, where plain `Router::nest` puts the `/` route.
    pub(crate) page_at_trailing_slash: bool,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// What a route returns, for the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Produces {
    Html,
    EventPage,
    Event,
    Facets,
    Histogram,
    Export,
    OpenApi,
    Checkpoint,
    Manifest,
    Forwarding,
}

/// One route of the router: the single table both the axum router and the OpenAPI
/// document are built from, so neither can list a route the other lacks.
pub(crate) struct RouteSpec {
    pub(crate) path: &'static str,
    pub(crate) operation_id: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) description: &'static str,
    pub(crate) permission: Permission,
    pub(crate) endpoint: Endpoint,
    pub(crate) produces: Produces,
    pub(crate) handler: fn() -> MethodRouter<AppState>,
}

/// How far `/events` totals and `/facets` counts are exact unless the host says otherwise
/// ([`AuditRouter::count_bound`]): past it a count reads "10000+", and counting costs at most
/// this many rows per count.
pub const DEFAULT_COUNT_BOUND: u64 = 10_000;

/// Every route, relative to wherever the host nests the router.
pub(crate) const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        path: "/",
        operation_id: "page",
        summary: "The Activity log web page",
        description: "HTML. A denied visitor gets a small HTML page saying why (401 or 403).",
        permission: Permission::View,
        endpoint: Endpoint::NoParameters,
        produces: Produces::Html,
        handler: || get(handlers::page),
    },
    RouteSpec {
        path: "/events",
        operation_id: "listEvents",
        summary: "One page of matching events, newest first",
        description: "AND between parameters, OR between repeated values of one parameter. \
                      Pass `next_cursor` back as `cursor`, with the same filters, for the next page. \
                      `total` is the number of matching events, exact up to a bound (10,000 by \
                      default): past it, `count` is the bound and `exact` is false (\"10000+\"); \
                      null when the store cannot count.",
        permission: Permission::View,
        endpoint: Endpoint::Events,
        produces: Produces::EventPage,
        handler: || get(handlers::list_events),
    },
    RouteSpec {
        path: "/events/{id}",
        operation_id: "getEvent",
        summary: "One event",
        description: "404 for an unknown id and for an event of a tenant the viewer may not see.",
        permission: Permission::View,
        endpoint: Endpoint::NoParameters,
        produces: Produces::Event,
        handler: || get(handlers::get_event),
    },
    RouteSpec {
        path: "/facets",
        operation_id: "getFacets",
        summary: "The values the viewer may filter on, with counts",
        description: "Distinct categories, actions, users and outcomes within the viewer's tenants. \
                      `counts` gives, per parameter (`category`, `action`, `status`, `user`) and \
                      value, how many events the given filters would match with that parameter \
                      set to that value alone, bounded like the `total` of `/events`; null when \
                      the store cannot count.",
        permission: Permission::View,
        endpoint: Endpoint::Facets,
        produces: Produces::Facets,
        handler: || get(handlers::facets),
    },
    RouteSpec {
        path: "/histogram",
        operation_id: "getHistogram",
        summary: "Allowed and denied events per hour or day",
        description: "The filters of `/events` plus `interval` (`hour` or `day`, default `day`). \
                      Bars are aligned to UTC and cover `from` to `to` (default: to now, from \
                      30 days or 48 hours before `to`), at most 1,000 bars (else a 400 on \
                      `interval`). Each bar's counts are bounded like the `total` of `/events`.",
        permission: Permission::View,
        endpoint: Endpoint::Histogram,
        produces: Produces::Histogram,
        handler: || get(crate::histogram::histogram),
    },
    RouteSpec {
        path: "/export",
        operation_id: "exportEvents",
        summary: "Download every matching event",
        description: "Streamed, no row cap, `Content-Disposition: attachment`. CSV cells starting \
                      with `=`, `+`, `-`, `@`, tab, CR or NUL are prefixed with `'`. A failure \
                      midway aborts the transfer (no terminating chunk); a JSON array is then \
                      left unclosed and NDJSON ends with an `{\"error\": ...}` line. \
                      Every export is itself recorded in the audit log.",
        permission: Permission::Export,
        endpoint: Endpoint::Export,
        produces: Produces::Export,
        handler: || get(handlers::export),
    },
    RouteSpec {
        path: "/export/manifest",
        operation_id: "getExportManifest",
        summary: "The signed manifest of an export",
        description: "Takes the parameters of `/export` plus `chain_head` (the `X-Audit-Chain-Head` \
                      of the download), re-runs that export on the server and answers its row count, \
                      SHA-256, chain positions and the latest checkpoint, signed with Ed25519 over \
                      `\"audit-export-manifest-v1\" ‖ 0x00 ‖ canonical JSON of every field but \
                      `signature`` (keys sorted at every level, compact). `audit verify-export FILE \
                      --manifest M --public-key K` checks a download against it. Not recorded as \
                      an export: no event content leaves. 501 when the host configured no signer.",
        permission: Permission::Export,
        endpoint: Endpoint::Export,
        produces: Produces::Manifest,
        handler: || get(evidence::export_manifest),
    },
    RouteSpec {
        path: "/checkpoint",
        operation_id: "getCheckpoint",
        summary: "The latest signed checkpoint",
        description: "The newest Ed25519-signed statement of the hash chain's head (sequence \
                      number and hash): verify it with the signer's public key and keep it \
                      somewhere the database's writers cannot reach, so deleting the newest \
                      events is detectable. 404 when no checkpoint was signed yet.",
        permission: Permission::View,
        endpoint: Endpoint::NoParameters,
        produces: Produces::Checkpoint,
        handler: || get(evidence::checkpoint),
    },
    RouteSpec {
        path: "/forwarding",
        operation_id: "getForwarding",
        summary: "How far the log has been forwarded, per sink",
        description: "One entry per forwarding sink (NATS JetStream, webhook, ...): its state \
                      (`forwarding`, `caught_up`, `retrying`, `halted`, `standby`, `stopped`, \
                      `unknown`), the lag in events and in seconds (how long the oldest \
                      undelivered event has waited), the instance holding its lease, and for a \
                      halted sink the refused batch and the sink's answer. A halted sink waits \
                      for the operator: `audit forward-retry --database URL --sink NAME`. \
                      501 when the store keeps no forwarding cursors.",
        permission: Permission::View,
        endpoint: Endpoint::NoParameters,
        produces: Produces::Forwarding,
        handler: || get(forwarding::forwarding),
    },
    RouteSpec {
        path: "/openapi.json",
        operation_id: "getOpenApi",
        summary: "This document",
        description: "OpenAPI 3.1 description of the router; paths are relative to its mount point.",
        permission: Permission::View,
        endpoint: Endpoint::NoParameters,
        produces: Produces::OpenApi,
        handler: || get(handlers::openapi),
    },
];

/// The audit log's router, ready for the host to nest.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_api::{Access, AuditRouter, Viewer};
/// use audit_store::{SqliteStore, TenantScope};
/// use axum::Router;
/// use http::request::Parts;
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// let policy = |request: &Parts| {
///     let is_admin = request.headers.get("x-role").is_some_and(|v| v == "auditor");
///     async move {
///         if is_admin {
///             Access::Viewer(Viewer::new(TenantScope::All).can_view(true).can_export(true))
///         } else {
///             Access::Unauthenticated
///         }
///     }
/// };
/// let app: Router = Router::new().nest("/admin/audit", AuditRouter::new(store, policy).into_router());
/// # let _ = app;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
pub struct AuditRouter {
    store: Arc<dyn AuditStore>,
    policy: Arc<dyn AccessPolicy>,
    sink: Option<Arc<dyn AuditSink>>,
    signer: Option<Arc<CheckpointSigner>>,
    forwarding: Option<Arc<dyn ForwardingStatus>>,
    count_bound: u64,
    sign_in_url: Option<String>,
}

impl std::fmt::Debug for AuditRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditRouter")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl AuditRouter {
    /// A router reading `store` and asking `policy` who may see what. Exports and denials
    /// are recorded by appending to `store` itself unless [`AuditRouter::sink`] says
    /// otherwise.
    pub fn new(store: impl AuditStore, policy: impl AccessPolicy) -> Self {
        AuditRouter {
            store: Arc::new(store),
            policy: Arc::new(policy),
            sink: None,
            signer: None,
            forwarding: None,
            count_bound: DEFAULT_COUNT_BOUND,
            sign_in_url: None,
        }
    }

    /// Like [`AuditRouter::new`] for a store the host already shares.
    pub fn from_shared(store: Arc<dyn AuditStore>, policy: impl AccessPolicy) -> Self {
        AuditRouter {
            store,
            policy: Arc::new(policy),
            sink: None,
            signer: None,
            forwarding: None,
            count_bound: DEFAULT_COUNT_BOUND,
            sign_in_url: None,
        }
    }

    /// Records the router's own events (exports, denials) through `sink`, for instance the
    /// batching recorder, instead of appending to the store directly.
    pub fn sink(mut self, sink: impl AuditSink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Signs the manifests of `GET /export/manifest` with `signer`, normally the key the
    /// store signs its checkpoints with, so one public key verifies both. Without a signer
    /// that route answers 501 `not_configured`.
    pub fn signer(mut self, signer: CheckpointSigner) -> Self {
        self.signer = Some(Arc::new(signer));
        self
    }

    /// Reports forwarding at `GET /forwarding` (and in the page's status line) from
    /// `status`, normally the handle of the `audit-forward` forwarder running in this
    /// process, which adds its live state and last error to what the database says.
    /// Without it the route reports the cursors stored in the database, written by
    /// whichever instance forwards.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use audit_api::{Access, AuditRouter};
    /// use audit_store::SqliteStore;
    /// use http::request::Parts;
    ///
    /// let store = SqliteStore::connect("sqlite::memory:").await?;
    /// let policy = |_: &Parts| async { Access::Unauthenticated };
    /// // Any `ForwardingStatus` works; `audit_forward::ForwarderHandle` is the usual one.
    /// let router = AuditRouter::new(store.clone(), policy).forwarding(store).into_router();
    /// # let _ = router;
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn forwarding(mut self, status: impl ForwardingStatus) -> Self {
        self.forwarding = Some(Arc::new(status));
        self
    }

    /// Counts matching events exactly up to `bound` (default [`DEFAULT_COUNT_BOUND`]) for
    /// the `total` of `/events` and the `counts` of `/facets`; past it a count says
    /// "`bound` or more". Each count reads at most `bound + 1` rows, so this bounds its cost.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use audit_api::{Access, AuditRouter};
    /// use audit_store::SqliteStore;
    /// use http::request::Parts;
    ///
    /// let store = SqliteStore::connect("sqlite::memory:").await?;
    /// let policy = |_: &Parts| async { Access::Unauthenticated };
    /// let router = AuditRouter::new(store, policy).count_bound(1_000).into_router();
    /// # let _ = router;
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn count_bound(mut self, bound: u64) -> Self {
        self.count_bound = bound;
        self
    }

    /// Links the page's "sign in" answers to `url`, the host's sign-in page: the 401 page a
    /// visitor who is not signed in gets offers "Sign in", the 403 page "Sign in as someone
    /// else", and the open page says the same when a session ends. Without it they only say
    /// to sign in.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use audit_api::{Access, AuditRouter};
    /// use audit_store::SqliteStore;
    /// use http::request::Parts;
    ///
    /// let store = SqliteStore::connect("sqlite::memory:").await?;
    /// let policy = |_: &Parts| async { Access::Unauthenticated };
    /// let router = AuditRouter::new(store, policy).sign_in_url("/login").into_router();
    /// # let _ = router;
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn sign_in_url(mut self, url: impl Into<String>) -> Self {
        self.sign_in_url = Some(url.into());
        self
    }

    /// Like [`AuditRouter::forwarding`] for a status source the host already shares.
    pub fn forwarding_shared(mut self, status: Arc<dyn ForwardingStatus>) -> Self {
        self.forwarding = Some(status);
        self
    }

    /// The axum router to nest under a prefix. Where the page lives depends on how:
    ///
    /// - `.nest_service("/admin/audit", router)` (recommended, and it works in a host
    ///   `Router<S>` of any state): the page at `/admin/audit/`, the bare `/admin/audit`
    ///   redirecting there (308), exactly like [`AuditRouter::mount`].
    /// - `.nest("/admin/audit", router)`: axum 0.8 routes the router's `/` to the bare
    ///   prefix only and never passes `/admin/audit/` to a nested router (the host's
    ///   fallback answers it, normally an empty 404). So the page is served at the bare
    ///   prefix, with a `<base href="/admin/audit/">` that makes its relative links resolve
    ///   under the prefix.
    ///
    /// Everything else (`/admin/audit/events` and so on) is the same either way.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use audit_api::{Access, AuditRouter};
    /// use audit_store::SqliteStore;
    /// use http::request::Parts;
    ///
    /// let store = SqliteStore::connect("sqlite::memory:").await?;
    /// let nobody = |_: &Parts| async { Access::Unauthenticated };
    /// let app: axum::Router =
    ///     axum::Router::new().nest_service("/admin/audit", AuditRouter::new(store, nobody).into_router());
    /// # let _ = app;
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn into_router(self) -> Router {
        let (routes, state) = self.build(false);
        routes
            .with_state(state)
            .layer(axum::middleware::map_response(harden))
    }

    /// The router mounted at `prefix`, to `merge` into the host's app: the page at
    /// `{prefix}/`, a permanent redirect from the bare `{prefix}` to it, and the API under
    /// `{prefix}/events` and so on.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use audit_api::{Access, AuditRouter};
    /// use audit_store::SqliteStore;
    /// use http::request::Parts;
    ///
    /// let store = SqliteStore::connect("sqlite::memory:").await?;
    /// let policy = |_: &Parts| async { Access::Unauthenticated };
    /// let app = axum::Router::new().merge(AuditRouter::new(store, policy).mount("/admin/audit"));
    /// # let _ = app;
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn mount(self, prefix: &str) -> Router {
        let prefix = prefix.trim_end_matches('/');
        let (routes, state) = self.build(true);
        let mounted = if prefix.is_empty() {
            routes
        } else {
            let prefix = if prefix.starts_with('/') {
                prefix.to_owned()
            } else {
                format!("/{prefix}")
            };
            Router::new()
                .nest(&prefix, routes)
                .route(&format!("{prefix}/"), get(handlers::page))
        };
        mounted
            .with_state(state)
            .layer(axum::middleware::map_response(harden))
    }

    fn build(self, page_at_trailing_slash: bool) -> (Router<AppState>, AppState) {
        let sink = self.sink.unwrap_or_else(|| {
            let store = Arc::clone(&self.store);
            Arc::new(store) as Arc<dyn AuditSink>
        });
        let forwarding = self.forwarding.unwrap_or_else(|| {
            let store = Arc::clone(&self.store);
            Arc::new(store) as Arc<dyn ForwardingStatus>
        });
        let state = AppState(Arc::new(Inner {
            forwarding,
            store: self.store,
            policy: self.policy,
            sink,
            signer: self.signer,
            openapi_json: openapi::document_json(),
            count_bound: self.count_bound,
            sign_in_url: self.sign_in_url,
            page_at_trailing_slash,
        }));
        let mut router = Router::new();
        for route in ROUTES {
            router = router.route(route.path, (route.handler)());
        }
        // The page's own files: not part of the API, so kept out of `ROUTES` and the OpenAPI
        // document. The page refers to them as `assets/...`, relative to its URL.
        router = router
            .route("/assets/app.js", get(page::app_js))
            .route("/assets/app.css", get(page::app_css))
            .route("/assets/icon.svg", get(page::icon_svg))
            .route("/assets/forwarding.js", get(page::forwarding_js));
        (router.fallback(handlers::not_found), state)
    }
}

/// The router for `store` and `policy`: shorthand for
/// `AuditRouter::new(store, policy).into_router()`.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_api::Access;
/// use audit_store::SqliteStore;
/// use http::request::Parts;
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// let nobody = |_: &Parts| async { Access::Unauthenticated };
/// let app = axum::Router::new().nest("/audit", audit_api::router(store, nobody));
/// # let _ = app;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
pub fn router(store: impl AuditStore, policy: impl AccessPolicy) -> Router {
    AuditRouter::new(store, policy).into_router()
}

/// Audit data must not linger in shared caches, and no response may be sniffed into
/// another type.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
