//! Layer 2: [`SocketService`], typed emit/on/off over an [`EventMap`], with join control
//! (seed 001): after every (re)connect it emits the join event (`chat:join` by default, `None`
//! to skip) with the join payload, and reports the ack in order with the events around it.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::error::ClientError;
use crate::stream::EventStream;
use crate::transport::{
    DisconnectReason, IncomingEvent, Socket, SocketEvent, SocketEvents, SocketOptions,
};

/// A set of events shared by a client and a server (seed 001's `ChatEvents`): the events are
/// types implementing [`ClientEvent`] / [`ServerEvent`] with `Map = Self`.
pub trait EventMap: Send + Sync + 'static {}

/// A client → server event of map `Map`: its default wire name, payload and ack.
pub trait ClientEvent {
    type Map: EventMap;
    const NAME: &'static str;
    type Payload: Serialize;
    /// The ack's success shape; `{ok: false, error}` becomes [`ClientError::Refused`].
    type Ack: DeserializeOwned;
}

/// A server → client event of map `Map`: its default wire name and payload.
pub trait ServerEvent {
    type Map: EventMap;
    const NAME: &'static str;
    type Payload: DeserializeOwned + Send + 'static;
}

/// What to send with the join event.
#[derive(Clone, Default)]
pub enum JoinPayload {
    /// `{chatId}` (from [`ServiceOptions::chat_id`]).
    #[default]
    ChatId,
    /// This value, as given, every time.
    Fixed(Value),
    /// Built anew before every join (e.g. with the `lastSeq` to recover from).
    Dynamic(Arc<dyn Fn() -> Value + Send + Sync>),
}

impl std::fmt::Debug for JoinPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ChatId => f.write_str("ChatId"),
            Self::Fixed(v) => f.debug_tuple("Fixed").field(v).finish(),
            Self::Dynamic(_) => f.write_str("Dynamic(..)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub socket: SocketOptions,
    /// The chat (room) to join; `None` for servers without rooms.
    pub chat_id: Option<String>,
    /// Emitted after every (re)connect; default `chat:join`; `None`: no join.
    pub join_event: Option<String>,
    pub join_payload: JoinPayload,
    /// Fields merged into every emitted object payload (the payload's own fields win).
    pub meta: Map<String, Value>,
    /// How long emits with an ack (the join included) wait.
    pub ack_timeout: Duration,
    /// The server's event for errors not tied to an ack; default `error`.
    pub server_error_event: String,
    /// Wire names that differ from the events' default names (default name → wire name).
    pub event_names: HashMap<String, String>,
}

impl ServiceOptions {
    pub fn new(socket: SocketOptions) -> Self {
        Self {
            socket,
            chat_id: None,
            join_event: Some("chat:join".into()),
            join_payload: JoinPayload::ChatId,
            meta: Map::new(),
            ack_timeout: Duration::from_secs(10),
            server_error_event: "error".into(),
            event_names: HashMap::new(),
        }
    }
}

/// What a [`SocketService`] reports, in the order things happened on the wire.
#[derive(Debug, Clone)]
pub enum ServiceEvent {
    Connected {
        sid: String,
        reconnected: bool,
    },
    /// The join event's ack (`ok: true`), after every event the server sent before it (the
    /// replay of a recovering join).
    Joined {
        ack: Value,
        reconnected: bool,
    },
    /// The join failed (refused, or no ack in time); the connection stays up.
    JoinFailed {
        error: ClientError,
    },
    /// A server event; `name` is its default name when it was remapped.
    Event(IncomingEvent),
    /// The server's error event (`server_error_event`).
    ServerError(Value),
    /// A packet that could not be handled, or a handler's payload that did not decode.
    Error(ClientError),
    Disconnected {
        reason: DisconnectReason,
    },
    Reconnecting {
        attempt: u32,
        delay: Duration,
    },
    ReconnectAttemptFailed {
        attempt: u32,
        error: ClientError,
    },
    Closed {
        error: Option<ClientError>,
    },
}

/// The stream of [`ServiceEvent`]s.
pub type ServiceEvents = EventStream<ServiceEvent>;

/// Identifies a handler for [`SocketService::off`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

type Handler = Arc<dyn Fn(&IncomingEvent) + Send + Sync>;

#[derive(Default)]
struct Handlers {
    by_event: HashMap<String, Vec<(ListenerId, Handler)>>,
    any: Vec<(ListenerId, Handler)>,
}

struct Names {
    /// default name → wire name
    outbound: HashMap<String, String>,
    /// wire name → default name
    inbound: HashMap<String, String>,
}

impl Names {
    fn new(map: &HashMap<String, String>) -> Self {
        Self {
            outbound: map.clone(),
            inbound: map.iter().map(|(k, v)| (v.clone(), k.clone())).collect(),
        }
    }
}

struct Inner {
    options: ServiceOptions,
    handlers: Mutex<Handlers>,
    names: Mutex<Names>,
    next_listener: AtomicU64,
    /// Decode failures of typed handlers go to the event stream.
    errors: mpsc::UnboundedSender<ClientError>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A typed Socket.IO client for the events of `M`. Clones share the connection.
pub struct SocketService<M: EventMap> {
    socket: Socket,
    inner: Arc<Inner>,
    _map: PhantomData<fn() -> M>,
}

impl<M: EventMap> Clone for SocketService<M> {
    fn clone(&self) -> Self {
        Self {
            socket: self.socket.clone(),
            inner: self.inner.clone(),
            _map: PhantomData,
        }
    }
}

impl<M: EventMap> std::fmt::Debug for SocketService<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketService")
            .field("socket", &self.socket)
            .field("chat_id", &self.inner.options.chat_id)
            .finish()
    }
}

impl<M: EventMap> SocketService<M> {
    /// Connects and, when a join event is set, joins; returns once the first join is acked
    /// (a refused first join is returned as the error and the connection is closed).
    pub async fn connect(options: ServiceOptions) -> Result<(Self, ServiceEvents), ClientError> {
        let buffer = options.socket.event_buffer;
        let (socket, socket_events) = Socket::connect(options.socket.clone()).await?;
        let (errors_tx, errors_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            names: Mutex::new(Names::new(&options.event_names)),
            options,
            handlers: Mutex::new(Handlers::default()),
            next_listener: AtomicU64::new(0),
            errors: errors_tx,
        });
        let (events_tx, events_rx) = mpsc::channel(buffer);
        let (first_join_tx, first_join_rx) = oneshot::channel();
        tokio::spawn(dispatch(
            socket.clone(),
            inner.clone(),
            socket_events,
            errors_rx,
            events_tx,
            first_join_tx,
        ));
        let service = Self {
            socket,
            inner,
            _map: PhantomData,
        };
        if service.inner.options.join_event.is_some() {
            match first_join_rx.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    service.close().await;
                    return Err(error);
                }
                Err(_) => return Err(ClientError::Closed),
            }
        }
        Ok((service, ServiceEvents { rx: events_rx }))
    }

    /// The transport underneath (for raw emits and acks).
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    pub fn options(&self) -> &ServiceOptions {
        &self.inner.options
    }

    pub fn is_connected(&self) -> bool {
        self.socket.is_connected()
    }

    /// The wire name in force for an event's default name.
    pub fn wire_name(&self, default_name: &str) -> String {
        lock(&self.inner.names)
            .outbound
            .get(default_name)
            .cloned()
            .unwrap_or_else(|| default_name.to_owned())
    }

    /// Replaces the event-name remapping (default name → wire name), e.g. from discovery.
    pub fn set_event_names(&self, map: HashMap<String, String>) {
        *lock(&self.inner.names) = Names::new(&map);
    }

    /// Emits a typed event without asking an ack.
    pub fn emit<E: ClientEvent<Map = M>>(&self, payload: &E::Payload) -> Result<(), ClientError> {
        let value = self.encode(E::NAME, payload)?;
        self.socket.emit(&self.wire_name(E::NAME), vec![value])
    }

    /// Emits a typed event and waits for its ack (`ack_timeout`); `{ok: false, error}` is
    /// returned as [`ClientError::Refused`].
    pub async fn emit_with_ack<E: ClientEvent<Map = M>>(
        &self,
        payload: &E::Payload,
    ) -> Result<E::Ack, ClientError> {
        let value = self.encode(E::NAME, payload)?;
        let ack = emit_checked(
            &self.socket,
            E::NAME,
            &self.wire_name(E::NAME),
            value,
            self.inner.options.ack_timeout,
        )
        .await?;
        serde_json::from_value(ack).map_err(|e| ClientError::Decode {
            event: format!("{} ack", E::NAME),
            reason: e.to_string(),
        })
    }

    /// Emits any event by its default name (remapped, `meta` merged), without an ack.
    pub fn emit_raw(&self, event: &str, payload: Value) -> Result<(), ClientError> {
        let value = merge_meta(payload, &self.inner.options.meta);
        self.socket.emit(&self.wire_name(event), vec![value])
    }

    /// Emits any event by its default name and returns the ack's first value, checked for
    /// `{ok: false, error}`.
    pub async fn emit_raw_with_ack(
        &self,
        event: &str,
        payload: Value,
    ) -> Result<Value, ClientError> {
        let value = merge_meta(payload, &self.inner.options.meta);
        emit_checked(
            &self.socket,
            event,
            &self.wire_name(event),
            value,
            self.inner.options.ack_timeout,
        )
        .await
    }

    fn encode<T: Serialize>(&self, event: &str, payload: &T) -> Result<Value, ClientError> {
        let value = serde_json::to_value(payload).map_err(|e| ClientError::Encode {
            event: event.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(merge_meta(value, &self.inner.options.meta))
    }

    /// Calls `handler` with each decoded `E` payload. A payload that does not decode goes to
    /// the event stream as [`ServiceEvent::Error`] (the handler is not called).
    pub fn on<E, F>(&self, handler: F) -> ListenerId
    where
        E: ServerEvent<Map = M>,
        F: Fn(E::Payload) + Send + Sync + 'static,
    {
        let errors = self.inner.errors.clone();
        self.on_raw(E::NAME, move |event| {
            match serde_json::from_value::<E::Payload>(event.data().clone()) {
                Ok(payload) => handler(payload),
                Err(e) => {
                    let _ = errors.send(ClientError::Decode {
                        event: E::NAME.to_owned(),
                        reason: e.to_string(),
                    });
                }
            }
        })
    }

    /// Calls `handler` with every event named `event` (its default name), undecoded, with its
    /// ack request if the server asked for one.
    pub fn on_raw<F>(&self, event: &str, handler: F) -> ListenerId
    where
        F: Fn(&IncomingEvent) + Send + Sync + 'static,
    {
        let id = ListenerId(self.inner.next_listener.fetch_add(1, Ordering::Relaxed));
        lock(&self.inner.handlers)
            .by_event
            .entry(event.to_owned())
            .or_default()
            .push((id, Arc::new(handler)));
        id
    }

    /// Calls `handler` with every server event (seed 001's `onAny`).
    pub fn on_any<F>(&self, handler: F) -> ListenerId
    where
        F: Fn(&IncomingEvent) + Send + Sync + 'static,
    {
        let id = ListenerId(self.inner.next_listener.fetch_add(1, Ordering::Relaxed));
        lock(&self.inner.handlers).any.push((id, Arc::new(handler)));
        id
    }

    /// Removes a handler; `false` if it was not registered.
    pub fn off(&self, id: ListenerId) -> bool {
        let mut handlers = lock(&self.inner.handlers);
        let before = handlers.any.len();
        handlers.any.retain(|(h, _)| *h != id);
        let mut removed = handlers.any.len() != before;
        for list in handlers.by_event.values_mut() {
            let before = list.len();
            list.retain(|(h, _)| *h != id);
            removed |= list.len() != before;
        }
        removed
    }

    /// Disconnects for good; the event stream ends with `Closed { error: None }`.
    pub async fn close(&self) {
        self.socket.close().await;
    }
}

/// Adds `meta`'s fields that `payload` (an object) does not have; other payloads are unchanged.
pub(crate) fn merge_meta(payload: Value, meta: &Map<String, Value>) -> Value {
    match payload {
        Value::Object(mut fields) if !meta.is_empty() => {
            for (k, v) in meta {
                fields.entry(k.clone()).or_insert_with(|| v.clone());
            }
            Value::Object(fields)
        }
        other => other,
    }
}

async fn emit_checked(
    socket: &Socket,
    event: &str,
    wire_name: &str,
    payload: Value,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let args = socket
        .emit_with_ack(wire_name, vec![payload], timeout)
        .await?;
    let ack = args.into_iter().next().unwrap_or(Value::Null);
    check_ack(event, ack)
}

/// `{ok: false, error: {code, message}}` → [`ClientError::Refused`]; anything else passes.
pub(crate) fn check_ack(event: &str, ack: Value) -> Result<Value, ClientError> {
    if ack.get("ok") == Some(&Value::Bool(false)) {
        let error = ack.get("error");
        let field = |name: &str| {
            error
                .and_then(|e| e.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        return Err(ClientError::Refused {
            event: event.to_owned(),
            code: field("code"),
            message: field("message"),
        });
    }
    Ok(ack)
}

enum JoinOutcome {
    Joined { ack: Value, reconnected: bool },
    Failed(ClientError),
}

/// Hands transport events to handlers and the stream, and runs the join after each connect.
///
/// The join's ack is reported through `joins`, which is read only when no transport event is
/// waiting: the transport queues every event the server sent before the ack before it
/// resolves the ack, so the replay of a recovering join is always reported first.
async fn dispatch(
    socket: Socket,
    inner: Arc<Inner>,
    mut socket_events: SocketEvents,
    mut decode_errors: mpsc::UnboundedReceiver<ClientError>,
    out: mpsc::Sender<ServiceEvent>,
    first_join: oneshot::Sender<Result<(), ClientError>>,
) {
    // The dispatcher must not keep the connection alive on its own: it holds a weak handle.
    let weak = socket.downgrade();
    drop(socket);
    let (joins_tx, mut joins_rx) = mpsc::unbounded_channel::<JoinOutcome>();
    let mut first_join = Some(first_join);
    loop {
        let event = tokio::select! {
            biased;
            event = socket_events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            Some(error) = decode_errors.recv() => {
                let _ = out.send(ServiceEvent::Error(error)).await;
                continue;
            }
            Some(outcome) = joins_rx.recv() => {
                let (report, first) = match outcome {
                    JoinOutcome::Joined { ack, reconnected } => {
                        (ServiceEvent::Joined { ack, reconnected }, Ok(()))
                    }
                    JoinOutcome::Failed(error) => {
                        let first = Err(error.clone());
                        (ServiceEvent::JoinFailed { error }, first)
                    }
                };
                if let Some(tx) = first_join.take() {
                    let _ = tx.send(first);
                }
                let _ = out.send(report).await;
                continue;
            }
        };
        let report = match event {
            SocketEvent::Connected { sid, reconnected } => {
                if let (Some(join_event), Some(socket)) =
                    (inner.options.join_event.clone(), weak.upgrade())
                {
                    let payload = match &inner.options.join_payload {
                        JoinPayload::ChatId => {
                            let mut p = Map::new();
                            if let Some(chat) = &inner.options.chat_id {
                                p.insert("chatId".into(), Value::String(chat.clone()));
                            }
                            Value::Object(p)
                        }
                        JoinPayload::Fixed(v) => v.clone(),
                        JoinPayload::Dynamic(build) => build(),
                    };
                    let payload = merge_meta(payload, &inner.options.meta);
                    let wire = lock(&inner.names)
                        .outbound
                        .get(&join_event)
                        .cloned()
                        .unwrap_or_else(|| join_event.clone());
                    let timeout = inner.options.ack_timeout;
                    let joins = joins_tx.clone();
                    // Its own task: the replay before the ack must keep flowing through here.
                    tokio::spawn(async move {
                        let outcome =
                            match emit_checked(&socket, &join_event, &wire, payload, timeout).await
                            {
                                Ok(ack) => JoinOutcome::Joined { ack, reconnected },
                                Err(error) => JoinOutcome::Failed(error),
                            };
                        let _ = joins.send(outcome);
                    });
                }
                ServiceEvent::Connected { sid, reconnected }
            }
            SocketEvent::Event(mut event) => {
                if let Some(default) = lock(&inner.names).inbound.get(&event.name) {
                    event.name = default.clone();
                }
                let (specific, any): (Vec<Handler>, Vec<Handler>) = {
                    let handlers = lock(&inner.handlers);
                    (
                        handlers
                            .by_event
                            .get(&event.name)
                            .map(|l| l.iter().map(|(_, h)| h.clone()).collect())
                            .unwrap_or_default(),
                        handlers.any.iter().map(|(_, h)| h.clone()).collect(),
                    )
                };
                // Called outside the lock, so a handler may call on/off.
                for handler in specific.iter().chain(any.iter()) {
                    handler(&event);
                }
                if event.name == inner.options.server_error_event {
                    ServiceEvent::ServerError(event.data().clone())
                } else {
                    ServiceEvent::Event(event)
                }
            }
            SocketEvent::Error(e) => ServiceEvent::Error(e),
            SocketEvent::Disconnected { reason } => ServiceEvent::Disconnected { reason },
            SocketEvent::Reconnecting { attempt, delay } => {
                ServiceEvent::Reconnecting { attempt, delay }
            }
            SocketEvent::ReconnectAttemptFailed { attempt, error } => {
                ServiceEvent::ReconnectAttemptFailed { attempt, error }
            }
            SocketEvent::Closed { error } => {
                if let Some(tx) = first_join.take() {
                    let _ = tx.send(Err(error.clone().unwrap_or(ClientError::Closed)));
                }
                let _ = out.send(ServiceEvent::Closed { error }).await;
                break;
            }
        };
        let _ = out.send(report).await;
    }
}
