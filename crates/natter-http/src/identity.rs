//! Who an HTTP request acts for. The one place identity is decided for the HTTP faces.
//!
//! Dev mode (until JWT lands), the same rule as the Socket.IO handshake: the org comes from
//! `orgId` (body, then query; default `default`) and the user from `userId`. When tokens
//! arrive, this is where the claims replace the hints.

use std::collections::HashMap;

use natter_core::{ChatKey, Identity};
use natter_protocol::fields::{Fields, check_id_len};
use natter_protocol::{ErrorCode, WireError};

pub use natter_core::chat::DEFAULT_ORG;
/// The user of a request that names none.
pub const ANONYMOUS_USER: &str = "anonymous";

/// Identity hints from a JSON body (preferred) and the query string.
pub fn identify(
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
            check_id_len("request", field, v)?;
        }
        Ok(value)
    };
    let org = pick("orgId")?.unwrap_or_else(|| DEFAULT_ORG.to_owned());
    let user = pick("userId")?.unwrap_or_else(|| ANONYMOUS_USER.to_owned());
    Ok(Identity {
        org: org.into(),
        user_id: user.into(),
    })
}

/// A chat named by a path or field, inside the caller's org.
pub fn chat_key(who: &Identity, chat_id: &str) -> Result<ChatKey, WireError> {
    if chat_id.trim().is_empty() {
        return Err(WireError::new(
            ErrorCode::MissingField,
            "the chat id is empty",
        ));
    }
    check_id_len("request", "chatId", chat_id)?;
    Ok(ChatKey::new(who.org.clone(), chat_id.to_owned()))
}
