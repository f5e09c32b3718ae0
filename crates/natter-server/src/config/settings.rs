//! Every setting as read: one struct that is at once the `serve` flags (with their `NATTER_*`
//! variables) and the TOML file's keys, and the `[[client_tools]]`, `[[providers]]` and
//! `[[agents]]` tables. Nothing here validates; see `resolve.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

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
    /// Export OpenTelemetry traces over OTLP/HTTP (protobuf) to this collector, e.g.
    /// `http://127.0.0.1:4318` (`/v1/traces` is added) [default: off].
    #[arg(long, env = "NATTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
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
    /// Packets buffered per socket before the server waits for it, at most 1048576; the
    /// `socketioxide` transport's bound [default: 256].
    #[arg(long, env = "NATTER_SOCKET_BUFFER")]
    pub socket_buffer: Option<usize>,
    /// The Socket.IO transport: `natter` (the project's own, natter-socketio-transport) or
    /// `socketioxide` [default: natter].
    #[arg(long, env = "NATTER_SOCKETIO_TRANSPORT")]
    pub socketio_transport: Option<String>,
    /// Bytes queued per Socket.IO connection before the server waits for it, 1024 to
    /// 1073741824; the `natter` transport's bound [default: 1048576].
    #[arg(long, env = "NATTER_SOCKET_QUEUE_BYTES")]
    pub socket_queue_bytes: Option<usize>,
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
    /// A Jinja chat template file for the local model, instead of the GGUF's own
    /// `tokenizer.chat_template` (needed when the file has none) [default: the file's].
    #[arg(long, env = "NATTER_CHAT_TEMPLATE")]
    pub chat_template: Option<PathBuf>,
    /// CPU threads per local generation, 1 to 1024 [default: every core].
    #[arg(long, env = "NATTER_LOCAL_THREADS")]
    pub local_threads: Option<usize>,
    /// Local model layers offloaded to the GPU, 0 to 1024 (a build with the `cuda` or
    /// `metal` feature of natter-local-model; more than the model has offloads all)
    /// [default: 0, CPU only].
    #[arg(long, env = "NATTER_LOCAL_GPU_LAYERS")]
    pub local_gpu_layers: Option<u32>,
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
            otlp_endpoint,
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
            socketio_transport,
            socket_queue_bytes,
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
            local_max_tokens,
            chat_template,
            local_threads,
            local_gpu_layers
        )
    }

    pub fn from_toml_file(path: &Path) -> anyhow::Result<Settings> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}
