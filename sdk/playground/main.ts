// The Natter playground: one page, no framework. Join a chat under a name, talk to the
// assistant, and watch what the other members see: presence, typing, the reply streaming in,
// read receipts, stop. `?chat=…&user=…` fill the form (two tabs on one chat is the demo);
// `?token=…` is sent as the handshake's `auth.token` when the server has auth on. As a support
// customer: ask for a person (the /desk page takes the chat), end the chat, rate it. The
// paperclip uploads files (images show inline, documents as links with their processing state).
import { AIChatSocket, ChatHistoryClient, type HandoffUpdateEvent, type UploadedAttachment } from "../typescript/src/index.ts";
import { byId, describeError, detail, formatTime, newId, tokenClaim, tokenUser } from "./shared.ts";

// ---------------------------------------------------------------------------------------------
// Elements

const ui = {
  status: byId<HTMLSpanElement>("connection-status"),
  joinForm: byId<HTMLFormElement>("join-form"),
  chatInput: byId<HTMLInputElement>("chat-id"),
  userInput: byId<HTMLInputElement>("user-name"),
  joinButton: byId<HTMLButtonElement>("join-button"),
  leaveButton: byId<HTMLButtonElement>("leave-button"),
  messages: byId<HTMLOListElement>("messages"),
  typing: byId<HTMLParagraphElement>("typing-indicator"),
  composer: byId<HTMLFormElement>("composer"),
  input: byId<HTMLTextAreaElement>("message-input"),
  attachButton: byId<HTMLButtonElement>("attach-button"),
  fileInput: byId<HTMLInputElement>("file-input"),
  pending: byId<HTMLUListElement>("pending-attachments"),
  sendButton: byId<HTMLButtonElement>("send-button"),
  stopButton: byId<HTMLButtonElement>("stop-button"),
  error: byId<HTMLParagraphElement>("error"),
  presence: byId<HTMLUListElement>("presence"),
  aiStatus: byId<HTMLParagraphElement>("ai-status"),
  handoffStatus: byId<HTMLParagraphElement>("handoff-status"),
  handoffButton: byId<HTMLButtonElement>("handoff-button"),
  endButton: byId<HTMLButtonElement>("end-button"),
  csatForm: byId<HTMLFormElement>("csat-form"),
  csatComment: byId<HTMLTextAreaElement>("csat-comment"),
  csatSubmit: byId<HTMLButtonElement>("csat-submit"),
  csatThanks: byId<HTMLParagraphElement>("csat-thanks"),
};

// ---------------------------------------------------------------------------------------------
// State of the joined chat

/** Typing stops counting as typing after this long without a keystroke. */
const TYPING_IDLE_MS = 2500;
/** Forget another member's "typing" if its stop never arrives (a dropped connection). */
const TYPING_EXPIRY_MS = 10000;

type ConnectionState = "idle" | "connecting" | "connected" | "disconnected" | "error";

interface Session {
  socket: AIChatSocket;
  chatId: string;
  userId: string;
  token: string | null;
  /** The `seq` of the handoff state shown: an older one read later must not replace it. */
  handoffSeq: number;
  /** Whether a join ack has been shown: the first fills the list, later ones recover. */
  joinedOnce: boolean;
  /** Each shown message by id, for receipts, streaming and de-duplication. */
  elements: Map<string, HTMLLIElement>;
  /** requestIds of turns that started and have not ended: Stop is enabled while any runs. */
  runningTurns: Set<string>;
  /** Other members typing, each with the timer that forgets them. */
  typers: Map<string, number>;
  /** Own messages' readers, by messageId. */
  readers: Map<string, Set<string>>;
  /** Messages from others waiting for the tab to be visible before they count as read. */
  unread: string[];
  typingSent: boolean;
  typingTimer: number | undefined;
  /** Files uploaded for the next message, in order; `null` while one is still uploading. */
  pending: Array<{ key: number; file: string; uploaded: UploadedAttachment | null }>;
  /** Documents' processing state by attachment id (events may come before their message). */
  processing: Map<string, ProcessingState>;
}

/** A document's processing as `attachment:processing` reports it. */
interface ProcessingState {
  status: string;
  percent?: number | undefined;
  chars?: number | undefined;
  error?: string | undefined;
}

let session: Session | null = null;

// ---------------------------------------------------------------------------------------------
// Small helpers

function setStatus(state: ConnectionState, text: string): void {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function showError(message: string | null): void {
  ui.error.hidden = message === null;
  ui.error.textContent = message ?? "";
}

function setAiStatus(state: string, text: string): void {
  ui.aiStatus.dataset.state = state;
  ui.aiStatus.textContent = text;
}

/** Keeps the list pinned to the newest message unless the reader scrolled up. */
function withScroll(change: () => void): void {
  const list = ui.messages;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  change();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// ---------------------------------------------------------------------------------------------
// Rendering

/** `humanAgent`: a person from support (the /desk page) wrote it. */
type Role = "user" | "assistant" | "humanAgent";

/** A file on a message, as `chat:message.attachments` lists it. */
interface ShownAttachment {
  id: string;
  name: string;
  mimeType: string;
  size: number;
  url: string;
  width?: number | undefined;
  height?: number | undefined;
  /** The stored processing state of a document, when the server says it. */
  processing?: unknown;
}

interface Shown {
  messageId: string;
  role: Role;
  userId: string;
  text: string;
  createdAt?: string | undefined;
  attachments?: readonly ShownAttachment[] | undefined;
}

/** The element showing message `m`, made and appended if it is new. */
function messageElement(s: Session, m: Shown): HTMLLIElement {
  const existing = s.elements.get(m.messageId);
  if (existing) return existing;
  const li = document.createElement("li");
  li.className = "message";
  li.dataset.testid = "message";
  li.dataset.messageId = m.messageId;
  li.dataset.role = m.role;
  li.dataset.userId = m.userId;
  li.dataset.state = "done";
  if (m.role === "user" && m.userId === s.userId) li.classList.add("mine");

  const meta = document.createElement("div");
  meta.className = "meta";
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = m.role === "assistant" ? "assistant" : m.userId;
  const time = document.createElement("time");
  time.className = "time";
  time.textContent = formatTime(m.createdAt);
  meta.append(author, time);

  const text = document.createElement("div");
  text.className = "text";
  text.dataset.testid = "message-text";
  text.textContent = m.text;

  const note = document.createElement("div");
  note.className = "note";
  note.dataset.testid = "message-note";

  const receipt = document.createElement("div");
  receipt.className = "receipt";
  receipt.dataset.testid = "read-receipt";

  const files = document.createElement("div");
  files.className = "attachments";
  files.dataset.testid = "message-attachments";
  for (const a of m.attachments ?? []) files.append(attachmentElement(s, a));

  li.append(meta, text, files, note, receipt);
  s.elements.set(m.messageId, li);
  withScroll(() => ui.messages.append(li));
  return li;
}

/** `1.2 KB`: sizes as people read them. */
function humanSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/**
 * Where the page reads an attachment: the server's URL, with the identity the page has (an
 * `<img>` or a link cannot send an Authorization header): `?token=` with auth on, the name
 * with auth off.
 */
function downloadUrl(s: Session, url: string): string {
  const u = new URL(url, window.location.origin);
  if (s.token) u.searchParams.set("token", s.token);
  else u.searchParams.set("userId", s.userId);
  return u.toString();
}

/** An image inline (with its name), or a document as a link with its processing state. */
function attachmentElement(s: Session, a: ShownAttachment): HTMLElement {
  if (a.mimeType.startsWith("image/")) {
    const figure = document.createElement("figure");
    figure.className = "attachment-image";
    figure.dataset.testid = "attachment-image";
    figure.dataset.attachmentId = a.id;
    const img = document.createElement("img");
    img.src = downloadUrl(s, a.url);
    img.alt = a.name;
    img.loading = "lazy";
    if (a.width && a.height) {
      img.width = Math.min(a.width, 240);
      img.height = Math.round((img.width / a.width) * a.height);
    }
    const caption = document.createElement("figcaption");
    caption.textContent = `${a.name} (${a.width && a.height ? `${a.width}×${a.height}, ` : ""}${humanSize(a.size)})`;
    figure.append(img, caption);
    return figure;
  }
  const doc = document.createElement("div");
  doc.className = "attachment-doc";
  doc.dataset.testid = "attachment-doc";
  doc.dataset.attachmentId = a.id;
  const link = document.createElement("a");
  link.href = downloadUrl(s, a.url);
  link.textContent = a.name;
  link.rel = "noopener";
  const size = document.createElement("span");
  size.className = "size";
  size.textContent = ` (${a.mimeType}, ${humanSize(a.size)})`;
  const state = document.createElement("span");
  state.className = "processing";
  state.dataset.testid = "attachment-processing";
  doc.append(link, size, state);
  const known = s.processing.get(a.id) ?? storedProcessing(a.processing);
  if (known) renderProcessing(state, known);
  return doc;
}

/** The processing state a message's attachment carries, if the server put one there. */
function storedProcessing(value: unknown): ProcessingState | undefined {
  if (typeof value === "string") return { status: value };
  if (typeof value !== "object" || value === null) return undefined;
  const o = value as Record<string, unknown>;
  if (typeof o["status"] !== "string") return undefined;
  const err = o["error"];
  return {
    status: o["status"],
    chars: typeof o["chars"] === "number" ? o["chars"] : undefined,
    error: typeof err === "string" ? err : typeof err === "object" && err !== null ? String((err as Record<string, unknown>)["message"] ?? "") : undefined,
  };
}

function renderProcessing(el: HTMLElement, p: ProcessingState): void {
  el.dataset.state = p.status;
  el.textContent =
    p.status === "complete"
      ? `read${p.chars !== undefined ? `: ${p.chars.toLocaleString()} characters` : ""}`
      : p.status === "error"
        ? `could not be read${p.error ? `: ${p.error}` : ""}`
        : p.percent !== undefined
          ? `reading… ${p.percent}%`
          : "reading…";
}

/** A document's processing changed: remember it and show it wherever the document is. */
function onProcessing(s: Session, attachmentId: string, p: ProcessingState): void {
  s.processing.set(attachmentId, p);
  for (const el of ui.messages.querySelectorAll<HTMLElement>(".attachment-doc")) {
    if (el.dataset.attachmentId !== attachmentId) continue;
    const state = el.querySelector<HTMLElement>(".processing");
    if (state) renderProcessing(state, p);
  }
}

/** The files waiting for the next message, each with a button that drops it. */
function renderPending(s: Session): void {
  ui.pending.replaceChildren(
    ...s.pending.map((p) => {
      const li = document.createElement("li");
      li.dataset.testid = "pending-attachment";
      li.dataset.state = p.uploaded ? "ready" : "uploading";
      const label = document.createElement("span");
      label.textContent = p.uploaded ? `${p.uploaded.name} (${humanSize(p.uploaded.size)})` : `uploading ${p.file}…`;
      const drop = document.createElement("button");
      drop.type = "button";
      drop.textContent = "×";
      drop.title = `Do not send ${p.file}`;
      drop.addEventListener("click", () => {
        s.pending = s.pending.filter((x) => x.key !== p.key);
        renderPending(s);
      });
      li.append(label, drop);
      return li;
    }),
  );
}

let uploadKeys = 0;

/** Uploads the picked files for the chat; each waits in the list for the next message. */
function attachFiles(s: Session, files: readonly File[]): void {
  for (const file of files) {
    const key = ++uploadKeys;
    s.pending.push({ key, file: file.name, uploaded: null });
    renderPending(s);
    s.socket
      .uploadAttachment(undefined, file)
      .then((uploaded) => {
        const entry = s.pending.find((p) => p.key === key);
        if (!entry || session !== s) return; // dropped meanwhile, or the page left the chat
        entry.uploaded = uploaded;
        renderPending(s);
      })
      .catch((e: unknown) => {
        s.pending = s.pending.filter((p) => p.key !== key);
        if (session !== s) return;
        renderPending(s);
        showError(`${file.name}: ${describeError(e)}`);
      });
  }
}

/** The message's part with `className` (text, time, note, receipt); messageElement makes them all. */
function part(li: HTMLLIElement, className: "text" | "time" | "note" | "receipt"): HTMLElement {
  const found = li.querySelector<HTMLElement>(`.${className}`);
  if (found) return found;
  // Unreachable for elements made by messageElement; never write over the whole message.
  const made = document.createElement("div");
  made.className = className;
  li.append(made);
  return made;
}

function renderPresence(s: Session, online: readonly string[]): void {
  const users = [...new Set(online)].sort();
  ui.presence.replaceChildren(
    ...users.map((u) => {
      const li = document.createElement("li");
      li.dataset.userId = u;
      li.textContent = u === s.userId ? `${u} (you)` : u;
      if (u === s.userId) li.classList.add("me");
      return li;
    }),
  );
}

function renderTyping(s: Session): void {
  const names = [...s.typers.keys()].sort();
  ui.typing.textContent =
    names.length === 0
      ? ""
      : names.length === 1
        ? `${names[0]} is typing…`
        : names.length === 2
          ? `${names[0]} and ${names[1]} are typing…`
          : `${names.length} people are typing…`;
}

function renderRunning(s: Session): void {
  const running = s.runningTurns.size > 0;
  ui.stopButton.disabled = !running;
  if (!running) setAiStatus("idle", "idle");
}

// ---------------------------------------------------------------------------------------------
// Read receipts

/** Marks messages from other members read, once this tab is actually visible. */
function markRead(s: Session, messageIds: string[]): void {
  s.unread.push(...messageIds);
  flushRead(s);
}

function flushRead(s: Session): void {
  if (s.unread.length === 0 || document.visibilityState !== "visible") return;
  const messageIds = s.unread.splice(0);
  // Sent once joined (the SDK queues until then); a refusal reaches onServerError.
  s.socket.markRead({ userId: s.userId, messageIds, readAt: new Date().toISOString() }).catch(() => undefined);
}

document.addEventListener("visibilitychange", () => {
  if (session) flushRead(session);
});

function onReadReceipt(s: Session, e: { userId: string; messageIds: string[] }): void {
  if (e.userId === s.userId) return;
  for (const id of e.messageIds) {
    const li = s.elements.get(id);
    if (!li || li.dataset.userId !== s.userId || li.dataset.role !== "user") continue;
    const readers = s.readers.get(id) ?? new Set<string>();
    readers.add(e.userId);
    s.readers.set(id, readers);
    part(li, "receipt").textContent = `read by ${[...readers].sort().join(", ")}`;
  }
}

// ---------------------------------------------------------------------------------------------
// The assistant's turns

function assistantElement(s: Session, messageId: string, createdAt?: string): HTMLLIElement {
  return messageElement(s, { messageId, role: "assistant", userId: "assistant", text: "", createdAt });
}

function turnStarted(s: Session, requestId: string): void {
  // A late event of a turn that already ended must not enable Stop again.
  if (s.socket.hasTurnEnded(requestId)) return;
  s.runningTurns.add(requestId);
  renderRunning(s);
}

function turnEnded(s: Session, requestId: string): void {
  s.runningTurns.delete(requestId);
  renderRunning(s);
}

/** The role a `chat:message` / history entry is shown with. */
function roleOf(role: string): Role {
  return role === "assistant" || role === "humanAgent" ? role : "user";
}

function showHistory(
  s: Session,
  messages: ReadonlyArray<{ messageId: string; role: string; text: string; createdAt?: string; userId?: string; finishReason?: string; attachments?: readonly ShownAttachment[] }>,
): void {
  ui.messages.replaceChildren();
  s.elements.clear();
  const fromOthers: string[] = [];
  for (const m of messages) {
    const role = roleOf(m.role);
    const assistant = role === "assistant";
    const userId = assistant ? "assistant" : (m.userId ?? "");
    const li = messageElement(s, { messageId: m.messageId, role, userId, text: m.text, createdAt: m.createdAt, attachments: m.attachments });
    if (m.finishReason === "aborted") {
      li.dataset.state = "aborted";
      part(li, "note").textContent = "stopped";
    }
    if (!assistant && userId !== s.userId) fromOthers.push(m.messageId);
  }
  if (fromOthers.length > 0) markRead(s, fromOthers);
}

// ---------------------------------------------------------------------------------------------
// Support: a person instead of the assistant, ending the chat, rating it

function renderHandoff(e: Pick<HandoffUpdateEvent, "isWaitingForAgent" | "humanAgentEngaged" | "agentId">): void {
  const [state, text] = e.humanAgentEngaged
    ? ["human", e.agentId ? `${e.agentId} from support is here` : "a person from support is here"]
    : e.isWaitingForAgent
      ? ["waiting", "waiting for a person…"]
      : ["ai", "the assistant answers"];
  ui.handoffStatus.dataset.state = state;
  ui.handoffStatus.textContent = text;
  ui.handoffButton.disabled = session === null || e.isWaitingForAgent || e.humanAgentEngaged;
}

/**
 * The chat's handoff state when the page joins (the join ack does not carry it): read from its
 * summary, unless a `handoff:update` newer than the summary came first.
 */
async function loadHandoff(s: Session): Promise<void> {
  // With auth on the org is the token's (a request naming another is refused).
  const orgId = (s.token ? tokenClaim(s.token, "org_id") : undefined) ?? "default";
  const history = new ChatHistoryClient({ baseUrl: window.location.origin, orgId, ...(s.token ? { token: s.token } : {}) });
  const summary = await history.getChat(s.chatId); // null when unreadable: keep what is shown
  if (session !== s || !summary) return;
  if (summary.status === "closed") showEnded(true);
  if (typeof summary.isWaitingForAgent !== "boolean") return;
  if ((summary.seq ?? 0) < s.handoffSeq) return;
  s.handoffSeq = summary.seq ?? 0;
  renderHandoff({ isWaitingForAgent: summary.isWaitingForAgent, humanAgentEngaged: summary.humanAgentEngaged === true });
}

function resetSupport(): void {
  renderHandoff({ isWaitingForAgent: false, humanAgentEngaged: false });
  showEnded(false);
  ui.handoffButton.disabled = true;
  ui.endButton.disabled = true;
  ui.csatForm.hidden = true;
  ui.csatForm.reset();
  ui.csatSubmit.disabled = true;
  ui.csatThanks.hidden = true;
}

function showCsat(): void {
  ui.csatThanks.hidden = true;
  ui.csatForm.hidden = false;
  ui.csatSubmit.disabled = ui.csatForm.querySelector("input[name=rating]:checked") === null;
}

// ---------------------------------------------------------------------------------------------
// Joining, sending, typing

function setJoined(joined: boolean): void {
  ui.input.disabled = !joined;
  ui.sendButton.disabled = !joined;
  ui.attachButton.disabled = !joined;
  if (!joined) {
    ui.handoffButton.disabled = true;
    ui.endButton.disabled = true;
  } else {
    ui.handoffButton.disabled = ui.handoffStatus.dataset.state !== "ai";
    ui.endButton.disabled = ui.endButton.dataset.ended === "true";
  }
}

/** The chat was ended (by anyone): it cannot be ended again. */
function showEnded(ended: boolean): void {
  ui.endButton.dataset.ended = String(ended);
  ui.endButton.textContent = ended ? "Chat ended" : "End chat";
  if (ended) ui.endButton.disabled = true;
}

function stopTyping(s: Session): void {
  window.clearTimeout(s.typingTimer);
  s.typingTimer = undefined;
  if (s.typingSent) {
    s.typingSent = false;
    if (s.socket.isConnected()) s.socket.typingStop(s.userId).catch(() => undefined);
  }
}

function leave(): void {
  const s = session;
  session = null;
  if (!s) return;
  stopTyping(s);
  for (const timer of s.typers.values()) window.clearTimeout(timer);
  s.socket.destroy();
  ui.presence.replaceChildren();
  ui.pending.replaceChildren();
  ui.typing.textContent = "";
  ui.stopButton.disabled = true;
  ui.leaveButton.disabled = true;
  setAiStatus("idle", "idle");
  setJoined(false);
  resetSupport();
  setStatus("idle", "not connected");
}

function join(chatId: string, userId: string, token: string | null): void {
  leave();
  showError(null);
  ui.messages.replaceChildren();
  ui.leaveButton.disabled = false;
  setStatus("connecting", `connecting to ${chatId}…`);

  const s: Session = {
    socket: undefined as unknown as AIChatSocket, // set right below, before any callback can run
    chatId,
    userId,
    token,
    handoffSeq: 0,
    joinedOnce: false,
    elements: new Map(),
    runningTurns: new Set(),
    typers: new Map(),
    readers: new Map(),
    unread: [],
    typingSent: false,
    typingTimer: undefined,
    pending: [],
    processing: new Map(),
  };
  // Callbacks of a session the page has left are ignored.
  const live = () => session === s;

  s.socket = new AIChatSocket({
    url: window.location.origin,
    chatId,
    userId,
    ioOptions: {
      transports: ["websocket"],
      // With auth off the server takes the name from `auth.userId`; with auth on the token
      // decides who this is.
      auth: token ? { token } : { userId },
    },
    autoConnect: false,
    callbacks: {
      onJoin: (ack) => {
        if (!live()) return;
        renderPresence(s, ack.onlineUserIds);
        if (!s.joinedOnce) {
          showHistory(s, ack.messages);
          void loadHandoff(s);
        }
        s.joinedOnce = true;
      },
      // A rejoin that could not replay what was missed: the ack's messages are the truth.
      onResync: (messages) => {
        if (live()) showHistory(s, messages);
      },
      onConnect: () => {
        if (!live()) return;
        setStatus("connected", `connected to ${chatId} as ${userId}`);
        setJoined(true);
        flushRead(s);
      },
      onDisconnect: ({ reason }) => {
        if (!live()) return;
        setStatus("disconnected", `disconnected (${reason}); reconnecting…`);
        setJoined(false);
        // Running turns are re-sent on the rejoin; until then nothing is known to run.
        s.runningTurns.clear();
        renderRunning(s);
        for (const timer of s.typers.values()) window.clearTimeout(timer);
        s.typers.clear();
        renderTyping(s);
      },
      onServerError: (e) => {
        if (!live()) return;
        if (!s.socket.isConnected()) setStatus("error", `cannot connect: ${describeError(e)}`);
        else showError(describeError(e));
      },
      onChatMessage: (e) => {
        if (!live()) return;
        messageElement(s, {
          messageId: e.messageId,
          role: roleOf(e.role),
          userId: e.userId,
          text: e.text,
          createdAt: e.createdAt,
          attachments: e.attachments,
        });
        if (e.userId !== s.userId) markRead(s, [e.messageId]);
      },
      onPresenceUpdate: (e) => {
        if (live()) renderPresence(s, e.onlineUserIds);
      },
      onTypingUpdate: (e) => {
        if (!live() || e.userId === s.userId) return;
        window.clearTimeout(s.typers.get(e.userId));
        if (e.typing) {
          const forget = window.setTimeout(() => {
            s.typers.delete(e.userId);
            renderTyping(s);
          }, TYPING_EXPIRY_MS);
          s.typers.set(e.userId, forget);
        } else {
          s.typers.delete(e.userId);
        }
        renderTyping(s);
      },
      onReadReceipt: (e) => {
        if (live()) onReadReceipt(s, e);
      },
      onHandoffUpdate: (e) => {
        if (!live()) return;
        s.handoffSeq = Math.max(s.handoffSeq, e.seq);
        renderHandoff(e);
      },
      onAttachmentProcessing: (e) => {
        if (!live()) return;
        onProcessing(s, e.attachmentId, { status: e.status, percent: e.percent, chars: e.chars, error: e.error?.message });
      },
      onCsatRequest: () => {
        if (live()) showCsat();
      },
      onChatEnded: () => {
        if (live()) showEnded(true);
      },
      onAIProcessing: (e) => {
        if (!live()) return;
        turnStarted(s, e.requestId);
        setAiStatus(e.status, e.status === "retrying" && e.reason ? `retrying (${e.reason})…` : `${e.status}…`);
      },
      onAIToken: (e) => {
        if (!live()) return;
        turnStarted(s, e.requestId);
        const li = assistantElement(s, e.messageId);
        li.dataset.state = "streaming";
        li.dataset.requestId = e.requestId;
        // The SDK hands each index once, with the turn's text so far.
        withScroll(() => {
          part(li, "text").textContent = e.turnText;
        });
        setAiStatus("streaming", "replying…");
      },
      onAIMessage: (e) => {
        if (!live()) return;
        const li = assistantElement(s, e.messageId, e.createdAt);
        // The final text is the reference: it equals the tokens joined.
        part(li, "text").textContent = e.text;
        part(li, "time").textContent = formatTime(e.createdAt);
        const aborted = e.finishReason === "aborted";
        li.dataset.state = aborted ? "aborted" : "done";
        part(li, "note").textContent = aborted ? "stopped" : "";
        turnEnded(s, e.requestId);
      },
      onAIError: (e) => {
        if (!live()) return;
        const messageId = detail(e.details, "messageId");
        // The reply being streamed keeps its partial text and says why it ended.
        const li = assistantElement(s, messageId ?? `error-${e.requestId}`);
        const partialText = detail(e.details, "partialText");
        if (partialText !== undefined && part(li, "text").textContent === "") {
          part(li, "text").textContent = partialText;
        }
        li.dataset.state = "error";
        part(li, "note").textContent = `error: ${describeError(e)}`;
        turnEnded(s, e.requestId);
      },
    },
  });
  session = s;
  s.socket.connect();
}

function send(s: Session): void {
  const text = ui.input.value.trim();
  if (s.pending.some((p) => p.uploaded === null)) {
    showError("A file is still uploading; send once it is ready.");
    return;
  }
  const attachments = s.pending.flatMap((p) => (p.uploaded ? [p.uploaded] : []));
  if (text === "" && attachments.length === 0) return;
  stopTyping(s);
  const messageId = newId();
  const li = messageElement(s, { messageId, role: "user", userId: s.userId, text, createdAt: new Date().toISOString(), attachments });
  li.dataset.pending = "true";
  ui.input.value = "";
  s.pending = [];
  renderPending(s);
  s.socket
    .sendMessage({ messageId, userId: s.userId, text, ...(attachments.length > 0 ? { attachments } : {}) })
    .then(() => {
      delete li.dataset.pending;
    })
    .catch((e: unknown) => {
      delete li.dataset.pending;
      li.dataset.state = "error";
      part(li, "note").textContent = `not sent: ${describeError(e)}`;
    });
}

// ---------------------------------------------------------------------------------------------
// Wiring

const params = new URLSearchParams(window.location.search);
const token = params.get("token");
ui.chatInput.value = params.get("chat") ?? "";
ui.userInput.value = params.get("user") ?? (token ? (tokenUser(token) ?? "") : "");

ui.joinForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const chatId = ui.chatInput.value.trim();
  const userId = ui.userInput.value.trim();
  if (chatId === "" || userId === "") {
    showError("Chat and name must not be blank.");
    return;
  }
  // Keep the choice in the address so a reload or a copied link lands in the same chat.
  const next = new URLSearchParams(window.location.search);
  next.set("chat", chatId);
  next.set("user", userId);
  window.history.replaceState(null, "", `?${next.toString()}`);
  join(chatId, userId, token);
});

ui.leaveButton.addEventListener("click", () => leave());

ui.attachButton.addEventListener("click", () => ui.fileInput.click());

ui.fileInput.addEventListener("change", () => {
  const files = [...(ui.fileInput.files ?? [])];
  ui.fileInput.value = ""; // picking the same file again fires `change` again
  if (session && files.length > 0) {
    showError(null);
    attachFiles(session, files);
  }
});

ui.composer.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (session) send(session);
});

ui.input.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    if (session) send(session);
  }
});

ui.input.addEventListener("input", () => {
  const s = session;
  if (!s || !s.socket.isConnected()) return;
  showError(null);
  if (ui.input.value === "") {
    stopTyping(s);
    return;
  }
  if (!s.typingSent) {
    s.typingSent = true;
    s.socket.typingStart(s.userId).catch(() => undefined);
  }
  window.clearTimeout(s.typingTimer);
  s.typingTimer = window.setTimeout(() => stopTyping(s), TYPING_IDLE_MS);
});

ui.input.addEventListener("blur", () => {
  if (session) stopTyping(session);
});

ui.handoffButton.addEventListener("click", () => {
  const s = session;
  if (!s) return;
  ui.handoffButton.disabled = true;
  // The handoff:update that follows says "waiting"; a refusal says why.
  s.socket.requestHandoff().catch((e: unknown) => {
    if (session !== s) return;
    showError(`ask for a person: ${describeError(e)}`);
    ui.handoffButton.disabled = false;
  });
});

ui.endButton.addEventListener("click", () => {
  const s = session;
  if (!s) return;
  ui.endButton.disabled = true;
  s.socket.endChat(undefined, "ended by the customer").catch((e: unknown) => {
    if (session !== s) return;
    showError(`end chat: ${describeError(e)}`);
    ui.endButton.disabled = false;
  });
});

ui.csatForm.addEventListener("change", () => {
  ui.csatSubmit.disabled = ui.csatForm.querySelector("input[name=rating]:checked") === null;
});

ui.csatForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const s = session;
  const checked = ui.csatForm.querySelector<HTMLInputElement>("input[name=rating]:checked");
  if (!s || !checked) return;
  const rating = Number(checked.value);
  const comment = ui.csatComment.value.trim();
  ui.csatSubmit.disabled = true;
  s.socket
    .submitCsat(undefined, rating, comment === "" ? undefined : comment)
    .then(() => {
      if (session !== s) return;
      ui.csatForm.hidden = true;
      ui.csatThanks.hidden = false;
      ui.csatThanks.textContent = `Thank you: you rated this chat ${rating}/5.`;
    })
    .catch((e: unknown) => {
      if (session !== s) return;
      showError(`rating: ${describeError(e)}`);
      ui.csatSubmit.disabled = false;
    });
});

ui.stopButton.addEventListener("click", () => {
  const s = session;
  if (!s) return;
  ui.stopButton.disabled = true;
  s.socket.abort("stopped from the playground").catch((e: unknown) => {
    if (session === s) showError(`stop: ${describeError(e)}`);
    renderRunning(s);
  });
});
