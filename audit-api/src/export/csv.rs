//! CSV: a header row, RFC 4180 quoting by the `csv` crate, spreadsheet formulas
//! neutralised.

use std::cell::RefCell;
use std::io::Write as _;

use audit_store::{AuditEvent, rfc3339_micros};

use super::{Column, EncodeError, Encoder};

/// The first characters that make a spreadsheet treat a cell as a formula (or that some
/// spreadsheets strip and then evaluate what follows): such a cell gets a `'` prefix.
const FORMULA_TRIGGERS: [u8; 7] = [b'=', b'+', b'-', b'@', b'\t', b'\r', b'\0'];

/// Whether `cell` needs the `'` prefix.
pub(crate) fn needs_neutralising(cell: &[u8]) -> bool {
    cell.first().is_some_and(|b| FORMULA_TRIGGERS.contains(b))
}

pub(crate) struct CsvEncoder {
    columns: Vec<Column>,
    /// Writes one row at a time into its own buffer, reused for every row.
    row: ::csv::Writer<RowBuffer>,
    /// The text of the cell being written, reused for every cell.
    cell: Vec<u8>,
}

impl CsvEncoder {
    pub(crate) fn new(columns: Vec<Column>) -> Self {
        CsvEncoder {
            columns,
            row: ::csv::WriterBuilder::new()
                .terminator(::csv::Terminator::CRLF)
                .from_writer(RowBuffer::default()),
            cell: Vec::with_capacity(256),
        }
    }

    fn end_row(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.row
            .write_record(None::<&[u8]>)
            .map_err(to_encode_error)?;
        self.row.flush().map_err(|e| EncodeError(e.to_string()))?;
        let mut row = self.row.get_ref().bytes.borrow_mut();
        out.extend_from_slice(&row);
        row.clear();
        Ok(())
    }
}

/// The bytes of the row being written. `csv::Writer` only lends its writer out immutably,
/// hence the cell: the row is copied out and the buffer cleared after every row, so its
/// allocation is reused for the whole export.
#[derive(Debug, Default)]
struct RowBuffer {
    bytes: RefCell<Vec<u8>>,
}

impl std::io::Write for RowBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.get_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn to_encode_error(error: ::csv::Error) -> EncodeError {
    EncodeError(error.to_string())
}

/// Writes the text of `column` of `event` into `cell` (empty for null).
fn cell_text(event: &AuditEvent, column: Column, cell: &mut Vec<u8>) -> std::io::Result<()> {
    fn text(cell: &mut Vec<u8>, value: Option<&str>) -> std::io::Result<()> {
        cell.extend_from_slice(value.unwrap_or_default().as_bytes());
        Ok(())
    }
    match column {
        Column::Id => {
            let mut buffer = uuid::Uuid::encode_buffer();
            text(cell, Some(event.id.hyphenated().encode_lower(&mut buffer)))
        }
        Column::OccurredAt => {
            rfc3339_micros::write(&event.occurred_at, cell);
            Ok(())
        }
        Column::Tenant => text(cell, event.tenant.as_deref()),
        Column::RequestId => text(cell, Some(&event.request_id)),
        Column::ActorId => text(cell, event.actor_id.as_deref()),
        Column::ActorEmail => text(cell, event.actor_email.as_deref()),
        Column::ActorName => text(cell, event.actor_name.as_deref()),
        Column::Category => text(cell, Some(&event.category)),
        Column::Action => text(cell, Some(event.action.as_str())),
        Column::Outcome => text(cell, Some(event.outcome.as_str())),
        Column::Reason => text(cell, event.reason.as_deref()),
        Column::ResourceId => text(cell, event.resource_id.as_deref()),
        Column::ResourceName => text(cell, event.resource_name.as_deref()),
        Column::Method => text(cell, Some(&event.method)),
        Column::Route => text(cell, Some(&event.route)),
        Column::Path => text(cell, Some(&event.path)),
        Column::Status => write!(cell, "{}", event.status),
        Column::DurationMs => write!(cell, "{}", event.duration_ms),
        Column::ClientIp => text(cell, event.client_ip.as_deref()),
        Column::UserAgent => text(cell, event.user_agent.as_deref()),
        Column::Attributes => {
            serde_json::to_writer(&mut *cell, &event.attributes).map_err(std::io::Error::other)
        }
    }
}

impl Encoder for CsvEncoder {
    fn begin(&mut self, out: &mut Vec<u8>) {
        for column in &self.columns {
            // Writing into a Vec cannot fail.
            let _ = self.row.write_field(column.name());
        }
        if let Err(error) = self.end_row(out) {
            tracing::error!(%error, "could not write the CSV header");
        }
    }

    fn event(&mut self, event: &AuditEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for index in 0..self.columns.len() {
            let column = self.columns[index];
            self.cell.clear();
            cell_text(event, column, &mut self.cell).map_err(|e| EncodeError(e.to_string()))?;
            if needs_neutralising(&self.cell) {
                self.cell.insert(0, b'\'');
            }
            self.row.write_field(&self.cell).map_err(to_encode_error)?;
        }
        self.end_row(out)
    }

    fn finish(&mut self, _out: &mut Vec<u8>) {}

    /// CSV has no in-band error: any appended line would read as a data row. The aborted
    /// transfer is the signal.
    fn fail(&mut self, _message: &str, _out: &mut Vec<u8>) {
        self.row.get_ref().bytes.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_triggers() {
        for trigger in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\0x"] {
            assert!(needs_neutralising(trigger.as_bytes()), "{trigger:?}");
        }
        for safe in ["", "a=b", "1", " =1", "'=1"] {
            assert!(!needs_neutralising(safe.as_bytes()), "{safe:?}");
        }
    }
}
