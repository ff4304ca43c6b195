//! A host documenting its own API with utoipa nests the audit router's document in one call.

use std::collections::BTreeSet;

use serde_json::Value;
use utoipa::OpenApi;

#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only its schema is used
struct Model {
    id: String,
    name: String,
}

/// The host's model list.
#[utoipa::path(get, path = "/api/models", responses((status = 200, body = Vec<Model>)))]
#[allow(dead_code)] // only its path item is used
async fn list_models() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "Mix Modeler", version = "1.0.0"),
    servers((url = "https://mix.example.test")),
    paths(list_models),
    components(schemas(Model))
)]
struct HostApi;

/// Every `$ref` in `value`.
fn references(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => {
                        found.insert(target.clone());
                    }
                    _ => references(item, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

#[test]
fn the_audit_document_nests_into_the_hosts() {
    let merged = HostApi::openapi().nest("/admin/audit", axum_audit::openapi());
    let document: Value = serde_json::from_str(&merged.to_json().unwrap()).unwrap();

    // The host's own document is intact: its title, server, path and schema.
    assert_eq!(document["info"]["title"], "Mix Modeler");
    assert_eq!(
        document["servers"],
        serde_json::json!([{"url": "https://mix.example.test"}])
    );
    assert!(document["paths"]["/api/models"]["get"].is_object());
    assert!(document["components"]["schemas"]["Model"].is_object());

    // The audit routes under the prefix, the page at the trailing slash.
    let paths: BTreeSet<&str> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/admin/audit/",
        "/admin/audit/events",
        "/admin/audit/events/{id}",
        "/admin/audit/facets",
        "/admin/audit/export",
        "/admin/audit/openapi.json",
    ] {
        assert!(paths.contains(path), "{path} missing from {paths:?}");
    }
    assert_eq!(
        document["paths"]["/admin/audit/events"]["get"]["tags"],
        serde_json::json!(["audit log"])
    );

    // Every reference resolves, to the host's schemas or the audit log's own, which are
    // named apart so they cannot collide with a host's `Event` or `Error`.
    let mut targets = BTreeSet::new();
    references(&document, &mut targets);
    assert!(targets.contains("#/components/schemas/AuditEvent"));
    for target in &targets {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {target}"));
        assert!(
            document["components"]["schemas"][name].is_object(),
            "{target} does not resolve"
        );
    }
    let audit_schemas: Vec<&String> = document["components"]["schemas"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|name| *name != "Model")
        .collect();
    assert!(
        audit_schemas.iter().all(|name| name.starts_with("Audit")),
        "{audit_schemas:?}"
    );
}
