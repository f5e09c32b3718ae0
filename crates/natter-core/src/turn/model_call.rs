//! One step's model call: the provider's stream read to its end, its text and tool input sent
//! to the chat as they come, and a failure before any output retried as the policy allows.
//!
//! Each attempt runs in a `provider.stream` span (a child of the turn's, exported with
//! `--otlp-endpoint`) that lasts from the request until the stream ends, fails, or is dropped
//! by an abort or the turn's timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use tracing::{Instrument, Span, info, info_span};

use super::{Ending, Generation, RunningTurn};
use crate::core::Inner;
use crate::event::{LiveEvent, ProcessingStatus, Usage};
use crate::provider::{
    CompletionRequest, Provider, ProviderError, ProviderErrorKind, ProviderEvent, ProviderStream,
    ToolCall,
};
use crate::telemetry;

/// The model's answer to one step.
pub(super) struct StepAnswer {
    pub finish_reason: String,
    /// The step's text (the turn's text holds it too): it goes back to the model with the
    /// step's tool calls.
    pub text: String,
    pub calls: Vec<ToolCall>,
}

/// What a step has streamed so far. Kept across the step's attempts: one is retried only
/// before any output, so what carries over is at most a usage report.
#[derive(Default)]
struct StepState {
    /// Retries made so far.
    attempt: u32,
    finish_reason: Option<String>,
    text: String,
    tokens: u64,
    /// Some servers repeat usage within a stream: the step's last report counts.
    usage: Option<Usage>,
    calls: Vec<ToolCall>,
    /// Calls whose input went out as it streamed (`ToolInputStart`): output, like tokens.
    streamed_inputs: Vec<Arc<str>>,
}

impl StepState {
    /// Whether any of the step reached the chat (tokens, a call, a call's input): a failure
    /// after that is not retried.
    fn has_output(&self) -> bool {
        self.tokens != 0 || !self.calls.is_empty() || !self.streamed_inputs.is_empty()
    }
}

/// How one attempt at a step's model call ended, when it did not end the turn.
enum Attempt {
    /// The stream held its `Finish`, with this reason.
    Finished(String),
    /// It failed; retried if the step has no output yet and the policy allows.
    Failed(ProviderError),
}

/// An item of a provider's stream (`None`: the stream ended).
type StreamItem = Option<Result<ProviderEvent, ProviderError>>;

impl RunningTurn<'_> {
    /// Asks the model once for this step, retrying a failure before the step's first output
    /// as the retry policy allows. Text goes to `g` (and the chat) as it streams.
    pub(super) async fn call_model(
        &self,
        g: &mut Generation,
        provider: &dyn Provider,
        request: &CompletionRequest,
    ) -> Result<StepAnswer, Ending> {
        let mut step = StepState::default();
        let finish_reason = loop {
            match self.attempt(g, provider, request, &mut step).await? {
                Attempt::Finished(reason) => break reason,
                Attempt::Failed(err) => self.retry_or_fail(&mut step, err).await?,
            }
        };
        Ok(StepAnswer {
            finish_reason,
            text: step.text,
            calls: step.calls,
        })
    }

    /// Decides whether a failed attempt is retried: only before the step's first output, for
    /// a retryable error, within the policy's count and window. `Ok` once the backoff is
    /// waited (members see `retrying`, then `working` again); `Err`: the turn ends.
    async fn retry_or_fail(&self, step: &mut StepState, err: ProviderError) -> Result<(), Ending> {
        let inner = self.inner;
        let policy = &inner.config.retry;
        let delay = retry_delay(inner, step.attempt, &err);
        let in_window = self.started.elapsed().saturating_add(delay) <= policy.window;
        if step.has_output() || !err.retryable() || step.attempt >= policy.max_retries || !in_window
        {
            return Err(Ending::Failed(err));
        }
        step.attempt += 1;
        metrics::counter!(telemetry::UPSTREAM_RETRIES).increment(1);
        info!(
            attempt = step.attempt,
            error = %err,
            delay_ms = delay.as_millis() as u64,
            "retrying upstream"
        );
        let chat = &self.req.chat;
        let reason = format!("{}: {}", err.kind.code(), err.message);
        inner
            .publish_live(
                chat,
                self.processing(ProcessingStatus::Retrying, Some(reason)),
                None,
            )
            .await;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            ending = self.interrupted() => return Err(ending),
        }
        inner
            .publish_live(chat, self.processing(ProcessingStatus::Working, None), None)
            .await;
        Ok(())
    }

    /// One try at the step's model call: opens the provider's stream and reads it to its end.
    async fn attempt(
        &self,
        g: &mut Generation,
        provider: &dyn Provider,
        request: &CompletionRequest,
        step: &mut StepState,
    ) -> Result<Attempt, Ending> {
        let span = info_span!(
            "provider.stream",
            provider = provider.name(),
            model = %request.model,
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
        );
        let opened = tokio::select! {
            r = provider.stream(request.clone()).instrument(span.clone()) => r,
            ending = self.interrupted() => return Err(ending),
        };
        let mut stream = match opened {
            Ok(stream) => StreamInSpan { stream, span },
            Err(e) => {
                record_error(&span, &e);
                return Ok(Attempt::Failed(e));
            }
        };
        // An item read ahead while merging deltas, handled on the next round.
        let mut lookahead: Option<StreamItem> = None;
        loop {
            let item = match lookahead.take() {
                Some(item) => item,
                None => tokio::select! {
                    biased;
                    ending = self.interrupted() => return Err(ending),
                    item = stream.next() => item,
                },
            };
            match item {
                Some(Ok(ProviderEvent::TextDelta(delta))) => {
                    self.send_text(g, step, &mut stream, &mut lookahead, delta)
                        .await
                }
                Some(Ok(ProviderEvent::Usage(u))) => step.usage = Some(u),
                Some(Ok(ProviderEvent::ToolCall(call))) => step.calls.push(call),
                Some(Ok(ProviderEvent::ToolCallStart { id, name })) => {
                    self.send_tool_input_start(request, step, id, name).await
                }
                Some(Ok(ProviderEvent::ToolCallDelta { id, arguments })) => {
                    self.send_tool_input_delta(step, &mut stream, &mut lookahead, id, arguments)
                        .await
                }
                Some(Ok(ProviderEvent::Finish(reason))) => step.finish_reason = Some(reason),
                // The reply was complete; a broken tail costs nothing.
                Some(Err(_)) if step.finish_reason.is_some() => break,
                Some(Err(e)) => {
                    record_error(&stream.span, &e);
                    return Ok(Attempt::Failed(e));
                }
                None => break,
            }
        }
        if let Some(u) = step.usage.take() {
            g.usage = Some(add_usage(g.usage, u));
        }
        let ended = match step.finish_reason.take() {
            Some(reason) => return Ok(Attempt::Finished(reason)),
            None if !step.has_output() => Ok(Attempt::Failed(ProviderError::new(
                ProviderErrorKind::Cut,
                "the upstream stream ended before any output",
            ))),
            None => Err(Ending::Failed(ProviderError::new(
                ProviderErrorKind::Cut,
                "the upstream stream ended before the reply finished",
            ))),
        };
        if let Ok(Attempt::Failed(e)) | Err(Ending::Failed(e)) = &ended {
            record_error(&stream.span, e);
        }
        ended
    }

    /// A text delta as one token event, with the deltas that already arrived (the same for
    /// every member, CONTRACT §6.4). Nothing waits for more, so latency is unchanged; bursts
    /// cost one event instead of many.
    async fn send_text(
        &self,
        g: &mut Generation,
        step: &mut StepState,
        stream: &mut StreamInSpan,
        lookahead: &mut Option<StreamItem>,
        mut delta: String,
    ) {
        if delta.is_empty() {
            return;
        }
        let limit = self.inner.config.merge_delta_bytes;
        merge_ready(stream, lookahead, limit, &mut delta, |event| match event {
            ProviderEvent::TextDelta(more) => Ok(more),
            other => Err(other),
        });
        if g.tokens == 0 {
            metrics::histogram!(telemetry::TURN_FIRST_TOKEN)
                .record(self.started.elapsed().as_secs_f64());
        }
        g.text.push_str(&delta);
        step.text.push_str(&delta);
        let token = LiveEvent::Token {
            turn: self.turn.clone(),
            index: g.tokens,
            text: delta.into(),
        };
        self.inner.publish_live(&self.req.chat, token, None).await;
        g.tokens += 1;
        step.tokens += 1;
    }

    /// A call's input begins to stream, for UIs that show it growing; only when tools were
    /// offered (a call otherwise is ignored), once per call.
    async fn send_tool_input_start(
        &self,
        request: &CompletionRequest,
        step: &mut StepState,
        id: String,
        name: String,
    ) {
        if request.tools.is_empty() || step.streamed_inputs.iter().any(|s| **s == *id) {
            return;
        }
        let id: Arc<str> = id.into();
        step.streamed_inputs.push(id.clone());
        let start = LiveEvent::ToolInputStart {
            turn: self.turn.clone(),
            tool_call_id: id,
            name: name.into(),
        };
        self.inner.publish_live(&self.req.chat, start, None).await;
    }

    /// A piece of a started call's input, with the pieces that already arrived, as text
    /// deltas are.
    async fn send_tool_input_delta(
        &self,
        step: &StepState,
        stream: &mut StreamInSpan,
        lookahead: &mut Option<StreamItem>,
        id: String,
        mut arguments: String,
    ) {
        let Some(id) = step.streamed_inputs.iter().find(|s| ***s == *id).cloned() else {
            return;
        };
        if arguments.is_empty() {
            return;
        }
        let limit = self.inner.config.merge_delta_bytes;
        merge_ready(
            stream,
            lookahead,
            limit,
            &mut arguments,
            |event| match event {
                ProviderEvent::ToolCallDelta {
                    id: next,
                    arguments: more,
                } if *next == *id => Ok(more),
                other => Err(other),
            },
        );
        let delta = LiveEvent::ToolInputDelta {
            turn: self.turn.clone(),
            tool_call_id: id,
            delta: arguments.into(),
        };
        self.inner.publish_live(&self.req.chat, delta, None).await;
    }
}

/// Appends to `piece` the stream's items that already arrived and `more` takes (giving back
/// their text), while `piece` is under `limit` bytes; nothing waits. The first item `more`
/// does not take, or the stream's end or error, is left in `lookahead`.
fn merge_ready(
    stream: &mut StreamInSpan,
    lookahead: &mut Option<StreamItem>,
    limit: usize,
    piece: &mut String,
    more: impl Fn(ProviderEvent) -> Result<String, ProviderEvent>,
) {
    while piece.len() < limit {
        match stream.next().now_or_never() {
            Some(Some(Ok(event))) => match more(event) {
                Ok(text) => piece.push_str(&text),
                Err(other) => {
                    *lookahead = Some(Some(Ok(other)));
                    break;
                }
            },
            Some(other) => {
                *lookahead = Some(other);
                break;
            }
            None => break,
        }
    }
}

/// A provider's stream read inside its `provider.stream` span: each poll enters the span (so
/// what the provider logs while streaming lands in it), and dropping the stream closes it,
/// so the span lasts exactly as long as the model call. The span is entered only within a
/// synchronous poll, never across an await.
struct StreamInSpan {
    stream: ProviderStream,
    span: Span,
}

impl Stream for StreamInSpan {
    type Item = Result<ProviderEvent, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        this.stream.poll_next_unpin(cx)
    }
}

/// Marks a model call's span as failed (OpenTelemetry's status), with the error.
fn record_error(span: &Span, err: &ProviderError) {
    span.record("otel.status_code", "error");
    span.record("otel.status_message", tracing::field::display(err));
}

fn retry_delay(inner: &Inner, attempt: u32, err: &ProviderError) -> Duration {
    let policy = &inner.config.retry;
    if let Some(after) = err.retry_after {
        return after.min(policy.window);
    }
    let exp = policy.base_delay.saturating_mul(1u32 << attempt.min(10));
    // Up to 25 % jitter so a crowd of turns does not retry in lockstep.
    let exp_millis = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX);
    let jitter =
        u64::from(uuid::Uuid::new_v4().as_u128() as u16).saturating_mul(exp_millis) / (4 * 65_536);
    exp.saturating_add(Duration::from_millis(jitter))
        .min(policy.max_delay)
}

fn add_usage(total: Option<Usage>, step: Usage) -> Usage {
    let t = total.unwrap_or_default();
    Usage {
        prompt_tokens: t.prompt_tokens.saturating_add(step.prompt_tokens),
        completion_tokens: t.completion_tokens.saturating_add(step.completion_tokens),
        total_tokens: t.total_tokens.saturating_add(step.total_tokens),
    }
}
