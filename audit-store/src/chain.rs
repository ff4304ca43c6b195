//! Tamper evidence: every stored event is a link in one hash chain.
//!
//! Events appended today are links of version 2:
//!
//! ```text
//! content = SHA-256("audit-event-v2\0" ‖ canonical JSON)
//! hash    = SHA-256("audit-chain-v2\0" ‖ prev_hash ‖ seq as 8 bytes big-endian ‖ content)
//! ```
//!
//! Events appended before that (and still verified) are links of version 1:
//! `hash = SHA-256("audit-chain-v1\0" ‖ prev_hash ‖ seq ‖ canonical JSON)`. In both,
//! `prev_hash` is the hash of the event with the previous sequence number (32 zero bytes
//! before the first) and the canonical JSON is the event's contract JSON (without its `chain`
//! field) with object keys sorted at every level and no white space. Anyone can recompute it
//! from an exported event, in any language; a link says its version (`chain.version`, absent
//! for version 1).
//!
//! Why a version 2: in version 1 the predecessor's hash opens every message, so an append
//! hashes each whole event (about 600 bytes) one after another. In version 2 the content
//! digests do not depend on each other, so a batch's are computed side by side in SIMD lanes
//! (multi-buffer SHA-256), and only the two-block chaining step stays sequential.
//!
//! There is one chain per store, also when several instances write to one PostgreSQL: each
//! append locks the chain head row for the length of its (batched) transaction, so batches
//! from different instances are serialised into one order. One chain keeps verification a
//! single walk and makes "the newest events were deleted" a single comparison with the
//! latest signed checkpoint.

use std::fmt;
use std::io::Write as _;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::batch::{AttributesView, EventView};
use crate::event::{Attributes, AuditEvent, rfc3339_micros};

/// A SHA-256 chain hash, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The hash before the first event.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<ChainHash> {
        let bytes = unhex(text)?;
        Some(ChainHash(bytes.try_into().ok()?))
    }

    /// From raw bytes, if there are exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<ChainHash> {
        Some(ChainHash(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ChainHash::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// The recipe of a link's hash; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum ChainVersion {
    /// The whole message hashed at once (events appended before version 2).
    V1,
    /// A content digest, then a short chaining step (events appended today).
    #[default]
    V2,
}

impl ChainVersion {
    /// The version number as stored and exported.
    pub fn number(self) -> u8 {
        match self {
            ChainVersion::V1 => 1,
            ChainVersion::V2 => 2,
        }
    }

    /// The version with this number.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            1 => Some(ChainVersion::V1),
            2 => Some(ChainVersion::V2),
            _ => None,
        }
    }

    fn is_v1(&self) -> bool {
        *self == ChainVersion::V1
    }

    /// Version 1 for links that do not say (exports and streams written before version 2).
    fn absent() -> Self {
        ChainVersion::V1
    }
}

impl From<ChainVersion> for u8 {
    fn from(version: ChainVersion) -> u8 {
        version.number()
    }
}

impl TryFrom<u8> for ChainVersion {
    type Error = String;
    fn try_from(number: u8) -> Result<Self, String> {
        ChainVersion::from_number(number).ok_or_else(|| format!("unknown chain version {number}"))
    }
}

/// Where a stored event sits in the chain.
///
/// ```
/// use audit_store::{Action, AuditEvent, ChainHash, HttpFacts, chain_hash};
/// let event = AuditEvent::builder("Model", Action::Create)
///     .http(HttpFacts::new("POST", "/api/models", "/api/models", 201))
///     .build();
/// let first = chain_hash(&ChainHash::GENESIS, 1, &event);
/// assert_ne!(first, chain_hash(&ChainHash::GENESIS, 2, &event));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// The hash of the previous event (zeros before the first).
    pub prev_hash: ChainHash,
    /// This event's hash.
    pub hash: ChainHash,
    /// How `hash` was computed (exported as `version`, omitted for version 1).
    #[serde(
        default = "ChainVersion::absent",
        skip_serializing_if = "ChainVersion::is_v1"
    )]
    pub version: ChainVersion,
}

/// A stored link as a backend reads it back (`id`, `seq`, `prev_hash`, `hash`,
/// `chain_version`), for the idempotent append's look-up of stored ids.
pub(crate) type StoredLinkRow = (uuid::Uuid, i64, Vec<u8>, Vec<u8>, i64);

impl ChainLink {
    /// A link read from the database; a value that does not fit is a corrupt row.
    pub(crate) fn from_stored(
        seq: i64,
        prev_hash: &[u8],
        hash: &[u8],
        version: i64,
    ) -> Result<ChainLink, crate::StoreError> {
        let corrupt = |what: &str| crate::StoreError::CorruptRow(format!("seq {seq}: {what}"));
        Ok(ChainLink {
            seq: u64::try_from(seq).map_err(|_| corrupt("negative seq"))?,
            prev_hash: ChainHash::from_slice(prev_hash)
                .ok_or_else(|| corrupt("prev_hash is not 32 bytes"))?,
            hash: ChainHash::from_slice(hash).ok_or_else(|| corrupt("hash is not 32 bytes"))?,
            version: u8::try_from(version)
                .ok()
                .and_then(ChainVersion::from_number)
                .ok_or_else(|| corrupt("chain_version is unknown"))?,
        })
    }

    /// The hash `event` gives at this link's position and predecessor, by this link's
    /// recipe; equal to [`ChainLink::hash`] unless the event or the link was altered.
    pub fn recompute(&self, event: &AuditEvent) -> ChainHash {
        self.recompute_at(self.seq, event)
    }

    /// [`ChainLink::recompute`] as if the event were at `seq` (to find where a moved row
    /// was written).
    pub fn recompute_at(&self, seq: u64, event: &AuditEvent) -> ChainHash {
        self.recompute_view_at(seq, &EventView::of(event))
    }

    /// [`ChainLink::recompute`] from an event's borrowed fields, for a verifier that reads
    /// rows without building events.
    ///
    /// Attributes given as JSON text ([`AttributesView::Json`]) are hashed as they are, which
    /// is the canonical form when a store or an export wrote them (serde_json's compact form
    /// of the sorted map). Only a *match* with [`ChainLink::hash`] may be relied on: it proves
    /// the text was the canonical form that was hashed. A mismatch must be decided on the
    /// decoded event ([`ChainLink::recompute`]), since other text for the same attributes
    /// (spaces, another key order) gives another hash.
    ///
    /// ```
    /// use audit_store::{Action, AuditEvent, AttributesView, ChainHash, ChainLink, ChainVersion, EventView, HttpFacts};
    /// let event = AuditEvent::builder("Model", Action::Create)
    ///     .http(HttpFacts::new("POST", "/api/models", "/api/models", 201))
    ///     .attribute("rows", 3)
    ///     .build();
    /// let mut link = ChainLink { seq: 1, prev_hash: ChainHash::GENESIS, hash: ChainHash::GENESIS, version: ChainVersion::V2 };
    /// link.hash = link.recompute(&event);
    /// let text = EventView { attributes: AttributesView::Json(r#"{"rows":3}"#), ..EventView::of(&event) };
    /// assert_eq!(link.recompute_view(&text), link.hash);
    /// ```
    pub fn recompute_view(&self, event: &EventView<'_>) -> ChainHash {
        self.recompute_view_at(self.seq, event)
    }

    fn recompute_view_at(&self, seq: u64, event: &EventView<'_>) -> ChainHash {
        let mut json = Vec::with_capacity(768);
        write_canonical_fields(event, &mut json);
        match self.version {
            ChainVersion::V1 => chain_hash_of_canonical(&self.prev_hash, seq, &json),
            ChainVersion::V2 => {
                chain_step(&self.prev_hash, seq, &content_digest_of_canonical(&json))
            }
        }
    }
}

/// The newest link of a chain: what the next event continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Sequence number of the newest event (0 for an empty chain).
    pub seq: u64,
    /// Its hash ([`ChainHash::GENESIS`] for an empty chain).
    pub hash: ChainHash,
}

impl ChainHead {
    /// The head of a chain with no events.
    pub const EMPTY: ChainHead = ChainHead {
        seq: 0,
        hash: ChainHash::GENESIS,
    };

    /// A head read from the database (`seq` as stored, `hash` as raw bytes).
    pub(crate) fn from_stored(seq: i64, hash: &[u8]) -> Result<ChainHead, crate::StoreError> {
        let corrupt =
            |what: &str| crate::StoreError::CorruptRow(format!("chain at seq {seq}: {what}"));
        Ok(ChainHead {
            seq: u64::try_from(seq).map_err(|_| corrupt("negative sequence number"))?,
            hash: ChainHash::from_slice(hash).ok_or_else(|| corrupt("hash is not 32 bytes"))?,
        })
    }

    /// Links `events` after this head (version 2), returning their links and the new head.
    /// The content digests are computed side by side ([`content_digests`]); only the
    /// chaining steps run one after another.
    pub fn extend(self, events: &[AuditEvent]) -> (Vec<ChainLink>, ChainHead) {
        self.extend_with(&content_digests(events))
    }

    /// Links events whose [`content_digests`] are `digests`, in order, after this head. A
    /// writer computes the digests before it takes the chain's lock, leaving only the
    /// chaining steps inside.
    pub fn extend_with(self, digests: &[[u8; 32]]) -> (Vec<ChainLink>, ChainHead) {
        let mut head = self;
        let links = digests
            .iter()
            .map(|digest| {
                let seq = head.seq + 1;
                let hash = chain_step(&head.hash, seq, digest);
                let link = ChainLink {
                    seq,
                    prev_hash: head.hash,
                    hash,
                    version: ChainVersion::V2,
                };
                head = ChainHead { seq, hash };
                link
            })
            .collect();
        (links, head)
    }
}

/// The domain tag every version 1 chain hash starts with.
pub(crate) const CHAIN_TAG: &[u8] = b"audit-chain-v1\0";

/// The domain tag of a version 2 content digest.
pub(crate) const CONTENT_TAG_V2: &[u8] = b"audit-event-v2\0";

/// The domain tag of a version 2 chaining step.
pub(crate) const CHAIN_TAG_V2: &[u8] = b"audit-chain-v2\0";

/// The version 2 content digest of `event`: SHA-256 of its canonical JSON.
pub fn content_digest(event: &AuditEvent) -> [u8; 32] {
    content_digest_of_canonical(&canonical_json(event))
}

/// [`content_digest`] of an event's canonical JSON.
fn content_digest_of_canonical(json: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(CONTENT_TAG_V2);
    hasher.update(json);
    hasher.finalize().into()
}

/// [`content_digest`] of every event, computed side by side in SIMD lanes, and for a large
/// batch on several cores (the events' digests do not depend on each other).
///
/// ```
/// use audit_store::{Action, AuditEvent, content_digest, content_digests};
/// let events: Vec<AuditEvent> = (0..600)
///     .map(|n| AuditEvent::builder("Model", Action::Update).internal(format!("job-{n}")).build())
///     .collect();
/// let digests = content_digests(&events);
/// assert!(events.iter().zip(&digests).all(|(e, d)| content_digest(e) == *d));
/// ```
pub fn content_digests(events: &[AuditEvent]) -> Vec<[u8; 32]> {
    let mut digests = vec![[0_u8; 32]; events.len()];
    let threads = digest_threads(events.len());
    if threads <= 1 {
        digests_into(events, &mut digests);
        return digests;
    }
    let per_thread = events.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = events
            .chunks(per_thread)
            .zip(digests.chunks_mut(per_thread));
        // This thread takes the first share; the others go to scoped threads.
        let first = chunks.next();
        for (events, digests) in chunks {
            scope.spawn(move || digests_into(events, digests));
        }
        if let Some((events, digests)) = first {
            digests_into(events, digests);
        }
    });
    digests
}

/// Events per thread below which another thread costs more than it saves (a thread's start
/// is tens of microseconds; an event's canonical JSON and digest about one or two).
const EVENTS_PER_DIGEST_THREAD: usize = 256;

/// How many threads compute the digests of `count` events: one per core, at most four.
fn digest_threads(count: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (count / EVENTS_PER_DIGEST_THREAD).clamp(1, cores.min(4))
}

/// [`content_digest`] of each event into `digests` (as many), in SIMD lanes.
fn digests_into(events: &[AuditEvent], digests: &mut [[u8; 32]]) {
    let mut bytes = Vec::with_capacity(events.len() * 640);
    let mut ends = Vec::with_capacity(events.len());
    for event in events {
        write_canonical_json(event, &mut bytes);
        ends.push(bytes.len());
    }
    hash_bodies_into(CONTENT_TAG_V2, &bytes, &ends, digests);
}

/// SHA-256 of `prefix ‖ body` into `digests` for each body of `bytes` (the bodies end at
/// `ends`, as many as `digests`), side by side in SIMD lanes (multi-buffer SHA-256).
pub(crate) fn hash_bodies_into(
    prefix: &[u8],
    bytes: &[u8],
    ends: &[usize],
    digests: &mut [[u8; 32]],
) {
    let mut bodies = Vec::with_capacity(ends.len());
    let mut begin = 0;
    for end in ends {
        bodies.push(&bytes[begin..*end]);
        begin = *end;
    }
    tape_sha256::hash_many_prefixed(prefix, &bodies, digests);
}

/// The version 2 chaining step: the hash of the event at `seq`, after `prev`, whose content
/// digest is `content`.
pub fn chain_step(prev: &ChainHash, seq: u64, content: &[u8; 32]) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(CHAIN_TAG_V2);
    hasher.update(prev.0);
    hasher.update(seq.to_be_bytes());
    hasher.update(content);
    ChainHash(hasher.finalize().into())
}

/// The chain hash of `event` at `seq` after `prev`.
pub fn chain_hash(prev: &ChainHash, seq: u64, event: &AuditEvent) -> ChainHash {
    chain_hash_of_canonical(prev, seq, &canonical_json(event))
}

/// [`chain_hash`] of an event's canonical JSON.
fn chain_hash_of_canonical(prev: &ChainHash, seq: u64, json: &[u8]) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(CHAIN_TAG);
    hasher.update(prev.0);
    hasher.update(seq.to_be_bytes());
    hasher.update(json);
    ChainHash(hasher.finalize().into())
}

/// The event's JSON with keys sorted at every level, compact, without `chain`.
pub fn canonical_json(event: &AuditEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(640);
    write_canonical_json(event, &mut out);
    out
}

/// Appends [`canonical_json`] to `out`, so a caller hashing many events reuses one buffer.
pub(crate) fn write_canonical_json(event: &AuditEvent, out: &mut Vec<u8>) {
    write_canonical_fields(&EventView::of(event), out);
}

/// Appends the canonical JSON of `event`'s fields to `out`.
pub(crate) fn write_canonical_fields(event: &EventView<'_>, out: &mut Vec<u8>) {
    /// One top-level value, written without building a `serde_json::Value` (hashing runs
    /// for every appended and every verified event).
    enum Field<'a> {
        Text(&'a str),
        Optional(Option<&'a str>),
        Timestamp,
        Id,
        Duration,
        Status,
        Attributes,
    }
    // Keys in byte order, each written with its separator and colon as one constant (plain
    // ASCII, so the escaping test would only confirm it; the test
    // `field_writer_matches_the_general_canonical_form` holds them to it).
    let fields: [(&[u8], Field<'_>); 21] = [
        (b"{\"action\":", Field::Text(event.action)),
        (b",\"actor_email\":", Field::Optional(event.actor_email)),
        (b",\"actor_id\":", Field::Optional(event.actor_id)),
        (b",\"actor_name\":", Field::Optional(event.actor_name)),
        (b",\"attributes\":", Field::Attributes),
        (b",\"category\":", Field::Text(event.category)),
        (b",\"client_ip\":", Field::Optional(event.client_ip)),
        (b",\"duration_ms\":", Field::Duration),
        (b",\"id\":", Field::Id),
        (b",\"method\":", Field::Text(event.method)),
        (b",\"occurred_at\":", Field::Timestamp),
        (b",\"outcome\":", Field::Text(event.outcome)),
        (b",\"path\":", Field::Text(event.path)),
        (b",\"reason\":", Field::Optional(event.reason)),
        (b",\"request_id\":", Field::Text(event.request_id)),
        (b",\"resource_id\":", Field::Optional(event.resource_id)),
        (b",\"resource_name\":", Field::Optional(event.resource_name)),
        (b",\"route\":", Field::Text(event.route)),
        (b",\"status\":", Field::Status),
        (b",\"tenant\":", Field::Optional(event.tenant)),
        (b",\"user_agent\":", Field::Optional(event.user_agent)),
    ];
    for (key, value) in &fields {
        out.extend_from_slice(key);
        match value {
            Field::Text(text) | Field::Optional(Some(text)) => write_string(out, text),
            Field::Optional(None) => out.extend_from_slice(b"null"),
            Field::Timestamp => {
                // The timestamp's characters never need escaping.
                out.push(b'"');
                rfc3339_micros::write(&event.occurred_at, out);
                out.push(b'"');
            }
            Field::Id => {
                out.push(b'"');
                let mut buffer = uuid::Uuid::encode_buffer();
                out.extend_from_slice(event.id.hyphenated().encode_lower(&mut buffer).as_bytes());
                out.push(b'"');
            }
            Field::Duration => write_canonical(out, &Value::from(event.duration_ms)),
            Field::Status => {
                let _ = write!(out, "{}", event.status);
            }
            Field::Attributes => match event.attributes {
                AttributesView::Map(map) => write_object(out, map),
                // The stored text, taken as it is: only a verifier confirming a *match* with the
                // stored hash may rely on it (see `sqlite/bulk_read.rs`).
                AttributesView::Json(text) => out.extend_from_slice(text.as_bytes()),
            },
        }
    }
    out.push(b'}');
}

/// Any JSON value in the same canonical form: compact, object keys sorted by their UTF-8
/// bytes at every level, strings escaped as serde_json escapes them. Export manifests are
/// signed over this form too.
///
/// ```
/// let value = serde_json::json!({"b": [1, {"z": null, "a": "x"}], "a": 2});
/// assert_eq!(audit_store::canonical_value_json(&value), br#"{"a":2,"b":[1,{"a":"x","z":null}]}"#);
/// ```
pub fn canonical_value_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(&mut out, value);
    out
}

fn write_object(out: &mut Vec<u8>, map: &Attributes) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        write_canonical(out, value);
    }
    out.push(b'}');
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly the quote, the backslash and the control characters below
    // U+0020; a string without them is written as it is.
    // The test folds over every byte without stopping early, which the compiler turns into
    // SIMD compares (every verified row's dozen strings go through here).
    let plain = !s.bytes().fold(false, |escape, b| {
        escape | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // serde_json's string escaping is deterministic; writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => write_object(out, map),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(out, s),
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The bytes of a hex string (either case); `None` if it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, HttpFacts};

    #[test]
    fn canonical_json_sorts_keys_everywhere() {
        let event = AuditEvent::builder("Model", Action::Update)
            .http(HttpFacts::new("PUT", "/m/{id}", "/m/1", 200))
            .attribute("zeta", serde_json::json!({"b": 1, "a": [{"y": 2, "x": 1}]}))
            .attribute("alpha", 1.5)
            .build();
        let text = String::from_utf8(canonical_json(&event)).unwrap();
        assert!(text.starts_with("{\"action\":\"update\",\"actor_email\":null"));
        assert!(text.contains(
            "\"attributes\":{\"alpha\":1.5,\"zeta\":{\"a\":[{\"x\":1,\"y\":2}],\"b\":1}}"
        ));
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["id"], event.id.to_string());
    }

    /// The top-level field writer (with its constant keys) against the general canonical
    /// writer over the event's serde form, chain link left out.
    #[test]
    fn field_writer_matches_the_general_canonical_form() {
        let full = AuditEvent::builder("Dataset \"Rule\"", Action::Delete)
            .http(HttpFacts::new("DELETE", "/d/{id}", "/d/ü\n1", 403))
            .tenant("acme")
            .actor_id("user-1")
            .actor_email("a@b.test")
            .actor_name("Ä \\ B")
            .resource("r-1", "Resource \u{1}")
            .denied("no \t role")
            .duration_ms(12.25)
            .client_ip("10.0.0.1")
            .user_agent("curl/8")
            .attribute(
                "zeta",
                serde_json::json!({"b": 1, "a": [{"y": 2.5, "x": null}]}),
            )
            .build();
        let bare = AuditEvent::builder("Model", Action::Create)
            .internal("job")
            .build();
        for event in [full, bare] {
            let mut value = serde_json::to_value(&event).unwrap();
            value.as_object_mut().unwrap().remove("chain");
            assert_eq!(
                String::from_utf8(canonical_json(&event)).unwrap(),
                String::from_utf8(canonical_value_json(&value)).unwrap()
            );
        }
    }

    #[test]
    fn fast_writers_match_serde_json_and_chrono_formats() {
        for text in [
            "",
            "plain",
            "quote \" backslash \\ tab \t nl \n",
            "\u{1} \u{1f} \u{7f} del",
            "ünïcödé ✓ 🎉",
            "</script>",
        ] {
            let mut out = Vec::new();
            write_string(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
        for micros in [
            0_i64,
            1,
            -1,
            1_795_000_000_123_456,
            -62_135_596_800_000_000, // 0001-01-01
            -62_167_219_200_000_000, // 0000-01-01
            253_402_300_799_999_999, // 9999-12-31T23:59:59.999999
            253_402_300_800_000_000, // 10000-01-01: chrono's own path
            -62_167_219_200_000_001, // before year 0: chrono's own path
        ] {
            let at = chrono::DateTime::from_timestamp_micros(micros).unwrap();
            let mut out = Vec::new();
            rfc3339_micros::write(&at, &mut out);
            assert_eq!(out, rfc3339_micros::format(&at).as_bytes());
        }
    }

    #[test]
    fn hex_round_trip() {
        let hash = ChainHash([0xab; 32]);
        assert_eq!(ChainHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(ChainHash::from_hex("zz"), None);
        assert_eq!(ChainHash::from_hex(&"a".repeat(63)), None);
    }

    #[test]
    fn extend_links_in_order() {
        let events: Vec<AuditEvent> = (0..3)
            .map(|_| {
                AuditEvent::builder("Model", Action::Create)
                    .internal("job")
                    .build()
            })
            .collect();
        let (links, head) = ChainHead::EMPTY.extend(&events);
        assert_eq!(links[0].prev_hash, ChainHash::GENESIS);
        assert_eq!(links[1].prev_hash, links[0].hash);
        assert_eq!(head.seq, 3);
        assert_eq!(head.hash, links[2].hash);
        assert_eq!(links[2].hash, links[2].recompute(&events[2]));
        assert_eq!(links[2].version, ChainVersion::V2);
        assert_eq!(
            links[2].hash,
            chain_step(&links[1].hash, 3, &content_digest(&events[2]))
        );
        let v1 = ChainLink {
            version: ChainVersion::V1,
            hash: chain_hash(&links[1].hash, 3, &events[2]),
            ..links[2]
        };
        assert_eq!(v1.recompute(&events[2]), v1.hash);
        assert_ne!(v1.hash, links[2].hash);
    }

    #[test]
    fn links_say_their_version_and_version_1_is_the_default() {
        let link = ChainLink {
            seq: 1,
            prev_hash: ChainHash::GENESIS,
            hash: ChainHash([1; 32]),
            version: ChainVersion::V2,
        };
        let json = serde_json::to_value(link).unwrap();
        assert_eq!(json["version"], 2);
        let old =
            serde_json::json!({"seq": 1, "prev_hash": "00".repeat(32), "hash": "01".repeat(32)});
        let parsed: ChainLink = serde_json::from_value(old).unwrap();
        assert_eq!(parsed.version, ChainVersion::V1);
        let v1 = ChainLink {
            version: ChainVersion::V1,
            ..link
        };
        assert!(serde_json::to_value(v1).unwrap().get("version").is_none());
    }
}
