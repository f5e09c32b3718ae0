//! `fanout` mode: R chats × M members, turn rounds of streamed AI replies.
//!
//! Each round, one member per chat sends a `user:message` whose text is the scenario directive;
//! the fake upstream answers with tokens `@<µs since the epoch at upstream send time>;`. Every
//! member counts the `ai:token` events it receives and records, for each timestamp in them, the
//! latency from upstream send to receipt here. A round ends when every member has its `ai:message`
//! (or `ai:error`, or the turn timeout passes).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::Cli;
use crate::common::{self, Member, round2, round3};
use crate::procstat;
use crate::redis;
use crate::usage::{Snapshot, Usage};

#[derive(Debug, Clone)]
enum Cmd {
    Wait,
    Turn {
        round: u64,
        measured: bool,
        deadline: Instant,
    },
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    AiError,
    Rejected,
    Timeout,
    Disconnected,
}

/// What one member saw during one turn.
#[derive(Debug)]
struct TurnReport {
    round: u64,
    /// The member's server (index into `--url`s).
    node: usize,
    outcome: Outcome,
    events: u64,
    covered: u64,
    stamps: u64,
    gaps: u64,
    overlaps: u64,
    stale: u64,
    text_mismatch: bool,
    error: Option<String>,
}

impl TurnReport {
    fn new(round: u64) -> Self {
        TurnReport {
            round,
            node: 0,
            outcome: Outcome::Timeout,
            events: 0,
            covered: 0,
            stamps: 0,
            gaps: 0,
            overlaps: 0,
            stale: 0,
            text_mismatch: false,
            error: None,
        }
    }

    fn fail(mut self, outcome: Outcome, error: impl Into<String>) -> Self {
        self.outcome = outcome;
        self.error = Some(error.into());
        self
    }
}

#[derive(Debug, Default, Clone)]
struct Totals {
    member_turns: u64,
    done: u64,
    token_events: u64,
    tokens_covered: u64,
    stamps: u64,
    ai_errors: u64,
    rejected: u64,
    timeouts: u64,
    disconnected: u64,
    gaps: u64,
    overlaps: u64,
    stale: u64,
    text_mismatches: u64,
    first_error: Option<String>,
}

impl Totals {
    fn add(&mut self, r: &TurnReport) {
        self.member_turns += 1;
        self.token_events += r.events;
        self.tokens_covered += r.covered;
        self.stamps += r.stamps;
        self.gaps += r.gaps;
        self.overlaps += r.overlaps;
        self.stale += r.stale;
        self.text_mismatches += u64::from(r.text_mismatch);
        match r.outcome {
            Outcome::Done => self.done += 1,
            Outcome::AiError => self.ai_errors += 1,
            Outcome::Rejected => self.rejected += 1,
            Outcome::Timeout => self.timeouts += 1,
            Outcome::Disconnected => self.disconnected += 1,
        }
        if self.first_error.is_none() {
            self.first_error.clone_from(&r.error);
        }
    }

    fn errors(&self) -> u64 {
        self.ai_errors + self.rejected + self.timeouts + self.disconnected
    }
}

type Hist = Arc<Mutex<Histogram<u64>>>;

/// The timestamps `@<µs>;` carried by a token (several when the server merged tokens).
fn stamps(token: &str) -> impl Iterator<Item = u64> + '_ {
    token
        .split('@')
        .skip(1)
        .filter_map(|s| s.split_once(';').and_then(|(n, _)| n.parse().ok()))
}

async fn member_task(
    mut m: Member,
    sends_after: Option<Duration>,
    run: Arc<str>,
    scenario: Arc<str>,
    mut cmds: watch::Receiver<Cmd>,
    reports: mpsc::UnboundedSender<TurnReport>,
    (hist, node_hist): (Hist, Option<Hist>),
) {
    let node = m.node;
    let mut lat = Vec::with_capacity(256);
    loop {
        if cmds.changed().await.is_err() {
            return;
        }
        let cmd = cmds.borrow_and_update().clone();
        let (round, measured, deadline) = match cmd {
            Cmd::Stop => {
                m.client.close();
                return;
            }
            Cmd::Wait => continue,
            Cmd::Turn {
                round,
                measured,
                deadline,
            } => (round, measured, deadline),
        };
        lat.clear();
        let mut report = turn(
            &mut m,
            sends_after,
            &run,
            &scenario,
            round,
            deadline,
            &mut lat,
        )
        .await;
        report.node = node;
        if measured && !lat.is_empty() {
            let mut h = hist.lock().unwrap_or_else(|p| p.into_inner());
            for &l in &lat {
                h.saturating_record(l);
            }
            drop(h);
            if let Some(nh) = &node_hist {
                let mut h = nh.lock().unwrap_or_else(|p| p.into_inner());
                for &l in &lat {
                    h.saturating_record(l);
                }
            }
        }
        if reports.send(report).is_err() {
            return;
        }
    }
}

async fn turn(
    m: &mut Member,
    sends_after: Option<Duration>,
    run: &str,
    scenario: &str,
    round: u64,
    deadline: Instant,
    lat: &mut Vec<u64>,
) -> TurnReport {
    let request_id = format!("bench-{run}-{}-t{round}", m.chat_idx);
    let mut r = TurnReport::new(round);
    if let Some(pause) = sends_after {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let payload = json!({
            "chatId": m.chat_id,
            "messageId": format!("bench-{run}-{}-m{round}", m.chat_idx),
            "userId": m.user_id,
            "text": scenario,
            "requestId": request_id,
        });
        let wait = deadline.saturating_duration_since(Instant::now());
        match m.client.request("user:message", &payload, wait).await {
            Ok(ack) if ack.get("ok") == Some(&Value::Bool(true)) => {}
            Ok(ack) => return r.fail(Outcome::Rejected, format!("user:message refused: {ack}")),
            Err(e) if m.client.is_connected() => {
                return r.fail(Outcome::Rejected, format!("user:message: {e:#}"));
            }
            Err(e) => return r.fail(Outcome::Disconnected, format!("user:message: {e:#}")),
        }
    }

    let mut next_index = 0u64;
    let mut text = String::new();
    loop {
        let ev = match tokio::time::timeout_at(deadline, m.events.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => return r.fail(Outcome::Disconnected, "connection closed"),
            Err(_) => {
                let msg = format!(
                    "no ai:message within the turn timeout ({} token events so far)",
                    r.events
                );
                return r.fail(Outcome::Timeout, msg);
            }
        };
        if let Some(id) = ev.ack_id {
            let _ = m.client.ack(id, &[json!({ "ok": true })]);
        }
        let same_turn = match ev.data.get("requestId").and_then(Value::as_str) {
            Some(id) => id == request_id,
            None => true,
        };
        match ev.name.as_str() {
            "ai:token" => {
                if !same_turn {
                    r.stale += 1;
                    continue;
                }
                r.events += 1;
                let index = ev
                    .data
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(next_index);
                let through = ev
                    .data
                    .get("through")
                    .and_then(Value::as_u64)
                    .unwrap_or(index)
                    .max(index);
                r.covered += through - index + 1;
                if through < next_index {
                    // Already had all of it: the client rule is to drop it.
                    r.overlaps += 1;
                    continue;
                }
                if index > next_index {
                    r.gaps += index - next_index;
                } else if index < next_index {
                    r.overlaps += 1;
                }
                let token = ev.data.get("token").and_then(Value::as_str).unwrap_or("");
                for ts in stamps(token) {
                    r.stamps += 1;
                    lat.push(ev.recv_us.saturating_sub(ts));
                }
                text.push_str(token);
                next_index = through + 1;
            }
            "ai:message" if same_turn => {
                if let Some(t) = ev.data.get("text").and_then(Value::as_str) {
                    r.text_mismatch = t != text;
                }
                r.outcome = Outcome::Done;
                return r;
            }
            "ai:error" if same_turn => {
                return r.fail(Outcome::AiError, format!("ai:error {}", ev.data));
            }
            _ => {} // chat:message, presence:update, ai:processing, other turns' endings
        }
    }
}

/// Readings at the start of the measured window.
struct WindowStart {
    at: Instant,
    cpu: Snapshot,
    self_cpu: Option<f64>,
    redis: Option<redis::Info>,
}

/// Redis's counters, if `--redis` was given (a warning, not a failure, when it can't be read).
async fn read_redis(cli: &Cli) -> Option<redis::Info> {
    let url = cli.redis.as_deref()?;
    match redis::read_info(url, Duration::from_secs(5)).await {
        Ok(i) => Some(i),
        Err(e) => {
            eprintln!("warning: cannot read redis INFO: {e:#}");
            None
        }
    }
}

pub async fn run(cli: &Cli, deadline: Instant) -> Result<()> {
    if cli.duration_s.is_none() && cli.turns == 0 {
        bail!("--turns must be at least 1 (or give --duration-s)");
    }
    if cli.chats == 0 || cli.members == 0 {
        bail!("--chats and --members must be at least 1");
    }
    let run = common::run_id(cli);
    let prefix = format!("bench-{run}-");
    let specs: Vec<(usize, usize)> = (0..cli.chats)
        .flat_map(|c| (0..cli.members).map(move |m| (c, m)))
        .collect();
    let nodes = cli.urls.len();
    eprintln!(
        "fanout: run {run}: connecting {} sockets ({} chats x {} members) to {}",
        specs.len(),
        cli.chats,
        cli.members,
        cli.urls.join(", ")
    );
    if nodes > 1 && cli.members < nodes {
        eprintln!(
            "warning: {} members per chat over {nodes} URLs: the last {} URLs get no sockets",
            cli.members,
            nodes - cli.members
        );
    }
    let (members, cstats) =
        common::connect_and_join(cli, &cli.urls, &run, &prefix, specs, deadline).await?;
    let n = members.len();
    cstats.report("fanout", n);
    let mut node_sockets = vec![0usize; nodes];
    for m in &members {
        node_sockets[m.node] += 1;
    }

    let (cmd_tx, cmd_rx) = watch::channel(Cmd::Wait);
    let (rep_tx, mut rep_rx) = mpsc::unbounded_channel();
    let new_hist = || -> Result<Hist> {
        Ok(Arc::new(Mutex::new(Histogram::new_with_bounds(
            1,
            3_600_000_000,
            3,
        )?)))
    };
    let hist: Hist = new_hist()?;
    // Latency per node only with several: which members are a hop away from the turn.
    let node_hists: Vec<Hist> = if nodes > 1 {
        (0..nodes).map(|_| new_hist()).collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let run_arc: Arc<str> = Arc::from(run.as_str());
    let scenario: Arc<str> = Arc::from(cli.scenario.as_str());
    let stagger = Duration::from_micros(cli.stagger_us);
    let mut handles = Vec::with_capacity(n);
    let mut last_chat = None;
    let mut active_chats = 0usize;
    for m in members {
        // Members are sorted by (chat, member): the first one of each chat sends.
        let m_node = m.node;
        let is_sender = last_chat != Some(m.chat_idx);
        last_chat = Some(m.chat_idx);
        active_chats += usize::from(is_sender);
        // The chat's sender, after its place in the round's stagger.
        let sends_after = is_sender.then(|| stagger.saturating_mul(m.chat_idx as u32));
        handles.push(tokio::spawn(member_task(
            m,
            sends_after,
            run_arc.clone(),
            scenario.clone(),
            cmd_rx.clone(),
            rep_tx.clone(),
            (hist.clone(), node_hists.get(m_node).cloned()),
        )));
    }
    drop(rep_tx);

    let turn_timeout = Duration::from_secs_f64(cli.turn_timeout_s);
    let interval = Duration::from_millis(cli.interval_ms);
    let mut warm = Totals::default();
    let mut totals = Totals::default();
    let mut node_totals = vec![Totals::default(); nodes];
    let mut window_start: Option<WindowStart> = None;
    let mut measured_rounds = 0u64;
    let mut turn_secs: Vec<f64> = Vec::new();
    let mut truncated = false;
    let mut round = 0u64;
    loop {
        if Instant::now() + Duration::from_millis(500) >= deadline {
            truncated = true;
            eprintln!("fanout: overall timeout reached; reporting what was measured");
            break;
        }
        let measured = round >= cli.warmup_turns;
        if measured && window_start.is_none() {
            let redis = read_redis(cli).await;
            window_start = Some(WindowStart {
                at: Instant::now(),
                cpu: Snapshot::take(cli),
                self_cpu: procstat::self_cpu_seconds().ok(),
                redis,
            });
        }
        let round_deadline = (Instant::now() + turn_timeout).min(deadline);
        let t0 = Instant::now();
        cmd_tx.send_replace(Cmd::Turn {
            round,
            measured,
            deadline: round_deadline,
        });
        let tot = if measured { &mut totals } else { &mut warm };
        let before = tot.clone();
        let mut got = 0usize;
        while got < n {
            let grace = round_deadline + Duration::from_secs(2);
            match tokio::time::timeout_at(grace, rep_rx.recv()).await {
                Ok(Some(rep)) if rep.round == round => {
                    got += 1;
                    tot.add(&rep);
                    if let Some(nt) = node_totals.get_mut(rep.node).filter(|_| measured) {
                        nt.add(&rep);
                    }
                }
                Ok(Some(_)) => {} // a late report from an earlier round
                Ok(None) => break,
                Err(_) => {
                    let missing = (n - got) as u64;
                    tot.member_turns += missing;
                    tot.timeouts += missing;
                    break;
                }
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        eprintln!(
            "round {round}{}: {:.0} ms, {} token events, {}/{} members done, {} errors",
            if measured { "" } else { " (warm-up)" },
            dt * 1000.0,
            tot.token_events - before.token_events,
            tot.done - before.done,
            n,
            tot.errors() - before.errors(),
        );
        if tot.disconnected - before.disconnected == n as u64 {
            truncated = true;
            eprintln!("fanout: every socket is disconnected; stopping");
            round += 1;
            if measured {
                measured_rounds += 1;
                turn_secs.push(dt);
            }
            break;
        }
        round += 1;
        if measured {
            measured_rounds += 1;
            turn_secs.push(dt);
            let finished = match (cli.duration_s, &window_start) {
                (Some(d), Some(w)) => w.at.elapsed().as_secs_f64() >= d,
                _ => measured_rounds >= cli.turns,
            };
            if finished {
                break;
            }
        }
        if !interval.is_zero() && !common::sleep_until_or(interval, deadline).await {
            truncated = true;
            break;
        }
    }
    let window_end = Instant::now();
    let cpu_end = Snapshot::take(cli);
    let self_cpu_end = procstat::self_cpu_seconds().ok();
    let redis_end = match window_start.as_ref() {
        Some(w) if w.redis.is_some() => read_redis(cli).await,
        _ => None,
    };
    let rss_per_pid: Vec<Option<u64>> = cli
        .pids
        .iter()
        .map(|&p| common::server_rss(Some(p)))
        .collect();
    let rss_end = if rss_per_pid.is_empty() {
        None
    } else {
        rss_per_pid.iter().copied().sum::<Option<u64>>()
    };

    cmd_tx.send_replace(Cmd::Stop);
    let _ = tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(handles)).await;

    let started = window_start.is_some();
    let WindowStart {
        at: start,
        cpu: cpu_start,
        self_cpu: self_cpu_start,
        redis: redis_start,
    } = window_start.unwrap_or(WindowStart {
        at: window_end,
        cpu: Snapshot::default(),
        self_cpu: None,
        redis: None,
    });
    let usage = if started {
        Usage::between(cli, &cpu_start, &cpu_end)
    } else {
        Usage::default()
    };
    let redis_window = match (&redis_start, &redis_end) {
        (Some(a), Some(b)) => Some(redis::Window::between(a, b)),
        _ => None,
    };
    let window_s = window_end.duration_since(start).as_secs_f64();
    let per_s = |x: u64| {
        if window_s > 0.0 {
            x as f64 / window_s
        } else {
            0.0
        }
    };
    let server_cpu_s = usage.server_cpu_s;
    let total_cpu_s = usage.total_cpu_s();
    let bench_cpu_s = match (self_cpu_start, self_cpu_end) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let events_per_core_s = server_cpu_s
        .filter(|c| *c > 0.0)
        .map(|c| totals.token_events as f64 / c);
    let events_per_core_s_with_extra = total_cpu_s
        .filter(|c| *c > 0.0)
        .map(|c| totals.token_events as f64 / c);
    let redis_per_token =
        |x: u64| (totals.token_events > 0).then(|| x as f64 / totals.token_events as f64);
    let h = hist.lock().unwrap_or_else(|p| p.into_inner());
    let pct = |q: f64| {
        if h.is_empty() {
            None
        } else {
            Some(h.value_at_quantile(q))
        }
    };
    let mean_turn_ms = if turn_secs.is_empty() {
        0.0
    } else {
        turn_secs.iter().sum::<f64>() / turn_secs.len() as f64 * 1000.0
    };

    let us_to_ms = |v: Option<u64>| v.map(|v| v as f64 / 1000.0);
    println!(
        "== natter-bench fanout: {} ({}) ==",
        cli.label,
        cli.urls.join(", ")
    );
    println!(
        "sockets: {n}/{} joined, {active_chats} chats, scenario {:?}",
        cstats.attempted, cli.scenario
    );
    println!(
        "measured: {measured_rounds} rounds in {window_s:.2} s (mean round {mean_turn_ms:.0} ms){}",
        if truncated { " [truncated]" } else { "" }
    );
    println!(
        "token events: {} ({:.0}/s); tokens covered: {} ({:.0}/s); timestamps: {}",
        totals.token_events,
        per_s(totals.token_events),
        totals.tokens_covered,
        per_s(totals.tokens_covered),
        totals.stamps
    );
    match (server_cpu_s, events_per_core_s) {
        (Some(c), Some(e)) => println!(
            "server CPU: {c:.2} core-s ({:.0}% of one core); {e:.0} token events per core-second",
            c / window_s.max(1e-9) * 100.0
        ),
        (Some(c), None) => println!("server CPU: {c:.2} core-s"),
        _ => println!("server CPU: not measured (no --pid)"),
    }
    if cli.pids.len() > 1 {
        let parts: Vec<String> = usage
            .per_pid
            .iter()
            .map(|(pid, c)| match c {
                Some(c) => format!("{pid} {c:.2}"),
                None => format!("{pid} ?"),
            })
            .collect();
        println!("server CPU per pid (core-s): {}", parts.join(", "));
    }
    if !usage.extras.is_empty() {
        let parts: Vec<String> = usage
            .extras
            .iter()
            .map(|e| {
                let cpu = e.cpu_s.map_or("?".to_owned(), |c| format!("{c:.2}"));
                let vanished = if e.vanished > 0 {
                    format!(", {} gone", e.vanished)
                } else {
                    String::new()
                };
                format!("{} {cpu} ({} processes{vanished})", e.name, e.processes)
            })
            .collect();
        println!("extra CPU (core-s): {}", parts.join("; "));
        match (total_cpu_s, events_per_core_s_with_extra) {
            (Some(c), Some(e)) => println!(
                "server + extra CPU: {c:.2} core-s ({:.0}% of one core); {e:.0} token events per core-second",
                c / window_s.max(1e-9) * 100.0
            ),
            _ => println!("server + extra CPU: not known"),
        }
    }
    if nodes > 1 {
        for (i, url) in cli.urls.iter().enumerate() {
            let t = &node_totals[i];
            let lat = node_hists[i].lock().unwrap_or_else(|p| p.into_inner());
            let lat_text = if lat.is_empty() {
                "no latency samples".to_owned()
            } else {
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms",
                    lat.value_at_quantile(0.5) as f64 / 1000.0,
                    lat.value_at_quantile(0.99) as f64 / 1000.0
                )
            };
            println!(
                "node {i} ({url}): {} sockets, {} token events, {} member turns ok, {} errors; {lat_text}",
                node_sockets[i],
                t.token_events,
                t.done,
                t.errors()
            );
        }
    }
    if cli.redis.is_some() {
        match &redis_window {
            Some(w) => {
                let mut top: Vec<(&String, &u64)> = w.by_name.iter().collect();
                top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let top: Vec<String> = top
                    .iter()
                    .take(6)
                    .map(|(name, calls)| format!("{name} {calls}"))
                    .collect();
                println!(
                    "redis: {} commands in the window ({} per token event; {}); {} B in, {} B out ({} / {} B per token event)",
                    w.commands,
                    redis_per_token(w.commands).map_or("-".to_owned(), |x| format!("{x:.3}")),
                    top.join(", "),
                    w.net_input_bytes,
                    w.net_output_bytes,
                    redis_per_token(w.net_input_bytes)
                        .map_or("-".to_owned(), |x| format!("{x:.1}")),
                    redis_per_token(w.net_output_bytes)
                        .map_or("-".to_owned(), |x| format!("{x:.1}")),
                );
            }
            None => println!("redis: not measured (INFO could not be read)"),
        }
    }
    if let Some(c) = bench_cpu_s {
        println!("bench CPU: {c:.2} core-s");
    }
    if h.is_empty() {
        println!("latency: no timestamped tokens (use a `[fake:bench ...]` scenario)");
    } else {
        let ms = |us: u64| us as f64 / 1000.0;
        println!(
            "latency (upstream send -> client receive): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
    }
    println!(
        "member turns: {} ok of {}; errors: {} (ai:error {}, rejected {}, timeout {}, disconnected {}); index gaps {}, overlaps {}, stale {}, text mismatches {}",
        totals.done,
        totals.member_turns,
        totals.errors(),
        totals.ai_errors,
        totals.rejected,
        totals.timeouts,
        totals.disconnected,
        totals.gaps,
        totals.overlaps,
        totals.stale,
        totals.text_mismatches
    );
    if let Some(e) = totals.first_error.as_ref().or(warm.first_error.as_ref()) {
        println!("first error: {e}");
    }

    let mut result = json!({
        "mode": "fanout",
        "label": cli.label,
        "url": cli.url(),
        "run": run,
        "scenario": cli.scenario,
        "chats": cli.chats,
        "members": cli.members,
        "sockets": n,
        "connect_errors": cstats.connect_errors,
        "join_errors": cstats.join_errors,
        "connect_s": round2(cstats.elapsed.as_secs_f64()),
        "warmup_rounds": cli.warmup_turns.min(round),
        "rounds": measured_rounds,
        "truncated": truncated,
        "window_s": round3(window_s),
        "mean_round_ms": round2(mean_turn_ms),
        "token_events": totals.token_events,
        "tokens_covered": totals.tokens_covered,
        "timestamps": totals.stamps,
        "token_events_per_s": round2(per_s(totals.token_events)),
        "tokens_covered_per_s": round2(per_s(totals.tokens_covered)),
        "server_pid": cli.pid(),
        "server_cpu_s": server_cpu_s.map(round3),
        "server_cpu_util": server_cpu_s.map(|c| round2(c / window_s.max(1e-9))),
        "token_events_per_core_s": events_per_core_s.map(round2),
        "server_rss_end_bytes": rss_end,
        "bench_cpu_s": bench_cpu_s.map(round3),
        "latency_ms": {
            "p50": us_to_ms(pct(0.5)),
            "p90": us_to_ms(pct(0.9)),
            "p99": us_to_ms(pct(0.99)),
            "max": (!h.is_empty()).then(|| h.max() as f64 / 1000.0),
            "mean": (!h.is_empty()).then(|| round2(h.mean() / 1000.0)),
            "samples": h.len(),
        },
        "member_turns": totals.member_turns,
        "member_turns_ok": totals.done,
        "errors": totals.errors(),
        "ai_errors": totals.ai_errors,
        "rejected": totals.rejected,
        "timeouts": totals.timeouts,
        "disconnected": totals.disconnected,
        "index_gaps": totals.gaps,
        "overlaps": totals.overlaps,
        "stale_events": totals.stale,
        "text_mismatches": totals.text_mismatches,
        "warmup_errors": warm.errors(),
        "first_error": totals.first_error.as_ref().or(warm.first_error.as_ref()),
    });
    // Added for clusters (several URLs and pids, extras, Redis); the fields above keep their
    // single-server meaning (`url`, `server_pid`: the first; `server_cpu_s`, `server_rss_end_bytes`:
    // summed over the pids).
    let extra = json!({
        "urls": cli.urls,
        "server_pids": cli.pids,
        "per_pid": usage.per_pid.iter().zip(&rss_per_pid).map(|((pid, c), rss)| json!({
            "pid": pid,
            "cpu_s": c.map(round3),
            "rss_end_bytes": rss,
        })).collect::<Vec<_>>(),
        "per_url": (nodes > 1).then(|| cli.urls.iter().enumerate().map(|(i, url)| {
            let t = &node_totals[i];
            let lat = node_hists[i].lock().unwrap_or_else(|p| p.into_inner());
            let q = |x: f64| (!lat.is_empty()).then(|| lat.value_at_quantile(x) as f64 / 1000.0);
            json!({
                "url": url,
                "sockets": node_sockets[i],
                "token_events": t.token_events,
                "member_turns_ok": t.done,
                "errors": t.errors(),
                "latency_ms": { "p50": q(0.5), "p99": q(0.99), "samples": lat.len() },
            })
        }).collect::<Vec<_>>()),
        "extra_cpu_s": usage.extras.iter().map(|e| (e.name.clone(), json!(e.cpu_s.map(round3)))).collect::<serde_json::Map<_, _>>(),
        "extra_processes": usage.extras.iter().map(|e| (e.name.clone(), json!(e.processes))).collect::<serde_json::Map<_, _>>(),
        "extra_processes_gone": usage.extras.iter().map(|e| e.vanished).sum::<usize>(),
        "extra_cpu_total_s": usage.extra_cpu_s.map(round3),
        "total_cpu_s": total_cpu_s.map(round3),
        "token_events_per_core_s_with_extra": events_per_core_s_with_extra.map(round2),
        "redis": redis_window.as_ref().map(|w| json!({
            "commands": w.commands,
            "ops_per_token_event": redis_per_token(w.commands).map(|x| (x * 10_000.0).round() / 10_000.0),
            "commands_by_name": w.by_name,
            "net_input_bytes": w.net_input_bytes,
            "net_output_bytes": w.net_output_bytes,
            "net_bytes_per_token_event": redis_per_token(w.net_input_bytes + w.net_output_bytes).map(round2),
        })),
    });
    if let (Some(obj), Value::Object(more)) = (result.as_object_mut(), extra) {
        obj.extend(more);
    }
    println!("RESULT {result}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stamps() {
        assert_eq!(stamps("@12;").collect::<Vec<_>>(), vec![12]);
        assert_eq!(stamps("@1;@22;@333;").collect::<Vec<_>>(), vec![1, 22, 333]);
        assert_eq!(stamps("hello").count(), 0);
        assert_eq!(stamps("@x;@5").count(), 0);
    }
}
