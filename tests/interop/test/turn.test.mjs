// AI turns end to end: streaming, idempotency, queueing, abort, retries, failures, timeout.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, joinTokens, sleep, startStack, uid } from "../lib/harness.mjs";

let stack, natter, upstream;
before(async () => ({ natter, upstream } = stack = await startStack({ args: ["--turn-timeout-secs", "3"] })));
after(() => stack?.stop());

/** Two members in a fresh chat. */
async function pair() {
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  const bob = await connect(natter.url, { query: { userId: "bob" } });
  await ann.emit("chat:join", { chatId });
  await bob.emit("chat:join", { chatId });
  return { chatId, ann, bob, close: () => (ann.close(), bob.close()) };
}

/** The events of one turn, by requestId, as one member saw them. */
function turnEvents(client, requestId) {
  return client.events.filter((e) => e.payload?.requestId === requestId && e.event.startsWith("ai:"));
}

test("a streamed turn reaches every member; joined tokens equal ai:message.text", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = uid("req");
  const ack = await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:tokens n=30] go", requestId });
  assert.equal(ack.ok, true);
  assert.equal(ack.seq, 2);
  for (const c of [ann, bob]) {
    const msg = await c.waitFor("ai:message", (m) => m.requestId === requestId);
    const tokens = c.of("ai:token").filter((t) => t.requestId === requestId);
    // Deltas that arrive together may be merged into one event at the source, and a member
    // whose tokens were already waiting gets them as one `index..through` event (CONTRACT
    // §6.4); every event starts exactly where the previous one ended.
    assert.ok(tokens.length >= 1 && tokens.length <= 30);
    let next = 0;
    for (const t of tokens) {
      assert.equal(t.index, next, `no gap, no overlap: ${JSON.stringify(tokens.map((x) => [x.index, x.through]))}`);
      assert.ok(t.through === undefined || t.through > t.index, "through only on a run");
      next = (t.through ?? t.index) + 1;
    }
    assert.equal(joinTokens(tokens), msg.text);
    assert.equal(msg.text, Array.from({ length: 30 }, (_, i) => `t${i} `).join(""));
    assert.ok(tokens.every((t) => t.messageId === msg.messageId), "one assistant message id per turn");
    assert.equal(msg.role, "assistant");
    assert.equal(msg.finishReason, "stop");
    assert.equal(msg.seq, 3);
    assert.ok(!Number.isNaN(Date.parse(msg.createdAt)));
    assert.deepEqual(Object.keys(msg.usage).sort(), ["completionTokens", "promptTokens", "totalTokens"]);
    assert.equal(msg.usage.completionTokens, 30);
    // Contract order: processing (queued → working) → tokens → one ai:message.
    const order = turnEvents(c, requestId).map((e) => (e.event === "ai:processing" ? e.payload.status : e.event));
    assert.deepEqual(order.slice(0, 2), ["queued", "working"]);
    assert.equal(order.at(-1), "ai:message");
    assert.equal(order.filter((x) => x === "ai:message" || x === "ai:error").length, 1);
  }
  // The sender gets no chat:message for its own message; the other member does.
  assert.equal(ann.of("chat:message").length, 0);
  const cm = bob.of("chat:message")[0];
  assert.equal(cm.text, "[fake:tokens n=30] go");
  assert.equal(cm.seq, 2);
  assert.equal(cm.role, "user");
  close();
});

test("a repeated messageId is stored once, acked twice with one seq, and calls upstream once", async () => {
  const { chatId, ann, bob, close } = await pair();
  await upstream.reset();
  const messageId = uid("m");
  const msg = { chatId, messageId, userId: "ann", text: "[fake:tokens n=3] once" };
  const first = await ann.emit("user:message", msg);
  const second = await ann.emit("user:message", msg);
  assert.equal(first.seq, second.seq);
  assert.equal(second.duplicate, true);
  await bob.waitFor("ai:message");
  await sleep(300);
  assert.equal(bob.of("chat:message").length, 1);
  assert.equal(bob.of("ai:message").length, 1);
  assert.equal((await upstream.stats()).requests, 1);
  close();
});

test("messages sent during a turn queue one at a time", async () => {
  const { chatId, ann, bob, close } = await pair();
  const r1 = uid("req");
  const r2 = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:drip n=5 delay_ms=40]", requestId: r1 });
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:tokens n=2] second", requestId: r2 });
  await bob.waitFor("ai:message", (m) => m.requestId === r2);
  const ends = bob.of("ai:message").map((m) => m.requestId);
  assert.deepEqual(ends, [r1, r2]);
  // The second turn started working only after the first ended.
  const seq = bob.events.map((e) => `${e.event}:${e.payload?.requestId}:${e.payload?.status ?? ""}`);
  assert.ok(seq.indexOf(`ai:processing:${r2}:working`) > seq.indexOf(`ai:message:${r1}:`));
  assert.ok(seq.indexOf(`ai:processing:${r2}:queued`) < seq.indexOf(`ai:message:${r1}:`));
  // Earlier turns on this server give an average, so a queued turn gets an estimate.
  const queued = bob.of("ai:processing").find((p) => p.requestId === r2 && p.status === "queued");
  assert.equal(typeof queued.etaMs, "number");
  close();
});

test("a member joining while turns are open is told where each stands: working for the running one, queued for the next", async () => {
  const { chatId, ann, bob, close } = await pair();
  const r1 = uid("req");
  const r2 = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:slow_first delay_ms=1500] first", requestId: r1 });
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:tokens n=2] second", requestId: r2 });
  await bob.waitFor("ai:processing", (p) => p.requestId === r1 && p.status === "working");
  await bob.waitFor("ai:processing", (p) => p.requestId === r2 && p.status === "queued");
  const name = (e) => `${e.event}:${e.payload.requestId === r1 ? "r1" : "r2"}:${e.payload.status ?? ""}`;
  const aiEvents = (c) => c.events.filter((e) => e.event.startsWith("ai:")).map(name);
  // A page reload before the first token: a new socket joins without lastSeq; and one that
  // rejoins with lastSeq + epoch (recovered). Both missed the turns' `ai:processing`.
  const carol = await connect(natter.url, { query: { userId: "carol" } });
  const joined = await carol.emit("chat:join", { chatId });
  assert.equal(joined.ok, true);
  const dan = await connect(natter.url, { query: { userId: "dan" } });
  const rejoined = await dan.emit("chat:join", { chatId, lastSeq: 1, epoch: joined.epoch });
  assert.equal(rejoined.recovered, true);
  for (const c of [carol, dan]) {
    await c.waitFor("ai:message", (m) => m.requestId === r2, 10000);
    const seen = aiEvents(c);
    assert.equal(bob.of("ai:token").filter((t) => t.requestId === r1).length > 0, true);
    assert.deepEqual(seen.slice(0, 2), ["ai:processing:r1:working", "ai:processing:r2:queued"], seen.join(" "));
    const joinedStatus = c.of("ai:processing").slice(0, 2);
    assert.ok(joinedStatus.every((p) => p.chatId === chatId && p.etaMs === undefined), JSON.stringify(joinedStatus));
    // Then the turns go on as for everyone: r1's tokens and end, then r2 working.
    assert.ok(seen.indexOf("ai:token:r1:") > 1, seen.join(" "));
    assert.ok(seen.indexOf("ai:processing:r2:working") > seen.indexOf("ai:message:r1:"), seen.join(" "));
  }
  // With nothing open, a join gets no status.
  const erin = await connect(natter.url, { query: { userId: "erin" } });
  assert.equal((await erin.emit("chat:join", { chatId })).ok, true);
  await sleep(300);
  assert.deepEqual(erin.of("ai:processing"), []);
  for (const c of [carol, dan, erin]) c.close();
  close();
});

test("abort mid-stream keeps the partial text, finishReason aborted, and drops the upstream request", async () => {
  const { chatId, ann, bob, close } = await pair();
  await upstream.reset();
  const requestId = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:drip n=200 delay_ms=20]", requestId });
  await bob.until(() => bob.of("ai:token").filter((t) => t.requestId === requestId).length >= 5, 5000, "5 tokens");
  const ack = await bob.emit("ai:abort", { chatId, reason: "user canceled" });
  assert.deepEqual(ack, { ok: true, requestId });
  const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId);
  assert.equal(msg.finishReason, "aborted");
  const tokens = ann.of("ai:token").filter((t) => t.requestId === requestId);
  assert.ok(tokens.length >= 5 && tokens.length < 200);
  assert.equal(joinTokens(tokens), msg.text);
  // The partial reply is in history for a later joiner.
  const carol = await connect(natter.url, { query: { userId: "carol" } });
  const j = await carol.emit("chat:join", { chatId });
  const last = j.messages.at(-1);
  assert.equal(last.messageId, msg.messageId);
  assert.equal(last.text, msg.text);
  assert.equal(last.finishReason, "aborted");
  await sleep(200);
  const stats = await upstream.stats();
  assert.equal(stats.disconnects, 1, "the upstream stream was dropped");
  assert.equal((await bob.emit("ai:abort", { chatId })).error.code, "no_active_turn");
  carol.close();
  close();
});

test("503 then success: retrying with a reason, then the reply", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: `[fake:fail503 times=2 key=${requestId}] hi`, requestId });
  const msg = await bob.waitFor("ai:message", (m) => m.requestId === requestId);
  assert.match(msg.text, /^Echo: /);
  const statuses = bob.of("ai:processing").filter((p) => p.requestId === requestId);
  const retrying = statuses.filter((p) => p.status === "retrying");
  assert.equal(retrying.length, 2);
  assert.match(retrying[0].reason, /upstream_unavailable/);
  assert.equal(bob.of("ai:error").length, 0);
  close();
});

test("429 with retry-after is honoured", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = uid("req");
  const started = Date.now();
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: `[fake:ratelimit times=1 retry_after=0.6 key=${requestId}] hi`, requestId });
  await bob.waitFor("ai:message", (m) => m.requestId === requestId);
  assert.ok(Date.now() - started >= 550, "waited for retry-after");
  const retrying = bob.of("ai:processing").find((p) => p.requestId === requestId && p.status === "retrying");
  assert.match(retrying.reason, /upstream_rate_limited/);
  close();
});

test("always-500 ends in one clean ai:error, retryable, after the retries", async () => {
  const { chatId, ann, bob, close } = await pair();
  await upstream.reset();
  const requestId = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:always500]", requestId });
  const err = await bob.waitFor("ai:error", (e) => e.requestId === requestId);
  assert.equal(err.code, "upstream_unavailable");
  assert.equal(err.retryable, true);
  assert.ok(err.message.length > 0);
  assert.equal(typeof err.seq, "number");
  assert.equal((await upstream.stats()).requests, 4, "1 try + 3 retries");
  assert.equal(bob.of("ai:message").filter((m) => m.requestId === requestId).length, 0);
  close();
});

test("a bad API key is not retried", async () => {
  const { chatId, ann, bob, close } = await pair();
  await upstream.reset();
  const requestId = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:auth401]", requestId });
  const err = await bob.waitFor("ai:error", (e) => e.requestId === requestId);
  assert.equal(err.code, "upstream_auth");
  assert.equal(err.retryable, false);
  assert.equal((await upstream.stats()).requests, 1);
  close();
});

test("a cut after the first token ends with ai:error and keeps the partial text", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:cut after=4]", requestId });
  const err = await bob.waitFor("ai:error", (e) => e.requestId === requestId);
  assert.equal(err.code, "upstream_cut");
  assert.equal(err.retryable, true);
  assert.equal(err.details.partialText, "t0 t1 t2 t3 ");
  const tokens = bob.of("ai:token").filter((t) => t.requestId === requestId);
  assert.equal(joinTokens(tokens), err.details.partialText);
  assert.equal(tokens[0].messageId, err.details.messageId);
  close();
});

test("an error inside the stream ends the turn with upstream_error", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:stream_error after=2]", requestId });
  const err = await bob.waitFor("ai:error", (e) => e.requestId === requestId);
  assert.equal(err.code, "upstream_error");
  assert.equal(err.details.partialText, "t0 t1 ");
  close();
});

test("a hung upstream hits the turn timeout", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = uid("req");
  const started = Date.now();
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:hang]", requestId });
  const err = await bob.waitFor("ai:error", (e) => e.requestId === requestId, 10000);
  assert.equal(err.code, "timeout");
  assert.equal(err.retryable, true);
  assert.ok(Date.now() - started >= 2900);
  close();
});

test("context: earlier messages reach the model", async () => {
  const { chatId, ann, bob, close } = await pair();
  const r1 = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "one two three", requestId: r1 });
  await bob.waitFor("ai:message", (m) => m.requestId === r1);
  const r2 = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "four", requestId: r2 });
  const m2 = await bob.waitFor("ai:message", (m) => m.requestId === r2);
  // The fake counts words over all messages it was sent: "one two three" + "Echo: one two three" + "four".
  assert.equal(m2.usage.promptTokens, 3 + 4 + 1);
  close();
});
