//! Socket.IO v5 packets as text: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`.
//! Payloads stay raw JSON text: what a client sent is handed on byte for byte.

use serde::Serialize;
use serde_json::value::RawValue;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl Kind {
    fn from_digit(c: u8) -> Option<Kind> {
        Some(match c {
            b'0' => Kind::Connect,
            b'1' => Kind::Disconnect,
            b'2' => Kind::Event,
            b'3' => Kind::Ack,
            b'4' => Kind::ConnectError,
            b'5' => Kind::BinaryEvent,
            b'6' => Kind::BinaryAck,
            _ => return None,
        })
    }

    fn is_binary(self) -> bool {
        matches!(self, Kind::BinaryEvent | Kind::BinaryAck)
    }
}

/// A packet a client sent.
#[derive(Debug)]
pub(crate) struct Packet {
    pub kind: Kind,
    pub namespace: String,
    pub id: Option<u64>,
    /// How many binary messages follow (binary kinds only).
    pub attachments: usize,
    pub data: Option<Box<RawValue>>,
    /// An event's name and arguments, split out of `data` once, while checking its shape.
    pub event: Option<(String, Vec<Box<RawValue>>)>,
}

/// Why a client's packet was refused; the connection is closed for it, as socket.io does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

/// Reads a text packet and checks its payload's shape for its kind (socket.io-parser's
/// rules: a connect's is an object or absent, an event's an array starting with its name, an
/// ack's an array with an id, a disconnect has none).
pub(crate) fn parse(text: &str) -> Result<Packet, Malformed> {
    let bytes = text.as_bytes();
    let kind = bytes
        .first()
        .and_then(|c| Kind::from_digit(*c))
        .ok_or(Malformed("unknown packet type"))?;
    let mut rest = &text[1..];
    let mut attachments = 0;
    if kind.is_binary() {
        let (count, after) = rest
            .split_once('-')
            .ok_or(Malformed("binary packet without its attachment count"))?;
        attachments = count
            .parse()
            .map_err(|_| Malformed("invalid attachment count"))?;
        rest = after;
    }
    let mut namespace = String::from("/");
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        namespace = rest[..end].to_owned();
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 {
        Some(
            rest[..digits]
                .parse()
                .map_err(|_| Malformed("invalid ack id"))?,
        )
    } else {
        None
    };
    rest = &rest[digits..];
    let data: Option<Box<RawValue>> = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str(rest).map_err(|_| Malformed("invalid JSON payload"))?)
    };
    let first = data
        .as_deref()
        .and_then(|d| d.get().trim_start().bytes().next());
    let event = match (kind, data.as_deref()) {
        (Kind::Event | Kind::BinaryEvent, Some(data)) if first == Some(b'[') => split_event(data),
        _ => None,
    };
    let valid = match kind {
        Kind::Connect => id.is_none() && matches!(first, None | Some(b'{')),
        Kind::Disconnect => id.is_none() && data.is_none(),
        Kind::Event | Kind::BinaryEvent => event.is_some(),
        Kind::Ack | Kind::BinaryAck => id.is_some() && first == Some(b'['),
        Kind::ConnectError => false,
    };
    if !valid {
        return Err(Malformed("invalid payload for the packet type"));
    }
    Ok(Packet {
        kind,
        namespace,
        id,
        attachments,
        data,
        event,
    })
}

/// Splits an event's array into its name (its first element, a string) and its arguments.
fn split_event(data: &RawValue) -> Option<(String, Vec<Box<RawValue>>)> {
    let mut items: Vec<Box<RawValue>> = serde_json::from_str(data.get()).ok()?;
    if items.is_empty() {
        return None;
    }
    let name = serde_json::from_str(items.remove(0).get()).ok()?;
    Some((name, items))
}

/// Writes a packet: `kind`, the attachment count for binary kinds, the namespace unless it
/// is `/`, the id, then `payload` as it is.
pub(crate) fn encode(
    kind: Kind,
    namespace: &str,
    id: Option<u64>,
    attachments: usize,
    payload: &str,
) -> String {
    let mut out = String::with_capacity(payload.len() + namespace.len() + 8);
    out.push(char::from(b'0' + kind as u8));
    if kind.is_binary() {
        out.push_str(&attachments.to_string());
        out.push('-');
    }
    if namespace != "/" {
        out.push_str(namespace);
        out.push(',');
    }
    if let Some(id) = id {
        out.push_str(&id.to_string());
    }
    out.push_str(payload);
    out
}

/// `[event, args...]` (or `[args...]` without an event) as JSON text.
pub(crate) fn array<T: Serialize>(event: Option<&str>, args: &[T]) -> serde_json::Result<String> {
    let mut out = String::from("[");
    if let Some(event) = event {
        out.push_str(&serde_json::to_string(event)?);
    }
    for (i, arg) in args.iter().enumerate() {
        if i > 0 || event.is_some() {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(arg)?);
    }
    out.push(']');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_parse_as_socket_io_parser_reads_them() {
        let p = parse("0").unwrap();
        assert_eq!(
            (p.kind, p.namespace.as_str(), p.id),
            (Kind::Connect, "/", None)
        );
        let p = parse(r#"0/custom,{"token":"x"}"#).unwrap();
        assert_eq!(p.namespace, "/custom");
        assert_eq!(p.data.unwrap().get(), r#"{"token":"x"}"#);
        let p = parse("0/custom").unwrap();
        assert_eq!(p.namespace, "/custom");
        let p = parse(r#"2456["message-with-ack",1,"2",{"3":[false]}]"#).unwrap();
        assert_eq!((p.kind, p.id), (Kind::Event, Some(456)));
        let (name, args) = p.event.unwrap();
        assert_eq!(name, "message-with-ack");
        assert_eq!(args.len(), 3);
        assert_eq!(args[2].get(), r#"{"3":[false]}"#);
        let p = parse(r#"52-789["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
            .unwrap();
        assert_eq!(
            (p.kind, p.attachments, p.id),
            (Kind::BinaryEvent, 2, Some(789))
        );
        assert_eq!(parse("1/custom,").unwrap().kind, Kind::Disconnect);
    }

    #[test]
    fn malformed_packets_are_refused() {
        for bad in [
            "",
            "abc",
            "9",
            "2{}",
            "2[]",
            "2[1]",
            "2abc[\"m\"]",
            "3[1]",
            "0[1]",
            "1{}",
            "4{}",
            "5[\"m\"]",
            "5x-[\"m\"]",
            "2[\"m\"",
            "2/ns,[\"m\"]junk",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn packets_encode_with_their_parts() {
        assert_eq!(
            encode(Kind::Connect, "/", None, 0, r#"{"sid":"a"}"#),
            r#"0{"sid":"a"}"#
        );
        assert_eq!(
            encode(Kind::Ack, "/custom", Some(7), 0, "[1]"),
            "3/custom,7[1]"
        );
        assert_eq!(encode(Kind::BinaryEvent, "/", None, 2, "[]"), "52-[]");
        assert_eq!(
            array(Some("auth"), &[serde_json::json!({})]).unwrap(),
            r#"["auth",{}]"#
        );
        assert_eq!(array::<u8>(None, &[]).unwrap(), "[]");
    }
}
