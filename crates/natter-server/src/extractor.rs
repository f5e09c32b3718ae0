//! Document text extraction in a child process (CONTRACT §7.6), so a hostile PDF cannot hang
//! or exhaust the server.
//!
//! A thread running a parser cannot be stopped, so PDFs are parsed by the `natter` binary
//! itself, re-executed as `natter extract-document` ([`run_child`]): the bytes go in on
//! stdin, JSON lines ([`ChildMessage`]) come back on stdout. The parent
//! ([`ChildProcessExtractor`]) kills it at a wall-clock timeout, and the child runs under
//! `setrlimit` limits set between fork and exec: address space (`RLIMIT_AS`, so a
//! decompression bomb fails an allocation instead of eating the machine's memory), CPU seconds
//! (`RLIMIT_CPU`, a second stop) and no core dumps. What it writes back is bounded too. Text
//! types need no parser (a UTF-8 check), so they are read in the server's process.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use natter_attachments::extract::{
    CODE_TIMEOUT, CODE_TOO_LARGE, CODE_UNREADABLE, ChildMessage, DEFAULT_MAX_TEXT_BYTES,
    ExtractError, Extracted, extract, is_pdf,
};
use natter_core::processing::{DocumentExtractor, InProcessExtractor, Progress};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The hidden subcommand the server re-executes itself with.
pub const SUBCOMMAND: &str = "extract-document";

/// Most bytes a child reads from stdin (the server never sends more than
/// `--max-attachment-bytes`; this only keeps a stray caller from filling memory).
const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Runs PDFs through `natter extract-document` in a child process; everything else in
/// process.
#[derive(Debug, Clone)]
pub struct ChildProcessExtractor {
    /// The `natter` binary.
    pub program: PathBuf,
    /// Wall-clock bound; the child is killed past it.
    pub timeout: Duration,
    /// The child's address-space limit (`RLIMIT_AS`), bytes.
    pub memory_bytes: u64,
    pub max_text_bytes: usize,
}

impl ChildProcessExtractor {
    /// Re-executes this very binary (which must be `natter`, or have its `extract-document`
    /// subcommand).
    pub fn from_current_exe(timeout: Duration, memory_bytes: u64) -> std::io::Result<Self> {
        Ok(Self {
            program: std::env::current_exe()?,
            timeout,
            memory_bytes,
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
        })
    }

    async fn run(
        &self,
        mime: &str,
        bytes: Vec<u8>,
        progress: Progress,
    ) -> Result<Extracted, ExtractError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.arg(SUBCOMMAND)
            .arg("--mime")
            .arg(mime)
            .arg("--max-text-bytes")
            .arg(self.max_text_bytes.to_string())
            // Nothing of the server's environment (secrets, API keys) reaches the parser.
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        {
            let memory = self.memory_bytes;
            // A second bound on time in case the wall clock is not enough (a stopped parent).
            let cpu = self.timeout.as_secs().saturating_add(1);
            // SAFETY: between fork and exec only async-signal-safe calls are allowed;
            // setrlimit is one, and the closure allocates nothing.
            unsafe {
                cmd.pre_exec(move || limit_child(memory, cpu));
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            ExtractError::new(
                CODE_UNREADABLE,
                format!("the document reader could not start: {e}"),
            )
        })?;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ExtractError::new(
                CODE_UNREADABLE,
                "the document reader has no pipes",
            ));
        };
        // JSON escapes at most multiply text by 6 (`\u0000`); progress lines are small.
        let max_output = (self.max_text_bytes as u64).saturating_mul(6) + 64 * 1024;
        let write = async move {
            // The child may die before reading everything: that shows in its result.
            let _ = stdin.write_all(&bytes).await;
            drop(stdin);
        };
        let read = async {
            let mut lines = BufReader::new(stdout.take(max_output)).lines();
            let mut read_bytes = 0u64;
            while let Ok(Some(line)) = lines.next_line().await {
                read_bytes += line.len() as u64 + 1;
                match serde_json::from_str::<ChildMessage>(&line) {
                    Ok(ChildMessage::Progress { percent }) => progress(percent),
                    Ok(ChildMessage::Done(x)) => return Ok(Some(x)),
                    Ok(ChildMessage::Failed(e)) => return Err(e),
                    Err(_) => break,
                }
            }
            if read_bytes >= max_output {
                return Err(ExtractError::new(
                    CODE_TOO_LARGE,
                    "the document's text is longer than allowed",
                ));
            }
            Ok(None)
        };
        let errors = async {
            // Keep the start (the reason), drain the rest so the child never blocks on it.
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if head.len() < 8192 {
                    head.extend_from_slice(&buf[..n]);
                }
            }
            String::from_utf8_lossy(&head).into_owned()
        };
        let outcome = tokio::time::timeout(self.timeout, async {
            let ((), result, stderr) = tokio::join!(write, read, errors);
            let status = child.wait().await;
            (result, stderr, status)
        })
        .await;
        let (result, stderr, status) = match outcome {
            Ok(x) => x,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(ExtractError::new(
                    CODE_TIMEOUT,
                    format!(
                        "reading the document took longer than {} s",
                        self.timeout.as_secs()
                    ),
                ));
            }
        };
        match result {
            Ok(Some(x)) => Ok(x),
            Err(e) => Err(e),
            Ok(None) => Err(died(&stderr, status, self.memory_bytes)),
        }
    }
}

/// Why a child ended without a result.
fn died(
    stderr: &str,
    status: std::io::Result<std::process::ExitStatus>,
    memory_bytes: u64,
) -> ExtractError {
    if stderr.contains("memory allocation") || stderr.contains("out of memory") {
        return ExtractError::new(
            CODE_TOO_LARGE,
            format!(
                "reading the document needed more than {} MiB of memory",
                memory_bytes / (1024 * 1024)
            ),
        );
    }
    #[cfg(unix)]
    if let Ok(status) = &status {
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(libc::SIGXCPU) {
            return ExtractError::new(CODE_TIMEOUT, "reading the document used too much CPU time");
        }
    }
    let how = match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::debug!(%how, stderr = %stderr.chars().take(500).collect::<String>(), "document reader died");
    ExtractError::new(
        CODE_UNREADABLE,
        format!("the document reader stopped on this file ({how})"),
    )
}

#[cfg(unix)]
fn limit_child(memory_bytes: u64, cpu_secs: u64) -> std::io::Result<()> {
    fn set(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
        let limit = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: a plain system call on a stack value.
        if unsafe { libc::setrlimit(resource, &limit) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    set(libc::RLIMIT_AS, memory_bytes)?;
    set(libc::RLIMIT_CPU, cpu_secs)?;
    set(libc::RLIMIT_CORE, 0)
}

#[async_trait]
impl DocumentExtractor for ChildProcessExtractor {
    async fn extract(
        &self,
        mime_type: &str,
        bytes: Vec<u8>,
        progress: Progress,
    ) -> Result<Extracted, ExtractError> {
        if is_pdf(mime_type) {
            self.run(mime_type, bytes, progress).await
        } else {
            InProcessExtractor {
                timeout: self.timeout,
                max_text_bytes: self.max_text_bytes,
            }
            .extract(mime_type, bytes, progress)
            .await
        }
    }
}

/// `natter extract-document`: reads a document on stdin, writes [`ChildMessage`] lines on
/// stdout (progress, then one result). Exit code 0 whenever a result was written.
pub fn run_child(mime: &str, max_text_bytes: usize) -> std::process::ExitCode {
    use std::io::{Read, Write};
    #[cfg(unix)]
    let mut out: Box<dyn Write> = {
        use std::os::fd::FromRawFd;
        // stdout is the result channel: keep a handle on it and point fd 1 at stderr, so
        // nothing a library prints can corrupt the lines.
        // SAFETY: dup/dup2 on the standard descriptors; the new fd is owned by the File.
        let fd = unsafe { libc::dup(1) };
        if fd < 0 || unsafe { libc::dup2(2, 1) } < 0 {
            eprintln!("natter extract-document: cannot set up stdout");
            return std::process::ExitCode::from(2);
        }
        Box::new(unsafe { std::fs::File::from_raw_fd(fd) })
    };
    #[cfg(not(unix))]
    let mut out: Box<dyn Write> = Box::new(std::io::stdout());
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(MAX_INPUT_BYTES)
        .read_to_end(&mut bytes)
    {
        eprintln!("natter extract-document: reading stdin: {e}");
        return std::process::ExitCode::from(2);
    }
    fn send(out: &mut dyn Write, message: &ChildMessage) {
        if let Ok(line) = serde_json::to_string(message) {
            let _ = out.write_all(line.as_bytes());
            let _ = out.write_all(b"\n");
            let _ = out.flush();
        }
    }
    let result = extract(mime, &bytes, max_text_bytes, &mut |percent| {
        send(&mut *out, &ChildMessage::Progress { percent })
    });
    let message = match result {
        Ok(x) => ChildMessage::Done(x),
        Err(e) => ChildMessage::Failed(e),
    };
    send(&mut *out, &message);
    std::process::ExitCode::SUCCESS
}
