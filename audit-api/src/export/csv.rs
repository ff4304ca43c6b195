//! CSV: a header row, then one row per event, RFC 4180 quoting (what the `csv` crate's
//! writer does by default, held equal by a test), spreadsheet formulas neutralised. Each
//! field is written straight into the frame's buffer: no allocation per row or field.

use std::io::Write as _;

use audit_store::{EventView, rfc3339_micros};

use super::{Column, EncodeError, Encoder};

/// The first characters that make a spreadsheet treat a cell as a formula (or that some
/// spreadsheets strip and then evaluate what follows): such a cell gets a `'` prefix.
const FORMULA_TRIGGERS: [u8; 7] = [b'=', b'+', b'-', b'@', b'\t', b'\r', b'\0'];

/// Whether `cell` needs the `'` prefix.
pub(crate) fn needs_neutralising(cell: &[u8]) -> bool {
    cell.first().is_some_and(|b| FORMULA_TRIGGERS.contains(b))
}

/// Whether a field must be quoted: it holds the delimiter, a quote or a line break.
fn needs_quotes(field: &[u8]) -> bool {
    field
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
}

pub(crate) struct CsvEncoder {
    columns: Vec<Column>,
    /// The text of a cell that is not a stored string (a number, the attributes), reused.
    cell: Vec<u8>,
}

impl CsvEncoder {
    pub(crate) fn new(columns: Vec<Column>) -> Self {
        CsvEncoder {
            columns,
            cell: Vec::with_capacity(512),
        }
    }

    /// Writes one field (after the separator, if it is not the row's first): `'`-prefixed
    /// when a spreadsheet would take it for a formula, quoted with doubled quotes when it
    /// holds a delimiter, quote or line break. An empty field of a one-column row is `""`,
    /// so the row is not read as a blank line.
    fn field(&self, out: &mut Vec<u8>, value: &[u8]) {
        let prefix: &[u8] = if needs_neutralising(value) { b"'" } else { b"" };
        if needs_quotes(value) {
            out.push(b'"');
            out.extend_from_slice(prefix);
            for part in value.split_inclusive(|b| *b == b'"') {
                out.extend_from_slice(part);
                if part.last() == Some(&b'"') {
                    out.push(b'"');
                }
            }
            out.push(b'"');
        } else if value.is_empty() && prefix.is_empty() && self.columns.len() == 1 {
            out.extend_from_slice(b"\"\"");
        } else {
            out.extend_from_slice(prefix);
            out.extend_from_slice(value);
        }
    }

    /// Writes the cell of `column` of `event`.
    fn cell(&mut self, event: &EventView<'_>, column: Column, out: &mut Vec<u8>) {
        let stored: Option<&str> = match column {
            Column::Tenant => Some(event.tenant.unwrap_or_default()),
            Column::RequestId => Some(event.request_id),
            Column::ActorId => Some(event.actor_id.unwrap_or_default()),
            Column::ActorEmail => Some(event.actor_email.unwrap_or_default()),
            Column::ActorName => Some(event.actor_name.unwrap_or_default()),
            Column::Category => Some(event.category),
            Column::Action => Some(event.action),
            Column::Outcome => Some(event.outcome),
            Column::Reason => Some(event.reason.unwrap_or_default()),
            Column::ResourceId => Some(event.resource_id.unwrap_or_default()),
            Column::ResourceName => Some(event.resource_name.unwrap_or_default()),
            Column::Method => Some(event.method),
            Column::Route => Some(event.route),
            Column::Path => Some(event.path),
            Column::ClientIp => Some(event.client_ip.unwrap_or_default()),
            Column::UserAgent => Some(event.user_agent.unwrap_or_default()),
            Column::Id
            | Column::OccurredAt
            | Column::Status
            | Column::DurationMs
            | Column::Attributes => None,
        };
        if let Some(stored) = stored {
            self.field(out, stored.as_bytes());
            return;
        }
        let mut cell = std::mem::take(&mut self.cell);
        cell.clear();
        match column {
            Column::Id => {
                let mut buffer = uuid::Uuid::encode_buffer();
                cell.extend_from_slice(event.id.hyphenated().encode_lower(&mut buffer).as_bytes());
            }
            Column::OccurredAt => rfc3339_micros::write(&event.occurred_at, &mut cell),
            // Writing into a Vec cannot fail.
            Column::Status => {
                let _ = write!(cell, "{}", event.status);
            }
            Column::DurationMs => {
                let _ = write!(cell, "{}", event.duration_ms);
            }
            _ => event.attributes.write_json(&mut cell),
        }
        self.field(out, &cell);
        self.cell = cell;
    }
}

impl Encoder for CsvEncoder {
    fn begin(&mut self, out: &mut Vec<u8>) {
        for (index, column) in self.columns.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            self.field(out, column.name().as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    fn event(&mut self, event: &EventView<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for index in 0..self.columns.len() {
            if index > 0 {
                out.push(b',');
            }
            self.cell(event, self.columns[index], out);
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) {}

    /// CSV has no in-band error: any appended line would read as a data row. The aborted
    /// transfer is the signal.
    fn fail(&mut self, _message: &str, _out: &mut Vec<u8>) {}
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

    /// The fields are quoted exactly as the `csv` crate's writer quotes them (after the
    /// formula prefix), for one column and for several.
    #[test]
    fn quotes_as_the_csv_crate_does() {
        let values = [
            "",
            "plain",
            "a,b",
            "say \"hi\"",
            "\"",
            "line\nbreak",
            "cr\rx",
            "=1+1",
            "-\"x,\"",
            "\r\n",
            "'",
            "ünïcode ✓",
            " spaced ",
        ];
        for columns in [1, 3] {
            let encoder = CsvEncoder::new(vec![Column::Tenant; columns]);
            let mut ours = Vec::new();
            let mut theirs = ::csv::WriterBuilder::new()
                .terminator(::csv::Terminator::CRLF)
                .from_writer(Vec::new());
            for value in values {
                for index in 0..columns {
                    if index > 0 {
                        ours.push(b',');
                    }
                    encoder.field(&mut ours, value.as_bytes());
                }
                ours.extend_from_slice(b"\r\n");
                let neutralised = if needs_neutralising(value.as_bytes()) {
                    format!("'{value}")
                } else {
                    value.to_owned()
                };
                theirs
                    .write_record(std::iter::repeat_n(&neutralised, columns))
                    .unwrap();
            }
            let theirs = theirs.into_inner().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{columns} column(s)"
            );
        }
    }
}
