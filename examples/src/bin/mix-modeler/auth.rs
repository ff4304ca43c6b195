//! The host's own authentication: fixed demo users and their tokens.
//!
//! A real app would check a session store or a JWT; what matters here is *where* this runs:
//! on `route_layer`, inside the audit layer, so the audit layer records the requests it
//! rejects, with whoever it managed to identify.

use audit_layer::{Actor, AuditContext};
use axum::Json;
use axum::extract::{Query, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

/// The name of the session cookie `/login` sets.
pub const SESSION_COOKIE: &str = "session";

/// A demo user and what they may do.
#[derive(Debug)]
pub struct User {
    pub token: &'static str,
    /// The short name `/login?as=` takes, also the actor id.
    pub login: &'static str,
    pub email: &'static str,
    pub name: &'static str,
    /// The user's tenant; `None` for a platform auditor, who belongs to no tenant and sees
    /// every tenant's events and the tenantless ones.
    pub tenant: Option<&'static str>,
    /// May create, change and delete resources (otherwise 403).
    pub may_mutate: bool,
    /// Holds the audit `view` permission.
    pub audit_view: bool,
    /// Holds the audit `export` permission.
    pub audit_export: bool,
}

/// The users of DESIGN.md's demo table.
pub const USERS: &[User] = &[
    User {
        token: "alice-token",
        login: "alice",
        email: "alice@acme.test",
        name: "Alice Archer",
        tenant: Some("acme"),
        may_mutate: true,
        audit_view: true,
        audit_export: true,
    },
    User {
        token: "bob-token",
        login: "bob",
        email: "bob@acme.test",
        name: "Bob Baker",
        tenant: Some("acme"),
        may_mutate: true,
        audit_view: false,
        audit_export: false,
    },
    User {
        token: "carol-token",
        login: "carol",
        email: "carol@acme.test",
        name: "Carol Chen",
        tenant: Some("acme"),
        may_mutate: false,
        audit_view: false,
        audit_export: false,
    },
    User {
        token: "erin-token",
        login: "erin",
        email: "erin@acme.test",
        name: "Erin Ellis",
        tenant: Some("acme"),
        may_mutate: false,
        audit_view: true,
        audit_export: false,
    },
    User {
        token: "dave-token",
        login: "dave",
        email: "dave@globex.test",
        name: "Dave Dunn",
        tenant: Some("globex"),
        may_mutate: true,
        audit_view: true,
        audit_export: true,
    },
    User {
        token: "olga-token",
        login: "olga",
        email: "olga@platform.test",
        name: "Olga Orlova",
        tenant: None,
        may_mutate: false,
        audit_view: true,
        audit_export: true,
    },
];

impl User {
    /// The actor the audit log records for this user.
    pub fn actor(&self) -> Actor {
        let actor = Actor::id(self.login).email(self.email).name(self.name);
        match self.tenant {
            Some(tenant) => actor.tenant(tenant),
            None => actor,
        }
    }

    /// The tenant whose resources the user reads and changes; a platform auditor has none
    /// (and may change nothing), so their lists are empty.
    pub fn workspace(&self) -> &'static str {
        self.tenant.unwrap_or("")
    }
}

/// What the request presented, before it is checked.
enum Credential<'a> {
    None,
    Token(&'a str),
}

fn credential(headers: &HeaderMap) -> Credential<'_> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    if let Some(token) = bearer {
        return Credential::Token(token);
    }
    let session = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| token);
    match session {
        Some(token) => Credential::Token(token),
        None => Credential::None,
    }
}

/// The signed-in user, if the request carries a known token (bearer header first, then the
/// session cookie).
pub fn signed_in_user(headers: &HeaderMap) -> Option<&'static User> {
    match credential(headers) {
        Credential::Token(token) => USERS.iter().find(|user| user.token == token),
        Credential::None => None,
    }
}

fn is_mutation(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

/// The `route_layer` middleware: 401 without a known token, 403 for a user who may not
/// change anything trying to; otherwise tells the audit log who acted and lets the handler
/// find the user in the request's extensions.
pub async fn require_user(audit: AuditContext, mut request: Request, next: Next) -> Response {
    let user = match credential(request.headers()) {
        Credential::None => {
            audit.set_reason("no bearer token or session cookie");
            return json_error(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first");
        }
        Credential::Token(token) => match USERS.iter().find(|user| user.token == token) {
            Some(user) => user,
            None => {
                audit.set_reason("unknown token");
                return json_error(StatusCode::UNAUTHORIZED, "unauthenticated", "unknown token");
            }
        },
    };
    audit.set_actor(user.actor());
    if is_mutation(request.method()) && !user.may_mutate {
        audit.set_reason("read-only user");
        return json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "your role may not change resources",
        );
    }
    request.extensions_mut().insert(user);
    next.run(request).await
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    #[serde(rename = "as")]
    login: Option<String>,
}

/// `GET /login?as=alice`: sets the session cookie and sends the browser to the log page.
/// Without `as` (where the activity log's "Sign in" links), the page to choose a demo user.
pub async fn login(Query(query): Query<LoginQuery>) -> Response {
    let Some(login) = query.login else {
        return crate::routes::sign_in_page().into_response();
    };
    let Some(user) = USERS.iter().find(|user| user.login == login) else {
        let known: Vec<_> = USERS.iter().map(|user| user.login).collect();
        return json_error(
            StatusCode::NOT_FOUND,
            "unknown_user",
            &format!("no demo user {:?}; try one of {}", login, known.join(", ")),
        );
    };
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
        user.token
    );
    let mut response = Redirect::to("/admin/audit/").into_response();
    match HeaderValue::try_from(cookie) {
        Ok(cookie) => {
            response.headers_mut().insert(SET_COOKIE, cookie);
            response
        }
        // The tokens are fixed ASCII, so this cannot happen; fail loudly rather than
        // redirect without a session.
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /logout`: clears the session cookie.
pub async fn logout() -> Response {
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_wins_over_cookie_and_unknown_tokens_are_nobody() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("theme=dark; session=erin-token"),
        );
        assert_eq!(signed_in_user(&headers).map(|u| u.login), Some("erin"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer dave-token"));
        assert_eq!(signed_in_user(&headers).map(|u| u.login), Some("dave"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        assert!(signed_in_user(&headers).is_none());
        assert!(signed_in_user(&HeaderMap::new()).is_none());
    }
}
