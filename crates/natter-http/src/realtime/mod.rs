//! Seed 002's realtime API (CONTRACT §3): `POST /create /send /load /typing /end /event`
//! and the SSE [`stream`]. Replies are not in the POST responses: they come over SSE.

pub mod stream;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use natter_core::bus::FollowReason;
use natter_core::chat::NewChat;
use natter_core::{ChatKey, Identity, UserMessageInput};
use natter_protocol::ErrorCode;
use natter_protocol::fields::Fields;
use serde_json::{Value, json};

use crate::Face;
use crate::aisdk::request_conn;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::identity::{Caller, identify, usable_chat};

type Q = Query<HashMap<String, String>>;

fn ok() -> Json<Value> {
    Json(json!({"success": true}))
}

/// The caller and the chat a body names with `chatKey` (refused if it is members-only and the
/// caller is not a member).
async fn target(
    face: &Face,
    caller: &Caller,
    f: &Fields<'_>,
    query: &HashMap<String, String>,
) -> ApiResult<(Identity, ChatKey)> {
    let who = identify(caller, Some(f), query)?;
    let chat = usable_chat(face, &who, &f.req_id("chatKey")?).await?;
    Ok((who, chat))
}

/// Fills `reactions` into seed 002 `ChatMessage`s (a JSON array) that have any (CONTRACT
/// §7.3): `/load` and history pages.
pub(crate) async fn add_reactions(
    core: &natter_core::ChatCore,
    chat: &ChatKey,
    messages: &mut Value,
) -> ApiResult<()> {
    let Some(list) = messages.as_array_mut() else {
        return Ok(());
    };
    let ids: Vec<String> = list
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    let found: HashMap<String, Vec<natter_core::event::Reaction>> =
        core.reactions(chat, &ids).await?.into_iter().collect();
    for m in list.iter_mut() {
        let Some(id) = m["id"].as_str() else { continue };
        if let Some(r) = found.get(id) {
            m["reactions"] = wire::reactions(r);
        }
    }
    Ok(())
}

/// An optional `members` list of user ids (a members-only chat).
pub(crate) fn members(f: &Fields<'_>) -> ApiResult<Option<Vec<String>>> {
    match f.opt_array("members")? {
        None => Ok(None),
        Some(_) => Ok(Some(
            f.req_id_list("members", natter_protocol::socketio::MAX_MEMBERS)?,
        )),
    }
}

/// `{orgId, userId, metadata?, members?}` → `{chatKey}`. The user's SSE streams get
/// `new_chat_created`. With `members`, only they (and the creator, and org admins) may use it.
#[utoipa::path(
    post,
    path = "/api/v1/chat/create",
    tag = "realtime",
    operation_id = "realtime_create",
    summary = "Create a chat",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery),
    request_body(content = crate::openapi::CreateChatRequest, content_type = "application/json"),
    responses((status = 200, description = "Done", body = crate::openapi::CreateChatResponse), crate::openapi::Errors),
)]
pub async fn create(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(q): Q,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new("create", &body)?;
    let who = identify(&caller, Some(&f), &q)?;
    let new = NewChat {
        created_by: None,
        metadata: f.opt_object("metadata")?,
        members: members(&f)?,
    };
    let summary = face.core.create_chat(&who, None, new).await?;
    Ok(Json(json!({"chatKey": &*summary.key.chat_id})))
}

/// `{orgId, chatKey, userId, message: ChatMessage, data?}` → `{success: true}` once the
/// message is stored; the reply follows over SSE.
#[utoipa::path(
    post,
    path = "/api/v1/chat/send",
    tag = "realtime",
    operation_id = "realtime_send",
    summary = "Post a user message (the reply comes over SSE)",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery),
    request_body(content = crate::openapi::SendRequest, content_type = "application/json"),
    responses((status = 200, description = "Done", body = crate::openapi::Success), crate::openapi::Errors),
)]
pub async fn send(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(q): Q,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new("send", &body)?;
    let (who, chat) = target(&face, &caller, &f, &q).await?;
    let message = body
        .get("message")
        .filter(|m| !m.is_null())
        .ok_or_else(|| ApiError::new(ErrorCode::MissingField, "send: `message` is required"))?;
    let m = Fields::new("send.message", message)?;
    let attachments = m.opt_attachment_ids(
        "attachments",
        natter_core::attachments::MAX_ATTACHMENTS_PER_MESSAGE,
    )?;
    // A message may be only attachments (a screenshot without a word).
    let text = if attachments.is_empty() {
        m.req_str("content")?
    } else {
        m.opt_str("content")?.unwrap_or_default()
    };
    let input = UserMessageInput {
        message_id: m.opt_id("id")?.unwrap_or_else(natter_core::new_id),
        text,
        parts: None,
        request_id: None,
        trace_id: caller.trace_id(f.opt_id("traceId")?),
        tools: Vec::new(),
        attachments,
    };
    let info = face.core.open_chat(&who, &chat, None).await?;
    // The user's streams follow the chat from here, so the reply reaches every tab.
    face.core
        .tell_user(&who, &chat, FollowReason::Posted, info.head_seq, None)
        .await;
    face.core
        .post_user_message(&who, &caller.source(None), &chat, input)
        .await?;
    Ok(ok())
}

/// `{orgId, chatKey, userId}` → `{chat}` (seed 002's `Chat` with its latest messages).
#[utoipa::path(
    post,
    path = "/api/v1/chat/load",
    tag = "realtime",
    operation_id = "realtime_load",
    summary = "A chat with its latest messages",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery),
    request_body(content = crate::openapi::ChatRequest, content_type = "application/json"),
    responses((status = 200, description = "Done", body = crate::openapi::LoadResponse), crate::openapi::Errors),
)]
pub async fn load(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(q): Q,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new("load", &body)?;
    let (who, chat) = target(&face, &caller, &f, &q).await?;
    let summary = face.core.accessible_chat(&who, &chat).await?;
    let messages = face
        .core
        .recent_messages(&chat, face.core.config().join_history)
        .await?;
    face.core
        .tell_user(&who, &chat, FollowReason::Loaded, summary.head_seq, None)
        .await;
    let mut chat_json = wire::chat(&summary, &messages);
    add_reactions(&face.core, &chat, &mut chat_json["messages"]).await?;
    Ok(Json(json!({"chat": chat_json})))
}

/// `{orgId, chatKey, userId, typing}`: the chat's streams get `typing` / `stopped_typing`.
#[utoipa::path(
    post,
    path = "/api/v1/chat/typing",
    tag = "realtime",
    operation_id = "realtime_typing",
    summary = "Typing on or off",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery),
    request_body(content = crate::openapi::TypingRequest, content_type = "application/json"),
    responses((status = 200, description = "Done", body = crate::openapi::Success), crate::openapi::Errors),
)]
pub async fn typing(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(q): Q,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new("typing", &body)?;
    let (who, chat) = target(&face, &caller, &f, &q).await?;
    let typing = f.opt_bool("typing")?.unwrap_or(true);
    set_typing(&face, &who, &chat, typing).await?;
    Ok(ok())
}

async fn set_typing(face: &Face, who: &Identity, chat: &ChatKey, typing: bool) -> ApiResult<()> {
    who.check_may_write("type")?;
    face.core.chat_summary(chat).await?;
    let conn = request_conn("typing");
    face.core.typing(who, &conn, chat, typing, None).await;
    Ok(())
}

/// `{orgId, chatKey, userId, data?}`: ends the chat (status `closed`); streams get
/// `chat_ended`. `data.reason` is kept.
#[utoipa::path(
    post,
    path = "/api/v1/chat/end",
    tag = "realtime",
    operation_id = "realtime_end",
    summary = "End a chat",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery),
    request_body(content = crate::openapi::EndRequest, content_type = "application/json"),
    responses((status = 200, description = "Done", body = crate::openapi::Success), crate::openapi::Errors),
)]
pub async fn end(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(q): Q,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new("end", &body)?;
    let (who, chat) = target(&face, &caller, &f, &q).await?;
    let reason = match f.opt_object("data")? {
        Some(data) => Fields::new("end.data", &data)?.opt_str("reason")?,
        None => None,
    };
    face.core.end_chat(&who, &chat, reason).await?;
    Ok(ok())
}

/// With auth off a seed-002 client cannot name its client type on `/event` (its `sendEvent`
/// sends `{type, orgId, chatKey, userId, data}`): posting `human_agent_joined` is then taken
/// as the act of a human agent. With auth on the token decides (CONTRACT §7.1).
fn as_agent(face: &Face, who: Identity) -> Identity {
    if !face.config.auth.is_on() && who.client_type == natter_core::chat::ClientType::Customer {
        who.with_client_type(natter_core::chat::ClientType::HumanAgent)
    } else {
        who
    }
}

/// `{type, orgId, chatKey, userId, data?}`: the client events this server acts on —
/// `typing`, `stopped_typing`, `chat_ended`, and `client_action_callback`
/// (`data: {toolCallId, result?, error?}`, the answer to a `client_action`). Others are
/// refused with `invalid_field` (never silently dropped).
#[utoipa::path(
    post,
    path = "/api/v1/chat/event",
    tag = "realtime",
    operation_id = "realtime_event",
    summary = "A client event (typing, tool answers, handoff, reactions, CSAT)",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery),
    request_body(content = crate::openapi::EventRequest, content_type = "application/json"),
    responses((status = 200, description = "Done", body = crate::openapi::EventResponse), crate::openapi::Errors),
)]
pub async fn event(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(q): Q,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new("event", &body)?;
    let kind = f.req_str("type")?;
    let (who, chat) = target(&face, &caller, &f, &q).await?;
    match kind.as_str() {
        "typing" => set_typing(&face, &who, &chat, true).await?,
        "stopped_typing" => set_typing(&face, &who, &chat, false).await?,
        "chat_ended" => {
            face.core.end_chat(&who, &chat, None).await?;
        }
        "client_action_callback" => {
            let data = f.opt_object("data")?.ok_or_else(|| {
                ApiError::new(ErrorCode::MissingField, "event: `data` is required")
            })?;
            let d = Fields::new("event.data", &data)?;
            let call = d.req_id("toolCallId")?;
            who.check_may_write("answer tool calls")?;
            let (result, error) = natter_protocol::fields::tool_outcome(&data);
            face.core.chat_summary(&chat).await?;
            face.core.tool_result(&chat, &call, result, error).await?;
        }
        // Reactions (CONTRACT §7.3): answered with the message's list now.
        "reaction_added" | "reaction_removed" => {
            let data = f.opt_object("data")?.ok_or_else(|| {
                ApiError::new(ErrorCode::MissingField, "event: `data` is required")
            })?;
            let d = Fields::new("event.data", &data)?;
            let message_id = d.req_id("messageId")?;
            let emoji = d.req_text("emoji")?;
            let add = kind == "reaction_added";
            let out = face
                .core
                .react(&who, &chat, message_id, emoji, add, None)
                .await?;
            let mut answer = json!({
                "success": true,
                "messageId": out.message_id,
                "reactions": wire::reactions(&out.reactions),
                "changed": out.event.is_some(),
            });
            if let Some(e) = &out.event {
                answer["seq"] = json!(e.seq);
            }
            return Ok(Json(answer));
        }
        // CSAT (CONTRACT §7.4): one answer per user and chat; a later one replaces it.
        "csat_submitted" => {
            let data = f.opt_object("data")?.ok_or_else(|| {
                ApiError::new(ErrorCode::MissingField, "event: `data` is required")
            })?;
            let d = Fields::new("event.data", &data)?;
            let rating = natter_protocol::fields::req_rating("event.data", &data)?;
            let comment = d.opt_str("comment")?;
            let stored = face
                .core
                .submit_csat(&who, &chat, rating, comment, None)
                .await?;
            return Ok(Json(json!({"success": true, "seq": stored.seq})));
        }
        // Handoff (CONTRACT §7.2).
        "human_agent_requested" => {
            face.core.request_human_agent(&who, &chat).await?;
        }
        "human_agent_joined" => {
            face.core
                .human_agent_join(&as_agent(&face, who), &chat)
                .await?;
        }
        "human_agent_left" => {
            face.core.human_agent_leave(&who, &chat).await?;
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!(
                    "event: type `{other}` is not one this server acts on (typing, stopped_typing, chat_ended, client_action_callback, human_agent_requested, human_agent_joined, human_agent_left, reaction_added, reaction_removed, csat_submitted)"
                ),
            ));
        }
    }
    Ok(ok())
}
