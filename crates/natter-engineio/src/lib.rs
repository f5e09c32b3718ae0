//! An Engine.IO v4 server transport (long-polling, WebSocket and the upgrade between them),
//! built for what `bench/README.md` measured engineioxide to cost Natter per socket: one task
//! per session instead of three, an outbox that allocates only as it fills and is bounded in
//! bytes instead of packets, frames encoded once and shared, everything queued written with
//! one flush, no copy of the handshake request kept, and the first ping one interval after the
//! handshake as engine.io sends it. See README.md for what it does not do yet.

mod engine;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod packet;
mod session;
mod socket;

pub use engine::{Config, Engine, Handler};
pub use packet::{Frame, Message};
pub use socket::{CloseReason, SendError, Sid, Socket};
