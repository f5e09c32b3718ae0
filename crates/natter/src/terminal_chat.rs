//! `natter chat`: a terminal client for one chat, built on the `natter-client` crate.
//!
//! Line-oriented on purpose: it prints to a plain scrolling terminal (and a pipe), and the
//! terminal's own line editing reads the input, so it needs no TUI library. Lines typed are
//! sent as messages; `/quit` or Ctrl-D leaves. Ctrl-C stops a running reply; a second Ctrl-C
//! (or one when nothing is running) quits. Reconnection and catching up after a drop or a
//! server restart are the client crate's (rejoin with `lastSeq`); this file only shows them.

use std::collections::BTreeSet;
use std::io::Write;

use futures::StreamExt;
use natter_client::natter_protocol::socketio::HistoryMessage;
use natter_client::{AiChatSocket, ChatEvent, ChatOptions, DisconnectReason, SendMessage};
use tokio::sync::mpsc;

#[derive(clap::Args)]
pub struct ChatArgs {
    /// The server's base URL.
    #[arg(long, env = "NATTER_URL", default_value = "http://127.0.0.1:4000")]
    url: String,
    /// The chat to join (created on first use).
    #[arg(long)]
    chat: String,
    /// Who you are when the server runs without auth (with auth, the token says).
    #[arg(long, env = "USER", default_value = "terminal")]
    user: String,
    /// A JWT (`natter token` mints one), for a server with auth on.
    #[arg(long, env = "NATTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The org, when the server runs without auth.
    #[arg(long)]
    org: Option<String>,
}

/// What the user did at the keyboard.
enum Input {
    Line(String),
    /// Ctrl-D, or stdin closed.
    End,
}

/// Reads stdin on a thread of its own: a blocking read would hold a runtime thread forever.
fn spawn_stdin_reader() -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            let input = match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => Input::End,
                Ok(_) => Input::Line(line.trim_end_matches(['\r', '\n']).to_owned()),
            };
            let end = matches!(input, Input::End);
            if tx.blocking_send(input).is_err() || end {
                return;
            }
        }
    });
    rx
}

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let mut options = ChatOptions::new(&args.url, &args.chat).user_id(&args.user);
    if let Some(token) = &args.token {
        options = options.token(token);
    }
    if let Some(org) = &args.org {
        options = options.org_id(org);
    }
    let (chat, mut events) = AiChatSocket::connect(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", args.url))?;
    let mut screen = Screen::new(args.user.clone());
    let mut input = spawn_stdin_reader();
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // Outcomes of sends, which run as tasks so a slow ack never stalls the screen.
    let (notes_tx, mut notes) = mpsc::channel::<String>(16);
    screen.status(&format!(
        "connecting to {} as {} (type a message and press Enter; Ctrl-C stops a reply; /quit leaves)",
        args.url, args.user
    ));
    let outcome = loop {
        tokio::select! {
            event = events.next() => match event {
                Some(ChatEvent::Closed(Some(e))) => break Err(anyhow::anyhow!("the connection ended: {e}")),
                Some(ChatEvent::Closed(None)) | None => break Ok(()),
                // Not in the chat at all (not found, forbidden …): nothing to show, so leave.
                Some(ChatEvent::JoinFailed(e)) if !screen.joined => {
                    break Err(anyhow::anyhow!("cannot join chat {}: {e}", args.chat));
                }
                Some(event) => screen.show(event),
            },
            line = input.recv() => match line {
                None | Some(Input::End) => break Ok(()),
                Some(Input::Line(line)) => match line.trim() {
                    "" => {}
                    "/quit" | "/exit" => break Ok(()),
                    "/help" => screen.status("type a message and press Enter; Ctrl-C stops a running reply, a second Ctrl-C quits; /quit or Ctrl-D leaves"),
                    _ => {
                        let chat = chat.clone();
                        let notes = notes_tx.clone();
                        tokio::spawn(async move {
                            if let Err(e) = chat.send_message(SendMessage::text(line)).await {
                                let _ = notes.send(format!("not sent: {e}")).await;
                            }
                        });
                    }
                },
            },
            Some(note) = notes.recv() => screen.status(&note),
            _ = interrupts.recv() => match screen.running_turn() {
                Some(request_id) if !screen.stop_requested => {
                    screen.stop_requested = true;
                    screen.status("stopping the reply (Ctrl-C again quits)");
                    let chat = chat.clone();
                    let notes = notes_tx.clone();
                    tokio::spawn(async move {
                        if let Err(e) = chat.abort(Some("stopped from the terminal"), Some(&request_id)).await {
                            let _ = notes.send(format!("could not stop the reply: {e}")).await;
                        }
                    });
                }
                _ => break Ok(()),
            },
        }
    };
    screen.end_line();
    chat.close().await;
    outcome
}

/// The state of the printed transcript.
struct Screen {
    me: String,
    /// The assistant reply being printed on the current line: (messageId, requestId).
    streaming: Option<(String, String)>,
    /// Whether the cursor is in the middle of a line.
    mid_line: bool,
    online: Vec<String>,
    typing: BTreeSet<String>,
    stop_requested: bool,
    /// Whether a join has succeeded yet.
    joined: bool,
    out: std::io::Stdout,
}

impl Screen {
    fn new(me: String) -> Self {
        Self {
            me,
            streaming: None,
            mid_line: false,
            online: Vec::new(),
            typing: BTreeSet::new(),
            stop_requested: false,
            joined: false,
            out: std::io::stdout(),
        }
    }

    /// The request id of the reply being streamed, if one is.
    fn running_turn(&self) -> Option<String> {
        self.streaming.as_ref().map(|(_, request)| request.clone())
    }

    fn write(&mut self, text: &str) {
        // A closed stdout (the terminal went away) is not an error worth dying for mid-chat.
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    fn end_line(&mut self) {
        if self.mid_line {
            self.write("\n");
            self.mid_line = false;
        }
    }

    /// A whole line, printed above a reply that is still streaming (which then resumes).
    fn line(&mut self, text: &str) {
        let resume = self.mid_line && self.streaming.is_some();
        self.end_line();
        self.write(&format!("{text}\n"));
        if resume {
            self.write("assistant: …");
            self.mid_line = true;
        }
    }

    fn status(&mut self, text: &str) {
        self.line(&format!("[{text}]"));
    }

    fn message(&mut self, message: &HistoryMessage) {
        match message {
            HistoryMessage::User(m) => self.line(&format!("{}: {}", m.user_id, m.text)),
            HistoryMessage::Assistant(m) => {
                let stopped = if m.finish_reason == "aborted" {
                    " [stopped]"
                } else {
                    ""
                };
                self.line(&format!("assistant: {}{stopped}", m.text));
            }
        }
    }

    fn show(&mut self, event: ChatEvent) {
        match event {
            ChatEvent::Connected { reconnected: true } => self.status("reconnected"),
            ChatEvent::Connected { reconnected: false } => {}
            ChatEvent::Joined(ack) => {
                self.joined = true;
                self.status(&format!(
                    "joined chat {} ({} earlier messages)",
                    ack.chat_id,
                    ack.messages.len()
                ));
                for m in &ack.messages {
                    self.message(m);
                }
                self.presence(ack.online_user_ids);
            }
            ChatEvent::Rejoined(ack) => {
                self.status("caught up");
                self.presence(ack.online_user_ids);
            }
            ChatEvent::ReloadRequired(ack) => {
                // A running reply starts over from its first token.
                self.end_line();
                self.streaming = None;
                self.status("the server lost part of this chat's history; the latest messages:");
                for m in &ack.messages {
                    self.message(m);
                }
                self.presence(ack.online_user_ids);
            }
            ChatEvent::JoinFailed(e) => self.status(&format!("could not join: {e}")),
            ChatEvent::ChatMessage(m) => {
                self.typing.remove(&m.user_id);
                self.line(&format!("{}: {}", m.user_id, m.text));
            }
            ChatEvent::PresenceUpdate(p) => self.presence(p.online_user_ids),
            ChatEvent::TypingUpdate(t) if t.user_id != self.me => {
                if t.typing && self.typing.insert(t.user_id.clone()) {
                    self.status(&format!("{} is typing…", t.user_id));
                } else if !t.typing {
                    self.typing.remove(&t.user_id);
                }
            }
            ChatEvent::TypingUpdate(_) => {}
            ChatEvent::AiProcessing(p) => {
                if p.status == "retrying" {
                    let reason = p.reason.unwrap_or_default();
                    self.status(&format!("the model failed, retrying {reason}"));
                }
            }
            ChatEvent::AiToken(t) => {
                let same = self
                    .streaming
                    .as_ref()
                    .is_some_and(|(message, _)| *message == t.message_id);
                if !same {
                    self.end_line();
                    self.write("assistant: ");
                    self.streaming = Some((t.message_id.to_string(), t.request_id.to_string()));
                } else if !self.mid_line {
                    self.write("assistant: …");
                }
                self.mid_line = true;
                self.write(&t.token);
            }
            ChatEvent::AiMessage(m) => {
                let streamed = self
                    .streaming
                    .as_ref()
                    .is_some_and(|(message, _)| *message == m.message_id);
                if streamed {
                    if m.finish_reason == "aborted" {
                        self.write(" [stopped]");
                    }
                    self.end_line();
                    self.streaming = None;
                } else {
                    self.message(&HistoryMessage::Assistant(m));
                }
                self.stop_requested = false;
            }
            ChatEvent::AiError(e) => {
                self.streaming = None;
                self.stop_requested = false;
                self.status(&format!("the assistant failed: {} ({})", e.message, e.code));
            }
            ChatEvent::AiToolCall(c) => {
                self.status(&format!("tool call {}({})", c.name, c.arguments))
            }
            ChatEvent::AiToolResult(r) => match (&r.result, &r.error) {
                (_, Some(error)) => self.status(&format!("tool {} failed: {error}", r.name)),
                (Some(result), None) => self.status(&format!("tool {} → {result}", r.name)),
                (None, None) => {}
            },
            ChatEvent::MessageRead(r) if r.user_id != self.me => self.status(&format!(
                "{} read {} message(s)",
                r.user_id,
                r.message_ids.len()
            )),
            ChatEvent::MessageRead(_) => {}
            ChatEvent::ServerError(e) => self.status(&format!("error {}: {}", e.code, e.message)),
            ChatEvent::Error(e) => self.status(&format!("error: {e}")),
            ChatEvent::Disconnected(reason) => {
                self.streaming = None;
                let why = match reason {
                    DisconnectReason::ClientClose => "closed here".to_owned(),
                    DisconnectReason::ServerDisconnect => "the server closed it".to_owned(),
                    DisconnectReason::TransportClose => "the connection closed".to_owned(),
                    DisconnectReason::TransportError(e) => e,
                    DisconnectReason::PingTimeout => "the server stopped answering".to_owned(),
                };
                self.status(&format!("disconnected: {why}"));
            }
            ChatEvent::Reconnecting { attempt, delay } => self.status(&format!(
                "reconnecting in {} ms (attempt {attempt})",
                delay.as_millis()
            )),
            // The next `Reconnecting` says the same, with its delay.
            ChatEvent::ReconnectAttemptFailed { .. } => {}
            // Support-desk events (handoff, reactions, CSAT, chat changes): not shown here.
            ChatEvent::HandoffUpdate(_)
            | ChatEvent::ReactionUpdate(_)
            | ChatEvent::CsatRequest(_)
            | ChatEvent::CsatSubmitted(_)
            | ChatEvent::ChatUpdated(_)
            | ChatEvent::ChatEnded(_)
            | ChatEvent::ChatDeleted(_)
            | ChatEvent::MessageSuperseded(_) => {}
            ChatEvent::Discovery(_) | ChatEvent::Other(_) | ChatEvent::Closed(_) => {}
        }
    }

    fn presence(&mut self, mut online: Vec<String>) {
        online.sort();
        if online != self.online {
            self.status(&format!("online: {}", online.join(", ")));
            self.online = online;
        }
    }
}
