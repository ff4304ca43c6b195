//! Errors of the store: a query the caller got wrong, or a database that failed.

/// A query parameter that is malformed or out of range. The HTTP layer turns it into a 400
/// naming [`InvalidQuery::parameter`].
///
/// ```
/// use audit_store::Limit;
/// let err = Limit::new(0).unwrap_err();
/// assert_eq!(err.parameter(), "limit");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{parameter}`: {message}")]
pub struct InvalidQuery {
    parameter: &'static str,
    message: String,
}

impl InvalidQuery {
    /// An error about `parameter` (the name used in the HTTP API).
    pub fn new(parameter: &'static str, message: impl Into<String>) -> Self {
        Self {
            parameter,
            message: message.into(),
        }
    }
    /// The parameter at fault, named as in the HTTP API (`cursor`, `limit`, `from`, ...).
    pub fn parameter(&self) -> &'static str {
        self.parameter
    }
    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Everything an [`AuditStore`](crate::AuditStore) operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The caller's query is invalid; nothing was run.
    #[error(transparent)]
    InvalidQuery(#[from] InvalidQuery),
    /// The database failed or refused the statement.
    #[error("audit store database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database failed a read on the store's own read connections (the SQLite store's
    /// bulk reads, which run outside sqlx).
    #[error("audit store database error: {0}")]
    DatabaseRead(String),
    /// The database failed a write on the store's own write connection (the SQLite store's
    /// appends, which run outside sqlx).
    #[error("audit store database error: {0}")]
    DatabaseWrite(String),
    /// Applying the store's schema migrations failed.
    #[error("audit store migration error: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be read back as an event (the data was altered outside the store).
    #[error("audit store holds an unreadable row: {0}")]
    CorruptRow(String),
    /// The store's configuration is unusable (for example an invalid schema name).
    #[error("audit store configuration error: {0}")]
    Config(String),
    /// A read running in the background failed to complete (its task panicked or was
    /// cancelled).
    #[error("audit store background read failed: {0}")]
    Background(String),
    /// The store does not offer this operation.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// The database refused the content of the batch: a value or a constraint it will never
    /// accept, so writing the same events again cannot succeed. The recorder isolates the
    /// events at fault and quarantines them instead of retrying.
    #[error("audit store refused the events: {message}")]
    Rejected {
        /// What the database said.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Events with these ids are already stored with different content. (The same event
    /// stored again is recognised and skipped, so retrying a batch whose earlier attempt
    /// committed succeeds; this is a real conflict, such as a host reusing an id.)
    #[error("audit store already holds other events with the ids {ids:?}")]
    IdConflict {
        /// The ids of the batch's events that conflict.
        ids: Vec<uuid::Uuid>,
    },
}

impl StoreError {
    /// True when the failure is the events' own: writing the same events again can never
    /// succeed ([`StoreError::Rejected`], [`StoreError::IdConflict`]). Every other failure
    /// (database down, disk full, locks, timeouts, a missing table or privilege) is about the
    /// database, not the events, and is worth retrying once it is mended.
    ///
    /// ```
    /// use audit_store::StoreError;
    /// assert!(StoreError::IdConflict { ids: vec![] }.is_permanent());
    /// assert!(!StoreError::DatabaseRead("disk I/O error".into()).is_permanent());
    /// ```
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            StoreError::Rejected { .. } | StoreError::IdConflict { .. }
        )
    }

    /// Wraps a database error as [`StoreError::Rejected`].
    #[cfg(feature = "postgres")]
    pub(crate) fn rejected(error: sqlx::Error) -> Self {
        StoreError::Rejected {
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }

    /// True when the database rejected the statement because events are append-only.
    pub fn is_append_only_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db))
            if db.message().contains(crate::APPEND_ONLY_MESSAGE))
    }
}
