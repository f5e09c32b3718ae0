//! The playground: a small page at `/` that talks to this server over Socket.IO, so a person
//! can try a chat by hand (two tabs on one chat show presence, typing, streaming, read
//! receipts and stop), and the desk at `/desk`, where a human agent takes the chats whose
//! customer asked for a person. Their source is `sdk/playground`; the built files are
//! committed under `assets/playground`, so building the server needs no npm.
//!
//! The file names carry no content hash, so every response says `no-cache` with an `ETag`:
//! the browser revalidates each load and gets a body-less 304 while nothing changed, and never
//! pairs a new page with an old script after an upgrade.

use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
    /// The page's own policy: scripts, styles and connections from this origin only.
    content_security_policy: Option<&'static str>,
}

impl Asset {
    fn new(body: &'static [u8], content_type: &'static str, csp: Option<&'static str>) -> Self {
        // `DefaultHasher::new()` is the same function in every instance, so one binary always
        // gives one body the same tag; a new bundle gives a new tag.
        let mut hasher = std::hash::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Self {
            body,
            content_type,
            etag,
            content_security_policy: csp,
        }
    }
}

const PAGE_CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                        base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../assets/playground/index.html"),
        "text/html; charset=utf-8",
        Some(PAGE_CSP),
    )
});
static APP_JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../assets/playground/app.js"),
        "text/javascript; charset=utf-8",
        None,
    )
});
static DESK: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../assets/playground/desk.html"),
        "text/html; charset=utf-8",
        Some(PAGE_CSP),
    )
});
static DESK_JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../assets/playground/desk.js"),
        "text/javascript; charset=utf-8",
        None,
    )
});
static STYLE_CSS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("../assets/playground/style.css"),
        "text/css; charset=utf-8",
        None,
    )
});

/// `GET /` (the playground), `/desk` (the desk), their scripts `/playground/app.js` and
/// `/playground/desk.js`, and `/playground/style.css`; HEAD too.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { respond(&INDEX, &headers) }),
        )
        .route(
            "/desk",
            get(|headers: HeaderMap| async move { respond(&DESK, &headers) }),
        )
        .route(
            "/playground/app.js",
            get(|headers: HeaderMap| async move { respond(&APP_JS, &headers) }),
        )
        .route(
            "/playground/desk.js",
            get(|headers: HeaderMap| async move { respond(&DESK_JS, &headers) }),
        )
        .route(
            "/playground/style.css",
            get(|headers: HeaderMap| async move { respond(&STYLE_CSS, &headers) }),
        )
}

fn respond(asset: &Asset, request: &HeaderMap) -> Response {
    let cache_headers = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, asset.etag.clone()),
    ];
    if matches_etag(request, &asset.etag) {
        return (StatusCode::NOT_MODIFIED, cache_headers).into_response();
    }
    let mut response = (
        cache_headers,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.body,
    )
        .into_response();
    if let Some(csp) = asset.content_security_policy {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        );
    }
    response
}

/// `If-None-Match` as RFC 9110 reads it: `*`, or a list of tags compared weakly (a `W/`
/// prefix, as proxies that recompress add, still matches).
fn matches_etag(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(ours) = etag.to_str() else {
        return false;
    };
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn page_and_assets_carry_their_content_types() {
        for (asset, content_type) in [
            (&*INDEX, "text/html; charset=utf-8"),
            (&*DESK, "text/html; charset=utf-8"),
            (&*APP_JS, "text/javascript; charset=utf-8"),
            (&*DESK_JS, "text/javascript; charset=utf-8"),
            (&*STYLE_CSS, "text/css; charset=utf-8"),
        ] {
            let response = respond(asset, &HeaderMap::new());
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(header_of(&response, header::CONTENT_TYPE), content_type);
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
            assert_eq!(
                header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff"
            );
            assert!(header_of(&response, header::ETAG).starts_with('"'));
            assert!(!asset.body.is_empty());
        }
    }

    #[test]
    fn only_the_pages_carry_a_content_security_policy() {
        for page in [&*INDEX, &*DESK] {
            let page = respond(page, &HeaderMap::new());
            assert!(
                header_of(&page, header::CONTENT_SECURITY_POLICY).contains("default-src 'self'")
            );
        }
        for script in [&*APP_JS, &*DESK_JS] {
            let script = respond(script, &HeaderMap::new());
            assert!(
                script
                    .headers()
                    .get(header::CONTENT_SECURITY_POLICY)
                    .is_none()
            );
        }
    }

    #[test]
    fn the_pages_load_the_served_scripts_and_style() {
        for (page, script) in [
            (&*INDEX, "playground/app.js"),
            (&*DESK, "playground/desk.js"),
        ] {
            let html = std::str::from_utf8(page.body).unwrap_or("");
            assert!(html.contains(&format!("src=\"{script}\"")), "{html}");
            assert!(html.contains("href=\"playground/style.css\""), "{html}");
        }
    }

    #[test]
    fn a_matching_if_none_match_gets_an_empty_304() {
        let tag = APP_JS.etag.to_str().unwrap_or_default().to_string();
        for sent in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"other\", {tag}"),
            "*".into(),
        ] {
            let mut request = HeaderMap::new();
            request.insert(
                header::IF_NONE_MATCH,
                HeaderValue::from_str(&sent).unwrap_or(HeaderValue::from_static("")),
            );
            let response = respond(&APP_JS, &request);
            assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{sent}");
            assert_eq!(header_of(&response, header::ETAG), tag);
            assert!(response.headers().get(header::CONTENT_TYPE).is_none());
        }
    }

    #[test]
    fn a_different_if_none_match_gets_the_body() {
        let mut request = HeaderMap::new();
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"stale\""));
        assert_eq!(respond(&STYLE_CSS, &request).status(), StatusCode::OK);
    }

    #[test]
    fn each_asset_has_its_own_tag() {
        let tags = [&INDEX, &DESK, &APP_JS, &DESK_JS, &STYLE_CSS].map(|a| a.etag.clone());
        for (i, a) in tags.iter().enumerate() {
            for b in &tags[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
