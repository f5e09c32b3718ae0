// 100 abrupt drops of a member while turns stream (CONTRACT §6.4, §6.6; docs/protocol.md
// "Joining and recovery", "Client recipe: reconnecting").
//
// ann (stock socket.io-client, websocket, the Manager's own reconnection) follows a chat while
// bob asks for one streaming turn after another. A seeded PRNG picks 100 drop points: after k
// `ai:token`s on a connection, m ms after a join ack, or right after sending `chat:join`
// (before its ack, while the replay is in flight). A drop is abrupt: the engine's transport
// is closed under the client (`socket.io.engine.close()`, no Socket.IO DISCONNECT) or its TCP
// socket is destroyed. On every reconnect ann rejoins with {chatId, lastSeq, epoch} and
// applies the recipe: events with a seq must come exactly once, in order; tokens are deduped
// by index (`through` honoured). bob's turns mostly finish; some are cut by the upstream
// (ai:error with partial text) and some are followed by a read receipt. At the end every
// turn's text, as ann assembled it, must be the stored reply exactly, and every seq 2..head
// must have been applied exactly once. The second test repeats this with a tiny socket buffer
// and long turns, so that rejoins happen while the member is behind (merged `through` events).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { connect, sleep, startStack, uid } from "../lib/harness.mjs";
import { mulberry32 } from "../lib/rawsocket.mjs";

const SEED = Number(process.env.NATTER_RECONNECT_SEED || 0x5eed0100);

let stack;
after(() => stack?.stop());

/** The drop plan: what ends each of ann's connections. */
function plan(seed, drops, tokens) {
  const rnd = mulberry32(seed);
  return Array.from({ length: drops }, () => {
    const r = rnd();
    const how = rnd() < 0.5 ? "engine.close" : "tcp.destroy";
    if (r < 0.1) return { when: "join", how };
    if (r < 0.65) return { when: "tokens", k: 1 + Math.floor(rnd() * tokens), how };
    return { when: "ms", ms: Math.floor(rnd() * 300), how };
  });
}

test(`100 abrupt drops mid-stream, each followed by a rejoin with lastSeq: every token once, every seq once (seed 0x${SEED.toString(16)})`, async (t) => {
  stack = await startStack();
  await scenario(t, stack.natter, { seed: SEED, DROPS: 100, TOKENS: 60, delayMs: 5 });
  await stack.stop();
  stack = null;
});

// A member that rejoins mid-turn gets the turn's tokens so far again from index 0 while it
// may already hold some of them; with a small socket buffer (8 packets on socketioxide, 1 KiB
// on the own transport) it is "behind" at once, which is
// when the server may merge queued tokens (`through`). A merged event must never straddle the
// index the client expects next (CONTRACT §6.4: "no live event covers an index that replay
// already sent"), or the recipe drops it and loses tokens.
test(`rejoining while behind (--socket-buffer 8 / --socket-queue-bytes 1024, one event per delta, 300-token turns): 40 drops, no token lost (seed 0x${(SEED + 2).toString(16)})`, async (t) => {
  stack = await startStack({ args: ["--socket-buffer", "8", "--socket-queue-bytes", "1024", "--merge-delta-bytes", "0"] });
  await scenario(t, stack.natter, { seed: SEED + 2, DROPS: 40, TOKENS: 300, delayMs: 1 });
  await stack.stop();
  stack = null;
});

async function scenario(t, natter, { seed, DROPS, TOKENS, delayMs }) {
  const TURN = `[fake:drip n=${TOKENS} delay_ms=${delayMs}]`;
  const expected = Array.from({ length: TOKENS }, (_, i) => `t${i} `).join("");
  const drops = plan(seed, DROPS, TOKENS);
  t.diagnostic(`seed 0x${seed.toString(16)}: ${drops.filter((d) => d.when === "tokens").length} after k tokens, ${drops.filter((d) => d.when === "ms").length} after m ms, ${drops.filter((d) => d.when === "join").length} during the join; ${drops.filter((d) => d.how === "tcp.destroy").length} TCP destroys`);
  const chatId = uid("drops");
  const bob = await connect(natter.url, { query: { userId: "bob" }, transports: ["websocket"] });
  assert.equal((await bob.emit("chat:join", { chatId })).ok, true);

  // ---- ann's client state (the recipe in docs/protocol.md)
  let epoch;
  let lastSeq = 0;
  const applied = []; // seqs, in the order applied
  const violations = [];
  const next = new Map(); // messageId → next token index
  const text = new Map(); // messageId → text assembled from tokens
  const finals = new Map(); // messageId → {text, requestId, live, tokensText}
  let dropped = 0;
  let gen = 0; // connection generation
  let joinedGen = -1; // the generation whose join was acked
  let tokensThisConn = 0;
  let armed = null; // the current connection's drop trigger
  const stats = { joins: 0, tokenEvents: 0, tokenDropped: 0, coalesced: 0, replayedFinals: 0, liveFinals: 0 };

  const ann = io(natter.url, {
    forceNew: true,
    transports: ["websocket"],
    query: { userId: "ann" },
    reconnectionDelay: 10,
    reconnectionDelayMax: 50,
    randomizationFactor: 0,
  });

  function drop(how) {
    if (!ann.connected) return;
    armed = null;
    dropped += 1;
    if (how === "tcp.destroy") ann.io.engine.transport.ws?._socket?.destroy();
    else ann.io.engine.close();
  }

  function onSeq(event, e) {
    if (e.seq !== lastSeq + 1) {
      violations.push(`${event} seq ${e.seq} after lastSeq ${lastSeq} (gen ${gen})`);
      if (e.seq <= lastSeq) return;
    }
    lastSeq = e.seq;
    applied.push(e.seq);
  }

  ann.on("chat:message", (e) => onSeq("chat:message", e));
  ann.on("message:read", (e) => onSeq("message:read", e));
  /** A turn's end (`ai:message` text, or `ai:error` partial text). */
  function onEnd(event, e, messageId, final) {
    onSeq(event, e);
    const live = joinedGen === gen;
    const tokensText = text.get(messageId) ?? "";
    finals.set(messageId, { text: final, requestId: e.requestId, live, tokensText, seq: e.seq, event });
    if (live) {
      stats.liveFinals += 1;
      // Live: ann was in the chat for this turn's end, so it has every token before it.
      if (tokensText !== final) violations.push(`live ${event} ${e.seq}: tokens gave ${JSON.stringify(tokensText.slice(-40))} (${tokensText.length} chars), the turn's text is ${final.length} chars`);
    } else {
      stats.replayedFinals += 1;
      if (!final.startsWith(tokensText)) violations.push(`replayed ${event} ${e.seq}: the tokens seen before are not a prefix of its text`);
    }
    next.delete(messageId);
  }
  ann.on("ai:error", (e) => onEnd("ai:error", e, e.details.messageId, e.details.partialText));
  ann.on("ai:message", (e) => onEnd("ai:message", e, e.messageId, e.text));
  ann.on("ai:token", (e) => {
    stats.tokenEvents += 1;
    tokensThisConn += 1;
    const n = next.get(e.messageId) ?? 0;
    const last = e.through ?? e.index;
    if (finals.has(e.messageId) || last < n) {
      stats.tokenDropped += 1;
    } else if (e.index !== n) {
      violations.push(`token ${e.index}..${last} of ${e.messageId}: expected index ${n} (gen ${gen})`);
    } else {
      if (e.through !== undefined && e.through > e.index) stats.coalesced += 1;
      text.set(e.messageId, (text.get(e.messageId) ?? "") + e.token);
      next.set(e.messageId, last + 1);
    }
    if (armed?.when === "tokens" && tokensThisConn >= armed.k) drop(armed.how);
  });

  // The ack is handled in its callback, synchronously as its packet is read: a live event
  // right behind it must already see the new state.
  ann.on("connect", () => {
    gen += 1;
    const mine = gen;
    tokensThisConn = 0;
    const d = dropped < DROPS ? drops[dropped] : null;
    armed = d;
    stats.joins += 1;
    const payload = epoch ? { chatId, lastSeq, epoch } : { chatId };
    ann.timeout(20000).emit("chat:join", payload, (err, ack) => {
      if (err || mine !== gen) return; // the connection dropped meanwhile
      if (!ack.ok) return violations.push(`join refused: ${JSON.stringify(ack)}`);
      if (epoch) {
        if (ack.epoch !== epoch) violations.push(`epoch changed: ${ack.epoch}`);
        if (!ack.recovered) violations.push(`rejoin ${stats.joins} with lastSeq ${payload.lastSeq} not recovered`);
        if (ack.seq !== lastSeq) violations.push(`after the replay lastSeq is ${lastSeq}, the ack says head ${ack.seq}`);
      } else {
        if (ack.seq !== 1) violations.push(`first join: head ${ack.seq}, expected 1 (the chat's creation)`);
        epoch = ack.epoch;
        lastSeq = ack.seq;
      }
      joinedGen = mine;
      if (d?.when === "ms") setTimeout(() => gen === mine && armed === d && drop(d.how), d.ms);
    });
    if (d?.when === "join") drop(d.how);
  });

  // ---- bob's turns, one after another, until ann has been dropped 100 times
  const started = Date.now();
  const turns = [];
  let receipts = 0;
  try {
    // bob starts once ann has a first join ack (an epoch to rejoin with).
    for (const deadline = Date.now() + 10000; !epoch; await sleep(10)) {
      if (Date.now() > deadline) throw new Error("ann never joined");
    }
    // Most turns finish; some are cut by the upstream after a few tokens (they end with
    // ai:error upstream_cut and their partial text); some are followed by a read receipt.
    const rnd = mulberry32(seed + 1);
    while (dropped < DROPS) {
      if (Date.now() - started > 90000) throw new Error(`only ${dropped} drops in 90 s`);
      const requestId = uid("req");
      const cut = rnd() < 0.2 ? 5 + Math.floor(rnd() * (TOKENS - 10)) : null;
      const directive = cut ? `[fake:cut after=${cut} delay_ms=${delayMs}]` : TURN;
      const ack = await bob.emit("user:message", { chatId, messageId: uid("m"), requestId, text: `${directive} #${turns.length}` });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      turns.push({ requestId, cut });
      await bob.until((evs) => evs.some((e) => (e.event === "ai:message" || e.event === "ai:error") && e.payload.requestId === requestId), 20000, `turn ${requestId}`);
      if (rnd() < 0.3) {
        const r = await bob.emit("message:read", { chatId, messageIds: [ack.messageId], readAt: new Date().toISOString() });
        assert.equal(r.ok, true, JSON.stringify(r));
        receipts += 1;
      }
    }
    // No more drops: ann rejoins once more and sees one last turn live.
    await new Promise((r) => setTimeout(r, 200));
    const deadline = Date.now() + 10000;
    while (!(ann.connected && joinedGen === gen)) {
      if (Date.now() > deadline) throw new Error("ann did not rejoin after the last drop");
      await sleep(10);
    }
    const requestId = uid("last");
    const ack = await bob.emit("user:message", { chatId, messageId: uid("m"), requestId, text: `${TURN} last` });
    turns.push({ requestId, cut: null });
    await bob.waitFor("ai:message", (m) => m.requestId === requestId, 20000);
    const lastReply = bob.of("ai:message").find((m) => m.requestId === requestId);
    const until = Date.now() + 10000;
    while (lastSeq < lastReply.seq && Date.now() < until) await sleep(10);
    assert.equal(ack.ok, true);
  } finally {
    ann.close();
    bob.close();
  }
  const elapsed = Date.now() - started;
  t.diagnostic(`${dropped} drops, ${turns.length} turns (${turns.filter((x) => x.cut).length} cut by the upstream), ${receipts} read receipts, ${stats.joins} joins in ${elapsed} ms; ${stats.tokenEvents} token events (${stats.tokenDropped} dropped as already seen, ${stats.coalesced} coalesced); ${stats.liveFinals} replies live, ${stats.replayedFinals} from replay`);

  assert.equal(dropped, DROPS);
  assert.deepEqual(violations, [], "the recipe saw no gap, no duplicate, no mismatch");

  // Compare with what the server stored.
  const history = await (await fetch(`${natter.url}/api/v1/chats/${encodeURIComponent(chatId)}/messages?after=0&limit=500`)).json();
  const stored = history.messages.filter((m) => m.role === "ai");
  assert.equal(stored.length, turns.filter((x) => !x.cut).length, "one stored reply per finished turn");
  // Every turn as bob saw it live (he was never dropped) is what ann ended up with.
  for (const { requestId, cut } of turns) {
    const end = bob.events.find((e) => (e.event === "ai:message" || e.event === "ai:error") && e.payload.requestId === requestId);
    const messageId = end.event === "ai:message" ? end.payload.messageId : end.payload.details.messageId;
    const finalText = end.event === "ai:message" ? end.payload.text : end.payload.details.partialText;
    assert.equal(end.event, cut ? "ai:error" : "ai:message", `turn ${requestId}`);
    if (cut) {
      assert.equal(end.payload.code, "upstream_cut");
      assert.equal(finalText, expected.split(" ").slice(0, cut).map((w) => `${w} `).join(""));
    }
    assert.equal(finals.get(messageId)?.text, finalText, `ann's text of turn ${requestId}`);
    assert.equal(finals.get(messageId).seq, end.payload.seq);
  }
  const head = Math.max(...history.messages.map((m) => m.seq));
  assert.deepEqual(applied, Array.from({ length: head - 1 }, (_, i) => i + 2), "every seq 2..head applied exactly once, in order");
  for (const m of stored) {
    const seen = finals.get(m.id);
    assert.ok(seen, `ann has reply ${m.id} (seq ${m.seq})`);
    assert.equal(m.content, expected, `stored reply ${m.seq}`);
    assert.equal(seen.text, m.content, `ann's reply ${m.seq} is the stored one`);
    if (seen.live) assert.equal(seen.tokensText, m.content, `reply ${m.seq}: the text from tokens is the reply exactly`);
    else assert.ok(m.content.startsWith(seen.tokensText), `reply ${m.seq}: tokens before the drop are a prefix`);
  }
  assert.ok(stats.liveFinals >= 1 && stats.tokenDropped > 0, "some turns were followed live across a rejoin (tokens re-sent from index 0 were dropped)");
}
