//! A minimal terminal chat on `AiChatSocket`:
//!
//! ```text
//! cargo run -p natter-client --example chat -- http://127.0.0.1:4000 my-chat ada
//! ```
//!
//! Type a line to send it; the reply streams in. `NATTER_TOKEN` is sent as `auth.token`.

use std::io::Write;

use futures::StreamExt;
use natter_client::{AiChatSocket, ChatEvent, ChatOptions, SendMessage};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:4000".into());
    let chat_id = args.next().unwrap_or_else(|| "demo".into());
    let user = args.next().unwrap_or_else(|| "me".into());
    let mut options = ChatOptions::new(url, chat_id).user_id(user);
    if let Ok(token) = std::env::var("NATTER_TOKEN") {
        options = options.token(token);
    }

    let (chat, mut events) = AiChatSocket::connect(options).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(text) if !text.trim().is_empty() => {
                    if let Err(e) = chat.send_message(SendMessage::text(text)).await {
                        eprintln!("[not sent: {e}]");
                    }
                }
                Some(_) => {}
                None => break,
            },
            event = events.next() => match event {
                Some(ChatEvent::Joined(ack)) => {
                    println!("[joined {}: {} earlier messages]", ack.chat_id, ack.messages.len());
                }
                Some(ChatEvent::ChatMessage(m)) => println!("{}: {}", m.user_id, m.text),
                Some(ChatEvent::AiToken(t)) => {
                    print!("{}", t.token);
                    std::io::stdout().flush()?;
                }
                Some(ChatEvent::AiMessage(_)) => println!(),
                Some(ChatEvent::AiError(e)) => eprintln!("\n[ai error {}: {}]", e.code, e.message),
                Some(ChatEvent::Reconnecting { attempt, delay }) => {
                    eprintln!("[reconnecting, attempt {attempt}, in {delay:?}]");
                }
                Some(ChatEvent::ReloadRequired(ack)) => {
                    eprintln!("[missed too much: {} latest messages reloaded]", ack.messages.len());
                }
                Some(ChatEvent::Closed(error)) => {
                    if let Some(e) = error {
                        eprintln!("[closed: {e}]");
                    }
                    break;
                }
                None => break,
                _ => {}
            }
        }
    }
    chat.close().await;
    Ok(())
}
