//! JSON: one array streamed element by element, or NDJSON, one object per line. Each object
//! is written from the event's borrowed fields straight into the frame's buffer, exactly as
//! serde writes an [`AuditEvent`](audit_store::AuditEvent) (a test holds them equal).

use std::io::Write as _;

use audit_store::{EventView, rfc3339_micros};

use super::{Column, EncodeError, Encoder};

pub(crate) struct JsonEncoder {
    columns: Vec<Column>,
    /// Every column in contract order: the whole event, with its chain link, as its serde
    /// form has it.
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

/// A JSON string (escaped as serde_json escapes it).
fn string(out: &mut Vec<u8>, value: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn optional(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => string(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// Writes `{"column": value, ...}` with the columns in the requested order, and the chain
/// link last when `with_chain` (the event's serde form).
fn write_object(
    event: &EventView<'_>,
    columns: &[Column],
    with_chain: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.push(b'{');
    for (index, column) in columns.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(column.name().as_bytes());
        out.extend_from_slice(b"\":");
        match column {
            Column::Id => {
                let mut buffer = uuid::Uuid::encode_buffer();
                out.push(b'"');
                out.extend_from_slice(event.id.hyphenated().encode_lower(&mut buffer).as_bytes());
                out.push(b'"');
            }
            Column::OccurredAt => {
                // The timestamp's characters never need escaping.
                out.push(b'"');
                rfc3339_micros::write(&event.occurred_at, out);
                out.push(b'"');
            }
            Column::Tenant => optional(out, event.tenant),
            Column::RequestId => string(out, event.request_id),
            Column::ActorId => optional(out, event.actor_id),
            Column::ActorEmail => optional(out, event.actor_email),
            Column::ActorName => optional(out, event.actor_name),
            Column::Category => string(out, event.category),
            Column::Action => string(out, event.action),
            Column::Outcome => string(out, event.outcome),
            Column::Reason => optional(out, event.reason),
            Column::ResourceId => optional(out, event.resource_id),
            Column::ResourceName => optional(out, event.resource_name),
            Column::Method => string(out, event.method),
            Column::Route => string(out, event.route),
            Column::Path => string(out, event.path),
            Column::Status => {
                let _ = write!(out, "{}", event.status);
            }
            Column::DurationMs => serde_json::to_writer(&mut *out, &event.duration_ms)
                .map_err(|e| EncodeError(e.to_string()))?,
            Column::ClientIp => optional(out, event.client_ip),
            Column::UserAgent => optional(out, event.user_agent),
            Column::Attributes => event.attributes.write_json(out),
        }
    }
    if with_chain && let Some(link) = &event.chain {
        out.extend_from_slice(b",\"chain\":");
        serde_json::to_writer(&mut *out, link).map_err(|e| EncodeError(e.to_string()))?;
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

    fn event(&mut self, event: &EventView<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.array {
            out.extend_from_slice(if self.first { b"\n" } else { b",\n" });
        }
        self.first = false;
        write_object(event, &self.columns, self.all_columns, out)?;
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

#[cfg(test)]
mod tests {
    use audit_store::{Action, AuditEvent, ChainHash, ChainLink, ChainVersion, HttpFacts, Outcome};

    use super::*;

    fn events() -> Vec<AuditEvent> {
        let mut full = AuditEvent::builder("Dataset Rule", Action::Update)
            .http(HttpFacts::new("PUT", "/r/{id}", "/r/\"1\"", 200))
            .tenant("acme")
            .actor_id("u-1")
            .actor_email("a@acme.test")
            .actor_name("Ålice \u{1} \\ \"q\"")
            .outcome(Outcome::Deny)
            .denied("no\nway")
            .resource("1", "Churn ✓")
            .client_ip("10.0.0.1")
            .user_agent("curl/8")
            .duration_ms(0.1 + 0.2)
            .attribute("changes", serde_json::json!({"b": [1, 2.5e-9], "a": null}))
            .build();
        full.chain = Some(ChainLink {
            seq: 42,
            prev_hash: ChainHash::GENESIS,
            hash: ChainHash::GENESIS,
            version: ChainVersion::V2,
        });
        let mut v1 = full.clone();
        if let Some(link) = &mut v1.chain {
            link.version = ChainVersion::V1;
        }
        let bare = AuditEvent::builder("Plan", Action::Delete)
            .http(HttpFacts::new("DELETE", "/p/{id}", "/p/2", 204))
            .build();
        vec![full, v1, bare]
    }

    /// The whole-event object is byte for byte the event's serde JSON, chain link included.
    #[test]
    fn the_whole_event_is_its_serde_form() {
        for event in events() {
            let mut ours = Vec::new();
            JsonEncoder::lines(Column::ALL.to_vec())
                .event(&EventView::of(&event), &mut ours)
                .unwrap();
            let mut theirs = serde_json::to_vec(&event).unwrap();
            theirs.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
    }

    /// Chosen columns are written in the order chosen, without the chain link.
    #[test]
    fn chosen_columns_in_their_order() {
        let event = &events()[0];
        let mut out = Vec::new();
        JsonEncoder::lines(vec![Column::Status, Column::ActorName, Column::Id])
            .event(&EventView::of(event), &mut out)
            .unwrap();
        let expected = format!(
            "{{\"status\":200,\"actor_name\":{},\"id\":\"{}\"}}\n",
            serde_json::to_string(&event.actor_name).unwrap(),
            event.id
        );
        assert_eq!(String::from_utf8_lossy(&out), expected);
    }
}
