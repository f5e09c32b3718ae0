//! `POST /v1/messages`: the same scenarios in Anthropic's Messages API format.
//!
//! Requires `x-api-key` (401 `authentication_error` without) and `anthropic-version` (400
//! without). Errors are `{"type":"error","error":{"type","message"}}`; the stream is typed
//! events (`message_start`, `content_block_*`, `message_delta`, `message_stop`, `ping`,
//! `error`). The headers and body of the last request are kept for `/stats`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use futures::channel::mpsc;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};

use crate::directive::{Scenario, parse_user_text};
use crate::stream::{Ending, Plan, TokenPlan, TokenSource, guarded_sse};
use crate::{AppState, unix_micros, word_tokens};

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    (status, Json(body)).into_response()
}

/// Text of a content value: a string, or the `text` of text blocks and the (string or
/// text-block) `content` of `tool_result` blocks, joined with newlines.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b.get("text").and_then(Value::as_str).map(str::to_owned),
                Some("tool_result") => Some(content_text(b.get("content"))),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Text of the user's words in the last user message: text blocks only (tool results are
/// not where directives are written).
fn user_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        other => content_text(other),
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

enum APlan {
    Tokens(Plan),
    ToolUse {
        name: String,
        id: String,
        input: String,
        chunks: u64,
    },
}

struct Ctx {
    model: String,
    prompt_tokens: u64,
}

pub async fn messages(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let api_key = header("x-api-key");
    let version = header("anthropic-version");
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    st.record_messages_request(json!({
        "x_api_key": api_key,
        "anthropic_version": version,
        "body": parsed.as_ref().ok(),
    }));
    if api_key.as_deref().is_none_or(str::is_empty) {
        st.count_request("unauthenticated");
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        );
    }
    if version.is_none() {
        st.count_request("invalid_request");
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let req = match parsed {
        Ok(v) if v.get("messages").is_some_and(Value::is_array) => v,
        Ok(_) => {
            st.count_request("invalid_request");
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "messages: Field required",
            );
        }
        Err(e) => {
            st.count_request("invalid_request");
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("Invalid request body: {e}"),
            );
        }
    };
    if req.get("max_tokens").and_then(Value::as_u64).is_none() {
        st.count_request("invalid_request");
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
        );
    }
    let msgs = req["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let last_user = msgs
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| user_text(m.get("content")))
        .unwrap_or_default();
    let (scenario, text) = match parse_user_text(&last_user) {
        Ok(v) => v,
        Err(e) => {
            st.count_request("invalid_directive");
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("natter-fake-upstream: {e}"),
            );
        }
    };
    st.count_request(scenario.name());

    let ctx = Ctx {
        model: req
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("fake-model")
            .to_owned(),
        prompt_tokens: words(&content_text(req.get("system")))
            + msgs
                .iter()
                .map(|m| words(&content_text(m.get("content"))))
                .sum::<u64>(),
    };
    let streaming = req.get("stream").and_then(Value::as_bool) == Some(true);

    let tokens = |tokens: TokenSource, first_delay_ms: u64, delay_ms: u64, ending: Ending| {
        APlan::Tokens(Plan::Tokens(TokenPlan {
            tokens,
            first_delay_ms,
            delay_ms,
            ending,
        }))
    };
    let stop = Ending::Stop {
        choices_null: false,
    };
    let echo = |first_delay_ms: u64, delay_ms: u64| {
        let words = word_tokens(&format!("Echo: {text}"));
        tokens(TokenSource::Text(words), first_delay_ms, delay_ms, stop)
    };
    let plan = match scenario {
        Scenario::Echo { delay_ms } => echo(0, delay_ms),
        Scenario::SlowFirst { delay_ms } => echo(delay_ms, 0),
        Scenario::Tokens { n, delay_ms } | Scenario::Drip { n, delay_ms } => {
            tokens(TokenSource::Numbered(n), 0, delay_ms, stop)
        }
        Scenario::Bench { n, delay_ms } => tokens(TokenSource::Bench(n), 0, delay_ms, stop),
        Scenario::Cut { after, delay_ms } => {
            tokens(TokenSource::Numbered(after), 0, delay_ms, Ending::Cut)
        }
        Scenario::StreamError { after, delay_ms } => tokens(
            TokenSource::Numbered(after),
            0,
            delay_ms,
            Ending::StreamError,
        ),
        Scenario::Hang => APlan::Tokens(Plan::Hang),
        Scenario::ToolCall { .. } => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "natter-fake-upstream: toolcall is only served on /v1/chat/completions (use tooluse)",
            );
        }
        Scenario::ToolUse {
            name,
            id,
            input,
            chunks,
        } => APlan::ToolUse {
            name,
            id,
            input,
            chunks,
        },
        Scenario::Fail503 { times, key } => {
            // Same counter as the OpenAI endpoint's 503s; Anthropic says 529 overloaded.
            let seen = st.bump_key(format!("fail503:{key}"));
            if seen <= times {
                return error(
                    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    "overloaded_error",
                    &format!("Overloaded (fake 529 {seen}/{times}, key {key:?})"),
                );
            }
            echo(0, 0)
        }
        Scenario::Ratelimit {
            times,
            retry_after,
            key,
            ..
        } => {
            let seen = st.bump_key(format!("ratelimit:{key}"));
            if seen <= times {
                let mut resp = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    &format!(
                        "Number of request tokens has exceeded your rate limit (fake 429 {seen}/{times}, key {key:?})."
                    ),
                );
                if let Ok(v) = HeaderValue::from_str(&retry_after) {
                    resp.headers_mut().insert("retry-after", v);
                }
                return resp;
            }
            echo(0, 0)
        }
        Scenario::Always500 => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "Internal server error (fake always500)",
            );
        }
        Scenario::Auth401 => {
            return error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key",
            );
        }
        Scenario::Context400 => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "prompt is too long: 210000 tokens > 200000 maximum",
            );
        }
    };

    if streaming {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(0);
        let producer = futures::stream::once(produce(tx, ctx, plan))
            .filter_map(|()| futures::future::ready(None));
        guarded_sse(st, Box::pin(futures::stream::select(rx, producer)))
    } else {
        non_streaming(ctx, plan).await
    }
}

fn sse(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn message_start(ctx: &Ctx) -> Bytes {
    sse(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
            "model": ctx.model, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": ctx.prompt_tokens, "output_tokens": 1},
        }}),
    )
}

fn ping() -> Bytes {
    sse("ping", &json!({"type": "ping"}))
}

fn text_delta(index: u64, text: &str) -> Bytes {
    sse(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
    )
}

fn block_stop(index: u64) -> Bytes {
    sse(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": index}),
    )
}

fn message_end(stop_reason: &str, output_tokens: u64) -> [Bytes; 2] {
    [
        sse(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                    "usage": {"output_tokens": output_tokens}}),
        ),
        sse("message_stop", &json!({"type": "message_stop"})),
    ]
}

/// Splits `s` into `n` pieces of about equal length, on char boundaries.
fn split_n(s: &str, n: u64) -> Vec<&str> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let n = (n as usize).clamp(1, chars.len().max(1));
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for i in 1..=n {
        let end = if i == n {
            s.len()
        } else {
            chars[chars.len() * i / n].0
        };
        out.push(&s[start..end]);
        start = end;
    }
    out
}

/// Writes the stream for `plan` into `tx`; returns early once the receiver is gone.
async fn produce(mut tx: mpsc::Sender<Result<Bytes, std::io::Error>>, ctx: Ctx, plan: APlan) {
    macro_rules! emit {
        ($frame:expr) => {
            if tx.send(Ok($frame)).await.is_err() {
                return;
            }
        };
    }
    let p = match plan {
        APlan::Tokens(Plan::Hang) => {
            emit!(ping());
            std::future::pending::<()>().await;
            return;
        }
        APlan::ToolUse {
            name,
            id,
            input,
            chunks,
        } => {
            emit!(message_start(&ctx));
            emit!(sse(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}})
            ));
            emit!(text_delta(0, &format!("Calling {name}.")));
            emit!(block_stop(0));
            emit!(sse(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 1,
                        "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})
            ));
            let pieces = std::iter::once("").chain(split_n(&input, chunks));
            for piece in pieces {
                emit!(sse(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 1,
                            "delta": {"type": "input_json_delta", "partial_json": piece}})
                ));
                tokio::task::yield_now().await;
            }
            emit!(block_stop(1));
            for frame in message_end("tool_use", 1 + chunks) {
                emit!(frame);
            }
            return;
        }
        APlan::Tokens(Plan::Tokens(p)) => p,
    };
    if p.first_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(p.first_delay_ms)).await;
    }
    emit!(message_start(&ctx));
    emit!(sse(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}})
    ));
    emit!(ping());
    let n = p.tokens.len();
    for i in 0..n {
        if i > 0 {
            if p.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(p.delay_ms)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        let text = match &p.tokens {
            TokenSource::Bench(_) => format!("@{};", unix_micros()),
            other => other.token(i),
        };
        emit!(text_delta(0, &text));
        if (i + 1) % 10 == 0 {
            emit!(ping());
        }
    }
    match p.ending {
        Ending::Cut => {
            let _ = tx
                .send(Err(std::io::Error::other("fake upstream: cut")))
                .await;
        }
        Ending::StreamError => {
            emit!(sse(
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            ));
        }
        Ending::Stop { .. } => {
            emit!(block_stop(0));
            for frame in message_end("end_turn", n) {
                emit!(frame);
            }
        }
    }
}

/// Non-streaming reply: one `message` object after the total delay.
async fn non_streaming(ctx: Ctx, plan: APlan) -> Response {
    let usage = |output: u64| json!({"input_tokens": ctx.prompt_tokens, "output_tokens": output});
    let message = |content: Value, stop_reason: &str, output: u64| {
        Json(json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": ctx.model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": usage(output),
        }))
        .into_response()
    };
    let p = match plan {
        APlan::Tokens(Plan::Hang) => std::future::pending().await,
        APlan::ToolUse {
            name,
            id,
            input,
            chunks,
        } => {
            let input: Value = serde_json::from_str(&input).unwrap_or_else(|_| json!({}));
            return message(
                json!([
                    {"type": "text", "text": format!("Calling {name}.")},
                    {"type": "tool_use", "id": id, "name": name, "input": input},
                ]),
                "tool_use",
                1 + chunks,
            );
        }
        APlan::Tokens(Plan::Tokens(p)) => p,
    };
    let total_delay = p
        .delay_ms
        .saturating_mul(p.tokens.len().saturating_sub(1))
        .saturating_add(p.first_delay_ms);
    if total_delay > 0 {
        tokio::time::sleep(Duration::from_millis(total_delay)).await;
    }
    match p.ending {
        Ending::Cut => Response::new(Body::from_stream(futures::stream::once(async {
            Err::<Bytes, _>(std::io::Error::other("fake upstream: cut"))
        }))),
        Ending::StreamError => error(
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error",
            "Overloaded",
        ),
        Ending::Stop { .. } => {
            let n = p.tokens.len();
            let text: String = (0..n).map(|i| p.tokens.token(i)).collect();
            message(json!([{"type": "text", "text": text}]), "end_turn", n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_n_keeps_everything() {
        let s = r#"{"city":"Zürich"}"#;
        for n in 1..=20 {
            let parts = split_n(s, n);
            assert_eq!(parts.concat(), s);
            assert_eq!(parts.len() as u64, n.min(s.chars().count() as u64));
        }
        assert_eq!(split_n("{}", 3), ["{", "}"]);
    }

    #[test]
    fn texts() {
        let blocks = json!([
            {"type": "tool_result", "tool_use_id": "t", "content": "42 apples"},
            {"type": "text", "text": "[fake:tokens n=2] hi"},
        ]);
        assert_eq!(user_text(Some(&blocks)), "[fake:tokens n=2] hi");
        assert_eq!(words(&content_text(Some(&blocks))), 5);
        assert_eq!(
            content_text(Some(&json!([{"type": "text", "text": "Be brief."}]))),
            "Be brief."
        );
    }
}
