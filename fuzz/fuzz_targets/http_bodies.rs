//! Bytes → requests on the real HTTP faces (`natter_http::router`: the AI SDK's
//! `POST /api/chat` with its UIMessage parts and tools, seed 002's `/api/v1/chat/*`, history
//! REST), on a fresh in-memory core per input, with a scripted model, on a paused clock.
//!
//! Input: up to 4 requests separated by NUL bytes (never valid inside JSON). Each request is
//! one route letter (`a`.. below), an optional `@<chat id path segment>[?query]` line, and
//! the body. E.g. `a{"id":"r","messages":[{"id":"m1","role":"user","parts":[...]}]}`.
//!
//! Checks, per response: never a 5xx (the store here cannot fail, so a 5xx is our bug); every
//! error is `{"error": {"code", "message"}}` with a catalog code and the status that goes with
//! it; a body over the limit is `413 too_large`, a non-JSON or non-object body `400
//! invalid_payload`, a blank body reads as `{}`; a JSON success is JSON; an AI SDK stream is
//! `data: <chunk>` frames in the SDK's schema (`start` first, deltas inside an open text
//! part, one terminal chunk) ending with `data: [DONE]`, and ends (the clock is virtual, so
//! turn and tool timeouts pass instantly; a stream still open after an hour of it hangs).
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, Uri, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use natter_core::bus_memory::MemoryBus;
use natter_core::presence_memory::MemoryPresence;
use natter_core::{ChatCore, CoreConfig};
use natter_fuzz::memstore::MemStore;
use natter_fuzz::provider::ScriptedModel;
use natter_http::HttpConfig;
use natter_protocol::ErrorCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Largest body accepted (small, so `413 too_large` is reachable).
const BODY_LIMIT: usize = 2048;

struct Route {
    method: Method,
    /// `{id}` is replaced by the request's path segment (default `room-1`).
    path: &'static str,
    /// The handler reads a JSON body (`JsonBody`).
    json_body: bool,
}

const fn route(method: Method, path: &'static str, json_body: bool) -> Route {
    Route {
        method,
        path,
        json_body,
    }
}

/// Selected by `a`, `b`, … (any byte, modulo the count). The seed 002 SSE stream
/// (`GET /api/v1/chat/stream`) is left out: it never ends by design.
const ROUTES: &[Route] = &[
    route(Method::POST, "/api/chat", true),                   // a
    route(Method::POST, "/api/chat/{id}/stop", true),         // b
    route(Method::GET, "/api/chat/{id}/stream", false),       // c
    route(Method::POST, "/api/v1/chat/create", true),         // d
    route(Method::POST, "/api/v1/chat/send", true),           // e
    route(Method::POST, "/api/v1/chat/load", true),           // f
    route(Method::POST, "/api/v1/chat/typing", true),         // g
    route(Method::POST, "/api/v1/chat/end", true),            // h
    route(Method::POST, "/api/v1/chat/event", true),          // i
    route(Method::POST, "/api/v1/chats", true),               // j
    route(Method::PATCH, "/api/v1/chats/{id}", true),         // k
    route(Method::GET, "/api/v1/chats/{id}/messages", false), // l
    route(Method::DELETE, "/api/v1/chats/{id}", false),       // m
    route(Method::GET, "/api/v1/chats/{id}", false),          // n
    route(Method::GET, "/api/v1/chats/user/{id}", false),     // o
    route(Method::GET, "/api/v1/chats", false),               // p
];

fuzz_target!(|data: &[u8]| {
    let requests: Vec<&[u8]> = data.split(|b| *b == 0).take(4).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(run(requests));
});

async fn run(requests: Vec<&[u8]>) {
    let core = ChatCore::new(
        CoreConfig::default(),
        Arc::new(MemStore::default()),
        Arc::new(MemoryBus::new(256)),
        Arc::new(MemoryPresence::default()),
        Arc::new(ScriptedModel::default()),
    );
    let config = HttpConfig {
        max_body_bytes: BODY_LIMIT,
        ..HttpConfig::default()
    };
    let shutdown = CancellationToken::new();
    let app = natter_http::router(core, config, shutdown.clone());
    let mut streams = Vec::new();
    for raw in requests {
        let Some((&selector, rest)) = raw.split_first() else {
            continue;
        };
        let route = &ROUTES[usize::from(selector.wrapping_sub(b'a')) % ROUTES.len()];
        let (segment, query, body) = target(rest);
        let path = route.path.replace("{id}", segment);
        let Ok(uri) = format!("{path}{query}").parse::<Uri>() else {
            continue;
        };
        let mut request = Request::builder()
            .method(route.method.clone())
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_vec()))
            .expect("a request");
        let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = match app.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let what = format!("{} {path}{query}", route.method);
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        // Streams are read concurrently, so a later request (a tool output, a stop) can
        // reach a turn that an earlier response is still streaming.
        let reading = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(3600), response.into_body().collect()).await
        });
        streams.push((what, route, segment, body, status, content_type, reading));
        // Let everything runnable run (turns, feeds) before the next request.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for (what, route, segment, body, status, content_type, reading) in streams {
        let collected = reading.await.expect("the body reader does not panic");
        let Ok(collected) = collected else {
            panic!("{what}: the response body did not end within an hour ({status})");
        };
        let bytes = collected
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"))
            .to_bytes();
        if status == StatusCode::NOT_FOUND && bytes.is_empty() {
            // No route matched (axum's bare 404; the server adds no fallback): only a path
            // segment that is empty, holds a `/`, or ends the path (`#`) can miss every route.
            assert!(
                segment.is_empty() || segment.contains(['/', '#']),
                "{what}: no route matched"
            );
            continue;
        }
        check(&what, route, body, status, &content_type, &bytes);
    }
    shutdown.cancel();
}


/// `(path segment, query with its `?`, body)` of a request's text after the route letter.
fn target(rest: &[u8]) -> (&str, &str, &[u8]) {
    let Some(line) = rest.strip_prefix(b"@") else {
        return ("room-1", "", rest);
    };
    let (line, body) = match line.iter().position(|b| *b == b'\n') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return ("room-1", "", body);
    };
    match line.find('?') {
        Some(i) => (&line[..i], &line[i..], body),
        None => (line, "", body),
    }
}

fn check(
    what: &str,
    route: &Route,
    body: &[u8],
    status: StatusCode,
    content_type: &str,
    bytes: &[u8],
) {
    assert!(
        !status.is_server_error(),
        "{what}: {status} for client input: {}",
        String::from_utf8_lossy(bytes)
    );
    let code = if status.is_success() {
        None
    } else {
        Some(error_code(what, status, content_type, bytes))
    };
    if route.json_body && status != StatusCode::METHOD_NOT_ALLOWED {
        let blank = body.iter().all(u8::is_ascii_whitespace);
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        if body.len() > BODY_LIMIT {
            assert_eq!(
                code,
                Some(ErrorCode::TooLarge),
                "{what}: body over the limit"
            );
        } else if blank {
            assert_ne!(
                code,
                Some(ErrorCode::InvalidPayload),
                "{what}: a blank body must read as {{}}"
            );
        } else if !parsed.as_ref().is_some_and(Value::is_object) {
            assert_eq!(
                code,
                Some(ErrorCode::InvalidPayload),
                "{what}: a body that is not a JSON object"
            );
        }
    }
    if !status.is_success() {
        return;
    }
    if status == StatusCode::NO_CONTENT {
        assert!(bytes.is_empty(), "{what}: 204 with a body");
    } else if content_type.starts_with("text/event-stream") {
        check_ui_stream(what, bytes);
    } else {
        assert!(
            content_type.starts_with("application/json"),
            "{what}: {status} with content type {content_type:?}"
        );
        serde_json::from_slice::<Value>(bytes)
            .unwrap_or_else(|e| panic!("{what}: a success that is not JSON ({e})"));
    }
}

/// An error response: `{"error": {"code", "message"}}`, a known code, the status of that code.
fn error_code(what: &str, status: StatusCode, content_type: &str, bytes: &[u8]) -> ErrorCode {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        content_type.starts_with("application/json"),
        "{what}: {status} error with content type {content_type:?}: {text}"
    );
    let v: Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{what}: {status} error body is not JSON ({e}): {text}"));
    let code = v["error"]["code"].as_str().unwrap_or_default();
    let code = *ErrorCode::ALL
        .iter()
        .find(|c| c.as_str() == code)
        .unwrap_or_else(|| panic!("{what}: {status} with an unknown error code: {text}"));
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty(),
        "{what}: an error without a message: {text}"
    );
    assert_eq!(
        natter_http::error::status_of(code),
        status,
        "{what}: the status does not go with {code:?}"
    );
    code
}

/// The AI SDK's UI message stream: `data: <chunk>` frames, then `data: [DONE]`.
fn check_ui_stream(what: &str, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: not UTF-8 ({e})"));
    let frames: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(frames.last(), Some(&"data: [DONE]"), "{what}: {text}");
    assert!(text.ends_with("\n\n"), "{what}: unterminated frame: {text}");
    let mut open_text: Option<String> = None;
    let mut ended = false;
    for (i, frame) in frames[..frames.len() - 1].iter().enumerate() {
        let data = frame
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("{what}: frame {i} is not `data:`: {frame:?}"));
        let chunk: Value = serde_json::from_str(data)
            .unwrap_or_else(|e| panic!("{what}: frame {i} is not JSON ({e}): {data}"));
        let kind = chunk["type"].as_str().unwrap_or_default();
        assert!(!ended, "{what}: {kind} after the terminal chunk: {text}");
        if i == 0 {
            assert_eq!(kind, "start", "{what}: the first chunk: {text}");
        }
        let id = || chunk["id"].as_str().map(str::to_owned);
        match kind {
            "start" => assert!(chunk["messageId"].is_string(), "{what}: {data}"),
            "text-start" => {
                assert!(
                    open_text.is_none(),
                    "{what}: text part opened twice: {text}"
                );
                open_text = id();
            }
            "text-delta" => {
                assert!(
                    open_text.is_some() && open_text == id(),
                    "{what}: text-delta outside its text part: {text}"
                );
                assert!(chunk["delta"].is_string(), "{what}: {data}");
            }
            "text-end" => {
                assert!(open_text.is_some() && open_text == id(), "{what}: {text}");
                open_text = None;
            }
            "finish" | "abort" | "error" => ended = true,
            "start-step"
            | "finish-step"
            | "message-metadata"
            | "tool-input-start"
            | "tool-input-available"
            | "tool-output-available"
            | "tool-output-error" => {}
            other => panic!("{what}: chunk type {other:?} is not in the SDK's schema"),
        }
        // Optional fields are left out, never `null` (the SDK refuses those); tool inputs
        // and outputs are the model's and the client's own JSON.
        let fields = chunk.as_object().into_iter().flatten();
        for (k, v) in fields.filter(|(k, _)| !matches!(k.as_str(), "input" | "output")) {
            assert!(!contains_null(v), "{what}: `{k}` holds a null: {data}");
        }
    }
}

fn contains_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.values().any(contains_null),
        _ => false,
    }
}
