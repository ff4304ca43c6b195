//! `audit verify-export`: checks a downloaded export against its signed manifest.
//!
//! In order: the manifest's signature (and the checkpoint it embeds); that the file parses
//! completely in its format (a truncated download does not); its row count; for JSON and
//! NDJSON exports carrying the `chain` field, every row's chain hash recomputed from its
//! content, its position within the pinned chain head, distinct positions, the export's
//! newest-first order, the links between rows at consecutive positions, and the hashes the
//! manifest and checkpoint vouch for when those positions are in the file; finally the
//! SHA-256 of the bytes, which catches every other change.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use audit_store::{AuditEvent, ChainHash, Checkpoint};
use ed25519_dalek::VerifyingKey;
use serde_json::Value;
use sha2::{Digest, Sha256};

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
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(error) => return Outcome::Error(format!("cannot read {}: {error}", file.display())),
    };
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
    let result = check(&bytes, &manifest, key, &mut report);
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
    bytes: &[u8],
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
    let rows = parse_rows(bytes, format)?;
    if rows.count != row_count {
        return Err(format!(
            "the file has {} row(s) but the manifest lists {row_count}: rows were {}",
            rows.count,
            if rows.count < row_count {
                "removed"
            } else {
                "added"
            }
        ));
    }
    if rows.objects.iter().any(|row| row.get("chain").is_some()) {
        let links = check_chain(&rows.objects, head)?;
        let expect = |seq: u64, hash: Option<ChainHash>, what: &str| match (links.get(&seq), hash) {
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
        let range = match (links.keys().next(), links.keys().next_back()) {
            (Some(lo), Some(hi)) => format!(" (seq {lo} to {hi})"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "rows:              {}{range}, every row's chain hash recomputed",
            rows.count
        );
    } else {
        let _ = writeln!(
            out,
            "rows:              {} (no chain field in this export: content hash only)",
            rows.count
        );
    }
    let sha = ChainHash(Sha256::digest(bytes).into()).to_hex();
    if manifest["sha256"].as_str() != Some(sha.as_str()) {
        return Err("the file's SHA-256 differs from the manifest's: the file was altered".into());
    }
    let _ = writeln!(out, "content:           SHA-256 matches the manifest");
    Ok(())
}

struct Rows {
    count: u64,
    /// The rows as JSON objects (JSON and NDJSON only).
    objects: Vec<serde_json::Map<String, Value>>,
}

fn parse_rows(bytes: &[u8], format: &str) -> Result<Rows, String> {
    let object = |value: Value, n: usize| match value {
        Value::Object(map) => Ok(map),
        _ => Err(format!("row {n} is not a JSON object")),
    };
    match format {
        "json" => {
            let values: Vec<Value> = serde_json::from_slice(bytes).map_err(|e| {
                format!("the file is not one complete JSON array: truncated or altered ({e})")
            })?;
            let objects = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| object(v, i + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Rows {
                count: objects.len() as u64,
                objects,
            })
        }
        "ndjson" => {
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                return Err("the file does not end with a complete line: truncated".into());
            }
            let mut objects = Vec::new();
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if line.is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_slice(line).map_err(|e| {
                    format!(
                        "line {} is not valid JSON: truncated or altered ({e})",
                        i + 1
                    )
                })?;
                if value.get("error").is_some() && value.get("id").is_none() {
                    return Err(format!(
                        "line {}: the export failed midway on the server",
                        i + 1
                    ));
                }
                objects.push(object(value, i + 1)?);
            }
            Ok(Rows {
                count: objects.len() as u64,
                objects,
            })
        }
        "csv" => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(bytes);
            let mut count = 0u64;
            for record in reader.records() {
                record.map_err(|e| format!("the file is not valid CSV: {e}"))?;
                count += 1;
            }
            Ok(Rows {
                count,
                objects: Vec::new(),
            })
        }
        other => Err(format!("unknown export format {other:?} in the manifest")),
    }
}

/// Checks every row's own hash, position and order; returns the links by position.
fn check_chain(
    rows: &[serde_json::Map<String, Value>],
    head: u64,
) -> Result<BTreeMap<u64, audit_store::ChainLink>, String> {
    let mut links = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut previous = None;
    for (i, row) in rows.iter().enumerate() {
        let n = i + 1;
        let event: AuditEvent = serde_json::from_value(Value::Object(row.clone()))
            .map_err(|e| format!("row {n} is not an audit event: {e}"))?;
        let link = event
            .chain
            .ok_or_else(|| format!("row {n} has no chain link"))?;
        if link.recompute(&event) != link.hash {
            return Err(format!(
                "row {n} (seq {}, id {}) was modified: its content no longer matches its chain hash",
                link.seq, event.id
            ));
        }
        if link.seq > head {
            return Err(format!(
                "row {n} has seq {} beyond the pinned chain head {head}",
                link.seq
            ));
        }
        if !seen.insert(link.seq) {
            return Err(format!("row {n} repeats seq {}", link.seq));
        }
        let key = (event.occurred_at, event.id);
        if let Some(before) = previous
            && key > before
        {
            return Err(format!(
                "row {n} (seq {}) is out of order: exports list events newest first",
                link.seq
            ));
        }
        previous = Some(key);
        links.insert(link.seq, link);
    }
    for (seq, link) in &links {
        if let Some(before) = seq.checked_sub(1).and_then(|s| links.get(&s))
            && link.prev_hash != before.hash
        {
            return Err(format!(
                "the row at seq {seq} does not follow the row at seq {}",
                seq - 1
            ));
        }
    }
    Ok(links)
}
