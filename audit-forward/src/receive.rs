//! The receiving end: checks a forwarded copy of the log (an NDJSON file from the webhook,
//! the messages of a JetStream stream) for altered events, gaps and broken links, and
//! proves it complete up to the newest signed checkpoint it holds.
//!
//! Records may arrive in any order and more than once (at-least-once delivery): the
//! verifier keeps 72 bytes per distinct event (its position, hash and predecessor's hash)
//! and sorts them at the end, so a copy of 10 million events needs about 720 MB. Content
//! hashes are checked as records arrive, in batches, with the store's own chain hashing
//! ([`audit_store::chain_hashes_match`]); checkpoint signatures with
//! [`audit_store::Checkpoint::verify`].

use std::fmt;

use audit_store::{AuditEvent, ChainHash, Checkpoint, CheckpointKind, chain_hashes_match};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Events hashed together.
const HASH_BATCH: usize = 4096;
/// Entries kept per kind of finding in a report (the counts are complete).
const LISTED: usize = 100;

/// A range of sequence numbers, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeqRange {
    /// The first.
    pub from: u64,
    /// The last.
    pub to: u64,
}

/// An event found altered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Altered {
    /// Its position.
    pub seq: u64,
    /// Its id.
    pub id: Uuid,
}

/// What vouches for where the copy starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Start {
    /// The copy is empty.
    Empty,
    /// It starts at the first event of the chain.
    Genesis,
    /// It starts right after a signed purge checkpoint (retention removed the events before).
    Purge {
        /// The last purged position.
        seq: u64,
    },
    /// It starts where the verifier was told to expect ([`StreamVerifier::from_seq`]).
    Given {
        /// That position.
        seq: u64,
    },
    /// It starts later and nothing vouches for the events before: they may be missing.
    Unvouched {
        /// The first position held.
        first_seq: u64,
    },
}

/// What a verification found; [`StreamReport::is_intact`] says whether the copy is sound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamReport {
    /// Records read (duplicates included).
    pub records: u64,
    /// Distinct events.
    pub events: u64,
    /// Records that repeated an event already held, identically (harmless redeliveries).
    pub duplicates: u64,
    /// The first and last positions held.
    pub first_seq: Option<u64>,
    /// See `first_seq`.
    pub last_seq: Option<u64>,
    /// What vouches for the start.
    pub start: Start,
    /// Missing positions between the start and the last event held (first 100).
    pub gaps: Vec<SeqRange>,
    /// How many events those gaps hold in all.
    pub missing_events: u64,
    /// Events whose content no longer matches their hash (first 100).
    pub altered: Vec<Altered>,
    /// How many in all.
    pub altered_count: u64,
    /// Positions held twice with different hashes (first 100).
    pub conflicting: Vec<u64>,
    /// Events that do not continue the event before them (first 100).
    pub broken_links: Vec<u64>,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Checkpoints whose signature does not verify (first 100, with why).
    pub bad_checkpoints: Vec<String>,
    /// Positions where a valid checkpoint vouches for another hash than the copy holds.
    pub checkpoint_mismatches: Vec<u64>,
    /// A valid checkpoint vouches for a position beyond the last event held: the newest
    /// events are missing (`(last held, vouched)`).
    pub missing_tail: Option<(u64, u64)>,
    /// The newest valid checkpoint up to which the copy is proven complete and unaltered.
    pub complete_through: Option<Checkpoint>,
    /// Lines that are neither an event nor a checkpoint (first 100).
    pub malformed: Vec<String>,
}

impl StreamReport {
    /// True when nothing is missing, altered or unvouched.
    pub fn is_intact(&self) -> bool {
        self.missing_events == 0
            && self.altered_count == 0
            && self.conflicting.is_empty()
            && self.broken_links.is_empty()
            && self.bad_checkpoints.is_empty()
            && self.checkpoint_mismatches.is_empty()
            && self.missing_tail.is_none()
            && self.malformed.is_empty()
            && !matches!(self.start, Start::Unvouched { .. })
    }
}

impl fmt::Display for StreamReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = match (self.first_seq, self.last_seq) {
            (Some(first), Some(last)) => format!(" (seq {first} to {last})"),
            _ => String::new(),
        };
        writeln!(
            f,
            "records:           {} read, {} distinct event(s){range}, {} duplicate(s), {} checkpoint(s)",
            self.records, self.events, self.duplicates, self.checkpoints
        )?;
        let start = match &self.start {
            Start::Empty => "no events".to_owned(),
            Start::Genesis => "the first event of the chain".to_owned(),
            Start::Purge { seq } => {
                format!("after seq {seq}, vouched for by a signed purge checkpoint")
            }
            Start::Given { seq } => format!("seq {seq}, as expected (--from-seq)"),
            Start::Unvouched { first_seq } => format!(
                "seq {first_seq}, and nothing vouches for the events before it (missing? pass --from-seq {first_seq} if the sink started there)"
            ),
        };
        writeln!(f, "start:             {start}")?;
        let list = |items: Vec<String>| items.join(", ");
        if self.missing_events > 0 {
            writeln!(
                f,
                "gaps:              {} event(s) missing: {}",
                self.missing_events,
                list(
                    self.gaps
                        .iter()
                        .map(|g| if g.from == g.to {
                            format!("seq {}", g.from)
                        } else {
                            format!("seq {}-{}", g.from, g.to)
                        })
                        .collect()
                )
            )?;
        }
        if self.altered_count > 0 {
            writeln!(
                f,
                "altered:           {} event(s) no longer match their hash: {}",
                self.altered_count,
                list(
                    self.altered
                        .iter()
                        .map(|a| format!("seq {} (id {})", a.seq, a.id))
                        .collect()
                )
            )?;
        }
        if !self.conflicting.is_empty() {
            writeln!(
                f,
                "conflicting:       seq {} held with two different hashes",
                list(self.conflicting.iter().map(u64::to_string).collect())
            )?;
        }
        if !self.broken_links.is_empty() {
            writeln!(
                f,
                "broken links:      seq {} do not continue the event before",
                list(self.broken_links.iter().map(u64::to_string).collect())
            )?;
        }
        for bad in &self.bad_checkpoints {
            writeln!(f, "bad checkpoint:    {bad}")?;
        }
        if !self.checkpoint_mismatches.is_empty() {
            writeln!(
                f,
                "rewritten:         a signed checkpoint vouches for another hash at seq {}",
                list(
                    self.checkpoint_mismatches
                        .iter()
                        .map(u64::to_string)
                        .collect()
                )
            )?;
        }
        if let Some((last, vouched)) = self.missing_tail {
            writeln!(
                f,
                "missing tail:      the copy ends at seq {last} but a signed checkpoint vouches for seq {vouched}"
            )?;
        }
        for line in &self.malformed {
            writeln!(f, "malformed:         {line}")?;
        }
        match &self.complete_through {
            Some(checkpoint) => writeln!(
                f,
                "complete through:  seq {} ({} checkpoint signed {})",
                checkpoint.seq,
                checkpoint.kind.as_str(),
                checkpoint
                    .created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )?,
            None => writeln!(
                f,
                "complete through:  no signed checkpoint proves this copy complete"
            )?,
        }
        if let (Some(checkpoint), Some(last)) = (&self.complete_through, self.last_seq)
            && last > checkpoint.seq
        {
            writeln!(
                f,
                "after it:          seq {} to {last} are intact but not yet covered by a checkpoint",
                checkpoint.seq + 1
            )?;
        }
        Ok(())
    }
}

/// One distinct event as the verifier keeps it.
#[derive(Clone, Copy)]
struct Entry {
    seq: u64,
    hash: [u8; 32],
    prev: [u8; 32],
}

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LineError(String);

#[derive(Deserialize)]
struct CheckpointLine {
    checkpoint: Checkpoint,
}

/// Checks a forwarded copy record by record; see the [module documentation](self).
///
/// ```
/// use audit_forward::receive::StreamVerifier;
/// use audit_store::CheckpointSigner;
///
/// let key = CheckpointSigner::from_seed([1; 32]).verifying_key();
/// let mut verifier = StreamVerifier::new(key);
/// for line in "".lines() {
///     verifier.push_line(line.as_bytes());
/// }
/// let report = verifier.finish();
/// assert!(report.is_intact());
/// ```
pub struct StreamVerifier {
    key: VerifyingKey,
    from_seq: Option<u64>,
    pending: Vec<AuditEvent>,
    entries: Vec<Entry>,
    altered: Vec<Altered>,
    altered_count: u64,
    checkpoints: Vec<Checkpoint>,
    records: u64,
    malformed: Vec<String>,
}

impl StreamVerifier {
    /// A verifier trusting checkpoints signed by `key`.
    pub fn new(key: VerifyingKey) -> StreamVerifier {
        StreamVerifier {
            key,
            from_seq: None,
            pending: Vec::with_capacity(HASH_BATCH),
            entries: Vec::new(),
            altered: Vec::new(),
            altered_count: 0,
            checkpoints: Vec::new(),
            records: 0,
            malformed: Vec::new(),
        }
    }

    /// Accepts a copy starting at `seq` (a sink that started after the beginning of the
    /// chain); without it the copy must start at the first event or right after a purge.
    pub fn from_seq(mut self, seq: u64) -> StreamVerifier {
        self.from_seq = Some(seq);
        self
    }

    /// One NDJSON line: an event, or `{"checkpoint": {...}}`. Blank lines are ignored; any
    /// other line is reported (and returned as an error).
    pub fn push_line(&mut self, line: &[u8]) -> Result<(), LineError> {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            return Ok(());
        }
        if let Ok(event) = serde_json::from_slice::<AuditEvent>(trimmed) {
            self.push_event(event);
            return Ok(());
        }
        match serde_json::from_slice::<CheckpointLine>(trimmed) {
            Ok(line) => {
                self.push_checkpoint(line.checkpoint);
                Ok(())
            }
            Err(error) => {
                self.records += 1;
                let text = String::from_utf8_lossy(&trimmed[..trimmed.len().min(80)]);
                let message = format!(
                    "record {}: not an event or checkpoint ({error}): {text}",
                    self.records
                );
                if self.malformed.len() < LISTED {
                    self.malformed.push(message.clone());
                }
                Err(LineError(message))
            }
        }
    }

    /// One event.
    pub fn push_event(&mut self, event: AuditEvent) {
        self.records += 1;
        self.pending.push(event);
        if self.pending.len() >= HASH_BATCH {
            self.hash_pending();
        }
    }

    /// One checkpoint.
    pub fn push_checkpoint(&mut self, checkpoint: Checkpoint) {
        self.records += 1;
        self.checkpoints.push(checkpoint);
    }

    fn hash_pending(&mut self) {
        let events = std::mem::take(&mut self.pending);
        for (event, intact) in events.iter().zip(chain_hashes_match(&events)) {
            let Some(link) = event.chain else {
                if self.malformed.len() < LISTED {
                    self.malformed
                        .push(format!("event {} carries no chain link", event.id));
                }
                continue;
            };
            if !intact {
                // Every altered record is kept (24 bytes each), so that copies of one
                // event count once.
                self.altered.push(Altered {
                    seq: link.seq,
                    id: event.id,
                });
            }
            self.entries.push(Entry {
                seq: link.seq,
                hash: link.hash.0,
                prev: link.prev_hash.0,
            });
        }
        self.pending = events;
        self.pending.clear();
    }

    /// Sorts what arrived and reports.
    pub fn finish(mut self) -> StreamReport {
        self.hash_pending();
        self.altered.sort_unstable_by_key(|a| (a.seq, a.id));
        self.altered.dedup();
        self.altered_count = self.altered.len() as u64;
        self.altered.truncate(LISTED);
        self.entries.sort_unstable_by_key(|e| (e.seq, e.hash));
        let mut report = StreamReport {
            records: self.records,
            events: 0,
            duplicates: 0,
            first_seq: None,
            last_seq: None,
            start: Start::Empty,
            gaps: Vec::new(),
            missing_events: 0,
            altered: self.altered,
            altered_count: self.altered_count,
            conflicting: Vec::new(),
            broken_links: Vec::new(),
            checkpoints: self.checkpoints.len() as u64,
            bad_checkpoints: Vec::new(),
            checkpoint_mismatches: Vec::new(),
            missing_tail: None,
            complete_through: None,
            malformed: self.malformed,
        };
        // One entry per position; a second, different hash at a position is a conflict.
        let mut distinct: Vec<Entry> = Vec::with_capacity(self.entries.len());
        for entry in self.entries {
            match distinct.last() {
                Some(last) if last.seq == entry.seq => {
                    if last.hash == entry.hash {
                        report.duplicates += 1;
                    } else if report.conflicting.last() != Some(&entry.seq)
                        && report.conflicting.len() < LISTED
                    {
                        report.conflicting.push(entry.seq);
                    }
                }
                _ => distinct.push(entry),
            }
        }
        report.events = distinct.len() as u64;
        let mut valid: Vec<&Checkpoint> = Vec::new();
        for (index, checkpoint) in self.checkpoints.iter().enumerate() {
            match checkpoint.verify(&self.key) {
                Ok(()) => valid.push(checkpoint),
                Err(error) if report.bad_checkpoints.len() < LISTED => {
                    report.bad_checkpoints.push(format!(
                        "checkpoint #{} (seq {}): {error}",
                        index + 1,
                        checkpoint.seq
                    ))
                }
                Err(_) => {}
            }
        }
        let (Some(first), Some(last)) = (distinct.first().copied(), distinct.last().copied())
        else {
            if let Some(vouched) = valid
                .iter()
                .filter(|c| c.kind != CheckpointKind::Purge && c.seq > 0)
                .map(|c| c.seq)
                .max()
            {
                report.missing_tail = Some((0, vouched));
            }
            return report;
        };
        report.first_seq = Some(first.seq);
        report.last_seq = Some(last.seq);
        let mut problems: Vec<u64> = report.altered.first().map(|a| a.seq).into_iter().collect();
        problems.extend(&report.conflicting);

        // Where the copy starts, and what vouches for it.
        let purge = valid.iter().find(|c| {
            c.kind == CheckpointKind::Purge && c.seq + 1 == first.seq && c.head.0 == first.prev
        });
        report.start = if first.seq == 1 && first.prev == ChainHash::GENESIS.0 {
            Start::Genesis
        } else if let Some(purge) = purge {
            Start::Purge { seq: purge.seq }
        } else if let Some(from) = self.from_seq.filter(|from| *from <= first.seq) {
            if from < first.seq {
                add_gap(&mut report, from, first.seq - 1);
                problems.push(from);
            }
            Start::Given { seq: from }
        } else {
            problems.push(first.seq);
            Start::Unvouched {
                first_seq: first.seq,
            }
        };
        if first.seq == 1 && first.prev != ChainHash::GENESIS.0 {
            report.broken_links.push(1);
            problems.push(1);
        }
        for pair in distinct.windows(2) {
            let (before, entry) = (pair[0], pair[1]);
            if entry.seq > before.seq + 1 {
                add_gap(&mut report, before.seq + 1, entry.seq - 1);
                problems.push(before.seq + 1);
            } else if entry.prev != before.hash {
                if report.broken_links.len() < LISTED {
                    report.broken_links.push(entry.seq);
                }
                problems.push(entry.seq);
            }
        }
        let hash_at = |seq: u64| {
            distinct
                .binary_search_by_key(&seq, |e| e.seq)
                .ok()
                .map(|i| distinct[i].hash)
        };
        let mut vouching: Vec<&Checkpoint> = valid
            .iter()
            .copied()
            .filter(|c| c.kind != CheckpointKind::Purge && c.seq >= first.seq)
            .collect();
        vouching.sort_by_key(|c| c.seq);
        for checkpoint in &vouching {
            if checkpoint.seq > last.seq {
                report.missing_tail = Some((
                    last.seq,
                    checkpoint.seq.max(report.missing_tail.map_or(0, |t| t.1)),
                ));
            } else if let Some(hash) = hash_at(checkpoint.seq)
                && hash != checkpoint.head.0
            {
                report.checkpoint_mismatches.push(checkpoint.seq);
                problems.push(checkpoint.seq);
            }
        }
        let first_problem = problems.into_iter().min().unwrap_or(u64::MAX);
        report.complete_through = vouching
            .iter()
            .rev()
            .find(|c| c.seq < first_problem && hash_at(c.seq) == Some(c.head.0))
            .map(|c| (*c).clone());
        report
    }
}

fn add_gap(report: &mut StreamReport, from: u64, to: u64) {
    report.missing_events += to - from + 1;
    if report.gaps.len() < LISTED {
        report.gaps.push(SeqRange { from, to });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_store::{Action, ChainHead, CheckpointSigner};

    fn chain(n: usize) -> Vec<AuditEvent> {
        let mut events: Vec<AuditEvent> = (0..n)
            .map(|i| {
                AuditEvent::builder("Model", Action::Create)
                    .internal("seed")
                    .resource(i.to_string(), "m")
                    .build()
            })
            .collect();
        let (links, _) = ChainHead::EMPTY.extend(&events);
        for (event, link) in events.iter_mut().zip(links) {
            event.chain = Some(link);
        }
        events
    }

    fn signed_at(signer: &CheckpointSigner, events: &[AuditEvent], seq: u64) -> Checkpoint {
        let link = events[seq as usize - 1].chain.unwrap();
        signer.sign(
            ChainHead {
                seq,
                hash: link.hash,
            },
            CheckpointKind::Periodic,
        )
    }

    fn verify(
        events: &[AuditEvent],
        checkpoints: &[Checkpoint],
        signer: &CheckpointSigner,
    ) -> StreamReport {
        let mut verifier = StreamVerifier::new(signer.verifying_key());
        for event in events {
            verifier
                .push_line(&serde_json::to_vec(event).unwrap())
                .unwrap();
        }
        for checkpoint in checkpoints {
            verifier
                .push_line(
                    &serde_json::to_vec(&serde_json::json!({"checkpoint": checkpoint})).unwrap(),
                )
                .unwrap();
        }
        verifier.finish()
    }

    #[test]
    fn intact_copies_with_redeliveries_in_any_order_verify() {
        let signer = CheckpointSigner::from_seed([9; 32]);
        let events = chain(50);
        let mut copy: Vec<AuditEvent> = events[..30].to_vec();
        copy.extend_from_slice(&events[20..]); // a redelivery after a restart
        copy.reverse();
        let report = verify(&copy, &[signed_at(&signer, &events, 40)], &signer);
        assert!(report.is_intact(), "{report}");
        assert_eq!((report.events, report.duplicates), (50, 10));
        assert_eq!(report.start, Start::Genesis);
        assert_eq!(report.complete_through.unwrap().seq, 40);
    }

    #[test]
    fn dropped_altered_and_truncated_copies_fail() {
        let signer = CheckpointSigner::from_seed([9; 32]);
        let events = chain(20);
        let checkpoint = signed_at(&signer, &events, 15);

        let mut dropped = events.clone();
        dropped.remove(6); // seq 7
        let report = verify(&dropped, std::slice::from_ref(&checkpoint), &signer);
        assert!(!report.is_intact());
        assert_eq!(report.gaps, [SeqRange { from: 7, to: 7 }]);
        assert_eq!(report.complete_through, None);

        let mut altered = events.clone();
        altered[11].category = "Tampered".into();
        let report = verify(&altered, std::slice::from_ref(&checkpoint), &signer);
        assert_eq!(
            report.altered,
            [Altered {
                seq: 12,
                id: altered[11].id
            }]
        );
        assert!(!report.is_intact());

        let report = verify(&events[..10], std::slice::from_ref(&checkpoint), &signer);
        assert_eq!(report.missing_tail, Some((10, 15)));

        let first_dropped = &events[1..];
        let report = verify(first_dropped, std::slice::from_ref(&checkpoint), &signer);
        assert_eq!(report.start, Start::Unvouched { first_seq: 2 });
        assert!(!report.is_intact());
        let mut verifier = StreamVerifier::new(signer.verifying_key()).from_seq(2);
        for event in first_dropped {
            verifier.push_event(event.clone());
        }
        assert!(verifier.finish().is_intact());

        let mut forged = checkpoint;
        forged.seq = 14;
        let report = verify(&events, &[forged], &signer);
        assert_eq!(report.bad_checkpoints.len(), 1);
        assert!(!report.is_intact());
    }
}
