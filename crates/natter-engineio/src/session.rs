//! A session's one task: the heartbeat, and once there is a WebSocket, its reads and writes.
//! Everything queued when the task wakes (after letting the runnable tasks go first) is
//! written at once and flushed once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, close_code};
use futures::SinkExt;
use tokio::time::{Instant, sleep_until};

use crate::engine::{Engine, Handler};
use crate::packet::{self, Body, Frame, Incoming, Message, Outgoing};
use crate::socket::{CloseReason, Socket};

/// Runs the session until it ends, then takes it out of the engine and tells the handler.
pub(crate) async fn run<H: Handler>(
    engine: Arc<Engine<H>>,
    socket: Arc<Socket>,
    mut ws: Option<Box<WebSocket>>,
) {
    let reason = drive(&engine, &socket, &mut ws).await;
    let reason = socket.close_with(reason);
    match ws.as_mut() {
        Some(ws) => {
            // A client that stopped reading gets `ping_timeout` to take the last frames.
            let _ = tokio::time::timeout(engine.config.ping_timeout, async {
                if reason == CloseReason::ServerClose {
                    // What the application queued before closing (Socket.IO's disconnect).
                    let mut batch = Vec::new();
                    socket.take_all(&mut batch);
                    write(ws, &batch).await?;
                }
                if let Some(frame) = close_frame(reason) {
                    ws.send(WsMessage::Close(Some(frame))).await?;
                }
                ws.close().await
            })
            .await;
        }
        None if matches!(reason, CloseReason::ServerClose | CloseReason::ClientClose) => {
            drain_polling(&engine, &socket).await
        }
        None => {}
    }
    engine.remove(socket.sid());
    engine.handler.on_close(&socket, reason);
}

/// The WebSocket close frame that says why, unless the connection is gone already.
fn close_frame(reason: CloseReason) -> Option<CloseFrame> {
    let (code, reason) = match reason {
        CloseReason::TransportClose => return None,
        CloseReason::ClientClose | CloseReason::ServerClose => (close_code::NORMAL, ""),
        CloseReason::PingTimeout => (close_code::AWAY, "ping timeout"),
        CloseReason::ProtocolError => (close_code::PROTOCOL, "unreadable packet"),
        CloseReason::PayloadTooLarge => (close_code::SIZE, "message over maxPayload"),
    };
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

/// A long-polling session that ends keeps its id for a moment, so the client's next GET can
/// take what was queued and the close packet.
async fn drain_polling<H: Handler>(engine: &Engine<H>, socket: &Socket) {
    let deadline = Instant::now() + engine.config.ping_timeout;
    while !socket.lock().packets.is_empty() {
        tokio::select! {
            _ = socket.control.notified() => {}
            _ = sleep_until(deadline) => return,
        }
    }
}

async fn drive<H: Handler>(
    engine: &Engine<H>,
    socket: &Arc<Socket>,
    ws: &mut Option<Box<WebSocket>>,
) -> CloseReason {
    let config = &engine.config;
    // A write that cannot finish in this long means the client stopped reading, which the
    // heartbeat (it waits behind the write) would also have found.
    let write_patience = config.ping_interval + config.ping_timeout;
    // engine.io's schedule: the first ping one interval after the handshake, each next one
    // an interval after the pong.
    let mut next_ping = Instant::now() + config.ping_interval;
    let mut pong_due: Option<Instant> = None;
    let mut batch = Vec::new();
    loop {
        let wake_at = pong_due.unwrap_or(next_ping);
        let Some(conn) = ws.as_mut() else {
            tokio::select! {
                _ = socket.control.notified() => {
                    if let Some(reason) = socket.lock().closed {
                        return reason;
                    }
                    if socket.pong.swap(false, Ordering::AcqRel) {
                        pong_due = None;
                        socket.lock().pong_due = None;
                        next_ping = Instant::now() + config.ping_interval;
                    }
                    let upgraded = socket.upgraded.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(upgraded) = upgraded {
                        *ws = Some(upgraded);
                        // Write what queued up during the upgrade.
                        socket.ready.notify_one();
                    }
                }
                _ = sleep_until(wake_at) => {
                    if pong_due.is_some() {
                        return CloseReason::PingTimeout;
                    }
                    socket.push_control(Outgoing::Ping);
                    pong_due = Some(wake_at + config.ping_timeout);
                    // Seen by requests too: one that comes after the deadline finds the session over,
                    // even if this task has not woken yet.
                    socket.lock().pong_due = pong_due;
                }
            }
            continue;
        };
        tokio::select! {
            _ = socket.ready.notified() => {
                // Let the tasks already runnable go first: under load they queue more for this
                // session, and it all leaves in one write (heavy fan-out: about 10 % less CPU,
                // bench/README.md); when idle this is one trip through the scheduler.
                tokio::task::yield_now().await;
                socket.take_all(&mut batch);
                let written = tokio::time::timeout(write_patience, write(conn, &batch)).await;
                let closing = batch.contains(&Outgoing::Close);
                // Written: the frames' bytes go now, not at the next wakeup (an idle session
                // would hold its last messages), and a burst's capacity goes with them.
                batch.clear();
                if batch.capacity() > 64 {
                    batch.shrink_to(16);
                }
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return CloseReason::TransportClose,
                    Err(_) => return CloseReason::PingTimeout,
                }
                if closing {
                    return CloseReason::ServerClose;
                }
            }
            received = conn.recv() => {
                let incoming = match received {
                    Some(Ok(WsMessage::Text(text))) => match packet::parse_text(text.as_str()) {
                        Ok(incoming) => incoming,
                        Err(_) => return CloseReason::ProtocolError,
                    },
                    Some(Ok(WsMessage::Binary(data))) => Incoming::Message(Message::Binary(data)),
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    // tungstenite's error for a message over `max_message_size` (axum does not
                    // expose its type to match on).
                    Some(Err(e)) if e.to_string().contains("Message too long") => {
                        return CloseReason::PayloadTooLarge;
                    }
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => {
                        return CloseReason::TransportClose;
                    }
                };
                match incoming {
                    Incoming::Message(message) => engine.handler.on_message(socket, message),
                    Incoming::Pong(_) => {
                        pong_due = None;
                        next_ping = Instant::now() + config.ping_interval;
                    }
                    Incoming::Ping(data) => {
                        let pong = WsMessage::Text(format!("3{data}").into());
                        if conn.send(pong).await.is_err() {
                            return CloseReason::TransportClose;
                        }
                    }
                    Incoming::Close => return CloseReason::ClientClose,
                    Incoming::Upgrade | Incoming::Noop => {}
                }
            }
            _ = sleep_until(wake_at) => {
                if pong_due.is_some() {
                    return CloseReason::PingTimeout;
                }
                match tokio::time::timeout(write_patience, conn.send(WsMessage::Text("2".into()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return CloseReason::TransportClose,
                    Err(_) => return CloseReason::PingTimeout,
                }
                pong_due = Some(wake_at + config.ping_timeout);
            }
        }
    }
}

/// Writes the batch into the WebSocket's buffer and flushes once: one `write` for as many
/// frames as were queued.
async fn write(ws: &mut WebSocket, batch: &[Outgoing]) -> Result<(), axum::Error> {
    for packet in batch {
        let message = match packet {
            Outgoing::Message(Frame(Body::Text(text))) => WsMessage::Text(text.clone()),
            Outgoing::Message(Frame(Body::Binary(data))) => WsMessage::Binary(data.clone()),
            Outgoing::Ping => WsMessage::Text("2".into()),
            Outgoing::Noop => WsMessage::Text("6".into()),
            Outgoing::Flush => {
                ws.flush().await?;
                continue;
            }
            // The WebSocket's close frame ends the session (engine.io sends no `1` there).
            Outgoing::Close => break,
        };
        ws.feed(message).await?;
    }
    ws.flush().await
}
