//! The approval inbox: one self-contained page (HTML, CSS and a small
//! script) that an approver opens in a browser. It holds no data of its own:
//! it calls the JSON API with the key the approver pastes in, so it can do
//! exactly what that key may do and nothing more.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("inbox.html");

/// `GET /inbox`.
pub(super) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page runs only its own inline script and talks only to us.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}
