//! Turns: one LLM generation answering a user message.
//!
//! The [scheduler](crate::scheduler) starts them, one at a time per chat. A semaphore bounds
//! the turns running at once on a node. A turn is a small state machine:
//! queued → working → (retrying → working)* → streaming → one durable end event
//! (`AssistantMessage`, or `TurnFailed` keeping any partial text), written with the chat's
//! turn fence so only the chat's current owner can store it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use natter_protocol::ErrorCode;
use natter_protocol::time::now_millis;
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::agents::Agent;
use crate::chat::ChatKey;
use crate::core::Inner;
use crate::event::{EventBody, LiveEvent, ProcessingStatus, TurnRef, Usage};
use crate::message_attachments;
use crate::provider::{
    CompletionRequest, PromptMessage, ProviderError, ProviderErrorKind, ProviderEvent, Role,
    ToolCall,
};
use crate::store::{Guard, StoreError};
use crate::telemetry;
use crate::tools::{Executor, check_arguments};

#[derive(Debug, Clone)]
pub(crate) struct TurnRequest {
    pub chat: ChatKey,
    /// The context ends at this `seq` (the user message the turn answers).
    pub context_seq: u64,
    pub request_id: Arc<str>,
    pub trace_id: Option<Arc<str>>,
    /// Client-run tools declared with the message, besides the registry's.
    pub client_tools: Vec<crate::provider::ToolSpec>,
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
            let g = generate(inner, req, turn, cancel, stop, deadline).await;
            metrics::gauge!(telemetry::TURNS_RUNNING).decrement(1.0);
            g
        }
    };
    let elapsed = started.elapsed();
    inner.turns.record_duration(elapsed);
    metrics::histogram!(telemetry::TURN_DURATION).record(elapsed.as_secs_f64());
    finish(inner, &req.chat, turn, generation, Guard::Fence(req.fence)).await
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

/// A store error while reading the context, as a turn error (not retried).
fn attachment_error(e: crate::error::CoreError) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Unavailable,
        format!("reading attachments: {e}"),
    )
}

fn context_error(e: StoreError) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Unavailable,
        format!("reading context: {e}"),
    )
}

/// The context: the latest messages up to the turn's `context_seq`, newest first until the
/// byte budget is spent, each reply preceded by its turn's tool calls and results (so the
/// model remembers what its tools returned), then the system prompt (the chat's agent's, else
/// the core's) first.
async fn build_context(
    inner: &Inner,
    req: &TurnRequest,
    agent: Option<&Agent>,
) -> Result<Vec<PromptMessage>, ProviderError> {
    let cfg = &inner.config;
    let events = inner
        .store
        .recent_messages(&req.chat, req.context_seq, cfg.context_max_messages)
        .await
        .map_err(context_error)?;
    let tool_events = context_tool_events(inner, req, &events).await?;
    // Newest first; each reply with its tools is one unit, so a cut never splits a call
    // from its result.
    let mut units: Vec<Vec<PromptMessage>> = Vec::new();
    let mut bytes = 0usize;
    let fits = |bytes: usize, more: usize, units: &Vec<Vec<PromptMessage>>| {
        bytes + more <= cfg.context_max_bytes || units.is_empty()
    };
    // A document still being processed is waited for at most this long, once for the turn.
    let processing_deadline = tokio::time::Instant::now() + cfg.attachments.processing_timeout;
    for event in events.iter().rev() {
        match &event.body {
            EventBody::UserMessage {
                text, attachments, ..
            } => {
                let attachments = attachments.as_deref().unwrap_or_default();
                if attachments.is_empty() {
                    // The newest message always goes in, even alone over the limit.
                    if !fits(bytes, text.len(), &units) {
                        break;
                    }
                    bytes += text.len();
                    units.push(vec![PromptMessage::text(Role::User, text.clone())]);
                    continue;
                }
                // Attachments count too (CONTRACT §7.6): documents' text, and images' bytes;
                // an older message whose images do not fit what is left keeps them as
                // `[image: …]` lines rather than being left out.
                let docs = message_attachments::documents_text(
                    inner,
                    &req.chat,
                    attachments,
                    processing_deadline,
                )
                .await
                .map_err(attachment_error)?;
                let mut content = text.clone();
                if !docs.is_empty() {
                    if !content.is_empty() {
                        content.push_str("\n\n");
                    }
                    content.push_str(&docs);
                }
                let image_bytes = message_attachments::image_bytes(attachments);
                let lines = message_attachments::image_lines(attachments);
                let message = if fits(bytes, content.len() + image_bytes, &units) {
                    bytes += content.len() + image_bytes;
                    let (images, gone) =
                        message_attachments::load_images(inner, &req.chat, attachments)
                            .await
                            .map_err(attachment_error)?;
                    for line in gone {
                        content.push('\n');
                        content.push_str(&line);
                    }
                    let mut m = PromptMessage::text(Role::User, content);
                    m.images = images;
                    m
                } else if fits(bytes, content.len() + lines.len() + 1, &units) {
                    bytes += content.len() + lines.len() + 1;
                    if !lines.is_empty() {
                        content.push('\n');
                        content.push_str(&lines);
                    }
                    PromptMessage::text(Role::User, content)
                } else {
                    break;
                };
                units.push(vec![message]);
            }
            EventBody::AssistantMessage {
                text, request_id, ..
            } => {
                let (tools, tool_bytes) = tool_messages(tool_events.get(request_id.as_str()));
                if text.is_empty() && tools.is_empty() {
                    continue;
                }
                let mut unit = Vec::new();
                if !tools.is_empty() && fits(bytes, text.len() + tool_bytes, &units) {
                    bytes += tool_bytes;
                    unit = tools;
                } else if text.is_empty() || !fits(bytes, text.len(), &units) {
                    // Neither the reply with its tools nor its text alone fits what is left.
                    break;
                }
                if !text.is_empty() {
                    bytes += text.len();
                    unit.push(PromptMessage::text(Role::Assistant, text.clone()));
                }
                units.push(unit);
            }
            _ => continue,
        }
    }
    let mut messages: Vec<PromptMessage> = units.into_iter().rev().flatten().collect();
    // The chat's agent's prompt, else the core's.
    let system = agent
        .and_then(|a| a.system_prompt.as_ref())
        .or(cfg.system_prompt.as_ref());
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        messages.insert(0, PromptMessage::text(Role::System, system.clone()));
    }
    Ok(messages)
}

/// Events read per page when collecting the context's tool events.
const CONTEXT_TOOL_PAGE: usize = 256;

/// The stored tool calls and results of the turns whose replies are among `messages`, by
/// request id, oldest first. A turn's tool events lie between the message that asked for it
/// and its reply, so when no `seq` is missing between the messages there are none, and
/// nothing more is read.
async fn context_tool_events<'a>(
    inner: &Inner,
    req: &TurnRequest,
    messages: &'a [crate::event::StoredEvent],
) -> Result<std::collections::HashMap<&'a str, Vec<crate::event::StoredEvent>>, ProviderError> {
    let mut by_turn = std::collections::HashMap::new();
    let replies: Vec<(&str, u64)> = messages
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::AssistantMessage { request_id, .. } => Some((request_id.as_str(), e.seq)),
            _ => None,
        })
        .collect();
    let (Some(first), Some(&(_, last_reply))) = (messages.first(), replies.last()) else {
        return Ok(by_turn);
    };
    let gapless = messages
        .windows(2)
        .take_while(|w| w[0].seq < last_reply)
        .all(|w| w[1].seq == w[0].seq + 1);
    if gapless {
        return Ok(by_turn);
    }
    let mut after = first.seq;
    let mut read = 0usize;
    while after < last_reply && read < inner.config.replay_limit {
        let page = inner
            .store
            .messages_after(&req.chat, after, CONTEXT_TOOL_PAGE)
            .await
            .map_err(context_error)?;
        read += page.len();
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = page.len() == CONTEXT_TOOL_PAGE;
        for event in page {
            if event.seq >= last_reply {
                break;
            }
            let request_id = match &event.body {
                EventBody::ToolCall { request_id, .. }
                | EventBody::ToolResult { request_id, .. } => request_id,
                _ => continue,
            };
            if let Some(&(turn, _)) = replies.iter().find(|(r, _)| r == request_id) {
                by_turn.entry(turn).or_insert_with(Vec::new).push(event);
            }
        }
        if !full {
            break;
        }
    }
    Ok(by_turn)
}

/// One turn's stored tool events as the model's messages: an assistant message with the
/// calls made together (the same `token_index`), then their results, for each call that has
/// a result (a call without one, cut by an abort, would be refused by the upstream). Returns
/// the messages and the bytes of arguments and results they hold.
fn tool_messages(events: Option<&Vec<crate::event::StoredEvent>>) -> (Vec<PromptMessage>, usize) {
    let Some(events) = events else {
        return (Vec::new(), 0);
    };
    let result_of = |id: &str| {
        events.iter().find_map(|e| match &e.body {
            EventBody::ToolResult {
                tool_call_id,
                result,
                error,
                ..
            } if tool_call_id == id => Some(tool_output(result.as_ref(), error.as_deref())),
            _ => None,
        })
    };
    let mut out: Vec<PromptMessage> = Vec::new();
    let mut results: Vec<PromptMessage> = Vec::new();
    let mut step: Option<u64> = None;
    let mut bytes = 0usize;
    for e in events {
        let EventBody::ToolCall {
            token_index,
            tool_call_id,
            name,
            arguments,
            ..
        } = &e.body
        else {
            continue;
        };
        let Some(content) = result_of(tool_call_id) else {
            continue;
        };
        // An invalid-JSON argument text was kept as a JSON string: give back the text.
        let arguments = match arguments {
            serde_json::Value::String(raw) => raw.clone(),
            v => v.to_string(),
        };
        bytes += arguments.len() + content.len();
        let call = ToolCall {
            id: tool_call_id.clone(),
            name: name.clone(),
            arguments,
        };
        match out.last_mut() {
            Some(m) if step == Some(*token_index) && m.role == Role::Assistant => {
                m.tool_calls.push(call)
            }
            _ => {
                out.append(&mut results);
                out.push(PromptMessage {
                    role: Role::Assistant,
                    content: String::new(),
                    tool_calls: vec![call],
                    tool_call_id: None,
                    images: Vec::new(),
                });
            }
        }
        step = Some(*token_index);
        results.push(PromptMessage {
            role: Role::Tool,
            content,
            tool_calls: Vec::new(),
            tool_call_id: Some(tool_call_id.clone()),
            images: Vec::new(),
        });
    }
    out.append(&mut results);
    (out, bytes)
}

/// What the model gets back for a tool's outcome: the result as JSON text, or
/// `{"error": …}`.
fn tool_output(result: Option<&serde_json::Value>, error: Option<&str>) -> String {
    match (result, error) {
        (Some(v), _) => v.to_string(),
        (None, Some(e)) => serde_json::json!({ "error": e }).to_string(),
        (None, None) => "null".to_owned(),
    }
}

async fn generate(
    inner: &Arc<Inner>,
    req: &TurnRequest,
    turn: &TurnRef,
    cancel: &CancellationToken,
    stop: &Mutex<Option<StopReason>>,
    deadline: tokio::time::Instant,
) -> Generation {
    let started = Instant::now();
    let turn = Arc::new(turn.clone());
    let mut g = Generation {
        text: String::new(),
        usage: None,
        tokens: 0,
        ending: Ending::Finished("stop".into()),
        model: None,
    };
    let processing = |status, reason| LiveEvent::Processing {
        request_id: req.request_id.clone(),
        status,
        eta_ms: None,
        reason,
        trace_id: req.trace_id.clone(),
    };
    inner
        .publish_live(&req.chat, processing(ProcessingStatus::Working, None), None)
        .await;
    inner
        .publish_live(
            &req.chat,
            LiveEvent::TurnStarted { turn: turn.clone() },
            None,
        )
        .await;

    // The chat's agent (CONTRACT §7.5): its prompt, provider, model, tools, temperature.
    let agent = match chat_agent(inner, &req.chat).await {
        Ok(a) => a,
        Err(ending) => {
            g.ending = ending;
            return g;
        }
    };
    let agent = agent.as_deref();
    let provider = agent
        .and_then(|a| a.provider.clone())
        .unwrap_or_else(|| inner.provider.clone());
    let model = agent
        .and_then(|a| a.model.clone())
        .unwrap_or_else(|| inner.config.model.clone());
    g.model = Some(model.clone());
    let allowed = agent.and_then(|a| a.tools.as_deref());
    // Building may wait for a document being processed: the turn stays abortable.
    let built = tokio::select! {
        built = build_context(inner, req, agent) => built,
        _ = cancel.cancelled() => { g.ending = Ending::Stopped(stop_reason(stop)); return g; }
        _ = sleep_until(deadline) => { g.ending = Ending::TimedOut; return g; }
    };
    let mut messages = match built {
        Ok(m) => m,
        Err(e) => {
            g.ending = Ending::Failed(e);
            return g;
        }
    };
    let mut tools = inner.tools.specs();
    if let Some(allowed) = allowed {
        tools.retain(|t| allowed.contains(&t.name));
    }
    tools.extend(req.client_tools.iter().cloned());
    let max_steps = inner.config.max_steps.max(1);

    'steps: for step in 0..max_steps {
        let request = CompletionRequest {
            model: model.clone(),
            messages: messages.clone(),
            max_tokens: None,
            temperature: agent.and_then(|a| a.temperature),
            // The last step offers no tools, so the model has to answer in text.
            tools: if step + 1 < max_steps {
                tools.clone()
            } else {
                Vec::new()
            },
        };
        let mut attempt = 0u32;
        let mut finish_reason: Option<String> = None;
        let mut step_text = String::new();
        let mut step_tokens = 0u64;
        // Some servers repeat usage within a stream: the step's last report counts.
        let mut step_usage: Option<Usage> = None;
        let mut calls: Vec<ToolCall> = Vec::new();
        // Calls whose input went out as it streamed (`ToolInputStart`): output, like tokens.
        let mut streamed_inputs: Vec<Arc<str>> = Vec::new();

        'attempts: loop {
            // Decides whether a failure before the step's first output is retried, and waits
            // if so.
            macro_rules! retry_or_fail {
                ($err:expr) => {{
                    let err: ProviderError = $err;
                    let delay = retry_delay(inner, attempt, &err);
                    let in_window = started.elapsed() + delay <= inner.config.retry.window;
                    if step_tokens == 0 && calls.is_empty() && streamed_inputs.is_empty() && err.retryable() && attempt < inner.config.retry.max_retries && in_window {
                        attempt += 1;
                        metrics::counter!(telemetry::UPSTREAM_RETRIES).increment(1);
                        info!(attempt, error = %err, delay_ms = delay.as_millis() as u64, "retrying upstream");
                        inner
                            .publish_live(
                                &req.chat,
                                processing(ProcessingStatus::Retrying, Some(format!("{}: {}", err.kind.code(), err.message))),
                                None,
                            )
                            .await;
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = cancel.cancelled() => { g.ending = Ending::Stopped(stop_reason(stop)); return g; }
                            _ = sleep_until(deadline) => { g.ending = Ending::TimedOut; return g; }
                        }
                        inner
                            .publish_live(&req.chat, processing(ProcessingStatus::Working, None), None)
                            .await;
                        continue 'attempts;
                    }
                    g.ending = Ending::Failed(err);
                    return g;
                }};
            }

            let opened = tokio::select! {
                r = provider.stream(request.clone()) => r,
                _ = cancel.cancelled() => { g.ending = Ending::Stopped(stop_reason(stop)); return g; }
                _ = sleep_until(deadline) => { g.ending = Ending::TimedOut; return g; }
            };
            let mut stream = match opened {
                Ok(s) => s,
                Err(e) => retry_or_fail!(e),
            };
            // An item read ahead while merging deltas, handled on the next round.
            let mut lookahead = None;
            loop {
                let item = match lookahead.take() {
                    Some(item) => item,
                    None => tokio::select! {
                        biased;
                        _ = cancel.cancelled() => { g.ending = Ending::Stopped(stop_reason(stop)); return g; }
                        _ = sleep_until(deadline) => { g.ending = Ending::TimedOut; return g; }
                        item = stream.next() => item,
                    },
                };
                match item {
                    Some(Ok(ProviderEvent::TextDelta(mut delta))) => {
                        if delta.is_empty() {
                            continue;
                        }
                        // Deltas that already arrived go out as one token event (the same for
                        // every member, CONTRACT §6.4). Nothing waits for more, so latency is
                        // unchanged; bursts cost one event instead of many.
                        while delta.len() < inner.config.merge_delta_bytes {
                            match stream.next().now_or_never() {
                                Some(Some(Ok(ProviderEvent::TextDelta(more)))) => {
                                    delta.push_str(&more)
                                }
                                Some(other) => {
                                    lookahead = Some(other);
                                    break;
                                }
                                None => break,
                            }
                        }
                        if g.tokens == 0 {
                            metrics::histogram!(telemetry::TURN_FIRST_TOKEN)
                                .record(started.elapsed().as_secs_f64());
                        }
                        g.text.push_str(&delta);
                        step_text.push_str(&delta);
                        inner
                            .publish_live(
                                &req.chat,
                                LiveEvent::Token {
                                    turn: turn.clone(),
                                    index: g.tokens,
                                    text: delta.into(),
                                },
                                None,
                            )
                            .await;
                        g.tokens += 1;
                        step_tokens += 1;
                    }
                    Some(Ok(ProviderEvent::Usage(u))) => step_usage = Some(u),
                    Some(Ok(ProviderEvent::ToolCall(call))) => calls.push(call),
                    // A call's input as it streams, for UIs that show it growing; only when
                    // tools were offered (a call otherwise is ignored).
                    Some(Ok(ProviderEvent::ToolCallStart { id, name })) => {
                        if request.tools.is_empty() || streamed_inputs.iter().any(|s| **s == *id) {
                            continue;
                        }
                        let id: Arc<str> = id.into();
                        streamed_inputs.push(id.clone());
                        let start = LiveEvent::ToolInputStart {
                            turn: turn.clone(),
                            tool_call_id: id,
                            name: name.into(),
                        };
                        inner.publish_live(&req.chat, start, None).await;
                    }
                    Some(Ok(ProviderEvent::ToolCallDelta { id, mut arguments })) => {
                        let Some(id) = streamed_inputs.iter().find(|s| ***s == *id).cloned() else {
                            continue;
                        };
                        if arguments.is_empty() {
                            continue;
                        }
                        // Pieces that already arrived go out as one, as text deltas do.
                        while arguments.len() < inner.config.merge_delta_bytes {
                            match stream.next().now_or_never() {
                                Some(Some(Ok(ProviderEvent::ToolCallDelta {
                                    id: next,
                                    arguments: more,
                                }))) if *next == *id => arguments.push_str(&more),
                                Some(other) => {
                                    lookahead = Some(other);
                                    break;
                                }
                                None => break,
                            }
                        }
                        let delta = LiveEvent::ToolInputDelta {
                            turn: turn.clone(),
                            tool_call_id: id,
                            delta: arguments.into(),
                        };
                        inner.publish_live(&req.chat, delta, None).await;
                    }
                    Some(Ok(ProviderEvent::Finish(reason))) => finish_reason = Some(reason),
                    Some(Err(e)) => {
                        if finish_reason.is_some() {
                            // The reply was complete; a broken tail costs nothing.
                            break;
                        }
                        retry_or_fail!(e)
                    }
                    None => break,
                }
            }
            if let Some(u) = step_usage.take() {
                g.usage = Some(add_usage(g.usage, u));
            }
            let reason = match finish_reason.take() {
                Some(reason) => reason,
                None if step_tokens == 0 && calls.is_empty() && streamed_inputs.is_empty() => {
                    retry_or_fail!(ProviderError::new(
                        ProviderErrorKind::Cut,
                        "the upstream stream ended before any output"
                    ))
                }
                None => {
                    g.ending = Ending::Failed(ProviderError::new(
                        ProviderErrorKind::Cut,
                        "the upstream stream ended before the reply finished",
                    ));
                    return g;
                }
            };
            if calls.is_empty() || tools.is_empty() {
                if !calls.is_empty() {
                    warn!("the model called a tool although none was offered; ignored");
                }
                g.ending = Ending::Finished(reason);
                return g;
            }
            break 'attempts;
        }

        // The model asked for tools: run them, give it the results, and go on.
        messages.push(PromptMessage {
            role: Role::Assistant,
            content: step_text,
            tool_calls: calls.clone(),
            tool_call_id: None,
            images: Vec::new(),
        });
        for call in calls {
            match run_tool(
                inner, req, &turn, &call, allowed, g.tokens, cancel, deadline,
            )
            .await
            {
                Ok(content) => messages.push(PromptMessage {
                    role: Role::Tool,
                    content,
                    tool_calls: Vec::new(),
                    tool_call_id: Some(call.id.clone()),
                    images: Vec::new(),
                }),
                Err(ToolStop::Cancelled) => {
                    g.ending = Ending::Stopped(stop_reason(stop));
                    return g;
                }
                Err(ToolStop::TimedOut) => {
                    g.ending = Ending::TimedOut;
                    return g;
                }
                Err(ToolStop::Failed(e)) => {
                    g.ending = Ending::Failed(e);
                    return g;
                }
            }
        }
        continue 'steps;
    }
    // Unreachable in practice: the last step offers no tools, so it ends above.
    g.ending = Ending::Finished("length".into());
    g
}

/// The agent `chat` is bound to (`None`: unbound, or no agents configured: the core's
/// defaults). Read from the store, so every node answers a chat with the same agent.
async fn chat_agent(inner: &Inner, chat: &ChatKey) -> Result<Option<Arc<Agent>>, Ending> {
    if inner.agents.is_empty() {
        return Ok(None);
    }
    let summary = inner.store.chat_summary(chat).await.map_err(|e| {
        Ending::Failed(ProviderError::new(
            ProviderErrorKind::Unavailable,
            format!("reading the chat's agent: {e}"),
        ))
    })?;
    let metadata = summary.as_ref().and_then(|s| s.metadata.as_ref());
    inner
        .agents
        .bound(metadata)
        .map_err(|message| Ending::Refused(ErrorCode::NotFound, message))
}

fn add_usage(total: Option<Usage>, step: Usage) -> Usage {
    let t = total.unwrap_or_default();
    Usage {
        prompt_tokens: t.prompt_tokens.saturating_add(step.prompt_tokens),
        completion_tokens: t.completion_tokens.saturating_add(step.completion_tokens),
        total_tokens: t.total_tokens.saturating_add(step.total_tokens),
    }
}

/// Why a tool step ended the turn instead of going on.
enum ToolStop {
    Cancelled,
    TimedOut,
    /// Storing the call or its result failed.
    Failed(ProviderError),
}

/// Stores a tool event and tells the chat; a store failure ends the turn.
async fn store_and_publish(
    inner: &Arc<Inner>,
    req: &TurnRequest,
    record: EventBody,
) -> Result<(), ToolStop> {
    let chat = &req.chat;
    let stored = inner
        .store
        .append_guarded(chat, record, now_millis(), Guard::Fence(req.fence))
        .await
        .map_err(|e| {
            ToolStop::Failed(ProviderError::new(
                ProviderErrorKind::Unavailable,
                format!("storing a tool event: {e}"),
            ))
        })?;
    inner
        .publish_durable(chat, stored.event().clone(), None)
        .await;
    Ok(())
}

/// Stores the call, runs the tool (or waits for a member to), stores the result, and returns
/// what goes back to the model: the result as JSON text, or `{"error": …}`. `allowed`: the
/// server tools the chat's agent has (`None`: all).
#[allow(clippy::too_many_arguments)]
// A span per tool call, a child of the turn's (exported with --otlp-endpoint).
#[tracing::instrument(name = "tool.call", skip_all, fields(tool = %call.name, toolCallId = %call.id))]
async fn run_tool(
    inner: &Arc<Inner>,
    req: &TurnRequest,
    turn: &TurnRef,
    call: &ToolCall,
    allowed: Option<&[String]>,
    tokens_before: u64,
    cancel: &CancellationToken,
    deadline: tokio::time::Instant,
) -> Result<String, ToolStop> {
    // A server tool the chat's agent was not given is as unknown to the model as any other.
    let offered = |name: &str| allowed.is_none_or(|a| a.iter().any(|n| n == name));
    let executor = inner
        .tools
        .get(&call.name)
        .filter(|_| offered(&call.name))
        .cloned()
        .or_else(|| {
            req.client_tools
                .iter()
                .find(|t| t.name == call.name)
                .map(|t| Executor::Client(t.clone()))
        });
    let checked = match &executor {
        None => Err(format!("there is no tool named `{}`", call.name)),
        Some(e) => check_arguments(&call.arguments, &e.spec().parameters),
    };
    let arguments = match &checked {
        Ok(v) => v.clone(),
        Err(_) => serde_json::from_str(&call.arguments)
            .unwrap_or_else(|_| serde_json::Value::String(call.arguments.clone())),
    };
    let record = EventBody::ToolCall {
        request_id: turn.request_id.to_string(),
        message_id: turn.message_id.to_string(),
        token_index: tokens_before,
        tool_call_id: call.id.clone(),
        name: call.name.clone(),
        arguments,
        executor: executor
            .as_ref()
            .map(|e| e.as_str())
            .unwrap_or("server")
            .to_owned(),
        trace_id: turn.trace_id.as_deref().map(str::to_owned),
    };
    store_and_publish(inner, req, record).await?;
    metrics::counter!(telemetry::TOOL_CALLS).increment(1);

    let outcome: Result<serde_json::Value, String> = match (executor, checked) {
        (_, Err(e)) => Err(e),
        (None, Ok(_)) => Err(format!("there is no tool named `{}`", call.name)),
        (Some(Executor::Server(tool)), Ok(input)) => {
            let child = cancel.child_token();
            tokio::select! {
                r = tokio::time::timeout(tool.timeout(), tool.run(input, child.clone())) => match r {
                    Ok(r) => r,
                    Err(_) => {
                        child.cancel();
                        Err(format!("the tool did not answer within {} s", tool.timeout().as_secs_f64()))
                    }
                },
                _ = cancel.cancelled() => { child.cancel(); return Err(ToolStop::Cancelled); }
                _ = sleep_until(deadline) => { child.cancel(); return Err(ToolStop::TimedOut); }
            }
        }
        (Some(Executor::Client(_)), Ok(_)) => {
            let rx = inner.turns.await_client_result(&req.chat, &call.id, turn);
            let wait = inner.config.client_tool_timeout;
            let r = tokio::select! {
                r = tokio::time::timeout(wait, rx) => match r {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err("the wait for the client's result was dropped".to_owned()),
                    Err(_) => Err(format!("no member of the chat answered within {} s", wait.as_secs_f64())),
                },
                _ = cancel.cancelled() => { inner.turns.forget_client_wait(&req.chat, &call.id); return Err(ToolStop::Cancelled); }
                _ = sleep_until(deadline) => { inner.turns.forget_client_wait(&req.chat, &call.id); return Err(ToolStop::TimedOut); }
            };
            inner.turns.forget_client_wait(&req.chat, &call.id);
            r
        }
    };
    let (result, error) = match outcome {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    let for_model = tool_output(result.as_ref(), error.as_deref());
    let record = EventBody::ToolResult {
        request_id: turn.request_id.to_string(),
        message_id: turn.message_id.to_string(),
        token_index: tokens_before,
        tool_call_id: call.id.clone(),
        name: call.name.clone(),
        result,
        error,
        trace_id: turn.trace_id.as_deref().map(str::to_owned),
    };
    store_and_publish(inner, req, record).await?;
    Ok(for_model)
}

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
    let (body, outcome) = match g.ending {
        Ending::Finished(reason) => (
            EventBody::AssistantMessage {
                message_id: turn.message_id.to_string(),
                request_id: turn.request_id.to_string(),
                text: g.text,
                finish_reason: reason,
                usage: g.usage,
                model: Some(model.clone()),
                trace_id: turn.trace_id.as_deref().map(str::to_owned),
                token_count: Some(g.tokens),
            },
            "finished",
        ),
        Ending::Stopped(StopReason::Aborted(reason)) => {
            info!(reason = reason.as_deref().unwrap_or(""), "turn aborted");
            (
                EventBody::AssistantMessage {
                    message_id: turn.message_id.to_string(),
                    request_id: turn.request_id.to_string(),
                    text: g.text,
                    finish_reason: "aborted".into(),
                    usage: g.usage,
                    model: Some(model.clone()),
                    trace_id: turn.trace_id.as_deref().map(str::to_owned),
                    token_count: Some(g.tokens),
                },
                "aborted",
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StoredEvent;
    use serde_json::json;

    fn call(seq: u64, id: &str, token_index: u64) -> StoredEvent {
        StoredEvent {
            seq,
            created_at: 0,
            body: EventBody::ToolCall {
                request_id: "r1".into(),
                message_id: "m1".into(),
                token_index,
                tool_call_id: id.into(),
                name: "time".into(),
                arguments: json!({"zone": id}),
                executor: "server".into(),
                trace_id: None,
            },
        }
    }

    fn result(seq: u64, id: &str, error: Option<&str>) -> StoredEvent {
        StoredEvent {
            seq,
            created_at: 0,
            body: EventBody::ToolResult {
                request_id: "r1".into(),
                message_id: "m1".into(),
                token_index: 0,
                tool_call_id: id.into(),
                name: "time".into(),
                result: error.is_none().then(|| json!("noon")),
                error: error.map(str::to_owned),
                trace_id: None,
            },
        }
    }

    #[test]
    fn a_turns_tools_become_calls_per_step_then_results() {
        // Step 1 made two calls (same token_index), step 2 one, whose result never came.
        let events = vec![
            call(2, "a", 1),
            result(3, "a", None),
            call(4, "b", 1),
            result(5, "b", Some("down")),
            call(6, "c", 3),
        ];
        let (messages, bytes) = tool_messages(Some(&events));
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::Assistant, Role::Tool, Role::Tool]);
        let ids: Vec<&str> = messages[0]
            .tool_calls
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["a", "b"],
            "one assistant message per step, unanswered calls left out"
        );
        assert_eq!(messages[0].tool_calls[0].arguments, r#"{"zone":"a"}"#);
        assert_eq!(messages[1].tool_call_id.as_deref(), Some("a"));
        assert_eq!(messages[1].content, r#""noon""#);
        assert_eq!(messages[2].content, r#"{"error":"down"}"#);
        let expected: usize = [
            r#"{"zone":"a"}"#,
            r#""noon""#,
            r#"{"zone":"b"}"#,
            r#"{"error":"down"}"#,
        ]
        .iter()
        .map(|s| s.len())
        .sum();
        assert_eq!(bytes, expected);
        assert_eq!(tool_messages(None), (Vec::new(), 0));
    }

    #[test]
    fn steps_alternate_calls_and_results() {
        let events = vec![
            call(2, "a", 0),
            result(3, "a", None),
            call(4, "b", 2),
            result(5, "b", None),
        ];
        let (messages, _) = tool_messages(Some(&events));
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::Assistant, Role::Tool, Role::Assistant, Role::Tool]
        );
    }
}
