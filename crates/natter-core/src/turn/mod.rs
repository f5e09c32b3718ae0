//! Turns: one LLM generation answering a user message.
//!
//! The [scheduler](crate::scheduler) starts them, one at a time per chat. A semaphore bounds
//! the turns running at once on a node. A turn is a small state machine:
//! queued → working → (retrying → working)* → streaming → one durable end event
//! (`AssistantMessage`, or `TurnFailed` keeping any partial text), written with the chat's
//! turn fence so only the chat's current owner can store it.
//!
//! The files, in the order a turn goes through them:
//! - `steps.rs`: the chat's agent, then steps (a model call, then the tools it asked for)
//!   until the model answers in text.
//! - `context.rs`: the messages the model is given: the history within the byte budget,
//!   earlier turns' tool calls and results, the system prompt.
//! - `model_call.rs`: one step's model call: the provider's stream read into live events
//!   (in the `provider.stream` span), retried while nothing came out.
//! - `tool_calls.rs`: running the tools the model asked for, storing each call and result.
//! - `finish.rs`: storing the turn's one end event and telling the chat.

mod context;
mod finish;
mod model_call;
mod steps;
mod tool_calls;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use crate::chat::ChatKey;
use crate::core::Inner;
use crate::event::{LiveEvent, ProcessingStatus, TurnRef, Usage};
use crate::provider::{ProviderError, ToolSpec};
use crate::store::Guard;
use crate::telemetry;
use natter_protocol::ErrorCode;
use natter_protocol::socketio::TurnWarning;

pub(crate) use finish::{Ended, failed_body, finish};

#[derive(Debug, Clone)]
pub(crate) struct TurnRequest {
    pub chat: ChatKey,
    /// The context ends at this `seq` (the user message the turn answers).
    pub context_seq: u64,
    pub request_id: Arc<str>,
    pub trace_id: Option<Arc<str>>,
    /// Client-run tools declared with the message, besides the registry's.
    pub client_tools: Vec<ToolSpec>,
    /// The chat's turn fence this node holds: every write of the turn is fenced with it.
    pub fence: u64,
}

/// Why a turn was stopped from outside.
#[derive(Debug, Clone)]
pub(crate) enum StopReason {
    Aborted(Option<String>),
    Shutdown,
    /// Another node took the chat's turns over: this one stores nothing more.
    LeaseLost,
}

/// How a generation ended.
pub(crate) enum Ending {
    Finished(String),
    Stopped(StopReason),
    TimedOut,
    Failed(ProviderError),
    /// Refused before generating (the chat's agent is not configured any more).
    Refused(ErrorCode, String),
}

pub(crate) struct Generation {
    text: String,
    usage: Option<Usage>,
    tokens: u64,
    ending: Ending,
    /// The model asked (the chat's agent's); `None`: the core's.
    model: Option<String>,
    /// What the reply did not do that its sender may expect (tools not offered).
    warnings: Vec<TurnWarning>,
}

impl Generation {
    /// A turn that ends before any output.
    pub fn empty(ending: Ending) -> Self {
        Self {
            text: String::new(),
            usage: None,
            tokens: 0,
            ending,
            model: None,
            warnings: Vec::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn stop_reason(stop: &Mutex<Option<StopReason>>) -> StopReason {
    lock(stop).clone().unwrap_or(StopReason::Aborted(None))
}

/// Runs one turn that the scheduler started: waits for a slot, generates, stores its end.
pub(crate) async fn run(
    inner: &Arc<Inner>,
    req: &TurnRequest,
    turn: &TurnRef,
    cancel: &CancellationToken,
    stop: &Mutex<Option<StopReason>>,
) -> Ended {
    let started = Instant::now();
    // An embedder's CoreConfig is not range-checked: a timeout too long to add means none.
    let deadline = tokio::time::Instant::now()
        .checked_add(inner.config.turn_timeout)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
    // Wait for a slot under the node's limit; the turn stays abortable meanwhile.
    let permit = tokio::select! {
        p = inner.turns.permits().acquire_owned() => p.ok(),
        _ = cancel.cancelled() => None,
    };
    let generation = match permit {
        None => Generation::empty(Ending::Stopped(stop_reason(stop))),
        Some(_permit) => {
            metrics::gauge!(telemetry::TURNS_RUNNING).increment(1.0);
            let running = RunningTurn {
                inner,
                req,
                turn: Arc::new(turn.clone()),
                cancel,
                stop,
                deadline,
                started: Instant::now(),
            };
            let g = running.generate().await;
            metrics::gauge!(telemetry::TURNS_RUNNING).decrement(1.0);
            g
        }
    };
    let elapsed = started.elapsed();
    inner.turns.record_duration(elapsed);
    metrics::histogram!(telemetry::TURN_DURATION).record(elapsed.as_secs_f64());
    finish(inner, &req.chat, turn, generation, Guard::Fence(req.fence)).await
}

/// A turn that holds a slot and generates: what each part of it needs.
struct RunningTurn<'a> {
    inner: &'a Arc<Inner>,
    req: &'a TurnRequest,
    turn: Arc<TurnRef>,
    cancel: &'a CancellationToken,
    stop: &'a Mutex<Option<StopReason>>,
    deadline: tokio::time::Instant,
    /// When generating began: the retry window and the time to the first token count from
    /// here.
    started: Instant,
}

impl RunningTurn<'_> {
    /// Resolves once the turn is stopped from outside or runs out of time, with the ending
    /// that makes. Every wait of the turn races it; a stop is checked before the deadline.
    async fn interrupted(&self) -> Ending {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Ending::Stopped(stop_reason(self.stop)),
            _ = sleep_until(self.deadline) => Ending::TimedOut,
        }
    }

    /// The turn's `Processing` event with `status`.
    fn processing(&self, status: ProcessingStatus, reason: Option<String>) -> LiveEvent {
        LiveEvent::Processing {
            request_id: self.req.request_id.clone(),
            status,
            eta_ms: None,
            reason,
            trace_id: self.req.trace_id.clone(),
        }
    }
}
