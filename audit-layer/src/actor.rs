//! Who acted, and how a host that does not touch its handlers can tell the layer.

use http::{Extensions, HeaderMap, Method, Uri};

/// The person or system that acted, and optionally the tenant they acted in.
///
/// ```
/// use audit_layer::Actor;
/// let alice = Actor::id("u-1").email("alice@acme.test").name("Alice").tenant("acme");
/// assert_eq!(alice.email.as_deref(), Some("alice@acme.test"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Actor {
    /// Stable identifier.
    pub id: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// The tenant (workspace, organisation) the action belongs to.
    pub tenant: Option<String>,
}

impl Actor {
    /// An actor known by its identifier.
    pub fn id(id: impl Into<String>) -> Self {
        Self {
            id: Some(id.into()),
            ..Self::default()
        }
    }
    /// An actor with nothing known yet.
    pub fn unknown() -> Self {
        Self::default()
    }
    /// Sets the e-mail address.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }
    /// Sets the display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }
}

/// The parts of a request an [`ActorResolver`] may look at (never the body).
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers, including `Authorization` and `Cookie` (which are never stored).
    pub headers: &'a HeaderMap,
    /// The extensions set by layers outside the audit layer.
    pub extensions: &'a Extensions,
}

/// Resolves the actor from the request before it runs, for hosts that do not want to touch
/// their handlers or auth middleware. Whatever an [`AuditContext`](crate::AuditContext) sets
/// later wins over it.
///
/// Implemented for closures:
///
/// ```
/// use audit_layer::{Actor, ActorResolver, RequestHead};
///
/// let from_header = |request: &RequestHead<'_>| {
///     let user = request.headers.get("x-user")?.to_str().ok()?;
///     Some(Actor::id(user))
/// };
/// # fn takes(_: impl ActorResolver) {}
/// takes(from_header);
/// ```
pub trait ActorResolver: Send + Sync + 'static {
    /// The actor of `request`, if it can be told from the request alone.
    fn resolve(&self, request: &RequestHead<'_>) -> Option<Actor>;
}

impl<F> ActorResolver for F
where
    F: Fn(&RequestHead<'_>) -> Option<Actor> + Send + Sync + 'static,
{
    fn resolve(&self, request: &RequestHead<'_>) -> Option<Actor> {
        self(request)
    }
}
