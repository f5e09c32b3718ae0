//! A connected client as the face sees it, on either Socket.IO transport: socketioxide's, or
//! the project's own (`natter-socketio-transport`). The face only emits, acks, disconnects and
//! finds its per-socket [`Conn`]; everything else is the same code on both.

use std::sync::Arc;

use natter_socketio_transport::natter_engineio::SendError as OwnSendError;
use serde::Serialize;
use socketioxide::extract::{AckSender, SocketRef};

use crate::connection::Conn;

/// Why an emit was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The socket's buffer is full (socketioxide: packets; own transport: bytes).
    Full,
    /// The socket is gone.
    Closed,
}

/// One client socket.
#[derive(Clone)]
pub(crate) enum Client {
    Socketioxide(SocketRef),
    Own(Arc<natter_socketio_transport::Socket>),
}

impl Client {
    /// The Socket.IO id: the face's connection id.
    pub fn id(&self) -> String {
        match self {
            Client::Socketioxide(s) => s.id.to_string(),
            Client::Own(s) => s.id().to_owned(),
        }
    }

    /// The face's state for this socket, set when its handshake was accepted.
    pub fn conn(&self) -> Option<Arc<Conn>> {
        match self {
            Client::Socketioxide(s) => s.extensions.get::<Arc<Conn>>(),
            Client::Own(s) => s.state::<Conn>(),
        }
    }

    /// Queues one event with one argument, without waiting.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, payload: &T) -> Result<(), Refused> {
        match self {
            Client::Socketioxide(s) => {
                use socketioxide::{SendError, SocketError};
                match s.emit(event, payload) {
                    Ok(()) => Ok(()),
                    Err(SendError::Socket(SocketError::InternalChannelFull)) => Err(Refused::Full),
                    Err(SendError::Socket(SocketError::Closed)) => Err(Refused::Closed),
                    Err(e) => {
                        // A serialization error: a bug on our side, never caused by input.
                        tracing::error!(error = %e, event, "emit failed");
                        Ok(())
                    }
                }
            }
            Client::Own(s) => s.emit(event, &[payload], &[]).map_err(own_refusal),
        }
    }

    /// Tells the client it is disconnected (`io server disconnect`) and closes the socket;
    /// `Err(Full)` when there is no room for that packet yet.
    pub fn disconnect(&self) -> Result<(), Refused> {
        match self {
            Client::Socketioxide(s) => match s.clone().disconnect() {
                Err(socketioxide::SocketError::InternalChannelFull) => Err(Refused::Full),
                _ => Ok(()),
            },
            Client::Own(s) => match s.disconnect().map_err(own_refusal) {
                Err(Refused::Full) => Err(Refused::Full),
                _ => Ok(()),
            },
        }
    }
}

fn own_refusal(e: OwnSendError) -> Refused {
    match e {
        OwnSendError::Full => Refused::Full,
        OwnSendError::Closed => Refused::Closed,
    }
}

/// Where the answer to a client's event goes, when it asked for one.
pub(crate) enum Ack {
    Socketioxide(AckSender),
    Own(Arc<natter_socketio_transport::Socket>, u64),
}

impl Ack {
    /// Sends the ack with one argument. Lost if the socket is closed or its buffer is full, as
    /// socketioxide's are.
    pub fn send<T: Serialize + ?Sized>(self, body: &T) {
        match self {
            Ack::Socketioxide(ack) => {
                let _ = ack.send(body);
            }
            Ack::Own(socket, id) => {
                let _ = socket.ack(id, &[body], &[]);
            }
        }
    }
}
