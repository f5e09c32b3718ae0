//! History REST under `/api/v1/chats` (seed 002's `useChatHistory`, seed 004's lists):
//! - `POST /` `{limit?, offset?}` (or `GET /?limit&offset`) → `{chats, total, hasMore}`
//! - `GET /{chatKey}` → `ChatSummary`; `PATCH /{chatKey}` `{title?, pinned?}` → `ChatSummary`
//! - `DELETE /{chatKey}` → `{success: true}`: the chat and its log are gone, and members are
//!   told (`chat_ended` on SSE, `error not_found` on Socket.IO)
//! - `GET /user/{userId}` → `{chats, total, hasMore}`: the chats that user created or posted in
//! - `GET /{chatKey}/messages?after=<seq>&limit=` → `{messages, hasMore, nextAfter}`, paged by
//!   `seq` (messages carry their `seq`; superseded replies are left out)
//!
//! A list holds the chats the caller is a member of (created or posted in); with the scope
//! `chat:admin`, or with auth off, every chat of the caller's org (CONTRACT §6.14).
//! `PATCH` also takes `members` (a user id list; `[]` opens the chat to the org again): only
//! the chat's creator or an admin may change it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use natter_core::Identity;
use natter_core::chat::ChatScope;
use natter_protocol::fields::{Fields, check_id_field};
use natter_protocol::{ErrorCode, WireError};
use serde_json::{Value, json};

use crate::Face;
use crate::body::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::identity::{Caller, agree, chat_key, identify};
use crate::path::Segment;
use crate::realtime::wire::{chat_message, summary};

type Q = Query<HashMap<String, String>>;

const DEFAULT_PAGE: usize = 20;

/// A page size or offset from a body field or the query string.
fn number(
    body: Option<&Fields<'_>>,
    query: &HashMap<String, String>,
    field: &str,
) -> Result<Option<u64>, WireError> {
    if let Some(f) = body
        && let Some(n) = f.opt_u64(field)?
    {
        return Ok(Some(n));
    }
    query
        .get(field)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                WireError::new(
                    ErrorCode::InvalidField,
                    format!("`{field}` must be a non-negative integer, got `{v}`"),
                )
            })
        })
        .transpose()
}

async fn page(
    face: &Face,
    org: &str,
    scope: ChatScope,
    body: Option<&Fields<'_>>,
    query: &HashMap<String, String>,
) -> ApiResult<Json<Value>> {
    let limit = number(body, query, "limit")?.unwrap_or(DEFAULT_PAGE as u64);
    let limit = (limit as usize).min(face.config.max_page);
    let offset = usize::try_from(number(body, query, "offset")?.unwrap_or(0)).unwrap_or(usize::MAX);
    let page = if waiting(body, query)? {
        face.core
            .list_waiting_chats(org, &scope, limit, offset)
            .await?
    } else {
        face.core.list_chats(org, &scope, limit, offset).await?
    };
    let has_more = (offset.saturating_add(page.chats.len()) as u64) < page.total;
    Ok(Json(json!({
        "chats": page.chats.iter().map(summary).collect::<Vec<_>>(),
        "total": page.total,
        "hasMore": has_more,
    })))
}

/// `waiting` (body boolean, or query `true`/`false`): only the chats waiting for a human
/// agent, oldest `waitingSince` first (CONTRACT §7.2).
fn waiting(body: Option<&Fields<'_>>, query: &HashMap<String, String>) -> Result<bool, WireError> {
    if let Some(f) = body
        && let Some(w) = f.opt_bool("waiting")?
    {
        return Ok(w);
    }
    match query.get("waiting").map(String::as_str) {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(WireError::new(
            ErrorCode::InvalidField,
            format!("`waiting` must be true or false, got `{v}`"),
        )),
    }
}

/// The chats a caller's list holds: its own, or the whole org's for an admin (or auth off).
/// A human agent's queue (`waiting`) holds the whole org's waiting chats.
fn list_scope(
    caller: &Caller,
    who: &Identity,
    body: Option<&Fields<'_>>,
    query: &HashMap<String, String>,
) -> Result<ChatScope, WireError> {
    if who.is_human_agent() && waiting(body, query)? {
        return Ok(ChatScope::Org);
    }
    Ok(scope_of(caller, who))
}

fn scope_of(caller: &Caller, who: &Identity) -> ChatScope {
    if caller.principal.is_none() || who.admin {
        ChatScope::Org
    } else {
        ChatScope::Member(who.user_id.clone())
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/chats",
    tag = "history",
    operation_id = "history_list",
    summary = "A page of the caller's chats (or the org's, for admins)",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery),
    request_body(content = crate::openapi::ListChatsRequest, content_type = "application/json"),
    responses((status = 200, description = "A page of chats", body = crate::openapi::ChatPage), crate::openapi::Errors),
)]
pub async fn list(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(q): Q,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new("list chats", &body)?;
    let who = identify(&caller, Some(&f), &q)?;
    let scope = list_scope(&caller, &who, Some(&f), &q)?;
    page(&face, &who.org, scope, Some(&f), &q).await
}

#[utoipa::path(
    get,
    path = "/api/v1/chats",
    tag = "history",
    operation_id = "history_list_get",
    summary = "A page of the caller's chats (query parameters)",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery, crate::openapi::ListChatsQuery),
    responses((status = 200, description = "A page of chats", body = crate::openapi::ChatPage), crate::openapi::Errors),
)]
pub async fn list_get(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(q): Q,
) -> ApiResult<Json<Value>> {
    let who = identify(&caller, None, &q)?;
    let scope = list_scope(&caller, &who, None, &q)?;
    page(&face, &who.org, scope, None, &q).await
}

/// Another user's list is for admins only (with auth on).
#[utoipa::path(
    get,
    path = "/api/v1/chats/user/{userId}",
    tag = "history",
    operation_id = "history_by_user",
    summary = "A page of the chats a user created or posted in",
    security((), ("bearerAuth" = [])),
    params(
        ("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
        crate::openapi::IdentityQuery,
        crate::openapi::ListChatsQuery,
    ),
    responses((status = 200, description = "A page of chats", body = crate::openapi::ChatPage), crate::openapi::Errors),
)]
pub async fn by_user(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Segment(user): Segment,
    Query(q): Q,
) -> ApiResult<Json<Value>> {
    let who = identify(&caller, None, &q)?;
    check_id_field("request", "userId", &user)?;
    if caller.principal.is_some() && !who.admin {
        agree(&who.user_id, Some(&user), "user")?;
    }
    page(&face, &who.org, ChatScope::Member(user.into()), None, &q).await
}

#[utoipa::path(
    get,
    path = "/api/v1/chats/{chatKey}",
    tag = "history",
    operation_id = "history_get_chat",
    summary = "A chat's summary",
    security((), ("bearerAuth" = [])),
    params(("chatKey" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"), crate::openapi::IdentityQuery),
    responses((status = 200, description = "The chat", body = crate::openapi::ChatSummary), crate::openapi::Errors),
)]
pub async fn get_chat(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Segment(chat): Segment,
    Query(q): Q,
) -> ApiResult<Json<Value>> {
    let who = identify(&caller, None, &q)?;
    let s = face
        .core
        .accessible_chat(&who, &chat_key(&who, &chat)?)
        .await?;
    Ok(Json(summary(&s)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/chats/{chatKey}",
    tag = "history",
    operation_id = "history_patch_chat",
    summary = "Rename, pin, or change the members of a chat",
    security((), ("bearerAuth" = [])),
    params(("chatKey" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"), crate::openapi::IdentityQuery),
    request_body(content = crate::openapi::PatchChatRequest, content_type = "application/json"),
    responses((status = 200, description = "The chat after the change", body = crate::openapi::ChatSummary), crate::openapi::Errors),
)]
pub async fn patch_chat(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Segment(chat): Segment,
    Query(q): Q,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let f = Fields::new("patch chat", &body)?;
    let who = identify(&caller, Some(&f), &q)?;
    let title = match f.opt_str("title") {
        Ok(t) => t,
        // An explicit empty title clears it ("" reads as absent above).
        Err(e) => return Err(e.into()),
    };
    let title =
        title.or_else(|| (body.get("title").and_then(Value::as_str) == Some("")).then(String::new));
    let pinned = f.opt_bool("pinned")?;
    let members = crate::realtime::members(&f)?;
    if title.is_none() && pinned.is_none() && members.is_none() {
        return Err(ApiError::new(
            ErrorCode::MissingField,
            "patch chat: give `title`, `pinned` and/or `members`",
        ));
    }
    let key = chat_key(&who, &chat)?;
    let s = face
        .core
        .update_chat(&who, &key, title, pinned, members)
        .await?;
    Ok(Json(summary(&s)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/chats/{chatKey}",
    tag = "history",
    operation_id = "history_delete_chat",
    summary = "Delete a chat and its log",
    security((), ("bearerAuth" = [])),
    params(("chatKey" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"), crate::openapi::IdentityQuery),
    responses((status = 200, description = "Deleted", body = crate::openapi::Success), crate::openapi::Errors),
)]
pub async fn delete_chat(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Segment(chat): Segment,
    Query(q): Q,
) -> ApiResult<Json<Value>> {
    let who = identify(&caller, None, &q)?;
    face.core.delete_chat(&who, &chat_key(&who, &chat)?).await?;
    Ok(Json(json!({"success": true})))
}

#[utoipa::path(
    get,
    path = "/api/v1/chats/{chatKey}/messages",
    tag = "history",
    operation_id = "history_messages",
    summary = "A chat's messages, paged by `seq`",
    security((), ("bearerAuth" = [])),
    params(("chatKey" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"), crate::openapi::IdentityQuery, crate::openapi::MessagesQuery),
    responses((status = 200, description = "A page of messages", body = crate::openapi::MessagesPage), crate::openapi::Errors),
)]
pub async fn messages(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Segment(chat): Segment,
    Query(q): Q,
) -> ApiResult<Json<Value>> {
    let who = identify(&caller, None, &q)?;
    let key = chat_key(&who, &chat)?;
    let after = number(None, &q, "after")?.unwrap_or(0);
    let limit = number(None, &q, "limit")?.unwrap_or(50).clamp(1, 500) as usize;
    // One extra tells whether another page follows.
    let mut events = face
        .core
        .messages_after(&who, &key, after, limit + 1)
        .await?;
    let has_more = events.len() > limit;
    events.truncate(limit);
    let next_after = events.last().map(|e| e.seq).unwrap_or(after);
    let mut messages = json!(events.iter().filter_map(chat_message).collect::<Vec<_>>());
    crate::realtime::add_reactions(&face.core, &key, &mut messages).await?;
    Ok(Json(json!({
        "messages": messages,
        "hasMore": has_more,
        "nextAfter": next_after,
    })))
}
