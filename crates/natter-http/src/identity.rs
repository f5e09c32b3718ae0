//! Who an HTTP request acts for. The one place identity is decided for the HTTP faces.
//!
//! Auth on (CONTRACT §5): the org and user come from the token's claims. The token travels as
//! `Authorization: Bearer <jwt>`, or on a GET (an `EventSource`, a WebSocket upgrade) as
//! `?token=`. A body or query that names another `userId` or `orgId` is refused with
//! `forbidden`: hints never change who the caller is.
//!
//! Auth off (development): the org comes from `orgId` (body, then query; default `default`)
//! and the user from `userId`, the same rule as the Socket.IO handshake.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::Method;
use axum::http::request::Parts;
use natter_auth::Principal;
use natter_core::trace_context::{self, SpanParent};
use natter_core::{ChatKey, ConnectionId, Identity, Source};
use natter_protocol::fields::{Fields, check_id_field};
use natter_protocol::{ErrorCode, WireError};

use crate::Face;
use crate::error::{ApiError, ApiResult};

pub use natter_core::chat::DEFAULT_ORG;
/// The user of a dev-mode request that names none.
pub const ANONYMOUS_USER: &str = "anonymous";

/// What the transport and the token say about a request: the verified token's holder (auth
/// on) and the peer's address. Extracting it refuses a request without a valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Option<Principal>,
    pub ip: Option<IpAddr>,
    /// The request's valid W3C `traceparent` header, if any: its trace id is the `traceId`
    /// of a payload that names none (docs/protocol.md).
    pub trace_parent: Option<SpanParent>,
}

impl Caller {
    /// The limits' view of a request made on `conn` (a stream or socket), or on none.
    pub fn source(&self, conn: Option<&ConnectionId>) -> Source {
        Source::new(conn.cloned(), self.ip)
    }

    /// A payload's `traceId`: its own, else the trace id of the request's `traceparent`.
    pub fn trace_id(&self, own: Option<String>) -> Option<String> {
        trace_context::trace_id_or(own, self.trace_parent.as_ref())
    }
}

impl FromRequestParts<Arc<Face>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, face: &Arc<Face>) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let trace_parent = parts
            .headers
            .get(trace_context::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(SpanParent::from_traceparent);
        let auth = &face.config.auth;
        if !auth.is_on() {
            return Ok(Self {
                principal: None,
                ip,
                trace_parent,
            });
        }
        let from_header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(natter_auth::bearer)
            .map(str::to_owned);
        // Browsers cannot set headers on an EventSource or a WebSocket: GETs may carry the
        // token in the query. POSTs may not, so tokens stay out of logged URLs where possible.
        let from_query = || {
            (parts.method == Method::GET)
                .then(|| Query::<HashMap<String, String>>::try_from_uri(&parts.uri).ok())
                .flatten()
                .and_then(|q| q.0.get("token").filter(|t| !t.is_empty()).cloned())
        };
        let Some(token) = from_header.or_else(from_query) else {
            let how = if parts.method == Method::GET {
                "send `Authorization: Bearer <jwt>` or `?token=<jwt>`"
            } else {
                "send `Authorization: Bearer <jwt>`"
            };
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!("this server requires a token: {how}"),
            ));
        };
        Ok(Self {
            principal: Some(auth.verify(&token)?),
            ip,
            trace_parent,
        })
    }
}

/// The identity a request acts as: the token's (hints must agree with it), or with auth off
/// the hints from a JSON body (preferred) and the query string.
pub fn identify(
    caller: &Caller,
    body: Option<&Fields<'_>>,
    query: &HashMap<String, String>,
) -> Result<Identity, WireError> {
    let pick = |field: &str| -> Result<Option<String>, WireError> {
        let from_body = match body {
            Some(f) => f.opt_id(field)?,
            None => None,
        };
        let value = from_body.or_else(|| query.get(field).filter(|v| !v.is_empty()).cloned());
        if let Some(v) = &value {
            check_id_field("request", field, v)?;
        }
        Ok(value)
    };
    let org = pick("orgId")?;
    let user = pick("userId")?;
    // Seed 002 names the client type on `/stream`; a POST may name it too (CONTRACT §7.1).
    let hint = match body {
        Some(f) => f.opt_str("clientType")?,
        None => None,
    }
    .or_else(|| query.get("clientType").cloned());
    let client_type = natter_auth::client_type(caller.principal.as_ref(), hint.as_deref())?;
    match &caller.principal {
        Some(p) => {
            agree(&p.identity.user_id, user.as_deref(), "user")?;
            agree(&p.identity.org, org.as_deref(), "org")?;
            Ok(p.identity.clone().with_client_type(client_type))
        }
        None => Ok(Identity::new(
            org.unwrap_or_else(|| DEFAULT_ORG.to_owned()),
            user.unwrap_or_else(|| ANONYMOUS_USER.to_owned()),
        )
        .with_client_type(client_type)),
    }
}

/// A hint naming someone else than the token's holder is refused, never followed.
pub fn agree(known: &str, hint: Option<&str>, what: &str) -> Result<(), WireError> {
    match hint {
        Some(h) if h != known => Err(WireError::new(
            ErrorCode::Forbidden,
            format!("this token is for {what} `{known}`; the request names {what} `{h}`"),
        )),
        _ => Ok(()),
    }
}

/// A chat named by a path or field, inside the caller's org.
pub fn chat_key(who: &Identity, chat_id: &str) -> Result<ChatKey, WireError> {
    if chat_id.trim().is_empty() {
        return Err(WireError::new(
            ErrorCode::MissingField,
            "the chat id is empty",
        ));
    }
    check_id_field("request", "chatId", chat_id)?;
    Ok(ChatKey::new(who.org.clone(), chat_id.to_owned()))
}

/// [`chat_key`] for a request that acts on the chat: refused when the chat is members-only
/// and `who` is not a member. (A chat that does not exist passes; the call then says so.)
pub async fn usable_chat(face: &Face, who: &Identity, chat_id: &str) -> ApiResult<ChatKey> {
    let chat = chat_key(who, chat_id)?;
    face.core.authorize(who, &chat).await?;
    Ok(chat)
}
