//! File-format knowledge for attachments (CONTRACT §7.6), pure functions with no I/O:
//! - [`sniff`]: the type of an upload from its bytes (magic numbers), never from the client's
//!   claim alone, and an image's dimensions from its header.
//! - [`extract`]: the text of a document (PDF, plain text, Markdown, CSV, JSON), for the
//!   processing job. The server runs PDFs through it in a child process that bounds time and
//!   memory (`natter extract-document`).
//!
//! The server's upload path and the fuzz target `attachments` call these on untrusted bytes,
//! so nothing here panics or allocates in proportion to a header's claims.

pub mod extract;
pub mod sniff;

pub use sniff::{Kind, Sniffed, Unsupported, image_dimensions, sniff};
