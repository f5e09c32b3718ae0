//! The resolved settings shown back: `natter serve --print-config` (secrets masked) and
//! `natter config check FILE`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use natter_auth::{AuthConfig, AuthMode};
use natter_core::config::AiMode;
use natter_store_sqlite::Durability;

use super::{
    AgentSetting, ApiKeys, ClientToolSetting, LogFormat, ProviderKind, ProviderSetting,
    ServerConfig, Settings, SocketIoTransport,
};

/// What `--print-config` shows in place of a secret.
const MASKED: &str = "***";

/// The Socket.IO event renames of `s`: the `[event_names]` table, then `--event-name` pairs.
fn event_name_overrides(s: &Settings) -> BTreeMap<String, String> {
    let mut names = s.event_names.clone().unwrap_or_default();
    for pair in s.event_name.iter().flatten() {
        if let Some((k, v)) = pair.split_once('=') {
            names.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    names
}

impl ServerConfig {
    /// Every setting as this configuration runs with it, as TOML keys: the values `s` gave,
    /// the defaults for the rest, secrets masked (the JWT secret, passwords in the database
    /// and bus URLs; API keys never are settings). `s` is what `resolve` was given. Keys left
    /// out (`jwt_issuer`, the local model's sampling…) are unset and mean what their
    /// `--help` says.
    pub fn effective_settings(&self, s: &Settings) -> Settings {
        let core = &self.core;
        let limits = &core.limits;
        let secs = |d: Duration| Some(d.as_secs_f64());
        let millis = |d: Duration| Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let set = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let mut tools = Vec::new();
        if self.tools.current_time {
            tools.push("current_time".to_owned());
        }
        if self.tools.http_get_allow.is_some() {
            tools.push("http_get".to_owned());
        }
        let client_tools: Vec<ClientToolSetting> = self
            .tools
            .client
            .iter()
            .map(|t| ClientToolSetting {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: Some(t.parameters.clone()),
            })
            .collect();
        let event_names = event_name_overrides(s);
        Settings {
            listen: Some(self.listen.clone()),
            log_format: Some(
                match self.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .into(),
            ),
            // A collector's URL may carry credentials too.
            otlp_endpoint: self.otlp_endpoint.as_deref().map(crate::cluster::redact),
            data_dir: Some(self.data_dir.clone()),
            database: Some(crate::store::redact(&self.database)),
            database_max_connections: Some(
                self.database_max_connections
                    .unwrap_or(natter_store_postgres::PgOptions::default().max_connections),
            ),
            provider: Some(self.provider.as_str().into()),
            model: Some(core.model.clone()),
            // A proxy's URL may carry credentials too.
            openai_base_url: Some(crate::cluster::redact(&self.openai_base_url)),
            anthropic_base_url: Some(crate::cluster::redact(&self.anthropic_base_url)),
            system_prompt: core.system_prompt.clone(),
            max_concurrent_turns: Some(core.max_concurrent_turns),
            turn_timeout_secs: secs(core.turn_timeout),
            retry_max: Some(core.retry.max_retries),
            retry_window_secs: secs(core.retry.window),
            retry_base_delay_ms: millis(core.retry.base_delay),
            max_text_bytes: Some(core.max_text_bytes),
            max_payload_bytes: Some(self.max_payload_bytes),
            ping_interval_ms: millis(self.ping_interval),
            ping_timeout_ms: millis(self.ping_timeout),
            context_max_messages: Some(core.context_max_messages),
            context_max_bytes: Some(core.context_max_bytes),
            join_history: Some(core.join_history),
            ai_mode: Some(
                match core.ai_mode {
                    AiMode::EveryMessage => "every_message",
                    AiMode::Off => "off",
                }
                .into(),
            ),
            csat: Some(if core.csat { "on" } else { "off" }.into()),
            vision: Some(if core.attachments.vision { "on" } else { "off" }.into()),
            attachment_text_budget: Some(core.attachments.text_budget),
            attachment_processing_timeout_secs: secs(core.attachments.processing_timeout),
            attachment_extract_timeout_secs: secs(self.extract_timeout),
            attachment_extract_memory_mb: Some(self.extract_memory_bytes / (1024 * 1024)),
            max_attachment_bytes: Some(core.attachments.max_bytes),
            attachment_uploads_per_minute: Some(limits.uploads_per_user),
            attachment_quota_bytes: Some(core.attachments.chat_quota_bytes),
            attachment_orphan_secs: Some(core.attachments.orphan_after.as_secs()),
            socket_buffer: Some(self.socket_buffer),
            socketio_transport: Some(
                match self.socketio_transport {
                    SocketIoTransport::Natter => "natter",
                    SocketIoTransport::Socketioxide => "socketioxide",
                }
                .into(),
            ),
            socket_queue_bytes: Some(self.socket_queue_bytes),
            bus_capacity: Some(self.bus_capacity),
            bus: Some(crate::cluster::redact(&self.bus)),
            slow_consumer_timeout_secs: secs(core.slow_consumer_timeout),
            merge_delta_bytes: Some(core.merge_delta_bytes),
            shutdown_grace_secs: secs(self.shutdown_grace),
            sqlite_durability: Some(
                match self.sqlite_durability {
                    Durability::Full => "full",
                    Durability::Normal => "normal",
                }
                .into(),
            ),
            chat_key_fields: Some(
                self.socketio
                    .chat_key_fields
                    .iter()
                    .filter(|f| *f != "chatId")
                    .cloned()
                    .collect(),
            ),
            sse_heartbeat_secs: secs(self.http.heartbeat),
            aisdk_base: Some(self.http.aisdk_base.clone()),
            realtime_base: Some(self.http.realtime_base.clone()),
            history_base: Some(self.http.history_base.clone()),
            tools: Some(tools),
            http_get_allow: self.tools.http_get_allow.clone(),
            max_steps: Some(core.max_steps),
            client_tool_timeout_secs: secs(core.client_tool_timeout),
            client_tools: (!client_tools.is_empty()).then_some(client_tools),
            providers: {
                let declared: Vec<ProviderSetting> = self
                    .providers
                    .iter()
                    .filter(|p| p.declared)
                    .map(|p| ProviderSetting {
                        name: p.name.clone(),
                        kind: p.kind.as_str().into(),
                        base_url: Some(crate::cluster::redact(&p.base_url)),
                        api_key_env: p.api_key_env.clone(),
                    })
                    .collect();
                (!declared.is_empty()).then_some(declared)
            },
            agents: (!self.agents.is_empty()).then(|| {
                self.agents
                    .iter()
                    .map(|a| AgentSetting {
                        id: a.id.clone(),
                        name: a.name.clone(),
                        description: a.description.clone(),
                        system_prompt: a.system_prompt.clone(),
                        provider: a.provider.clone(),
                        model: Some(a.model.clone()),
                        tools: a.tools.clone(),
                        temperature: a.temperature,
                    })
                    .collect()
            }),
            event_name: None,
            event_names: (!event_names.is_empty()).then_some(event_names),
            auth: Some(
                match self.auth_mode {
                    AuthMode::On => "on",
                    AuthMode::Off => "off",
                }
                .into(),
            ),
            jwt_secret: set(&s.jwt_secret).map(|_| MASKED.to_owned()),
            jwt_issuer: set(&s.jwt_issuer),
            jwt_audience: set(&s.jwt_audience),
            jwt_leeway_secs: Some(
                s.jwt_leeway_secs
                    .unwrap_or(AuthConfig::default().leeway.as_secs()),
            ),
            jwt_required_scope: set(&s.jwt_required_scope),
            allowed_origins: Some(self.allowed_origins.clone()),
            message_rate_per_connection: Some(limits.messages.per_connection),
            message_rate_per_user: Some(limits.messages.per_user),
            message_rate_per_ip: Some(limits.messages.per_ip),
            turn_rate_per_connection: Some(limits.turns.per_connection),
            turn_rate_per_user: Some(limits.turns.per_user),
            turn_rate_per_ip: Some(limits.turns.per_ip),
            max_connections_per_user: Some(limits.max_connections_per_user),
            max_connections_per_ip: Some(limits.max_connections_per_ip),
            max_joins_per_socket: Some(self.socketio.max_joins_per_socket),
            model_path: Some(self.local_model.path.clone()),
            local_workers: self.local_model.workers,
            local_temperature: self.local_model.temperature,
            local_top_p: self.local_model.top_p,
            local_seed: self.local_model.seed,
            local_max_tokens: self.local_model.max_tokens,
            chat_template: self.local_model.chat_template.clone(),
            local_threads: self.local_model.threads,
            local_gpu_layers: self.local_model.gpu_layers,
        }
    }

    /// `natter serve --print-config`: the effective settings as a TOML file, headed by where
    /// they come from and whether the provider has a key (never the key).
    pub fn print_config(&self, s: &Settings) -> anyhow::Result<String> {
        let body =
            toml::to_string(&self.effective_settings(s)).context("writing the settings as TOML")?;
        let key = match (self.provider, &self.api_key) {
            (ProviderKind::OpenAi | ProviderKind::Anthropic, Some(_)) => {
                "# The provider's API key is set (from the environment; not shown).\n"
            }
            (ProviderKind::OpenAi | ProviderKind::Anthropic, None) => {
                "# The provider has no API key.\n"
            }
            _ => "",
        };
        Ok(format!(
            "# natter serve's settings: flags, then NATTER_* variables, then the TOML file, then\n\
             # defaults. Secrets show as `{MASKED}`. Unset keys are left out.\n{key}\n{body}"
        ))
    }
}

/// `natter config check FILE`: reads and resolves a settings file as `natter serve --config
/// FILE` would (API keys from `keys`, no flags or `NATTER_*` variables). `Ok` is a summary;
/// `Err` names the file and the key at fault.
pub fn check_file(path: &Path, keys: ApiKeys) -> anyhow::Result<String> {
    let s = Settings::from_toml_file(path)?;
    let set: Vec<String> = toml::Value::try_from(&s)
        .ok()
        .and_then(|v| v.as_table().map(|t| t.keys().cloned().collect()))
        .unwrap_or_default();
    let c = ServerConfig::resolve(s, keys).with_context(|| path.display().to_string())?;
    Ok(format!(
        "{}: valid; {} key(s) set{}\nprovider {}, model {}, database {}, bus {}, listen {}, auth {}, agents {}",
        path.display(),
        set.len(),
        if set.is_empty() {
            String::new()
        } else {
            format!(" ({})", set.join(", "))
        },
        c.provider.as_str(),
        c.core.model,
        crate::store::redact(&c.database),
        crate::cluster::redact(&c.bus),
        c.listen,
        match c.auth_mode {
            AuthMode::On => "on",
            AuthMode::Off => "off",
        },
        if c.agents.is_empty() {
            "none (the server's defaults answer every chat)".to_owned()
        } else {
            c.agents
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        },
    ))
}
