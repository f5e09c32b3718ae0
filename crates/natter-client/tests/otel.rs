//! OpenTelemetry traces: the real `natter serve --otlp-endpoint` exports its spans to an OTLP
//! receiver started here (OTLP/HTTP, protobuf, decoded with `opentelemetry-proto`). A Socket.IO
//! handshake and an HTTP request each carry a W3C `traceparent`; their spans, the turns they
//! start and the turns' provider call and store writes must arrive in the caller's trace under
//! the right parents (with the tool call of one of them), and the wire `traceId` must be the
//! traceparent's trace id. A provider call's span lasts until its stream ends, not only until
//! it opens. The AI SDK WebSocket face carries its upgrade request's `traceparent` to each
//! request frame's span and the turn it starts.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{Natter, start_fake_upstream};
use futures::{SinkExt, StreamExt};
use natter_client::{AiChatSocket, ChatEvent, ChatEventStream, ChatOptions, SendMessage};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A span as the receiver got it (ids in lowercase hex; no parent: "").
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    start_unix_nano: u64,
    end_unix_nano: u64,
}

impl ReceivedSpan {
    fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nano.saturating_sub(self.start_unix_nano))
    }
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
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
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
const WS_TRACE: &str = "5b8aa5a2d2c872e8321cf37308d69df2";
const WS_PARENT: &str = "051581bf3cb55c13";
/// The HTTP turn's tokens and the upstream's wait between two of them: its provider call
/// streams for at least (n - 1) × the wait after it opens.
const HTTP_TOKENS: u32 = 4;
const HTTP_TOKEN_GAP: Duration = Duration::from_millis(200);

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
                          "parts": [{"type": "text", "text": format!(
                              "again [fake:tokens n={HTTP_TOKENS} delay_ms={}]",
                              HTTP_TOKEN_GAP.as_millis()
                          )}]}],
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

    // The AI SDK WebSocket face: the traceparent on the upgrade request, a `send` frame after.
    let ws_url = format!(
        "{}/api/chat/ws?userId=carol",
        natter.url.replacen("http", "ws", 1)
    );
    let mut upgrade = ws_url.into_client_request().expect("a WebSocket request");
    upgrade.headers_mut().insert(
        "traceparent",
        format!("00-{WS_TRACE}-{WS_PARENT}-01")
            .parse()
            .expect("a header value"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(upgrade)
        .await
        .expect("WebSocket upgrade");
    let frame = serde_json::json!({
        "type": "send",
        "requestId": "ws-1",
        "id": chat_id,
        "trigger": "submit-message",
        "messages": [{"id": "u-ws-1", "role": "user",
                      "parts": [{"type": "text", "text": "over ws [fake:tokens n=2]"}]}],
    });
    ws.send(WsMessage::Text(frame.to_string().into()))
        .await
        .expect("send the frame");
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(message) = ws.next().await {
            let WsMessage::Text(text) = message.expect("a WebSocket frame") else {
                continue;
            };
            let frame: serde_json::Value = serde_json::from_str(&text).expect("a JSON frame");
            match frame["type"].as_str() {
                Some("end") => return,
                Some("error") => panic!("the WebSocket request failed: {frame}"),
                _ => {}
            }
        }
        panic!("the WebSocket closed before `end`");
    })
    .await
    .expect("the WebSocket turn's end within 20 s");
    let _ = ws.close(None).await;
    // The Socket.IO member sees that turn end too; it is stored before `end` goes out.
    let ChatEvent::AiMessage(ws_reply) = until_message(&mut events, None).await else {
        unreachable!()
    };
    assert_eq!(ws_reply.trace_id.as_deref(), Some(WS_TRACE));

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
    let model_call = child(&spans, HTTP_TRACE, &turn.span_id, "provider.stream");
    child(&spans, HTTP_TRACE, &turn.span_id, "store.append");
    // The provider call's span covers its whole stream: the upstream waits between tokens
    // after the response opened, so a span that ended at the opening would be far shorter.
    let streaming = HTTP_TOKEN_GAP * (HTTP_TOKENS - 1);
    assert!(
        model_call.duration() >= streaming,
        "provider.stream lasted {:?}, less than the {streaming:?} its tokens took: {model_call:?}",
        model_call.duration()
    );
    assert!(
        model_call.start_unix_nano >= turn.start_unix_nano
            && model_call.end_unix_nano <= turn.end_unix_nano,
        "the provider call lies within its turn: {model_call:?} {turn:?}"
    );
    // WebSocket: the upgrade request's span under the caller's, each request frame's span
    // under it, the frame's turn under that.
    let upgrade = child(&spans, WS_TRACE, WS_PARENT, "GET /api/chat/ws");
    let request = child(&spans, WS_TRACE, &upgrade.span_id, "aisdk.ws.request");
    let turn = child(&spans, WS_TRACE, &request.span_id, "turn");
    child(&spans, WS_TRACE, &turn.span_id, "provider.stream");
    // The request with the invalid traceparent got a trace of its own.
    let health = spans
        .iter()
        .find(|s| s.name == "GET /healthz")
        .unwrap_or_else(|| panic!("no GET /healthz span: {spans:#?}"));
    assert!(health.parent_span_id.is_empty(), "{health:?}");
    assert_ne!(health.trace_id, SOCKET_TRACE);
    assert_ne!(health.trace_id, HTTP_TRACE);
    assert_ne!(health.trace_id, WS_TRACE);
}
