//! Finds the model file for the tests that need it.

use std::path::PathBuf;

/// `NATTER_MODEL_PATH`, else `~/.cache/natter/models/…` (where `.ci/run` pulls it), else
/// `natter-data/models/…` in the workspace. Without a model the test is skipped with a loud
/// message, except under `CI=true`, where it fails.
pub fn model_path() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("NATTER_MODEL_PATH") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(natter_local_model::pull::model_path(
            &PathBuf::from(home).join(".cache/natter"),
        ));
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
    eprintln!("\n!!! SKIPPED: {message}\n");
    None
}
