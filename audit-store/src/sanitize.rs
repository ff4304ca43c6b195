//! Text the databases cannot hold.
//!
//! A batch the database refuses for its content fails on every retry and, since the recorder
//! never drops a batch, would stall the whole log. Two kinds of content do that:
//!
//! * NUL: PostgreSQL rejects it in `text` and `jsonb`. Both backends store NUL as U+FFFD (the
//!   replacement character), so the log reads the same everywhere and the change is visible.
//! * Very long values in indexed columns: a PostgreSQL B-tree refuses entries over about
//!   2,700 bytes. Values of the indexed columns (`tenant`, `request_id`, `actor_id`,
//!   `actor_email`, `category`, `resource_id`) are cut to [`MAX_INDEXED_TEXT`] bytes on both
//!   backends, and the event's attribute [`TRUNCATED_ATTRIBUTE`] names the fields cut.
//! * A duration that is not a finite number (NaN, infinity; only events a host builds itself
//!   can have one): SQLite stores NaN as NULL, which the column refuses, and JSON has no such
//!   number. It is stored as 0, and [`REPLACED_ATTRIBUTE`] names the field.

use std::borrow::Cow;

use serde_json::Value;

use crate::event::{Attributes, AuditEvent};

/// What a NUL character is stored as.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// The longest value, in bytes, kept in a column with a B-tree index.
pub const MAX_INDEXED_TEXT: usize = 1024;

/// The attribute listing the fields cut to [`MAX_INDEXED_TEXT`].
pub const TRUNCATED_ATTRIBUTE: &str = "_truncated";

/// The attribute listing the fields whose value no backend can store, stored as a neutral
/// value instead (`duration_ms` that is not finite: 0).
pub const REPLACED_ATTRIBUTE: &str = "_replaced";

/// The batch as the databases can store it; borrowed unchanged in the common case.
pub(crate) fn storable(events: &[AuditEvent]) -> Cow<'_, [AuditEvent]> {
    if !events
        .iter()
        .any(|e| has_nul(e) || has_overlong(e) || !e.duration_ms.is_finite())
    {
        return Cow::Borrowed(events);
    }
    Cow::Owned(
        events
            .iter()
            .cloned()
            .map(|e| replace_invalid(truncate_indexed(replace_nul(e))))
            .collect(),
    )
}

fn replace_invalid(mut event: AuditEvent) -> AuditEvent {
    if !event.duration_ms.is_finite() {
        event.duration_ms = 0.0;
        event.attributes.insert(
            REPLACED_ATTRIBUTE.to_owned(),
            Value::Array(vec![Value::from("duration_ms")]),
        );
    }
    event
}

fn has_overlong(event: &AuditEvent) -> bool {
    [
        event.tenant.as_deref(),
        Some(event.request_id.as_str()),
        event.actor_id.as_deref(),
        event.actor_email.as_deref(),
        Some(event.category.as_str()),
        event.resource_id.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|text| text.len() > MAX_INDEXED_TEXT)
}

fn cut(text: &mut String) -> bool {
    if text.len() <= MAX_INDEXED_TEXT {
        return false;
    }
    let mut end = MAX_INDEXED_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

fn truncate_indexed(mut event: AuditEvent) -> AuditEvent {
    let mut cut_fields = Vec::new();
    for (name, text) in [
        ("tenant", event.tenant.as_mut()),
        ("request_id", Some(&mut event.request_id)),
        ("actor_id", event.actor_id.as_mut()),
        ("actor_email", event.actor_email.as_mut()),
        ("category", Some(&mut event.category)),
        ("resource_id", event.resource_id.as_mut()),
    ] {
        if text.is_some_and(cut) {
            cut_fields.push(Value::from(name));
        }
    }
    if !cut_fields.is_empty() {
        event
            .attributes
            .insert(TRUNCATED_ATTRIBUTE.to_owned(), Value::Array(cut_fields));
    }
    event
}

fn text_has_nul(text: &str) -> bool {
    text.as_bytes().contains(&0)
}

fn value_has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => text_has_nul(s),
        Value::Array(items) => items.iter().any(value_has_nul),
        Value::Object(map) => map_has_nul(map),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn map_has_nul(map: &Attributes) -> bool {
    map.iter().any(|(k, v)| text_has_nul(k) || value_has_nul(v))
}

fn texts(event: &AuditEvent) -> [Option<&str>; 14] {
    [
        event.tenant.as_deref(),
        Some(&event.request_id),
        event.actor_id.as_deref(),
        event.actor_email.as_deref(),
        event.actor_name.as_deref(),
        Some(&event.category),
        event.reason.as_deref(),
        event.resource_id.as_deref(),
        event.resource_name.as_deref(),
        Some(&event.method),
        Some(&event.route),
        Some(&event.path),
        event.client_ip.as_deref(),
        event.user_agent.as_deref(),
    ]
}

fn has_nul(event: &AuditEvent) -> bool {
    texts(event).into_iter().flatten().any(text_has_nul) || map_has_nul(&event.attributes)
}

fn fix(text: &mut String) {
    if text_has_nul(text) {
        *text = text.replace('\0', &NUL_REPLACEMENT.to_string());
    }
}

fn fix_opt(text: &mut Option<String>) {
    if let Some(text) = text {
        fix(text);
    }
}

fn fix_value(value: &mut Value) {
    match value {
        Value::String(s) => fix(s),
        Value::Array(items) => items.iter_mut().for_each(fix_value),
        Value::Object(map) => fix_map(map),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn fix_map(map: &mut Attributes) {
    if !map_has_nul(map) {
        return;
    }
    *map = std::mem::take(map)
        .into_iter()
        .map(|(mut key, mut value)| {
            fix(&mut key);
            fix_value(&mut value);
            (key, value)
        })
        .collect();
}

fn replace_nul(mut event: AuditEvent) -> AuditEvent {
    for text in [
        &mut event.tenant,
        &mut event.actor_id,
        &mut event.actor_email,
        &mut event.actor_name,
        &mut event.reason,
        &mut event.resource_id,
        &mut event.resource_name,
        &mut event.client_ip,
        &mut event.user_agent,
    ] {
        fix_opt(text);
    }
    for text in [
        &mut event.request_id,
        &mut event.category,
        &mut event.method,
        &mut event.route,
        &mut event.path,
    ] {
        fix(text);
    }
    // Actions are validated snake_case and cannot hold NUL.
    fix_map(&mut event.attributes);
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, HttpFacts};

    #[test]
    fn replaces_nul_everywhere_and_borrows_clean_batches() {
        let clean = AuditEvent::builder("Model", Action::Create)
            .http(HttpFacts::new("POST", "/m", "/m", 201))
            .build();
        let batch = [clean.clone()];
        assert!(matches!(storable(&batch), Cow::Borrowed(_)));
        let dirty = AuditEvent::builder("Mo\0del", Action::Create)
            .http(HttpFacts::new("POST", "/m", "/m\0", 201))
            .resource_name("a\0b")
            .attribute("k\0", serde_json::json!({"x": ["\0"]}))
            .build();
        let fixed = storable(std::slice::from_ref(&dirty)).into_owned();
        assert_eq!(fixed[0].category, "Mo\u{FFFD}del");
        assert_eq!(fixed[0].path, "/m\u{FFFD}");
        assert_eq!(fixed[0].resource_name.as_deref(), Some("a\u{FFFD}b"));
        assert_eq!(fixed[0].attributes["k\u{FFFD}"]["x"][0], "\u{FFFD}");
        assert!(!has_nul(&fixed[0]));
    }

    #[test]
    fn a_duration_that_is_not_a_number_is_stored_as_zero_and_marked() {
        let mut event = AuditEvent::builder("Model", Action::Create)
            .http(HttpFacts::new("POST", "/m", "/m", 201))
            .build();
        event.duration_ms = f64::NAN;
        let fixed = storable(std::slice::from_ref(&event)).into_owned();
        assert_eq!(fixed[0].duration_ms, 0.0);
        assert_eq!(
            fixed[0].attributes[REPLACED_ATTRIBUTE],
            serde_json::json!(["duration_ms"])
        );
    }

    #[test]
    fn cuts_long_indexed_values_on_a_char_boundary_and_says_so() {
        let long = "é".repeat(MAX_INDEXED_TEXT); // two bytes each
        let event = AuditEvent::builder(long.clone(), Action::Create)
            .http(HttpFacts::new("POST", "/m", "/m", 201))
            .actor_email(long.clone())
            .resource_name(long.clone())
            .build();
        let fixed = storable(std::slice::from_ref(&event)).into_owned();
        assert_eq!(fixed[0].category.len(), MAX_INDEXED_TEXT);
        assert_eq!(
            fixed[0].actor_email.as_deref().map(str::len),
            Some(MAX_INDEXED_TEXT)
        );
        // Not indexed by a B-tree: kept whole.
        assert_eq!(fixed[0].resource_name.as_deref(), Some(long.as_str()));
        assert_eq!(
            fixed[0].attributes[TRUNCATED_ATTRIBUTE],
            serde_json::json!(["actor_email", "category"])
        );
    }
}
