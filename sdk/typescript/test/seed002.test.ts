// Seed 002's ChatClient and ChatHistoryClient against the real binary: the whole flow on both
// transports, optimistic sends replaced by the server's copy, typing, end, reconnect after a
// server restart with Last-Event-ID (nothing lost, nothing twice), getToken per connect and
// send with auth on, and history calls that resolve to defaults instead of throwing.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { EventSource as NodeEventSource } from "eventsource";
import { ChatClient, ChatHistoryClient, type ChatEvent, type ChatMessage } from "../src/index.js";
import { startFakeUpstream, startNatter, tempDir, uid, until, type Natter, type Upstream, stopNatter } from "./harness.js";

const SECRET = "sdk-test-secret-that-is-long-enough-for-hs256";
function mint(org: string, user: string, expSecs = 600): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ org_id: org, user_id: user, exp: Math.floor(Date.now() / 1000) + expSecs });
  const sig = crypto.createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

const realtime = (n: Natter) => `${n.url}/api/v1/chat`;

function withEventSource<T>(fn: () => T): T {
  const g = globalThis as { EventSource?: unknown };
  const before = g.EventSource;
  g.EventSource = NodeEventSource;
  try {
    return fn();
  } finally {
    if (before === undefined) delete g.EventSource;
    else g.EventSource = before;
  }
}

describe("seed 002 ChatClient", () => {
  let upstream: Upstream;
  let natter: Natter;
  let tmp: { dir: string; cleanup(): void };
  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir });
  });
  after(async () => {
    await stopNatter(natter);
    upstream?.stop();
    tmp?.cleanup();
  });

  for (const transport of ["sse-fetch", "sse"] as const) {
    test(`the seed's flow over ${transport}: startChat, optimistic send, one reply, on(), loadChat, typing, endChat`, async () => {
      const g = globalThis as { EventSource?: unknown };
      if (transport === "sse") g.EventSource = NodeEventSource;
      const user = uid("ann");
      const states: string[] = [];
      const all: ChatEvent[] = [];
      const chat = new ChatClient({
        baseUrl: realtime(natter),
        orgId: "default",
        userId: user,
        transport,
        onConnectionChange: (s) => states.push(s),
        onMessage: (e) => all.push(e),
      });
      try {
        assert.equal(chat.getState().connectionState, "disconnected");
        assert.equal(chat.getState().metrics.transportType, transport);
        await chat.connect();
        assert.equal(chat.getState().isConnected, true);
        assert.deepEqual(states, ["connecting", "connected"]);
        await until(() => all.find((e) => e.type === "reconnected"), "the stream's reconnected event");

        const started: ChatEvent[] = [];
        const ended: ChatEvent[] = [];
        const offStarted = chat.on("agent_execution_started", (e) => started.push(e));
        chat.on("agent_execution_ended", (e) => ended.push(e));

        const chatKey = await chat.startChat({ topic: "refunds" });
        assert.match(chatKey, /^[0-9a-f-]{36}$/);
        assert.equal(chat.getState().chatKey, chatKey);

        const sending = chat.sendMessage("What's your refund policy?");
        // Optimistic: there at once, before the POST answers.
        const optimistic = chat.getState().messages.at(-1)!;
        assert.equal(optimistic.role, "user");
        assert.equal(optimistic.status, "sending");
        assert.equal(optimistic.content, "What's your refund policy?");
        assert.equal(optimistic.senderId, user);
        await sending;

        const reply = await until(() => chat.getState().messages.find((m) => m.role === "ai"), "the AI reply");
        assert.equal(reply.content, "Echo: What's your refund policy?");
        assert.equal(reply.status, "sent");
        await until(() => ended.length === 1, "agent_execution_ended");
        assert.equal(started.length, 1);
        offStarted();

        // The server's copy replaced the optimistic one: same id, once, with its seq.
        const mine = chat.getState().messages.filter((m) => m.id === optimistic.id);
        assert.equal(mine.length, 1);
        assert.equal(mine[0]!.status, "sent");
        assert.equal(typeof mine[0]!.seq, "number");
        assert.deepEqual(chat.getState().messages.map((m) => m.role), ["user", "ai"]);
        assert.equal(all.filter((e) => e.type === "message" && e.message?.role === "ai").length, 1);

        // loadChat: from the HTTP response, with the same two messages.
        const loaded = await chat.loadChat(chatKey);
        assert.equal(loaded.key, chatKey);
        assert.deepEqual(loaded.messages.map((m: ChatMessage) => m.content), ["What's your refund policy?", "Echo: What's your refund policy?"]);
        assert.equal(chat.getState().currentChat?.key, chatKey);
        assert.equal(chat.getState().messages.length, 2);

        // Typing: another client on the same chat sees it.
        const other = new ChatClient({ baseUrl: realtime(natter), orgId: "default", userId: uid("bob"), transport: "sse-fetch" });
        try {
          await other.connect();
          const loaded: ChatEvent[] = [];
          other.on("load_chat_response", (e) => loaded.push(e));
          await other.loadChat(chatKey);
          // The stream follows the chat once it has seen the load (it comes over the stream too).
          await until(() => loaded[0], "load_chat_response on the other stream");
          const typing: ChatEvent[] = [];
          other.on("typing", (e) => typing.push(e));
          other.on("stopped_typing", (e) => typing.push(e));
          chat.startTyping();
          await until(() => typing.find((e) => e.type === "typing"), "typing at the other client");
          chat.stopTyping();
          await until(() => typing.find((e) => e.type === "stopped_typing"), "stopped_typing at the other client");

          const endedEvents: ChatEvent[] = [];
          other.on("chat_ended", (e) => endedEvents.push(e));
          await chat.endChat("resolved");
          assert.equal(chat.getState().currentChat?.status, "closed");
          const e = await until(() => endedEvents[0], "chat_ended at the other client");
          assert.equal(e.data?.["reason"], "resolved");
          await until(() => other.getState().currentChat?.status === "closed", "other's currentChat closed");
        } finally {
          other.destroy();
        }
        assert.equal(chat.getState().error, null);
      } finally {
        chat.destroy();
        if (transport === "sse") delete g.EventSource;
      }
      assert.equal(chat.getState().connectionState, "disconnected");
    });
  }

  test("the transport is auto-selected: EventSource when there is one, else fetch", () => {
    const opts = { baseUrl: realtime(natter), orgId: "default", userId: "x" };
    assert.equal(new ChatClient(opts).getState().metrics.transportType, "sse-fetch");
    assert.equal(withEventSource(() => new ChatClient(opts)).getState().metrics.transportType, "sse");
  });

  test("bad input gets clear errors", async () => {
    assert.throws(() => new ChatClient({ baseUrl: "", orgId: "o", userId: "u" }), /baseUrl/);
    assert.throws(() => new ChatClient({ baseUrl: "http://x", orgId: "o", userId: "" }), /userId/);
    assert.throws(() => new ChatClient({ baseUrl: "http://x", orgId: "o", userId: "u", transport: "ws" as never }), /transport/);
    assert.throws(() => new ChatClient({ baseUrl: "http://x", orgId: "o", userId: "u", clientType: "admin" as never }), /clientType/);
    const chat = new ChatClient({ baseUrl: realtime(natter), orgId: "default", userId: uid("u") });
    await assert.rejects(chat.sendMessage("hi"), (e: Error & { error?: { code: string } }) => e.error?.code === "no_chat");
    assert.equal(chat.getState().error?.code, "no_chat");
    chat.clearError();
    assert.equal(chat.getState().error, null);
    await assert.rejects(chat.loadChat("no-such-chat"), (e: Error & { error?: { code: string; status?: number } }) => e.error?.code === "not_found" && e.error.status === 404);
    assert.equal(chat.getState().error?.code, "not_found");
    // A POST that fails marks the optimistic message failed.
    await chat.startChat();
    await assert.rejects(chat.sendMessage("x".repeat(300 * 1024)), (e: Error & { error?: { code: string } }) => e.error?.code === "too_large");
    assert.equal(chat.getState().messages.at(-1)?.status, "failed");
  });

  test("a stream that cannot connect gives up after retryConfig.maxRetries, and connect() still resolves", async () => {
    const errors: string[] = [];
    const chat = new ChatClient({
      baseUrl: "http://127.0.0.1:9/api/v1/chat",
      orgId: "default",
      userId: "u",
      transport: "sse-fetch",
      retryConfig: { maxRetries: 2, initialDelay: 20, jitter: false },
      onError: (e) => errors.push(e.code),
    });
    await chat.connect();
    assert.equal(chat.getState().connectionState, "disconnected");
    assert.equal(chat.getState().error?.code, "max_retries_exceeded");
    assert.deepEqual(errors, ["max_retries_exceeded"]);
  });

  test("StrictMode-style connect/disconnect/connect opens one stream", async () => {
    let opened = 0;
    const realFetch = globalThis.fetch;
    globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => {
      if (String(input).includes("/stream?")) opened += 1;
      return realFetch(input, init);
    }) as typeof fetch;
    const chat = new ChatClient({ baseUrl: realtime(natter), orgId: "default", userId: uid("u"), transport: "sse-fetch", getToken: async () => undefined });
    try {
      void chat.connect();
      chat.disconnect();
      await chat.connect();
      assert.equal(chat.getState().isConnected, true);
      assert.equal(opened, 1);
    } finally {
      chat.destroy();
      globalThis.fetch = realFetch;
    }
  });
});

describe("seed 002 ChatClient: reconnecting", () => {
  for (const transport of ["sse-fetch", "sse"] as const) {
    test(`${transport}: after a server restart the stream resumes with Last-Event-ID; transport_reconnected; nothing lost or doubled`, async () => {
      const tmp = tempDir();
      const upstream = await startFakeUpstream();
      let natter = await startNatter({ upstream, dataDir: tmp.dir });
      const port = natter.port;
      const g = globalThis as { EventSource?: unknown };
      if (transport === "sse") g.EventSource = NodeEventSource;
      const reconnects: ChatEvent[] = [];
      const chat = new ChatClient({
        baseUrl: realtime(natter),
        orgId: "default",
        userId: uid("ann"),
        transport,
        retryConfig: { initialDelay: 1500, maxDelay: 2000, jitter: false, maxRetries: 20 },
      });
      const bob = uid("bob");
      try {
        chat.on("transport_reconnected", (e) => reconnects.push(e));
        await chat.connect();
        const chatKey = await chat.startChat();
        await chat.sendMessage("first");
        await until(() => chat.getState().messages.find((m) => m.content === "Echo: first"), "the first reply");

        await stopNatter(natter);
        await until(() => chat.getState().connectionState === "reconnecting", "reconnecting");
        natter = await startNatter({ upstream, dataDir: tmp.dir, listen: `127.0.0.1:${port}` });
        // While ann's stream is still down, bob writes to the chat (and the AI answers him).
        const send = await fetch(`${realtime(natter)}/send`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ orgId: "default", chatKey, userId: bob, message: { content: "while you were away" } }),
        });
        assert.equal(send.status, 200);

        await until(() => reconnects.length === 1, "transport_reconnected", 15_000);
        assert.equal(reconnects[0]!.chatKey, chatKey);
        assert.ok(reconnects[0]!.data?.["lastEventId"], "resumed from a seq");
        await until(() => chat.getState().messages.find((m) => m.content === "Echo: while you were away"), "the missed reply", 15_000);
        await chat.sendMessage("after");
        await until(() => chat.getState().messages.find((m) => m.content === "Echo: after"), "the reply after the restart");
        const contents = chat.getState().messages.map((m) => m.content);
        assert.deepEqual(contents, ["first", "Echo: first", "while you were away", "Echo: while you were away", "after", "Echo: after"]);
        assert.equal(new Set(chat.getState().messages.map((m) => m.id)).size, 6);
        assert.equal(chat.getState().metrics.reconnectCount, 1);
        assert.equal(chat.getState().isConnected, true);
      } finally {
        chat.destroy();
        if (transport === "sse") delete g.EventSource;
        await stopNatter(natter);
        upstream.stop();
        tmp.cleanup();
      }
    });
  }
});

describe("seed 002 with auth on: getToken per connect and per send", () => {
  let upstream: Upstream;
  let natter: Natter;
  let tmp: { dir: string; cleanup(): void };
  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir, args: ["--jwt-secret", SECRET, "--jwt-leeway-secs", "0"] });
  });
  after(async () => {
    await stopNatter(natter);
    upstream?.stop();
    tmp?.cleanup();
  });

  test("getToken is awaited before every connect and every POST; an expired stream token is replaced on reconnect", async () => {
    const user = uid("ann");
    const issued: string[] = [];
    let lifetime = 2; // the first token expires in 2 s
    const chat = new ChatClient({
      baseUrl: realtime(natter),
      orgId: "acme",
      userId: user,
      transport: "sse-fetch",
      retryConfig: { initialDelay: 50, jitter: false },
      getToken: async () => {
        const t = mint("acme", user, lifetime);
        lifetime = 600;
        issued.push(t);
        return t;
      },
    });
    const reconnected: ChatEvent[] = [];
    chat.on("transport_reconnected", (e) => reconnected.push(e));
    try {
      await chat.connect();
      assert.equal(issued.length, 1);
      await chat.startChat();
      assert.equal(issued.length, 2);
      await chat.sendMessage("hello");
      assert.equal(issued.length, 3);
      await until(() => chat.getState().messages.find((m) => m.content === "Echo: hello"), "the reply");
      // The stream's token expires: the server ends it, the client reconnects with a new one.
      await until(() => reconnected.length === 1, "a reconnect with a fresh token", 10_000);
      assert.ok(issued.length >= 4);
      assert.equal(chat.getState().error, null, "token_expired is handled, not shown");
      assert.equal(chat.getState().metrics.lastError?.code, "token_expired");
      await chat.sendMessage("again");
      await until(() => chat.getState().messages.find((m) => m.content === "Echo: again"), "the second reply");
    } finally {
      chat.destroy();
    }
  });

  test("without a token the POSTs are refused as unauthorized, and a static token works", async () => {
    const user = uid("bob");
    const none = new ChatClient({ baseUrl: realtime(natter), orgId: "acme", userId: user, transport: "sse-fetch" });
    await assert.rejects(none.startChat(), (e: Error & { error?: { code: string; status?: number } }) => e.error?.code === "unauthorized" && e.error.status === 401);
    const fixed = new ChatClient({ baseUrl: realtime(natter), orgId: "acme", userId: user, token: mint("acme", user), transport: "sse-fetch" });
    try {
      await fixed.connect();
      assert.equal(fixed.getState().isConnected, true);
      const key = await fixed.startChat();
      assert.ok(key);
    } finally {
      fixed.destroy();
    }
  });

  test("history with a bearer token; without one every call resolves to its default and sets error", async () => {
    const user = uid("cy");
    const chat = new ChatClient({ baseUrl: realtime(natter), orgId: "acme", userId: user, token: mint("acme", user) });
    const key = await chat.startChat();
    const history = new ChatHistoryClient({ baseUrl: natter.url, orgId: "acme", getToken: () => mint("acme", user) });
    const list = await history.getChatHistory({ limit: 10 });
    assert.ok(list.chats.some((c) => c.chatKey === key));
    assert.equal(history.getState().error, null);

    const anonymous = new ChatHistoryClient({ baseUrl: natter.url, orgId: "acme" });
    assert.deepEqual(await anonymous.getChatHistory(), { chats: [], total: 0, hasMore: false });
    assert.match(anonymous.getState().error ?? "", /^unauthorized/);
    assert.equal(await anonymous.getChat(key), null);
    assert.equal(await anonymous.updateChat(key, { title: "x" }), false);
    assert.equal(await anonymous.deleteChat(key), false);
    assert.deepEqual(await anonymous.getChatsByUser(user), []);
    assert.equal(anonymous.lastError?.status, 401);
  });
});

describe("seed 002 ChatHistoryClient", () => {
  let upstream: Upstream;
  let natter: Natter;
  let tmp: { dir: string; cleanup(): void };
  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir });
  });
  after(async () => {
    await stopNatter(natter);
    upstream?.stop();
    tmp?.cleanup();
  });

  test("getChatHistory, getChat, updateChat, getChatsByUser, deleteChat", async () => {
    const user = uid("dee");
    const chat = new ChatClient({ baseUrl: realtime(natter), orgId: "default", userId: user });
    const key = await chat.startChat();
    await chat.sendMessage("Where is my parcel?");
    const history = new ChatHistoryClient({ baseUrl: natter.url, orgId: "default" });
    const states: boolean[] = [];
    history.subscribe((s) => states.push(s.loading));

    const list = await history.getChatHistory({ limit: 200, offset: 0 });
    assert.ok(list.total >= 1);
    assert.ok(list.chats.some((c) => c.chatKey === key));
    assert.deepEqual(states.slice(0, 2), [true, false]);

    const one = await history.getChat(key);
    assert.equal(one?.chatKey, key);
    assert.equal(one?.title, "Where is my parcel?");
    assert.equal(await history.updateChat(key, { title: "Parcel", pinned: true }), true);
    const renamed = await history.getChat(key);
    assert.equal(renamed?.title, "Parcel");
    assert.equal(renamed?.pinned, true);
    const mine = await history.getChatsByUser(user);
    assert.deepEqual(mine.map((c) => c.chatKey), [key]);
    assert.equal(await history.deleteChat(key), true);
    assert.equal(history.getState().error, null);
    assert.equal(await history.getChat(key), null);
    assert.match(history.getState().error ?? "", /^not_found/);
    // A later success clears the error.
    await history.getChatHistory();
    assert.equal(history.getState().error, null);
  });

  test("a server that is not there: defaults, error set, nothing thrown", async () => {
    const history = new ChatHistoryClient({ baseUrl: "http://127.0.0.1:9", orgId: "default" });
    assert.deepEqual(await history.getChatHistory(), { chats: [], total: 0, hasMore: false });
    assert.match(history.getState().error ?? "", /^network_error/);
    assert.equal(await history.getChat("k"), null);
    assert.equal(await history.updateChat("k", { pinned: true }), false);
    assert.equal(await history.deleteChat("k"), false);
    assert.deepEqual(await history.getChatsByUser("u"), []);
    assert.equal(await history.getChat(""), null);
    assert.match(history.getState().error ?? "", /^invalid_field/);
    assert.equal(history.getState().loading, false);
    assert.throws(() => new ChatHistoryClient({ baseUrl: "", orgId: "o" }), /baseUrl/);
  });
});
