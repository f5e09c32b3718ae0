//! Metric names, in one place so dashboards and docs agree with the code.

pub const CONNECTIONS: &str = "natter_connections";
pub const CHATS_JOINED: &str = "natter_chat_joins_total";
pub const CHATS_ACTIVE: &str = "natter_chats_active";
pub const MESSAGES: &str = "natter_messages_total";
pub const TURNS: &str = "natter_turns_total";
pub const TURNS_RUNNING: &str = "natter_turns_running";
pub const TOKENS: &str = "natter_tokens_total";
pub const ERRORS: &str = "natter_errors_total";
pub const TURN_DURATION: &str = "natter_turn_duration_seconds";
pub const TURN_FIRST_TOKEN: &str = "natter_turn_first_token_seconds";
pub const UPSTREAM_RETRIES: &str = "natter_upstream_retries_total";
pub const SLOW_CONSUMERS: &str = "natter_slow_consumer_disconnects_total";
pub const TOOL_CALLS: &str = "natter_tool_calls_total";
pub const LEASES_HELD: &str = "natter_leases_held";
pub const TURNS_TAKEN_OVER: &str = "natter_turns_taken_over_total";
pub const TURN_PANICS: &str = "natter_turn_panics_total";
pub const CSAT_RATING: &str = "natter_csat_rating";

/// Every name above: `docs/operations.md`, the dashboard and the alert rules are checked
/// against it (natter-server's `tests/ops_assets.rs`).
pub const ALL: &[&str] = &[
    CONNECTIONS,
    CHATS_JOINED,
    CHATS_ACTIVE,
    MESSAGES,
    TURNS,
    TURNS_RUNNING,
    TOKENS,
    ERRORS,
    TURN_DURATION,
    TURN_FIRST_TOKEN,
    UPSTREAM_RETRIES,
    SLOW_CONSUMERS,
    TOOL_CALLS,
    LEASES_HELD,
    TURNS_TAKEN_OVER,
    TURN_PANICS,
    CSAT_RATING,
];

/// Registers descriptions so `/metrics` explains itself.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Open client connections, by face");
    describe_counter!(CHATS_JOINED, "Chat joins");
    describe_gauge!(
        CHATS_ACTIVE,
        "Chats with members or a running turn on this node"
    );
    describe_counter!(MESSAGES, "User messages stored (duplicates excluded)");
    describe_counter!(TURNS, "Finished AI turns, by outcome");
    describe_gauge!(TURNS_RUNNING, "AI turns streaming now");
    describe_counter!(TOKENS, "Token events produced by turns");
    describe_counter!(ERRORS, "Errors returned to clients, by code");
    describe_histogram!(TURN_DURATION, Unit::Seconds, "Turn duration, start to end");
    describe_histogram!(
        TURN_FIRST_TOKEN,
        Unit::Seconds,
        "Time from turn start to first token"
    );
    describe_counter!(UPSTREAM_RETRIES, "Upstream retries before the first token");
    describe_counter!(SLOW_CONSUMERS, "Connections dropped for falling behind");
    describe_counter!(TOOL_CALLS, "Tool calls the model made");
    describe_gauge!(
        LEASES_HELD,
        "Chat turn leases this node holds (chats it drives)"
    );
    describe_counter!(
        TURNS_TAKEN_OVER,
        "Turns ended as interrupted because their node stopped or lost its lease"
    );
    describe_counter!(
        TURN_PANICS,
        "Turns whose task panicked (ended with ai:error internal)"
    );
    describe_histogram!(
        CSAT_RATING,
        "CSAT ratings submitted (1-5; a replaced answer counts again)"
    );
}
