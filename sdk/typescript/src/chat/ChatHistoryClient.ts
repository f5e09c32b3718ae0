// Seed 002's history API (`useChatHistory`) without a framework. Every call resolves — to its
// default on failure — and sets `error`; none throws.
import { ChatRequestError, asTransportError, joinUrl, requestJson, resolveToken } from "./http.js";
import { transportError } from "./transports.js";
import type { ChatHistoryResult, ChatSummary, TransportError, Unsubscribe, UseChatHistoryOptions } from "./types.js";

export interface ChatHistoryState {
  /** True while at least one call is running. */
  loading: boolean;
  /** The last failure (`"code: message"`), cleared when a call starts. */
  error: string | null;
}

const HISTORY_PATH = "/api/v1/chats";

export class ChatHistoryClient {
  private readonly options: UseChatHistoryOptions;
  private state: ChatHistoryState = { loading: false, error: null };
  private running = 0;
  private readonly listeners = new Set<(s: ChatHistoryState) => void>();
  /** The last failure in full (code, status), for callers that want more than `error`. */
  lastError: TransportError | null = null;

  constructor(options: UseChatHistoryOptions) {
    if (typeof options?.baseUrl !== "string" || options.baseUrl === "") throw new TypeError("ChatHistoryClient: `baseUrl` must be a non-empty string (the server root)");
    if (typeof options.orgId !== "string" || options.orgId === "") throw new TypeError("ChatHistoryClient: `orgId` must be a non-empty string");
    this.options = options;
    this.getChatHistory = this.getChatHistory.bind(this);
    this.getChat = this.getChat.bind(this);
    this.updateChat = this.updateChat.bind(this);
    this.deleteChat = this.deleteChat.bind(this);
    this.getChatsByUser = this.getChatsByUser.bind(this);
    this.subscribe = this.subscribe.bind(this);
    this.getState = this.getState.bind(this);
  }

  getState(): ChatHistoryState {
    return this.state;
  }

  subscribe(listener: (s: ChatHistoryState) => void): Unsubscribe {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  private set(patch: Partial<ChatHistoryState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of [...this.listeners]) l(this.state);
  }

  private url(path: string, query: Record<string, string> = {}): string {
    const u = new URL(joinUrl(this.options.baseUrl, HISTORY_PATH + path));
    u.searchParams.set("orgId", this.options.orgId);
    for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
    return u.toString();
  }

  private async run<T>(fallback: T, fn: (token: string | undefined) => Promise<T>): Promise<T> {
    this.running += 1;
    this.set({ loading: true, error: null });
    try {
      const token = await resolveToken(this.options.getToken, this.options.token);
      const value = await fn(token);
      this.running -= 1;
      this.set({ loading: this.running > 0 });
      return value;
    } catch (e) {
      const err = asTransportError(e);
      this.lastError = err;
      this.running -= 1;
      this.set({ loading: this.running > 0, error: `${err.code}: ${err.message}` });
      return fallback;
    }
  }

  private static bad(what: string): Error {
    return new ChatRequestError(transportError("bad_response", what, false));
  }

  private static invalid(what: string): Error {
    return new ChatRequestError(transportError("invalid_field", what, false));
  }

  /**
   * POST /api/v1/chats `{limit, offset, waiting?}`; `{chats: [], total: 0, hasMore: false}` on
   * failure. `waiting: true` lists only the chats waiting for a human agent, oldest first.
   */
  getChatHistory(params: { limit?: number; offset?: number; skipCache?: boolean; waiting?: boolean } = {}): Promise<ChatHistoryResult> {
    return this.run<ChatHistoryResult>({ chats: [], total: 0, hasMore: false }, async (token) => {
      const body: Record<string, unknown> = { orgId: this.options.orgId };
      if (params.limit !== undefined) body["limit"] = params.limit;
      if (params.offset !== undefined) body["offset"] = params.offset;
      if (params.waiting !== undefined) body["waiting"] = params.waiting;
      const res = (await requestJson("POST", this.url(""), body, token)) as Partial<ChatHistoryResult>;
      if (!Array.isArray(res?.chats)) throw ChatHistoryClient.bad("the history list has no `chats`");
      return { chats: res.chats, total: Number(res.total ?? res.chats.length), hasMore: Boolean(res.hasMore) };
    });
  }

  /** GET /api/v1/chats/{chatKey}; `null` on failure (including not found). */
  getChat(chatKey: string): Promise<ChatSummary | null> {
    return this.run<ChatSummary | null>(null, async (token) => {
      if (typeof chatKey !== "string" || chatKey === "") throw ChatHistoryClient.invalid("getChat: `chatKey` must be a non-empty string");
      const res = (await requestJson("GET", this.url(`/${encodeURIComponent(chatKey)}`), undefined, token)) as ChatSummary;
      if (typeof res?.chatKey !== "string") throw ChatHistoryClient.bad("the chat summary has no `chatKey`");
      return res;
    });
  }

  /** PATCH /api/v1/chats/{chatKey} `{title?, pinned?}`; `true` on success, `false` on failure. */
  updateChat(chatKey: string, updates: { title?: string; pinned?: boolean }): Promise<boolean> {
    return this.run(false, async (token) => {
      if (typeof chatKey !== "string" || chatKey === "") throw ChatHistoryClient.invalid("updateChat: `chatKey` must be a non-empty string");
      if (typeof updates !== "object" || updates === null) throw ChatHistoryClient.invalid("updateChat: `updates` must be an object");
      await requestJson("PATCH", this.url(`/${encodeURIComponent(chatKey)}`), { ...updates, orgId: this.options.orgId }, token);
      return true;
    });
  }

  /** DELETE /api/v1/chats/{chatKey}; `true` on success, `false` on failure. */
  deleteChat(chatKey: string): Promise<boolean> {
    return this.run(false, async (token) => {
      if (typeof chatKey !== "string" || chatKey === "") throw ChatHistoryClient.invalid("deleteChat: `chatKey` must be a non-empty string");
      await requestJson("DELETE", this.url(`/${encodeURIComponent(chatKey)}`), undefined, token);
      return true;
    });
  }

  /** GET /api/v1/chats/user/{userId}; `[]` on failure. */
  getChatsByUser(userEmail: string): Promise<ChatSummary[]> {
    return this.run<ChatSummary[]>([], async (token) => {
      if (typeof userEmail !== "string" || userEmail === "") throw ChatHistoryClient.invalid("getChatsByUser: the user id must be a non-empty string");
      const res = (await requestJson("GET", this.url(`/user/${encodeURIComponent(userEmail)}`), undefined, token)) as { chats?: ChatSummary[] };
      if (!Array.isArray(res?.chats)) throw ChatHistoryClient.bad("the user's chat list has no `chats`");
      return res.chats;
    });
  }
}
