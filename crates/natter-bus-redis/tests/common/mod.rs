//! A `redis-server` of the test's own, on a free port, killed on drop (and restartable).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use natter_bus_redis::{RedisConfig, RedisNode};
use natter_core::bus::Bus;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

fn binary_present() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

impl RedisServer {
    /// Starts a server, or `None` (after saying so loudly) when `redis-server` is not
    /// installed; with `CI=true` a missing server fails the test instead.
    pub fn start() -> Option<Self> {
        if !binary_present() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "redis-server not found, and CI=true: install it (apt-get install redis-server)"
                );
            }
            // Straight to stderr: the test harness captures `eprintln!` of passing tests.
            let _ = std::io::stderr().write_all(b"!!! SKIPPED: redis-server not found\n");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = Self { port, child: None };
        server.spawn();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.pong() {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pong(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// Kills the server (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs one command with redis-cli (for raw publishes and inspection).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A short timeout so outage tests run quickly.
pub fn config(url: &str) -> RedisConfig {
    let mut c = RedisConfig::new(url);
    c.op_timeout = Duration::from_millis(1000);
    c.bus_capacity = 4096;
    c
}

/// Nodes of one Redis, created on first use (the conformance suite's view).
pub struct Nodes {
    pub url: String,
    pub capacity: usize,
    pub nodes: Mutex<HashMap<usize, RedisNode>>,
}

impl Nodes {
    pub fn new(url: String, capacity: usize) -> Self {
        Self {
            url,
            capacity,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    pub async fn get(&self, i: usize) -> RedisNode {
        if let Some(n) = self.nodes.lock().unwrap().get(&i) {
            return n.clone();
        }
        let mut cfg = config(&self.url);
        cfg.bus_capacity = self.capacity;
        let node = RedisNode::connect(cfg).await.expect("connect");
        self.nodes.lock().unwrap().entry(i).or_insert(node).clone()
    }
}

#[async_trait]
impl natter_bus_tests::Cluster for Nodes {
    async fn node(&self, i: usize) -> Arc<dyn Bus> {
        self.get(i).await.bus()
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}
