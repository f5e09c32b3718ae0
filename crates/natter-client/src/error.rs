//! Errors of every layer. Each has a stable [`code`](ClientError::code) and a message for people.

use std::time::Duration;

/// Why the server refused the Socket.IO `CONNECT` (a `connect_error`).
///
/// Natter sends a bare code for auth and limits (CONTRACT §6.15: `unauthorized`) and a sentence
/// for anything else, e.g. a handshake field that is too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectErrorKind {
    /// No token, or a bad or expired one.
    Unauthorized,
    /// The token is valid but the handshake names another user or org.
    Forbidden,
    /// The server's connection limit for this user or address is reached (transient).
    TooManyConnections,
    /// Any other refusal; the server's message is in [`ClientError::ConnectRefused`].
    Other,
}

impl ConnectErrorKind {
    pub fn from_message(message: &str) -> Self {
        match message {
            "unauthorized" => Self::Unauthorized,
            "forbidden" => Self::Forbidden,
            "too_many_connections" => Self::TooManyConnections,
            _ => Self::Other,
        }
    }

    /// Whether trying again later can succeed without the app changing anything. A refused
    /// token or a refused handshake stays refused, so those end the reconnect loop at once.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::TooManyConnections)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("invalid client options: {0}")]
    InvalidOptions(String),

    #[error("could not connect to {url}: {reason}")]
    Connect { url: String, reason: String },

    #[error("the server refused the connection: {message}")]
    ConnectRefused {
        kind: ConnectErrorKind,
        message: String,
        data: Option<serde_json::Value>,
    },

    #[error("the connection did not complete its handshake within {0:?}")]
    HandshakeTimeout(Duration),

    #[error("protocol error: {0}")]
    Protocol(String),

    #[error(
        "the server sent a binary Socket.IO packet ({attachments} attachment(s)); this client handles text packets only"
    )]
    BinaryUnsupported { attachments: usize },

    #[error("not connected")]
    NotConnected,

    #[error("the connection closed before the ack arrived")]
    AckLost,

    #[error("no ack for `{event}` within {timeout:?}")]
    AckTimeout { event: String, timeout: Duration },

    #[error("this ack was already sent, or its connection is gone")]
    AckUnavailable,

    #[error("the packet is {size} bytes; the server accepts at most {max}")]
    PayloadTooLarge { size: usize, max: u64 },

    #[error("could not encode `{event}`: {reason}")]
    Encode { event: String, reason: String },

    #[error("could not decode `{event}`: {reason}")]
    Decode { event: String, reason: String },

    /// An ack of the form `{ok: false, error: {code, message}}`.
    #[error("`{event}` was refused: {code}: {message}")]
    Refused {
        event: String,
        code: String,
        message: String,
    },

    /// An HTTP call (an attachment upload) the server refused: its `{error: {code, message}}`
    /// (`too_large` 413, `unsupported_media_type` 415, `not_found`, `rate_limited` …).
    #[error("HTTP {status}: {code}: {message}")]
    Http {
        status: u16,
        code: String,
        message: String,
    },

    /// A local file could not be read (e.g. the one to upload).
    #[error("{0}")]
    Io(String),

    #[error("gave up reconnecting after {attempts} attempt(s); last error: {last}")]
    ReconnectFailed { attempts: u32, last: String },

    #[error("the client is closed")]
    Closed,
}

impl ClientError {
    /// A stable code for programs (logs, exit codes, tests).
    pub fn code(&self) -> &str {
        match self {
            Self::InvalidOptions(_) => "invalid_options",
            Self::Connect { .. } => "connect_failed",
            Self::ConnectRefused { kind, .. } => match kind {
                ConnectErrorKind::Unauthorized => "unauthorized",
                ConnectErrorKind::Forbidden => "forbidden",
                ConnectErrorKind::TooManyConnections => "too_many_connections",
                ConnectErrorKind::Other => "connect_refused",
            },
            Self::HandshakeTimeout(_) => "handshake_timeout",
            Self::Protocol(_) => "protocol_error",
            Self::BinaryUnsupported { .. } => "binary_unsupported",
            Self::NotConnected => "not_connected",
            Self::AckLost => "ack_lost",
            Self::AckTimeout { .. } => "ack_timeout",
            Self::AckUnavailable => "ack_unavailable",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Encode { .. } => "encode_failed",
            Self::Decode { .. } => "decode_failed",
            Self::Refused { code, .. } => code,
            Self::Http { code, .. } => code,
            Self::Io(_) => "io_error",
            Self::ReconnectFailed { .. } => "reconnect_failed",
            Self::Closed => "closed",
        }
    }

    /// Whether a reconnect attempt that failed with this error may be retried.
    pub(crate) fn is_retryable_connect_failure(&self) -> bool {
        match self {
            Self::ConnectRefused { kind, .. } => kind.is_retryable(),
            Self::InvalidOptions(_) | Self::Closed => false,
            _ => true,
        }
    }
}
