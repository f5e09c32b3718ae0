//! Natter's HTTP faces, on the same [`ChatCore`] as every other face:
//! - [`aisdk`]: the Vercel AI SDK's `DefaultChatTransport` (UI Message Stream v1 over SSE)
//!   and `WebSocketChatTransport` (CONTRACT §2);
//! - [`realtime`]: seed 002's POST + SSE API (`/api/v1/chat/*`, CONTRACT §3);
//! - [`history`]: chat lists and history REST (`/api/v1/chats`);
//! - [`agents`]: the list of agents chats may be bound to (`/api/v1/agents`);
//! - [`openapi`]: the OpenAPI 3.1 document of all of them, from the same route lists.
//!
//! Each only maps HTTP ⇄ core: no provider or database is called from here.

pub mod agents;
pub mod aisdk;
pub mod attachments;
mod body;
pub mod error;
pub mod history;
pub mod identity;
pub mod openapi;
mod path;
pub mod realtime;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use natter_core::ChatCore;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base path of the AI SDK routes (`POST {base}`, `GET {base}/{id}/stream`, …).
    pub aisdk_base: String,
    /// Base path of seed 002's realtime API.
    pub realtime_base: String,
    /// Base path of history REST.
    pub history_base: String,
    /// Interval of the `: heartbeat` comment on seed 002's SSE stream.
    pub heartbeat: Duration,
    /// Largest request body (and WebSocket message) accepted.
    pub max_body_bytes: usize,
    /// Most chats in one page of a list.
    pub max_page: usize,
    /// Checks tokens (auth on), or lets identity hints through (auth off).
    pub auth: natter_auth::Authenticator,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            aisdk_base: "/api/chat".into(),
            realtime_base: "/api/v1/chat".into(),
            history_base: "/api/v1/chats".into(),
            heartbeat: Duration::from_secs(30),
            max_body_bytes: 4 * 1024 * 1024,
            max_page: 200,
            auth: natter_auth::Authenticator::off(),
        }
    }
}

pub struct Face {
    pub core: ChatCore,
    pub config: HttpConfig,
    /// Cancelled when the server shuts down: long-lived streams and sockets end, so the
    /// server's graceful shutdown does not wait on them forever.
    pub shutdown: CancellationToken,
}

/// A known path with the wrong method gets the same JSON error shape as everything else.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(
        natter_protocol::ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A route group's `#[utoipa::path]` paths carry the default base (`from`); the config may
/// move the group (`to`). Rewrites the paths before they are mounted and documented.
fn rebase<S>(routes: UtoipaMethodRouter<S>, from: &str, to: &str) -> UtoipaMethodRouter<S> {
    let (schemas, mut paths, method_router) = routes;
    paths.paths = std::mem::take(&mut paths.paths)
        .into_iter()
        .map(|(path, item)| match path.strip_prefix(from) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => (format!("{to}{rest}"), item),
            _ => (path, item),
        })
        .collect();
    (schemas, paths, method_router)
}

/// The HTTP faces' routes, ready to merge into the server's router. Cancel `shutdown` (after
/// the core has ended its turns) to close the SSE streams and WebSockets still open.
pub fn router(core: ChatCore, config: HttpConfig, shutdown: CancellationToken) -> Router {
    routes(core, config, shutdown).0
}

/// [`router`] and its OpenAPI document: both come from the same `routes!` lists, so every
/// route served is documented with its methods.
pub fn routes(
    core: ChatCore,
    config: HttpConfig,
    shutdown: CancellationToken,
) -> (Router, utoipa::openapi::OpenApi) {
    let limit = config.max_body_bytes;
    let upload_limit = attachments::upload_body_limit(core.attachments_config().max_bytes);
    let face = Arc::new(Face {
        core,
        config,
        shutdown,
    });
    let c = &face.config;
    let ai = c.aisdk_base.trim_end_matches('/');
    let rt = c.realtime_base.trim_end_matches('/');
    let hist = c.history_base.trim_end_matches('/');
    let defaults = HttpConfig::default();
    let (ai_from, rt_from, hist_from) = (
        defaults.aisdk_base.as_str(),
        defaults.realtime_base.as_str(),
        defaults.history_base.as_str(),
    );
    let (router, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(rebase(routes!(aisdk::http::post_chat), ai_from, ai))
        .routes(rebase(routes!(aisdk::ws::upgrade), ai_from, ai))
        .routes(rebase(routes!(aisdk::http::resume_stream), ai_from, ai))
        .routes(rebase(routes!(aisdk::http::stop), ai_from, ai))
        .routes(rebase(routes!(realtime::create), rt_from, rt))
        .routes(rebase(routes!(realtime::send), rt_from, rt))
        .routes(rebase(routes!(realtime::load), rt_from, rt))
        .routes(rebase(routes!(realtime::typing), rt_from, rt))
        .routes(rebase(routes!(realtime::end), rt_from, rt))
        .routes(rebase(routes!(realtime::event), rt_from, rt))
        .routes(rebase(routes!(realtime::stream::open), rt_from, rt))
        .routes(rebase(
            routes!(history::list, history::list_get),
            hist_from,
            hist,
        ))
        .routes(rebase(routes!(history::by_user), hist_from, hist))
        .routes(rebase(
            routes!(history::get_chat, history::patch_chat, history::delete_chat),
            hist_from,
            hist,
        ))
        .routes(rebase(routes!(history::messages), hist_from, hist))
        .routes(routes!(agents::list))
        .routes(routes!(attachments::download))
        .split_for_parts();
    // Uploads have their own limit: the largest attachment and the form around it (the
    // handler stops reading as soon as the file passes its limit).
    let (uploads, upload_doc) = OpenApiRouter::new()
        .routes(routes!(attachments::upload))
        .split_for_parts();
    let router = router
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .merge(
            uploads
                .method_not_allowed_fallback(method_not_allowed)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .with_state(face);
    let mut doc = doc;
    doc.merge(upload_doc);
    (router, openapi::finish(doc))
}
