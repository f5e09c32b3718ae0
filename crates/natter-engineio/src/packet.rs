//! Engine.IO v4 packets: the one-character types, a WebSocket frame's text, and the polling
//! payload (packets joined by `\x1e`, binary ones as `b` + base64).

use axum::extract::ws::Utf8Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

/// The separator of packets in a long-polling payload (ASCII record separator).
pub const SEPARATOR: u8 = 0x1e;

/// A message the application sends, encoded once: a chat event built for several sessions is
/// one `Frame` whose bytes they all share (cloning it copies a pointer, not the bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame(pub(crate) Body);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// A text message, stored with its Engine.IO type prefix (`4`) so a WebSocket frame and
    /// a polling payload both write it as it is.
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl Frame {
    /// A text message.
    pub fn text(data: &str) -> Frame {
        let mut buf = String::with_capacity(data.len() + 1);
        buf.push('4');
        buf.push_str(data);
        Frame(Body::Text(Utf8Bytes::from(buf)))
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Frame {
        Frame(Body::Binary(data.into()))
    }

    /// What the frame counts against a session's byte bound.
    pub fn len(&self) -> usize {
        match &self.0 {
            Body::Text(b) => b.len(),
            Body::Binary(b) => b.len(),
        }
    }

    /// Whether it carries nothing (never true of a text frame, which has its prefix).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What waits in a session's outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outgoing {
    Message(Frame),
    Ping,
    /// Sent to a waiting long-polling request so the client can pause it during an upgrade.
    Noop,
    /// Not a packet: the WebSocket writer flushes here, so what came before leaves in a
    /// write of its own.
    Flush,
    Close,
}

/// A message the client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Bytes),
}

/// A packet the client sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    Message(Message),
    Ping(String),
    Pong(String),
    Close,
    Upgrade,
    Noop,
}

/// Why a client's packet could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParseError;

/// Reads one text packet (a WebSocket text frame, or one packet of a polling payload).
pub(crate) fn parse_text(packet: &str) -> Result<Incoming, ParseError> {
    let mut chars = packet.chars();
    let kind = chars.next().ok_or(ParseError)?;
    let data = chars.as_str();
    Ok(match kind {
        '1' => Incoming::Close,
        '2' => Incoming::Ping(data.to_owned()),
        '3' => Incoming::Pong(data.to_owned()),
        '4' => Incoming::Message(Message::Text(data.to_owned())),
        '5' => Incoming::Upgrade,
        '6' => Incoming::Noop,
        'b' => Incoming::Message(Message::Binary(Bytes::from(
            BASE64.decode(data).map_err(|_| ParseError)?,
        ))),
        _ => return Err(ParseError),
    })
}

/// Reads a long-polling request's body: one or more packets joined by `\x1e`.
pub(crate) fn parse_payload(body: &[u8]) -> Result<Vec<Incoming>, ParseError> {
    let text = std::str::from_utf8(body).map_err(|_| ParseError)?;
    text.split(SEPARATOR as char).map(parse_text).collect()
}

/// Appends `packet` as a long-polling payload writes it.
pub(crate) fn encode_polling(out: &mut Vec<u8>, packet: &Outgoing) {
    if *packet == Outgoing::Flush {
        return;
    }
    if !out.is_empty() {
        out.push(SEPARATOR);
    }
    match packet {
        Outgoing::Message(Frame(Body::Text(b))) => out.extend_from_slice(b.as_bytes()),
        Outgoing::Message(Frame(Body::Binary(b))) => {
            out.push(b'b');
            let start = out.len();
            out.resize(start + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
            let written = BASE64.encode_slice(b, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
        }
        Outgoing::Ping => out.push(b'2'),
        Outgoing::Noop => out.push(b'6'),
        Outgoing::Close => out.push(b'1'),
        Outgoing::Flush => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_packets_read_by_type() {
        assert_eq!(
            parse_text("4hello"),
            Ok(Incoming::Message(Message::Text("hello".into())))
        );
        assert_eq!(parse_text("3"), Ok(Incoming::Pong(String::new())));
        assert_eq!(parse_text("2probe"), Ok(Incoming::Ping("probe".into())));
        assert_eq!(parse_text("5"), Ok(Incoming::Upgrade));
        assert_eq!(parse_text("1"), Ok(Incoming::Close));
        assert_eq!(parse_text(""), Err(ParseError));
        assert_eq!(parse_text("9x"), Err(ParseError));
        assert_eq!(parse_text("0{}"), Err(ParseError));
        assert_eq!(parse_text("b!!"), Err(ParseError));
    }

    #[test]
    fn polling_payload_round_trip() {
        let mut out = Vec::new();
        encode_polling(&mut out, &Outgoing::Message(Frame::text("héllo")));
        encode_polling(&mut out, &Outgoing::Message(Frame::binary(vec![1u8, 2, 3])));
        encode_polling(&mut out, &Outgoing::Ping);
        assert_eq!(out, "4héllo\x1ebAQID\x1e2".as_bytes());
        assert_eq!(
            parse_payload(&out),
            Ok(vec![
                Incoming::Message(Message::Text("héllo".into())),
                Incoming::Message(Message::Binary(Bytes::from_static(&[1, 2, 3]))),
                Incoming::Ping(String::new()),
            ])
        );
        assert_eq!(parse_payload(b"\xff"), Err(ParseError));
        assert_eq!(parse_payload(b"4a\x1e"), Err(ParseError));
    }
}
