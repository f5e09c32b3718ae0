//! A deterministic fake OpenAI-compatible Chat Completions (and Anthropic Messages) server
//! for Natter's integration tests and benchmarks. See README.md for the directive table.

mod anthropic;
mod directive;
mod stream;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::directive::{Scenario, parse_user_text};
use crate::stream::{
    Ending, Plan, PlannedCall, TokenPlan, TokenSource, ToolCallPlan, split_fragments,
};

#[derive(Debug, Parser)]
#[command(
    name = "natter-fake-upstream",
    about = "Deterministic fake OpenAI-compatible Chat Completions server"
)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        env = "NATTER_FAKE_UPSTREAM_LISTEN",
        default_value = "127.0.0.1:0"
    )]
    listen: String,
}

/// Counters reported by `/stats` and cleared by `/stats/reset`.
#[derive(Debug, Default)]
struct Counters {
    requests: u64,
    by_scenario: BTreeMap<String, u64>,
    disconnects: u64,
    /// Per-(scenario, key) request counts for `fail503` / `ratelimit`.
    fail_keys: HashMap<String, u64>,
    /// Headers and body of the last `/v1/messages` request.
    last_messages_request: Option<Value>,
    /// Bodies of the latest chat-completions requests (oldest first, at most
    /// [`KEPT_CHAT_REQUESTS`]), as parsed JSON.
    chat_requests: VecDeque<Value>,
}

/// How many chat-completions request bodies `/stats` keeps.
const KEPT_CHAT_REQUESTS: usize = 16;

#[derive(Debug, Default)]
pub struct AppState {
    counters: Mutex<Counters>,
    /// Streams currently open (a gauge; not reset).
    active_streams: AtomicI64,
}

impl AppState {
    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_request(&self, scenario: &str) {
        let mut c = self.counters();
        c.requests += 1;
        *c.by_scenario.entry(scenario.to_string()).or_default() += 1;
    }

    fn record_messages_request(&self, request: Value) {
        self.counters().last_messages_request = Some(request);
    }

    fn record_chat_request(&self, body: Value) {
        let mut c = self.counters();
        if c.chat_requests.len() == KEPT_CHAT_REQUESTS {
            c.chat_requests.pop_front();
        }
        c.chat_requests.push_back(body);
    }

    /// Increments and returns the request count for a failure key.
    fn bump_key(&self, key: String) -> u64 {
        let mut c = self.counters();
        let n = c.fail_keys.entry(key).or_default();
        *n += 1;
        *n
    }

    pub fn stream_started(&self) {
        self.active_streams.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_ended(&self, finished: bool) {
        self.active_streams.fetch_sub(1, Ordering::Relaxed);
        if !finished {
            self.counters().disconnects += 1;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let listener = match tokio::net::TcpListener::bind(&cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("natter-fake-upstream: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("natter-fake-upstream: local_addr: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "listening on http://{addr}")
            .and_then(|()| out.flush())
            .is_err()
        {
            eprintln!("natter-fake-upstream: cannot write to stdout");
        }
    }
    let listener = listener.tap_io(|tcp| {
        // Small SSE frames must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    let app = router(Arc::new(AppState::default()));
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("natter-fake-upstream: server error: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/messages", post(anthropic::messages))
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset_stats))
        .fallback(|| async {
            openai_error(
                StatusCode::NOT_FOUND,
                "Unknown endpoint",
                "invalid_request_error",
                None,
            )
        })
        .with_state(state)
}

async fn stats(State(st): State<Arc<AppState>>) -> Json<Value> {
    let c = st.counters();
    let fail_keys: BTreeMap<&String, &u64> = c.fail_keys.iter().collect();
    Json(serde_json::json!({
        "requests": c.requests,
        "by_scenario": c.by_scenario,
        "disconnects": c.disconnects,
        "active_streams": st.active_streams.load(Ordering::Relaxed),
        "fail_keys": fail_keys,
        "last_messages_request": c.last_messages_request,
        "last_chat_request": c.chat_requests.back(),
        "chat_requests": c.chat_requests,
    }))
}

async fn reset_stats(State(st): State<Arc<AppState>>) -> Json<Value> {
    *st.counters() = Counters::default();
    Json(serde_json::json!({ "ok": true }))
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    tools: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Text of a message's content: a string, or the `text` of the parts of an
/// array content (joined with newlines); anything else is empty.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("text").and_then(Value::as_str),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: Option<&'a str>,
}

fn openai_error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            code,
        },
    };
    (status, Json(body)).into_response()
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// Splits `text` into one-word tokens, each keeping the whitespace that
/// follows it, so that concatenating the tokens gives back `text`.
fn word_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut after_space = false;
    for ch in text.chars() {
        if ch.is_whitespace() {
            after_space = true;
        } else if after_space {
            out.push(std::mem::take(&mut cur));
            after_space = false;
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Per-request data shared by the response writers.
#[derive(Debug)]
pub struct Ctx {
    pub model: String,
    pub created: u64,
    pub include_usage: bool,
    pub prompt_tokens: u64,
}

async fn chat_completions(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body);
    if let Ok(v) = &parsed {
        st.record_chat_request(v.clone());
    }
    let req: ChatRequest = match parsed.and_then(serde_json::from_value) {
        Ok(r) => r,
        Err(e) => {
            st.count_request("invalid_request");
            return openai_error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid request body: {e}"),
                "invalid_request_error",
                None,
            );
        }
    };
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| content_text(m.content.as_ref()))
        .unwrap_or_default();
    let (scenario, user_text) = match parse_user_text(&last_user) {
        Ok(v) => v,
        Err(e) => {
            st.count_request("invalid_directive");
            return openai_error(
                StatusCode::BAD_REQUEST,
                &format!("natter-fake-upstream: {e}"),
                "invalid_request_error",
                Some("invalid_fake_directive"),
            );
        }
    };
    st.count_request(scenario.name());

    // For `toolcall`: the results the model got back, when the request ends with them (the
    // `tool` messages after the last assistant message), and whether tools are offered.
    let tool_results = req.messages.last().filter(|m| m.role == "tool").map(|_| {
        let after_assistant = req
            .messages
            .iter()
            .rposition(|m| m.role == "assistant")
            .map_or(0, |i| i + 1);
        req.messages[after_assistant..]
            .iter()
            .filter(|m| m.role == "tool")
            .map(|m| content_text(m.content.as_ref()))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let offers_tools = req
        .tools
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());

    let ctx = Ctx {
        model: req.model.unwrap_or_else(|| "fake-model".to_string()),
        created: unix_secs(),
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        prompt_tokens: req
            .messages
            .iter()
            .map(|m| content_text(m.content.as_ref()).split_whitespace().count() as u64)
            .sum(),
    };
    let streaming = req.stream == Some(true);

    let echo = |first_delay_ms: u64, delay_ms: u64| {
        Plan::Tokens(TokenPlan {
            tokens: TokenSource::Text(word_tokens(&format!("Echo: {user_text}"))),
            first_delay_ms,
            delay_ms,
            ending: Ending::Stop { choices_null: true },
        })
    };
    let numbered = |n: u64, delay_ms: u64, ending: Ending| {
        Plan::Tokens(TokenPlan {
            tokens: TokenSource::Numbered(n),
            first_delay_ms: 0,
            delay_ms,
            ending,
        })
    };
    let stop = Ending::Stop {
        choices_null: false,
    };

    let plan = match scenario {
        Scenario::Echo { delay_ms } => echo(0, delay_ms),
        Scenario::SlowFirst { delay_ms } => echo(delay_ms, 0),
        Scenario::Tokens { n, delay_ms } | Scenario::Drip { n, delay_ms } => {
            numbered(n, delay_ms, stop)
        }
        Scenario::Cut { after, delay_ms } => numbered(after, delay_ms, Ending::Cut),
        Scenario::StreamError { after, delay_ms } => numbered(after, delay_ms, Ending::StreamError),
        Scenario::Bench { n, delay_ms } => Plan::Tokens(TokenPlan {
            tokens: TokenSource::Bench(n),
            first_delay_ms: 0,
            delay_ms,
            ending: stop,
        }),
        Scenario::Hang => Plan::Hang,
        Scenario::ToolCall {
            name,
            args,
            calls,
            split,
            reuse_index,
            delay_ms,
        } => {
            let text = |t: String| {
                Plan::Tokens(TokenPlan {
                    tokens: TokenSource::Text(word_tokens(&t)),
                    first_delay_ms: 0,
                    delay_ms,
                    ending: stop,
                })
            };
            if let Some(results) = tool_results {
                text(format!("Tool said: {results}"))
            } else if offers_tools {
                let plan = ToolCallPlan {
                    text: word_tokens(&format!("Calling {name}.")),
                    calls: (1..=calls)
                        .map(|i| PlannedCall {
                            id: format!("call_{i}"),
                            name: name.clone(),
                            fragments: split_fragments(&args, split),
                        })
                        .collect(),
                    reuse_index,
                    delay_ms,
                };
                return if streaming {
                    stream::tool_calls_response(st, Arc::new(ctx), plan)
                } else {
                    tool_calls_json(&ctx, &plan)
                };
            } else {
                text("No tools left.".to_string())
            }
        }
        Scenario::ToolUse { .. } => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "natter-fake-upstream: tooluse is only served on /v1/messages",
                "invalid_request_error",
                Some("invalid_fake_directive"),
            );
        }
        Scenario::Fail503 { times, key } => {
            let seen = st.bump_key(format!("fail503:{key}"));
            if seen <= times {
                return openai_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "The server is overloaded or not ready yet (fake 503 {seen}/{times}, key {key:?})."
                    ),
                    "server_error",
                    None,
                );
            }
            echo(0, 0)
        }
        Scenario::Ratelimit {
            times,
            retry_after,
            retry_after_ms,
            key,
        } => {
            let seen = st.bump_key(format!("ratelimit:{key}"));
            if seen <= times {
                let mut resp = openai_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!(
                        "Rate limit reached (fake 429 {seen}/{times}, key {key:?}). Please try again in {retry_after}s."
                    ),
                    "rate_limit_exceeded",
                    Some("rate_limit_exceeded"),
                );
                let headers = resp.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&retry_after) {
                    headers.insert("retry-after", v);
                }
                headers.insert("retry-after-ms", HeaderValue::from(retry_after_ms));
                return resp;
            }
            echo(0, 0)
        }
        Scenario::Always500 => {
            return openai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server had an error while processing your request (fake always500).",
                "server_error",
                None,
            );
        }
        Scenario::Auth401 => {
            return openai_error(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided",
                "invalid_request_error",
                Some("invalid_api_key"),
            );
        }
        Scenario::Context400 => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "This model's maximum context length is 8192 tokens. However, your messages resulted in more tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                Some("context_length_exceeded"),
            );
        }
    };

    if streaming {
        stream::sse_response(st, Arc::new(ctx), plan)
    } else {
        non_streaming(ctx, plan).await
    }
}

/// Non-streaming reply of a tool-call step: one `chat.completion` with `tool_calls`.
fn tool_calls_json(ctx: &Ctx, p: &ToolCallPlan) -> Response {
    let n = p.chunk_count();
    let calls: Vec<Value> = p
        .calls
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.fragments.concat()},
            })
        })
        .collect();
    Json(serde_json::json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": p.text.concat(), "tool_calls": calls},
            "finish_reason": "tool_calls",
        }],
        "usage": {
            "prompt_tokens": ctx.prompt_tokens,
            "completion_tokens": n,
            "total_tokens": ctx.prompt_tokens + n,
        },
    }))
    .into_response()
}

/// Non-streaming reply: waits the total delay, then answers with one
/// `chat.completion` object.
async fn non_streaming(ctx: Ctx, plan: Plan) -> Response {
    let p = match plan {
        Plan::Hang => std::future::pending().await,
        Plan::Tokens(p) => p,
    };

    let total_delay = p
        .delay_ms
        .saturating_mul(p.tokens.len().saturating_sub(1))
        .saturating_add(p.first_delay_ms);
    if total_delay > 0 {
        tokio::time::sleep(Duration::from_millis(total_delay)).await;
    }
    match p.ending {
        Ending::Cut => {
            // Headers then a broken body: the connection is dropped.
            let body = Body::from_stream(futures::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("fake upstream: cut"))
            }));
            Response::new(body)
        }
        Ending::StreamError => openai_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "upstream exploded",
            "server_error",
            None,
        ),
        Ending::Stop { .. } => {
            let n = p.tokens.len();
            let content: String = (0..n).map(|i| p.tokens.token(i)).collect();
            Json(serde_json::json!({
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": ctx.created,
                "model": ctx.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }],
                "usage": {
                    "prompt_tokens": ctx.prompt_tokens,
                    "completion_tokens": n,
                    "total_tokens": ctx.prompt_tokens + n,
                },
            }))
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_tokens_keep_following_space() {
        assert_eq!(
            word_tokens("Echo: hello world"),
            ["Echo: ", "hello ", "world"]
        );
        assert_eq!(word_tokens("Echo: "), ["Echo: "]);
        assert_eq!(word_tokens("a  b\nc"), ["a  ", "b\n", "c"]);
        assert!(word_tokens("").is_empty());
    }

    #[test]
    fn content_text_variants() {
        assert_eq!(content_text(Some(&Value::String("hi".into()))), "hi");
        let parts = serde_json::json!([{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]);
        assert_eq!(content_text(Some(&parts)), "a\nb");
        assert_eq!(content_text(Some(&Value::Null)), "");
        assert_eq!(content_text(None), "");
    }
}
