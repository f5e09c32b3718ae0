//! Configuration: one set of settings, read from flags, `NATTER_*` environment variables and
//! an optional TOML file, in that order of precedence, then defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use natter_auth::{AuthConfig, AuthMode, Authenticator};
use natter_core::CoreConfig;
use natter_core::config::AiMode;
use natter_core::limits::{LimitsConfig, ScopedRate};
use natter_core::provider::ToolSpec;
use natter_http::HttpConfig;
use natter_protocol::EventNames;
use natter_socketio::SocketIoConfig;
use natter_store_sqlite::Durability;
use serde::{Deserialize, Serialize};

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

/// Every setting, each optional so sources can be layered. The flag, the environment
/// variable and the TOML key share one name (`--max-text-bytes`, `NATTER_MAX_TEXT_BYTES`,
/// `max_text_bytes`).
#[derive(Debug, Clone, Default, clap::Args, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on [default: 127.0.0.1:4000].
    #[arg(long, env = "NATTER_LISTEN")]
    pub listen: Option<String>,
    /// Log format: `text` or `json` [default: text]. `NATTER_LOG` sets the filter
    /// (e.g. `info,natter_core=debug`).
    #[arg(long, env = "NATTER_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// The data directory: the SQLite database is DATA_DIR/natter.db and the local model
    /// DATA_DIR/models/ (where `natter model pull --data-dir` puts it; when absent there, the
    /// per-user cache's, where a plain `natter model pull` puts it) unless `--database` /
    /// `--model-path` name others [default: natter-data].
    #[arg(long, env = "NATTER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: `sqlite://path/to/file.db` or `postgres://user:password@host/db`
    /// [default: sqlite://DATA_DIR/natter.db].
    #[arg(long, env = "NATTER_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// PostgreSQL connections this node keeps at most [default: 10].
    #[arg(long, env = "NATTER_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// LLM provider: `openai` (any OpenAI-compatible endpoint), `anthropic` (Messages API),
    /// `local` (SmolLM2 on the CPU, offline; `natter model pull` fetches it) or `demo` (canned).
    /// Default: `openai` when an OpenAI key is set, else `anthropic` when ANTHROPIC_API_KEY is
    /// set, else `local` when the model file is present, else `demo`.
    #[arg(long, env = "NATTER_PROVIDER")]
    pub provider: Option<String>,
    /// Model name sent to the provider [default: gpt-4o-mini; claude-sonnet-4-5 for anthropic].
    #[arg(long, env = "NATTER_MODEL")]
    pub model: Option<String>,
    /// Base URL of the OpenAI-compatible API [default: https://api.openai.com/v1].
    /// The key comes from OPENAI_API_KEY or NATTER_API_KEY.
    #[arg(long, env = "NATTER_OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    /// Base URL of the Anthropic API, without `/v1` [default: https://api.anthropic.com].
    /// The key comes from ANTHROPIC_API_KEY.
    #[arg(long, env = "NATTER_ANTHROPIC_BASE_URL")]
    pub anthropic_base_url: Option<String>,
    /// System prompt put before every chat's context.
    #[arg(long, env = "NATTER_SYSTEM_PROMPT")]
    pub system_prompt: Option<String>,
    /// Turns running at once across all chats, at most 1048576 [default: 64].
    #[arg(long, env = "NATTER_MAX_CONCURRENT_TURNS")]
    pub max_concurrent_turns: Option<usize>,
    /// Overall limit for one turn, in seconds, at most 86400 [default: 120].
    #[arg(long, env = "NATTER_TURN_TIMEOUT_SECS")]
    pub turn_timeout_secs: Option<f64>,
    /// Upstream retries before the first token [default: 3].
    #[arg(long, env = "NATTER_RETRY_MAX")]
    pub retry_max: Option<u32>,
    /// No retry starts later than this many seconds into a turn, at most 3600 [default: 20].
    #[arg(long, env = "NATTER_RETRY_WINDOW_SECS")]
    pub retry_window_secs: Option<f64>,
    /// First retry delay in milliseconds, doubled each time, at most 60000 [default: 250].
    #[arg(long, env = "NATTER_RETRY_BASE_DELAY_MS")]
    pub retry_base_delay_ms: Option<u64>,
    /// Longest message text in bytes [default: 262144].
    #[arg(long, env = "NATTER_MAX_TEXT_BYTES")]
    pub max_text_bytes: Option<usize>,
    /// Largest Engine.IO packet in bytes [default: 4194304].
    #[arg(long, env = "NATTER_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<u64>,
    /// Engine.IO heartbeat: how often the server pings each connection, in milliseconds
    /// [default: 25000].
    #[arg(long, env = "NATTER_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// Engine.IO heartbeat: how long a client has to answer a ping before it is dropped, in
    /// milliseconds [default: 20000].
    #[arg(long, env = "NATTER_PING_TIMEOUT_MS")]
    pub ping_timeout_ms: Option<u64>,
    /// Messages of context sent to the model [default: 40].
    #[arg(long, env = "NATTER_CONTEXT_MAX_MESSAGES")]
    pub context_max_messages: Option<usize>,
    /// Bytes of context text (with earlier tool arguments and results) sent to the model
    /// [default: 32768].
    #[arg(long, env = "NATTER_CONTEXT_MAX_BYTES")]
    pub context_max_bytes: Option<usize>,
    /// Messages in the join ack [default: 50].
    #[arg(long, env = "NATTER_JOIN_HISTORY")]
    pub join_history: Option<usize>,
    /// `every_message` (default) or `off`.
    #[arg(long, env = "NATTER_AI_MODE")]
    pub ai_mode: Option<String>,
    /// Ask customers to rate a chat when it ends (`csat:request`, SSE `show_csat_survey`):
    /// `on` or `off` [default: on].
    #[arg(long, env = "NATTER_CSAT")]
    pub csat: Option<String>,
    /// Whether the OpenAI-compatible and Anthropic models take images: `on` (image parts) or
    /// `off` (a `[image: name, WxH]` line instead) [default: on].
    #[arg(long, env = "NATTER_VISION")]
    pub vision: Option<String>,
    /// Characters of document text a message hands the model, across its documents; past it
    /// the text is cut with a marker [default: 20000].
    #[arg(long, env = "NATTER_ATTACHMENT_TEXT_BUDGET")]
    pub attachment_text_budget: Option<usize>,
    /// Seconds a turn waits for a document of its message still being processed, at most
    /// 3600 [default: 30].
    #[arg(long, env = "NATTER_ATTACHMENT_PROCESSING_TIMEOUT_SECS")]
    pub attachment_processing_timeout_secs: Option<f64>,
    /// Seconds reading one document (PDF text extraction) may take before its reader is
    /// killed and the document marked `error` (`timeout`), at most 3600 [default: 20].
    #[arg(long, env = "NATTER_ATTACHMENT_EXTRACT_TIMEOUT_SECS")]
    pub attachment_extract_timeout_secs: Option<f64>,
    /// Address space, in MiB, of the child process that reads a PDF (`RLIMIT_AS`); a document
    /// needing more is marked `error` (`too_large`), at least 64 [default: 1024].
    #[arg(long, env = "NATTER_ATTACHMENT_EXTRACT_MEMORY_MB")]
    pub attachment_extract_memory_mb: Option<u64>,
    /// Largest attachment accepted, in bytes; a larger upload is refused (`413 too_large`) as
    /// soon as it passes this, at most 1073741824 [default: 10485760].
    #[arg(long, env = "NATTER_MAX_ATTACHMENT_BYTES")]
    pub max_attachment_bytes: Option<u64>,
    /// Attachment uploads per minute by one user [default: 30; 0: no limit].
    #[arg(long, env = "NATTER_ATTACHMENT_UPLOADS_PER_MINUTE")]
    pub attachment_uploads_per_minute: Option<u32>,
    /// Bytes of attachments one chat may hold; an upload past it is `quota_exceeded`
    /// [default: 104857600; 0: no limit].
    #[arg(long, env = "NATTER_ATTACHMENT_QUOTA_BYTES")]
    pub attachment_quota_bytes: Option<u64>,
    /// Seconds after which an attachment no message refers to is deleted (the hourly sweep
    /// and `natter attachments gc`), at least 60 [default: 86400].
    #[arg(long, env = "NATTER_ATTACHMENT_ORPHAN_SECS")]
    pub attachment_orphan_secs: Option<u64>,
    /// Packets buffered per socket before the server waits for it, at most 1048576 [default: 256].
    #[arg(long, env = "NATTER_SOCKET_BUFFER")]
    pub socket_buffer: Option<usize>,
    /// Events a member may fall behind before it catches up coalesced, at most 1048576
    /// [default: 256].
    /// Preallocated per chat with members on this node (about 40 bytes an event).
    #[arg(long, env = "NATTER_BUS_CAPACITY")]
    pub bus_capacity: Option<usize>,
    /// Event bus: `memory` (one process) or `redis://[user:password@]host:port/[db]` (several
    /// nodes: events, running turns, presence and turn leases go through Redis)
    /// [default: memory].
    #[arg(long, env = "NATTER_BUS")]
    pub bus: Option<String>,
    /// Seconds a socket may refuse writes before it is dropped as a slow consumer, at most 3600
    /// [default: 10].
    #[arg(long, env = "NATTER_SLOW_CONSUMER_TIMEOUT_SECS")]
    pub slow_consumer_timeout_secs: Option<f64>,
    /// Merge upstream deltas that have already arrived into one token event, up to this many
    /// bytes; 0 sends one event per delta [default: 4096].
    #[arg(long, env = "NATTER_MERGE_DELTA_BYTES")]
    pub merge_delta_bytes: Option<usize>,
    /// Seconds running turns get to store their end on shutdown, at most 3600 [default: 5].
    #[arg(long, env = "NATTER_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<f64>,
    /// SQLite commit durability: `full` (default, survives power loss) or `normal`.
    #[arg(long, env = "NATTER_SQLITE_DURABILITY")]
    pub sqlite_durability: Option<String>,
    /// Handshake fields that name a chat to join at once, besides `chatId` (comma-separated).
    #[arg(long, env = "NATTER_CHAT_KEY_FIELDS", value_delimiter = ',')]
    pub chat_key_fields: Option<Vec<String>>,
    /// Seconds between `: heartbeat` comments on seed 002's SSE stream, 0.01 to 3600 [default: 30].
    #[arg(long, env = "NATTER_SSE_HEARTBEAT_SECS")]
    pub sse_heartbeat_secs: Option<f64>,
    /// Base path of the AI SDK routes [default: /api/chat].
    #[arg(long, env = "NATTER_AISDK_BASE")]
    pub aisdk_base: Option<String>,
    /// Base path of seed 002's realtime API [default: /api/v1/chat].
    #[arg(long, env = "NATTER_REALTIME_BASE")]
    pub realtime_base: Option<String>,
    /// Base path of history REST [default: /api/v1/chats].
    #[arg(long, env = "NATTER_HISTORY_BASE")]
    pub history_base: Option<String>,
    /// Built-in server-run tools to offer the model: `current_time`, `http_get` (comma-separated;
    /// none by default).
    #[arg(long, env = "NATTER_TOOLS", value_delimiter = ',')]
    pub tools: Option<Vec<String>>,
    /// URL prefixes `http_get` may fetch (comma-separated; required with `http_get`).
    #[arg(long, env = "NATTER_HTTP_GET_ALLOW", value_delimiter = ',')]
    pub http_get_allow: Option<Vec<String>>,
    /// Most model calls in one turn; each tool round trip is one more [default: 8].
    #[arg(long, env = "NATTER_MAX_STEPS")]
    pub max_steps: Option<usize>,
    /// Seconds a turn waits for a member to answer a client-run tool call, at most 86400
    /// [default: 60].
    #[arg(long, env = "NATTER_CLIENT_TOOL_TIMEOUT_SECS")]
    pub client_tool_timeout_secs: Option<f64>,
    /// In the TOML file: `[[client_tools]]` with `name`, `description` and `parameters` (a
    /// JSON Schema): tools a member of the chat runs (`executor: "client"`).
    #[arg(skip)]
    pub client_tools: Option<Vec<ClientToolSetting>>,
    /// In the TOML file: `[[providers]]` with `name`, `kind` (`openai`, `anthropic` or
    /// `demo`), `base_url` and `api_key_env` (the environment variable holding its key):
    /// more LLM endpoints, for agents to name.
    #[arg(skip)]
    pub providers: Option<Vec<ProviderSetting>>,
    /// In the TOML file: `[[agents]]` with `id`, `name`, `description`, `system_prompt`,
    /// `provider`, `model`, `tools` and `temperature`: named assistants a chat is bound to.
    #[arg(skip)]
    pub agents: Option<Vec<AgentSetting>>,
    /// Rename a Socket.IO event: `--event-name userMessage=msg:send` (repeatable).
    #[arg(
        long = "event-name",
        env = "NATTER_EVENT_NAMES",
        value_delimiter = ',',
        value_name = "KEY=NAME"
    )]
    #[serde(skip)]
    pub event_name: Option<Vec<String>>,
    /// In the TOML file: `[event_names]` table of `EventKey = "wire name"`.
    #[arg(skip)]
    pub event_names: Option<BTreeMap<String, String>>,
    /// `on` (every connection and request needs a valid token) or `off` (development:
    /// identity from the handshake or body). Default: `on` when a JWT secret is set, else `off`.
    #[arg(long, env = "NATTER_AUTH")]
    pub auth: Option<String>,
    /// HS256 secret that tokens are signed with (at least 32 bytes).
    #[arg(long, env = "NATTER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Required `iss` of tokens (not checked when unset).
    #[arg(long, env = "NATTER_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of tokens (not checked when unset).
    #[arg(long, env = "NATTER_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds, at most 3600 [default: 30].
    #[arg(long, env = "NATTER_JWT_LEEWAY_SECS")]
    pub jwt_leeway_secs: Option<u64>,
    /// A scope every token must carry, e.g. `chat:connect` (not checked when unset).
    #[arg(long, env = "NATTER_JWT_REQUIRED_SCOPE")]
    pub jwt_required_scope: Option<String>,
    /// Browser origins allowed to call the server (comma-separated, e.g.
    /// `https://app.example.com`). A request whose `Origin` is not listed is refused. Defense in
    /// depth only: tokens are what authorize. Default: any origin.
    #[arg(long, env = "NATTER_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// User messages per minute from one connection [default: 60; 0: no limit].
    #[arg(long, env = "NATTER_MESSAGE_RATE_PER_CONNECTION")]
    pub message_rate_per_connection: Option<u32>,
    /// User messages per minute from one user, all connections together [default: 120].
    #[arg(long, env = "NATTER_MESSAGE_RATE_PER_USER")]
    pub message_rate_per_user: Option<u32>,
    /// User messages per minute from one IP address [default: 1200].
    #[arg(long, env = "NATTER_MESSAGE_RATE_PER_IP")]
    pub message_rate_per_ip: Option<u32>,
    /// AI replies started per minute from one connection [default: 20].
    #[arg(long, env = "NATTER_TURN_RATE_PER_CONNECTION")]
    pub turn_rate_per_connection: Option<u32>,
    /// AI replies started per minute by one user [default: 30].
    #[arg(long, env = "NATTER_TURN_RATE_PER_USER")]
    pub turn_rate_per_user: Option<u32>,
    /// AI replies started per minute from one IP address [default: 600].
    #[arg(long, env = "NATTER_TURN_RATE_PER_IP")]
    pub turn_rate_per_ip: Option<u32>,
    /// Open sockets, SSE streams and WebSockets per user [default: 32; 0: no limit].
    #[arg(long, env = "NATTER_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<usize>,
    /// Open sockets, SSE streams and WebSockets per IP address [default: 512; 0: no limit].
    #[arg(long, env = "NATTER_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Chats one socket may be in at once [default: 100; 0: no limit].
    #[arg(long, env = "NATTER_MAX_JOINS_PER_SOCKET")]
    pub max_joins_per_socket: Option<usize>,
    /// The local model's GGUF file [default: DATA_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf,
    /// else the same file under the per-user cache, ~/.cache/natter/, where `natter model
    /// pull` puts it by default].
    #[arg(long, env = "NATTER_MODEL_PATH")]
    pub model_path: Option<PathBuf>,
    /// Local generations running at once, each with its own KV cache [default: 1].
    #[arg(long, env = "NATTER_LOCAL_WORKERS")]
    pub local_workers: Option<usize>,
    /// Local model sampling temperature; 0 is greedy [default: 0.2].
    #[arg(long, env = "NATTER_LOCAL_TEMPERATURE")]
    pub local_temperature: Option<f64>,
    /// Local model nucleus (top-p) sampling [default: 0.9].
    #[arg(long, env = "NATTER_LOCAL_TOP_P")]
    pub local_top_p: Option<f64>,
    /// Local model sampling seed; each generation adds its count [default: 299792458].
    #[arg(long, env = "NATTER_LOCAL_SEED")]
    pub local_seed: Option<u64>,
    /// Longest local reply in tokens [default: 512].
    #[arg(long, env = "NATTER_LOCAL_MAX_TOKENS")]
    pub local_max_tokens: Option<usize>,
}

/// A client-run tool declared in the TOML file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientToolSetting {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A JSON Schema for the input [default: any object].
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
}

/// An extra LLM endpoint declared in the TOML file (`[[providers]]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSetting {
    /// What agents call it by (`provider = "…"`).
    pub name: String,
    /// `openai` (any OpenAI-compatible endpoint), `anthropic` or `demo`.
    pub kind: String,
    /// [default: the kind's public API]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The environment variable holding its API key [default: the kind's usual one,
    /// OPENAI_API_KEY / ANTHROPIC_API_KEY]. Keys are never written in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
}

/// A named assistant declared in the TOML file (`[[agents]]`, CONTRACT §7.5).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSetting {
    /// What a chat is bound by (`metadata.agentId`, `chat:join {agentId}`, AI SDK `agentId`).
    pub id: String,
    /// Shown in lists; seed 002 may bind by it (`metadata.agentName`).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub system_prompt: String,
    /// A `[[providers]]` name, or `openai` / `anthropic` / `local` / `demo` (that kind with
    /// the server's own settings) [default: the server's provider].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// [default: the server's model on the server's provider, else the kind's default]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Names of the server's tools (`tools`, `[[client_tools]]`) it may call [default: all].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Sampling temperature, 0 to 2 [default: the provider's].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
}

macro_rules! layer {
    ($self:ident, $other:ident, $($field:ident),*) => {
        Settings { $($field: $self.$field.or($other.$field)),* }
    };
}

impl Settings {
    /// `self` wins over `other` field by field.
    pub fn or(self, other: Settings) -> Settings {
        layer!(
            self,
            other,
            listen,
            log_format,
            data_dir,
            database,
            database_max_connections,
            provider,
            model,
            openai_base_url,
            anthropic_base_url,
            system_prompt,
            max_concurrent_turns,
            turn_timeout_secs,
            retry_max,
            retry_window_secs,
            retry_base_delay_ms,
            max_text_bytes,
            max_payload_bytes,
            ping_interval_ms,
            ping_timeout_ms,
            context_max_messages,
            context_max_bytes,
            join_history,
            ai_mode,
            csat,
            vision,
            attachment_text_budget,
            attachment_processing_timeout_secs,
            attachment_extract_timeout_secs,
            attachment_extract_memory_mb,
            max_attachment_bytes,
            attachment_uploads_per_minute,
            attachment_quota_bytes,
            attachment_orphan_secs,
            socket_buffer,
            bus_capacity,
            bus,
            slow_consumer_timeout_secs,
            merge_delta_bytes,
            shutdown_grace_secs,
            sqlite_durability,
            chat_key_fields,
            sse_heartbeat_secs,
            aisdk_base,
            realtime_base,
            history_base,
            tools,
            http_get_allow,
            max_steps,
            client_tool_timeout_secs,
            client_tools,
            providers,
            agents,
            event_name,
            event_names,
            auth,
            jwt_secret,
            jwt_issuer,
            jwt_audience,
            jwt_leeway_secs,
            jwt_required_scope,
            allowed_origins,
            message_rate_per_connection,
            message_rate_per_user,
            message_rate_per_ip,
            turn_rate_per_connection,
            turn_rate_per_user,
            turn_rate_per_ip,
            max_connections_per_user,
            max_connections_per_ip,
            max_joins_per_socket,
            model_path,
            local_workers,
            local_temperature,
            local_top_p,
            local_seed,
            local_max_tokens
        )
    }

    pub fn from_toml_file(path: &Path) -> anyhow::Result<Settings> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

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
fn data_dir(s: &Settings) -> anyhow::Result<PathBuf> {
    match &s.data_dir {
        // An empty one would silently put the database in the working directory.
        Some(d) if d.as_os_str().is_empty() => bail!("data_dir must not be empty"),
        Some(d) => Ok(d.clone()),
        None => Ok(PathBuf::from(DEFAULT_DATA_DIR)),
    }
}

/// `sqlite://` URL of the database file in `data_dir` (the default `database`).
fn database_in(data_dir: &Path) -> anyhow::Result<String> {
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
}

fn local_model_config(s: &Settings, data_dir: &Path) -> anyhow::Result<LocalModelConfig> {
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
    })
}

/// API keys, read from the environment by the binary (never from flags or the TOML file).
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    /// OPENAI_API_KEY or NATTER_API_KEY.
    pub openai: Option<String>,
    /// ANTHROPIC_API_KEY.
    pub anthropic: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub log_format: LogFormat,
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
    pub socket_buffer: usize,
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

fn auth_config(s: &Settings) -> anyhow::Result<AuthConfig> {
    let secret = s.jwt_secret.clone().filter(|v| !v.is_empty());
    let mode = match s.auth.as_deref() {
        Some("on") => AuthMode::On,
        Some("off") => AuthMode::Off,
        Some(other) => bail!("auth must be `on` or `off`, got `{other}`"),
        None if secret.is_some() => AuthMode::On,
        None => AuthMode::Off,
    };
    let defaults = AuthConfig::default();
    Ok(AuthConfig {
        mode,
        secret,
        issuer: s.jwt_issuer.clone().filter(|v| !v.is_empty()),
        audience: s.jwt_audience.clone().filter(|v| !v.is_empty()),
        leeway: match s.jwt_leeway_secs {
            Some(v) => Duration::from_secs(at_most("jwt_leeway_secs", v, HOUR)?),
            None => defaults.leeway,
        },
        required_scope: s.jwt_required_scope.clone().filter(|v| !v.is_empty()),
    })
}

fn limits_config(s: &Settings) -> LimitsConfig {
    let d = LimitsConfig::default();
    LimitsConfig {
        messages: ScopedRate {
            per_connection: s
                .message_rate_per_connection
                .unwrap_or(d.messages.per_connection),
            per_user: s.message_rate_per_user.unwrap_or(d.messages.per_user),
            per_ip: s.message_rate_per_ip.unwrap_or(d.messages.per_ip),
        },
        turns: ScopedRate {
            per_connection: s.turn_rate_per_connection.unwrap_or(d.turns.per_connection),
            per_user: s.turn_rate_per_user.unwrap_or(d.turns.per_user),
            per_ip: s.turn_rate_per_ip.unwrap_or(d.turns.per_ip),
        },
        max_connections_per_user: s
            .max_connections_per_user
            .unwrap_or(d.max_connections_per_user),
        max_connections_per_ip: s.max_connections_per_ip.unwrap_or(d.max_connections_per_ip),
        uploads_per_user: s
            .attachment_uploads_per_minute
            .unwrap_or(d.uploads_per_user),
    }
}

/// Origins as browsers send them: scheme, host and port, no path or trailing slash.
fn origins(list: Option<Vec<String>>) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for o in list.unwrap_or_default() {
        let o = o.trim().trim_end_matches('/').to_owned();
        if o.is_empty() {
            continue;
        }
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
            bail!("allowed_origins takes origins like `https://app.example.com`, got `{o}`");
        }
        out.push(o);
    }
    Ok(out)
}

/// Which tools turns may call.
#[derive(Debug, Clone, Default)]
pub struct ToolsConfig {
    pub current_time: bool,
    /// `Some` (with its allow-list) when `http_get` is enabled.
    pub http_get_allow: Option<Vec<String>>,
    pub client: Vec<ToolSpec>,
}

fn tools_config(
    tools: Option<Vec<String>>,
    http_get_allow: Option<Vec<String>>,
    client: Option<Vec<ClientToolSetting>>,
) -> anyhow::Result<ToolsConfig> {
    let mut cfg = ToolsConfig::default();
    for name in tools.unwrap_or_default() {
        match name.trim() {
            "" => {}
            "current_time" => cfg.current_time = true,
            "http_get" => {
                let allow: Vec<String> = http_get_allow
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect();
                if allow.is_empty() {
                    bail!(
                        "the http_get tool needs http_get_allow (--http-get-allow) with at least one URL prefix"
                    );
                }
                for p in &allow {
                    if !(p.starts_with("https://") || p.starts_with("http://")) {
                        bail!(
                            "http_get_allow (--http-get-allow) takes http(s) URL prefixes, got `{p}`"
                        );
                    }
                }
                cfg.http_get_allow = Some(allow);
            }
            other => {
                bail!("tools: unknown tool `{other}` (built-in tools: current_time, http_get)")
            }
        }
    }
    for t in client.unwrap_or_default() {
        if !natter_core::tools::valid_tool_name(&t.name) {
            bail!(
                "client tool name `{}` must be 1-64 letters, digits, `_` or `-`",
                t.name
            );
        }
        let parameters = t
            .parameters
            .unwrap_or_else(|| serde_json::json!({"type": "object"}));
        if !parameters.is_object() {
            bail!(
                "client tool `{}`: parameters must be a JSON Schema object",
                t.name
            );
        }
        // A bad schema would fail every call at run time.
        natter_core::tools::check_schema(&parameters).map_err(|e| {
            anyhow::anyhow!(
                "client tool `{}`: the tool's own schema is invalid: {e}",
                t.name
            )
        })?;
        cfg.client.push(ToolSpec {
            name: t.name,
            description: t.description,
            parameters,
        });
    }
    Ok(cfg)
}

/// One provider besides the server's own, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    /// The name agents use: a `[[providers]]` name, or a built-in kind's name.
    pub name: String,
    pub kind: ProviderKind,
    /// The API's base URL (unused by `local` and `demo`).
    pub base_url: String,
    pub api_key: Option<String>,
    /// The `api_key_env` it was declared with (for `--print-config`).
    pub api_key_env: Option<String>,
    /// Declared in `[[providers]]` (else a built-in kind on the server's settings).
    pub declared: bool,
}

/// One agent, resolved: `provider` is `None` for the server's own provider, else the name
/// of one of [`ServerConfig::providers`].
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub system_prompt: String,
    pub provider: Option<String>,
    /// The model its turns ask for.
    pub model: String,
    pub tools: Option<Vec<String>>,
    pub temperature: Option<f32>,
}

const BUILT_IN_PROVIDERS: [&str; 4] = ["openai", "anthropic", "local", "demo"];

/// Whether `s` is usable as an id or name in the file: 1-128 characters, no control
/// characters, not only whitespace.
fn plain_name(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().count() <= 128 && !s.chars().any(char::is_control)
}

/// Resolves `[[providers]]` and `[[agents]]`: every provider an agent names exists, every
/// tool it names is one of the server's, and ids are unique.
#[allow(clippy::too_many_arguments)]
fn agents_config(
    providers: Option<Vec<ProviderSetting>>,
    agents: Option<Vec<AgentSetting>>,
    server: ProviderKind,
    server_model: &str,
    keys: &ApiKeys,
    openai_base_url: &str,
    anthropic_base_url: &str,
    local_model: &LocalModelConfig,
    tools: &ToolsConfig,
) -> anyhow::Result<(Vec<ProviderSpec>, Vec<AgentConfig>)> {
    let mut declared: Vec<ProviderSpec> = Vec::new();
    for p in providers.unwrap_or_default() {
        let name = p.name.trim().to_owned();
        if !plain_name(&name) {
            bail!("providers: a provider needs a `name` (1-128 characters)");
        }
        if BUILT_IN_PROVIDERS.contains(&name.as_str()) {
            bail!(
                "providers: `{name}` is a built-in provider name (openai, anthropic, local, demo); give this one another name"
            );
        }
        if declared.iter().any(|d| d.name == name) {
            bail!("providers: two providers are named `{name}`");
        }
        let kind = match p.kind.as_str() {
            "openai" => ProviderKind::OpenAi,
            "anthropic" => ProviderKind::Anthropic,
            "demo" => ProviderKind::Demo,
            "local" => bail!(
                "provider `{name}`: kind `local` is the server's one local model; agents name it as provider = \"local\""
            ),
            other => bail!(
                "provider `{name}`: kind must be `openai`, `anthropic` or `demo`, got `{other}`"
            ),
        };
        let default_url = match kind {
            ProviderKind::Anthropic => DEFAULT_ANTHROPIC_BASE_URL,
            _ => DEFAULT_OPENAI_BASE_URL,
        };
        let base_url = p.base_url.clone().unwrap_or_else(|| default_url.to_owned());
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            bail!("provider `{name}`: base_url must be an http(s) URL, got `{base_url}`");
        }
        let api_key = match &p.api_key_env {
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|k| !k.is_empty())
                    .with_context(|| {
                        format!(
                            "provider `{name}`: the environment variable `{var}` (api_key_env) is not set"
                        )
                    })?,
            ),
            None => match kind {
                ProviderKind::OpenAi => keys.openai.clone(),
                ProviderKind::Anthropic => keys.anthropic.clone(),
                _ => None,
            },
        };
        if kind == ProviderKind::Anthropic
            && api_key.is_none()
            && base_url.trim_end_matches('/') == DEFAULT_ANTHROPIC_BASE_URL
        {
            bail!(
                "provider `{name}`: no API key for the Anthropic API (set ANTHROPIC_API_KEY, or api_key_env)"
            );
        }
        declared.push(ProviderSpec {
            name,
            kind,
            base_url,
            api_key,
            api_key_env: p.api_key_env,
            declared: true,
        });
    }
    let mut specs: Vec<ProviderSpec> = declared.clone();
    let mut out: Vec<AgentConfig> = Vec::new();
    let mut server_tools: Vec<&str> = Vec::new();
    if tools.current_time {
        server_tools.push("current_time");
    }
    if tools.http_get_allow.is_some() {
        server_tools.push("http_get");
    }
    server_tools.extend(tools.client.iter().map(|t| t.name.as_str()));
    let known_providers = || {
        let mut names: Vec<String> = BUILT_IN_PROVIDERS.iter().map(|s| s.to_string()).collect();
        names.extend(declared.iter().map(|d| d.name.clone()));
        names.join(", ")
    };
    for a in agents.unwrap_or_default() {
        let id = a.id.trim().to_owned();
        if !plain_name(&id) || id.len() > natter_protocol::fields::MAX_ID_BYTES {
            bail!(
                "agents: an agent needs an `id` of 1-{} bytes",
                natter_protocol::fields::MAX_ID_BYTES
            );
        }
        if out.iter().any(|b| b.id == id) {
            bail!("agents: two agents have the id `{id}`");
        }
        if !plain_name(&a.name) {
            bail!("agent `{id}`: `name` must be 1-128 characters");
        }
        if let Some(t) = a.temperature
            && !(t.is_finite() && (0.0..=2.0).contains(&t))
        {
            bail!("agent `{id}`: temperature must be between 0 and 2, got {t}");
        }
        if let Some(list) = &a.tools {
            for t in list {
                if !server_tools.contains(&t.as_str()) {
                    bail!(
                        "agent `{id}`: unknown tool `{t}` (the server's tools: {}; enable built-ins with `tools`, declare client-run ones with [[client_tools]])",
                        if server_tools.is_empty() {
                            "none".to_owned()
                        } else {
                            server_tools.join(", ")
                        }
                    );
                }
            }
        }
        // Which provider, and its kind (for the default model).
        let (provider, kind) = match a.provider.as_deref().map(str::trim) {
            None => (None, server),
            Some(name) if name == server.as_str() => (None, server),
            Some(name) => {
                if let Some(d) = declared.iter().find(|d| d.name == name) {
                    (Some(name.to_owned()), d.kind)
                } else {
                    let kind = match name {
                        "openai" => ProviderKind::OpenAi,
                        "anthropic" => ProviderKind::Anthropic,
                        "local" => ProviderKind::Local,
                        "demo" => ProviderKind::Demo,
                        other => bail!(
                            "agent `{id}`: unknown provider `{other}` (known: {}; declare more with [[providers]])",
                            known_providers()
                        ),
                    };
                    if !specs.iter().any(|s| s.name == name) {
                        let (base_url, api_key) = match kind {
                            ProviderKind::OpenAi => {
                                (openai_base_url.to_owned(), keys.openai.clone())
                            }
                            ProviderKind::Anthropic => {
                                (anthropic_base_url.to_owned(), keys.anthropic.clone())
                            }
                            _ => (String::new(), None),
                        };
                        if kind == ProviderKind::Anthropic
                            && api_key.is_none()
                            && base_url.trim_end_matches('/') == DEFAULT_ANTHROPIC_BASE_URL
                        {
                            bail!(
                                "agent `{id}`: provider `anthropic` needs ANTHROPIC_API_KEY (or --anthropic-base-url to a local endpoint)"
                            );
                        }
                        if kind == ProviderKind::Local && !local_model.path.is_file() {
                            bail!(
                                "agent `{id}`: provider `local`: no model file at {} (run `natter model pull`)",
                                local_model.path.display()
                            );
                        }
                        specs.push(ProviderSpec {
                            name: name.to_owned(),
                            kind,
                            base_url,
                            api_key,
                            api_key_env: None,
                            declared: false,
                        });
                    }
                    (Some(name.to_owned()), kind)
                }
            }
        };
        let model = match (&a.model, &provider) {
            (Some(m), _) => m.clone(),
            (None, None) => server_model.to_owned(),
            (None, Some(_)) => default_model(kind),
        };
        out.push(AgentConfig {
            id,
            name: a.name,
            description: a.description.filter(|d| !d.is_empty()),
            system_prompt: a.system_prompt,
            provider,
            model,
            tools: a.tools,
            temperature: a.temperature,
        });
    }
    // Only providers some agent uses are built.
    specs.retain(|s| out.iter().any(|a| a.provider.as_deref() == Some(&s.name)) || s.declared);
    Ok((specs, out))
}

/// The model a provider kind uses when nothing names one.
fn default_model(kind: ProviderKind) -> String {
    match kind {
        ProviderKind::Demo => "demo".into(),
        ProviderKind::Local => "SmolLM2-135M-Instruct".into(),
        ProviderKind::OpenAi => CoreConfig::default().model,
        ProviderKind::Anthropic => DEFAULT_ANTHROPIC_MODEL.into(),
    }
}

/// A heartbeat setting: at least 50 ms (shorter would be all pings and no chat), at most an hour.
fn heartbeat_millis(what: &str, v: Option<u64>, default: u64) -> anyhow::Result<Duration> {
    match v.unwrap_or(default) {
        ms @ 50..=3_600_000 => Ok(Duration::from_millis(ms)),
        ms => bail!("{what} must be between 50 and 3600000 milliseconds, got {ms}"),
    }
}

/// A duration setting in seconds, at most `max_secs`: anything longer is a typo, and some are
/// added to the clock, where an absurd value would overflow.
fn secs(what: &str, v: f64, max_secs: u64) -> anyhow::Result<Duration> {
    let d = Duration::try_from_secs_f64(v)
        .map_err(|_| anyhow::anyhow!("{what} must be a non-negative number of seconds, got {v}"))?;
    if d > Duration::from_secs(max_secs) {
        bail!("{what} must be at most {max_secs} seconds, got {v}");
    }
    Ok(d)
}

/// A count setting, at most `max`: larger values are preallocated or make the runtime panic.
fn at_most<T: PartialOrd + std::fmt::Display>(what: &str, v: T, max: T) -> anyhow::Result<T> {
    if v > max {
        bail!("{what} must be at most {max}, got {v}");
    }
    Ok(v)
}

const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;
/// Counts that size queues, channels and semaphores.
const MAX_QUEUE: usize = 1 << 20;

impl ServerConfig {
    /// Resolves settings into a configuration. `keys` come from the environment.
    pub fn resolve(s: Settings, keys: ApiKeys) -> anyhow::Result<ServerConfig> {
        let auth_settings = auth_config(&s)?;
        let auth = Authenticator::new(&auth_settings).map_err(anyhow::Error::msg)?;
        let allowed_origins = origins(s.allowed_origins.clone())?;
        let limits = limits_config(&s);
        let data_dir = data_dir(&s)?;
        let local_model = local_model_config(&s, &data_dir)?;
        let mut provider_note = None;
        let provider = match s.provider.as_deref() {
            Some("openai") => ProviderKind::OpenAi,
            Some("anthropic") => ProviderKind::Anthropic,
            Some("local") if !local_model.path.is_file() => bail!(
                "provider `local`: no model file at {} (run `natter model pull`, or set model_path / --model-path)",
                local_model.path.display()
            ),
            Some("local") => ProviderKind::Local,
            Some("demo") => ProviderKind::Demo,
            Some(other) => {
                bail!("provider must be `openai`, `anthropic`, `local` or `demo`, got `{other}`")
            }
            None if keys.openai.is_some() => ProviderKind::OpenAi,
            None if keys.anthropic.is_some() => ProviderKind::Anthropic,
            None if local_model.path.is_file() => ProviderKind::Local,
            None => {
                provider_note = Some(format!(
                    "no model at {}: using the demo provider; `natter model pull` fetches a real offline model (about 93 MB)",
                    local_model.path.display()
                ));
                ProviderKind::Demo
            }
        };
        let anthropic_base_url = s
            .anthropic_base_url
            .unwrap_or_else(|| DEFAULT_ANTHROPIC_BASE_URL.to_owned());
        // Agents may name the other kinds, with their own keys.
        let keys_for_agents = keys.clone();
        let api_key = match provider {
            ProviderKind::OpenAi => keys.openai,
            ProviderKind::Anthropic => keys.anthropic,
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
        let mut core = CoreConfig {
            limits,
            ..CoreConfig::default()
        };
        core.model = s.model.unwrap_or_else(|| match provider {
            ProviderKind::Demo => "demo".into(),
            ProviderKind::Local => "SmolLM2-135M-Instruct".into(),
            ProviderKind::OpenAi => core.model.clone(),
            ProviderKind::Anthropic => DEFAULT_ANTHROPIC_MODEL.into(),
        });
        core.system_prompt = s.system_prompt;
        core.ai_mode = match s.ai_mode.as_deref() {
            None | Some("every_message") => AiMode::EveryMessage,
            Some("off") => AiMode::Off,
            Some(other) => bail!("unknown ai_mode `{other}` (expected `every_message` or `off`)"),
        };
        core.csat = match s.csat.as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => bail!("unknown csat `{other}` (expected `on` or `off`)"),
        };
        let vision = match s.vision.as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => bail!("unknown vision `{other}` (expected `on` or `off`)"),
        };
        core.attachments.vision = vision;
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
            core.attachments.processing_timeout =
                secs("attachment_processing_timeout_secs", v, 3600)?;
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
            core.retry.base_delay =
                Duration::from_millis(at_most("retry_base_delay_ms", v, 60_000)?);
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
        let mut names = s.event_names.unwrap_or_default();
        for pair in s.event_name.unwrap_or_default() {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("--event-name takes KEY=NAME, got `{pair}`"))?;
            names.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        let event_names = EventNames::with_overrides(&names).context("event names")?;
        let mut chat_key_fields = vec!["chatId".to_owned()];
        for f in s.chat_key_fields.unwrap_or_default() {
            let f = f.trim().to_owned();
            if !f.is_empty() && !chat_key_fields.contains(&f) {
                chat_key_fields.push(f);
            }
        }
        let sqlite_durability = match s.sqlite_durability.as_deref() {
            None | Some("full") => Durability::Full,
            Some("normal") => Durability::Normal,
            Some(other) => {
                bail!("unknown sqlite_durability `{other}` (expected `full` or `normal`)")
            }
        };
        let database = match s.database {
            Some(url) => url,
            None => database_in(&data_dir)?,
        };
        crate::store::DatabaseKind::of(&database)?;
        if s.database_max_connections == Some(0) {
            bail!("database_max_connections must be at least 1");
        }
        let bus = s.bus.unwrap_or_else(|| DEFAULT_BUS.to_owned());
        crate::cluster::BusKind::of(&bus)?;
        if let Some(v) = s.max_steps {
            if v == 0 {
                bail!("max_steps must be at least 1");
            }
            core.max_steps = v;
        }
        if let Some(v) = s.client_tool_timeout_secs {
            core.client_tool_timeout = secs("client_tool_timeout_secs", v, DAY)?;
        }
        let tools = tools_config(s.tools, s.http_get_allow, s.client_tools)?;
        let openai_base_url = s
            .openai_base_url
            .unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned());
        let (providers, agents) = agents_config(
            s.providers,
            s.agents,
            provider,
            &core.model,
            &keys_for_agents,
            &openai_base_url,
            &anthropic_base_url,
            &local_model,
            &tools,
        )?;
        let max_payload_bytes = s.max_payload_bytes.unwrap_or(4 * 1024 * 1024);
        let defaults = HttpConfig::default();
        let base = |v: Option<String>, field: &str, default: String| -> anyhow::Result<String> {
            let v = v.unwrap_or(default);
            if !v.starts_with('/') || v.contains(['{', '}', '*']) {
                bail!("{field} must be a path starting with `/`, got `{v}`");
            }
            Ok(v)
        };
        let http = HttpConfig {
            aisdk_base: base(s.aisdk_base, "aisdk_base", defaults.aisdk_base)?,
            realtime_base: base(s.realtime_base, "realtime_base", defaults.realtime_base)?,
            history_base: base(s.history_base, "history_base", defaults.history_base)?,
            heartbeat: match s.sse_heartbeat_secs {
                Some(v) if v < 0.01 => bail!("sse_heartbeat_secs must be at least 0.01, got {v}"),
                Some(v) => secs("sse_heartbeat_secs", v, HOUR)?,
                None => defaults.heartbeat,
            },
            max_body_bytes: usize::try_from(max_payload_bytes).unwrap_or(usize::MAX),
            max_page: defaults.max_page,
            auth: auth.clone(),
        };
        let log_format = match s.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("unknown log_format `{other}` (expected `text` or `json`)"),
        };
        Ok(ServerConfig {
            listen: s.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            log_format,
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
            socketio: SocketIoConfig {
                event_names,
                chat_key_fields,
                auth,
                max_joins_per_socket: s
                    .max_joins_per_socket
                    .unwrap_or(SocketIoConfig::default().max_joins_per_socket),
            },
            http,
            max_payload_bytes,
            ping_interval: heartbeat_millis("ping_interval_ms", s.ping_interval_ms, 25_000)?,
            ping_timeout: heartbeat_millis("ping_timeout_ms", s.ping_timeout_ms, 20_000)?,
            socket_buffer: at_most("socket_buffer", s.socket_buffer.unwrap_or(256), MAX_QUEUE)?
                .max(8),
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
            extract_memory_bytes: {
                let mb = s.attachment_extract_memory_mb.unwrap_or(1024);
                if !(64..=1024 * 1024).contains(&mb) {
                    anyhow::bail!(
                        "attachment_extract_memory_mb must be between 64 and 1048576 (got {mb})"
                    );
                }
                mb * 1024 * 1024
            },
            tools,
            providers,
            agents,
            auth_mode: auth_settings.mode,
            allowed_origins,
        })
    }
}

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

#[cfg(test)]
mod tests {
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
        assert!(
            refused("tools = [\"http_get\"]\nhttp_get_allow = [\"ftp://x/\"]").contains("http(s)")
        );
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
}
