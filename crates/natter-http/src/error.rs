//! HTTP errors: a status and `{"error": {"code", "message"}}`, the same catalog as every face.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use natter_core::CoreError;
use natter_protocol::{ErrorCode, WireError};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError(pub WireError);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(WireError::new(code, message))
    }
}

/// The status that goes with a code. Bad input is always 4xx; only our own failures are 5xx.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidPayload
        | ErrorCode::MissingField
        | ErrorCode::InvalidField
        | ErrorCode::ChatRequired
        | ErrorCode::UnknownEvent => StatusCode::BAD_REQUEST,
        ErrorCode::TooLarge | ErrorCode::QuotaExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::NotFound | ErrorCode::NotJoined => StatusCode::NOT_FOUND,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Unauthorized | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
        ErrorCode::RateLimited | ErrorCode::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooManyJoins => StatusCode::CONFLICT,
        ErrorCode::NoActiveTurn => StatusCode::CONFLICT,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Shutdown | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.0.body() });
        let mut response = (status_of(self.0.code), Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(ms) = self.0.retry_after_ms {
            // Whole seconds, rounded up; the body's `retryAfterMs` is exact.
            headers.insert(header::RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000)));
        }
        if matches!(
            self.0.code,
            ErrorCode::Unauthorized | ErrorCode::TokenExpired
        ) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        Self(e)
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        if let CoreError::Unavailable(detail) = &e {
            tracing::warn!(error = %detail, "request failed on the store or bus");
        }
        Self(e.to_wire())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
