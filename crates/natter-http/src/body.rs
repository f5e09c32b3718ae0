//! Request bodies: JSON objects read under the size limit, with errors in our own shape
//! (axum's default rejections are plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use natter_protocol::ErrorCode;
use serde_json::Value;

use crate::error::ApiError;

/// A JSON body. An empty body reads as `{}` (some clients POST nothing for "no options").
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::TooLarge,
                    "the request body is over the size limit",
                )
            } else {
                ApiError::new(
                    ErrorCode::InvalidPayload,
                    format!("could not read the request body: {e}"),
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Value::Object(Default::default())));
        }
        serde_json::from_slice(&bytes).map(Self).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidPayload,
                format!("the request body is not valid JSON: {e}"),
            )
        })
    }
}
