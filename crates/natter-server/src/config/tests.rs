use std::path::Path;

use super::*;

#[test]
fn attachments_to_the_model_from_toml() {
    let toml = r#"
        vision = "off"
        attachment_text_budget = 500
        attachment_processing_timeout_secs = 2.5
    "#;
    let s: Settings = toml::from_str(toml).unwrap();
    let cfg = ServerConfig::resolve(s, ApiKeys::default()).unwrap();
    assert!(!cfg.core.attachments.vision);
    assert_eq!(cfg.core.attachments.text_budget, 500);
    assert_eq!(
        cfg.core.attachments.processing_timeout,
        Duration::from_millis(2500)
    );
    let s: Settings = toml::from_str("").unwrap();
    assert!(
        ServerConfig::resolve(s, ApiKeys::default())
            .unwrap()
            .core
            .attachments
            .vision
    );
    for bad in [
        r#"vision = "maybe""#,
        "attachment_processing_timeout_secs = 99999",
    ] {
        let s: Settings = toml::from_str(bad).unwrap();
        assert!(
            ServerConfig::resolve(s, ApiKeys::default()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn tools_from_flags_and_toml() {
    let toml = r#"
        tools = ["current_time", "http_get"]
        http_get_allow = ["https://api.example.com/"]
        max_steps = 3
        [[client_tools]]
        name = "pick_color"
        description = "Ask the user"
        parameters = { type = "object", properties = { palette = { type = "string" } } }
    "#;
    let s: Settings = toml::from_str(toml).unwrap();
    let cfg = ServerConfig::resolve(s, ApiKeys::default()).unwrap();
    assert!(cfg.tools.current_time);
    assert_eq!(
        cfg.tools.http_get_allow.as_deref(),
        Some(&["https://api.example.com/".to_owned()][..])
    );
    assert_eq!(cfg.tools.client[0].name, "pick_color");
    assert_eq!(
        cfg.tools.client[0].parameters["properties"]["palette"]["type"],
        "string"
    );
    assert_eq!(cfg.core.max_steps, 3);

    let refused = |toml: &str| {
        let s: Settings = toml::from_str(toml).unwrap();
        ServerConfig::resolve(s, ApiKeys::default())
            .unwrap_err()
            .to_string()
    };
    assert!(refused(r#"tools = ["teleport"]"#).contains("unknown tool"));
    assert!(refused(r#"tools = ["http_get"]"#).contains("--http-get-allow"));
    assert!(refused("tools = [\"http_get\"]\nhttp_get_allow = [\"ftp://x/\"]").contains("http(s)"));
    assert!(refused("max_steps = 0").contains("at least 1"));
    assert!(refused("[[client_tools]]\nname = \"bad name\"").contains("letters, digits"));
    assert!(
        refused("[[client_tools]]\nname = \"x\"\nparameters = { type = 5 }")
            .contains("schema is invalid")
    );
}

#[test]
fn agents_and_providers_from_toml() {
    let toml = r#"
        tools = ["current_time"]
        model = "server-model"
        [[client_tools]]
        name = "pick_color"
        [[providers]]
        name = "second"
        kind = "openai"
        base_url = "http://127.0.0.1:9/v1"
        [[agents]]
        id = "support"
        name = "Support"
        description = "Orders"
        system_prompt = "You help."
        temperature = 0.5
        tools = ["current_time", "pick_color"]
        [[agents]]
        id = "sales"
        name = "Sales"
        system_prompt = "You sell."
        provider = "second"
        tools = []
        [[agents]]
        id = "canned"
        name = "Canned"
        system_prompt = "x"
        provider = "demo"
    "#;
    let s: Settings = toml::from_str(toml).unwrap();
    let keys = ApiKeys {
        openai: Some("sk".into()),
        anthropic: None,
    };
    let cfg = ServerConfig::resolve(s.clone(), keys.clone()).unwrap();
    assert_eq!(cfg.provider, ProviderKind::OpenAi);
    let ids: Vec<&str> = cfg.agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["support", "sales", "canned"]);
    // Unnamed provider: the server's, with its model.
    assert_eq!(cfg.agents[0].provider, None);
    assert_eq!(cfg.agents[0].model, "server-model");
    assert_eq!(cfg.agents[0].temperature, Some(0.5));
    assert_eq!(cfg.agents[0].description.as_deref(), Some("Orders"));
    // A declared provider: its kind's default model, the kind's usual key.
    assert_eq!(cfg.agents[1].provider.as_deref(), Some("second"));
    assert_eq!(cfg.agents[1].model, "gpt-4o-mini");
    assert_eq!(cfg.agents[1].tools.as_deref(), Some(&[][..]));
    assert_eq!(cfg.agents[2].model, "demo");
    let second = cfg.providers.iter().find(|p| p.name == "second").unwrap();
    assert_eq!(second.base_url, "http://127.0.0.1:9/v1");
    assert_eq!(second.api_key.as_deref(), Some("sk"));
    let demo = cfg.providers.iter().find(|p| p.name == "demo").unwrap();
    assert_eq!(demo.kind, ProviderKind::Demo);
    assert!(!demo.declared);
    // --print-config writes them back, and they read back the same.
    let out = cfg.print_config(&s).unwrap();
    let back: Settings = toml::from_str(&out).unwrap();
    let again = ServerConfig::resolve(back, keys.clone()).unwrap();
    assert_eq!(again.agents, cfg.agents);
    // Without agents, nothing.
    let plain = ServerConfig::resolve(Settings::default(), ApiKeys::default()).unwrap();
    assert!(plain.agents.is_empty() && plain.providers.is_empty());

    let refused = |toml: &str| {
        let s: Settings = toml::from_str(toml).unwrap();
        match ServerConfig::resolve(s, keys.clone()) {
            Ok(_) => panic!("`{toml}` was accepted"),
            Err(e) => format!("{e:#}"),
        }
    };
    let agent = |extra: &str| {
        format!("[[agents]]\nid = \"a\"\nname = \"A\"\nsystem_prompt = \"p\"\n{extra}")
    };
    for (toml, expect) in [
        (agent("provider = \"nope\""), "agent `a`: unknown provider `nope`"),
        (agent("tools = [\"teleport\"]"), "agent `a`: unknown tool `teleport`"),
        (agent("temperature = 3.0"), "temperature must be between 0 and 2"),
        (format!("{}{}", agent(""), agent("")), "two agents have the id `a`"),
        (
            "[[agents]]\nid = \"\"\nname = \"A\"\nsystem_prompt = \"p\"".into(),
            "needs an `id`",
        ),
        (
            "[[providers]]\nname = \"openai\"\nkind = \"openai\"".into(),
            "built-in provider name",
        ),
        (
            "[[providers]]\nname = \"x\"\nkind = \"gpt\"".into(),
            "kind must be",
        ),
        (
            "[[providers]]\nname = \"x\"\nkind = \"openai\"\napi_key_env = \"NATTER_TEST_NO_SUCH_VARIABLE_3141\"".into(),
            "`NATTER_TEST_NO_SUCH_VARIABLE_3141` (api_key_env) is not set",
        ),
        (
            "[[providers]]\nname = \"x\"\nkind = \"anthropic\"".into(),
            "no API key for the Anthropic API",
        ),
    ] {
        let err = refused(&toml);
        assert!(err.contains(expect), "`{toml}`: {err}");
    }
    // A missing system_prompt or an unknown key is a parse error.
    assert!(toml::from_str::<Settings>("[[agents]]\nid = \"a\"\nname = \"A\"").is_err());
    assert!(
        toml::from_str::<Settings>(
            "[[agents]]\nid = \"a\"\nname = \"A\"\nsystem_prompt = \"p\"\nmodle = \"x\""
        )
        .is_err()
    );
}

#[test]
fn layering_and_defaults() {
    let cli = Settings {
        listen: Some("127.0.0.1:1".into()),
        ..Default::default()
    };
    let file: Settings = toml::from_str(
        // A model path that does not exist: with none set, a model in this user's cache
        // (scripts/test pulls one there) would make the default provider `local`.
        "listen = \"0.0.0.0:9\"\nmodel = \"m\"\nmodel_path = \"no-such-model.gguf\"\n[event_names]\nuserMessage = \"msg:send\"\n",
    )
    .unwrap();
    let cfg = ServerConfig::resolve(cli.or(file), ApiKeys::default()).unwrap();
    assert_eq!(cfg.listen, "127.0.0.1:1");
    assert_eq!(cfg.core.model, "m");
    assert_eq!(cfg.provider, ProviderKind::Demo);
    assert_eq!(cfg.database, DEFAULT_DATABASE);
    assert_eq!(
        cfg.socketio.event_names.inbound("msg:send"),
        Some(natter_protocol::EventKey::UserMessage)
    );
    assert!(toml::from_str::<Settings>("nonsense = 1").is_err());
    let bad = Settings {
        provider: Some("gpt".into()),
        ..Default::default()
    };
    assert!(ServerConfig::resolve(bad, ApiKeys::default()).is_err());
}

#[test]
fn data_dir_holds_the_database_and_the_model() {
    let dir = std::env::temp_dir().join(format!("natter-cfg-data-{}", std::process::id()));
    let model = dir.join(MODEL_IN_DATA_DIR);
    std::fs::create_dir_all(model.parent().unwrap()).unwrap();
    std::fs::write(&model, b"GGUF").unwrap();
    let in_dir = |s: Settings| Settings {
        data_dir: Some(dir.clone()),
        ..s
    };
    // Both found under it, whatever the working directory.
    let cfg = ServerConfig::resolve(in_dir(Settings::default()), ApiKeys::default()).unwrap();
    assert_eq!(cfg.data_dir, dir);
    assert_eq!(
        cfg.database,
        format!("sqlite://{}", dir.join("natter.db").display())
    );
    assert_eq!(cfg.local_model.path, model);
    assert_eq!(cfg.provider, ProviderKind::Local);
    // An explicit database or model path wins over it.
    let explicit = Settings {
        database: Some("sqlite://./elsewhere.db".into()),
        model_path: Some(dir.join("other.gguf")),
        ..Default::default()
    };
    let cfg = ServerConfig::resolve(in_dir(explicit), ApiKeys::default()).unwrap();
    assert_eq!(cfg.database, "sqlite://./elsewhere.db");
    assert_eq!(cfg.local_model.path, dir.join("other.gguf"));
    assert_eq!(cfg.provider, ProviderKind::Demo);
    // A TOML key too; a relative one stays relative to where serve starts.
    let file: Settings = toml::from_str("data_dir = \"var/natter\"\n").unwrap();
    let cfg = ServerConfig::resolve(file, ApiKeys::default()).unwrap();
    assert_eq!(cfg.database, "sqlite://./var/natter/natter.db");
    // (Or the per-user cache's file, when this machine has one and var/natter none.)
    assert_eq!(
        cfg.local_model.path,
        default_model_path(Path::new("var/natter"), user_cache_dir().as_deref())
    );
    // The default is the one the docs name.
    let cfg = ServerConfig::resolve(Settings::default(), ApiKeys::default()).unwrap();
    assert_eq!(cfg.database, DEFAULT_DATABASE);
    assert_eq!(cfg.data_dir, Path::new(DEFAULT_DATA_DIR));
    for bad in ["", "a?b"] {
        let s = Settings {
            data_dir: Some(bad.into()),
            ..Default::default()
        };
        let err = ServerConfig::resolve(s, ApiKeys::default()).unwrap_err();
        assert!(format!("{err:#}").contains("data_dir"), "{err:#}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Without `model_path`: the data dir's model, else the per-user cache's (one download per
/// machine, whatever the data dir), else the data dir's path for the "no model" messages.
#[test]
fn model_from_the_data_dir_else_the_user_cache() {
    let root = tempfile::tempdir().unwrap();
    let (data, cache) = (root.path().join("data"), root.path().join("cache"));
    let put = |dir: &Path| {
        let file = dir.join(MODEL_IN_DATA_DIR);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"GGUF").unwrap();
        file
    };
    let in_data = data.join(MODEL_IN_DATA_DIR);
    assert_eq!(default_model_path(&data, Some(&cache)), in_data);
    assert_eq!(default_model_path(&data, None), in_data);
    let cached = put(&cache);
    assert_eq!(default_model_path(&data, Some(&cache)), cached);
    put(&data);
    assert_eq!(default_model_path(&data, Some(&cache)), in_data);
}

/// `natter model pull --data-dir D` puts the model where `serve --data-dir D` looks.
#[cfg(feature = "local-model")]
#[test]
fn model_in_data_dir_is_where_pull_puts_it() {
    let dir = Path::new("some/dir");
    assert_eq!(
        natter_local_model::pull::model_path(dir),
        dir.join(MODEL_IN_DATA_DIR)
    );
}

#[test]
fn local_model_selection() {
    let dir = std::env::temp_dir().join(format!("natter-cfg-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let present = dir.join("model.gguf");
    std::fs::write(&present, b"GGUF").unwrap();
    let missing = dir.join("none.gguf");
    let with = |path: &Path, provider: Option<&str>| Settings {
        model_path: Some(path.to_owned()),
        provider: provider.map(str::to_owned),
        ..Default::default()
    };
    // No provider, no key: the model file decides between local and demo.
    let cfg = ServerConfig::resolve(with(&present, None), ApiKeys::default()).unwrap();
    assert_eq!(cfg.provider, ProviderKind::Local);
    assert_eq!(cfg.local_model.path, present);
    assert_eq!(cfg.core.model, "SmolLM2-135M-Instruct");
    let cfg = ServerConfig::resolve(with(&missing, None), ApiKeys::default()).unwrap();
    assert_eq!(cfg.provider, ProviderKind::Demo);
    assert!(cfg.provider_note.unwrap().contains("natter model pull"));
    // A key still wins over the local model.
    let keys = ApiKeys {
        openai: Some("sk".into()),
        anthropic: None,
    };
    let cfg = ServerConfig::resolve(with(&present, None), keys).unwrap();
    assert_eq!(cfg.provider, ProviderKind::OpenAi);
    // Asked for by name: the file must be there.
    let err = ServerConfig::resolve(with(&missing, Some("local")), ApiKeys::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no model file at") && err.contains("natter model pull"),
        "{err}"
    );
    // Sampling settings are checked.
    let bad = Settings {
        local_top_p: Some(0.0),
        ..with(&present, None)
    };
    assert!(ServerConfig::resolve(bad, ApiKeys::default()).is_err());
    let bad = Settings {
        local_temperature: Some(-1.0),
        ..with(&present, None)
    };
    assert!(ServerConfig::resolve(bad, ApiKeys::default()).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--chat-template`, `--local-threads`, `--local-gpu-layers`: as flags and TOML keys, passed
/// on to the local model, shown by `--print-config`, refused when absurd.
#[test]
fn local_engine_options_from_flags_and_toml() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }
    let dir = std::env::temp_dir().join(format!("natter-cfg-engine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model.gguf");
    std::fs::write(&model, b"GGUF").unwrap();
    let model = model.to_str().unwrap();
    let flags = <Cli as clap::Parser>::try_parse_from([
        "serve",
        "--model-path",
        model,
        "--chat-template",
        "/etc/natter/chatml.jinja",
        "--local-threads",
        "3",
        "--local-gpu-layers",
        "99",
    ])
    .unwrap()
    .settings;
    let toml = format!(
        "model_path = {model:?}\nchat_template = \"/etc/natter/chatml.jinja\"\nlocal_threads = 3\nlocal_gpu_layers = 99\n"
    );
    let from_toml: Settings = toml::from_str(&toml).unwrap();
    for s in [flags, from_toml] {
        let cfg = ServerConfig::resolve(s.clone(), ApiKeys::default()).unwrap();
        let local = &cfg.local_model;
        assert_eq!(
            (
                local.chat_template.as_deref(),
                local.threads,
                local.gpu_layers
            ),
            (
                Some(Path::new("/etc/natter/chatml.jinja")),
                Some(3),
                Some(99)
            )
        );
        let printed = cfg.print_config(&s).unwrap();
        let back: Settings = toml::from_str(&printed).unwrap();
        assert_eq!(
            (
                back.chat_template,
                back.local_threads,
                back.local_gpu_layers
            ),
            (Some("/etc/natter/chatml.jinja".into()), Some(3), Some(99)),
            "{printed}"
        );
    }
    // Unset: the local model's defaults (every core, CPU only, the file's template).
    let cfg = ServerConfig::resolve(
        Settings {
            model_path: Some(model.into()),
            ..Default::default()
        },
        ApiKeys::default(),
    )
    .unwrap();
    assert_eq!(
        (
            cfg.local_model.chat_template,
            cfg.local_model.threads,
            cfg.local_model.gpu_layers
        ),
        (None, None, None)
    );
    for (threads, layers, expected) in [
        (
            Some(0),
            None,
            "local_threads must be between 1 and 1024, got 0",
        ),
        (
            Some(1025),
            None,
            "local_threads must be between 1 and 1024, got 1025",
        ),
        (
            None,
            Some(1025),
            "local_gpu_layers must be between 0 and 1024, got 1025",
        ),
    ] {
        let bad = Settings {
            model_path: Some(model.into()),
            local_threads: threads,
            local_gpu_layers: layers,
            ..Default::default()
        };
        let err = ServerConfig::resolve(bad, ApiKeys::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn provider_selection() {
    let key = |k: &str| Some(k.to_owned());
    let both = ApiKeys {
        openai: key("sk-o"),
        anthropic: key("sk-a"),
    };
    let cfg = ServerConfig::resolve(Settings::default(), both.clone()).unwrap();
    assert_eq!(cfg.provider, ProviderKind::OpenAi);
    assert_eq!(cfg.api_key.as_deref(), Some("sk-o"));
    let only_anthropic = ApiKeys {
        openai: None,
        anthropic: key("sk-a"),
    };
    let cfg = ServerConfig::resolve(Settings::default(), only_anthropic).unwrap();
    assert_eq!(cfg.provider, ProviderKind::Anthropic);
    assert_eq!(cfg.api_key.as_deref(), Some("sk-a"));
    assert_eq!(cfg.anthropic_base_url, DEFAULT_ANTHROPIC_BASE_URL);
    assert_eq!(cfg.core.model, DEFAULT_ANTHROPIC_MODEL);
    let explicit = Settings {
        provider: Some("anthropic".into()),
        model: Some("claude-x".into()),
        ..Default::default()
    };
    let cfg = ServerConfig::resolve(explicit.clone(), both).unwrap();
    assert_eq!(cfg.provider, ProviderKind::Anthropic);
    assert_eq!(cfg.api_key.as_deref(), Some("sk-a"));
    assert_eq!(cfg.core.model, "claude-x");
    // No key: an error against the real API, allowed against a local endpoint.
    let err = ServerConfig::resolve(explicit.clone(), ApiKeys::default()).unwrap_err();
    assert!(err.to_string().contains("ANTHROPIC_API_KEY is not set"));
    let local = Settings {
        anthropic_base_url: Some("http://127.0.0.1:9".into()),
        ..explicit
    };
    let cfg = ServerConfig::resolve(local, ApiKeys::default()).unwrap();
    assert_eq!(cfg.api_key, None);
}

#[test]
fn auth_mode_follows_the_secret_and_refuses_what_cannot_work() {
    let resolve = |s: Settings| ServerConfig::resolve(s, ApiKeys::default());
    let secret = Some("s".repeat(40));
    assert_eq!(
        resolve(Settings::default()).unwrap().auth_mode,
        AuthMode::Off
    );
    let with_secret = Settings {
        jwt_secret: secret.clone(),
        ..Default::default()
    };
    assert_eq!(resolve(with_secret).unwrap().auth_mode, AuthMode::On);
    let forced_off = Settings {
        jwt_secret: secret,
        auth: Some("off".into()),
        ..Default::default()
    };
    assert_eq!(resolve(forced_off).unwrap().auth_mode, AuthMode::Off);
    let on_without = Settings {
        auth: Some("on".into()),
        ..Default::default()
    };
    assert!(
        resolve(on_without)
            .unwrap_err()
            .to_string()
            .contains("NATTER_JWT_SECRET")
    );
    let short = Settings {
        jwt_secret: Some("short".into()),
        ..Default::default()
    };
    assert!(
        resolve(short)
            .unwrap_err()
            .to_string()
            .contains("at least 32")
    );
    let bad_origin = Settings {
        allowed_origins: Some(vec![
            "https://ok.example".into(),
            "app.example.com/x".into(),
        ]),
        ..Default::default()
    };
    assert!(
        resolve(bad_origin)
            .unwrap_err()
            .to_string()
            .contains("allowed_origins")
    );
    let origins = Settings {
        allowed_origins: Some(vec!["https://app.example.com/".into()]),
        turn_rate_per_user: Some(0),
        ..Default::default()
    };
    let cfg = resolve(origins).unwrap();
    assert_eq!(
        cfg.allowed_origins,
        vec!["https://app.example.com".to_owned()]
    );
    assert_eq!(cfg.core.limits.turns.per_user, 0);
    assert_eq!(cfg.core.limits.turns.per_connection, 20);
}

#[test]
fn absurd_values_are_refused_naming_the_key() {
    let refused = |toml: &str| {
        let s: Settings = toml::from_str(toml).unwrap();
        match ServerConfig::resolve(s, ApiKeys::default()) {
            Ok(_) => panic!("`{toml}` was accepted"),
            Err(e) => e.to_string(),
        }
    };
    for (toml, key) in [
        // 1e19 s fits a Duration but overflows `Instant::now() + timeout`.
        ("turn_timeout_secs = 1e19", "turn_timeout_secs"),
        ("turn_timeout_secs = 86401", "turn_timeout_secs"),
        ("turn_timeout_secs = -1", "turn_timeout_secs"),
        ("turn_timeout_secs = nan", "turn_timeout_secs"),
        ("retry_window_secs = 1e300", "retry_window_secs"),
        (
            "retry_base_delay_ms = 9223372036854775807",
            "retry_base_delay_ms",
        ),
        (
            "slow_consumer_timeout_secs = 1e10",
            "slow_consumer_timeout_secs",
        ),
        (
            "client_tool_timeout_secs = 1e10",
            "client_tool_timeout_secs",
        ),
        ("sse_heartbeat_secs = 1e10", "sse_heartbeat_secs"),
        ("shutdown_grace_secs = 1e10", "shutdown_grace_secs"),
        ("jwt_leeway_secs = 9223372036854775807", "jwt_leeway_secs"),
        // tokio's Semaphore panics above usize::MAX >> 3 permits.
        (
            "max_concurrent_turns = 9223372036854775807",
            "max_concurrent_turns",
        ),
        ("bus_capacity = 9223372036854775807", "bus_capacity"),
        ("socket_buffer = 9223372036854775807", "socket_buffer"),
        ("log_format = \"xml\"", "log_format"),
    ] {
        let err = refused(toml);
        assert!(err.contains(key), "`{toml}`: {err}");
    }
    // The limits themselves are allowed.
    let s: Settings = toml::from_str(
        "turn_timeout_secs = 86400\nretry_base_delay_ms = 60000\nmax_concurrent_turns = 1048576",
    )
    .unwrap();
    let cfg = ServerConfig::resolve(s, ApiKeys::default()).unwrap();
    assert_eq!(cfg.core.turn_timeout, Duration::from_secs(86_400));
    assert_eq!(cfg.core.max_concurrent_turns, 1 << 20);
}

#[test]
fn print_config_masks_secrets_and_reads_back_the_same() {
    let s: Settings = toml::from_str(
        r#"
        log_format = "json"
        database = "postgres://u:pw-db@h:5432/natter"
        bus = "redis://user:pw-redis@h:6379/"
        jwt_secret = "0123456789abcdef0123456789abcdef-secret"
        tools = ["current_time"]
        max_steps = 3
        [event_names]
        userMessage = "msg:send"
        "#,
    )
    .unwrap();
    let keys = ApiKeys {
        openai: Some("sk-live-key".into()),
        anthropic: None,
    };
    let c = ServerConfig::resolve(s.clone(), keys.clone()).unwrap();
    assert_eq!(c.log_format, LogFormat::Json);
    let out = c.print_config(&s).unwrap();
    for leaked in ["pw-db", "pw-redis", "-secret", "sk-live-key"] {
        assert!(!out.contains(leaked), "`{leaked}` printed:\n{out}");
    }
    assert!(out.contains("API key is set"), "{out}");
    assert!(out.contains("userMessage = \"msg:send\""), "{out}");
    // Defaults are filled in.
    assert!(out.contains("turn_timeout_secs = 120.0"), "{out}");
    // Read back, with the secrets put back, it is the same configuration.
    let mut back: Settings = toml::from_str(&out).unwrap();
    back.jwt_secret = s.jwt_secret.clone();
    back.database = s.database.clone();
    back.bus = s.bus.clone();
    let again = ServerConfig::resolve(back.clone(), keys).unwrap();
    assert_eq!(
        toml::to_string(&again.effective_settings(&back)).unwrap(),
        toml::to_string(&c.effective_settings(&s)).unwrap()
    );
}
