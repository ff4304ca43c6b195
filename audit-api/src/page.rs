//! `GET /`: the place of the Activity log web page (built under its own issue), and the
//! small HTML pages a denied visitor sees there.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// A strict policy: the page loads nothing from anywhere and cannot be framed.
pub(crate) const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; base-uri 'self'; form-action 'none'; frame-ancestors 'none'";

fn html_page(status: StatusCode, title: &str, body: &str, base: Option<&str>) -> Response {
    let base = base
        .map(|href| format!("<base href=\"{}\">\n", escape_attribute(href)))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         {base}<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n{body}\n</body>\n</html>\n"
    );
    let mut response = (status, Html(html)).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// Escapes text for a double-quoted HTML attribute.
fn escape_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The placeholder served until the web page lands. It links to the JSON API relative to
/// its own URL (or to `base`, when served at a prefix without its trailing slash), so any
/// mount prefix works.
pub(crate) fn placeholder(base: Option<&str>) -> Response {
    html_page(
        StatusCode::OK,
        "Activity log",
        "<p>This is a placeholder for the Activity log web page, which is not built yet.</p>\n\
         <ul>\n<li><a href=\"events\">events (JSON)</a></li>\n\
         <li><a href=\"facets\">facets (JSON)</a></li>\n\
         <li><a href=\"openapi.json\">API description (OpenAPI)</a></li>\n</ul>",
        base,
    )
}

/// The page a visitor who is not signed in sees.
pub(crate) fn sign_in_required() -> Response {
    html_page(
        StatusCode::UNAUTHORIZED,
        "Sign in to see the activity log",
        "<p>The activity log is only shown to signed-in users holding the audit permission. \
         Sign in, then come back to this page.</p>",
        None,
    )
}

/// The page a signed-in visitor without the audit `view` permission sees.
pub(crate) fn permission_missing() -> Response {
    html_page(
        StatusCode::FORBIDDEN,
        "You cannot see the activity log",
        "<p>You are signed in, but you do not hold the audit permission needed to see the \
         activity log. Ask an administrator for it.</p>",
        None,
    )
}
