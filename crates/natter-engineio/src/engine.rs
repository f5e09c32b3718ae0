//! The HTTP side: the handshake, long-polling GET and POST, and the WebSocket upgrade.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::Request;
use axum::extract::ws::{
    CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade, close_code,
};
use axum::http::{Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use crate::packet::{self, Incoming, Message, Outgoing};
use crate::session;
use crate::socket::{CloseReason, Sid, Socket, Transport};

/// The engine's settings; the defaults are engine.io's, except the byte bound, which engine.io
/// does not have.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long after the handshake, and after each pong, the next ping goes out.
    pub ping_interval: Duration,
    /// How long a ping may go unanswered before the session is closed.
    pub ping_timeout: Duration,
    /// The largest message or long-polling body a client may send, in bytes.
    pub max_payload: usize,
    /// Each session's outbox bound: messages queued and not yet written, in bytes.
    pub max_queued_bytes: usize,
    /// How long a WebSocket upgrade may take from the request to the client's `5`.
    pub upgrade_timeout: Duration,
    /// The capacity of each WebSocket's read buffer.
    pub ws_read_buffer: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            max_queued_bytes: 1024 * 1024,
            upgrade_timeout: Duration::from_secs(10),
            ws_read_buffer: 1024,
        }
    }
}

/// What the application does with sessions. The calls are synchronous and come from the
/// session's own task (or the request that carried the packet): hand anything slow to a task.
pub trait Handler: Send + Sync + 'static {
    /// A session opened. `request` is the handshake request; the engine keeps none of it.
    fn on_open(&self, socket: &Arc<Socket>, request: &Parts);
    fn on_message(&self, socket: &Arc<Socket>, message: Message);
    /// The session ended; it is no longer in the engine. Called once.
    fn on_close(&self, socket: &Arc<Socket>, reason: CloseReason);
}

/// An Engine.IO v4 server.
pub struct Engine<H> {
    pub(crate) config: Config,
    pub(crate) handler: H,
    sessions: Mutex<HashMap<Sid, Arc<Socket>>>,
}

/// engine.io's error codes, answered with `400` and `{"code", "message"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    UnsupportedProtocolVersion = 5,
}

impl Refusal {
    fn message(self) -> &'static str {
        match self {
            Refusal::UnknownTransport => "Transport unknown",
            Refusal::UnknownSid => "Session ID unknown",
            Refusal::BadHandshakeMethod => "Bad handshake method",
            Refusal::BadRequest => "Bad request",
            Refusal::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self as u8, "message": self.message()});
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// The query parameters the engine reads.
#[derive(Default)]
struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(query: Option<&'a str>) -> Query<'a> {
        let mut q = Query::default();
        for pair in query.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "EIO" => q.eio = Some(value),
                "transport" => q.transport = Some(value),
                "sid" => q.sid = Some(value),
                _ => {}
            }
        }
        q
    }
}

/// Clears a "request in progress" flag when the request ends, however it ends.
struct InProgress<'a>(&'a AtomicBool);

impl<'a> InProgress<'a> {
    /// `None` if one is in progress already.
    fn start(flag: &'a AtomicBool) -> Option<InProgress<'a>> {
        (!flag.swap(true, Ordering::AcqRel)).then_some(InProgress(flag))
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<H: Handler> Engine<H> {
    pub fn new(config: Config, handler: H) -> Arc<Engine<H>> {
        Arc::new(Engine {
            config,
            handler,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Serves the engine at `path` (engine.io-client's default is `/engine.io`), with and
    /// without the trailing slash.
    pub fn router(self: &Arc<Self>, path: &str) -> Router {
        let path = path.trim_end_matches('/');
        let engine = Arc::clone(self);
        let handle = any(move |req: Request| Arc::clone(&engine).handle(req));
        Router::new()
            .route(path, handle.clone())
            .route(&format!("{path}/"), handle)
    }

    /// Open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// Closes every session (each once what it has queued is written): for shutdown.
    pub fn close_all(&self) {
        let sessions: Vec<Arc<Socket>> = self.sessions().values().cloned().collect();
        for socket in sessions {
            socket.close();
        }
    }

    pub fn session(&self, sid: &str) -> Option<Arc<Socket>> {
        self.sessions().get(&Sid::parse(sid)?).cloned()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Sid, Arc<Socket>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn remove(&self, sid: Sid) {
        self.sessions().remove(&sid);
    }

    /// Ends a session for something its client did: its sid is unknown from now on (only a
    /// session the application closes keeps it, to hand over what it queued).
    fn end(&self, socket: &Socket, reason: CloseReason) {
        socket.close_with(reason);
        self.remove(socket.sid());
    }

    /// One HTTP request to the engine's path.
    pub async fn handle(self: Arc<Self>, req: Request) -> Response {
        let (mut parts, body) = req.into_parts();
        let query = Query::parse(parts.uri.query());
        if query.eio != Some("4") {
            return Refusal::UnsupportedProtocolVersion.into_response();
        }
        let transport = query.transport.map(str::to_owned);
        let existing = match query.sid {
            None => None,
            Some(sid) => match self.session(sid) {
                Some(socket) => Some(socket),
                None => return Refusal::UnknownSid.into_response(),
            },
        };
        match (transport.as_deref(), existing) {
            (Some("polling"), None) if parts.method == Method::GET => self.open_polling(&parts),
            (Some("polling"), None) => Refusal::BadHandshakeMethod.into_response(),
            (Some("polling"), Some(socket)) => {
                let (transport, pong_due) = {
                    let outbox = socket.lock();
                    (outbox.transport, outbox.pong_due)
                };
                if transport == Transport::WebSocket {
                    return Refusal::BadRequest.into_response();
                }
                if pong_due.is_some_and(|due| due <= tokio::time::Instant::now()) {
                    // Timed out; the session's task is about to notice.
                    self.end(&socket, CloseReason::PingTimeout);
                    return Refusal::UnknownSid.into_response();
                }
                match parts.method {
                    Method::GET => self.poll(socket).await,
                    Method::POST => self.post(socket, body).await,
                    _ => Refusal::BadRequest.into_response(),
                }
            }
            (Some("websocket"), existing) => {
                let Ok(upgrade) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await
                else {
                    return Refusal::BadRequest.into_response();
                };
                let upgrade = upgrade
                    .read_buffer_size(self.config.ws_read_buffer)
                    .max_message_size(self.config.max_payload)
                    .max_frame_size(self.config.max_payload);
                match existing {
                    None => upgrade
                        .on_upgrade(move |ws| {
                            // A task of its own, so the session does not live inside axum's
                            // upgrade future, which keeps room for a WebSocket it moved out.
                            tokio::spawn(self.open_websocket(Box::new(ws), Box::new(parts)));
                            std::future::ready(())
                        })
                        .into_response(),
                    Some(socket) => {
                        let polling = socket.lock().transport == Transport::Polling;
                        if !polling || socket.upgrade_claimed.swap(true, Ordering::AcqRel) {
                            // engine.io's answer to a second upgrade: the WebSocket opens and
                            // is closed at once.
                            return upgrade
                                .on_upgrade(|mut ws| async move {
                                    let frame = CloseFrame {
                                        code: close_code::PROTOCOL,
                                        reason: "the session is upgraded already".into(),
                                    };
                                    let _ = ws.send(WsMessage::Close(Some(frame))).await;
                                })
                                .into_response();
                        }
                        let claimed = Arc::clone(&socket);
                        upgrade
                            // An upgrade whose HTTP handshake fails leaves the session open to
                            // another attempt.
                            .on_failed_upgrade(move |_| {
                                claimed.upgrade_claimed.store(false, Ordering::Release);
                            })
                            .on_upgrade(move |ws| self.upgrade(socket, Box::new(ws)))
                            .into_response()
                    }
                }
            }
            _ => Refusal::UnknownTransport.into_response(),
        }
    }

    fn register(&self, transport: Transport) -> Arc<Socket> {
        let mut sessions = self.sessions();
        let mut sid = Sid::random();
        while sessions.contains_key(&sid) {
            sid = Sid::random();
        }
        let socket = Arc::new(Socket::new(sid, transport, self.config.max_queued_bytes));
        sessions.insert(sid, Arc::clone(&socket));
        socket
    }

    /// The open packet, its keys in engine.io's order (a sid is URL-safe, nothing to escape).
    fn open_packet(&self, sid: Sid, upgrades: &str) -> String {
        format!(
            r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload,
        )
    }

    fn open_polling(self: Arc<Self>, parts: &Parts) -> Response {
        let socket = self.register(Transport::Polling);
        let open = self.open_packet(socket.sid(), r#"["websocket"]"#);
        self.handler.on_open(&socket, parts);
        tokio::spawn(session::run(Arc::clone(&self), socket, None));
        polling_response(open.into_bytes())
    }

    /// The WebSocket and the request head come boxed: the session's task holds its future for
    /// the session's whole life, and an `async fn` keeps room for each argument by value
    /// beside the futures it awaits (a WebSocket is several hundred bytes).
    async fn open_websocket(self: Arc<Self>, mut ws: Box<WebSocket>, parts: Box<Parts>) {
        let socket = self.register(Transport::WebSocket);
        let open = self.open_packet(socket.sid(), "[]");
        if ws.send(WsMessage::Text(open.into())).await.is_err() {
            self.remove(socket.sid());
            return;
        }
        self.handler.on_open(&socket, &parts);
        // The handshake's head is not kept for the session's life.
        drop(parts);
        session::run(self, socket, Some(ws)).await;
    }

    /// A long-polling GET: everything queued, or the first packets that arrive.
    async fn poll(&self, socket: Arc<Socket>) -> Response {
        let Some(_polling) = InProgress::start(&socket.polling) else {
            self.end(&socket, CloseReason::ProtocolError);
            return Refusal::BadRequest.into_response();
        };
        let mut packets = Vec::new();
        loop {
            // Created before the checks, so a wakeup between them and the wait is not lost.
            let woken = socket.ready.notified();
            let transport = socket.lock().transport;
            match transport {
                Transport::Polling => {}
                Transport::Upgrading => match upgrade_outcome(&socket).await {
                    // engine.io's answer at its next upgrade check: the client can pause
                    // polling and send its `5`.
                    Transport::Upgrading => {
                        packets.push(Outgoing::Noop);
                        break;
                    }
                    // The WebSocket carries the session now; the request is the old transport's.
                    Transport::WebSocket => {
                        socket.ready.notify_one();
                        return Refusal::BadRequest.into_response();
                    }
                    Transport::Polling => continue,
                },
                Transport::WebSocket => {
                    // A wakeup this request took was the WebSocket writer's.
                    socket.ready.notify_one();
                    return Refusal::BadRequest.into_response();
                }
            }
            socket.take_all(&mut packets);
            if !packets.is_empty() {
                break;
            }
            woken.await;
        }
        if socket.is_closed() {
            // What a closed session had left is taken: its sid is unknown from now on.
            self.remove(socket.sid());
        }
        // The session's task may be waiting for the close packet to be taken.
        socket.control.notify_one();
        let mut body = Vec::new();
        for packet in &packets {
            packet::encode_polling(&mut body, packet);
        }
        polling_response(body)
    }

    /// A long-polling POST: the client's packets.
    async fn post(&self, socket: Arc<Socket>, body: Body) -> Response {
        if socket.is_closed() {
            return Refusal::BadRequest.into_response();
        }
        let Some(_posting) = InProgress::start(&socket.posting) else {
            self.end(&socket, CloseReason::ProtocolError);
            return Refusal::BadRequest.into_response();
        };
        let Ok(body) = axum::body::to_bytes(body, self.config.max_payload).await else {
            self.end(&socket, CloseReason::PayloadTooLarge);
            return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
        };
        let Ok(packets) = packet::parse_payload(&body) else {
            self.end(&socket, CloseReason::ProtocolError);
            return Refusal::BadRequest.into_response();
        };
        for incoming in packets {
            match incoming {
                Incoming::Message(message) => self.handler.on_message(&socket, message),
                Incoming::Pong(_) => {
                    socket.lock().pong_due = None;
                    socket.pong.store(true, Ordering::Release);
                    socket.control.notify_one();
                }
                Incoming::Close => {
                    // The sid stays until a GET takes the noop (or the session's task gives
                    // up waiting): a GET sent together with the close gets `6`, not `400`.
                    socket.close_with(CloseReason::ClientClose);
                    break;
                }
                Incoming::Ping(_) | Incoming::Upgrade | Incoming::Noop => {}
            }
        }
        ([(header::CONTENT_TYPE, "text/html")], "ok").into_response()
    }

    /// A WebSocket for a long-polling session: the probe, then the client's `5`, then the
    /// session's task takes the WebSocket over.
    async fn upgrade(self: Arc<Self>, socket: Arc<Socket>, mut ws: Box<WebSocket>) {
        let deadline = tokio::time::Instant::now() + self.config.upgrade_timeout;
        let probed = tokio::time::timeout_at(deadline, async {
            match ws.recv().await {
                Some(Ok(WsMessage::Text(t))) if t.as_str() == "2probe" => {
                    ws.send(WsMessage::Text("3probe".into())).await.is_ok()
                }
                _ => false,
            }
        })
        .await
        .unwrap_or(false);
        if !probed || socket.is_closed() {
            socket.upgrade_claimed.store(false, Ordering::Release);
            return;
        }
        // A waiting GET sees the upgrade and answers as engine.io does (`poll`).
        socket.lock().transport = Transport::Upgrading;
        socket.ready.notify_waiters();
        let upgraded = tokio::time::timeout_at(deadline, async {
            loop {
                match ws.recv().await {
                    Some(Ok(WsMessage::Text(t))) if t.as_str() == "5" => return true,
                    Some(Ok(WsMessage::Text(t))) if t.as_str() == "2probe" => {
                        if ws.send(WsMessage::Text("3probe".into())).await.is_err() {
                            return false;
                        }
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                    _ => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        let mut outbox = socket.lock();
        if !upgraded || outbox.closed.is_some() {
            outbox.transport = Transport::Polling;
            drop(outbox);
            socket.upgrade_claimed.store(false, Ordering::Release);
            socket.ready.notify_waiters();
            return;
        }
        outbox.transport = Transport::WebSocket;
        drop(outbox);
        *socket.upgraded.lock().unwrap_or_else(|e| e.into_inner()) = Some(ws);
        socket.control.notify_one();
        // A GET still waiting is refused (`poll`).
        socket.ready.notify_waiters();
    }
}

/// How often engine.io checks an upgrade in progress (its `checkIntervalTimer`).
const UPGRADE_CHECK: Duration = Duration::from_millis(100);

/// The session's transport once its upgrade ends, or after [`UPGRADE_CHECK`].
async fn upgrade_outcome(socket: &Socket) -> Transport {
    let settled = async {
        loop {
            let changed = socket.ready.notified();
            let transport = socket.lock().transport;
            if transport != Transport::Upgrading {
                return transport;
            }
            changed.await;
        }
    };
    tokio::time::timeout(UPGRADE_CHECK, settled)
        .await
        .unwrap_or(Transport::Upgrading)
}

fn polling_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}
