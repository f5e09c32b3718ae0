//! Attachments (CONTRACT §7.6): `POST /api/v1/attachments` (multipart/form-data: `file`,
//! `chatKey`, and with auth off the identity hints `orgId`, `userId`, `clientType` as form
//! fields or in the query) and `GET /api/v1/attachments/{id}`.
//!
//! The upload is read field by field, the file chunk by chunk: the sha256 is computed as the
//! chunks arrive, and the request is refused with `413 too_large` as soon as the file passes
//! `--max-attachment-bytes`, without reading the rest. The type comes from the bytes (the
//! core sniffs them), never from the part's `Content-Type` or file name alone.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use natter_core::attachments::{Attachment, Processing, Sha256Hasher, Upload, hex};
use natter_protocol::ErrorCode;
use natter_protocol::fields::Fields;
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::Face;
use crate::error::{ApiError, ApiResult};
use crate::identity::{Caller, chat_key, identify};
use crate::path::Segment;

/// Where the routes live.
pub const ATTACHMENTS_PATH: &str = "/api/v1/attachments";
/// Longest text field (`chatKey`, `orgId`, …) read, in bytes.
const MAX_TEXT_FIELD: usize = 4096;
/// Most form fields read before giving up on a request.
const MAX_FIELDS: usize = 32;
/// What a multipart body may hold beyond the file: the other fields and the part headers.
pub const MULTIPART_OVERHEAD: usize = 64 * 1024;
/// Most bytes past the file's limit read (and dropped) so that the client, still sending,
/// reads the 413 instead of a reset connection.
pub const MAX_DRAIN: u64 = 8 * 1024 * 1024;

/// The body limit of an upload: the file's limit, the form around it, and what is drained
/// past the limit (as much again as the limit, at most [`MAX_DRAIN`]).
pub fn upload_body_limit(max_file: u64) -> usize {
    let total = max_file
        .saturating_add(max_file.min(MAX_DRAIN))
        .saturating_add(MULTIPART_OVERHEAD as u64);
    usize::try_from(total).unwrap_or(usize::MAX)
}

/// The policy every download carries: nothing in it may run or load anything.
pub const DOWNLOAD_CSP: &str = "default-src 'none'; sandbox";

/// A multipart upload as read: the text fields, and the file if there was one.
#[derive(Debug, Default)]
pub struct ParsedUpload {
    pub fields: Map<String, Value>,
    pub file: Option<Upload>,
}

fn bad_body(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidPayload,
        format!(
            "could not read the upload: {what}; send multipart/form-data with a `file` part \
             and a `chatKey` field"
        ),
    )
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!("the file is larger than the {max} bytes allowed (--max-attachment-bytes)"),
    )
}

fn multipart_error(e: axum::extract::multipart::MultipartError, max: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(max)
    } else {
        bad_body(e.body_text())
    }
}

/// Reads the form: text fields (at most [`MAX_TEXT_FIELD`] bytes each) and one `file` part,
/// hashed as it streams and refused past `max_file` bytes.
pub async fn read_upload(mut form: Multipart, max_file: u64) -> ApiResult<ParsedUpload> {
    let read = read_fields(&mut form, max_file).await;
    if read.is_err() {
        // Read (and drop) what the client still sends, up to the body limit, so it reads the
        // error rather than a connection reset mid-upload.
        while let Ok(Some(mut field)) = form.next_field().await {
            while let Ok(Some(_)) = field.chunk().await {}
        }
    }
    read
}

async fn read_fields(form: &mut Multipart, max_file: u64) -> ApiResult<ParsedUpload> {
    let mut out = ParsedUpload::default();
    let mut seen = 0;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error(e, max_file))?
    {
        seen += 1;
        if seen > MAX_FIELDS {
            return Err(bad_body(format!("more than {MAX_FIELDS} form fields")));
        }
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            if out.file.is_some() {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    "send one `file` part per upload",
                ));
            }
            let file_name = field.file_name().unwrap_or("").to_owned();
            let claimed = field.content_type().map(str::to_owned);
            let mut hasher = Sha256Hasher::new();
            let mut bytes: Vec<u8> = Vec::new();
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| multipart_error(e, max_file))?
            {
                if (bytes.len() + chunk.len()) as u64 > max_file {
                    // Nothing more is kept. The rest is read and dropped only up to the body
                    // limit ([`upload_body_limit`]), so a client somewhat over it still reads
                    // the 413; a larger body is cut off there (the connection closes).
                    drop(bytes);
                    while let Ok(Some(_)) = field.chunk().await {}
                    return Err(too_large(max_file));
                }
                hasher.update(&chunk);
                bytes.extend_from_slice(&chunk);
            }
            out.file = Some(Upload {
                name: file_name,
                claimed_type: claimed,
                bytes,
                sha256: Some(hex(&hasher.finalize())),
            });
        } else {
            let mut value: Vec<u8> = Vec::new();
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| multipart_error(e, max_file))?
            {
                if value.len() + chunk.len() > MAX_TEXT_FIELD {
                    return Err(ApiError::new(
                        ErrorCode::TooLarge,
                        format!("form field `{name}` is over {MAX_TEXT_FIELD} bytes"),
                    ));
                }
                value.extend_from_slice(&chunk);
            }
            let Ok(value) = String::from_utf8(value) else {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    format!("form field `{name}` is not UTF-8 text"),
                ));
            };
            out.fields.insert(name, Value::String(value));
        }
    }
    Ok(out)
}

/// The upload answer: `{id, name, mimeType, size, sha256, url}`, and for documents
/// `processing: {status, chars?, pages?, error?}` (the state a client that missed the live
/// `attachment_processing_*` events reads).
pub fn upload_json(a: &Attachment) -> Value {
    let mut v = json!({
        "id": a.id,
        "name": a.name,
        "mimeType": a.mime_type,
        "size": a.size,
        "sha256": a.sha256,
        "url": a.url(),
    });
    if let Some(p) = processing_json(&a.processing) {
        v["processing"] = p;
    }
    v
}

/// `{status, chars?, pages?, error?: {code, message}}`; `None` for images.
pub fn processing_json(p: &Processing) -> Option<Value> {
    let mut v = match p {
        Processing::None => return None,
        _ => json!({ "status": p.status() }),
    };
    if let Some(chars) = p.chars() {
        v["chars"] = chars.into();
    }
    if let Some(pages) = p.pages() {
        v["pages"] = pages.into();
    }
    if let Some((code, message)) = p.error() {
        v["error"] = json!({ "code": code, "message": message });
    }
    Some(v)
}

/// `POST /api/v1/attachments`.
#[utoipa::path(
    post,
    path = "/api/v1/attachments",
    tag = "attachments",
    operation_id = "attachments_upload",
    summary = "Upload a file into a chat",
    security((), ("bearerAuth" = [])),
    params(crate::openapi::IdentityQuery),
    request_body(content = crate::openapi::UploadForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "The stored attachment", body = crate::openapi::UploadedAttachment), crate::openapi::Errors),
)]
pub async fn upload(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
    form: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<Value>> {
    let form = form.map_err(|e| bad_body(e.body_text()))?;
    let max = face.core.attachments_config().max_bytes;
    let parsed = read_upload(form, max).await?;
    let fields = Value::Object(parsed.fields);
    let f = Fields::new("upload attachment", &fields)?;
    let who = identify(&caller, Some(&f), &q)?;
    let chat_id = f.req_id("chatKey")?;
    let chat = chat_key(&who, &chat_id)?;
    let Some(file) = parsed.file else {
        return Err(ApiError::new(
            ErrorCode::MissingField,
            "upload attachment: a `file` part is required",
        ));
    };
    let uploaded = face
        .core
        .upload_attachment(&who, &caller.source(None), &chat, file)
        .await?;
    Ok(Json(upload_json(&uploaded.attachment)))
}

/// `filename*=UTF-8''…` (RFC 6266 / 5987), so any name is safe in the header.
fn disposition(kind: &str, name: &str) -> String {
    let mut enc = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename*=UTF-8''{enc}")
}

/// `GET /api/v1/attachments/{id}`: members of the attachment's chat only; anyone else (another
/// org, a non-member) gets `404 not_found`.
#[utoipa::path(
    get,
    path = "/api/v1/attachments/{id}",
    tag = "attachments",
    operation_id = "attachments_download",
    summary = "Download an attachment (members of its chat only)",
    security((), ("bearerAuth" = [])),
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"), crate::openapi::IdentityQuery),
    responses((status = 200, description = "The file, with its stored type", content_type = "application/octet-stream", body = Vec<u8>), crate::openapi::Errors),
)]
pub async fn download(
    State(face): State<Arc<Face>>,
    caller: Caller,
    Segment(id): Segment,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let who = identify(&caller, None, &q)?;
    let (a, bytes) = face.core.download_attachment(&who, &id).await?;
    let mut response = Body::from(bytes).into_response();
    let h = response.headers_mut();
    let content_type = HeaderValue::from_str(&a.mime_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOWNLOAD_CSP),
    );
    let kind = if a.is_image() { "inline" } else { "attachment" };
    if let Ok(v) = HeaderValue::from_str(&disposition(kind, &a.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // Members only: no shared cache may keep it.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", a.sha256)) {
        h.insert(header::ETAG, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_are_encoded() {
        assert_eq!(
            disposition("attachment", "a b\"\r\n.pdf"),
            "attachment; filename*=UTF-8''a%20b%22%0D%0A.pdf"
        );
        assert_eq!(
            disposition("inline", "é.png"),
            "inline; filename*=UTF-8''%C3%A9.png"
        );
    }
}
