//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`, off by default):
//! the upstream decoders fed raw bytes, exactly as a live response would feed them. Not an
//! API: the provider types are the API.

use std::convert::Infallible;
use std::time::Duration;

use futures::StreamExt;
use natter_core::provider::{ProviderError, ProviderEvent, ProviderStream};

/// Which upstream protocol to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    OpenAi,
    Anthropic,
}

/// Everything the provider's stream yields for a response body arriving in `chunks` (the
/// transport's reads, in order), until the stream ends.
pub fn decode_stream(
    upstream: Upstream,
    chunks: Vec<Vec<u8>>,
) -> Vec<Result<ProviderEvent, ProviderError>> {
    let body = futures::stream::iter(chunks.into_iter().map(Ok::<_, Infallible>));
    let stream: ProviderStream = match upstream {
        Upstream::OpenAi => crate::openai::events(body),
        Upstream::Anthropic => crate::anthropic::events(body),
    };
    futures::executor::block_on(stream.collect())
}

/// The error a non-2xx upstream answer becomes. `None` when `status` is not an HTTP status;
/// headers that are not valid HTTP header names or values are left out, as a client would
/// never see them.
pub fn status_error(
    upstream: Upstream,
    status: u16,
    headers: &[(&str, &[u8])],
    body: &str,
) -> Option<ProviderError> {
    let status = reqwest::StatusCode::from_u16(status).ok()?;
    let map = header_map(headers);
    Some(match upstream {
        Upstream::OpenAi => crate::openai::status_error(status, &map, body),
        Upstream::Anthropic => crate::anthropic::status_error(status, &map, body),
    })
}

/// `retry-after-ms` / `retry-after` as the providers read them.
pub fn retry_after(headers: &[(&str, &[u8])]) -> Option<Duration> {
    crate::http::retry_after(&header_map(headers))
}

fn header_map(headers: &[(&str, &[u8])]) -> reqwest::header::HeaderMap {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    map
}
