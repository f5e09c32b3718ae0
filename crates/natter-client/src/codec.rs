//! Engine.IO v4 and Socket.IO v5 text packets, as a client sends and reads them.
//!
//! Why not socketioxide's codecs (`engineioxide-core` 0.2 / `socketioxide-parser-common` 0.17,
//! the versions socketioxide 0.18.9 uses): they are the server's half of the protocol. The
//! Engine.IO parser refuses the `0` OPEN packet (a server never receives one) and its
//! `OpenPacket` only accepts socketioxide-shaped session ids; the Socket.IO parser refuses
//! packet type `4` CONNECT_ERROR, which is exactly what a client must read to learn that it was
//! refused, and its encoder panics on packet shapes it does not expect. The text framing is
//! small, so it is written here, with a clear error for everything it does not handle.
//!
//! Over WebSocket each frame carries one Engine.IO packet (the `\x1e` separator is polling only).

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::error::ClientError;

/// The Engine.IO handshake (`0{...}`): the session and its heartbeat settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPacket {
    pub sid: String,
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// How often the server pings, in milliseconds.
    pub ping_interval: u64,
    /// How long the server waits for our pong, in milliseconds.
    pub ping_timeout: u64,
    /// The largest packet the server accepts, in bytes.
    #[serde(default)]
    pub max_payload: u64,
}

impl OpenPacket {
    /// How long without a ping before the connection counts as dead: the server pings every
    /// `pingInterval`, and a ping may take up to `pingTimeout` to arrive (engine.io-client's rule).
    pub fn heartbeat_deadline(&self) -> Duration {
        Duration::from_millis(self.ping_interval.saturating_add(self.ping_timeout))
    }
}

/// One Engine.IO packet in a text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum EnginePacket {
    Open(OpenPacket),
    Close,
    Ping,
    Pong,
    /// A Socket.IO packet (the text after the `4`).
    Message(String),
    Upgrade,
    Noop,
}

impl EnginePacket {
    pub fn decode(frame: &str) -> Result<Self, ClientError> {
        let mut chars = frame.chars();
        let kind = chars
            .next()
            .ok_or_else(|| malformed("an empty Engine.IO frame", frame))?;
        let rest = chars.as_str();
        Ok(match kind {
            '0' => Self::Open(serde_json::from_str(rest).map_err(|e| {
                malformed(
                    &format!("an Engine.IO OPEN packet that is not valid ({e})"),
                    frame,
                )
            })?),
            '1' => Self::Close,
            '2' => Self::Ping,
            '3' => Self::Pong,
            '4' => Self::Message(rest.to_owned()),
            '5' => Self::Upgrade,
            '6' => Self::Noop,
            _ => return Err(malformed("an unknown Engine.IO packet type", frame)),
        })
    }

    /// The text frame for a packet a client sends (`Open` is the server's; it encodes as `0`).
    pub fn encode(&self) -> String {
        match self {
            Self::Open(_) => "0".to_owned(),
            Self::Close => "1".to_owned(),
            Self::Ping => "2".to_owned(),
            Self::Pong => "3".to_owned(),
            Self::Message(m) => format!("4{m}"),
            Self::Upgrade => "5".to_owned(),
            Self::Noop => "6".to_owned(),
        }
    }
}

/// One Socket.IO packet (text only; binary packets are recognised so they can be refused).
#[derive(Debug, Clone, PartialEq)]
pub enum SocketPacket {
    /// Client → server: `auth`; server → client: `{sid}`.
    Connect {
        namespace: String,
        data: Option<Value>,
    },
    Disconnect {
        namespace: String,
    },
    /// `args[0]` is the event name.
    Event {
        namespace: String,
        ack_id: Option<u64>,
        args: Vec<Value>,
    },
    Ack {
        namespace: String,
        ack_id: u64,
        args: Vec<Value>,
    },
    /// v5 sends `{message, data?}`; older servers a bare string. Both end up in `message`.
    ConnectError {
        namespace: String,
        message: String,
        data: Option<Value>,
    },
    /// BINARY_EVENT / BINARY_ACK: not supported; `attachments` binary frames follow it.
    Binary {
        namespace: String,
        attachments: usize,
    },
}

impl SocketPacket {
    pub fn namespace(&self) -> &str {
        match self {
            Self::Connect { namespace, .. }
            | Self::Disconnect { namespace }
            | Self::Event { namespace, .. }
            | Self::Ack { namespace, .. }
            | Self::ConnectError { namespace, .. }
            | Self::Binary { namespace, .. } => namespace,
        }
    }

    /// `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`
    pub fn decode(text: &str) -> Result<Self, ClientError> {
        let bytes = text.as_bytes();
        let Some(&kind) = bytes.first() else {
            return Err(malformed("an empty Socket.IO packet", text));
        };
        // Checked before any slicing: every index below then lands on an ASCII byte.
        if !(b'0'..=b'6').contains(&kind) {
            return Err(malformed("an unknown Socket.IO packet type", text));
        }
        let mut pos = 1;

        let mut attachments = 0usize;
        if kind == b'5' || kind == b'6' {
            let digits = count_digits(&bytes[pos..]);
            if digits == 0 || bytes.get(pos + digits) != Some(&b'-') {
                return Err(malformed(
                    "a binary packet without its attachment count",
                    text,
                ));
            }
            attachments = text[pos..pos + digits]
                .parse()
                .map_err(|_| malformed("an attachment count that is too large", text))?;
            pos += digits + 1;
        }

        let namespace = if bytes.get(pos) == Some(&b'/') {
            // The namespace runs to the first `,` (or the end: `1/chat` is valid).
            let end = text[pos..].find(',').map_or(text.len(), |i| pos + i);
            let ns = text[pos..end].to_owned();
            pos = (end + 1).min(text.len());
            ns
        } else {
            "/".to_owned()
        };

        let digits = count_digits(&bytes[pos..]);
        let ack_id = if digits > 0 {
            let id = text[pos..pos + digits]
                .parse::<u64>()
                .map_err(|_| malformed("an ack id that is too large", text))?;
            pos += digits;
            Some(id)
        } else {
            None
        };

        let body = &text[pos..];
        let json = |what: &str| -> Result<Option<Value>, ClientError> {
            if body.is_empty() {
                return Ok(None);
            }
            serde_json::from_str(body)
                .map(Some)
                .map_err(|e| malformed(&format!("{what} whose JSON does not parse ({e})"), text))
        };
        let args = |what: &str| -> Result<Vec<Value>, ClientError> {
            match json(what)? {
                Some(Value::Array(args)) => Ok(args),
                _ => Err(malformed(
                    &format!("{what} whose payload is not an array"),
                    text,
                )),
            }
        };

        Ok(match kind {
            b'0' => Self::Connect {
                namespace,
                data: json("a CONNECT packet")?,
            },
            b'1' => Self::Disconnect { namespace },
            b'2' => {
                let args = args("an EVENT packet")?;
                if !matches!(args.first(), Some(Value::String(_))) {
                    return Err(malformed("an EVENT packet without an event name", text));
                }
                Self::Event {
                    namespace,
                    ack_id,
                    args,
                }
            }
            b'3' => Self::Ack {
                namespace,
                ack_id: ack_id.ok_or_else(|| malformed("an ACK packet without an id", text))?,
                args: args("an ACK packet")?,
            },
            b'4' => {
                let (message, data) = match json("a CONNECT_ERROR packet")? {
                    Some(Value::String(message)) => (message, None),
                    Some(Value::Object(mut o)) => {
                        let message = match o.remove("message") {
                            Some(Value::String(m)) => m,
                            Some(other) => other.to_string(),
                            None => String::new(),
                        };
                        (message, o.remove("data"))
                    }
                    Some(other) => (other.to_string(), None),
                    None => (String::new(), None),
                };
                Self::ConnectError {
                    namespace,
                    message,
                    data,
                }
            }
            b'5' | b'6' => Self::Binary {
                namespace,
                attachments,
            },
            _ => return Err(malformed("an unknown Socket.IO packet type", text)),
        })
    }

    /// The text of a packet (the Engine.IO `4` is not included).
    pub fn encode(&self) -> String {
        fn prefix(out: &mut String, namespace: &str) {
            if namespace != "/" && !namespace.is_empty() {
                out.push_str(namespace);
                out.push(',');
            }
        }
        let mut out = String::new();
        match self {
            Self::Connect { namespace, data } => {
                out.push('0');
                prefix(&mut out, namespace);
                if let Some(data) = data {
                    out.push_str(&data.to_string());
                }
            }
            Self::Disconnect { namespace } => {
                out.push('1');
                prefix(&mut out, namespace);
            }
            Self::Event {
                namespace,
                ack_id,
                args,
            } => {
                out.push('2');
                prefix(&mut out, namespace);
                if let Some(id) = ack_id {
                    out.push_str(&id.to_string());
                }
                out.push_str(&Value::Array(args.clone()).to_string());
            }
            Self::Ack {
                namespace,
                ack_id,
                args,
            } => {
                out.push('3');
                prefix(&mut out, namespace);
                out.push_str(&ack_id.to_string());
                out.push_str(&Value::Array(args.clone()).to_string());
            }
            Self::ConnectError {
                namespace,
                message,
                data,
            } => {
                out.push('4');
                prefix(&mut out, namespace);
                let mut body = serde_json::Map::new();
                body.insert("message".into(), Value::String(message.clone()));
                if let Some(data) = data {
                    body.insert("data".into(), data.clone());
                }
                out.push_str(&Value::Object(body).to_string());
            }
            Self::Binary {
                namespace,
                attachments,
            } => {
                out.push('5');
                out.push_str(&attachments.to_string());
                out.push('-');
                prefix(&mut out, namespace);
            }
        }
        out
    }
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn malformed(what: &str, packet: &str) -> ClientError {
    // Only a prefix: the packet may be megabytes long.
    let shown: String = packet.chars().take(120).collect();
    ClientError::Protocol(format!("the server sent {what}: {shown:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_open_packet() {
        let p = EnginePacket::decode(
            r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
        )
        .unwrap();
        let EnginePacket::Open(open) = p else {
            panic!("not an open packet: {p:?}")
        };
        assert_eq!(open.sid, "abc");
        assert_eq!(open.heartbeat_deadline(), Duration::from_millis(45_000));
        assert_eq!(open.max_payload, 1_000_000);
        assert!(EnginePacket::decode("0{").is_err());
        assert!(EnginePacket::decode("").is_err());
        assert!(EnginePacket::decode("9").is_err());
        assert_eq!(EnginePacket::decode("2").unwrap(), EnginePacket::Ping);
        assert_eq!(EnginePacket::Pong.encode(), "3");
    }

    #[test]
    fn socket_packets_round_trip() {
        let cases = [
            SocketPacket::Connect {
                namespace: "/".into(),
                data: Some(json!({"token": "t"})),
            },
            SocketPacket::Connect {
                namespace: "/admin".into(),
                data: None,
            },
            SocketPacket::Disconnect {
                namespace: "/".into(),
            },
            SocketPacket::Event {
                namespace: "/".into(),
                ack_id: Some(12),
                args: vec![json!("chat:join"), json!({"chatId": "c"})],
            },
            SocketPacket::Event {
                namespace: "/x".into(),
                ack_id: None,
                args: vec![json!("ping")],
            },
            SocketPacket::Ack {
                namespace: "/".into(),
                ack_id: 7,
                args: vec![json!({"ok": true})],
            },
            SocketPacket::ConnectError {
                namespace: "/".into(),
                message: "unauthorized".into(),
                data: None,
            },
        ];
        for p in cases {
            let text = p.encode();
            assert_eq!(SocketPacket::decode(&text).unwrap(), p, "{text}");
        }
    }

    #[test]
    fn socket_wire_forms() {
        assert_eq!(
            SocketPacket::decode(r#"0{"sid":"x"}"#).unwrap(),
            SocketPacket::Connect {
                namespace: "/".into(),
                data: Some(json!({"sid": "x"}))
            }
        );
        assert_eq!(
            SocketPacket::decode(r#"4{"message":"unauthorized"}"#).unwrap(),
            SocketPacket::ConnectError {
                namespace: "/".into(),
                message: "unauthorized".into(),
                data: None
            }
        );
        // Socket.IO v4 servers sent a bare string.
        assert!(matches!(
            SocketPacket::decode(r#"4"forbidden""#).unwrap(),
            SocketPacket::ConnectError { message, .. } if message == "forbidden"
        ));
        assert_eq!(
            SocketPacket::decode(r#"51-["up",{"_placeholder":true,"num":0}]"#).unwrap(),
            SocketPacket::Binary {
                namespace: "/".into(),
                attachments: 1
            }
        );
        assert_eq!(
            SocketPacket::decode("1/chat").unwrap(),
            SocketPacket::Disconnect {
                namespace: "/chat".into()
            }
        );
    }

    #[test]
    fn bad_socket_packets_are_errors_not_panics() {
        for bad in [
            "",
            "9",
            "2",
            "2{}",
            "2[1]",
            "3[]",
            "2[",
            "5-[]",
            "5x",
            "299999999999999999999999[\"a\"]",
            "2/é",
            "é",
        ] {
            assert!(SocketPacket::decode(bad).is_err(), "{bad:?} decoded");
        }
    }
}
