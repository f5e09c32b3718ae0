//! OpenTelemetry traces, off unless `--otlp-endpoint` is given: the server's `tracing` spans
//! (HTTP requests, Socket.IO events, turns and their provider calls, tool calls and store
//! writes) exported over OTLP/HTTP (protobuf) as service `natter`, and the HTTP request span.
//!
//! A caller's W3C `traceparent` (HTTP header; Socket.IO handshake `auth`, query or header) makes
//! our span a child of the caller's; see `natter_core::trace_context` for the `traceId` rule.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use natter_core::trace_context::{SpanParent, TRACEPARENT};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::registry::LookupSpan;

/// The service name spans are exported under.
pub const SERVICE_NAME: &str = "natter";

/// The OTLP/HTTP traces URL for `endpoint`: a collector's base URL (`http://host:4318`, as in
/// `OTEL_EXPORTER_OTLP_ENDPOINT`) gets `/v1/traces`; a URL already ending in it is kept.
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Refuses an endpoint that is not an http:// or https:// URL with a host.
pub fn check_endpoint(endpoint: &str) -> anyhow::Result<()> {
    let what = crate::cluster::redact(endpoint);
    let parsed: axum::http::Uri = traces_url(endpoint)
        .parse()
        .map_err(|e| anyhow::anyhow!("otlp_endpoint `{what}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
        anyhow::bail!("otlp_endpoint `{what}` must be an http:// or https:// URL");
    }
    Ok(())
}

/// The exporter of a running server; [`Traces::shutdown`] sends what is still buffered.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Flushes and stops the exporter (blocking: up to `timeout` for the collector). Call it
    /// once the server has stopped, off the async runtime's threads.
    pub fn shutdown(&self, timeout: Duration) {
        if let Err(e) = self.provider.shutdown_with_timeout(timeout) {
            // The log layer may be gone by now: stderr, as `main` reports its own errors.
            eprintln!("natter: flushing traces to the OTLP endpoint failed: {e}");
        }
    }
}

/// The `tracing` layer that exports spans to the OTLP endpoint, and its [`Traces`]. Spans at
/// `info` and above are exported whatever `NATTER_LOG` lets through to the log.
pub fn layer<S>(endpoint: &str) -> anyhow::Result<(impl Layer<S> + 'static, Traces)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    check_endpoint(endpoint)?;
    let url = traces_url(endpoint);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| {
            let what = crate::cluster::redact(endpoint);
            anyhow::anyhow!("the OTLP exporter for `{what}`: {e}")
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build();
    let tracer = provider.tracer(SERVICE_NAME);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(LevelFilter::INFO);
    Ok((layer, Traces { provider }))
}

/// One span per HTTP request (method, route, status), a child of the caller's `traceparent`.
/// Socket.IO's own requests are left out: each Socket.IO event gets its span instead.
pub async fn http_span(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path.starts_with("/socket.io") {
        return next.run(request).await;
    }
    let method = request.method().clone();
    // A clone of the matched path shares its text: nothing is copied per request.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map(MatchedPath::as_str);
    let span = tracing::info_span!(
        "http.request",
        otel.name = %RequestSpanName { method: &method, route },
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = route,
        url.path = path,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(parent) = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(SpanParent::from_traceparent)
    {
        parent.adopt(&span);
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}

/// The name a request's span is exported under (`<method> <route>`, OpenTelemetry's HTTP
/// convention). A `Display` value, so the text is built only by a layer that reads the field
/// (the OTLP exporter), not per request whenever the span is enabled.
struct RequestSpanName<'a> {
    method: &'a axum::http::Method,
    route: Option<&'a str>,
}

impl std::fmt::Display for RequestSpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.route.unwrap_or("(unmatched)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_are_endpoints() {
        assert!(check_endpoint("http://127.0.0.1:4318").is_ok());
        assert!(check_endpoint("https://otel.example").is_ok());
        for bad in [
            "127.0.0.1:4318",
            "ftp://otel.example",
            "not a url",
            "http://",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example/v1/traces"),
            "https://otel.example/v1/traces"
        );
    }
}
