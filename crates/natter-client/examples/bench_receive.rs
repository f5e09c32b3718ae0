//! One measured turn with `AiChatSocket`, for the client benchmark in `bench/clients/`:
//!
//! ```text
//! cargo build --release -p natter-client --example bench_receive
//! target/release/examples/bench_receive http://127.0.0.1:4000 20000
//! ```
//!
//! Joins a fresh chat, sends `[fake:bench n=<tokens> delay_ms=0]` (the fake upstream then sends
//! the tokens back to back), reads the events until the turn's `ai:message`, checks that the
//! SDK's per-turn text (`turn_text`: tokens deduplicated and joined by index) is the start of
//! the message's text (all of it, unless the tail was skipped: `missingTailBytes`), and prints
//! one JSON line with the same keys as `bench/clients/client.mjs`.
//!
//! CPU: `cpuTurnMs` is the on-CPU time of the process's threads from the emit to the
//! `ai:message`, summed over the process's threads from `/proc/self/task/*/schedstat`
//! (nanosecond resolution; every tokio worker lives through the turn). `cpuTotalMs` is the same
//! sum at the end (startup, connect and join included), and `cpuTotalStatMs` utime + stime from
//! `/proc/self/stat` as a cross-check (every thread the process ever had, but in 10 ms ticks).
//! `maxRssKiB` is `VmHWM` from `/proc/self/status`. Linux only, like the rest of the benchmark.

use std::time::{Duration, Instant};

use futures::StreamExt;
use natter_client::{AiChatSocket, ChatEvent, ChatOptions, ReconnectPolicy, SendMessage};

const USER_ID: &str = "bench";
const TURN_TIMEOUT: Duration = Duration::from_secs(120);
/// Linux reports `/proc/<pid>/stat` times in USER_HZ, which is 100 on every architecture.
const USER_HZ: f64 = 100.0;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("bench_receive failed: {error}");
        std::process::exit(1);
    }
}

fn parse_args() -> Result<(String, u64), BoxError> {
    let usage = "usage: bench_receive <natter url> <tokens 1..=100000>";
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or(usage)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("bad url {url:?} (expected http://…); {usage}").into());
    }
    let tokens_arg = args.next().ok_or(usage)?;
    let tokens: u64 = tokens_arg
        .parse()
        .map_err(|_| format!("tokens must be an integer, got {tokens_arg:?}; {usage}"))?;
    if !(1..=100_000).contains(&tokens) {
        return Err(format!("tokens must be 1..=100000, got {tokens}").into());
    }
    Ok((url, tokens))
}

async fn run() -> Result<(), BoxError> {
    let (url, tokens) = parse_args()?;
    let chat_id = format!(
        "bench-rust-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    // A dropped connection must fail the run, not be papered over by a rejoin.
    let options = ChatOptions::new(url, chat_id)
        .user_id(USER_ID)
        .reconnect(ReconnectPolicy::disabled());
    let (chat, mut events) = AiChatSocket::connect(options).await?;

    let request_id = uuid::Uuid::new_v4().to_string();
    let message = SendMessage {
        request_id: Some(request_id.clone()),
        ..SendMessage::text(format!("[fake:bench n={tokens} delay_ms=0]"))
    };

    let cpu_before = threads_cpu_ns()?;
    let started = Instant::now();
    // Send and read at once: tokens start arriving before the ack.
    let read_turn = async {
        let mut token_events: u64 = 0;
        let mut merged: u64 = 0;
        while let Some(event) = events.next().await {
            match event {
                ChatEvent::AiToken(t) if t.request_id == request_id => {
                    token_events += 1;
                    if t.through.is_some_and(|through| through != t.index) {
                        merged += 1;
                    }
                }
                ChatEvent::AiMessage(m) if m.request_id == request_id => {
                    return Ok((m, token_events, merged));
                }
                ChatEvent::AiError(e) if e.request_id == request_id => {
                    return Err(format!("ai:error {}: {}", e.code, e.message));
                }
                ChatEvent::Disconnected(reason) => return Err(format!("disconnected: {reason:?}")),
                ChatEvent::Closed(error) => return Err(format!("closed: {error:?}")),
                _ => {}
            }
        }
        Err("the event stream ended before ai:message".to_string())
    };
    let (ack, turn) = tokio::time::timeout(TURN_TIMEOUT, async {
        tokio::join!(chat.send_message(message), read_turn)
    })
    .await
    .map_err(|_| format!("timed out after {TURN_TIMEOUT:?} waiting for ai:message"))?;
    let wall = started.elapsed();
    let cpu_turn_ns = threads_cpu_ns()?.saturating_sub(cpu_before);
    ack?;
    let (ai_message, token_events, merged) = turn?;

    let text = chat.turn_text(&ai_message.message_id).unwrap_or_default();
    // The tokens must be the start of the message's text; they stop short of it when this
    // member fell further behind than the server's channel as the turn ended (the server then
    // sends the ai:message without the missed tokens).
    if !ai_message.text.starts_with(&text) {
        return Err(format!(
            "turn_text ({} bytes) is not a prefix of ai:message.text ({} bytes)",
            text.len(),
            ai_message.text.len()
        )
        .into());
    }
    chat.close().await;

    let wall_ms = wall.as_secs_f64() * 1000.0;
    let result = serde_json::json!({
        "client": "rust",
        "tokens": tokens,
        "events": token_events,
        "merged": merged,
        "textBytes": text.len(),
        "missingTailBytes": ai_message.text.len() - text.len(),
        "wallMs": wall_ms,
        "tokensPerSec": tokens as f64 / wall.as_secs_f64(),
        "cpuTurnMs": cpu_turn_ns as f64 / 1e6,
        "cpuTotalMs": threads_cpu_ns()? as f64 / 1e6,
        "cpuTotalStatMs": process_cpu_ms()?,
        "maxRssKiB": max_rss_kib()?,
    });
    println!("{result}");
    Ok(())
}

/// On-CPU nanoseconds of this process's live threads (first field of each thread's schedstat).
fn threads_cpu_ns() -> Result<u64, BoxError> {
    let mut total: u64 = 0;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let path = entry?.path().join("schedstat");
        // A thread may exit between the listing and the read; it no longer counts.
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        let on_cpu = stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .ok_or_else(|| format!("unexpected {}: {stat:?}", path.display()))?;
        total += on_cpu;
    }
    Ok(total)
}

/// utime + stime of the whole process (every thread it ever had), in ms.
fn process_cpu_ms() -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unexpected /proc/self/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let ticks = |i: usize| -> Result<f64, BoxError> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("unexpected /proc/self/stat: {stat:?}").into())
    };
    Ok((ticks(11)? + ticks(12)?) * 1000.0 / USER_HZ)
}

/// Peak resident set size (`VmHWM`), in KiB.
fn max_rss_kib() -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/self/status".into())
}
