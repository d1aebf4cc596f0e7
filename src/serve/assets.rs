//! The page's files, compiled into the binary: the server reads no file to answer a page
//! request, and the page needs nothing from the network (no CDN, no build step).

use axum::http::header;
use axum::response::IntoResponse;

/// The page (`web/index.html`).
const INDEX_HTML: &str = include_str!("../../web/index.html");
/// Its script (`web/app.js`): drawing, the API calls, the grids, the explanations, curves.
const APP_JS: &str = include_str!("../../web/app.js");
/// Its style sheet (`web/style.css`).
const STYLE_CSS: &str = include_str!("../../web/style.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

pub(super) async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub(super) async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub(super) async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}
