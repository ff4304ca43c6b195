//! Shared pieces of the side-by-side load harness (`load-harness`) and the service it drives
//! (`load-target`): the variants, and the line protocol between the two processes.
//!
//! The harness starts `load-target --variant V` as a child process, reads the address it
//! listens on from its first stdout line ([`LISTENING_PREFIX`]), drives load, sends SIGTERM,
//! and reads the recorder's final counters from a later line ([`METRICS_PREFIX`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

/// Printed by the target, followed by its socket address, once it accepts connections.
pub const LISTENING_PREFIX: &str = "listening on ";
/// Printed by an audited target after its recorder drained, followed by a JSON object of
/// [`TargetMetrics`].
pub const METRICS_PREFIX: &str = "recorder metrics ";

/// The same service built six ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// No middleware beyond the service's own auth.
    Bare,
    /// tower-http `TraceLayer` writing JSON lines to a file through a non-lossy
    /// tracing-appender: what a team would do without an audit log.
    Trace,
    /// Audit layer, buffered delivery, SQLite file.
    SqliteBuffered,
    /// Audit layer, durable delivery, SQLite file.
    SqliteDurable,
    /// Audit layer, buffered delivery, PostgreSQL.
    PostgresBuffered,
    /// Audit layer, durable delivery, PostgreSQL.
    PostgresDurable,
}

impl Variant {
    /// Every variant, in the order a round runs them.
    pub const ALL: [Variant; 6] = [
        Variant::Bare,
        Variant::Trace,
        Variant::SqliteBuffered,
        Variant::SqliteDurable,
        Variant::PostgresBuffered,
        Variant::PostgresDurable,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare",
            Variant::Trace => "trace",
            Variant::SqliteBuffered => "sqlite-buffered",
            Variant::SqliteDurable => "sqlite-durable",
            Variant::PostgresBuffered => "pg-buffered",
            Variant::PostgresDurable => "pg-durable",
        }
    }

    /// A longer label for the report.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Bare => "bare (no middleware)",
            Variant::Trace => "TraceLayer → JSON file (non-lossy)",
            Variant::SqliteBuffered => "audit, buffered, SQLite",
            Variant::SqliteDurable => "audit, durable, SQLite",
            Variant::PostgresBuffered => "audit, buffered, PostgreSQL",
            Variant::PostgresDurable => "audit, durable, PostgreSQL",
        }
    }

    /// True for the variants that record audit events.
    pub fn is_audited(self) -> bool {
        !matches!(self, Variant::Bare | Variant::Trace)
    }

    /// True for the variants that need PostgreSQL.
    pub fn needs_postgres(self) -> bool {
        matches!(self, Variant::PostgresBuffered | Variant::PostgresDurable)
    }

    /// True for the durable-delivery variants.
    pub fn is_durable(self) -> bool {
        matches!(self, Variant::SqliteDurable | Variant::PostgresDurable)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A variant name that is not one of [`Variant::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariant(pub String);

impl fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
        write!(
            f,
            "unknown variant {:?} (expected one of {})",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownVariant {}

impl FromStr for Variant {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| UnknownVariant(s.to_owned()))
    }
}

/// The recorder counters an audited target reports after draining.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetMetrics {
    /// Events committed by the recorder.
    pub recorded: u64,
    /// Requests refused with 503 because the queue stayed full.
    pub refused: u64,
    /// Events handed over after the writer had died.
    pub lost: u64,
    /// Transactions written.
    pub batches: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for variant in Variant::ALL {
            assert_eq!(variant.name().parse::<Variant>(), Ok(variant));
        }
        assert!("nope".parse::<Variant>().is_err());
    }
}
