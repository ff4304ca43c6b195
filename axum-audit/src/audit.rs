//! [`Audit`]: one value holding the store, the running recorder and the signer, handing out
//! the layer and the router wired to them, and owning the lifecycle.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use audit_api::{AccessPolicy, AuditRouter, RecorderSink};
use audit_layer::AuditLayer;
use audit_store::{AuditStore, CheckpointSigner, Recorder};
use axum::Router;

use crate::builder::AuditBuilder;
use crate::error::Error;

/// The audit log of one service: the store, the recorder writing to it, and what a host
/// needs from them (the [`layer`](Audit::layer), the [`router`](Audit::router), and
/// [`serve`](Audit::serve), which stops in the right order).
///
/// Cheap to clone; clones share one store and one recorder.
///
/// ```
/// # async fn demo() -> Result<(), axum_audit::Error> {
/// use axum::{Router, http::Method, routing::post};
/// use axum_audit::{Access, Action, Audit};
///
/// let audit = Audit::connect("sqlite::memory:").await?;
/// let nobody = |_: &axum::http::request::Parts| async { Access::Unauthenticated };
/// let app: Router = Router::new()
///     .route("/api/models/{id}/train", post(|| async { "ok" }))
///     .nest_service("/admin/audit", audit.router(nobody))
///     .layer(audit.layer().rule(Method::POST, "/api/models/{id}/train", "Model", Action::Train));
/// # drop(app);
/// // audit.serve(listener, app).await?;  serves, and on SIGINT/SIGTERM drains the recorder
/// audit.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn AuditStore>,
    recorder: Recorder,
    signer: Option<CheckpointSigner>,
    pub(crate) request_drain_timeout: Duration,
}

impl fmt::Debug for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("store", &self.store)
            .field("recorder", &self.recorder)
            .field("signer", &self.signer.as_ref().map(|s| s.public_key_hex()))
            .finish()
    }
}

impl Audit {
    pub(crate) fn new(
        store: Arc<dyn AuditStore>,
        recorder: Recorder,
        signer: Option<CheckpointSigner>,
        request_drain_timeout: Duration,
    ) -> Self {
        Audit {
            store,
            recorder,
            signer,
            request_drain_timeout,
        }
    }

    /// Opens the database `url` names (`sqlite://audit.db`, `sqlite::memory:`,
    /// `postgres://user@host/db`), applies its migrations and starts the recorder with the
    /// default settings. [`Audit::builder`] has the options.
    pub async fn connect(url: &str) -> Result<Audit, Error> {
        AuditBuilder::default().connect(url).await
    }

    /// Like [`Audit::connect`] on the host's own SQLite pool.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite_pool(pool: sqlx::SqlitePool) -> Result<Audit, Error> {
        AuditBuilder::default().sqlite_pool(pool).await
    }

    /// Like [`Audit::connect`] on the host's own PostgreSQL pool, with the tables in
    /// `schema`.
    #[cfg(feature = "postgres")]
    pub async fn postgres_pool(pool: sqlx::PgPool, schema: &str) -> Result<Audit, Error> {
        AuditBuilder::default().postgres_pool(pool, schema).await
    }

    /// Options: recorder settings, delivery mode, signing, the PostgreSQL schema...
    pub fn builder() -> AuditBuilder {
        AuditBuilder::default()
    }

    /// A new audit layer writing through the recorder; add `rule`s and the other settings
    /// of [`AuditLayer`] to it, then `Router::layer` it outermost (after `route_layer` of
    /// the host's auth, so the requests that auth rejects are recorded too).
    pub fn layer(&self) -> AuditLayer {
        AuditLayer::new(self.recorder.clone())
    }

    /// The audit log's page and API, asking `policy` who may see what, recording exports
    /// and denials through the same recorder as the layer, and signing export manifests
    /// when a signer is configured. Nest it with
    /// `.nest_service("/admin/audit", audit.router(policy))`: the page at `/admin/audit/`,
    /// the bare prefix redirecting there. (`.nest` works too, but axum then routes only
    /// the bare prefix to it; see [`AuditRouter::into_router`].)
    pub fn router(&self, policy: impl AccessPolicy) -> Router {
        self.audit_router(policy).into_router()
    }

    /// The [`AuditRouter`] behind [`Audit::router`], already wired to this store, recorder
    /// and signer, for what the short form does not cover, such as
    /// `audit.audit_router(policy).mount("/admin/audit")` to `merge`.
    pub fn audit_router(&self, policy: impl AccessPolicy) -> AuditRouter {
        let router = AuditRouter::from_shared(Arc::clone(&self.store), policy)
            .sink(RecorderSink::new(self.recorder.clone()));
        match &self.signer {
            Some(signer) => router.signer(signer.clone()),
            None => router,
        }
    }

    /// The store, for queries, retention (`purge_before`) and verification.
    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.store
    }

    /// The recorder, for its metrics and for events that do not come from a request
    /// (`recorder().record(event)`).
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The key checkpoints and export manifests are signed with, if any.
    pub fn signer(&self) -> Option<&CheckpointSigner> {
        self.signer.as_ref()
    }

    /// Stops the recorder: refuses new events, writes every queued one, signs a final
    /// checkpoint when a signer is set, and checkpoints SQLite's write-ahead log into the
    /// database file, so the file is complete on its own. It takes at most the shutdown
    /// deadline ([`AuditBuilder::shutdown_timeout`], 30 s); what is unwritten then is spooled
    /// locally, replayed at the next start, and reported as
    /// [`ShutdownError::Spooled`](audit_store::ShutdownError::Spooled). Call it after the
    /// server stopped, if you do not use [`Audit::serve`] (which calls it for you). A host
    /// that drops every clone of its `Audit` (and of its layer) without it while events are
    /// queued gets an error in its log saying how many.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.recorder.shutdown().await?;
        Ok(())
    }
}
