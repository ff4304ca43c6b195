//! JSON: one array streamed element by element, or NDJSON, one object per line.

use std::io::Write as _;

use audit_store::{AuditEvent, rfc3339_micros};
use serde::Serialize;

use super::{Column, EncodeError, Encoder};

pub(crate) struct JsonEncoder {
    columns: Vec<Column>,
    /// Every column in contract order: the event's own serde form can be written as is.
    all_columns: bool,
    /// One array (`true`) or one object per line (`false`).
    array: bool,
    first: bool,
}

impl JsonEncoder {
    pub(crate) fn array(columns: Vec<Column>) -> Self {
        Self::new(columns, true)
    }
    pub(crate) fn lines(columns: Vec<Column>) -> Self {
        Self::new(columns, false)
    }
    fn new(columns: Vec<Column>, array: bool) -> Self {
        JsonEncoder {
            all_columns: columns == Column::ALL,
            columns,
            array,
            first: true,
        }
    }
}

fn write_json(out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), EncodeError> {
    serde_json::to_writer(out, value).map_err(|e| EncodeError(e.to_string()))
}

/// Writes `{"column": value, ...}` with the columns in the requested order.
fn write_object(
    event: &AuditEvent,
    columns: &[Column],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.push(b'{');
    for (index, column) in columns.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_json(out, &column.name())?;
        out.push(b':');
        match column {
            Column::Id => write_json(out, &event.id)?,
            Column::OccurredAt => write_json(out, &rfc3339_micros::format(&event.occurred_at))?,
            Column::Tenant => write_json(out, &event.tenant)?,
            Column::RequestId => write_json(out, &event.request_id)?,
            Column::ActorId => write_json(out, &event.actor_id)?,
            Column::ActorEmail => write_json(out, &event.actor_email)?,
            Column::ActorName => write_json(out, &event.actor_name)?,
            Column::Category => write_json(out, &event.category)?,
            Column::Action => write_json(out, &event.action)?,
            Column::Outcome => write_json(out, &event.outcome)?,
            Column::Reason => write_json(out, &event.reason)?,
            Column::ResourceId => write_json(out, &event.resource_id)?,
            Column::ResourceName => write_json(out, &event.resource_name)?,
            Column::Method => write_json(out, &event.method)?,
            Column::Route => write_json(out, &event.route)?,
            Column::Path => write_json(out, &event.path)?,
            Column::Status => write_json(out, &event.status)?,
            Column::DurationMs => write_json(out, &event.duration_ms)?,
            Column::ClientIp => write_json(out, &event.client_ip)?,
            Column::UserAgent => write_json(out, &event.user_agent)?,
            Column::Attributes => write_json(out, &event.attributes)?,
        }
    }
    out.push(b'}');
    Ok(())
}

impl Encoder for JsonEncoder {
    fn begin(&mut self, out: &mut Vec<u8>) {
        if self.array {
            out.push(b'[');
        }
    }

    fn event(&mut self, event: &AuditEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.array {
            out.extend_from_slice(if self.first { b"\n" } else { b",\n" });
        }
        self.first = false;
        if self.all_columns {
            write_json(out, event)?;
        } else {
            write_object(event, &self.columns, out)?;
        }
        if !self.array {
            out.push(b'\n');
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.array {
            out.extend_from_slice(b"\n]\n");
        }
    }

    /// The array is left unclosed, so the document does not parse; NDJSON gets a last
    /// line `{"error":"export_failed","message":...}`.
    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        if !self.array {
            let line = serde_json::json!({"error": "export_failed", "message": message});
            let _ = serde_json::to_writer(&mut *out, &line);
            let _ = out.write_all(b"\n");
        }
    }
}
