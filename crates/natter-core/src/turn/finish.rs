//! A turn's end: its one durable end event (`AssistantMessage` or `TurnFailed`), stored with
//! the chat's turn fence, and the chat told.

use std::sync::Arc;
use std::time::Duration;

use natter_protocol::ErrorCode;
use natter_protocol::time::now_millis;
use tracing::{info, warn};

use super::{Ending, Generation, StopReason};
use crate::chat::ChatKey;
use crate::core::Inner;
use crate::event::{EventBody, LiveEvent, TurnRef};
use crate::store::{Guard, StoreError};
use crate::telemetry;

/// What became of a turn's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Stored (or the chat was deleted, and the turn with it).
    Stored,
    /// Members were told the turn ended, but storing it failed: the store still has it open.
    Unstored,
    /// Not this node's to store: another owner holds the chat's turns, or the turn is no
    /// longer queued. Nothing was stored or told.
    Refused,
}

impl Ended {
    pub(crate) fn from_store_error(e: &StoreError) -> Self {
        match e {
            StoreError::NoSuchChat(_) => Self::Stored,
            StoreError::Fenced { .. } | StoreError::NotQueued { .. } => Self::Refused,
            StoreError::Backend(_) => Self::Unstored,
        }
    }
}

/// Stores the turn's end event (if `guard` holds) and tells the chat. A store failure is
/// retried a few times; the turn's tokens were live-only, so losing the end would lose the
/// reply; when it still fails, members are told the turn ended ([`Ended::Unstored`]).
pub(crate) async fn finish(
    inner: &Arc<Inner>,
    chat: &ChatKey,
    turn: &TurnRef,
    g: Generation,
    guard: Guard,
) -> Ended {
    metrics::counter!(telemetry::TOKENS).increment(g.tokens);
    let token_count = g.tokens;
    let model = g.model.unwrap_or_else(|| inner.config.model.clone());
    let warnings = (!g.warnings.is_empty()).then_some(g.warnings);
    // A finished or aborted turn is a reply; only the finish reason differs.
    let reply = |finish_reason: String, text: String| EventBody::AssistantMessage {
        message_id: turn.message_id.to_string(),
        request_id: turn.request_id.to_string(),
        text,
        finish_reason,
        usage: g.usage,
        model: Some(model.clone()),
        trace_id: turn.trace_id.as_deref().map(str::to_owned),
        token_count: Some(g.tokens),
        warnings: warnings.clone(),
    };
    let (body, outcome) = match g.ending {
        Ending::Finished(reason) => (reply(reason, g.text), "finished"),
        Ending::Stopped(StopReason::Aborted(reason)) => {
            info!(reason = reason.as_deref().unwrap_or(""), "turn aborted");
            (reply("aborted".into(), g.text), "aborted")
        }
        Ending::Stopped(StopReason::LeaseLost) => {
            info!("another node took the chat's turns over; this turn's end is theirs to store");
            return Ended::Refused;
        }
        Ending::Stopped(StopReason::Shutdown) => (
            failed_body(
                turn,
                ErrorCode::Shutdown,
                "the server is shutting down".into(),
                true,
                g.text,
                Some(g.tokens),
            ),
            "shutdown",
        ),
        Ending::TimedOut => (
            failed_body(
                turn,
                ErrorCode::Timeout,
                format!(
                    "the turn ran past its {} s limit",
                    inner.config.turn_timeout.as_secs_f64()
                ),
                true,
                g.text,
                Some(g.tokens),
            ),
            "timeout",
        ),
        Ending::Failed(err) => (
            failed_body(
                turn,
                err.kind.code(),
                err.message.clone(),
                err.retryable(),
                g.text,
                Some(g.tokens),
            ),
            "failed",
        ),
        Ending::Refused(code, message) => (
            failed_body(turn, code, message, false, g.text, Some(g.tokens)),
            "failed",
        ),
    };
    if let EventBody::TurnFailed { code, .. } = &body {
        metrics::counter!(telemetry::ERRORS, "code" => code.clone()).increment(1);
    }
    metrics::counter!(telemetry::TURNS, "outcome" => outcome).increment(1);
    info!(outcome, tokens = g.tokens, "turn ended");
    let mut delay = Duration::from_millis(100);
    for attempt in 0..5 {
        match inner
            .store
            .append_guarded(chat, body.clone(), now_millis(), guard.clone())
            .await
        {
            Ok(appended) => {
                inner
                    .publish_durable(chat, appended.event().clone(), None)
                    .await;
                return Ended::Stored;
            }
            Err(StoreError::NoSuchChat(_)) => {
                info!("the chat was deleted during the turn; its end is not stored");
                return Ended::Stored;
            }
            Err(e @ (StoreError::Fenced { .. } | StoreError::NotQueued { .. })) => {
                info!(error = %e, "the turn's end is not this node's to store");
                return Ended::Refused;
            }
            Err(e) => {
                warn!(attempt, error = %e, "storing the end of a turn failed");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    // Members must still see the turn end (one ai:message or ai:error per turn), and the bus
    // must drop its token buffer; what is lost is only the durable record.
    let partial_text = match body {
        EventBody::AssistantMessage { text, .. }
        | EventBody::TurnFailed {
            partial_text: text, ..
        } => text,
        _ => String::new(),
    };
    let end = failed_body(
        turn,
        ErrorCode::Unavailable,
        "the reply ended but could not be stored; it is not in the chat's history".into(),
        true,
        partial_text,
        Some(token_count),
    );
    inner
        .publish_live(
            chat,
            LiveEvent::TurnEndUnstored {
                turn: Arc::new(turn.clone()),
                end: Box::new(end),
            },
            None,
        )
        .await;
    Ended::Unstored
}

pub(crate) fn failed_body(
    turn: &TurnRef,
    code: ErrorCode,
    message: String,
    retryable: bool,
    partial_text: String,
    token_count: Option<u64>,
) -> EventBody {
    EventBody::TurnFailed {
        message_id: turn.message_id.to_string(),
        request_id: turn.request_id.to_string(),
        code: code.as_str().to_owned(),
        message,
        retryable,
        partial_text,
        trace_id: turn.trace_id.as_deref().map(str::to_owned),
        token_count,
    }
}
