//! Attachments (CONTRACT §7.6): the magic-number sniffer and image header parsing
//! (`natter_attachments::sniff`), and the real upload route (`POST /api/v1/attachments`,
//! multipart parsing in `natter_http::attachments`) on a fresh in-memory core per input.
//!
//! Input: one byte of options, then a multipart/form-data body with the boundary `XyZ` (the
//! seeds are well-formed uploads; the fuzzer breaks them). The same bytes after the first
//! `\r\n\r\n` are also sniffed directly, with a file name and claimed type picked by the
//! options byte.
//!
//! Checks: `sniff` never panics, and what it accepts has the magic it claims (images, PDF) or
//! is text (the text kinds), with positive dimensions if any. The route never answers 5xx,
//! errors are `{"error": {"code", "message"}}` with a code that fits the status (413
//! `too_large` / `quota_exceeded`, 415 `unsupported_media_type`, 400/403/429 codes); an
//! accepted upload reports `{id, name, mimeType, size, sha256, url}` and downloading it gives
//! exactly `size` bytes with that sha256 and `mimeType`.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use natter_attachments::{Kind, sniff};
use natter_core::attachments::sha256_hex;
use natter_core::bus_memory::MemoryBus;
use natter_core::presence_memory::MemoryPresence;
use natter_core::{ChatCore, CoreConfig};
use natter_fuzz::memstore::MemStore;
use natter_fuzz::provider::ScriptedModel;
use natter_http::HttpConfig;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Small, so `413 too_large` is reachable.
const MAX_FILE: u64 = 4096;

const NAMES: &[&str] = &["a.png", "notes.txt", "data.csv", "x.md", "d.json", "noext", ""];
const CLAIMS: &[Option<&str>] = &[
    None,
    Some("image/png"),
    Some("text/plain"),
    Some("text/csv; charset=utf-8"),
    Some("application/json"),
    Some("text/markdown"),
    Some("application/octet-stream"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&options, body)) = data.split_first() else {
        return;
    };
    check_sniff(body, options);
    if let Some(i) = body.windows(4).position(|w| w == b"\r\n\r\n") {
        check_sniff(&body[i + 4..], options);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(upload(body.to_vec()));
});

fn check_sniff(bytes: &[u8], options: u8) {
    let name = NAMES[usize::from(options) % NAMES.len()];
    let claim = CLAIMS[usize::from(options / 8) % CLAIMS.len()];
    let Ok(s) = sniff(bytes, name, claim) else {
        return;
    };
    let magic: &[u8] = match s.kind {
        Kind::Png => b"\x89PNG",
        Kind::Jpeg => b"\xFF\xD8\xFF",
        Kind::Gif => b"GIF8",
        Kind::Webp => b"RIFF",
        Kind::Pdf => b"%PDF-",
        _ => b"",
    };
    assert!(bytes.starts_with(magic), "{:?} without its magic", s.kind);
    if s.kind.is_text() {
        assert!(
            natter_attachments::sniff::is_text(bytes),
            "binary bytes typed as {:?}",
            s.kind
        );
    }
    if let Some((w, h)) = s.dimensions {
        assert!(s.kind.is_image() && w > 0 && h > 0);
    }
}

async fn upload(body: Vec<u8>) {
    let mut config = CoreConfig::default();
    config.attachments.max_bytes = MAX_FILE;
    config.attachments.chat_quota_bytes = 3 * MAX_FILE;
    let core = ChatCore::new(
        config,
        Arc::new(MemStore::default()),
        Arc::new(MemoryBus::new(256)),
        Arc::new(MemoryPresence::default()),
        Arc::new(ScriptedModel::default()),
    );
    let shutdown = CancellationToken::new();
    let app = natter_http::router(core, HttpConfig::default(), shutdown.clone());
    let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/attachments")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ")
        .body(Body::from(body))
        .expect("a request");
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = match app.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    assert!(
        !status.is_server_error(),
        "{status} for an upload: {}",
        String::from_utf8_lossy(&bytes)
    );
    let json: Value = serde_json::from_slice(&bytes).expect("a JSON answer");
    if !status.is_success() {
        let code = json["error"]["code"].as_str().expect("an error code");
        assert!(
            json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "a human message"
        );
        let fits = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ["too_large", "quota_exceeded"].contains(&code),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => code == "unsupported_media_type",
            StatusCode::BAD_REQUEST => {
                ["invalid_payload", "missing_field", "invalid_field"].contains(&code)
            }
            StatusCode::FORBIDDEN => code == "forbidden",
            StatusCode::TOO_MANY_REQUESTS => code == "rate_limited",
            StatusCode::NOT_FOUND => code == "not_found",
            _ => false,
        };
        assert!(fits, "{status} with code {code}");
        shutdown.cancel();
        return;
    }
    let id = json["id"].as_str().expect("an id");
    let size = json["size"].as_u64().expect("a size");
    assert!(size <= MAX_FILE, "a file over the limit was stored");
    assert_eq!(json["url"], format!("/api/v1/attachments/{id}"));
    let mime = json["mimeType"].as_str().expect("a type");
    assert!(Kind::from_mime_type(mime).is_some(), "type {mime}");
    // Download it as the same (dev-mode) caller: the form's own `orgId`/`userId` are unknown
    // here, so only check when they were absent (the defaults).
    let query = "?orgId=default&userId=anonymous";
    let mut get = Request::builder()
        .method(Method::GET)
        .uri(format!("/api/v1/attachments/{id}{query}"))
        .body(Body::empty())
        .expect("a request");
    get.extensions_mut().insert(ConnectInfo(peer));
    let got = match app.oneshot(get).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if got.status() == StatusCode::OK {
        assert_eq!(
            got.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some(mime)
        );
        let file = got.into_body().collect().await.expect("a body").to_bytes();
        assert_eq!(file.len() as u64, size);
        assert_eq!(json["sha256"].as_str(), Some(sha256_hex(&file).as_str()));
    }
    shutdown.cancel();
}
