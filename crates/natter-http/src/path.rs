//! The one path parameter every route takes (a chat id or a user id), with the same JSON
//! error shape as everything else when it cannot be read. axum's own `Path` rejection is plain
//! text (e.g. a segment that %-decodes to invalid UTF-8).

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use natter_protocol::ErrorCode;

use crate::error::ApiError;

/// A route's single path segment, %-decoded.
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(segment)) => Ok(Self(segment)),
            Err(e) => Err(ApiError::new(
                ErrorCode::InvalidField,
                format!("the path segment cannot be read: {}", e.body_text()),
            )),
        }
    }
}
