//! natter-bench: a load generator for Natter's Socket.IO face (and for any server that speaks the
//! same subset, such as the Node baseline in `bench/node-baseline`).
//!
//! Modes:
//! * `fanout`: R chats × M members; each turn one member per chat sends a `user:message` whose
//!   text is a fake-upstream directive, and every member counts the `ai:token` events it gets and
//!   measures each token's latency from the upstream's send timestamp.
//! * `idle`: N sockets join chats and sit idle; reports the server's resident memory per socket.
//!
//! Every mode prints a human summary and one `RESULT {json}` line, and is bounded by `--timeout-s`.

mod common;
mod fanout;
mod idle;
mod procstat;
mod redis;
mod sio;
mod usage;

use std::time::Duration;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Streaming fan-out: token throughput, server CPU per token event, token latency.
    Fanout,
    /// Idle sockets: server memory per connection.
    Idle,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "natter-bench",
    version,
    about = "Socket.IO load generator for Natter"
)]
pub struct Cli {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Fanout)]
    pub mode: Mode,

    /// Base URL of the server under test (http:// or ws://). Fanout mode takes several
    /// (repeat `--url`, or a comma list): nodes of one cluster; member k of every chat
    /// connects to URL k mod n, so each chat's tokens cross nodes, and each chat's sender is
    /// on the first URL. Idle mode uses the first.
    #[arg(
        long = "url",
        value_name = "URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:4000"
    )]
    pub urls: Vec<String>,

    /// PID of the server process, for CPU (/proc/PID/stat) and memory (/proc/PID/status).
    /// Fanout mode takes several (repeat `--pid`, or a comma list): their CPU is summed, and
    /// reported per pid. Idle mode uses the first.
    #[arg(long = "pid", value_name = "PID", value_delimiter = ',')]
    pub pids: Vec<u32>,

    /// Another process whose CPU counts as the server's too, e.g. `redis=1234` (repeatable;
    /// fanout mode). Reported under NAME, and in "events per core-second with extras".
    #[arg(long, value_name = "NAME=PID", value_parser = parse_extra_pid)]
    pub extra_pid: Vec<(String, u32)>,

    /// Processes found by name whose CPU counts too: `NAME=COMM[:SUBSTRING]` sums every
    /// process whose /proc/PID/comm is COMM and whose command line contains SUBSTRING, found
    /// afresh at each end of the window, e.g. `postgres=postgres:natter_bench_db` for the
    /// backends of one database (repeatable; specs with the same NAME are summed, each process
    /// once; fanout mode).
    #[arg(long, value_name = "NAME=COMM[:SUBSTRING]", value_parser = parse_extra_procs)]
    pub extra_procs: Vec<ExtraProcs>,

    /// A Redis server (redis://[user:password@]host:port) to read `INFO all` from before and
    /// after the measured window: commands per delivered token event (fanout mode).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,

    /// A name for the server under test, copied into the RESULT line.
    #[arg(long, default_value = "server")]
    pub label: String,

    /// Chats (fanout mode).
    #[arg(long, short = 'R', default_value_t = 200)]
    pub chats: usize,

    /// Members per chat (both modes; idle mode fills chats of this size).
    #[arg(long, short = 'M', default_value_t = 4)]
    pub members: usize,

    /// Measured turn rounds (fanout mode); ignored when --duration-s is given.
    #[arg(long, short = 'T', default_value_t = 10)]
    pub turns: u64,

    /// Run measured rounds for this many seconds instead of a fixed --turns.
    #[arg(long)]
    pub duration_s: Option<f64>,

    /// Unmeasured rounds first (connection setup, JIT, caches).
    #[arg(long, default_value_t = 1)]
    pub warmup_turns: u64,

    /// The user message text: a fake-upstream directive, e.g. "[fake:bench n=50]" or
    /// "[fake:drip n=50 delay_ms=20]".
    #[arg(long, default_value = "[fake:bench n=50]")]
    pub scenario: String,

    /// Each round, chat i's message is sent i × this many microseconds after chat 0's, so
    /// that the turns (and a fake upstream's paced tokens) do not all start in one instant.
    #[arg(long, default_value_t = 0)]
    pub stagger_us: u64,

    /// Pause between turn rounds, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,

    /// Longest a turn round may take before the members still waiting count as timeouts.
    #[arg(long, default_value_t = 30.0)]
    pub turn_timeout_s: f64,

    /// Idle sockets to open (idle mode).
    #[arg(long, short = 'N', default_value_t = 2000)]
    pub idle_connections: usize,

    /// Seconds to wait after the last idle socket joined before reading memory.
    #[arg(long, default_value_t = 5.0)]
    pub settle_s: f64,

    /// Seconds to keep idle sockets open after the memory reading (answering pings) to check
    /// they stay connected and to measure idle CPU.
    #[arg(long, default_value_t = 30.0)]
    pub hold_s: f64,

    /// Sockets being opened at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,

    /// Per-socket connect + join timeout, seconds.
    #[arg(long, default_value_t = 15.0)]
    pub connect_timeout_s: f64,

    /// Also send the identity as `auth: {userId}` in the Socket.IO CONNECT packet.
    #[arg(long)]
    pub auth_user_id: bool,

    /// Run id used in chat ids (`bench-<run>-<i>`); default: derived from the clock.
    #[arg(long)]
    pub run_id: Option<String>,

    /// Overall time limit in seconds; the run reports what it has and stops by then.
    #[arg(long, default_value_t = 120.0)]
    pub timeout_s: f64,
}

/// `--extra-procs NAME=COMM[:SUBSTRING]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraProcs {
    pub name: String,
    pub comm: String,
    pub substring: Option<String>,
}

fn parse_extra_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PID, got {s:?}"))?;
    let pid = pid
        .trim()
        .parse()
        .map_err(|_| format!("expected NAME=PID, got {s:?}"))?;
    if name.is_empty() {
        return Err(format!("expected NAME=PID, got {s:?}"));
    }
    Ok((name.to_owned(), pid))
}

fn parse_extra_procs(s: &str) -> Result<ExtraProcs, String> {
    let bad = || format!("expected NAME=COMM[:SUBSTRING], got {s:?}");
    let (name, rest) = s.split_once('=').ok_or_else(bad)?;
    let (comm, substring) = match rest.split_once(':') {
        Some((c, sub)) => (c, (!sub.is_empty()).then(|| sub.to_owned())),
        None => (rest, None),
    };
    if name.is_empty() || comm.is_empty() {
        return Err(bad());
    }
    Ok(ExtraProcs {
        name: name.to_owned(),
        comm: comm.to_owned(),
        substring,
    })
}

impl Cli {
    /// The first (or only) server URL.
    pub fn url(&self) -> &str {
        self.urls
            .first()
            .map_or("http://127.0.0.1:4000", String::as_str)
    }

    /// The first (or only) server pid.
    pub fn pid(&self) -> Option<u32> {
        self.pids.first().copied()
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = rt.block_on(run(cli));
    // Don't wait for lingering connection tasks.
    rt.shutdown_timeout(Duration::from_millis(200));
    std::process::exit(code);
}

async fn run(cli: Cli) -> i32 {
    match procstat::raise_fd_limit() {
        Ok(n) if (n as usize) < cli.idle_connections.max(cli.chats * cli.members) + 64 => {
            eprintln!("warning: open-file limit is {n}; some sockets may fail to open");
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: could not raise the open-file limit: {e:#}"),
    }
    let limit = Duration::from_secs_f64(cli.timeout_s.max(1.0));
    let deadline = Instant::now() + limit;
    // The modes watch `deadline` themselves and report partial figures; this is the backstop.
    let hard = limit + Duration::from_secs(15);
    let work = async {
        match cli.mode {
            Mode::Fanout => fanout::run(&cli, deadline).await,
            Mode::Idle => idle::run(&cli, deadline).await,
        }
    };
    match tokio::time::timeout(hard, work).await {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("natter-bench: {e:#}");
            1
        }
        Err(_) => {
            eprintln!("natter-bench: gave up after {hard:?}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_pids_repeat_or_split() {
        let one = Cli::try_parse_from(["natter-bench"]).unwrap();
        assert_eq!(one.urls, vec!["http://127.0.0.1:4000"]);
        assert_eq!(one.pid(), None);
        let cli = Cli::try_parse_from([
            "natter-bench",
            "--url",
            "http://a:1,http://b:2",
            "--url",
            "http://c:3",
            "--pid",
            "10",
            "--pid",
            "11,12",
            "--extra-pid",
            "redis=99",
            "--extra-procs",
            "postgres=postgres:natter_bench_x",
            "--extra-procs",
            "pg=postgres",
        ])
        .unwrap();
        assert_eq!(cli.urls, vec!["http://a:1", "http://b:2", "http://c:3"]);
        assert_eq!(cli.url(), "http://a:1");
        assert_eq!(cli.pids, vec![10, 11, 12]);
        assert_eq!(cli.extra_pid, vec![("redis".to_owned(), 99)]);
        assert_eq!(
            cli.extra_procs[0].substring.as_deref(),
            Some("natter_bench_x")
        );
        assert_eq!(cli.extra_procs[1].comm, "postgres");
        assert_eq!(cli.extra_procs[1].substring, None);
        assert!(Cli::try_parse_from(["natter-bench", "--extra-pid", "redis"]).is_err());
        assert!(Cli::try_parse_from(["natter-bench", "--extra-procs", "=x"]).is_err());
    }
}
