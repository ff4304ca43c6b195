//! The layer: configuration shared (through one `Arc`) by every route it wraps.

use std::sync::Arc;

use audit_store::{Action, Recorder};
use http::{HeaderName, Method};
use tower::Layer;

use crate::actor::ActorResolver;
use crate::classify::{Rule, Rules};
use crate::client_ip::TrustedProxies;
use crate::redact::Redactor;
use crate::request_id::DEFAULT_REQUEST_ID_HEADER;
use crate::service::AuditService;

/// The default longest user agent stored, in bytes.
pub const DEFAULT_MAX_USER_AGENT_LEN: usize = 512;

#[derive(Clone)]
pub(crate) struct LayerConfig {
    pub(crate) recorder: Recorder,
    pub(crate) rules: Rules,
    pub(crate) request_id_header: HeaderName,
    pub(crate) proxies: TrustedProxies,
    pub(crate) redactor: Redactor,
    pub(crate) resolver: Option<Arc<dyn ActorResolver>>,
    pub(crate) max_user_agent_len: usize,
}

/// Records an audit event for every mutating request of the routes it wraps.
///
/// Add it with [`axum::Router::layer`] (not `route_layer`, and after the routes), so it sees
/// the matched route and path parameters and wraps the host's own auth middleware (added
/// with `route_layer`): requests that middleware rejects are recorded as denied, with
/// whatever actor it set on the [`AuditContext`](crate::AuditContext).
///
/// What is recorded: `POST` (create), `PUT`/`PATCH` (update) and `DELETE` (delete) with a
/// category derived from the route ([`derive_category`](crate::derive_category)), unless a
/// rule says otherwise; `GET`, `HEAD` and `OPTIONS` only when a rule names them. Requests no
/// route matched (404s) are not recorded.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_layer::AuditLayer;
/// use audit_store::{Action, Recorder, SqliteStore};
/// use axum::{Router, routing::{get, post}};
/// use http::Method;
///
/// let recorder = Recorder::builder(SqliteStore::connect("sqlite::memory:").await?).start()?;
/// let audit = AuditLayer::new(recorder.clone())
///     .rule(Method::POST, "/api/models/{id}/train", "Model", Action::Train)
///     .rule(Method::GET, "/api/models/{id}/metadata", "Model", Action::Download)
///     .skip(Method::POST, "/api/preview");
///
/// let routes = [
///     (Method::POST, "/api/models"),
///     (Method::POST, "/api/models/{id}/train"),
///     (Method::POST, "/api/preview"),
/// ];
/// // A host's test can assert that no mutating route relies on the defaults:
/// assert_eq!(audit.unruled_routes(routes.iter().cloned()), vec![(Method::POST, "/api/models".to_owned())]);
///
/// let app: Router = Router::new()
///     .route("/api/models", post(|| async { "created" }))
///     .route("/api/models/{id}/train", post(|| async { "training" }))
///     .route("/api/models/{id}/metadata", get(|| async { "{}" }))
///     .layer(audit);
/// # drop(app);
/// // ... serve; after axum's graceful shutdown:
/// recorder.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct AuditLayer {
    config: Arc<LayerConfig>,
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer")
            .field("recorder", &self.config.recorder)
            .field("rules", &self.config.rules)
            .field("request_id_header", &self.config.request_id_header)
            .field("trusted_proxies", &self.config.proxies)
            .field("has_actor_resolver", &self.config.resolver.is_some())
            .finish()
    }
}

impl AuditLayer {
    /// A layer handing its events to `recorder`.
    pub fn new(recorder: Recorder) -> Self {
        Self {
            config: Arc::new(LayerConfig {
                recorder,
                rules: Rules::default(),
                request_id_header: DEFAULT_REQUEST_ID_HEADER,
                proxies: TrustedProxies::none(),
                redactor: Redactor::default(),
                resolver: None,
                max_user_agent_len: DEFAULT_MAX_USER_AGENT_LEN,
            }),
        }
    }

    fn config_mut(&mut self) -> &mut LayerConfig {
        Arc::make_mut(&mut self.config)
    }

    /// Records `method` on `route` (the pattern as written in `Router::route`, e.g.
    /// `/api/models/{id}/train`) as `action` on `category`; the resource id is the route's
    /// last path parameter.
    pub fn rule(
        self,
        method: Method,
        route: &str,
        category: impl Into<String>,
        action: Action,
    ) -> Self {
        self.rule_with(method, route, Rule::new(category, action))
    }

    /// Records `method` on `route` as `rule` says (e.g. naming the resource-id parameter).
    pub fn rule_with(mut self, method: Method, route: &str, rule: Rule) -> Self {
        self.config_mut().rules.add(method, route, rule);
        self
    }

    /// Never records `method` on `route`.
    pub fn skip(mut self, method: Method, route: &str) -> Self {
        self.config_mut().rules.skip(method, route);
        self
    }

    /// Never records any method on `route`.
    pub fn skip_route(mut self, route: &str) -> Self {
        self.config_mut().rules.skip_route(route);
        self
    }

    /// Uses `category` instead of the derived one for the default actions on `route`.
    pub fn category(mut self, route: &str, category: impl Into<String>) -> Self {
        self.config_mut().rules.set_category(route, category.into());
        self
    }

    /// Reads and writes the request ID in `header` instead of `x-request-id`.
    pub fn request_id_header(mut self, header: HeaderName) -> Self {
        self.config_mut().request_id_header = header;
        self
    }

    /// Believes forwarding headers from these proxies (default: none).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.config_mut().proxies = proxies;
        self
    }

    /// Redacts attribute keys as `redactor` says (default: [`Redactor::default`]).
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.config_mut().redactor = redactor;
        self
    }

    /// Resolves the actor from the request before it runs; the [`AuditContext`] wins
    /// where both know a field.
    ///
    /// [`AuditContext`]: crate::AuditContext
    pub fn actor_resolver(mut self, resolver: impl ActorResolver) -> Self {
        self.config_mut().resolver = Some(Arc::new(resolver));
        self
    }

    /// Stores at most `bytes` of the user agent (default 512), cut on a character boundary.
    pub fn max_user_agent_len(mut self, bytes: usize) -> Self {
        self.config_mut().max_user_agent_len = bytes;
        self
    }

    /// The recorder events go to.
    pub fn recorder(&self) -> &Recorder {
        &self.config.recorder
    }

    /// True when a request for `method` on `route` is recorded.
    pub fn is_audited(&self, method: &Method, route: &str) -> bool {
        self.config.rules.is_audited(method, route)
    }

    /// The mutating (`POST`, `PUT`, `PATCH`, `DELETE`) routes among `routes` that have
    /// neither an explicit rule nor an opt-out, so they would be recorded with the derived
    /// defaults. A host's test lists its routes and asserts this is empty.
    pub fn unruled_routes<'a>(
        &self,
        routes: impl IntoIterator<Item = (Method, &'a str)>,
    ) -> Vec<(Method, String)> {
        self.config.rules.unruled(routes)
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService::new(inner, self.config.clone())
    }
}
