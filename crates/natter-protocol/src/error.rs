//! The error catalog: every error a client can see, with a stable code and a human message.
//!
//! Like axum's `rejection.rs`, all codes live in one place so that the docs, the faces and
//! the tests agree on them.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. The string form is part of the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The payload is not the JSON object the event expects.
    InvalidPayload,
    /// A required field is missing or empty.
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// A text or payload is over the configured limit.
    TooLarge,
    /// The chat does not exist (or is not visible to the caller).
    NotFound,
    /// The event names a chat this connection has not joined.
    NotJoined,
    /// `chatId` was left out, and the connection is in no chat or in several.
    ChatRequired,
    /// The event name is not one the server knows.
    UnknownEvent,
    /// The caller may not do this (e.g. a payload naming another user).
    Forbidden,
    /// There is nothing to act on (e.g. `ai:abort` with no running turn).
    NoActiveTurn,
    /// This connection fell too far behind the live stream and is being disconnected.
    SlowConsumer,
    /// Upstream LLM is unavailable (5xx, connection refused, …).
    UpstreamUnavailable,
    /// Upstream LLM rate-limited us and retries did not help.
    UpstreamRateLimited,
    /// Upstream refused our credentials.
    UpstreamAuth,
    /// The context is longer than the model accepts.
    ContextTooLong,
    /// Upstream refused the request for another reason.
    UpstreamBadRequest,
    /// Upstream sent an error inside the stream.
    UpstreamError,
    /// Upstream cut the stream before it finished.
    UpstreamCut,
    /// The turn ran past its overall timeout.
    Timeout,
    /// The server is shutting down.
    Shutdown,
    /// The server stopped (crashed or was killed) while the turn ran; it ended at restart.
    Interrupted,
    /// The store or bus failed; the request may be retried.
    Unavailable,
    /// HTTP: the path exists but not with this method.
    MethodNotAllowed,
    /// No valid token: missing, badly signed, `alg` not HS256, expired, not yet valid, or for
    /// another issuer or audience (HTTP 401; Socket.IO `connect_error` message `unauthorized`).
    Unauthorized,
    /// A connected socket's token expired and was not refreshed; it is being disconnected.
    TokenExpired,
    /// Too many messages or turns in the window; `retryAfterMs` says when to try again.
    RateLimited,
    /// The user or the address has as many open connections as allowed.
    TooManyConnections,
    /// This socket is in as many chats as allowed; leave one first.
    TooManyJoins,
    /// An upload whose bytes are not one of the accepted types (CONTRACT §7.6; HTTP 415).
    UnsupportedMediaType,
    /// A chat's attachments would pass `--attachment-quota-bytes` (HTTP 413).
    QuotaExceeded,
    /// A bug on our side. Never used for bad input.
    Internal,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        Self::InvalidPayload,
        Self::MissingField,
        Self::InvalidField,
        Self::TooLarge,
        Self::NotFound,
        Self::NotJoined,
        Self::ChatRequired,
        Self::UnknownEvent,
        Self::Forbidden,
        Self::NoActiveTurn,
        Self::SlowConsumer,
        Self::UpstreamUnavailable,
        Self::UpstreamRateLimited,
        Self::UpstreamAuth,
        Self::ContextTooLong,
        Self::UpstreamBadRequest,
        Self::UpstreamError,
        Self::UpstreamCut,
        Self::Timeout,
        Self::Shutdown,
        Self::Interrupted,
        Self::Unavailable,
        Self::MethodNotAllowed,
        Self::Unauthorized,
        Self::TokenExpired,
        Self::RateLimited,
        Self::TooManyConnections,
        Self::TooManyJoins,
        Self::UnsupportedMediaType,
        Self::QuotaExceeded,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidPayload => "invalid_payload",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::TooLarge => "too_large",
            Self::NotFound => "not_found",
            Self::NotJoined => "not_joined",
            Self::ChatRequired => "chat_required",
            Self::UnknownEvent => "unknown_event",
            Self::Forbidden => "forbidden",
            Self::NoActiveTurn => "no_active_turn",
            Self::SlowConsumer => "slow_consumer",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamRateLimited => "upstream_rate_limited",
            Self::UpstreamAuth => "upstream_auth",
            Self::ContextTooLong => "context_too_long",
            Self::UpstreamBadRequest => "upstream_bad_request",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamCut => "upstream_cut",
            Self::Timeout => "timeout",
            Self::Shutdown => "shutdown",
            Self::Interrupted => "interrupted",
            Self::Unavailable => "unavailable",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::TokenExpired => "token_expired",
            Self::RateLimited => "rate_limited",
            Self::TooManyConnections => "too_many_connections",
            Self::TooManyJoins => "too_many_joins",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `{code, message, retryAfterMs?}`: the error body on every face.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(optional_fields))]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// An error on its way to a client: a code from the catalog and a message for humans.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    /// When a retry may succeed (`rate_limited`).
    pub retry_after_ms: Option<u64>,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// A `rate_limited` error that tells the client when to come back.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: message.into(),
            // Rounded up, so a client that waits exactly this long is not refused again.
            retry_after_ms: Some(
                retry_after
                    .as_millis()
                    .saturating_add(1)
                    .min(u64::MAX as u128) as u64,
            ),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            retry_after_ms: self.retry_after_ms,
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
