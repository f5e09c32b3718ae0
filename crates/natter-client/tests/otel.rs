//! OpenTelemetry traces: the real `natter serve --otlp-endpoint` exports its spans to an OTLP
//! receiver started here (OTLP/HTTP, protobuf, decoded with `opentelemetry-proto`). A Socket.IO
//! handshake and an HTTP request each carry a W3C `traceparent`; their spans, the turns they
//! start and the turns' provider call and store writes must arrive in the caller's trace under
//! the right parents (with the tool call of one of them), and the wire `traceId` must be the
//! traceparent's trace id.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{Natter, start_fake_upstream};
use natter_client::{AiChatSocket, ChatEvent, ChatEventStream, ChatOptions, SendMessage};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;

/// A span as the receiver got it (ids in lowercase hex; no parent: "").
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

type Received = Arc<Mutex<Vec<ReceivedSpan>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn accept_traces(State(received): State<Received>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf trace export");
    let mut out = received.lock().unwrap_or_else(|p| p.into_inner());
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .and_then(|v| match v {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                });
            }
        }
    }
    ""
}

/// An OTLP/HTTP receiver on a free port: `POST /v1/traces`.
async fn start_receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(accept_traces))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the OTLP receiver");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("receiver address")
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, received)
}

const SOCKET_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SOCKET_PARENT: &str = "00f067aa0ba902b7";
const HTTP_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const HTTP_PARENT: &str = "b7ad6b7169203331";

async fn until_message(events: &mut ChatEventStream, request_id: Option<&str>) -> ChatEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = events.recv().await {
            if let ChatEvent::AiMessage(m) = &event
                && request_id.is_none_or(|r| m.request_id == r)
            {
                return event;
            }
        }
        panic!("the event stream ended before ai:message");
    })
    .await
    .expect("ai:message within 20 s")
}

/// The one span named `name` in `trace`, whose parent is `parent`.
fn child<'a>(spans: &'a [ReceivedSpan], trace: &str, parent: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.parent_span_id == parent && s.name == name)
        .collect();
    assert!(
        !found.is_empty(),
        "no span `{name}` in trace {trace} under {parent}; received: {spans:#?}"
    );
    found[0]
}

#[tokio::test]
async fn spans_reach_the_otlp_endpoint_in_the_callers_trace() {
    // reqwest is built with `rustls-no-provider`; the binary installs ring, so does this test.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (otlp, received) = start_receiver().await;
    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut natter = Natter::start(
        &upstream,
        dir.path(),
        &["--otlp-endpoint", &otlp, "--tools", "current_time"],
    )
    .await;

    // Socket.IO: the traceparent in the handshake (query; `auth.traceparent` works the same).
    let chat_id = format!("otel-{}", std::process::id());
    let mut options = ChatOptions::new(&natter.url, &chat_id).user_id("ada");
    options.query.push((
        "traceparent".into(),
        format!("00-{SOCKET_TRACE}-{SOCKET_PARENT}-01"),
    ));
    let (chat, mut events) = AiChatSocket::connect(options)
        .await
        .expect("connect and join");
    // A turn with a tool call: the model calls `current_time`, then answers.
    chat.send_message(SendMessage::text(
        "what time is it? [fake:toolcall name=current_time args={}]",
    ))
    .await
    .expect("user:message acked");
    let ChatEvent::AiMessage(reply) = until_message(&mut events, None).await else {
        unreachable!()
    };
    assert_eq!(
        reply.trace_id.as_deref(),
        Some(SOCKET_TRACE),
        "a payload without traceId gets the handshake traceparent's trace id"
    );

    // HTTP: the AI SDK face, with a traceparent header, in the same chat.
    let response = reqwest::Client::new()
        .post(format!("{}/api/chat", natter.url))
        .header("traceparent", format!("00-{HTTP_TRACE}-{HTTP_PARENT}-01"))
        .json(&serde_json::json!({
            "id": chat_id,
            "userId": "bob",
            "trigger": "submit-message",
            "messages": [{"id": "u-http-1", "role": "user",
                          "parts": [{"type": "text", "text": "again [fake:tokens n=2]"}]}],
        }))
        .send()
        .await
        .expect("POST /api/chat");
    assert!(response.status().is_success(), "{}", response.status());
    let stream = response.text().await.expect("the turn's stream");
    assert!(stream.contains("text-delta"), "{stream}");
    // The Socket.IO member sees the HTTP turn, under the HTTP request's trace id.
    let http_reply = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = events.recv().await {
            if let ChatEvent::AiMessage(m) = event {
                return m;
            }
        }
        panic!("the event stream ended");
    })
    .await
    .expect("the HTTP turn's ai:message");
    assert_eq!(http_reply.trace_id.as_deref(), Some(HTTP_TRACE));

    // An invalid traceparent is ignored (no error, no traceId made up).
    let bad = reqwest::Client::new()
        .get(format!("{}/healthz", natter.url))
        .header("traceparent", "00-not-a-trace-01")
        .send()
        .await
        .expect("GET /healthz");
    assert!(bad.status().is_success(), "{}", bad.status());

    chat.close().await;
    // SIGTERM: the server flushes its spans on the way out (the batch exporter would
    // otherwise wait up to 5 s).
    natter.terminate().await;
    let spans = received.lock().unwrap_or_else(|p| p.into_inner()).clone();

    assert!(
        spans.iter().all(|s| s.service == "natter"),
        "service.name: {spans:#?}"
    );
    // Socket.IO: event span under the caller's span, the turn under the event, the turn's
    // provider call and its reply's store append under the turn.
    let event = child(
        &spans,
        SOCKET_TRACE,
        SOCKET_PARENT,
        "socket.io user:message",
    );
    child(&spans, SOCKET_TRACE, &event.span_id, "store.append");
    let turn = child(&spans, SOCKET_TRACE, &event.span_id, "turn");
    child(&spans, SOCKET_TRACE, &turn.span_id, "provider.stream");
    child(&spans, SOCKET_TRACE, &turn.span_id, "tool.call");
    child(&spans, SOCKET_TRACE, &turn.span_id, "store.append");
    let model_calls = spans
        .iter()
        .filter(|s| s.parent_span_id == turn.span_id && s.name == "provider.stream")
        .count();
    assert_eq!(model_calls, 2, "the tool round and the answer: {spans:#?}");
    // HTTP: the request span (method and route) under the caller's span, then the same.
    let request = child(&spans, HTTP_TRACE, HTTP_PARENT, "POST /api/chat");
    child(&spans, HTTP_TRACE, &request.span_id, "store.append");
    let turn = child(&spans, HTTP_TRACE, &request.span_id, "turn");
    child(&spans, HTTP_TRACE, &turn.span_id, "provider.stream");
    child(&spans, HTTP_TRACE, &turn.span_id, "store.append");
    // The request with the invalid traceparent got a trace of its own.
    let health = spans
        .iter()
        .find(|s| s.name == "GET /healthz")
        .unwrap_or_else(|| panic!("no GET /healthz span: {spans:#?}"));
    assert!(health.parent_span_id.is_empty(), "{health:?}");
    assert_ne!(health.trace_id, SOCKET_TRACE);
    assert_ne!(health.trace_id, HTTP_TRACE);
}
