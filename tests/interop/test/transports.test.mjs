// Transports, handshake joins, event-name discovery and remapping, and traceId echo on the
// Socket.IO face (CONTRACT §1, §6.9, §6.19), driven with stock socket.io-client 4.x.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFakeUpstream, startNatter, connect, tempDir, uid, joinTokens, sleep } from "../lib/harness.mjs";

let upstream;
let natter; // default names, `--chat-key-fields consultationId`
let remapped; // userMessage=msg:send, aiToken=stream:token, aiMessage=stream:done
let tmp;
let tmpRemapped;

const REMAP = { userMessage: "msg:send", aiToken: "stream:token", aiMessage: "stream:done" };

before(async () => {
  tmp = tempDir();
  tmpRemapped = tempDir();
  upstream = await startFakeUpstream();
  [natter, remapped] = await Promise.all([
    startNatter({ upstream, dataDir: tmp.dir, args: ["--chat-key-fields", "consultationId"] }),
    startNatter({
      upstream,
      dataDir: tmpRemapped.dir,
      args: Object.entries(REMAP).flatMap(([k, v]) => ["--event-name", `${k}=${v}`]),
    }),
  ]);
});

after(async () => {
  await Promise.all([natter?.stop(), remapped?.stop()]);
  upstream?.stop();
  tmp?.cleanup();
  tmpRemapped?.cleanup();
});

/** Opens clients and closes all of them when `fn` ends, whatever happens. */
async function withClients(fn) {
  const opened = [];
  const open = async (url, opts) => {
    const c = await connect(url, opts);
    opened.push(c);
    return c;
  };
  try {
    return await fn(open);
  } finally {
    for (const c of opened) c.close();
  }
}

/** The text the fake upstream streams for `[fake:tokens n=N]`: `t0 t1 … t{N-1} `. */
const numbered = (n) => Array.from({ length: n }, (_, i) => `t${i} `).join("");

/** Waits for the turn of `requestId` to end and returns its tokens and final message. */
async function turnOf(client, requestId, { tokenEvent = "ai:token", messageEvent = "ai:message" } = {}) {
  const message = await client.waitFor(messageEvent, (m) => m.requestId === requestId, 20000);
  const tokens = client.of(tokenEvent).filter((t) => t.requestId === requestId);
  return { message, tokens };
}

// ------------------------------------------------------------------ (a) transports

const TRANSPORTS = [
  { label: "websocket only", opts: { transports: ["websocket"] }, expect: "websocket" },
  { label: "polling only", opts: { transports: ["polling"] }, expect: "polling" },
  { label: "default polling → websocket upgrade", opts: {}, expect: "websocket" },
];

for (const tr of TRANSPORTS) {
  test(`transport: ${tr.label} joins, sends, and gets the whole streamed reply`, () =>
    withClients(async (open) => {
      const chat = uid("tr");
      const me = await open(natter.url, { ...tr.opts, query: { userId: "tx" } });
      if (tr.label.startsWith("default")) {
        // The stock client starts on polling and upgrades on its own.
        await me.until(() => me.socket.io.engine.transport.name === "websocket", 10000, "upgrade to websocket");
      }
      assert.equal(me.socket.io.engine.transport.name, tr.expect);

      // A peer on another transport sees the same chat.
      const peer = await open(natter.url, { transports: ["websocket"], query: { userId: "peer" } });
      const join = await me.emit("chat:join", { chatId: chat });
      assert.equal(join.ok, true, JSON.stringify(join));
      assert.equal(join.chatId, chat);
      assert.equal(typeof join.seq, "number");
      assert.equal(typeof join.epoch, "string");
      assert.deepEqual(join.messages, []);
      assert.equal((await peer.emit("chat:join", { chatId: chat })).ok, true);

      const messageId = uid("m");
      const requestId = uid("rq");
      const ack = await me.emit("user:message", {
        chatId: chat,
        messageId,
        requestId,
        text: "[fake:tokens n=20] count for me",
      });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.equal(ack.messageId, messageId);
      assert.equal(ack.seq, join.seq + 1);

      const { message, tokens } = await turnOf(me, requestId);
      assert.equal(message.chatId, chat);
      assert.equal(message.role, "assistant");
      assert.equal(message.finishReason, "stop");
      assert.equal(message.seq, ack.seq + 1);
      assert.ok(tokens.length > 0, "tokens were streamed");
      assert.equal(joinTokens(tokens, message.messageId), message.text);
      assert.equal(message.text, numbered(20));
      assert.ok(tokens.every((t) => t.messageId === message.messageId));
      // Turn order: processing before the first token, the final message last.
      const names = me.events.map((e) => e.event);
      assert.ok(names.indexOf("ai:processing") < names.indexOf("ai:token"));
      assert.ok(names.lastIndexOf("ai:token") < names.indexOf("ai:message"));
      assert.equal(me.socket.io.engine.transport.name, tr.expect, "still on the expected transport");

      const seen = await peer.waitFor("chat:message", (m) => m.messageId === messageId);
      assert.equal(seen.userId, "tx");
      const peerTurn = await turnOf(peer, requestId);
      assert.equal(peerTurn.message.text, message.text);
      assert.equal(joinTokens(peerTurn.tokens, message.messageId), message.text);
      // §6.9: the sender has the ack, not a chat:message for its own message.
      assert.equal(me.of("chat:message").filter((m) => m.messageId === messageId).length, 0);
    }));
}

// ------------------------------------------------------------------ (b) handshake joins

const HANDSHAKE = [
  { label: "query chatId", opts: (chat) => ({ query: { chatId: chat, userId: "u1" } }) },
  { label: "auth chatId", opts: (chat) => ({ auth: { chatId: chat, userId: "u1" } }) },
  {
    label: "query consultationId (--chat-key-fields consultationId)",
    opts: (chat) => ({ query: { consultationId: chat, userId: "u1" } }),
  },
];

for (const hs of HANDSHAKE) {
  test(`joinEvent:null client: the handshake's ${hs.label} joins the chat`, () =>
    withClients(async (open) => {
      const chat = uid("hs");
      const u1 = await open(natter.url, hs.opts(chat));
      // The handshake join shows up as the member's own presence.
      await u1.waitFor("presence:update", (p) => p.chatId === chat && p.onlineUserIds.includes("u1"));

      const u2 = await open(natter.url, { query: { userId: "u2" } });
      const join = await u2.emit("chat:join", { chatId: chat });
      assert.equal(join.ok, true, JSON.stringify(join));
      assert.ok(join.onlineUserIds.includes("u1"), `u1 is online: ${JSON.stringify(join.onlineUserIds)}`);

      const messageId = uid("m");
      const requestId = uid("rq");
      const ack = await u2.emit("user:message", { chatId: chat, messageId, requestId, text: "[fake:tokens n=6] hi u1" });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      const seen = await u1.waitFor("chat:message", (m) => m.messageId === messageId);
      assert.equal(seen.chatId, chat);
      assert.equal(seen.userId, "u2");
      assert.equal(seen.role, "user");
      assert.equal(seen.seq, ack.seq);
      const { message, tokens } = await turnOf(u1, requestId);
      assert.ok(tokens.length > 0, "u1 got the AI tokens");
      assert.equal(joinTokens(tokens, message.messageId), message.text);
      assert.equal(message.text, numbered(6));

      // The socket is in exactly one chat, so chatId may be left out.
      const own = uid("m");
      const ack2 = await u1.emit("user:message", { messageId: own, text: "no chatId needed" });
      assert.equal(ack2.ok, true, JSON.stringify(ack2));
      assert.equal(ack2.chatId, chat);
      const back = await u2.waitFor("chat:message", (m) => m.messageId === own);
      assert.equal(back.userId, "u1");
      assert.equal(back.chatId, chat);
    }));
}

// ------------------------------------------------------------------ (c) discovery and remapping

const DEFAULT_NAMES = {
  join: "chat:join",
  leave: "chat:leave",
  userMessage: "user:message",
  typingStart: "typing:start",
  typingStop: "typing:stop",
  abort: "ai:abort",
  markRead: "message:read",
  toolResultIn: "ai:tool_result",
  authRefresh: "auth:refresh",
  chatMessage: "chat:message",
  presenceUpdate: "presence:update",
  typingUpdate: "typing:update",
  aiProcessing: "ai:processing",
  aiToken: "ai:token",
  aiMessage: "ai:message",
  aiError: "ai:error",
  aiToolCall: "ai:tool_call",
  aiToolResult: "ai:tool_result",
  readReceipt: "message:read",
  discoveryRequest: "meta:events:request",
  discoveryResponse: "meta:events:response",
  serverError: "error",
  handoffRequest: "handoff:request",
  handoffUpdate: "handoff:update",
  reactionAdd: "reaction:add",
  reactionRemove: "reaction:remove",
  reactionUpdate: "reaction:update",
  chatEnd: "chat:end",
  csatRequest: "csat:request",
  csatSubmit: "csat:submit",
  csatSubmitted: "csat:submitted",
  chatUpdated: "chat:updated",
  chatEnded: "chat:ended",
  chatDeleted: "chat:deleted",
  messageSuperseded: "message:superseded",
  attachmentProcessing: "attachment:processing",
};

test("discovery: every EventKey with the contract's default names", () =>
  withClients(async (open) => {
    assert.equal(Object.keys(DEFAULT_NAMES).length, 36);
    const c = await open(natter.url, { query: { userId: "disco" } });
    const ack = await c.emit("meta:events:request", {});
    assert.deepEqual(ack, { ok: true, version: 1, events: DEFAULT_NAMES });
    const ev = await c.waitFor("meta:events:response");
    assert.deepEqual(ev, { version: 1, events: DEFAULT_NAMES });
  }));

test("remapped event names: advertised, used on the wire, and the old name is unknown", () =>
  withClients(async (open) => {
    const expected = { ...DEFAULT_NAMES, ...REMAP };
    const c = await open(remapped.url, { query: { userId: "rm" } });
    const other = await open(remapped.url, { query: { userId: "rm2" } });

    const ack = await c.emit("meta:events:request", {});
    assert.deepEqual(ack, { ok: true, version: 1, events: expected });
    assert.deepEqual(await c.waitFor("meta:events:response"), { version: 1, events: expected });

    const chat = uid("remap");
    assert.equal((await c.emit("chat:join", { chatId: chat })).ok, true);
    assert.equal((await other.emit("chat:join", { chatId: chat })).ok, true);

    const messageId = uid("m");
    const requestId = uid("rq");
    const sent = await c.emit(REMAP.userMessage, { chatId: chat, messageId, requestId, text: "[fake:tokens n=8] remapped" });
    assert.equal(sent.ok, true, JSON.stringify(sent));
    assert.equal(sent.messageId, messageId);

    const names = { tokenEvent: REMAP.aiToken, messageEvent: REMAP.aiMessage };
    const { message, tokens } = await turnOf(c, requestId, names);
    assert.ok(tokens.length > 0, "stream:token events arrived");
    assert.equal(joinTokens(tokens, message.messageId), message.text);
    assert.equal(message.text, numbered(8));
    assert.equal(message.role, "assistant");
    const otherTurn = await turnOf(other, requestId, names);
    assert.equal(otherTurn.message.text, message.text);
    // Keys not remapped keep their names.
    assert.equal((await other.waitFor("chat:message", (m) => m.messageId === messageId)).userId, "rm");
    await sleep(50);
    for (const client of [c, other]) {
      assert.equal(client.of("ai:token").length, 0, "no ai:token under the old name");
      assert.equal(client.of("ai:message").length, 0, "no ai:message under the old name");
    }

    // The old client→server name is now an unknown event.
    const errorsBefore = c.of("error").length;
    const old = await c.emit("user:message", { chatId: chat, messageId: uid("m"), text: "old name" });
    assert.equal(old.ok, false);
    assert.equal(old.error.code, "unknown_event");
    assert.ok(old.error.message.length > 0);
    const err = await c.until((evs) => evs.filter((e) => e.event === "error")[errorsBefore]?.payload, 5000, "error event");
    assert.equal(err.code, "unknown_event");
    assert.equal(err.event, "user:message");

    // And the default server does not know the remapped name.
    const plain = await open(natter.url, { query: { userId: "rm3" } });
    const nope = await plain.emit(REMAP.userMessage, { messageId: uid("m"), text: "x" });
    assert.equal(nope.ok, false);
    assert.equal(nope.error.code, "unknown_event");
  }));

// ------------------------------------------------------------------ (d) traceId echo

test("traceId is echoed on the events a client event causes", () =>
  withClients(async (open) => {
    const chat = uid("trace");
    const a = await open(natter.url, { query: { userId: "ta" } });
    const b = await open(natter.url, { query: { userId: "tb" } });
    assert.equal((await a.emit("chat:join", { chatId: chat })).ok, true);
    assert.equal((await b.emit("chat:join", { chatId: chat })).ok, true);

    const messageId = uid("m");
    const requestId = uid("rq");
    const ack = await a.emit("user:message", {
      chatId: chat,
      messageId,
      requestId,
      traceId: "tr-1",
      meta: { source: "test" },
      text: "[fake:tokens n=4] trace me",
    });
    assert.equal(ack.ok, true, JSON.stringify(ack));

    const seen = await b.waitFor("chat:message", (m) => m.messageId === messageId);
    assert.equal(seen.traceId, "tr-1", `chat:message: ${JSON.stringify(seen)}`);
    for (const who of [a, b]) {
      const { message } = await turnOf(who, requestId);
      assert.equal(message.traceId, "tr-1", `ai:message: ${JSON.stringify(message)}`);
      const processing = who.of("ai:processing").filter((p) => p.requestId === requestId);
      assert.ok(processing.length > 0, "ai:processing arrived");
      for (const p of processing) assert.equal(p.traceId, "tr-1", `ai:processing: ${JSON.stringify(p)}`);
      assert.deepEqual(
        processing.map((p) => p.status).filter((s) => s !== "retrying"),
        ["queued", "working"],
      );
    }

    // Typing and read receipts echo theirs too.
    assert.equal((await a.emit("typing:start", { chatId: chat, traceId: "tr-2" })).ok, true);
    const typing = await b.waitFor("typing:update", (t) => t.userId === "ta" && t.typing === true);
    assert.equal(typing.traceId, "tr-2");
    const readAck = await b.emit("message:read", {
      chatId: chat,
      messageIds: [messageId],
      readAt: new Date().toISOString(),
      traceId: "tr-3",
    });
    assert.equal(readAck.ok, true, JSON.stringify(readAck));
    const receipt = await a.waitFor("message:read", (r) => r.userId === "tb");
    assert.equal(receipt.traceId, "tr-3");
    assert.deepEqual(receipt.messageIds, [messageId]);
  }));
