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

/// The look of the denial pages: the page's own colours, card and button, inline because a
/// denied visitor may not load the page's stylesheet (every route, assets included, needs
/// `view`). The page's policy allows exactly this style by its hash, nothing else.
const DENIED_CSS: &str = ":root{--bg:#f6f7f9;--surface:#fff;--border:#dfe3ea;--text:#1b2230;\
--text-2:#4b5567;--accent:#4f46e5;--accent-hover:#4338ca;--deny:#b42318;--focus:#2563eb;\
color-scheme:light dark}\
@media (prefers-color-scheme:dark){:root{--bg:#0f131a;--surface:#171c25;--border:#2b3342;\
--text:#e6e9ef;--text-2:#c2c8d3;--accent:#818cf8;--accent-hover:#a5b4fc;--deny:#f87171;\
--focus:#93c5fd}}\
*{box-sizing:border-box}html,body{margin:0}\
body{background:var(--bg);color:var(--text);font:14px/1.5 system-ui,-apple-system,\"Segoe UI\",\
Roboto,\"Helvetica Neue\",Arial,\"Noto Sans\",\"Liberation Sans\",sans-serif}\
.topbar{display:flex;align-items:center;gap:12px;padding:14px 24px;background:var(--surface);\
border-bottom:1px solid var(--border)}\
.brand{font-size:19px;font-weight:700;letter-spacing:-.01em}\
main{padding:16px 24px 40px}\
.notice{background:var(--surface);border:1px solid var(--border);border-left:4px solid var(--deny);\
border-radius:10px;padding:24px 28px;margin:24px auto;max-width:640px;\
box-shadow:0 1px 2px rgba(16,24,40,.06),0 1px 3px rgba(16,24,40,.08)}\
h1{font-size:20px;line-height:1.25;margin:0 0 8px}p{margin:0 0 12px}\
.actions{display:flex;flex-wrap:wrap;gap:8px;margin-top:16px}\
.button{display:inline-flex;align-items:center;min-height:34px;padding:6px 14px;border-radius:8px;\
border:1px solid var(--accent);background:var(--accent);color:#fff;font-weight:600;\
text-decoration:none}\
.button:hover{background:var(--accent-hover);border-color:var(--accent-hover)}\
.button.secondary{background:var(--surface);color:var(--text);border-color:var(--border)}\
:focus-visible{outline:2px solid var(--focus);outline-offset:2px}\
.muted{color:var(--text-2)}";

/// [`CONTENT_SECURITY_POLICY`] for the denial pages: their one inline style, by hash.
fn denied_page_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(DENIED_CSS.as_bytes()));
        CONTENT_SECURITY_POLICY.replace("style-src 'self'", &format!("style-src 'sha256-{hash}'"))
    })
}

/// A denial page in the page's style: a top bar naming the activity log, a card with
/// `title`, `body` (trusted markup) and `actions` (trusted markup, links).
fn html_page(status: StatusCode, title: &str, body: &str, actions: &str) -> Response {
    let actions = if actions.is_empty() {
        String::new()
    } else {
        format!("<div class=\"actions\">{actions}</div>\n")
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{DENIED_CSS}</style>\n</head>\n<body>\n\
         <header class=\"topbar\">{ICON} <span class=\"brand\">Activity log</span></header>\n\
         <main>\n<section class=\"notice\" role=\"alert\" data-status=\"{status}\">\n\
         <h1>{title}</h1>\n{body}\n{actions}</section>\n</main>\n</body>\n</html>\n",
        ICON = ICON_INLINE,
        status = status.as_u16(),
    );
    let mut response = (status, Html(html)).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(denied_page_policy())
            .unwrap_or(HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
    );
    response
}

/// The page icon, drawn inline (a denied visitor may not load `assets/icon.svg`).
const ICON_INLINE: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\" \
     width=\"28\" height=\"28\" aria-hidden=\"true\"><rect width=\"32\" height=\"32\" rx=\"8\" \
     fill=\"#4f46e5\"/><path d=\"M9 10h14M9 16h14M9 22h9\" stroke=\"#fff\" stroke-width=\"2.6\" \
     stroke-linecap=\"round\"/><circle cx=\"23\" cy=\"22\" r=\"2.2\" fill=\"#a5b4fc\"/></svg>";

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
pub(crate) fn activity_log(viewer: &Viewer, base: Option<&str>, sign_in: Option<&str>) -> Response {
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
        ("audit-sign-in-url", sign_in.unwrap_or_default()),
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

/// The page a visitor who is not signed in sees; with the host's sign-in URL
/// ([`crate::AuditRouter::sign_in_url`]), a link to it.
pub(crate) fn sign_in_required(sign_in: Option<&str>) -> Response {
    let (body, actions) = match sign_in {
        Some(url) => (
            "<p>The activity log is only shown to signed-in users holding the audit permission.</p>\n\
             <p class=\"muted\">Sign in, then come back to this page.</p>",
            format!(
                "<a class=\"button\" id=\"sign-in\" href=\"{}\">Sign in</a>",
                escape_attribute(url)
            ),
        ),
        None => (
            "<p>The activity log is only shown to signed-in users holding the audit permission.</p>\n\
             <p class=\"muted\">Sign in to the application, then come back to this page.</p>",
            String::new(),
        ),
    };
    html_page(
        StatusCode::UNAUTHORIZED,
        "Sign in to see the activity log",
        body,
        &actions,
    )
}

/// The page a signed-in visitor without the audit `view` permission sees; with the host's
/// sign-in URL, a link to sign in as someone else.
pub(crate) fn permission_missing(sign_in: Option<&str>) -> Response {
    let actions = sign_in
        .map(|url| {
            format!(
                "<a class=\"button secondary\" id=\"sign-in\" href=\"{}\">Sign in as someone else</a>",
                escape_attribute(url)
            )
        })
        .unwrap_or_default();
    html_page(
        StatusCode::FORBIDDEN,
        "You cannot see the activity log",
        "<p>You are signed in, but you do not hold the audit permission needed to see the \
         activity log.</p>\n<p class=\"muted\">Ask an administrator for it.</p>",
        &actions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_pages_allow_only_their_own_style() {
        let policy = denied_page_policy();
        assert!(policy.contains("style-src 'sha256-"), "{policy}");
        assert!(!policy.contains("unsafe"));
        assert!(!policy.contains("style-src 'self'"));
        assert!(policy.contains("script-src 'self'"));
    }

    #[test]
    fn the_sign_in_link_is_escaped() {
        let response = sign_in_required(Some("/login?next=\"><script>"));
        let html = futures_util::FutureExt::now_or_never(axum::body::to_bytes(
            response.into_body(),
            usize::MAX,
        ))
        .and_then(Result::ok)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
        assert!(
            html.contains("href=\"/login?next=&quot;&gt;&lt;script&gt;\""),
            "{html}"
        );
        assert!(!html.contains("<script>"));
    }
}
