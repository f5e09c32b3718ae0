//! Pieces both modes use: opening many sockets that join chats, run ids, server readings.

use std::time::Duration;

use anyhow::{Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::Cli;
use crate::procstat;
use crate::sio::{self, Client, Event};

/// One connected socket that has joined its chat.
pub struct Member {
    pub chat_idx: usize,
    pub member_idx: usize,
    /// Which of the server URLs this socket is connected to (index into `urls`).
    pub node: usize,
    pub chat_id: String,
    pub user_id: String,
    pub client: Client,
    pub events: mpsc::UnboundedReceiver<Event>,
}

#[derive(Debug, Default)]
pub struct ConnectStats {
    pub attempted: usize,
    pub connect_errors: usize,
    pub join_errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl ConnectStats {
    /// The one-line report after connecting: `<mode>: N joined in …`.
    pub fn report(&self, mode: &str, joined: usize) {
        eprintln!(
            "{mode}: {joined} joined in {:.1}s ({} connect errors, {} join errors){}",
            self.elapsed.as_secs_f64(),
            self.connect_errors,
            self.join_errors,
            self.first_error
                .as_deref()
                .map(|e| format!("; first: {e}"))
                .unwrap_or_default()
        );
    }
}

pub fn run_id(cli: &Cli) -> String {
    cli.run_id.clone().unwrap_or_else(|| {
        // Seconds and a bit of the sub-second clock: unique per run, short enough to read.
        let us = sio::now_us();
        format!("{:x}{:03x}", us / 1_000_000, (us / 1000) % 0x1000)
    })
}

/// Opens one socket per `(chat_idx, member_idx)` with bounded concurrency and joins its chat.
/// Member k of chat c connects to `urls[(c + k) % urls.len()]` (one URL: all to it), so with
/// several nodes every chat spans them and the chats' senders (member 0), and with them the
/// turns, are spread evenly over the nodes.
/// Failures are counted, not fatal; it fails only if nothing connected at all.
pub async fn connect_and_join(
    cli: &Cli,
    urls: &[String],
    run: &str,
    chat_prefix: &str,
    specs: Vec<(usize, usize)>,
    deadline: Instant,
) -> Result<(Vec<Member>, ConnectStats)> {
    let started = Instant::now();
    let timeout = Duration::from_secs_f64(cli.connect_timeout_s);
    if urls.is_empty() {
        bail!("no server URL");
    }
    let mut stats = ConnectStats {
        attempted: specs.len(),
        ..Default::default()
    };
    let results: Vec<Result<Member, (bool, String)>> = futures::stream::iter(specs)
        .map(|(chat_idx, member_idx)| {
            let chat_id = format!("{chat_prefix}{chat_idx}");
            let user_id = format!("bench-{run}-c{chat_idx}-m{member_idx}");
            let node = (chat_idx + member_idx) % urls.len();
            let url = urls[node].as_str();
            async move {
                if Instant::now() >= deadline {
                    return Err((true, "overall timeout reached".to_string()));
                }
                join_one(
                    cli,
                    url,
                    (chat_idx, member_idx, node),
                    chat_id,
                    user_id,
                    timeout,
                )
                .await
            }
        })
        .buffer_unordered(cli.connect_concurrency.max(1))
        .collect()
        .await;
    let mut members = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(m) => members.push(m),
            Err((is_connect, msg)) => {
                if is_connect {
                    stats.connect_errors += 1;
                } else {
                    stats.join_errors += 1;
                }
                stats.first_error.get_or_insert(msg);
            }
        }
    }
    stats.elapsed = started.elapsed();
    if members.is_empty() && stats.attempted > 0 {
        bail!(
            "no socket could connect and join ({} attempted): {}",
            stats.attempted,
            stats.first_error.as_deref().unwrap_or("unknown error")
        );
    }
    members.sort_by_key(|m| (m.chat_idx, m.member_idx));
    Ok((members, stats))
}

async fn join_one(
    cli: &Cli,
    base_url: &str,
    (chat_idx, member_idx, node): (usize, usize, usize),
    chat_id: String,
    user_id: String,
    timeout: Duration,
) -> Result<Member, (bool, String)> {
    let url = sio::socket_url(base_url, Some(&user_id)).map_err(|e| (true, format!("{e:#}")))?;
    let auth = cli.auth_user_id.then(|| json!({ "userId": user_id }));
    let (client, events) = Client::connect(&url, auth.as_ref(), timeout)
        .await
        .map_err(|e| (true, format!("{e:#}")))?;
    let ack = client
        .request(
            "chat:join",
            &json!({ "chatId": chat_id, "userId": user_id }),
            timeout,
        )
        .await
        .map_err(|e| (false, format!("chat:join: {e:#}")))?;
    if ack.get("ok") != Some(&Value::Bool(true)) {
        return Err((false, format!("chat:join refused: {ack}")));
    }
    Ok(Member {
        chat_idx,
        member_idx,
        node,
        chat_id,
        user_id,
        client,
        events,
    })
}

/// The server's CPU seconds, if a pid was given and it could be read.
pub fn server_cpu(pid: Option<u32>) -> Option<f64> {
    let pid = pid?;
    match procstat::cpu_seconds(pid) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("warning: cannot read server CPU: {e:#}");
            None
        }
    }
}

pub fn server_rss(pid: Option<u32>) -> Option<u64> {
    let pid = pid?;
    match procstat::rss_bytes(pid) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("warning: cannot read server RSS: {e:#}");
            None
        }
    }
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Sleeps `d`, but never past `deadline`; returns false if the deadline cut it short.
pub async fn sleep_until_or(d: Duration, deadline: Instant) -> bool {
    let until = Instant::now() + d;
    if until > deadline {
        tokio::time::sleep_until(deadline).await;
        false
    } else {
        tokio::time::sleep_until(until).await;
        true
    }
}
