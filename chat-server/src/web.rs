//! The web chat page at `/`: the page built from `clients/web` into `web/` and embedded
//! in the binary (nothing to install), or a team's own build from `WEB_ROOT`, or none
//! (`WEB_UI=off`: 404). Every answer carries a strong `ETag` (a repeat with
//! `If-None-Match` gets 304 and no body), `Cache-Control: no-cache` (browsers revalidate,
//! so a new release shows at once), and a strict Content-Security-Policy: scripts,
//! styles and connections from this origin only, no inline code, no framing.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Ctx;
use crate::answer::json_error;
use crate::config::web::WebPage;

/// The page's policy: nothing but this origin, nothing inline, no frames.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One file served, with what the answer needs.
struct Asset {
    body: Bytes,
    content_type: &'static str,
    etag: HeaderValue,
}

/// The page a worker serves: URL path -> file (none with `WEB_UI=off`). Built once at
/// start; the embedded files are served from the binary, a `WEB_ROOT`'s from the
/// bytes the settings read (shared, not copied).
#[derive(Default)]
pub struct Page(HashMap<String, Asset>);

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Page({} files)", self.0.len())
    }
}

impl Page {
    pub fn new(web: &WebPage) -> Page {
        let files: Vec<(String, Bytes)> = match web {
            WebPage::Off => Vec::new(),
            WebPage::Folder(files) => files.as_ref().clone(),
            WebPage::Embedded => vec![
                ("/index.html".into(), Bytes::from_static(include_bytes!("../web/index.html"))),
                ("/assets/app.js".into(), Bytes::from_static(include_bytes!("../web/app.js"))),
                ("/assets/style.css".into(), Bytes::from_static(include_bytes!("../web/style.css"))),
            ],
        };
        Page(
            files
                .into_iter()
                .map(|(path, body)| {
                    let mut hasher = std::hash::DefaultHasher::new();
                    body.hash(&mut hasher);
                    let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
                        .unwrap_or(HeaderValue::from_static("\"0\""));
                    let content_type = content_type(&path);
                    (path, Asset { body, content_type, etag })
                })
                .collect(),
        )
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Everything the API does not route: the page's files (GET and HEAD), else 404.
pub async fn serve(State(ctx): State<Arc<Ctx>>, request: Request) -> Response {
    let table = &ctx.page.0;
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return not_found();
    }
    let path = match request.uri().path() {
        "/" => "/index.html",
        other => other,
    };
    let Some(asset) = table.get(path) else { return not_found() };
    let fresh = request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == asset.etag.to_str().unwrap_or("") || tag.trim() == "*");
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else if method == Method::HEAD {
        let mut r = StatusCode::OK.into_response();
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
        r
    } else {
        asset.body.clone().into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, asset.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such route")
}
