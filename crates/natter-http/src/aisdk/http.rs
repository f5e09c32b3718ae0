//! `POST /api/chat`, `GET /api/chat/{id}/stream`, `POST /api/chat/{id}/stop`: the routes
//! `DefaultChatTransport` calls. Responses are SSE `data: <chunk>` lines ending with
//! `data: [DONE]`; bad requests fail before streaming with a 4xx JSON error.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use natter_protocol::fields::Fields;
use serde_json::json;

use super::TurnStream;
use crate::Face;
use crate::body::JsonBody;
use crate::error::ApiResult;
use crate::identity::{Caller, identify};
use crate::path::Segment;

fn sse(face: &Face, stream: TurnStream) -> Response {
    let body = stream
        .into_stream()
        // Turns end before shutdown reaches here; this only closes what is still waiting.
        .take_until(face.shutdown.clone().cancelled_owned())
        .map(|chunk| Ok::<_, Infallible>(Bytes::from(format!("data: {chunk}\n\n"))))
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(b"data: [DONE]\n\n"))
        }));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::HeaderName::from_static("x-vercel-ai-ui-message-stream"),
                "v1",
            ),
            // Proxies such as nginx would otherwise hold the tokens back.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[utoipa::path(
    post,
    path = "/api/chat",
    tag = "aisdk",
    operation_id = "aisdk_chat",
    summary = "Send a message (or regenerate); the reply streams back as UI Message Stream v1",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery),
    request_body(content = crate::openapi::AiSdkChatRequest, content_type = "application/json"),
    responses((status = 200, description = "SSE `data: <chunk>` lines ending with `data: [DONE]`", content_type = "text/event-stream", body = String), crate::openapi::Errors),
)]
pub async fn post_chat(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let f = Fields::new("POST /api/chat", &body)?;
    let who = identify(&caller, Some(&f), &query)?;
    let stream = super::send(&face, &who, &caller, &f).await?;
    Ok(sse(&face, stream))
}

#[utoipa::path(
    get,
    path = "/api/chat/{id}/stream",
    tag = "aisdk",
    operation_id = "aisdk_resume",
    summary = "Resume the chat's running reply",
    security((), ("bearerAuth" = [])),
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The chat id"), crate::openapi::IdentityQuery),
    responses(
        (status = 200, description = "The running reply so far, then live, as on `POST`; with none running, the oldest queued reply once it starts", content_type = "text/event-stream", body = String),
        (status = 204, description = "No reply is running or queued"),
        crate::openapi::Errors,
    ),
)]
pub async fn resume_stream(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Segment(chat_id): Segment,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let who = identify(&caller, None, &query)?;
    Ok(match super::resume(&face, &who, &chat_id).await? {
        Some(stream) => sse(&face, stream),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[utoipa::path(
    post,
    path = "/api/chat/{id}/stop",
    tag = "aisdk",
    operation_id = "aisdk_stop",
    summary = "Stop the chat's running reply",
    security((), ("bearerAuth" = [])),
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The chat id"), crate::openapi::IdentityQuery),
    request_body(content = crate::openapi::IdentityHints, content_type = "application/json"),
    responses((status = 200, description = "Stopped", body = crate::openapi::StopResponse), crate::openapi::Errors),
)]
pub async fn stop(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Segment(chat_id): Segment,
    Query(query): Query<HashMap<String, String>>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<serde_json::Value>> {
    let f = Fields::new("POST /api/chat/{id}/stop", &body)?;
    let who = identify(&caller, Some(&f), &query)?;
    let request_id = super::stop(&face, &who, &chat_id).await?;
    Ok(Json(json!({"ok": true, "requestId": request_id})))
}
