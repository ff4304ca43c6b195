//! The access-policy hook: the host says who the viewer is and what they may see.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use async_trait::async_trait;
use audit_store::TenantScope;
use http::request::Parts;

/// What a route of the audit router needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Browse the log: the page, `/events`, `/events/{id}`, `/facets`, `/openapi.json`.
    View,
    /// Download it: `/export`.
    Export,
}

impl Permission {
    /// `view` or `export`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::View => "view",
            Permission::Export => "export",
        }
    }
}

/// A signed-in person looking at the audit log, as named by the host's [`AccessPolicy`].
///
/// ```
/// use audit_api::{Permission, Viewer};
/// use audit_store::TenantScope;
///
/// let erin = Viewer::new(TenantScope::only(["acme"]))
///     .email("erin@acme.test")
///     .can_view(true);
/// assert!(erin.holds(Permission::View));
/// assert!(!erin.holds(Permission::Export));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// Stable identifier, recorded as `actor_id` of the events the router writes.
    pub id: Option<String>,
    /// E-mail address, recorded as `actor_email`.
    pub email: Option<String>,
    /// Display name, recorded as `actor_name`.
    pub name: Option<String>,
    /// Holds the `view` permission.
    pub can_view: bool,
    /// Holds the `export` permission.
    pub can_export: bool,
    /// The tenants whose events the viewer may see. Events without a tenant are visible
    /// only with [`TenantScope::All`].
    pub tenants: TenantScope,
}

impl Viewer {
    /// A viewer of `tenants` holding no permission yet.
    pub fn new(tenants: TenantScope) -> Self {
        Viewer {
            id: None,
            email: None,
            name: None,
            can_view: false,
            can_export: false,
            tenants,
        }
    }
    /// Sets the identifier.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
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
    /// Grants or withholds the `view` permission.
    pub fn can_view(mut self, granted: bool) -> Self {
        self.can_view = granted;
        self
    }
    /// Grants or withholds the `export` permission.
    pub fn can_export(mut self, granted: bool) -> Self {
        self.can_export = granted;
        self
    }
    /// Whether the viewer holds `permission`.
    pub fn holds(&self, permission: Permission) -> bool {
        match permission {
            Permission::View => self.can_view,
            Permission::Export => self.can_export,
        }
    }
    /// The one tenant the viewer is limited to, if exactly one.
    pub(crate) fn single_tenant(&self) -> Option<&str> {
        match &self.tenants {
            TenantScope::Only(set) if set.len() == 1 => set.iter().next().map(String::as_str),
            _ => None,
        }
    }
}

/// The policy's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Nobody is signed in: every route answers 401.
    Unauthenticated,
    /// Someone is signed in; routes needing a permission they lack answer 403.
    Viewer(Viewer),
}

impl From<Viewer> for Access {
    fn from(viewer: Viewer) -> Self {
        Access::Viewer(viewer)
    }
}

/// Decides, from the request head, who is looking at the audit log and what they may do.
///
/// Implement it on a type, or pass a closure `Fn(&Parts) -> impl Future<Output = Access>`.
/// The closure's future must not borrow the request: copy what it needs first.
///
/// ```
/// use audit_api::{Access, AccessPolicy, Viewer};
/// use audit_store::TenantScope;
/// use http::request::Parts;
///
/// struct HeaderPolicy;
///
/// #[async_trait::async_trait]
/// impl AccessPolicy for HeaderPolicy {
///     async fn access(&self, request: &Parts) -> Access {
///         match request.headers.get("x-user").and_then(|v| v.to_str().ok()) {
///             Some("alice") => Access::Viewer(
///                 Viewer::new(TenantScope::only(["acme"])).email("alice@acme.test")
///                     .can_view(true).can_export(true),
///             ),
///             Some(_) => Access::Viewer(Viewer::new(TenantScope::only(["acme"]))),
///             None => Access::Unauthenticated,
///         }
///     }
/// }
///
/// // The same as a closure:
/// let closure = |request: &Parts| {
///     let signed_in = request.headers.contains_key("x-user");
///     async move {
///         if signed_in {
///             Access::Viewer(Viewer::new(TenantScope::All).can_view(true))
///         } else {
///             Access::Unauthenticated
///         }
///     }
/// };
/// fn takes_policy(_: impl AccessPolicy) {}
/// takes_policy(HeaderPolicy);
/// takes_policy(closure);
/// ```
#[async_trait]
pub trait AccessPolicy: Send + Sync + 'static {
    /// The access the request's sender has.
    async fn access(&self, request: &Parts) -> Access;
}

#[async_trait]
impl<F, Fut> AccessPolicy for F
where
    F: Fn(&Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Access> + Send,
{
    async fn access(&self, request: &Parts) -> Access {
        (self)(request).await
    }
}

/// A policy that reuses the host's own authentication: its middleware has already found the
/// signed-in user and stored them in the request extensions (`request.extensions_mut().insert(user)`),
/// and this policy maps that value to a [`Viewer`] (or any [`Access`]). A request without
/// the extension is [`Access::Unauthenticated`].
///
/// Nest the audit router *behind* that middleware, so the extension is there when the router
/// asks. A signed-in user who may not read the log is a viewer without permissions
/// (`Viewer::new(scope)`), answered 403; name them with [`Viewer::id`] so the log's record
/// of that denial says who it was.
///
/// ```
/// use audit_api::{AccessPolicy, ExtensionPolicy, Viewer};
/// use audit_store::TenantScope;
///
/// /// What the host's auth middleware stores for a signed-in user.
/// #[derive(Clone)]
/// struct User {
///     id: String,
///     tenant: String,
///     is_auditor: bool,
/// }
///
/// let policy = ExtensionPolicy::new(|user: &User| {
///     Viewer::new(TenantScope::only([&user.tenant]))
///         .id(&user.id)
///         .can_view(user.is_auditor)
///         .can_export(user.is_auditor)
/// });
/// fn takes_policy(_: impl AccessPolicy) {}
/// takes_policy(policy);
/// ```
pub struct ExtensionPolicy<U, F> {
    to_access: F,
    user: PhantomData<fn(&U)>,
}

impl<U, F> ExtensionPolicy<U, F> {
    /// A policy calling `to_access` with the `U` the host's middleware stored in the request
    /// extensions; `to_access` returns a [`Viewer`] or an [`Access`].
    pub fn new<A>(to_access: F) -> Self
    where
        F: Fn(&U) -> A,
        A: Into<Access>,
    {
        ExtensionPolicy {
            to_access,
            user: PhantomData,
        }
    }
}

impl<U, F: Clone> Clone for ExtensionPolicy<U, F> {
    fn clone(&self) -> Self {
        ExtensionPolicy {
            to_access: self.to_access.clone(),
            user: PhantomData,
        }
    }
}

impl<U, F> fmt::Debug for ExtensionPolicy<U, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtensionPolicy")
            .field("extension", &std::any::type_name::<U>())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<U, F, A> AccessPolicy for ExtensionPolicy<U, F>
where
    U: Send + Sync + 'static,
    F: Fn(&U) -> A + Send + Sync + 'static,
    A: Into<Access>,
{
    async fn access(&self, request: &Parts) -> Access {
        match request.extensions.get::<U>() {
            Some(user) => (self.to_access)(user).into(),
            None => Access::Unauthenticated,
        }
    }
}
