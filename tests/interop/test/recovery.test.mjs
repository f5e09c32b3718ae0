// Reconnect and recovery: exact replay after lastSeq, recovered:false, joining mid-turn.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, joinTokens, startStack, uid } from "../lib/harness.mjs";

let stack, natter, upstream;
before(async () => ({ natter, upstream } = stack = await startStack()));
after(() => stack?.stop());

/** Joins and returns the ack plus the events that arrived before it. */
async function joinRecording(client, payload) {
  const ack = await client.emit("chat:join", payload);
  return { ack, before: client.events.slice() };
}

test("rejoin with lastSeq + epoch replays every missed event exactly once, in order, before the ack", async () => {
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  const bob = await connect(natter.url, { query: { userId: "bob" } });
  const first = await ann.emit("chat:join", { chatId });
  await bob.emit("chat:join", { chatId });
  ann.close();

  for (let i = 0; i < 3; i++) {
    const requestId = uid("req");
    await bob.emit("user:message", { chatId, messageId: uid("m"), userId: "bob", text: `[fake:tokens n=3] msg ${i}`, requestId });
    await bob.waitFor("ai:message", (m) => m.requestId === requestId);
  }
  await bob.emit("message:read", { chatId, userId: "bob", messageIds: ["x"], readAt: new Date().toISOString() });

  const back = await connect(natter.url, { query: { userId: "ann" } });
  const { ack, before: replayed } = await joinRecording(back, { chatId, lastSeq: first.seq, epoch: first.epoch });
  assert.equal(ack.recovered, true);
  assert.equal(ack.epoch, first.epoch);
  const seqs = replayed.map((e) => e.payload?.seq).filter((s) => typeof s === "number");
  const expected = Array.from({ length: ack.seq - first.seq }, (_, i) => first.seq + 1 + i);
  assert.deepEqual(seqs, expected, "every seq after lastSeq, once, in order");
  assert.deepEqual(
    replayed.filter((e) => e.payload?.seq).map((e) => e.event),
    ["chat:message", "ai:message", "chat:message", "ai:message", "chat:message", "ai:message", "message:read"],
  );
  // Live continues after the replay.
  const requestId = uid("req");
  await bob.emit("user:message", { chatId, messageId: uid("m"), userId: "bob", text: "[fake:tokens n=2] live", requestId });
  const live = await back.waitFor("ai:message", (m) => m.requestId === requestId);
  assert.equal(live.seq, ack.seq + 2);
  back.close();
  bob.close();
});

test("an unknown epoch, or lastSeq without epoch, answers recovered:false with the latest messages", async () => {
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  await ann.emit("chat:join", { chatId });
  const requestId = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:tokens n=2] hi", requestId });
  await ann.waitFor("ai:message", (m) => m.requestId === requestId);
  ann.close();

  for (const payload of [{ chatId, lastSeq: 1, epoch: "not-this-chats-epoch" }, { chatId, lastSeq: 1 }, { chatId, lastSeq: 999, epoch: undefined }]) {
    const c = await connect(natter.url, { query: { userId: "ann" } });
    const { ack, before: replayed } = await joinRecording(c, payload);
    assert.equal(ack.recovered, false);
    assert.equal(replayed.filter((e) => e.payload?.seq).length, 0, "nothing replayed");
    assert.deepEqual(ack.messages.map((m) => m.role), ["user", "assistant"]);
    assert.deepEqual(ack.messages.map((m) => m.seq), [2, 3]);
    assert.equal(ack.messages[1].text, "t0 t1 ");
    c.close();
  }
  // lastSeq beyond the head of a known epoch is not recoverable either.
  const c = await connect(natter.url, { query: { userId: "ann" } });
  const head = await c.emit("chat:join", { chatId });
  c.close();
  const d = await connect(natter.url, { query: { userId: "ann" } });
  const { ack } = await joinRecording(d, { chatId, lastSeq: head.seq + 5, epoch: head.epoch });
  assert.equal(ack.recovered, false);
  d.close();
});

test("joining mid-turn gives the tokens so far from index 0, then live, with no gap", async () => {
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  await ann.emit("chat:join", { chatId });
  const requestId = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:drip n=40 delay_ms=15]", requestId });
  await ann.until(() => ann.of("ai:token").length >= 10, 5000, "10 tokens");
  const carol = await connect(natter.url, { query: { userId: "carol" } });
  await carol.emit("chat:join", { chatId });
  const msg = await carol.waitFor("ai:message", (m) => m.requestId === requestId);
  const tokens = carol.of("ai:token").filter((t) => t.requestId === requestId);
  assert.equal(tokens[0].index, 0);
  assert.deepEqual(tokens.map((t) => t.index), [...Array(40).keys()], "each index once, in order");
  assert.equal(joinTokens(tokens), msg.text);
  ann.close();
  carol.close();
});

test("a member that drops mid-turn and rejoins with lastSeq gets the whole reply", async () => {
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  const bob = await connect(natter.url, { query: { userId: "bob" } });
  const j = await ann.emit("chat:join", { chatId });
  await bob.emit("chat:join", { chatId });
  const requestId = uid("req");
  await bob.emit("user:message", { chatId, messageId: uid("m"), userId: "bob", text: "[fake:drip n=30 delay_ms=20]", requestId });
  await ann.until(() => ann.of("ai:token").length >= 5, 5000, "5 tokens");
  const seenBefore = ann.of("ai:token").filter((t) => t.requestId === requestId);
  ann.close();
  const back = await connect(natter.url, { query: { userId: "ann" } });
  const { ack } = await joinRecording(back, { chatId, lastSeq: j.seq, epoch: j.epoch });
  assert.equal(ack.recovered, true);
  const msg = await back.waitFor("ai:message", (m) => m.requestId === requestId);
  const tokens = [...seenBefore, ...back.of("ai:token").filter((t) => t.requestId === requestId)];
  assert.equal(joinTokens(tokens), msg.text, "client-side dedupe by index rebuilds the full reply");
  assert.equal(back.of("chat:message").length, 1, "bob's message was replayed");
  back.close();
  bob.close();
});
