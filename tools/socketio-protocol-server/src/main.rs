//! The demo server that socketio/socket.io-protocol's `test-suite` is written against (its
//! Readme's "Test suite" section), with exactly those handlers and settings, on the transport
//! Natter's face uses (socketioxide) or, with `--transport natter`, on the project's own
//! (natter-socketio-transport), so the suite measures either.
//!
//! The suite connects to `localhost:3000`, so this listens there by default, on IPv4 and
//! IPv6 loopback both (Node may resolve `localhost` to either).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeTuple, Serializer};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, TryData};

/// The reference server's settings (socket.io-protocol Readme).
const PING_INTERVAL_MS: u64 = 300;
const PING_TIMEOUT_MS: u64 = 200;
const MAX_PAYLOAD: u64 = 1_000_000;
/// The suite's "close the connection if no handshake is received" waits under mocha's 2 s
/// default timeout; the reference server uses 1 s.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

#[derive(Parser, Debug)]
#[command(about = "The demo server of socket.io-protocol's test suite, on socketioxide")]
struct Args {
    /// Address to listen on; repeat for several. An address that cannot be bound is skipped
    /// with a warning as long as one can.
    #[arg(long, default_values = ["127.0.0.1:3000", "[::1]:3000"])]
    listen: Vec<SocketAddr>,
    /// The suite expects 300; other values only for this crate's own tests.
    #[arg(long, default_value_t = PING_INTERVAL_MS)]
    ping_interval_ms: u64,
    /// The suite expects 200; a loaded machine running this crate's own tests may need more.
    #[arg(long, default_value_t = PING_TIMEOUT_MS)]
    ping_timeout_ms: u64,
    /// The Socket.IO implementation to serve with: socketioxide (under Natter's face today)
    /// or the project's own (natter-socketio-transport on natter-engineio).
    #[arg(long, value_enum, default_value = "socketioxide")]
    transport: Transport,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Transport {
    Socketioxide,
    Natter,
}

/// Every argument of an event, whatever their number, as one value that socketioxide spreads
/// back into separate arguments (it does so for tuple-like types): the reference server's
/// `(...args)`. `rmpv::Value` keeps binary attachments as bytes.
struct EventArgs(Vec<rmpv::Value>);

impl Serialize for EventArgs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for arg in &self.0 {
            tuple.serialize_element(arg)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for EventArgs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArgsVisitor;
        impl<'de> Visitor<'de> for ArgsVisitor {
            type Value = EventArgs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the arguments of an event")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventArgs, A::Error> {
                let mut args = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(arg) = seq.next_element()? {
                    args.push(arg);
                }
                Ok(EventArgs(args))
            }
        }
        // As a tuple, so socketioxide hands over all the arguments, not only the first.
        deserializer.deserialize_tuple(usize::MAX, ArgsVisitor)
    }
}

/// The handshake's auth payload, or `{}` when the client sent none (as Node's
/// `socket.handshake.auth`).
fn auth_or_empty(auth: Option<rmpv::Value>) -> rmpv::Value {
    match auth {
        Some(rmpv::Value::Nil) | None => rmpv::Value::Map(Vec::new()),
        Some(value) => value,
    }
}

async fn on_main_connect(socket: SocketRef, TryData(auth): TryData<rmpv::Value>) {
    if let Err(e) = socket.emit("auth", &auth_or_empty(auth.ok())) {
        eprintln!("emitting auth on /: {e}");
    }
    socket.on(
        "message",
        async |socket: SocketRef, TryData(args): TryData<EventArgs>| match args {
            Ok(args) => {
                if let Err(e) = socket.emit("message-back", &args) {
                    eprintln!("emitting message-back: {e}");
                }
            }
            Err(e) => eprintln!("unreadable `message` arguments: {e}"),
        },
    );
    socket.on(
        "message-with-ack",
        async |TryData(args): TryData<EventArgs>, ack: AckSender| match args {
            Ok(args) => {
                if let Err(e) = ack.send(&args) {
                    eprintln!("sending the ack: {e}");
                }
            }
            Err(e) => eprintln!("unreadable `message-with-ack` arguments: {e}"),
        },
    );
}

async fn on_custom_connect(socket: SocketRef, TryData(auth): TryData<rmpv::Value>) {
    if let Err(e) = socket.emit("auth", &auth_or_empty(auth.ok())) {
        eprintln!("emitting auth on /custom: {e}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = match args.transport {
        Transport::Socketioxide => socketioxide_app(&args),
        Transport::Natter => own::app(&args),
    };
    serve(&args, app).await
}

fn socketioxide_app(args: &Args) -> axum::Router {
    let (layer, io) = SocketIo::builder()
        .ping_interval(Duration::from_millis(args.ping_interval_ms))
        .ping_timeout(Duration::from_millis(args.ping_timeout_ms))
        .max_payload(MAX_PAYLOAD)
        // As natter-server does: max_payload bounds polling only.
        .ws_max_message_size(MAX_PAYLOAD as usize)
        .connect_timeout(CONNECT_TIMEOUT)
        .build_layer();
    io.ns("/", on_main_connect);
    io.ns("/custom", on_custom_connect);
    axum::Router::new().layer(layer)
}

/// The same handlers on the project's own transport.
mod own {
    use std::sync::Arc;
    use std::time::Duration;

    use natter_socketio_transport::natter_engineio::{Config, Engine};
    use natter_socketio_transport::{Event, Namespace, Socket, SocketIo};
    use serde_json::value::RawValue;

    /// `/` and `/custom` both emit `auth`; only `/` answers messages.
    struct Demo {
        echoes: bool,
    }

    impl Namespace for Demo {
        fn on_connect(&self, socket: &Arc<Socket>, auth: Option<&RawValue>) {
            let empty = serde_json::value::to_raw_value(&serde_json::json!({}));
            let auth = match (auth, &empty) {
                (Some(auth), _) if auth.get() != "null" => auth,
                (_, Ok(empty)) => empty,
                (_, Err(_)) => return,
            };
            if let Err(e) = socket.emit("auth", &[auth], &[]) {
                eprintln!("emitting auth on {}: {e}", socket.namespace());
            }
        }

        fn on_event(&self, socket: &Arc<Socket>, event: Event) {
            if !self.echoes {
                return;
            }
            let sent = match (event.name.as_str(), event.ack) {
                ("message", _) => socket.emit("message-back", &event.args, &event.attachments),
                ("message-with-ack", Some(id)) => socket.ack(id, &event.args, &event.attachments),
                _ => Ok(()),
            };
            if let Err(e) = sent {
                eprintln!("answering {}: {e}", event.name);
            }
        }

        fn on_disconnect(&self, _socket: &Arc<Socket>) {}
    }

    pub fn app(args: &super::Args) -> axum::Router {
        let config = Config {
            ping_interval: Duration::from_millis(args.ping_interval_ms),
            ping_timeout: Duration::from_millis(args.ping_timeout_ms),
            max_payload: super::MAX_PAYLOAD as usize,
            ..Config::default()
        };
        let io = SocketIo::new(super::CONNECT_TIMEOUT)
            .namespace("/", Demo { echoes: true })
            .namespace("/custom", Demo { echoes: false });
        Engine::new(config, io).router("/socket.io")
    }
}

async fn serve(args: &Args, app: axum::Router) -> anyhow::Result<()> {
    let mut servers = tokio::task::JoinSet::new();
    for addr in &args.listen {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("warning: cannot listen on {addr}: {e}");
                continue;
            }
        };
        let local = listener.local_addr()?;
        // Scripts wait for this line.
        println!("listening on http://{local}");
        let app = app.clone();
        servers.spawn(async move {
            axum::serve(listener, app)
                .await
                .with_context(|| format!("serving {local}"))
        });
    }
    anyhow::ensure!(
        !servers.is_empty(),
        "could not listen on any of {:?}",
        args.listen
    );
    // The first server to stop ends the process.
    match servers.join_next().await {
        Some(result) => result.context("server task")?,
        None => Ok(()),
    }
}
