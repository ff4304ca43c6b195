//! The HTTP API, the audit layer's rules, and how the pieces are put together.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::middleware::from_fn;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use axum::{Extension, Json, Router};
use axum_audit::store::InvalidName;
use axum_audit::{Action, Audit, AuditContext, AuditLayer};
use http::header::{CONTENT_DISPOSITION, LOCATION};
use http::{HeaderValue, Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::auth::{self, USERS, User};
use crate::policy::DemoAccessPolicy;
use crate::resources::{Item, Kind, Resources};

/// Where the audit router is mounted.
pub const AUDIT_LOG_PREFIX: &str = "/admin/audit";

/// The longest resource name accepted.
const MAX_NAME_LEN: usize = 200;

/// The whole app: the API behind the host's auth, the sign-in pages, and the activity log,
/// all inside the audit layer.
pub fn app(audit_log: &Audit) -> Result<Router, InvalidName> {
    let api = api_routes()
        // The host's auth runs inside the audit layer (added last, below), so the requests
        // it rejects are still recorded, as denials, with the actor it identified.
        .route_layer(from_fn(auth::require_user))
        .with_state(Resources::default());
    // Exports and denied views of the log go through the same recorder as everything else.
    let audit_router = audit_log
        .audit_router(DemoAccessPolicy)
        .sign_in_url("/login")
        .mount(AUDIT_LOG_PREFIX);
    let audit = audit_layer(audit_log.layer())?;
    for (method, path) in api_route_list() {
        // `RUST_LOG=debug` lists what is audited, handy when adding a route.
        tracing::debug!(%method, path, audited = audit.is_audited(&method, &path), "route");
    }
    Ok(Router::new()
        .route("/", get(index))
        .route("/login", get(auth::login))
        .route("/logout", get(auth::logout))
        .merge(api)
        .merge(audit_router)
        .layer(audit))
}

/// One route of the API.
struct Endpoint {
    method: Method,
    path: String,
    handler: MethodRouter<Resources>,
}

fn endpoint(method: Method, path: impl Into<String>, handler: MethodRouter<Resources>) -> Endpoint {
    Endpoint {
        method,
        path: path.into(),
        handler,
    }
}

/// Every API route; the router and the coverage test are both built from this list.
fn endpoints() -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for kind in Kind::CRUD.into_iter().chain([Kind::Plan]) {
        let kinded = Extension(kind);
        let collection = kind.collection_path();
        let item = kind.item_path();
        endpoints.push(endpoint(Method::GET, collection, get(list).layer(kinded)));
        endpoints.push(endpoint(
            Method::POST,
            collection,
            post(create).layer(kinded),
        ));
        endpoints.push(endpoint(Method::GET, &item, get(show).layer(kinded)));
        endpoints.push(endpoint(Method::PUT, &item, put(update).layer(kinded)));
        if kind != Kind::Plan {
            endpoints.push(endpoint(
                Method::DELETE,
                &item,
                axum::routing::delete(remove).layer(kinded),
            ));
        }
    }
    endpoints.extend([
        endpoint(Method::POST, "/api/models/{id}/train", post(train_model)),
        endpoint(Method::POST, "/api/models/{id}/clone", post(clone_model)),
        endpoint(
            Method::POST,
            "/api/models/{id}/rescore",
            post(rescore_model),
        ),
        endpoint(
            Method::GET,
            "/api/models/{id}/metadata",
            get(model_metadata),
        ),
        endpoint(Method::PUT, "/api/plans/{id}/model", put(change_plan_model)),
        endpoint(
            Method::POST,
            "/api/harmonization/sync",
            post(sync_harmonization),
        ),
    ]);
    endpoints
}

fn api_routes() -> Router<Resources> {
    endpoints()
        .into_iter()
        // Two calls for one path merge their methods.
        .fold(Router::new(), |router, endpoint| {
            router.route(&endpoint.path, endpoint.handler)
        })
}

/// The method and path of every API route.
pub fn api_route_list() -> Vec<(Method, String)> {
    endpoints()
        .into_iter()
        .map(|endpoint| (endpoint.method, endpoint.path))
        .collect()
}

/// What is recorded, route by route (DESIGN.md's table). Reads are not recorded, except
/// the metadata download.
pub fn audit_layer(mut layer: AuditLayer) -> Result<AuditLayer, InvalidName> {
    for kind in Kind::CRUD.into_iter().chain([Kind::Plan]) {
        let category = kind.category();
        let item = kind.item_path();
        layer = layer
            .rule(
                Method::POST,
                kind.collection_path(),
                category,
                Action::Create,
            )
            .rule(Method::PUT, &item, category, Action::Update);
        if kind != Kind::Plan {
            layer = layer.rule(Method::DELETE, &item, category, Action::Delete);
        }
    }
    Ok(layer
        .rule(
            Method::POST,
            "/api/models/{id}/train",
            "Model",
            Action::Train,
        )
        .rule(
            Method::POST,
            "/api/models/{id}/clone",
            "Model",
            Action::Clone,
        )
        .rule(
            Method::POST,
            "/api/models/{id}/rescore",
            "Model",
            Action::Rescore,
        )
        .rule(
            Method::GET,
            "/api/models/{id}/metadata",
            "Model",
            Action::Download,
        )
        .rule(
            Method::PUT,
            "/api/plans/{id}/model",
            "Plan",
            Action::custom("change_model")?,
        )
        .rule(
            Method::POST,
            "/api/harmonization/sync",
            "Data Harmonization",
            Action::Sync,
        ))
}

/// A refusal, answered as JSON in the same shape as the audit router's errors.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn not_found(kind: Kind, id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {} with id {id:?}", kind.category()),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

/// The request body as a JSON object.
fn json_object(body: Result<Json<Value>, JsonRejection>) -> Result<Map<String, Value>, ApiError> {
    match body {
        Ok(Json(Value::Object(object))) => Ok(object),
        Ok(Json(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body must be a JSON object",
        )),
        Err(rejection) => Err(ApiError::new(
            rejection.status(),
            "invalid_body",
            rejection.body_text(),
        )),
    }
}

/// A valid resource name from a body field.
fn valid_name(value: Option<&Value>) -> Result<String, ApiError> {
    match value {
        Some(Value::String(name)) if !name.trim().is_empty() && name.len() <= MAX_NAME_LEN => {
            Ok(name.trim().to_owned())
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_name",
            format!("`name` must be a non-empty string of at most {MAX_NAME_LEN} bytes"),
        )),
    }
}

/// 201 with the new item's id and name, and its URL in `Location`.
fn created(kind: Kind, item: &Item) -> Response {
    let location = format!("{}/{}", kind.collection_path(), item.id);
    let mut response = (
        StatusCode::CREATED,
        Json(json!({"id": item.id, "name": item.name})),
    )
        .into_response();
    if let Ok(location) = HeaderValue::try_from(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

type SignedIn = Extension<&'static User>;

async fn list(
    State(resources): State<Resources>,
    Extension(kind): Extension<Kind>,
    Extension(user): SignedIn,
) -> Json<Vec<Item>> {
    Json(resources.list(user.workspace(), kind))
}

async fn show(
    State(resources): State<Resources>,
    Extension(kind): Extension<Kind>,
    Extension(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Item>, ApiError> {
    resources
        .get(user.workspace(), kind, &id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(kind, &id))
}

async fn create(
    State(resources): State<Resources>,
    Extension(kind): Extension<Kind>,
    Extension(user): SignedIn,
    audit: AuditContext,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let mut fields = json_object(body)?;
    let name = valid_name(fields.remove("name").as_ref())?;
    fields.remove("id");
    let item = resources.create(user.workspace(), kind, name, fields);
    audit.set_resource(&item.id, &item.name);
    Ok(created(kind, &item))
}

/// Applies any fields; the event lists each field that really changed.
async fn update(
    State(resources): State<Resources>,
    Extension(kind): Extension<Kind>,
    Extension(user): SignedIn,
    audit: AuditContext,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Item>, ApiError> {
    let changes = json_object(body)?;
    if changes.contains_key("name") {
        valid_name(changes.get("name"))?;
    }
    let (before, after) = resources
        .update(user.workspace(), kind, &id, &changes)
        .ok_or_else(|| ApiError::not_found(kind, &id))?;
    audit.set_resource(&after.id, &after.name);
    for field in changes.keys().filter(|field| *field != "id") {
        let (old, new) = (before.get(field), after.get(field));
        if old != new {
            audit.record_change(field.clone(), old, new);
        }
    }
    Ok(Json(after))
}

async fn remove(
    State(resources): State<Resources>,
    Extension(kind): Extension<Kind>,
    Extension(user): SignedIn,
    audit: AuditContext,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let item = resources
        .delete(user.workspace(), kind, &id)
        .ok_or_else(|| ApiError::not_found(kind, &id))?;
    audit.set_resource(&item.id, &item.name);
    Ok(StatusCode::NO_CONTENT)
}

/// The model named by the path, told to the audit log.
fn model(
    resources: &Resources,
    user: &User,
    audit: &AuditContext,
    id: &str,
) -> Result<Item, ApiError> {
    let model = resources
        .get(user.workspace(), Kind::Model, id)
        .ok_or_else(|| ApiError::not_found(Kind::Model, id))?;
    audit.set_resource(&model.id, &model.name);
    Ok(model)
}

async fn train_model(
    State(resources): State<Resources>,
    Extension(user): SignedIn,
    audit: AuditContext,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let model = model(&resources, user, &audit, &id)?;
    let body = json!({"id": model.id, "name": model.name, "status": "training"});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn rescore_model(
    State(resources): State<Resources>,
    Extension(user): SignedIn,
    audit: AuditContext,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let model = model(&resources, user, &audit, &id)?;
    let body = json!({"id": model.id, "name": model.name, "status": "rescoring"});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Copies a model; the event is about the source model and names the copy in its
/// attributes.
async fn clone_model(
    State(resources): State<Resources>,
    Extension(user): SignedIn,
    audit: AuditContext,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let source = model(&resources, user, &audit, &id)?;
    let copy = resources.create(
        user.workspace(),
        Kind::Model,
        format!("{} (copy)", source.name),
        source.fields.clone(),
    );
    audit.set_attribute("clone_id", copy.id.clone());
    audit.set_attribute("clone_name", copy.name.clone());
    Ok(created(Kind::Model, &copy))
}

/// The model's metadata as a JSON file download.
async fn model_metadata(
    State(resources): State<Resources>,
    Extension(user): SignedIn,
    audit: AuditContext,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let model = model(&resources, user, &audit, &id)?;
    let disposition = format!("attachment; filename=\"model-{}-metadata.json\"", model.id);
    let mut response = Json(json!({"model": model, "tenant": user.tenant})).into_response();
    if let Ok(disposition) = HeaderValue::try_from(disposition) {
        response
            .headers_mut()
            .insert(CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// `PUT /api/plans/{id}/model` with `{"model_id": ...}`: points a plan at another model.
async fn change_plan_model(
    State(resources): State<Resources>,
    Extension(user): SignedIn,
    audit: AuditContext,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Item>, ApiError> {
    let body = json_object(body)?;
    let model_id = body
        .get("model_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "`model_id` (a string) is required",
            )
        })?;
    let model = resources
        .get(user.workspace(), Kind::Model, model_id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_model",
                format!("no Model with id {model_id:?}"),
            )
        })?;
    let mut change = Map::new();
    change.insert("model_id".into(), Value::String(model.id.clone()));
    let (before, after) = resources
        .update(user.workspace(), Kind::Plan, &id, &change)
        .ok_or_else(|| ApiError::not_found(Kind::Plan, &id))?;
    audit.set_resource(&after.id, &after.name);
    audit.record_change("model_id", before.get("model_id"), after.get("model_id"));
    audit.set_attribute("model_name", model.name);
    Ok(Json(after))
}

/// `POST /api/harmonization/sync`: re-reads the tenant's touchpoints and conversions.
async fn sync_harmonization(
    State(resources): State<Resources>,
    Extension(user): SignedIn,
    audit: AuditContext,
) -> Response {
    let touchpoints = resources.list(user.workspace(), Kind::Touchpoint).len();
    let conversions = resources.list(user.workspace(), Kind::Conversion).len();
    audit.set_attribute("touchpoints", touchpoints);
    audit.set_attribute("conversions", conversions);
    let body = json!({"status": "syncing", "touchpoints": touchpoints, "conversions": conversions});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// `GET /`: how to sign in.
async fn index() -> Html<String> {
    sign_in_page()
}

/// The demo's sign-in page (`/` and `/login`): one link per demo user.
pub fn sign_in_page() -> Html<String> {
    let users: String = USERS
        .iter()
        .map(|user| {
            let view = if user.audit_export {
                "views and exports the log"
            } else if user.audit_view {
                "views the log, cannot export"
            } else {
                "no access to the log"
            };
            let mutate = if user.may_mutate {
                "edits resources"
            } else {
                "read-only"
            };
            format!(
                "<li><a href=\"/login?as={login}\">{login}</a> ({email}, tenant {tenant}): \
                 {mutate}, {view}</li>\n",
                login = user.login,
                email = user.email,
                tenant = user
                    .tenant
                    .unwrap_or("none: a platform auditor of every tenant"),
            )
        })
        .collect();
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Mix Modeler</title></head><body>\n<h1>Mix Modeler</h1>\n\
         <p>A demo API whose every change is recorded in an audit log. Sign in as:</p>\n\
         <ul>\n{users}</ul>\n<p><a href=\"{AUDIT_LOG_PREFIX}/\">Activity log</a> · \
         <a href=\"/logout\">Sign out</a></p>\n</body></html>\n"
    ))
}
