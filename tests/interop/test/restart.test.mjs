// Durability across a SIGKILL, graceful shutdown, and the system prompt.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, startFakeUpstream, startNatter, tempDir, uid } from "../lib/harness.mjs";

let upstream, tmp;
before(async () => {
  tmp = tempDir();
  upstream = await startFakeUpstream();
});
after(async () => {
  upstream?.stop();
  tmp?.cleanup();
});

test("after SIGKILL every acked message is there, in order, with the same seq", async () => {
  const dataDir = `${tmp.dir}/kill`;
  // Full durability: what is acked must survive the kill.
  const opts = { upstream, dataDir, durability: "full" };
  let natter = await startNatter(opts);
  const chatId = uid("chat");
  const clients = await Promise.all(["ann", "bob", "cat"].map((u) => connect(natter.url, { query: { userId: u } })));
  const joined = await Promise.all(clients.map((c) => c.emit("chat:join", { chatId })));
  const acked = [];
  // Three clients sending at once, 15 messages each.
  await Promise.all(
    clients.map(async (c, ci) => {
      for (let i = 0; i < 15; i++) {
        const messageId = uid(`m${ci}`);
        const ack = await c.emit("user:message", { chatId, messageId, userId: ["ann", "bob", "cat"][ci], text: `[fake:tokens n=2] ${ci}/${i}` });
        assert.equal(ack.ok, true);
        acked.push({ messageId, seq: ack.seq });
      }
    }),
  );
  const seqs = acked.map((a) => a.seq);
  assert.equal(new Set(seqs).size, seqs.length, "no two messages share a seq");
  await natter.stop("SIGKILL");
  clients.forEach((c) => c.close());

  natter = await startNatter(opts);
  const c = await connect(natter.url, { query: { userId: "ann" } });
  const ack = await c.emit("chat:join", { chatId, lastSeq: 0, epoch: joined[0].epoch });
  assert.equal(ack.recovered, true, "same epoch after a restart");
  const replayed = c.of("chat:message");
  const bySeq = new Map(replayed.map((m) => [m.seq, m.messageId]));
  for (const a of acked) assert.equal(bySeq.get(a.seq), a.messageId, `message ${a.messageId} at seq ${a.seq}`);
  assert.equal(replayed.length, acked.length, "each acked message exactly once");
  const all = c.events.map((e) => e.payload?.seq).filter((s) => typeof s === "number");
  assert.deepEqual(all, [...all].sort((x, y) => x - y), "replay is in seq order");
  assert.deepEqual(all, Array.from({ length: all.length }, (_, i) => i + 2), "no gaps (seq 1 is the chat's creation)");
  // A resend of an acked message after the restart is still a duplicate with its old seq.
  const again = await c.emit("user:message", { chatId, messageId: acked[0].messageId, userId: "ann", text: "again" });
  assert.equal(again.duplicate, true);
  assert.equal(again.seq, acked[0].seq);
  c.close();
  await natter.stop();
});

test("graceful shutdown ends a running turn with ai:error shutdown and keeps its partial text", async () => {
  const dataDir = `${tmp.dir}/term`;
  let natter = await startNatter({ upstream, dataDir });
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  const join = await ann.emit("chat:join", { chatId });
  const requestId = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:drip n=500 delay_ms=10]", requestId });
  await ann.until(() => ann.of("ai:token").length >= 5, 5000, "5 tokens");
  const exit = natter.stop("SIGTERM");
  const err = await ann.waitFor("ai:error", (e) => e.requestId === requestId);
  assert.equal(err.code, "shutdown");
  assert.equal(err.retryable, true);
  assert.ok(err.details.partialText.startsWith("t0 t1 t2 t3 t4 "));
  assert.deepEqual(await exit, { code: 0, signal: null });
  ann.close();

  natter = await startNatter({ upstream, dataDir });
  const c = await connect(natter.url, { query: { userId: "ann" } });
  await c.emit("chat:join", { chatId, lastSeq: join.seq, epoch: join.epoch });
  const replayedErr = c.of("ai:error")[0];
  assert.equal(replayedErr.details.partialText, err.details.partialText);
  assert.equal(replayedErr.seq, err.seq);
  c.close();
  await natter.stop();
});

test("the system prompt is sent before the chat's context", async () => {
  const natter = await startNatter({ upstream, dataDir: `${tmp.dir}/sys`, args: ["--system-prompt", "You are terse and kind."] });
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  await ann.emit("chat:join", { chatId });
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "hello" });
  const msg = await ann.waitFor("ai:message");
  // The fake counts words over every message it was sent: 5 (system) + 1 (user).
  assert.equal(msg.usage.promptTokens, 6);
  ann.close();
  await natter.stop();
});
