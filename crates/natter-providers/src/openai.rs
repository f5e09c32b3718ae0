//! A thin, tolerant client for OpenAI-compatible streaming Chat Completions.
//!
//! Written over reqwest rather than taken from an SDK crate because we need its failure
//! modes exactly (status, `retry-after`, cuts) and tolerance for what compatible servers
//! really send: missing ids, `finish_reason` as free text, `choices: null`, SSE comments
//! and keep-alives, and error objects inside the stream.
//!
//! # Tool calls
//! Offered tools go out as `tools: [{type: "function", function}]`; earlier calls and their
//! results go back as assistant `tool_calls` and `role: "tool"` messages. Streamed
//! `delta.tool_calls` fragments are assembled by `ToolCallAssembler`: keyed by `index`,
//! with `function.arguments` pieces concatenated. Some compatible servers (Ollama, some
//! proxies) reuse `index: 0` for every parallel call, or omit `index`, and tell calls apart
//! only by `id`, so a fragment bringing a new id at an index starts a new call; fragments
//! without an id continue the latest call at their index. The legacy single
//! `delta.function_call` is accepted too. Whole calls are emitted, in order of first
//! appearance, when the choice's `finish_reason` arrives (or at `[DONE]` if none came), with
//! made-up ids where the server sent none and `{}` for empty arguments. A call with the
//! server's own id also streams as it comes: `ToolCallStart` once its id and name are known,
//! then a `ToolCallDelta` per `arguments` piece.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::http::retry_after;
use futures::StreamExt;
use natter_core::event::Usage;
use natter_core::provider::{
    CompletionRequest, PromptMessage, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
    ProviderStream, Role, ToolCall,
};
use serde_json::{Value, json};

pub struct OpenAiProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    /// Whether the model takes images (`--vision`); without, they go as text lines.
    vision: bool,
}

impl OpenAiProvider {
    /// `base_url` is the API root, e.g. `https://api.openai.com/v1`.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let client = crate::http::client(connect_timeout)?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            vision: true,
        })
    }

    /// Whether the model has vision (default on): off sends images as
    /// `[image: name, WxH]` lines instead of `image_url` parts.
    pub fn with_vision(mut self, vision: bool) -> Self {
        self.vision = vision;
        self
    }

    fn body(request: &CompletionRequest, vision: bool) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| Self::message(m, vision))
            .collect();
        let mut body = json!({
            "model": request.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(max) = request.max_tokens {
            body["max_tokens"] = json!(max);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.parameters,
                        },
                    })
                })
                .collect();
            body["tools"] = Value::Array(tools);
        }
        body
    }

    fn message(m: &PromptMessage, vision: bool) -> Value {
        match m.role {
            Role::Tool => json!({
                "role": "tool",
                "tool_call_id": m.tool_call_id.as_deref().unwrap_or_default(),
                "content": m.content,
            }),
            Role::Assistant if !m.tool_calls.is_empty() => {
                let calls: Vec<Value> = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        })
                    })
                    .collect();
                let content = if m.content.is_empty() {
                    Value::Null
                } else {
                    json!(m.content)
                };
                json!({"role": "assistant", "content": content, "tool_calls": calls})
            }
            _ if m.images.is_empty() => json!({"role": m.role.as_str(), "content": m.content}),
            _ if !vision => {
                json!({"role": m.role.as_str(), "content": m.content_with_image_lines()})
            }
            // Images make `content` an array of parts: the text first, then each image as a
            // `data:` URL (the upstream fetches nothing from us).
            _ => {
                let mut parts = Vec::with_capacity(m.images.len() + 1);
                if !m.content.is_empty() {
                    parts.push(json!({"type": "text", "text": m.content}));
                }
                for image in &m.images {
                    parts
                        .push(json!({"type": "image_url", "image_url": {"url": image.data_url()}}));
                }
                json!({"role": m.role.as_str(), "content": parts})
            }
        }
    }
}

/// The upstream's own error message, if the body has one.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let msg = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .or_else(|| e.as_str())
        })
        .unwrap_or(body);
    msg.chars().take(500).collect()
}

pub(crate) fn status_error(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> ProviderError {
    let message = format!(
        "upstream answered {}: {}",
        status.as_u16(),
        error_message(body)
    );
    let kind = match status.as_u16() {
        429 => ProviderErrorKind::RateLimited,
        401 | 403 => ProviderErrorKind::Auth,
        400 | 413 | 422
            if body.contains("context_length_exceeded")
                || body.contains("maximum context length") =>
        {
            ProviderErrorKind::ContextTooLong
        }
        408 | 409 => ProviderErrorKind::Unavailable,
        400..=499 => ProviderErrorKind::BadRequest,
        _ => ProviderErrorKind::Unavailable,
    };
    ProviderError {
        kind,
        message,
        retry_after: retry_after(headers),
    }
}

/// The key of the legacy `delta.function_call`, apart from every real `index`.
const LEGACY_FUNCTION_CALL: u64 = u64::MAX;

/// Assembles streamed tool-call fragments into whole calls (see the module doc).
#[derive(Debug, Default)]
struct ToolCallAssembler {
    /// Calls in order of first appearance.
    calls: Vec<PartialCall>,
    /// For each fragment key (`index`, or [`LEGACY_FUNCTION_CALL`]), the position in `calls`
    /// of the latest call seen at that key.
    latest: HashMap<u64, usize>,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    arguments: String,
    /// `ToolCallStart` went out (the call has an id and a name), and this many bytes of
    /// `arguments` went out as `ToolCallDelta`s.
    started: bool,
    streamed: usize,
}

impl ToolCallAssembler {
    /// One element of `delta.tool_calls`. Returns what streams out of it: the call's start
    /// once its id and name are known, and the arguments received since.
    fn push(&mut self, fragment: &Value) -> Vec<ProviderEvent> {
        let text = |key: &str| {
            fragment
                .get("function")
                .and_then(|f| f.get(key))
                .and_then(Value::as_str)
        };
        self.add(
            fragment.get("index").and_then(Value::as_u64).unwrap_or(0),
            fragment.get("id").and_then(Value::as_str),
            text("name"),
            text("arguments"),
        )
    }

    /// The legacy `delta.function_call` (one call, no id, no index): it comes whole only.
    fn push_legacy(&mut self, function_call: &Value) {
        let text = |key: &str| function_call.get(key).and_then(Value::as_str);
        self.add(LEGACY_FUNCTION_CALL, None, text("name"), text("arguments"));
    }

    fn add(
        &mut self,
        key: u64,
        id: Option<&str>,
        name: Option<&str>,
        arguments: Option<&str>,
    ) -> Vec<ProviderEvent> {
        let id = id.filter(|s| !s.is_empty());
        let name = name.filter(|s| !s.is_empty());
        let arguments = arguments.unwrap_or_default();
        // The latest call at this key continues unless the fragment brings a different id.
        let current =
            self.latest
                .get(&key)
                .copied()
                .filter(|&i| match (id, self.calls[i].id.as_deref()) {
                    (Some(new), Some(held)) => new == held,
                    _ => true,
                });
        let i = match current {
            Some(i) => i,
            // An empty fragment (some servers send them) starts nothing.
            None if id.is_none() && name.is_none() && arguments.is_empty() => return Vec::new(),
            None => {
                self.calls.push(PartialCall::default());
                self.latest.insert(key, self.calls.len() - 1);
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[i];
        if call.id.is_none() {
            call.id = id.map(str::to_owned);
        }
        // OpenAI sends the name once; some servers repeat it on every fragment.
        if let Some(name) = name
            && call.name != name
        {
            call.name.push_str(name);
        }
        call.arguments.push_str(arguments);
        // Only a call with the upstream's own id streams: a made-up one is given at the end,
        // and an id arriving late would not match it.
        let mut out = Vec::new();
        let Some(id) = call.id.clone() else {
            return out;
        };
        if !call.started && !call.name.is_empty() {
            call.started = true;
            out.push(ProviderEvent::ToolCallStart {
                id: id.clone(),
                name: call.name.clone(),
            });
        }
        if call.started && call.arguments.len() > call.streamed {
            out.push(ProviderEvent::ToolCallDelta {
                id,
                arguments: call.arguments[call.streamed..].to_owned(),
            });
            call.streamed = call.arguments.len();
        }
        out
    }

    /// The assembled calls, in order of first appearance; the assembler is empty afterwards.
    fn finish(&mut self) -> Vec<ToolCall> {
        self.latest.clear();
        std::mem::take(&mut self.calls)
            .into_iter()
            // Blank arguments count as none: whitespace-only fragments are no call.
            .filter(|c| !c.name.is_empty() || !c.arguments.trim().is_empty())
            .map(|c| ToolCall {
                id: c.id.unwrap_or_else(made_up_call_id),
                name: c.name,
                arguments: if c.arguments.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    c.arguments
                },
            })
            .collect()
    }
}

/// An id for a call the upstream sent none for, unique within the process and unlikely to
/// repeat across restarts (the id goes back to the model with the call's result).
fn made_up_call_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("call_{ms:x}_{n}")
}

/// `tool_calls` and the legacy `function_call` become `tool_calls`. A step that made calls
/// but says `stop` (some compatible servers do) is reported as `tool_calls` too; anything
/// else is passed on as sent.
fn normalize_finish(reason: &str, made_calls: bool) -> String {
    match reason {
        "tool_calls" | "function_call" => "tool_calls".to_owned(),
        "stop" if made_calls => "tool_calls".to_owned(),
        other => other.to_owned(),
    }
}

/// What one SSE `data:` payload means.
#[derive(Debug, PartialEq)]
enum Chunk {
    Events(Vec<ProviderEvent>),
    Done,
    Error(String),
}

/// Parses one SSE `data:` payload. Tool-call fragments go into `calls`, which hands out the
/// whole calls just before the `Finish` they belong to.
fn parse_chunk(data: &str, calls: &mut ToolCallAssembler) -> Result<Chunk, ProviderError> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Chunk::Done);
    }
    if data.is_empty() {
        return Ok(Chunk::Events(Vec::new()));
    }
    let v: Value = serde_json::from_str(data).map_err(|e| {
        ProviderError::new(
            ProviderErrorKind::Protocol,
            format!(
                "unparseable stream chunk ({e}): {}",
                data.chars().take(200).collect::<String>()
            ),
        )
    })?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| err.as_str())
            .unwrap_or("error in the upstream stream");
        return Ok(Chunk::Error(msg.chars().take(500).collect()));
    }
    let mut events = Vec::new();
    if let Some(choices) = v.get("choices").and_then(Value::as_array) {
        // Natter asks for one completion; extra choices (n > 1) are ignored.
        if let Some(choice) = choices
            .iter()
            .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        {
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str)
                && !text.is_empty()
            {
                events.push(ProviderEvent::TextDelta(text.to_owned()));
            }
            if let Some(fragments) = choice
                .pointer("/delta/tool_calls")
                .and_then(Value::as_array)
            {
                for fragment in fragments {
                    events.extend(calls.push(fragment));
                }
            }
            if let Some(function_call) = choice
                .pointer("/delta/function_call")
                .filter(|f| f.is_object())
            {
                calls.push_legacy(function_call);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str)
                && !reason.is_empty()
            {
                let made = calls.finish();
                let made_calls = !made.is_empty();
                events.extend(made.into_iter().map(ProviderEvent::ToolCall));
                events.push(ProviderEvent::Finish(normalize_finish(reason, made_calls)));
            }
        }
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        let prompt = n("prompt_tokens").unwrap_or(0);
        let completion = n("completion_tokens").unwrap_or(0);
        events.push(ProviderEvent::Usage(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: n("total_tokens").unwrap_or(prompt.saturating_add(completion)),
        }));
    }
    Ok(Chunk::Events(events))
}

/// What the stream yields for one SSE `data:` payload, and whether the stream ends there.
fn step(
    data: &str,
    calls: &mut ToolCallAssembler,
) -> (Vec<Result<ProviderEvent, ProviderError>>, bool) {
    match parse_chunk(data, calls) {
        // Calls still pending at `[DONE]` (no `finish_reason` came) go out before the end;
        // the missing `Finish` is still the core's to judge.
        Ok(Chunk::Done) => (
            calls
                .finish()
                .into_iter()
                .map(|c| Ok(ProviderEvent::ToolCall(c)))
                .collect(),
            true,
        ),
        Ok(Chunk::Events(list)) => (list.into_iter().map(Ok).collect(), false),
        Ok(Chunk::Error(msg)) => (
            vec![Err(ProviderError::new(ProviderErrorKind::StreamError, msg))],
            true,
        ),
        Err(e) => (vec![Err(e)], true),
    }
}

/// The Provider contract allows one `Finish`, then only `Usage`: a repeated `finish_reason`
/// (some proxies repeat it on the usage chunk) and any content after the first are dropped.
fn keep_after_finish(item: &Result<ProviderEvent, ProviderError>, finished: &mut bool) -> bool {
    match item {
        Ok(ProviderEvent::Finish(_)) => !std::mem::replace(finished, true),
        Ok(ProviderEvent::Usage(_)) | Err(_) => true,
        Ok(
            ProviderEvent::TextDelta(_)
            | ProviderEvent::ToolCall(_)
            | ProviderEvent::ToolCallStart { .. }
            | ProviderEvent::ToolCallDelta { .. },
        ) => !*finished,
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        "openai"
    }

    // Runs inside the core's `provider.stream` span, which lasts until the stream ends.
    async fn stream(&self, request: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let url = format!("{}/chat/completions", self.base_url);
        let mut req = self
            .client
            .post(&url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&Self::body(&request, self.vision));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let response = req.send().await.map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Unavailable,
                format!("cannot reach {url}: {e}"),
            )
        })?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = response.text().await.unwrap_or_default();
            return Err(status_error(status, &headers, &body));
        }
        Ok(events(response.bytes_stream()))
    }
}

/// The provider events of an upstream response body (the SSE byte stream), however the
/// transport splits it into chunks.
pub(crate) fn events<S, B, E>(body: S) -> ProviderStream
where
    S: futures::Stream<Item = Result<B, E>> + Send + Unpin + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let events = crate::sse::events(body);
    // State: the tool calls being assembled, whether `[DONE]` or an error already ended the
    // stream, and whether the `Finish` went out.
    let state = (events, ToolCallAssembler::default(), false, false);
    let stream = futures::stream::unfold(
        state,
        |(mut events, mut calls, ended, mut finished)| async move {
            if ended {
                return None;
            }
            loop {
                match events.next().await {
                    None => return None,
                    Some(Err(e)) => {
                        let err = ProviderError::new(
                            ProviderErrorKind::Cut,
                            format!("the upstream stream broke: {e}"),
                        );
                        return Some((vec![Err(err)], (events, calls, true, finished)));
                    }
                    Some(Ok(event)) => {
                        let (mut items, ended) = step(&event.data, &mut calls);
                        items.retain(|item| keep_after_finish(item, &mut finished));
                        match (items, ended) {
                            (items, false) if items.is_empty() => continue,
                            (items, true) if items.is_empty() => return None,
                            (items, ended) => {
                                return Some((items, (events, calls, ended, finished)));
                            }
                        }
                    }
                }
            }
        },
    )
    .flat_map(futures::stream::iter);
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(data: &str) -> Result<Chunk, ProviderError> {
        parse_chunk(data, &mut ToolCallAssembler::default())
    }

    #[test]
    fn tolerant_chunks() {
        assert_eq!(parse("[DONE]").unwrap(), Chunk::Done);
        assert_eq!(
            parse(r#"{"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}"#).unwrap(),
            Chunk::Events(vec![ProviderEvent::TextDelta("hi".into())])
        );
        assert_eq!(parse(r#"{"choices":null}"#).unwrap(), Chunk::Events(vec![]));
        assert_eq!(
            parse(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"eos_token"}]}"#).unwrap(),
            Chunk::Events(vec![ProviderEvent::Finish("eos_token".into())])
        );
        assert_eq!(
            parse(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#).unwrap(),
            Chunk::Events(vec![ProviderEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7
            })])
        );
        assert_eq!(
            parse(r#"{"error":{"message":"boom"}}"#).unwrap(),
            Chunk::Error("boom".into())
        );
        assert!(parse("{nope").is_err());
    }

    #[test]
    fn status_mapping() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "1.5".parse().unwrap());
        let e = status_error(reqwest::StatusCode::TOO_MANY_REQUESTS, &h, "{}");
        assert_eq!(e.kind, ProviderErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
        let e = status_error(
            reqwest::StatusCode::BAD_REQUEST,
            &Default::default(),
            r#"{"error":{"code":"context_length_exceeded","message":"too long"}}"#,
        );
        assert_eq!(e.kind, ProviderErrorKind::ContextTooLong);
        assert_eq!(e.message, "upstream answered 400: too long");
        let e = status_error(
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            &Default::default(),
            "oops",
        );
        assert!(e.retryable());
    }

    /// Feeds an SSE body through the same per-payload logic as the stream loop.
    fn run(sse: &str) -> Vec<Result<ProviderEvent, ProviderError>> {
        let mut calls = ToolCallAssembler::default();
        let mut out = Vec::new();
        for line in sse.lines() {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let (items, ended) = step(data, &mut calls);
            out.extend(items);
            if ended {
                break;
            }
        }
        out
    }

    /// Streamed call input (`ToolCallStart`, `ToolCallDelta`) is not whole output.
    fn is_streamed(e: &ProviderEvent) -> bool {
        matches!(
            e,
            ProviderEvent::ToolCallStart { .. } | ProviderEvent::ToolCallDelta { .. }
        )
    }

    /// The whole events (see [`streamed`] for the rest).
    fn events(sse: &str) -> Vec<ProviderEvent> {
        let all = run(sse).into_iter().map(Result::unwrap);
        all.filter(|e| !is_streamed(e)).collect()
    }

    /// The call input events only.
    fn streamed(sse: &str) -> Vec<ProviderEvent> {
        let all = run(sse).into_iter().map(Result::unwrap);
        all.filter(is_streamed).collect()
    }

    fn start(id: &str, name: &str) -> ProviderEvent {
        ProviderEvent::ToolCallStart {
            id: id.into(),
            name: name.into(),
        }
    }

    fn delta(id: &str, arguments: &str) -> ProviderEvent {
        ProviderEvent::ToolCallDelta {
            id: id.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn call_input_streams_by_id_before_the_whole_call() {
        assert_eq!(
            streamed(OPENAI_SINGLE),
            vec![
                start("call_Xk9", "get_weather"),
                delta("call_Xk9", "{\""),
                delta("call_Xk9", "location"),
                delta("call_Xk9", "\":\""),
                delta("call_Xk9", "Paris"),
                delta("call_Xk9", ", France\"}"),
            ]
        );
        let all: Vec<ProviderEvent> = run(OPENAI_SINGLE).into_iter().map(Result::unwrap).collect();
        let whole = all
            .iter()
            .position(|e| matches!(e, ProviderEvent::ToolCall(_)));
        let last_delta = all.iter().rposition(is_streamed);
        assert!(
            last_delta < whole,
            "the whole call comes after its input: {all:?}"
        );
        assert!(natter_core::provider::check_stream(&run(OPENAI_SINGLE)).is_ok());
        // Calls without an id of their own (made up at the end) come whole only.
        let no_id = r#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"type":"function","function":{"name":"now","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}
"#;
        assert!(streamed(no_id).is_empty());
    }

    fn call(id: &str, name: &str, arguments: &str) -> ProviderEvent {
        ProviderEvent::ToolCall(ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        })
    }

    fn finish(reason: &str) -> ProviderEvent {
        ProviderEvent::Finish(reason.into())
    }

    /// OpenAI's own format: one call, its arguments split over many chunks, then usage.
    const OPENAI_SINGLE: &str = r#"data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_Xk9","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"location"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\":\""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"Paris"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":", France\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-A1","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":81,"completion_tokens":17,"total_tokens":98}}

data: [DONE]

"#;

    #[test]
    fn openai_single_call_split_over_chunks() {
        assert_eq!(
            events(OPENAI_SINGLE),
            vec![
                call("call_Xk9", "get_weather", r#"{"location":"Paris, France"}"#),
                finish("tool_calls"),
                ProviderEvent::Usage(Usage {
                    prompt_tokens: 81,
                    completion_tokens: 17,
                    total_tokens: 98
                }),
            ]
        );
    }

    #[test]
    fn openai_parallel_calls_interleaved() {
        let sse = r#"data: {"id":"chatcmpl-B2","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-B2","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_B","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-B2","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-B2","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\":"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-B2","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"CET\"}"}},{"index":0,"function":{"arguments":"\"Oslo\"}"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-B2","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: [DONE]
"#;
        assert_eq!(
            events(sse),
            vec![
                call("call_A", "get_weather", r#"{"city":"Oslo"}"#),
                call("call_B", "get_time", r#"{"tz":"CET"}"#),
                finish("tool_calls"),
            ]
        );
    }

    /// Ollama-style: every call at `index: 0`, told apart only by id; whole calls per chunk
    /// and calls whose later fragments carry no id.
    #[test]
    fn index_zero_reused_with_distinct_ids() {
        let whole = r#"data: {"id":"chatcmpl-431","object":"chat.completion.chunk","created":1744200000,"model":"qwen2.5-coder:7b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_h1","index":0,"type":"function","function":{"name":"file_write","arguments":"{\"filePath\":\"hello.py\",\"content\":\"print(\\\"hello\\\")\"}"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-431","object":"chat.completion.chunk","created":1744200000,"model":"qwen2.5-coder:7b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_w2","index":0,"type":"function","function":{"name":"file_write","arguments":"{\"filePath\":\"world.py\",\"content\":\"print(\\\"world\\\")\"}"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-431","object":"chat.completion.chunk","created":1744200000,"model":"qwen2.5-coder:7b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"tool_calls"}]}

data: [DONE]
"#;
        assert_eq!(
            events(whole),
            vec![
                call(
                    "call_h1",
                    "file_write",
                    r#"{"filePath":"hello.py","content":"print(\"hello\")"}"#
                ),
                call(
                    "call_w2",
                    "file_write",
                    r#"{"filePath":"world.py","content":"print(\"world\")"}"#
                ),
                finish("tool_calls"),
            ]
        );

        let fragmented = r#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"add","arguments":""}}]},"finish_reason":null}]}
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":3,"}}]},"finish_reason":null}]}
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"b\":12}"}}]},"finish_reason":null}]}
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_B","type":"function","function":{"name":"multiply","arguments":""}}]},"finish_reason":null}]}
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":11,"}}]},"finish_reason":null}]}
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_B","function":{"arguments":"\"b\":49}"}}]},"finish_reason":null}]}
data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}
data: [DONE]
"#;
        assert_eq!(
            events(fragmented),
            vec![
                call("call_A", "add", r#"{"a":3,"b":12}"#),
                call("call_B", "multiply", r#"{"a":11,"b":49}"#),
                finish("tool_calls"),
            ]
        );

        // Older servers leave `index` out altogether.
        let no_index = r#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"id":"call_1","type":"function","function":{"name":"a","arguments":"{}"}}]}}]}
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"id":"call_2","type":"function","function":{"name":"b","arguments":"{\"x\":1}"}}]}}]}
data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}
data: [DONE]
"#;
        assert_eq!(
            events(no_index),
            vec![
                call("call_1", "a", "{}"),
                call("call_2", "b", r#"{"x":1}"#),
                // `stop` after calls is reported as `tool_calls`.
                finish("tool_calls"),
            ]
        );
    }

    #[test]
    fn missing_ids_are_made_up_and_empty_arguments_become_an_object() {
        let sse = r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"type":"function","function":{"name":"now","arguments":""}}]},"finish_reason":null}]}
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"","type":"function","function":{"name":"search"}}]},"finish_reason":null}]}
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"q\":\"rust\"}"}}]},"finish_reason":null}]}
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":2,"function":{"arguments":""}}]},"finish_reason":null}]}
data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}
data: [DONE]
"#;
        let got = events(sse);
        assert_eq!(got.len(), 3, "{got:?}");
        let ProviderEvent::ToolCall(now) = &got[0] else {
            panic!("{got:?}")
        };
        let ProviderEvent::ToolCall(search) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!((now.name.as_str(), now.arguments.as_str()), ("now", "{}"));
        assert_eq!(
            (search.name.as_str(), search.arguments.as_str()),
            ("search", r#"{"q":"rust"}"#)
        );
        assert!(now.id.starts_with("call_") && search.id.starts_with("call_"));
        assert_ne!(now.id, search.id);
        assert_eq!(got[2], finish("tool_calls"));
    }

    #[test]
    fn text_then_tool_call() {
        let sse = r#"data: {"id":"chatcmpl-C3","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}

data: {"id":"chatcmpl-C3","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Let me "},"finish_reason":null}]}

data: {"id":"chatcmpl-C3","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"check."},"finish_reason":null}]}

data: {"id":"chatcmpl-C3","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_q","type":"function","function":{"name":"lookup","arguments":"{\"term\""}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-C3","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":\"natter\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}

data: [DONE]
"#;
        assert_eq!(
            events(sse),
            vec![
                ProviderEvent::TextDelta("Let me ".into()),
                ProviderEvent::TextDelta("check.".into()),
                call("call_q", "lookup", r#"{"term":"natter"}"#),
                finish("tool_calls"),
                ProviderEvent::Usage(Usage {
                    prompt_tokens: 10,
                    completion_tokens: 5,
                    total_tokens: 15
                }),
            ]
        );
    }

    #[test]
    fn legacy_function_call() {
        let sse = r#"data: {"id":"chatcmpl-D4","object":"chat.completion.chunk","model":"gpt-3.5-turbo-0613","choices":[{"index":0,"delta":{"role":"assistant","content":null,"function_call":{"name":"get_current_weather","arguments":""}},"finish_reason":null}]}

data: {"id":"chatcmpl-D4","object":"chat.completion.chunk","model":"gpt-3.5-turbo-0613","choices":[{"index":0,"delta":{"function_call":{"arguments":"{\n  \"location\": "}},"finish_reason":null}]}

data: {"id":"chatcmpl-D4","object":"chat.completion.chunk","model":"gpt-3.5-turbo-0613","choices":[{"index":0,"delta":{"function_call":{"arguments":"\"Boston, MA\"\n}"}},"finish_reason":null}]}

data: {"id":"chatcmpl-D4","object":"chat.completion.chunk","model":"gpt-3.5-turbo-0613","choices":[{"index":0,"delta":{},"finish_reason":"function_call"}]}

data: [DONE]
"#;
        let got = events(sse);
        assert_eq!(got.len(), 2, "{got:?}");
        let ProviderEvent::ToolCall(c) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(c.name, "get_current_weather");
        assert_eq!(c.arguments, "{\n  \"location\": \"Boston, MA\"\n}");
        assert!(c.id.starts_with("call_"));
        assert_eq!(got[1], finish("tool_calls"));
    }

    #[test]
    fn calls_pending_at_done_go_out_without_a_finish() {
        let sse = r#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_z","type":"function","function":{"name":"ping","arguments":"{}"}}]},"finish_reason":null}]}
data: [DONE]
data: {"choices":[{"index":0,"delta":{"content":"after the end"}}]}
"#;
        assert_eq!(events(sse), vec![call("call_z", "ping", "{}")]);
        // No calls: `[DONE]` just ends.
        assert!(run("data: [DONE]\n").is_empty());
    }

    #[test]
    fn huge_usage_counts_do_not_overflow() {
        // Found while fuzzing: `prompt_tokens + completion_tokens` overflowed (a panic with
        // overflow checks, a wrapped total without).
        let max = u64::MAX;
        let chunk =
            format!(r#"{{"choices":[],"usage":{{"prompt_tokens":{max},"completion_tokens":1}}}}"#);
        assert_eq!(
            parse(&chunk).unwrap(),
            Chunk::Events(vec![ProviderEvent::Usage(Usage {
                prompt_tokens: max,
                completion_tokens: 1,
                total_tokens: max
            })])
        );
    }

    #[test]
    fn whitespace_fragments_make_no_call() {
        // Found by fuzzing: a nameless fragment of blank arguments made a phantom call (and
        // turned a `stop` into `tool_calls`).
        let sse = r#"data: {"choices":[{"index":0,"delta":{"content":"Hi","tool_calls":[{"index":0,"function":{"arguments":" "}}]},"finish_reason":"stop"}]}
"#;
        assert_eq!(
            events(sse),
            vec![ProviderEvent::TextDelta("Hi".into()), finish("stop")]
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        // Found by fuzzing: eventsource-stream 0.2.3 panics on a body starting with a BOM.
        let body = b"\xEF\xBB\xBFdata: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
        for cut in [0, 1, 2, 3, 4] {
            let chunks = vec![body[..cut].to_vec(), body[cut..].to_vec()];
            let body = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
            let got: Vec<_> = futures::executor::block_on(super::events(body).collect());
            let got: Vec<ProviderEvent> = got.into_iter().map(Result::unwrap).collect();
            assert_eq!(
                got,
                vec![ProviderEvent::TextDelta("hi".into())],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn one_finish_then_only_usage() {
        // A proxy that repeats `finish_reason` on its usage chunk and sends text after it.
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"late\"},\"finish_reason\":\"stop\"}],",
            "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n",
            "data: [DONE]\n\n",
        );
        let body = futures::stream::iter([Ok::<_, std::io::Error>(body.as_bytes().to_vec())]);
        let got: Vec<_> = futures::executor::block_on(super::events(body).collect());
        assert_eq!(natter_core::provider::check_stream(&got), Ok(()));
        let got: Vec<ProviderEvent> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got,
            vec![
                ProviderEvent::TextDelta("hi".into()),
                finish("stop"),
                ProviderEvent::Usage(Usage {
                    prompt_tokens: 1,
                    completion_tokens: 2,
                    total_tokens: 3
                }),
            ]
        );
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(normalize_finish("tool_calls", true), "tool_calls");
        assert_eq!(normalize_finish("function_call", true), "tool_calls");
        assert_eq!(normalize_finish("stop", false), "stop");
        assert_eq!(normalize_finish("stop", true), "tool_calls");
        assert_eq!(normalize_finish("length", true), "length");
        assert_eq!(normalize_finish("content_filter", false), "content_filter");
        assert_eq!(normalize_finish("eos_token", false), "eos_token");
    }

    fn request_with_tools() -> CompletionRequest {
        CompletionRequest {
            model: "gpt-4o".into(),
            messages: vec![
                PromptMessage::text(Role::System, "be brief"),
                PromptMessage::text(Role::User, "weather in Oslo and Paris?"),
                PromptMessage {
                    role: Role::Assistant,
                    content: String::new(),
                    tool_calls: vec![
                        ToolCall {
                            id: "call_A".into(),
                            name: "get_weather".into(),
                            arguments: r#"{"city":"Oslo"}"#.into(),
                        },
                        ToolCall {
                            id: "call_B".into(),
                            name: "get_weather".into(),
                            arguments: r#"{"city":"Paris"}"#.into(),
                        },
                    ],
                    tool_call_id: None,
                    images: Vec::new(),
                },
                PromptMessage {
                    role: Role::Tool,
                    content: r#"{"temp_c":4}"#.into(),
                    tool_calls: Vec::new(),
                    tool_call_id: Some("call_A".into()),
                    images: Vec::new(),
                },
                PromptMessage {
                    role: Role::Tool,
                    content: r#"{"temp_c":11}"#.into(),
                    tool_calls: Vec::new(),
                    tool_call_id: Some("call_B".into()),
                    images: Vec::new(),
                },
                PromptMessage {
                    role: Role::Assistant,
                    content: "Checking once more.".into(),
                    tool_calls: vec![ToolCall {
                        id: "call_C".into(),
                        name: "get_weather".into(),
                        arguments: "{}".into(),
                    }],
                    tool_call_id: None,
                    images: Vec::new(),
                },
            ],
            max_tokens: Some(100),
            temperature: None,
            tools: vec![natter_core::provider::ToolSpec {
                name: "get_weather".into(),
                description: "Current weather for a city.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                }),
            }],
        }
    }

    #[test]
    fn request_body_with_tools() {
        let body = OpenAiProvider::body(&request_with_tools(), true);
        assert_eq!(
            body["tools"],
            json!([{
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }])
        );
        assert_eq!(
            body["messages"],
            json!([
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather in Oslo and Paris?"},
                {
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [
                        {"id": "call_A", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                        {"id": "call_B", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    ],
                },
                {"role": "tool", "tool_call_id": "call_A", "content": "{\"temp_c\":4}"},
                {"role": "tool", "tool_call_id": "call_B", "content": "{\"temp_c\":11}"},
                {
                    "role": "assistant",
                    "content": "Checking once more.",
                    "tool_calls": [{"id": "call_C", "type": "function",
                                    "function": {"name": "get_weather", "arguments": "{}"}}],
                },
            ])
        );
        assert_eq!(body["max_tokens"], json!(100));
        assert_eq!(body["stream"], json!(true));

        // No tools: no `tools` key at all, and plain messages as before.
        let mut plain = request_with_tools();
        plain.tools.clear();
        plain.messages.truncate(2);
        let body = OpenAiProvider::body(&plain, true);
        assert!(body.get("tools").is_none(), "{body}");
        assert_eq!(
            body["messages"][1],
            json!({"role": "user", "content": "weather in Oslo and Paris?"})
        );
    }

    fn png(name: &str) -> natter_core::provider::PromptImage {
        natter_core::provider::PromptImage {
            name: name.into(),
            mime_type: "image/png".into(),
            width: 2,
            height: 3,
            data: std::sync::Arc::from(&b"\x89PNG"[..]),
        }
    }

    #[test]
    fn images_go_as_image_url_parts_or_as_lines_without_vision() {
        let mut m = PromptMessage::text(Role::User, "what is this?");
        m.images = vec![png("a.png"), png("b.png")];
        let request = CompletionRequest {
            model: "m".into(),
            messages: vec![m],
            max_tokens: None,
            temperature: None,
            tools: Vec::new(),
        };
        let body = OpenAiProvider::body(&request, true);
        assert_eq!(
            body["messages"][0],
            json!({"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
            ]})
        );
        let body = OpenAiProvider::body(&request, false);
        assert_eq!(
            body["messages"][0],
            json!({"role": "user",
                   "content": "what is this?\n[image: a.png, 2x3]\n[image: b.png, 2x3]"})
        );
    }

    /// The whole path: a local HTTP/1.1 server sends an SSE fixture (in small writes, as a
    /// real upstream would) and `OpenAiProvider::stream` turns it into events.
    #[tokio::test]
    async fn stream_over_a_local_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // reqwest is built with `rustls-no-provider`; the binary installs one in `main`.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            // Read the request: headers, then `content-length` bytes of body.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client hung up before sending its request");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    break (end + 4, length);
                }
            };
            while buf.len() < head_end + length {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let body: Value = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap();

            sock.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                  cache-control: no-cache\r\nconnection: close\r\n\r\n: keep-alive\n\n",
            )
            .await
            .unwrap();
            for piece in OPENAI_SINGLE.as_bytes().chunks(97) {
                sock.write_all(piece).await.unwrap();
                sock.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            sock.shutdown().await.unwrap();
            (head, body)
        });

        let provider =
            OpenAiProvider::new(&format!("http://{addr}/v1/"), Some("sk-test".into()), {
                Duration::from_secs(5)
            })
            .unwrap();
        let stream = provider.stream(request_with_tools()).await.unwrap();
        let got: Vec<ProviderEvent> = stream.map(Result::unwrap).collect().await;
        let got: Vec<ProviderEvent> = got.into_iter().filter(|e| !is_streamed(e)).collect();
        assert_eq!(
            got,
            vec![
                call("call_Xk9", "get_weather", r#"{"location":"Paris, France"}"#),
                finish("tool_calls"),
                ProviderEvent::Usage(Usage {
                    prompt_tokens: 81,
                    completion_tokens: 17,
                    total_tokens: 98
                }),
            ]
        );

        let (head, body) = server.await.unwrap();
        assert!(
            head.starts_with("POST /v1/chat/completions HTTP/1.1"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer sk-test"),
            "{head}"
        );
        assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(body["messages"][3]["role"], "tool");
    }
}
