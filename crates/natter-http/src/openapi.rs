//! The OpenAPI 3.1 document of the HTTP faces. The router and the document come from the same
//! `#[utoipa::path]` annotations (utoipa-axum's `routes!`), so a route cannot be served without
//! being documented. The handlers build their JSON with `json!`; the types here only describe
//! those bodies (the schemathesis run in `scripts/schemathesis` checks that they agree).
//!
//! Ids a client picks (chat keys, user ids, …) are documented with the pattern
//! `^[A-Za-z0-9_-]{1,64}$`, written out at each site because utoipa's `pattern` takes only a
//! string literal. The server takes any id up to 256 bytes without control characters; the
//! pattern keeps generated examples (schemathesis) to ids a real client would send.

use std::collections::BTreeMap;

use natter_protocol::ErrorCode;
use serde_json::Value;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr};
use utoipa::{IntoParams, IntoResponses, Modify, ToSchema};

/// The document's frame: info, security scheme, tags, and what is left out and why.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Natter HTTP API",
        description = "Natter's HTTP faces: the Vercel AI SDK's chat transport (`/api/chat`), \
seed 002's realtime POST + SSE API (`/api/v1/chat/*`), chat history REST (`/api/v1/chats`), \
agents, attachments, and the operations endpoints.\n\n\
Socket.IO (`/socket.io/`) is not an HTTP API and is not described here: see docs/protocol.md. \
Neither are the playground's static pages (`/`, `/desk`, `/playground/*`).\n\n\
Auth: with a JWT secret configured, every route but the operations ones needs \
`Authorization: Bearer <jwt>` (a GET may pass `?token=<jwt>` instead). With auth off \
(development), the caller names itself with the `orgId` / `userId` hints (body or query).\n\n\
Errors are `{\"error\": {\"code\", \"message\", \"retryAfterMs\"?}}` with a 4xx status for \
every bad input; the codes are those of docs/protocol.md."
    ),
    modifiers(&Frame),
    tags(
        (name = "aisdk", description = "The Vercel AI SDK's `DefaultChatTransport` (UI Message Stream v1 over SSE) and `WebSocketChatTransport`"),
        (name = "realtime", description = "Seed 002's POST + SSE API; replies come over the SSE stream"),
        (name = "history", description = "Chat lists, summaries and messages"),
        (name = "agents", description = "The agents a chat can be bound to"),
        (name = "attachments", description = "File uploads and downloads"),
        (name = "ops", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme (optional: `{}` is the auth-off alternative) and the error codes.
struct Frame;

impl Modify for Frame {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        // The error bodies are referenced from `Errors`, which no derive registers.
        for (name, schema) in [
            (
                "ErrorResponse",
                <ErrorResponse as utoipa::PartialSchema>::schema(),
            ),
            (
                "ErrorDetail",
                <ErrorDetail as utoipa::PartialSchema>::schema(),
            ),
        ] {
            components.schemas.insert(name.to_owned(), schema);
        }
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 JWT (CONTRACT §5); only when the server has a JWT secret",
                    ))
                    .build(),
            ),
        );
    }
}

/// Fills in what the derive cannot: the error code catalog as an enum.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    if let Some(components) = doc.components.as_mut()
        && let Some(RefOr::T(Schema::Object(detail))) = components.schemas.get_mut("ErrorDetail")
        && let Some(RefOr::T(Schema::Object(code))) = detail.properties.get_mut("code")
    {
        code.enum_values = Some(
            ErrorCode::ALL
                .iter()
                .map(|c| Value::from(c.as_str()))
                .collect(),
        );
    }
    doc
}

/// `{code, message, retryAfterMs?}`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// One of the catalog's codes (docs/protocol.md).
    code: String,
    /// For humans.
    message: String,
    /// When to retry (rate limits), in milliseconds; `Retry-After` carries whole seconds.
    retry_after_ms: Option<u64>,
}

/// Every error: `{"error": {code, message}}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorResponse {
    error: ErrorDetail,
}

/// The errors any route may answer; the ones a route cannot produce simply never occur.
pub struct Errors;

impl IntoResponses for Errors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        let cases = [
            (
                "400",
                "Bad input: `invalid_payload`, `missing_field`, `invalid_field`",
            ),
            (
                "401",
                "`unauthorized` / `token_expired` (auth on only); `WWW-Authenticate: Bearer`",
            ),
            (
                "403",
                "`forbidden`: the token's holder may not do this, or a hint names someone else",
            ),
            (
                "404",
                "`not_found`: no such chat (or one the caller may not see)",
            ),
            ("405", "`method_not_allowed`"),
            (
                "409",
                "`no_active_turn`, `too_many_joins`, or a state conflict",
            ),
            ("413", "`too_large` / `quota_exceeded`"),
            ("415", "`unsupported_media_type`"),
            (
                "429",
                "`rate_limited` / `too_many_connections`; `Retry-After` in seconds",
            ),
            (
                "503",
                "`unavailable` / `shutdown`: the store or bus failed, or the server is stopping",
            ),
        ];
        let mut responses = ResponsesBuilder::new();
        for (status, description) in cases {
            responses = responses.response(status, error_response(description));
        }
        responses.build().responses
    }
}

fn error_response(description: &str) -> utoipa::openapi::response::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name(
                    "ErrorResponse",
                )))
                .build(),
        )
        .build()
}

/// Identity hints in the query (auth off), and the token of a GET that cannot set headers.
#[derive(IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[allow(dead_code)]
pub struct IdentityQuery {
    /// Auth off: the caller's org (default `default`). Auth on: must be the token's.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    /// Auth off: the caller's user id (default `anonymous`). Auth on: must be the token's.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
    /// `customer` (default), `human_agent` or `admin`; with auth on the token must allow it.
    #[param(inline)]
    client_type: Option<ClientType>,
    /// Auth on: the JWT, for a client that cannot send `Authorization` (EventSource,
    /// WebSocket). GETs only.
    token: Option<String>,
}

/// Who a client acts as (CONTRACT §7.1).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ClientType {
    Customer,
    HumanAgent,
    Admin,
}

/// Identity hints a JSON body may carry (auth off), like [`IdentityQuery`].
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct IdentityHints {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
    client_type: Option<ClientType>,
}

/// `{"success": true}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Success {
    success: bool,
}

/// Ops: `GET /healthz`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// Always `ok` while the process serves.
    status: String,
}

/// One backend's readiness.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BackendStatus {
    /// `ok` or `unavailable`.
    status: String,
    message: Option<String>,
}

/// Ops: `GET /readyz`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    status: String,
    /// Each backend (`store`, `bus`, `coordinator`) by name.
    backends: BTreeMap<String, BackendStatus>,
    /// Set when not ready: which backends failed.
    error: Option<ErrorDetail>,
}

// --- Seed 002's shapes (realtime/wire.rs builds them) ---

/// A reaction on a message (CONTRACT §7.3).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct EmojiReaction {
    emoji: String,
    user_id: String,
    /// Epoch milliseconds.
    created_at: i64,
}

/// An attachment as messages carry it (CONTRACT §7.6).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct MessageAttachment {
    id: String,
    name: String,
    mime_type: String,
    size: u64,
    /// `/api/v1/attachments/{id}`.
    url: String,
    width: Option<u32>,
    height: Option<u32>,
}

/// A failed reply's error.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MessageError {
    code: String,
    retryable: bool,
}

/// Something a reply did not do that its sender may expect: `tools_not_offered` when the
/// model could not be offered the turn's tools (the local and demo providers).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TurnWarning {
    code: String,
    message: String,
}

/// Token counts of a reply.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct LlmUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

/// Seed 002's `ChatMessage`, plus its `seq` in the chat's log. `role` is `user` (or the role a
/// user message was posted with), `ai` for replies, `tool` for tool calls and results.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ChatMessage {
    id: String,
    role: String,
    content: String,
    /// Epoch milliseconds (as `createdAt`).
    time: i64,
    /// `sent` or `failed`.
    status: String,
    sender_id: String,
    sender_name: Option<String>,
    created_at: i64,
    seq: u64,
    request_id: Option<String>,
    finish_reason: Option<String>,
    llm_usage: Option<LlmUsage>,
    error: Option<MessageError>,
    warnings: Option<Vec<TurnWarning>>,
    /// The AI SDK `UIMessage` parts the message was posted with.
    parts: Option<Value>,
    attachments: Option<Vec<MessageAttachment>>,
    reactions: Option<Vec<EmojiReaction>>,
    /// Tool messages: the tool's name, call id and the message they belong to.
    name: Option<String>,
    tool_call_id: Option<String>,
    reply_to: Option<String>,
    /// `server` or `client`: who runs the tool.
    executor: Option<String>,
    tool_calls: Option<Value>,
    /// A tool result's value (any JSON).
    result: Option<Value>,
}

/// The latest CSAT answer of a chat (CONTRACT §7.4).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct Csat {
    rating: i64,
    comment: Option<String>,
    submitted_at: i64,
    user_id: String,
}

/// Seed 002's `ChatSummary` (plus `createdAt`, `seq` and the handoff state).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ChatSummary {
    chat_key: String,
    title: String,
    /// The chat's creator, if known.
    #[schema(required)]
    user_id: Option<String>,
    /// `active` or `closed`.
    status: String,
    last_updated: i64,
    created_at: i64,
    pinned: bool,
    metadata: BTreeMap<String, Value>,
    is_background: bool,
    seq: u64,
    ai_engaged: bool,
    human_agent_engaged: bool,
    is_waiting_for_agent: bool,
    waiting_since: Option<i64>,
    csat: Option<Csat>,
    /// Only on members-only chats.
    members: Option<Vec<String>>,
}

/// A participant of a `Chat`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ChatUser {
    id: String,
    role: String,
}

/// Seed 002's `Chat`, with its latest messages.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct Chat {
    org_id: String,
    key: String,
    title: String,
    messages: Vec<ChatMessage>,
    start_time: i64,
    last_updated: i64,
    users: Vec<ChatUser>,
    status: String,
    ai_engaged: bool,
    human_agent_engaged: bool,
    is_waiting: bool,
    is_waiting_for_agent: bool,
    #[schema(required)]
    waiting_since: Option<i64>,
    human_agents: Vec<String>,
    metadata: BTreeMap<String, Value>,
    pinned: bool,
    seq: u64,
    epoch: String,
    #[schema(required)]
    csat: Option<Csat>,
}

// --- Request bodies of seed 002's POSTs ---

/// `POST /create`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct CreateChatRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
    client_type: Option<ClientType>,
    metadata: Option<BTreeMap<String, Value>>,
    /// A members-only chat: these users (and the creator, and org admins).
    #[schema(max_items = 100)]
    members: Option<Vec<String>>,
}

/// `POST /create` → the new chat's key.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct CreateChatResponse {
    chat_key: String,
}

/// The message of `POST /send`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SendMessage {
    /// The client's id for the message (default: a new one).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: Option<String>,
    /// The text; required unless `attachments` is given.
    content: Option<String>,
    /// Ids of uploaded attachments.
    #[schema(max_items = 10)]
    attachments: Option<Vec<String>>,
}

/// `POST /send`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct SendRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    chat_key: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
    message: SendMessage,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    trace_id: Option<String>,
    data: Option<BTreeMap<String, Value>>,
}

/// `POST /load`: the chat named by `chatKey`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ChatRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    chat_key: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
    client_type: Option<ClientType>,
}

/// `POST /load` → the chat.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoadResponse {
    chat: Chat,
}

/// `POST /typing`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct TypingRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    chat_key: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
    /// Default `true`.
    typing: Option<bool>,
}

/// `POST /end`; `data.reason` is kept.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct EndRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    chat_key: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
    data: Option<EndData>,
}

/// Why a chat ended.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EndData {
    reason: Option<String>,
}

/// The client events `POST /event` acts on.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ClientEventType {
    Typing,
    StoppedTyping,
    ChatEnded,
    ClientActionCallback,
    HumanAgentRequested,
    HumanAgentJoined,
    HumanAgentLeft,
    ReactionAdded,
    ReactionRemoved,
    CsatSubmitted,
}

/// `POST /event`: `{type, chatKey, data?}`. `data` by type: `client_action_callback`
/// `{toolCallId, result?, error?}`; `reaction_added` / `reaction_removed` `{messageId, emoji}`;
/// `csat_submitted` `{rating (1–5), comment?}`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct EventRequest {
    #[schema(rename = "type")]
    kind: ClientEventType,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    chat_key: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
    data: Option<BTreeMap<String, Value>>,
}

/// `POST /event` → `{success}`; reactions add the message's list, CSAT its `seq`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct EventResponse {
    success: bool,
    message_id: Option<String>,
    reactions: Option<Vec<EmojiReaction>>,
    /// Whether a reaction changed anything.
    changed: Option<bool>,
    seq: Option<u64>,
}

// --- History ---

/// A page of chats.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ChatPage {
    chats: Vec<ChatSummary>,
    total: u64,
    has_more: bool,
}

/// Paging of a chat list (body of `POST /api/v1/chats`).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ListChatsRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
    client_type: Option<ClientType>,
    /// Default 20; at most the server's page size.
    limit: Option<u64>,
    offset: Option<u64>,
    /// Only chats waiting for a human agent, oldest first.
    waiting: Option<bool>,
}

/// Paging of a chat list (query of `GET /api/v1/chats`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListChatsQuery {
    /// Default 20; at most the server's page size.
    limit: Option<u64>,
    offset: Option<u64>,
    /// Only chats waiting for a human agent, oldest first.
    waiting: Option<bool>,
}

/// `PATCH /api/v1/chats/{chatKey}`: at least one of the fields.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct PatchChatRequest {
    /// `""` clears it.
    title: Option<String>,
    pinned: Option<bool>,
    /// Members-only chat: its members; `[]` opens it to the org again.
    #[schema(max_items = 100)]
    members: Option<Vec<String>>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
}

/// Paging of a chat's messages by `seq`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct MessagesQuery {
    /// Messages after this `seq` (default 0).
    after: Option<u64>,
    /// Default 50, 1 to 500.
    limit: Option<u64>,
}

/// A page of a chat's messages.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct MessagesPage {
    messages: Vec<ChatMessage>,
    has_more: bool,
    /// The `after` of the next page.
    next_after: u64,
}

// --- Agents, attachments, AI SDK ---

/// A named assistant (CONTRACT §7.5).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Agent {
    id: String,
    name: String,
    description: Option<String>,
}

/// `GET /api/v1/agents`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AgentList {
    agents: Vec<Agent>,
}

/// `POST /api/v1/attachments` (multipart/form-data).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file; its type comes from its bytes.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    chat_key: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
}

/// A document's text extraction.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Processing {
    /// `processing`, `complete` or `error`.
    status: String,
    chars: Option<u64>,
    pages: Option<u64>,
    error: Option<ErrorDetail>,
}

/// A stored attachment.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct UploadedAttachment {
    id: String,
    name: String,
    mime_type: String,
    size: u64,
    sha256: String,
    url: String,
    width: Option<u32>,
    height: Option<u32>,
    processing: Option<Processing>,
}

/// A `UIMessage` of the AI SDK (only the fields the server reads are listed).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UiMessage {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: Option<String>,
    /// `user` for a new message; `assistant` to continue after client-run tools.
    role: String,
    /// `text` parts (`{type: "text", text}`) and `file` parts (`{type: "file", url,
    /// mediaType?, filename?}`, a `data:` URL or an attachment's URL).
    parts: Option<Vec<BTreeMap<String, Value>>>,
}

/// What the AI SDK's `DefaultChatTransport` posts.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct AiSdkChatRequest {
    /// The chat id.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: String,
    /// The conversation; the last one is the new user message.
    messages: Vec<UiMessage>,
    /// `submit-message` (default) or `regenerate-message`.
    trigger: Option<String>,
    /// `regenerate-message`: the reply to regenerate (default the last).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    message_id: Option<String>,
    /// The agent a new chat is bound to (also read from `body.agentId`).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    agent_id: Option<String>,
    /// Client-run tools for this turn.
    tools: Option<Vec<BTreeMap<String, Value>>>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    trace_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    org_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
}

/// `POST /api/chat/{id}/stop` → the stopped turn.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct StopResponse {
    ok: bool,
    request_id: String,
}
