//! The event under construction for one audited request.

use std::time::Instant;

use audit_store::{AuditEvent, Outcome, Reservation};
use audit_store::{Delivery, truncate_to_micros, uuid_v7_at};
use chrono::Utc;
use http::header::LOCATION;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::actor::Actor;
use crate::classify::Classification;
use crate::context::AuditContext;
use crate::layer::LayerConfig;

/// How the request ended.
pub(crate) enum Ending<'a> {
    /// The inner service produced a response.
    Response {
        status: StatusCode,
        headers: &'a HeaderMap,
    },
    /// The inner service returned an error instead of a response.
    Failed,
    /// The inner service panicked and nothing caught it.
    Panicked,
    /// The response future was dropped before completion (client disconnected, timeout).
    Abandoned,
}

/// Facts known when the request arrives; the rest comes from the [`AuditContext`] and the
/// response.
pub(crate) struct Capture {
    pub(crate) reservation: Option<Reservation>,
    pub(crate) context: AuditContext,
    pub(crate) started: Instant,
    pub(crate) event: AuditEvent,
    pub(crate) resolved: Option<Actor>,
    pub(crate) path_resource_id: Option<String>,
}

impl Capture {
    /// Starts an event stamped now, with a fresh UUIDv7 `id`.
    pub(crate) fn start(
        classification: Classification,
        context: AuditContext,
        method: &str,
        route: &str,
        path: &str,
    ) -> Box<Self> {
        let occurred_at = truncate_to_micros(Utc::now());
        let id = uuid_v7_at(occurred_at);
        Box::new(Self {
            reservation: None,
            context,
            started: Instant::now(),
            event: AuditEvent {
                id,
                occurred_at,
                tenant: None,
                request_id: String::new(),
                actor_id: None,
                actor_email: None,
                actor_name: None,
                category: classification.category,
                action: classification.action,
                outcome: Outcome::Allow,
                reason: None,
                resource_id: None,
                resource_name: None,
                method: method.to_owned(),
                route: route.to_owned(),
                path: path.to_owned(),
                status: 0,
                duration_ms: 0.0,
                client_ip: None,
                user_agent: None,
                attributes: Default::default(),
                chain: None,
            },
            resolved: None,
            path_resource_id: classification.resource_id,
        })
    }

    /// Completes the event and queues it in the reserved slot. `None` when nothing is
    /// recorded: no reservation (overloaded under the proceed policy, or refused) or the
    /// handler asked to skip.
    pub(crate) fn finish(
        self: Box<Self>,
        ending: Ending<'_>,
        config: &LayerConfig,
    ) -> Option<Delivery> {
        let mut this = *self;
        let data = this.context.take();
        let reservation = this.reservation.take()?;
        if data.skip {
            return None;
        }
        let mut event = this.event;
        let (status, location) = match ending {
            Ending::Response { status, headers } => (status, headers.get(LOCATION)),
            Ending::Failed => {
                event
                    .attributes
                    .insert("service_error".into(), Value::Bool(true));
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            }
            Ending::Panicked => {
                event
                    .attributes
                    .insert("panicked".into(), Value::Bool(true));
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            }
            Ending::Abandoned => {
                event
                    .attributes
                    .insert("client_disconnected".into(), Value::Bool(true));
                // nginx's "client closed request": the handler may or may not have finished.
                (
                    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                    None,
                )
            }
        };
        event.status = status.as_u16();
        event.duration_ms = this.started.elapsed().as_secs_f64() * 1000.0;

        let resolved = this.resolved.unwrap_or_default();
        let actor = data.actor;
        event.actor_id = actor.id.or(resolved.id);
        event.actor_email = actor.email.or(resolved.email);
        event.actor_name = actor.name.or(resolved.name);
        event.tenant = actor.tenant.or(resolved.tenant);

        if let Some(category) = data.category {
            event.category = category;
        }
        if let Some(action) = data.action {
            event.action = action;
        }
        let status_denial = match status {
            StatusCode::UNAUTHORIZED => Some("unauthenticated"),
            StatusCode::FORBIDDEN => Some("forbidden"),
            _ => None,
        };
        if data.denied || status_denial.is_some() {
            event.outcome = Outcome::Deny;
            event.reason = data.reason.or_else(|| status_denial.map(str::to_owned));
        }

        event.resource_id = data
            .resource_id
            .or(this.path_resource_id)
            .or_else(|| created_id(status, location));
        event.resource_name = data.resource_name;

        let mut attributes = data.attributes;
        attributes.append(&mut event.attributes);
        config.redactor.redact(&mut attributes);
        event.attributes = attributes;

        Some(reservation.submit(event))
    }
}

/// The id of a created resource from the last segment of a 201's `Location` header.
fn created_id(status: StatusCode, location: Option<&http::HeaderValue>) -> Option<String> {
    if status != StatusCode::CREATED {
        return None;
    }
    let location = location?.to_str().ok()?;
    let path = location.split(['?', '#']).next()?;
    path.rsplit('/')
        .find(|segment| !segment.is_empty())
        .map(str::to_owned)
}

/// At most `max` bytes of `text`, cut on a character boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_utf8("abc", 10), "abc");
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("aé", 3), "aé");
    }

    #[test]
    fn created_ids() {
        let value = http::HeaderValue::from_static("/api/models/42?x=1");
        assert_eq!(
            created_id(StatusCode::CREATED, Some(&value)).as_deref(),
            Some("42")
        );
        assert_eq!(created_id(StatusCode::OK, Some(&value)), None);
    }
}
