//! The dashboard (docs/dashboard.md): plain HTML, CSS and JavaScript modules compiled into
//! the binary, so the node serves it with no build step and no network beyond itself.
//!
//! `GET /` is the page; `GET /ui/{file}` its assets. Every answer carries a Content Security
//! Policy that lets the page load and fetch from its own origin only: no CDN, no inline
//! script, no framing.

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;

/// The files, by name: (bytes, content type).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        include_str!("../ui/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "app.js",
        include_str!("../ui/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "api.js",
        include_str!("../ui/api.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "verify.js",
        include_str!("../ui/verify.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "style.css",
        include_str!("../ui/style.css"),
        "text/css; charset=utf-8",
    ),
    (
        "register.html",
        include_str!("../ui/register.html"),
        "text/html; charset=utf-8",
    ),
    (
        "register.js",
        include_str!("../ui/register.js"),
        "text/javascript; charset=utf-8",
    ),
];

/// Only this origin: no inline script or style, no frame, no form posted elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn serve(name: &str) -> Option<Response> {
    let (_, body, content_type) = ASSETS.iter().find(|(n, _, _)| *n == name)?;
    Some(
        (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            *body,
        )
            .into_response(),
    )
}

/// `GET /`: the dashboard.
#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "The dashboard", body = String, content_type = "text/html")))]
pub async fn index() -> Response {
    serve("index.html").unwrap_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `GET /ui/{file}`: the dashboard's scripts and styles; `register.html` sends a
/// registration link of the older form to the dashboard, fragment kept.
#[utoipa::path(get, path = "/ui/{file}", tag = "dashboard",
    params(("file" = String, Path, description = "index.html, app.js, api.js, verify.js, style.css, register.html or register.js")),
    responses((status = 200, description = "The file", body = String),
        (status = 404, description = "No such file", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn asset(file: Result<Path<String>, PathRejection>) -> Result<Response, Problem> {
    // A name that is not UTF-8 is no file of ours either.
    let Ok(Path(file)) = file else {
        return Err(Problem::no_route("/ui/…"));
    };
    serve(&file).ok_or_else(|| Problem::no_route(&format!("/ui/{file}")))
}
