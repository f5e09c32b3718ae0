// The `ai` package's ChatTransport over Natter's Socket.IO face (seed 003), so `useChat` /
// `Chat` can run on the same real-time connection as the rest of the app instead of HTTP.
import type { ChatRequestOptions, ChatTransport, FinishReason, UIMessage, UIMessageChunk } from "ai";
import { AIChatSocket, type AIChatSocketOptions, type AITokenUpdate, type ToolResultParams } from "./AIChatSocket.js";
import type { ChatID, ServerToClientEvents, UserID } from "./ChatEvents.js";
import { attachmentIdOf, dataUrlToBlob } from "./attachments.js";
import { NatterError } from "./errors.js";
import type { IoOptions } from "./SocketService.js";

type S2C = ServerToClientEvents;

export interface NatterChatTransportOptions {
  url: string;
  /** Who sends (dev mode; with auth on, identity comes from the token in `ioOptions.auth`). */
  userId?: UserID;
  ioOptions?: IoOptions;
  /** Merged into every payload sent (see {@link AIChatSocketOptions.meta}). */
  meta?: Record<string, unknown>;
  eventNames?: AIChatSocketOptions["eventNames"];
  discoverEvents?: boolean;
  ackTimeoutMs?: number;
  /** The server's HTTP root, where file parts are uploaded; default `url`. */
  httpUrl?: string;
  /** Called with every chat socket's server errors. */
  onServerError?: (chatId: string, error: unknown) => void;
}

type SendOptions = Parameters<ChatTransport<UIMessage>["sendMessages"]>[0];
type ReconnectOptions = { chatId: string; abortSignal?: AbortSignal } & ChatRequestOptions;

/** Natter's finish reasons (the upstream's, or `aborted`) in the SDK's set. */
function mapFinishReason(reason: unknown): FinishReason {
  switch (reason) {
    case "stop":
    case "end_turn":
    case "stop_sequence":
      return "stop";
    case "length":
    case "max_tokens":
      return "length";
    case "content_filter":
    case "content-filter":
      return "content-filter";
    case "tool_calls":
    case "tool-calls":
    case "tool_use":
      return "tool-calls";
    case "error":
      return "error";
    default:
      return "other";
  }
}

function textOf(message: UIMessage): string {
  return message.parts.map((p) => (p.type === "text" ? p.text : "")).join("");
}

/** A UUID v4. `crypto.randomUUID` exists only in secure contexts (https, localhost). */
function randomId(): string {
  const c = globalThis.crypto;
  if (typeof c.randomUUID === "function") return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function errorText(value: unknown): string {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * A `ChatTransport<UIMessage>` that talks Socket.IO to Natter: one {@link AIChatSocket} per
 * chat id, opened on first use and kept (with its recovery across reconnects) until
 * {@link close}.
 *
 * - `submit-message`: the last user message is sent as `user:message` with its `id` as the
 *   `messageId` (so a retry is stored once) and a fresh `requestId`; the stream is that turn.
 * - `regenerate-message`: the Socket.IO face has no regenerate event, so the last user
 *   message's text and parts are sent again as a **new** user message (new id); the old reply
 *   stays in the chat's history.
 * - `body` fields of the request are merged into the `user:message` payload (e.g. `tools`);
 *   `headers` do not apply to a socket and are ignored (put auth in `ioOptions.auth`).
 * - The abort signal sends `ai:abort` for the turn; the stream then ends with `abort` once
 *   the server confirms (the partial text is kept server-side).
 * - Cancelling the stream (the reader goes away) does not stop the turn.
 * - `file` parts: a `data:` URL is uploaded first and sent as `attachments: [{id}]` (the part
 *   then points at the stored copy); a stored attachment's URL is sent by its id; any other
 *   URL is refused (`invalid_field`) before anything is sent.
 * - Client-run tools follow the SDK's round trip: an `ai:tool_call` with `executor: "client"`
 *   ends the stream with `finish {finishReason: "tool-calls"}`; the app answers
 *   (`onToolCall` + `addToolOutput`) and, with `sendAutomaticallyWhen`, the SDK sends the
 *   assistant message back; each answered tool part goes to the server as `ai:tool_result`
 *   and the rest of the same turn streams on the same assistant message.
 */
export class NatterChatTransport implements ChatTransport<UIMessage> {
  /** Resuming replays the running turn from its `start` chunk. */
  readonly resumeStreamIsReplay = true;

  private readonly options: NatterChatTransportOptions;
  private readonly chats = new Map<string, AIChatSocket>();
  /** Per chat, the client-run tool calls (toolCallId) that wait for an answer. */
  private readonly waitingCalls = new Map<string, Set<string>>();

  constructor(options: NatterChatTransportOptions) {
    this.options = options;
  }

  /** The chat socket for `chatId` (created and connected on first use). */
  chat(chatId: ChatID): AIChatSocket {
    const key = String(chatId);
    let chat = this.chats.get(key);
    if (!chat) {
      const o = this.options;
      chat = new AIChatSocket({
        url: o.url,
        chatId: key,
        ...(o.userId !== undefined ? { userId: o.userId } : {}),
        ...(o.ioOptions !== undefined ? { ioOptions: o.ioOptions } : {}),
        ...(o.meta !== undefined ? { meta: o.meta } : {}),
        ...(o.eventNames !== undefined ? { eventNames: o.eventNames } : {}),
        ...(o.discoverEvents !== undefined ? { discoverEvents: o.discoverEvents } : {}),
        ...(o.ackTimeoutMs !== undefined ? { ackTimeoutMs: o.ackTimeoutMs } : {}),
        ...(o.httpUrl !== undefined ? { httpUrl: o.httpUrl } : {}),
        callbacks: { onServerError: (e) => o.onServerError?.(key, e) },
      });
      const waiting = new Set<string>();
      chat.subscribe("aiToolCall", (e) => {
        if (e.executor === "client") waiting.add(e.toolCallId);
      });
      chat.subscribe("aiToolResult", (e) => waiting.delete(e.toolCallId));
      this.waitingCalls.set(key, waiting);
      this.chats.set(key, chat);
    }
    return chat;
  }

  /** Closes every chat socket. */
  close(): void {
    for (const chat of this.chats.values()) chat.destroy();
    this.chats.clear();
    this.waitingCalls.clear();
  }

  sendMessages = async (options: SendOptions): Promise<ReadableStream<UIMessageChunk>> => {
    const { chatId, messages, trigger, abortSignal, body } = options;
    const last = messages.at(-1);
    if (trigger === "submit-message" && last?.role === "assistant") return this.answerClientTools(chatId, last);
    const lastUser = [...messages].reverse().find((m) => m.role === "user");
    if (!lastUser) throw new NatterError("missing_field", "sendMessages: there is no user message to send");
    const chat = this.chat(chatId);
    // Files first (uploads can fail; nothing has been sent then).
    const { parts, attachments } = await this.fileParts(chat, chatId, lastUser);
    const requestId = randomId();
    // Listen before sending, so no event of the turn can slip past.
    const turn = streamTurn(chat, { requestId });
    const payload = {
      ...(isRecord(body) ? body : {}),
      messageId: trigger === "regenerate-message" ? randomId() : lastUser.id,
      ...(this.options.userId !== undefined ? { userId: this.options.userId } : {}),
      text: textOf(lastUser),
      parts: parts as Array<{ type: string }>,
      ...(attachments.length > 0 ? { attachments } : {}),
      requestId,
    };
    try {
      const ack = await chat.sendMessage(payload);
      if (ack.duplicate) {
        throw new NatterError(
          "duplicate",
          `message ${lastUser.id} was already sent to chat ${chatId}; its reply is in the chat's history`,
        );
      }
    } catch (e) {
      turn.dispose();
      throw e;
    }
    if (abortSignal) {
      const onAbort = () => void chat.abort("stopped by the client", undefined, requestId).catch(() => undefined);
      if (abortSignal.aborted) onAbort();
      else abortSignal.addEventListener("abort", onAbort, { once: true });
      turn.onEnd(() => abortSignal.removeEventListener("abort", onAbort));
    }
    return turn.stream;
  };

  /**
   * The message's `file` parts as the Socket.IO face takes them (CONTRACT §7.6): a `data:` URL
   * is uploaded first (`POST /api/v1/attachments`) and the part then points at the stored copy;
   * the URL of an attachment already stored on this server is used as it is. Both go in
   * `attachments: [{id}]`. Any other URL is refused here (`invalid_field`), as the server would:
   * it fetches nothing from elsewhere.
   */
  private async fileParts(
    chat: AIChatSocket,
    chatId: string,
    message: UIMessage,
  ): Promise<{ parts: unknown[]; attachments: Array<{ id: string }> }> {
    const attachments: Array<{ id: string }> = [];
    const server = this.options.httpUrl ?? this.options.url;
    const parts: unknown[] = [];
    for (const part of message.parts) {
      if (part.type !== "file") {
        parts.push(part);
        continue;
      }
      const stored = attachmentIdOf(part.url, server);
      if (stored !== undefined) {
        if (!attachments.some((a) => a.id === stored)) attachments.push({ id: stored });
        parts.push(part);
        continue;
      }
      const blob = part.url.startsWith("data:") ? dataUrlToBlob(part.url) : undefined;
      if (!blob) {
        const shown = part.url.length > 80 ? `${part.url.slice(0, 80)}…` : part.url;
        throw new NatterError(
          "invalid_field",
          `file part ${part.filename ?? shown}: only data: URLs and attachments stored on this server are accepted (got ${shown})`,
        );
      }
      const uploaded = await chat.uploadAttachment(chatId, blob, part.filename !== undefined ? { name: part.filename } : {});
      if (!attachments.some((a) => a.id === uploaded.id)) attachments.push({ id: uploaded.id });
      // The stored copy instead of the bytes: the message stays small on the socket.
      parts.push({ ...part, url: uploaded.url, mediaType: uploaded.mimeType });
    }
    return { parts, attachments };
  }

  /**
   * The SDK's client-tool round trip: the assistant message comes back with its tool parts
   * answered (`output-available` / `output-error`); each answer goes to the server as
   * `ai:tool_result`, and the rest of that same turn is streamed (same `messageId`, no text
   * the client already has).
   */
  private async answerClientTools(chatId: string, assistant: UIMessage): Promise<ReadableStream<UIMessageChunk>> {
    const chat = this.chat(chatId);
    const waiting = this.waitingCalls.get(chatId) ?? new Set<string>();
    // Only calls that wait for this client: server-run tools' parts carry outputs too.
    const answers = assistant.parts.flatMap((p): ToolResultParams[] => {
      if (!(p.type.startsWith("tool-") || p.type === "dynamic-tool") || !("toolCallId" in p) || !("state" in p)) return [];
      if (!waiting.has(p.toolCallId)) return [];
      if (p.state === "output-available") return [{ toolCallId: p.toolCallId, result: p.output }];
      if (p.state === "output-error") return [{ toolCallId: p.toolCallId, error: p.errorText }];
      return [];
    });
    if (answers.length === 0) {
      throw new NatterError(
        "no_active_turn",
        `sendMessages: no tool call of message ${assistant.id} waits for an answer (answered, timed out, or the turn ended)`,
      );
    }
    const turn = streamTurn(chat, { messageId: assistant.id });
    turn.continueFrom(assistant.id);
    try {
      for (const answer of answers) await chat.sendToolResult(answer);
    } catch (e) {
      turn.dispose();
      throw e;
    }
    return turn.stream;
  }

  /**
   * Rejoins the chat and, if a turn is pending (running, or queued behind one), returns it as
   * a stream from its `start` chunk; `null` when nothing is pending.
   *
   * Pending is read from the log, not guessed from timing: the latest user messages of the
   * join ack whose turn (`requestId`) has no `ai:message` there are candidates; a second join
   * replays the log from the oldest candidate on, which shows any `ai:error` that ended one.
   * The oldest candidate left is the running turn (turns run in arrival order).
   */
  reconnectToStream = async (options: ReconnectOptions): Promise<ReadableStream<UIMessageChunk> | null> => {
    const chat = this.chat(options.chatId);
    const ack = await chat.rejoin();
    const answered = new Set<string>();
    for (const m of ack.messages) {
      if (m.role === "assistant" && typeof m.requestId === "string") answered.add(m.requestId);
    }
    const candidates: Array<{ requestId: string; seq: number }> = [];
    for (const m of ack.messages) {
      const requestId = m.role === "user" ? m.requestId : undefined;
      if (typeof requestId === "string" && !answered.has(requestId) && !chat.hasTurnEnded(requestId)) {
        candidates.push({ requestId, seq: m.seq });
      }
    }
    const oldest = candidates[0];
    if (!oldest) return null;
    const turns = candidates.map((c) => ({ c, turn: streamTurn(chat, { requestId: c.requestId }) }));
    await chat.rejoin({ fromSeq: oldest.seq });
    let chosen: ReturnType<typeof streamTurn> | undefined;
    for (const { c, turn } of turns) {
      if (!chosen && !chat.hasTurnEnded(c.requestId)) chosen = turn;
      else turn.dispose();
    }
    if (!chosen) return null;
    chosen.catchUp();
    if (options.abortSignal) {
      const stream = chosen;
      options.abortSignal.addEventListener("abort", () => stream.dispose(), { once: true });
    }
    return chosen.stream;
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The chunks of one turn (by `requestId`), as the server's own AI SDK face sends them:
 * `start {messageId}` · `start-step` · `text-start` / `text-delta`* / `text-end` · tool chunks
 * (a step boundary before the text that follows a tool result) · `finish-step` · then
 * `finish {finishReason}`, `abort` (an aborted turn) or `error {errorText}` (a failed one).
 *
 * Text deltas come from the turn's assembled text, so a stream opened mid-turn (resume)
 * starts with everything streamed so far, and each token appears once.
 */
/** Which turn a stream follows: by the `requestId` sent, or by its assistant `messageId`. */
type TurnMatch = { requestId: string } | { messageId: string };

function streamTurn(chat: AIChatSocket, match: TurnMatch) {
  const requestId = "requestId" in match ? match.requestId : undefined;
  const ours = (e: { requestId?: string; messageId?: string }) =>
    "requestId" in match ? e.requestId === match.requestId : e.messageId === match.messageId;
  let controller!: ReadableStreamDefaultController<UIMessageChunk>;
  let messageId: string | undefined;
  let textId: string | undefined;
  let streamed = "";
  let parts = 0;
  let stepAfterTool = false;
  let closed = false;
  const endHooks: Array<() => void> = [];
  const offs: Array<() => void> = [];

  const enqueue = (chunk: UIMessageChunk) => {
    if (!closed) controller.enqueue(chunk);
  };
  const dispose = () => {
    if (closed) return;
    closed = true;
    for (const off of offs.splice(0)) off();
    for (const hook of endHooks.splice(0)) hook();
  };
  const finish = (last: UIMessageChunk[]) => {
    closeText();
    if (messageId !== undefined) enqueue({ type: "finish-step" });
    for (const c of last) enqueue(c);
    if (!closed) controller.close();
    dispose();
  };
  const start = (id: string) => {
    if (messageId !== undefined) return;
    messageId = id;
    enqueue({ type: "start", messageId: id });
    enqueue({ type: "start-step" });
  };
  const closeText = () => {
    if (textId === undefined) return;
    enqueue({ type: "text-end", id: textId });
    textId = undefined;
  };
  const appendText = (fullText: string) => {
    if (!fullText.startsWith(streamed) || fullText.length === streamed.length) return;
    if (stepAfterTool) {
      enqueue({ type: "finish-step" });
      enqueue({ type: "start-step" });
      stepAfterTool = false;
    }
    if (textId === undefined) {
      parts += 1;
      textId = `${messageId ?? requestId ?? "turn"}-text-${parts}`;
      enqueue({ type: "text-start", id: textId });
    }
    enqueue({ type: "text-delta", id: textId, delta: fullText.slice(streamed.length) });
    streamed = fullText;
  };

  offs.push(
    chat.subscribe("aiToken", (e: AITokenUpdate) => {
      if (!ours(e)) return;
      start(e.messageId);
      appendText(e.turnText);
    }),
    chat.subscribe("aiToolCall", (e: S2C["ai:tool_call"]) => {
      if (!ours(e)) return;
      start(e.messageId);
      closeText();
      stepAfterTool = false;
      enqueue({ type: "tool-input-start", toolCallId: e.toolCallId, toolName: e.name });
      enqueue({ type: "tool-input-available", toolCallId: e.toolCallId, toolName: e.name, input: e.arguments });
      // The app runs a client tool (onToolCall + addToolOutput) once this stream ends; it then
      // sends the assistant message back and sendMessages answers the call and streams the rest.
      if (e.executor === "client") finish([{ type: "finish", finishReason: "tool-calls" }]);
    }),
    chat.subscribe("aiToolResult", (e: S2C["ai:tool_result"]) => {
      if (!ours(e)) return;
      start(e.messageId);
      const error = (e as { error?: unknown }).error;
      if (error !== undefined && error !== null) {
        enqueue({ type: "tool-output-error", toolCallId: e.toolCallId, errorText: errorText(error) });
      } else {
        enqueue({ type: "tool-output-available", toolCallId: e.toolCallId, output: (e as { result?: unknown }).result });
      }
      stepAfterTool = true;
    }),
    chat.subscribe("aiMessage", (e: S2C["ai:message"]) => {
      if (!ours(e)) return;
      start(e.messageId);
      // The stored text is the truth; send whatever of it the tokens did not carry.
      appendText(e.text);
      const usage = (e as { usage?: unknown }).usage;
      const metadata = { finishReason: e.finishReason, seq: e.seq, ...(usage !== undefined && usage !== null ? { usage } : {}) };
      if (e.finishReason === "aborted") {
        finish([{ type: "message-metadata", messageMetadata: metadata }, { type: "abort", reason: "aborted" }]);
      } else {
        finish([{ type: "finish", finishReason: mapFinishReason(e.finishReason), messageMetadata: metadata }]);
      }
    }),
    chat.subscribe("aiError", (e: S2C["ai:error"]) => {
      const details = (e as { details?: unknown }).details;
      const detailId = isRecord(details) && typeof details["messageId"] === "string" ? details["messageId"] : undefined;
      if (!ours({ requestId: e.requestId, ...(detailId !== undefined ? { messageId: detailId } : {}) })) return;
      if (detailId !== undefined) start(detailId);
      finish([{ type: "error", errorText: `${e.code}: ${e.message}` }]);
    }),
  );

  const stream = new ReadableStream<UIMessageChunk>({
    start(c) {
      controller = c;
    },
    cancel() {
      dispose();
    },
  });
  return {
    stream,
    /** Sends what the turn has streamed so far (a stream opened mid-turn). */
    catchUp() {
      const running = requestId !== undefined ? chat.streamingTurn(requestId) : undefined;
      if (!running) return;
      start(running.messageId);
      appendText(running.text);
    },
    /** Continues `messageId`, whose text so far the client already has: starts, sends no text twice. */
    continueFrom(id: string) {
      streamed = chat.turnText(id);
      start(id);
    },
    dispose() {
      if (!closed) {
        dispose();
        controller.close();
      }
    },
    onEnd(hook: () => void) {
      if (closed) hook();
      else endHooks.push(hook);
    },
  };
}
