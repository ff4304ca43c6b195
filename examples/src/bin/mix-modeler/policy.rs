//! Who may see the activity log: the demo roles mapped onto the audit router's permissions.

use audit_api::{Access, AccessPolicy, Viewer};
use audit_store::TenantScope;
use http::request::Parts;

use crate::auth::signed_in_user;

/// Every signed-in user is a viewer of their own tenant only (a platform auditor of all of
/// them); the audit permissions come
/// from the user table. The router itself answers 401/403 and records the denial.
#[derive(Debug, Clone, Copy)]
pub struct DemoAccessPolicy;

#[async_trait::async_trait]
impl AccessPolicy for DemoAccessPolicy {
    async fn access(&self, request: &Parts) -> Access {
        match signed_in_user(&request.headers) {
            None => Access::Unauthenticated,
            Some(user) => Access::Viewer(
                // A platform auditor (no tenant) sees every tenant, and the events that
                // have none, such as unauthenticated attempts.
                Viewer::new(match user.tenant {
                    Some(tenant) => TenantScope::only([tenant]),
                    None => TenantScope::All,
                })
                .id(user.login)
                .email(user.email)
                .name(user.name)
                .can_view(user.audit_view)
                .can_export(user.audit_export),
            ),
        }
    }
}
