//! Tunables of the core. Every field has a default that suits a single small node.

use std::time::Duration;

/// When a user message starts an AI turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AiMode {
    /// Every user message gets a reply (the default).
    #[default]
    EveryMessage,
    /// No AI: a plain human chat.
    Off,
}

/// Retries of upstream failures before the first token.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// No retry starts later than this after the turn began.
    pub window: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            window: Duration::from_secs(20),
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub model: String,
    pub system_prompt: Option<String>,
    pub ai_mode: AiMode,
    /// Context sent to the model: at most this many recent messages …
    pub context_max_messages: usize,
    /// … and at most this many bytes of message text, earlier tool arguments and results
    /// included (the newest messages win).
    pub context_max_bytes: usize,
    /// Messages returned in the join ack.
    pub join_history: usize,
    /// Longest message text accepted, in bytes.
    pub max_text_bytes: usize,
    /// Most ids in one read receipt.
    pub max_read_ids: usize,
    /// Turns running at once across all chats of this node.
    pub max_concurrent_turns: usize,
    /// Overall limit for one turn, retries included.
    pub turn_timeout: Duration,
    pub retry: RetryPolicy,
    /// Most events replayed on a join; a longer gap answers `recovered: false`.
    pub replay_limit: usize,
    /// Whether joining an unknown chat creates it.
    pub auto_create_chats: bool,
    /// How long a member's connection may refuse writes before it is dropped as a slow consumer.
    pub slow_consumer_timeout: Duration,
    /// Upstream deltas already received are merged into one token event up to this many
    /// bytes. 0 sends one event per upstream delta.
    pub merge_delta_bytes: usize,
    /// Most model calls in one turn (each tool round trip is one more). The last one is
    /// offered no tools, so the turn ends in text.
    pub max_steps: usize,
    /// How long a turn waits for a member to answer a client-run tool call.
    pub client_tool_timeout: Duration,
    /// Message and turn rates, open connections.
    pub limits: crate::limits::LimitsConfig,
    /// Ask customers for a rating when a chat ends (CONTRACT §7.4; `--csat off`).
    pub csat: bool,
    /// Attachments: sizes, quota, orphan sweep, what the model gets (CONTRACT §7.6).
    pub attachments: crate::attachments::AttachmentsConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            model: "gpt-4o-mini".into(),
            system_prompt: None,
            ai_mode: AiMode::EveryMessage,
            context_max_messages: 40,
            context_max_bytes: 32 * 1024,
            join_history: 50,
            max_text_bytes: 256 * 1024,
            max_read_ids: 500,
            max_concurrent_turns: 64,
            turn_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            replay_limit: 10_000,
            auto_create_chats: true,
            slow_consumer_timeout: Duration::from_secs(10),
            merge_delta_bytes: 4096,
            max_steps: 8,
            client_tool_timeout: Duration::from_secs(60),
            limits: crate::limits::LimitsConfig::default(),
            csat: true,
            attachments: crate::attachments::AttachmentsConfig::default(),
        }
    }
}
