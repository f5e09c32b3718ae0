//! The Vercel AI SDK's faces (seed 003, CONTRACT §2): `POST /api/chat` and its resume and
//! stop routes over HTTP + SSE ([`http`]), and the `WebSocketChatTransport` protocol
//! ([`ws`]). Both run the same requests here and stream the same chunks ([`chunks`]).

pub mod chunks;
pub mod http;
pub mod ws;

use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use natter_core::chat::NewChat;
use natter_core::feed::{Feed, FeedEnd};
use natter_core::{ChatKey, ConnectionId, Identity, UserMessageInput};
use natter_protocol::ErrorCode;
use natter_protocol::fields::Fields;
use serde_json::Value;

use crate::Face;
use crate::error::{ApiError, ApiResult};
use crate::identity::{Caller, chat_key, usable_chat};
use chunks::TurnChunks;

/// A new connection id for one HTTP request or WebSocket request.
pub(crate) fn request_conn(prefix: &str) -> ConnectionId {
    format!("{prefix}-{}", uuid::Uuid::new_v4()).into()
}

/// The text of a `UIMessage`: its text parts joined (or a plain `content` string).
fn message_text(f: &Fields<'_>) -> Result<String, ApiError> {
    if let Some(parts) = f.opt_array("parts")? {
        let mut text = String::new();
        for part in parts.as_array().into_iter().flatten() {
            if part.get("type").and_then(Value::as_str) == Some("text")
                && let Some(t) = part.get("text").and_then(Value::as_str)
            {
                text.push_str(t);
            }
        }
        return Ok(text);
    }
    Ok(f.opt_str("content")?.unwrap_or_default())
}

/// A `file` part of the new user message (CONTRACT §7.6): its index among the parts and
/// where its bytes are.
enum FilePart {
    /// A `data:` URL, stored as an attachment first.
    Data {
        index: usize,
        name: String,
        media_type: Option<String>,
        bytes: Vec<u8>,
    },
    /// The URL of an attachment already stored (`/api/v1/attachments/{id}`).
    Stored(String),
}

/// The `file` parts of a `UIMessage`: a `data:` URL (base64) or the URL of a stored
/// attachment; any other URL is `invalid_field`, since the server fetches nothing.
fn file_parts(parts: Option<&Value>) -> ApiResult<Vec<FilePart>> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for (index, part) in parts
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if part.get("type").and_then(Value::as_str) != Some("file") {
            continue;
        }
        let f = Fields::new("parts[].file", part)?;
        let url = f.req_str("url")?;
        if out.len() == natter_core::attachments::MAX_ATTACHMENTS_PER_MESSAGE {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!(
                    "a message may carry at most {} files",
                    natter_core::attachments::MAX_ATTACHMENTS_PER_MESSAGE
                ),
            ));
        }
        if let Some(rest) = url.strip_prefix("data:") {
            let (header, data) = rest.split_once(',').ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidField,
                    "a file part's `data:` URL has no `,` before its data",
                )
            })?;
            let Some(media_type) = header.strip_suffix(";base64") else {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    "a file part's `data:` URL must be base64 (`data:<type>;base64,…`)",
                ));
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| {
                    ApiError::new(
                        ErrorCode::InvalidField,
                        format!("a file part's `data:` URL is not valid base64: {e}"),
                    )
                })?;
            let media_type = f
                .opt_str("mediaType")?
                .or_else(|| Some(media_type.to_owned()).filter(|t| !t.is_empty()));
            out.push(FilePart::Data {
                index,
                name: f.opt_str("filename")?.unwrap_or_else(|| "file".into()),
                media_type,
                bytes,
            });
        } else if let Some(id) = natter_core::attachments::id_from_url(&url) {
            out.push(FilePart::Stored(id.to_owned()));
        } else {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "a file part's `url` must be a `data:` URL or the URL of an attachment stored \
                 here (`/api/v1/attachments/{id}`): the server fetches nothing from elsewhere",
            ));
        }
    }
    Ok(out)
}

/// Stores the `data:` files as attachments of `chat` (same checks as an upload) and answers
/// the ids of all files; the stored parts' `url` becomes the attachment's, so the log keeps
/// no copy of the bytes.
async fn store_files(
    face: &Face,
    who: &Identity,
    caller: &Caller,
    conn: &ConnectionId,
    chat: &ChatKey,
    files: Vec<FilePart>,
    mut parts: Option<&mut Value>,
) -> ApiResult<Vec<String>> {
    let mut ids = Vec::with_capacity(files.len());
    for file in files {
        match file {
            FilePart::Stored(id) => ids.push(id),
            FilePart::Data {
                index,
                name,
                media_type,
                bytes,
            } => {
                let upload = natter_core::attachments::Upload {
                    name,
                    claimed_type: media_type,
                    bytes,
                    sha256: None,
                };
                let stored = face
                    .core
                    .upload_attachment(who, &caller.source(Some(conn)), chat, upload)
                    .await?
                    .attachment;
                if let Some(part) = parts
                    .as_deref_mut()
                    .and_then(|p| p.get_mut(index))
                    .and_then(Value::as_object_mut)
                {
                    part.insert("url".into(), Value::String(stored.url()));
                    part.insert("mediaType".into(), Value::String(stored.mime_type.clone()));
                }
                ids.push(stored.id);
            }
        }
    }
    Ok(ids)
}

/// The chunks of one turn, read from a feed that was subscribed before the turn began.
pub struct TurnStream {
    feed: Option<Feed>,
    chunks: TurnChunks,
    queue: VecDeque<Value>,
}

impl TurnStream {
    /// The chat and request id of the turn this stream follows (to stop it).
    pub fn turn(&self) -> Option<(ChatKey, Arc<str>)> {
        let feed = self.feed.as_ref()?;
        Some((feed.chat().clone(), self.chunks.request_id().clone()))
    }
}

impl TurnStream {
    fn new(feed: Option<Feed>, chunks: TurnChunks, first: Vec<Value>) -> Self {
        Self {
            feed,
            chunks,
            queue: first.into(),
        }
    }

    /// The next chunk; `None` once the turn's last chunk is out.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(chunk) = self.queue.pop_front() {
                return Some(chunk);
            }
            if self.chunks.is_done() {
                return None;
            }
            let feed = self.feed.as_mut()?;
            let mut out = Vec::new();
            match feed.next().await {
                Ok(item) => self.chunks.accept(&item, &mut out),
                Err(end) => {
                    let why = match end {
                        FeedEnd::TooFarBehind => "this stream fell too far behind; resume it",
                        FeedEnd::Closed | FeedEnd::Unavailable(_) => {
                            "the server lost this stream; resume it"
                        }
                    };
                    self.chunks.fail(why, &mut out);
                }
            }
            self.queue.extend(out);
        }
    }

    pub fn into_stream(self) -> impl Stream<Item = Value> + Send {
        futures::stream::unfold(self, |mut s| async move { s.next().await.map(|c| (c, s)) })
    }
}

/// `send` (HTTP POST body or WebSocket frame): `{id, messages, trigger, messageId?}`.
pub(crate) async fn send(
    face: &Face,
    who: &Identity,
    caller: &Caller,
    f: &Fields<'_>,
) -> ApiResult<TurnStream> {
    let chat = usable_chat(face, who, &f.req_id("id")?).await?;
    let trigger = f
        .opt_str("trigger")?
        .unwrap_or_else(|| "submit-message".into());
    let trace_id = caller.trace_id(f.opt_id("traceId")?);
    let agent_id = agent_id(f)?;
    let conn = request_conn("aisdk");
    match trigger.as_str() {
        "submit-message" => submit(face, who, caller, &chat, &conn, f, trace_id, agent_id).await,
        "regenerate-message" => {
            let message_id = f.opt_id("messageId")?;
            face.core.open_chat(who, &chat, None).await?;
            if let Some(id) = &agent_id {
                face.core.check_agent(&chat, id).await?;
            }
            // Follow before the turn is queued, so its start is not missed.
            let (_, feed) = face.core.follow(who, &conn, &chat).await?;
            let request_id = face
                .core
                .regenerate(
                    who,
                    &caller.source(Some(&conn)),
                    &chat,
                    message_id.as_deref(),
                    None,
                    trace_id,
                )
                .await?;
            Ok(TurnStream::new(
                Some(feed),
                TurnChunks::for_request(request_id.into()),
                Vec::new(),
            ))
        }
        other => Err(ApiError::new(
            ErrorCode::InvalidField,
            format!("`trigger` must be `submit-message` or `regenerate-message`, got `{other}`"),
        )),
    }
}

/// `agentId` in the request body (the transport's `body` option; a WebSocket frame nests it
/// under `body`): the agent a new chat is bound to (CONTRACT §7.5).
fn agent_id(f: &Fields<'_>) -> ApiResult<Option<String>> {
    if let Some(id) = f.opt_id("agentId")? {
        return Ok(Some(id));
    }
    match f.opt_object("body").ok().flatten() {
        Some(body) => Ok(Fields::new("body", &body)?.opt_id("agentId")?),
        None => Ok(None),
    }
}

#[allow(clippy::too_many_arguments)]
async fn submit(
    face: &Face,
    who: &Identity,
    caller: &Caller,
    chat: &ChatKey,
    conn: &ConnectionId,
    f: &Fields<'_>,
    trace_id: Option<String>,
    agent_id: Option<String>,
) -> ApiResult<TurnStream> {
    let messages = f
        .opt_array("messages")?
        .ok_or_else(|| ApiError::new(ErrorCode::MissingField, "`messages` is required"))?;
    let last = messages
        .as_array()
        .and_then(|m| m.last())
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidField, "`messages` is empty"))?;
    let m = Fields::new("messages[last]", last)?;
    match m.opt_str("role")?.as_deref() {
        Some("user") => {}
        Some("assistant") => {
            if let Some(id) = &agent_id {
                face.core.check_agent(chat, id).await?;
            }
            return continue_after_tools(face, who, chat, conn, last).await;
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "submit-message: the last of `messages` must be the new user message (role `user`), or the assistant message whose client-run tool outputs are now filled in",
            ));
        }
    }
    // Client-run tools for this turn: `tools` in the request body (the transport's `body`
    // option), which a WebSocket frame nests under `body`.
    let declared = f.opt_array("tools")?.or_else(|| {
        f.opt_object("body")
            .ok()
            .flatten()
            .and_then(|b| b.get("tools").cloned())
    });
    let tools = match &declared {
        Some(t) => natter_core::tools::parse_declared(t)?,
        None => Vec::new(),
    };
    let message_id = m.req_id("id")?;
    let text = message_text(&m)?;
    let mut parts = m.opt_array("parts")?;
    let files = file_parts(parts.as_ref())?;
    let create = face.core.config().auto_create_chats;
    // A new chat is bound to the agent; an existing one must already have it.
    let new = NewChat {
        metadata: agent_id
            .as_ref()
            .map(|id| serde_json::json!({ natter_core::agents::AGENT_ID_KEY: id })),
        ..NewChat::default()
    };
    face.core
        .open_chat(who, chat, create.then_some(new))
        .await?;
    if let (false, Some(id)) = (create, &agent_id) {
        face.core.check_agent(chat, id).await?;
    }
    let attachments = store_files(face, who, caller, conn, chat, files, parts.as_mut()).await?;
    let input = UserMessageInput {
        message_id,
        text,
        parts,
        request_id: None,
        trace_id,
        tools,
        attachments,
    };
    let (_, feed) = face.core.follow(who, conn, chat).await?;
    let posted = face
        .core
        .post_user_message(who, &caller.source(Some(conn)), chat, input)
        .await?;
    let Some(request_id) = posted.request_id else {
        // The chat's AI mode is off, or a human agent has the chat (CONTRACT §7.2): the
        // message is stored, and no reply comes.
        return Ok(TurnStream::new(
            None,
            TurnChunks::for_request("none".into()),
            Vec::new(),
        ));
    };
    let mut chunks = TurnChunks::for_request(request_id.as_str().into());
    let mut first = Vec::new();
    if posted.duplicate {
        // A retried POST: replay the stored reply if the turn is over, else follow it.
        if let Some(end) = face.core.turn_end(chat, &request_id, posted.seq).await? {
            chunks.accept_end(&end, &mut first);
            return Ok(TurnStream::new(None, chunks, first));
        }
        if let Some(turn) = feed
            .current_turn()
            .filter(|t| *t.request_id == *request_id)
            .cloned()
        {
            (chunks, first) = replay_running(face, chat, &feed, &turn).await?;
        }
    }
    Ok(TurnStream::new(Some(feed), chunks, first))
}

/// The SDK's client-tool round trip: the last message is the assistant message, its tool
/// parts now `output-available` (or `output-error`). Each output answers the call its turn is
/// waiting for, and the stream goes on with that turn, on the same assistant message.
async fn continue_after_tools(
    face: &Face,
    who: &Identity,
    chat: &ChatKey,
    conn: &ConnectionId,
    message: &Value,
) -> ApiResult<TurnStream> {
    let mut answers = Vec::new();
    let parts = message.get("parts").and_then(Value::as_array);
    for part in parts.into_iter().flatten() {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        if !(kind.starts_with("tool-") || kind == "dynamic-tool") {
            continue;
        }
        let Some(id) = part.get("toolCallId").and_then(Value::as_str) else {
            continue;
        };
        let Some(turn) = face.core.waiting_tool_call(chat, id).await? else {
            continue;
        };
        let answer = match part.get("state").and_then(Value::as_str) {
            Some("output-available") => (
                Some(part.get("output").cloned().unwrap_or(Value::Null)),
                None,
            ),
            Some("output-error") => (
                None,
                Some(
                    part.get("errorText")
                        .and_then(Value::as_str)
                        .unwrap_or("the client tool failed")
                        .to_owned(),
                ),
            ),
            // Not answered yet: the turn keeps waiting.
            _ => continue,
        };
        answers.push((id.to_owned(), turn, answer));
    }
    let Some((_, turn, _)) = answers.first() else {
        return Err(ApiError::new(
            ErrorCode::NoActiveTurn,
            "no tool call of this assistant message is waiting for an output (it was answered, timed out, or its turn ended)",
        ));
    };
    let turn = turn.clone();
    // Follow before answering, so nothing after the answer is missed.
    let (_, feed) = face.core.follow(who, conn, chat).await?;
    let mut first = Vec::new();
    let known = if feed
        .current_turn()
        .is_some_and(|t| t.message_id == turn.message_id)
    {
        feed.next_token_index()
    } else {
        0
    };
    let chunks = TurnChunks::continuation(&turn, known, &mut first);
    for (id, _, (result, error)) in answers {
        face.core.tool_result(chat, &id, result, error).await?;
    }
    Ok(TurnStream::new(Some(feed), chunks, first))
}

/// The chat's running turn from its start, then live, or its next queued turn once it starts;
/// `None` when no turn is open.
pub(crate) async fn resume(
    face: &Face,
    who: &Identity,
    chat_id: &str,
) -> ApiResult<Option<TurnStream>> {
    let chat = chat_key(who, chat_id)?;
    let conn = request_conn("aisdk-resume");
    let feed = match face.core.follow(who, &conn, &chat).await {
        Ok((_, feed)) => feed,
        // The SDK asks on mount, for new chats too: nothing to resume.
        Err(e) if e.to_wire().code == ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if let Some(turn) = feed.current_turn().cloned() {
        let (chunks, first) = replay_running(face, &chat, &feed, &turn).await?;
        return Ok(Some(TurnStream::new(Some(feed), chunks, first)));
    }
    // Nothing streams yet, but a turn may be queued (read after the feed subscribed, so its
    // start cannot be missed): the stream waits for it, as the POST that queued it does.
    match face.core.next_open_turn(&chat).await? {
        Some(request_id) => Ok(Some(TurnStream::new(
            Some(feed),
            TurnChunks::for_request(request_id.into()),
            Vec::new(),
        ))),
        None => Ok(None),
    }
}

/// The chunks of a running turn so far (tokens and tool events in order), for a stream that
/// joins it late; the feed supplies what follows.
async fn replay_running(
    face: &Face,
    chat: &ChatKey,
    feed: &Feed,
    turn: &Arc<natter_core::event::TurnRef>,
) -> ApiResult<(TurnChunks, Vec<Value>)> {
    let tools = face
        .core
        .turn_tool_events(chat, &turn.request_id, feed.last_seq())
        .await?;
    let tokens = match face.core.running_turn(chat).await? {
        Some(snap) if snap.turn.message_id == turn.message_id => snap.tokens,
        _ => Vec::new(),
    };
    let mut first = Vec::new();
    let chunks = TurnChunks::replay(turn, &tokens, &tools, &mut first);
    Ok((chunks, first))
}

/// Stops the chat's running turn; it ends with its partial text kept.
pub(crate) async fn stop(face: &Face, who: &Identity, chat_id: &str) -> ApiResult<String> {
    let chat = chat_key(who, chat_id)?;
    face.core.accessible_chat(who, &chat).await?;
    Ok(face
        .core
        .abort(&chat, None, Some("stopped by the client".into()))
        .await?)
}
