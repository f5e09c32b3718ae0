//! Built-in server-run tools, each off until enabled by config (`--tools current_time,http_get`):
//! - [`CurrentTime`]: the current date and time in an IANA time zone (bundled tz database, so
//!   it answers the same on every machine);
//! - [`HttpGet`]: a GET of a URL under an allow-listed prefix, with size and time limits.
//!
//! They implement natter-core's [`Tool`](natter_core::tools::Tool); an app embedding Natter
//! registers its own the same way (see `examples/`).

mod http_get;
mod time;

pub use http_get::{HttpGet, HttpGetLimits};
pub use time::CurrentTime;
