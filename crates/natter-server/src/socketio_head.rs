//! Copies a Socket.IO request's head out of hyper's connection read buffer, so an idle socket
//! does not pin that buffer (issue 15, idle memory).
//!
//! engineioxide keeps the handshake request's `Parts` for the whole session. hyper parses the
//! URI and the header values as slices of its read buffer (8–16 KiB), so that stored head
//! keeps the whole buffer alive as long as the socket lives (hyper issue 4060). Fresh copies
//! of the few hundred bytes that matter let the buffer go once hyper hands the connection over.

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, Uri};

/// The path socketioxide serves (its default `req_path`).
pub(crate) const SOCKET_IO_PATH: &str = "/socket.io";

/// For requests to the Socket.IO endpoint: replaces the URI, the header values and axum's
/// `OriginalUri` (a clone of the same URI) with copies that own their bytes. Other requests
/// pass untouched.
pub(crate) async fn detach(mut req: Request) -> Request {
    if !req.uri().path().starts_with(SOCKET_IO_PATH) {
        return req;
    }
    // Parsing the printed form gives a URI with its own allocation; it cannot fail for a
    // URI hyper accepted, but if it did the original only costs memory.
    if let Ok(uri) = req.uri().to_string().parse::<Uri>() {
        if let Some(original) = req.extensions_mut().get_mut::<OriginalUri>() {
            original.0 = uri.clone();
        }
        *req.uri_mut() = uri;
    }
    let headers = req.headers_mut();
    let mut owned = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        // `from_bytes` copies; hyper already validated the bytes, so this only falls back to
        // the shared value if `http` and hyper ever disagreed on what is valid.
        let copy = match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(mut copy) => {
                copy.set_sensitive(value.is_sensitive());
                copy
            }
            Err(_) => value.clone(),
        };
        // Header names are copied by hyper already (or are static for the standard ones).
        owned.append(name.clone(), copy);
    }
    *headers = owned;
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, Bytes};
    use axum::http::header::{AUTHORIZATION, COOKIE};

    /// Whether `part` lies inside `buffer` (i.e. still borrows hyper's read buffer).
    fn inside(buffer: &Bytes, part: &[u8]) -> bool {
        let range = buffer.as_ptr_range();
        range.contains(&part.as_ptr())
    }

    #[tokio::test]
    async fn socket_io_request_heads_stop_borrowing_the_read_buffer() {
        // As hyper builds a request: every piece a slice of one connection buffer.
        let buffer = Bytes::from(
            b"/socket.io/?EIO=4&transport=websocket&userId=ann a=1 b=2 Bearer x v".to_vec(),
        );
        let slice = |text: &str| {
            let at = buffer
                .windows(text.len())
                .position(|w| w == text.as_bytes())
                .expect("the text is in the buffer");
            buffer.slice(at..at + text.len())
        };
        let uri = Uri::from_maybe_shared(slice("/socket.io/?EIO=4&transport=websocket&userId=ann"))
            .expect("a valid URI");
        let value =
            |text: &str| HeaderValue::from_maybe_shared(slice(text)).expect("a valid value");
        let mut req = Request::builder()
            .uri(uri.clone())
            .body(Body::empty())
            .expect("a valid request");
        req.headers_mut().append(COOKIE, value("a=1"));
        req.headers_mut().append(COOKIE, value("b=2"));
        let mut secret = value("Bearer x");
        secret.set_sensitive(true);
        req.headers_mut().insert(AUTHORIZATION, secret);
        req.headers_mut().insert("x-custom", value("v"));
        req.extensions_mut().insert(OriginalUri(uri));
        assert!(
            inside(&buffer, req.uri().path().as_bytes()),
            "the test builds shared parts"
        );

        let out = detach(req).await;
        let expected_uri = "/socket.io/?EIO=4&transport=websocket&userId=ann";
        assert_eq!(out.uri().to_string(), expected_uri);
        assert!(!inside(&buffer, out.uri().path().as_bytes()));
        let original = out.extensions().get::<OriginalUri>().map(|o| o.0.clone());
        assert_eq!(
            original.as_ref().map(ToString::to_string).as_deref(),
            Some(expected_uri)
        );
        assert!(original.is_some_and(|o| !inside(&buffer, o.path().as_bytes())));
        let cookies: Vec<_> = out.headers().get_all(COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"], "repeated headers keep their order");
        assert_eq!(
            out.headers().get("x-custom").map(|v| v.as_bytes()),
            Some(&b"v"[..])
        );
        assert!(
            out.headers()
                .get(AUTHORIZATION)
                .is_some_and(|v| v.is_sensitive()),
            "the sensitive flag survives the copy"
        );
        for value in out.headers().values() {
            assert!(
                !inside(&buffer, value.as_bytes()),
                "{value:?} still borrows the buffer"
            );
        }
    }

    #[tokio::test]
    async fn other_requests_pass_untouched() {
        let buffer = Bytes::from_static(b"v");
        let mut req = Request::builder()
            .uri("/api/chat")
            .body(Body::empty())
            .expect("a valid request");
        req.headers_mut().insert(
            "x-custom",
            HeaderValue::from_maybe_shared(buffer.clone()).expect("valid"),
        );
        let out = detach(req).await;
        assert_eq!(out.uri(), "/api/chat");
        assert!(
            out.headers()
                .get("x-custom")
                .is_some_and(|v| inside(&buffer, v.as_bytes()))
        );
    }
}
