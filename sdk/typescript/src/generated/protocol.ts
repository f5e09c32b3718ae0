// Generated from the Rust crate natter-protocol by ts-rs: do not edit.
// Regenerate with `NATTER_UPDATE_TS=1 cargo test -p natter-protocol typescript`.

export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]?: JsonValue } | null;

export type JoinPayload = { 
/**
 * A number is accepted too and read as its decimal string.
 */
chatId?: string | number, userId?: string | number, lastSeq?: number, epoch?: string, 
/**
 * When this join creates the chat: the only users who may use it.
 */
members?: Array<string>, 
/**
 * When this join creates the chat: the agent (`GET /api/v1/agents`) it is bound to; on
 * an existing chat, the one it has.
 */
agentId?: string, traceId?: string, };

export type LeavePayload = { chatId?: string | number, traceId?: string, };

export type UserMessagePayload = { chatId?: string | number, 
/**
 * The client's id for the message; sending the same id twice stores it once.
 */
messageId: string, userId?: string | number, text: string, parts?: Array<{ type: "text" | "image" | "file"; value: unknown }>, 
/**
 * Correlates the turn's events (`ai:token`, `ai:message`, …) with this message.
 */
requestId?: string, 
/**
 * Client-run tools offered to the model for this message only.
 */
tools?: Array<ClientTool>, traceId?: string, 
/**
 * Attachments uploaded to this chat (`POST /api/v1/attachments`) that the message
 * carries, at most 10 (CONTRACT §7.6).
 */
attachments?: Array<AttachmentRef>, };

export type AttachmentRef = { id: string, };

export type ClientTool = { name: string, description?: string, 
/**
 * A JSON Schema for the arguments.
 */
parameters?: JsonValue, };

export type TypingPayload = { chatId?: string | number, userId?: string | number, traceId?: string, };

export type AbortPayload = { chatId?: string | number, requestId?: string, reason?: string, traceId?: string, };

export type MarkReadPayload = { chatId?: string | number, userId?: string | number, messageIds: Array<string>, 
/**
 * ISO 8601.
 */
readAt: string, traceId?: string, };

export type ToolResultPayload = { chatId?: string | number, requestId?: string, toolCallId: string, result?: JsonValue, error?: string, traceId?: string, };

export type AuthRefreshPayload = { token: string, };

export type DiscoveryRequestPayload = { traceId?: string, };

export type HandoffRequestPayload = { chatId?: string | number, traceId?: string, };

export type ReactionPayload = { chatId?: string | number, messageId: string, 
/**
 * One emoji: 1-8 Unicode scalar values, at most 32 bytes, no whitespace.
 */
emoji: string, traceId?: string, };

export type ChatEndPayload = { chatId?: string | number, reason?: string, traceId?: string, };

export type CsatSubmitPayload = { chatId?: string | number, 
/**
 * 1 to 5.
 */
rating: number, 
/**
 * At most 2,000 characters.
 */
comment?: string, traceId?: string, };

export type ChatMessageEvent = { chatId: string, messageId: string, userId: string, 
/**
 * `humanAgent` for a human agent's message (CONTRACT §7.2).
 */
role: "user" | "humanAgent", text: string, parts?: JsonValue, createdAt: string, seq: number, requestId?: string, traceId?: string, 
/**
 * The message's reactions (CONTRACT §7.3), in the join ack's `messages` when it has any.
 */
reactions?: Array<ReactionWire>, 
/**
 * The attachments it carries (CONTRACT §7.6).
 */
attachments?: Array<AttachmentWire>, };

export type AttachmentWire = { id: string, name: string, mimeType: string, size: number, url: string, 
/**
 * An image's size in pixels, when its header gives it.
 */
width?: number, height?: number, };

export type Usage = { promptTokens: number, completionTokens: number, totalTokens: number, };

export type TurnWarning = { code: string, message: string, };

export type AiMessageEvent = { chatId: string, messageId: string, role: "assistant", text: string, createdAt: string, usage?: Usage, options?: Array<string>, requestId: string, finishReason: string, seq: number, traceId?: string, 
/**
 * The message's reactions (CONTRACT §7.3), in the join ack's `messages` when it has any.
 */
reactions?: Array<ReactionWire>, 
/**
 * What the turn did not do that its sender may expect (see [`TurnWarning`]); absent when
 * nothing.
 */
warnings?: Array<TurnWarning>, };

export type HistoryMessage = ChatMessageEvent | AiMessageEvent;

export type AiErrorEvent = { chatId: string, code: string, message: string, details?: JsonValue, requestId: string, retryable: boolean, 
/**
 * Present when the error ended a turn (it is then in the chat's log).
 */
seq?: number, traceId?: string, };

export type AiToolCallEvent = { chatId: string, requestId: string, messageId: string, toolCallId: string, name: string, arguments: JsonValue, executor: "server" | "client", seq: number, traceId?: string, 
/**
 * `true` on a client-run call sent again after a `chat:join` without `lastSeq` because
 * it still waits for an answer: its `seq` is at or below the join ack's, and a client
 * applies it anyway (it is not in the ack's `messages`). Absent otherwise.
 */
pending?: boolean, };

export type AiToolResultEvent = { chatId: string, requestId: string, messageId: string, toolCallId: string, name: string, result?: JsonValue, error?: string, seq: number, traceId?: string, };

export type MessageReadEvent = { chatId: string, userId: string, messageIds: Array<string>, readAt: string, seq: number, traceId?: string, };

export type PresenceUpdateEvent = { chatId: string, onlineUserIds: Array<string>, };

export type TypingUpdateEvent = { chatId: string, userId: string, typing: boolean, traceId?: string, };

export type AiProcessingEvent = { chatId: string, status: "queued" | "working" | "retrying", etaMs?: number, reason?: string, requestId: string, traceId?: string, };

export type AiTokenEvent = { chatId: string, requestId: string, messageId: string, token: string, index: number, 
/**
 * Set when this event covers the run `index..=through` (a coalesced catch-up).
 */
through?: number, };

export type ServerErrorEvent = { code: string, message: string, event?: string, 
/**
 * With `rate_limited`: when a retry may succeed.
 */
retryAfterMs?: number, };

export type DiscoveryResponse = { version: number, events: { [key in string]: string }, };

export type HandoffUpdateEvent = { chatId: string, isWaitingForAgent: boolean, humanAgentEngaged: boolean, aiEngaged: boolean, 
/**
 * The agent who joined or left (absent for a request).
 */
agentId?: string, 
/**
 * What happened: `human_agent_requested`, `human_agent_joined` or `human_agent_left`.
 */
reason: "human_agent_requested" | "human_agent_joined" | "human_agent_left", 
/**
 * Epoch ms since the chat waits for an agent, while it does.
 */
waitingSince?: number, seq: number, };

export type ReactionWire = { emoji: string, userId: string, createdAt: string, };

export type ReactionUpdateEvent = { chatId: string, messageId: string, reactions: Array<ReactionWire>, 
/**
 * Who added or removed a reaction, and which.
 */
userId: string, emoji: string, added: boolean, seq: number, traceId?: string, };

export type CsatRequestEvent = { chatId: string, 
/**
 * The `seq` of the `chat:ended` that asked.
 */
seq: number, };

export type CsatSubmittedEvent = { chatId: string, userId: string, rating: number, comment?: string, submittedAt: string, seq: number, traceId?: string, };

export type ChatUpdatedEvent = { chatId: string, title?: string, pinned?: boolean, updatedBy?: string, seq: number, };

export type ChatEndedEvent = { chatId: string, endedBy?: string, reason?: string, seq: number, };

export type ChatDeletedEvent = { chatId: string, deletedBy?: string, };

export type MessageSupersededEvent = { chatId: string, messageId: string, requestId: string, supersededBy?: string, seq: number, };

export type AttachmentProcessingEvent = { chatId: string, attachmentId: string, status: "processing" | "complete" | "error", percent?: number, chars?: number, pages?: number, error?: ErrorBody, };

export type ErrorBody = { code: string, message: string, retryAfterMs?: number, };

export type ErrorAck = { ok: false, error: ErrorBody, };

export type OkAck = { ok: true, };

export type JoinAck = { ok: true, chatId: string, seq: number, epoch: string, recovered: boolean, onlineUserIds: Array<string>, messages: Array<HistoryMessage>, };

export type UserMessageAck = { ok: true, messageId: string, seq: number, chatId: string, 
/**
 * True when this `messageId` was already stored: nothing new happened.
 */
duplicate: boolean, };

export type AbortAck = { ok: true, requestId: string, };

export type MarkReadAck = { ok: true, seq: number, };

export type AuthRefreshAck = { ok: true, expiresAt?: string, };

export type DiscoveryAck = { ok: true, version: number, events: { [key in string]: string }, };

export type HandoffAck = { ok: true, chatId: string, isWaitingForAgent: boolean, humanAgentEngaged: boolean, aiEngaged: boolean, seq: number, };

export type ReactionAck = { ok: true, chatId: string, messageId: string, reactions: Array<ReactionWire>, changed: boolean, seq?: number, };

export type SeqAck = { ok: true, chatId: string, seq: number, };

/** Events a client sends, by default wire name. */
export interface ClientToServerEvents {
  "chat:join": JoinPayload;
  "chat:leave": LeavePayload;
  "user:message": UserMessagePayload;
  "typing:start": TypingPayload;
  "typing:stop": TypingPayload;
  "ai:abort": AbortPayload;
  "message:read": MarkReadPayload;
  "ai:tool_result": ToolResultPayload;
  "auth:refresh": AuthRefreshPayload;
  "meta:events:request": DiscoveryRequestPayload;
  "handoff:request": HandoffRequestPayload;
  "reaction:add": ReactionPayload;
  "reaction:remove": ReactionPayload;
  "chat:end": ChatEndPayload;
  "csat:submit": CsatSubmitPayload;
}

/** Events the server sends, by default wire name. */
export interface ServerToClientEvents {
  "chat:message": ChatMessageEvent;
  "presence:update": PresenceUpdateEvent;
  "typing:update": TypingUpdateEvent;
  "ai:processing": AiProcessingEvent;
  "ai:token": AiTokenEvent;
  "ai:message": AiMessageEvent;
  "ai:error": AiErrorEvent;
  "ai:tool_call": AiToolCallEvent;
  "ai:tool_result": AiToolResultEvent;
  "message:read": MessageReadEvent;
  "meta:events:response": DiscoveryResponse;
  "error": ServerErrorEvent;
  "handoff:update": HandoffUpdateEvent;
  "reaction:update": ReactionUpdateEvent;
  "csat:request": CsatRequestEvent;
  "csat:submitted": CsatSubmittedEvent;
  "chat:updated": ChatUpdatedEvent;
  "chat:ended": ChatEndedEvent;
  "chat:deleted": ChatDeletedEvent;
  "message:superseded": MessageSupersededEvent;
  "attachment:processing": AttachmentProcessingEvent;
}

/** Every event by default wire name, both directions (seed 001's `ChatEvents`). */
export interface ChatEvents {
  "chat:join": JoinPayload;
  "chat:leave": LeavePayload;
  "user:message": UserMessagePayload;
  "typing:start": TypingPayload;
  "typing:stop": TypingPayload;
  "ai:abort": AbortPayload;
  "message:read": MarkReadPayload | MessageReadEvent;
  "ai:tool_result": ToolResultPayload | AiToolResultEvent;
  "auth:refresh": AuthRefreshPayload;
  "meta:events:request": DiscoveryRequestPayload;
  "handoff:request": HandoffRequestPayload;
  "reaction:add": ReactionPayload;
  "reaction:remove": ReactionPayload;
  "chat:end": ChatEndPayload;
  "csat:submit": CsatSubmitPayload;
  "chat:message": ChatMessageEvent;
  "presence:update": PresenceUpdateEvent;
  "typing:update": TypingUpdateEvent;
  "ai:processing": AiProcessingEvent;
  "ai:token": AiTokenEvent;
  "ai:message": AiMessageEvent;
  "ai:error": AiErrorEvent;
  "ai:tool_call": AiToolCallEvent;
  "meta:events:response": DiscoveryResponse;
  "error": ServerErrorEvent;
  "handoff:update": HandoffUpdateEvent;
  "reaction:update": ReactionUpdateEvent;
  "csat:request": CsatRequestEvent;
  "csat:submitted": CsatSubmittedEvent;
  "chat:updated": ChatUpdatedEvent;
  "chat:ended": ChatEndedEvent;
  "chat:deleted": ChatDeletedEvent;
  "message:superseded": MessageSupersededEvent;
  "attachment:processing": AttachmentProcessingEvent;
}

/** The ack of each client event: `{ok: true, …}` or `{ok: false, error}`. */
export interface ClientAcks {
  "chat:join": JoinAck | ErrorAck;
  "chat:leave": OkAck | ErrorAck;
  "user:message": UserMessageAck | ErrorAck;
  "typing:start": OkAck | ErrorAck;
  "typing:stop": OkAck | ErrorAck;
  "ai:abort": AbortAck | ErrorAck;
  "message:read": MarkReadAck | ErrorAck;
  "ai:tool_result": OkAck | ErrorAck;
  "auth:refresh": AuthRefreshAck | ErrorAck;
  "meta:events:request": DiscoveryAck | ErrorAck;
  "handoff:request": HandoffAck | ErrorAck;
  "reaction:add": ReactionAck | ErrorAck;
  "reaction:remove": ReactionAck | ErrorAck;
  "chat:end": SeqAck | ErrorAck;
  "csat:submit": SeqAck | ErrorAck;
}

/** A logical event, independent of its wire name. */
export type EventKey =
  | "join"
  | "leave"
  | "userMessage"
  | "typingStart"
  | "typingStop"
  | "abort"
  | "markRead"
  | "toolResultIn"
  | "authRefresh"
  | "chatMessage"
  | "presenceUpdate"
  | "typingUpdate"
  | "aiProcessing"
  | "aiToken"
  | "aiMessage"
  | "aiError"
  | "aiToolCall"
  | "aiToolResult"
  | "readReceipt"
  | "discoveryRequest"
  | "discoveryResponse"
  | "serverError"
  | "handoffRequest"
  | "handoffUpdate"
  | "reactionAdd"
  | "reactionRemove"
  | "reactionUpdate"
  | "chatEnd"
  | "csatSubmit"
  | "csatRequest"
  | "csatSubmitted"
  | "chatUpdated"
  | "chatEnded"
  | "chatDeleted"
  | "messageSuperseded"
  | "attachmentProcessing";

/** The wire name of every event key when the server remaps none. */
export const DEFAULT_EVENT_NAMES = {
  join: "chat:join",
  leave: "chat:leave",
  userMessage: "user:message",
  typingStart: "typing:start",
  typingStop: "typing:stop",
  abort: "ai:abort",
  markRead: "message:read",
  toolResultIn: "ai:tool_result",
  authRefresh: "auth:refresh",
  chatMessage: "chat:message",
  presenceUpdate: "presence:update",
  typingUpdate: "typing:update",
  aiProcessing: "ai:processing",
  aiToken: "ai:token",
  aiMessage: "ai:message",
  aiError: "ai:error",
  aiToolCall: "ai:tool_call",
  aiToolResult: "ai:tool_result",
  readReceipt: "message:read",
  discoveryRequest: "meta:events:request",
  discoveryResponse: "meta:events:response",
  serverError: "error",
  handoffRequest: "handoff:request",
  handoffUpdate: "handoff:update",
  reactionAdd: "reaction:add",
  reactionRemove: "reaction:remove",
  reactionUpdate: "reaction:update",
  chatEnd: "chat:end",
  csatSubmit: "csat:submit",
  csatRequest: "csat:request",
  csatSubmitted: "csat:submitted",
  chatUpdated: "chat:updated",
  chatEnded: "chat:ended",
  chatDeleted: "chat:deleted",
  messageSuperseded: "message:superseded",
  attachmentProcessing: "attachment:processing",
} as const satisfies Record<EventKey, string>;

/** Event keys of the events a client sends. */
export const CLIENT_EVENT_KEYS = [
  "join",
  "leave",
  "userMessage",
  "typingStart",
  "typingStop",
  "abort",
  "markRead",
  "toolResultIn",
  "authRefresh",
  "discoveryRequest",
  "handoffRequest",
  "reactionAdd",
  "reactionRemove",
  "chatEnd",
  "csatSubmit",
] as const satisfies readonly EventKey[];
