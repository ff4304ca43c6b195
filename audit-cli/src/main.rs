//! `audit`: verifies an audit log's hash chain and checkpoints, and verifiable exports.
//!
//! Exit status: 0 when everything verifies, 1 when tampering was found, 2 for usage,
//! connection and file errors, 3 when `verify` found no signed checkpoint at all (the tail is
//! unanchored: deleting the newest events would go unnoticed; `--allow-unanchored` accepts it).
#![forbid(unsafe_code)]

mod open;
mod verify_db;
mod verify_export;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Verify a tamper-evident audit log.
#[derive(Debug, Parser)]
#[command(name = "audit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Walk the hash chain of a stored log and check its signed checkpoints.
    Verify {
        /// sqlite://path/to/audit.db or postgres://user@host/db
        #[arg(long, env = "AUDIT_DATABASE_URL")]
        database: String,
        /// The checkpoint signer's Ed25519 public key, 64 hex digits.
        #[arg(long)]
        public_key: String,
        /// PostgreSQL schema holding the store's tables (default `audit`).
        #[arg(long)]
        schema: Option<String>,
        /// A file of published checkpoints (one JSON object per line, as `CheckpointLog`
        /// writes them); each must be in the database and vouch for events still there.
        #[arg(long = "checkpoints", value_name = "FILE")]
        checkpoint_files: Vec<std::path::PathBuf>,
        /// Exit 0 for an intact log even when no signed checkpoint anchors it.
        #[arg(long)]
        allow_unanchored: bool,
    },
    /// Check a downloaded export against its signed manifest (`GET /export/manifest`).
    VerifyExport {
        /// The downloaded CSV, JSON or NDJSON file.
        file: std::path::PathBuf,
        /// The manifest (default: FILE.manifest.json).
        #[arg(long)]
        manifest: Option<std::path::PathBuf>,
        /// The signer's Ed25519 public key, 64 hex digits.
        #[arg(long)]
        public_key: String,
    },
}

/// How a command ended.
pub enum Outcome {
    /// Everything checked out (exit 0).
    Verified,
    /// Tampering or a mismatch was found (exit 1); the report was printed.
    Failed,
    /// The command could not run (exit 2).
    Error(String),
    /// Intact as far as it goes, but no signed checkpoint anchors it (exit 3).
    Unanchored,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return finish(Outcome::Error(format!("cannot start: {error}"))),
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Verify {
                database,
                public_key,
                schema,
                checkpoint_files,
                allow_unanchored,
            } => match audit_store::parse_public_key(&public_key) {
                Ok(key) => {
                    let options = verify_db::Options {
                        schema: schema.as_deref(),
                        checkpoint_files: &checkpoint_files,
                        allow_unanchored,
                    };
                    verify_db::run(&database, &key, options).await
                }
                Err(error) => Outcome::Error(format!("--public-key: {error}")),
            },
            Command::VerifyExport {
                file,
                manifest,
                public_key,
            } => match audit_store::parse_public_key(&public_key) {
                Ok(key) => verify_export::run(&file, manifest.as_deref(), &key),
                Err(error) => Outcome::Error(format!("--public-key: {error}")),
            },
        }
    });
    finish(outcome)
}

fn finish(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Verified => ExitCode::SUCCESS,
        Outcome::Failed => ExitCode::from(1),
        Outcome::Unanchored => ExitCode::from(3),
        Outcome::Error(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
