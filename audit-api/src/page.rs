//! `GET /`: the Activity log web page (HTML shell, script, stylesheet and icon from
//! `audit-api/assets/`, compiled into the crate), and the small HTML pages a denied visitor
//! sees there.

use audit_store::TenantScope;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::access::Viewer;
use crate::guard::CanView;

/// A strict policy: scripts, styles, images and API calls only from the router's own origin
/// (no inline script or style at all, so injected markup could not run even if some ever
/// reached the DOM); no plugins, frames, fonts or form posts; the page cannot be framed.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'self'; \
     form-action 'none'; frame-ancestors 'none'";

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

/// The page's HTML shell; the server fills in [`HEAD_MARKER`], everything else is static.
const INDEX_HTML: &str = include_str!("../assets/index.html");
/// Where [`activity_log`] puts the `<base href>` (when needed) and the viewer's `<meta>` tags.
const HEAD_MARKER: &str = "<!--SERVER-HEAD-->";

/// The page's script, stylesheet and icon, compiled in: the page works offline and loads
/// nothing from anywhere else.
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const ICON_SVG: &str = include_str!("../assets/icon.svg");
/// The forwarding status line, a file of its own so the page script stays independent.
const FORWARDING_JS: &str = include_str!("../assets/forwarding.js");

/// The Activity log page for `viewer`. Its assets and API calls are relative URLs, resolved
/// against the page's own URL, or against `base` when the page is served at a prefix
/// without its trailing slash (see [`crate::AuditRouter::into_router`]).
///
/// The viewer's name, tenants and export permission go into `<meta>` tags (escaped) so the
/// page can greet them and disable Download for a viewer who may not export, instead of
/// sending them to a JSON error.
pub(crate) fn activity_log(viewer: &Viewer, base: Option<&str>) -> Response {
    let mut head = String::new();
    if let Some(href) = base {
        head.push_str(&format!("<base href=\"{}\">\n", escape_attribute(href)));
    }
    let who = viewer
        .email
        .as_deref()
        .or(viewer.name.as_deref())
        .or(viewer.id.as_deref())
        .unwrap_or_default();
    let tenants = match &viewer.tenants {
        TenantScope::All => "all".to_owned(),
        TenantScope::Only(set) => set.iter().cloned().collect::<Vec<_>>().join(", "),
    };
    for (name, content) in [
        ("audit-viewer", who),
        ("audit-tenants", tenants.as_str()),
        (
            "audit-can-export",
            if viewer.can_export { "true" } else { "false" },
        ),
    ] {
        head.push_str(&format!(
            "<meta name=\"{name}\" content=\"{}\">\n",
            escape_attribute(content)
        ));
    }
    let html = INDEX_HTML.replacen(HEAD_MARKER, head.trim_end(), 1);
    let mut response = (StatusCode::OK, Html(html)).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// One compiled-in asset with its media type.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    // No cache header here: the router's `no-store` applies, so a new version of the crate
    // is picked up at once; the three files are small.
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// `GET /assets/app.js`. Assets carry no audit data, but like every route of the router they
/// are served only to viewers holding `view`: the router exposes nothing to anyone else,
/// and a denied probe is recorded like any other.
pub(crate) async fn app_js(_: CanView) -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /assets/app.css`; access as for [`app_js`].
pub(crate) async fn app_css(_: CanView) -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// `GET /assets/icon.svg`; access as for [`app_js`].
pub(crate) async fn icon_svg(_: CanView) -> Response {
    asset("image/svg+xml", ICON_SVG)
}

/// `GET /assets/forwarding.js`; access as for [`app_js`].
pub(crate) async fn forwarding_js(_: CanView) -> Response {
    asset("text/javascript; charset=utf-8", FORWARDING_JS)
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
