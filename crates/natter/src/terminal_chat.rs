//! `natter chat`: a terminal client for one chat, built on the `natter-client` crate.
//!
//! Line-oriented on purpose: it prints to a plain scrolling terminal (and a pipe), and the
//! terminal's own line editing reads the input, so it needs no TUI library. Lines typed are
//! sent as messages; `/quit` or Ctrl-D leaves. Ctrl-C stops a running reply; a second Ctrl-C
//! (or one when nothing is running) quits. `/attach PATH` uploads a file; the next message
//! carries it. Reconnection and catching up after a drop or a server restart are the client
//! crate's (rejoin with `lastSeq`); this file only shows them.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use futures::StreamExt;
use natter_client::natter_protocol::socketio::{AttachmentWire, HistoryMessage};
use natter_client::{
    AiChatSocket, ChatEvent, ChatOptions, DisconnectReason, SendMessage, UploadedAttachment,
};
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

/// What a background task (a send, an upload) reports to the screen.
enum Note {
    Status(String),
    /// An upload finished: the next message carries it.
    Attached(Box<UploadedAttachment>),
    /// A send failed: its attachments go with the next message instead.
    Unsent(Vec<UploadedAttachment>),
}

/// `/attach`'s argument as a path: surrounding quotes dropped, a leading `~/` is `$HOME`.
fn attach_path(arg: &str) -> std::path::PathBuf {
    let arg = arg.trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| arg.strip_prefix(*q).and_then(|a| a.strip_suffix(*q)))
        .unwrap_or(arg);
    match (unquoted.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => std::path::PathBuf::from(unquoted),
    }
}

/// `1.2 KB`, `3.4 MB`: sizes as people read them.
fn human_size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// `[file: a.png, image/png, 1.2 KB, 64x48]`, one per attachment, or `""` for none.
fn attachments_line(attachments: Option<&Vec<AttachmentWire>>) -> String {
    attachments
        .into_iter()
        .flatten()
        .map(|a| {
            let dims = match (a.width, a.height) {
                (Some(w), Some(h)) => format!(", {w}x{h}"),
                _ => String::new(),
            };
            format!(
                " [file: {}, {}, {}{dims}]",
                a.name,
                a.mime_type,
                human_size(a.size)
            )
        })
        .collect()
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
    // Outcomes of sends and uploads, which run as tasks so a slow ack never stalls the screen.
    let (notes_tx, mut notes) = mpsc::channel::<Note>(16);
    // Uploaded files waiting for the next message.
    let mut attached: Vec<UploadedAttachment> = Vec::new();
    screen.status(&format!(
        "connecting to {} as {} (type a message and press Enter; /attach PATH sends a file with the next one; Ctrl-C stops a reply; /quit leaves)",
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
                    "/help" => screen.status("type a message and press Enter; /attach PATH uploads a file that goes with your next message (/detach drops them); Ctrl-C stops a running reply, a second Ctrl-C quits; /quit or Ctrl-D leaves"),
                    "/attach" => {
                        let names: Vec<&str> = attached.iter().map(|a| a.name.as_str()).collect();
                        screen.status(&if names.is_empty() {
                            "usage: /attach PATH (an image, PDF or text file; it goes with your next message)".to_owned()
                        } else {
                            format!("your next message carries: {}", names.join(", "))
                        });
                    }
                    "/detach" => {
                        attached.clear();
                        screen.status("no attachments for the next message");
                    }
                    command if command.starts_with("/attach ") => {
                        let path = attach_path(&command["/attach ".len()..]);
                        screen.status(&format!("uploading {}…", path.display()));
                        let chat = chat.clone();
                        let notes = notes_tx.clone();
                        tokio::spawn(async move {
                            let note = match chat.upload_file(&path).await {
                                Ok(uploaded) => Note::Attached(Box::new(uploaded)),
                                Err(e) => Note::Status(format!("could not attach {}: {e}", path.display())),
                            };
                            let _ = notes.send(note).await;
                        });
                    }
                    _ => {
                        let chat = chat.clone();
                        let notes = notes_tx.clone();
                        let carried = std::mem::take(&mut attached);
                        tokio::spawn(async move {
                            let mut message = SendMessage::text(line);
                            for a in &carried {
                                message = message.attach(a);
                            }
                            match chat.send_message(message).await {
                                Ok(_) if !carried.is_empty() => {
                                    let names: Vec<&str> = carried.iter().map(|a| a.name.as_str()).collect();
                                    let _ = notes.send(Note::Status(format!("sent with {}", names.join(", ")))).await;
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    let _ = notes.send(Note::Status(format!("not sent: {e}"))).await;
                                    if !carried.is_empty() {
                                        let _ = notes.send(Note::Unsent(carried)).await;
                                    }
                                }
                            }
                        });
                    }
                },
            },
            Some(note) = notes.recv() => match note {
                Note::Status(text) => screen.status(&text),
                Note::Attached(a) => {
                    screen.file_names.insert(a.id.clone(), a.name.clone());
                    screen.status(&format!(
                        "attached {} ({}, {}): it goes with your next message",
                        a.name,
                        a.mime_type,
                        human_size(a.size)
                    ));
                    attached.push(*a);
                }
                Note::Unsent(mut carried) => {
                    carried.append(&mut attached);
                    attached = carried;
                    screen.status("its attachments go with your next message");
                }
            },
            _ = interrupts.recv() => match screen.running_turn() {
                Some(request_id) if !screen.stop_requested => {
                    screen.stop_requested = true;
                    screen.status("stopping the reply (Ctrl-C again quits)");
                    let chat = chat.clone();
                    let notes = notes_tx.clone();
                    tokio::spawn(async move {
                        if let Err(e) = chat.abort(Some("stopped from the terminal"), Some(&request_id)).await {
                            let _ = notes
                                .send(Note::Status(format!("could not stop the reply: {e}")))
                                .await;
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
    /// Names of the files seen (uploaded here or on messages), for processing notes.
    file_names: HashMap<String, String>,
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
            file_names: HashMap::new(),
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

    /// Remembers the names of a message's files, for processing notes.
    fn note_files(&mut self, attachments: Option<&Vec<AttachmentWire>>) {
        for a in attachments.into_iter().flatten() {
            self.file_names.insert(a.id.clone(), a.name.clone());
        }
    }

    fn message(&mut self, message: &HistoryMessage) {
        if let HistoryMessage::User(m) = message {
            self.note_files(m.attachments.as_ref());
        }
        match message {
            HistoryMessage::User(m) => self.line(&format!(
                "{}: {}{}",
                m.user_id,
                m.text,
                attachments_line(m.attachments.as_ref())
            )),
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
                self.note_files(m.attachments.as_ref());
                self.line(&format!(
                    "{}: {}{}",
                    m.user_id,
                    m.text,
                    attachments_line(m.attachments.as_ref())
                ));
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
            ChatEvent::AiProcessing(p) if p.status == "retrying" => {
                let reason = p.reason.unwrap_or_default();
                self.status(&format!("the model failed, retrying {reason}"));
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
            // Only the end of a document's processing is worth a line; progress is noise here.
            ChatEvent::AttachmentProcessing(p) => {
                let name = self
                    .file_names
                    .get(&p.attachment_id)
                    .cloned()
                    .unwrap_or_else(|| p.attachment_id.clone());
                match (p.status.as_str(), &p.error) {
                    ("complete", _) => {
                        let pages = p
                            .pages
                            .map(|n| format!(", {n} page(s)"))
                            .unwrap_or_default();
                        let chars = p.chars.unwrap_or(0);
                        self.status(&format!("file {name} read: {chars} characters{pages}"));
                    }
                    ("error", error) => {
                        let why = error
                            .as_ref()
                            .map(|e| format!(": {} ({})", e.message, e.code))
                            .unwrap_or_default();
                        self.status(&format!("file {name} could not be read{why}"));
                    }
                    _ => {}
                }
            }
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
            // Kinds added to the SDK after this client was written.
            _ => {}
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
