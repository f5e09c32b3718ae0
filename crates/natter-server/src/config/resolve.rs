//! [`ServerConfig::resolve`]: settings into a checked configuration, one function per section
//! (the server's provider, the chat core, the Socket.IO and HTTP faces, storage).

use std::time::Duration;

use anyhow::{Context, bail};
use natter_auth::Authenticator;
use natter_core::CoreConfig;
use natter_core::config::AiMode;
use natter_core::limits::LimitsConfig;
use natter_http::HttpConfig;
use natter_protocol::EventNames;
use natter_socketio::SocketIoConfig;
use natter_store_sqlite::Durability;

use super::access::{auth_config, limits_config, origins};
use super::agents::{agents_config, default_model};
use super::bounds::{DAY, HOUR, MAX_QUEUE, at_most, heartbeat_millis, secs};
use super::paths::{data_dir, database_in, local_model_config};
use super::tools::tools_config;
use super::{
    ApiKeys, DEFAULT_ANTHROPIC_BASE_URL, DEFAULT_BUS, DEFAULT_LISTEN, DEFAULT_OPENAI_BASE_URL,
    LocalModelConfig, LogFormat, ProviderKind, ServerConfig, Settings, SocketIoTransport,
};

impl ServerConfig {
    /// Resolves settings into a configuration. `keys` come from the environment.
    pub fn resolve(s: Settings, keys: ApiKeys) -> anyhow::Result<ServerConfig> {
        let auth_settings = auth_config(&s)?;
        let auth = Authenticator::new(&auth_settings).map_err(anyhow::Error::msg)?;
        let allowed_origins = origins(s.allowed_origins.clone())?;
        let data_dir = data_dir(&s)?;
        let local_model = local_model_config(&s, &data_dir)?;
        let (provider, provider_note) =
            server_provider(s.provider.as_deref(), &keys, &local_model)?;
        let anthropic_base_url = s
            .anthropic_base_url
            .clone()
            .unwrap_or_else(|| DEFAULT_ANTHROPIC_BASE_URL.to_owned());
        let api_key = server_api_key(provider, &keys, &anthropic_base_url)?;
        let core = core_config(&s, provider, limits_config(&s))?;
        let socketio = socketio_config(&s, auth.clone())?;
        let sqlite_durability = sqlite_durability(s.sqlite_durability.as_deref())?;
        let database = match &s.database {
            Some(url) => url.clone(),
            None => database_in(&data_dir)?,
        };
        crate::store::DatabaseKind::of(&database)?;
        if s.database_max_connections == Some(0) {
            bail!("database_max_connections must be at least 1");
        }
        let bus = s.bus.clone().unwrap_or_else(|| DEFAULT_BUS.to_owned());
        crate::cluster::BusKind::of(&bus)?;
        let tools = tools_config(
            s.tools.clone(),
            s.http_get_allow.clone(),
            s.client_tools.clone(),
        )?;
        let openai_base_url = s
            .openai_base_url
            .clone()
            .unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned());
        let (providers, agents) = agents_config(
            s.providers.clone(),
            s.agents.clone(),
            provider,
            &core.model,
            &keys,
            &openai_base_url,
            &anthropic_base_url,
            &local_model,
            &tools,
        )?;
        let max_payload_bytes = s.max_payload_bytes.unwrap_or(4 * 1024 * 1024);
        let http = http_config(&s, max_payload_bytes, auth)?;
        let log_format = match s.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("unknown log_format `{other}` (expected `text` or `json`)"),
        };
        let otlp_endpoint = s.otlp_endpoint.filter(|e| !e.is_empty());
        if let Some(endpoint) = &otlp_endpoint {
            crate::otel::check_endpoint(endpoint)?;
        }
        Ok(ServerConfig {
            listen: s.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            log_format,
            otlp_endpoint,
            data_dir,
            database,
            database_max_connections: s.database_max_connections,
            sqlite_durability,
            provider,
            provider_note,
            local_model,
            openai_base_url,
            anthropic_base_url,
            api_key,
            core,
            socketio,
            http,
            max_payload_bytes,
            ping_interval: heartbeat_millis("ping_interval_ms", s.ping_interval_ms, 25_000)?,
            ping_timeout: heartbeat_millis("ping_timeout_ms", s.ping_timeout_ms, 20_000)?,
            socket_buffer: at_most("socket_buffer", s.socket_buffer.unwrap_or(256), MAX_QUEUE)?
                .max(8),
            socketio_transport: socketio_transport(s.socketio_transport.as_deref())?,
            socket_queue_bytes: socket_queue_bytes(s.socket_queue_bytes)?,
            bus_capacity: at_most("bus_capacity", s.bus_capacity.unwrap_or(256), MAX_QUEUE)?,
            bus,
            shutdown_grace: secs(
                "shutdown_grace_secs",
                s.shutdown_grace_secs.unwrap_or(5.0),
                HOUR,
            )?,
            extract_timeout: secs(
                "attachment_extract_timeout_secs",
                s.attachment_extract_timeout_secs.unwrap_or(20.0),
                HOUR,
            )?
            .max(Duration::from_secs(1)),
            extract_memory_bytes: extract_memory_bytes(s.attachment_extract_memory_mb)?,
            tools,
            providers,
            agents,
            auth_mode: auth_settings.mode,
            allowed_origins,
        })
    }
}

/// The server's own provider: the one named, else the first that can work (an OpenAI key, an
/// Anthropic key, the local model file), else `demo` with a note saying why.
fn server_provider(
    named: Option<&str>,
    keys: &ApiKeys,
    local_model: &LocalModelConfig,
) -> anyhow::Result<(ProviderKind, Option<String>)> {
    Ok(match named {
        Some("openai") => (ProviderKind::OpenAi, None),
        Some("anthropic") => (ProviderKind::Anthropic, None),
        Some("local") if !local_model.path.is_file() => bail!(
            "provider `local`: no model file at {} (run `natter model pull`, or set model_path / --model-path)",
            local_model.path.display()
        ),
        Some("local") => (ProviderKind::Local, None),
        Some("demo") => (ProviderKind::Demo, None),
        Some(other) => {
            bail!("provider must be `openai`, `anthropic`, `local` or `demo`, got `{other}`")
        }
        None if keys.openai.is_some() => (ProviderKind::OpenAi, None),
        None if keys.anthropic.is_some() => (ProviderKind::Anthropic, None),
        None if local_model.path.is_file() => (ProviderKind::Local, None),
        None => (
            ProviderKind::Demo,
            Some(format!(
                "no model at {}: using the demo provider; `natter model pull` fetches a real offline model (about 93 MB)",
                local_model.path.display()
            )),
        ),
    })
}

/// The key for the server's own provider.
fn server_api_key(
    provider: ProviderKind,
    keys: &ApiKeys,
    anthropic_base_url: &str,
) -> anyhow::Result<Option<String>> {
    let api_key = match provider {
        ProviderKind::OpenAi => keys.openai.clone(),
        ProviderKind::Anthropic => keys.anthropic.clone(),
        ProviderKind::Local | ProviderKind::Demo => None,
    };
    // Without a key only a local endpoint (a proxy that adds it, a fake) makes sense.
    if provider == ProviderKind::Anthropic
        && api_key.is_none()
        && anthropic_base_url.trim_end_matches('/') == DEFAULT_ANTHROPIC_BASE_URL
    {
        bail!(
            "ANTHROPIC_API_KEY is not set (needed for --provider anthropic with the default --anthropic-base-url)"
        );
    }
    Ok(api_key)
}

/// `on`/`off` settings (absent: `on`).
fn on_off(key: &str, v: Option<&str>) -> anyhow::Result<bool> {
    match v {
        None | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => bail!("unknown {key} `{other}` (expected `on` or `off`)"),
    }
}

/// The chat core's settings: model and prompt, attachments, turns and their retries, context,
/// delivery.
fn core_config(
    s: &Settings,
    provider: ProviderKind,
    limits: LimitsConfig,
) -> anyhow::Result<CoreConfig> {
    let mut core = CoreConfig {
        limits,
        ..CoreConfig::default()
    };
    core.model = s.model.clone().unwrap_or_else(|| default_model(provider));
    core.system_prompt = s.system_prompt.clone();
    core.ai_mode = match s.ai_mode.as_deref() {
        None | Some("every_message") => AiMode::EveryMessage,
        Some("off") => AiMode::Off,
        Some(other) => bail!("unknown ai_mode `{other}` (expected `every_message` or `off`)"),
    };
    core.csat = on_off("csat", s.csat.as_deref())?;
    core.attachments.vision = on_off("vision", s.vision.as_deref())?;
    if let Some(v) = s.attachment_text_budget {
        core.attachments.text_budget = v;
    }
    if let Some(v) = s.max_attachment_bytes {
        core.attachments.max_bytes = at_most("max_attachment_bytes", v, 1 << 30)?.max(1);
    }
    if let Some(v) = s.attachment_quota_bytes {
        core.attachments.chat_quota_bytes = v;
    }
    if let Some(v) = s.attachment_orphan_secs {
        core.attachments.orphan_after = Duration::from_secs(v.max(60));
    }
    if let Some(v) = s.attachment_processing_timeout_secs {
        core.attachments.processing_timeout = secs("attachment_processing_timeout_secs", v, 3600)?;
    }
    if let Some(v) = s.max_concurrent_turns {
        core.max_concurrent_turns = at_most("max_concurrent_turns", v, MAX_QUEUE)?.max(1);
    }
    if let Some(v) = s.turn_timeout_secs {
        core.turn_timeout = secs("turn_timeout_secs", v, DAY)?;
    }
    if let Some(v) = s.retry_max {
        core.retry.max_retries = v;
    }
    if let Some(v) = s.retry_window_secs {
        core.retry.window = secs("retry_window_secs", v, HOUR)?;
    }
    if let Some(v) = s.retry_base_delay_ms {
        core.retry.base_delay = Duration::from_millis(at_most("retry_base_delay_ms", v, 60_000)?);
    }
    if let Some(v) = s.max_text_bytes {
        core.max_text_bytes = v;
    }
    if let Some(v) = s.context_max_messages {
        core.context_max_messages = v.max(1);
    }
    if let Some(v) = s.context_max_bytes {
        core.context_max_bytes = v;
    }
    if let Some(v) = s.join_history {
        core.join_history = v;
    }
    if let Some(v) = s.slow_consumer_timeout_secs {
        core.slow_consumer_timeout = secs("slow_consumer_timeout_secs", v, HOUR)?;
    }
    if let Some(v) = s.merge_delta_bytes {
        core.merge_delta_bytes = v;
    }
    if let Some(v) = s.max_steps {
        if v == 0 {
            bail!("max_steps must be at least 1");
        }
        core.max_steps = v;
    }
    if let Some(v) = s.client_tool_timeout_secs {
        core.client_tool_timeout = secs("client_tool_timeout_secs", v, DAY)?;
    }
    Ok(core)
}

/// The Socket.IO face: event renames (`[event_names]`, then `--event-name` pairs), the fields
/// that key a chat besides `chatId`, joins per socket.
fn socketio_config(s: &Settings, auth: Authenticator) -> anyhow::Result<SocketIoConfig> {
    let mut names = s.event_names.clone().unwrap_or_default();
    for pair in s.event_name.iter().flatten() {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--event-name takes KEY=NAME, got `{pair}`"))?;
        names.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let event_names = EventNames::with_overrides(&names).context("event names")?;
    let mut chat_key_fields = vec!["chatId".to_owned()];
    for f in s.chat_key_fields.iter().flatten() {
        let f = f.trim().to_owned();
        if !f.is_empty() && !chat_key_fields.contains(&f) {
            chat_key_fields.push(f);
        }
    }
    Ok(SocketIoConfig {
        event_names,
        chat_key_fields,
        auth,
        max_joins_per_socket: s
            .max_joins_per_socket
            .unwrap_or(SocketIoConfig::default().max_joins_per_socket),
    })
}

fn socketio_transport(v: Option<&str>) -> anyhow::Result<SocketIoTransport> {
    match v {
        None | Some("natter") => Ok(SocketIoTransport::Natter),
        Some("socketioxide") => Ok(SocketIoTransport::Socketioxide),
        Some(other) => {
            bail!("unknown socketio_transport `{other}` (expected `natter` or `socketioxide`)")
        }
    }
}

fn socket_queue_bytes(v: Option<usize>) -> anyhow::Result<usize> {
    const GIB: usize = 1024 * 1024 * 1024;
    let bytes = at_most("socket_queue_bytes", v.unwrap_or(1024 * 1024), GIB)?;
    if bytes < 1024 {
        bail!("socket_queue_bytes must be at least 1024, got {bytes}");
    }
    Ok(bytes)
}

fn sqlite_durability(v: Option<&str>) -> anyhow::Result<Durability> {
    match v {
        None | Some("full") => Ok(Durability::Full),
        Some("normal") => Ok(Durability::Normal),
        Some(other) => bail!("unknown sqlite_durability `{other}` (expected `full` or `normal`)"),
    }
}

/// The HTTP faces: their base paths, the SSE heartbeat, the body limit.
fn http_config(
    s: &Settings,
    max_payload_bytes: u64,
    auth: Authenticator,
) -> anyhow::Result<HttpConfig> {
    let defaults = HttpConfig::default();
    let base = |v: &Option<String>, field: &str, default: String| -> anyhow::Result<String> {
        let v = v.clone().unwrap_or(default);
        if !v.starts_with('/') || v.contains(['{', '}', '*']) {
            bail!("{field} must be a path starting with `/`, got `{v}`");
        }
        Ok(v)
    };
    Ok(HttpConfig {
        aisdk_base: base(&s.aisdk_base, "aisdk_base", defaults.aisdk_base)?,
        realtime_base: base(&s.realtime_base, "realtime_base", defaults.realtime_base)?,
        history_base: base(&s.history_base, "history_base", defaults.history_base)?,
        heartbeat: match s.sse_heartbeat_secs {
            Some(v) if v < 0.01 => bail!("sse_heartbeat_secs must be at least 0.01, got {v}"),
            Some(v) => secs("sse_heartbeat_secs", v, HOUR)?,
            None => defaults.heartbeat,
        },
        max_body_bytes: usize::try_from(max_payload_bytes).unwrap_or(usize::MAX),
        max_page: defaults.max_page,
        auth,
    })
}

/// The PDF reader's address-space limit in bytes, from megabytes (64 MB to 1 TB).
fn extract_memory_bytes(mb: Option<u64>) -> anyhow::Result<u64> {
    let mb = mb.unwrap_or(1024);
    if !(64..=1024 * 1024).contains(&mb) {
        bail!("attachment_extract_memory_mb must be between 64 and 1048576 (got {mb})");
    }
    Ok(mb * 1024 * 1024)
}
