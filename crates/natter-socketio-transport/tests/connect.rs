//! Joining a namespace over a real WebSocket, against the crate served in-process: a refused
//! connect gets `CONNECT_ERROR` with the handler's data and joins nothing; an accepted one gets
//! its reply before the namespace's first event; leaving calls `on_disconnect` once; the
//! handshake is kept as `keep_headers` asks; `Socket::disconnect` sends `1` and closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use natter_socketio_transport::natter_engineio::{Config, Engine};
use natter_socketio_transport::{Event, Namespace, Socket, SocketIo};
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Message;

/// Lets in a client whose auth has a `token`; greets it; counts leavers.
struct Guarded {
    left: Arc<AtomicUsize>,
}

impl Namespace for Guarded {
    fn authorize(
        &self,
        _socket: &Arc<Socket>,
        auth: Option<&RawValue>,
    ) -> Result<(), serde_json::Value> {
        let auth: serde_json::Value = auth
            .and_then(|a| serde_json::from_str(a.get()).ok())
            .unwrap_or_default();
        match auth.get("token") {
            Some(_) => Ok(()),
            None => Err(
                serde_json::json!({"message": "unauthorized", "data": {"code": "unauthorized"}}),
            ),
        }
    }

    fn on_connect(&self, socket: &Arc<Socket>, _auth: Option<&RawValue>) {
        let _ = socket.emit("hello", &["you"], &[]);
    }

    fn on_event(&self, _socket: &Arc<Socket>, _event: Event) {}

    fn on_disconnect(&self, _socket: &Arc<Socket>) {
        self.left.fetch_add(1, Ordering::SeqCst);
    }
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a message in time")
        .expect("open")
        .expect("readable");
    msg.into_text().expect("text").to_string()
}

#[tokio::test]
async fn refused_accepted_and_left() {
    let left = Arc::new(AtomicUsize::new(0));
    let io = SocketIo::new(Duration::from_secs(5)).namespace(
        "/",
        Guarded {
            left: Arc::clone(&left),
        },
    );
    let app = Engine::new(Config::default(), io).router("/socket.io");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connects");
    assert!(next_text(&mut ws).await.starts_with("0{\"sid\":"));

    ws.send(Message::Text("40{}".into())).await.expect("sent");
    assert_eq!(
        next_text(&mut ws).await,
        r#"44{"data":{"code":"unauthorized"},"message":"unauthorized"}"#
    );

    ws.send(Message::Text(r#"40{"token":"t"}"#.into()))
        .await
        .expect("sent");
    assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"));
    assert_eq!(next_text(&mut ws).await, r#"42["hello","you"]"#);

    ws.send(Message::Text("41".into())).await.expect("sent");
    ws.close(None).await.expect("closed");
    for _ in 0..100 {
        if left.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Once for the `41`, not again when the connection closes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(left.load(Ordering::SeqCst), 1);
}

/// Keeps what `authorize` saw of the handshake in the socket's state; disconnects a client
/// that sends `bye`.
struct Inspecting;

impl Namespace for Inspecting {
    fn authorize(
        &self,
        socket: &Arc<Socket>,
        _auth: Option<&RawValue>,
    ) -> Result<(), serde_json::Value> {
        let handshake = socket.handshake();
        let seen = format!(
            "query={} auth_header={} other_header={} peer={}",
            handshake.query.as_deref().unwrap_or(""),
            handshake
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-"),
            handshake.headers.get("x-other").is_some(),
            handshake.peer.is_some_and(|p| p.ip().is_loopback()),
        );
        assert!(socket.set_state(Arc::new(seen)));
        Ok(())
    }

    fn on_connect(&self, socket: &Arc<Socket>, _auth: Option<&RawValue>) {
        let seen = socket.state::<String>().expect("the state authorize set");
        let _ = socket.emit("seen", &[seen.as_str()], &[]);
    }

    fn on_event(&self, socket: &Arc<Socket>, event: Event) {
        if event.name == "bye" {
            let _ = socket.disconnect();
        }
    }

    fn on_disconnect(&self, _socket: &Arc<Socket>) {}
}

#[tokio::test]
async fn the_handshake_is_kept_as_asked_and_the_server_disconnects() {
    let io = SocketIo::new(Duration::from_secs(5))
        .keep_headers([axum::http::header::AUTHORIZATION])
        .namespace("/", Inspecting);
    let app = Engine::new(Config::default(), io).router("/socket.io");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&userId=ann");
    let mut request = url.into_client_request().expect("a request");
    request
        .headers_mut()
        .insert("authorization", "Bearer abc".parse().expect("a header"));
    request
        .headers_mut()
        .insert("x-other", "dropped".parse().expect("a header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connects");
    assert!(next_text(&mut ws).await.starts_with("0{\"sid\":"));
    ws.send(Message::Text("40".into())).await.expect("sent");
    assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"));
    assert_eq!(
        next_text(&mut ws).await,
        r#"42["seen","query=EIO=4&transport=websocket&userId=ann auth_header=Bearer abc other_header=false peer=true"]"#
    );

    ws.send(Message::Text(r#"42["bye"]"#.into()))
        .await
        .expect("sent");
    // Socket.IO's disconnect, then the WebSocket closes.
    assert_eq!(next_text(&mut ws).await, "41");
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("closed in time");
    assert!(
        matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "{end:?}"
    );
}
