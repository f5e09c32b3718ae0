// Seed 004's WebSocketService: one shared socket.io-client connection (handshake
// `profile=flat`) for the whole app, with rooms (conversations), flat `message` events,
// reconnection with exponential backoff that rejoins every conversation and recovers missed
// events (`last_seq` / `epoch`), and the REST lists its React Query hooks read.
import { io, type Socket } from "socket.io-client";
import { newMessageId } from "./chat/ChatClient.js";
import { NatterError, SdkErrorCode, checkAck } from "./errors.js";
import type { HistoryMessage } from "./generated/protocol.js";

/** Seed 004's configuration. */
export interface WebSocketConfig {
  /** The server URL; default `window.location.origin` in a browser. */
  url?: string;
  /** The hooks connect on mount unless this is false; default true. */
  autoConnect?: boolean;
  /** Reconnect after a drop; default true. */
  reconnection?: boolean;
  /** The first reconnection delay, ms (doubles each attempt, with jitter, up to 30 s); default 1000. */
  reconnectionDelay?: number;
  /** Attempts before giving up; default `Infinity`. */
  reconnectionAttempts?: number;
  /** Connection (and ack) timeout, ms; default 20 000. */
  timeout?: number;
  /** Log to the console; default false. */
  enableLogging?: boolean;
  auth?: {
    token?: string;
    userId?: string;
  };
}

export type WebSocketMessageType = "message_received" | "typing" | "token" | "message_complete" | "error" | "chunk" | "system";

/** Seed 004's message: every server event arrives as one of these. */
export interface WebSocketMessage {
  type: WebSocketMessageType;
  content?: string;
  conversation_id?: string;
  timestamp?: string;
  metadata?: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/**
 * What `on()` takes: the message types, and the connection's own events. `connect`,
 * `disconnect`, `reconnect` and `joined` are delivered as `{type: "system", content: <event>,
 * metadata}`; connection failures come to `error` as `{type: "error", content, metadata: {code}}`.
 */
export type WebSocketEventType = WebSocketMessageType | "connect" | "disconnect" | "reconnect" | "joined";

export type WebSocketHandler = (message: WebSocketMessage) => void;

/** One row of `fetchConversationMessages` (`useConversationMessages`). */
export interface ConversationMessage {
  id: string;
  /** `user`, `assistant`, or another seed-002 role (`humanAgent`, `system`, …). */
  role: string;
  content: string;
  /** ISO 8601. */
  createdAt: string;
}

/** One row of `fetchConversations` (`useConversations`). */
export interface Conversation {
  id: string;
  title: string;
  /** ISO 8601. */
  lastUpdated: string;
  status: string;
}

interface ConversationState {
  refs: number;
  joined: boolean;
  epoch: string | undefined;
  lastSeq: number;
  /** messageId → next token index expected. */
  next: Map<string, number>;
  /** messageIds whose turn ended (late tokens are dropped). */
  done: Set<string>;
  waiters: Array<{ resolve: () => void; reject: (e: Error) => void }>;
}

const DEFAULTS = {
  autoConnect: true,
  reconnection: true,
  reconnectionDelay: 1000,
  reconnectionAttempts: Infinity,
  timeout: 20_000,
  enableLogging: false,
};

let pendingConfig: WebSocketConfig = {};

/** Sets the configuration the service (and so the hooks) use; call it before first use. */
export function configureWebSocket(config: WebSocketConfig): void {
  WebSocketService.configure(config);
}

function iso(ms: number | undefined): string {
  return new Date(typeof ms === "number" && Number.isFinite(ms) ? ms : Date.now()).toISOString();
}

export class WebSocketService {
  private static instance: WebSocketService | undefined;

  /** The one service; `config` (if given) is merged into its configuration. */
  static getInstance(config?: WebSocketConfig): WebSocketService {
    if (!WebSocketService.instance) WebSocketService.instance = new WebSocketService({ ...pendingConfig, ...config });
    else if (config) WebSocketService.instance.configure(config);
    return WebSocketService.instance;
  }

  /** `configureWebSocket`. */
  static configure(config: WebSocketConfig): void {
    validate(config);
    pendingConfig = { ...pendingConfig, ...config };
    WebSocketService.instance?.configure(config);
  }

  /** Disconnects and forgets the singleton and the configuration (tests, hot reload). */
  static resetInstance(): void {
    WebSocketService.instance?.disconnect();
    WebSocketService.instance = undefined;
    pendingConfig = {};
  }

  private config: WebSocketConfig;
  private socket: Socket | undefined;
  /** The settings the socket was made with: a change of url or reconnection makes a new one. */
  private socketKey = "";
  private connecting: Promise<void> | undefined;
  private connectedOnce = false;
  private readonly conversations = new Map<string, ConversationState>();
  private readonly handlers = new Map<string, Set<WebSocketHandler>>();
  private readonly changeListeners = new Set<(conversationId: string) => void>();
  private serverDropTimer: ReturnType<typeof setTimeout> | undefined;

  private constructor(config: WebSocketConfig) {
    validate(config);
    this.config = config;
  }

  /**
   * Merges `config` in. `url` and the reconnection settings apply from the next `connect()`;
   * `auth` is read on every (re)connect, and a new `auth.token` is also sent at once over a
   * live connection (`auth:refresh`), so a rolling token keeps the socket.
   */
  configure(config: WebSocketConfig): void {
    validate(config);
    const before = this.config.auth?.token;
    this.config = { ...this.config, ...config, ...(config.auth ? { auth: { ...this.config.auth, ...config.auth } } : {}) };
    const token = this.config.auth?.token;
    if (token && token !== before && this.socket?.connected) {
      this.socket
        .timeout(this.getConfig().timeout)
        .emitWithAck("auth:refresh", { token })
        .then((ack: unknown) => checkAck("auth:refresh", ack))
        .catch((e: unknown) => {
          const err = e instanceof NatterError ? e : new NatterError(SdkErrorCode.AckTimeout, (e as Error).message);
          this.log("auth:refresh failed", err.code, err.message);
          this.emitLocal("error", { type: "error", content: err.message, metadata: { code: err.code, event: "auth:refresh" } });
        });
    }
  }

  getConfig(): Readonly<WebSocketConfig & typeof DEFAULTS> {
    return { ...DEFAULTS, ...this.config };
  }

  private log(...args: unknown[]): void {
    if (this.config.enableLogging) console.log("[WebSocketService]", ...args);
  }

  private baseUrl(): string {
    const url = this.config.url ?? (typeof window !== "undefined" && window.location ? window.location.origin : undefined);
    if (!url) throw new NatterError("invalid_config", "WebSocketService: no `url` configured (configureWebSocket({url}))");
    return url.replace(/\/+$/, "");
  }

  // ---- connection ----

  isConnected(): boolean {
    return this.socket?.connected ?? false;
  }

  /** True when the conversation is joined on the current connection. */
  isJoined(conversationId: string): boolean {
    return this.isConnected() && (this.conversations.get(String(conversationId))?.joined ?? false);
  }

  /**
   * Connects (no-op when connected; the same promise while connecting). Rejects when the
   * server refuses the handshake, or reconnection is off or exhausted.
   */
  connect(): Promise<void> {
    if (this.socket?.connected) return Promise.resolve();
    if (this.connecting) return this.connecting;
    const cfg = this.getConfig();
    const key = JSON.stringify([this.baseUrl(), cfg.reconnection, cfg.reconnectionDelay, cfg.reconnectionAttempts, cfg.timeout]);
    if (!this.socket || key !== this.socketKey) {
      this.socket?.removeAllListeners();
      this.socket?.io.removeAllListeners();
      this.socket?.disconnect();
      this.socket = this.makeSocket();
      this.socketKey = key;
    }
    const socket = this.socket;
    this.connecting = new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        socket.off("connect", onConnect);
        socket.off("connect_error", onError);
        socket.io.off("reconnect_failed", onFailed);
        this.connecting = undefined;
      };
      const onConnect = () => {
        cleanup();
        resolve();
      };
      const onError = (err: Error) => {
        // A refusal by the server (bad token, bad handshake) is final; network errors retry.
        if (!socket.active || !this.getConfig().reconnection) {
          cleanup();
          reject(new NatterError("connect_error", err.message));
        }
      };
      const onFailed = () => {
        cleanup();
        reject(new NatterError("connect_error", "gave up reconnecting"));
      };
      socket.on("connect", onConnect);
      socket.on("connect_error", onError);
      socket.io.on("reconnect_failed", onFailed);
    });
    socket.connect();
    return this.connecting;
  }

  /** Closes the connection and stops reconnecting; joined conversations are kept for the next `connect()`. */
  disconnect(): void {
    if (this.serverDropTimer !== undefined) clearTimeout(this.serverDropTimer);
    this.serverDropTimer = undefined;
    this.socket?.disconnect();
    for (const c of this.conversations.values()) {
      c.joined = false;
      for (const w of c.waiters.splice(0)) w.reject(new NatterError("disconnected", "disconnected before the conversation was joined"));
    }
  }

  private makeSocket(): Socket {
    const cfg = this.getConfig();
    const socket = io(this.baseUrl(), {
      forceNew: true,
      autoConnect: false,
      query: { profile: "flat" },
      // A function: read on every (re)connect, so a token set by configureWebSocket is used.
      auth: (cb: (data: object) => void) => {
        const a = this.config.auth ?? {};
        cb({ ...(a.token ? { token: a.token } : {}), ...(a.userId ? { userId: a.userId } : {}) });
      },
      reconnection: cfg.reconnection,
      reconnectionDelay: cfg.reconnectionDelay,
      reconnectionDelayMax: Math.max(30_000, cfg.reconnectionDelay),
      reconnectionAttempts: cfg.reconnectionAttempts,
      randomizationFactor: 0.5,
      timeout: cfg.timeout,
    });
    socket.on("connect", () => {
      const reconnected = this.connectedOnce;
      this.connectedOnce = true;
      this.log(reconnected ? "reconnected" : "connected", socket.id);
      this.emitLocal(reconnected ? "reconnect" : "connect", { type: "system", content: reconnected ? "reconnect" : "connect", metadata: { socketId: socket.id } });
      if (reconnected) this.emitLocal("connect", { type: "system", content: "connect", metadata: { socketId: socket.id, reconnected: true } });
      for (const id of this.conversations.keys()) void this.join(id);
    });
    socket.on("disconnect", (reason: string) => {
      this.log("disconnected", reason);
      for (const c of this.conversations.values()) c.joined = false;
      this.emitLocal("disconnect", { type: "system", content: "disconnect", metadata: { reason } });
      // The server closed us (e.g. slow_consumer, restart): socket.io-client does not retry
      // that by itself, so reconnect here (a heartbeat failure is retried by the client).
      if (reason === "io server disconnect" && this.getConfig().reconnection) {
        this.serverDropTimer = setTimeout(() => {
          this.serverDropTimer = undefined;
          if (!socket.connected) socket.connect();
        }, this.getConfig().reconnectionDelay);
      }
    });
    socket.on("connect_error", (err: Error) => {
      this.log("connect_error", err.message);
      this.emitLocal("error", { type: "error", content: err.message, metadata: { code: "connect_error" } });
    });
    socket.on("message", (m: unknown) => this.receive(m));
    return socket;
  }

  // ---- conversations ----

  /**
   * Joins a conversation (now if connected, else on connect) and rejoins it after every
   * reconnect. Joins are counted: it is left when `leaveConversation` was called as often.
   * Resolves once joined; rejects if the server refuses it.
   */
  joinConversation(conversationId: string): Promise<void> {
    const id = checkId(conversationId);
    let c = this.conversations.get(id);
    if (c) c.refs += 1;
    else {
      c = { refs: 1, joined: false, epoch: undefined, lastSeq: 0, next: new Map(), done: new Set(), waiters: [] };
      this.conversations.set(id, c);
      if (this.socket?.connected) void this.join(id);
    }
    return this.whenJoined(id);
  }

  leaveConversation(conversationId: string): void {
    const id = checkId(conversationId);
    const c = this.conversations.get(id);
    if (!c) return;
    c.refs -= 1;
    if (c.refs > 0) return;
    this.conversations.delete(id);
    for (const w of c.waiters.splice(0)) w.reject(new NatterError("left", `left ${id} before it was joined`));
    if (this.socket?.connected) this.socket.emit("leave", { conversation_id: id });
  }

  private whenJoined(id: string): Promise<void> {
    const c = this.conversations.get(id);
    if (!c) return Promise.reject(new NatterError("not_joined", `not in conversation ${id}: call joinConversation first`));
    if (c.joined && this.isConnected()) return Promise.resolve();
    return new Promise((resolve, reject) => c.waiters.push({ resolve, reject }));
  }

  private async join(id: string): Promise<void> {
    const socket = this.socket;
    const c = this.conversations.get(id);
    if (!socket || !c) return;
    const userId = this.config.auth?.userId;
    const payload = {
      conversation_id: id,
      ...(c.epoch !== undefined ? { last_seq: c.lastSeq, epoch: c.epoch } : {}),
      ...(userId ? { user_id: userId } : {}),
    };
    let ack: { ok: true; seq: number; epoch: string; recovered: boolean; messages: HistoryMessage[] };
    try {
      ack = checkAck("join", await socket.timeout(this.getConfig().timeout).emitWithAck("join", payload));
    } catch (e) {
      if (this.conversations.get(id) !== c) return;
      const err = e instanceof NatterError ? e : new NatterError(SdkErrorCode.AckTimeout, `join ${id}: ${(e as Error).message}`);
      this.log("join failed", id, err.code, err.message);
      for (const w of c.waiters.splice(0)) w.reject(err);
      this.emitLocal("error", { type: "error", content: err.message, conversation_id: id, metadata: { code: err.code, event: "join" } });
      return;
    }
    if (this.conversations.get(id) !== c || socket !== this.socket || !socket.connected) return;
    const recovered = c.epoch !== undefined && ack.recovered === true;
    c.epoch = ack.epoch;
    if (recovered) c.lastSeq = Math.max(c.lastSeq, ack.seq);
    else {
      c.lastSeq = ack.seq;
      c.next.clear();
    }
    c.joined = true;
    this.log("joined", id, { seq: ack.seq, recovered });
    const messages = (ack.messages ?? []).map(historyToFlat);
    for (const m of messages) if (m.type === "message_complete") c.done.add(String(m.metadata?.["messageId"]));
    this.emitLocal("joined", {
      type: "system",
      content: "joined",
      conversation_id: id,
      metadata: { seq: ack.seq, epoch: ack.epoch, recovered, messages },
    });
    if (!recovered) this.changed(id);
    for (const w of c.waiters.splice(0)) w.resolve();
  }

  // ---- incoming ----

  private receive(raw: unknown): void {
    if (typeof raw !== "object" || raw === null || typeof (raw as WebSocketMessage).type !== "string") {
      this.log("ignoring a malformed message", raw);
      return;
    }
    const m = raw as WebSocketMessage;
    const id = m.conversation_id !== undefined ? String(m.conversation_id) : undefined;
    const c = id !== undefined ? this.conversations.get(id) : undefined;
    const meta = m.metadata ?? {};
    if (c) {
      const seq = meta["seq"];
      if (typeof seq === "number") {
        if (seq <= c.lastSeq) return; // already seen (replay overlap)
        c.lastSeq = seq;
      }
      if (m.type === "token" || m.type === "chunk") {
        const messageId = String(meta["messageId"]);
        const index = Number(meta["index"]);
        const last = typeof meta["through"] === "number" ? meta["through"] : index;
        const next = c.next.get(messageId) ?? 0;
        if (c.done.has(messageId) || last < next) return;
        if (index !== next) {
          this.log(`token gap in ${messageId}: expected ${next}, got ${index}`);
          return;
        }
        c.next.set(messageId, last + 1);
      } else if (m.type === "message_complete") {
        const messageId = String(meta["messageId"]);
        c.done.add(messageId);
        c.next.delete(messageId);
      }
    }
    this.emitLocal(m.type, m);
    if (id !== undefined && (m.type === "message_received" || m.type === "message_complete" || (m.type === "error" && typeof meta["seq"] === "number"))) {
      this.changed(id);
    }
  }

  private emitLocal(type: string, m: WebSocketMessage): void {
    for (const h of [...(this.handlers.get(type) ?? [])]) {
      try {
        h(m);
      } catch (e) {
        this.log(`a ${type} handler threw`, e);
      }
    }
  }

  private changed(conversationId: string): void {
    for (const l of [...this.changeListeners]) {
      try {
        l(conversationId);
      } catch (e) {
        this.log("a change listener threw", e);
      }
    }
  }

  /** Subscribes to a message type or connection event; returns the unsubscribe. */
  on(type: WebSocketEventType, handler: WebSocketHandler): () => void {
    if (typeof handler !== "function") throw new TypeError("WebSocketService.on: handler must be a function");
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(handler);
    return () => void set.delete(handler);
  }

  /**
   * Called with a conversation id whenever its stored history changed (a message or reply
   * arrived or was sent, or a rejoin reloaded it): what the React Query hooks invalidate on.
   */
  onConversationChange(listener: (conversationId: string) => void): () => void {
    this.changeListeners.add(listener);
    return () => void this.changeListeners.delete(listener);
  }

  // ---- outgoing ----

  /**
   * Sends a user message to a joined conversation (waits for the join while (re)connecting).
   * `metadata.message_id` is used as the message id when given (a resend is then stored once),
   * else one is made. Resolves with the id and the message's `seq`. Other members get
   * `message_received`; this app's own `on("message_received")` handlers get it too, with
   * `metadata.local: true` (the server does not echo a message to the socket that sent it).
   */
  async sendMessage(
    conversationId: string,
    content: string,
    metadata?: Record<string, unknown>,
  ): Promise<{ messageId: string; seq: number }> {
    const id = checkId(conversationId);
    if (typeof content !== "string") throw new NatterError("invalid_field", "sendMessage: `content` must be a string");
    if (metadata !== undefined && (typeof metadata !== "object" || metadata === null || Array.isArray(metadata))) {
      throw new NatterError("invalid_field", "sendMessage: `metadata` must be an object");
    }
    const given = metadata?.["message_id"] ?? metadata?.["messageId"];
    const messageId = typeof given === "string" && given ? given : newMessageId();
    const timeout = this.getConfig().timeout;
    await withTimeout(this.whenJoined(id), timeout, `sendMessage: ${id} was not joined within ${timeout} ms`);
    const socket = this.socket!;
    const ack = checkAck<{ messageId: string; seq: number }>(
      "message",
      await socket
        .timeout(timeout)
        .emitWithAck("message", { type: "message", content, conversation_id: id, metadata: { ...metadata, message_id: messageId } })
        .catch((e: Error) => {
          throw new NatterError(SdkErrorCode.AckTimeout, `sendMessage: no ack in ${timeout} ms (${e.message})`);
        }),
    );
    this.emitLocal("message_received", {
      type: "message_received",
      content,
      conversation_id: id,
      timestamp: new Date().toISOString(),
      metadata: { messageId: ack.messageId, userId: this.config.auth?.userId, role: "user", seq: ack.seq, local: true },
    });
    this.changed(id);
    return { messageId: ack.messageId, seq: ack.seq };
  }

  /** Tells the conversation this user is (or stopped) typing; dropped when not connected. */
  sendTyping(conversationId: string, isTyping: boolean): void {
    const id = checkId(conversationId);
    if (!this.isJoined(id)) return;
    this.socket!.emit("message", { type: "typing", conversation_id: id, metadata: { typing: Boolean(isTyping) } });
  }

  // ---- REST (the React Query hooks' data) ----

  private async getJson(path: string): Promise<unknown> {
    const token = this.config.auth?.token;
    const res = await fetch(this.baseUrl() + path, { headers: { Accept: "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) } });
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (!res.ok) {
      const err = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new NatterError(err?.code ?? `http_${res.status}`, err?.message ?? `GET ${path}: HTTP ${res.status}`);
    }
    return body;
  }

  /** The chat list (newest activity first): `useConversations`'s data. */
  async fetchConversations(): Promise<Conversation[]> {
    const res = (await this.getJson("/api/v1/chats?limit=200")) as { chats?: Array<Record<string, unknown>> };
    if (!Array.isArray(res?.chats)) throw new NatterError("bad_response", "the chat list has no `chats`");
    return res.chats.map((c) => ({
      id: String(c["chatKey"]),
      title: typeof c["title"] === "string" ? c["title"] : "",
      lastUpdated: iso(c["lastUpdated"] as number),
      status: String(c["status"] ?? "active"),
    }));
  }

  /** A conversation's messages, oldest first (every page): `useConversationMessages`'s data. */
  async fetchConversationMessages(conversationId: string): Promise<ConversationMessage[]> {
    const id = checkId(conversationId);
    // A conversation being joined may not exist until the join makes it: wait for the join.
    if (this.conversations.has(id) && !this.isJoined(id)) {
      await withTimeout(this.whenJoined(id), this.getConfig().timeout, "join").catch(() => undefined);
    }
    const out: ConversationMessage[] = [];
    let after = 0;
    for (let page = 0; page < 1000; page++) {
      let raw: unknown;
      try {
        raw = await this.getJson(`/api/v1/chats/${encodeURIComponent(id)}/messages?after=${after}&limit=500`);
      } catch (e) {
        // No such conversation (yet, or not for this user): it has no messages.
        if (e instanceof NatterError && e.code === "not_found") return [];
        throw e;
      }
      const res = raw as {
        messages?: Array<Record<string, unknown>>;
        hasMore?: boolean;
        nextAfter?: number;
      };
      if (!Array.isArray(res?.messages)) throw new NatterError("bad_response", "the message page has no `messages`");
      for (const m of res.messages) {
        if (m["role"] === "tool") continue;
        out.push({
          id: String(m["id"]),
          role: m["role"] === "ai" ? "assistant" : String(m["role"]),
          content: typeof m["content"] === "string" ? m["content"] : "",
          createdAt: iso(m["createdAt"] as number),
        });
      }
      if (!res.hasMore || typeof res.nextAfter !== "number" || res.nextAfter <= after) break;
      after = res.nextAfter;
    }
    return out;
  }
}

function checkId(conversationId: unknown): string {
  if ((typeof conversationId !== "string" && typeof conversationId !== "number") || conversationId === "") {
    throw new NatterError("invalid_field", "conversationId must be a non-empty string");
  }
  return String(conversationId);
}

function validate(config: WebSocketConfig | undefined): void {
  if (config === undefined) return;
  if (typeof config !== "object" || config === null) throw new NatterError("invalid_config", "WebSocketConfig must be an object");
  if (config.url !== undefined && (typeof config.url !== "string" || !/^(https?|wss?):\/\//.test(config.url))) {
    throw new NatterError("invalid_config", `WebSocketConfig.url must be an http(s) or ws(s) URL, got ${JSON.stringify(config.url)}`);
  }
  for (const k of ["reconnectionDelay", "reconnectionAttempts", "timeout"] as const) {
    const v = config[k];
    if (v !== undefined && (typeof v !== "number" || !(v >= 0))) {
      throw new NatterError("invalid_config", `WebSocketConfig.${k} must be a non-negative number, got ${JSON.stringify(v)}`);
    }
  }
}

/** A history entry (join ack) as the flat message its live event would have been. */
function historyToFlat(h: HistoryMessage): WebSocketMessage {
  if (h.role === "assistant") {
    return {
      type: "message_complete",
      content: h.text,
      conversation_id: h.chatId,
      timestamp: h.createdAt,
      metadata: { messageId: h.messageId, requestId: h.requestId, finishReason: h.finishReason, seq: h.seq, ...(h.usage ? { usage: h.usage } : {}) },
    };
  }
  return {
    type: "message_received",
    content: h.text,
    conversation_id: h.chatId,
    timestamp: h.createdAt,
    metadata: { messageId: h.messageId, userId: h.userId, role: h.role, seq: h.seq },
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new NatterError(SdkErrorCode.NotSent, message)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
