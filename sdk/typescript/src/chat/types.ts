// Seed 002's types (`@elqnt/chat/models`, `/hooks`, `/transport`), as its SKILL.md lists them.
// These are the seed's own shapes on Natter's seed-002 face (docs/protocol.md "Seed 002 POST
// + SSE API"); the server adds a few fields (`seq`, `requestId`, `finishReason`, `epoch`),
// typed here as optional extras. Times are epoch milliseconds.

export type ChatRoleTS = "user" | "ai" | "event" | "humanAgent" | "observer" | "dataQuery" | "system" | "tool";
export type MessageStatusTS = "sending" | "sent" | "delivered" | "read" | "failed";
export type ChatStatusTS = "active" | "disconnected" | "abandoned" | "closed" | "archived" | "completed";
export type ChatTypeTS = "customer_support" | "public_room" | "private_room" | "direct" | "group";
export type ClientType = "customer" | "humanAgent" | "observer";

/**
 * An attachment (CONTRACT §7.6): `{id}` when sending (from `ChatClient.uploadAttachment`); the
 * server fills the rest. `url` (`/api/v1/attachments/{id}`) is readable by the chat's members.
 */
export interface Attachment {
  id: string;
  name?: string;
  mimeType?: string;
  size?: number;
  url?: string;
  /** Lowercase hex, on what `uploadAttachment` returned. */
  sha256?: string;
  [key: string]: unknown;
}

export interface EmojiReaction {
  emoji: string;
  userId: string;
  createdAt: number;
}

export interface Variable {
  [key: string]: unknown;
}

export interface ToolCall {
  Name: string;
  Arguments: Record<string, unknown>;
  ID: string;
  Description: string;
}

export interface ChatMessage {
  id: string;
  role: ChatRoleTS;
  content: string;
  time: number;
  status: MessageStatusTS;
  senderId: string;
  senderName?: string;
  createdAt: number;
  updatedAt?: number;
  replyTo?: string;
  threadId?: string;
  mentions?: string[];
  attachments?: Attachment[];
  reactions?: EmojiReaction[];
  variables?: Record<string, Variable>;
  name?: string;
  toolCallId?: string;
  toolCalls?: ToolCall[];
  llmUsage?: { inputTokens: number; outputTokens: number; totalTokens: number };
  /** Set on a failed-turn message. */
  error?: { code?: string; retryable?: boolean };
  /** Natter: the message's place in its chat's log. */
  seq?: number;
  /** Natter: the turn that wrote an `ai` message. */
  requestId?: string;
  /** Natter: how an `ai` message's turn ended (`stop`, `length`, `aborted`, …). */
  finishReason?: string;
}

export interface ChatUser {
  id: string;
  role?: string;
  name?: string;
  [key: string]: unknown;
}

export interface Chat {
  orgId: string;
  /** The chatKey. */
  key: string;
  title: string;
  messages: ChatMessage[];
  startTime: number;
  lastUpdated: number;
  users: ChatUser[];
  status: ChatStatusTS;
  aiEngaged: boolean;
  humanAgentEngaged: boolean;
  isWaiting: boolean;
  isWaitingForAgent: boolean;
  metadata?: Record<string, unknown>;
  activeSkillIds?: string[];
  deactivatedSkillIds?: string[];
  agentContextKey?: string;
  pinned?: boolean;
  chatType?: ChatTypeTS;
  /** Natter: the head of the chat's log. */
  seq?: number;
  /** Natter: changes only if the chat's log was lost. */
  epoch?: string;
  [key: string]: unknown;
}

/** The event types seed 002 names; any other string is passed through too. */
export type ChatEventTypeTS =
  | "message"
  | "reconnected"
  | "new_chat_created"
  | "load_chat_response"
  | "agent_execution_started"
  | "agent_execution_ended"
  | "step_started"
  | "step_completed"
  | "step_failed"
  | "plan_pending_approval"
  | "plan_approved"
  | "plan_rejected"
  | "plan_completed"
  | "agent_context_update"
  | "summary_update"
  | "skills_changed"
  | "typing"
  | "stopped_typing"
  | "human_agent_joined"
  | "human_agent_left"
  | "human_agent_requested"
  | "handoff_update"
  | "chat_ended"
  | "show_csat_survey"
  | "csat_submitted"
  | "reaction_update"
  | "reaction_added"
  | "reaction_removed"
  | "attachment_processing_started"
  | "attachment_processing_progress"
  | "attachment_processing_complete"
  | "attachment_processing_error"
  | "client_action"
  | "client_action_callback"
  | "error"
  | "transport_reconnected";

/** The event type names a stream listens for (EventSource only dispatches named types it is told). */
export const CHAT_EVENT_TYPES: readonly ChatEventTypeTS[] = [
  "message", "reconnected", "new_chat_created", "load_chat_response", "agent_execution_started",
  "agent_execution_ended", "step_started", "step_completed", "step_failed", "plan_pending_approval",
  "plan_approved", "plan_rejected", "plan_completed", "agent_context_update", "summary_update",
  "skills_changed", "typing", "stopped_typing", "human_agent_joined", "human_agent_left",
  "human_agent_requested", "handoff_update", "chat_ended", "show_csat_survey", "csat_submitted",
  "reaction_update", "reaction_added", "reaction_removed", "attachment_processing_started",
  "attachment_processing_progress", "attachment_processing_complete", "attachment_processing_error",
  "client_action", "client_action_callback", "error",
];

export interface ChatEvent {
  type: ChatEventTypeTS | (string & {});
  orgId: string;
  chatKey: string;
  userId: string;
  timestamp: number;
  data?: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  message?: ChatMessage;
}

export interface ChatSummary {
  chatKey: string;
  title: string;
  userId?: string;
  status: string;
  lastUpdated: number;
  waitingSince?: number;
  pinned?: boolean;
  metadata?: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  isBackground?: boolean;
  /** Natter extras. */
  createdAt?: number;
  seq?: number;
  /** Handoff state (CONTRACT §7.2); `waitingSince` is set while `isWaitingForAgent`. */
  aiEngaged?: boolean;
  humanAgentEngaged?: boolean;
  isWaitingForAgent?: boolean;
  /** The latest customer rating of the chat (CONTRACT §7.4). */
  csat?: CsatResult;
}

/** A chat's satisfaction rating: `rating` 1–5, `submittedAt` epoch ms. */
export interface CsatResult {
  rating: number;
  comment?: string;
  submittedAt: number;
}

export interface ChatHistoryResult {
  chats: ChatSummary[];
  total: number;
  hasMore: boolean;
}

export type TransportState = "disconnected" | "connecting" | "connected" | "reconnecting";

/** What went wrong, for `error` / `onError`. */
export interface TransportError {
  /** The server's error code (`not_found`, `unauthorized`, …) or the SDK's (`network_error`, `stream_closed`, `max_retries_exceeded`, `http_<status>`). */
  code: string;
  message: string;
  /** True when trying again may help (network trouble, 5xx, 429). */
  retryable: boolean;
  /** The HTTP status, when there was a response. */
  status?: number;
  timestamp: number;
  /** The underlying error, if any. */
  cause?: unknown;
}

/** Stream reconnection: exponential backoff with jitter. */
export interface RetryConfig {
  /** Reconnection attempts in a row before giving up; default 10 (`Infinity`: never give up). */
  maxRetries?: number;
  /** The first delay, ms; default 1000. */
  initialDelay?: number;
  /** The longest delay, ms; default 30 000. */
  maxDelay?: number;
  /** Each delay is the previous one times this; default 2. */
  backoffMultiplier?: number;
  /** Randomise each delay to 50–100 % of its value; default true. */
  jitter?: boolean;
}

export interface ConnectionMetrics {
  /** The transport in use: `"sse"`, `"sse-fetch"` or `"custom"`. */
  transportType: string;
  /** Round trip of the last POST, ms (0 before the first). */
  latency: number;
  messagesSent: number;
  messagesReceived: number;
  /** Successful reconnections of the stream since `connect()`. */
  reconnectCount: number;
  /** Epoch ms of the last time the stream opened. */
  lastConnectedAt?: number;
  lastError?: TransportError;
}

export type Unsubscribe = () => void;

// ---- transports ----

/** What one stream attempt reports. */
export interface StreamHandlers {
  /** The stream is open (HTTP 200 and reading). */
  onOpen(): void;
  /** One SSE event: its `event:` type, raw `data:` text, and `id:` if any. */
  onEvent(type: string, data: string, id: string | undefined): void;
  /** The stream failed or ended. It is closed already; the client decides whether to retry. */
  onError(error: TransportError): void;
}

/**
 * Opens one SSE stream. The client owns reconnection (retryConfig, Last-Event-ID, fresh
 * token), so an implementation does not reconnect by itself: it reports `onError` and stops.
 * `"sse"` (EventSource) and `"sse-fetch"` (fetch + ReadableStream) are built in.
 */
export interface ChatTransport {
  readonly type: string;
  /** `lastEventId` is the `seq` to resume after (sent as `Last-Event-ID` or `?lastEventId=`). */
  open(url: string, handlers: StreamHandlers, options: { lastEventId?: string }): { close(): void };
}

/** `getToken`: awaited per connect and per send. */
export type TokenProvider = () => Promise<string | null | undefined> | string | null | undefined;

export interface UseChatOptions {
  /** The chat prefix, e.g. `http://host:4000/api/v1/chat` (not the server root). */
  baseUrl: string;
  orgId: string;
  userId: string;
  /** Default `"customer"`. */
  clientType?: ClientType;
  /** Auto-selected when absent: `"sse"` where `EventSource` exists, else `"sse-fetch"`. */
  transport?: ChatTransport | "sse" | "sse-fetch";
  /** Every incoming event. */
  onMessage?: (event: ChatEvent) => void;
  onError?: (error: TransportError) => void;
  onConnectionChange?: (state: TransportState) => void;
  /** Connect on mount (the hook) / at once (`ChatClient`); default false. */
  autoConnect?: boolean;
  retryConfig?: RetryConfig;
  debug?: boolean;
  getToken?: TokenProvider;
  /** A static token (does not refresh); `getToken` wins when both are given. */
  token?: string;
  /**
   * Natter: where `uploadAttachment` posts files; default `/api/v1/attachments` beside
   * `baseUrl` (`…/api/v1/chat` → `…/api/v1/attachments`, else the origin's).
   */
  attachmentsUrl?: string;
}

export interface UseChatHistoryOptions {
  /** The server root (history lives under `/api/v1/chats`). */
  baseUrl: string;
  orgId: string;
  getToken?: TokenProvider;
  token?: string;
}
