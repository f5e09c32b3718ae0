//! The Socket.IO packet parser, for fuzz/: a client's text packet as the server reads it.

use crate::packet::{self, Kind};

/// Checks: no panic; an event that parses splits into a name and its arguments; a packet
/// that parses, written back, parses to the same kind, namespace, id, attachment count and
/// payload.
pub fn packet(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = packet::parse(text) else {
        return;
    };
    let payload = p.data.as_deref().map(|d| d.get()).unwrap_or("");
    if matches!(p.kind, Kind::Event | Kind::BinaryEvent) {
        assert!(p.event.is_some(), "{text:?}");
    }
    let written = packet::encode(p.kind, &p.namespace, p.id, p.attachments, payload);
    let back = packet::parse(&written).expect("a packet the server wrote parses");
    assert_eq!(
        (
            back.kind,
            back.namespace.as_str(),
            back.id,
            back.attachments
        ),
        (p.kind, p.namespace.as_str(), p.id, p.attachments),
        "{text:?} → {written:?}"
    );
    assert_eq!(back.data.as_deref().map(|d| d.get()).unwrap_or(""), payload);
}
