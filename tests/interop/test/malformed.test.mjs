// Hostile and malformed Socket.IO input (CONTRACT §1, §6.8, §6.16): every refused event gets
// an ack `{ok:false, error:{code, message}}` AND an `error` event `{code, message, event}`;
// nothing is half-applied, and the connection (and the server) keeps working afterwards.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFakeUpstream, startNatter, connect, tempDir, uid, sleep } from "../lib/harness.mjs";

const MAX_TEXT = 1000;
const MAX_PAYLOAD = 100000;

let upstream;
let natter;
let tmp;

before(async () => {
  tmp = tempDir();
  upstream = await startFakeUpstream();
  natter = await startNatter({
    upstream,
    dataDir: tmp.dir,
    args: ["--max-text-bytes", String(MAX_TEXT), "--max-payload-bytes", String(MAX_PAYLOAD)],
  });
});

after(async () => {
  await natter?.stop();
  upstream?.stop();
  tmp?.cleanup();
});

/** Marks a case sent with no payload argument at all: `socket.emit(event, ack)`. */
const NO_PAYLOAD = Symbol("no payload");

// The chats the catalog connection joins (A and B); C is never joined.
const A = uid("mal-a");
const B = uid("mal-b");
const NEVER = uid("mal-never-joined");
const ISO = "2026-01-02T03:04:05.000Z";
const msg = (extra = {}) => ({ chatId: A, messageId: uid("m"), text: "hello", ...extra });
const read = (extra = {}) => ({ chatId: A, messageIds: ["m-1"], readAt: ISO, ...extra });
const big = (n) => "x".repeat(n);

/**
 * The catalog. `phase: "unjoined"` cases are sent before the connection joins any chat;
 * every other case is sent while it is in exactly two chats (A and B).
 * The connection is named `ann` in its handshake query.
 */
const CASES = [
  // ---- chatId omitted while in no chat
  { phase: "unjoined", name: "user:message, no chatId, in no chat", event: "user:message", payload: { messageId: "m0", text: "hi" }, expectCode: "chat_required" },
  { phase: "unjoined", name: "typing:start, no chatId, in no chat", event: "typing:start", payload: {}, expectCode: "chat_required" },
  { phase: "unjoined", name: "ai:abort, no chatId, in no chat", event: "ai:abort", payload: {}, expectCode: "chat_required" },
  { phase: "unjoined", name: "message:read, no chatId, in no chat", event: "message:read", payload: { messageIds: ["m"], readAt: ISO }, expectCode: "chat_required" },

  // ---- payload is not an object
  { name: "user:message, string payload", event: "user:message", payload: "hello", expectCode: "invalid_payload" },
  { name: "user:message, number payload", event: "user:message", payload: 42, expectCode: "invalid_payload" },
  { name: "user:message, array payload", event: "user:message", payload: [{ chatId: A, messageId: "m", text: "x" }], expectCode: "invalid_payload" },
  { name: "user:message, null payload", event: "user:message", payload: null, expectCode: "invalid_payload" },
  { name: "user:message, boolean payload", event: "user:message", payload: true, expectCode: "invalid_payload" },
  { name: "user:message, no payload at all", event: "user:message", payload: NO_PAYLOAD, expectCode: "invalid_payload" },
  { name: "chat:join, string payload", event: "chat:join", payload: A, expectCode: "invalid_payload" },
  { name: "chat:join, number payload", event: "chat:join", payload: 7, expectCode: "invalid_payload" },
  { name: "chat:join, no payload at all", event: "chat:join", payload: NO_PAYLOAD, expectCode: "invalid_payload" },
  { name: "chat:leave, string payload", event: "chat:leave", payload: A, expectCode: "invalid_payload" },
  { name: "typing:start, array payload", event: "typing:start", payload: [], expectCode: "invalid_payload" },
  { name: "typing:stop, boolean payload", event: "typing:stop", payload: false, expectCode: "invalid_payload" },
  { name: "message:read, string payload", event: "message:read", payload: "m-1", expectCode: "invalid_payload" },
  { name: "ai:abort, number payload", event: "ai:abort", payload: 0, expectCode: "invalid_payload" },
  { name: "ai:abort, no payload at all", event: "ai:abort", payload: NO_PAYLOAD, expectCode: "invalid_payload" },
  { name: "ai:tool_result, null payload", event: "ai:tool_result", payload: null, expectCode: "invalid_payload" },

  // ---- user:message fields
  { name: "user:message, messageId missing", event: "user:message", payload: { chatId: A, text: "hi" }, expectCode: "missing_field" },
  { name: "user:message, messageId empty string", event: "user:message", payload: msg({ messageId: "" }), expectCode: "missing_field" },
  { name: "user:message, messageId an object", event: "user:message", payload: msg({ messageId: { id: "m" } }), expectCode: "invalid_field" },
  { name: "user:message, messageId a float", event: "user:message", payload: msg({ messageId: 1.5 }), expectCode: "invalid_field" },
  { name: "user:message, messageId a boolean", event: "user:message", payload: msg({ messageId: true }), expectCode: "invalid_field" },
  { name: "user:message, text missing", event: "user:message", payload: { chatId: A, messageId: uid("m") }, expectCode: "missing_field" },
  { name: "user:message, text null", event: "user:message", payload: msg({ text: null }), expectCode: "missing_field" },
  { name: "user:message, text a number", event: "user:message", payload: msg({ text: 12 }), expectCode: "invalid_field" },
  { name: "user:message, text an object", event: "user:message", payload: msg({ text: { value: "hi" } }), expectCode: "invalid_field" },
  { name: "user:message, text an array", event: "user:message", payload: msg({ text: ["h", "i"] }), expectCode: "invalid_field" },
  { name: "user:message, chatId an object", event: "user:message", payload: msg({ chatId: { id: A } }), expectCode: "invalid_field" },
  { name: "user:message, chatId a boolean", event: "user:message", payload: msg({ chatId: true }), expectCode: "invalid_field" },
  { name: "user:message, chatId a float", event: "user:message", payload: msg({ chatId: 2.5 }), expectCode: "invalid_field" },
  { name: "user:message, chatId an array", event: "user:message", payload: msg({ chatId: [A] }), expectCode: "invalid_field" },
  { name: "user:message, parts a string", event: "user:message", payload: msg({ parts: "text" }), expectCode: "invalid_field" },
  { name: "user:message, parts an object", event: "user:message", payload: msg({ parts: { type: "text", text: "hi" } }), expectCode: "invalid_field" },
  { name: "user:message, requestId a number", event: "user:message", payload: msg({ requestId: 5 }), expectCode: "invalid_field" },
  { name: "user:message, traceId an object", event: "user:message", payload: msg({ traceId: { id: "t" } }), expectCode: "invalid_field" },
  { name: "user:message, userId an object", event: "user:message", payload: msg({ userId: { id: "ann" } }), expectCode: "invalid_field" },

  // ---- which chat
  { name: "user:message, chat not joined", event: "user:message", payload: msg({ chatId: NEVER }), expectCode: "not_joined" },
  { name: "typing:start, chat not joined", event: "typing:start", payload: { chatId: NEVER }, expectCode: "not_joined" },
  { name: "chat:leave, chat not joined", event: "chat:leave", payload: { chatId: NEVER }, expectCode: "not_joined" },
  { name: "message:read, chat not joined", event: "message:read", payload: read({ chatId: NEVER }), expectCode: "not_joined" },
  { name: "ai:abort, chat not joined", event: "ai:abort", payload: { chatId: NEVER }, expectCode: "not_joined" },
  { name: "user:message, chatId omitted while in two chats", event: "user:message", payload: { messageId: uid("m"), text: "which chat?" }, expectCode: "chat_required" },
  { name: "typing:stop, chatId omitted while in two chats", event: "typing:stop", payload: {}, expectCode: "chat_required" },
  { name: "message:read, chatId omitted while in two chats", event: "message:read", payload: { messageIds: ["m-1"], readAt: ISO }, expectCode: "chat_required" },

  // ---- chat:join
  { name: "chat:join, chatId missing", event: "chat:join", payload: {}, expectCode: "missing_field" },
  { name: "chat:join, chatId blank", event: "chat:join", payload: { chatId: "   " }, expectCode: "missing_field" },
  { name: "chat:join, chatId an object", event: "chat:join", payload: { chatId: { id: A } }, expectCode: "invalid_field" },
  { name: "chat:join, chatId a boolean", event: "chat:join", payload: { chatId: false }, expectCode: "invalid_field" },
  { name: "chat:join, lastSeq negative", event: "chat:join", payload: { chatId: A, lastSeq: -1 }, expectCode: "invalid_field" },
  { name: "chat:join, lastSeq a string", event: "chat:join", payload: { chatId: A, lastSeq: "5" }, expectCode: "invalid_field" },
  { name: "chat:join, lastSeq a float", event: "chat:join", payload: { chatId: A, lastSeq: 1.5 }, expectCode: "invalid_field" },
  { name: "chat:join, epoch a number", event: "chat:join", payload: { chatId: A, epoch: 123 }, expectCode: "invalid_field" },

  // ---- typing
  { name: "typing:start, userId an object", event: "typing:start", payload: { chatId: A, userId: { id: "ann" } }, expectCode: "invalid_field" },
  { name: "typing:stop, userId a boolean", event: "typing:stop", payload: { chatId: A, userId: true }, expectCode: "invalid_field" },
  { name: "typing:start, chatId a float", event: "typing:start", payload: { chatId: 0.5 }, expectCode: "invalid_field" },
  { name: "typing:start, traceId a number", event: "typing:start", payload: { chatId: A, traceId: 9 }, expectCode: "invalid_field" },

  // ---- message:read
  { name: "message:read, messageIds a string", event: "message:read", payload: read({ messageIds: "m-1" }), expectCode: "invalid_field" },
  { name: "message:read, messageIds an object", event: "message:read", payload: read({ messageIds: { 0: "m-1" } }), expectCode: "invalid_field" },
  { name: "message:read, messageIds with an empty string", event: "message:read", payload: read({ messageIds: ["m-1", ""] }), expectCode: "invalid_field" },
  { name: "message:read, messageIds with an object", event: "message:read", payload: read({ messageIds: [{ id: "m-1" }] }), expectCode: "invalid_field" },
  { name: "message:read, messageIds missing", event: "message:read", payload: { chatId: A, readAt: ISO }, expectCode: "missing_field" },
  { name: "message:read, readAt not ISO 8601", event: "message:read", payload: read({ readAt: "yesterday" }), expectCode: "invalid_field" },
  { name: "message:read, empty messageIds", event: "message:read", payload: read({ messageIds: [] }), expectCode: "invalid_field" },
  { name: "user:message, 300-byte traceId", event: "user:message", payload: msg({ traceId: "t".repeat(300) }), expectCode: "too_large" },
  { name: "message:read, readAt epoch millis", event: "message:read", payload: read({ readAt: 1767323045000 }), expectCode: "invalid_field" },
  { name: "message:read, readAt missing", event: "message:read", payload: { chatId: A, messageIds: ["m-1"] }, expectCode: "missing_field" },

  // ---- ai:abort, ai:tool_result
  { name: "ai:abort, nothing running", event: "ai:abort", payload: { chatId: A }, expectCode: "no_active_turn" },
  { name: "ai:abort, unknown requestId", event: "ai:abort", payload: { chatId: A, requestId: "no-such-request" }, expectCode: "no_active_turn" },
  { name: "ai:abort, requestId an object", event: "ai:abort", payload: { chatId: A, requestId: { id: 1 } }, expectCode: "invalid_field" },
  { name: "ai:tool_result, toolCallId missing", event: "ai:tool_result", payload: { chatId: A, requestId: "r1", result: { ok: 1 } }, expectCode: "missing_field" },
  { name: "ai:tool_result, toolCallId a number", event: "ai:tool_result", payload: { chatId: A, requestId: "r1", toolCallId: 3 }, expectCode: "invalid_field" },
  { name: "ai:tool_result, unknown toolCallId", event: "ai:tool_result", payload: { chatId: A, requestId: "r1", toolCallId: "call-nope", result: "42" }, expectCode: "not_found" },

  // ---- identity spoofing (connection is `ann`)
  { name: "user:message as bob", event: "user:message", payload: msg({ userId: "bob" }), expectCode: "forbidden" },
  { name: "user:message, 300-byte userId", event: "user:message", payload: msg({ userId: "u".repeat(300) }), expectCode: "too_large" },
  { name: "chat:join as bob", event: "chat:join", payload: { chatId: A, userId: "bob" }, expectCode: "forbidden" },
  { name: "typing:start as bob", event: "typing:start", payload: { chatId: A, userId: "bob" }, expectCode: "forbidden" },
  { name: "message:read as bob", event: "message:read", payload: read({ userId: "bob" }), expectCode: "forbidden" },

  // ---- unknown events
  { name: "unknown event name", event: "nope:event", payload: {}, expectCode: "unknown_event" },
  { name: "unknown event, wrong case", event: "USER:MESSAGE", payload: msg(), expectCode: "unknown_event" },
  { name: "server→client name sent by a client (chat:message)", event: "chat:message", payload: msg(), expectCode: "unknown_event" },
  { name: "server→client name sent by a client (ai:token)", event: "ai:token", payload: { token: "x" }, expectCode: "unknown_event" },

  // ---- limits
  { name: `text over --max-text-bytes ${MAX_TEXT} (2000 chars)`, event: "user:message", payload: msg({ text: big(2000) }), expectCode: "too_large" },
  { name: "text over the limit in bytes, not chars (501 × é = 1002 bytes)", event: "user:message", payload: msg({ text: "é".repeat(501) }), expectCode: "too_large" },
  { name: "messageId of 300 bytes", event: "user:message", payload: msg({ messageId: big(300) }), expectCode: "too_large" },
  { name: "requestId of 300 bytes", event: "user:message", payload: msg({ requestId: big(300) }), expectCode: "too_large" },
  { name: "message:read, a messageId of 300 bytes", event: "message:read", payload: read({ messageIds: [big(300)] }), expectCode: "too_large" },
];

/** Sends one case and checks both the ack and the matching `error` event. */
async function runCase(client, c) {
  const errorsBefore = client.of("error").length;
  const s = client.socket.timeout(10000);
  const ack = c.payload === NO_PAYLOAD ? await s.emitWithAck(c.event) : await s.emitWithAck(c.event, c.payload);
  assert.equal(typeof ack, "object", `ack is an object: ${JSON.stringify(ack)}`);
  assert.equal(ack.ok, false, `ack ok:false: ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error, "object", `ack.error: ${JSON.stringify(ack)}`);
  assert.equal(ack.error.code, c.expectCode, `ack code (message: ${ack.error.message})`);
  assert.equal(typeof ack.error.message, "string");
  assert.ok(ack.error.message.trim().length > 0, "ack has a human message");

  const errors = await client.until(
    (evs) => {
      const errs = evs.filter((e) => e.event === "error");
      return errs.length > errorsBefore && errs;
    },
    5000,
    `error event for ${c.name}`,
  );
  const ev = errors[errorsBefore].payload;
  assert.equal(ev.code, c.expectCode, `error event code: ${JSON.stringify(ev)}`);
  assert.equal(ev.event, c.event, "error event names the refused event");
  assert.equal(typeof ev.message, "string");
  assert.ok(ev.message.trim().length > 0, "error event has a human message");
}

test("malformed catalog on one connection, which keeps working afterwards", async (t) => {
  assert.ok(CASES.length >= 30, `catalog has ${CASES.length} cases`);
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  let newcomer;
  try {
    for (const c of CASES.filter((c) => c.phase === "unjoined")) {
      await t.test(`[no chat] ${c.name}`, () => runCase(ann, c));
    }

    const joinA = await ann.emit("chat:join", { chatId: A });
    const joinB = await ann.emit("chat:join", { chatId: B });
    assert.equal(joinA.ok, true, JSON.stringify(joinA));
    assert.equal(joinB.ok, true, JSON.stringify(joinB));
    const headA = joinA.seq;

    for (const c of CASES.filter((c) => c.phase !== "unjoined")) {
      await t.test(c.name, () => runCase(ann, c));
    }

    await t.test("one error event per refused event, and nothing else happened", async () => {
      await sleep(100);
      assert.equal(ann.of("error").length, CASES.length);
      const others = ann.events.filter((e) => e.event !== "error" && e.event !== "presence:update");
      assert.deepEqual(others.map((e) => e.event), [], "no chat:message / ai:* / typing / receipts from refused events");
      assert.equal(ann.socket.connected, true, "the connection is still up");
    });

    await t.test("the same connection still works: user:message acked and answered", async () => {
      const messageId = uid("after");
      const ack = await ann.emit("user:message", { chatId: A, messageId, text: "still here?" });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.equal(ack.messageId, messageId);
      assert.equal(ack.chatId, A);
      assert.equal(ack.duplicate, false);
      assert.equal(typeof ack.seq, "number");
      // Nothing refused above was stored: this is the chat's next seq after the join.
      assert.equal(ack.seq, headA + 1, "no refused event took a seq");
      const reply = await ann.waitFor("ai:message", (m) => m.chatId === A, 15000);
      assert.equal(reply.role, "assistant");
      assert.equal(reply.finishReason, "stop");
      assert.match(reply.text, /still here\?/);
      assert.equal(reply.seq, ack.seq + 1);
    });

    await t.test("a new connection works too", async () => {
      newcomer = await connect(natter.url, { query: { userId: "cat" } });
      const join = await newcomer.emit("chat:join", { chatId: A });
      assert.equal(join.ok, true, JSON.stringify(join));
      assert.ok(join.onlineUserIds.includes("ann") && join.onlineUserIds.includes("cat"), JSON.stringify(join.onlineUserIds));
      assert.deepEqual(
        join.messages.map((m) => (m.role === "assistant" ? "assistant" : m.text)),
        ["still here?", "assistant"],
        "history holds only the valid exchange",
      );
      const messageId = uid("cat");
      const ack = await newcomer.emit("user:message", { chatId: A, messageId, text: "hello from cat" });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      const reply = await newcomer.waitFor("ai:message", (m) => /hello from cat/.test(m.text), 15000);
      assert.equal(reply.seq, ack.seq + 1);
      const seen = await ann.waitFor("chat:message", (m) => m.messageId === messageId);
      assert.equal(seen.userId, "cat");
    });
  } finally {
    ann.close();
    newcomer?.close();
  }
});

// A packet over --max-payload-bytes closes the connection that sent it (CONTRACT §6.8), and only
// that one. Polling enforces it through Engine.IO's body limit; over websocket the same limit
// must hold (Engine.IO's reference server applies maxHttpBufferSize to both transports).
const OVERSIZE = [
  { transports: ["polling"], label: "polling" },
  {
    transports: ["websocket"],
    label: "websocket",
  },
  {
    transports: undefined,
    label: "polling upgraded to websocket",
  },
];

for (const variant of OVERSIZE) {
  test(
    `a packet over --max-payload-bytes closes only its own connection (${variant.label})`,
    async () => {
      const chat = uid("oversize");
      const opts = variant.transports ? { transports: variant.transports } : {};
      const bystander = await connect(natter.url, { query: { userId: "by" } });
      const victim = await connect(natter.url, { ...opts, query: { userId: "big" } });
      let fresh;
      try {
        assert.equal((await bystander.emit("chat:join", { chatId: chat })).ok, true);
        assert.equal((await victim.emit("chat:join", { chatId: chat })).ok, true);
        if (!variant.transports) {
          await victim.until(() => victim.socket.io.engine.transport.name === "websocket", 5000, "upgrade");
        }
        const disconnected = new Promise((resolve) => victim.socket.once("disconnect", resolve));
        const bigId = uid("big");
        // Well over max payload (200 KB > 100 000 bytes); no ack asked, the connection just closes.
        victim.socket.emit("user:message", { chatId: chat, messageId: bigId, text: big(200000) });
        const reason = await Promise.race([disconnected, sleep(3000).then(() => null)]);
        assert.ok(reason, "the sender of the oversized packet is disconnected");
        assert.equal(victim.socket.connected, false);

        // The bystander is unaffected and saw nothing of it.
        assert.equal(bystander.socket.connected, true);
        const messageId = uid("by");
        const ack = await bystander.emit("user:message", { chatId: chat, messageId, text: "unaffected" });
        assert.equal(ack.ok, true, JSON.stringify(ack));
        await bystander.waitFor("ai:message", (m) => /unaffected/.test(m.text), 15000);
        assert.equal(bystander.of("chat:message").filter((m) => m.messageId === bigId).length, 0);

        // The server keeps accepting new connections.
        fresh = await connect(natter.url, { ...opts, query: { userId: "fresh" } });
        const join = await fresh.emit("chat:join", { chatId: chat });
        assert.equal(join.ok, true, JSON.stringify(join));
        assert.ok(!join.messages.some((m) => m.messageId === bigId), "the oversized message was not stored");
      } finally {
        victim.close();
        bystander.close();
        fresh?.close();
      }
    },
  );
}
