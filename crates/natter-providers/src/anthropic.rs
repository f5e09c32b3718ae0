//! A thin, tolerant client for Anthropic's streaming Messages API (`POST /v1/messages`).
//!
//! Same shape as [`openai`](crate::openai): reqwest and an SSE parser rather than an SDK,
//! because Natter needs the failure modes exactly (status, `retry-after`, `overloaded_error`,
//! cuts). Anthropic streams typed events (`message_start`, `content_block_*`,
//! `message_delta`, `message_stop`, `ping`, `error`); this module folds them into
//! [`ProviderEvent`]s, assembling `tool_use` input from its `input_json_delta` fragments.
//! Event types it does not know (thinking blocks, future additions) are ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::http::retry_after;
use futures::StreamExt;
use natter_core::event::Usage;
use natter_core::provider::{
    CompletionRequest, PromptMessage, Provider, ProviderError, ProviderErrorKind, ProviderEvent,
    ProviderStream, Role, ToolCall,
};
use serde_json::{Value, json};

/// The API version Natter speaks (the `anthropic-version` header).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` is required by the Messages API; this is sent when the request sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

pub struct AnthropicProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    /// Whether the model takes images (`--vision`); without, they go as text lines.
    vision: bool,
}

impl AnthropicProvider {
    /// `base_url` is the API root without `/v1`, e.g. `https://api.anthropic.com`.
    /// Without a key no `x-api-key` header is sent (a local proxy may add it).
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
    /// `[image: name, WxH]` lines instead of `image` blocks.
    pub fn with_vision(mut self, vision: bool) -> Self {
        self.vision = vision;
        self
    }
}

/// The request body: system prompts lifted to the top-level `system`, tool calls and tool
/// results as content blocks.
fn body(request: &CompletionRequest, vision: bool) -> Value {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System && !m.content.is_empty())
        .map(|m| m.content.as_str())
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "stream": true,
        "messages": messages(&request.messages, vision),
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = request.temperature {
        // Anthropic accepts 0..=1 (OpenAI 0..=2).
        body["temperature"] = json!(t.clamp(0.0, 1.0));
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.parameters,
                })
            })
            .collect();
        body["tools"] = json!(tools);
    }
    body
}

fn messages(prompt: &[PromptMessage], vision: bool) -> Vec<Value> {
    let mut out = Vec::new();
    // Tool results waiting to go out as one user message.
    let mut results: Vec<Value> = Vec::new();
    for m in prompt {
        if m.role != Role::Tool && !results.is_empty() {
            out.push(json!({"role": "user", "content": std::mem::take(&mut results)}));
        }
        match m.role {
            Role::System => {}
            Role::Tool => results.push(json!({
                "type": "tool_result",
                "tool_use_id": m.tool_call_id.as_deref().unwrap_or_default(),
                "content": m.content,
            })),
            Role::Assistant if !m.tool_calls.is_empty() => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for call in &m.tool_calls {
                    let input = serde_json::from_str::<Value>(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": input,
                    }));
                }
                out.push(json!({"role": "assistant", "content": blocks}));
            }
            Role::User | Role::Assistant if !m.images.is_empty() && !vision => {
                out.push(json!({"role": m.role.as_str(), "content": m.content_with_image_lines()}));
            }
            // Images make `content` a list of blocks: the text, then each image inline.
            Role::User | Role::Assistant if !m.images.is_empty() => {
                let mut blocks = Vec::with_capacity(m.images.len() + 1);
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for image in &m.images {
                    blocks.push(json!({
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": image.mime_type,
                            "data": image.base64(),
                        },
                    }));
                }
                out.push(json!({"role": m.role.as_str(), "content": blocks}));
            }
            // The API rejects empty text content; an empty message adds nothing anyway.
            Role::User | Role::Assistant if m.content.is_empty() => {}
            Role::User | Role::Assistant => {
                out.push(json!({"role": m.role.as_str(), "content": m.content}));
            }
        }
    }
    if !results.is_empty() {
        out.push(json!({"role": "user", "content": results}));
    }
    out
}

/// `(type, message)` of an Anthropic error object `{type:"error", error:{type, message}}`;
/// the raw body as the message when it is not one.
fn error_parts(body: &str) -> (Option<String>, String) {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = err
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let msg = err
        .and_then(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .or_else(|| e.as_str())
        })
        .unwrap_or(body);
    (kind, msg.chars().take(500).collect())
}

/// Whether a 400's message says the prompt does not fit the model.
fn is_context_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "prompt is too long",
        "too long",
        "context window",
        "context length",
        "too many tokens",
    ]
    .iter()
    .any(|p| m.contains(p))
}

pub(crate) fn status_error(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> ProviderError {
    let (err_type, msg) = error_parts(body);
    let message = match &err_type {
        Some(t) => format!("upstream answered {} ({t}): {msg}", status.as_u16()),
        None => format!("upstream answered {}: {msg}", status.as_u16()),
    };
    let kind = match status.as_u16() {
        429 => ProviderErrorKind::RateLimited,
        401 | 403 => ProviderErrorKind::Auth,
        400 | 413 if is_context_error(&msg) => ProviderErrorKind::ContextTooLong,
        408 | 409 => ProviderErrorKind::Unavailable,
        400..=499 => ProviderErrorKind::BadRequest,
        // 5xx, including 529 `overloaded_error`.
        _ => ProviderErrorKind::Unavailable,
    };
    ProviderError {
        kind,
        message,
        retry_after: retry_after(headers),
    }
}

/// A content block being streamed.
#[derive(Debug)]
enum Block {
    Text,
    ToolUse {
        id: String,
        name: String,
        /// `input_json_delta` fragments so far.
        json: String,
        /// The `input` of `content_block_start` (normally `{}`), used when no fragment came.
        start_input: Option<Value>,
    },
    /// Thinking, server tools, future types: ignored.
    Other,
}

/// Folds Anthropic stream events into provider events.
#[derive(Debug, Default)]
struct Parser {
    input_tokens: u64,
    output_tokens: u64,
    stop_reason: Option<String>,
    blocks: BTreeMap<u64, Block>,
    /// `message_stop` was seen: the stream is complete.
    done: bool,
}

fn protocol_error(what: &str, data: &str) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Protocol,
        format!("{what}: {}", data.chars().take(200).collect::<String>()),
    )
}

/// The normalized finish reason.
fn finish_reason(stop_reason: Option<&str>) -> String {
    match stop_reason {
        None | Some("end_turn") | Some("stop_sequence") => "stop".into(),
        Some("max_tokens") => "length".into(),
        Some("tool_use") => "tool_calls".into(),
        Some("refusal") => "content_filter".into(),
        Some(other) => other.into(),
    }
}

impl Parser {
    /// Handles one SSE event. `sse_event` is the `event:` field, used when the JSON has no
    /// `type`. An `error` event comes back as `Err` ([`ProviderErrorKind::StreamError`]).
    fn on_event(
        &mut self,
        sse_event: &str,
        data: &str,
    ) -> Result<Vec<ProviderEvent>, ProviderError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| protocol_error(&format!("unparseable stream event ({e})"), data))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(sse_event)
            .to_owned();
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        let mut events = Vec::new();
        match kind.as_str() {
            "message_start" => {
                if let Some(u) = v.pointer("/message/usage") {
                    self.usage(u);
                }
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                let str_of = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or_default();
                let b = match str_of("type") {
                    "text" => {
                        let text = str_of("text");
                        if !text.is_empty() {
                            events.push(ProviderEvent::TextDelta(text.to_owned()));
                        }
                        Block::Text
                    }
                    "tool_use" => {
                        let id = call_id(str_of("id"), index);
                        // Its input streams as it comes (`input_json_delta`), then whole.
                        events.push(ProviderEvent::ToolCallStart {
                            id: id.clone(),
                            name: str_of("name").to_owned(),
                        });
                        Block::ToolUse {
                            id,
                            name: str_of("name").to_owned(),
                            json: String::new(),
                            start_input: block
                                .get("input")
                                .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                                .cloned(),
                        }
                    }
                    _ => Block::Other,
                };
                self.blocks.insert(index, b);
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        if let Some(text) = delta.get("text").and_then(Value::as_str)
                            && !text.is_empty()
                        {
                            events.push(ProviderEvent::TextDelta(text.to_owned()));
                        }
                    }
                    Some("input_json_delta") => {
                        let part = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        if let Some(Block::ToolUse { id, json, .. }) = self.blocks.get_mut(&index) {
                            json.push_str(part);
                            if !part.is_empty() {
                                events.push(ProviderEvent::ToolCallDelta {
                                    id: id.clone(),
                                    arguments: part.to_owned(),
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(block) = self.blocks.remove(&index) {
                    events.extend(tool_call(block));
                }
            }
            "message_delta" => {
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(u) = v.get("usage") {
                    self.usage(u);
                }
            }
            "message_stop" => {
                // Tool blocks never closed still go out whole, before the finish.
                for block in std::mem::take(&mut self.blocks).into_values() {
                    events.extend(tool_call(block));
                }
                events.push(ProviderEvent::Usage(Usage {
                    prompt_tokens: self.input_tokens,
                    completion_tokens: self.output_tokens,
                    total_tokens: self.input_tokens.saturating_add(self.output_tokens),
                }));
                events.push(ProviderEvent::Finish(finish_reason(
                    self.stop_reason.as_deref(),
                )));
                self.done = true;
            }
            "error" => {
                let err = v.get("error").unwrap_or(&Value::Null);
                let etype = err.get("type").and_then(Value::as_str).unwrap_or("error");
                let msg: String = err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error in the upstream stream")
                    .chars()
                    .take(500)
                    .collect();
                // overloaded_error / api_error are transient; others are reported the same
                // way (StreamError is retryable before the first token) with their message.
                return Err(ProviderError::new(
                    ProviderErrorKind::StreamError,
                    format!("upstream stream error ({etype}): {msg}"),
                ));
            }
            // `ping` and anything newer.
            _ => {}
        }
        Ok(events)
    }

    /// Reads token counts: `input_tokens` (plus cache reads/writes, which Anthropic counts
    /// apart) and the cumulative `output_tokens`. Absent fields keep what was known.
    fn usage(&mut self, u: &Value) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(input) = n("input_tokens") {
            self.input_tokens = input
                .saturating_add(n("cache_creation_input_tokens").unwrap_or(0))
                .saturating_add(n("cache_read_input_tokens").unwrap_or(0));
        }
        if let Some(output) = n("output_tokens") {
            self.output_tokens = output;
        }
    }
}

/// The block's id, or one made up from its index when the upstream sent none.
fn call_id(id: &str, index: u64) -> String {
    if id.is_empty() {
        format!("toolu_natter_{index}")
    } else {
        id.to_owned()
    }
}

fn tool_call(block: Block) -> Option<ProviderEvent> {
    let Block::ToolUse {
        id,
        name,
        json,
        start_input,
    } = block
    else {
        return None;
    };
    let arguments = if !json.trim().is_empty() {
        json
    } else if let Some(input) = start_input {
        input.to_string()
    } else {
        "{}".to_owned()
    };
    Some(ProviderEvent::ToolCall(ToolCall {
        id,
        name,
        arguments,
    }))
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        "anthropic"
    }

    // Runs inside the core's `provider.stream` span, which lasts until the stream ends.
    async fn stream(&self, request: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let url = format!("{}/v1/messages", self.base_url);
        let mut req = self
            .client
            .post(&url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&body(&request, self.vision));
        if let Some(key) = &self.api_key {
            req = req.header("x-api-key", key);
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
    // State: the parser, and whether the stream already ended (finish or error).
    let stream = futures::stream::unfold(
        (events, Parser::default(), false),
        |(mut events, mut parser, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match events.next().await {
                    None => {
                        let err = ProviderError::new(
                            ProviderErrorKind::Cut,
                            "the upstream stream ended without message_stop",
                        );
                        return Some((vec![Err(err)], (events, parser, true)));
                    }
                    Some(Err(e)) => {
                        let err = ProviderError::new(
                            ProviderErrorKind::Cut,
                            format!("the upstream stream broke: {e}"),
                        );
                        return Some((vec![Err(err)], (events, parser, true)));
                    }
                    Some(Ok(event)) => match parser.on_event(&event.event, &event.data) {
                        Ok(list) if list.is_empty() => continue,
                        Ok(list) => {
                            let done = parser.done;
                            return Some((
                                list.into_iter().map(Ok).collect(),
                                (events, parser, done),
                            ));
                        }
                        Err(e) => return Some((vec![Err(e)], (events, parser, true))),
                    },
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
    use natter_core::provider::ToolSpec;

    /// Runs a recorded SSE transcript through the parser, as the live stream does: events
    /// until the first error or `message_stop`, then `Cut` if it never came.
    fn run(sse: &str) -> Vec<Result<ProviderEvent, ProviderErrorKind>> {
        run_all(sse)
            .into_iter()
            .filter(|e| {
                !matches!(
                    e,
                    Ok(ProviderEvent::ToolCallStart { .. } | ProviderEvent::ToolCallDelta { .. })
                )
            })
            .collect()
    }

    /// [`run`] with the streamed call input (`ToolCallStart`, `ToolCallDelta`) too.
    fn run_all(sse: &str) -> Vec<Result<ProviderEvent, ProviderErrorKind>> {
        let mut parser = Parser::default();
        let mut out = Vec::new();
        for frame in sse.split("\n\n").filter(|f| !f.trim().is_empty()) {
            let mut event = "";
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            match parser.on_event(event, &data) {
                Ok(list) => out.extend(list.into_iter().map(Ok)),
                Err(e) => {
                    out.push(Err(e.kind));
                    return out;
                }
            }
            if parser.done {
                return out;
            }
        }
        out.push(Err(ProviderErrorKind::Cut));
        out
    }

    fn text(s: &str) -> Result<ProviderEvent, ProviderErrorKind> {
        Ok(ProviderEvent::TextDelta(s.into()))
    }

    fn usage(p: u64, c: u64) -> Result<ProviderEvent, ProviderErrorKind> {
        Ok(ProviderEvent::Usage(Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p.saturating_add(c),
        }))
    }

    fn finish(r: &str) -> Result<ProviderEvent, ProviderErrorKind> {
        Ok(ProviderEvent::Finish(r.into()))
    }

    const TEXT: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"#;

    #[test]
    fn text_and_usage() {
        assert_eq!(
            run(TEXT),
            vec![text("Hello"), text(" world"), usage(25, 15), finish("stop")]
        );
    }

    #[test]
    fn tool_use_with_split_json() {
        let sse = r#"event: message_start
data: {"type":"message_start","message":{"usage":{"input_tokens":472,"output_tokens":2}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"San Fra"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ncisco, CA\", \"unit\": \"fah"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_02","name":"now","input":{}}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}
"#;
        assert_eq!(
            run(sse),
            vec![
                text("Let me check."),
                Ok(ProviderEvent::ToolCall(ToolCall {
                    id: "toolu_01".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"location": "San Francisco, CA", "unit": "fahrenheit"}"#.into(),
                })),
                Ok(ProviderEvent::ToolCall(ToolCall {
                    id: "toolu_02".into(),
                    name: "now".into(),
                    arguments: "{}".into(),
                })),
                usage(472, 89),
                finish("tool_calls"),
            ]
        );
        // The input also streams as it comes, each call started before its pieces.
        let streamed: Vec<ProviderEvent> = run_all(sse)
            .into_iter()
            .flatten()
            .filter(|e| {
                matches!(
                    e,
                    ProviderEvent::ToolCallStart { .. } | ProviderEvent::ToolCallDelta { .. }
                )
            })
            .collect();
        let start = |id: &str, name: &str| ProviderEvent::ToolCallStart {
            id: id.into(),
            name: name.into(),
        };
        let delta = |piece: &str| ProviderEvent::ToolCallDelta {
            id: "toolu_01".into(),
            arguments: piece.into(),
        };
        assert_eq!(
            streamed,
            vec![
                start("toolu_01", "get_weather"),
                delta(r#"{"location": "San Fra"#),
                delta(r#"ncisco, CA", "unit": "fah"#),
                delta(r#"renheit"}"#),
                start("toolu_02", "now"),
            ]
        );
    }

    #[test]
    fn error_event_mid_stream() {
        let sse = r#"event: message_start
data: {"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":0}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"par"}}

event: error
data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

event: message_stop
data: {"type":"message_stop"}
"#;
        assert_eq!(
            run(sse),
            vec![text("par"), Err(ProviderErrorKind::StreamError)]
        );
        let e = Parser::default()
            .on_event(
                "error",
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"nope"}}"#,
            )
            .unwrap_err();
        assert_eq!(e.kind, ProviderErrorKind::StreamError);
        assert!(e.message.contains("invalid_request_error") && e.message.contains("nope"));
        assert!(e.retryable());
    }

    #[test]
    fn unknown_events_and_blocks_are_ignored() {
        let sse = r#"event: message_start
data: {"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"x"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: brand_new_event
data: {"type":"brand_new_event","anything":[1,2]}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"ok"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{}}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":7}}

event: message_stop
data: {"type":"message_stop"}
"#;
        assert_eq!(run(sse), vec![text("ok"), usage(15, 7), finish("length")]);
        // `type` missing from the JSON: the SSE event name is used.
        let mut p = Parser::default();
        assert_eq!(
            p.on_event(
                "content_block_delta",
                r#"{"index":0,"delta":{"type":"text_delta","text":"x"}}"#
            )
            .unwrap(),
            vec![ProviderEvent::TextDelta("x".into())]
        );
        assert_eq!(
            p.on_event("message_stop", "{}").unwrap(),
            vec![
                ProviderEvent::Usage(Usage::default()),
                ProviderEvent::Finish("stop".into())
            ]
        );
        assert_eq!(
            Parser::default().on_event("x", "{nope").unwrap_err().kind,
            ProviderErrorKind::Protocol
        );
    }

    #[test]
    fn cut_without_message_stop() {
        let cut: String = TEXT.split("event: message_delta").next().unwrap().into();
        assert_eq!(
            run(&cut),
            vec![text("Hello"), text(" world"), Err(ProviderErrorKind::Cut)]
        );
    }

    #[test]
    fn huge_usage_counts_do_not_overflow() {
        // Found while fuzzing: the token sums overflowed (a panic with overflow checks).
        let max = u64::MAX;
        let sse = format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"usage\":{{\"input_tokens\":{max},\"cache_read_input_tokens\":{max},\"output_tokens\":1}}}}}}\n\n\
             event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        );
        assert_eq!(run(&sse), vec![usage(max, 1), finish("stop")]);
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        // Found by fuzzing: eventsource-stream 0.2.3 panics on a body starting with a BOM.
        let body = format!("\u{feff}{TEXT}").into_bytes();
        let body = futures::stream::iter([Ok::<_, std::io::Error>(body)]);
        let got: Vec<_> = futures::executor::block_on(super::events(body).collect());
        let got: Vec<_> = got.into_iter().map(|r| r.map_err(|e| e.kind)).collect();
        assert_eq!(got, run(TEXT));
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason(Some("end_turn")), "stop");
        assert_eq!(finish_reason(Some("stop_sequence")), "stop");
        assert_eq!(finish_reason(Some("max_tokens")), "length");
        assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
        assert_eq!(finish_reason(Some("pause_turn")), "pause_turn");
    }

    #[test]
    fn status_mapping() {
        let none = reqwest::header::HeaderMap::new();
        let err = |t: &str, m: &str| {
            format!(r#"{{"type":"error","error":{{"type":"{t}","message":"{m}"}}}}"#)
        };
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        let e = status_error(
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            &h,
            &err("rate_limit_error", "slow down"),
        );
        assert_eq!(e.kind, ProviderErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        assert_eq!(
            e.message,
            "upstream answered 429 (rate_limit_error): slow down"
        );
        let overloaded = reqwest::StatusCode::from_u16(529).unwrap();
        let e = status_error(overloaded, &none, &err("overloaded_error", "Overloaded"));
        assert_eq!(e.kind, ProviderErrorKind::Unavailable);
        assert!(e.retryable());
        let e = status_error(reqwest::StatusCode::INTERNAL_SERVER_ERROR, &none, "oops");
        assert_eq!(e.kind, ProviderErrorKind::Unavailable);
        assert_eq!(e.message, "upstream answered 500: oops");
        for s in [401, 403] {
            let e = status_error(
                reqwest::StatusCode::from_u16(s).unwrap(),
                &none,
                &err("authentication_error", "invalid x-api-key"),
            );
            assert_eq!(e.kind, ProviderErrorKind::Auth);
            assert!(!e.retryable());
        }
        let e = status_error(
            reqwest::StatusCode::BAD_REQUEST,
            &none,
            &err(
                "invalid_request_error",
                "prompt is too long: 208000 tokens > 200000 maximum",
            ),
        );
        assert_eq!(e.kind, ProviderErrorKind::ContextTooLong);
        let e = status_error(
            reqwest::StatusCode::BAD_REQUEST,
            &none,
            &err("invalid_request_error", "messages: roles must alternate"),
        );
        assert_eq!(e.kind, ProviderErrorKind::BadRequest);
        let e = status_error(
            reqwest::StatusCode::NOT_FOUND,
            &none,
            &err("not_found_error", "model: claude-nope"),
        );
        assert_eq!(e.kind, ProviderErrorKind::BadRequest);
    }

    #[test]
    fn images_go_as_image_blocks_or_as_lines_without_vision() {
        let mut m = PromptMessage::text(Role::User, "what is this?");
        m.images = vec![natter_core::provider::PromptImage {
            name: "a.jpg".into(),
            mime_type: "image/jpeg".into(),
            width: 640,
            height: 480,
            data: std::sync::Arc::from(&b"\xFF\xD8\xFF"[..]),
        }];
        let prompt = vec![m];
        assert_eq!(
            messages(&prompt, true),
            vec![json!({"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}},
            ]})]
        );
        assert_eq!(
            messages(&prompt, false),
            vec![json!({"role": "user", "content": "what is this?\n[image: a.jpg, 640x480]"})]
        );
    }

    #[test]
    fn request_body() {
        let call = ToolCall {
            id: "toolu_1".into(),
            name: "lookup".into(),
            arguments: r#"{"q":"rust"}"#.into(),
        };
        let bad = ToolCall {
            id: "toolu_2".into(),
            name: "now".into(),
            arguments: "not json".into(),
        };
        let tool = |id: &str, content: &str| PromptMessage {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(id.into()),
            images: Vec::new(),
        };
        let request = CompletionRequest {
            model: "claude-x".into(),
            messages: vec![
                PromptMessage::text(Role::System, "Be brief."),
                PromptMessage::text(Role::System, "Be kind."),
                PromptMessage::text(Role::User, "find rust"),
                PromptMessage {
                    role: Role::Assistant,
                    content: "Looking.".into(),
                    tool_calls: vec![call, bad],
                    tool_call_id: None,
                    images: Vec::new(),
                },
                tool("toolu_1", r#"{"hits":3}"#),
                tool("toolu_2", r#""noon""#),
                PromptMessage::text(Role::Assistant, "Found 3."),
                PromptMessage::text(Role::User, "thanks"),
            ],
            max_tokens: None,
            temperature: Some(1.5),
            tools: vec![ToolSpec {
                name: "lookup".into(),
                description: "Searches.".into(),
                parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            }],
        };
        assert_eq!(
            body(&request, true),
            json!({
                "model": "claude-x",
                "max_tokens": 4096,
                "stream": true,
                "system": "Be brief.\n\nBe kind.",
                "temperature": 1.0,
                "messages": [
                    {"role": "user", "content": "find rust"},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Looking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "rust"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "{\"hits\":3}"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "\"noon\""},
                    ]},
                    {"role": "assistant", "content": "Found 3."},
                    {"role": "user", "content": "thanks"},
                ],
                "tools": [{
                    "name": "lookup",
                    "description": "Searches.",
                    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                }],
            })
        );
        let plain = CompletionRequest {
            model: "m".into(),
            messages: vec![PromptMessage::text(Role::User, "hi")],
            max_tokens: Some(10),
            temperature: None,
            tools: Vec::new(),
        };
        assert_eq!(
            body(&plain, true),
            json!({"model": "m", "max_tokens": 10, "stream": true,
                   "messages": [{"role": "user", "content": "hi"}]})
        );
    }
}
