//! An Engine.IO echo server, on Natter's own transport (`natter-engineio`) or on engineioxide
//! (the one under socketioxide), so both can be driven by stock `engine.io-client` and
//! measured side by side.
//!
//! A text message is echoed, except:
//! - `close`: the server closes the session;
//! - `broadcast N SIZE`: N messages of SIZE bytes to every session, each message encoded once
//!   (a chat event fanned out to its members), paced by the requesting session's reading (on
//!   engineioxide, which has no such wait, sent at once).
//!
//! Binary messages are echoed. `GET /stats` answers `{sessions, refused, queuedBytes}`:
//! refused counts messages a full outbox did not take (natter engine only).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use clap::{Parser, ValueEnum};
use natter_engineio::{CloseReason, Config, Engine, Frame, Handler, Message, Socket};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Transport {
    Natter,
    Engineioxide,
}

#[derive(Parser, Debug)]
#[command(about = "An Engine.IO echo server for tests and benches")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, value_enum, default_value = "natter")]
    engine: Transport,
    /// The engine's path (socket.io-protocol's test suite uses `/socket.io`).
    #[arg(long, default_value = "/engine.io")]
    path: String,
    #[arg(long, default_value_t = 25_000)]
    ping_interval_ms: u64,
    #[arg(long, default_value_t = 20_000)]
    ping_timeout_ms: u64,
    /// Each session's outbox bound in bytes (natter engine).
    #[arg(long, default_value_t = 1024 * 1024)]
    max_queued_bytes: usize,
    #[arg(long, default_value_t = 1_000_000)]
    max_payload: usize,
    /// Every this many ms, one message of `--tick-bytes` to every session (0: none).
    #[arg(long, default_value_t = 0)]
    tick_ms: u64,
    /// The size of a tick's message; it starts with the sending time in µs since the epoch.
    #[arg(long, default_value_t = 60)]
    tick_bytes: usize,
}

/// A tick's message: `SENT_MICROS ` and padding to `size` bytes.
fn tick_body(size: usize) -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    let mut body = format!("{micros} ");
    body.push_str(&"x".repeat(size.saturating_sub(body.len())));
    body
}

/// Calls `send` every `every`, forever.
fn every(every: Duration, mut send: impl FnMut() + Send + 'static) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            send();
        }
    });
}

/// Every open session, for `broadcast`.
#[derive(Default)]
struct Echo {
    sockets: Mutex<Vec<Arc<Socket>>>,
    refused: AtomicU64,
}

impl Echo {
    fn sockets(&self) -> Vec<Arc<Socket>> {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn send(&self, socket: &Socket, frame: Frame) {
        if socket.send(frame).is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `broadcast N SIZE`, if the text is one.
fn broadcast_request(text: &str) -> Option<(usize, usize)> {
    let mut words = text.strip_prefix("broadcast ")?.split(' ');
    let count = words.next()?.parse().ok()?;
    let size = words.next()?.parse().ok()?;
    Some((count, size))
}

/// The engine's handler: the shared [`Echo`] (`/stats` reads it too).
struct Echoing(Arc<Echo>);

impl Handler for Echoing {
    fn on_open(&self, socket: &Arc<Socket>, _request: &axum::http::request::Parts) {
        self.0
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(socket));
    }

    fn on_message(&self, socket: &Arc<Socket>, message: Message) {
        match message {
            Message::Text(text) if text == "close" => socket.close(),
            Message::Text(text) => match broadcast_request(&text) {
                Some((count, size)) => {
                    // Paced by the requesting session, as a chat's events are by time: each
                    // message waits for room in its outbox; the others take it or refuse it.
                    let echo = Arc::clone(&self.0);
                    let sender = Arc::clone(socket);
                    tokio::spawn(async move {
                        for n in 0..count {
                            let body = format!("{n:08} {}", "x".repeat(size.saturating_sub(9)));
                            let frame = Frame::text(&body);
                            sender.room(frame.len()).await;
                            for s in echo.sockets() {
                                echo.send(&s, frame.clone());
                            }
                        }
                    });
                }
                None => self.0.send(socket, Frame::text(&text)),
            },
            Message::Binary(data) => self.0.send(socket, Frame::binary(data)),
        }
    }

    fn on_close(&self, socket: &Arc<Socket>, _reason: CloseReason) {
        self.0
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| !Arc::ptr_eq(s, socket));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ping_interval = Duration::from_millis(args.ping_interval_ms);
    let ping_timeout = Duration::from_millis(args.ping_timeout_ms);
    let app = match args.engine {
        Transport::Natter => {
            let echo = Arc::new(Echo::default());
            let config = Config {
                ping_interval,
                ping_timeout,
                max_payload: args.max_payload,
                max_queued_bytes: args.max_queued_bytes,
                ..Config::default()
            };
            let engine = Engine::new(config, Echoing(Arc::clone(&echo)));
            if args.tick_ms > 0 {
                let echo = Arc::clone(&echo);
                let size = args.tick_bytes;
                every(Duration::from_millis(args.tick_ms), move || {
                    let frame = Frame::text(&tick_body(size));
                    for s in echo.sockets() {
                        echo.send(&s, frame.clone());
                    }
                });
            }
            let stats_engine = Arc::clone(&engine);
            engine.router(&args.path).route(
                "/stats",
                get(move || async move {
                    let queued: usize = echo.sockets().iter().map(|s| s.queued_bytes()).sum();
                    axum::Json(serde_json::json!({
                        "sessions": stats_engine.session_count(),
                        "refused": echo.refused.load(Ordering::Relaxed),
                        "queuedBytes": queued,
                    }))
                }),
            )
        }
        Transport::Engineioxide => oxide::router(&args),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The same echo on engineioxide.
mod oxide {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use engineioxide::config::EngineIoConfig;
    use engineioxide::handler::EngineIoHandler;
    use engineioxide::socket::{DisconnectReason, Socket};
    use engineioxide::{Str, layer::EngineIoLayer};

    /// `Clone` because engineioxide's layer asks it of the handler.
    #[derive(Clone, Debug, Default)]
    struct Echo {
        sockets: Arc<std::sync::Mutex<Vec<Arc<Socket<()>>>>>,
    }

    impl EngineIoHandler for Echo {
        type Data = ();

        fn on_connect(self: Arc<Self>, socket: Arc<Socket<()>>) {
            self.sockets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(socket);
        }

        fn on_disconnect(&self, socket: Arc<Socket<()>>, _reason: DisconnectReason) {
            self.sockets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|s| s.id != socket.id);
        }

        fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<()>>) {
            if &*msg == "close" {
                socket.close(DisconnectReason::TransportClose);
                return;
            }
            if let Some((count, size)) = super::broadcast_request(&msg) {
                let sockets = self
                    .sockets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                for n in 0..count {
                    let body: Str = format!("{n:08} {}", "x".repeat(size.saturating_sub(9))).into();
                    for s in &sockets {
                        let _ = s.emit(body.clone());
                    }
                }
                return;
            }
            let _ = socket.emit(msg);
        }

        fn on_binary(self: &Arc<Self>, data: bytes::Bytes, socket: Arc<Socket<()>>) {
            let _ = socket.emit_binary(data);
        }
    }

    /// Natter's socketioxide settings where they apply (a 1 KiB WebSocket read buffer).
    pub fn router(args: &super::Args) -> Router {
        let config = EngineIoConfig::builder()
            .req_path(args.path.clone())
            .ping_interval(Duration::from_millis(args.ping_interval_ms))
            .ping_timeout(Duration::from_millis(args.ping_timeout_ms))
            .max_payload(args.max_payload as u64)
            .ws_read_buffer_size(1024)
            .build();
        let echo = Arc::new(Echo::default());
        if args.tick_ms > 0 {
            let echo = echo.clone();
            let size = args.tick_bytes;
            super::every(Duration::from_millis(args.tick_ms), move || {
                let body: Str = super::tick_body(size).into();
                let sockets = echo
                    .sockets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                for s in &sockets {
                    let _ = s.emit(body.clone());
                }
            });
        }
        let stats = Arc::clone(&echo);
        Router::new()
            .route(
                "/stats",
                get(move || async move {
                    let sessions = stats
                        .sockets
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .len();
                    axum::Json(serde_json::json!({"sessions": sessions}))
                }),
            )
            .layer(EngineIoLayer::from_config(echo, config))
    }
}
