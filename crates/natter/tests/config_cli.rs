//! `natter config check FILE` and `natter serve --print-config`, run as the real binary
//! (Cargo builds it for this test) with an empty environment, so keys and `NATTER_*`
//! variables of the caller do not leak in.

use std::path::Path;
use std::process::{Command, Output};

fn natter(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .expect("the natter binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_check_accepts_a_good_file_and_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = \"127.0.0.1:4100\"\nlog_format = \"json\"\nturn_timeout_secs = 30\n",
    )
    .unwrap();
    let out = natter(&["config", "check", "good.toml"], dir.path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("good.toml: valid"), "{stdout}");
    assert!(
        stdout.contains("log_format") && stdout.contains("127.0.0.1:4100"),
        "{stdout}"
    );

    for (name, body, key) in [
        // A value the server refuses at startup.
        (
            "absurd.toml",
            "turn_timeout_secs = 1e12\n",
            "turn_timeout_secs",
        ),
        ("format.toml", "log_format = \"xml\"\n", "log_format"),
        // A key that does not exist.
        ("unknown.toml", "turn_timeout = 5\n", "turn_timeout"),
        ("choice.toml", "provider = \"gpt\"\n", "provider must be"),
        // A value of the wrong type.
        ("type.toml", "max_steps = \"many\"\n", "max_steps"),
    ] {
        std::fs::write(dir.path().join(name), body).unwrap();
        let out = natter(&["config", "check", name], dir.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains(key),
            "{name}: the error should name the file and `{key}`: {stderr}"
        );
    }

    let out = natter(&["config", "check", "missing.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.toml"));
}

#[test]
fn print_config_masks_secrets_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-s3cret-s3cret-s3cret-s3cret-xyz";
    let out = natter(
        &[
            "serve",
            "--print-config",
            "--database",
            "postgres://natter:dbpass123@db.example:5432/natter",
            "--bus",
            "redis://:redispass456@cache.example:6379/",
            "--jwt-secret",
            secret,
            "--log-format",
            "json",
            "--max-steps",
            "3",
        ],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for leaked in [secret, "dbpass123", "redispass456"] {
        assert!(!stdout.contains(leaked), "`{leaked}` printed:\n{stdout}");
    }
    assert!(
        stdout.contains("postgres://natter:***@db.example:5432/natter"),
        "{stdout}"
    );
    assert!(stdout.contains("jwt_secret = \"***\""), "{stdout}");
    assert!(stdout.contains("log_format = \"json\""), "{stdout}");
    assert!(stdout.contains("max_steps = 3"), "{stdout}");
    // Defaults are filled in.
    assert!(stdout.contains("turn_timeout_secs = 120.0"), "{stdout}");
    // It did not start a server: nothing was listening or written.
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(!dir.path().join("natter-data").exists());

    // Without the masked secret, the printed settings are a file `config check` accepts.
    let printed: String = stdout
        .lines()
        .filter(|l| !l.starts_with("jwt_secret") && !l.starts_with("auth ="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("printed.toml"), printed).unwrap();
    let out = natter(&["config", "check", "printed.toml"], dir.path());
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `--data-dir` puts the database and the model under one directory, wherever `serve` is
/// started from; `--database` still wins.
#[test]
fn data_dir_holds_the_database_and_the_model() {
    let cwd = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let out = natter(
        &["serve", "--print-config", "--data-dir", data_dir],
        cwd.path(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let db = data.path().join("natter.db");
    let model = data
        .path()
        .join("models")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        stdout.contains(&format!("database = \"sqlite://{}\"", db.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("model_path = \"{}\"", model.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("data_dir = \"{data_dir}\"")),
        "{stdout}"
    );

    // The TOML key, with an explicit database winning over it.
    std::fs::write(
        cwd.path().join("s.toml"),
        format!("data_dir = \"{data_dir}\"\ndatabase = \"sqlite://./mine.db\"\n"),
    )
    .unwrap();
    let out = natter(
        &["serve", "--print-config", "--config", "s.toml"],
        cwd.path(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("database = \"sqlite://./mine.db\""),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("model_path = \"{}\"", model.display())),
        "{stdout}"
    );

    // A real start: the database is created under the data dir, not the working directory.
    let mut child = Command::new(env!("CARGO_BIN_EXE_natter"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir])
        .current_dir(cwd.path())
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the natter binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !db.exists() && std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("natter serve exited early: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(db.exists(), "no database at {}", db.display());
    assert!(!cwd.path().join("natter-data").exists());
}
