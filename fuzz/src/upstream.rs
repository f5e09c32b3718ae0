//! Shared by `openai_stream` and `anthropic_stream`: how an input becomes an upstream HTTP
//! response, and the checks every provider's decoding must pass.

use std::time::Duration;

use natter_core::provider::{ProviderError, ProviderErrorKind, ProviderEvent};
use natter_providers::fuzzing::{self, Upstream};

use crate::{Rng, byte_chunks, random_chunks};

/// An input starting with `HTTP/` is a whole response (status line, headers, blank line,
/// body); anything else is the body of a `200 text/event-stream` response.
pub struct Response<'a> {
    pub status: u16,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub body: &'a [u8],
}

impl<'a> Response<'a> {
    /// `None` for an `HTTP/` head too broken for any client to have read it.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        if !data.starts_with(b"HTTP/") {
            return Some(Self {
                status: 200,
                headers: Vec::new(),
                body: data,
            });
        }
        let (head, body) = match find(data, b"\r\n\r\n") {
            Some(i) => (&data[..i], &data[i + 4..]),
            None => match find(data, b"\n\n") {
                Some(i) => (&data[..i], &data[i + 2..]),
                None => (data, &[][..]),
            },
        };
        let head = std::str::from_utf8(head).ok()?;
        let mut lines = head.lines();
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim().as_bytes()))
            .collect();
        Some(Self {
            status,
            headers,
            body,
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A form of the decoded items that compares equal across runs: the ids OpenAI's decoder
/// makes up for calls without one (`call_<ms hex>_<counter>`) differ per run, so they are
/// masked.
pub fn normalize(items: &[Result<ProviderEvent, ProviderError>]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            Ok(ProviderEvent::ToolCall(c)) if made_up_id(&c.id) => {
                format!("ToolCall(<made-up id>, {:?}, {:?})", c.name, c.arguments)
            }
            Ok(e) => format!("{e:?}"),
            Err(e) => format!("Err({:?}, {:?})", e.kind, e.message),
        })
        .collect()
}

fn made_up_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("call_") else {
        return false;
    };
    let Some((ms, n)) = rest.split_once('_') else {
        return false;
    };
    !ms.is_empty()
        && ms.bytes().all(|b| b.is_ascii_hexdigit())
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// Decodes `body` whole, one byte per chunk, and in pseudo-random chunks, and checks that
/// the three agree: how the network splits a stream must never change what it means.
/// Returns the items of the whole-body run.
pub fn decode_every_way(
    upstream: Upstream,
    body: &[u8],
) -> Vec<Result<ProviderEvent, ProviderError>> {
    let whole = fuzzing::decode_stream(upstream, vec![body.to_vec()]);
    let expected = normalize(&whole);
    let mut rng = Rng::from_bytes(body);
    let mut ways = vec![("random chunks", random_chunks(body, &mut rng))];
    // One byte per chunk costs the parser time quadratic in the line length: short bodies
    // only (random chunks are mostly 1 to 16 bytes anyway).
    if body.len() <= 512 {
        ways.push(("one byte per chunk", byte_chunks(body)));
    }
    for (how, chunks) in ways {
        let got = normalize(&fuzzing::decode_stream(upstream, chunks.clone()));
        assert_eq!(
            got,
            expected,
            "{upstream:?}: decoding in {how} ({} chunks) differs from decoding the body whole",
            chunks.len()
        );
    }
    whole
}

/// Checks common to both decoders: an error ends the stream; text deltas are never empty;
/// whole tool calls have an id, and arguments that are not blank.
pub fn check_items(items: &[Result<ProviderEvent, ProviderError>]) {
    for (i, item) in items.iter().enumerate() {
        match item {
            Err(e) => {
                assert_eq!(
                    i + 1,
                    items.len(),
                    "an error must end the stream: {items:?}"
                );
                assert!(!e.message.is_empty(), "{e:?}");
            }
            Ok(ProviderEvent::TextDelta(t)) => assert!(!t.is_empty(), "empty text delta"),
            Ok(ProviderEvent::ToolCall(c)) => {
                assert!(!c.id.is_empty(), "a tool call without an id: {c:?}");
                assert!(
                    !c.arguments.trim().is_empty(),
                    "a tool call with blank arguments: {c:?}"
                );
            }
            Ok(_) => {}
        }
    }
}

/// A non-2xx answer: the error kind follows the status, `retry-after` stays sane, and the
/// message says what the upstream answered.
pub fn check_status_error(upstream: Upstream, r: &Response<'_>) {
    let body = String::from_utf8_lossy(r.body);
    let retry = fuzzing::retry_after(&r.headers);
    if let Some(d) = retry {
        assert!(
            d <= Duration::from_secs(3600),
            "retry-after over an hour: {d:?}"
        );
    }
    let Some(e) = fuzzing::status_error(upstream, r.status, &r.headers, &body) else {
        assert!(
            !(100..=999).contains(&r.status),
            "status {} refused",
            r.status
        );
        return;
    };
    assert_eq!(e.retry_after, retry);
    let prefix = format!("upstream answered {}", r.status);
    assert!(e.message.starts_with(&prefix), "{:?}", e.message);
    let expected = match r.status {
        429 => Some(ProviderErrorKind::RateLimited),
        401 | 403 => Some(ProviderErrorKind::Auth),
        408 | 409 => Some(ProviderErrorKind::Unavailable),
        500..=999 => Some(ProviderErrorKind::Unavailable),
        400..=499 => None, // BadRequest or ContextTooLong, depending on the body
        _ => Some(ProviderErrorKind::Unavailable),
    };
    match expected {
        Some(kind) => assert_eq!(e.kind, kind, "status {}", r.status),
        None => assert!(
            matches!(
                e.kind,
                ProviderErrorKind::BadRequest | ProviderErrorKind::ContextTooLong
            ),
            "status {}: {:?}",
            r.status,
            e.kind
        ),
    }
}
