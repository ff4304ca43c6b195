//! Command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Mix Modeler: a small marketing-mix modelling API whose every change is audited.
///
/// Sign in from a browser with `/login?as=alice` (or bob, carol, erin, dave), or call the API
/// with `Authorization: Bearer alice-token`. The activity log is at `/admin/audit/`.
#[derive(Debug, Parser)]
#[command(name = "mix-modeler", version)]
pub struct Cli {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Where the audit log is kept: `sqlite://FILE` (created if missing) or
    /// `postgres://USER@HOST/DB` (tables in the `audit` schema).
    #[arg(
        long,
        value_name = "URL",
        env = "DATABASE_URL",
        default_value = "sqlite://audit.db"
    )]
    pub database: String,

    /// Record this many realistic past events (last 90 days) at start, so the log page has
    /// something to show. They are added to whatever the database already holds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub demo_traffic: u32,

    /// The Ed25519 key that signs the log's checkpoints and export manifests, created (mode
    /// 0600) on first start. Default: beside the SQLite file (`audit.db.signing-key`), or
    /// `mix-modeler.signing-key` in the current directory for PostgreSQL.
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,

    /// The append-only file every signed checkpoint is also written to, for
    /// `audit verify --checkpoints`. Default: beside the key (`….checkpoints.ndjson`).
    #[arg(long, value_name = "FILE")]
    pub checkpoint_log: Option<PathBuf>,

    /// Where events not written by the shutdown deadline are spooled for the next start.
    /// Default: beside the SQLite file (`audit.db-spool`), or `audit-spool-audit` in the
    /// current directory for PostgreSQL.
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Release each response only after its audit event committed (durable delivery)
    /// instead of writing events in the background (buffered, the default).
    #[arg(long)]
    pub durable: bool,
}
