//! Finds the model file for the tests that need it.

use std::io::Write;
use std::path::PathBuf;

/// `NATTER_MODEL_PATH`, else the per-user cache (`$XDG_CACHE_HOME/natter/models/…` or
/// `~/.cache/natter/models/…`, where `natter model pull` and `scripts/test` put it), else
/// `natter-data/models/…` in the workspace. Without a model the test is skipped with a loud
/// message, except under `CI=true`, where it fails.
pub fn model_path() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("NATTER_MODEL_PATH") {
        candidates.push(PathBuf::from(p));
    }
    // As natter_server::config::user_cache_dir, which this crate cannot depend on.
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(cache) = env("XDG_CACHE_HOME")
        .filter(|d| d.is_absolute())
        .or_else(|| env("HOME").map(|home| home.join(".cache")))
    {
        candidates.push(natter_local_model::pull::model_path(&cache.join("natter")));
    }
    candidates.push(natter_local_model::pull::model_path(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../natter-data"),
    ));
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return Some(found.clone());
    }
    let message = format!(
        "the model file is missing (looked at {candidates:?}); run `natter model pull` or set NATTER_MODEL_PATH"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    // Straight to stderr: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "\n!!! SKIPPED: {message}\n");
    None
}

/// The real model loaded once per test binary, with its own chat template; `None` when the
/// file is missing (as [`model_path`]).
#[allow(dead_code)] // not every test binary loads the engine (tests/pull.rs does not)
pub fn engine() -> Option<&'static natter_local_model::llama::LlamaEngine> {
    use std::sync::OnceLock;
    static ENGINE: OnceLock<Option<natter_local_model::llama::LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let path = model_path()?;
            match natter_local_model::llama::LlamaEngine::load(&path, None, 0) {
                Ok(engine) => Some(engine),
                Err(e) => panic!("loading {}: {e}", path.display()),
            }
        })
        .as_ref()
}
