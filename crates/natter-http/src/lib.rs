//! Natter's HTTP faces, on the same [`ChatCore`] as every other face:
//! - [`aisdk`]: the Vercel AI SDK's `DefaultChatTransport` (UI Message Stream v1 over SSE)
//!   and `WebSocketChatTransport` (CONTRACT §2);
//! - [`realtime`]: seed 002's POST + SSE API (`/api/v1/chat/*`, CONTRACT §3);
//! - [`history`]: chat lists and history REST (`/api/v1/chats`);
//! - [`agents`]: the list of agents chats may be bound to (`/api/v1/agents`).
//!
//! Each only maps HTTP ⇄ core: no provider or database is called from here.

pub mod agents;
pub mod aisdk;
pub mod attachments;
mod body;
pub mod error;
pub mod history;
pub mod identity;
mod path;
pub mod realtime;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use natter_core::ChatCore;
use tokio_util::sync::CancellationToken;

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

/// The HTTP faces' routes, ready to merge into the server's router. Cancel `shutdown` (after
/// the core has ended its turns) to close the SSE streams and WebSockets still open.
pub fn router(core: ChatCore, config: HttpConfig, shutdown: CancellationToken) -> Router {
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
    Router::new()
        .route(ai, post(aisdk::http::post_chat))
        .route(&format!("{ai}/ws"), get(aisdk::ws::upgrade))
        .route(
            &format!("{ai}/{{id}}/stream"),
            get(aisdk::http::resume_stream),
        )
        .route(&format!("{ai}/{{id}}/stop"), post(aisdk::http::stop))
        .route(&format!("{rt}/create"), post(realtime::create))
        .route(&format!("{rt}/send"), post(realtime::send))
        .route(&format!("{rt}/load"), post(realtime::load))
        .route(&format!("{rt}/typing"), post(realtime::typing))
        .route(&format!("{rt}/end"), post(realtime::end))
        .route(&format!("{rt}/event"), post(realtime::event))
        .route(&format!("{rt}/stream"), get(realtime::stream::open))
        .route(hist, post(history::list).get(history::list_get))
        .route(&format!("{hist}/user/{{user}}"), get(history::by_user))
        .route(
            &format!("{hist}/{{chat}}"),
            get(history::get_chat)
                .patch(history::patch_chat)
                .delete(history::delete_chat),
        )
        .route(&format!("{hist}/{{chat}}/messages"), get(history::messages))
        .route(agents::AGENTS_PATH, get(agents::list))
        .route(
            &format!("{}/{{id}}", attachments::ATTACHMENTS_PATH),
            get(attachments::download),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Uploads have their own limit: the largest attachment and the form around it (the
        // handler stops reading as soon as the file passes its limit).
        .merge(
            Router::new()
                .route(attachments::ATTACHMENTS_PATH, post(attachments::upload))
                .method_not_allowed_fallback(method_not_allowed)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .with_state(face)
}
