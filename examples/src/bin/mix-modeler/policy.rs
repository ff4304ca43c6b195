//! Who may see the activity log: the demo roles mapped onto the audit router's permissions.

use audit_api::{Access, AccessPolicy, Viewer};
use audit_store::TenantScope;
use http::request::Parts;

use crate::auth::signed_in_user;

/// Every signed-in user is a viewer of their own tenant only; the audit permissions come
/// from the user table. The router itself answers 401/403 and records the denial.
#[derive(Debug, Clone, Copy)]
pub struct DemoAccessPolicy;

#[async_trait::async_trait]
impl AccessPolicy for DemoAccessPolicy {
    async fn access(&self, request: &Parts) -> Access {
        match signed_in_user(&request.headers) {
            None => Access::Unauthenticated,
            Some(user) => Access::Viewer(
                Viewer::new(TenantScope::only([user.tenant]))
                    .id(user.login)
                    .email(user.email)
                    .name(user.name)
                    .can_view(user.audit_view)
                    .can_export(user.audit_export),
            ),
        }
    }
}
