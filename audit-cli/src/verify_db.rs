//! `audit verify`: walks a store's hash chain and prints what it found.

use std::fmt::Write as _;

use std::path::PathBuf;

use audit_store::{ChainReport, read_checkpoint_log, verify_chain_against};
use ed25519_dalek::VerifyingKey;

use crate::Outcome;
use crate::open::open_read_only;

/// What `audit verify` was asked besides the database.
pub struct Options<'a> {
    pub schema: Option<&'a str>,
    pub checkpoint_files: &'a [PathBuf],
    pub allow_unanchored: bool,
}

/// Verifies the log at `url` and prints the report.
pub async fn run(url: &str, key: &VerifyingKey, options: Options<'_>) -> Outcome {
    let mut published = Vec::new();
    for file in options.checkpoint_files {
        match read_checkpoint_log(file) {
            Ok(checkpoints) => published.extend(checkpoints),
            Err(error) => {
                return Outcome::Error(format!("--checkpoints {}: {error}", file.display()));
            }
        }
    }
    let store = match open_read_only(url, options.schema).await {
        Ok(store) => store,
        Err(message) => return Outcome::Error(message),
    };
    match verify_chain_against(&*store, key, &published).await {
        Ok(report) => {
            print!("{}", render(&report));
            if !report.is_intact() {
                Outcome::Failed
            } else if !report.is_anchored() && !options.allow_unanchored {
                Outcome::Unanchored
            } else {
                Outcome::Verified
            }
        }
        Err(error) => Outcome::Error(format!("cannot read the audit log: {error}")),
    }
}

/// The human-readable report.
pub fn render(report: &ChainReport) -> String {
    let mut out = String::new();
    let range = match (report.first_seq, report.last_seq) {
        (Some(first), Some(last)) => format!(" (seq {first} to {last})"),
        _ => String::new(),
    };
    let _ = writeln!(out, "events checked:    {}{range}", report.events_checked);
    let _ = writeln!(out, "checkpoints:       {}", report.checkpoints_checked);
    match &report.latest_checkpoint {
        Some(checkpoint) => {
            let _ = writeln!(
                out,
                "latest checkpoint: {} at seq {}, signed {}",
                checkpoint.kind.as_str(),
                checkpoint.seq,
                checkpoint
                    .created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "latest checkpoint: none (deleting the newest events cannot be detected)"
            );
        }
    }
    if report.is_anchored() && report.unanchored_events > 0 {
        let _ = writeln!(
            out,
            "unanchored tail:   {} newest event(s) after the latest checkpoint (their deletion \
             would show only at the next checkpoint)",
            report.unanchored_events
        );
    }
    match &report.broken {
        None if !report.is_anchored() => {
            let _ = writeln!(
                out,
                "result:            INTACT BUT UNANCHORED: no signed checkpoint vouches for \
                 the chain, so deleting its newest events (and rewriting the stored head) \
                 would go unnoticed; configure a signer, or pass --allow-unanchored"
            );
        }
        None => {
            let _ = writeln!(out, "result:            INTACT");
        }
        Some(broken) => {
            let _ = writeln!(out, "result:            BROKEN");
            let _ = writeln!(out, "first broken link: {broken}");
        }
    }
    out
}
