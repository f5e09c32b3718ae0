//! `GET /api/chat/ws`: the `ai` package's `WebSocketChatTransport` protocol.
//!
//! In: `send {requestId, id, trigger, messageId?, messages, headers, body}`,
//! `resume {requestId, id, lastSequence?}`, `abort {requestId}`.
//! Out: `start {requestId}`, `chunk {requestId, sequence, chunk}` (per request from 0, no
//! gaps), `end`, `error {requestId, errorText}`, `no-active`.
//! Several requests share one socket; each runs in its own task. A resume always replays
//! the turn from its `start` (the client's `lastSequence`, if any, is not needed: it drops
//! sequences it already has). `abort` stops the request's turn, like `POST …/stop`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use natter_core::Identity;
use natter_core::trace_context::SpanParent;
use natter_protocol::fields::Fields;
use natter_protocol::{ErrorCode, WireError};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::TurnStream;
use crate::Face;
use crate::error::{ApiError, ApiResult};
use crate::identity::{Caller, identify};

type Active = Arc<Mutex<HashMap<String, CancellationToken>>>;

#[utoipa::path(
    get,
    path = "/api/chat/ws",
    tag = "aisdk",
    operation_id = "aisdk_websocket",
    summary = "`WebSocketChatTransport`: a WebSocket upgrade, then JSON frames both ways",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery),
    responses((status = 101, description = "Switched to the WebSocket protocol"), crate::openapi::Errors),
)]
pub async fn upgrade(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    // axum's own rejection (a plain GET, a bad handshake) is plain text: ours is JSON.
    let ws = ws.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidPayload,
            format!("this route takes a WebSocket upgrade: {}", e.body_text()),
        )
    })?;
    // Refused before the upgrade, so the client sees the HTTP status and error body.
    let who = identify(&caller, None, &query)?;
    let admission = face.core.admit(&who, caller.ip)?;
    // The frames are served after this request's span has ended, in tasks of their own: each
    // frame's span continues it (it is the `traceparent`'s child), else the traceparent.
    let parent = SpanParent::current().or_else(|| caller.trace_parent.clone());
    Ok(ws
        .max_message_size(face.config.max_body_bytes)
        .on_upgrade(move |socket| async move {
            run(face, caller, parent, query, socket).await;
            drop(admission);
        }))
}

fn frame_of(kind: &str, request_id: &str) -> Value {
    json!({"type": kind, "requestId": request_id})
}

fn error_frame(request_id: &str, e: &WireError) -> Value {
    json!({"type": "error", "requestId": request_id, "errorText": format!("{}: {}", e.code, e.message)})
}

async fn run(
    face: Arc<Face>,
    caller: Caller,
    parent: Option<SpanParent>,
    query: HashMap<String, String>,
    socket: WebSocket,
) {
    let (mut sink, mut incoming) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<Value>(256);
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if sink
                .send(Message::Text(frame.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let active: Active = Arc::default();
    let mut requests = JoinSet::new();
    let expiry = token_expiry(&caller);
    tokio::pin!(expiry);
    loop {
        let message = tokio::select! {
            m = incoming.next() => m,
            _ = face.shutdown.cancelled() => break,
            _ = &mut expiry => {
                let e = WireError::new(
                    ErrorCode::TokenExpired,
                    "the token this socket was opened with has expired; reconnect with a fresh one",
                );
                let _ = out.send(error_frame("", &e)).await;
                break;
            }
        };
        let Some(message) = message else { break };
        let text = match message {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(_)) => {
                let e = WireError::new(ErrorCode::InvalidPayload, "frames must be JSON text");
                let _ = out.send(error_frame("", &e)).await;
                continue;
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let parsed: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                let e = WireError::new(
                    ErrorCode::InvalidPayload,
                    format!("the frame is not JSON: {e}"),
                );
                let _ = out.send(error_frame("", &e)).await;
                continue;
            }
        };
        match accept(&parsed, &active) {
            Ok(Some((request_id, kind, cancel))) => {
                let face = face.clone();
                let out = out.clone();
                let active = active.clone();
                let who = frame_identity(&caller, &parsed, &query);
                // A span per request frame (its turn's span is a child of it).
                let span = tracing::info_span!(
                    "aisdk.ws.request",
                    otel.kind = "server",
                    kind = kind.as_str(),
                    requestId = %request_id,
                );
                if let Some(parent) = &parent {
                    parent.adopt(&span);
                }
                requests.spawn(
                    async move {
                        serve_request(&face, &who, &parsed, kind, &request_id, &cancel, &out).await;
                        if let Ok(mut map) = active.lock() {
                            map.remove(&request_id);
                        }
                    }
                    .instrument(span),
                );
            }
            Ok(None) => {}
            Err((request_id, e)) => {
                let _ = out.send(error_frame(&request_id, &e)).await;
            }
        }
        // Reap finished requests so a long-lived socket does not accumulate them.
        while requests.try_join_next().is_some() {}
    }
    // The socket is gone: its requests stop streaming (their turns go on, resumable).
    requests.abort_all();
    drop(out);
    let _ = writer.await;
}

#[derive(Clone, Copy)]
enum Kind {
    Send,
    Resume,
}

impl Kind {
    /// The frame's `type`.
    fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Resume => "resume",
        }
    }
}

/// Identity hints from the frame's `body`, then the socket URL's query (with auth on they
/// must agree with the token the socket was opened with).
fn frame_identity(
    caller: &Caller,
    frame: &Value,
    query: &HashMap<String, String>,
) -> Result<(Identity, Caller), WireError> {
    let who = match frame.get("body").filter(|b| b.is_object()) {
        Some(body) => {
            let f = Fields::new("body", body)?;
            identify(caller, Some(&f), query)?
        }
        None => identify(caller, None, query)?,
    };
    Ok((who, caller.clone()))
}

/// Resolves when the caller's token stops being accepted; never with auth off.
pub(crate) async fn token_expiry(caller: &Caller) {
    match &caller.principal {
        Some(p) => tokio::time::sleep(p.remaining()).await,
        None => std::future::pending().await,
    }
}

/// A request to start: its id, what it asks for, and the token its `abort` frame cancels.
type Accepted = Option<(String, Kind, CancellationToken)>;

/// Checks a frame; for `send`/`resume` returns what to start. `abort` is handled here.
fn accept(frame: &Value, active: &Active) -> Result<Accepted, (String, WireError)> {
    let f = Fields::new("frame", frame).map_err(|e| (String::new(), e))?;
    let request_id = f.req_str("requestId").map_err(|e| (String::new(), e))?;
    let fail = |e: WireError| (request_id.clone(), e);
    let kind = match f.req_str("type").map_err(fail)?.as_str() {
        "send" => Kind::Send,
        "resume" => Kind::Resume,
        "abort" => {
            if let Ok(map) = active.lock()
                && let Some(cancel) = map.get(&request_id)
            {
                cancel.cancel();
            }
            return Ok(None);
        }
        other => {
            return Err(fail(WireError::new(
                ErrorCode::InvalidField,
                format!("unknown frame type `{other}`; expected send, resume or abort"),
            )));
        }
    };
    let cancel = CancellationToken::new();
    let mut map = active.lock().map_err(|_| {
        fail(WireError::new(
            ErrorCode::Internal,
            "request table unavailable",
        ))
    })?;
    if map.contains_key(&request_id) {
        return Err(fail(WireError::new(
            ErrorCode::InvalidField,
            format!("request `{request_id}` is already running on this socket"),
        )));
    }
    map.insert(request_id.clone(), cancel.clone());
    Ok(Some((request_id, kind, cancel)))
}

async fn serve_request(
    face: &Face,
    who: &Result<(Identity, Caller), WireError>,
    frame: &Value,
    kind: Kind,
    request_id: &str,
    cancel: &CancellationToken,
    out: &mpsc::Sender<Value>,
) {
    let started: Result<Option<TurnStream>, WireError> = async {
        let (who, caller) = who.clone()?;
        let f = Fields::new("frame", frame)?;
        match kind {
            Kind::Send => super::send(face, &who, &caller, &f)
                .await
                .map(Some)
                .map_err(|e| e.0),
            Kind::Resume => {
                let chat_id = f.req_id("id")?;
                super::resume(face, &who, &chat_id).await.map_err(|e| e.0)
            }
        }
    }
    .await;
    let mut stream = match started {
        Ok(Some(stream)) => stream,
        Ok(None) => {
            let _ = out.send(frame_of("no-active", request_id)).await;
            return;
        }
        Err(e) => {
            let _ = out.send(error_frame(request_id, &e)).await;
            return;
        }
    };
    let turn = stream.turn();
    if out.send(frame_of("start", request_id)).await.is_err() {
        return;
    }
    let mut sequence = 0u64;
    loop {
        let chunk = tokio::select! {
            chunk = stream.next() => chunk,
            _ = cancel.cancelled() => {
                // The client's stop(): end the turn (partial text kept) and this request.
                if let Some((chat, turn_request)) = &turn {
                    let _ = face.core.abort(chat, Some(turn_request), Some("stopped by the client".into())).await;
                }
                return;
            }
        };
        let Some(chunk) = chunk else { break };
        let msg =
            json!({"type": "chunk", "requestId": request_id, "sequence": sequence, "chunk": chunk});
        if out.send(msg).await.is_err() {
            return;
        }
        sequence += 1;
    }
    let _ = out.send(frame_of("end", request_id)).await;
}
