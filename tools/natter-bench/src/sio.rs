//! A minimal Engine.IO v4 + Socket.IO v5 client: WebSocket transport only, default namespace,
//! text packets only.
//!
//! Why our own instead of `rust_socketio`: that crate is unmaintained, it cannot acknowledge an
//! event the server emits with an ack id (`42<id>[...]` → `43<id>[...]`), and it delivers every
//! event through callbacks on its own runtime, which would blur the receive timestamps a load
//! generator exists to take. The subset a benchmark needs is small enough to own outright:
//!
//! * Engine.IO v4 over WebSocket: the server opens with `0{"sid",...,"pingInterval",...}`, pings
//!   with `2` (we answer `3`), wraps Socket.IO packets in `4`, closes with `1`, and never puts two
//!   packets into one WebSocket frame.
//! * Socket.IO v5: CONNECT `40` / `40{auth}` answered by `40{"sid"}` or CONNECT_ERROR `44{...}`,
//!   EVENT `42[name, ...args]` (with an ack id: `42<id>[...]`), ACK `43<id>[...args]`,
//!   DISCONNECT `41`.
//!
//! Each connection runs two tasks: a writer that drains an unbounded queue into the socket, and a
//! reader that answers pings, resolves acks and forwards events (stamped with their receive time)
//! to an unbounded channel owned by the caller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An event the server emitted to this socket.
#[derive(Debug)]
pub struct Event {
    pub name: String,
    /// The first argument after the event name (`Null` if there was none).
    pub data: Value,
    /// Set when the server asked for an acknowledgement; answer with [`Client::ack`].
    pub ack_id: Option<u64>,
    /// Microseconds since the UNIX epoch at which the frame was read off the socket.
    pub recv_us: u64,
}

/// What the server said in its Engine.IO OPEN packet.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    #[serde(default)]
    pub ping_interval: u64,
    #[serde(default)]
    pub ping_timeout: u64,
    #[serde(default)]
    pub max_payload: Option<u64>,
}

/// A connected Socket.IO client. Cheap to clone; the connection closes when the last clone is
/// dropped (or on [`Client::close`]).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _guard: Arc<TaskGuard>,
}

struct Inner {
    out: mpsc::UnboundedSender<Message>,
    next_ack: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Vec<Value>>>>,
    closed: AtomicBool,
    pings: AtomicU64,
    open: OpenInfo,
    sid: String,
}

/// Aborts the reader and writer tasks when the last `Client` clone goes away.
struct TaskGuard(Vec<AbortHandle>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `http://host:port` (or `ws://…`) plus a dev identity → the Engine.IO WebSocket URL.
pub fn socket_url(base: &str, user_id: Option<&str>) -> Result<String> {
    let base = base.trim_end_matches('/');
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| anyhow!("url {base:?} has no scheme"))?;
    let ws_scheme = match scheme {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => bail!("unsupported url scheme {other:?}"),
    };
    let mut url = format!("{ws_scheme}://{rest}/socket.io/?EIO=4&transport=websocket");
    if let Some(u) = user_id {
        url.push_str("&userId=");
        url.push_str(&percent_encode(u));
    }
    Ok(url)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// Opens the WebSocket, completes the Engine.IO and Socket.IO handshakes (with optional
    /// `auth` in the CONNECT packet) and starts the connection's tasks.
    pub async fn connect(
        url: &str,
        auth: Option<&Value>,
        timeout: Duration,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Event>)> {
        tokio::time::timeout(timeout, Self::connect_inner(url, auth))
            .await
            .map_err(|_| anyhow!("connect to {url} timed out after {timeout:?}"))?
    }

    async fn connect_inner(
        url: &str,
        auth: Option<&Value>,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Event>)> {
        let (mut ws, _resp) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("websocket connect to {url}"))?;

        // Engine.IO OPEN.
        let first = next_text(&mut ws).await?;
        let open_json = first
            .strip_prefix('0')
            .ok_or_else(|| anyhow!("expected Engine.IO OPEN, got {first:?}"))?;
        let open: OpenInfo = serde_json::from_str(open_json).context("parsing Engine.IO OPEN")?;

        // Socket.IO CONNECT to the default namespace.
        let connect = match auth {
            Some(a) => format!("40{a}"),
            None => "40".to_string(),
        };
        ws.send(Message::text(connect)).await?;
        let sid = loop {
            let t = next_text(&mut ws).await?;
            if let Some(rest) = t.strip_prefix("40") {
                let v: Value = serde_json::from_str(rest).unwrap_or(Value::Null);
                break v
                    .get("sid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
            } else if let Some(rest) = t.strip_prefix("44") {
                bail!("connect_error: {rest}");
            } else if let Some(rest) = t.strip_prefix('2') {
                ws.send(Message::text(format!("3{rest}"))).await?;
            } else if t.starts_with('1') || t.starts_with("41") {
                bail!("server closed the connection during the handshake");
            }
            // Anything else before CONNECT is answered is ignored.
        };

        let (sink, stream) = ws.split();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            out: out_tx,
            next_ack: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            pings: AtomicU64::new(0),
            open,
            sid,
        });
        let writer = tokio::spawn(write_loop(sink, out_rx));
        let reader = tokio::spawn(read_loop(stream, inner.clone(), ev_tx));
        let guard = TaskGuard(vec![writer.abort_handle(), reader.abort_handle()]);
        Ok((
            Client {
                inner,
                _guard: Arc::new(guard),
            },
            ev_rx,
        ))
    }

    /// The Socket.IO session id the server assigned.
    #[allow(dead_code)] // complete client API; the bench modes don't need it
    pub fn sid(&self) -> &str {
        &self.inner.sid
    }

    pub fn open_info(&self) -> &OpenInfo {
        &self.inner.open
    }

    /// False once the connection has gone away (server close, network error, or `close`).
    pub fn is_connected(&self) -> bool {
        !self.inner.closed.load(Ordering::Relaxed)
    }

    /// How many Engine.IO pings this connection has answered.
    pub fn pings_answered(&self) -> u64 {
        self.inner.pings.load(Ordering::Relaxed)
    }

    fn send_raw(&self, text: String) -> Result<()> {
        if !self.is_connected() {
            bail!("connection closed");
        }
        self.inner
            .out
            .send(Message::text(text))
            .map_err(|_| anyhow!("connection closed"))
    }

    /// Emits `event` with one argument, without asking for an ack.
    #[allow(dead_code)] // complete client API; the bench modes always ask for acks
    pub fn emit(&self, event: &str, data: &Value) -> Result<()> {
        let body = serde_json::to_string(&(event, data))?;
        self.send_raw(format!("42{body}"))
    }

    /// Emits `event` with one argument and waits for the server's ack; returns the ack's
    /// arguments.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        data: &Value,
        timeout: Duration,
    ) -> Result<Vec<Value>> {
        let id = self.inner.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.pending).insert(id, tx);
        let body = serde_json::to_string(&(event, data))?;
        if let Err(e) = self.send_raw(format!("42{id}{body}")) {
            lock(&self.inner.pending).remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => bail!("connection closed before the ack of {event:?}"),
            Err(_) => {
                lock(&self.inner.pending).remove(&id);
                bail!("no ack for {event:?} within {timeout:?}")
            }
        }
    }

    /// Like [`Client::emit_with_ack`], returning only the ack's first argument.
    pub async fn request(&self, event: &str, data: &Value, timeout: Duration) -> Result<Value> {
        let mut args = self.emit_with_ack(event, data, timeout).await?;
        Ok(if args.is_empty() {
            Value::Null
        } else {
            args.swap_remove(0)
        })
    }

    /// Acknowledges an event the server emitted with an ack id.
    pub fn ack(&self, ack_id: u64, args: &[Value]) -> Result<()> {
        let body = serde_json::to_string(args)?;
        self.send_raw(format!("43{ack_id}{body}"))
    }

    /// Sends Socket.IO DISCONNECT and a WebSocket close frame.
    pub fn close(&self) {
        let _ = self.inner.out.send(Message::text("41"));
        let _ = self.inner.out.send(Message::Close(None));
        self.inner.closed.store(true, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => bail!("connection closed during the handshake"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

async fn write_loop(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::UnboundedReceiver<Message>) {
    while let Some(msg) = rx.recv().await {
        let closing = matches!(msg, Message::Close(_));
        // Queue everything already waiting, then flush once.
        if sink.feed(msg).await.is_err() {
            return;
        }
        while let Ok(more) = rx.try_recv() {
            if sink.feed(more).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() || closing {
            return;
        }
    }
}

async fn read_loop(
    mut stream: SplitStream<Ws>,
    inner: Arc<Inner>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Some(frame) = stream.next().await {
        let recv_us = now_us();
        let text = match frame {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        if !handle_frame(&inner, &events, text.as_str(), recv_us) {
            break;
        }
    }
    inner.closed.store(true, Ordering::Relaxed);
    // Dropping the senders fails every outstanding `emit_with_ack`.
    lock(&inner.pending).clear();
}

/// Handles one Engine.IO packet; returns false when the connection is over.
fn handle_frame(
    inner: &Inner,
    events: &mpsc::UnboundedSender<Event>,
    text: &str,
    recv_us: u64,
) -> bool {
    let Some(kind) = text.as_bytes().first() else {
        return true;
    };
    match kind {
        b'2' => {
            // PING (possibly "2probe" during an upgrade, which we never do): answer in kind.
            inner.pings.fetch_add(1, Ordering::Relaxed);
            let _ = inner.out.send(Message::text(format!("3{}", &text[1..])));
            true
        }
        b'4' => handle_sio(inner, events, &text[1..], recv_us),
        b'1' => false,
        _ => true, // OPEN again, PONG, NOOP, UPGRADE: nothing to do.
    }
}

fn handle_sio(
    inner: &Inner,
    events: &mpsc::UnboundedSender<Event>,
    packet: &str,
    recv_us: u64,
) -> bool {
    let Some(parsed) = parse_packet(packet) else {
        return true;
    };
    if parsed.nsp != "/" {
        return true;
    }
    match parsed.kind {
        b'2' => {
            let Ok(mut args) = serde_json::from_str::<Vec<Value>>(parsed.json) else {
                return true;
            };
            if args.is_empty() {
                return true;
            }
            let name = match args.remove(0) {
                Value::String(s) => s,
                _ => return true,
            };
            let data = if args.is_empty() {
                Value::Null
            } else {
                args.swap_remove(0)
            };
            // The receiver may be gone (e.g. idle connections nobody reads); that is fine.
            let _ = events.send(Event {
                name,
                data,
                ack_id: parsed.id,
                recv_us,
            });
            true
        }
        b'3' => {
            if let Some(id) = parsed.id {
                let args = serde_json::from_str::<Vec<Value>>(parsed.json).unwrap_or_default();
                if let Some(tx) = lock(&inner.pending).remove(&id) {
                    let _ = tx.send(args);
                }
            }
            true
        }
        b'1' => false,
        // CONNECT again, CONNECT_ERROR after connect, binary packets: not used by the bench.
        _ => true,
    }
}

struct Packet<'a> {
    kind: u8,
    nsp: &'a str,
    id: Option<u64>,
    json: &'a str,
}

/// Splits a Socket.IO packet `<type>[<nsp>,][<id>][<json>]`.
fn parse_packet(p: &str) -> Option<Packet<'_>> {
    let kind = *p.as_bytes().first()?;
    let mut rest = &p[1..];
    let mut nsp = "/";
    if rest.starts_with('/') {
        let comma = rest.find(',').unwrap_or(rest.len());
        nsp = &rest[..comma];
        rest = rest.get(comma + 1..).unwrap_or("");
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 {
        rest[..digits].parse().ok()
    } else {
        None
    };
    Some(Packet {
        kind,
        nsp,
        id,
        json: &rest[digits..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_split() {
        let p = parse_packet("2[\"a\",1]").unwrap();
        assert_eq!(
            (p.kind, p.nsp, p.id, p.json),
            (b'2', "/", None, "[\"a\",1]")
        );
        let p = parse_packet("37[{\"ok\":true}]").unwrap();
        assert_eq!((p.kind, p.id, p.json), (b'3', Some(7), "[{\"ok\":true}]"));
        let p = parse_packet("2/admin,12[\"x\"]").unwrap();
        assert_eq!((p.nsp, p.id, p.json), ("/admin", Some(12), "[\"x\"]"));
        let p = parse_packet("1").unwrap();
        assert_eq!((p.kind, p.id, p.json), (b'1', None, ""));
    }

    #[test]
    fn urls() {
        assert_eq!(
            socket_url("http://127.0.0.1:4000/", Some("u 1")).unwrap(),
            "ws://127.0.0.1:4000/socket.io/?EIO=4&transport=websocket&userId=u%201"
        );
        assert!(socket_url("ftp://x", None).is_err());
    }
}
