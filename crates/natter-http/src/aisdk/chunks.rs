//! One turn as UI Message Stream chunks (the `ai` package's `UIMessageChunk`, protocol v1).
//!
//! Only types in the package's schema go out; its client fails a whole stream on an unknown
//! type, on a `text-delta` without an open `text-start`, or on an optional field sent as
//! `null`. A turn maps as:
//! `start {messageId}` → `start-step` → `text-start` → `text-delta`* → `text-end` →
//! `finish-step` → one of `finish {finishReason}` (done), `abort {reason}` (stopped),
//! `error {errorText}` (failed). The transport adds `[DONE]` (HTTP) or `end` (WebSocket).
//! A tool call is `tool-input-start` → `tool-input-delta`* (its arguments as the model streams
//! them) → `tool-input-available`, then its output.

use std::sync::Arc;

use natter_core::event::{EventBody, LiveEvent, StoredEvent, TurnRef};
use natter_core::feed::FeedItem;
use serde_json::{Value, json};

/// Follows one turn (by request id) through a member feed and emits its chunks.
pub struct TurnChunks {
    request_id: Arc<str>,
    message_id: Option<Arc<str>>,
    /// The id of the text part open now (a step's text is one part).
    open_text: Option<String>,
    /// Bytes of text sent so far, to top up from the stored end if tokens were missed.
    sent: usize,
    /// Text parts opened so far: each step after a tool round trip opens a new one.
    text_parts: u32,
    /// Tool results went out: the next output starts a new step (several parallel results
    /// share one step boundary).
    new_step: bool,
    /// Tokens below this index are skipped (a continuation: the client has them).
    min_index: u64,
    /// Tool calls whose `tool-input-start` went out as their input streamed: their deltas
    /// follow, and their whole call sends only `tool-input-available`. A delta of a call not
    /// in here (it started before this stream) is dropped: the SDK refuses a delta without
    /// its start, and the whole call comes anyway.
    inputs: Vec<Arc<str>>,
    done: bool,
}

/// The AI SDK's finish reasons are a closed set; anything else is `other`.
fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "stop" => "stop",
        "length" => "length",
        "content_filter" | "content-filter" => "content-filter",
        "tool_calls" | "tool-calls" | "function_call" => "tool-calls",
        "error" => "error",
        _ => "other",
    }
}

impl TurnChunks {
    pub fn for_request(request_id: Arc<str>) -> Self {
        Self {
            request_id,
            message_id: None,
            open_text: None,
            sent: 0,
            text_parts: 0,
            new_step: false,
            min_index: 0,
            inputs: Vec::new(),
            done: false,
        }
    }

    /// A turn already streaming: `start` goes out at once (a resume replays from it).
    pub fn resume(turn: &TurnRef, out: &mut Vec<Value>) -> Self {
        let mut chunks = Self::for_request(turn.request_id.clone());
        chunks.start(&turn.message_id, out);
        chunks
    }

    /// A running turn from its start: its tokens so far with its stored tool events put back
    /// where they happened (`token_index`). Later tokens come from the feed; those already
    /// replayed are skipped.
    pub fn replay(
        turn: &TurnRef,
        tokens: &[Arc<str>],
        tools: &[StoredEvent],
        out: &mut Vec<Value>,
    ) -> Self {
        let mut chunks = Self::resume(turn, out);
        let token_index = |e: &StoredEvent| match &e.body {
            EventBody::ToolCall { token_index, .. } | EventBody::ToolResult { token_index, .. } => {
                *token_index
            }
            _ => 0,
        };
        // A client-run call that was answered must not end the replay the way a waiting one
        // does (the client would run it again).
        let answered = |id: &str| {
            tools.iter().any(|e| {
                matches!(&e.body, EventBody::ToolResult { tool_call_id, .. } if tool_call_id == id)
            })
        };
        let mut pending = tools.iter().peekable();
        for (i, text) in tokens.iter().enumerate() {
            while let Some(e) = pending.next_if(|e| token_index(e) <= i as u64) {
                chunks.replay_tool(e, &answered, out);
            }
            chunks.delta(text, out);
        }
        for e in pending {
            chunks.replay_tool(e, &answered, out);
        }
        chunks.min_index = tokens.len() as u64;
        chunks
    }

    fn replay_tool(
        &mut self,
        e: &StoredEvent,
        answered: &dyn Fn(&str) -> bool,
        out: &mut Vec<Value>,
    ) {
        match &e.body {
            EventBody::ToolCall {
                tool_call_id,
                executor,
                ..
            } if executor == "client" && answered(tool_call_id) => {
                let mut body = e.body.clone();
                if let EventBody::ToolCall { executor, .. } = &mut body {
                    *executor = "server".into();
                }
                self.accept_end(
                    &StoredEvent {
                        seq: e.seq,
                        created_at: e.created_at,
                        body,
                    },
                    out,
                );
            }
            _ => self.accept_end(e, out),
        }
    }

    /// Continues a turn whose earlier chunks the client already has (after it answered a
    /// client-run tool): `start` again with the same `messageId`, then only what is new.
    pub fn continuation(turn: &TurnRef, next_index: u64, out: &mut Vec<Value>) -> Self {
        let mut chunks = Self::resume(turn, out);
        chunks.min_index = next_index;
        chunks
    }

    pub fn request_id(&self) -> &Arc<str> {
        &self.request_id
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    fn start(&mut self, message_id: &str, out: &mut Vec<Value>) {
        if self.message_id.is_none() {
            self.message_id = Some(message_id.into());
            out.push(json!({"type": "start", "messageId": message_id}));
            out.push(json!({"type": "start-step"}));
        }
    }

    /// A new text part's id: `<messageId>-text`, then `-text-2`, `-text-3` … per step.
    fn next_text_id(&mut self) -> String {
        self.text_parts += 1;
        let id = self.message_id.as_deref().unwrap_or("reply");
        match self.text_parts {
            1 => format!("{id}-text"),
            n => format!("{id}-text-{n}"),
        }
    }

    fn step_boundary(&mut self, out: &mut Vec<Value>) {
        if std::mem::take(&mut self.new_step) {
            out.push(json!({"type": "finish-step"}));
            out.push(json!({"type": "start-step"}));
        }
    }

    fn delta(&mut self, text: &str, out: &mut Vec<Value>) {
        if text.is_empty() {
            return;
        }
        self.step_boundary(out);
        if self.open_text.is_none() {
            let id = self.next_text_id();
            out.push(json!({"type": "text-start", "id": id}));
            self.open_text = Some(id);
        }
        if let Some(id) = &self.open_text {
            self.sent += text.len();
            out.push(json!({"type": "text-delta", "id": id, "delta": text}));
        }
    }

    fn close_text(&mut self, out: &mut Vec<Value>) {
        if let Some(id) = self.open_text.take() {
            out.push(json!({"type": "text-end", "id": id}));
        }
    }

    /// Takes the next item of the feed; items of other turns are ignored.
    pub fn accept(&mut self, item: &FeedItem, out: &mut Vec<Value>) {
        if self.done {
            return;
        }
        match item {
            FeedItem::Live(LiveEvent::TurnStarted { turn })
                if turn.request_id == self.request_id =>
            {
                self.start(&turn.message_id, out)
            }
            FeedItem::Tokens {
                turn,
                text,
                index,
                through,
            } if turn.request_id == self.request_id && *through >= self.min_index => {
                self.start(&turn.message_id, out);
                if *index >= self.min_index {
                    self.delta(text, out);
                }
            }
            FeedItem::Live(LiveEvent::ToolInputStart {
                turn,
                tool_call_id,
                name,
            }) if turn.request_id == self.request_id => {
                self.start(&turn.message_id, out);
                self.close_text(out);
                self.step_boundary(out);
                out.push(json!({"type": "tool-input-start", "toolCallId": &**tool_call_id, "toolName": &**name}));
                self.inputs.push(tool_call_id.clone());
            }
            FeedItem::Live(LiveEvent::ToolInputDelta {
                turn,
                tool_call_id,
                delta,
            }) if turn.request_id == self.request_id && self.inputs.contains(tool_call_id) => {
                out.push(json!({
                    "type": "tool-input-delta",
                    "toolCallId": &**tool_call_id,
                    "inputTextDelta": &**delta,
                }));
            }
            FeedItem::Durable(event) => self.accept_end(event, out),
            FeedItem::Live(LiveEvent::TurnEndUnstored { turn, end })
                if turn.request_id == self.request_id =>
            {
                self.end(end, None, out)
            }
            FeedItem::Live(LiveEvent::ChatDeleted { .. }) => {
                self.fail("the chat was deleted", out);
            }
            _ => {}
        }
    }

    /// Takes a durable event: this turn's tool calls and results, and its end, which
    /// finishes the stream.
    pub fn accept_end(&mut self, event: &StoredEvent, out: &mut Vec<Value>) {
        if self.done {
            return;
        }
        match &event.body {
            EventBody::ToolCall {
                request_id,
                message_id,
                tool_call_id,
                name,
                arguments,
                executor,
                ..
            } if **request_id == *self.request_id => {
                self.start(message_id, out);
                self.close_text(out);
                self.step_boundary(out);
                if !self.inputs.iter().any(|id| **id == **tool_call_id) {
                    out.push(json!({"type": "tool-input-start", "toolCallId": tool_call_id, "toolName": name}));
                }
                out.push(json!({
                    "type": "tool-input-available",
                    "toolCallId": tool_call_id,
                    "toolName": name,
                    "input": arguments,
                }));
                if executor == "client" {
                    // The SDK runs it (onToolCall / addToolOutput) and POSTs again with the
                    // assistant message last; the turn waits for that and goes on there.
                    out.push(json!({"type": "finish-step"}));
                    out.push(json!({"type": "finish", "finishReason": "tool-calls"}));
                    self.done = true;
                }
                return;
            }
            EventBody::ToolResult {
                request_id,
                tool_call_id,
                result,
                error,
                ..
            } if **request_id == *self.request_id => {
                out.push(match error {
                    Some(e) => json!({"type": "tool-output-error", "toolCallId": tool_call_id, "errorText": e}),
                    None => json!({
                        "type": "tool-output-available",
                        "toolCallId": tool_call_id,
                        "output": result.clone().unwrap_or(Value::Null),
                    }),
                });
                // The model goes on in a new step with the results.
                self.new_step = true;
                return;
            }
            _ => {}
        }
        let ours = match &event.body {
            EventBody::AssistantMessage { request_id, .. }
            | EventBody::TurnFailed { request_id, .. } => **request_id == *self.request_id,
            _ => false,
        };
        if ours {
            self.end(&event.body, Some(event.seq), out);
        }
    }

    /// The stream cannot go on (the feed ended): an `error` the client can show.
    pub fn fail(&mut self, message: &str, out: &mut Vec<Value>) {
        if self.done {
            return;
        }
        self.close_text(out);
        out.push(json!({"type": "error", "errorText": message}));
        self.done = true;
    }

    fn end(&mut self, body: &EventBody, seq: Option<u64>, out: &mut Vec<Value>) {
        let (message_id, text) = match body {
            EventBody::AssistantMessage {
                message_id, text, ..
            } => (message_id, text),
            EventBody::TurnFailed {
                message_id,
                partial_text,
                ..
            } => (message_id, partial_text),
            _ => return,
        };
        self.start(message_id, out);
        // Tokens this stream missed (it started after them) are in the stored text.
        if let Some(rest) = text.get(self.sent..) {
            let rest = rest.to_owned();
            self.delta(&rest, out);
        }
        self.close_text(out);
        self.step_boundary(out);
        match body {
            EventBody::AssistantMessage {
                finish_reason: reason,
                usage,
                warnings,
                ..
            } => {
                out.push(json!({"type": "finish-step"}));
                let mut metadata = json!({"finishReason": reason});
                if let Some(seq) = seq {
                    metadata["seq"] = seq.into();
                }
                if let Some(u) = usage {
                    metadata["usage"] = json!(u);
                }
                if let Some(w) = warnings {
                    metadata["warnings"] = json!(w);
                }
                if reason == "aborted" {
                    out.push(json!({"type": "message-metadata", "messageMetadata": metadata}));
                    out.push(json!({"type": "abort", "reason": "stopped"}));
                } else {
                    out.push(json!({
                        "type": "finish",
                        "finishReason": finish_reason(reason),
                        "messageMetadata": metadata,
                    }));
                }
            }
            EventBody::TurnFailed { code, message, .. } => {
                out.push(json!({"type": "error", "errorText": format!("{code}: {message}")}));
            }
            _ => {}
        }
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn() -> Arc<TurnRef> {
        Arc::new(TurnRef {
            message_id: "m1".into(),
            request_id: "r1".into(),
            trace_id: None,
        })
    }

    fn types(out: &[Value]) -> Vec<&str> {
        out.iter()
            .map(|c| c["type"].as_str().unwrap_or(""))
            .collect()
    }

    fn end(reason: &str, text: &str) -> StoredEvent {
        StoredEvent {
            seq: 9,
            created_at: 0,
            body: EventBody::AssistantMessage {
                message_id: "m1".into(),
                request_id: "r1".into(),
                text: text.into(),
                finish_reason: reason.into(),
                usage: None,
                model: None,
                trace_id: None,
                token_count: None,
                warnings: None,
            },
        }
    }

    #[test]
    fn a_turn_streams_in_schema_order() {
        let mut c = TurnChunks::for_request("r1".into());
        let mut out = Vec::new();
        c.accept(
            &FeedItem::Live(LiveEvent::TurnStarted { turn: turn() }),
            &mut out,
        );
        for (i, t) in ["Hel", "lo"].iter().enumerate() {
            let item = FeedItem::Tokens {
                turn: turn(),
                index: i as u64,
                through: i as u64,
                text: (*t).into(),
            };
            c.accept(&item, &mut out);
        }
        c.accept(&FeedItem::Durable(Arc::new(end("stop", "Hello"))), &mut out);
        assert_eq!(
            types(&out),
            [
                "start",
                "start-step",
                "text-start",
                "text-delta",
                "text-delta",
                "text-end",
                "finish-step",
                "finish"
            ]
        );
        assert_eq!(out[0]["messageId"], "m1");
        assert_eq!(out[7]["messageMetadata"]["seq"], 9);
        assert!(c.is_done());
    }

    #[test]
    fn stopped_turns_abort_and_missed_text_is_topped_up() {
        let mut c = TurnChunks::for_request("r1".into());
        let mut out = Vec::new();
        c.accept_end(&end("aborted", "partial"), &mut out);
        assert_eq!(
            types(&out),
            [
                "start",
                "start-step",
                "text-start",
                "text-delta",
                "text-end",
                "finish-step",
                "message-metadata",
                "abort"
            ]
        );
        assert_eq!(out[3]["delta"], "partial");
    }

    #[test]
    fn tool_round_trips_open_a_new_step_and_text_part() {
        let mut c = TurnChunks::for_request("r1".into());
        let mut out = Vec::new();
        let ev = |seq, body| StoredEvent {
            seq,
            created_at: 0,
            body,
        };
        c.accept(
            &FeedItem::Live(LiveEvent::TurnStarted { turn: turn() }),
            &mut out,
        );
        let tok = |i: u64, t: &str| FeedItem::Tokens {
            turn: turn(),
            index: i,
            through: i,
            text: t.into(),
        };
        c.accept(&tok(0, "Let me look. "), &mut out);
        for id in ["c1", "c2"] {
            let call = EventBody::ToolCall {
                request_id: "r1".into(),
                message_id: "m1".into(),
                token_index: 1,
                tool_call_id: id.into(),
                name: "time".into(),
                arguments: json!({"zone": "UTC"}),
                executor: "server".into(),
                trace_id: None,
            };
            c.accept_end(&ev(3, call), &mut out);
        }
        for id in ["c1", "c2"] {
            let result = EventBody::ToolResult {
                request_id: "r1".into(),
                message_id: "m1".into(),
                token_index: 1,
                tool_call_id: id.into(),
                name: "time".into(),
                result: Some(json!("12:00")),
                error: None,
                trace_id: None,
            };
            c.accept_end(&ev(4, result), &mut out);
        }
        c.accept(&tok(1, "Noon."), &mut out);
        c.accept_end(&end("stop", "Let me look. Noon."), &mut out);
        assert_eq!(
            types(&out),
            [
                "start",
                "start-step",
                "text-start",
                "text-delta",
                "text-end",
                "tool-input-start",
                "tool-input-available",
                "tool-input-start",
                "tool-input-available",
                "tool-output-available",
                "tool-output-available",
                "finish-step",
                "start-step",
                "text-start",
                "text-delta",
                "text-end",
                "finish-step",
                "finish",
            ]
        );
        assert_ne!(
            out[2]["id"], out[13]["id"],
            "each step's text is its own part"
        );
    }

    #[test]
    fn tool_input_streams_as_deltas_between_start_and_available() {
        let mut c = TurnChunks::for_request("r1".into());
        let mut out = Vec::new();
        let live = |event| FeedItem::Live(event);
        let delta = |id: &str, d: &str| {
            live(LiveEvent::ToolInputDelta {
                turn: turn(),
                tool_call_id: id.into(),
                delta: d.into(),
            })
        };
        // A delta of a call whose start this stream never saw is dropped.
        c.accept(&delta("c0", "{"), &mut out);
        c.accept(
            &live(LiveEvent::ToolInputStart {
                turn: turn(),
                tool_call_id: "c1".into(),
                name: "time".into(),
            }),
            &mut out,
        );
        c.accept(&delta("c1", "{\"zone\":"), &mut out);
        c.accept(&delta("c1", "\"UTC\"}"), &mut out);
        let call = EventBody::ToolCall {
            request_id: "r1".into(),
            message_id: "m1".into(),
            token_index: 0,
            tool_call_id: "c1".into(),
            name: "time".into(),
            arguments: json!({"zone": "UTC"}),
            executor: "server".into(),
            trace_id: None,
        };
        c.accept_end(
            &StoredEvent {
                seq: 3,
                created_at: 0,
                body: call,
            },
            &mut out,
        );
        assert_eq!(
            types(&out),
            [
                "start",
                "start-step",
                "tool-input-start",
                "tool-input-delta",
                "tool-input-delta",
                "tool-input-available"
            ]
        );
        assert_eq!(out[3]["inputTextDelta"], "{\"zone\":");
        assert_eq!(out[3]["toolCallId"], "c1");
    }

    #[test]
    fn other_turns_are_ignored() {
        let mut c = TurnChunks::for_request("other".into());
        let mut out = Vec::new();
        c.accept(
            &FeedItem::Live(LiveEvent::TurnStarted { turn: turn() }),
            &mut out,
        );
        c.accept_end(&end("stop", "x"), &mut out);
        assert!(out.is_empty() && !c.is_done());
    }
}
