//! Configuration: one set of settings, read from flags, `NATTER_*` environment variables and
//! an optional TOML file, in that order of precedence, then defaults.
//!
//! - `settings.rs`: every setting as read (the flags, the variables and the TOML keys), layered;
//! - `resolve.rs`: [`ServerConfig::resolve`], settings into a checked configuration, section by
//!   section (provider, core, storage, faces), with the helpers it calls:
//!   `paths.rs` (data dir, database URL, model file), `access.rs` (auth, origins, rate limits),
//!   `tools.rs`, `agents.rs` (`[[providers]]`, `[[agents]]`) and `bounds.rs` (upper bounds);
//! - `print.rs`: `--print-config` and `natter config check`.

mod access;
mod agents;
mod bounds;
mod paths;
mod print;
mod resolve;
mod settings;
#[cfg(test)]
mod tests;
mod tools;

use std::path::PathBuf;
use std::time::Duration;

use natter_auth::AuthMode;
use natter_core::CoreConfig;
use natter_http::HttpConfig;
use natter_socketio::SocketIoConfig;
use natter_store_sqlite::Durability;

pub use agents::{AgentConfig, ProviderSpec};
pub use paths::{LocalModelConfig, MODEL_IN_DATA_DIR, default_model_path, user_cache_dir};
pub use print::check_file;
pub use settings::{AgentSetting, ClientToolSetting, ProviderSetting, Settings};
pub use tools::ToolsConfig;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
pub const DEFAULT_BUS: &str = "memory";
/// Where the SQLite file and the local model live unless `--database` / `--model-path` say
/// otherwise (relative to the directory `serve` is started from).
pub const DEFAULT_DATA_DIR: &str = "natter-data";
/// The database under the default data dir.
pub const DEFAULT_DATABASE: &str = "sqlite://./natter-data/natter.db";
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// Model used with `--provider anthropic` when `--model` is not given.
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    /// SmolLM2 on the CPU (`natter-local-model`).
    Local,
    Demo,
}

impl ProviderKind {
    /// The name `--provider` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Local => "local",
            Self::Demo => "demo",
        }
    }
}

/// API keys, read from the environment by the binary (never from flags or the TOML file).
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    /// OPENAI_API_KEY or NATTER_API_KEY.
    pub openai: Option<String>,
    /// ANTHROPIC_API_KEY.
    pub anthropic: Option<String>,
}

/// Which Socket.IO server carries the Socket.IO face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SocketIoTransport {
    /// The project's own (`natter-engineio`, `natter-socketio-transport`).
    #[default]
    Natter,
    Socketioxide,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub log_format: LogFormat,
    /// Where OpenTelemetry traces go (`--otlp-endpoint`); `None`: not exported.
    pub otlp_endpoint: Option<String>,
    /// Where the database and the model are by default (`--data-dir`).
    pub data_dir: PathBuf,
    pub database: String,
    /// PostgreSQL pool size (`None`: the store's default).
    pub database_max_connections: Option<u32>,
    pub sqlite_durability: Durability,
    pub provider: ProviderKind,
    /// Why the provider is `demo` when nobody asked for it (logged at startup).
    pub provider_note: Option<String>,
    pub local_model: LocalModelConfig,
    pub openai_base_url: String,
    pub anthropic_base_url: String,
    /// The key for the chosen provider.
    pub api_key: Option<String>,
    pub core: CoreConfig,
    pub socketio: SocketIoConfig,
    pub http: HttpConfig,
    pub max_payload_bytes: u64,
    /// The Engine.IO heartbeat (socketioxide's defaults: 25 s and 20 s).
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// socketioxide's per-socket bound, in packets.
    pub socket_buffer: usize,
    pub socketio_transport: SocketIoTransport,
    /// The own transport's per-connection bound, in bytes.
    pub socket_queue_bytes: usize,
    pub bus_capacity: usize,
    /// `memory` or a `redis://` URL (see [`crate::cluster::open_cluster`]).
    pub bus: String,
    pub shutdown_grace: Duration,
    /// Wall-clock bound on reading one document (`--attachment-extract-timeout-secs`).
    pub extract_timeout: Duration,
    /// The PDF reader's address-space limit, bytes (`--attachment-extract-memory-mb`).
    pub extract_memory_bytes: u64,
    pub tools: ToolsConfig,
    /// Providers agents name besides the server's own (`[[providers]]`, and built-in kinds
    /// other than the server's); each is built once at startup.
    pub providers: Vec<ProviderSpec>,
    /// Named assistants (`[[agents]]`); empty: the server's own settings are the one agent.
    pub agents: Vec<AgentConfig>,
    pub auth_mode: AuthMode,
    /// Browser origins allowed; empty: any.
    pub allowed_origins: Vec<String>,
}
