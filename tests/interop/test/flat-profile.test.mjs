// Seed 004's flat naming profile (CONTRACT §1, last paragraph; docs/protocol.md "Seed 004's
// flat profile"): a plain socket.io-client with `query: {profile: "flat"}` gets every event as
// one `message {type, content, conversation_id, timestamp, metadata}` and sends `message`,
// `join` and `leave`, in the same chats as default-profile clients.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { connect, sleep, startStack, uid } from "../lib/harness.mjs";

let stack, natter;
before(async () => ({ natter } = stack = await startStack()));
after(() => stack?.stop());

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * A seed-004 style client: a plain `io()` with the flat profile. Records every event it gets
 * (name and payload) so tests can check that nothing but `message` arrives.
 */
function flatClient(query = {}, opts = {}) {
  const socket = io(natter.url, { forceNew: true, reconnection: false, query: { profile: "flat", ...query }, ...opts });
  const received = [];
  socket.onAny((event, payload) => received.push({ event, payload }));
  const c = {
    socket,
    received,
    /** Flat messages of `type` (all types when absent). */
    of(type) {
      return received.filter((e) => e.event === "message" && (!type || e.payload.type === type)).map((e) => e.payload);
    },
    async waitFor(type, pred = () => true, timeoutMs = 10000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = c.of(type).find(pred);
        if (m) return m;
        if (Date.now() > deadline) {
          throw new Error(`timed out waiting for flat ${type}; got ${JSON.stringify(received.map((e) => [e.event, e.payload?.type, e.payload?.content]))}`);
        }
        await sleep(10);
      }
    },
    send(event, payload) {
      return socket.timeout(10000).emitWithAck(event, payload);
    },
    close() {
      socket.close();
    },
  };
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(c));
    socket.once("connect_error", reject);
  });
}

/** Joined tokens of one turn as a flat client saw them (`token` and merged `chunk`s). */
function flatText(client, messageId) {
  let next = 0;
  let text = "";
  for (const m of client.of().filter((m) => (m.type === "token" || m.type === "chunk") && m.metadata.messageId === messageId)) {
    const last = m.metadata.through ?? m.metadata.index;
    if (last < next) continue;
    assert.equal(m.metadata.index, next, "token gap");
    assert.equal(m.type === "chunk", m.metadata.through !== undefined);
    text += m.content;
    next = last + 1;
  }
  return text;
}

/** A flat client (ann, joined through the handshake) and a default client (bob) in one chat. */
async function mixedPair() {
  const chatId = uid("conv");
  const ann = await flatClient({ conversation_id: chatId, userId: "ann" });
  await ann.waitFor("system", (m) => m.content === "presence:update" && m.metadata.onlineUserIds.includes("ann"));
  const bob = await connect(natter.url, { query: { userId: "bob" } });
  const joined = await bob.emit("chat:join", { chatId });
  assert.equal(joined.ok, true, JSON.stringify(joined));
  await ann.waitFor("system", (m) => m.content === "presence:update" && m.metadata.onlineUserIds.join() === "ann,bob");
  return { chatId, ann, bob, close: () => (ann.close(), bob.close()) };
}

test("a flat client's message reaches a default client; the reply streams to it as token → message_complete", async () => {
  const { chatId, ann, bob, close } = await mixedPair();
  const messageId = uid("m");
  const requestId = uid("req");
  const ack = await ann.send("message", {
    type: "message",
    content: "[fake:tokens n=12] hello",
    conversation_id: chatId,
    metadata: { message_id: messageId, request_id: requestId },
  });
  assert.deepEqual(ack, { ok: true, messageId, seq: 2, chatId, duplicate: false });

  const cm = await bob.waitFor("chat:message", (m) => m.messageId === messageId);
  assert.equal(cm.text, "[fake:tokens n=12] hello");
  assert.equal(cm.userId, "ann");
  assert.equal(cm.seq, 2);

  const done = await ann.waitFor("message_complete", (m) => m.metadata.requestId === requestId);
  const bobMsg = await bob.waitFor("ai:message", (m) => m.requestId === requestId);
  assert.equal(done.content, bobMsg.text);
  assert.equal(done.content, Array.from({ length: 12 }, (_, i) => `t${i} `).join(""));
  assert.equal(flatText(ann, done.metadata.messageId), done.content);
  assert.equal(done.conversation_id, chatId);
  assert.equal(done.timestamp, bobMsg.createdAt);
  assert.equal(done.metadata.messageId, bobMsg.messageId);
  assert.equal(done.metadata.finishReason, "stop");
  assert.equal(done.metadata.seq, 3);
  assert.deepEqual(Object.keys(done.metadata.usage).sort(), ["completionTokens", "promptTokens", "totalTokens"]);
  for (const t of ann.of("token")) {
    assert.equal(t.conversation_id, chatId);
    assert.match(t.timestamp, ISO);
    assert.equal(t.metadata.requestId, requestId);
  }
  // Processing status arrives as `system` named by its contract event.
  const processing = ann.of("system").filter((m) => m.content === "ai:processing").map((m) => m.metadata.status);
  assert.deepEqual(processing.slice(0, 2), ["queued", "working"]);

  // CONTRACT §6.9: no echo of its own message to the sender.
  assert.equal(ann.of("message_received").length, 0);
  // The default client's message reaches the flat client as message_received.
  const bobId = uid("m");
  await bob.emit("user:message", { chatId, messageId: bobId, text: "[fake:tokens n=2] hi ann" });
  const got = await ann.waitFor("message_received", (m) => m.metadata.messageId === bobId);
  const bobEcho = await connect(natter.url, { query: { userId: "carol" } });
  const history = (await bobEcho.emit("chat:join", { chatId })).messages.find((m) => m.messageId === bobId);
  bobEcho.close();
  assert.deepEqual(got, {
    type: "message_received",
    content: "[fake:tokens n=2] hi ann",
    conversation_id: chatId,
    timestamp: history.createdAt,
    metadata: { messageId: bobId, userId: "bob", role: "user", seq: 4, requestId: history.requestId },
  });
  await ann.waitFor("message_complete", (m) => m.metadata.seq === 5 && m.content === "t0 t1 ");
  // A flat connection gets nothing but `message`.
  assert.deepEqual([...new Set(ann.received.map((e) => e.event))], ["message"]);
  close();
});

test("typing and presence reach a flat client as typing / system, and its typing and leave reach others", async () => {
  const { chatId, ann, bob, close } = await mixedPair();
  await bob.emit("typing:start", { chatId });
  const on = await ann.waitFor("typing", (m) => m.metadata.userId === "bob" && m.metadata.typing === true);
  assert.equal(on.content, "");
  assert.equal(on.conversation_id, chatId);
  assert.match(on.timestamp, ISO);
  await bob.emit("typing:stop", { chatId });
  await ann.waitFor("typing", (m) => m.metadata.userId === "bob" && m.metadata.typing === false);

  assert.deepEqual(await ann.send("message", { type: "typing", conversation_id: chatId }), { ok: true });
  await bob.waitFor("typing:update", (t) => t.userId === "ann" && t.typing === true);
  assert.deepEqual(await ann.send("message", { type: "typing", metadata: { typing: false } }), { ok: true });
  await bob.waitFor("typing:update", (t) => t.userId === "ann" && t.typing === false);

  const carol = await connect(natter.url, { query: { userId: "carol" } });
  await carol.emit("chat:join", { chatId });
  const presence = await ann.waitFor("system", (m) => m.content === "presence:update" && m.metadata.onlineUserIds.join() === "ann,bob,carol");
  assert.deepEqual(presence.metadata, { chatId, onlineUserIds: ["ann", "bob", "carol"] });

  assert.deepEqual(await ann.send("leave", { conversation_id: chatId }), { ok: true });
  await bob.waitFor("presence:update", (p) => p.onlineUserIds.join() === "bob,carol");
  carol.close();
  close();
});

test("a flat abort ends the turn with message_complete, finishReason aborted, holding the streamed text", async () => {
  const { chatId, ann, bob, close } = await mixedPair();
  const requestId = uid("req");
  await ann.send("message", { content: "[fake:drip n=200 delay_ms=20]", metadata: { requestId } });
  await bob.until(() => bob.of("ai:token").filter((t) => t.requestId === requestId).length >= 5, 5000, "5 tokens");
  const ack = await ann.send("message", { type: "abort", conversation_id: chatId });
  assert.deepEqual(ack, { ok: true, requestId });
  const done = await ann.waitFor("message_complete", (m) => m.metadata.requestId === requestId);
  assert.equal(done.metadata.finishReason, "aborted");
  assert.ok(done.content.length > 0);
  assert.equal(flatText(ann, done.metadata.messageId), done.content);
  assert.equal((await bob.waitFor("ai:message", (m) => m.requestId === requestId)).text, done.content);
  // `stop` is the same thing; nothing runs now.
  const idle = await ann.send("message", { type: "stop" });
  assert.equal(idle.ok, false);
  assert.equal(idle.error.code, "no_active_turn");
  close();
});

test("bad flat payloads and unknown types get coded errors in the ack and as a flat error", async () => {
  const { chatId, ann, close } = await mixedPair();
  const cases = [
    ["message", { type: "dance", content: "x" }, "unknown_event"],
    ["message", { content: 5, conversation_id: chatId }, "invalid_field"],
    ["message", { conversation_id: chatId }, "missing_field"],
    ["message", "just text", "invalid_payload"],
    ["message", { content: "x", metadata: "m" }, "invalid_field"],
    ["message", { type: "typing", metadata: { typing: "yes" } }, "invalid_field"],
    ["message", { content: "x", conversation_id: "elsewhere" }, "not_joined"],
    ["join", { last_seq: 1 }, "missing_field"],
    ["join", { conversation_id: chatId, last_seq: -1 }, "invalid_field"],
  ];
  for (const [event, payload, code] of cases) {
    const what = `${event} ${JSON.stringify(payload)}`;
    const before = ann.of("error").length;
    const ack = await ann.send(event, payload);
    assert.equal(ack.ok, false, what);
    assert.equal(ack.error.code, code, `${what}: ${JSON.stringify(ack)}`);
    assert.ok(ack.error.message.length > 0);
    // The same refusal also arrives as a flat `error` naming the flat event.
    await ann.waitFor("error", () => ann.of("error").length > before);
    const err = ann.of("error").at(-1);
    assert.deepEqual(err.metadata, { code, event }, what);
    assert.equal(err.content, ack.error.message);
    assert.match(err.timestamp, ISO);
  }
  assert.match((await ann.send("message", { type: "dance" })).error.message, /dance/);
  // Nothing was stored: the next message takes seq 2.
  const ok = await ann.send("message", { content: "[fake:tokens n=1] fine" });
  assert.equal(ok.seq, 2);
  // The default profile's `join` / `message` are not events there.
  const plain = await connect(natter.url, { query: { userId: "dan" } });
  assert.equal((await plain.emit("join", { conversation_id: chatId })).error.code, "unknown_event");
  plain.close();
  close();
});

test("a bad profile value is refused at connect; profile may come from auth", async () => {
  await assert.rejects(flatClient({ profile: "xml" }), (err) => /^invalid_field: /.test(err.message) && /profile/.test(err.message) && /xml/.test(err.message));
  await assert.rejects(flatClient({ profile: "FLAT" }), (err) => /^invalid_field: /.test(err.message));
  const viaAuth = io(natter.url, { forceNew: true, reconnection: false, auth: { profile: "flat", userId: "eve" } });
  await new Promise((resolve, reject) => (viaAuth.once("connect", resolve), viaAuth.once("connect_error", reject)));
  const seen = [];
  viaAuth.onAny((event, payload) => seen.push({ event, payload }));
  const ack = await viaAuth.timeout(10000).emitWithAck("join", { conversation_id: uid("conv") });
  assert.equal(ack.ok, true);
  for (let waited = 0; !seen.some((e) => e.event === "message" && e.payload.content === "presence:update"); waited += 10) {
    assert.ok(waited < 5000, `no flat presence; got ${JSON.stringify(seen)}`);
    await sleep(10);
  }
  assert.deepEqual([...new Set(seen.map((e) => e.event))], ["message"]);
  viaAuth.close();
  // profile=default is the default profile.
  const plain = await connect(natter.url, { query: { profile: "default", userId: "fay" } });
  assert.equal((await plain.emit("chat:join", { chatId: uid("c") })).ok, true);
  await plain.waitFor("presence:update");
  plain.close();
});

test("flat join: the contract's ack, and a rejoin with last_seq replays missed events as flat messages", async () => {
  const chatId = uid("conv");
  const ann = await flatClient({ userId: "ann" });
  const first = await ann.send("join", { conversation_id: chatId });
  assert.equal(first.ok, true);
  assert.equal(first.chatId, chatId);
  assert.equal(first.recovered, false);
  assert.deepEqual(first.onlineUserIds, ["ann"]);
  const { epoch, seq: lastSeq } = first;
  ann.close();

  // While ann is away: bob talks and the AI answers (seq lastSeq+1, +2).
  const bob = await connect(natter.url, { query: { userId: "bob" } });
  await bob.emit("chat:join", { chatId });
  const missed = uid("m");
  await bob.emit("user:message", { chatId, messageId: missed, text: "[fake:tokens n=3] while you were out" });
  await bob.waitFor("ai:message");

  const back = await flatClient({ userId: "ann" });
  let ackAt = -1;
  const ack = await back.send("join", { conversation_id: chatId, last_seq: lastSeq, epoch }).then((a) => ((ackAt = back.received.length), a));
  assert.equal(ack.ok, true);
  assert.equal(ack.recovered, true);
  assert.equal(ack.seq, lastSeq + 2);
  assert.deepEqual(ack.messages.map((m) => m.seq), [lastSeq + 1, lastSeq + 2]);
  // The replay came before the ack, mapped like live events.
  const replayed = back.received.slice(0, ackAt).map((e) => e.payload).filter((m) => m.metadata?.seq !== undefined);
  assert.deepEqual(replayed.map((m) => [m.type, m.metadata.seq]), [["message_received", lastSeq + 1], ["message_complete", lastSeq + 2]]);
  assert.equal(replayed[0].metadata.messageId, missed);
  assert.equal(replayed[1].content, "t0 t1 t2 ");

  // A default-profile event on a flat connection works too, with flat events after it.
  const reply = await back.send("user:message", { chatId, messageId: uid("m"), text: "[fake:tokens n=2] back" });
  assert.equal(reply.ok, true);
  await back.waitFor("message_complete", (m) => m.metadata.seq === reply.seq + 1);
  assert.deepEqual([...new Set(back.received.map((e) => e.event))], ["message"]);
  back.close();
  bob.close();
});
