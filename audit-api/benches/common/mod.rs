//! What the router's benches share (included by each as `mod common;`).

use audit_api::{Access, Viewer};
use audit_store::TenantScope;
use http::request::Parts;

/// The number in the environment variable `name`, or `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The benches' access policy: everyone is an auditor of every tenant who may export.
pub fn auditor(_: &Parts) -> std::future::Ready<Access> {
    std::future::ready(Access::Viewer(
        Viewer::new(TenantScope::All)
            .email("bench@ops.test")
            .can_view(true)
            .can_export(true),
    ))
}
