//! Natter's wire types: the names and shapes that clients depend on.
//!
//! Everything here is fixed by `docs/protocol.md` (which follows the shared wire contract).
//! This crate has no behaviour beyond (de)serialization and validation helpers, so every
//! face and every client SDK can share it.

pub mod client;
pub mod error;
pub mod events;
pub mod fields;
pub mod socketio;
pub mod time;

#[cfg(test)]
mod typescript;

pub use error::{ErrorBody, ErrorCode, WireError};
pub use events::{EventKey, EventNames};
