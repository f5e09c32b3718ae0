// The Natter desk (`/desk`): a page for human agents. It lists the chats whose customer asked
// for a person (history REST `waiting: true`, oldest first), takes one (a Socket.IO join with
// `clientType: "humanAgent"`, so the AI stops answering), shows its history and the customer
// typing, answers, and hands the chat back to the AI (`chat:leave`) or ends it. Chats taken
// from this page stay under "Handled" with the customer's rating once it comes.
// `?user=…` fills the name; `?token=…` (or the token field) is a JWT with the `chat:agent`
// scope when the server has auth on; `?org=…` names the org with auth off.
import { AIChatSocket, ChatHistoryClient, type ChatSummary, type CsatResult } from "../typescript/src/index.ts";
import { byId, describeError, detail, formatTime, newId, tokenClaim, tokenUser } from "./shared.ts";

const ui = {
  status: byId<HTMLSpanElement>("connection-status"),
  agentForm: byId<HTMLFormElement>("agent-form"),
  nameInput: byId<HTMLInputElement>("agent-name"),
  tokenInput: byId<HTMLInputElement>("agent-token"),
  queue: byId<HTMLUListElement>("queue"),
  queueNote: byId<HTMLParagraphElement>("queue-note"),
  handled: byId<HTMLUListElement>("handled"),
  chatTitle: byId<HTMLHeadingElement>("chat-title"),
  handBackButton: byId<HTMLButtonElement>("handback-button"),
  endButton: byId<HTMLButtonElement>("end-chat-button"),
  messages: byId<HTMLOListElement>("messages"),
  typing: byId<HTMLParagraphElement>("typing-indicator"),
  composer: byId<HTMLFormElement>("composer"),
  input: byId<HTMLTextAreaElement>("message-input"),
  sendButton: byId<HTMLButtonElement>("send-button"),
  error: byId<HTMLParagraphElement>("error"),
};

/** How often the queue and the handled chats' ratings are read again, ms. */
const POLL_MS = 2000;
const TYPING_IDLE_MS = 2500;
const TYPING_EXPIRY_MS = 10000;

interface Agent {
  name: string;
  token: string | null;
  history: ChatHistoryClient;
  timer: number;
}

/** The chat this desk has taken (one at a time). */
interface Taken {
  socket: AIChatSocket;
  chatKey: string;
  joinedOnce: boolean;
  elements: Map<string, HTMLLIElement>;
  /** Customers typing, each with the timer that forgets them. */
  typers: Map<string, number>;
  typingSent: boolean;
  typingTimer: number | undefined;
}

interface Handled {
  chatKey: string;
  title: string;
  state: "open" | "handed back" | "ended";
  csat?: CsatResult | undefined;
}

let agent: Agent | null = null;
let taken: Taken | null = null;
const handled = new Map<string, Handled>();
let polling = false;

// ---------------------------------------------------------------------------------------------
// Small helpers

function setStatus(state: string, text: string): void {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function showError(message: string | null): void {
  ui.error.hidden = message === null;
  ui.error.textContent = message ?? "";
}

function waitedFor(since: number | undefined): string {
  if (since === undefined) return "waiting";
  const s = Math.max(0, Math.round((Date.now() - since) / 1000));
  return s < 60 ? `waiting ${s} s` : `waiting ${Math.floor(s / 60)} min`;
}

function withScroll(change: () => void): void {
  const list = ui.messages;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  change();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// ---------------------------------------------------------------------------------------------
// The queue and the handled chats

/** A `<li>` per chat, kept across refreshes (a button being clicked is never replaced). */
function keyed(list: HTMLUListElement, chatKey: string, make: (li: HTMLLIElement) => void): HTMLLIElement {
  const found = [...list.children].find((el) => (el as HTMLElement).dataset.chatKey === chatKey);
  if (found) return found as HTMLLIElement;
  const li = document.createElement("li");
  li.dataset.chatKey = chatKey;
  make(li);
  list.append(li);
  return li;
}

function field(li: HTMLElement, name: string): HTMLElement {
  const el = li.querySelector<HTMLElement>(`[data-field="${name}"]`);
  if (el) return el;
  const made = document.createElement("span");
  made.dataset.field = name;
  li.append(made);
  return made;
}

function renderQueue(chats: readonly ChatSummary[]): void {
  const keys = new Set(chats.map((c) => c.chatKey));
  for (const el of [...ui.queue.children]) {
    if (!keys.has((el as HTMLElement).dataset.chatKey ?? "")) el.remove();
  }
  const ordered: HTMLLIElement[] = [];
  for (const c of chats) {
    const li = keyed(ui.queue, c.chatKey, (li) => {
      li.dataset.testid = "queue-item";
      const title = document.createElement("span");
      title.dataset.field = "title";
      title.className = "title";
      const since = document.createElement("span");
      since.dataset.field = "since";
      since.className = "since";
      const take = document.createElement("button");
      take.type = "button";
      take.textContent = "Take";
      take.dataset.testid = "take-button";
      take.addEventListener("click", () => takeChat(c.chatKey, field(li, "title").textContent ?? c.chatKey));
      li.append(title, since, take);
    });
    field(li, "title").textContent = c.title || c.chatKey;
    field(li, "since").textContent = waitedFor(c.waitingSince);
    const button = li.querySelector("button");
    if (button) button.disabled = taken !== null;
    ordered.push(li);
  }
  // The server's order: oldest waiting first (moving an element keeps it, and its listeners).
  if (ordered.some((li, i) => ui.queue.children[i] !== li)) ui.queue.append(...ordered);
  ui.queueNote.hidden = chats.length > 0;
  ui.queueNote.textContent = "Nobody is waiting.";
}

/** Where this tab keeps its handled chats, so a reload can resume a chat it had not handed back. */
function storageKey(name: string): string {
  return `natter-desk:${window.location.origin}:${name}`;
}

function saveHandled(): void {
  if (!agent) return;
  try {
    sessionStorage.setItem(storageKey(agent.name), JSON.stringify([...handled.values()]));
  } catch {
    // Storage full or disabled: the list just does not survive a reload.
  }
}

function loadHandled(name: string): void {
  handled.clear();
  ui.handled.replaceChildren();
  try {
    const saved: unknown = JSON.parse(sessionStorage.getItem(storageKey(name)) ?? "[]");
    if (!Array.isArray(saved)) return;
    for (const h of saved as Handled[]) {
      if (typeof h?.chatKey === "string" && typeof h.title === "string") handled.set(h.chatKey, h);
    }
  } catch {
    // Unreadable: start with an empty list.
  }
}

function renderHandled(): void {
  saveHandled();
  for (const h of handled.values()) {
    const li = keyed(ui.handled, h.chatKey, (li) => {
      li.dataset.testid = "handled-item";
      const title = document.createElement("span");
      title.dataset.field = "title";
      title.className = "title";
      const state = document.createElement("span");
      state.dataset.field = "state";
      state.className = "since";
      // A chat still "open" but not shown (the page was reloaded): the server keeps this agent
      // engaged until it leaves, so the agent takes it up again.
      const resume = document.createElement("button");
      resume.type = "button";
      resume.textContent = "Resume";
      resume.dataset.testid = "resume-button";
      resume.addEventListener("click", () => takeChat(h.chatKey, h.title));
      const csat = document.createElement("span");
      csat.dataset.field = "csat";
      csat.dataset.testid = "csat-result";
      csat.className = "csat-result";
      li.append(title, state, resume, csat);
    });
    field(li, "title").textContent = h.title;
    field(li, "state").textContent = h.state;
    const resume = li.querySelector("button");
    if (resume) {
      resume.hidden = h.state !== "open" || taken?.chatKey === h.chatKey;
      resume.disabled = taken !== null;
    }
    const csat = field(li, "csat");
    csat.dataset.rating = h.csat ? String(h.csat.rating) : "";
    csat.textContent = h.csat ? `rated ${h.csat.rating}/5${h.csat.comment ? `: “${h.csat.comment}”` : ""}` : "no rating yet";
  }
}

/** Reads the queue and the ratings of handled chats that have none yet. */
async function poll(): Promise<void> {
  const a = agent;
  if (!a || polling) return;
  polling = true;
  try {
    const result = await a.history.getChatHistory({ waiting: true, limit: 50 });
    if (agent !== a) return;
    const error = a.history.getState().error;
    if (error) {
      ui.queueNote.hidden = false;
      ui.queueNote.textContent = `cannot read the queue: ${error}`;
      setStatus("error", `queue: ${error}`);
      return;
    }
    if (!taken) setStatus("connected", `on duty as ${a.name}`);
    renderQueue(result.chats);
    for (const h of handled.values()) {
      if (h.csat || h.state === "open") continue;
      const summary = await a.history.getChat(h.chatKey);
      if (summary?.csat && agent === a) {
        h.csat = summary.csat;
        renderHandled();
      }
    }
  } finally {
    polling = false;
  }
}

function start(name: string, token: string | null): void {
  if (agent) window.clearInterval(agent.timer);
  const params = new URLSearchParams(window.location.search);
  // With auth on, the org is the token's; a different orgId in a request is refused.
  const orgId = (token ? tokenClaim(token, "org_id") : undefined) ?? params.get("org") ?? "default";
  const history = new ChatHistoryClient({ baseUrl: window.location.origin, orgId, ...(token ? { token } : {}) });
  agent = { name, token, history, timer: window.setInterval(() => void poll(), POLL_MS) };
  loadHandled(name);
  renderHandled();
  setStatus("connecting", "reading the queue…");
  ui.queueNote.textContent = "Reading the queue…";
  void poll();
}

// ---------------------------------------------------------------------------------------------
// The taken chat

type Role = "user" | "assistant" | "humanAgent";

function messageElement(t: Taken, m: { messageId: string; role: Role; userId: string; text: string; createdAt?: string | undefined }): HTMLLIElement {
  const existing = t.elements.get(m.messageId);
  if (existing) return existing;
  const li = document.createElement("li");
  li.className = "message";
  li.dataset.testid = "message";
  li.dataset.messageId = m.messageId;
  li.dataset.role = m.role;
  li.dataset.userId = m.userId;
  li.dataset.state = "done";
  if (m.role === "humanAgent" && m.userId === agent?.name) li.classList.add("mine");
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
  li.append(meta, text, note);
  t.elements.set(m.messageId, li);
  withScroll(() => ui.messages.append(li));
  return li;
}

function part(li: HTMLLIElement, className: "text" | "time" | "note"): HTMLElement {
  return li.querySelector<HTMLElement>(`.${className}`) ?? li;
}

function roleOf(role: string): Role {
  return role === "assistant" || role === "humanAgent" ? role : "user";
}

function showHistory(t: Taken, messages: ReadonlyArray<{ messageId: string; role: string; text: string; createdAt?: string; userId?: string }>): void {
  ui.messages.replaceChildren();
  t.elements.clear();
  for (const m of messages) {
    const role = roleOf(m.role);
    messageElement(t, { messageId: m.messageId, role, userId: role === "assistant" ? "assistant" : (m.userId ?? ""), text: m.text, createdAt: m.createdAt });
  }
}

function renderTyping(t: Taken): void {
  const names = [...t.typers.keys()].sort();
  ui.typing.textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(" and ")} are typing…`;
}

function setChatOpen(open: boolean): void {
  ui.input.disabled = !open;
  ui.sendButton.disabled = !open;
  ui.handBackButton.disabled = !open;
  ui.endButton.disabled = !open;
}

function stopTyping(t: Taken): void {
  window.clearTimeout(t.typingTimer);
  t.typingTimer = undefined;
  if (t.typingSent) {
    t.typingSent = false;
    if (t.socket.isConnected()) t.socket.typingStop(agent?.name ?? "").catch(() => undefined);
  }
}

function takeChat(chatKey: string, title: string): void {
  const a = agent;
  if (!a || taken) return;
  showError(null);
  ui.messages.replaceChildren();
  ui.chatTitle.textContent = title;
  setStatus("connecting", `taking ${title}…`);
  const t: Taken = {
    socket: undefined as unknown as AIChatSocket, // set right below, before any callback can run
    chatKey,
    joinedOnce: false,
    elements: new Map(),
    typers: new Map(),
    typingSent: false,
    typingTimer: undefined,
  };
  const live = () => taken === t;
  t.socket = new AIChatSocket({
    url: window.location.origin,
    chatId: chatKey,
    userId: a.name,
    // The join as a human agent is what takes the chat: the AI stops answering it.
    clientType: "humanAgent",
    ioOptions: { transports: ["websocket"], auth: a.token ? { token: a.token } : { userId: a.name } },
    autoConnect: false,
    callbacks: {
      onJoin: (ack) => {
        if (!live()) return;
        if (!t.joinedOnce) showHistory(t, ack.messages);
        t.joinedOnce = true;
        handled.set(chatKey, { chatKey, title, state: "open" });
        renderHandled();
        void poll();
      },
      onResync: (messages) => {
        if (live()) showHistory(t, messages);
      },
      onConnect: () => {
        if (!live()) return;
        setStatus("connected", `${a.name} is answering ${title}`);
        setChatOpen(true);
      },
      onDisconnect: ({ reason }) => {
        if (!live()) return;
        setStatus("disconnected", `disconnected (${reason}); reconnecting…`);
        setChatOpen(false);
      },
      onServerError: (e) => {
        if (!live()) return;
        if (!t.joinedOnce) {
          // Not taken (e.g. forbidden: the token lacks chat:agent): give the chat up.
          showError(`cannot take ${title}: ${describeError(e)}`);
          close(t);
          return;
        }
        showError(describeError(e));
      },
      onChatMessage: (e) => {
        if (live()) messageElement(t, { messageId: e.messageId, role: roleOf(e.role), userId: e.userId, text: e.text, createdAt: e.createdAt });
      },
      onTypingUpdate: (e) => {
        if (!live() || e.userId === a.name) return;
        window.clearTimeout(t.typers.get(e.userId));
        if (e.typing) {
          t.typers.set(
            e.userId,
            window.setTimeout(() => {
              t.typers.delete(e.userId);
              renderTyping(t);
            }, TYPING_EXPIRY_MS),
          );
        } else {
          t.typers.delete(e.userId);
        }
        renderTyping(t);
      },
      // A reply the AI was writing when the chat was taken still finishes.
      onAIToken: (e) => {
        if (!live()) return;
        const li = messageElement(t, { messageId: e.messageId, role: "assistant", userId: "assistant", text: "" });
        li.dataset.state = "streaming";
        withScroll(() => (part(li, "text").textContent = e.turnText));
      },
      onAIMessage: (e) => {
        if (!live()) return;
        const li = messageElement(t, { messageId: e.messageId, role: "assistant", userId: "assistant", text: e.text, createdAt: e.createdAt });
        part(li, "text").textContent = e.text;
        li.dataset.state = e.finishReason === "aborted" ? "aborted" : "done";
      },
      onAIError: (e) => {
        if (!live()) return;
        const li = messageElement(t, { messageId: detail(e.details, "messageId") ?? `error-${e.requestId}`, role: "assistant", userId: "assistant", text: detail(e.details, "partialText") ?? "" });
        li.dataset.state = "error";
        part(li, "note").textContent = `error: ${describeError(e)}`;
      },
      onHandoffUpdate: () => {
        if (live()) void poll();
      },
    },
  });
  taken = t;
  renderQueueButtons();
  t.socket.connect();
}

function renderQueueButtons(): void {
  for (const b of ui.queue.querySelectorAll("button")) b.disabled = taken !== null;
  renderHandled();
}

/** Forgets the taken chat and empties the panel. */
function close(t: Taken): void {
  if (taken !== t) return;
  taken = null;
  stopTyping(t);
  for (const timer of t.typers.values()) window.clearTimeout(timer);
  t.socket.destroy();
  setChatOpen(false);
  ui.messages.replaceChildren();
  ui.typing.textContent = "";
  ui.chatTitle.textContent = "No chat taken";
  renderQueueButtons();
  if (agent) setStatus("connected", `on duty as ${agent.name}`);
  void poll();
}

/** Leaves the chat (`chat:leave`): with no agent left in it, the AI answers again. */
async function handBack(t: Taken, state: "handed back" | "ended"): Promise<void> {
  setChatOpen(false);
  stopTyping(t);
  try {
    await t.socket.leave();
  } catch (e) {
    showError(`hand back: ${describeError(e)}`);
  }
  const h = handled.get(t.chatKey);
  if (h) h.state = state;
  renderHandled();
  close(t);
}

function send(t: Taken): void {
  const text = ui.input.value.trim();
  if (text === "" || !agent) return;
  stopTyping(t);
  const messageId = newId();
  const li = messageElement(t, { messageId, role: "humanAgent", userId: agent.name, text, createdAt: new Date().toISOString() });
  li.dataset.pending = "true";
  ui.input.value = "";
  t.socket
    .sendMessage({ messageId, userId: agent.name, text })
    .then(() => delete li.dataset.pending)
    .catch((e: unknown) => {
      delete li.dataset.pending;
      li.dataset.state = "error";
      part(li, "note").textContent = `not sent: ${describeError(e)}`;
    });
}

// ---------------------------------------------------------------------------------------------
// Wiring

const params = new URLSearchParams(window.location.search);
const queryToken = params.get("token");
ui.tokenInput.value = queryToken ?? "";
ui.nameInput.value = params.get("user") ?? (queryToken ? (tokenUser(queryToken) ?? "") : "");

ui.agentForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = ui.nameInput.value.trim();
  const token = ui.tokenInput.value.trim();
  if (name === "") {
    showError("Your name must not be blank.");
    return;
  }
  showError(null);
  start(name, token === "" ? null : token);
});

ui.handBackButton.addEventListener("click", () => {
  if (taken) void handBack(taken, "handed back");
});

ui.endButton.addEventListener("click", () => {
  const t = taken;
  if (!t) return;
  setChatOpen(false);
  // Ending asks the customer for a rating (csat:request); then the agent leaves.
  t.socket
    .endChat(undefined, "ended by support")
    .then(() => handBack(t, "ended"))
    .catch((e: unknown) => {
      if (taken !== t) return;
      showError(`end chat: ${describeError(e)}`);
      setChatOpen(true);
    });
});

ui.composer.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (taken) send(taken);
});

ui.input.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    if (taken) send(taken);
  }
});

ui.input.addEventListener("input", () => {
  const t = taken;
  if (!t || !t.socket.isConnected() || !agent) return;
  if (ui.input.value === "") {
    stopTyping(t);
    return;
  }
  if (!t.typingSent) {
    t.typingSent = true;
    t.socket.typingStart(agent.name).catch(() => undefined);
  }
  window.clearTimeout(t.typingTimer);
  t.typingTimer = window.setTimeout(() => stopTyping(t), TYPING_IDLE_MS);
});

ui.input.addEventListener("blur", () => {
  if (taken) stopTyping(taken);
});
