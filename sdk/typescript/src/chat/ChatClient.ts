// Seed 002's realtime client without a framework: what `useChat` (`@natter/react`) runs on.
// POST /create /send /load /typing /end /event, and one SSE stream (`GET /stream`) that
// reconnects with backoff, a fresh token and `Last-Event-ID`.
import { ATTACHMENTS_PATH, AttachmentUploadError, attachmentRefs, uploadAttachment, type UploadedAttachment } from "../attachments.js";
import { ChatRequestError, asTransportError, joinUrl, requestJson, resolveToken } from "./http.js";
import { EventSourceTransport, FetchSseTransport, transportError } from "./transports.js";
import type {
  Chat,
  ChatEvent,
  ChatMessage,
  ChatTransport,
  ConnectionMetrics,
  EmojiReaction,
  RetryConfig,
  TransportError,
  TransportState,
  Unsubscribe,
  UseChatOptions,
} from "./types.js";

/** Everything `useChat` shows; a new object on every change (safe for `useSyncExternalStore`). */
export interface ChatClientState {
  connectionState: TransportState;
  isConnected: boolean;
  currentChat: Chat | null;
  chatKey: string | null;
  messages: ChatMessage[];
  error: TransportError | null;
  metrics: ConnectionMetrics;
}

export type ChatClientOptions = UseChatOptions;

/** Stream `error` codes after which the server expects a new stream: the client reconnects at once. */
const STREAM_ENDING_CODES = ["token_expired", "slow_consumer"] as const;

const DEFAULT_RETRY: Required<RetryConfig> = {
  maxRetries: 10,
  initialDelay: 1000,
  maxDelay: 30_000,
  backoffMultiplier: 2,
  jitter: true,
};

/** A random UUID (v4), also where `crypto.randomUUID` is missing (non-secure contexts). */
export function newMessageId(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function requireString(name: string, value: unknown): string {
  if (typeof value !== "string" || value === "") throw new TypeError(`ChatClient: \`${name}\` must be a non-empty string`);
  return value;
}

/**
 * Seed 002's chat client. Same options as `useChat`; the same methods; `subscribe`/`getState`
 * for the state (React, Vue, Svelte or a plain script). Constructing it has no side effects
 * (no connection until `connect()`, or `autoConnect: true`).
 */
export class ChatClient {
  private readonly options: ChatClientOptions;
  private readonly transport: ChatTransport;
  private readonly retry: Required<RetryConfig>;
  private state: ChatClientState;
  private readonly stateListeners = new Set<(state: ChatClientState) => void>();
  private readonly eventListeners = new Map<string, Set<(event: ChatEvent) => void>>();
  /** Bumped by connect/disconnect: a stale attempt's callbacks are ignored. */
  private generation = 0;
  private stream: { close(): void } | undefined;
  private streamChatKey: string | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private openedOnce = false;
  private connectPromise: Promise<void> | undefined;
  private connectWaiters: Array<() => void> = [];
  /** The highest `seq` seen per chat: where a reconnecting stream resumes. */
  private readonly seqByChat = new Map<string, number>();
  private destroyed = false;

  constructor(options: ChatClientOptions) {
    requireString("baseUrl", options.baseUrl);
    requireString("orgId", options.orgId);
    requireString("userId", options.userId);
    const clientType = options.clientType ?? "customer";
    if (!["customer", "humanAgent", "observer"].includes(clientType)) {
      throw new TypeError(`ChatClient: \`clientType\` must be customer, humanAgent or observer, got ${JSON.stringify(clientType)}`);
    }
    this.options = options;
    this.retry = { ...DEFAULT_RETRY, ...stripUndefined(options.retryConfig ?? {}) };
    const t = options.transport;
    if (t === undefined) this.transport = EventSourceTransport.available() ? new EventSourceTransport() : new FetchSseTransport();
    else if (t === "sse") this.transport = new EventSourceTransport();
    else if (t === "sse-fetch") this.transport = new FetchSseTransport();
    else if (typeof t === "object" && t !== null && typeof t.open === "function") this.transport = t;
    else throw new TypeError(`ChatClient: \`transport\` must be "sse", "sse-fetch" or a ChatTransport, got ${JSON.stringify(t)}`);
    this.state = {
      connectionState: "disconnected",
      isConnected: false,
      currentChat: null,
      chatKey: null,
      messages: [],
      error: null,
      metrics: {
        transportType: t === undefined || typeof t === "string" ? this.transport.type : "custom",
        latency: 0,
        messagesSent: 0,
        messagesReceived: 0,
        reconnectCount: 0,
      },
    };
    for (const name of Object.getOwnPropertyNames(ChatClient.prototype)) {
      const v = (this as unknown as Record<string, unknown>)[name];
      if (name !== "constructor" && typeof v === "function") (this as unknown as Record<string, unknown>)[name] = v.bind(this);
    }
    if (options.autoConnect) void this.connect();
  }

  // ---- state ----

  getState(): ChatClientState {
    return this.state;
  }

  /** Calls `listener` with the new state after every change; returns the unsubscribe. */
  subscribe(listener: (state: ChatClientState) => void): Unsubscribe {
    this.stateListeners.add(listener);
    return () => void this.stateListeners.delete(listener);
  }

  private setState(patch: Partial<ChatClientState>): void {
    const before = this.state.connectionState;
    this.state = { ...this.state, ...patch };
    if (patch.connectionState !== undefined) this.state.isConnected = patch.connectionState === "connected";
    for (const l of [...this.stateListeners]) l(this.state);
    if (this.state.connectionState !== before) this.options.onConnectionChange?.(this.state.connectionState);
  }

  private patchMetrics(patch: Partial<ConnectionMetrics>): void {
    this.setState({ metrics: { ...this.state.metrics, ...patch } });
  }

  private log(...args: unknown[]): void {
    if (this.options.debug) console.debug("[natter ChatClient]", ...args);
  }

  private fail(error: TransportError): void {
    this.setState({ error, metrics: { ...this.state.metrics, lastError: error } });
    this.options.onError?.(error);
  }

  clearError(): void {
    if (this.state.error) this.setState({ error: null });
  }

  // ---- connection ----

  /**
   * Opens the stream (following `chatKey` once there is one). Resolves once it is open — or
   * once the client gives up (`error` says why) or `disconnect()` is called: it never rejects,
   * so `chat.connect()` without a `catch` is safe. Calling it while connecting or connected
   * returns the same promise (one stream per client).
   */
  connect(): Promise<void> {
    if (this.destroyed) return Promise.resolve();
    if (this.connectPromise) return this.connectPromise;
    this.connectPromise = new Promise<void>((resolve) => this.connectWaiters.push(resolve));
    const gen = ++this.generation;
    this.attempt = 0;
    this.openedOnce = false;
    this.setState({ connectionState: "connecting" });
    void this.openStream(gen);
    return this.connectPromise;
  }

  /** Closes the stream and stops reconnecting. `messages`, `chatKey` and `currentChat` stay. */
  disconnect(): void {
    this.generation += 1;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.stream?.close();
    this.stream = undefined;
    this.connectPromise = undefined;
    this.resolveConnect();
    if (this.state.connectionState !== "disconnected") this.setState({ connectionState: "disconnected" });
  }

  /** `disconnect()` and drop every listener; the client cannot connect again. */
  destroy(): void {
    this.disconnect();
    this.destroyed = true;
    this.stateListeners.clear();
    this.eventListeners.clear();
  }

  private resolveConnect(): void {
    for (const r of this.connectWaiters.splice(0)) r();
  }

  private streamUrl(token: string | undefined): string {
    const u = new URL(joinUrl(this.options.baseUrl, "/stream"));
    u.searchParams.set("orgId", this.options.orgId);
    u.searchParams.set("userId", this.options.userId);
    u.searchParams.set("clientType", this.options.clientType ?? "customer");
    if (this.state.chatKey) u.searchParams.set("chatKey", this.state.chatKey);
    if (token) u.searchParams.set("token", token);
    return u.toString();
  }

  private async openStream(gen: number): Promise<void> {
    let token: string | undefined;
    try {
      token = await this.token();
    } catch (e) {
      if (gen === this.generation) this.streamFailed(gen, asTransportError(e));
      return;
    }
    if (gen !== this.generation) return;
    const chatKey = this.state.chatKey;
    const seq = chatKey ? this.seqByChat.get(chatKey) : undefined;
    const lastEventId = seq !== undefined ? String(seq) : undefined;
    this.streamChatKey = chatKey;
    this.log("opening the stream", { chatKey, lastEventId, transport: this.transport.type });
    try {
      this.stream = this.transport.open(
        this.streamUrl(token),
        {
          onOpen: () => {
            if (gen !== this.generation) return;
            const reconnected = this.openedOnce;
            this.openedOnce = true;
            this.attempt = 0;
            this.setState({
              connectionState: "connected",
              metrics: {
                ...this.state.metrics,
                lastConnectedAt: Date.now(),
                reconnectCount: this.state.metrics.reconnectCount + (reconnected ? 1 : 0),
              },
            });
            this.resolveConnect();
            if (reconnected) {
              this.dispatch({
                type: "transport_reconnected",
                orgId: this.options.orgId,
                chatKey: this.state.chatKey ?? "",
                userId: this.options.userId,
                timestamp: Date.now(),
                data: { transport: this.transport.type, ...(lastEventId !== undefined ? { lastEventId } : {}) },
              });
            }
          },
          onEvent: (type, data, id) => {
            if (gen === this.generation) this.receive(gen, type, data, id);
          },
          onError: (error) => {
            if (gen === this.generation) this.streamFailed(gen, error);
          },
        },
        lastEventId !== undefined ? { lastEventId } : {},
      );
    } catch (e) {
      // A transport that cannot work here (e.g. "sse" without EventSource): no point retrying.
      this.giveUp(transportError("transport_unavailable", (e as Error).message, false, { cause: e }));
    }
  }

  private streamFailed(gen: number, error: TransportError): void {
    this.stream = undefined;
    this.patchMetrics({ lastError: error });
    this.log("stream failed", error.code, error.message);
    // 4xx other than 401 (a fresh token may help) and 429 will not get better by retrying.
    const status = error.status;
    if (status !== undefined && status >= 400 && status < 500 && status !== 401 && status !== 429) {
      this.giveUp(error);
      return;
    }
    if (this.attempt >= this.retry.maxRetries) {
      this.giveUp(
        transportError("max_retries_exceeded", `gave up reconnecting after ${this.attempt} attempts: ${error.message}`, true, { cause: error }),
      );
      return;
    }
    const base = Math.min(this.retry.maxDelay, this.retry.initialDelay * Math.pow(this.retry.backoffMultiplier, this.attempt));
    const delay = this.retry.jitter ? base * (0.5 + Math.random() * 0.5) : base;
    this.attempt += 1;
    this.setState({ connectionState: "reconnecting" });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (gen === this.generation) void this.openStream(gen);
    }, delay);
  }

  private giveUp(error: TransportError): void {
    this.generation += 1;
    this.stream?.close();
    this.stream = undefined;
    this.connectPromise = undefined;
    this.setState({ connectionState: "disconnected" });
    this.fail(error);
    this.resolveConnect();
  }

  private async token(): Promise<string | undefined> {
    return resolveToken(this.options.getToken, this.options.token);
  }

  // ---- incoming events ----

  private noteSeq(chatKey: string | null | undefined, seq: unknown): void {
    if (!chatKey || typeof seq !== "number" || !Number.isFinite(seq)) return;
    if (seq > (this.seqByChat.get(chatKey) ?? 0)) this.seqByChat.set(chatKey, seq);
  }

  private receive(gen: number, type: string, data: string, id: string | undefined): void {
    let event: ChatEvent;
    try {
      event = JSON.parse(data) as ChatEvent;
    } catch {
      this.log("dropping an event whose data is not JSON", type, data.slice(0, 200));
      return;
    }
    if (typeof event !== "object" || event === null) return;
    if (typeof event.type !== "string") event.type = type;
    if (id !== undefined && /^\d+$/.test(id)) this.noteSeq(this.streamChatKey, Number(id));
    this.patchMetrics({ messagesReceived: this.state.metrics.messagesReceived + 1 });
    this.apply(event);
    this.dispatch(event);
    // The server asks for a new stream (a fresh token, or a catch-up with Last-Event-ID):
    // reconnect now rather than wait for it to close the old one.
    const code = event.type === "error" ? event.data?.["code"] : undefined;
    if ((code === STREAM_ENDING_CODES[0] || code === STREAM_ENDING_CODES[1]) && gen === this.generation) {
      this.stream?.close();
      this.streamFailed(gen, transportError(code, String(event.data?.["message"] ?? code), true));
    }
  }

  private apply(event: ChatEvent): void {
    const data = event.data ?? {};
    switch (event.type) {
      case "message": {
        const m = event.message;
        if (!m || typeof m.id !== "string") return;
        this.noteSeq(event.chatKey, m.seq);
        if (event.chatKey && event.chatKey === this.state.chatKey) this.upsert(m);
        return;
      }
      case "new_chat_created": {
        const key = data["chatKey"];
        if (typeof key === "string" && key !== this.state.chatKey) {
          this.setState({ chatKey: key, currentChat: null, messages: [] });
        }
        return;
      }
      case "load_chat_response": {
        const chat = data["chat"] as Chat | undefined;
        if (chat && typeof chat.key === "string") this.adoptChat(chat);
        return;
      }
      case "human_agent_requested":
      case "human_agent_joined":
      case "human_agent_left":
      case "handoff_update": {
        this.noteSeq(event.chatKey, data["seq"]);
        const chat = this.state.currentChat;
        if (chat && event.chatKey === chat.key) this.setState({ currentChat: { ...chat, ...handoffState(event.type, data, chat) } });
        return;
      }
      case "reaction_update": {
        this.noteSeq(event.chatKey, data["seq"]);
        const messageId = data["messageId"];
        const reactions = data["reactions"];
        if (event.chatKey !== this.state.chatKey || typeof messageId !== "string" || !Array.isArray(reactions)) return;
        const i = this.state.messages.findIndex((m) => m.id === messageId);
        const m = this.state.messages[i];
        if (!m) return;
        const next = this.state.messages.slice();
        next[i] = { ...m, reactions: reactions as EmojiReaction[] };
        this.setState({ messages: next });
        return;
      }
      case "chat_ended": {
        this.noteSeq(event.chatKey, data["seq"]);
        const chat = this.state.currentChat;
        if (chat && event.chatKey === chat.key) this.setState({ currentChat: { ...chat, status: "closed" } });
        return;
      }
      case "error": {
        const code = typeof data["code"] === "string" ? data["code"] : "server_error";
        // Handled by reconnecting (see receive): not an error the app has to show.
        if ((STREAM_ENDING_CODES as readonly string[]).includes(code)) return;
        const message = typeof data["message"] === "string" ? data["message"] : "the server reported an error";
        this.fail(transportError(code, message, data["retryable"] === true));
        return;
      }
      default:
        return;
    }
  }

  /** Puts the server's copy in place of a message with the same id, or appends it. */
  private upsert(m: ChatMessage): void {
    const messages = this.state.messages;
    const i = messages.findIndex((x) => x.id === m.id);
    if (i === -1) this.setState({ messages: [...messages, m] });
    else {
      const next = messages.slice();
      next[i] = m;
      this.setState({ messages: next });
    }
  }

  private adoptChat(chat: Chat): void {
    this.noteSeq(chat.key, chat.seq);
    const serverMessages = Array.isArray(chat.messages) ? chat.messages : [];
    const known = new Set(serverMessages.map((m) => m.id));
    // Our own messages still on their way (sending) are kept after the server's list.
    const pending =
      this.state.chatKey === chat.key ? this.state.messages.filter((m) => m.status === "sending" && !known.has(m.id)) : [];
    this.setState({ currentChat: chat, chatKey: chat.key, messages: [...serverMessages, ...pending] });
  }

  private dispatch(event: ChatEvent): void {
    try {
      this.options.onMessage?.(event);
    } catch (e) {
      this.log("onMessage threw", e);
    }
    for (const h of [...(this.eventListeners.get(event.type) ?? [])]) {
      try {
        h(event);
      } catch (e) {
        this.log(`a handler of ${event.type} threw`, e);
      }
    }
  }

  /** Subscribes to one event type (any server type, or `transport_reconnected`). */
  on(eventType: string, handler: (event: ChatEvent) => void): Unsubscribe {
    if (typeof handler !== "function") throw new TypeError("ChatClient.on: handler must be a function");
    let set = this.eventListeners.get(eventType);
    if (!set) this.eventListeners.set(eventType, (set = new Set()));
    set.add(handler);
    return () => void set.delete(handler);
  }

  // ---- chat operations ----

  private async post(op: string, body: Record<string, unknown>): Promise<unknown> {
    const token = await this.token();
    const started = Date.now();
    const result = await requestJson("POST", joinUrl(this.options.baseUrl, `/${op}`), body, token);
    this.patchMetrics({ latency: Date.now() - started });
    return result;
  }

  /** Runs `fn`; a failure sets `error`, calls `onError` and rejects with a ChatRequestError. */
  private async guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const err = asTransportError(e);
      this.fail(err);
      throw e instanceof ChatRequestError ? e : new ChatRequestError(err);
    }
  }

  private needChatKey(op: string): string {
    const key = this.state.chatKey;
    if (!key) throw new ChatRequestError(transportError("no_chat", `${op}: no chat yet; call startChat() or loadChat() first`, false));
    return key;
  }

  private ids(): { orgId: string; userId: string } {
    return { orgId: this.options.orgId, userId: this.options.userId };
  }

  /** POST /create; resolves to the new chatKey, which becomes this client's chat. */
  startChat(metadata?: Record<string, unknown>): Promise<string> {
    return this.guarded(async () => {
      if (metadata !== undefined && (typeof metadata !== "object" || metadata === null || Array.isArray(metadata))) {
        throw new ChatRequestError(transportError("invalid_field", "startChat: `metadata` must be an object", false));
      }
      const res = (await this.post("create", { ...this.ids(), ...(metadata !== undefined ? { metadata } : {}) })) as { chatKey?: unknown };
      if (typeof res?.chatKey !== "string") throw new ChatRequestError(transportError("bad_response", "/create answered without a chatKey", false));
      if (res.chatKey !== this.state.chatKey) this.setState({ chatKey: res.chatKey, currentChat: null, messages: [] });
      return res.chatKey;
    });
  }

  /** POST /load; the chat becomes `currentChat` and its messages `messages`. */
  loadChat(chatKey: string): Promise<Chat> {
    return this.guarded(async () => {
      if (typeof chatKey !== "string" || chatKey === "") {
        throw new ChatRequestError(transportError("invalid_field", "loadChat: `chatKey` must be a non-empty string", false));
      }
      const res = (await this.post("load", { ...this.ids(), chatKey })) as { chat?: Chat };
      if (!res?.chat || typeof res.chat.key !== "string") throw new ChatRequestError(transportError("bad_response", "/load answered without a chat", false));
      this.adoptChat(res.chat);
      return res.chat;
    });
  }

  /**
   * Appends the message at once (`status: "sending"`), POSTs /send, then marks it `"sent"`
   * (or `"failed"`, and rejects). The server's copy, when it comes over the stream, replaces
   * it (same id). The reply arrives as a `message` event.
   */
  sendMessage(content: string, attachments?: unknown[], data?: Record<string, unknown>): Promise<void> {
    return this.guarded(async () => {
      if (typeof content !== "string") throw new ChatRequestError(transportError("invalid_field", "sendMessage: `content` must be a string", false));
      if (attachments !== undefined && !Array.isArray(attachments)) {
        throw new ChatRequestError(transportError("invalid_field", "sendMessage: `attachments` must be an array", false));
      }
      // The server needs only the ids (it fills in the rest); the optimistic copy keeps all.
      let refs: Array<{ id: string }> | undefined;
      try {
        refs = attachments && attachments.length > 0 ? attachmentRefs(attachments as Array<{ id: string }>) : undefined;
      } catch (e) {
        throw new ChatRequestError(transportError("invalid_field", `sendMessage: ${(e as Error).message}`, false));
      }
      const chatKey = this.needChatKey("sendMessage");
      const now = Date.now();
      const id = newMessageId();
      const optimistic: ChatMessage = {
        id,
        role: "user",
        content,
        time: now,
        status: "sending",
        senderId: this.options.userId,
        createdAt: now,
        ...(attachments && attachments.length > 0 ? { attachments: attachments as ChatMessage["attachments"] & object } : {}),
      };
      this.setState({ messages: [...this.state.messages, optimistic] });
      const setStatus = (status: ChatMessage["status"]) => {
        const i = this.state.messages.findIndex((m) => m.id === id);
        const m = this.state.messages[i];
        if (!m || m.status !== "sending") return; // the server's copy is already there
        const next = this.state.messages.slice();
        next[i] = { ...m, status };
        this.setState({ messages: next });
      };
      try {
        await this.post("send", {
          ...this.ids(),
          chatKey,
          message: { id, content, ...(refs !== undefined ? { attachments: refs } : {}) },
          ...(data !== undefined ? { data } : {}),
        });
      } catch (e) {
        setStatus("failed");
        throw e;
      }
      setStatus("sent");
      this.patchMetrics({ messagesSent: this.state.metrics.messagesSent + 1 });
    });
  }

  /**
   * Uploads a file for a chat (`POST /api/v1/attachments`; default the current chat) with this
   * client's identity (`getToken`/`token`, `orgId`, `userId`), and resolves to `{id, name,
   * mimeType, size, sha256, url}`: pass it in `sendMessage(content, [attachment])`. Rejects with
   * an `AttachmentUploadError` (`AttachmentTooLargeError` for 413, `UnsupportedMediaTypeError`
   * for 415); a failure also sets `error` and calls `onError`, like every operation.
   */
  uploadAttachment(chatKey: string | null | undefined, file: Blob, options: { name?: string; signal?: AbortSignal } = {}): Promise<UploadedAttachment> {
    return this.guardedUpload(async () => {
      const key = chatKey ?? this.needChatKey("uploadAttachment");
      const token = await this.token();
      const started = Date.now();
      const uploaded = await uploadAttachment({
        url: this.attachmentsUrl(),
        chatId: key,
        file,
        ...(options.name !== undefined ? { name: options.name } : {}),
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
        ...(token !== undefined ? { token } : {}),
        orgId: this.options.orgId,
        userId: this.options.userId,
      });
      this.patchMetrics({ latency: Date.now() - started });
      return uploaded;
    });
  }

  /** `attachmentsUrl`, else the attachments path beside the chat prefix (`…/api/v1/chat` → `…/api/v1/attachments`). */
  private attachmentsUrl(): string {
    if (this.options.attachmentsUrl) return this.options.attachmentsUrl;
    const base = this.options.baseUrl.replace(/\/+$/, "");
    const chatPrefix = "/api/v1/chat";
    if (base.endsWith(chatPrefix)) return base.slice(0, -chatPrefix.length) + ATTACHMENTS_PATH;
    try {
      return new URL(base).origin + ATTACHMENTS_PATH;
    } catch {
      return base + ATTACHMENTS_PATH;
    }
  }

  /** Like `guarded`, keeping the upload's typed error (rejects with it as it is). */
  private async guardedUpload<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof AttachmentUploadError) {
        this.fail(transportError(e.code, e.message, e.retryable, { ...(e.status !== undefined ? { status: e.status } : {}), cause: e }));
        throw e;
      }
      const err = asTransportError(e);
      this.fail(err);
      throw e instanceof ChatRequestError ? e : new ChatRequestError(err);
    }
  }

  /** POST /event with `orgId`, `chatKey` and `userId` filled in when absent. */
  sendEvent(event: Omit<ChatEvent, "timestamp">): Promise<void> {
    return this.guarded(async () => {
      if (typeof event?.type !== "string" || event.type === "") {
        throw new ChatRequestError(transportError("invalid_field", "sendEvent: `type` must be a non-empty string", false));
      }
      await this.post("event", {
        ...event,
        orgId: event.orgId || this.options.orgId,
        userId: event.userId || this.options.userId,
        chatKey: event.chatKey || this.needChatKey("sendEvent"),
      });
    });
  }

  /** POST /event `{type, data?}` for the current chat (the support-desk helpers below). */
  private chatEvent(op: string, type: string, data?: Record<string, unknown>): Promise<void> {
    return this.guarded(async () => {
      await this.post("event", { ...this.ids(), chatKey: this.needChatKey(op), type, ...(data !== undefined ? { data } : {}) });
    });
  }

  /** A customer asks for a person (`human_agent_requested`): the chat waits in the agents' queue. */
  requestHandoff(): Promise<void> {
    return this.chatEvent("requestHandoff", "human_agent_requested");
  }

  /** A `humanAgent` client takes the chat (`human_agent_joined`): the AI stops answering. */
  joinAsAgent(): Promise<void> {
    return this.chatEvent("joinAsAgent", "human_agent_joined");
  }

  /** A `humanAgent` client hands the chat back to the AI (`human_agent_left`). */
  leaveAsAgent(): Promise<void> {
    return this.chatEvent("leaveAsAgent", "human_agent_left");
  }

  /** Adds this user's reaction to a message (`reaction_added`; twice changes nothing). */
  addReaction(messageId: string, emoji: string): Promise<void> {
    return this.reaction("addReaction", "reaction_added", messageId, emoji);
  }

  /** Removes this user's reaction from a message (`reaction_removed`). */
  removeReaction(messageId: string, emoji: string): Promise<void> {
    return this.reaction("removeReaction", "reaction_removed", messageId, emoji);
  }

  private reaction(op: string, type: string, messageId: string, emoji: string): Promise<void> {
    if (typeof messageId !== "string" || messageId === "" || typeof emoji !== "string" || emoji === "") {
      return this.guarded(() => Promise.reject(new ChatRequestError(transportError("invalid_field", `${op}: \`messageId\` and \`emoji\` must be non-empty strings`, false))));
    }
    return this.chatEvent(op, type, { messageId, emoji });
  }

  /** Answers `show_csat_survey` (`csat_submitted`): `rating` an integer 1–5, `comment` optional. */
  submitCsat(rating: number, comment?: string): Promise<void> {
    if (!Number.isInteger(rating) || rating < 1 || rating > 5) {
      return this.guarded(() => Promise.reject(new ChatRequestError(transportError("invalid_field", "submitCsat: `rating` must be an integer from 1 to 5", false))));
    }
    return this.chatEvent("submitCsat", "csat_submitted", { rating, ...(comment !== undefined ? { comment } : {}) });
  }

  /** POST /end (`data.reason`). */
  endChat(reason?: string): Promise<void> {
    return this.guarded(async () => {
      const chatKey = this.needChatKey("endChat");
      await this.post("end", { ...this.ids(), chatKey, ...(reason !== undefined ? { data: { reason } } : {}) });
      const chat = this.state.currentChat;
      if (chat && chat.key === chatKey) this.setState({ currentChat: { ...chat, status: "closed" } });
    });
  }

  private typing(typing: boolean): void {
    const chatKey = this.state.chatKey;
    if (!chatKey) return;
    this.post("typing", { ...this.ids(), chatKey, typing }).catch((e: unknown) => {
      this.patchMetrics({ lastError: asTransportError(e) });
      this.log("typing failed", e);
    });
  }

  /** Fire-and-forget POST /typing `{typing: true}` (no-op without a chat). */
  startTyping(): void {
    this.typing(true);
  }

  /** Fire-and-forget POST /typing `{typing: false}`. */
  stopTyping(): void {
    this.typing(false);
  }
}

/**
 * The chat's handoff flags after a handoff event: the event's own `data` flags when it carries
 * them (the server's word), else what the event means (CONTRACT §7.2).
 */
function handoffState(type: string, data: Record<string, unknown>, chat: Chat): Partial<Chat> {
  const flag = (name: string, otherwise: boolean): boolean => (typeof data[name] === "boolean" ? (data[name] as boolean) : otherwise);
  const meaning =
    type === "human_agent_requested"
      ? { isWaitingForAgent: true, humanAgentEngaged: chat.humanAgentEngaged, aiEngaged: chat.aiEngaged }
      : type === "human_agent_joined"
        ? { isWaitingForAgent: false, humanAgentEngaged: true, aiEngaged: false }
        : type === "human_agent_left"
          ? { isWaitingForAgent: chat.isWaitingForAgent, humanAgentEngaged: false, aiEngaged: true }
          : { isWaitingForAgent: chat.isWaitingForAgent, humanAgentEngaged: chat.humanAgentEngaged, aiEngaged: chat.aiEngaged };
  const isWaitingForAgent = flag("isWaitingForAgent", meaning.isWaitingForAgent);
  const waitingSince = typeof data["waitingSince"] === "number" ? data["waitingSince"] : undefined;
  return {
    isWaitingForAgent,
    humanAgentEngaged: flag("humanAgentEngaged", meaning.humanAgentEngaged),
    aiEngaged: flag("aiEngaged", meaning.aiEngaged),
    ...(waitingSince !== undefined ? { waitingSince } : {}),
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
