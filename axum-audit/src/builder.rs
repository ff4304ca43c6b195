//! [`AuditBuilder`]: the options of [`Audit`], and how a store is opened from a URL or a pool.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use audit_store::{
    AuditStore, CheckpointLog, CheckpointPublisher, CheckpointSigner, DeliveryMode, OverloadPolicy,
    Recorder, RecorderBuilder,
};

use crate::audit::Audit;
use crate::error::Error;

/// How long [`Audit::serve`] lets requests in flight finish after the shutdown signal,
/// unless [`AuditBuilder::request_drain_timeout`] says otherwise.
pub const DEFAULT_REQUEST_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a PostgreSQL audit log spools what it could not write by the shutdown deadline,
/// unless told otherwise: `audit-spool-{schema}` in the working directory at connect time,
/// the same place a relative `sqlite://audit.db` would be. One directory per schema, because
/// the next start replays every spool file it finds into its own store.
pub const POSTGRES_SPOOL_DIR_PREFIX: &str = "audit-spool-";

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
    signing_key_file: Option<PathBuf>,
    checkpoint_log: Option<PathBuf>,
    schema: Option<String>,
    request_drain_timeout: Duration,
}

impl fmt::Debug for AuditBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditBuilder")
            .field("recorder_settings", &self.recorder.len())
            .field("signer", &self.signer.as_ref().map(|s| s.public_key_hex()))
            .field("signing_key_file", &self.signing_key_file)
            .field("checkpoint_log", &self.checkpoint_log)
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
            signing_key_file: None,
            checkpoint_log: None,
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

    /// How long the recorder's shutdown may take (default 30 s): what is still unwritten
    /// then (the database is down or slow) goes to the local spool, replayed into the store
    /// at the next start.
    pub fn shutdown_timeout(self, timeout: Duration) -> Self {
        self.recorder(move |recorder| recorder.shutdown_timeout(timeout))
    }

    /// Where that spool lives. The default is beside a SQLite file (`audit.db-spool`), and
    /// for PostgreSQL `audit-spool-{schema}` in the working directory (see
    /// [`POSTGRES_SPOOL_DIR_PREFIX`]); give a directory on a persistent disk if the working
    /// directory is not one.
    pub fn spool_dir(self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        self.recorder(move |recorder| recorder.spool_dir(dir))
    }

    /// Signs the hash chain's checkpoints (the store's) and the export manifests (the
    /// router's) with `signer`, so one public key verifies both.
    pub fn signer(mut self, signer: CheckpointSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Signs with the Ed25519 key in the file at `path`, creating it (mode 0600) with a new
    /// random key if it does not exist; the public key is logged when it is created, for you
    /// to record where verifiers (`audit verify --public-key`) find it. Keep the file away from
    /// whoever may write the database: the key is what makes a rewritten log detectable.
    pub fn signing_key_file(mut self, path: impl AsRef<Path>) -> Self {
        self.signing_key_file = Some(path.as_ref().to_owned());
        self
    }

    /// Appends every signed checkpoint to the file at `path` (one JSON object per line,
    /// synced), for `audit verify --checkpoints` and for shipping elsewhere.
    pub fn checkpoint_log(mut self, path: impl AsRef<Path>) -> Self {
        self.checkpoint_log = Some(path.as_ref().to_owned());
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
                    .clone()
                    .unwrap_or_else(|| audit_store::DEFAULT_SCHEMA.to_owned());
                let store = audit_store::PostgresStore::connect_in_schema(url, &schema).await?;
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
    pub fn store(mut self, store: impl AuditStore) -> Result<Audit, Error> {
        self.load_signer()?;
        self.start(Arc::new(store), None)
    }

    #[cfg(feature = "sqlite")]
    fn sqlite(mut self, store: audit_store::SqliteStore) -> Result<Audit, Error> {
        let store = match self.load_signer()? {
            Some(signer) => store.with_signer(signer),
            None => store,
        };
        // The store's own default spool: beside the database file.
        self.start(Arc::new(store), None)
    }

    #[cfg(feature = "postgres")]
    fn postgres(mut self, store: audit_store::PostgresStore) -> Result<Audit, Error> {
        let spool_dir = std::env::current_dir()
            .map(|dir| dir.join(format!("{POSTGRES_SPOOL_DIR_PREFIX}{}", store.schema())))
            .map_err(Error::SpoolDir)?;
        let store = match self.load_signer()? {
            Some(signer) => store.with_signer(signer),
            None => store,
        };
        self.start(Arc::new(store), Some(spool_dir))
    }

    /// The signer: given, or read (or created) from the key file.
    fn load_signer(&mut self) -> Result<Option<CheckpointSigner>, Error> {
        if let Some(path) = self.signing_key_file.take() {
            let (signer, created) = CheckpointSigner::load_or_create(&path)?;
            if created {
                tracing::info!(
                    path = %path.display(),
                    public_key = %signer.public_key_hex(),
                    "created an audit signing key; record its public key where verifiers find it"
                );
            }
            self.signer = Some(signer);
        }
        Ok(self.signer.clone())
    }

    /// Starts the recorder on `store`; `spool_dir` is the facade's default, which the host's
    /// own recorder settings (applied after it) override.
    fn start(self, store: Arc<dyn AuditStore>, spool_dir: Option<PathBuf>) -> Result<Audit, Error> {
        let mut recorder = Recorder::builder(Arc::clone(&store));
        if let Some(dir) = spool_dir {
            recorder = recorder.spool_dir(dir);
        }
        if let Some(path) = &self.checkpoint_log {
            let log = CheckpointLog::open(path).map_err(|source| Error::CheckpointLog {
                path: path.clone(),
                source,
            })?;
            recorder = recorder.on_checkpoint(log);
        }
        for settings in self.recorder {
            recorder = settings(recorder);
        }
        // The streaming forwarder (audit-forward) starts here, on the same store, once the
        // recorder runs; `Audit::shutdown` then stops it after the recorder's drain.
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
