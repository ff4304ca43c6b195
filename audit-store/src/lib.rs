//! Audit events and where they are kept.
//!
//! This crate owns the [`AuditEvent`] model, the [`EventFilter`] query model, the
//! object-safe [`AuditStore`] trait, and two backends: [`SqliteStore`] (feature `sqlite`,
//! the default) and [`PostgresStore`] (feature `postgres`). Both keep events append-only in
//! the database itself: UPDATE is rejected by a trigger, and DELETE only succeeds inside
//! [`AuditStore::purge_before`].
//!
//! ```
//! # async fn demo() -> Result<(), audit_store::StoreError> {
//! use audit_store::{
//!     Action, AuditEvent, AuditStore, EventFilter, HttpFacts, PageRequest, SqliteStore,
//!     TenantScope,
//! };
//!
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store
//!     .append(&[AuditEvent::builder("Model", Action::Delete)
//!         .http(HttpFacts::new("DELETE", "/api/models/{id}", "/api/models/9", 204))
//!         .tenant("acme")
//!         .build()])
//!     .await?;
//! let acme = TenantScope::only(["acme"]);
//! let page = store.query(&EventFilter::default(), &acme, &PageRequest::default()).await?;
//! assert_eq!(page.items.len(), 1);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod chain;
mod checkpoint;
mod checkpoint_log;
mod error;
mod event;
mod forwarding;
mod indexing;
mod query;
mod recorder;
mod reliability;
mod runtime;
mod sanitize;
mod sql;
mod store;
mod term_plan;
mod verify;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use batch::{AttributesView, BatchStream, EventBatch, EventView, batches_of};
pub use chain::{
    ChainHash, ChainHead, ChainLink, ChainVersion, canonical_json, canonical_value_json,
    chain_hash, chain_step, content_digest, content_digests, hex, unhex,
};
pub use checkpoint::{
    Checkpoint, CheckpointError, CheckpointKind, CheckpointSigner, InvalidKey, KeyFileError,
    parse_public_key,
};
pub use checkpoint_log::{CheckpointLog, read_checkpoint_log};
pub use error::{InvalidQuery, StoreError};
pub use event::{
    Action, Attributes, AuditEvent, CustomAction, EventBuilder, HttpFacts, InvalidName,
    NeedsOrigin, Outcome, Ready, record_change, rfc3339_micros, truncate_to_micros, uuid_v7_at,
};
pub use forwarding::{
    ForwardHalt, ForwardLease, ForwardPosition, ForwardState, ForwardingStatus, SinkStatus,
    StoredCheckpoint,
};
#[cfg(feature = "postgres")]
pub use postgres::{DEFAULT_SCHEMA, PostgresStore};
pub use query::{
    Cursor, EventFilter, FacetUser, Facets, Limit, MAX_FILTER_VALUE_LEN, MAX_FILTER_VALUES,
    MatchCount, Page, PageRequest, Position, TenantScope,
};
pub use recorder::{
    Admission, CheckpointPublisher, Delivery, DeliveryError, DeliveryMode, GAP_ACTION,
    GAP_CATEGORY, GAP_SOURCE, InvalidConfig, OverloadPolicy, RecordError, Recorder,
    RecorderBuilder, RecorderConfig, RecorderMetrics, Reservation, ReserveError, RetryPolicy,
    ShutdownError, StartError,
};
pub use reliability::{QuarantinedEvent, RecorderRun};
pub use sanitize::{MAX_INDEXED_TEXT, NUL_REPLACEMENT, REPLACED_ATTRIBUTE, TRUNCATED_ATTRIBUTE};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{AuditStore, EventStream};
pub use verify::{
    ChainBreak, ChainReport, CheckStream, CheckedLink, chain_hashes_match, verify_chain,
    verify_chain_against,
};

/// The text every append-only rejection raised by the database contains.
pub const APPEND_ONLY_MESSAGE: &str = "audit events are append-only";
