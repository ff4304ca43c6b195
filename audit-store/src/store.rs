//! The `AuditStore` trait and the paging and export logic every backend shares.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use uuid::Uuid;

use crate::batch::{BatchStream, EventBatch};
use crate::chain::ChainHead;
use crate::checkpoint::{Checkpoint, CheckpointKind, CheckpointSigner};
use crate::error::StoreError;
use crate::event::AuditEvent;
use crate::forwarding::{ForwardLease, ForwardPosition, ForwardState, StoredCheckpoint};
use crate::query::{
    Cursor, EventFilter, FacetUser, Facets, MatchCount, Page, PageRequest, PlanKind, Position,
    TenantScope,
};
use crate::reliability::{QuarantinedEvent, RecorderRun};
use crate::term_plan::{MAX_NAMES, Plan, RECENT, SELECTIVE, TermGroups, only_broad_conditions};
use crate::verify::{CheckStream, CheckedLink, RowCheck};

/// A stream of events in newest-first order, as produced by [`AuditStore::export`].
pub type EventStream = BoxStream<'static, Result<AuditEvent, StoreError>>;

/// Persistent, append-only storage of audit events.
///
/// Object-safe, so a host can hold an `Arc<dyn AuditStore>`:
///
/// ```
/// # async fn demo() -> Result<(), audit_store::StoreError> {
/// use std::sync::Arc;
/// use audit_store::{AuditStore, EventFilter, PageRequest, SqliteStore, TenantScope};
///
/// let store: Arc<dyn AuditStore> = Arc::new(SqliteStore::connect("sqlite::memory:").await?);
/// let page = store
///     .query(&EventFilter::default(), &TenantScope::All, &PageRequest::default())
///     .await?;
/// assert!(page.items.is_empty());
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[async_trait]
pub trait AuditStore: fmt::Debug + Send + Sync + 'static {
    /// Appends a batch of events atomically: all of them are stored or none is.
    async fn append(&self, events: &[AuditEvent]) -> Result<(), StoreError>;

    /// One page of the events matching `filter` within `scope`, newest first.
    async fn query(
        &self,
        filter: &EventFilter,
        scope: &TenantScope,
        page: &PageRequest,
    ) -> Result<Page, StoreError>;

    /// One event by id, if it exists and `scope` allows its tenant.
    async fn get(&self, id: Uuid, scope: &TenantScope) -> Result<Option<AuditEvent>, StoreError>;

    /// Every event matching `filter` within `scope`, newest first, read in bounded chunks so
    /// memory stays flat however many rows match. A failure ends the stream with an `Err`.
    fn export(&self, filter: EventFilter, scope: TenantScope) -> EventStream;

    /// [`AuditStore::export`]'s events in chunks of borrowed values, for a reader that only
    /// encodes or hashes them: the built-in stores fill each [`EventBatch`] from the rows'
    /// column values without building an [`AuditEvent`] per row. By default, the events of
    /// `export` gathered into batches ([`crate::batches_of`]), so a store overriding `export`
    /// (a wrapper injecting faults, say) is read through its own `export`.
    fn export_batches(&self, filter: EventFilter, scope: TenantScope) -> BatchStream {
        crate::batch::batches_of(self.export(filter, scope))
    }

    /// The distinct categories, actions, users and outcomes within `scope`.
    async fn facets(&self, scope: &TenantScope) -> Result<Facets, StoreError>;

    /// How many events match `filter` within `scope`, counted exactly up to `bound` and no
    /// further (above it the answer is `bound`, not exact), so a count costs at most
    /// `bound + 1` rows whatever the log's size. The built-in stores count with the same
    /// conditions and plan as [`AuditStore::query`]; the default is
    /// [`StoreError::Unsupported`].
    ///
    /// ```
    /// # async fn demo() -> Result<(), audit_store::StoreError> {
    /// use audit_store::{AuditStore, EventFilter, MatchCount, SqliteStore, TenantScope};
    ///
    /// let store = SqliteStore::connect("sqlite::memory:").await?;
    /// let total = store.count(&EventFilter::default(), &TenantScope::All, 10_000).await?;
    /// assert_eq!(total, MatchCount { count: 0, exact: true });
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    async fn count(
        &self,
        _filter: &EventFilter,
        _scope: &TenantScope,
        _bound: u64,
    ) -> Result<MatchCount, StoreError> {
        Err(StoreError::Unsupported("this store does not count matches"))
    }

    /// Retention: deletes the oldest part of the chain, every event up to the first one
    /// that did not occur before `cutoff`, and returns how many. Events stay a contiguous
    /// chain, so an older event recorded after a newer one (a backfill) waits until
    /// everything before it is old enough. With a signer configured, a
    /// [`CheckpointKind::Purge`] checkpoint vouches for the new start of the chain.
    /// This is the only way events leave the store.
    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The newest link of the hash chain. Stores without a chain keep the default, an
    /// [`StoreError::Unsupported`] error.
    async fn chain_head(&self) -> Result<ChainHead, StoreError> {
        Err(StoreError::Unsupported("this store keeps no hash chain"))
    }

    /// Events in chain order after sequence number `after_seq`, with their
    /// [`AuditEvent::chain`] links, read in bounded chunks.
    fn chain_after(&self, _after_seq: u64) -> EventStream {
        stream::once(async { Err(StoreError::Unsupported("this store keeps no hash chain")) })
            .boxed()
    }

    /// The chain after `after_seq` as [`verify_chain`](crate::verify_chain) checks it: batches
    /// of links in chain order, each with whether its row's content still gives its hash.
    /// The default reads [`AuditStore::chain_after`] and hashes the events; the built-in
    /// stores hash straight from the rows' columns on the connections that read them,
    /// without building an event per row.
    fn chain_checks_after(&self, after_seq: u64) -> CheckStream {
        crate::verify::check_events(self.chain_after(after_seq))
    }

    /// Signs the current chain head with the store's signer and stores the checkpoint;
    /// `None` when no signer is configured (the default).
    async fn checkpoint(&self, _kind: CheckpointKind) -> Result<Option<Checkpoint>, StoreError> {
        Ok(None)
    }

    /// Every stored checkpoint, oldest first (none by default).
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        Ok(Vec::new())
    }

    /// The newest stored checkpoint. The default reads them all; the built-in stores read
    /// one row (a checkpoint a minute is half a million a year).
    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.checkpoints().await?.pop())
    }

    /// Checkpoints stored after the one with id `after_id` (0: from the first), oldest
    /// first, at most `limit`. A forwarder resumes its checkpoint stream with this.
    async fn checkpoints_after(
        &self,
        _after_id: u64,
        _limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        Err(StoreError::Unsupported("this store keeps no checkpoints"))
    }

    /// Every forwarding sink's cursor, lease and lag, as stored (see the `audit-forward`
    /// crate). Stores without forwarding support keep the default, an
    /// [`StoreError::Unsupported`] error.
    async fn forward_states(&self) -> Result<Vec<ForwardState>, StoreError> {
        Err(FORWARDING_UNSUPPORTED)
    }

    /// Takes the lease on forwarding `sink` for `holder` for `ttl` when it is free or has
    /// lapsed, or renews it when `holder` already holds it; creates the sink's cursor at
    /// `start` if it has none. `None` while another holder's lease is live.
    async fn acquire_forward_lease(
        &self,
        _sink: &str,
        _holder: &str,
        _ttl: Duration,
        _start: ForwardPosition,
    ) -> Result<Option<ForwardLease>, StoreError> {
        Err(FORWARDING_UNSUPPORTED)
    }

    /// Gives a lease up, so another instance may take over at once.
    async fn release_forward_lease(&self, _lease: &ForwardLease) -> Result<(), StoreError> {
        Err(FORWARDING_UNSUPPORTED)
    }

    /// Moves the sink's cursor to `to`, only while `lease` is live; `false` (nothing
    /// written) when it is not.
    async fn advance_forward_cursor(
        &self,
        _lease: &ForwardLease,
        _to: ForwardPosition,
    ) -> Result<bool, StoreError> {
        Err(FORWARDING_UNSUPPORTED)
    }

    /// Marks the sink halted at `seq` because it refused a batch permanently, only while
    /// `lease` is live; `false` when it is not.
    async fn halt_forwarding(
        &self,
        _lease: &ForwardLease,
        _seq: u64,
        _reason: &str,
    ) -> Result<bool, StoreError> {
        Err(FORWARDING_UNSUPPORTED)
    }

    /// The operator's word: clears the sink's halt, so its forwarder retries the refused
    /// batch. `false` when it was not halted (or is unknown).
    async fn resume_forwarding(&self, _sink: &str) -> Result<bool, StoreError> {
        Err(FORWARDING_UNSUPPORTED)
    }

    /// Makes everything committed so far complete in the database's own files, so they can
    /// be copied or read without the store's helpers. [`Recorder::shutdown`] calls it after
    /// its last write. The SQLite store checkpoints its write-ahead log into the database
    /// file and truncates the log (otherwise `audit.db` alone could be a near-empty file with
    /// every event in `audit.db-wal`); the default does nothing.
    ///
    /// [`Recorder::shutdown`]: crate::Recorder::shutdown
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Keeps events the database refused (see [`StoreError::is_permanent`]) in the store's
    /// append-only quarantine, so they are never lost and never retried forever. The default
    /// is [`StoreError::Unsupported`]; the recorder then writes them to a local file.
    async fn quarantine(&self, _events: &[QuarantinedEvent]) -> Result<(), StoreError> {
        Err(StoreError::Unsupported("this store has no quarantine"))
    }

    /// Every quarantined event, oldest first (none by default).
    async fn quarantined(&self) -> Result<Vec<QuarantinedEvent>, StoreError> {
        Ok(Vec::new())
    }

    /// The last report of the recorder instance `instance`, if it ever reported.
    async fn recorder_run(&self, _instance: &str) -> Result<Option<RecorderRun>, StoreError> {
        Err(StoreError::Unsupported(
            "this store does not track recorder runs",
        ))
    }

    /// Stores `run` as the latest report of its instance (one row per instance).
    async fn report_run(&self, _run: &RecorderRun) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(
            "this store does not track recorder runs",
        ))
    }

    /// Where a recorder on this store keeps, by default, the events it could not write by
    /// its shutdown deadline (its spool): beside a SQLite database file `audit.db`, the
    /// directory `audit.db-spool`; `None` (the default) where the database is not a local
    /// file, so the host must choose one (`RecorderBuilder::spool_dir`).
    fn default_spool_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
}

const FORWARDING_UNSUPPORTED: StoreError =
    StoreError::Unsupported("this store keeps no forwarding cursors");

#[async_trait]
impl<S: AuditStore + ?Sized> AuditStore for Arc<S> {
    async fn append(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        (**self).append(events).await
    }
    async fn query(
        &self,
        filter: &EventFilter,
        scope: &TenantScope,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        (**self).query(filter, scope, page).await
    }
    async fn get(&self, id: Uuid, scope: &TenantScope) -> Result<Option<AuditEvent>, StoreError> {
        (**self).get(id, scope).await
    }
    fn export(&self, filter: EventFilter, scope: TenantScope) -> EventStream {
        (**self).export(filter, scope)
    }
    fn export_batches(&self, filter: EventFilter, scope: TenantScope) -> BatchStream {
        (**self).export_batches(filter, scope)
    }
    async fn facets(&self, scope: &TenantScope) -> Result<Facets, StoreError> {
        (**self).facets(scope).await
    }
    async fn count(
        &self,
        filter: &EventFilter,
        scope: &TenantScope,
        bound: u64,
    ) -> Result<MatchCount, StoreError> {
        (**self).count(filter, scope, bound).await
    }
    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        (**self).purge_before(cutoff).await
    }
    async fn chain_head(&self) -> Result<ChainHead, StoreError> {
        (**self).chain_head().await
    }
    fn chain_after(&self, after_seq: u64) -> EventStream {
        (**self).chain_after(after_seq)
    }
    fn chain_checks_after(&self, after_seq: u64) -> CheckStream {
        (**self).chain_checks_after(after_seq)
    }
    async fn checkpoint(&self, kind: CheckpointKind) -> Result<Option<Checkpoint>, StoreError> {
        (**self).checkpoint(kind).await
    }
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        (**self).checkpoints().await
    }
    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        (**self).latest_checkpoint().await
    }
    async fn checkpoints_after(
        &self,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        (**self).checkpoints_after(after_id, limit).await
    }
    async fn forward_states(&self) -> Result<Vec<ForwardState>, StoreError> {
        (**self).forward_states().await
    }
    async fn acquire_forward_lease(
        &self,
        sink: &str,
        holder: &str,
        ttl: Duration,
        start: ForwardPosition,
    ) -> Result<Option<ForwardLease>, StoreError> {
        (**self)
            .acquire_forward_lease(sink, holder, ttl, start)
            .await
    }
    async fn release_forward_lease(&self, lease: &ForwardLease) -> Result<(), StoreError> {
        (**self).release_forward_lease(lease).await
    }
    async fn advance_forward_cursor(
        &self,
        lease: &ForwardLease,
        to: ForwardPosition,
    ) -> Result<bool, StoreError> {
        (**self).advance_forward_cursor(lease, to).await
    }
    async fn halt_forwarding(
        &self,
        lease: &ForwardLease,
        seq: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        (**self).halt_forwarding(lease, seq, reason).await
    }
    async fn resume_forwarding(&self, sink: &str) -> Result<bool, StoreError> {
        (**self).resume_forwarding(sink).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        (**self).flush().await
    }
    async fn quarantine(&self, events: &[QuarantinedEvent]) -> Result<(), StoreError> {
        (**self).quarantine(events).await
    }
    async fn quarantined(&self) -> Result<Vec<QuarantinedEvent>, StoreError> {
        (**self).quarantined().await
    }
    async fn recorder_run(&self, instance: &str) -> Result<Option<RecorderRun>, StoreError> {
        (**self).recorder_run(instance).await
    }
    async fn report_run(&self, run: &RecorderRun) -> Result<(), StoreError> {
        (**self).report_run(run).await
    }
    fn default_spool_dir(&self) -> Option<std::path::PathBuf> {
        (**self).default_spool_dir()
    }
}

/// How many rows an export reads per round trip: large enough to amortise the query, small
/// enough that memory stays a few megabytes.
pub(crate) const EXPORT_CHUNK: usize = 2000;

/// What a backend provides so that paging, export and facets are written once.
#[async_trait]
pub(crate) trait Backend: Clone + Send + Sync + 'static {
    /// The events matching a filter strictly after a keyset position, newest first, read as
    /// `plan` says.
    async fn fetch_after(
        &self,
        plan: &Plan,
        filter: &EventFilter,
        scope: &TenantScope,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    /// [`Backend::fetch_after`]'s rows as one batch of borrowed values, no event built.
    async fn fetch_batch_after(
        &self,
        plan: &Plan,
        filter: &EventFilter,
        scope: &TenantScope,
        after: Option<Position>,
        limit: usize,
    ) -> Result<EventBatch, StoreError>;

    /// How many events match a filter, read as `plan` says, counting at most `limit`.
    async fn count_rows(
        &self,
        plan: &Plan,
        filter: &EventFilter,
        scope: &TenantScope,
        limit: u64,
    ) -> Result<u64, StoreError>;

    /// How many events the terms of `groups` name, counting at most `limit`.
    async fn candidate_count(&self, groups: &TermGroups, limit: u64) -> Result<u64, StoreError>;

    /// The resource names containing `needle` (ignoring case), at most `limit`.
    async fn matching_names(&self, needle: &str, limit: usize) -> Result<Vec<String>, StoreError>;

    /// The distinct values of one text column within a scope, sorted.
    async fn distinct(
        &self,
        column: &'static str,
        scope: &TenantScope,
    ) -> Result<Vec<String>, StoreError>;

    /// The distinct actors within a scope.
    async fn users(&self, scope: &TenantScope) -> Result<Vec<FacetUser>, StoreError>;

    /// Events in chain order after `after_seq`, up to `through` (inclusive) when given.
    async fn fetch_chain_after(
        &self,
        after_seq: u64,
        through: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    /// [`Backend::fetch_chain_after`]'s rows, each hashed from its columns' values (the
    /// canonical JSON written from borrowed values, no event built), as links with whether
    /// they match.
    async fn fetch_chain_checks(
        &self,
        after_seq: u64,
        through: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RowCheck>, StoreError>;

    /// Stores a signed checkpoint.
    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;

    /// The signer, when one is configured.
    fn signer(&self) -> Option<&CheckpointSigner>;
}

/// [`AuditStore::checkpoint`] for any backend. Reading the head and storing the checkpoint
/// need not be atomic: a checkpoint of a head that has grown since still vouches for a prefix.
pub(crate) async fn sign_checkpoint<S: Backend + AuditStore>(
    source: &S,
    kind: CheckpointKind,
) -> Result<Option<Checkpoint>, StoreError> {
    let Some(signer) = source.signer() else {
        return Ok(None);
    };
    let head = source.chain_head().await?;
    let checkpoint = signer.sign(head, kind);
    source.insert_checkpoint(&checkpoint).await?;
    Ok(Some(checkpoint))
}

/// [`AuditStore::chain_after`] for any backend: [`chain_chunks`] of events.
pub(crate) fn chain_stream<S: Backend + AuditStore>(source: S, after_seq: u64) -> EventStream {
    chain_chunks(
        source,
        after_seq,
        |source: S, after, through| async move {
            source.fetch_chain_after(after, through, CHAIN_CHUNK).await
        },
        // Events read from a store always carry their link.
        |last: &AuditEvent| last.chain.map_or(u64::MAX, |link| link.seq),
        PARALLEL_CHAIN_FETCHES,
    )
    .map_ok(|rows| stream::iter(rows.into_iter().map(Ok::<_, StoreError>)))
    .try_flatten()
    .boxed()
}

/// [`AuditStore::chain_checks_after`] for any backend: [`chain_chunks`] of rows hashed where
/// they are read ([`Backend::fetch_chain_checks`]), so reading, the canonical JSON and the
/// hashing of two chunks run side by side on two connections and threads. A row whose
/// bytes did not give its hash is read again as an event and decided by the reference
/// computation ([`ChainLink::recompute`](crate::ChainLink::recompute)): only a match is taken
/// from the fast path.
pub(crate) fn chain_check_stream<S: Backend + AuditStore>(
    source: S,
    after_seq: u64,
) -> CheckStream {
    let confirm_source = source.clone();
    chain_chunks(
        source,
        after_seq,
        |source: S, after, through| async move {
            source.fetch_chain_checks(after, through, CHAIN_CHUNK).await
        },
        |last: &RowCheck| last.link.seq,
        PARALLEL_CHECK_FETCHES,
    )
    .and_then(move |checks| {
        let source = confirm_source.clone();
        async move {
            let mut checked = Vec::with_capacity(checks.len());
            for check in checks {
                let mismatch = if check.matches {
                    None
                } else {
                    confirm_mismatch(&source, check).await?
                };
                checked.push(CheckedLink {
                    link: check.link,
                    id: check.id,
                    mismatch,
                });
            }
            Ok(checked)
        }
    })
    .boxed()
}

/// Reads the row of a suspected mismatch again as an event and recomputes its hash with the
/// reference implementation: `None` if it matches after all, else the event.
async fn confirm_mismatch<S: Backend>(
    source: &S,
    check: RowCheck,
) -> Result<Option<Box<AuditEvent>>, StoreError> {
    let seq = check.link.seq;
    let event = source
        .fetch_chain_after(seq.saturating_sub(1), Some(seq), 1)
        .await?
        .pop()
        .filter(|event| event.chain == Some(check.link) && event.id == check.id)
        .ok_or_else(|| {
            StoreError::CorruptRow(format!("seq {seq}: the row changed during verification"))
        })?;
    Ok((check.link.recompute(&event) != check.link.hash).then(|| Box::new(event)))
}

/// A chain walk after `after_seq` in chunks, whatever a chunk's rows are (`seq_of` gives a
/// row's sequence number).
///
/// Sequence numbers are dense, so up to the stored chain head the chunks are known in advance
/// (`seq` in `(start, start + CHAIN_CHUNK]`) and `parallel` of them are read at once, on as
/// many connections: a chain walk is bound by reading and decoding rows, and this
/// puts both cores to work. From the first empty range (deleted rows, or a head that claims
/// more than is stored) and past the head (rows appended meanwhile), a keyset walk by `seq`
/// continues until the end, so gaps and a wrong head cost time, never rows.
fn chain_chunks<S, T, F, Fut>(
    source: S,
    after_seq: u64,
    fetch: F,
    seq_of: fn(&T) -> u64,
    parallel: usize,
) -> BoxStream<'static, Result<Vec<T>, StoreError>>
where
    S: Backend + AuditStore,
    T: Send + 'static,
    F: Fn(S, u64, Option<u64>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<T>, StoreError>> + Send + 'static,
{
    let last_seen = Arc::new(AtomicU64::new(after_seq));
    let seen = last_seen.clone();
    let ranges_source = source.clone();
    let ranges_fetch = fetch.clone();
    let ranges = stream::once(async move {
        let head = ranges_source.chain_head().await?;
        let chunk = CHAIN_CHUNK as u64;
        let starts = (after_seq..head.seq).step_by(CHAIN_CHUNK);
        Ok::<_, StoreError>(
            stream::iter(starts)
                .map(move |start| {
                    let through = start.saturating_add(chunk).min(head.seq);
                    InFlight(tokio::spawn(ranges_fetch(
                        ranges_source.clone(),
                        start,
                        Some(through),
                    )))
                })
                .buffered(parallel)
                .map(|joined| joined.map_err(|e| StoreError::Background(e.to_string()))?)
                .try_take_while(|rows| std::future::ready(Ok(!rows.is_empty()))),
        )
    })
    .try_flatten()
    .map_ok(move |rows: Vec<T>| {
        if let Some(last) = rows.last() {
            seen.store(seq_of(last), Ordering::Relaxed);
        }
        rows
    });
    // Runs once the ranges are done, from the last row they returned.
    let rest = stream::once(async move {
        let after = last_seen.load(Ordering::Relaxed);
        prefetching_chunks(
            after,
            CHAIN_CHUNK,
            move |after| fetch(source.clone(), after, None),
            move |rows: &Vec<T>| rows.last().map(seq_of),
        )
    })
    .flatten();
    ranges.chain(rest).boxed()
}

/// How many chunks of a chain walk are read at the same time.
const PARALLEL_CHAIN_FETCHES: usize = 2;

/// How many chunks of verification's chain walk are read and hashed at the same time. A
/// checked chunk is a few hundred kilobytes of links (not events; rows are hashed as they
/// are read), so more of them cost little memory;
/// with only two, each connection waited for the other's hashing (PostgreSQL) or for the
/// consumer, and neither core was kept busy: 1,000,000 events took 2.2 s (SQLite) and
/// 5–6 s (PostgreSQL) with two, 1.1 s and 2.5 s with four, the same with six
/// (`verify_figures` example).
const PARALLEL_CHECK_FETCHES: usize = 4;

/// A chunk fetch running in the background; aborted if the stream is dropped first.
struct InFlight<C>(tokio::task::JoinHandle<Result<C, StoreError>>);

impl<T> Drop for InFlight<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<C> Future for InFlight<C> {
    type Output = Result<Result<C, StoreError>, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// What [`prefetching_chunks`] reads: a chunk of rows, full or the last.
trait Chunk: Send + 'static {
    fn len(&self) -> usize;
}

impl<T: Send + 'static> Chunk for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

impl Chunk for EventBatch {
    fn len(&self) -> usize {
        EventBatch::len(self)
    }
}

/// Walks a keyset in chunks of `chunk` rows, fetching chunk n + 1 while the consumer works
/// through chunk n: the database and the consumer (an encoder, a hasher) overlap instead of
/// taking turns. At most two chunks are in memory. `next_key` is the key after a chunk's
/// last row (`None` for an empty chunk).
fn prefetching_chunks<K, C, F, Fut, N>(
    start: K,
    chunk: usize,
    fetch: F,
    next_key: N,
) -> BoxStream<'static, Result<C, StoreError>>
where
    K: Send + 'static,
    C: Chunk,
    F: Fn(K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<C, StoreError>> + Send + 'static,
    N: Fn(&C) -> Option<K> + Send + Sync + 'static,
{
    enum State<K, C> {
        Start(K),
        Fetching(InFlight<C>),
        Done,
    }
    let fetch = Arc::new(fetch);
    let next_key = Arc::new(next_key);
    stream::try_unfold(State::Start(start), move |state| {
        let fetch = fetch.clone();
        let next_key = next_key.clone();
        async move {
            let mut in_flight = match state {
                State::Done => return Ok::<_, StoreError>(None),
                State::Start(key) => InFlight(tokio::spawn(fetch(key))),
                State::Fetching(in_flight) => in_flight,
            };
            let rows = (&mut in_flight.0)
                .await
                .map_err(|e| StoreError::Background(e.to_string()))??;
            let next = match next_key(&rows) {
                Some(key) if rows.len() == chunk => {
                    State::Fetching(InFlight(tokio::spawn(fetch(key))))
                }
                _ => State::Done,
            };
            Ok(Some((rows, next)))
        }
    })
    .try_filter(|rows| std::future::ready(rows.len() > 0))
    .boxed()
}

/// Rows per chunk of a chain walk.
const CHAIN_CHUNK: usize = 5000;

/// [`AuditStore::facets`] for any backend.
pub(crate) async fn collect_facets<S: Backend>(
    source: &S,
    scope: &TenantScope,
) -> Result<Facets, StoreError> {
    let corrupt = |e: crate::event::InvalidName| StoreError::CorruptRow(e.to_string());
    Ok(Facets {
        categories: source.distinct("category", scope).await?,
        actions: source
            .distinct("action", scope)
            .await?
            .iter()
            .map(|a| a.parse().map_err(corrupt))
            .collect::<Result<_, _>>()?,
        users: source.users(scope).await?,
        outcomes: source
            .distinct("outcome", scope)
            .await?
            .iter()
            .map(|o| o.parse().map_err(corrupt))
            .collect::<Result<_, _>>()?,
    })
}

/// [`AuditStore::query`] for any backend.
pub(crate) async fn query_page<S: Backend>(
    source: &S,
    filter: &EventFilter,
    scope: &TenantScope,
    page: &PageRequest,
) -> Result<Page, StoreError> {
    filter.validate()?;
    let after = page
        .cursor
        .as_ref()
        .map(|cursor| cursor.position_for(filter, scope))
        .transpose()?;
    let limit = page.limit.get();
    // One extra row tells whether another page exists without a second query.
    let mut items = Vec::new();
    // A first page with only broad conditions looks at the newest events first; a full
    // page there is the answer, and the next pages walk the same way.
    if after.is_none() && only_broad_conditions(filter) {
        let recent = RECENT.max(limit + 1);
        items = source
            .fetch_after(&Plan::Recent(recent), filter, scope, None, limit + 1)
            .await?;
    }
    let read = if items.len() > limit {
        PlanKind::Walk
    } else {
        // A continuation reads the way its first page did, without counting candidates again.
        let plan = match page.cursor.as_ref().and_then(Cursor::read) {
            Some(PlanKind::Walk) => Plan::Walk,
            Some(PlanKind::Candidates) => candidates_plan(source, filter, scope).await?,
            None => plan(source, filter, scope).await?,
        };
        items = source
            .fetch_after(&plan, filter, scope, after, limit + 1)
            .await?;
        match plan {
            Plan::Candidates(_) => PlanKind::Candidates,
            Plan::Walk | Plan::Recent(_) => PlanKind::Walk,
        }
    };
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|last| Cursor::new(Position::of(last), filter, scope).read_by(read))
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// [`AuditStore::count`] for any backend: the page query's conditions and plan, counting
/// at most `bound + 1` rows.
pub(crate) async fn count_matches<S: Backend>(
    source: &S,
    filter: &EventFilter,
    scope: &TenantScope,
    bound: u64,
) -> Result<MatchCount, StoreError> {
    filter.validate()?;
    // A LIMIT is a signed 64-bit integer on both backends.
    let bound = bound.min(i64::MAX.unsigned_abs() - 1);
    let plan = plan(source, filter, scope).await?;
    let counted = source.count_rows(&plan, filter, scope, bound + 1).await?;
    Ok(MatchCount::bounded(counted, bound))
}

/// How to read the events matching `filter` within `scope`: from the terms' candidates when
/// they are few, else by the time-ordered walk (see `term_plan.rs`).
pub(crate) async fn plan<S: Backend>(
    source: &S,
    filter: &EventFilter,
    scope: &TenantScope,
) -> Result<Plan, StoreError> {
    let groups = term_groups(source, filter, scope).await?;
    if groups.is_empty() {
        return Ok(Plan::Walk);
    }
    if groups.matches_nothing() {
        return Ok(Plan::Candidates(groups));
    }
    let candidates = source.candidate_count(&groups, SELECTIVE).await?;
    Ok(if candidates < SELECTIVE {
        Plan::Candidates(groups)
    } else {
        Plan::Walk
    })
}

/// The terms of `filter` within `scope`, a substring matched against the names first.
async fn term_groups<S: Backend>(
    source: &S,
    filter: &EventFilter,
    scope: &TenantScope,
) -> Result<TermGroups, StoreError> {
    let names = match filter.resource_name.as_deref().filter(|n| !n.is_empty()) {
        Some(needle) => {
            let names = source.matching_names(needle, MAX_NAMES + 1).await?;
            (names.len() <= MAX_NAMES).then_some(names)
        }
        None => None,
    };
    Ok(TermGroups::of(filter, scope, names))
}

/// The candidates plan, decided earlier (a cursor says so): the terms, not counted again.
async fn candidates_plan<S: Backend>(
    source: &S,
    filter: &EventFilter,
    scope: &TenantScope,
) -> Result<Plan, StoreError> {
    let groups = term_groups(source, filter, scope).await?;
    Ok(if groups.is_empty() {
        Plan::Walk
    } else {
        Plan::Candidates(groups)
    })
}

/// [`AuditStore::export`] for any backend: [`export_chunks`] of events.
pub(crate) fn export_stream<S: Backend>(
    source: S,
    filter: EventFilter,
    scope: TenantScope,
) -> EventStream {
    export_chunks(
        source,
        filter,
        scope,
        |source: S, plan: Plan, filter: EventFilter, scope: TenantScope, after| async move {
            source
                .fetch_after(&plan, &filter, &scope, after, EXPORT_CHUNK)
                .await
        },
        |rows: &Vec<AuditEvent>| rows.last().map(Position::of),
    )
    .map_ok(|rows| stream::iter(rows.into_iter().map(Ok::<_, StoreError>)))
    .try_flatten()
    .boxed()
}

/// [`AuditStore::export_batches`] for any backend: [`export_chunks`], each chunk read as one
/// [`EventBatch`] ([`Backend::fetch_batch_after`]).
pub(crate) fn export_batch_stream<S: Backend>(
    source: S,
    filter: EventFilter,
    scope: TenantScope,
) -> BatchStream {
    export_chunks(
        source,
        filter,
        scope,
        |source: S, plan: Plan, filter: EventFilter, scope: TenantScope, after| async move {
            source
                .fetch_batch_after(&plan, &filter, &scope, after, EXPORT_CHUNK)
                .await
        },
        |batch: &EventBatch| batch.last().map(|last| last.position()),
    )
}

/// An export's keyset walk in [`EXPORT_CHUNK`]-row chunks, each read by `read` (events or a
/// batch) after the position `last` gives of the chunk before.
///
/// Each chunk is its own short query, so an export never pins a connection or a snapshot
/// for the whole download (which on SQLite would block WAL checkpoints), and a slow client
/// simply delays the next chunk.
fn export_chunks<S, C, R, Fut>(
    source: S,
    filter: EventFilter,
    scope: TenantScope,
    read: R,
    last: fn(&C) -> Option<Position>,
) -> BoxStream<'static, Result<C, StoreError>>
where
    S: Backend,
    C: Chunk,
    R: Fn(S, Plan, EventFilter, TenantScope, Option<Position>) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = Result<C, StoreError>> + Send + 'static,
{
    if let Err(invalid) = filter.validate() {
        return stream::once(async move { Err(StoreError::from(invalid)) }).boxed();
    }
    // Decided once per export: the filter does not change between its chunks.
    let plan = Arc::new(tokio::sync::OnceCell::<Plan>::new());
    prefetching_chunks(
        None,
        EXPORT_CHUNK,
        move |after: Option<Position>| {
            let (source, filter, scope) = (source.clone(), filter.clone(), scope.clone());
            let (plan, read) = (plan.clone(), read.clone());
            async move {
                let plan = plan
                    .get_or_try_init(|| self::plan(&source, &filter, &scope))
                    .await?
                    .clone();
                read(source, plan, filter, scope, after).await
            }
        },
        move |chunk: &C| last(chunk).map(Some),
    )
}

/// The events of a batch that still need inserting, after an insert found some of its ids
/// taken: an event stored under its id with the same content (its chain hash recomputed at
/// the stored position matches) was written by an earlier attempt whose acknowledgement was
/// lost, and is skipped; so is a repeat of an earlier event of the same batch. An id stored
/// (or repeated) with other content is a real conflict: [`StoreError::IdConflict`] names
/// every such id, and nothing is written.
pub(crate) fn remove_stored(
    events: &[AuditEvent],
    stored: &std::collections::HashMap<Uuid, crate::chain::ChainLink>,
) -> Result<Vec<AuditEvent>, StoreError> {
    let mut first_seen: std::collections::HashMap<Uuid, usize> =
        std::collections::HashMap::with_capacity(events.len());
    let mut conflicts = Vec::new();
    let mut unstored = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        if let Some(link) = stored.get(&event.id) {
            if link.recompute(event) != link.hash {
                conflicts.push(event.id);
            }
            continue;
        }
        match first_seen.get(&event.id) {
            Some(&earlier) => {
                if crate::chain::canonical_json(&events[earlier])
                    != crate::chain::canonical_json(event)
                {
                    conflicts.push(event.id);
                }
            }
            None => {
                first_seen.insert(event.id, index);
                unstored.push(event.clone());
            }
        }
    }
    if conflicts.is_empty() {
        Ok(unstored)
    } else {
        Err(StoreError::IdConflict { ids: conflicts })
    }
}

#[cfg(test)]
mod remove_stored_tests {
    use super::*;
    use crate::chain::ChainHead;
    use crate::event::Action;

    fn event(path: &str) -> AuditEvent {
        AuditEvent::builder("Model", Action::Create)
            .internal(path.to_owned())
            .build()
    }

    #[test]
    fn stored_and_repeated_events_are_skipped_and_changed_ones_conflict() {
        let (a, b, c) = (event("a"), event("b"), event("c"));
        let (links, _) = ChainHead::EMPTY.extend(std::slice::from_ref(&a));
        let stored = [(a.id, links[0])].into_iter().collect();
        let unstored = remove_stored(&[a.clone(), b.clone(), b.clone(), c.clone()], &stored);
        assert_eq!(unstored.unwrap(), vec![b.clone(), c.clone()]);

        let mut changed_a = a.clone();
        changed_a.path = "elsewhere".into();
        let mut changed_b = b.clone();
        changed_b.status = 500;
        let conflict = remove_stored(&[changed_a, b, changed_b], &stored).unwrap_err();
        assert!(
            matches!(&conflict, StoreError::IdConflict { ids } if ids.len() == 2),
            "{conflict:?}"
        );
    }
}
