//! The SSE (`text/event-stream`) writer.
//!
//! The producer is plain straight-line async code sending frames into a
//! rendezvous channel; it is polled *inside* the response body stream (no
//! spawned task), so when hyper drops the body (client gone) the producer is
//! dropped with it and nothing keeps running. A guard in the body stream counts
//! bodies dropped before their natural end as disconnects.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures::channel::mpsc;
use futures::{SinkExt as _, Stream, StreamExt as _};
use serde::Serialize;

use crate::{AppState, Ctx, unix_micros};

/// What to send.
#[derive(Debug)]
pub enum Plan {
    /// Headers and one SSE comment, then nothing, forever.
    Hang,
    Tokens(TokenPlan),
}

/// Text, then tool calls, then `finish_reason: "tool_calls"` (chat completions only).

#[derive(Debug)]
pub struct ToolCallPlan {
    /// Text tokens streamed before the calls.
    pub text: Vec<String>,
    pub calls: Vec<PlannedCall>,
    /// Every call at `index` 0 (told apart by id only).
    pub reuse_index: bool,
    /// Wait between two chunks after the role chunk (0: just yield).
    pub delay_ms: u64,
}

#[derive(Debug)]
pub struct PlannedCall {
    pub id: String,
    pub name: String,
    /// The arguments, in the pieces they are streamed in (their concatenation is the JSON).
    pub fragments: Vec<String>,
}

impl ToolCallPlan {
    /// The position a call is streamed at.
    pub fn index(&self, call: usize) -> usize {
        if self.reuse_index { 0 } else { call }
    }

    /// Chunks carrying text or call fragments.
    pub fn chunk_count(&self) -> u64 {
        (self.text.len()
            + self
                .calls
                .iter()
                .map(|c| 1 + c.fragments.len())
                .sum::<usize>()) as u64
    }
}

#[derive(Debug)]
pub struct TokenPlan {
    pub tokens: TokenSource,
    /// Wait before the role chunk / first token.
    pub first_delay_ms: u64,
    /// Wait between two tokens (0: just yield).
    pub delay_ms: u64,
    pub ending: Ending,
}

#[derive(Debug)]
pub enum TokenSource {
    /// Fixed token texts.
    Text(Vec<String>),
    /// `t0 `, `t1 `, ...
    Numbered(u64),
    /// `@<unix micros at send time>;`
    Bench(u64),
}

impl TokenSource {
    pub fn len(&self) -> u64 {
        match self {
            Self::Text(t) => t.len() as u64,
            Self::Numbered(n) | Self::Bench(n) => *n,
        }
    }

    /// Text of token `i` (bench tokens are stamped now).
    pub fn token(&self, i: u64) -> String {
        match self {
            Self::Text(t) => t.get(i as usize).cloned().unwrap_or_default(),
            Self::Numbered(_) => format!("t{i} "),
            Self::Bench(_) => bench_token(),
        }
    }
}

fn bench_token() -> String {
    format!("@{};", unix_micros())
}

#[derive(Debug, Clone, Copy)]
pub enum Ending {
    /// Finish chunk, optional usage (preceded by a `"choices": null` chunk
    /// when `choices_null`), `[DONE]`.
    Stop { choices_null: bool },
    /// Abort the connection (body error): no finish chunk, no `[DONE]`.
    Cut,
    /// An in-band `{"error":...}` event, then `[DONE]`.
    StreamError,
}

enum Frame {
    Raw(Bytes),
    /// A content chunk; `text: None` means a bench token, stamped when the
    /// body is polled for it (i.e. right before it is written).
    Token {
        index: u64,
        text: Option<String>,
    },
    Abort,
}

#[derive(Serialize)]
struct Chunk<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'static str>,
    object: &'static str,
    created: u64,
    model: &'a str,
    /// `None` serializes as `"choices": null`.
    choices: Option<Vec<Choice<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<serde_json::Value>>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

const ID: &str = "chatcmpl-fake";
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";
const PING: &[u8] = b": ping\n\n";
const DONE: &[u8] = b"data: [DONE]\n\n";
const STREAM_ERROR: &[u8] =
    b"data: {\"error\":{\"message\":\"upstream exploded\",\"type\":\"server_error\"}}\n\n";

impl Ctx {
    fn chunk<'a>(&'a self, with_id: bool, choices: Option<Vec<Choice<'a>>>) -> Chunk<'a> {
        Chunk {
            id: with_id.then_some(ID),
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage: None,
        }
    }

    fn delta_chunk<'a>(
        &'a self,
        with_id: bool,
        delta: Delta<'a>,
        finish_reason: Option<&'static str>,
    ) -> Chunk<'a> {
        self.chunk(
            with_id,
            Some(vec![Choice {
                index: 0,
                delta,
                finish_reason,
            }]),
        )
    }
}

fn event(chunk: &Chunk<'_>) -> Bytes {
    let mut buf = b"data: ".to_vec();
    // Serializing these plain structs into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut buf, chunk);
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

fn render(ctx: &Ctx, frame: Frame) -> Result<Bytes, std::io::Error> {
    match frame {
        Frame::Raw(b) => Ok(b),
        Frame::Token { index, text } => {
            let text = text.unwrap_or_else(bench_token);
            let delta = Delta {
                content: Some(&text),
                ..Delta::default()
            };
            // Every third token chunk has no "id".
            Ok(event(&ctx.delta_chunk(index % 3 != 2, delta, None)))
        }
        Frame::Abort => Err(std::io::Error::other("fake upstream: cut")),
    }
}

/// Writes the whole stream for `plan` into `tx`. Returns early if the
/// receiving side is gone.
async fn produce(mut tx: mpsc::Sender<Frame>, ctx: Arc<Ctx>, plan: Plan) {
    macro_rules! emit {
        ($frame:expr) => {
            if tx.send($frame).await.is_err() {
                return;
            }
        };
    }
    emit!(Frame::Raw(Bytes::from_static(KEEP_ALIVE)));
    let p = match plan {
        Plan::Hang => {
            // Never wakes up; dropped together with the body.
            std::future::pending::<()>().await;
            return;
        }
        Plan::Tokens(p) => p,
    };
    if p.first_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(p.first_delay_ms)).await;
    }
    let role = Delta {
        role: Some("assistant"),
        content: Some(""),
        ..Delta::default()
    };
    emit!(Frame::Raw(event(&ctx.delta_chunk(true, role, None))));

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
            TokenSource::Bench(_) => None,
            other => Some(other.token(i)),
        };
        emit!(Frame::Token { index: i, text });
        if (i + 1) % 10 == 0 {
            emit!(Frame::Raw(Bytes::from_static(PING)));
        }
    }

    match p.ending {
        Ending::Cut => emit!(Frame::Abort),
        Ending::StreamError => {
            emit!(Frame::Raw(Bytes::from_static(STREAM_ERROR)));
            emit!(Frame::Raw(Bytes::from_static(DONE)));
        }
        Ending::Stop { choices_null } => {
            let finish = ctx.delta_chunk(true, Delta::default(), Some("stop"));
            emit!(Frame::Raw(event(&finish)));
            if ctx.include_usage {
                if choices_null {
                    emit!(Frame::Raw(event(&ctx.chunk(true, None))));
                }
                let mut usage = ctx.chunk(true, Some(Vec::new()));
                usage.usage = Some(Usage {
                    prompt_tokens: ctx.prompt_tokens,
                    completion_tokens: n,
                    total_tokens: ctx.prompt_tokens + n,
                });
                emit!(Frame::Raw(event(&usage)));
            }
            emit!(Frame::Raw(Bytes::from_static(DONE)));
        }
    }
}

/// A tool-call step the way OpenAI streams it: `: keep-alive`, role chunk, text deltas, then per call one
/// chunk with its `id`, `type`, `function.name` and empty `arguments`, followed by one chunk
/// per arguments fragment (`index` and `function.arguments` only), then the finish chunk
/// (`finish_reason: "tool_calls"`), usage if asked, `[DONE]`.
async fn produce_tool_calls(mut tx: mpsc::Sender<Frame>, ctx: Arc<Ctx>, p: ToolCallPlan) {
    macro_rules! emit {
        ($frame:expr) => {
            if tx.send($frame).await.is_err() {
                return;
            }
            if p.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(p.delay_ms)).await;
            } else {
                tokio::task::yield_now().await;
            }
        };
    }
    emit!(Frame::Raw(Bytes::from_static(KEEP_ALIVE)));
    let role = Delta {
        role: Some("assistant"),
        content: Some(""),
        ..Delta::default()
    };
    emit!(Frame::Raw(event(&ctx.delta_chunk(true, role, None))));
    for (i, text) in p.text.iter().enumerate() {
        emit!(Frame::Token {
            index: i as u64,
            text: Some(text.clone()),
        });
    }
    for (i, call) in p.calls.iter().enumerate() {
        let index = p.index(i);
        let head = Delta {
            tool_calls: Some(vec![serde_json::json!({
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            })]),
            ..Delta::default()
        };
        emit!(Frame::Raw(event(&ctx.delta_chunk(true, head, None))));
        for fragment in &call.fragments {
            let piece = Delta {
                tool_calls: Some(vec![serde_json::json!({
                    "index": index,
                    "function": {"arguments": fragment},
                })]),
                ..Delta::default()
            };
            emit!(Frame::Raw(event(&ctx.delta_chunk(true, piece, None))));
        }
    }
    let finish = ctx.delta_chunk(true, Delta::default(), Some("tool_calls"));
    emit!(Frame::Raw(event(&finish)));
    if ctx.include_usage {
        let n = p.chunk_count();
        let mut usage = ctx.chunk(true, Some(Vec::new()));
        usage.usage = Some(Usage {
            prompt_tokens: ctx.prompt_tokens,
            completion_tokens: n,
            total_tokens: ctx.prompt_tokens + n,
        });
        emit!(Frame::Raw(event(&usage)));
    }
    emit!(Frame::Raw(Bytes::from_static(DONE)));
}

/// Splits `text` into `n` pieces of about the same number of characters (fewer if `text`
/// has fewer characters; at least one, possibly empty).
pub fn split_fragments(text: &str, n: u64) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = (n.max(1) as usize).min(chars.len().max(1));
    let (base, extra) = (chars.len() / n, chars.len() % n);
    let mut out = Vec::with_capacity(n);
    let mut at = 0;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        out.push(chars[at..at + len].iter().collect());
        at += len;
    }
    out
}

/// Counts the stream in `active_streams`, and as a disconnect if the body is
/// dropped before it ended (normally or by a deliberate abort).
struct StreamGuard {
    state: Arc<AppState>,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.state.stream_ended(self.finished);
    }
}

/// The body stream: marks the guard finished when the inner stream ends or
/// yields its (deliberate) error.
struct Guarded {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>,
    guard: StreamGuard,
}

impl Stream for Guarded {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        if matches!(next, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard.finished = true;
        }
        next
    }
}

/// The SSE response of a tool-call step.
pub fn tool_calls_response(state: Arc<AppState>, ctx: Arc<Ctx>, plan: ToolCallPlan) -> Response {
    let (tx, rx) = mpsc::channel::<Frame>(0);
    let producer = futures::stream::once(produce_tool_calls(tx, ctx.clone(), plan))
        .filter_map(|()| futures::future::ready(None::<Frame>));
    let render_ctx = ctx;
    let frames = futures::stream::select(rx, producer).map(move |f| render(&render_ctx, f));
    guarded_sse(state, Box::pin(frames))
}

pub fn sse_response(state: Arc<AppState>, ctx: Arc<Ctx>, plan: Plan) -> Response {
    // Capacity 0: one frame in flight per sender, so the producer stays in
    // step with what hyper actually writes.
    let (tx, rx) = mpsc::channel::<Frame>(0);
    let producer = futures::stream::once(produce(tx, ctx.clone(), plan))
        .filter_map(|()| futures::future::ready(None::<Frame>));
    let render_ctx = ctx;
    let frames = futures::stream::select(rx, producer).map(move |f| render(&render_ctx, f));
    guarded_sse(state, Box::pin(frames))
}

/// Bytes of an SSE body; an `Err` aborts the connection.
pub type Frames = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A `text/event-stream` response over `frames`, counted in `active_streams` (and as a
/// disconnect if dropped before its end).
pub fn guarded_sse(state: Arc<AppState>, frames: Frames) -> Response {
    state.stream_started();
    let body = Guarded {
        inner: frames,
        guard: StreamGuard {
            state,
            finished: false,
        },
    };

    let mut resp = Response::new(Body::from_stream(body));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_fragments_cover_the_text() {
        assert_eq!(split_fragments("{\"a\":1}", 3), ["{\"a", "\":", "1}"]);
        assert_eq!(split_fragments("{}", 3), ["{", "}"]);
        assert_eq!(split_fragments("", 3), [""]);
        assert_eq!(split_fragments("héllo", 1), ["héllo"]);
        assert_eq!(split_fragments("héllo", 2), ["hél", "lo"]);
    }
}
