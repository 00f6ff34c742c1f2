//! The live chart page at `/` and `/chart`, and its files, embedded in the binary so that the
//! page works offline: no CDN, nothing fetched but this server's API.

use std::sync::Arc;

use crate::message::{Request, Response};

/// The page's files: path, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", include_bytes!("../../assets/chart.html")),
    ("/chart", "text/html; charset=utf-8", include_bytes!("../../assets/chart.html")),
    (
        "/assets/chart.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/chart.js"),
    ),
    (
        "/assets/lightweight-charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!(
            "../../assets/vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.js"
        ),
    ),
    (
        "/assets/lightweight-charts-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/vendor/lightweight-charts-5.2.1/LICENSE"),
    ),
];

/// The file served at `path`, if any: its content type and bytes.
pub(super) fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|&(_, kind, bytes)| (kind, bytes))
}

/// The answer for `path`, one of [`asset`]'s.
pub(super) fn serve(path: &str) -> Response {
    match asset(path) {
        Some((kind, bytes)) => {
            let mut r = Response::new(200, kind, bytes.to_vec());
            // The page must not be framed by another site (clickjacking), and runs only
            // scripts of its own origin.
            r.extra_headers.push("X-Frame-Options: DENY".into());
            r.extra_headers.push(
                "Content-Security-Policy: default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
                    .into(),
            );
            r
        }
        None => super::json::error(
            super::json::ErrorCode::NotFound,
            "no such page",
            serde_json::json!({}),
        ),
    }
}

/// The chart page and its assets (no parameters); `path` is the whole path.
pub(super) fn serve_route(
    _: &Arc<super::Api>,
    path: &str,
    params: &[(String, String)],
    _: &Request,
) -> Response {
    super::bare(params, || serve(path))
}
