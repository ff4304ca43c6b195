//! `AuditContext`: how handlers and auth middleware add detail to the request's event.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use audit_store::{Action, Attributes};
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{Extensions, StatusCode};
use serde_json::Value;

use crate::actor::Actor;

/// What handlers and middleware said about the request; read by the layer after the response.
#[derive(Debug, Default, Clone)]
pub(crate) struct ContextData {
    pub(crate) actor: Actor,
    pub(crate) resource_id: Option<String>,
    pub(crate) resource_name: Option<String>,
    pub(crate) attributes: Attributes,
    pub(crate) denied: bool,
    pub(crate) reason: Option<String>,
    pub(crate) category: Option<String>,
    pub(crate) action: Option<Action>,
    pub(crate) skip: bool,
}

/// A shared handle on the event being captured for the current request.
///
/// The audit layer puts one in the request's extensions before calling the inner service,
/// and reads it after the response, so whatever the host's auth middleware (added with
/// `route_layer`, inside the audit layer) sets is kept even when it rejects the request
/// before any handler runs. Use it as an extractor in handlers and `from_fn` middleware, or
/// take it from the extensions with [`AuditContext::from_extensions`].
///
/// ```
/// use audit_layer::{Actor, AuditContext};
/// use axum::Json;
/// use serde_json::{json, Value};
///
/// async fn rename_model(audit: AuditContext, Json(body): Json<Value>) -> Json<Value> {
///     audit.set_resource("7", "Churn model");
///     audit.record_change("name", "Churn model", body["name"].clone());
///     audit.set_attribute("source", "api");
///     Json(json!({"id": "7"}))
/// }
///
/// async fn require_login(
///     audit: AuditContext,
///     request: axum::extract::Request,
///     next: axum::middleware::Next,
/// ) -> axum::response::Response {
///     audit.set_actor(Actor::id("u-1").email("alice@acme.test").tenant("acme"));
///     next.run(request).await
/// }
/// ```
///
/// Without the audit layer the extractor rejects the request with a 500 naming the
/// misconfiguration; take `Option<AuditContext>` in code that also runs unaudited.
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    data: Arc<Mutex<ContextData>>,
}

impl AuditContext {
    /// A context not attached to any request (useful in tests of handlers).
    pub fn detached() -> Self {
        Self::default()
    }

    /// The context the audit layer attached to a request's extensions. On a request the layer
    /// saw but does not record (a `GET` without a rule) this is a detached context, so handlers
    /// can use it unconditionally.
    pub fn from_extensions(extensions: &Extensions) -> Option<Self> {
        match extensions.get::<Self>() {
            Some(context) => Some(context.clone()),
            None => extensions.get::<NotAudited>().map(|_| Self::detached()),
        }
    }

    fn data(&self) -> MutexGuard<'_, ContextData> {
        // Setters only assign fields, so a lock poisoned by a panicking handler still holds
        // consistent data, which the layer needs to record that very request.
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn take(&self) -> ContextData {
        std::mem::take(&mut *self.data())
    }

    /// Sets who acted (replacing what was known), including the tenant when given.
    pub fn set_actor(&self, actor: Actor) {
        let mut data = self.data();
        let tenant = actor.tenant.clone().or_else(|| data.actor.tenant.take());
        data.actor = Actor { tenant, ..actor };
    }
    /// Sets the actor's identifier.
    pub fn set_actor_id(&self, id: impl Into<String>) {
        self.data().actor.id = Some(id.into());
    }
    /// Sets the actor's e-mail address.
    pub fn set_actor_email(&self, email: impl Into<String>) {
        self.data().actor.email = Some(email.into());
    }
    /// Sets the actor's display name.
    pub fn set_actor_name(&self, name: impl Into<String>) {
        self.data().actor.name = Some(name.into());
    }
    /// Sets the tenant the action belongs to.
    pub fn set_tenant(&self, tenant: impl Into<String>) {
        self.data().actor.tenant = Some(tenant.into());
    }
    /// Sets the resource acted on.
    pub fn set_resource(&self, id: impl Into<String>, name: impl Into<String>) {
        let mut data = self.data();
        data.resource_id = Some(id.into());
        data.resource_name = Some(name.into());
    }
    /// Sets the resource id (overriding the one taken from the path).
    pub fn set_resource_id(&self, id: impl Into<String>) {
        self.data().resource_id = Some(id.into());
    }
    /// Sets the resource's human-readable name.
    pub fn set_resource_name(&self, name: impl Into<String>) {
        self.data().resource_name = Some(name.into());
    }
    /// Adds one attribute (secret-looking keys are redacted when stored).
    pub fn set_attribute(&self, key: impl Into<String>, value: impl Into<Value>) {
        self.data().attributes.insert(key.into(), value.into());
    }
    /// Records a field change, stored as `attributes.changes.<field> = [before, after]`.
    pub fn record_change(
        &self,
        field: impl Into<String>,
        before: impl Into<Value>,
        after: impl Into<Value>,
    ) {
        let mut data = self.data();
        audit_store::record_change(&mut data.attributes, field, before, after);
    }
    /// Marks the request denied, whatever its status, with the reason.
    pub fn deny(&self, reason: impl Into<String>) {
        let mut data = self.data();
        data.denied = true;
        data.reason = Some(reason.into());
    }
    /// Gives the reason of a denial the status will tell (401/403) without forcing one.
    pub fn set_reason(&self, reason: impl Into<String>) {
        self.data().reason = Some(reason.into());
    }
    /// Overrides the category the rules chose.
    pub fn set_category(&self, category: impl Into<String>) {
        self.data().category = Some(category.into());
    }
    /// Overrides the action the rules chose.
    pub fn set_action(&self, action: Action) {
        self.data().action = Some(action);
    }
    /// Records nothing for this request (for example a dry run).
    pub fn skip(&self) {
        self.data().skip = true;
    }
    /// The actor known so far.
    pub fn actor(&self) -> Actor {
        self.data().actor.clone()
    }
}

/// Marks a request the audit layer saw and decided not to record. A zero-sized marker costs
/// no allocation, unlike a context nobody will read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotAudited;

/// The [`AuditContext`] extractor was used on a route the audit layer does not wrap.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("AuditContext used without the audit layer: add AuditLayer with Router::layer")]
pub struct MissingAuditLayer;

impl IntoResponse for MissingAuditLayer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditContext {
    type Rejection = MissingAuditLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_extensions(&parts.extensions).ok_or(MissingAuditLayer)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuditContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(Self::from_extensions(&parts.extensions))
    }
}
