//! A session as the application holds it: its id, and an outbox bounded in bytes that the
//! session's one task (or a waiting long-polling request) drains.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use axum::extract::ws::WebSocket;
use tokio::sync::Notify;

use crate::packet::{Frame, Outgoing};

/// A session id: 20 characters of base64url, as engine.io makes them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid([u8; 20]);

impl Sid {
    /// A new random id.
    pub fn random() -> Sid {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut id = [0u8; 20];
        for c in &mut id {
            *c = ALPHABET[fastrand::usize(..64)];
        }
        Sid(id)
    }

    /// Reads a client's `sid` query parameter; `None` if it cannot be one of ours.
    pub(crate) fn parse(s: &str) -> Option<Sid> {
        <[u8; 20]>::try_from(s.as_bytes()).ok().map(Sid)
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII (`random`) or from a `&str` (`parse`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({self})")
    }
}

/// Why [`Socket::send`] refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The outbox holds its byte bound; the frame is not queued. The client is slow: merge,
    /// wait, or close it.
    Full,
    /// The session is closed.
    Closed,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Full => "the session's outbox is full",
            SendError::Closed => "the session is closed",
        })
    }
}

impl std::error::Error for SendError {}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The connection went away (a WebSocket closed or failed).
    TransportClose,
    /// The client sent a close packet.
    ClientClose,
    /// The client did not answer a ping within the ping timeout.
    PingTimeout,
    /// The client broke the protocol: an unreadable packet, or two long-polling requests of
    /// one kind at once.
    ProtocolError,
    /// The client sent a message or a long-polling body over `max_payload`.
    PayloadTooLarge,
    /// The application closed it ([`Socket::close`]).
    ServerClose,
}

/// How the session reaches its client now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Polling,
    /// A WebSocket answered the probe; polling still carries the session until `5`.
    Upgrading,
    WebSocket,
}

pub(crate) struct Outbox {
    pub(crate) packets: VecDeque<Outgoing>,
    /// Bytes of the queued messages (control packets are not counted).
    pub(crate) bytes: usize,
    /// Set once, by whatever ended the session first.
    pub(crate) closed: Option<CloseReason>,
    pub(crate) transport: Transport,
    /// When an unanswered long-polling ping times out.
    pub(crate) pong_due: Option<tokio::time::Instant>,
}

/// One Engine.IO session.
pub struct Socket {
    sid: Sid,
    max_queued_bytes: usize,
    pub(crate) outbox: Mutex<Outbox>,
    /// The outbox has packets for the writer: the WebSocket loop or a waiting GET.
    pub(crate) ready: Notify,
    /// The writer took what was queued: room for [`Socket::room`]'s waiters.
    drained: Notify,
    /// Something for the session's task: a pong over polling, a WebSocket to take over, a
    /// close, an outbox drained by a GET.
    pub(crate) control: Notify,
    pub(crate) pong: AtomicBool,
    /// A long-polling GET is waiting; a second one at once is a client error.
    pub(crate) polling: AtomicBool,
    /// A long-polling POST is being read; so is an overlapping one.
    pub(crate) posting: AtomicBool,
    /// A WebSocket upgrade request was accepted and has not failed: a second one is refused.
    pub(crate) upgrade_claimed: AtomicBool,
    /// The upgraded WebSocket, between the upgrade request's task and the session's.
    pub(crate) upgraded: Mutex<Option<Box<WebSocket>>>,
}

impl Socket {
    pub(crate) fn new(sid: Sid, transport: Transport, max_queued_bytes: usize) -> Socket {
        Socket {
            sid,
            max_queued_bytes,
            outbox: Mutex::new(Outbox {
                packets: VecDeque::new(),
                bytes: 0,
                closed: None,
                transport,
                pong_due: None,
            }),
            ready: Notify::new(),
            drained: Notify::new(),
            control: Notify::new(),
            pong: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            posting: AtomicBool::new(false),
            upgrade_claimed: AtomicBool::new(false),
            upgraded: Mutex::new(None),
        }
    }

    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// Queues a message for the client. Never waits: it refuses with [`SendError::Full`]
    /// when the queued messages and this one would pass the session's byte bound (a frame
    /// larger than the bound still goes through an empty outbox, so every frame can be sent).
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        self.send_all(std::slice::from_ref(&frame))
    }

    /// Queues several messages that only make sense together (a Socket.IO packet and its
    /// binary attachments): all of them, or none.
    pub fn send_all(&self, frames: &[Frame]) -> Result<(), SendError> {
        self.queue(frames, false)
    }

    /// Queues messages as [`Socket::send_all`] does, and has the WebSocket writer flush
    /// right after them, so they leave in a write of their own before anything queued later
    /// (a Socket.IO connect reply before the namespace's first events).
    pub fn send_flushed(&self, frames: &[Frame]) -> Result<(), SendError> {
        self.queue(frames, true)
    }

    fn queue(&self, frames: &[Frame], flush: bool) -> Result<(), SendError> {
        let mut outbox = self.lock();
        if outbox.closed.is_some() {
            return Err(SendError::Closed);
        }
        let len: usize = frames.iter().map(Frame::len).sum();
        if outbox.bytes > 0 && outbox.bytes + len > self.max_queued_bytes {
            return Err(SendError::Full);
        }
        outbox.bytes += len;
        outbox
            .packets
            .extend(frames.iter().cloned().map(Outgoing::Message));
        if flush {
            outbox.packets.push_back(Outgoing::Flush);
        }
        drop(outbox);
        self.ready.notify_one();
        Ok(())
    }

    /// Waits until a frame of `len` bytes would be taken ([`Socket::send`] may still refuse
    /// it if another sender fills the room first), or the session is closed.
    pub async fn room(&self, len: usize) {
        loop {
            let drained = self.drained.notified();
            {
                let outbox = self.lock();
                if outbox.closed.is_some()
                    || outbox.bytes == 0
                    || outbox.bytes + len <= self.max_queued_bytes
                {
                    return;
                }
            }
            drained.await;
        }
    }

    /// Bytes of messages queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Closes the session once what is queued is written.
    pub fn close(&self) {
        self.close_with(CloseReason::ServerClose);
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Ends the session for `reason` unless it has ended already; returns the reason it ended
    /// for. A waiting long-polling request gets the close packet.
    pub(crate) fn close_with(&self, reason: CloseReason) -> CloseReason {
        let mut outbox = self.lock();
        if let Some(first) = outbox.closed {
            return first;
        }
        outbox.closed = Some(reason);
        // A client that closed needs no close packet; a GET it left waiting ends with a noop
        // (engine.io's answer, which the protocol suite checks).
        outbox.packets.push_back(match reason {
            CloseReason::ClientClose => Outgoing::Noop,
            _ => Outgoing::Close,
        });
        drop(outbox);
        self.ready.notify_one();
        self.control.notify_one();
        reason
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Outbox> {
        // A panic while holding the lock leaves plain data behind; go on with it.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a control packet (never refused, not counted).
    pub(crate) fn push_control(&self, packet: Outgoing) {
        self.lock().packets.push_back(packet);
        self.ready.notify_one();
    }

    /// Takes everything queued, for one write.
    pub(crate) fn take_all(&self, into: &mut Vec<Outgoing>) {
        let mut outbox = self.lock();
        into.extend(outbox.packets.drain(..));
        outbox.bytes = 0;
        if outbox.packets.capacity() > 64 {
            // A burst's queue is not kept for an idle session.
            outbox.packets.shrink_to(16);
        }
        drop(outbox);
        self.drained.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_is_bounded_in_bytes() {
        let socket = Socket::new(Sid::random(), Transport::WebSocket, 10);
        assert_eq!(socket.send(Frame::text("abcd")), Ok(())); // 5 bytes with the prefix
        assert_eq!(socket.send(Frame::text("abcd")), Ok(())); // 10
        assert_eq!(socket.send(Frame::text("a")), Err(SendError::Full));
        assert_eq!(socket.queued_bytes(), 10);
        let mut taken = Vec::new();
        socket.take_all(&mut taken);
        assert_eq!(taken.len(), 2);
        assert_eq!(socket.queued_bytes(), 0);
        // One frame larger than the bound passes an empty outbox.
        assert_eq!(socket.send(Frame::text("0123456789abc")), Ok(()));
        socket.close();
        assert_eq!(socket.send(Frame::text("a")), Err(SendError::Closed));
    }

    #[test]
    fn sids_are_twenty_url_safe_characters() {
        let sid = Sid::random();
        assert_eq!(sid.as_str().len(), 20);
        assert_eq!(Sid::parse(sid.as_str()), Some(sid));
        assert_eq!(Sid::parse("short"), None);
    }
}
