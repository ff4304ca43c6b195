//! `audit verify-export`: checks a downloaded export against its signed manifest.
//!
//! In order: the manifest's signature (and the checkpoint it embeds); that the file parses
//! completely in its format (a truncated download does not); its row count; for JSON and
//! NDJSON exports carrying the `chain` field, every row's chain hash recomputed from its
//! content, its position within the pinned chain head, distinct positions, the export's
//! newest-first order, the links between rows at consecutive positions, and the hashes the
//! manifest and checkpoint vouch for when those positions are in the file; finally the
//! SHA-256 of the bytes, which catches every other change.

mod layout;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use audit_store::{AuditEvent, ChainHash, Checkpoint};
use ed25519_dalek::VerifyingKey;
use serde_json::Value;

use crate::Outcome;

/// Where the manifest is looked for when `--manifest` is not given.
pub fn default_manifest(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

/// Verifies `file` against `manifest` and prints the report.
pub fn run(file: &Path, manifest: Option<&Path>, key: &VerifyingKey) -> Outcome {
    let manifest_path = manifest.map_or_else(|| default_manifest(file), Path::to_path_buf);
    if let Err(error) = std::fs::metadata(file) {
        return Outcome::Error(format!("cannot read {}: {error}", file.display()));
    }
    let manifest: Value = match std::fs::read(&manifest_path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_slice(&text).map_err(|e| e.to_string()))
    {
        Ok(manifest) => manifest,
        Err(error) => {
            return Outcome::Error(format!(
                "cannot read the manifest {}: {error}",
                manifest_path.display()
            ));
        }
    };
    let mut report = String::new();
    let result = check(file, &manifest, key, &mut report);
    print!("{report}");
    match result {
        Ok(()) => {
            println!("result:            VERIFIED");
            Outcome::Verified
        }
        Err(problem) => {
            println!("result:            FAILED");
            println!("problem:           {problem}");
            Outcome::Failed
        }
    }
}

fn check(
    file: &Path,
    manifest: &Value,
    key: &VerifyingKey,
    out: &mut String,
) -> Result<(), String> {
    audit_api::manifest::verify(manifest, key).map_err(|e| e.to_string())?;
    let format = manifest["format"].as_str().unwrap_or_default();
    let row_count = manifest["row_count"]
        .as_u64()
        .ok_or("the manifest has no row_count")?;
    let head = manifest["chain_head"]
        .as_u64()
        .ok_or("the manifest has no chain_head")?;
    let _ = writeln!(
        out,
        "manifest:          signature valid; {format} export of {row_count} row(s) pinned to chain head seq {head}"
    );
    let checkpoint = match &manifest["checkpoint"] {
        Value::Null => {
            let _ = writeln!(out, "checkpoint:        none");
            None
        }
        value => {
            let checkpoint: Checkpoint = serde_json::from_value(value.clone())
                .map_err(|e| format!("the manifest's checkpoint is malformed: {e}"))?;
            checkpoint
                .verify(key)
                .map_err(|e| format!("the manifest's checkpoint does not verify: {e}"))?;
            let _ = writeln!(
                out,
                "checkpoint:        {} at seq {}, signed {}, signature valid",
                checkpoint.kind.as_str(),
                checkpoint.seq,
                checkpoint
                    .created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            Some(checkpoint)
        }
    };
    // One pass over a file in the layout the router writes (every format's rows on lines
    // of their own), rows parsed and hashed on every core; anything else (a file that was
    // reformatted, truncated or damaged) is read again the general way, which names the
    // fault exactly.
    let scan = match layout::scan(file, format, head) {
        Ok(Some(scan)) => scan,
        Ok(None) => general_scan(file, format, head)?,
        Err(error) => return Err(format!("cannot read {}: {error}", file.display())),
    };
    if scan.count != row_count {
        return Err(format!(
            "the file has {} row(s) but the manifest lists {row_count}: rows were {}",
            scan.count,
            if scan.count < row_count {
                "removed"
            } else {
                "added"
            }
        ));
    }
    if let Some(links) = scan.links {
        let links = links?;
        let expect = |seq: u64, hash: Option<ChainHash>, what: &str| match (links.get(seq), hash) {
            (Some(link), Some(hash)) if link.hash != hash => Err(format!(
                "the row at seq {seq} does not have the hash {what} vouches for"
            )),
            _ => Ok(()),
        };
        let head_hash = manifest["chain_head_hash"]
            .as_str()
            .and_then(ChainHash::from_hex);
        expect(head, head_hash, "the manifest's chain head")?;
        if let Some(checkpoint) = &checkpoint {
            expect(
                checkpoint.seq,
                Some(checkpoint.head),
                "the signed checkpoint",
            )?;
        }
        let range = match (links.first(), links.last()) {
            (Some(lo), Some(hi)) => format!(" (seq {lo} to {hi})"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "rows:              {}{range}, every row's chain hash recomputed",
            scan.count
        );
    } else {
        let _ = writeln!(
            out,
            "rows:              {} (no chain field in this export: content hash only)",
            scan.count
        );
    }
    if manifest["sha256"].as_str() != Some(scan.sha256.to_hex().as_str()) {
        return Err("the file's SHA-256 differs from the manifest's: the file was altered".into());
    }
    let _ = writeln!(out, "content:           SHA-256 matches the manifest");
    Ok(())
}

/// What reading an export found, before it is compared with the manifest.
pub(crate) struct Scan {
    /// Rows in the file.
    pub(crate) count: u64,
    /// The rows' chain links when the rows carry them (JSON and NDJSON exports of every
    /// column), or the first row whose link is wrong.
    pub(crate) links: Option<Result<Links, String>>,
    /// The SHA-256 of the file's bytes.
    pub(crate) sha256: ChainHash,
}

/// The chain links of an export's rows, by position.
pub(crate) struct Links(Vec<audit_store::ChainLink>);

impl Links {
    /// Sorts `links` by position: `Err` names a repeated position.
    pub(crate) fn new(mut links: Vec<audit_store::ChainLink>) -> Result<Links, u64> {
        links.sort_unstable_by_key(|link| link.seq);
        if let Some(pair) = links.windows(2).find(|pair| pair[0].seq == pair[1].seq) {
            return Err(pair[0].seq);
        }
        Ok(Links(links))
    }
    fn get(&self, seq: u64) -> Option<&audit_store::ChainLink> {
        let index = self.0.binary_search_by_key(&seq, |link| link.seq).ok()?;
        self.0.get(index)
    }
    fn first(&self) -> Option<u64> {
        self.0.first().map(|link| link.seq)
    }
    fn last(&self) -> Option<u64> {
        self.0.last().map(|link| link.seq)
    }
    /// The first position whose row does not follow the row before it.
    pub(crate) fn unlinked(&self) -> Option<u64> {
        self.0
            .windows(2)
            .find(|pair| pair[1].seq == pair[0].seq + 1 && pair[1].prev_hash != pair[0].hash)
            .map(|pair| pair[1].seq)
    }
}

/// The message for a row at `seq` that does not follow the row before it.
pub(crate) fn unlinked_message(seq: u64) -> String {
    format!(
        "the row at seq {seq} does not follow the row at seq {}",
        seq - 1
    )
}

/// The general reading, for a file not in the layout the router writes (so it fails its
/// SHA-256 in any case): the file streamed through its format's parser one row at a time,
/// each row a JSON value, so memory stays bounded however large the file; this reading names
/// the first fault exactly.
fn general_scan(file: &Path, format: &str, head: u64) -> Result<Scan, String> {
    let opened =
        std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    // Every byte read from the file passes through the hashing reader once, whatever the
    // parser above the buffer reads ahead.
    let mut reader = std::io::BufReader::with_capacity(1 << 20, layout::Hashing::new(opened));
    let mut rows = GeneralRows::new(head);
    match format {
        "json" => {
            let mut deserializer = serde_json::Deserializer::from_reader(&mut reader);
            let array = serde::de::Deserializer::deserialize_seq(&mut deserializer, &mut rows)
                .and_then(|()| deserializer.end());
            array.map_err(|e| {
                format!("the file is not one complete JSON array: truncated or altered ({e})")
            })?;
            if let Some(fault) = rows.fault.take() {
                return Err(fault);
            }
        }
        "ndjson" => {
            let mut line = Vec::new();
            let mut fault = None;
            let mut n = 0;
            loop {
                line.clear();
                let read = std::io::BufRead::read_until(&mut reader, b'\n', &mut line)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                if read == 0 {
                    break;
                }
                n += 1;
                if !line.ends_with(b"\n") {
                    return Err("the file does not end with a complete line: truncated".into());
                }
                let text = &line[..line.len() - 1];
                if text.is_empty() || fault.is_some() {
                    continue;
                }
                match serde_json::from_slice::<Value>(text) {
                    Ok(value) if value.get("error").is_some() && value.get("id").is_none() => {
                        fault = Some(format!("line {n}: the export failed midway on the server"));
                    }
                    Ok(value) => {
                        rows.row(value);
                        fault = rows.fault.take();
                    }
                    Err(e) => {
                        fault = Some(format!(
                            "line {n} is not valid JSON: truncated or altered ({e})"
                        ));
                    }
                }
            }
            if let Some(fault) = fault {
                return Err(fault);
            }
        }
        "csv" => {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(&mut reader);
            let mut record = csv::ByteRecord::new();
            while csv
                .read_byte_record(&mut record)
                .map_err(|e| format!("the file is not valid CSV: {e}"))?
            {
                rows.count += 1;
            }
        }
        other => return Err(format!("unknown export format {other:?} in the manifest")),
    }
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    Ok(Scan {
        count: rows.count,
        links: rows.links(),
        sha256: reader.into_inner().finish(),
    })
}

/// The rows of the general reading as they come: counted, and checked as chain rows once
/// one carries `chain` (a row without it is then a fault at its place).
struct GeneralRows {
    count: u64,
    order: layout::RowOrder,
    /// Whether a row carried `chain`; the first row without one, and its fault.
    chained: bool,
    unchained: Option<(u64, String)>,
    /// A row that is not a JSON object (the file is then not an export at all).
    fault: Option<String>,
}

impl GeneralRows {
    fn new(head: u64) -> Self {
        GeneralRows {
            count: 0,
            order: layout::RowOrder::new(head),
            chained: false,
            unchained: None,
            fault: None,
        }
    }

    /// Row `count + 1`.
    fn row(&mut self, value: Value) {
        self.count += 1;
        let n = self.count;
        let Value::Object(row) = value else {
            self.fault
                .get_or_insert_with(|| format!("row {n} is not a JSON object"));
            return;
        };
        self.chained |= row.contains_key("chain");
        let event = serde_json::from_value::<AuditEvent>(Value::Object(row));
        let link = match &event {
            Ok(event) => event.chain,
            Err(_) => None,
        };
        match (event, link) {
            (Ok(event), Some(link)) => {
                let row = layout::CheckedRow {
                    link,
                    modified: link.recompute(&event) != link.hash,
                    key: (event.occurred_at, event.id),
                };
                self.order.next(n, &row);
            }
            (Ok(_), None) => self.not_chained(n, format!("row {n} has no chain link")),
            (Err(e), _) => self.not_chained(n, format!("row {n} is not an audit event: {e}")),
        }
    }

    fn not_chained(&mut self, n: u64, fault: String) {
        if self.unchained.is_none() {
            self.unchained = Some((n, fault));
        }
    }

    /// The links, when the rows carry them: the first fault in file order wins.
    fn links(self) -> Option<Result<Links, String>> {
        if !self.chained {
            return None;
        }
        let unchained = self.unchained;
        Some(self.order.finish_with(unchained))
    }
}

impl<'de> serde::de::Visitor<'de> for &mut GeneralRows {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        while let Some(value) = items.next_element::<Value>()? {
            self.row(value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use audit_store::{Action, ChainLink, ChainVersion, HttpFacts};
    use sha2::{Digest, Sha256};

    use super::*;

    /// A chain of `count` events as NDJSON lines, newest first, as the router writes them.
    fn rows(count: u64) -> Vec<String> {
        let mut previous = ChainHash::GENESIS;
        let start = chrono::Utc::now();
        let mut lines: Vec<String> = (1..=count)
            .map(|seq| {
                let mut event = AuditEvent::builder("Model", Action::Update)
                    .occurred_at(start + chrono::Duration::seconds(seq as i64))
                    .http(HttpFacts::new("PUT", "/m/{id}", format!("/m/{seq}"), 200))
                    .resource(seq.to_string(), format!("model, \"{seq}\""))
                    .attribute("n", seq)
                    .build();
                let mut link = ChainLink {
                    seq,
                    prev_hash: previous,
                    hash: ChainHash::GENESIS,
                    version: ChainVersion::V2,
                };
                link.hash = link.recompute(&event);
                previous = link.hash;
                event.chain = Some(link);
                serde_json::to_string(&event).unwrap()
            })
            .collect();
        lines.reverse();
        lines
    }

    fn as_format(lines: &[String], format: &str) -> String {
        match format {
            "json" if lines.is_empty() => "[\n]\n".to_owned(),
            "json" => format!("[\n{}\n]\n", lines.join(",\n")),
            _ => lines.iter().map(|line| format!("{line}\n")).collect(),
        }
    }

    /// What a scan found, comparable.
    fn summary(scan: &Scan) -> (u64, Option<Result<Vec<u64>, String>>, String) {
        let links = scan.links.as_ref().map(|links| match links {
            Ok(links) => Ok(links.0.iter().map(|link| link.seq).collect()),
            Err(fault) => Err(fault.clone()),
        });
        (scan.count, links, scan.sha256.to_hex())
    }

    /// The one-pass reading finds what the general reading finds, faults included, in both
    /// formats, across blocks.
    #[test]
    fn the_fast_reading_agrees_with_the_general_one() {
        let dir = tempfile::tempdir().unwrap();
        let intact = rows(40);
        let mut swapped = intact.clone();
        swapped.swap(3, 4);
        let mut repeated = intact.clone();
        repeated.insert(10, intact[10].clone());
        let modified: Vec<String> = intact
            .iter()
            .map(|line| line.replacen("model, \\\"7\\\"", "model, \\\"8\\\"", 1))
            .collect();
        let mut removed_middle = intact.clone();
        removed_middle.remove(20);
        let unlinked: Vec<String> = {
            // Row 30's link says another predecessor, and its own hash follows from that.
            let mut event: AuditEvent = serde_json::from_str(&intact[10]).unwrap();
            let mut link = event.chain.unwrap();
            link.prev_hash = ChainHash::from_hex(&"ab".repeat(32)).unwrap();
            link.hash = link.recompute(&event);
            event.chain = Some(link);
            let mut lines = intact.clone();
            lines[10] = serde_json::to_string(&event).unwrap();
            lines
        };
        let cases = [
            ("intact", intact, None),
            ("swapped", swapped, Some("is out of order")),
            ("repeated", repeated, Some("repeats seq 30")),
            ("modified", modified, Some("was modified")),
            ("removed", removed_middle, None),
            ("unlinked", unlinked, Some("does not follow the row at seq")),
            ("empty", Vec::new(), None),
        ];
        for format in ["json", "ndjson"] {
            for (name, lines, fault) in &cases {
                let file = dir.path().join(format!("{name}.{format}"));
                std::fs::write(&file, as_format(lines, format)).unwrap();
                let fast = layout::scan(&file, format, 40).unwrap();
                let fast = fast.unwrap_or_else(|| panic!("{format} {name}: not in the layout"));
                let general = general_scan(&file, format, 40).unwrap();
                assert_eq!(summary(&fast), summary(&general), "{format} {name}");
                match (fault, &fast.links) {
                    (Some(fault), Some(Err(found))) => {
                        assert!(found.contains(fault), "{format} {name}: {found}")
                    }
                    (None, Some(Ok(_))) | (None, None) => {}
                    (expected, found) => panic!(
                        "{format} {name}: expected {expected:?}, found {:?}",
                        found.as_ref().map(|f| f.as_ref().err())
                    ),
                }
            }
        }
    }

    /// Files outside the router's layout are left to the general reading.
    #[test]
    fn other_layouts_are_read_the_general_way() {
        let dir = tempfile::tempdir().unwrap();
        let lines = rows(3);
        let pretty: Vec<Value> = lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let cases = [
            ("json", serde_json::to_string_pretty(&pretty).unwrap()),
            ("json", as_format(&lines, "json").trim_end().to_owned()),
            ("json", format!("[\n{},\n]\n", lines.join(",\n"))),
            (
                "ndjson",
                format!(
                    "{}{{\"error\":\"export_failed\"}}\n",
                    as_format(&lines, "ndjson")
                ),
            ),
            ("ndjson", as_format(&lines, "ndjson").trim_end().to_owned()),
            ("ndjson", as_format(&lines, "json")),
        ];
        // What the general reading makes of each: the pretty and the unterminated arrays are
        // complete exports (failing only their SHA-256 later), the others name their fault.
        let general: [Result<u64, &str>; 6] = [
            Ok(3),
            Ok(3),
            Err("the file is not one complete JSON array: truncated"),
            Err("line 4: the export failed midway on the server"),
            Err("the file does not end with a complete line: truncated"),
            Err("line 1 is not valid JSON"),
        ];
        for (n, (format, text)) in cases.iter().enumerate() {
            let file = dir.path().join(format!("{n}.{format}"));
            std::fs::write(&file, text).unwrap();
            assert!(
                layout::scan(&file, format, 3).unwrap().is_none(),
                "case {n}"
            );
            match (general_scan(&file, format, 3), general[n]) {
                (Ok(scan), Ok(count)) => {
                    assert_eq!(scan.count, count, "case {n}");
                    assert!(matches!(scan.links, Some(Ok(_))), "case {n}");
                    let bytes = std::fs::read(&file).unwrap();
                    assert_eq!(scan.sha256, ChainHash(Sha256::digest(&bytes).into()));
                }
                (Err(fault), Err(expected)) => {
                    assert!(fault.starts_with(expected), "case {n}: {fault}")
                }
                (found, expected) => panic!(
                    "case {n}: expected {expected:?}, found {:?}",
                    found.map(|scan| scan.count)
                ),
            }
        }
    }
}
