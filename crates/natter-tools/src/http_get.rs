//! `http_get`: fetch a page or an API answer, only under allow-listed URL prefixes, with a
//! size cap and a time limit. Redirects are not followed (one could leave the allow-list).

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use natter_core::provider::ToolSpec;
use natter_core::tools::Tool;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct HttpGetLimits {
    /// URL prefixes a request must start with (e.g. `https://api.example.com/v1/`).
    pub allow: Vec<String>,
    /// Bytes of body kept; the rest is cut and `truncated` set.
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl Default for HttpGetLimits {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            max_bytes: 64 * 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

pub struct HttpGet {
    limits: HttpGetLimits,
    client: reqwest::Client,
}

impl HttpGet {
    pub fn new(limits: HttpGetLimits) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(limits.timeout)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self { limits, client })
    }

    fn allowed(&self, url: &str) -> bool {
        self.limits
            .allow
            .iter()
            .any(|p| url.starts_with(p.as_str()))
    }
}

#[async_trait]
impl Tool for HttpGet {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "http_get".into(),
            description: format!(
                "HTTP GET of a URL starting with one of: {}. Returns status, content type and up to {} bytes of the body as text.",
                self.limits.allow.join(", "),
                self.limits.max_bytes
            ),
            parameters: json!({
                "type": "object",
                "properties": {"url": {"type": "string", "description": "The full URL"}},
                "required": ["url"],
                "additionalProperties": false
            }),
        }
    }

    fn timeout(&self) -> Duration {
        self.limits.timeout + Duration::from_secs(1)
    }

    async fn run(&self, input: Value, cancel: CancellationToken) -> Result<Value, String> {
        let url = input["url"].as_str().unwrap_or_default();
        // Parse first, so `https://allowed.example@evil.example/` cannot pass a prefix check.
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("URLs with credentials are not allowed".into());
        }
        if !self.allowed(parsed.as_str()) {
            return Err(format!(
                "`{url}` is not under an allowed prefix ({})",
                self.limits.allow.join(", ")
            ));
        }
        let fetch = async {
            let response = self
                .client
                .get(parsed)
                .send()
                .await
                .map_err(|e| format!("the request failed: {e}"))?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let mut body = Vec::new();
            let mut truncated = false;
            let mut chunks = response.bytes_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| format!("reading the body failed: {e}"))?;
                let room = self.limits.max_bytes - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(json!({
                "status": status,
                "contentType": content_type,
                "body": String::from_utf8_lossy(&body),
                "truncated": truncated,
            }))
        };
        tokio::select! {
            r = fetch => r,
            _ = cancel.cancelled() => Err("cancelled".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one canned HTTP response per connection.
    async fn serve(body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            }
        });
        format!("http://{addr}/")
    }

    fn tool(allow: &str, max_bytes: usize) -> HttpGet {
        let _ = rustls::crypto::ring::default_provider().install_default();
        HttpGet::new(HttpGetLimits {
            allow: vec![allow.to_owned()],
            max_bytes,
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn gets_allowed_urls_within_limits_only() {
        let base = serve("hello world").await;
        let t = tool(&base, 5);
        let got = t
            .run(
                json!({"url": format!("{base}page")}),
                CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(got["status"], 200);
        assert_eq!(got["body"], "hello");
        assert_eq!(got["truncated"], true);

        let refused = t
            .run(
                json!({"url": "http://example.com/"}),
                CancellationToken::new(),
            )
            .await
            .unwrap_err();
        assert!(refused.contains("not under an allowed prefix"), "{refused}");
        let sneaky = format!("{}@example.com/", base.trim_end_matches('/'));
        let refused = t
            .run(json!({"url": sneaky}), CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            refused.contains("credentials") || refused.contains("not under"),
            "{refused}"
        );
    }
}
