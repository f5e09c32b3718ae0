//! A thin, tolerant client for OpenAI-compatible streaming Chat Completions.
//!
//! Written over reqwest rather than taken from an SDK crate because we need its failure
//! modes exactly (status, `retry-after`, cuts) and tolerance for what compatible servers
//! really send: missing ids, `finish_reason` as free text, `choices: null`, SSE comments
//! and keep-alives, and error objects inside the stream.

use std::time::Duration;

use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use natter_core::event::Usage;
use natter_core::provider::{
    CompletionRequest, Provider, ProviderError, ProviderErrorKind, ProviderEvent, ProviderStream,
};
use serde_json::{Value, json};

pub struct OpenAiProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
}

impl OpenAiProvider {
    /// `base_url` is the API root, e.g. `https://api.openai.com/v1`.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        })
    }

    fn body(request: &CompletionRequest) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let mut body = json!({
            "model": request.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(max) = request.max_tokens {
            body["max_tokens"] = json!(max);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        body
    }
}

/// `retry-after-ms`, or `retry-after` in (possibly fractional) seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
    }
    let secs = get("retry-after")?.parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// The upstream's own error message, if the body has one.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let msg = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .or_else(|| e.as_str())
        })
        .unwrap_or(body);
    msg.chars().take(500).collect()
}

fn status_error(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> ProviderError {
    let message = format!(
        "upstream answered {}: {}",
        status.as_u16(),
        error_message(body)
    );
    let kind = match status.as_u16() {
        429 => ProviderErrorKind::RateLimited,
        401 | 403 => ProviderErrorKind::Auth,
        400 | 413 | 422
            if body.contains("context_length_exceeded")
                || body.contains("maximum context length") =>
        {
            ProviderErrorKind::ContextTooLong
        }
        408 | 409 => ProviderErrorKind::Unavailable,
        400..=499 => ProviderErrorKind::BadRequest,
        _ => ProviderErrorKind::Unavailable,
    };
    ProviderError {
        kind,
        message,
        retry_after: retry_after(headers),
    }
}

/// What one SSE `data:` payload means.
#[derive(Debug, PartialEq)]
enum Chunk {
    Events(Vec<ProviderEvent>),
    Done,
    Error(String),
}

fn parse_chunk(data: &str) -> Result<Chunk, ProviderError> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Chunk::Done);
    }
    if data.is_empty() {
        return Ok(Chunk::Events(Vec::new()));
    }
    let v: Value = serde_json::from_str(data).map_err(|e| {
        ProviderError::new(
            ProviderErrorKind::Protocol,
            format!(
                "unparseable stream chunk ({e}): {}",
                data.chars().take(200).collect::<String>()
            ),
        )
    })?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| err.as_str())
            .unwrap_or("error in the upstream stream");
        return Ok(Chunk::Error(msg.chars().take(500).collect()));
    }
    let mut events = Vec::new();
    if let Some(choices) = v.get("choices").and_then(Value::as_array) {
        // Natter asks for one completion; extra choices (n > 1) are ignored.
        if let Some(choice) = choices
            .iter()
            .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        {
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str)
                && !text.is_empty()
            {
                events.push(ProviderEvent::TextDelta(text.to_owned()));
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str)
                && !reason.is_empty()
            {
                events.push(ProviderEvent::Finish(reason.to_owned()));
            }
        }
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        let prompt = n("prompt_tokens").unwrap_or(0);
        let completion = n("completion_tokens").unwrap_or(0);
        events.push(ProviderEvent::Usage(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: n("total_tokens").unwrap_or(prompt + completion),
        }));
    }
    Ok(Chunk::Events(events))
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        "openai"
    }

    async fn stream(&self, request: CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let url = format!("{}/chat/completions", self.base_url);
        let mut req = self
            .client
            .post(&url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&Self::body(&request));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let response = req.send().await.map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Unavailable,
                format!("cannot reach {url}: {e}"),
            )
        })?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = response.text().await.unwrap_or_default();
            return Err(status_error(status, &headers, &body));
        }
        let events = response.bytes_stream().eventsource();
        // State: whether `[DONE]` or an error already ended the stream.
        let stream = futures::stream::unfold((events, false), |(mut events, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match events.next().await {
                    None => return None,
                    Some(Err(e)) => {
                        let err = ProviderError::new(
                            ProviderErrorKind::Cut,
                            format!("the upstream stream broke: {e}"),
                        );
                        return Some((vec![Err(err)], (events, true)));
                    }
                    Some(Ok(event)) => match parse_chunk(&event.data) {
                        Ok(Chunk::Done) => return None,
                        Ok(Chunk::Events(list)) if list.is_empty() => continue,
                        Ok(Chunk::Events(list)) => {
                            return Some((list.into_iter().map(Ok).collect(), (events, false)));
                        }
                        Ok(Chunk::Error(msg)) => {
                            let err = ProviderError::new(ProviderErrorKind::StreamError, msg);
                            return Some((vec![Err(err)], (events, true)));
                        }
                        Err(e) => return Some((vec![Err(e)], (events, true))),
                    },
                }
            }
        })
        .flat_map(futures::stream::iter);
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_chunks() {
        assert_eq!(parse_chunk("[DONE]").unwrap(), Chunk::Done);
        assert_eq!(
            parse_chunk(r#"{"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}"#)
                .unwrap(),
            Chunk::Events(vec![ProviderEvent::TextDelta("hi".into())])
        );
        assert_eq!(
            parse_chunk(r#"{"choices":null}"#).unwrap(),
            Chunk::Events(vec![])
        );
        assert_eq!(
            parse_chunk(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"eos_token"}]}"#)
                .unwrap(),
            Chunk::Events(vec![ProviderEvent::Finish("eos_token".into())])
        );
        assert_eq!(
            parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#)
                .unwrap(),
            Chunk::Events(vec![ProviderEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7
            })])
        );
        assert_eq!(
            parse_chunk(r#"{"error":{"message":"boom"}}"#).unwrap(),
            Chunk::Error("boom".into())
        );
        assert!(parse_chunk("{nope").is_err());
    }

    #[test]
    fn status_mapping() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "1.5".parse().unwrap());
        let e = status_error(reqwest::StatusCode::TOO_MANY_REQUESTS, &h, "{}");
        assert_eq!(e.kind, ProviderErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
        let e = status_error(
            reqwest::StatusCode::BAD_REQUEST,
            &Default::default(),
            r#"{"error":{"code":"context_length_exceeded","message":"too long"}}"#,
        );
        assert_eq!(e.kind, ProviderErrorKind::ContextTooLong);
        assert_eq!(e.message, "upstream answered 400: too long");
        let e = status_error(
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            &Default::default(),
            "oops",
        );
        assert!(e.retryable());
    }
}
