//! `/openapi.json` and the routes the server mounts agree: every documented path answers
//! every documented method (not the router's bare 404, not 405), every other method on it is
//! 405, and no route is mounted outside the `routes!` lists the document is built from.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

struct Natter(Child);

impl Drop for Natter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `natter serve` on a free port, auth off, an upstream that is never called.
fn start(data: &Path) -> (Natter, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args([
            "--provider",
            "openai",
            "--openai-base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "fake-model",
        ])
        .env("OPENAI_API_KEY", "test-key")
        .env("NATTER_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning natter");
    let stdout = child.stdout.take().expect("natter's stdout");
    let natter = Natter(child);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("reading natter's stdout");
        if let Some(at) = line.find("listening on http://") {
            let addr = line[at + "listening on http://".len()..].trim().to_owned();
            return (natter, addr);
        }
    }
    panic!("natter exited without listening");
}

/// One request; the status and the `content-type` (the body is not read: some routes stream).
fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).expect("connecting");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let body = body.unwrap_or("");
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("writing the request");
    let mut reader = BufReader::new(tcp);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut content_type = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("header") == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-type")
        {
            content_type = value.trim().to_owned();
        }
    }
    (status, content_type)
}

fn get_json(addr: &str, path: &str) -> Value {
    let mut tcp = TcpStream::connect(addr).expect("connecting");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("writing");
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).expect("reading");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).expect("a JSON document")
}

/// A concrete path for a templated one; query parameters keep long-lived streams from
/// starting (an unknown `chatKey` fails before the stream opens).
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("a closed parameter") + open;
        out.push_str("openapi-probe");
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out + "?chatKey=openapi-probe-missing"
}

#[test]
fn every_route_is_documented_with_its_methods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_natter, addr) = start(dir.path());
    let doc = get_json(&addr, "/openapi.json");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut seen = BTreeSet::new();
    for (path, item) in paths {
        assert!(
            !path.starts_with("/socket.io"),
            "Socket.IO is not an HTTP API"
        );
        let documented: BTreeSet<String> = item
            .as_object()
            .expect("a path item")
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .filter(|m| METHODS.contains(&m.as_str()))
            .collect();
        assert!(!documented.is_empty(), "{path} has no operation");
        for method in METHODS {
            let body = matches!(method, "POST" | "PUT" | "PATCH").then_some("{}");
            let (status, content_type) = request(&addr, method, &concrete(path), body);
            if documented.contains(method) {
                // The router's own 404 (no such route) has no JSON body; a handler's has.
                let routed = status != 404 || content_type.contains("json");
                assert!(
                    status != 405 && routed,
                    "{method} {path} is documented but not served ({status} {content_type})"
                );
                seen.insert(format!("{method} {path}"));
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is served ({status}) but not documented"
                );
            }
        }
    }
    // The faces' routes, so a route list that lost one fails here too.
    for must in [
        "POST /api/chat",
        "GET /api/chat/ws",
        "GET /api/chat/{id}/stream",
        "POST /api/chat/{id}/stop",
        "POST /api/v1/chat/send",
        "GET /api/v1/chat/stream",
        "GET /api/v1/chats",
        "PATCH /api/v1/chats/{chatKey}",
        "GET /api/v1/chats/{chatKey}/messages",
        "GET /api/v1/agents",
        "POST /api/v1/attachments",
        "GET /api/v1/attachments/{id}",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
    ] {
        assert!(seen.contains(must), "{must} is not in the document");
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Routes mounted by hand (`.route(…)`) bypass the document: only the playground's static
/// pages, which are not an API, may be.
#[test]
fn no_route_is_mounted_outside_the_documented_lists() {
    let crates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["natter-http/src", "natter-server/src"] {
        rust_files(&crates.join(dir), &mut files);
    }
    for file in files {
        if file.ends_with("playground.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        for needle in [".route(", ".route_service(", ".nest(", ".nest_service("] {
            assert!(
                !text.contains(needle),
                "{} mounts a route with `{needle}`: use `routes!` so it is in /openapi.json",
                file.display()
            );
        }
    }
}
