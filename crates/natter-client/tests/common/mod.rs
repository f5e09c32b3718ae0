//! Test helpers: the real `natter` binary against the fake LLM upstream (as
//! tests/interop/lib/harness.mjs starts them), and a raw Engine.IO server for what the real
//! server never does (ask a client for an ack, ping fast, stop pinging).

#![allow(dead_code)] // each test file uses a different part

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The binaries these tests run, from `$NATTER_BIN_DIR` when it is set (e.g. release builds),
/// else from this test's own profile directory, built there by `cargo build` unless they are
/// newer than every source file. Cargo gives a test `CARGO_BIN_EXE_*` only for its own
/// package's binaries, and these are other packages' (`natter`, `natter-fake-upstream`).
/// Decided once per test binary; the server tested is never older than its sources.
fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("NATTER_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        assert!(
            path.is_file(),
            "{} is missing (NATTER_BIN_DIR is set): build it, or unset NATTER_BIN_DIR to let the \
             test build it",
            path.display()
        );
        return path;
    }
    static BUILT: OnceLock<Result<HashMap<String, PathBuf>, String>> = OnceLock::new();
    match BUILT.get_or_init(build_binaries) {
        Ok(built) => built
            .get(name)
            .unwrap_or_else(|| panic!("`cargo build` did not report the binary {name}"))
            .clone(),
        Err(e) => panic!("{e}"),
    }
}

const BINARIES: [&str; 2] = ["natter", "natter-fake-upstream"];

/// `cargo build -p natter -p natter-fake-upstream` with this test's profile (the directory the
/// test runs from: TARGET/PROFILE/deps/) and target directory (`CARGO_TARGET_DIR` and the
/// Cargo config are inherited); returns the binaries' paths as Cargo reports them.
///
/// Skipped when the binaries in the profile directory are newer than every source file, as
/// right after `cargo test --workspace` built them: building them again for this package
/// alone would resolve other features and recompile about 20 dependencies (minutes on 2
/// cores) for nothing.
fn build_binaries() -> Result<HashMap<String, PathBuf>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this test's own path: {e}"))?;
    if let Some(dir) = exe.parent().and_then(Path::parent) {
        let present: HashMap<String, PathBuf> = BINARIES
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    dir.join(format!("{n}{}", std::env::consts::EXE_SUFFIX)),
                )
            })
            .collect();
        if present.values().all(|bin| newer_than_sources(bin)) {
            return Ok(present);
        }
    }
    let profile = match exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
    {
        // `debug` is the directory of the dev and test profiles.
        Some("debug") | None => "dev",
        Some(dir) => dir,
    }
    .to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Straight to stderr: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "natter-client tests: cargo build --profile {profile} -p natter -p natter-fake-upstream \
         (the binaries they run)"
    );
    let out = std::process::Command::new(&cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--profile", &profile])
        .args(["--message-format", "json-render-diagnostics"])
        .args(["-p", "natter", "--bin", "natter"])
        .args([
            "-p",
            "natter-fake-upstream",
            "--bin",
            "natter-fake-upstream",
        ])
        .stdin(Stdio::null())
        // Cargo's progress and errors go where the person running the tests sees them.
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            format!(
                "could not run {}: {e} (or set NATTER_BIN_DIR)",
                cargo.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "building natter and natter-fake-upstream failed ({}); see cargo's output above",
            out.status
        ));
    }
    let mut built = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(name), Some(exe)) =
            (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            built.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    Ok(built)
}

/// Whether `bin` was modified after every file of the workspace's crates and tools and its
/// Cargo.toml and Cargo.lock (any doubt, such as an unreadable time, says no).
fn newer_than_sources(bin: &Path) -> bool {
    fn newest_under(path: &Path, bin_time: std::time::SystemTime) -> bool {
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        if meta.is_dir() {
            let skip = matches!(
                path.file_name().and_then(|n| n.to_str()),
                Some("target" | "node_modules" | ".git")
            );
            return skip
                || std::fs::read_dir(path).is_ok_and(|entries| {
                    entries.flatten().all(|e| newest_under(&e.path(), bin_time))
                });
        }
        meta.modified().is_ok_and(|t| t <= bin_time)
    }
    let Ok(bin_time) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    ["crates", "tools", "Cargo.toml", "Cargo.lock"]
        .iter()
        .all(|p| newest_under(&root.join(p), bin_time))
}

/// Spawns `bin` and waits (20 s at most) for it to print `listening on http://…`.
async fn start_listening(bin: &str, args: &[String], env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new(binary(bin));
    cmd.args(args)
        .env(
            "NATTER_LOG",
            std::env::var("NATTER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("NATTER_TEST_VERBOSE").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {bin}: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(at) = line.find("listening on http://") {
                let url = line[at + "listening on ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                return Some(url);
            }
        }
        None
    })
    .await
    .unwrap_or_else(|_| panic!("{bin} did not print `listening on` within 20 s"))
    .unwrap_or_else(|| panic!("{bin} exited before listening (run with NATTER_TEST_VERBOSE=1)"));
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

pub struct FakeUpstream {
    _child: Child,
    pub url: String,
}

pub async fn start_fake_upstream() -> FakeUpstream {
    let (child, url) = start_listening(
        "natter-fake-upstream",
        &["--listen".into(), "127.0.0.1:0".into()],
        &[],
    )
    .await;
    FakeUpstream { _child: child, url }
}

/// Rate limits off: tests send bursts from one user.
const NO_RATE_LIMITS: &[&str] = &[
    "--message-rate-per-connection",
    "0",
    "--message-rate-per-user",
    "0",
    "--message-rate-per-ip",
    "0",
    "--turn-rate-per-connection",
    "0",
    "--turn-rate-per-user",
    "0",
    "--turn-rate-per-ip",
    "0",
];

pub struct Natter {
    child: Child,
    pub url: String,
    pub port: u16,
    data_dir: PathBuf,
    upstream_url: String,
    extra: Vec<String>,
}

impl Natter {
    /// `natter serve` on a free port with a fresh database in `data_dir`.
    pub async fn start(upstream: &FakeUpstream, data_dir: &Path, extra: &[&str]) -> Natter {
        Self::start_on(
            "127.0.0.1:0",
            &upstream.url,
            data_dir,
            extra.iter().map(|s| s.to_string()).collect(),
        )
        .await
    }

    async fn start_on(
        listen: &str,
        upstream_url: &str,
        data_dir: &Path,
        extra: Vec<String>,
    ) -> Natter {
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            listen,
            "--database",
            &format!("sqlite://{}/natter.db", data_dir.display()),
            "--sqlite-durability",
            "normal",
            "--provider",
            "openai",
            "--openai-base-url",
            &format!("{upstream_url}/v1"),
            "--model",
            "fake-model",
            "--retry-base-delay-ms",
            "50",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(NO_RATE_LIMITS.iter().map(|s| s.to_string()));
        args.extend(extra.iter().cloned());
        let (child, url) =
            start_listening("natter", &args, &[("OPENAI_API_KEY", "test-key")]).await;
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        Natter {
            child,
            url,
            port,
            data_dir: data_dir.to_owned(),
            upstream_url: upstream_url.to_owned(),
            extra,
        }
    }

    /// SIGTERM, then waits (20 s at most) for the server to exit: a clean shutdown.
    pub async fn terminate(&mut self) {
        if let Some(pid) = self.child.id() {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            assert!(
                sent.as_ref().is_ok_and(|s| s.success()),
                "kill -TERM {pid}: {sent:?}"
            );
        }
        let exited = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("natter exits within 20 s of SIGTERM");
        assert!(
            exited.as_ref().is_ok_and(|s| s.success()),
            "natter's exit after SIGTERM: {exited:?}"
        );
    }

    /// SIGKILL: no goodbye to the clients, as in a crash.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts the server again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.kill().await;
        let listen = format!("127.0.0.1:{}", self.port);
        let again = Self::start_on(
            &listen,
            &self.upstream_url.clone(),
            &self.data_dir.clone(),
            self.extra.clone(),
        )
        .await;
        *self = again;
    }
}

/// A TCP forwarder that the test can close to new connections, to hold a client off while
/// other clients make events it will have to recover.
pub struct Gate {
    pub url: String,
    open: Arc<AtomicBool>,
}

impl Gate {
    pub async fn start(backend_port: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let port = listener.local_addr().expect("gate address").port();
        let open = Arc::new(AtomicBool::new(true));
        let is_open = open.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !is_open.load(Ordering::SeqCst) {
                    drop(client); // refused: the client sees the connection close at once
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut backend) = TcpStream::connect(("127.0.0.1", backend_port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
                    }
                });
            }
        });
        Gate {
            url: format!("http://127.0.0.1:{port}"),
            open,
        }
    }

    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }
}

// ------------------------------------------------------------------ raw Engine.IO server

pub type RawWs = WebSocketStream<TcpStream>;

pub async fn raw_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind raw server");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("raw server address")
    );
    (listener, url)
}

/// Accepts one WebSocket and sends the Engine.IO OPEN packet with these heartbeat settings.
pub async fn raw_accept(
    listener: &TcpListener,
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
) -> RawWs {
    let (tcp, _) = listener.accept().await.expect("accept");
    let mut ws = tokio_tungstenite::accept_async(tcp)
        .await
        .expect("websocket handshake");
    let open = format!(
        r#"0{{"sid":"raw-sid","upgrades":[],"pingInterval":{ping_interval_ms},"pingTimeout":{ping_timeout_ms},"maxPayload":1000000}}"#
    );
    ws.send(Message::text(open)).await.expect("send open");
    ws
}

/// The next text frame, within 5 s.
pub async fn raw_next_text(ws: &mut RawWs) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("the connection is open")
            .expect("a valid frame");
        if let Message::Text(t) = msg {
            return t.as_str().to_owned();
        }
    }
}

/// Reads the client's namespace CONNECT (returning its auth JSON) and accepts it.
pub async fn raw_accept_namespace(ws: &mut RawWs) -> serde_json::Value {
    let connect = raw_next_text(ws).await;
    let auth = connect
        .strip_prefix("40")
        .unwrap_or_else(|| panic!("expected a namespace CONNECT, got {connect:?}"));
    let auth = if auth.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(auth).expect("auth is JSON")
    };
    ws.send(Message::text(r#"40{"sid":"raw-socket"}"#))
        .await
        .expect("send connect");
    auth
}
