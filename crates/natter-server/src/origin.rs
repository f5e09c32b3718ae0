//! Browser origins: CORS headers, and with an allow-list, refusal of other origins.
//!
//! Defense in depth only (seed 002's tier-2 model): tokens are what authorize, and a client
//! that is not a browser sends whatever `Origin` it likes. Without a list any origin may call,
//! which grants nothing extra because identity never comes from cookies.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use natter_http::error::ApiError;
use natter_protocol::ErrorCode;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Wraps `router` with CORS and, when `allowed` is not empty, the origin check.
pub fn guard(router: Router, allowed: &[String]) -> Router {
    if allowed.is_empty() {
        return router.layer(CorsLayer::permissive());
    }
    let list: Arc<[String]> = allowed.into();
    let values: Vec<HeaderValue> = allowed
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::permissive().allow_origin(AllowOrigin::list(values));
    router
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let list = list.clone();
                async move { check(&list, req, next).await }
            },
        ))
        .layer(cors)
}

async fn check(allowed: &[String], req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return ApiError::new(
                ErrorCode::Forbidden,
                format!("origin `{origin}` is not allowed to call this server"),
            )
            .into_response();
        }
    }
    next.run(req).await
}
