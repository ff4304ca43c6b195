//! `audit verify-stream`: checks a forwarded copy of the log, an NDJSON file (what the
//! webhook received) or a JetStream stream, with `audit_forward::receive::StreamVerifier`.

use std::io::BufRead;
use std::path::Path;

use audit_forward::receive::StreamVerifier;
use ed25519_dalek::VerifyingKey;

use crate::Outcome;

/// Where the copy is.
pub enum Source<'a> {
    /// An NDJSON file: event lines and `{"checkpoint": ...}` lines, in any order.
    File(&'a Path),
    /// Every message of a JetStream stream, optionally only one subject filter.
    JetStream {
        url: &'a str,
        stream: &'a str,
        subject: Option<&'a str>,
    },
}

pub async fn run(source: Source<'_>, key: &VerifyingKey, from_seq: Option<u64>) -> Outcome {
    let mut verifier = StreamVerifier::new(*key);
    if let Some(seq) = from_seq {
        verifier = verifier.from_seq(seq);
    }
    match source {
        Source::File(path) => {
            let file = match std::fs::File::open(path) {
                Ok(file) => file,
                Err(error) => {
                    return Outcome::Error(format!("cannot read {}: {error}", path.display()));
                }
            };
            let mut reader = std::io::BufReader::new(file);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    // A malformed line is reported in the result, not fatal here.
                    Ok(_) => drop(verifier.push_line(&line)),
                    Err(error) => {
                        return Outcome::Error(format!("cannot read {}: {error}", path.display()));
                    }
                }
            }
        }
        Source::JetStream {
            url,
            stream,
            subject,
        } => {
            let client = match async_nats::connect(url).await {
                Ok(client) => client,
                Err(error) => {
                    return Outcome::Error(format!("cannot connect to NATS at {url}: {error}"));
                }
            };
            let read = audit_forward::nats::read_stream(client, stream, subject, |payload| {
                drop(verifier.push_line(payload));
            })
            .await;
            if let Err(error) = read {
                return Outcome::Error(error.to_string());
            }
        }
    }
    let report = verifier.finish();
    print!("{report}");
    if report.is_intact() {
        println!("result:            VERIFIED");
        Outcome::Verified
    } else {
        println!("result:            FAILED");
        Outcome::Failed
    }
}
