// A turn cut by a SIGKILL of the server ends at the next start: every turn ends with exactly one
// of ai:message or ai:error (CONTRACT §1), here ai:error `interrupted`, stored with a seq.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, sleep, startFakeUpstream, startNatter, tempDir, testBus, uid } from "../lib/harness.mjs";

// On a shared bus (Redis) the restarted node ends the cut turn once the dead run's lease
// expires (CONTRACT §8.5: within 15 s of the kill), not at once at startup.
const END_WITHIN_MS = testBus ? 20000 : 10000;

let upstream, tmp;
before(async () => {
  tmp = tempDir();
  upstream = await startFakeUpstream();
});
after(async () => {
  upstream?.stop();
  tmp?.cleanup();
});

test("a turn streaming when natter is SIGKILLed ends with ai:error interrupted after the restart", async () => {
  const dataDir = `${tmp.dir}/crash`;
  let natter = await startNatter({ upstream, dataDir, durability: "full" });
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  const joined = await ann.emit("chat:join", { chatId });
  const requestId = uid("req");
  const messageId = uid("m");
  const sent = await ann.emit("user:message", { chatId, messageId, userId: "ann", text: "[fake:drip n=200 delay_ms=50]", requestId });
  assert.equal(sent.ok, true);
  await ann.until(() => ann.of("ai:token").length >= 3, 10000, "3 tokens");
  assert.deepEqual(await natter.stop("SIGKILL"), { code: null, signal: "SIGKILL" });
  ann.close();

  natter = await startNatter({ upstream, dataDir, durability: "full" });
  try {
    // Rejoins at once, from the user message: the end may come in the replay or live.
    const early = await connect(natter.url, { query: { userId: "ann" } });
    const rejoin = await early.emit("chat:join", { chatId, lastSeq: sent.seq, epoch: joined.epoch });
    assert.equal(rejoin.recovered, true, "same log after the restart");
    const err = await early.waitFor("ai:error", (e) => e.requestId === requestId, END_WITHIN_MS);
    assert.equal(err.code, "interrupted");
    assert.equal(err.retryable, true);
    assert.equal(err.chatId, chatId);
    assert.equal(typeof err.message, "string");
    assert.ok(err.message.length > 0);
    assert.equal(typeof err.seq, "number");
    assert.ok(err.seq > sent.seq, `the end (seq ${err.seq}) comes after the message (seq ${sent.seq})`);

    // Resending the message is a duplicate: it starts no turn, so nothing more ends.
    const resent = await early.emit("user:message", { chatId, messageId, userId: "ann", text: "[fake:drip n=200 delay_ms=50]", requestId });
    assert.equal(resent.duplicate, true);
    assert.equal(resent.seq, sent.seq);

    // Rejoins later, from before the message: the end is in the replay, once, after it.
    const late = await connect(natter.url, { query: { userId: "bob" } });
    await late.emit("chat:join", { chatId, lastSeq: joined.seq, epoch: joined.epoch });
    await late.until(() => late.of("ai:error").length >= 1, 5000, "the replayed ai:error");
    const replayedMessage = late.of("chat:message").find((m) => m.messageId === messageId);
    assert.ok(replayedMessage, "the user message is replayed");
    const replayedErrors = late.of("ai:error").filter((e) => e.requestId === requestId);
    assert.equal(replayedErrors.length, 1);
    assert.equal(replayedErrors[0].seq, err.seq);
    assert.equal(replayedErrors[0].code, "interrupted");
    assert.ok(replayedMessage.seq < replayedErrors[0].seq);

    // The AI SDK resume finds no running turn.
    const resume = await fetch(`${natter.url}/api/chat/${encodeURIComponent(chatId)}/stream?userId=ann`);
    assert.equal(resume.status, 204);

    // A new message gets a normal reply.
    const nextRequest = uid("req");
    const next = await early.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:tokens n=3] again", requestId: nextRequest });
    assert.equal(next.ok, true);
    const reply = await early.waitFor("ai:message", (m) => m.requestId === nextRequest, 10000);
    assert.ok(reply.seq > err.seq);
    assert.equal(early.of("ai:error").filter((e) => e.requestId === nextRequest).length, 0);

    // Exactly one end for the interrupted turn, on both clients, and no ai:message for it.
    await sleep(300);
    for (const c of [early, late]) {
      assert.equal(c.of("ai:error").filter((e) => e.requestId === requestId).length, 1);
      assert.equal(c.of("ai:message").filter((m) => m.requestId === requestId).length, 0);
    }
    early.close();
    late.close();

    // A clean restart ends nothing more.
    assert.deepEqual(await natter.stop("SIGTERM"), { code: 0, signal: null });
    natter = await startNatter({ upstream, dataDir, durability: "full" });
    const again = await connect(natter.url, { query: { userId: "ann" } });
    await again.emit("chat:join", { chatId, lastSeq: joined.seq, epoch: joined.epoch });
    await again.waitFor("ai:message", (m) => m.requestId === nextRequest, 5000);
    await sleep(300);
    assert.equal(again.of("ai:error").length, 1, "still one ai:error in the whole chat");
    again.close();
  } finally {
    await natter.stop();
  }
});
