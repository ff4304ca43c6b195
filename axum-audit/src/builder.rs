//! [`AuditBuilder`]: the options of [`Audit`], and how a store is opened from a URL or a pool.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use audit_store::{
    AuditStore, CheckpointPublisher, CheckpointSigner, DeliveryMode, OverloadPolicy, Recorder,
    RecorderBuilder,
};

use crate::audit::Audit;
use crate::error::Error;

/// How long [`Audit::serve`] lets requests in flight finish after the shutdown signal,
/// unless [`AuditBuilder::request_drain_timeout`] says otherwise.
pub const DEFAULT_REQUEST_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

type RecorderSettings = Box<dyn FnOnce(RecorderBuilder) -> RecorderBuilder + Send>;

/// The backend a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `sqlite:` URLs (`sqlite://audit.db`, `sqlite::memory:`) and `postgres://` /
    /// `postgresql://` URLs; anything else is refused rather than guessed.
    pub(crate) fn of_url(url: &str) -> Result<Backend, Error> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("sqlite") => Ok(Backend::Sqlite),
            Some("postgres" | "postgresql") => Ok(Backend::Postgres),
            _ => Err(Error::UnsupportedUrl {
                url: url.to_owned(),
            }),
        }
    }
}

/// Options for [`Audit`], then one call that opens the store and starts the recorder.
///
/// ```
/// # async fn demo() -> Result<(), axum_audit::Error> {
/// use std::time::Duration;
/// use axum_audit::{Audit, DeliveryMode};
///
/// let audit = Audit::builder()
///     .delivery(DeliveryMode::Durable)
///     .recorder(|recorder| recorder.max_queue_events(50_000).admission_wait(Duration::from_secs(1)))
///     .connect("sqlite::memory:")
///     .await?;
/// assert_eq!(audit.recorder().config().delivery, DeliveryMode::Durable);
/// audit.shutdown().await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[must_use = "an audit builder does nothing until connected"]
pub struct AuditBuilder {
    recorder: Vec<RecorderSettings>,
    signer: Option<CheckpointSigner>,
    schema: Option<String>,
    request_drain_timeout: Duration,
}

impl fmt::Debug for AuditBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditBuilder")
            .field("recorder_settings", &self.recorder.len())
            .field("signer", &self.signer.as_ref().map(|s| s.public_key_hex()))
            .field("schema", &self.schema)
            .field("request_drain_timeout", &self.request_drain_timeout)
            .finish()
    }
}

impl Default for AuditBuilder {
    fn default() -> Self {
        AuditBuilder {
            recorder: Vec::new(),
            signer: None,
            schema: None,
            request_drain_timeout: DEFAULT_REQUEST_DRAIN_TIMEOUT,
        }
    }
}

impl AuditBuilder {
    /// Any setting of the recorder ([`RecorderBuilder`]: queue bounds, batching, admission
    /// wait, retries, checkpoint interval...). Calls accumulate, in order.
    pub fn recorder(
        mut self,
        settings: impl FnOnce(RecorderBuilder) -> RecorderBuilder + Send + 'static,
    ) -> Self {
        self.recorder.push(Box::new(settings));
        self
    }

    /// Buffered (the default: responses never wait for the database) or durable delivery
    /// (a response is released once its event committed).
    pub fn delivery(self, mode: DeliveryMode) -> Self {
        self.recorder(move |recorder| recorder.delivery(mode))
    }

    /// What happens when the queue stays full past the admission wait: refuse the request
    /// with 503 (the default) or run it unrecorded and write a gap record.
    pub fn overload(self, policy: OverloadPolicy) -> Self {
        self.recorder(move |recorder| recorder.overload(policy))
    }

    /// Signs the hash chain's checkpoints (the store's) and the export manifests (the
    /// router's) with `signer`, so one public key verifies both.
    pub fn signer(mut self, signer: CheckpointSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Hands every signed checkpoint to `publisher` (a closure works), to keep a copy where
    /// the database's writers cannot reach it.
    pub fn on_checkpoint(self, publisher: impl CheckpointPublisher) -> Self {
        self.recorder(move |recorder| recorder.on_checkpoint(publisher))
    }

    /// The PostgreSQL schema the tables live in, for [`AuditBuilder::connect`] with a
    /// `postgres://` URL (default `audit`). Ignored for SQLite.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// How long [`Audit::serve`] waits, after the shutdown signal, for the requests in flight
    /// to finish before it stops waiting for them and drains the recorder (default 10 s).
    pub fn request_drain_timeout(mut self, timeout: Duration) -> Self {
        self.request_drain_timeout = timeout;
        self
    }

    /// Opens the database `url` names, applies its migrations and starts the recorder:
    /// `sqlite://audit.db` (created if missing), `sqlite::memory:`, or
    /// `postgres://user@host/db` (tables in their own schema, `audit` unless
    /// [`AuditBuilder::schema`] says otherwise).
    pub async fn connect(self, url: &str) -> Result<Audit, Error> {
        match Backend::of_url(url)? {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => {
                let store = audit_store::SqliteStore::connect(url).await?;
                self.sqlite(store)
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let schema = self
                    .schema
                    .as_deref()
                    .unwrap_or(audit_store::DEFAULT_SCHEMA);
                let store = audit_store::PostgresStore::connect_in_schema(url, schema).await?;
                self.postgres(store)
            }
            #[allow(unreachable_patterns)] // when both backends are compiled
            backend => Err(Error::BackendNotCompiled {
                url: url.to_owned(),
                feature: match backend {
                    Backend::Sqlite => "sqlite",
                    Backend::Postgres => "postgres",
                },
            }),
        }
    }

    /// Uses the host's own SQLite pool (for reads and writes), applying the migrations.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite_pool(self, pool: sqlx::SqlitePool) -> Result<Audit, Error> {
        let store = audit_store::SqliteStore::new(pool);
        store.migrate().await?;
        self.sqlite(store)
    }

    /// Uses the host's own PostgreSQL pool, keeping the tables in `schema` (a lowercase SQL
    /// identifier), applying the migrations.
    #[cfg(feature = "postgres")]
    pub async fn postgres_pool(self, pool: sqlx::PgPool, schema: &str) -> Result<Audit, Error> {
        let store = audit_store::PostgresStore::new(pool, schema)?;
        store.migrate().await?;
        self.postgres(store)
    }

    /// Uses a store the host built itself (say `SqliteStore::connect_with` and its own
    /// options, or a wrapper), already migrated. Its checkpoint signer is its own
    /// (`with_signer`): [`AuditBuilder::signer`] then signs only the export manifests, so
    /// give both the same key.
    pub fn store(self, store: impl AuditStore) -> Result<Audit, Error> {
        self.start(Arc::new(store))
    }

    #[cfg(feature = "sqlite")]
    fn sqlite(self, store: audit_store::SqliteStore) -> Result<Audit, Error> {
        let store = match &self.signer {
            Some(signer) => store.with_signer(signer.clone()),
            None => store,
        };
        self.start(Arc::new(store))
    }

    #[cfg(feature = "postgres")]
    fn postgres(self, store: audit_store::PostgresStore) -> Result<Audit, Error> {
        let store = match &self.signer {
            Some(signer) => store.with_signer(signer.clone()),
            None => store,
        };
        self.start(Arc::new(store))
    }

    fn start(self, store: Arc<dyn AuditStore>) -> Result<Audit, Error> {
        let mut recorder = Recorder::builder(Arc::clone(&store));
        for settings in self.recorder {
            recorder = settings(recorder);
        }
        let recorder = recorder.start()?;
        Ok(Audit::new(
            store,
            recorder,
            self.signer,
            self.request_drain_timeout,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::Backend;

    #[test]
    fn the_url_names_the_backend() {
        for (url, backend) in [
            ("sqlite://audit.db", Backend::Sqlite),
            ("sqlite::memory:", Backend::Sqlite),
            ("SQLITE://audit.db", Backend::Sqlite),
            ("postgres://postgres@127.0.0.1/test", Backend::Postgres),
            ("postgresql://localhost/app", Backend::Postgres),
        ] {
            assert_eq!(Backend::of_url(url).unwrap(), backend, "{url}");
        }
        for url in ["mysql://localhost/db", "audit.db", "", "http://x"] {
            assert!(Backend::of_url(url).is_err(), "{url}");
        }
    }
}
