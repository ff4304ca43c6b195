//! What a forwarder (the `audit-forward` crate) keeps in the audit database: per sink, a
//! cursor (how far delivery has got) and a lease (which instance delivers), and the status
//! every instance can read from them.
//!
//! The statements are written once here over a [`ForwardDialect`]; the backends
//! (`sqlite/forwarding.rs`, `postgres/forwarding.rs`) run them and decode the rows.
//! Lease times come from the database's clock, so instances whose clocks disagree still
//! agree on when a lease expired.

// Without a backend feature only the types are used.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Database, Executor, FromRow, IntoArguments, Pool, QueryBuilder};

use crate::checkpoint::{Checkpoint, checkpoint_from_row};
use crate::error::StoreError;
use crate::sql::Dialect;

/// How far a sink's delivery has got: the last event and the last checkpoint it
/// acknowledged.
///
/// ```
/// use audit_store::ForwardPosition;
/// assert_eq!(ForwardPosition::BEGINNING.seq, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ForwardPosition {
    /// Chain sequence number of the last event delivered (0: none yet).
    pub seq: u64,
    /// Store id of the last checkpoint delivered ([`StoredCheckpoint::id`]; 0: none yet).
    pub checkpoint_id: u64,
}

impl ForwardPosition {
    /// Before the first event and the first checkpoint.
    pub const BEGINNING: ForwardPosition = ForwardPosition {
        seq: 0,
        checkpoint_id: 0,
    };
}

/// The right to forward one sink, held by one instance until `expires_at` unless renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardLease {
    /// The sink it is for.
    pub sink: String,
    /// Who holds it (the forwarder's instance id).
    pub holder: String,
    /// Grows at every change of holder; cursor moves carry it, so a holder that lost the
    /// lease cannot move the cursor afterwards.
    pub generation: u64,
    /// When it lapses unless renewed (database clock).
    pub expires_at: DateTime<Utc>,
}

/// A sink stopped because it refused a batch permanently; it stays stopped until an
/// operator resumes it ([`crate::AuditStore::resume_forwarding`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardHalt {
    /// The first event of the refused batch.
    pub seq: u64,
    /// What the sink answered.
    pub reason: String,
    /// When it stopped.
    pub since: DateTime<Utc>,
}

/// One sink as the database sees it: position, lease, halt and how far behind it is.
/// Any instance can read it, whichever one forwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardState {
    /// The sink's name.
    pub sink: String,
    /// What it acknowledged last.
    pub position: ForwardPosition,
    /// When the position last moved.
    pub updated_at: DateTime<Utc>,
    /// Set while the sink is halted by a permanent error.
    pub halt: Option<ForwardHalt>,
    /// The instance holding (or last holding) the lease.
    pub holder: Option<String>,
    /// When that lease lapses (or lapsed).
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The chain head's sequence number.
    pub head_seq: u64,
    /// When the oldest event not yet delivered occurred (`None` when caught up).
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// The database's time when this was read.
    pub read_at: DateTime<Utc>,
}

impl ForwardState {
    /// Events stored but not yet acknowledged by the sink.
    pub fn lag_events(&self) -> u64 {
        self.head_seq.saturating_sub(self.position.seq)
    }

    /// How long the oldest undelivered event has waited, in seconds (0 when caught up).
    pub fn lag_seconds(&self) -> f64 {
        self.oldest_pending_at.map_or(0.0, |at| {
            ((self.read_at - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6).max(0.0)
        })
    }

    /// Whether the lease was live when this was read.
    pub fn lease_live(&self) -> bool {
        self.lease_expires_at.is_some_and(|at| at > self.read_at)
    }
}

/// A checkpoint with its position among the stored checkpoints, for readers that resume
/// after the last one they saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredCheckpoint {
    /// Increasing in the order checkpoints were stored (from 1).
    pub id: u64,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
}

/// Where a status report on forwarding comes from: the forwarder running in this process
/// (its handle implements this with live metrics) or the store alone (the cursors any
/// instance wrote). `audit-api` serves it at `GET /forwarding`.
#[async_trait]
pub trait ForwardingStatus: Send + Sync + 'static {
    /// One entry per sink.
    async fn forwarding_status(&self) -> Result<Vec<SinkStatus>, StoreError>;
}

/// What the forwarding status says about one sink.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkStatus {
    /// The sink's name.
    pub sink: String,
    /// `forwarding`, `caught_up`, `retrying`, `halted`, `standby` (another instance holds
    /// the lease), `stopped`, or `unknown` (seen only in the database, no live forwarder
    /// here and no live lease).
    pub state: String,
    /// Events stored but not yet acknowledged.
    pub lag_events: u64,
    /// How long the oldest undelivered event has waited.
    pub lag_seconds: f64,
    /// The last event seq acknowledged.
    pub delivered_seq: u64,
    /// The chain head.
    pub head_seq: u64,
    /// The instance forwarding this sink (lease holder), if the lease is live.
    pub holder: Option<String>,
    /// Whether the holder is this process.
    pub this_instance: bool,
    /// Set while halted by a permanent error.
    pub halt: Option<ForwardHalt>,
    /// The last delivery error seen by this process (transient ones included).
    pub last_error: Option<String>,
    /// When the position last moved.
    pub updated_at: DateTime<Utc>,
}

impl SinkStatus {
    /// The status of a sink from its database state alone.
    pub fn from_state(state: &ForwardState) -> SinkStatus {
        let live = state.lease_live();
        SinkStatus {
            sink: state.sink.clone(),
            state: if state.halt.is_some() {
                "halted"
            } else if live {
                if state.lag_events() == 0 {
                    "caught_up"
                } else {
                    "forwarding"
                }
            } else {
                "unknown"
            }
            .to_owned(),
            lag_events: state.lag_events(),
            lag_seconds: state.lag_seconds(),
            delivered_seq: state.position.seq,
            head_seq: state.head_seq,
            holder: if live { state.holder.clone() } else { None },
            this_instance: false,
            halt: state.halt.clone(),
            last_error: None,
            updated_at: state.updated_at,
        }
    }
}

/// Every store reports what its cursors say.
#[async_trait]
impl<S: crate::AuditStore> ForwardingStatus for S {
    async fn forwarding_status(&self) -> Result<Vec<SinkStatus>, StoreError> {
        Ok(self
            .forward_states()
            .await?
            .iter()
            .map(SinkStatus::from_state)
            .collect())
    }
}

/// The forwarding statements' differences between backends, on top of [`Dialect`].
pub(crate) trait ForwardDialect: Dialect {
    /// A table of the store, schema-qualified where the backend has schemas.
    fn table(&self, name: &str) -> String;
    /// The database's current time, in the type the backend stores times as.
    fn now(&self) -> &'static str;
    /// Pushes the database's current time plus `ttl`.
    fn push_now_plus(&self, qb: &mut QueryBuilder<Self::DB>, ttl: Duration);
    /// `expression` (a stored time) as microseconds since the epoch.
    fn micros(&self, expression: &str) -> String;
}

/// Creates the sink's cursor at `start` unless it exists.
pub(crate) fn insert_cursor<D: ForwardDialect>(
    d: &D,
    sink: &str,
    start: ForwardPosition,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!(
        "INSERT INTO {} (sink, seq, checkpoint_id, updated_at) VALUES (",
        d.table("audit_forward_cursors")
    ));
    d.bind_text(&mut qb, sink);
    qb.push(", ");
    d.bind_seq(&mut qb, start.seq);
    qb.push(", ");
    d.bind_seq(&mut qb, start.checkpoint_id);
    qb.push(format!(", {}) ON CONFLICT (sink) DO NOTHING", d.now()));
    qb
}

/// Takes the lease when it is free or lapsed, or renews it for its holder; returns
/// `generation, micros(expires_at)` only when `holder` holds it afterwards.
pub(crate) fn acquire_lease<D: ForwardDialect>(
    d: &D,
    sink: &str,
    holder: &str,
    ttl: Duration,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!(
        "INSERT INTO {} AS l (sink, holder, generation, acquired_at, expires_at) VALUES (",
        d.table("audit_forward_leases")
    ));
    d.bind_text(&mut qb, sink);
    qb.push(", ");
    d.bind_text(&mut qb, holder);
    qb.push(format!(", 1, {}, ", d.now()));
    d.push_now_plus(&mut qb, ttl);
    qb.push(format!(
        ") ON CONFLICT (sink) DO UPDATE SET \
         holder = excluded.holder, \
         generation = CASE WHEN l.holder = excluded.holder THEN l.generation ELSE l.generation + 1 END, \
         acquired_at = CASE WHEN l.holder = excluded.holder THEN l.acquired_at ELSE excluded.acquired_at END, \
         expires_at = excluded.expires_at \
         WHERE l.holder = excluded.holder OR l.expires_at <= excluded.acquired_at \
         RETURNING generation, {}",
        d.micros("expires_at")
    ));
    qb
}

/// ` AND <lease is live and still this one's>`.
fn push_lease_fence<D: ForwardDialect>(d: &D, qb: &mut QueryBuilder<D::DB>, lease: &ForwardLease) {
    qb.push(format!(
        " AND EXISTS (SELECT 1 FROM {} WHERE sink = ",
        d.table("audit_forward_leases")
    ));
    d.bind_text(qb, &lease.sink);
    qb.push(" AND holder = ");
    d.bind_text(qb, &lease.holder);
    qb.push(" AND generation = ");
    d.bind_seq(qb, lease.generation);
    qb.push(format!(" AND expires_at > {})", d.now()));
}

/// Lets the lease lapse now, so another instance can take over at once.
pub(crate) fn release_lease<D: ForwardDialect>(d: &D, lease: &ForwardLease) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!(
        "UPDATE {} SET expires_at = {} WHERE sink = ",
        d.table("audit_forward_leases"),
        d.now()
    ));
    d.bind_text(&mut qb, &lease.sink);
    qb.push(" AND holder = ");
    d.bind_text(&mut qb, &lease.holder);
    qb.push(" AND generation = ");
    d.bind_seq(&mut qb, lease.generation);
    qb
}

/// Moves the cursor, only while `lease` is live.
pub(crate) fn advance_cursor<D: ForwardDialect>(
    d: &D,
    lease: &ForwardLease,
    to: ForwardPosition,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!(
        "UPDATE {} SET seq = ",
        d.table("audit_forward_cursors")
    ));
    d.bind_seq(&mut qb, to.seq);
    qb.push(", checkpoint_id = ");
    d.bind_seq(&mut qb, to.checkpoint_id);
    qb.push(format!(", updated_at = {} WHERE sink = ", d.now()));
    d.bind_text(&mut qb, &lease.sink);
    push_lease_fence(d, &mut qb, lease);
    qb.push(" RETURNING 1");
    qb
}

/// Records a permanent refusal, only while `lease` is live.
pub(crate) fn halt<D: ForwardDialect>(
    d: &D,
    lease: &ForwardLease,
    seq: u64,
    reason: &str,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!(
        "UPDATE {} SET halted_seq = ",
        d.table("audit_forward_cursors")
    ));
    d.bind_seq(&mut qb, seq);
    qb.push(", halt_reason = ");
    d.bind_text(&mut qb, reason);
    qb.push(format!(", halted_at = {} WHERE sink = ", d.now()));
    d.bind_text(&mut qb, &lease.sink);
    push_lease_fence(d, &mut qb, lease);
    qb.push(" RETURNING 1");
    qb
}

/// Clears a halt (the operator's word); not fenced: any instance may give it.
pub(crate) fn resume<D: ForwardDialect>(d: &D, sink: &str) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!(
        "UPDATE {} SET halted_seq = NULL, halt_reason = NULL, halted_at = NULL WHERE sink = ",
        d.table("audit_forward_cursors")
    ));
    d.bind_text(&mut qb, sink);
    qb.push(" AND halted_seq IS NOT NULL RETURNING 1");
    qb
}

/// Every sink's state in the columns of [`StateRow`].
pub(crate) fn select_states<D: ForwardDialect>(d: &D) -> QueryBuilder<D::DB> {
    QueryBuilder::new(format!(
        "SELECT c.sink, c.seq, c.checkpoint_id, {updated}, c.halted_seq, c.halt_reason, \
         {halted}, l.holder, {expires}, h.seq, \
         {pending}, {now} \
         FROM {cursors} c LEFT JOIN {leases} l ON l.sink = c.sink CROSS JOIN {head} h \
         ORDER BY c.sink",
        updated = d.micros("c.updated_at"),
        halted = d.micros("c.halted_at"),
        expires = d.micros("l.expires_at"),
        pending = d.micros(&format!(
            "(SELECT e.occurred_at FROM {} e WHERE e.seq > c.seq ORDER BY e.seq LIMIT 1)",
            d.events_table()
        )),
        now = d.micros(d.now()),
        cursors = d.table("audit_forward_cursors"),
        leases = d.table("audit_forward_leases"),
        head = d.table("audit_chain_head"),
    ))
}

/// Checkpoints stored after `after_id`, in the columns of [`CheckpointRow`].
pub(crate) fn select_checkpoints_after<D: ForwardDialect>(
    d: &D,
    after_id: u64,
    limit: usize,
) -> QueryBuilder<D::DB> {
    let mut qb = QueryBuilder::new(format!(
        "SELECT id, seq, head, {}, kind, public_key, signature FROM {} WHERE id > ",
        d.micros("created_at"),
        d.table("audit_checkpoints")
    ));
    d.bind_seq(&mut qb, after_id);
    qb.push(format!(" ORDER BY id LIMIT {limit}"));
    qb
}

/// A row of [`select_states`]: sink, seq, checkpoint id, updated µs, halted seq, halt
/// reason, halted µs, holder, lease expiry µs, head seq, oldest pending µs, now µs.
pub(crate) type StateRow = (
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    i64,
    Option<i64>,
    i64,
);

/// A row of [`select_checkpoints_after`]: id, seq, head, created µs, kind, key, signature.
pub(crate) type CheckpointRow = (i64, i64, Vec<u8>, i64, String, String, String);

fn unsigned(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::CorruptRow(format!("{what} {value} is negative")))
}

fn instant(micros: i64, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::CorruptRow(format!("{what} {micros} is out of range")))
}

/// The state a [`StateRow`] describes.
pub(crate) fn state_from(row: StateRow) -> Result<ForwardState, StoreError> {
    let (
        sink,
        seq,
        cp,
        updated,
        halted_seq,
        reason,
        halted_at,
        holder,
        expires,
        head,
        pending,
        now,
    ) = row;
    let halt = match (halted_seq, halted_at) {
        (Some(seq), Some(at)) => Some(ForwardHalt {
            seq: unsigned(seq, "halted_seq")?,
            reason: reason.unwrap_or_default(),
            since: instant(at, "halted_at")?,
        }),
        _ => None,
    };
    Ok(ForwardState {
        position: ForwardPosition {
            seq: unsigned(seq, "cursor seq")?,
            checkpoint_id: unsigned(cp, "cursor checkpoint_id")?,
        },
        updated_at: instant(updated, "updated_at")?,
        halt,
        holder,
        lease_expires_at: expires.map(|at| instant(at, "expires_at")).transpose()?,
        head_seq: unsigned(head, "chain head seq")?,
        oldest_pending_at: pending.map(|at| instant(at, "occurred_at")).transpose()?,
        read_at: instant(now, "database time")?,
        sink,
    })
}

/// The lease an [`acquire_lease`] row confirms.
pub(crate) fn lease_from(
    sink: &str,
    holder: &str,
    (generation, expires): (i64, i64),
) -> Result<ForwardLease, StoreError> {
    Ok(ForwardLease {
        sink: sink.to_owned(),
        holder: holder.to_owned(),
        generation: unsigned(generation, "lease generation")?,
        expires_at: instant(expires, "expires_at")?,
    })
}

/// The checkpoint a [`CheckpointRow`] holds.
pub(crate) fn checkpoint_from(row: CheckpointRow) -> Result<StoredCheckpoint, StoreError> {
    let (id, seq, head, created, kind, public_key, signature) = row;
    Ok(StoredCheckpoint {
        id: unsigned(id, "checkpoint id")?,
        checkpoint: checkpoint_from_row(
            seq,
            &head,
            DateTime::from_timestamp_micros(created),
            &kind,
            public_key,
            signature,
        )?,
    })
}

/// Checks a sink name before it reaches the database: 1–128 visible ASCII characters, so it
/// prints cleanly in status reports and command lines.
pub(crate) fn check_sink_name(sink: &str) -> Result<(), StoreError> {
    if sink.is_empty() || sink.len() > 128 || !sink.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::Config(format!(
            "sink name {sink:?} must be 1 to 128 visible ASCII characters"
        )));
    }
    Ok(())
}

/// Runs the forwarding statements on a backend's pools: writes on `writer`, reads on
/// `reader`. Each backend's `AuditStore` methods call these. The methods take `self`, and
/// build each statement before the first await, so their futures hold no reference to the
/// dialect (SQLite's records its binds in a `RefCell`).
pub(crate) struct Runs<'a, D: ForwardDialect> {
    pub(crate) dialect: D,
    pub(crate) writer: &'a Pool<D::DB>,
    pub(crate) reader: &'a Pool<D::DB>,
}

impl<D, DB> Runs<'_, D>
where
    D: ForwardDialect<DB = DB>,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    StateRow: for<'r> FromRow<'r, DB::Row>,
    CheckpointRow: for<'r> FromRow<'r, DB::Row>,
    (i64, i64): for<'r> FromRow<'r, DB::Row>,
    (i32,): for<'r> FromRow<'r, DB::Row>,
{
    /// Runs a statement that returns a row when it changed one.
    async fn changed(writer: &Pool<DB>, mut qb: QueryBuilder<DB>) -> Result<bool, StoreError> {
        let row: Option<(i32,)> = qb.build_query_as().fetch_optional(writer).await?;
        Ok(row.is_some())
    }

    pub(crate) async fn states(self) -> Result<Vec<ForwardState>, StoreError> {
        let mut qb = select_states(&self.dialect);
        let rows: Vec<StateRow> = qb.build_query_as().fetch_all(self.reader).await?;
        rows.into_iter().map(state_from).collect()
    }

    pub(crate) async fn acquire(
        self,
        sink: &str,
        holder: &str,
        ttl: Duration,
        start: ForwardPosition,
    ) -> Result<Option<ForwardLease>, StoreError> {
        check_sink_name(sink)?;
        let mut insert = insert_cursor(&self.dialect, sink, start);
        let mut acquire = acquire_lease(&self.dialect, sink, holder, ttl);
        insert.build().execute(self.writer).await?;
        let row: Option<(i64, i64)> = acquire.build_query_as().fetch_optional(self.writer).await?;
        row.map(|row| lease_from(sink, holder, row)).transpose()
    }

    pub(crate) async fn release(self, lease: &ForwardLease) -> Result<(), StoreError> {
        let mut qb = release_lease(&self.dialect, lease);
        qb.build().execute(self.writer).await?;
        Ok(())
    }

    pub(crate) async fn advance(
        self,
        lease: &ForwardLease,
        to: ForwardPosition,
    ) -> Result<bool, StoreError> {
        let qb = advance_cursor(&self.dialect, lease, to);
        Self::changed(self.writer, qb).await
    }

    pub(crate) async fn halt(
        self,
        lease: &ForwardLease,
        seq: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let qb = halt(&self.dialect, lease, seq, reason);
        Self::changed(self.writer, qb).await
    }

    pub(crate) async fn resume(self, sink: &str) -> Result<bool, StoreError> {
        let qb = resume(&self.dialect, sink);
        Self::changed(self.writer, qb).await
    }

    pub(crate) async fn checkpoints_after(
        self,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let mut qb = select_checkpoints_after(&self.dialect, after_id, limit);
        let rows: Vec<CheckpointRow> = qb.build_query_as().fetch_all(self.reader).await?;
        rows.into_iter().map(checkpoint_from).collect()
    }
}
