//! `audit verify`: walks a store's hash chain and prints what it found.

use std::fmt::Write as _;

use audit_store::{ChainReport, verify_chain};
use ed25519_dalek::VerifyingKey;

use crate::Outcome;
use crate::open::open_read_only;

/// Verifies the log at `url` and prints the report.
pub async fn run(url: &str, schema: Option<&str>, key: &VerifyingKey) -> Outcome {
    let store = match open_read_only(url, schema).await {
        Ok(store) => store,
        Err(message) => return Outcome::Error(message),
    };
    match verify_chain(&*store, key).await {
        Ok(report) => {
            print!("{}", render(&report));
            if report.is_intact() {
                Outcome::Verified
            } else {
                Outcome::Failed
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
    match &report.broken {
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
