//! Attachments (CONTRACT §7.6): uploading a file for a chat over HTTP
//! (`POST /api/v1/attachments`, multipart `file` + `chatKey`) with the identity the socket
//! uses, so a message can then carry it by id ([`SendMessage::attachments`](crate::SendMessage)).
//!
//! A file on disk is streamed, never read whole into memory; the server takes the type from the
//! bytes (whatever the name says) and refuses what it does not take with a typed error
//! ([`ClientError::Http`] with `too_large` (413), `unsupported_media_type` (415), `not_found` …).

use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::error::ClientError;

/// The path attachments live under on a Natter server.
pub const ATTACHMENTS_PATH: &str = "/api/v1/attachments";

/// What the server answers for a stored file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedAttachment {
    pub id: String,
    pub name: String,
    /// The type found in the bytes (never the client's claim).
    pub mime_type: String,
    pub size: u64,
    /// Lowercase hex.
    #[serde(default)]
    pub sha256: String,
    /// `/api/v1/attachments/{id}`, readable by the chat's members.
    pub url: String,
    /// Documents only: how the server's reading of it stands; the end comes as
    /// [`ChatEvent::AttachmentProcessing`](crate::ChatEvent::AttachmentProcessing).
    #[serde(default)]
    pub processing: Option<Processing>,
}

/// A document's processing as the server stores it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Processing {
    /// `processing`, `complete` or `error`.
    pub status: String,
    #[serde(default)]
    pub chars: Option<u64>,
    #[serde(default)]
    pub pages: Option<u32>,
    #[serde(default)]
    pub error: Option<natter_protocol::error::ErrorBody>,
}

/// A file to upload: bytes in memory, or a file on disk (streamed).
#[derive(Debug)]
pub struct AttachmentFile {
    name: String,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Bytes(Vec<u8>),
    File(tokio::fs::File, u64),
}

impl AttachmentFile {
    /// Bytes already in memory, uploaded under `name`.
    pub fn from_bytes(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            body: Body::Bytes(bytes.into()),
        }
    }

    /// A file on disk, named by its file name; it is streamed when uploaded.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let io = |e: std::io::Error| ClientError::Io(format!("{}: {e}", path.display()));
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let meta = file.metadata().await.map_err(io)?;
        if !meta.is_file() {
            return Err(ClientError::Io(format!("{}: not a file", path.display())));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "file".to_owned());
        Ok(Self {
            name,
            body: Body::File(file, meta.len()),
        })
    }

    /// Uploads it under another name (the server still takes the type from the bytes).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size in bytes.
    pub fn len(&self) -> u64 {
        match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::File(_, len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn into_part(self) -> reqwest::multipart::Part {
        let part = match self.body {
            Body::Bytes(bytes) => reqwest::multipart::Part::bytes(bytes),
            Body::File(file, len) => reqwest::multipart::Part::stream_with_length(file, len),
        };
        // No claimed type: the server sniffs the bytes anyway.
        part.file_name(self.name)
    }
}

/// Who uploads: the socket's handshake identity (`auth.token`, or `orgId`/`userId` with auth off).
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    pub token: Option<String>,
    pub org_id: Option<String>,
    pub user_id: Option<String>,
}

impl Identity {
    /// From a handshake `auth` object.
    pub fn from_auth(auth: Option<&Value>) -> Self {
        let field = |key: &str| {
            auth.and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Self {
            token: field("token"),
            org_id: field("orgId"),
            user_id: field("userId"),
        }
    }
}

/// The attachments endpoint of a server root (`http://host:4000` → `…/api/v1/attachments`).
pub fn attachments_endpoint(server: &str) -> Result<url::Url, ClientError> {
    let mut url = url::Url::parse(server)
        .map_err(|e| ClientError::InvalidOptions(format!("bad server URL {server:?}: {e}")))?;
    match url.scheme() {
        "http" | "https" => {}
        // The socket's own URL may be a ws:// one; uploads go over HTTP to the same place.
        "ws" => url
            .set_scheme("http")
            .map_err(|()| ClientError::InvalidOptions(format!("bad server URL {server:?}")))?,
        "wss" => url
            .set_scheme("https")
            .map_err(|()| ClientError::InvalidOptions(format!("bad server URL {server:?}")))?,
        other => {
            return Err(ClientError::InvalidOptions(format!(
                "bad server URL {server:?}: scheme {other} is not http(s)"
            )));
        }
    }
    let path = url.path().trim_end_matches('/').to_owned();
    if path.ends_with(ATTACHMENTS_PATH) {
        url.set_path(&path);
    } else {
        url.set_path(&format!("{path}{ATTACHMENTS_PATH}"));
    }
    url.set_query(None);
    Ok(url)
}

/// One HTTP client per process: it pools connections, and building one is not free.
fn http_client() -> Result<&'static reqwest::Client, ClientError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // reqwest is built without a crypto provider of its own (workspace choice); an app
            // that installed one keeps it.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ClientError::InvalidOptions(format!("cannot build the HTTP client: {e}")))
}

/// Uploads `file` for `chat_id` to `server` as `identity`.
pub(crate) async fn upload(
    server: &str,
    chat_id: &str,
    identity: &Identity,
    file: AttachmentFile,
) -> Result<UploadedAttachment, ClientError> {
    let endpoint = attachments_endpoint(server)?;
    // The small fields first: the server knows the chat and the caller before the file streams.
    let mut form = reqwest::multipart::Form::new().text("chatKey", chat_id.to_owned());
    if let Some(org) = &identity.org_id {
        form = form.text("orgId", org.clone());
    }
    if let Some(user) = &identity.user_id {
        form = form.text("userId", user.clone());
    }
    let form = form.part("file", file.into_part());
    let mut request = http_client()?
        .post(endpoint.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .multipart(form);
    if let Some(token) = &identity.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| ClientError::Connect {
        url: endpoint.to_string(),
        reason: e.to_string(),
    })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| ClientError::Connect {
        url: endpoint.to_string(),
        reason: e.to_string(),
    })?;
    if !status.is_success() {
        return Err(http_error(status.as_u16(), &body));
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
        event: format!("POST {ATTACHMENTS_PATH}"),
        reason: e.to_string(),
    })
}

/// The server's `{error: {code, message}}`, or a made-up one from the status.
fn http_error(status: u16, body: &[u8]) -> ClientError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let text = |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str);
    ClientError::Http {
        status,
        code: text("code")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http_{status}")),
        message: text("message")
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_from_a_server_root() {
        for (server, want) in [
            (
                "http://127.0.0.1:4000",
                "http://127.0.0.1:4000/api/v1/attachments",
            ),
            ("http://h:1/", "http://h:1/api/v1/attachments"),
            ("ws://h:1", "http://h:1/api/v1/attachments"),
            ("wss://h", "https://h/api/v1/attachments"),
            ("http://h/prefix", "http://h/prefix/api/v1/attachments"),
            (
                "http://h/api/v1/attachments/",
                "http://h/api/v1/attachments",
            ),
        ] {
            assert_eq!(
                attachments_endpoint(server).unwrap().as_str(),
                want,
                "{server}"
            );
        }
        assert!(attachments_endpoint("ftp://h").is_err());
        assert!(attachments_endpoint("not a url").is_err());
    }

    #[test]
    fn http_errors_keep_the_servers_code() {
        let e = http_error(
            413,
            br#"{"error":{"code":"too_large","message":"over 10 MiB"}}"#,
        );
        assert_eq!(e.code(), "too_large");
        assert!(e.to_string().contains("over 10 MiB"), "{e}");
        let e = http_error(502, b"Bad Gateway");
        assert_eq!(e.code(), "http_502");
    }

    #[test]
    fn identity_from_the_handshake_auth() {
        let auth = serde_json::json!({"token": "t", "userId": "ada", "orgId": ""});
        let id = Identity::from_auth(Some(&auth));
        assert_eq!(id.token.as_deref(), Some("t"));
        assert_eq!(id.user_id.as_deref(), Some("ada"));
        assert_eq!(id.org_id, None);
    }
}
