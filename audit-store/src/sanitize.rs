//! Text the databases cannot hold.
//!
//! PostgreSQL rejects NUL in `text` and `jsonb`; a batch holding one would fail on every
//! retry and, since the recorder never drops a batch, stall the log. Both backends therefore
//! store NUL as U+FFFD (the replacement character), so the log reads the same everywhere and
//! the change is visible rather than silent truncation.

use std::borrow::Cow;

use serde_json::Value;

use crate::event::{Attributes, AuditEvent};

/// What a NUL character is stored as.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// The batch with every NUL replaced; borrowed unchanged in the common case of none.
pub(crate) fn without_nul(events: &[AuditEvent]) -> Cow<'_, [AuditEvent]> {
    if !events.iter().any(has_nul) {
        return Cow::Borrowed(events);
    }
    Cow::Owned(events.iter().cloned().map(replace_nul).collect())
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
        assert!(matches!(without_nul(&batch), Cow::Borrowed(_)));
        let dirty = AuditEvent::builder("Mo\0del", Action::Create)
            .http(HttpFacts::new("POST", "/m", "/m\0", 201))
            .resource_name("a\0b")
            .attribute("k\0", serde_json::json!({"x": ["\0"]}))
            .build();
        let fixed = without_nul(std::slice::from_ref(&dirty)).into_owned();
        assert_eq!(fixed[0].category, "Mo\u{FFFD}del");
        assert_eq!(fixed[0].path, "/m\u{FFFD}");
        assert_eq!(fixed[0].resource_name.as_deref(), Some("a\u{FFFD}b"));
        assert_eq!(fixed[0].attributes["k\u{FFFD}"]["x"][0], "\u{FFFD}");
        assert!(!has_nul(&fixed[0]));
    }
}
