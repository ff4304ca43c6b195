//! One pass over an export in the layout the router writes: every JSON row on a line of its
//! own (NDJSON; a JSON array as `[`, one element per line with a trailing comma but the last,
//! `]`), CSV records counted as they stream by.
//!
//! The file is read in blocks on this thread, which also feeds the SHA-256; each block's
//! complete lines go to worker threads, one per core, which parse the rows and recompute
//! their chain hashes; a merging thread takes the results back in file order and runs the
//! checks that need the rows before (order, repeated positions). Memory holds a few blocks
//! and one link per row (for the links between consecutive positions), not the file.
//!
//! Anything outside that layout (a reformatted, truncated or damaged file) makes [`scan`]
//! answer `None`, and the caller reads the file the general way, which names the fault.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use audit_store::{AttributesView, AuditEvent, ChainHash, ChainLink, EventView};
use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};

use super::{Links, Scan, unlinked_message};

/// Bytes read at a time; each block's lines are one worker's job.
const BLOCK: usize = 4 << 20;

/// One row with a chain link, checked on its own.
pub(crate) struct CheckedRow {
    pub(crate) link: ChainLink,
    /// Its content no longer gives its hash.
    pub(crate) modified: bool,
    /// Its place in the newest-first order.
    pub(crate) key: (DateTime<Utc>, uuid::Uuid),
}

/// The checks of a chain export that need the rows before: rows are given in file order.
/// Every row is taken, so the count is complete whatever is found; the first fault in file
/// order is the one reported.
pub(crate) struct RowOrder {
    head: u64,
    previous: Option<(DateTime<Utc>, uuid::Uuid)>,
    /// The links with their row numbers, for repeated and unlinked positions at the end.
    links: Vec<(ChainLink, u64)>,
    fault: Option<(u64, String)>,
}

impl RowOrder {
    pub(crate) fn new(head: u64) -> Self {
        RowOrder {
            head,
            previous: None,
            links: Vec::new(),
            fault: None,
        }
    }

    /// Row `n` (from 1).
    pub(crate) fn next(&mut self, n: u64, row: &CheckedRow) {
        let link = row.link;
        self.links.push((link, n));
        if self.fault.is_some() {
            return;
        }
        let fault = if row.modified {
            Some(format!(
                "row {n} (seq {}, id {}) was modified: its content no longer matches its chain hash",
                link.seq, row.key.1
            ))
        } else if link.seq > self.head {
            Some(format!(
                "row {n} has seq {} beyond the pinned chain head {}",
                link.seq, self.head
            ))
        } else if self.previous.is_some_and(|before| row.key > before) {
            Some(format!(
                "row {n} (seq {}) is out of order: exports list events newest first",
                link.seq
            ))
        } else {
            None
        };
        self.previous = Some(row.key);
        if let Some(fault) = fault {
            self.fault = Some((n, fault));
        }
    }

    /// The links by position, or the first fault in file order.
    pub(crate) fn finish(self) -> Result<Links, String> {
        self.finish_with(None)
    }

    /// [`RowOrder::finish`], with a fault found elsewhere at row `.0` (a row that is not a
    /// chain row) taking part in "first in file order".
    pub(crate) fn finish_with(mut self, other: Option<(u64, String)>) -> Result<Links, String> {
        // A repeated position is reported at the row that repeats it: the second-earliest
        // row of its group, the earliest such row over all groups.
        self.links.sort_unstable_by_key(|(link, n)| (link.seq, *n));
        let repeat = self
            .links
            .windows(2)
            .filter(|pair| pair[0].0.seq == pair[1].0.seq)
            .map(|pair| (pair[1].1, pair[1].0.seq))
            .min();
        let repeat = repeat.map(|(n, seq)| (n, format!("row {n} repeats seq {seq}")));
        let first = [self.fault, repeat, other]
            .into_iter()
            .flatten()
            .min_by_key(|(n, _)| *n);
        if let Some((_, fault)) = first {
            return Err(fault);
        }
        // Sorted and without repeats already: `Links::new` only checks.
        let links = Links::new(self.links.into_iter().map(|(link, _)| link).collect())
            .map_err(|seq| format!("repeats seq {seq}"))?;
        match links.unlinked() {
            Some(seq) => Err(unlinked_message(seq)),
            None => Ok(links),
        }
    }
}

/// What one line of a JSON or NDJSON export is.
enum Line {
    /// `[` or `]` of a JSON array.
    Open,
    Close,
    /// A row: a whole event with its link, or an object of chosen columns; `comma` when a
    /// `,` followed it on its line.
    Event(CheckedRow, bool),
    Object(bool),
}

/// A whole event's row read with its text borrowed from the line (no string allocated unless
/// it has escapes) and its attributes as their raw JSON text: the same fields
/// [`AuditEvent`]'s serde form accepts, no more.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BorrowedRow<'a> {
    id: uuid::Uuid,
    #[serde(deserialize_with = "audit_store::rfc3339_micros::deserialize")]
    occurred_at: DateTime<Utc>,
    #[serde(borrow)]
    tenant: Option<Text<'a>>,
    #[serde(borrow)]
    request_id: Text<'a>,
    #[serde(borrow)]
    actor_id: Option<Text<'a>>,
    #[serde(borrow)]
    actor_email: Option<Text<'a>>,
    #[serde(borrow)]
    actor_name: Option<Text<'a>>,
    #[serde(borrow)]
    category: Text<'a>,
    #[serde(borrow)]
    action: Text<'a>,
    #[serde(borrow)]
    outcome: Text<'a>,
    #[serde(borrow)]
    reason: Option<Text<'a>>,
    #[serde(borrow)]
    resource_id: Option<Text<'a>>,
    #[serde(borrow)]
    resource_name: Option<Text<'a>>,
    #[serde(borrow)]
    method: Text<'a>,
    #[serde(borrow)]
    route: Text<'a>,
    #[serde(borrow)]
    path: Text<'a>,
    status: u16,
    duration_ms: f64,
    #[serde(borrow)]
    client_ip: Option<Text<'a>>,
    #[serde(borrow)]
    user_agent: Option<Text<'a>>,
    #[serde(borrow)]
    attributes: &'a serde_json::value::RawValue,
    chain: Option<ChainLink>,
}

/// A JSON string borrowed from the input when it has no escapes.
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Why [`borrowed_row`] gave no checked row.
enum Reading {
    /// Not an event (an object of chosen columns, an error line, damage): an event's serde
    /// form would not parse either, as this reading takes exactly its fields.
    NotAnEvent,
    /// An event without a chain link.
    Unlinked,
    /// An event whose content did not give its hash as read here: only the decoded event
    /// decides (the hash covers the attributes' canonical form, and this reading hashes
    /// their text as it is: right for a match, not proof of a mismatch).
    Decide,
}

/// A row whose borrowed reading gives its chain hash, or why not.
fn text<'a>(value: &'a Option<Text<'_>>) -> Option<&'a str> {
    value.as_ref().map(|text| &*text.0)
}

fn borrowed_row(line: &str) -> Result<CheckedRow, Reading> {
    let row: BorrowedRow<'_> = serde_json::from_str(line).map_err(|_| Reading::NotAnEvent)?;
    let attributes = row.attributes.get();
    if !attributes.starts_with('{')
        || row.action.0.parse::<audit_store::Action>().is_err()
        || row.outcome.0.parse::<audit_store::Outcome>().is_err()
    {
        return Err(Reading::NotAnEvent);
    }
    let link = row.chain.ok_or(Reading::Unlinked)?;
    let view = EventView {
        id: row.id,
        occurred_at: row.occurred_at,
        tenant: text(&row.tenant),
        request_id: &row.request_id.0,
        actor_id: text(&row.actor_id),
        actor_email: text(&row.actor_email),
        actor_name: text(&row.actor_name),
        category: &row.category.0,
        action: &row.action.0,
        outcome: &row.outcome.0,
        reason: text(&row.reason),
        resource_id: text(&row.resource_id),
        resource_name: text(&row.resource_name),
        method: &row.method.0,
        route: &row.route.0,
        path: &row.path.0,
        status: row.status,
        duration_ms: row.duration_ms,
        client_ip: text(&row.client_ip),
        user_agent: text(&row.user_agent),
        attributes: AttributesView::Json(attributes),
        chain: Some(link),
    };
    if link.recompute_view(&view) != link.hash {
        return Err(Reading::Decide);
    }
    Ok(CheckedRow {
        link,
        modified: false,
        key: (row.occurred_at, row.id),
    })
}

/// Just enough of a row to tell an object of chosen columns from an NDJSON error line.
#[derive(serde::Deserialize)]
struct Probe {
    id: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
    chain: Option<IgnoredAny>,
}

/// One line, or `None` when it is outside the layout.
fn line(text: &str, format: &str) -> Option<Line> {
    let (row, comma) = match (format, text) {
        ("json", "[") => return Some(Line::Open),
        ("json", "]") => return Some(Line::Close),
        ("json", _) if text.ends_with(',') => (&text[..text.len() - 1], true),
        _ => (text, false),
    };
    if !row.starts_with('{') {
        return None;
    }
    match borrowed_row(row) {
        Ok(row) => return Some(Line::Event(row, comma)),
        // An event without its link: not an export of every column.
        Err(Reading::Unlinked) => return None,
        Err(Reading::Decide) => {
            let event = serde_json::from_str::<AuditEvent>(row).ok()?;
            let link = event.chain?;
            return Some(Line::Event(
                CheckedRow {
                    link,
                    modified: link.recompute(&event) != link.hash,
                    key: (event.occurred_at, event.id),
                },
                comma,
            ));
        }
        Err(Reading::NotAnEvent) => {}
    }
    let probe: Probe = serde_json::from_str(row).ok()?;
    if probe.chain.is_some() || (probe.error.is_some() && probe.id.is_none()) {
        return None;
    }
    Some(Line::Object(comma))
}

/// The lines of one block, parsed; `None` when one is outside the layout. The block's UTF-8
/// is checked once, so the JSON parser does not check each string again.
fn lines(block: &[u8], format: &str) -> Option<Vec<Line>> {
    let block = std::str::from_utf8(block).ok()?;
    block
        .split('\n')
        .filter(|text| !text.is_empty())
        .map(|text| line(text, format))
        .collect()
}

/// Reads `file` in one pass if it is in the router's layout; `Ok(None)` when it is not.
pub(super) fn scan(file: &Path, format: &str, head: u64) -> std::io::Result<Option<Scan>> {
    let mut reader = std::fs::File::open(file)?;
    match format {
        "csv" => scan_csv(reader),
        "json" | "ndjson" => scan_rows(&mut reader, format, head),
        _ => Ok(None),
    }
}

/// Feeds everything read through it to a SHA-256.
pub(crate) struct Hashing<R> {
    inner: R,
    sha: Sha256,
}

impl<R> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Hashing {
            inner,
            sha: Sha256::new(),
        }
    }

    /// The SHA-256 of everything read.
    pub(crate) fn finish(self) -> ChainHash {
        ChainHash(self.sha.finalize().into())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.sha.update(&buf[..read]);
        Ok(read)
    }
}

fn scan_csv(file: std::fs::File) -> std::io::Result<Option<Scan>> {
    let mut hashing = Hashing::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(&mut hashing);
    let mut record = csv::ByteRecord::new();
    let mut count = 0;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => count += 1,
            Ok(false) => break,
            Err(_) => return Ok(None),
        }
    }
    drop(reader);
    // The CSV reader may stop before the end of the file's last read.
    std::io::copy(&mut hashing, &mut std::io::sink())?;
    Ok(Some(Scan {
        count,
        links: None,
        sha256: hashing.finish(),
    }))
}

/// What the merging thread makes of the lines, in file order.
struct Merge {
    format: &'static str,
    count: u64,
    order: RowOrder,
    /// Rows with links, rows without.
    events: u64,
    objects: u64,
    /// The JSON array's state: `[` seen, the last row's trailing comma, `]` seen.
    opened: bool,
    last_comma: Option<bool>,
    closed: bool,
    outside: bool,
}

impl Merge {
    fn take(&mut self, lines: Vec<Line>) {
        for line in lines {
            if self.outside {
                return;
            }
            let json = self.format == "json";
            let row_comma = match line {
                Line::Open => {
                    self.outside |= !json || self.opened || self.count > 0;
                    self.opened = true;
                    continue;
                }
                Line::Close => {
                    self.outside |= !json || !self.opened || self.closed;
                    self.closed = true;
                    continue;
                }
                Line::Event(row, comma) => {
                    self.count += 1;
                    self.events += 1;
                    self.order.next(self.count, &row);
                    comma
                }
                Line::Object(comma) => {
                    self.count += 1;
                    self.objects += 1;
                    comma
                }
            };
            // A row after `]`, before `[`, or after a row without its comma; no commas in NDJSON.
            self.outside |= if json {
                !self.opened || self.closed || self.last_comma == Some(false)
            } else {
                row_comma
            };
            self.last_comma = Some(row_comma);
        }
    }

    fn finish(self, sha256: ChainHash) -> Option<Scan> {
        let complete =
            self.format != "json" || (self.opened && self.closed && self.last_comma != Some(true));
        if self.outside || !complete || (self.events > 0 && self.objects > 0) {
            return None;
        }
        Some(Scan {
            count: self.count,
            links: (self.events > 0).then(|| self.order.finish()),
            sha256,
        })
    }
}

fn scan_rows(reader: &mut std::fs::File, format: &str, head: u64) -> std::io::Result<Option<Scan>> {
    let format: &'static str = if format == "json" { "json" } else { "ndjson" };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (jobs, job_queue) = sync_channel::<(usize, Vec<u8>)>(workers * 2);
    let job_queue = Arc::new(Mutex::new(job_queue));
    let (results, result_queue) = channel::<(usize, Option<Vec<Line>>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let job_queue = job_queue.clone();
            let results = results.clone();
            scope.spawn(move || work(&job_queue, &results, format));
        }
        // Only the workers hold the queue and the results' sender: when they stop (the merge
        // gave up on a line), the reader's next send fails instead of waiting for ever.
        drop(job_queue);
        drop(results);
        let merged = scope.spawn(move || merge(result_queue, format, head));
        let read = read_blocks(reader, &jobs);
        drop(jobs);
        let merge = merged.join().ok().flatten();
        let (sha256, whole_lines) = read?;
        Ok(merge
            .filter(|_| whole_lines)
            .and_then(|merge| merge.finish(sha256)))
    })
}

/// Parses the blocks handed out until there are none.
fn work(
    job_queue: &Mutex<Receiver<(usize, Vec<u8>)>>,
    results: &std::sync::mpsc::Sender<(usize, Option<Vec<Line>>)>,
    format: &'static str,
) {
    loop {
        let job = match job_queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok((index, block)) = job else {
            return;
        };
        if results.send((index, lines(&block, format))).is_err() {
            return;
        }
    }
}

/// Takes the parsed blocks back in file order; `None` once one was outside the layout.
fn merge(
    result_queue: Receiver<(usize, Option<Vec<Line>>)>,
    format: &'static str,
    head: u64,
) -> Option<Merge> {
    let mut merge = Merge {
        format,
        count: 0,
        order: RowOrder::new(head),
        events: 0,
        objects: 0,
        opened: false,
        last_comma: None,
        closed: false,
        outside: false,
    };
    let mut waiting = BTreeMap::new();
    let mut next = 0;
    for (index, lines) in result_queue {
        waiting.insert(index, lines);
        while let Some(lines) = waiting.remove(&next) {
            merge.take(lines?);
            next += 1;
        }
    }
    waiting.is_empty().then_some(merge)
}

/// Reads the file in blocks, hashing them and sending each one's complete lines as a job;
/// the SHA-256 and whether the file ended with a complete line.
fn read_blocks(
    reader: &mut std::fs::File,
    jobs: &SyncSender<(usize, Vec<u8>)>,
) -> std::io::Result<(ChainHash, bool)> {
    let mut sha = Sha256::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut index = 0;
    loop {
        let mut block = std::mem::take(&mut carry);
        let start = block.len();
        block.resize(start + BLOCK, 0);
        let read = read_full(reader, &mut block[start..])?;
        block.truncate(start + read);
        sha.update(&block[start..]);
        // The lines of this block end at its last newline; the rest starts the next block
        // (a line longer than a block is carried whole until its newline comes).
        match block.iter().rposition(|b| *b == b'\n') {
            Some(last) => {
                carry = block.split_off(last + 1);
                if jobs.send((index, block)).is_err() {
                    // The merge found a line outside the layout and stopped.
                    return Ok((ChainHash(sha.finalize().into()), false));
                }
                index += 1;
            }
            None => carry = block,
        }
        if read == 0 {
            // Both formats end with a newline as the router writes them.
            return Ok((ChainHash(sha.finalize().into()), carry.is_empty()));
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(reader: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
