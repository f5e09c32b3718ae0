//! The client against the real `natter serve` and the fake LLM upstream.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Gate, Natter, start_fake_upstream};
use natter_client::natter_protocol::socketio::HistoryMessage;
use natter_client::{
    AiChatSocket, ChatEvent, ChatEventStream, ChatOptions, ClientError, ConnectErrorKind,
    ReconnectPolicy, SendMessage,
};
use serde_json::json;

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_like())
}

fn uuid_like() -> String {
    format!("{:x}{:x}", std::process::id(), fastrand_u64())
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The next event that `pick` accepts, within `secs`; every event passed over is returned too.
async fn until<T>(
    events: &mut ChatEventStream,
    secs: u64,
    what: &str,
    mut pick: impl FnMut(&ChatEvent) -> Option<T>,
) -> (T, Vec<ChatEvent>) {
    let mut seen = Vec::new();
    let result = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(event) = events.recv().await {
            if let Some(found) = pick(&event) {
                return Some(found);
            }
            seen.push(event);
        }
        None
    })
    .await;
    match result {
        Ok(Some(found)) => (found, seen),
        Ok(None) => panic!("the stream ended while waiting for {what}; saw {seen:?}"),
        Err(_) => panic!("timed out waiting for {what}; saw {seen:?}"),
    }
}

fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy {
        enabled: true,
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(300),
        max_attempts: None,
    }
}

#[tokio::test]
async fn streams_tokens_and_the_final_message() {
    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let natter = Natter::start(&upstream, dir.path(), &[]).await;

    let chat_id = unique("chat");
    let (chat, mut events) =
        AiChatSocket::connect(ChatOptions::new(&natter.url, &chat_id).user_id("ada"))
            .await
            .expect("connect and join");
    let (joined, _) = until(&mut events, 5, "Joined", |e| match e {
        ChatEvent::Joined(ack) => Some(ack.clone()),
        _ => None,
    })
    .await;
    assert!(joined.ok);
    assert_eq!(joined.chat_id, chat_id);
    assert!(joined.online_user_ids.contains(&"ada".to_owned()));
    assert_eq!(chat.epoch().as_deref(), Some(joined.epoch.as_str()));
    assert_eq!(chat.last_seq(), joined.seq);

    let ack = chat
        .send_message(SendMessage::text("hello [fake:tokens n=6]"))
        .await
        .expect("user:message acked");
    assert!(ack.ok && !ack.duplicate);
    assert!(ack.seq > joined.seq);

    let mut tokens = Vec::new();
    let mut processing = Vec::new();
    let (message, _) = until(&mut events, 15, "ai:message", |e| match e {
        ChatEvent::AiToken(t) => {
            tokens.push(t.clone());
            None
        }
        ChatEvent::AiProcessing(p) => {
            processing.push(p.status.to_string());
            None
        }
        ChatEvent::AiMessage(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert!(!tokens.is_empty(), "no ai:token before ai:message");
    let indexes: Vec<u64> = tokens.iter().map(|t| t.index).collect();
    assert_eq!(indexes, (0..tokens.len() as u64).collect::<Vec<_>>());
    let joined_tokens: String = tokens.iter().map(|t| t.token.as_ref()).collect();
    assert_eq!(joined_tokens, message.text);
    assert!(!message.text.is_empty());
    assert_eq!(
        chat.turn_text(&message.message_id).as_deref(),
        Some(message.text.as_str())
    );
    assert!(tokens.iter().all(|t| t.message_id == message.message_id));
    assert!(processing.contains(&"working".to_owned()), "{processing:?}");
    assert_eq!(message.finish_reason, "stop");
    assert_eq!(chat.last_seq(), message.seq);

    chat.close().await;
    let (error, _) = until(&mut events, 5, "Closed", |e| match e {
        ChatEvent::Closed(error) => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(error.is_none(), "{error:?}");
    assert!(!chat.is_connected());
}

#[tokio::test]
async fn helpers_are_acked_and_refusals_are_typed() {
    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let natter = Natter::start(&upstream, dir.path(), &["--ai-mode", "off"]).await;
    let chat_id = unique("chat");
    let (chat, mut events) = AiChatSocket::connect(
        ChatOptions::new(&natter.url, &chat_id)
            .user_id("bob")
            .meta("clientVersion", json!("test")),
    )
    .await
    .expect("connect");

    chat.typing_start().await.expect("typing:start acked");
    chat.typing_stop().await.expect("typing:stop acked");
    let sent = chat
        .send_message(SendMessage {
            message_id: Some("m-fixed".into()),
            ..SendMessage::text("no reply with ai-mode off")
        })
        .await
        .expect("sent");
    // The same messageId again: stored once, acked as a duplicate.
    let again = chat
        .send_message(SendMessage {
            message_id: Some("m-fixed".into()),
            ..SendMessage::text("no reply with ai-mode off")
        })
        .await
        .expect("resent");
    assert!(again.duplicate);
    assert_eq!(again.seq, sent.seq);

    let read = chat
        .with_trace_id("trace-1")
        .mark_read(vec!["m-fixed".into()], None)
        .await
        .expect("message:read acked");
    assert!(read.seq > sent.seq);

    let discovered = chat.discover_events().await.expect("discovery");
    assert_eq!(discovered.version, 1);
    assert_eq!(
        discovered.events.get("aiToken").map(String::as_str),
        Some("ai:token")
    );

    // A refused event comes back as a typed error with the server's code.
    let refused = chat
        .service()
        .emit_raw_with_ack("no:such:event", json!({}))
        .await
        .expect_err("unknown events are refused");
    assert_eq!(refused.code(), "unknown_event", "{refused}");
    let refused = chat
        .mark_read(vec![], None)
        .await
        .expect_err("an empty messageIds is refused");
    assert!(
        matches!(refused, ClientError::Refused { .. }),
        "{refused:?}"
    );

    // The events we caused came back once each; nothing of our own message was echoed.
    let (discovery, seen) = until(&mut events, 5, "meta:events:response", |e| match e {
        ChatEvent::Discovery(d) => Some(d.clone()),
        _ => None,
    })
    .await;
    assert_eq!(discovery, discovered);
    assert!(
        !seen.iter().any(|e| matches!(e, ChatEvent::ChatMessage(_))),
        "own message echoed: {seen:?}"
    );
    chat.close().await;
}

#[tokio::test]
async fn unauthorized_is_a_typed_connect_error() {
    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let natter = Natter::start(
        &upstream,
        dir.path(),
        &[
            "--jwt-secret",
            "a-test-secret-that-is-at-least-32-bytes-long",
        ],
    )
    .await;
    let started = std::time::Instant::now();
    let error = AiChatSocket::connect(ChatOptions::new(&natter.url, "c").user_id("eve"))
        .await
        .expect_err("no token, no connection");
    match &error {
        ClientError::ConnectRefused { kind, message, .. } => {
            assert_eq!(*kind, ConnectErrorKind::Unauthorized);
            assert_eq!(message, "unauthorized");
        }
        other => panic!("expected ConnectRefused, got {other:?}"),
    }
    assert_eq!(error.code(), "unauthorized");
    // Not retried: the refusal comes back at once even though reconnecting is on.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn reconnects_after_a_restart_and_recovers_by_last_seq() {
    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut natter = Natter::start(&upstream, dir.path(), &[]).await;
    // Ada reaches the server through a gate, so the test decides when she gets back in.
    let gate = Gate::start(natter.port).await;
    let chat_id = unique("chat");

    let (ada, mut ada_events) = AiChatSocket::connect(
        ChatOptions::new(&gate.url, &chat_id)
            .user_id("ada")
            .reconnect(fast_reconnect()),
    )
    .await
    .expect("ada connects");
    let mut ada_seen: Vec<ChatEvent> = Vec::new();
    ada.send_message(SendMessage::text("first [fake:tokens n=3]"))
        .await
        .expect("first message");
    let (first_reply, seen) = until(&mut ada_events, 15, "first ai:message", |e| match e {
        ChatEvent::AiMessage(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    ada_seen.extend(seen);

    // The server dies without a goodbye; Ada notices and keeps trying, held off by the gate.
    gate.set_open(false);
    natter.kill().await;
    let (_, seen) = until(&mut ada_events, 10, "Disconnected", |e| {
        matches!(e, ChatEvent::Disconnected(_)).then_some(())
    })
    .await;
    ada_seen.extend(seen);
    let (_, seen) = until(&mut ada_events, 10, "a failed reconnect attempt", |e| {
        matches!(e, ChatEvent::ReconnectAttemptFailed { .. }).then_some(())
    })
    .await;
    ada_seen.extend(seen);
    assert!(!ada.is_connected());

    // Same port, same data: Bob talks while Ada is away.
    natter.restart().await;
    let (bob, mut bob_events) = AiChatSocket::connect(
        ChatOptions::new(&natter.url, &chat_id)
            .user_id("bob")
            .reconnect(ReconnectPolicy::disabled()),
    )
    .await
    .expect("bob connects");
    let bob_sent = bob
        .send_message(SendMessage::text("while you were away [fake:tokens n=4]"))
        .await
        .expect("bob's message");
    let (bob_reply, _) = until(&mut bob_events, 15, "bob's ai:message", |e| match e {
        ChatEvent::AiMessage(m) => Some(m.clone()),
        _ => None,
    })
    .await;

    // Ada gets back in and rejoins with lastSeq + epoch: everything missed is replayed.
    gate.set_open(true);
    let (rejoin, seen) = until(&mut ada_events, 15, "the rejoin", |e| match e {
        ChatEvent::Rejoined(ack) => Some(ack.clone()),
        ChatEvent::ReloadRequired(ack) => panic!("expected a recovered rejoin, got {ack:?}"),
        _ => None,
    })
    .await;
    // What Bob caused arrived before the rejoin's ack: the replay, not live delivery.
    assert!(
        seen.iter()
            .any(|e| matches!(e, ChatEvent::ChatMessage(m) if m.message_id == bob_sent.message_id)),
        "bob's message was not replayed: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, ChatEvent::AiMessage(m) if m.message_id == bob_reply.message_id)),
        "bob's reply was not replayed: {seen:?}"
    );
    ada_seen.extend(seen);
    assert!(rejoin.recovered);
    assert_eq!(
        rejoin.seq, bob_reply.seq,
        "the ack's seq is the chat's head"
    );
    assert_eq!(ada.last_seq(), bob_reply.seq);

    // Live again: one more turn, seen once.
    ada.send_message(SendMessage::text("back [fake:tokens n=2]"))
        .await
        .expect("third message");
    let (third_reply, seen) = until(&mut ada_events, 15, "third ai:message", |e| match e {
        ChatEvent::AiMessage(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    ada_seen.extend(seen);

    // Every durable event Ada saw, in seq order, each once; Bob's message and reply among them.
    let mut seqs = Vec::new();
    let mut assistant_ids = vec![first_reply.message_id.clone()];
    let mut user_messages = Vec::new();
    for e in &ada_seen {
        match e {
            ChatEvent::ChatMessage(m) => {
                seqs.push(m.seq);
                user_messages.push(m.message_id.clone());
            }
            ChatEvent::AiMessage(m) => {
                seqs.push(m.seq);
                assistant_ids.push(m.message_id.clone());
            }
            ChatEvent::AiError(e) => panic!("unexpected ai:error {e:?}"),
            _ => {}
        }
    }
    assistant_ids.push(third_reply.message_id.clone());
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs not increasing: {seqs:?}"
    );
    assert_eq!(user_messages, vec![bob_sent.message_id.clone()]);
    assert_eq!(
        assistant_ids,
        vec![
            first_reply.message_id.clone(),
            bob_reply.message_id.clone(),
            third_reply.message_id.clone()
        ]
    );
    let unique_ids: HashSet<&String> = assistant_ids.iter().collect();
    assert_eq!(unique_ids.len(), 3);
    // The replayed turn's text was taken whole from ai:message; Ada never streamed it.
    assert_eq!(ada.turn_text(&bob_reply.message_id), Some(String::new()));

    // A newcomer's history agrees with what Ada has.
    let (carol, mut carol_events) =
        AiChatSocket::connect(ChatOptions::new(&natter.url, &chat_id).user_id("carol"))
            .await
            .expect("carol connects");
    let (history, _) = until(&mut carol_events, 5, "carol's join", |e| match e {
        ChatEvent::Joined(ack) => Some(ack.messages.clone()),
        _ => None,
    })
    .await;
    let history_assistants: Vec<String> = history
        .iter()
        .filter_map(|m| match m {
            HistoryMessage::Assistant(a) => Some(a.message_id.clone()),
            HistoryMessage::User(_) => None,
        })
        .collect();
    assert_eq!(history_assistants, assistant_ids);
    assert_eq!(ada.last_seq(), third_reply.seq);

    for c in [&ada, &bob, &carol] {
        c.close().await;
    }
}

#[tokio::test]
async fn typed_service_without_a_join_event() {
    use natter_client::events::{PresenceUpdate, UserMessage};
    use natter_client::natter_protocol::client::UserMessagePayload;
    use natter_client::{ChatEvents, ServiceEvent, ServiceOptions, SocketOptions, SocketService};

    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let natter = Natter::start(&upstream, dir.path(), &["--ai-mode", "off"]).await;
    let chat_id = unique("chat");

    // Seed 001's no-join flow: the handshake's chatId joins the chat, no chat:join is sent.
    let mut socket = SocketOptions::new(&natter.url);
    socket.query = vec![
        ("chatId".into(), chat_id.clone()),
        ("userId".into(), "dan".into()),
    ];
    let mut options = ServiceOptions::new(socket);
    options.join_event = None;
    options.meta.insert("client".into(), json!("rust-test"));
    let (service, mut service_events) = SocketService::<ChatEvents>::connect(options)
        .await
        .expect("connect");

    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = service.on::<PresenceUpdate, _>(move |p| {
        let _ = seen_tx.send(p.online_user_ids);
    });

    // Dan is in the chat without having joined: chatId may be left out of his payloads.
    let ack = service
        .emit_with_ack::<UserMessage>(&UserMessagePayload {
            message_id: "dan-1".into(),
            text: "hi".into(),
            ..UserMessagePayload::default()
        })
        .await
        .expect("acked");
    assert_eq!(ack.chat_id, chat_id);

    // Erin joins: Dan's typed handler sees her.
    let (erin, _erin_events) =
        AiChatSocket::connect(ChatOptions::new(&natter.url, &chat_id).user_id("erin"))
            .await
            .expect("erin connects");
    let online = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let ids = seen_rx.recv().await.expect("handler alive");
            if ids.contains(&"erin".to_owned()) {
                return ids;
            }
        }
    })
    .await
    .expect("presence with erin");
    assert!(online.contains(&"dan".to_owned()), "{online:?}");

    // Off: the next presence update reaches the stream but not the handler.
    assert!(service.off(listener));
    assert!(!service.off(listener));
    erin.close().await;
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match service_events.recv().await.expect("stream open") {
                ServiceEvent::Event(e)
                    if e.name == "presence:update" && !e.data().to_string().contains("erin") =>
                {
                    break;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("presence without erin");
    assert!(
        seen_rx.try_recv().is_err(),
        "the handler was called after off"
    );
    service.close().await;
}

#[tokio::test]
async fn a_mid_turn_rejoin_resends_tokens_that_are_dropped() {
    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let natter = Natter::start(&upstream, dir.path(), &[]).await;
    let chat_id = unique("chat");
    let (chat, mut events) =
        AiChatSocket::connect(ChatOptions::new(&natter.url, &chat_id).user_id("ada"))
            .await
            .expect("connect");
    // Every ai:token that reaches the client, before deduplication.
    let raw_tokens = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    chat.service().on_raw("ai:token", {
        let raw_tokens = raw_tokens.clone();
        move |_| {
            raw_tokens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    chat.send_message(SendMessage::text("slowly [fake:drip n=30 delay_ms=20]"))
        .await
        .expect("sent");
    // Some tokens in, join again on the same socket: the server re-sends the running turn's
    // tokens from index 0, which the client must drop.
    let mut tokens = Vec::new();
    let (_, _) = until(&mut events, 10, "a few tokens", |e| match e {
        ChatEvent::AiToken(t) => {
            tokens.push(t.clone());
            (tokens.len() >= 5).then_some(())
        }
        _ => None,
    })
    .await;
    let rejoin = chat
        .service()
        .emit_raw_with_ack(
            "chat:join",
            json!({"chatId": chat_id, "lastSeq": chat.last_seq(), "epoch": chat.epoch()}),
        )
        .await
        .expect("rejoin acked");
    assert_eq!(rejoin["recovered"], json!(true));
    let (message, seen) = until(&mut events, 15, "ai:message", |e| match e {
        ChatEvent::AiToken(t) => {
            tokens.push(t.clone());
            None
        }
        ChatEvent::AiMessage(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert!(
        !seen.iter().any(|e| matches!(e, ChatEvent::Error(_))),
        "{seen:?}"
    );
    let raw = raw_tokens.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        raw > tokens.len(),
        "the rejoin re-sent no tokens ({raw} received, {} kept)",
        tokens.len()
    );
    let indexes: Vec<u64> = tokens.iter().map(|t| t.index).collect();
    assert_eq!(
        indexes,
        (0..tokens.len() as u64).collect::<Vec<_>>(),
        "duplicates or gaps"
    );
    let joined: String = tokens.iter().map(|t| t.token.as_ref()).collect();
    assert_eq!(joined, message.text);
    assert_eq!(
        chat.turn_text(&message.message_id),
        Some(message.text.clone())
    );
    chat.close().await;
}

#[tokio::test]
async fn callbacks_instead_of_a_stream() {
    use natter_client::ChatCallbacks;
    use std::sync::{Arc, Mutex};

    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let natter = Natter::start(&upstream, dir.path(), &[]).await;
    let streamed = Arc::new(Mutex::new(String::new()));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let (connected_tx, mut connected_rx) = tokio::sync::mpsc::unbounded_channel();
    let callbacks = ChatCallbacks {
        on_connect: Some(Box::new(move |reconnected| {
            let _ = connected_tx.send(reconnected);
        })),
        on_ai_token: Some(Box::new({
            let streamed = streamed.clone();
            move |t| streamed.lock().expect("lock").push_str(&t.token)
        })),
        on_ai_message: Some(Box::new(move |m| {
            let _ = done_tx.send(m.text.clone());
        })),
        ..ChatCallbacks::default()
    };
    let chat = AiChatSocket::connect_with_callbacks(
        ChatOptions::new(&natter.url, unique("chat")).user_id("ada"),
        callbacks,
    )
    .await
    .expect("connect");
    assert_eq!(connected_rx.recv().await, Some(false));
    chat.send_message(SendMessage::text("hi [fake:tokens n=4]"))
        .await
        .expect("sent");
    let text = tokio::time::timeout(Duration::from_secs(15), done_rx.recv())
        .await
        .expect("ai:message in time")
        .expect("callback alive");
    assert!(!text.is_empty());
    assert_eq!(*streamed.lock().expect("lock"), text);
    chat.close().await;
}

/// With a 100 ms heartbeat, a connection that stopped answering pings would be dropped within
/// 250 ms; the client stays connected through 2 s of silence and then chats as before.
#[tokio::test]
async fn answers_the_servers_pings() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let heartbeat = ["--ping-interval-ms", "100", "--ping-timeout-ms", "150"];
    let natter = Natter::start(&upstream, dir.path(), &heartbeat).await;

    // The control: a bare WebSocket that never answers a ping is closed by the server, so the
    // heartbeat really is this short.
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        natter.url.replacen("http://", "ws://", 1)
    );
    let (mut silent, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("raw websocket");
    silent
        .send(Message::text("40"))
        .await
        .expect("socket.io connect");
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(message)) = silent.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept a connection that never answered its pings"
    );

    let chat_id = unique("heartbeat");
    let (chat, mut events) =
        AiChatSocket::connect(ChatOptions::new(&natter.url, &chat_id).user_id("ada"))
            .await
            .expect("connect and join");
    until(&mut events, 5, "Joined", |e| {
        matches!(e, ChatEvent::Joined(_)).then_some(())
    })
    .await;
    // 2 s idle: about 20 pings, each of which had to be answered.
    let quiet = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.recv().await {
                Some(ChatEvent::PresenceUpdate(_)) => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "something happened while idle: {quiet:?}");
    assert!(chat.is_connected());
    chat.send_message(SendMessage::text("still there? [fake:tokens n=3]"))
        .await
        .expect("acked after the idle time");
    until(&mut events, 10, "ai:message", |e| match e {
        ChatEvent::AiMessage(m) => Some(m.text.clone()),
        ChatEvent::Disconnected(reason) => panic!("disconnected: {reason:?}"),
        _ => None,
    })
    .await;
    chat.close().await;
}

#[tokio::test]
async fn reactions_chat_end_and_csat_helpers() {
    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let natter = Natter::start(&upstream, dir.path(), &["--ai-mode", "off"]).await;
    let chat_id = unique("chat");
    let (chat, _events) =
        AiChatSocket::connect(ChatOptions::new(&natter.url, &chat_id).user_id("cy"))
            .await
            .expect("connect");
    let sent = chat
        .send_message(SendMessage {
            message_id: Some("m-react".into()),
            ..SendMessage::text("react to me")
        })
        .await
        .expect("sent");

    let added = chat
        .react("m-react", "👍", true)
        .await
        .expect("reaction:add");
    assert!(added.ok && added.changed);
    assert_eq!(added.seq, Some(sent.seq + 1));
    assert_eq!(added.reactions.len(), 1);
    assert_eq!(added.reactions[0].user_id, "cy");
    let again = chat.react("m-react", "👍", true).await.expect("again");
    assert!(!again.changed && again.seq.is_none(), "{again:?}");
    let removed = chat.react("m-react", "👍", false).await.expect("remove");
    assert!(removed.changed && removed.reactions.is_empty());
    let refused = chat
        .react("m-react", "not one emoji", true)
        .await
        .expect_err("whitespace is refused");
    assert_eq!(refused.code(), "invalid_field", "{refused}");
    let refused = chat
        .react("no-such", "👍", true)
        .await
        .expect_err("unknown message");
    assert_eq!(refused.code(), "not_found", "{refused}");

    let ended = chat.end_chat(Some("done")).await.expect("chat:end");
    assert!(ended.ok && ended.seq > removed.seq.unwrap_or(0));
    let rated = chat.submit_csat(5, Some("thanks")).await.expect("csat");
    assert_eq!(rated.seq, ended.seq + 1);
    let refused = chat.submit_csat(9, None).await.expect_err("rating 9");
    assert_eq!(refused.code(), "invalid_field", "{refused}");
    chat.close().await;
}

/// The support-desk events arrive as typed `ChatEvent`s from the real server: a customer
/// asks for a person, a human agent joins (`handoff:update`), reacts (`reaction:update`) and
/// ends the chat (`chat:ended`, then `csat:request` for the customer only), the customer
/// rates it (`csat:submitted`).
#[tokio::test]
async fn support_desk_events_arrive_typed() {
    let upstream = start_fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let natter = Natter::start(&upstream, dir.path(), &["--ai-mode", "off"]).await;
    let chat_id = unique("chat");
    let (customer, mut cust_events) =
        AiChatSocket::connect(ChatOptions::new(&natter.url, &chat_id).user_id("cy"))
            .await
            .expect("customer connects");
    until(&mut cust_events, 5, "the customer's Joined", |e| {
        matches!(e, ChatEvent::Joined(_)).then_some(())
    })
    .await;
    customer
        .send_message(SendMessage {
            message_id: Some("m-help".into()),
            ..SendMessage::text("I need a person")
        })
        .await
        .expect("sent");

    let asked = customer
        .request_human_agent()
        .await
        .expect("handoff:request");
    assert!(
        asked.ok && asked.is_waiting_for_agent && asked.ai_engaged,
        "{asked:?}"
    );
    let (update, _) = until(
        &mut cust_events,
        5,
        "handoff:update (requested)",
        |e| match e {
            ChatEvent::HandoffUpdate(u) => Some(u.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(update.reason, "human_agent_requested");
    assert!(update.is_waiting_for_agent && update.waiting_since.is_some());
    assert_eq!(update.seq, asked.seq);

    let mut agent_options = ChatOptions::new(&natter.url, &chat_id).user_id("agent-1");
    agent_options
        .query
        .push(("clientType".into(), "humanAgent".into()));
    let (agent, mut agent_events) = AiChatSocket::connect(agent_options)
        .await
        .expect("agent connects");
    until(&mut agent_events, 5, "the agent's Joined", |e| {
        matches!(e, ChatEvent::Joined(_)).then_some(())
    })
    .await;
    let (update, _) = until(
        &mut cust_events,
        5,
        "handoff:update (joined)",
        |e| match e {
            ChatEvent::HandoffUpdate(u) => Some(u.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(update.reason, "human_agent_joined");
    assert_eq!(update.agent_id.as_deref(), Some("agent-1"));
    assert!(update.human_agent_engaged && !update.ai_engaged && !update.is_waiting_for_agent);

    let reacted = agent
        .react("m-help", "👍", true)
        .await
        .expect("reaction:add");
    let (reaction, _) = until(&mut cust_events, 5, "reaction:update", |e| match e {
        ChatEvent::ReactionUpdate(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (
            reaction.message_id.as_str(),
            reaction.user_id.as_str(),
            reaction.emoji.as_str()
        ),
        ("m-help", "agent-1", "👍")
    );
    assert!(reaction.added);
    assert_eq!(Some(reaction.seq), reacted.seq);
    assert_eq!(reaction.reactions.len(), 1);

    let ended = agent.end_chat(Some("resolved")).await.expect("chat:end");
    let (ended_event, _) = until(&mut cust_events, 5, "chat:ended", |e| match e {
        ChatEvent::ChatEnded(c) => Some(c.clone()),
        _ => None,
    })
    .await;
    assert_eq!(ended_event.seq, ended.seq);
    assert_eq!(ended_event.ended_by.as_deref(), Some("agent-1"));
    let (ask, _) = until(&mut cust_events, 5, "csat:request", |e| match e {
        ChatEvent::CsatRequest(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (ask.chat_id.as_str(), ask.seq),
        (chat_id.as_str(), ended.seq)
    );

    let rated = customer
        .submit_csat(4, Some("quick"))
        .await
        .expect("csat:submit");
    let (csat, passed) = until(&mut agent_events, 5, "csat:submitted", |e| match e {
        ChatEvent::CsatSubmitted(c) => Some(c.clone()),
        _ => None,
    })
    .await;
    assert_eq!((csat.user_id.as_str(), csat.rating), ("cy", 4));
    assert_eq!(csat.seq, rated.seq);
    assert!(
        passed
            .iter()
            .any(|e| matches!(e, ChatEvent::ChatEnded(c) if c.seq == ended.seq)),
        "the agent saw chat:ended: {passed:?}"
    );
    assert!(
        !passed
            .iter()
            .any(|e| matches!(e, ChatEvent::CsatRequest(_) | ChatEvent::Other(_))),
        "a human agent is not asked to rate, and nothing came untyped: {passed:?}"
    );
    agent.close().await;
    customer.close().await;
}
