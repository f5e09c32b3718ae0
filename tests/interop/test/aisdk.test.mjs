// The Vercel AI SDK faces (CONTRACT §2), driven with the stock `ai` package's transports:
// DefaultChatTransport (POST /api/chat, GET /api/chat/{id}/stream, POST /api/chat/{id}/stop)
// and WebSocketChatTransport (GET /api/chat/ws, with the `ws` package since Node 20 has no
// global WebSocket). Stored results are checked through history REST and the Socket.IO face.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { DefaultChatTransport, WebSocketChatTransport, readUIMessageStream } from "ai";
import { WebSocket } from "ws";
import { connect, joinTokens, sleep, startStack, uid } from "../lib/harness.mjs";

// ------------------------------------------------------------------ helpers

/** The text the fake upstream streams for `[fake:tokens n=N]` / `[fake:drip n=N]`. */
const numbered = (n) => Array.from({ length: n }, (_, i) => `t${i} `).join("");

/** A UIMessage from the user. */
const userMsg = (text, id = uid("u")) => ({ id, role: "user", parts: [{ type: "text", text }] });

/** The concatenated `text-delta`s of a chunk list. */
const textOf = (chunks) => chunks.filter((c) => c.type === "text-delta").map((c) => c.delta).join("");
const typesOf = (chunks) => chunks.map((c) => c.type);

/**
 * Reads a ReadableStream of UI chunks in the background. `done` resolves with every chunk
 * once the stream ends (or rejects with its error); `until` waits for a condition on what
 * has arrived so far.
 */
function drain(stream) {
  const chunks = [];
  const times = []; // arrival time of each chunk
  const reader = stream.getReader();
  const done = (async () => {
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) return chunks;
      chunks.push(value);
      times.push(Date.now());
    }
  })();
  done.catch(() => {}); // observed by the caller
  return {
    chunks,
    times,
    done,
    async until(pred, timeoutMs = 10000, what = "chunks") {
      const deadline = Date.now() + timeoutMs;
      while (!pred(chunks)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(typesOf(chunks))}`);
        await sleep(5);
      }
    },
    deltas: () => chunks.filter((c) => c.type === "text-delta").length,
  };
}

/** Fails if `promise` has not settled in `ms`. */
async function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not done in ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until `fn()` returns a truthy value. */
async function eventually(fn, timeoutMs = 10000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** History REST: a chat's stored messages (superseded replies left out). */
async function history(url, chatId, orgId = "default") {
  const res = await fetch(`${url}/api/v1/chats/${encodeURIComponent(chatId)}/messages?orgId=${orgId}&after=0`);
  assert.equal(res.status, 200, `history of ${chatId}: ${res.status}`);
  return (await res.json()).messages;
}

/** Checks the UI Message Stream shape of one finished (`finish`) turn; returns its text. */
function assertFinishedTurn(chunks, expectedText) {
  const types = typesOf(chunks);
  assert.equal(types[0], "start", `first chunk: ${JSON.stringify(types)}`);
  assert.equal(typeof chunks[0].messageId, "string");
  assert.ok(chunks[0].messageId.length > 0);
  assert.deepEqual(types.slice(1, 3), ["start-step", "text-start"]);
  assert.deepEqual(types.slice(-3), ["text-end", "finish-step", "finish"]);
  assert.ok(types.slice(3, -3).every((t) => t === "text-delta"), `only deltas in the middle: ${JSON.stringify(types)}`);
  const textIds = new Set(chunks.filter((c) => c.type.startsWith("text-")).map((c) => c.id));
  assert.equal(textIds.size, 1, "one text part");
  assert.equal(types.filter((t) => t === "error" || t === "abort").length, 0);
  const text = textOf(chunks);
  if (expectedText !== undefined) assert.equal(text, expectedText);
  return text;
}

/** `sendMessages` for a new user message (`trigger: "submit-message"`) on `transport`. */
const submitVia = (transport, chatId, messages, extra = {}) =>
  transport.sendMessages({ chatId, messages, trigger: "submit-message", messageId: undefined, abortSignal: undefined, ...extra });

// ================================================================== HTTP: DefaultChatTransport

describe("DefaultChatTransport over HTTP + SSE", () => {
  let stack;
  let url;
  let transport;
  before(async () => {
    stack = await startStack();
    url = stack.natter.url;
    transport = new DefaultChatTransport({ api: `${url}/api/chat`, body: { userId: "web" } });
  });
  after(() => stack?.stop());

  const send = (chatId, messages, extra = {}) => submitVia(transport, chatId, messages, extra);

  test("1. sendMessages streams start … finish; deltas join to the stored reply", async () => {
    const chatId = uid("ai-send");
    const user = userMsg("[fake:tokens n=25] hello");
    const stream = await send(chatId, [user]);
    const [raw, forUi] = stream.tee();
    // The package's own assembler builds the same message from the chunks.
    const uiDone = (async () => {
      let last;
      for await (const m of readUIMessageStream({ stream: forUi })) last = m;
      return last;
    })();
    const chunks = await within(drain(raw).done, 10000, "send stream");
    const text = assertFinishedTurn(chunks, numbered(25));
    const messageId = chunks[0].messageId;
    const finish = chunks.at(-1);
    assert.equal(finish.finishReason, "stop");
    assert.equal(finish.messageMetadata.finishReason, "stop");
    assert.equal(typeof finish.messageMetadata.seq, "number");
    assert.equal(finish.messageMetadata.usage.completionTokens, 25);

    const ui = await uiDone;
    assert.equal(ui.id, messageId);
    assert.equal(ui.role, "assistant");
    assert.deepEqual(ui.parts.filter((p) => p.type === "text").map((p) => p.text), [text]);

    // Stored: the user message under the client's id, then the reply under start.messageId.
    const msgs = await history(url, chatId);
    assert.deepEqual(msgs.map((m) => [m.role, m.id]), [["user", user.id], ["ai", messageId]]);
    assert.equal(msgs[0].content, "[fake:tokens n=25] hello");
    assert.equal(msgs[0].senderId, "web");
    assert.equal(msgs[1].content, text);
    assert.equal(msgs[1].finishReason, "stop");
    assert.equal(msgs[1].seq, finish.messageMetadata.seq);

    // A retried POST of the same user message replays the stored reply; nothing new is stored.
    await stack.upstream.reset();
    const again = await within(drain(await send(chatId, [user])).done, 10000, "retried send");
    assertFinishedTurn(again, text);
    assert.equal(again[0].messageId, messageId);
    assert.equal((await stack.upstream.stats()).requests, 0, "a retried POST does not call the model");
    assert.equal((await history(url, chatId)).length, 2);
  });

  test("1b. a turn that fails mid-stream keeps its partial text and ends with an error chunk", async () => {
    const chatId = uid("ai-fail");
    const chunks = await within(drain(await send(chatId, [userMsg("[fake:cut after=4]")])).done, 10000, "failed turn");
    const types = typesOf(chunks);
    assert.deepEqual(types.slice(0, 3), ["start", "start-step", "text-start"]);
    assert.deepEqual(types.slice(-2), ["text-end", "error"]);
    assert.equal(types.filter((t) => t === "finish" || t === "abort").length, 0);
    assert.equal(textOf(chunks), "t0 t1 t2 t3 ");
    assert.match(chunks.at(-1).errorText, /^upstream_cut: ./);
    // The turn is over: nothing to resume.
    assert.equal(await transport.reconnectToStream({ chatId }), null);
  });

  test("2. reconnectToStream mid-turn replays from start with the same messageId; idle → null", async () => {
    const chatId = uid("ai-resume");
    const full = numbered(40);
    const orig = drain(await send(chatId, [userMsg("[fake:drip n=40 delay_ms=25]")]));
    await orig.until((c) => orig.deltas() >= 3, 10000, "3 deltas");
    const messageId = orig.chunks[0].messageId;

    const resumedStream = await transport.reconnectToStream({ chatId });
    assert.ok(resumedStream, "a running turn is resumable");
    const resumed = drain(resumedStream);
    const [a, b] = await within(Promise.all([orig.done, resumed.done]), 15000, "both streams");
    assertFinishedTurn(a, full);
    assertFinishedTurn(b, full);
    assert.equal(b[0].type, "start");
    assert.equal(b[0].messageId, messageId, "the replay is the same assistant message");
    const stored = (await history(url, chatId)).at(-1);
    assert.equal(stored.id, messageId);
    assert.equal(stored.content, full);

    // Nothing runs any more, a never-seen chat has nothing, and another org sees nothing.
    assert.equal(await transport.reconnectToStream({ chatId }), null);
    assert.equal(await transport.reconnectToStream({ chatId: uid("ai-never") }), null);

    const retried = userMsg("[fake:drip n=40 delay_ms=25]");
    const again = drain(await send(chatId, [retried]));
    await again.until(() => again.deltas() >= 2, 10000, "2 deltas");
    const otherOrg = new DefaultChatTransport({ api: `${url}/api/chat?orgId=${uid("org")}` });
    assert.equal(await otherOrg.reconnectToStream({ chatId }), null, "a running turn of another org is not visible");
    // A retried POST of the running turn's user message follows it from its start.
    const retry = await within(drain(await send(chatId, [retried])).done, 10000, "retried POST");
    const second = await within(again.done, 10000, "second turn");
    assertFinishedTurn(second, full);
    assertFinishedTurn(retry, full);
    assert.equal(retry[0].messageId, second[0].messageId);
    assert.equal((await history(url, chatId)).length, 4, "the retry stored nothing");

    // A chat id the SDK must percent-encode in the resume path (`/`, space, `?`, `#`, non-ASCII).
    const odd = uid("room 1/ä?x#y");
    const oddTurn = drain(await send(odd, [userMsg("[fake:drip n=20 delay_ms=20]")]));
    await oddTurn.until(() => oddTurn.deltas() >= 2, 10000, "2 deltas");
    const oddResumed = await transport.reconnectToStream({ chatId: odd });
    assert.ok(oddResumed, "resume of an encoded chat id");
    const [o1, o2] = await within(Promise.all([oddTurn.done, drain(oddResumed).done]), 10000, "encoded id streams");
    assertFinishedTurn(o2, numbered(20));
    assert.equal(o2[0].messageId, o1[0].messageId);
    assert.equal((await history(url, odd)).at(-1).id, o1[0].messageId);
  });

  test("2b. closing the POST response does not stop the turn: it stays resumable and completes", async () => {
    const chatId = uid("ai-drop");
    const full = numbered(30);
    const ac = new AbortController();
    const orig = drain(await send(chatId, [userMsg("[fake:drip n=30 delay_ms=25]")], { abortSignal: ac.signal }));
    await orig.until(() => orig.deltas() >= 3, 10000, "3 deltas");
    const messageId = orig.chunks[0].messageId;
    ac.abort();
    await assert.rejects(orig.done, (e) => e.name === "AbortError");
    await sleep(100);
    const resumed = await transport.reconnectToStream({ chatId });
    assert.ok(resumed, "the turn is still running after the client went away");
    const chunks = await within(drain(resumed).done, 10000, "resumed stream");
    assertFinishedTurn(chunks, full);
    assert.equal(chunks[0].messageId, messageId);
    const stored = (await history(url, chatId)).at(-1);
    assert.equal(stored.id, messageId);
    assert.equal(stored.finishReason, "stop");
    assert.equal(stored.content, full);
  });

  test("2c. a second message queues: its stream is silent until the first turn ends; resume follows the running one", async () => {
    const chatId = uid("ai-queue");
    const a = drain(await send(chatId, [userMsg("[fake:drip n=20 delay_ms=25]")]));
    await a.until(() => a.deltas() >= 2, 10000, "2 deltas");
    const b = drain(await send(chatId, [userMsg("[fake:tokens n=3] next")]));
    const resumed = await transport.reconnectToStream({ chatId });
    assert.ok(resumed);
    const [ra, rb, rr] = await within(Promise.all([a.done, b.done, drain(resumed).done]), 10000, "both turns");
    assertFinishedTurn(ra, numbered(20));
    assertFinishedTurn(rb, numbered(3));
    assert.equal(rr[0].messageId, ra[0].messageId, "resume follows the running turn, not the queued one");
    assertFinishedTurn(rr, numbered(20));
    assert.notEqual(rb[0].messageId, ra[0].messageId);
    // Nothing for the queued turn while the first one streams (its deltas come 25 ms apart; the
    // two responses are separate connections, so only the last few ms may interleave).
    const deltaTimes = ra.map((c, i) => (c.type === "text-delta" ? a.times[i] : null)).filter((t) => t !== null);
    assert.ok(deltaTimes.length >= 5);
    assert.ok(b.times[0] > deltaTimes.at(-3), `queued stream started ${deltaTimes.at(-1) - b.times[0]} ms before the first turn's last delta`);
    const msgs = await history(url, chatId);
    assert.deepEqual(msgs.map((m) => m.role), ["user", "user", "ai", "ai"]);
    assert.deepEqual(msgs.slice(2).map((m) => m.id), [ra[0].messageId, rb[0].messageId]);
  });

  test("3. stop while a resumed stream is open: it ends with abort, the partial reply is stored", async () => {
    const chatId = uid("ai-stop");
    const full = numbered(200);
    const orig = drain(await send(chatId, [userMsg("[fake:drip n=200 delay_ms=20]")]));
    await orig.until(() => orig.deltas() >= 2, 10000, "2 deltas");
    const resumed = drain(await transport.reconnectToStream({ chatId }));
    await resumed.until(() => resumed.deltas() >= 5, 10000, "5 resumed deltas");

    const res = await fetch(`${url}/api/chat/${encodeURIComponent(chatId)}/stop`, { method: "POST" });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.ok, true);
    assert.equal(typeof body.requestId, "string");

    const [o, r] = await within(Promise.all([orig.done, resumed.done]), 10000, "streams after stop");
    for (const chunks of [o, r]) {
      const types = typesOf(chunks);
      assert.equal(types.at(-1), "abort", `ends with abort: ${JSON.stringify(types.slice(-4))}`);
      assert.equal(types.filter((t) => t === "error" || t === "finish").length, 0);
      assert.equal(chunks.find((c) => c.type === "message-metadata")?.messageMetadata.finishReason, "aborted");
    }
    assert.equal(r[0].messageId, o[0].messageId);
    const partial = textOf(r);
    assert.ok(partial.length > 0 && partial.length < full.length, `partial: ${partial.length} of ${full.length}`);
    assert.ok(full.startsWith(partial));
    assert.equal(textOf(o), partial);

    const stored = (await history(url, chatId)).filter((m) => m.role === "ai");
    assert.equal(stored.length, 1);
    assert.equal(stored[0].id, o[0].messageId);
    assert.equal(stored[0].finishReason, "aborted");
    assert.equal(stored[0].content, partial);

    // Nothing left to stop; an unknown chat is 404.
    const idle = await fetch(`${url}/api/chat/${encodeURIComponent(chatId)}/stop`, { method: "POST" });
    assert.equal(idle.status, 409);
    assert.equal((await idle.json()).error.code, "no_active_turn");
    const unknown = await fetch(`${url}/api/chat/${uid("ai-nochat")}/stop`, { method: "POST" });
    assert.equal(unknown.status, 404);
    assert.equal((await unknown.json()).error.code, "not_found");
  });

  test("4. regenerate-message replaces the reply: new messageId streamed, old one gone from history", async () => {
    const chatId = uid("ai-regen");
    const user = userMsg("[fake:tokens n=6] first");
    const first = await within(drain(await send(chatId, [user])).done, 10000, "first turn");
    const oldId = first[0].messageId;
    const oldText = assertFinishedTurn(first, numbered(6));
    const assistant = { id: oldId, role: "assistant", parts: [{ type: "text", text: oldText }] };
    assert.deepEqual((await history(url, chatId)).map((m) => m.id), [user.id, oldId]);

    // What Chat.regenerate({messageId}) sends: the history without that assistant message.
    const stream = await transport.sendMessages({ chatId, messages: [user], trigger: "regenerate-message", messageId: oldId, abortSignal: undefined });
    const [raw, forUi] = stream.tee();
    const uiDone = (async () => {
      let last;
      for await (const m of readUIMessageStream({ stream: forUi })) last = m;
      return last;
    })();
    const second = await within(drain(raw).done, 10000, "regenerated turn");
    const newText = assertFinishedTurn(second, numbered(6));
    const newId = second[0].messageId;
    assert.notEqual(newId, oldId);
    assert.equal((await uiDone).id, newId);

    const msgs = await history(url, chatId);
    assert.deepEqual(msgs.map((m) => [m.role, m.id]), [["user", user.id], ["ai", newId]]);
    assert.equal(msgs[1].content, newText);
    assert.ok(!msgs.some((m) => m.id === oldId), "the superseded reply is left out");

    // Regenerate with no messageId answers the latest again; the chat keeps one reply.
    const third = await within(
      drain(await transport.sendMessages({ chatId, messages: [user], trigger: "regenerate-message", messageId: undefined, abortSignal: undefined })).done,
      10000,
      "regenerate latest",
    );
    assertFinishedTurn(third, numbered(6));
    const thirdId = third[0].messageId;
    assert.ok(thirdId !== newId && thirdId !== oldId);
    assert.deepEqual((await history(url, chatId)).map((m) => m.id), [user.id, thirdId]);

    // Regenerating a message the chat does not have is refused before streaming.
    await assert.rejects(
      transport.sendMessages({ chatId, messages: [user, assistant], trigger: "regenerate-message", messageId: "no-such-message", abortSignal: undefined }),
      (e) => e.statusCode === 404 && JSON.parse(e.responseBody).error.code === "not_found",
    );
  });

  test("5. cross-face: a Socket.IO member sees the HTTP user message and the same reply", async () => {
    const chatId = uid("ai-cross");
    const member = await connect(url, { query: { userId: "sock" } });
    try {
      const join = await member.emit("chat:join", { chatId });
      assert.notEqual(join.ok, false, JSON.stringify(join));
      const user = userMsg("[fake:drip n=15 delay_ms=10] cross");
      const chunks = await within(drain(await send(chatId, [user])).done, 10000, "send stream");
      const text = assertFinishedTurn(chunks, numbered(15));
      const messageId = chunks[0].messageId;

      const cm = await member.waitFor("chat:message", (m) => m.messageId === user.id);
      assert.equal(cm.chatId, chatId);
      assert.equal(cm.text, "[fake:drip n=15 delay_ms=10] cross");
      assert.equal(cm.userId, "web");
      assert.equal(cm.role, "user");

      const aiMsg = await member.waitFor("ai:message", (m) => m.messageId === messageId);
      assert.equal(aiMsg.text, text);
      assert.equal(aiMsg.chatId, chatId);
      assert.equal(aiMsg.finishReason, "stop");
      assert.equal(aiMsg.seq, chunks.at(-1).messageMetadata.seq);
      const tokens = member.of("ai:token").filter((t) => t.requestId === aiMsg.requestId);
      assert.ok(tokens.length >= 1);
      assert.ok(tokens.every((t) => t.messageId === messageId));
      assert.equal(joinTokens(tokens), text);
    } finally {
      member.close();
    }
  });
});

// ================================================================== WebSocketChatTransport

describe("WebSocketChatTransport over /api/chat/ws", () => {
  let stack;
  let url;
  before(async () => {
    stack = await startStack();
    url = stack.natter.url;
  });
  after(() => stack?.stop());

  const wsTransport = () => new WebSocketChatTransport({ url: `${url}/api/chat/ws`, webSocket: WebSocket, body: { userId: "wsu" } });
  const send = submitVia;

  test("6a. sendMessages gets the whole reply; two chats stream concurrently on one socket", async () => {
    const t = wsTransport();
    try {
      const chatId = uid("ws-one");
      const user = userMsg("[fake:tokens n=20] over ws");
      const chunks = await within(drain(await send(t, chatId, [user])).done, 10000, "ws send");
      const text = assertFinishedTurn(chunks, numbered(20));
      const msgs = await history(url, chatId);
      assert.deepEqual(msgs.map((m) => [m.role, m.id]), [["user", user.id], ["ai", chunks[0].messageId]]);
      assert.equal(msgs[1].content, text);
      assert.equal(msgs[0].senderId, "wsu");

      // Two overlapping turns on the same transport (one socket), each with its own text.
      const c1 = uid("ws-multi");
      const c2 = uid("ws-multi");
      const [s1, s2] = await Promise.all([
        send(t, c1, [userMsg("[fake:echo delay_ms=15] alpha beta gamma delta epsilon zeta")]),
        send(t, c2, [userMsg("[fake:echo delay_ms=15] one two three four five six seven")]),
      ]);
      const d1 = drain(s1);
      const d2 = drain(s2);
      const [r1, r2] = await within(Promise.all([d1.done, d2.done]), 10000, "concurrent ws sends");
      assertFinishedTurn(r1, "Echo: alpha beta gamma delta epsilon zeta");
      assertFinishedTurn(r2, "Echo: one two three four five six seven");
      assert.notEqual(r1[0].messageId, r2[0].messageId);
      assert.equal((await history(url, c1)).at(-1).id, r1[0].messageId);
      assert.equal((await history(url, c2)).at(-1).id, r2[0].messageId);

      // Identity from the socket URL's query when the frame body names none.
      const q = new WebSocketChatTransport({ url: `${url}/api/chat/ws`, webSocket: WebSocket, params: { userId: "qq" } });
      try {
        const c3 = uid("ws-query");
        assertFinishedTurn(await within(drain(await send(q, c3, [userMsg("hi")])).done, 10000, "query identity"), "Echo: hi");
        assert.equal((await history(url, c3))[0].senderId, "qq");
      } finally {
        q.close();
      }
    } finally {
      t.close();
    }
  });

  test("6b. reconnectToStream mid-turn replays from start with the same messageId; idle → null", async () => {
    const t = wsTransport();
    const other = wsTransport(); // another tab, on its own socket
    try {
      const chatId = uid("ws-resume");
      const full = numbered(40);
      const orig = drain(await send(t, chatId, [userMsg("[fake:drip n=40 delay_ms=25]")]));
      await orig.until(() => orig.deltas() >= 3, 10000, "3 deltas");
      const messageId = orig.chunks[0].messageId;

      const same = drain(await within(t.reconnectToStream({ chatId }), 5000, "resume on the same socket"));
      const tab = drain(await within(other.reconnectToStream({ chatId }), 5000, "resume on another socket"));
      const [a, b, c] = await within(Promise.all([orig.done, same.done, tab.done]), 15000, "all streams");
      for (const chunks of [a, b, c]) {
        assertFinishedTurn(chunks, full);
        assert.equal(chunks[0].messageId, messageId);
      }

      assert.equal(await within(t.reconnectToStream({ chatId }), 5000, "idle resume"), null);
      assert.equal(await within(other.reconnectToStream({ chatId: uid("ws-never") }), 5000, "unknown chat resume"), null);

      // Closing the socket mid-turn stops streaming, not the turn: a new socket resumes it.
      const chat2 = uid("ws-close");
      const dropped = drain(await send(t, chat2, [userMsg("[fake:drip n=30 delay_ms=25]")]));
      await dropped.until(() => dropped.deltas() >= 3, 10000, "3 deltas");
      t.close();
      await assert.rejects(dropped.done, /closed/);
      const later = drain(await within(other.reconnectToStream({ chatId: chat2 }), 5000, "resume after close"));
      const replay = await within(later.done, 10000, "replay after close");
      assertFinishedTurn(replay, numbered(30));
      assert.equal(replay[0].messageId, dropped.chunks[0].messageId);
      assert.equal((await history(url, chat2)).at(-1).finishReason, "stop");
    } finally {
      t.close();
      other.close();
    }
  });

  test("6c. aborting sendMessages stops the turn: the stored reply is partial with finishReason aborted", async () => {
    const t = wsTransport();
    try {
      const chatId = uid("ws-abort");
      const full = numbered(200);
      const ac = new AbortController();
      const d = drain(await send(t, chatId, [userMsg("[fake:drip n=200 delay_ms=20]")], { abortSignal: ac.signal }));
      await d.until(() => d.deltas() >= 5, 10000, "5 deltas");
      ac.abort();
      await within(d.done, 5000, "the aborted stream closes");

      const reply = await eventually(
        async () => (await history(url, chatId)).find((m) => m.role === "ai"),
        5000,
        "the stopped reply in history",
      );
      assert.equal(reply.finishReason, "aborted");
      assert.equal(reply.id, d.chunks[0].messageId);
      assert.ok(reply.content.length > 0 && reply.content.length < full.length, `partial: ${reply.content.length}`);
      assert.ok(full.startsWith(reply.content));
      assert.ok(reply.content.startsWith(textOf(d.chunks)));

      // The turn is really over: nothing to resume, nothing to stop.
      assert.equal(await within(t.reconnectToStream({ chatId }), 5000, "resume after abort"), null);
      const stop = await fetch(`${url}/api/chat/${encodeURIComponent(chatId)}/stop`, { method: "POST" });
      assert.equal(stop.status, 409);

      // POST …/stop also ends a WebSocket request's stream, with abort.
      const chat2 = uid("ws-stop");
      const w = drain(await send(t, chat2, [userMsg("[fake:drip n=200 delay_ms=20]")]));
      await w.until(() => w.deltas() >= 3, 10000, "3 deltas");
      const res = await fetch(`${url}/api/chat/${encodeURIComponent(chat2)}/stop`, { method: "POST" });
      assert.equal(res.status, 200);
      const chunks = await within(w.done, 5000, "ws stream after stop");
      assert.equal(chunks.at(-1).type, "abort");
      assert.equal(typesOf(chunks).filter((x) => x === "error" || x === "finish").length, 0);
      const stored = (await history(url, chat2)).at(-1);
      assert.equal(stored.finishReason, "aborted");
      assert.equal(stored.content, textOf(chunks));
    } finally {
      t.close();
    }
  });
});

// ================================================================== the node's turn limit

describe("a turn waiting for the node's turn limit (--max-concurrent-turns 1)", () => {
  let stack;
  let transport;
  before(async () => {
    stack = await startStack({ args: ["--max-concurrent-turns", "1"] });
    transport = new DefaultChatTransport({ api: `${stack.natter.url}/api/chat`, body: { userId: "web" } });
  });
  after(() => stack?.stop());

  const send = (chatId, messages, extra = {}) => submitVia(transport, chatId, messages, extra);

  test("2d. reconnectToStream of a chat whose turn is queued, not started, follows that turn once it starts", async () => {
    const busy = uid("ai-busy");
    const waiting = uid("ai-waiting");
    const first = drain(await send(busy, [userMsg("[fake:drip n=20 delay_ms=25]")]));
    await first.until(() => first.deltas() >= 2, 10000, "2 deltas of the busy chat");
    // The second chat's reply waits for the only slot; its page reloads meanwhile.
    const ac = new AbortController();
    const dropped = drain(await send(waiting, [userMsg("[fake:tokens n=3] queued")], { abortSignal: ac.signal }));
    ac.abort();
    await assert.rejects(dropped.done, (e) => e.name === "AbortError");
    assert.equal(dropped.chunks.length, 0, "nothing streamed for the queued turn yet");
    const resumedStream = await within(transport.reconnectToStream({ chatId: waiting }), 5000, "resume of the queued chat");
    assert.ok(resumedStream, "a queued turn is resumable, not 204");
    const resumed = drain(resumedStream);
    // The WebSocket transport's resume is the same: it follows the queued turn too.
    const ws = new WebSocketChatTransport({ url: `${stack.natter.url}/api/chat/ws`, webSocket: WebSocket, body: { userId: "web" } });
    try {
      const wsStream = await within(ws.reconnectToStream({ chatId: waiting }), 5000, "WebSocket resume of the queued chat");
      assert.ok(wsStream, "a queued turn is resumable over the WebSocket transport");
      const wsResumed = drain(wsStream);
      const [a, r, w] = await within(Promise.all([first.done, resumed.done, wsResumed.done]), 15000, "all turns");
      assertFinishedTurn(a, numbered(20));
      assertFinishedTurn(r, numbered(3));
      assertFinishedTurn(w, numbered(3));
      assert.equal(w[0].messageId, r[0].messageId);
    } finally {
      ws.close();
    }
    const [a, r] = [await first.done, await resumed.done];
    // It starts when the busy chat's turn is over (separate connections: the last few ms may
    // interleave, as in 2c).
    const busyDeltas = a.map((c, i) => (c.type === "text-delta" ? first.times[i] : null)).filter((t) => t !== null);
    assert.ok(resumed.times[0] > busyDeltas.at(-3), "the resumed stream waited for the slot");
    const stored = (await history(stack.natter.url, waiting)).at(-1);
    assert.equal(stored.id, r[0].messageId, "the resumed stream is the stored reply");
    // Nothing open any more: nothing to resume.
    assert.equal(await transport.reconnectToStream({ chatId: waiting }), null);
  });

  test("2e. stop on a chat whose turn waits for the slot stops that turn: its resumed stream ends with abort", async () => {
    const busy = uid("ai-busy");
    const waiting = uid("ai-waiting");
    const first = drain(await send(busy, [userMsg("[fake:drip n=20 delay_ms=25]")]));
    await first.until(() => first.deltas() >= 2, 10000, "2 deltas of the busy chat");
    const queued = drain(await send(waiting, [userMsg("[fake:tokens n=3] queued")]));
    const resumed = drain(await within(transport.reconnectToStream({ chatId: waiting }), 5000, "resume of the queued chat"));
    const res = await fetch(`${stack.natter.url}/api/chat/${encodeURIComponent(waiting)}/stop`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userId: "web" }),
    });
    assert.equal(res.status, 200, "a turn waiting for the slot is stoppable");
    const body = await res.json();
    assert.equal(body.ok, true);
    const [q, r] = await within(Promise.all([queued.done, resumed.done]), 10000, "streams after stop");
    for (const chunks of [q, r]) {
      assert.equal(typesOf(chunks).at(-1), "abort", `ends with abort: ${JSON.stringify(typesOf(chunks))}`);
      assert.equal(textOf(chunks), "", "the stopped turn never streamed");
    }
    // The busy chat's turn is not touched, and the stopped one never runs.
    assertFinishedTurn(await within(first.done, 10000, "busy turn"), numbered(20));
    await sleep(200);
    const stored = (await history(stack.natter.url, waiting)).filter((m) => m.role === "ai");
    assert.equal(stored.length, 1, JSON.stringify(stored));
    assert.equal(stored[0].finishReason, "aborted");
    assert.equal(stored[0].content, "");
    assert.equal(stored[0].id, r[0].messageId, "the resumed stream's message is the stored one");
    const idle = await fetch(`${stack.natter.url}/api/chat/${encodeURIComponent(waiting)}/stop`, { method: "POST" });
    assert.equal(idle.status, 409, "nothing left to stop");
  });
});

// ================================================================== bad input

describe("bad input on POST /api/chat", () => {
  const LIMIT = 65536;
  let stack;
  let url;
  before(async () => {
    stack = await startStack({ args: ["--max-payload-bytes", String(LIMIT)] });
    url = stack.natter.url;
  });
  after(() => stack?.stop());

  const ok = () => ({ id: uid("bad"), messages: [userMsg("hello")], trigger: "submit-message" });
  const CASES = [
    { name: "malformed JSON", raw: '{"id": "x", "messages": [', code: "invalid_payload" },
    { name: "JSON array body", raw: "[]", code: "invalid_payload" },
    { name: "messages is a string", body: { ...ok(), messages: "x" }, code: "invalid_field" },
    { name: "id is an object", body: { ...ok(), id: {} }, code: "invalid_field" },
    { name: "missing id", body: (({ id, ...rest }) => rest)(ok()), code: "missing_field" },
    { name: "missing messages", body: (({ messages, ...rest }) => rest)(ok()), code: "missing_field" },
    { name: "empty messages", body: { ...ok(), messages: [] }, code: "invalid_field" },
    // (An assistant message last is the client-tool continuation: see tools-http.test.mjs.)
    { name: "last message is a system message", body: { ...ok(), messages: [userMsg("hi"), { id: "a1", role: "system", parts: [{ type: "text", text: "yo" }] }] }, code: "invalid_field" },
    { name: "unknown trigger", body: { ...ok(), trigger: "resume-stream" }, code: "invalid_field" },
    { name: "trigger is a number", body: { ...ok(), trigger: 7 }, code: "invalid_field" },
    { name: "body over the limit", body: { ...ok(), messages: [userMsg("x".repeat(100 * 1024))] }, code: "too_large", status: 413 },
  ];

  test("7. each bad request is a 4xx {error:{code,message}}; the server keeps answering", async () => {
    for (const c of CASES) {
      const res = await fetch(`${url}/api/chat`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: c.raw ?? JSON.stringify(c.body),
      });
      assert.ok(res.status >= 400 && res.status < 500, `${c.name}: status ${res.status}`);
      if (c.status) assert.equal(res.status, c.status, c.name);
      assert.match(res.headers.get("content-type") ?? "", /application\/json/, c.name);
      const body = await res.json();
      assert.equal(body.error?.code, c.code, `${c.name}: ${JSON.stringify(body)}`);
      assert.equal(typeof body.error.message, "string", c.name);
      assert.ok(body.error.message.length > 0, c.name);
    }

    // The transport surfaces the same refusal as an APICallError with the JSON body.
    const transport = new DefaultChatTransport({ api: `${url}/api/chat` });
    await assert.rejects(
      transport.sendMessages({ chatId: uid("bad"), messages: [{ id: "a", role: "system", parts: [] }], trigger: "submit-message", abortSignal: undefined }),
      (e) => e.statusCode === 400 && JSON.parse(e.responseBody).error.code === "invalid_field",
    );

    // Over WebSocket the same refusal is an `error` frame: the request's stream errors.
    const ws = new WebSocketChatTransport({ url: `${url}/api/chat/ws`, webSocket: WebSocket });
    try {
      const refused = await ws.sendMessages({ chatId: uid("bad"), messages: [{ id: "a", role: "system", parts: [] }], trigger: "submit-message", abortSignal: undefined });
      await assert.rejects(within(drain(refused).done, 5000, "ws refusal"), /^Error: invalid_field: /);
      const fine = await ws.sendMessages({ chatId: uid("bad"), messages: [userMsg("[fake:tokens n=2]")], trigger: "submit-message", abortSignal: undefined });
      assertFinishedTurn(await within(drain(fine).done, 5000, "ws after refusal"), numbered(2));
    } finally {
      ws.close();
    }

    // Nothing half-applied, and a normal request still works.
    const chatId = uid("after-bad");
    const chunks = await within(
      drain(await transport.sendMessages({ chatId, messages: [userMsg("[fake:tokens n=4] still here")], trigger: "submit-message", abortSignal: undefined })).done,
      10000,
      "send after bad input",
    );
    assertFinishedTurn(chunks, numbered(4));
    assert.equal((await history(url, chatId)).length, 2);
  });
});
