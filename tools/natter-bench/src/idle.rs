//! `idle` mode: N sockets join chats (of `--members` each) and sit idle, answering pings.
//! Reports the server's resident memory per socket and the CPU it spends on idle sockets.

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;
use tokio::time::Instant;

use crate::Cli;
use crate::common::{self, round2, round3};

pub async fn run(cli: &Cli, deadline: Instant) -> Result<()> {
    let n = cli.idle_connections;
    if n == 0 || cli.members == 0 {
        bail!("--idle-connections and --members must be at least 1");
    }
    if cli.pid().is_none() {
        eprintln!("warning: no --pid: memory cannot be measured, only connection counts");
    }
    if cli.urls.len() > 1 || cli.pids.len() > 1 {
        eprintln!("warning: idle mode measures one server: using the first --url and --pid");
    }
    let run = common::run_id(cli);
    let prefix = format!("bench-{run}-idle-");
    let rss_before = common::server_rss(cli.pid());
    let specs: Vec<(usize, usize)> = (0..n).map(|i| (i / cli.members, i % cli.members)).collect();
    let chats = n.div_ceil(cli.members);
    eprintln!(
        "idle: run {run}: opening {n} sockets in {chats} chats of {} to {}",
        cli.members,
        cli.url()
    );
    let (mut members, cstats) =
        common::connect_and_join(cli, &cli.urls[..1], &run, &prefix, specs, deadline).await?;
    let connected = members.len();
    cstats.report("idle", connected);
    // Nobody reads the events of idle sockets; the connection tasks keep answering pings.
    let clients: Vec<_> = members.drain(..).map(|m| m.client).collect();

    let settle = Duration::from_secs_f64(cli.settle_s);
    let mut truncated = !common::sleep_until_or(settle, deadline).await;
    let rss_after = common::server_rss(cli.pid());
    let cpu_hold_start = common::server_cpu(cli.pid());
    let hold_start = Instant::now();
    // Sample memory once a second while holding: a garbage-collected server's RSS moves.
    let mut rss_min = rss_after;
    let mut rss_max = rss_after;
    if !truncated {
        eprintln!("idle: memory read; holding {:.0}s", cli.hold_s);
        let hold_end = hold_start + Duration::from_secs_f64(cli.hold_s);
        let stop = deadline - Duration::from_millis(500);
        while Instant::now() < hold_end {
            let step = Duration::from_secs(1).min(hold_end - Instant::now());
            if !common::sleep_until_or(step, stop).await {
                truncated = true;
                break;
            }
            if let Some(r) = common::server_rss(cli.pid()) {
                rss_min = Some(rss_min.map_or(r, |m| m.min(r)));
                rss_max = Some(rss_max.map_or(r, |m| m.max(r)));
            }
        }
    }
    let hold_s = hold_start.elapsed().as_secs_f64();
    let cpu_hold_end = common::server_cpu(cli.pid());
    let rss_end = common::server_rss(cli.pid());
    let alive = clients.iter().filter(|c| c.is_connected()).count();
    let pings: u64 = clients.iter().map(|c| c.pings_answered()).sum();
    let open = clients.first().map(|c| c.open_info().clone());
    let ping_interval_ms = open.as_ref().map_or(0, |o| o.ping_interval);
    for c in &clients {
        c.close();
    }

    let per_conn = |after: Option<u64>| match (rss_before, after) {
        (Some(b), Some(a)) if connected > 0 => Some((a as f64 - b as f64) / connected as f64),
        _ => None,
    };
    let bytes_per_conn = per_conn(rss_after);
    let bytes_per_conn_end = per_conn(rss_end);
    let hold_cpu_s = match (cpu_hold_start, cpu_hold_end) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let mib = |b: Option<u64>| b.map(|b| round2(b as f64 / 1048576.0));

    println!("== natter-bench idle: {} ({}) ==", cli.label, cli.url());
    println!(
        "sockets: {connected}/{n} joined in {:.1} s, {chats} chats; {alive} still connected after {hold_s:.0} s hold{}",
        cstats.elapsed.as_secs_f64(),
        if truncated { " [truncated]" } else { "" }
    );
    match (mib(rss_before), mib(rss_after), mib(rss_end)) {
        (Some(b), Some(a), Some(e)) => println!(
            "server RSS: before {b} MiB, after join+settle {a} MiB, after hold {e} MiB (hold min {}, max {})",
            mib(rss_min).unwrap_or(0.0),
            mib(rss_max).unwrap_or(0.0)
        ),
        _ => println!("server RSS: not measured (no --pid)"),
    }
    if let (Some(b), Some(e)) = (bytes_per_conn, bytes_per_conn_end) {
        println!(
            "per idle socket: {:.1} KiB after settle; {:.1} KiB after the hold",
            b / 1024.0,
            e / 1024.0
        );
    }
    if let Some(c) = hold_cpu_s {
        println!(
            "server CPU while idle: {c:.3} core-s over {hold_s:.0} s ({:.2}% of one core); pings answered: {pings} (ping interval {ping_interval_ms} ms)",
            c / hold_s.max(1e-9) * 100.0
        );
    }
    let result = json!({
        "mode": "idle",
        "label": cli.label,
        "url": cli.url(),
        "run": run,
        "requested": n,
        "sockets": connected,
        "chats": chats,
        "members": cli.members,
        "connect_errors": cstats.connect_errors,
        "join_errors": cstats.join_errors,
        "connect_s": round2(cstats.elapsed.as_secs_f64()),
        "server_pid": cli.pid(),
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_end_bytes": rss_end,
        "rss_hold_min_bytes": rss_min,
        "rss_hold_max_bytes": rss_max,
        "bytes_per_connection": bytes_per_conn.map(|b| b.round()),
        "kib_per_connection": bytes_per_conn.map(|b| round2(b / 1024.0)),
        "bytes_per_connection_after_hold": bytes_per_conn_end.map(|b| b.round()),
        "kib_per_connection_after_hold": bytes_per_conn_end.map(|b| round2(b / 1024.0)),
        "hold_s": round2(hold_s),
        "hold_server_cpu_s": hold_cpu_s.map(round3),
        "still_connected": alive,
        "pings_answered": pings,
        "ping_interval_ms": ping_interval_ms,
        "ping_timeout_ms": open.as_ref().map(|o| o.ping_timeout),
        "max_payload": open.as_ref().and_then(|o| o.max_payload),
        "truncated": truncated,
        "first_error": cstats.first_error,
    });
    println!("RESULT {result}");
    Ok(())
}
