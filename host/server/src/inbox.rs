//! The approval inbox: a page (HTML, a style sheet and a small script, each
//! a file of its own) that an approver opens in a browser. It holds no data
//! of its own: it calls the JSON API with the key the approver pastes in,
//! so it can do exactly what that key may do and nothing more.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("inbox.html");
const SCRIPT: &str = include_str!("inbox.js");
const STYLE: &str = include_str!("inbox.css");

/// The page runs only the script and style sheet served beside it, and talks
/// only to us: no inline script or style, so text that reached the page
/// from a payment can never run.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
}

/// `GET /inbox`.
pub(super) async fn page() -> impl IntoResponse {
    file("text/html; charset=utf-8", PAGE)
}

/// `GET /inbox.js`.
pub(super) async fn script() -> impl IntoResponse {
    file("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /inbox.css`.
pub(super) async fn style() -> impl IntoResponse {
    file("text/css; charset=utf-8", STYLE)
}
