//! Redis's own counters, read over a plain TCP socket (RESP): `INFO all` before and after the
//! measured window gives the commands the cluster ran per delivered token, which commands, and
//! the bytes Redis read and wrote.
//!
//! The bench's own traffic (the first reading's `INFO`, the second's `AUTH`, and their bytes) is
//! taken out of the figures. Everything else Redis did in the window counts: the nodes' token
//! traffic, and their background work (presence refreshes, lease renewals).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One `INFO all` reading.
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub total_commands: u64,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    /// `cmdstat_<name>` → calls.
    pub calls: BTreeMap<String, u64>,
    /// What this reading itself added: bytes sent (AUTH + INFO), bytes of replies before the
    /// INFO reply (AUTH's), bytes of the INFO reply, commands before INFO (AUTH).
    sent: u64,
    pre_info_received: u64,
    info_reply: u64,
    pre_info_commands: u64,
}

/// Redis's work between two readings, the bench's own traffic taken out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub commands: u64,
    pub by_name: BTreeMap<String, u64>,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
}

impl Window {
    pub fn between(a: &Info, b: &Info) -> Window {
        // Counters are bumped after a command runs, so a reading's INFO is not in its own
        // figures but is in the next one's; the second reading's AUTH is in its figures.
        let own = 1 + b.pre_info_commands;
        let mut by_name = BTreeMap::new();
        for (name, &calls) in &b.calls {
            let before = a.calls.get(name).copied().unwrap_or(0);
            let mut d = calls.saturating_sub(before);
            match name.as_str() {
                "info" => d = d.saturating_sub(1),
                "auth" => d = d.saturating_sub(b.pre_info_commands),
                _ => {}
            }
            if d > 0 {
                by_name.insert(name.clone(), d);
            }
        }
        Window {
            commands: b
                .total_commands
                .saturating_sub(a.total_commands)
                .saturating_sub(own),
            by_name,
            net_input_bytes: b
                .net_input_bytes
                .saturating_sub(a.net_input_bytes)
                .saturating_sub(b.sent),
            net_output_bytes: b
                .net_output_bytes
                .saturating_sub(a.net_output_bytes)
                .saturating_sub(a.info_reply + b.pre_info_received),
        }
    }
}

/// Where and as whom to connect, from `redis://[user[:password]@]host[:port][/db]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    addr: String,
    user: Option<String>,
    password: Option<String>,
}

fn parse_url(url: &str) -> Result<Target> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| anyhow!("--redis takes redis://host:port, got {url:?}"))?;
    let rest = rest.split(['/', '?']).next().unwrap_or("");
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    if hostport.is_empty() {
        bail!("--redis {url:?} has no host");
    }
    let addr = if hostport.starts_with('[') {
        if hostport.contains("]:") {
            hostport.to_owned()
        } else {
            format!("{hostport}:6379")
        }
    } else if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:6379")
    };
    let (user, password) = match auth {
        None => (None, None),
        Some(a) => match a.split_once(':') {
            Some((u, p)) => (
                (!u.is_empty()).then(|| percent_decode(u)),
                (!p.is_empty()).then(|| percent_decode(p)),
            ),
            // `redis://secret@host`: a password alone, as redis-cli reads it.
            None => (None, (!a.is_empty()).then(|| percent_decode(a))),
        },
    };
    Ok(Target {
        addr,
        user,
        password,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one RESP reply (simple string, error, integer or bulk string); returns its text and
/// how many bytes it took on the wire.
async fn read_reply(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(String, u64)> {
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]).into_owned();
            let (kind, body) = line.split_at(1.min(line.len()));
            match kind {
                "+" | ":" => {
                    let n = end + 2;
                    buf.drain(..n);
                    return Ok((body.to_owned(), n as u64));
                }
                "-" => bail!("redis answered {line:?}"),
                "$" => {
                    let len: usize = body.parse().context("bad RESP bulk length")?;
                    let total = end + 2 + len + 2;
                    if buf.len() >= total {
                        let text =
                            String::from_utf8_lossy(&buf[end + 2..end + 2 + len]).into_owned();
                        buf.drain(..total);
                        return Ok((text, total as u64));
                    }
                }
                _ => bail!("unexpected RESP reply {line:?}"),
            }
        }
        let mut chunk = [0u8; 16384];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            bail!("redis closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects, authenticates if the URL says so, and reads `INFO all`.
pub async fn read_info(url: &str, timeout: Duration) -> Result<Info> {
    let target = parse_url(url)?;
    tokio::time::timeout(timeout, async {
        let mut sock = TcpStream::connect(&target.addr)
            .await
            .with_context(|| format!("connecting to redis at {}", target.addr))?;
        let mut buf = Vec::new();
        let mut info = Info::default();
        if let Some(pw) = &target.password {
            let auth = match &target.user {
                Some(u) => command(&["AUTH", u, pw]),
                None => command(&["AUTH", pw]),
            };
            sock.write_all(&auth).await?;
            info.sent += auth.len() as u64;
            let (_, n) = read_reply(&mut sock, &mut buf).await.context("AUTH")?;
            info.pre_info_received += n;
            info.pre_info_commands += 1;
        }
        let req = command(&["INFO", "all"]);
        sock.write_all(&req).await?;
        info.sent += req.len() as u64;
        let (text, n) = read_reply(&mut sock, &mut buf).await.context("INFO all")?;
        info.info_reply = n;
        parse_info(&text, &mut info)?;
        Ok(info)
    })
    .await
    .map_err(|_| {
        anyhow!(
            "redis at {} did not answer INFO in {timeout:?}",
            target.addr
        )
    })?
}

fn parse_info(text: &str, info: &mut Info) -> Result<()> {
    let mut seen_total = false;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(v) = line.strip_prefix("total_commands_processed:") {
            info.total_commands = v.parse().context("total_commands_processed")?;
            seen_total = true;
        } else if let Some(v) = line.strip_prefix("total_net_input_bytes:") {
            info.net_input_bytes = v.parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("total_net_output_bytes:") {
            info.net_output_bytes = v.parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("cmdstat_") {
            // cmdstat_publish:calls=12,usec=34,usec_per_call=2.83,rejected_calls=0,failed_calls=0
            if let Some((name, fields)) = rest.split_once(':') {
                let calls = fields
                    .split(',')
                    .find_map(|f| f.strip_prefix("calls="))
                    .and_then(|v| v.parse().ok());
                if let Some(c) = calls {
                    info.calls.insert(name.to_owned(), c);
                }
            }
        }
    }
    if !seen_total {
        bail!("INFO has no total_commands_processed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = parse_url("redis://127.0.0.1:6390/0").unwrap();
        assert_eq!(t.addr, "127.0.0.1:6390");
        assert_eq!((t.user, t.password), (None, None));
        let t = parse_url("redis://u:p%40ss@h").unwrap();
        assert_eq!(t.addr, "h:6379");
        assert_eq!(t.user.as_deref(), Some("u"));
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        let t = parse_url("redis://:secret@h:1/").unwrap();
        assert_eq!((t.user, t.password.as_deref()), (None, Some("secret")));
        assert!(parse_url("http://h").is_err());
        assert!(parse_url("redis://").is_err());
    }

    #[test]
    fn parses_info_and_takes_own_traffic_out() {
        let text = |total: u64, publish: u64, info: u64, inb: u64, outb: u64| {
            format!(
                "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:{total}\r\ntotal_net_input_bytes:{inb}\r\ntotal_net_output_bytes:{outb}\r\n\r\n# Commandstats\r\ncmdstat_publish:calls={publish},usec=9,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls={info},usec=9,usec_per_call=1.00\r\n"
            )
        };
        let mut a = Info::default();
        parse_info(&text(100, 40, 2, 1000, 5000), &mut a).unwrap();
        a.sent = 20;
        a.info_reply = 300;
        let mut b = Info::default();
        parse_info(&text(111, 50, 3, 1420, 6400), &mut b).unwrap();
        b.sent = 20;
        let w = Window::between(&a, &b);
        assert_eq!(w.commands, 10);
        assert_eq!(w.by_name, BTreeMap::from([("publish".to_owned(), 10)]));
        assert_eq!(w.net_input_bytes, 400);
        assert_eq!(w.net_output_bytes, 1100);
        assert!(parse_info("# Stats\r\n", &mut Info::default()).is_err());
    }
}
