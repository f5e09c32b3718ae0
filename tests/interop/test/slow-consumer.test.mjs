// Slow consumers (CONTRACT §6.4; docs/protocol.md "Slow consumers"; crates/natter-socketio/src/
// delivery.rs, crates/natter-core/src/feed.rs, crates/natter-http/src/realtime/stream.rs).
//
// A member that stops reading its TCP socket (a raw Engine.IO client whose socket is paused,
// or an SSE reader whose socket is paused) must not slow the turn for anyone else, must not
// make the server buffer without bound, and must be told (`slow_consumer`) and cut, after
// which it recovers everything by rejoining with lastSeq (Socket.IO) or Last-Event-ID (SSE).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, sleep, startStack, uid } from "../lib/harness.mjs";
import { rawConnect, rssKiB } from "../lib/rawsocket.mjs";
import { openSse } from "../lib/sse-reader.mjs";

// Slow-consumer timeout: short so the test is quick, long enough that a stock client in this
// (busy) Node process never stalls that long while reading.
const TIMEOUT_SECS = 3;
// One upstream delta per `ai:token` event, so a long turn is many packets.
const ARGS = ["--merge-delta-bytes", "0", "--slow-consumer-timeout-secs", String(TIMEOUT_SECS)];
// Tokens in the long turn. With a 200-byte chatId every `ai:token` packet is ~370 bytes, so the
// turn is ~22 MB per member: far more than the kernel's socket buffers on loopback (~4 MB),
// so a member that reads nothing really does fall behind.
const N = 60000;
const LONG = "c".repeat(200);
const expectedText = (n) => Array.from({ length: n }, (_, i) => `t${i} `).join("");

let stack, natter;
before(async () => {
  ({ natter } = stack = await startStack({ args: ARGS }));
});
after(() => stack?.stop());

/**
 * Applies the token rule of CONTRACT §6.4 to `tokens` in arrival order: drop an event whose
 * (`through` ??) `index` is below the next expected index, append one that starts exactly at
 * it; anything else (a gap, or an event overlapping what was already applied) is a violation.
 */
function applyTokens(tokens) {
  let next = 0;
  let text = "";
  let coalesced = 0;
  for (const t of tokens) {
    const last = t.through ?? t.index;
    if (last < next) continue;
    assert.equal(t.index, next, `token event starts at ${t.index} (through ${t.through}), expected ${next}`);
    if (t.through !== undefined && t.through > t.index) coalesced += 1;
    text += t.token;
    next = last + 1;
  }
  return { text, next, coalesced };
}

/** Samples the server's VmRSS every 25 ms until `stop()`; returns {start, peak()}. */
async function sampleRss(pid) {
  const start = await rssKiB(pid);
  assert.ok(start > 0, "VmRSS of the server is readable from /proc");
  let peak = start;
  const timer = setInterval(async () => {
    const r = await rssKiB(pid);
    if (r > peak) peak = r;
  }, 25);
  return {
    start,
    async stop() {
      clearInterval(timer);
      const r = await rssKiB(pid);
      if (r > peak) peak = r;
      return peak;
    },
  };
}

/** Polls a probe's `chat:join` until `pred(onlineUserIds)`; returns them. */
async function presenceUntil(probe, chatId, pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ack = await probe.emit("chat:join", { chatId });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    if (pred(ack.onlineUserIds)) return ack.onlineUserIds;
    if (Date.now() > deadline) throw new Error(`timed out waiting for presence: ${what}; online: ${ack.onlineUserIds}`);
    await sleep(200);
  }
}

/** ann + bob in a fresh chat; bob asks for the long turn; returns what ann saw and when. */
async function longTurn(chatId, { beforeSend = async () => {} } = {}) {
  const ann = await connect(natter.url, { query: { userId: "ann" }, transports: ["websocket"] });
  const bob = await connect(natter.url, { query: { userId: "bob" }, transports: ["websocket"] });
  assert.equal((await ann.emit("chat:join", { chatId })).ok, true);
  assert.equal((await bob.emit("chat:join", { chatId })).ok, true);
  await beforeSend();
  const requestId = uid("req");
  const started = Date.now();
  const ack = await bob.emit("user:message", { chatId, messageId: uid("m"), text: `[fake:tokens n=${N}]`, requestId });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId, 90000);
  const ms = Date.now() - started;
  const tokens = ann.of("ai:token").filter((t) => t.requestId === requestId);
  return { ann, bob, msg, ms, tokens, requestId };
}

test(`Socket.IO: paused members (${N}-token turn, --slow-consumer-timeout-secs ${TIMEOUT_SECS}) do not slow the turn, cost bounded memory, get slow_consumer + disconnect, and recover by rejoining`, async (t) => {
  const pid = natter.proc.pid;

  // Baseline: the same turn with no slow member.
  const rss0 = await sampleRss(pid);
  const base = await longTurn(LONG + uid("base"));
  const basePeak = await rss0.stop();
  assert.equal(applyTokens(base.tokens).text, base.msg.text);
  assert.equal(base.msg.text, expectedText(N));
  base.ann.close();
  base.bob.close();

  // The same turn with three members that never read: they joined, then paused their sockets.
  const chatId = LONG + uid("slow");
  const slow = [];
  const joins = [];
  let connectedAt;
  const rss1 = await sampleRss(pid);
  const run = await longTurn(chatId, {
    beforeSend: async () => {
      connectedAt = Date.now();
      for (let i = 0; i < 3; i++) {
        const s = await rawConnect(natter.url, { query: { userId: `slow${i}` } });
        const ack = await s.emit("chat:join", { chatId });
        assert.equal(ack.ok, true, JSON.stringify(ack));
        joins.push(ack);
        slow.push(s);
      }
      assert.deepEqual(joins[2].onlineUserIds, ["ann", "bob", "slow0", "slow1", "slow2"]);
      for (const s of slow) s.pause();
    },
  });
  const slowPeak = await rss1.stop();
  const { ann, bob } = run;
  let probe;
  try {
    await t.test("(a) the normal member gets the whole turn, exactly, while the slow ones are still paused", () => {
      assert.equal(run.msg.text, expectedText(N));
      const { text, coalesced } = applyTokens(run.tokens);
      assert.equal(text, run.msg.text, "ann's tokens, deduped by index, are the reply");
      assert.equal(ann.of("error").length, 0, `ann was not dropped: ${JSON.stringify(ann.of("error"))}`);
      for (const s of slow) assert.equal(s.serverDisconnected, false);
      // Loose guard only (a busy 2-core machine): the turn did not wait for the paused members.
      assert.ok(run.ms < base.ms * 5 + 20000, `turn took ${run.ms} ms with paused members, ${base.ms} ms without`);
      t.diagnostic(`turn: ${base.ms} ms alone, ${run.ms} ms with 3 paused members; ann got ${run.tokens.length} token events (${coalesced} coalesced)`);
    });

    await t.test("(b) server memory stays bounded while three members read nothing", () => {
      // Each paused member was owed ~22 MB of packets; had the server queued them, RSS would
      // be ~60 MB above the baseline run's peak.
      const extraMiB = (slowPeak - basePeak) / 1024;
      t.diagnostic(`VmRSS: baseline peak ${basePeak} KiB, peak with paused members ${slowPeak} KiB (+${extraMiB.toFixed(1)} MiB)`);
      assert.ok(extraMiB < 32, `RSS grew ${extraMiB.toFixed(1)} MiB over the baseline peak`);
    });

    await t.test("(c) each paused member is dropped; when it reads again it gets consistent tokens, then error slow_consumer, then a disconnect", async () => {
      probe = await connect(natter.url, { query: { userId: "probe" } });
      await presenceUntil(probe, chatId, (ids) => !ids.some((u) => u.startsWith("slow")), 30000, "slow members left");
      const droppedAt = Date.now();
      // Resume at different moments after the drop: at once, a little later, and later than
      // a stuck tab might (but before Engine.IO's 25 s heartbeat would close the connection).
      const delays = [0, 2000, 6500];
      for (const [i, s] of slow.entries()) {
        const wait = droppedAt + delays[i] - Date.now();
        if (wait > 0) await sleep(wait);
        assert.ok(Date.now() - connectedAt < 24000, "resumed before the first heartbeat (the machine is too slow for this test)");
        s.resume();
        await s.until((evs) => evs.some((e) => e.event === "__disconnect"), 15000, `slow${i}: disconnect after resuming ${delays[i]} ms after the drop`).catch((e) => {
          throw new Error(`${e.message}; errors: ${JSON.stringify(s.of("error"))}; closed: ${JSON.stringify(s.closed)}`);
        });
        await sleep(100);
        const names = s.events.map((e) => e.event);
        const errAt = names.indexOf("error");
        const discAt = names.indexOf("__disconnect");
        assert.ok(errAt >= 0, `slow${i} got an error event before the disconnect (resumed ${delays[i]} ms after the drop)`);
        const err = s.events[errAt].payload;
        assert.equal(err.code, "slow_consumer");
        assert.ok(err.message.trim().length > 0);
        assert.ok(errAt < discAt, "error, then disconnect");
        assert.equal(discAt, names.length - 1, `nothing after the disconnect: ${names.slice(discAt)}`);
        const tokens = s.of("ai:token").filter((x) => x.requestId === run.requestId);
        const { text, coalesced } = applyTokens(tokens);
        assert.ok(expectedText(N).startsWith(text), `slow${i}'s tokens are a prefix of the reply`);
        assert.equal(s.of("ai:message").length, 0, "dropped before the turn's end reached it");
        t.diagnostic(`slow${i}: ${tokens.length} token events (${coalesced} coalesced), ${text.length} chars before the drop`);
      }
    });

    await t.test("(d) after reconnecting and rejoining with lastSeq + epoch, each gets the whole reply exactly once", async () => {
      for (const [i, s] of slow.entries()) {
        s.close();
        const back = await connect(natter.url, { query: { userId: `slow${i}` } });
        const ack = await back.emit("chat:join", { chatId, lastSeq: joins[i].seq, epoch: joins[i].epoch });
        assert.equal(ack.ok, true, JSON.stringify(ack));
        assert.equal(ack.recovered, true);
        const replayed = back.events.filter((e) => typeof e.payload?.seq === "number");
        assert.deepEqual(
          replayed.map((e) => e.payload.seq),
          Array.from({ length: ack.seq - joins[i].seq }, (_, k) => joins[i].seq + 1 + k),
          "every seq after lastSeq once, in order",
        );
        const reply = back.of("ai:message").filter((m) => m.requestId === run.requestId);
        assert.equal(reply.length, 1);
        assert.equal(reply[0].text, expectedText(N));
        assert.equal(reply[0].seq, run.msg.seq);
        back.close();
      }
    });

    await t.test("the chat still works for everyone after the drops", async () => {
      const requestId = uid("req");
      await bob.emit("user:message", { chatId, messageId: uid("m"), text: "[fake:tokens n=5]", requestId });
      const m = await ann.waitFor("ai:message", (x) => x.requestId === requestId, 20000);
      assert.equal(m.text, expectedText(5));
    });
  } finally {
    for (const s of slow) s.destroy();
    probe?.close();
    ann.close();
    bob.close();
  }
});

test("SSE: a paused /stream reader does not hold up the chat, is given up on with slow_consumer, and recovers with Last-Event-ID", async (t) => {
  const base = `${natter.url}/api/v1/chat`;
  const pid = natter.proc.pid;
  const created = await (await fetch(`${base}/create`, { method: "POST", body: JSON.stringify({ userId: "bob" }) })).json();
  const chatKey = created.chatKey;
  const ann = await connect(natter.url, { query: { userId: "ann" }, transports: ["websocket"] });
  const bob = await connect(natter.url, { query: { userId: "bob" }, transports: ["websocket"] });
  const probe = await connect(natter.url, { query: { userId: "probe" } });
  const fast = await openSse(`${base}/stream?userId=ssefast&chatKey=${chatKey}`);
  const stuck = await openSse(`${base}/stream?userId=ssestuck&chatKey=${chatKey}`);
  let again;
  try {
    assert.equal(fast.status, 200);
    assert.equal(stuck.status, 200);
    await fast.until((evs) => evs.some((e) => e.type === "reconnected"), 5000, "fast: reconnected");
    await stuck.until((evs) => evs.some((e) => e.type === "reconnected"), 5000, "stuck: reconnected");
    assert.equal((await ann.emit("chat:join", { chatId: chatKey })).ok, true);
    assert.equal((await bob.emit("chat:join", { chatId: chatKey })).ok, true);
    await presenceUntil(probe, chatKey, (ids) => ids.includes("ssestuck") && ids.includes("ssefast"), 5000, "SSE readers present");
    stuck.pause();

    const rss = await sampleRss(pid);
    // ~6.4 MB of messages (more than the kernel buffers on loopback), each answered by a turn,
    // then a storm of typing events: the stuck stream's 1024-event queue fills and stays full.
    const BIG = 40;
    const pad = "x".repeat(160 * 1024);
    const sent = [];
    for (let i = 0; i < BIG; i++) {
      const messageId = uid("big");
      const requestId = uid("req");
      const ack = await bob.emit("user:message", { chatId: chatKey, messageId, requestId, text: `[fake:tokens n=1] #${i} ${pad}` });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      sent.push({ messageId, requestId, seq: ack.seq });
    }
    for (let i = 0; i < 1500; i++) await bob.emit(i % 2 ? "typing:stop" : "typing:start", { chatId: chatKey });

    await t.test("the stuck stream is given up on (it leaves presence) and memory stays bounded", async () => {
      await presenceUntil(probe, chatKey, (ids) => !ids.includes("ssestuck"), 30000, "ssestuck left");
      assert.ok((await presenceUntil(probe, chatKey, () => true, 1000, "")).includes("ssefast"), "the reading stream is still there");
      const peak = await rss.stop();
      const growthMiB = (peak - rss.start) / 1024;
      t.diagnostic(`VmRSS ${rss.start} KiB → peak ${peak} KiB (+${growthMiB.toFixed(1)} MiB)`);
      assert.ok(growthMiB < 96, `RSS grew ${growthMiB.toFixed(1)} MiB`);
    });

    // More messages after it was given up on: it must get them from the replay.
    const MORE = 10;
    for (let i = 0; i < MORE; i++) {
      const messageId = uid("more");
      const requestId = uid("req");
      const ack = await bob.emit("user:message", { chatId: chatKey, messageId, requestId, text: `[fake:tokens n=2] more #${i}` });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      sent.push({ messageId, requestId, seq: ack.seq });
    }
    const total = sent.length;

    await t.test("the other members (Socket.IO and a reading SSE stream) get every message and reply while it is stuck", async () => {
      const ids = new Set(sent.map((s) => s.requestId));
      await ann.until((evs) => evs.filter((e) => e.event === "ai:message" && ids.has(e.payload.requestId)).length === total, 60000, "ann: all replies");
      await fast.until((evs) => evs.filter((e) => e.type === "message" && e.data.message?.role === "ai").length === total, 60000, "fast SSE: all replies");
      const fastUser = fast.of("message").filter((e) => e.data.message?.role === "user").map((e) => e.data.message.id);
      assert.deepEqual(fastUser, sent.map((s) => s.messageId), "the reading SSE stream got every user message once, in order");
      const fastIds = fast.events.filter((e) => e.id !== null).map((e) => e.id);
      assert.deepEqual(fastIds, Array.from({ length: 2 * total }, (_, i) => i + 2), "and every seq once, in order");
      const replies = ann.of("ai:message").filter((m) => ids.has(m.requestId)).map((m) => m.text);
      assert.deepEqual(replies, [...Array(BIG).fill("t0 "), ...Array(MORE).fill("t0 t1 ")]);
      assert.equal(stuck.ended, false, "the stuck one is still paused");
    });

    const firstIds = [];
    await t.test("reading again, it gets what was queued, then error slow_consumer, and the stream ends", async () => {
      stuck.resume();
      await stuck.until(() => stuck.ended, 20000, "stuck stream end");
      const last = stuck.events.at(-1);
      assert.equal(last.type, "error", `last event: ${JSON.stringify(last).slice(0, 300)}`);
      assert.equal(last.data.data.code, "slow_consumer");
      assert.ok(last.data.data.message.trim().length > 0);
      for (const e of stuck.events) if (e.id !== null) firstIds.push(e.id);
      assert.deepEqual(firstIds, [...firstIds].sort((a, b) => a - b), "ids in order");
      assert.equal(new Set(firstIds).size, firstIds.length, "no id twice");
      assert.ok(firstIds.length <= 2 * BIG, `nothing sent after it was given up on reached it (${firstIds.length} ids)`);
      t.diagnostic(`stuck stream: ${stuck.events.length} events, ${firstIds.length} with ids, ${(stuck.bytes / 1048576).toFixed(1)} MiB`);
    });

    await t.test("reconnecting with Last-Event-ID replays the rest: every message and reply exactly once overall", async () => {
      const lastId = firstIds.at(-1) ?? 1;
      again = await openSse(`${base}/stream?userId=ssestuck&chatKey=${chatKey}`, { headers: { "last-event-id": String(lastId) } });
      assert.equal(again.status, 200);
      const head = 1 + 2 * total; // seq 1 is the chat's creation, then the messages and their replies
      await again.until((evs) => evs.some((e) => e.id === head), 30000, `id ${head}`);
      const ids = [...firstIds, ...again.events.filter((e) => e.id !== null).map((e) => e.id)];
      assert.deepEqual(ids, Array.from({ length: head - 1 }, (_, i) => i + 2), "seqs 2..head, each once, in order");
      const userIds = [...stuck.events, ...again.events]
        .filter((e) => e.type === "message" && e.data.message?.role === "user")
        .map((e) => e.data.message.id);
      assert.deepEqual(userIds, sent.map((s) => s.messageId));
    });
  } finally {
    fast.close();
    stuck.close();
    again?.close();
    ann.close();
    bob.close();
    probe.close();
  }
});
