//! Bytes → the project's own transport's parsers, as a client's input reaches them: a
//! long-polling POST body (natter-engineio) and a Socket.IO text packet
//! (natter-socketio-transport). Checks: no panic, and what parses round-trips through the
//! server's own encoding (see each crate's `fuzzing` module).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    natter_engineio::fuzzing::polling_payload(data);
    natter_socketio_transport::fuzzing::packet(data);
});
