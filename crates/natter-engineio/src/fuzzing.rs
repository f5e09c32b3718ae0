//! The long-polling payload parser, for fuzz/: a client's POST body as the engine reads it.

use crate::packet::{self, Body, Frame, Incoming, Message, Outgoing};

/// Checks: no panic; the messages of a payload that parses, written as the server writes
/// them, parse back to the same messages.
pub fn polling_payload(data: &[u8]) {
    let Ok(packets) = packet::parse_payload(data) else {
        return;
    };
    let messages: Vec<Message> = packets
        .into_iter()
        .filter_map(|p| match p {
            Incoming::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    if messages.is_empty() {
        return;
    }
    let mut written = Vec::new();
    for m in &messages {
        let frame = match m {
            Message::Text(t) => Frame::text(t),
            Message::Binary(b) => Frame::binary(b.clone()),
        };
        if let Frame(Body::Text(t)) = &frame {
            assert!(t.as_str().starts_with('4'));
        }
        packet::encode_polling(&mut written, &Outgoing::Message(frame));
    }
    let back = packet::parse_payload(&written).expect("a payload the server wrote parses");
    let back: Vec<Message> = back
        .into_iter()
        .map(|p| match p {
            Incoming::Message(m) => m,
            other => panic!("the server wrote {other:?}"),
        })
        .collect();
    assert_eq!(back, messages);
}
