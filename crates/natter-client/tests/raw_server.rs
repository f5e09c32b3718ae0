//! The transport against a raw Engine.IO server written in the test, for what the real server
//! never does: ask the client for an ack, ping every 100 ms, stop pinging, refuse a reconnect.

mod common;

use std::time::Duration;

use common::{raw_accept, raw_accept_namespace, raw_listener, raw_next_text};
use futures::{SinkExt, StreamExt};
use natter_client::{
    ClientError, ConnectErrorKind, DisconnectReason, ReconnectPolicy, Socket, SocketEvent,
    SocketEvents, SocketOptions,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn options(url: &str) -> SocketOptions {
    let mut o = SocketOptions::new(url);
    o.auth = Some(json!({"token": "t-1", "userId": "ada"}));
    o.query = vec![("chatId".into(), "c 1".into())];
    o.reconnect = ReconnectPolicy {
        enabled: true,
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_attempts: Some(5),
    };
    o.connect_timeout = Duration::from_secs(5);
    o
}

async fn next_event(events: &mut SocketEvents, what: &str) -> SocketEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("the stream ended before {what}"))
}

#[tokio::test]
async fn acks_server_events_that_ask_for_one() {
    let (listener, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let mut ws = raw_accept(&listener, 25_000, 20_000).await;
        let auth = raw_accept_namespace(&mut ws).await;
        assert_eq!(auth, json!({"token": "t-1", "userId": "ada"}));
        ws.send(Message::text(r#"427["confirm",{"toolCallId":"c1"}]"#))
            .await
            .expect("send event");
        ws.send(Message::text(r#"42["no-ack",1,2]"#))
            .await
            .expect("send event");
        let reply = raw_next_text(&mut ws).await;
        assert_eq!(reply, r#"437[{"approved":true}]"#);
    });

    let (socket, mut events) = Socket::connect(options(&url)).await.expect("connect");
    assert!(matches!(
        next_event(&mut events, "Connected").await,
        SocketEvent::Connected {
            reconnected: false,
            ..
        }
    ));
    let SocketEvent::Event(asking) = next_event(&mut events, "confirm").await else {
        panic!("expected an event")
    };
    assert_eq!(asking.name, "confirm");
    assert_eq!(asking.data(), &json!({"toolCallId": "c1"}));
    let SocketEvent::Event(plain) = next_event(&mut events, "no-ack").await else {
        panic!("expected an event")
    };
    assert!(plain.ack.is_none());
    assert_eq!(plain.args, vec![json!(1), json!(2)]);

    let ack = asking.ack.expect("the server asked for an ack");
    assert_eq!(ack.id(), 7);
    ack.send_value(json!({"approved": true})).expect("ack sent");
    assert!(matches!(
        ack.send_value(json!("twice")),
        Err(ClientError::AckUnavailable)
    ));
    server.await.expect("server checks passed");
    socket.close().await;
}

#[tokio::test]
async fn emit_with_ack_matches_replies_and_times_out() {
    let (listener, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let mut ws = raw_accept(&listener, 25_000, 20_000).await;
        raw_accept_namespace(&mut ws).await;
        // First emit: answered (after the second arrives, to check ids are matched, not order).
        let first = raw_next_text(&mut ws).await;
        let second = raw_next_text(&mut ws).await;
        let id_of = |packet: &str| -> String {
            packet
                .strip_prefix("42")
                .expect("an EVENT")
                .chars()
                .take_while(char::is_ascii_digit)
                .collect()
        };
        assert!(first.contains(r#"["answer-me",{"n":1}]"#), "{first}");
        assert!(second.contains(r#"["ignore-me"]"#), "{second}");
        ws.send(Message::text(format!(
            r#"43{}[{{"ok":true,"n":2}}]"#,
            id_of(&first)
        )))
        .await
        .expect("send ack");
        // The second is never answered; keep the connection open until the client is done.
        let bye = raw_next_text(&mut ws).await;
        assert_eq!(
            bye, "41",
            "the client says goodbye to the namespace on close"
        );
    });

    let (socket, mut events) = Socket::connect(options(&url)).await.expect("connect");
    next_event(&mut events, "Connected").await;
    let answered = socket.emit_with_ack("answer-me", vec![json!({"n": 1})], Duration::from_secs(5));
    let ignored = socket.emit_with_ack("ignore-me", vec![], Duration::from_millis(300));
    let (answered, ignored) = tokio::join!(answered, ignored);
    assert_eq!(answered.expect("acked"), vec![json!({"ok": true, "n": 2})]);
    match ignored {
        Err(ClientError::AckTimeout { event, timeout }) => {
            assert_eq!(event, "ignore-me");
            assert_eq!(timeout, Duration::from_millis(300));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    socket.close().await;
    server.await.expect("server checks passed");
    assert!(matches!(
        socket.emit("late", vec![]),
        Err(ClientError::NotConnected)
    ));
}

#[tokio::test]
async fn answers_pings_and_detects_a_silent_server() {
    let (listener, url) = raw_listener().await;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let mut ws = raw_accept(&listener, 100, 100).await;
        raw_accept_namespace(&mut ws).await;
        // Ten pings, 100 ms apart: each must be answered before the next.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ws.send(Message::text("2")).await.expect("ping");
            assert_eq!(raw_next_text(&mut ws).await, "3", "pong");
        }
        // Then silence, with the connection left open: the client must give up on it alone.
        let mut second = tokio::time::timeout(
            Duration::from_secs(5),
            raw_accept(&listener, 25_000, 20_000),
        )
        .await
        .expect("the client reconnects after the ping timeout");
        raw_accept_namespace(&mut second).await;
        let _ = done_rx.await;
        drop((ws, second));
    });

    let (socket, mut events) = Socket::connect(options(&url)).await.expect("connect");
    next_event(&mut events, "Connected").await;
    // Idle for the ten pings (1 s, five times pingInterval + pingTimeout): still connected.
    let quiet = tokio::time::timeout(Duration::from_millis(1000), events.recv()).await;
    assert!(quiet.is_err(), "unexpected event while pinged: {quiet:?}");
    assert!(socket.is_connected());

    let started = std::time::Instant::now();
    let reason = loop {
        if let SocketEvent::Disconnected { reason } = next_event(&mut events, "Disconnected").await
        {
            break reason;
        }
    };
    assert_eq!(reason, DisconnectReason::PingTimeout);
    // Silent since the last ping (~0 ms ago); dead after pingInterval + pingTimeout = 200 ms.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        next_event(&mut events, "Reconnecting").await,
        SocketEvent::Reconnecting { attempt: 1, .. }
    ));
    assert!(matches!(
        next_event(&mut events, "Connected").await,
        SocketEvent::Connected {
            reconnected: true,
            ..
        }
    ));
    let _ = done_tx.send(());
    socket.close().await;
    server.await.expect("server checks passed");
}

#[tokio::test]
async fn a_refused_reconnect_is_not_retried() {
    let (listener, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let mut ws = raw_accept(&listener, 25_000, 20_000).await;
        raw_accept_namespace(&mut ws).await;
        ws.close(None).await.expect("close"); // connection lost
        let mut again = raw_accept(&listener, 25_000, 20_000).await;
        let connect = raw_next_text(&mut again).await;
        assert!(connect.starts_with("40"), "{connect}");
        again
            .send(Message::text(r#"44{"message":"unauthorized"}"#))
            .await
            .expect("refuse");
        // No third attempt may come.
        let third = tokio::time::timeout(Duration::from_millis(800), listener.accept()).await;
        assert!(third.is_err(), "the client tried again after unauthorized");
    });

    let (_socket, mut events) = Socket::connect(options(&url)).await.expect("connect");
    let mut attempts = 0;
    let error = loop {
        match next_event(&mut events, "Closed").await {
            SocketEvent::Reconnecting { .. } => attempts += 1,
            SocketEvent::Closed { error } => break error,
            _ => {}
        }
    };
    assert_eq!(attempts, 1);
    match error {
        Some(ClientError::ConnectRefused { kind, .. }) => {
            assert_eq!(kind, ConnectErrorKind::Unauthorized)
        }
        other => panic!("expected unauthorized, got {other:?}"),
    }
    assert!(events.next().await.is_none(), "nothing after Closed");
    server.await.expect("server checks passed");
}

#[tokio::test]
async fn binary_packets_are_refused_and_skipped() {
    let (listener, url) = raw_listener().await;
    let server = tokio::spawn(async move {
        let mut ws = raw_accept(&listener, 25_000, 20_000).await;
        raw_accept_namespace(&mut ws).await;
        ws.send(Message::text(
            r#"451-["upload",{"_placeholder":true,"num":0}]"#,
        ))
        .await
        .expect("binary event");
        ws.send(Message::binary(vec![1u8, 2, 3]))
            .await
            .expect("attachment");
        ws.send(Message::text(r#"42["after",{"ok":1}]"#))
            .await
            .expect("event");
        // Malformed, then fine again: the connection survives both.
        ws.send(Message::text("42[oops")).await.expect("garbage");
        ws.send(Message::text(r#"42["last"]"#))
            .await
            .expect("event");
        let _ = raw_next_text(&mut ws).await; // the client's goodbye
    });

    let (socket, mut events) = Socket::connect(options(&url)).await.expect("connect");
    next_event(&mut events, "Connected").await;
    match next_event(&mut events, "binary error").await {
        SocketEvent::Error(ClientError::BinaryUnsupported { attachments: 1 }) => {}
        other => panic!("expected BinaryUnsupported, got {other:?}"),
    }
    match next_event(&mut events, "after").await {
        SocketEvent::Event(e) => {
            assert_eq!((e.name.as_str(), e.data()), ("after", &json!({"ok": 1})))
        }
        other => panic!("expected the next event, got {other:?}"),
    }
    match next_event(&mut events, "protocol error").await {
        SocketEvent::Error(e) => assert_eq!(e.code(), "protocol_error"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    match next_event(&mut events, "last").await {
        SocketEvent::Event(e) => assert_eq!(e.name, "last"),
        other => panic!("expected the last event, got {other:?}"),
    }
    socket.close().await;
    server.await.expect("server checks passed");
}

#[tokio::test]
async fn bad_options_are_clear_errors() {
    for (url, needle) in [
        ("ftp://host", "scheme"),
        ("http://host/socket.io/", "path"),
        ("not a url", "url"),
    ] {
        let error = Socket::connect(SocketOptions::new(url))
            .await
            .expect_err("refused");
        assert_eq!(error.code(), "invalid_options");
        assert!(error.to_string().contains(needle), "{error}");
    }
    // Nothing listens on port 9 of localhost: a connect error, not a hang.
    let mut o = SocketOptions::new("http://127.0.0.1:9");
    o.connect_timeout = Duration::from_secs(3);
    let error = Socket::connect(o).await.expect_err("nothing listens");
    assert!(
        matches!(
            error,
            ClientError::Connect { .. } | ClientError::HandshakeTimeout(_)
        ),
        "{error:?}"
    );
}
