//! One module per page; `actions` holds the repository actions' POST handlers. Shared here:
//! rendering, redirects, the embedded assets.

pub mod actions;
pub mod admin;
pub mod image;
pub mod lifecycle;
pub mod permissions;
pub mod repositories;
pub mod repository;
pub mod sign_in;

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::view::Layout;

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub title: &'static str,
    pub message: String,
}

/// A rendered page; a template that fails to render is a 500 (and a bug).
pub fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "console template failed to render");
            crate::plain(StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render; see the server log")
        }
    }
}

/// 303 See Other: after a POST the browser GETs `location`, so a reload does not post again.
pub fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

const CSS: &[u8] = include_bytes!("../../assets/console.css");
const JS: &[u8] = include_bytes!("../../assets/console.js");

/// The embedded stylesheet and script; their URLs carry the version, so they may be cached.
pub fn asset(name: &str) -> Response {
    let (content_type, body) = match name {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "console.js" => ("text/javascript; charset=utf-8", JS),
        _ => return crate::plain(StatusCode::NOT_FOUND, "no such asset"),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}

/// Percent-encodes everything but unreserved characters and `/`, for a path in a query string.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn urlencode_keeps_paths_readable_and_escapes_the_rest() {
        assert_eq!(super::urlencode("/console/repositories/a?q=x y&z"), "/console/repositories/a%3Fq%3Dx%20y%26z");
        assert_eq!(super::urlencode("é"), "%C3%A9");
    }
}
