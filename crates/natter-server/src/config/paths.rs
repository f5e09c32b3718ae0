//! Where things live on disk: the data dir, the default SQLite URL in it, the per-user cache
//! and the local model file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{DEFAULT_DATA_DIR, Settings};

/// The model file's place in a data dir or in the per-user cache (where `natter model pull`
/// puts it).
pub const MODEL_IN_DATA_DIR: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The per-user cache that `natter model pull` fills by default, so one download serves
/// every data dir and checkout of this user: `$XDG_CACHE_HOME/natter` (an absolute one, as
/// the XDG spec asks), else `$HOME/.cache/natter`; `None` without either.
pub fn user_cache_dir() -> Option<PathBuf> {
    let set = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    set("XDG_CACHE_HOME")
        .filter(|d| d.is_absolute())
        .or_else(|| set("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("natter"))
}

/// The model file `serve` uses when `model_path` is not set: the data dir's, else the
/// per-user cache's when only that one exists. When neither exists, the data dir's (the
/// path the "no model" messages name).
pub fn default_model_path(data_dir: &Path, cache_dir: Option<&Path>) -> PathBuf {
    let in_data_dir = data_dir.join(MODEL_IN_DATA_DIR);
    match cache_dir.map(|c| c.join(MODEL_IN_DATA_DIR)) {
        Some(cached) if !in_data_dir.is_file() && cached.is_file() => cached,
        _ => in_data_dir,
    }
}

/// The data dir `s` names, else the default.
pub(super) fn data_dir(s: &Settings) -> anyhow::Result<PathBuf> {
    match &s.data_dir {
        // An empty one would silently put the database in the working directory.
        Some(d) if d.as_os_str().is_empty() => bail!("data_dir must not be empty"),
        Some(d) => Ok(d.clone()),
        None => Ok(PathBuf::from(DEFAULT_DATA_DIR)),
    }
}

/// `sqlite://` URL of the database file in `data_dir` (the default `database`).
pub(super) fn database_in(data_dir: &Path) -> anyhow::Result<String> {
    let file = data_dir.join("natter.db");
    // The URL parser reads `?` / `#` as the start of options and decodes `%XX`.
    let path = file
        .to_str()
        .filter(|p| !p.contains(['?', '#', '%']))
        .with_context(|| {
            format!(
                "data_dir {} cannot be written as a sqlite:// URL (not UTF-8, or has `?`, `#` or `%`); set database",
                data_dir.display()
            )
        })?;
    // `./` so a relative default reads as one (sqlite://./natter-data/natter.db).
    let dot = if file.is_relative() && !path.starts_with('.') {
        "./"
    } else {
        ""
    };
    Ok(format!("sqlite://{dot}{path}"))
}

/// Settings of the local model provider; `None` takes `natter-local-model`'s default.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalModelConfig {
    pub path: PathBuf,
    pub workers: Option<usize>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<u64>,
    pub max_tokens: Option<usize>,
    pub chat_template: Option<PathBuf>,
    pub threads: Option<usize>,
    pub gpu_layers: Option<u32>,
}

/// More threads or GPU layers than this is a typo, not a machine or a model.
pub const MAX_LOCAL_THREADS: usize = 1024;
pub const MAX_LOCAL_GPU_LAYERS: u32 = 1024;

pub(super) fn local_model_config(
    s: &Settings,
    data_dir: &Path,
) -> anyhow::Result<LocalModelConfig> {
    if let Some(t) = s.local_temperature
        && !(0.0..=5.0).contains(&t)
    {
        bail!("local_temperature must be between 0 and 5, got {t}");
    }
    if let Some(p) = s.local_top_p
        && !(p > 0.0 && p <= 1.0)
    {
        bail!("local_top_p must be in (0, 1], got {p}");
    }
    if let Some(n) = s.local_threads
        && !(1..=MAX_LOCAL_THREADS).contains(&n)
    {
        bail!("local_threads must be between 1 and {MAX_LOCAL_THREADS}, got {n}");
    }
    if let Some(n) = s.local_gpu_layers
        && n > MAX_LOCAL_GPU_LAYERS
    {
        bail!("local_gpu_layers must be between 0 and {MAX_LOCAL_GPU_LAYERS}, got {n}");
    }
    Ok(LocalModelConfig {
        path: s
            .model_path
            .clone()
            .unwrap_or_else(|| default_model_path(data_dir, user_cache_dir().as_deref())),
        workers: s.local_workers.map(|n| n.clamp(1, 64)),
        temperature: s.local_temperature,
        top_p: s.local_top_p,
        seed: s.local_seed,
        max_tokens: s.local_max_tokens.map(|n| n.clamp(1, 4096)),
        // Read when the model loads, so a missing file fails only with `--provider local`.
        chat_template: s.chat_template.clone(),
        threads: s.local_threads,
        gpu_layers: s.local_gpu_layers,
    })
}
