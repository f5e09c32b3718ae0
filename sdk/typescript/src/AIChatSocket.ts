// The high-level chat client of seeds 000 and 001, with recovery across reconnects.
import {
  DEFAULT_EVENT_NAMES,
  type AckOk,
  type AttachmentProcessingEvent,
  type ChatDeletedEvent,
  type ChatEndedEvent,
  type ChatID,
  type ChatUpdatedEvent,
  type CsatRequestEvent,
  type CsatSubmittedEvent,
  type EventKey,
  type HandoffAck,
  type HandoffUpdateEvent,
  type JoinAck,
  type MessageSupersededEvent,
  type ReactionAck,
  type ReactionUpdateEvent,
  type SeqAck,
  type ServerToClientEvents,
  type SocketClientType,
  type UserID,
  type UserMessageAck,
} from "./ChatEvents.js";
import {
  attachmentRefs,
  uploadAttachment,
  type AttachmentRef,
  type UploadedAttachment,
  type UploadIdentity,
} from "./attachments.js";
import { NatterError, SdkErrorCode, checkAck } from "./errors.js";
import { SocketService, type IoOptions } from "./SocketService.js";
import { TokenAssembler } from "./TokenAssembler.js";

type S2C = ServerToClientEvents;

/** An `ai:token` as delivered to callbacks: each index once, with the turn's text so far. */
export type AITokenUpdate = S2C["ai:token"] & {
  /** The concatenation of this turn's tokens so far, this one included. */
  turnText: string;
};

/** Processed server events (deduplicated), by key; what {@link AIChatSocket.subscribe} delivers. */
export interface ChatSocketEvents {
  connect: { chatId: ChatID | undefined };
  disconnect: { chatId: ChatID | undefined; reason: string };
  /** Every successful join ack, first join and rejoins alike. */
  join: JoinAck;
  /** A rejoin that could not recover what was missed: reload the chat from `ack.messages`. */
  resync: JoinAck;
  serverError: unknown;
  chatMessage: S2C["chat:message"];
  presenceUpdate: S2C["presence:update"];
  typingUpdate: S2C["typing:update"];
  aiProcessing: S2C["ai:processing"];
  aiToken: AITokenUpdate;
  aiMessage: S2C["ai:message"];
  aiError: S2C["ai:error"];
  aiToolCall: S2C["ai:tool_call"];
  aiToolResult: S2C["ai:tool_result"];
  readReceipt: S2C["message:read"];
  handoffUpdate: HandoffUpdateEvent;
  reactionUpdate: ReactionUpdateEvent;
  csatRequest: CsatRequestEvent;
  csatSubmitted: CsatSubmittedEvent;
  chatUpdated: ChatUpdatedEvent;
  chatEnded: ChatEndedEvent;
  chatDeleted: ChatDeletedEvent;
  messageSuperseded: MessageSupersededEvent;
  attachmentProcessing: AttachmentProcessingEvent;
}

export interface AIChatCallbacks {
  /* Connection lifecycle */
  /** Connected and joined (again, after a reconnect). */
  onConnect?: (info: { chatId: ChatID | undefined }) => void;
  onDisconnect?: (info: { chatId: ChatID | undefined; reason: string }) => void;
  /** Server `error` events, connect errors, failed joins, token gaps, and helper ack timeouts. */
  onServerError?: (error: unknown) => void;
  /** Every successful join ack. */
  onJoin?: (ack: JoinAck) => void;
  /** A rejoin that was not `recovered`: replace the shown messages with `messages`. */
  onResync?: (messages: JoinAck["messages"], ack: JoinAck) => void;

  /* Human chat */
  onChatMessage?: (event: S2C["chat:message"]) => void;
  onPresenceUpdate?: (event: S2C["presence:update"]) => void;
  onTypingUpdate?: (event: S2C["typing:update"]) => void;
  onReadReceipt?: (event: S2C["message:read"]) => void;

  /* AI streaming / results */
  onAIProcessing?: (event: S2C["ai:processing"]) => void;
  /** Each token once (replays and merged catch-ups are deduplicated), with `turnText`. */
  onAIToken?: (event: AITokenUpdate) => void;
  onAIMessage?: (event: S2C["ai:message"]) => void;
  onAIError?: (event: S2C["ai:error"]) => void;

  /* Tools */
  onAIToolCall?: (event: S2C["ai:tool_call"]) => void;
  onAIToolResult?: (event: S2C["ai:tool_result"]) => void;

  /* Support desk (CONTRACT §7) */
  /** The chat's handoff state changed (asked for a person, an agent joined or left). */
  onHandoffUpdate?: (event: HandoffUpdateEvent) => void;
  /** A message's reactions changed: `reactions` is its whole list. */
  onReactionUpdate?: (event: ReactionUpdateEvent) => void;
  /** The chat ended and this (customer) connection is asked to rate it: {@link AIChatSocket.submitCsat}. */
  onCsatRequest?: (event: CsatRequestEvent) => void;
  /** A member's rating was stored. */
  onCsatSubmitted?: (event: CsatSubmittedEvent) => void;

  /* Chat lifecycle */
  /** Renamed and/or (un)pinned. */
  onChatUpdated?: (event: ChatUpdatedEvent) => void;
  /** The chat was ended (`chat:end`, or seed 002's `/end`). */
  onChatEnded?: (event: ChatEndedEvent) => void;
  /** The chat was deleted; the server took this socket out of it. */
  onChatDeleted?: (event: ChatDeletedEvent) => void;
  /** A reply was regenerated: drop `messageId`; the turn `requestId` brings its replacement. */
  onMessageSuperseded?: (event: MessageSupersededEvent) => void;

  /* Attachments (CONTRACT §7.6) */
  /**
   * A document uploaded to the chat is being read (`status: "processing"`, with `percent`),
   * or was (`"complete"` with `chars`/`pages`, or `"error"` with `error`). Live only: after a
   * reconnect, the state comes from the message's attachments.
   */
  onAttachmentProcessing?: (event: AttachmentProcessingEvent) => void;
}

export interface AIChatSocketOptions {
  url: string;
  /** The chat to join; optional for servers without rooms. */
  chatId?: ChatID;
  /** Named in the join payload, so the server knows who joined (dev mode; with auth the token says). */
  userId?: UserID;
  /**
   * Who this connection is (CONTRACT §7.1), sent as the handshake's `auth.clientType`:
   * `humanAgent` takes the chat on join (with auth on it needs the `chat:agent` scope),
   * `observer` only reads. Default: the server's, `customer`.
   */
  clientType?: SocketClientType;
  /** Join event; default the `join` name in force (`"chat:join"`); `null` skips the join. */
  joinEvent?: string | null;
  /** Custom join payload; the SDK adds `lastSeq`/`epoch` (when known) and `meta`. */
  joinPayload?: Record<string, unknown>;
  ioOptions?: IoOptions;
  callbacks?: AIChatCallbacks;
  /** Connect at construction; default true. */
  autoConnect?: boolean;
  /** The server's error event; default `"error"`. Same as `eventNames.serverError`. */
  serverErrorEvent?: string;

  /** Wire names by EventKey, over the defaults. */
  eventNames?: Partial<Record<EventKey, string>>;
  /** Last word on every name: gets the key and the name otherwise in force. */
  eventResolver?: (key: EventKey, defaultName: string) => string;

  /** Ask the server for its event names on every connect, before joining. */
  discoverEvents?: boolean;
  /** Default `"meta:events:request"`. */
  discoveryRequestEvent?: string;
  /** Default `"meta:events:response"`. */
  discoveryResponseEvent?: string;

  /** Merged into every client→server payload the helpers send (the payload's own fields win). */
  meta?: Record<string, unknown>;
  /** How long helpers wait for an ack (queueing before the join included), ms; default 10 000. */
  ackTimeoutMs?: number;
  /**
   * The server's HTTP root for {@link AIChatSocket.uploadAttachment}; default `url`. The upload
   * carries the handshake's identity: `auth.token` as a Bearer token, else `auth.orgId` and
   * `userId` (or `auth.userId`).
   */
  httpUrl?: string;
}

export interface SendMessageParams {
  messageId: string;
  /** Required by seed 000; may be left out when the connection already names its user. */
  userId?: UserID;
  text: string;
  parts?: Array<{ type: string; value?: unknown; [key: string]: unknown }>;
  traceId?: string;
  requestId?: string;
  /** Client-run tools for this message's turn: `[{name, description?, parameters?}]`. */
  tools?: Array<{ name: string; description?: string; parameters?: unknown }>;
  /**
   * Files this message carries (CONTRACT §7.6): what {@link AIChatSocket.uploadAttachment}
   * returned, `{id}` objects or bare ids; sent as `attachments: [{id}]`.
   */
  attachments?: ReadonlyArray<AttachmentRef | UploadedAttachment | string>;
}

/** Options of {@link AIChatSocket.uploadAttachment}. */
export interface UploadAttachmentParams {
  /** The file name; default the File's own name. */
  name?: string;
  signal?: AbortSignal;
}

export interface MarkReadParams {
  userId: UserID;
  messageIds: string[];
  readAt: string;
  traceId?: string;
}

export interface ReactionParams {
  messageId: string;
  /** One to eight Unicode scalar values, no whitespace (CONTRACT §7.3). */
  emoji: string;
  /** Default: this socket's chat. */
  chatId?: ChatID;
  traceId?: string;
}

export interface ToolResultParams {
  requestId?: string;
  toolCallId: string;
  /** The tool's output (JSON). */
  result?: unknown;
  /** Why the tool failed (instead of `result`). */
  error?: string;
  traceId?: string;
}

const SERVER_EVENT_KEYS = [
  "chatMessage",
  "presenceUpdate",
  "typingUpdate",
  "aiProcessing",
  "aiToken",
  "aiMessage",
  "aiError",
  "aiToolCall",
  "aiToolResult",
  "readReceipt",
  "serverError",
  "handoffUpdate",
  "reactionUpdate",
  "csatRequest",
  "csatSubmitted",
  "chatUpdated",
  "chatEnded",
  "chatDeleted",
  "messageSuperseded",
  "attachmentProcessing",
] as const satisfies readonly EventKey[];
type ServerEventKey = (typeof SERVER_EVENT_KEYS)[number];

/** Server error codes after which the server closes the socket and a rejoin recovers everything. */
const RECOVERABLE_DROPS = new Set(["slow_consumer", "unavailable"]);
/** Pause before reconnecting after such a drop, ms. */
const SERVER_DROP_RECONNECT_MS = 250;

/** How many ended turns (by requestId) are remembered for {@link AIChatSocket.hasTurnEnded}. */
const ENDED_REQUESTS_MEMORY = 1024;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function numberField(value: unknown, key: string): number | undefined {
  if (!isRecord(value)) return undefined;
  const v = value[key];
  return typeof v === "number" ? v : undefined;
}

/** The handshake options with `auth.clientType` added (an `auth` callback is wrapped). */
function withClientType(options: AIChatSocketOptions): IoOptions {
  const io = options.ioOptions ?? {};
  const clientType = options.clientType;
  if (clientType === undefined) return io;
  const auth = io.auth;
  if (typeof auth === "function") {
    return { ...io, auth: (cb: (data: object) => void) => auth((data: object) => cb({ ...data, clientType })) };
  }
  return { ...io, auth: { ...(auth ?? {}), clientType } };
}

function stringField(value: unknown, key: string): string | undefined {
  if (!isRecord(value)) return undefined;
  const v = value[key];
  return typeof v === "string" ? v : undefined;
}

/**
 * A chat client with callbacks and helpers (seeds 000/001), built on {@link SocketService}.
 *
 * Beyond the seeds it keeps the chat's `epoch` and the highest durable `seq` it has seen, and
 * on every reconnect joins with `lastSeq`/`epoch`, so the server replays what was missed: each
 * durable event (`chat:message`, `ai:message`, `ai:error`, `message:read`, tool events)
 * reaches the callbacks once, and each `ai:token` index once per turn.
 *
 * Helpers return a promise of the ack. It resolves on `{ok: true}` and rejects with a
 * {@link NatterError} carrying the `code` otherwise. Ignoring it is safe: the promise is marked
 * handled, so no unhandled rejection occurs; a server refusal is reported to `onServerError`
 * by the server's own `error` event, and an ack timeout by the SDK.
 */
export class AIChatSocket {
  /** The typed socket underneath (escape hatch). */
  readonly service: SocketService<Record<string, unknown>>;

  private readonly options: AIChatSocketOptions;
  private callbacks: AIChatCallbacks;
  private eventNames: Partial<Record<EventKey, string>>;
  private discovered: Partial<Record<EventKey, string>> | undefined;
  private readonly bound = new Map<ServerEventKey, { name: string; listener: (payload: unknown) => void }>();
  private readonly listeners = new Map<keyof ChatSocketEvents, Set<(payload: never) => void>>();
  private readonly tokens = new TokenAssembler();
  private readonly endedRequests = new Set<string>();
  /** Streaming turns: requestId → assistant messageId. */
  private readonly streaming = new Map<string, string>();
  private epoch: string | undefined;
  private lastSeq = 0;
  private readyWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  /** Set by a server error after which the server drops the socket and a rejoin recovers. */
  private reconnectOnServerDrop = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: AIChatSocketOptions) {
    this.options = options;
    this.callbacks = { ...options.callbacks };
    this.eventNames = {
      ...(options.serverErrorEvent !== undefined ? { serverError: options.serverErrorEvent } : {}),
      ...(options.discoveryRequestEvent !== undefined ? { discoveryRequest: options.discoveryRequestEvent } : {}),
      ...(options.discoveryResponseEvent !== undefined ? { discoveryResponse: options.discoveryResponseEvent } : {}),
      ...(typeof options.joinEvent === "string" ? { join: options.joinEvent } : {}),
      ...options.eventNames,
    };
    this.service = new SocketService<Record<string, unknown>>({
      url: options.url,
      ...(options.chatId !== undefined ? { chatId: options.chatId } : {}),
      joinEvent: () => (options.joinEvent === null ? null : this.name("join")),
      joinPayload: () => this.joinPayload(),
      ...(options.ioOptions !== undefined || options.clientType !== undefined ? { ioOptions: withClientType(options) } : {}),
      autoConnect: false,
      serverErrorEvent: null, // bound below, under the name in force
      ...(options.ackTimeoutMs !== undefined ? { ackTimeoutMs: options.ackTimeoutMs } : {}),
      beforeJoin: () => (options.discoverEvents ? this.discover() : Promise.resolve()),
      onJoinAck: (ack) => {
        const joined = this.handleJoinAck(ack, "join");
        if (!(joined instanceof NatterError)) return true;
        // Refused (e.g. forbidden): whoever waits for the join learns why instead of waiting on.
        for (const waiter of this.readyWaiters.splice(0)) waiter.reject(joined);
        return false;
      },
      onReady: () => {
        for (const waiter of this.readyWaiters.splice(0)) waiter.resolve();
        this.dispatch("connect", { chatId: options.chatId });
      },
      onDisconnect: (reason) => {
        this.dispatch("disconnect", { chatId: options.chatId, reason });
        this.maybeReconnect(reason);
      },
      onError: (error) => this.dispatch("serverError", error),
    });
    this.rebind();
    if (options.autoConnect ?? true) this.connect();
  }

  // ---- configuration ----

  setCallbacks(callbacks: Partial<AIChatCallbacks>): void {
    this.callbacks = { ...this.callbacks, ...callbacks };
  }

  /** Changes wire names at runtime (listeners move to the new names at once). */
  setEventNames(map: Partial<Record<EventKey, string>>): void {
    this.eventNames = { ...this.eventNames, ...map };
    this.rebind();
  }

  /**
   * The wire name in force for `key`: the default, overlaid by `eventNames`/`setEventNames`,
   * overlaid by what discovery reported; `eventResolver` (if any) then has the last word.
   */
  name(key: EventKey): string {
    const base = this.discovered?.[key] ?? this.eventNames[key] ?? DEFAULT_EVENT_NAMES[key];
    return this.options.eventResolver ? this.options.eventResolver(key, base) : base;
  }

  // ---- lifecycle ----

  connect(): void {
    this.service.connect();
  }

  disconnect(): void {
    this.service.disconnect();
  }

  /** Disconnects for good and drops every listener and queued emit. */
  destroy(): void {
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.service.destroy();
    this.listeners.clear();
    const waiters = this.readyWaiters.splice(0);
    for (const waiter of waiters) waiter.reject(new NatterError(SdkErrorCode.Destroyed, "the chat socket was destroyed"));
  }

  isConnected(): boolean {
    return this.service.isConnected();
  }

  /** Resolves once connected and joined (at once if already). */
  whenReady(): Promise<void> {
    if (this.service.isReady()) return Promise.resolve();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Where a rejoin would resume: the chat's epoch and the highest durable seq seen. */
  recoveryState(): { epoch: string | undefined; lastSeq: number } {
    return { epoch: this.epoch, lastSeq: this.lastSeq };
  }

  /** The text streamed so far for the assistant message `messageId` (`""` once it ended). */
  turnText(messageId: string): string {
    return this.tokens.text(messageId);
  }

  /** The turn `requestId` if it is streaming: its assistant message id and its text so far. */
  streamingTurn(requestId: string): { messageId: string; text: string } | undefined {
    const messageId = this.streaming.get(requestId);
    return messageId === undefined ? undefined : { messageId, text: this.tokens.text(messageId) };
  }

  /** Whether the turn `requestId` ended (`ai:message` or `ai:error` seen, replays included). */
  hasTurnEnded(requestId: string): boolean {
    return this.endedRequests.has(requestId);
  }

  /**
   * Sends the join again on the live socket (the server replaces the membership, replays from
   * `lastSeq`, and re-sends a running turn's tokens, which are deduplicated). `fromSeq` asks
   * for a replay from an earlier point than the one tracked.
   */
  async rejoin(opts: { fromSeq?: number } = {}): Promise<JoinAck> {
    await this.whenReady();
    const payload = this.joinPayload(opts.fromSeq);
    const ack = await this.service.emitWithAck(this.name("join"), payload, { immediate: true });
    const parsed = this.handleJoinAck(ack, "rejoin");
    if (parsed instanceof NatterError) throw parsed;
    return parsed;
  }

  // ---- client → server helpers ----

  sendMessage(params: SendMessageParams): Promise<UserMessageAck> {
    const { attachments, ...rest } = params;
    let refs: Array<{ id: string }> | undefined;
    try {
      refs = attachments !== undefined ? attachmentRefs(attachments) : undefined;
    } catch (e) {
      const refused = Promise.reject(e);
      refused.catch(() => undefined); // handled, like every helper's promise
      return refused;
    }
    return this.send<UserMessageAck>("userMessage", { ...this.chatField(), ...rest, ...(refs !== undefined ? { attachments: refs } : {}) });
  }

  /**
   * Uploads a file for a chat (`POST /api/v1/attachments`, default this socket's chat) with
   * this connection's identity, and resolves to `{id, name, mimeType, size, sha256, url}`;
   * pass it (or its id) in {@link SendMessageParams.attachments}. Rejects with an
   * `AttachmentUploadError`: `AttachmentTooLargeError` (413), `UnsupportedMediaTypeError` (415),
   * or the server's code (`not_found`, `rate_limited`, …).
   */
  async uploadAttachment(chatId: ChatID | undefined, file: Blob, params: UploadAttachmentParams = {}): Promise<UploadedAttachment> {
    const chat = chatId ?? this.options.chatId;
    if (chat === undefined) throw new NatterError("missing_field", "uploadAttachment: no chatId given and the socket has none");
    return uploadAttachment({
      url: this.options.httpUrl ?? this.options.url,
      chatId: chat,
      file,
      ...(params.name !== undefined ? { name: params.name } : {}),
      ...(params.signal !== undefined ? { signal: params.signal } : {}),
      ...(await this.httpIdentity()),
    });
  }

  /** Who this connection is, for HTTP calls: the handshake's `auth` (a callback's too). */
  async httpIdentity(): Promise<UploadIdentity> {
    const configured = this.options.ioOptions?.auth;
    const auth: unknown =
      typeof configured === "function"
        ? await new Promise<object>((resolve) => (configured as (cb: (data: object) => void) => void)(resolve))
        : configured;
    const field = (key: string): string | undefined => {
      const v = isRecord(auth) ? auth[key] : undefined;
      return typeof v === "string" && v !== "" ? v : typeof v === "number" ? String(v) : undefined;
    };
    const token = field("token");
    const userId = this.options.userId !== undefined ? String(this.options.userId) : field("userId");
    const orgId = field("orgId");
    return {
      ...(token !== undefined ? { token } : {}),
      ...(userId !== undefined ? { userId } : {}),
      ...(orgId !== undefined ? { orgId } : {}),
    };
  }

  typingStart(userId: UserID, traceId?: string): Promise<AckOk> {
    return this.send("typingStart", { ...this.chatField(), userId, ...(traceId !== undefined ? { traceId } : {}) });
  }

  typingStop(userId: UserID, traceId?: string): Promise<AckOk> {
    return this.send("typingStop", { ...this.chatField(), userId, ...(traceId !== undefined ? { traceId } : {}) });
  }

  /** Stops the running turn (or, with `requestId`, that turn even if still queued). */
  abort(reason?: string, traceId?: string, requestId?: string): Promise<AckOk<{ requestId: string }>> {
    return this.send("abort", {
      ...this.chatField(),
      ...(reason !== undefined ? { reason } : {}),
      ...(traceId !== undefined ? { traceId } : {}),
      ...(requestId !== undefined ? { requestId } : {}),
    });
  }

  markRead(params: MarkReadParams): Promise<AckOk<{ seq: number }>> {
    return this.send("markRead", { ...this.chatField(), ...params });
  }

  /** Answers a client-run tool call (`ai:tool_call` with `executor: "client"`). */
  sendToolResult(params: ToolResultParams): Promise<AckOk> {
    return this.send("toolResultIn", { ...this.chatField(), ...params });
  }

  /**
   * Leaves the chat (`chat:leave`) and stays connected. A human agent hands the chat back to
   * the AI this way (CONTRACT §7.2). The socket joins again on its next reconnect.
   */
  leave(chatId?: ChatID, traceId?: string): Promise<AckOk> {
    return this.send("leave", { ...this.chatField(chatId), ...(traceId !== undefined ? { traceId } : {}) });
  }

  /** A customer asks for a person (`handoff:request`): the chat waits in the agents' queue. */
  requestHandoff(chatId?: ChatID, traceId?: string): Promise<HandoffAck> {
    return this.send("handoffRequest", { ...this.chatField(chatId), ...(traceId !== undefined ? { traceId } : {}) });
  }

  /**
   * Adds this user's reaction to a message (`reaction:add`). The ack has the message's whole
   * list; adding it twice changes nothing (`changed: false`).
   */
  addReaction(params: ReactionParams): Promise<ReactionAck> {
    return this.send("reactionAdd", { ...params, ...this.chatField(params.chatId) });
  }

  /** Removes this user's reaction from a message (`reaction:remove`). */
  removeReaction(params: ReactionParams): Promise<ReactionAck> {
    return this.send("reactionRemove", { ...params, ...this.chatField(params.chatId) });
  }

  /** Ends the chat (`chat:end`); its customers are then asked to rate it (`csat:request`). */
  endChat(chatId?: ChatID, reason?: string, traceId?: string): Promise<SeqAck> {
    return this.send("chatEnd", {
      ...this.chatField(chatId),
      ...(reason !== undefined ? { reason } : {}),
      ...(traceId !== undefined ? { traceId } : {}),
    });
  }

  /** Rates the chat (`csat:submit`): `rating` an integer 1–5, `comment` at most 2,000 characters. */
  submitCsat(chatId: ChatID | undefined, rating: number, comment?: string, traceId?: string): Promise<SeqAck> {
    return this.send("csatSubmit", {
      ...this.chatField(chatId),
      rating,
      ...(comment !== undefined ? { comment } : {}),
      ...(traceId !== undefined ? { traceId } : {}),
    });
  }

  // ---- raw access ----

  /** Every incoming event by wire name, unprocessed. Returns the remover. */
  onAny(listener: (event: string, ...args: unknown[]) => void): () => void {
    return this.service.onAny(listener);
  }

  /** Emits `payload` verbatim (no `meta`, no name mapping); queued until joined like every emit. */
  emitRaw(event: string, payload?: unknown, ack?: (response: unknown) => void): void {
    this.service.emit(event, payload, ack);
  }

  onRaw(event: string, listener: (payload: unknown) => void): () => void {
    return this.service.on(event, listener);
  }

  offRaw(event: string, listener: (payload: unknown) => void): void {
    this.service.off(event, listener);
  }

  /** Listens to processed events (the same stream the callbacks get). Returns the remover. */
  subscribe<K extends keyof ChatSocketEvents>(key: K, listener: (event: ChatSocketEvents[K]) => void): () => void {
    let set = this.listeners.get(key);
    if (!set) {
      set = new Set();
      this.listeners.set(key, set);
    }
    const stored = listener as (payload: never) => void;
    set.add(stored);
    return () => {
      this.listeners.get(key)?.delete(stored);
    };
  }

  // ---- internals ----

  /** `{chatId}`: the one given, else this socket's chat, else none (the server's only chat). */
  private chatField(chatId?: ChatID): { chatId?: ChatID } {
    const id = chatId ?? this.options.chatId;
    return id !== undefined ? { chatId: id } : {};
  }

  private joinPayload(fromSeq?: number): Record<string, unknown> {
    const base = this.options.joinPayload ?? {
      ...this.chatField(),
      ...(this.options.userId !== undefined ? { userId: this.options.userId } : {}),
    };
    const recovery =
      this.epoch !== undefined ? { lastSeq: Math.min(fromSeq ?? this.lastSeq, this.lastSeq), epoch: this.epoch } : {};
    return { ...this.options.meta, ...base, ...recovery };
  }

  private send<T extends object>(key: EventKey, payload: Record<string, unknown>): Promise<AckOk<T>> {
    // The name is resolved when sent: discovery may rename events before the join.
    const sent = this.service
      .emitWithAckAs(() => this.name(key), { ...this.options.meta, ...payload })
      .then((ack) => checkAck<T>(this.name(key), ack));
    // Marks the promise handled (callers may ignore it). Refusals reach onServerError through
    // the server's `error` event; failures the server cannot report are reported here.
    sent.catch((e: unknown) => {
      if (e instanceof NatterError && (e.code === SdkErrorCode.AckTimeout || e.code === SdkErrorCode.NotSent)) {
        this.dispatch("serverError", e);
      }
    });
    return sent;
  }

  private async discover(): Promise<void> {
    const responseName = this.name("discoveryResponse");
    let offResponse: (() => void) | undefined;
    const viaEvent = new Promise<unknown>((resolve) => {
      offResponse = this.service.on(responseName, resolve);
    });
    const viaAck = this.service.emitWithAck(this.name("discoveryRequest"), {}, { immediate: true });
    try {
      const answer = await Promise.race([viaEvent, viaAck]);
      const events = isRecord(answer) ? answer["events"] : undefined;
      if (!isRecord(events)) throw new NatterError(SdkErrorCode.BadAck, "discovery: the answer has no `events` map", answer);
      const found: Partial<Record<EventKey, string>> = {};
      for (const key of Object.keys(DEFAULT_EVENT_NAMES) as EventKey[]) {
        const wire = events[key];
        if (typeof wire === "string" && wire !== "") found[key] = wire;
      }
      this.discovered = found;
      this.rebind();
    } finally {
      offResponse?.();
      viaAck.catch(() => undefined); // the event may have won the race
    }
  }

  private rebind(): void {
    for (const key of SERVER_EVENT_KEYS) {
      const name = this.name(key);
      const current = this.bound.get(key);
      if (current?.name === name) continue;
      if (current) this.service.off(current.name, current.listener);
      const listener = (payload: unknown) => this.handleServerEvent(key, payload);
      this.service.on(name, listener);
      this.bound.set(key, { name, listener });
    }
  }

  /** Whether the event belongs to this socket's chat (no chatId configured: every event does). */
  private ownChat(payload: unknown): boolean {
    if (this.options.chatId === undefined) return true;
    const chatId = isRecord(payload) ? payload["chatId"] : undefined;
    return chatId === undefined || String(chatId) === String(this.options.chatId);
  }

  /** Drops a durable event already seen (by `seq`) and advances `lastSeq`; true to deliver. */
  private acceptSeq(payload: unknown): boolean {
    const seq = numberField(payload, "seq");
    if (seq === undefined || !this.ownChat(payload)) return true;
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    return true;
  }

  private markEnded(requestId: string | undefined, messageId: string | undefined): void {
    if (messageId !== undefined) this.tokens.end(messageId);
    if (requestId === undefined) return;
    this.streaming.delete(requestId);
    this.endedRequests.add(requestId);
    if (this.endedRequests.size > ENDED_REQUESTS_MEMORY) {
      const oldest = this.endedRequests.values().next();
      if (!oldest.done) this.endedRequests.delete(oldest.value);
    }
  }

  private handleServerEvent(key: ServerEventKey, payload: unknown): void {
    switch (key) {
      case "aiToken": {
        const e = payload as S2C["ai:token"];
        if (!isRecord(payload) || typeof e.messageId !== "string" || typeof e.index !== "number") {
          return this.dispatch("serverError", new NatterError(SdkErrorCode.BadAck, "malformed ai:token", payload));
        }
        const verdict = this.tokens.accept({
          messageId: e.messageId,
          token: typeof e.token === "string" ? e.token : "",
          index: e.index,
          through: numberField(payload, "through"),
        });
        if (verdict.kind === "append") {
          if (typeof e.requestId === "string") this.streaming.set(e.requestId, e.messageId);
          return this.dispatch("aiToken", { ...e, turnText: verdict.turnText });
        }
        if (verdict.kind === "gap") {
          this.dispatch(
            "serverError",
            new NatterError(SdkErrorCode.TokenGap, `ai:token ${e.index} of ${e.messageId}: expected ${verdict.expected}`, payload),
          );
        }
        return;
      }
      case "aiMessage": {
        const requestId = stringField(payload, "requestId");
        this.markEnded(requestId, stringField(payload, "messageId"));
        if (this.acceptSeq(payload)) this.dispatch("aiMessage", payload as S2C["ai:message"]);
        return;
      }
      case "aiError": {
        const details = isRecord(payload) ? payload["details"] : undefined;
        this.markEnded(stringField(payload, "requestId"), stringField(details, "messageId"));
        if (this.acceptSeq(payload)) this.dispatch("aiError", payload as S2C["ai:error"]);
        return;
      }
      case "aiToolCall":
        // A waiting client-run call sent again after a plain join carries `pending: true` and
        // its original (older) seq: deliver it anyway, or a reloaded page could not answer it.
        if ((isRecord(payload) && payload["pending"] === true) || this.acceptSeq(payload)) {
          this.dispatch(key, payload as never);
        }
        return;
      case "chatMessage":
      case "aiToolResult":
      case "readReceipt":
      case "handoffUpdate":
      case "reactionUpdate":
      case "csatSubmitted":
      case "chatUpdated":
      case "chatEnded":
      case "messageSuperseded":
        if (this.acceptSeq(payload)) this.dispatch(key, payload as never);
        return;
      case "serverError": {
        const code = stringField(payload, "code");
        // A drop notice names no refused event (a refused event's `unavailable` does).
        const drop = code !== undefined && RECOVERABLE_DROPS.has(code) && stringField(payload, "event") === undefined;
        if (drop) this.reconnectOnServerDrop = true;
        this.dispatch(key, payload);
        return;
      }
      case "presenceUpdate":
      case "typingUpdate":
      case "aiProcessing":
      // Its `seq` is the chat:ended's (already counted): it must not be dropped as seen.
      case "csatRequest":
      case "chatDeleted":
      case "attachmentProcessing":
        this.dispatch(key, payload as never);
        return;
    }
  }

  /**
   * socket.io-client reconnects by itself after a network loss, but not when the server closed
   * the socket. After `slow_consumer` / `unavailable` the server does that on purpose and a
   * rejoin with lastSeq recovers, so this client reconnects then too (after a short pause).
   */
  private maybeReconnect(reason: string): void {
    if (reason !== "io server disconnect" || !this.reconnectOnServerDrop) return;
    this.reconnectOnServerDrop = false;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, SERVER_DROP_RECONNECT_MS);
  }

  /** Applies a join ack; returns it parsed, or the error (reported to onServerError). */
  private handleJoinAck(ack: unknown, event: string): JoinAck | NatterError {
    let parsed: JoinAck;
    try {
      parsed = checkAck<Omit<JoinAck, "ok">>(event, ack);
    } catch (e) {
      const error = e instanceof NatterError ? e : new NatterError("error", String(e));
      // A refusal was already reported by the server's `error` event; a malformed ack was not.
      if (error.code === SdkErrorCode.BadAck) this.dispatch("serverError", error);
      return error;
    }
    const rejoin = this.epoch !== undefined;
    this.epoch = parsed.epoch;
    if (parsed.recovered) {
      this.lastSeq = Math.max(this.lastSeq, parsed.seq);
    } else {
      // Nothing was replayed: the running turn is re-sent from index 0, history comes from the ack.
      this.lastSeq = parsed.seq;
      this.tokens.resetRunning();
      this.streaming.clear();
    }
    this.dispatch("join", parsed);
    if (rejoin && !parsed.recovered) this.dispatch("resync", parsed);
    return parsed;
  }

  private dispatch<K extends keyof ChatSocketEvents>(key: K, event: ChatSocketEvents[K]): void {
    const cb = this.callbackFor(key);
    if (cb) this.guard(() => cb(event));
    const set = this.listeners.get(key);
    if (set) for (const listener of [...set]) this.guard(() => (listener as (e: ChatSocketEvents[K]) => void)(event));
  }

  private callbackFor<K extends keyof ChatSocketEvents>(key: K): ((event: ChatSocketEvents[K]) => void) | undefined {
    const c = this.callbacks;
    const table: { [P in keyof ChatSocketEvents]: ((event: ChatSocketEvents[P]) => void) | undefined } = {
      connect: c.onConnect,
      disconnect: c.onDisconnect,
      join: c.onJoin,
      resync: c.onResync ? (ack) => c.onResync?.(ack.messages, ack) : undefined,
      serverError: c.onServerError,
      chatMessage: c.onChatMessage,
      presenceUpdate: c.onPresenceUpdate,
      typingUpdate: c.onTypingUpdate,
      aiProcessing: c.onAIProcessing,
      aiToken: c.onAIToken,
      aiMessage: c.onAIMessage,
      aiError: c.onAIError,
      aiToolCall: c.onAIToolCall,
      aiToolResult: c.onAIToolResult,
      readReceipt: c.onReadReceipt,
      handoffUpdate: c.onHandoffUpdate,
      reactionUpdate: c.onReactionUpdate,
      csatRequest: c.onCsatRequest,
      csatSubmitted: c.onCsatSubmitted,
      chatUpdated: c.onChatUpdated,
      chatEnded: c.onChatEnded,
      chatDeleted: c.onChatDeleted,
      messageSuperseded: c.onMessageSuperseded,
      attachmentProcessing: c.onAttachmentProcessing,
    };
    return table[key];
  }

  /** A throwing callback must not corrupt this client's state: it is rethrown outside. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }
}
