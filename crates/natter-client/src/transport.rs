//! Layer 1: one Socket.IO v5 connection over Engine.IO v4 on a WebSocket, kept alive.
//!
//! [`Socket::connect`] opens `<url><path>?EIO=4&transport=websocket&<query>` directly (no
//! polling, no upgrade), reads the Engine.IO OPEN packet, sends the namespace `CONNECT` with the
//! `auth` object and waits for the server's `CONNECT` (or its `CONNECT_ERROR`, returned as
//! [`ClientError::ConnectRefused`]). A task then owns the connection: it answers the server's
//! pings, counts the connection dead when no ping arrives within `pingInterval + pingTimeout`,
//! matches acks to emits, hands server events (with their ack requests) to [`SocketEvents`],
//! and reconnects with [`ReconnectPolicy`]'s backoff when the connection is lost.
//!
//! Unlike socket.io-client, a server-side disconnect is retried too: Natter disconnects a
//! member that fell too far behind (`slow_consumer`) or whose server shuts down, and both are
//! meant to be followed by a reconnect. A refused `CONNECT` (e.g. `unauthorized`) is not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::backoff::ReconnectPolicy;
use crate::codec::{EnginePacket, OpenPacket, SocketPacket};
use crate::error::{ClientError, ConnectErrorKind};
use crate::stream::EventStream;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How to reach a Socket.IO server.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// `http://`, `https://`, `ws://` or `wss://` and the host; the path goes in `path`.
    pub url: String,
    /// The Engine.IO endpoint; default `/socket.io/`.
    pub path: String,
    /// The Socket.IO namespace; default `/`.
    pub namespace: String,
    /// Extra query parameters of the handshake (`EIO` and `transport` are set by the client).
    pub query: Vec<(String, String)>,
    /// The `auth` object sent with `CONNECT` (e.g. `{token, userId, orgId}`).
    pub auth: Option<Value>,
    /// Extra HTTP headers of the WebSocket request (e.g. `Authorization: Bearer …`).
    pub headers: Vec<(String, String)>,
    pub reconnect: ReconnectPolicy,
    /// The longest a connection may take from TCP connect to the Socket.IO `CONNECT` reply.
    pub connect_timeout: Duration,
    /// Events buffered for the app before the connection stops reading (backpressure).
    pub event_buffer: usize,
}

impl SocketOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            path: "/socket.io/".into(),
            namespace: "/".into(),
            query: Vec::new(),
            auth: None,
            headers: Vec::new(),
            reconnect: ReconnectPolicy::default(),
            connect_timeout: Duration::from_secs(20),
            event_buffer: 1024,
        }
    }

    /// The WebSocket URL of the handshake.
    pub fn websocket_url(&self) -> Result<url::Url, ClientError> {
        let mut url = url::Url::parse(&self.url)
            .map_err(|e| ClientError::InvalidOptions(format!("url {:?}: {e}", self.url)))?;
        let scheme = match url.scheme() {
            "http" | "ws" => "ws",
            "https" | "wss" => "wss",
            other => {
                return Err(ClientError::InvalidOptions(format!(
                    "url {:?}: scheme `{other}` is not one of http, https, ws, wss",
                    self.url
                )));
            }
        };
        if !matches!(url.path(), "" | "/") {
            return Err(ClientError::InvalidOptions(format!(
                "url {:?} has a path; put the Engine.IO path in `path` and the namespace in `namespace`",
                self.url
            )));
        }
        if url.set_scheme(scheme).is_err() {
            return Err(ClientError::InvalidOptions(format!(
                "url {:?}: cannot be turned into a {scheme}:// URL",
                self.url
            )));
        }
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        url.set_path(&path);
        {
            let mut q = url.query_pairs_mut();
            q.clear();
            q.append_pair("EIO", "4")
                .append_pair("transport", "websocket");
            for (k, v) in &self.query {
                if k != "EIO" && k != "transport" {
                    q.append_pair(k, v);
                }
            }
        }
        Ok(url)
    }

    fn validate(&self) -> Result<(), ClientError> {
        self.websocket_url()?;
        if !self.namespace.starts_with('/') {
            return Err(ClientError::InvalidOptions(format!(
                "namespace {:?} must start with `/`",
                self.namespace
            )));
        }
        if let Some(auth) = &self.auth
            && !auth.is_object()
        {
            return Err(ClientError::InvalidOptions(
                "auth must be a JSON object".into(),
            ));
        }
        if self.event_buffer == 0 {
            return Err(ClientError::InvalidOptions(
                "event_buffer must be at least 1".into(),
            ));
        }
        for (name, value) in &self.headers {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::InvalidOptions(format!("header {name:?}: {e}")))?;
            HeaderValue::from_str(value).map_err(|e| {
                ClientError::InvalidOptions(format!("header {name:?}'s value: {e}"))
            })?;
        }
        Ok(())
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// [`Socket::close`] (or every handle was dropped).
    ClientClose,
    /// The server sent a Socket.IO `DISCONNECT` or an Engine.IO `CLOSE`.
    ServerDisconnect,
    /// The WebSocket closed.
    TransportClose,
    /// The WebSocket failed (the message says how).
    TransportError(String),
    /// No ping within `pingInterval + pingTimeout`.
    PingTimeout,
}

/// What the connection task reports, in order.
#[derive(Debug, Clone)]
pub enum SocketEvent {
    /// Connected (or reconnected) to the namespace; `sid` is the Socket.IO session id.
    Connected {
        sid: String,
        reconnected: bool,
    },
    /// A server event.
    Event(IncomingEvent),
    /// Something the client could not handle (a malformed or binary packet); the connection
    /// goes on.
    Error(ClientError),
    Disconnected {
        reason: DisconnectReason,
    },
    /// Reconnect attempt `attempt` starts after `delay`.
    Reconnecting {
        attempt: u32,
        delay: Duration,
    },
    /// Reconnect attempt `attempt` failed; more follow if the policy allows.
    ReconnectAttemptFailed {
        attempt: u32,
        error: ClientError,
    },
    /// The end: no more events. `error` says why, unless the app closed the client.
    Closed {
        error: Option<ClientError>,
    },
}

/// A server event: `name`, its arguments, and a way to answer it when the server asked for an ack.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    pub name: String,
    pub args: Vec<Value>,
    /// Set when the server asked for an ack.
    pub ack: Option<AckResponder>,
}

impl IncomingEvent {
    /// The first argument (Socket.IO events here carry one payload), or `null`.
    pub fn data(&self) -> &Value {
        self.args.first().unwrap_or(&Value::Null)
    }
}

/// Answers one server event that asked for an ack. Clones share it: the first `send` wins.
#[derive(Debug, Clone)]
pub struct AckResponder {
    ack_id: u64,
    namespace: String,
    out: mpsc::UnboundedSender<String>,
    sent: Arc<AtomicBool>,
}

impl AckResponder {
    pub fn id(&self) -> u64 {
        self.ack_id
    }

    /// Sends the ack with `args` (usually one value). Fails if it was sent already or the
    /// connection it belongs to is gone (an ack is only meaningful on its own connection).
    pub fn send(&self, args: Vec<Value>) -> Result<(), ClientError> {
        if self.sent.swap(true, Ordering::SeqCst) {
            return Err(ClientError::AckUnavailable);
        }
        let packet = SocketPacket::Ack {
            namespace: self.namespace.clone(),
            ack_id: self.ack_id,
            args,
        };
        self.out
            .send(EnginePacket::Message(packet.encode()).encode())
            .map_err(|_| ClientError::AckUnavailable)
    }

    /// Sends the ack with one value.
    pub fn send_value(&self, value: Value) -> Result<(), ClientError> {
        self.send(vec![value])
    }

    pub fn is_sent(&self) -> bool {
        self.sent.load(Ordering::SeqCst)
    }
}

/// The stream of [`SocketEvent`]s of one [`Socket`]. Ends after [`SocketEvent::Closed`].
pub type SocketEvents = EventStream<SocketEvent>;

/// The live connection's outgoing queue.
struct Link {
    out: mpsc::UnboundedSender<String>,
    max_payload: u64,
}

type AckResult = Result<Vec<Value>, ClientError>;

struct Shared {
    namespace: String,
    link: Mutex<Option<Link>>,
    pending_acks: Mutex<HashMap<u64, oneshot::Sender<AckResult>>>,
    next_ack_id: AtomicU64,
    auth: Mutex<Option<Value>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

/// A poisoned lock only means another thread panicked mid-update of plain data; the data is
/// still usable, so carry on rather than spread the panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Closes the connection when the last [`Socket`] handle is dropped.
struct CloseOnDrop {
    close: watch::Sender<bool>,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self.close.send(true);
    }
}

/// A [`Socket`] that closes anyway once every strong handle is dropped.
pub(crate) struct WeakSocket {
    shared: Arc<Shared>,
    guard: std::sync::Weak<CloseOnDrop>,
}

impl WeakSocket {
    pub(crate) fn upgrade(&self) -> Option<Socket> {
        Some(Socket {
            shared: self.shared.clone(),
            guard: self.guard.upgrade()?,
        })
    }
}

/// A handle to a Socket.IO connection; clones share it.
#[derive(Clone)]
pub struct Socket {
    shared: Arc<Shared>,
    guard: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("namespace", &self.shared.namespace)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Socket {
    /// Connects once (no retry: the first failure is returned, so a wrong URL or token shows at
    /// once); after that, lost connections are retried according to `options.reconnect`.
    pub async fn connect(options: SocketOptions) -> Result<(Socket, SocketEvents), ClientError> {
        options.validate()?;
        let shared = Arc::new(Shared {
            namespace: options.namespace.clone(),
            link: Mutex::new(None),
            pending_acks: Mutex::new(HashMap::new()),
            next_ack_id: AtomicU64::new(0),
            auth: Mutex::new(options.auth.clone()),
            supervisor: Mutex::new(None),
        });
        let first = establish(&options, options.auth.clone()).await?;
        // Usable from the moment `connect` returns.
        let first = first.go_live(&shared);
        let (events_tx, events_rx) = mpsc::channel(options.event_buffer);
        let (close_tx, close_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(
            shared.clone(),
            options,
            first,
            events_tx,
            close_rx,
        ));
        *lock(&shared.supervisor) = Some(supervisor);
        Ok((
            Socket {
                shared,
                guard: Arc::new(CloseOnDrop { close: close_tx }),
            },
            SocketEvents { rx: events_rx },
        ))
    }

    pub fn is_connected(&self) -> bool {
        lock(&self.shared.link).is_some()
    }

    /// A handle that does not keep the connection open.
    pub(crate) fn downgrade(&self) -> WeakSocket {
        WeakSocket {
            shared: self.shared.clone(),
            guard: Arc::downgrade(&self.guard),
        }
    }

    /// The `auth` object for the next reconnects (e.g. after a token refresh).
    pub fn set_auth(&self, auth: Option<Value>) {
        *lock(&self.shared.auth) = auth;
    }

    /// The `auth` object the next `CONNECT` sends (the latest [`set_auth`](Self::set_auth)).
    pub fn auth(&self) -> Option<Value> {
        lock(&self.shared.auth).clone()
    }

    /// Emits `event` with `args`, asking no ack. Fails with `NotConnected` while disconnected
    /// (nothing is queued across reconnects: the app decides what to resend).
    pub fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), ClientError> {
        self.send_event(event, args, None)
    }

    /// Emits `event` and waits up to `timeout` for the server's ack.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, ClientError> {
        let id = self.shared.next_ack_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        // Registered before sending, so an ack can never arrive to an unknown id.
        lock(&self.shared.pending_acks).insert(id, tx);
        if let Err(e) = self.send_event(event, args, Some(id)) {
            lock(&self.shared.pending_acks).remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::AckLost),
            Err(_) => {
                lock(&self.shared.pending_acks).remove(&id);
                Err(ClientError::AckTimeout {
                    event: event.to_owned(),
                    timeout,
                })
            }
        }
    }

    fn send_event(
        &self,
        event: &str,
        args: Vec<Value>,
        ack_id: Option<u64>,
    ) -> Result<(), ClientError> {
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(Value::String(event.to_owned()));
        all.extend(args);
        let frame = EnginePacket::Message(
            SocketPacket::Event {
                namespace: self.shared.namespace.clone(),
                ack_id,
                args: all,
            }
            .encode(),
        )
        .encode();
        let link = lock(&self.shared.link);
        let link = link.as_ref().ok_or(ClientError::NotConnected)?;
        if link.max_payload > 0 && frame.len() as u64 > link.max_payload {
            return Err(ClientError::PayloadTooLarge {
                size: frame.len(),
                max: link.max_payload,
            });
        }
        link.out.send(frame).map_err(|_| ClientError::NotConnected)
    }

    /// Disconnects (sending the namespace `DISCONNECT`), stops reconnecting and waits for the
    /// connection task to end. The event stream then ends with `Closed { error: None }`.
    pub async fn close(&self) {
        let _ = self.guard.close.send(true);
        let task = lock(&self.shared.supervisor).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// A connection that finished its handshake.
struct Established {
    ws: Ws,
    open: OpenPacket,
    sid: String,
}

impl Established {
    /// Opens the connection to emits: from here on `emit` queues on it.
    fn go_live(self, shared: &Shared) -> Live {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        *lock(&shared.link) = Some(Link {
            out: out_tx.clone(),
            max_payload: self.open.max_payload,
        });
        Live {
            established: self,
            out_tx,
            out_rx,
        }
    }
}

/// A connection that emits can use.
struct Live {
    established: Established,
    out_tx: mpsc::UnboundedSender<String>,
    out_rx: mpsc::UnboundedReceiver<String>,
}

async fn establish(
    options: &SocketOptions,
    auth: Option<Value>,
) -> Result<Established, ClientError> {
    match tokio::time::timeout(options.connect_timeout, handshake(options, auth)).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::HandshakeTimeout(options.connect_timeout)),
    }
}

async fn handshake(
    options: &SocketOptions,
    auth: Option<Value>,
) -> Result<Established, ClientError> {
    let url = options.websocket_url()?;
    let shown_url = url.to_string();
    let connect_failed = |reason: String| ClientError::Connect {
        url: shown_url.clone(),
        reason,
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| connect_failed(e.to_string()))?;
    for (name, value) in &options.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ClientError::InvalidOptions(format!("header {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| ClientError::InvalidOptions(format!("header value: {e}")))?;
        request.headers_mut().insert(name, value);
    }
    let (mut ws, _response) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| connect_failed(describe_ws_error(e)))?;

    let open = match next_text(&mut ws, &shown_url).await? {
        Some(text) => match EnginePacket::decode(&text)? {
            EnginePacket::Open(open) => open,
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected the Engine.IO OPEN packet first, got {other:?}"
                )));
            }
        },
        None => {
            return Err(connect_failed(
                "closed before the Engine.IO handshake".into(),
            ));
        }
    };

    let connect = SocketPacket::Connect {
        namespace: options.namespace.clone(),
        data: auth,
    };
    send_text(&mut ws, EnginePacket::Message(connect.encode()).encode())
        .await
        .map_err(|e| connect_failed(e.to_string()))?;

    loop {
        let Some(text) = next_text(&mut ws, &shown_url).await? else {
            return Err(connect_failed(
                "closed before the Socket.IO CONNECT reply".into(),
            ));
        };
        match EnginePacket::decode(&text)? {
            EnginePacket::Ping => send_text(&mut ws, EnginePacket::Pong.encode())
                .await
                .map_err(|e| connect_failed(e.to_string()))?,
            EnginePacket::Close => {
                return Err(connect_failed(
                    "the server closed the Engine.IO session".into(),
                ));
            }
            EnginePacket::Message(m) => match SocketPacket::decode(&m)? {
                SocketPacket::Connect { namespace, data } if namespace == options.namespace => {
                    let sid = data
                        .as_ref()
                        .and_then(|d| d.get("sid"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    return Ok(Established { ws, open, sid });
                }
                SocketPacket::ConnectError {
                    namespace,
                    message,
                    data,
                } if namespace == options.namespace => {
                    let _ = ws.close(None).await;
                    return Err(ClientError::ConnectRefused {
                        kind: ConnectErrorKind::from_message(&message),
                        message,
                        data,
                    });
                }
                other => {
                    tracing::debug!(packet = ?other, "ignoring a packet before the namespace CONNECT");
                }
            },
            _ => {}
        }
    }
}

fn describe_ws_error(e: tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(response) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(200)
                        .collect::<String>()
                })
                .unwrap_or_default();
            format!("HTTP {} {body}", response.status())
        }
        E::Url(u) => format!("{u} (for wss://, build natter-client with the `tls` feature)"),
        other => other.to_string(),
    }
}

/// The next text frame during the handshake (binary and control frames are skipped).
async fn next_text(ws: &mut Ws, url: &str) -> Result<Option<String>, ClientError> {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => return Ok(Some(t.as_str().to_owned())),
            Ok(Message::Close(_)) => return Ok(None),
            Ok(_) => {}
            Err(e) => {
                return Err(ClientError::Connect {
                    url: url.to_owned(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(None)
}

async fn send_text(ws: &mut Ws, text: String) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.send(Message::text(text)).await
}

/// Runs connections one after another until the app closes the socket or reconnecting ends.
async fn supervise(
    shared: Arc<Shared>,
    options: SocketOptions,
    first: Live,
    events: mpsc::Sender<SocketEvent>,
    mut close: watch::Receiver<bool>,
) {
    let mut current = first;
    let mut reconnected = false;
    loop {
        let _ = events
            .send(SocketEvent::Connected {
                sid: current.established.sid.clone(),
                reconnected,
            })
            .await;
        let reason = run_connection(&shared, current, &events, &mut close).await;
        // The link first: after this no emit can queue on the dead connection, so every ack
        // still pending below was sent on it and is lost.
        lock(&shared.link).take();
        for (_, waiter) in lock(&shared.pending_acks).drain() {
            let _ = waiter.send(Err(ClientError::AckLost));
        }
        let _ = events
            .send(SocketEvent::Disconnected {
                reason: reason.clone(),
            })
            .await;
        if reason == DisconnectReason::ClientClose {
            let _ = events.send(SocketEvent::Closed { error: None }).await;
            return;
        }
        if !options.reconnect.enabled {
            let error = ClientError::ReconnectFailed {
                attempts: 0,
                last: format!("disconnected ({reason:?}) and reconnecting is off"),
            };
            let _ = events
                .send(SocketEvent::Closed { error: Some(error) })
                .await;
            return;
        }

        let mut attempt = 0u32;
        current = loop {
            attempt = attempt.saturating_add(1);
            if !options.reconnect.allows(attempt) {
                let error = ClientError::ReconnectFailed {
                    attempts: attempt - 1,
                    last: format!("{reason:?}"),
                };
                let _ = events
                    .send(SocketEvent::Closed { error: Some(error) })
                    .await;
                return;
            }
            let delay = options.reconnect.delay(attempt);
            let _ = events
                .send(SocketEvent::Reconnecting { attempt, delay })
                .await;
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_for_close(&mut close) => {
                    let _ = events.send(SocketEvent::Closed { error: None }).await;
                    return;
                }
            }
            let auth = lock(&shared.auth).clone();
            let result = tokio::select! {
                r = establish(&options, auth) => r,
                _ = wait_for_close(&mut close) => {
                    let _ = events.send(SocketEvent::Closed { error: None }).await;
                    return;
                }
            };
            match result {
                Ok(established) => break established.go_live(&shared),
                Err(error) if !error.is_retryable_connect_failure() => {
                    let _ = events
                        .send(SocketEvent::Closed { error: Some(error) })
                        .await;
                    return;
                }
                Err(error) => {
                    tracing::debug!(attempt, %error, "reconnect attempt failed");
                    let _ = events
                        .send(SocketEvent::ReconnectAttemptFailed { attempt, error })
                        .await;
                }
            }
        };
        reconnected = true;
    }
}

/// Resolves when the app asks to close (or every handle is gone).
async fn wait_for_close(close: &mut watch::Receiver<bool>) {
    // An error means the sender (the last handle) was dropped: that is a close too.
    let _ = close.wait_for(|closed| *closed).await;
}

/// Serves one connection until it ends.
async fn run_connection(
    shared: &Shared,
    live: Live,
    events: &mpsc::Sender<SocketEvent>,
    close: &mut watch::Receiver<bool>,
) -> DisconnectReason {
    let Live {
        established: Established { ws, open, .. },
        out_tx,
        mut out_rx,
    } = live;
    let (mut sink, mut stream) = ws.split();
    let heartbeat = open.heartbeat_deadline();
    let mut dead_after = deadline_after(heartbeat);
    // Binary frames still owed by a binary packet that was refused.
    let mut skip_binary_frames = 0usize;

    loop {
        tokio::select! {
            _ = wait_for_close(close) => {
                let bye = SocketPacket::Disconnect { namespace: shared.namespace.clone() };
                let _ = sink.send(Message::text(EnginePacket::Message(bye.encode()).encode())).await;
                let _ = sink.close().await;
                return DisconnectReason::ClientClose;
            }
            Some(frame) = out_rx.recv() => {
                if let Err(e) = sink.send(Message::text(frame)).await {
                    return DisconnectReason::TransportError(e.to_string());
                }
            }
            _ = tokio::time::sleep_until(dead_after) => {
                tracing::debug!(?heartbeat, "no ping from the server in time");
                return DisconnectReason::PingTimeout;
            }
            msg = stream.next() => {
                let text = match msg {
                    None => return DisconnectReason::TransportClose,
                    Some(Err(e)) => return DisconnectReason::TransportError(e.to_string()),
                    Some(Ok(Message::Close(_))) => return DisconnectReason::TransportClose,
                    Some(Ok(Message::Binary(_))) => {
                        if skip_binary_frames > 0 {
                            skip_binary_frames -= 1;
                        } else {
                            let _ = events.send(SocketEvent::Error(ClientError::Protocol(
                                "a binary frame that belongs to no packet".into(),
                            ))).await;
                        }
                        continue;
                    }
                    Some(Ok(Message::Text(t))) => t,
                    // WebSocket ping/pong frames: tungstenite answers pings itself.
                    Some(Ok(_)) => continue,
                };
                let packet = match EnginePacket::decode(text.as_str()) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = events.send(SocketEvent::Error(e)).await;
                        continue;
                    }
                };
                match packet {
                    EnginePacket::Ping => {
                        dead_after = deadline_after(heartbeat);
                        if let Err(e) = sink.send(Message::text(EnginePacket::Pong.encode())).await {
                            return DisconnectReason::TransportError(e.to_string());
                        }
                    }
                    EnginePacket::Close => return DisconnectReason::ServerDisconnect,
                    EnginePacket::Message(m) => {
                        let packet = match SocketPacket::decode(&m) {
                            Ok(p) => p,
                            Err(e) => {
                                let _ = events.send(SocketEvent::Error(e)).await;
                                continue;
                            }
                        };
                        if packet.namespace() != shared.namespace {
                            continue;
                        }
                        match packet {
                            SocketPacket::Event { ack_id, args, namespace } => {
                                let mut args = args.into_iter();
                                // The codec only passes events whose first argument is a name.
                                let Some(Value::String(name)) = args.next() else { continue };
                                let args: Vec<Value> = args.collect();
                                let ack = ack_id.map(|ack_id| AckResponder {
                                    ack_id,
                                    namespace,
                                    out: out_tx.clone(),
                                    sent: Arc::new(AtomicBool::new(false)),
                                });
                                let _ = events.send(SocketEvent::Event(IncomingEvent { name, args, ack })).await;
                            }
                            SocketPacket::Ack { ack_id, args, .. } => {
                                let waiter = lock(&shared.pending_acks).remove(&ack_id);
                                match waiter {
                                    Some(waiter) => {
                                        let _ = waiter.send(Ok(args));
                                    }
                                    // Its emit timed out already.
                                    None => tracing::debug!(ack_id, "ack for no pending emit"),
                                }
                            }
                            SocketPacket::Disconnect { .. } => return DisconnectReason::ServerDisconnect,
                            SocketPacket::Binary { attachments, .. } => {
                                skip_binary_frames = attachments;
                                let _ = events.send(SocketEvent::Error(ClientError::BinaryUnsupported { attachments })).await;
                            }
                            SocketPacket::ConnectError { message, .. } => {
                                let _ = events.send(SocketEvent::Error(ClientError::ConnectRefused {
                                    kind: ConnectErrorKind::from_message(&message),
                                    message,
                                    data: None,
                                })).await;
                                return DisconnectReason::ServerDisconnect;
                            }
                            SocketPacket::Connect { .. } => {}
                        }
                    }
                    EnginePacket::Open(_) | EnginePacket::Pong | EnginePacket::Upgrade | EnginePacket::Noop => {}
                }
            }
        }
    }
}

/// `Instant::now() + after` without the panic on overflow: the server picks the heartbeat, and
/// one too far off to represent means "never" in practice (a year).
fn deadline_after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}
