//! The Provider seam: an LLM that streams a reply as events.
//!
//! # What an implementation must guarantee
//! - `stream` returns `Err` for failures before the reply starts (HTTP status, connect
//!   error), with [`ProviderError::retryable`] and [`ProviderError::retry_after`] set from
//!   what the upstream said. The core decides whether to retry.
//! - The stream yields [`ProviderEvent`]s in upstream order and holds exactly one
//!   [`ProviderEvent::Finish`], after every text delta and tool call; only
//!   [`ProviderEvent::Usage`] may follow it (OpenAI-compatible servers send usage in a chunk of
//!   its own after the finish chunk, and reordering would mean holding the finish back).
//!   Or the stream ends with an `Err` item instead of a `Finish` (e.g.
//!   [`ProviderErrorKind::Cut`] when the connection ended without one). An `Err` is always
//!   the last item; one after the `Finish` (a tail that broke) costs nothing: the core reads
//!   to the end of the stream and ignores it.
//! - `Usage` may come anywhere, more than once: each report is the step's count so far, and
//!   the last one counts.
//! - Dropping the stream cancels the request and closes the upstream connection.
//! - Tool calls arrive whole ([`ProviderEvent::ToolCall`]), in the order the model made them,
//!   before the step's `Finish` (reason `tool_calls`). Assembling streamed fragments is the
//!   provider's job, because each upstream fragments them differently.
//! - A provider may also stream a call's input as it comes, so a UI can show it growing:
//!   [`ProviderEvent::ToolCallStart`] once the call's id and name are known, then
//!   [`ProviderEvent::ToolCallDelta`]s with the arguments' text, then the whole `ToolCall`
//!   with the same id. Optional (a call may come whole only); a delta names a started call.
//!
//! [`check_stream`] checks a whole stream against these rules; every provider in the
//! workspace runs through it in `tools/natter-fake-upstream/tests/provider_contract.rs`.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use natter_protocol::ErrorCode;

use crate::event::Usage;

/// A chat message as context for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMessage {
    pub role: Role,
    pub content: String,
    /// On an assistant message: the tool calls it made (its `content` may then be empty).
    pub tool_calls: Vec<ToolCall>,
    /// On a [`Role::Tool`] message: the call it answers (`content` is the result as JSON).
    pub tool_call_id: Option<String>,
    /// On a user message: the images it carries (attachments), after `content`. Providers with
    /// vision send them as image parts; the others send [`PromptImage::text_line`] instead.
    pub images: Vec<PromptImage>,
}

impl PromptMessage {
    /// A plain text message.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            images: Vec::new(),
        }
    }

    /// `content` followed by one [`PromptImage::text_line`] per image: what a model without
    /// vision gets.
    pub fn content_with_image_lines(&self) -> String {
        let mut out = self.content.clone();
        for image in &self.images {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&image.text_line());
        }
        out
    }
}

/// An image attached to a message, as the model gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptImage {
    /// The file name the user gave.
    pub name: String,
    /// The sniffed type (`image/png`, `image/jpeg`, `image/gif`, `image/webp`).
    pub mime_type: String,
    pub width: u32,
    pub height: u32,
    /// The bytes, shared: a context is cloned per step and retry.
    pub data: std::sync::Arc<[u8]>,
}

impl PromptImage {
    /// `[image: <name>, <width>x<height>]`, for models without vision (CONTRACT §7.6).
    pub fn text_line(&self) -> String {
        format!("[image: {}, {}x{}]", self.name, self.width, self.height)
    }

    /// The bytes as standard base64 (Anthropic's `source.data`).
    pub fn base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&self.data)
    }

    /// `data:<mime>;base64,...` (OpenAI's `image_url.url`).
    pub fn data_url(&self) -> String {
        format!("data:{};base64,{}", self.mime_type, self.base64())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool's result, answering one of the previous assistant message's `tool_calls`.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// A tool the model may call: its name, what it does, and a JSON Schema for its input.
/// Serialized as stored with a message that declared it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parameters: serde_json::Value,
}

/// One tool call the model made, whole: providers assemble streamed fragments themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The upstream's call id (made up by the provider if the upstream sent none).
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: JSON text, not yet parsed or checked.
    pub arguments: String,
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    pub model: String,
    pub messages: Vec<PromptMessage>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// Tools the model may call; empty for none.
    pub tools: Vec<ToolSpec>,
}

/// What a provider streams.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    TextDelta(String),
    Usage(Usage),
    /// A complete tool call, sent before the [`Finish`](Self::Finish) of its step.
    ToolCall(ToolCall),
    /// The model started a tool call (see the module docs): its input follows as deltas.
    ToolCallStart {
        id: String,
        name: String,
    },
    /// The next piece of a started call's arguments, as the model writes them (JSON text).
    ToolCallDelta {
        id: String,
        arguments: String,
    },
    /// The upstream's finish reason, normalized where known: `stop`, `length`,
    /// `tool_calls`, `content_filter`; anything else as the upstream sent it.
    Finish(String),
}

/// How a provider call failed. Each kind maps to one stable `ai:error` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderErrorKind {
    /// 5xx, connection refused or reset before any output.
    Unavailable,
    /// 429.
    RateLimited,
    /// 401/403.
    Auth,
    /// The prompt is too long for the model.
    ContextTooLong,
    /// Another 4xx.
    BadRequest,
    /// An error object inside the stream.
    StreamError,
    /// The stream ended without finishing.
    Cut,
    /// The response was not what the protocol says (unparseable, wrong content type).
    Protocol,
}

impl ProviderErrorKind {
    pub fn code(self) -> ErrorCode {
        match self {
            Self::Unavailable | Self::Protocol => ErrorCode::UpstreamUnavailable,
            Self::RateLimited => ErrorCode::UpstreamRateLimited,
            Self::Auth => ErrorCode::UpstreamAuth,
            Self::ContextTooLong => ErrorCode::ContextTooLong,
            Self::BadRequest => ErrorCode::UpstreamBadRequest,
            Self::StreamError => ErrorCode::UpstreamError,
            Self::Cut => ErrorCode::UpstreamCut,
        }
    }

    /// Whether sending the same request again may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::Unavailable | Self::RateLimited | Self::StreamError | Self::Cut | Self::Protocol
        )
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ProviderErrorKind,
    pub message: String,
    /// How long the upstream asked us to wait (`retry-after`).
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }
}

pub type ProviderStream = Pin<Box<dyn Stream<Item = Result<ProviderEvent, ProviderError>> + Send>>;

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short name for logs and metrics (`openai`, `demo`).
    fn name(&self) -> &str;

    /// Starts a generation.
    async fn stream(&self, request: CompletionRequest) -> Result<ProviderStream, ProviderError>;

    /// Whether the model can be offered tools ([`CompletionRequest::tools`]). A provider that
    /// says no gets requests without them, and the turn's reply carries the
    /// `tools_not_offered` warning instead.
    fn offers_tools(&self) -> bool {
        true
    }
}

/// Checks the items of one whole stream against the contract in the module docs, for
/// provider tests. `Err` says which item broke which rule.
pub fn check_stream(items: &[Result<ProviderEvent, ProviderError>]) -> Result<(), String> {
    let mut finished = false;
    let mut started: Vec<&str> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Err(e) if i + 1 < items.len() => {
                return Err(format!(
                    "item {i}: an error ({e}) must be the last item, {} more follow",
                    items.len() - i - 1
                ));
            }
            Err(_) => return Ok(()),
            Ok(ProviderEvent::Finish(reason)) if finished => {
                return Err(format!("item {i}: a second Finish ({reason:?})"));
            }
            Ok(ProviderEvent::Finish(reason)) if reason.is_empty() => {
                return Err(format!("item {i}: a Finish without a reason"));
            }
            Ok(ProviderEvent::Finish(_)) => finished = true,
            Ok(ProviderEvent::Usage(_)) => {}
            Ok(other) if finished => {
                return Err(format!(
                    "item {i}: {other:?} after the Finish (only Usage may follow it)"
                ));
            }
            Ok(ProviderEvent::ToolCallStart { id, .. }) => started.push(id),
            Ok(ProviderEvent::ToolCallDelta { id, .. }) if !started.contains(&id.as_str()) => {
                return Err(format!(
                    "item {i}: a ToolCallDelta for `{id}`, which no ToolCallStart started"
                ));
            }
            Ok(_) => {}
        }
    }
    if finished {
        Ok(())
    } else {
        Err(format!(
            "the stream ended after {} items without a Finish or an error",
            items.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Result<ProviderEvent, ProviderError> {
        Ok(ProviderEvent::TextDelta(t.into()))
    }
    fn finish() -> Result<ProviderEvent, ProviderError> {
        Ok(ProviderEvent::Finish("stop".into()))
    }
    fn usage() -> Result<ProviderEvent, ProviderError> {
        Ok(ProviderEvent::Usage(Usage::default()))
    }
    fn cut() -> Result<ProviderEvent, ProviderError> {
        Err(ProviderError::new(ProviderErrorKind::Cut, "cut"))
    }

    #[test]
    fn streams_the_contract_allows() {
        for ok in [
            vec![text("a"), finish()],
            vec![usage(), text("a"), usage(), finish(), usage()],
            vec![text("a"), finish(), usage(), cut()],
            vec![text("a"), cut()],
            vec![cut()],
        ] {
            assert_eq!(check_stream(&ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn streams_the_contract_refuses() {
        let refused = |items: Vec<Result<ProviderEvent, ProviderError>>| {
            check_stream(&items).expect_err("should be refused")
        };
        assert!(refused(vec![text("a")]).contains("without a Finish"));
        assert!(refused(vec![]).contains("without a Finish"));
        assert!(refused(vec![finish(), finish()]).contains("second Finish"));
        assert!(refused(vec![finish(), text("late")]).contains("after the Finish"));
        assert!(refused(vec![cut(), text("a"), finish()]).contains("must be the last"));
        assert!(
            refused(vec![Ok(ProviderEvent::Finish(String::new()))]).contains("without a reason")
        );
        let delta = |id: &str| {
            Ok(ProviderEvent::ToolCallDelta {
                id: id.into(),
                arguments: "{".into(),
            })
        };
        assert!(refused(vec![delta("c1"), finish()]).contains("no ToolCallStart"));
        let start = Ok(ProviderEvent::ToolCallStart {
            id: "c1".into(),
            name: "f".into(),
        });
        assert_eq!(check_stream(&[start, delta("c1"), finish()]), Ok(()));
    }
}
