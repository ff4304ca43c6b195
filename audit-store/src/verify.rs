//! Verification: walk the chain and report the first broken link precisely.

use std::fmt;

use ed25519_dalek::VerifyingKey;
use futures_util::stream::{BoxStream, TryChunksError};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use uuid::Uuid;

use crate::chain::{
    CHAIN_TAG, CHAIN_TAG_V2, CONTENT_TAG_V2, ChainHead, ChainLink, ChainVersion,
    write_canonical_json,
};
use crate::checkpoint::{Checkpoint, CheckpointKind};
use crate::error::StoreError;
use crate::event::AuditEvent;
use crate::store::AuditStore;

/// How far around a row's position verification looks for the position it was written at,
/// to tell a moved row from a modified one.
const REORDER_WINDOW: u64 = 1000;

/// Events hashed together: many times the widest SIMD batch (16 lanes), and few enough that
/// the batch being hashed and the one being read stay small.
const HASH_BATCH: usize = 4096;

/// One link of the chain as verification checks it: the row's link and event id, and
/// whether its content still gives the link's hash.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedLink {
    /// The row's link.
    pub link: ChainLink,
    /// The row's event id.
    pub id: Uuid,
    /// `None` when the row's content and position give `link.hash`. Otherwise the stored
    /// event, decoded in full, whose content the reference computation
    /// ([`ChainLink::recompute`]) found not to match: verification looks for the position it
    /// was written at with it.
    pub mismatch: Option<Box<AuditEvent>>,
}

/// The chain in chain order as [`AuditStore::chain_checks_after`] yields it: batches of
/// checked links.
pub type CheckStream = BoxStream<'static, Result<Vec<CheckedLink>, StoreError>>;

/// A row's link and whether the fast path's bytes gave its hash (`false` is only a
/// suspicion, to be confirmed on the decoded event).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowCheck {
    pub(crate) link: ChainLink,
    pub(crate) id: Uuid,
    pub(crate) matches: bool,
}

/// Collects the messages of many links and hashes them side by side (multi-buffer SHA-256):
/// version 1 `prev_hash ‖ seq ‖ canonical JSON` in one buffer, version 2 canonical JSON in
/// another, then the version 2 chaining steps. Whoever fills it writes each row's canonical
/// JSON (from an event, or from a row's columns), so this is the one place verification
/// hashes. Every [`HASHER_ROWS`] links it hashes what it holds and reuses its buffers, so a
/// chunk of any size costs a few hundred kilobytes.
#[derive(Default)]
pub(crate) struct LinkHasher {
    v1_bytes: Vec<u8>,
    v1_ends: Vec<usize>,
    v2_bytes: Vec<u8>,
    v2_ends: Vec<usize>,
    /// Each pending link, its id, and whether its canonical JSON was written (a row the
    /// fast path could not read is not hashed and counts as a mismatch).
    rows: Vec<(ChainLink, Uuid, bool)>,
    /// The links hashed so far.
    done: Vec<RowCheck>,
}

/// Links hashed together: many times the widest SIMD batch (16 lanes), and few enough that
/// the buffers stay small (about 640 bytes a link).
const HASHER_ROWS: usize = 512;

impl LinkHasher {
    /// A hasher for about `rows` links.
    pub(crate) fn with_capacity(rows: usize) -> Self {
        let pending = rows.min(HASHER_ROWS);
        LinkHasher {
            v2_bytes: Vec::with_capacity(pending * 640),
            v2_ends: Vec::with_capacity(pending),
            rows: Vec::with_capacity(pending),
            done: Vec::with_capacity(rows),
            ..LinkHasher::default()
        }
    }

    /// Adds a link; `write` appends the row's canonical JSON to the buffer it is given and
    /// says whether it could (on `false` whatever it wrote is discarded).
    pub(crate) fn push(
        &mut self,
        link: ChainLink,
        id: Uuid,
        write: impl FnOnce(&mut Vec<u8>) -> bool,
    ) {
        let written = if link.version == ChainVersion::V1 {
            let begin = self.v1_bytes.len();
            self.v1_bytes.extend_from_slice(&link.prev_hash.0);
            self.v1_bytes.extend_from_slice(&link.seq.to_be_bytes());
            let written = write(&mut self.v1_bytes);
            if written {
                self.v1_ends.push(self.v1_bytes.len());
            } else {
                self.v1_bytes.truncate(begin);
            }
            written
        } else {
            let begin = self.v2_bytes.len();
            let written = write(&mut self.v2_bytes);
            if written {
                self.v2_ends.push(self.v2_bytes.len());
            } else {
                self.v2_bytes.truncate(begin);
            }
            written
        };
        self.rows.push((link, id, written));
        if self.rows.len() >= HASHER_ROWS {
            self.hash_pending();
        }
    }

    /// Each link, in the order pushed, and whether its bytes gave its hash.
    pub(crate) fn finish(mut self) -> Vec<RowCheck> {
        self.hash_pending();
        self.done
    }

    /// Hashes the pending links into `done` and empties the buffers (keeping their memory).
    fn hash_pending(&mut self) {
        let v1_digests = hash_bodies(CHAIN_TAG, &self.v1_bytes, &self.v1_ends);
        let contents = hash_bodies(CONTENT_TAG_V2, &self.v2_bytes, &self.v2_ends);
        let mut steps = Vec::with_capacity(contents.len() * 72);
        let mut step_ends = Vec::with_capacity(contents.len());
        let v2_links = self
            .rows
            .iter()
            .filter(|(link, _, written)| *written && link.version != ChainVersion::V1);
        for ((link, _, _), content) in v2_links.zip(&contents) {
            steps.extend_from_slice(&link.prev_hash.0);
            steps.extend_from_slice(&link.seq.to_be_bytes());
            steps.extend_from_slice(content);
            step_ends.push(steps.len());
        }
        let v2_digests = hash_bodies(CHAIN_TAG_V2, &steps, &step_ends);
        let (mut v1, mut v2) = (v1_digests.into_iter(), v2_digests.into_iter());
        self.done
            .extend(self.rows.drain(..).map(|(link, id, written)| {
                let digest = match (written, link.version) {
                    (false, _) => None,
                    (true, ChainVersion::V1) => v1.next(),
                    (true, ChainVersion::V2) => v2.next(),
                };
                RowCheck {
                    link,
                    id,
                    matches: digest == Some(link.hash.0),
                }
            }));
        self.v1_bytes.clear();
        self.v1_ends.clear();
        self.v2_bytes.clear();
        self.v2_ends.clear();
    }
}

/// [`AuditStore::chain_checks_after`] of a store that only offers
/// [`AuditStore::chain_after`]: events in batches, each hashed on a blocking thread, two
/// batches at a time (so on two cores while the next is read).
pub(crate) fn check_events(events: crate::store::EventStream) -> CheckStream {
    events
        .try_chunks(HASH_BATCH)
        .map_err(|TryChunksError(_, error)| error)
        .map_ok(|events| async move {
            tokio::task::spawn_blocking(move || checked_events(events))
                .await
                .map_err(|e| StoreError::Background(format!("hashing a batch failed: {e}")))?
        })
        .try_buffered(2)
        .boxed()
}

/// Checks decoded events: [`hashes_match`], each mismatch kept with its event.
fn checked_events(events: Vec<AuditEvent>) -> Result<Vec<CheckedLink>, StoreError> {
    let matches = hashes_match(&events);
    events
        .into_iter()
        .zip(matches)
        .map(|(event, matches)| {
            let Some(link) = event.chain else {
                return Err(StoreError::CorruptRow(format!(
                    "event {} was read without its chain link",
                    event.id
                )));
            };
            Ok(CheckedLink {
                link,
                id: event.id,
                mismatch: (!matches).then(|| Box::new(event)),
            })
        })
        .collect()
}

/// The first thing found wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChainBreak {
    /// A checkpoint's signature does not verify.
    ForgedCheckpoint {
        /// Position of the checkpoint among all checkpoints (oldest first, from 0).
        index: usize,
        /// The sequence number it claims.
        seq: u64,
        /// Why it failed.
        reason: String,
    },
    /// The row's content no longer matches its hash.
    ModifiedRow {
        /// The row's sequence number.
        seq: u64,
        /// The row's event id.
        id: Uuid,
    },
    /// The row is intact but sits at another position than it was written at.
    ReorderedRow {
        /// Where it is now.
        seq: u64,
        /// Where it was written.
        written_at: u64,
        /// The row's event id.
        id: Uuid,
    },
    /// Rows are missing between two positions.
    MissingRows {
        /// The last intact position before the gap.
        after_seq: u64,
        /// The next position present.
        next_seq: u64,
    },
    /// The row is intact but does not continue the row before it (that one was replaced).
    BrokenLink {
        /// The row's sequence number.
        seq: u64,
        /// The row's event id.
        id: Uuid,
    },
    /// A checkpoint vouches for a different hash at this position: rows were rewritten.
    CheckpointMismatch {
        /// The position.
        seq: u64,
        /// The checkpoint's kind.
        checkpoint: CheckpointKind,
    },
    /// The newest rows are gone: the chain ends before a position that was vouched for.
    TruncatedTail {
        /// The last position present.
        last_seq: u64,
        /// The position the newest checkpoint (or the chain head) vouches for.
        expected_seq: u64,
        /// What vouches for it.
        evidence: &'static str,
    },
    /// The chain starts after position 1 and no signed purge checkpoint vouches for its start.
    UnvouchedStart {
        /// The first position present.
        first_seq: u64,
    },
    /// A checkpoint published outside the database is not among the stored ones: checkpoint
    /// rows were deleted (they are append-only, and every published one was stored first).
    MissingCheckpoint {
        /// The sequence number it vouches for.
        seq: u64,
        /// When it was signed.
        created_at: chrono::DateTime<chrono::Utc>,
    },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::ForgedCheckpoint { index, seq, reason } => write!(
                f,
                "checkpoint #{index} (seq {seq}) does not verify: {reason}"
            ),
            ChainBreak::ModifiedRow { seq, id } => write!(
                f,
                "event seq {seq} (id {id}) was modified: its content no longer matches its hash"
            ),
            ChainBreak::ReorderedRow {
                seq,
                written_at,
                id,
            } => write!(
                f,
                "rows were reordered: event {id} now at seq {seq} was written at seq {written_at}"
            ),
            ChainBreak::MissingRows {
                after_seq,
                next_seq,
            } => {
                let missing = next_seq.saturating_sub(*after_seq).saturating_sub(1);
                write!(
                    f,
                    "{missing} event(s) deleted: seq {} to {} are missing (after seq {after_seq})",
                    after_seq + 1,
                    next_seq - 1
                )
            }
            ChainBreak::BrokenLink { seq, id } => write!(
                f,
                "event seq {seq} (id {id}) does not follow seq {}: the event before it was replaced",
                seq.saturating_sub(1)
            ),
            ChainBreak::CheckpointMismatch { seq, checkpoint } => write!(
                f,
                "the {} checkpoint at seq {seq} vouches for another hash: the events up to seq {seq} were rewritten",
                checkpoint.as_str()
            ),
            ChainBreak::TruncatedTail {
                last_seq,
                expected_seq,
                evidence,
            } => write!(
                f,
                "the newest events were deleted: the log ends at seq {last_seq} but {evidence} vouches for seq {expected_seq}"
            ),
            ChainBreak::UnvouchedStart { first_seq } => write!(
                f,
                "the log starts at seq {first_seq} and no signed purge checkpoint vouches for the events before it"
            ),
            ChainBreak::MissingCheckpoint { seq, created_at } => write!(
                f,
                "a published checkpoint (seq {seq}, signed {}) is missing from the database: checkpoints were deleted",
                created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainReport {
    /// Events whose hash and link were checked.
    pub events_checked: u64,
    /// The first position checked (`None` for an empty chain).
    pub first_seq: Option<u64>,
    /// The last position checked.
    pub last_seq: Option<u64>,
    /// How many checkpoints were checked.
    pub checkpoints_checked: usize,
    /// The newest checkpoint, if any.
    pub latest_checkpoint: Option<Checkpoint>,
    /// The first problem found, or `None` for an intact chain.
    pub broken: Option<ChainBreak>,
    /// The newest events that no checkpoint vouches for (all of them when there is none):
    /// deleting them, and rewriting the stored head, would go unnoticed.
    pub unanchored_events: u64,
}

impl ChainReport {
    /// True when nothing was found wrong.
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }

    /// True when at least one signed checkpoint anchors the chain. Without one, the newest
    /// events (or all of them) could be deleted, and the stored head rewritten, unnoticed.
    pub fn is_anchored(&self) -> bool {
        self.checkpoints_checked > 0
    }
}

/// Verifies the whole chain of `store`, trusting checkpoints signed by `key`.
///
/// Checks, in order: every checkpoint's signature; from the newest purge checkpoint (or the
/// beginning), every event's hash over its content and position, its link to the event
/// before it, and the hash each checkpoint vouches for; finally that the chain reaches the
/// newest checkpoint and the stored chain head.
///
/// ```
/// # async fn demo() -> Result<(), audit_store::StoreError> {
/// use audit_store::{
///     Action, AuditEvent, AuditStore, CheckpointKind, CheckpointSigner, SqliteStore, verify_chain,
/// };
/// let signer = CheckpointSigner::from_seed([5; 32]);
/// let key = signer.verifying_key();
/// let store = SqliteStore::connect("sqlite::memory:").await?.with_signer(signer);
/// store.append(&[AuditEvent::builder("Model", Action::Create).internal("seed").build()]).await?;
/// store.checkpoint(CheckpointKind::Manual).await?;
/// let report = verify_chain(&store, &key).await?;
/// assert!(report.is_intact(), "{:?}", report.broken);
/// assert_eq!(report.events_checked, 1);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
pub async fn verify_chain(
    store: &dyn AuditStore,
    key: &VerifyingKey,
) -> Result<ChainReport, StoreError> {
    verify_chain_against(store, key, &[]).await
}

/// [`verify_chain`], also trusting `published`: checkpoints kept outside the database (by
/// a [`CheckpointLog`](crate::CheckpointLog), a forwarder, a transparency log). Someone who
/// can rewrite the database can delete its newest events and the checkpoints vouching for
/// them; a published checkpoint missing from the store, or vouching for events that are no
/// longer there, shows it.
///
/// ```
/// # async fn demo() -> Result<(), audit_store::StoreError> {
/// use audit_store::{
///     Action, AuditEvent, AuditStore, ChainBreak, CheckpointKind, CheckpointSigner, SqliteStore,
///     verify_chain_against,
/// };
/// let signer = CheckpointSigner::from_seed([5; 32]);
/// let store = SqliteStore::connect("sqlite::memory:").await?.with_signer(signer.clone());
/// let events = [AuditEvent::builder("Model", Action::Create).internal("seed").build()];
/// store.append(&events).await?;
/// let published = store.checkpoint(CheckpointKind::Manual).await?.into_iter().collect::<Vec<_>>();
/// // A copy of the same log without that checkpoint: its rows were deleted there.
/// let other = SqliteStore::connect("sqlite::memory:").await?;
/// other.append(&events).await?;
/// let report = verify_chain_against(&other, &signer.verifying_key(), &published).await?;
/// assert!(matches!(report.broken, Some(ChainBreak::MissingCheckpoint { .. })));
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
pub async fn verify_chain_against(
    store: &dyn AuditStore,
    key: &VerifyingKey,
    published: &[Checkpoint],
) -> Result<ChainReport, StoreError> {
    let mut checkpoints = store.checkpoints().await?;
    let missing: Vec<Checkpoint> = published
        .iter()
        .filter(|p| {
            !checkpoints
                .iter()
                .any(|stored| stored.signature == p.signature)
        })
        .cloned()
        .collect();
    // Published ones count as fully as stored ones (after them, for the report's numbering).
    checkpoints.extend(missing.iter().cloned());
    let mut report = ChainReport {
        events_checked: 0,
        first_seq: None,
        last_seq: None,
        checkpoints_checked: checkpoints.len(),
        latest_checkpoint: checkpoints.iter().max_by_key(|c| c.created_at).cloned(),
        broken: None,
        unanchored_events: 0,
    };
    for (index, checkpoint) in checkpoints.iter().enumerate() {
        if let Err(reason) = checkpoint.verify(key) {
            report.broken = Some(ChainBreak::ForgedCheckpoint {
                index,
                seq: checkpoint.seq,
                reason: reason.to_string(),
            });
            return Ok(report);
        }
    }
    // The chain starts after the newest purge; before any purge, at the genesis.
    let start = checkpoints
        .iter()
        .filter(|c| c.kind == CheckpointKind::Purge)
        .max_by_key(|c| c.seq)
        .map_or(ChainHead::EMPTY, Checkpoint::chain_head);
    let vouched: Vec<&Checkpoint> = checkpoints
        .iter()
        .filter(|c| c.kind != CheckpointKind::Purge && c.seq > start.seq)
        .collect();

    let mut expected = start;
    let mut batches = store.chain_checks_after(start.seq);
    while let Some(checks) = batches.try_next().await? {
        for checked in &checks {
            if let Some(found) = check_link(&mut report, &mut expected, start, &vouched, checked) {
                report.broken = Some(found);
                return Ok(report);
            }
        }
    }
    let anchored_through = checkpoints.iter().map(|c| c.seq).max().unwrap_or(0);
    report.unanchored_events = expected.seq.saturating_sub(anchored_through);
    if let Some(newest) = vouched.iter().map(|c| c.seq).max()
        && newest > expected.seq
    {
        report.broken = Some(ChainBreak::TruncatedTail {
            last_seq: expected.seq,
            expected_seq: newest,
            evidence: "a signed checkpoint",
        });
        return Ok(report);
    }
    if let Some(missing) = missing.into_iter().next() {
        report.broken = Some(ChainBreak::MissingCheckpoint {
            seq: missing.seq,
            created_at: missing.created_at,
        });
        return Ok(report);
    }
    let head = store.chain_head().await?;
    if head.seq > expected.seq {
        report.broken = Some(ChainBreak::TruncatedTail {
            last_seq: expected.seq,
            expected_seq: head.seq,
            evidence: "the stored chain head",
        });
    } else if head.seq == expected.seq && head.hash != expected.hash && head.seq > 0 {
        report.broken = Some(ChainBreak::BrokenLink {
            seq: head.seq,
            id: Uuid::nil(),
        });
    }
    Ok(report)
}

/// Checks one link against the one before it (`expected`). Advances `expected` and the
/// report past an intact link; returns what is broken.
fn check_link(
    report: &mut ChainReport,
    expected: &mut ChainHead,
    start: ChainHead,
    vouched: &[&Checkpoint],
    checked: &CheckedLink,
) -> Option<ChainBreak> {
    let link = checked.link;
    report.first_seq.get_or_insert(link.seq);
    if report.events_checked == 0 && start.seq == 0 && link.seq > 1 {
        return Some(ChainBreak::UnvouchedStart {
            first_seq: link.seq,
        });
    }
    if link.seq != expected.seq + 1 {
        return Some(ChainBreak::MissingRows {
            after_seq: expected.seq,
            next_seq: link.seq,
        });
    }
    if let Some(event) = &checked.mismatch {
        let lo = link.seq.saturating_sub(REORDER_WINDOW).max(1);
        let written_at = (lo..=link.seq + REORDER_WINDOW)
            .filter(|s| *s != link.seq)
            .find(|s| link.recompute_at(*s, event) == link.hash);
        return Some(match written_at {
            Some(written_at) => ChainBreak::ReorderedRow {
                seq: link.seq,
                written_at,
                id: checked.id,
            },
            None => ChainBreak::ModifiedRow {
                seq: link.seq,
                id: checked.id,
            },
        });
    }
    if link.prev_hash != expected.hash {
        return Some(ChainBreak::BrokenLink {
            seq: link.seq,
            id: checked.id,
        });
    }
    if let Some(checkpoint) = vouched
        .iter()
        .find(|c| c.seq == link.seq && c.head != link.hash)
    {
        return Some(ChainBreak::CheckpointMismatch {
            seq: link.seq,
            checkpoint: checkpoint.kind,
        });
    }
    *expected = ChainHead {
        seq: link.seq,
        hash: link.hash,
    };
    report.events_checked += 1;
    report.last_seq = Some(link.seq);
    None
}

/// Whether each event's content and position still give its stored hash.
///
/// Every event stores its predecessor's hash, so the hashes are independent of each other
/// and are computed side by side in SIMD lanes (multi-buffer SHA-256), several times faster
/// than one after another. Only a match is taken from that hasher: a mismatch is recomputed
/// with the reference implementation ([`ChainLink::recompute`](crate::ChainLink::recompute)) before it is believed, so a verdict of
/// "modified" never rests on the fast path alone, and a false match would need it to produce
/// the stored SHA-256 of other content.
///
/// Public as [`chain_hashes_match`] for receivers checking a copy of the chain.
fn hashes_match(events: &[AuditEvent]) -> Vec<bool> {
    let mut hasher = LinkHasher::with_capacity(events.len());
    let mut linked = Vec::with_capacity(events.len());
    for event in events {
        if let Some(link) = event.chain {
            hasher.push(link, event.id, |out| {
                write_canonical_json(event, out);
                true
            });
            linked.push(event);
        }
    }
    let mut checks = hasher.finish().into_iter().zip(linked);
    events
        .iter()
        .map(|event| {
            if event.chain.is_none() {
                return false;
            }
            checks.next().is_some_and(|(check, event)| {
                check.matches || check.link.recompute(event) == check.link.hash
            })
        })
        .collect()
}

/// SHA-256 of `prefix ‖ body` for each body of `bytes` (ending at `ends`), side by side.
fn hash_bodies(prefix: &[u8], bytes: &[u8], ends: &[usize]) -> Vec<[u8; 32]> {
    let mut digests = vec![[0_u8; 32]; ends.len()];
    crate::chain::hash_bodies_into(prefix, bytes, ends, &mut digests);
    digests
}

/// Whether each event's content and position still give the hash its `chain` link states
/// (`false` for an event without a link). Hashes a batch side by side (multi-buffer
/// SHA-256) and confirms every mismatch with [`ChainLink::recompute`](crate::ChainLink::recompute); receivers
/// of a forwarded copy check it with this.
///
/// ```
/// use audit_store::{Action, AuditEvent, ChainHead, chain_hashes_match};
/// let mut events: Vec<AuditEvent> = (0..3)
///     .map(|_| AuditEvent::builder("Model", Action::Create).internal("seed").build())
///     .collect();
/// let (links, _) = ChainHead::EMPTY.extend(&events);
/// for (event, link) in events.iter_mut().zip(links) {
///     event.chain = Some(link);
/// }
/// events[1].category = "Tampered".into();
/// assert_eq!(chain_hashes_match(&events), [true, false, true]);
/// ```
pub fn chain_hashes_match(events: &[AuditEvent]) -> Vec<bool> {
    hashes_match(events)
}
