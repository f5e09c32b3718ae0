// Several nodes (CONTRACT §8): three `natter serve` processes on loopback sharing one PostgreSQL
// database and one Redis (`--database postgres://… --bus redis://…`), driven with stock
// socket.io-client, the `ai` package's DefaultChatTransport, `eventsource` and fetch. Members of
// one chat sit on different nodes. Needs `psql` + a PostgreSQL server (NATTER_TEST_PG, default
// postgres://postgres@127.0.0.1:5432) and `redis-server`; without them the tests skip loudly,
// under CI=true they fail.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { DefaultChatTransport } from "ai";
import { EventSource } from "eventsource";
import { connect, joinTokens, sleep, uid } from "../lib/harness.mjs";
import { clusterOrSkip as cluster, clusterTestOptions } from "../lib/cluster.mjs";

// ------------------------------------------------------------------ helpers

const opts = clusterTestOptions();

/** The text the fake upstream streams for `[fake:tokens n=N]` / `[fake:drip n=N]`. */
const numbered = (n) => Array.from({ length: n }, (_, i) => `t${i} `).join("");

/** Waits until `fn()` returns a truthy value. */
async function eventually(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** Joins `chatId` as `userId` through `url`; returns the client and the join ack. */
async function member(url, userId, chatId, extra = {}) {
  const c = await connect(url, { transports: ["websocket"], query: { userId, ...(extra.query ?? {}) } });
  const ack = await c.emit("chat:join", { chatId });
  assert.equal(ack.ok, true, `${userId} joins ${chatId} through ${url}: ${JSON.stringify(ack)}`);
  return { c, ack };
}

/** The events of a client that carry a seq, in arrival order. */
const seqEvents = (client) =>
  client.events
    .filter((e) => typeof e.payload?.seq === "number")
    .map((e) => ({ event: e.event, seq: e.payload.seq, messageId: e.payload.messageId, requestId: e.payload.requestId }));

/** `user:message` with a requestId; returns {ack, messageId, requestId}. */
async function send(client, chatId, userId, text, { timeoutMs = 10000 } = {}) {
  const messageId = uid("m");
  const requestId = uid("req");
  const ack = await client.socket.timeout(timeoutMs).emitWithAck("user:message", { chatId, messageId, userId, text, requestId });
  return { ack, messageId, requestId };
}

/** Sum of a Prometheus gauge/counter's samples in `/metrics` of `url` (0 when absent). */
async function metric(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = line.match(/^([a-z_]+)(\{[^}]*\})? (\S+)$/);
    if (m && m[1] === name) sum += Number(m[3]);
  }
  return sum;
}

/** The index of the node whose `natter_turns_running` is above 0 (waits up to 5 s). */
async function runningNode(cl) {
  return eventually(async () => {
    const running = await Promise.all(cl.urls.map((u) => metric(u, "natter_turns_running")));
    const busy = running.map((v, i) => (v > 0 ? i : -1)).filter((i) => i >= 0);
    return busy.length === 1 ? { index: busy[0] } : null;
  }, 5000, "exactly one node with natter_turns_running > 0").then((r) => r.index);
}

/** History REST through `url`: the chat's stored messages (oldest first). */
async function history(url, chatId, orgId = "default") {
  const res = await fetch(`${url}/api/v1/chats/${encodeURIComponent(chatId)}/messages?orgId=${orgId}&after=0&limit=500`);
  assert.equal(res.status, 200, `history of ${chatId} through ${url}: ${res.status} ${await res.clone().text()}`);
  return (await res.json()).messages;
}

/** `GET /readyz` of `url`: {status, body}. */
async function readyz(url) {
  const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(8000) });
  let body;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  return { status: res.status, body };
}

/** Reads a ReadableStream of UI chunks in the background; `done` resolves with all of them. */
function drain(stream) {
  const chunks = [];
  const reader = stream.getReader();
  const done = (async () => {
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) return chunks;
      chunks.push(value);
    }
  })();
  done.catch(() => {});
  return { chunks, done };
}

/** Up to 1 s of a response body (for a diagnostic): what arrived, then `<end>` or `<timeout>`. */
async function readSome(res, ms = 1000) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let text = "";
  const deadline = Date.now() + ms;
  try {
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return `${text}<timeout>`;
      const r = await Promise.race([reader.read(), sleep(left).then(() => null)]);
      if (!r) return `${text}<timeout>`;
      if (r.done) return `${text}<end>`;
      text += dec.decode(r.value);
    }
  } finally {
    reader.cancel().catch(() => {});
  }
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

/**
 * Per member, the turns never overlap: between `ai:processing working` of a request and its
 * `ai:message` / `ai:error`, no other request of the chat works or streams.
 */
function assertTurnsDoNotOverlap(client, who, requestIds) {
  let current = null;
  const order = [];
  for (const { event, payload } of client.events) {
    if (!requestIds.has(payload?.requestId)) continue;
    const r = payload.requestId;
    if (event === "ai:processing" && payload.status === "working") {
      order.push(`working ${r}`);
      assert.ok(current === null || current === r, `${who}: ${r} works while ${current} runs (${order.join(", ")})`);
      current = r;
    } else if (event === "ai:token") {
      assert.equal(r, current, `${who}: a token of ${r} while ${current} runs`);
    } else if (event === "ai:message" || event === "ai:error") {
      order.push(`end ${r}`);
      assert.equal(r, current, `${who}: ${event} of ${r} while ${current} runs (${order.join(", ")})`);
      current = null;
    }
  }
  assert.equal(current, null, `${who}: a turn is still open at the end`);
}

// ------------------------------------------------------------------ one shared cluster

let shared;
before(async () => {
  shared = await cluster({ nodes: 3 });
});
after(async () => {
  await shared?.stop();
});

/**
 * Members `users[i]` on node i of one new chat each send `perSender` messages `text(user, k)`
 * at once (one after another per sender, the senders concurrently) and wait for every reply.
 * Returns the members, the acks and each member's view: seq → "event messageId" from what it
 * received plus its own acks, and `echoes`: chat:message events a sender got for its own
 * message (same seq, same messageId).
 */
async function burst(cl, users, perSender, text) {
  const chatId = uid("burst");
  const members = [];
  for (let i = 0; i < users.length; i++) members.push(await member(cl.url(i % cl.urls.length), users[i], chatId));
  assert.equal(new Set(members.map((m) => m.ack.epoch)).size, 1, "one epoch on every node");
  const startSeq = Math.max(...members.map((m) => m.ack.seq));
  const acks = []; // {user, messageId, requestId, seq}
  await Promise.all(
    members.map(async ({ c }, i) => {
      for (let k = 0; k < perSender; k++) {
        const s = await send(c, chatId, users[i], text(users[i], k));
        assert.equal(s.ack.ok, true, `${users[i]} #${k}: ${JSON.stringify(s.ack)}`);
        assert.equal(s.ack.duplicate, false);
        acks.push({ user: users[i], messageId: s.messageId, requestId: s.requestId, seq: s.ack.seq });
      }
    }),
  );
  const requestIds = new Set(acks.map((a) => a.requestId));
  const total = users.length * perSender;
  for (let i = 0; i < users.length; i++) {
    await members[i].c.until(
      () => members[i].c.of("ai:message").filter((m) => requestIds.has(m.requestId)).length >= total,
      40000,
      `${total} replies at ${users[i]} (node ${i})`,
    );
  }
  await sleep(300); // anything late or duplicated shows up now

  const echoes = [];
  const views = members.map(({ c }, i) => {
    const received = seqEvents(c);
    const seqs = received.map((e) => e.seq);
    assert.ok(seqs.every((s, k) => k === 0 || s > seqs[k - 1]), `${users[i]} receives seqs in increasing order: ${seqs}`);
    const view = new Map();
    for (const e of received) {
      assert.ok(!view.has(e.seq), `${users[i]} got seq ${e.seq} twice`);
      view.set(e.seq, `${e.event} ${e.messageId}`);
    }
    for (const a of acks.filter((a) => a.user === users[i])) {
      const got = view.get(a.seq);
      if (got === `chat:message ${a.messageId}`) echoes.push({ user: users[i], node: i, messageId: a.messageId, seq: a.seq });
      else assert.equal(got, undefined, `${users[i]} (node ${i}) acked ${a.messageId} at seq ${a.seq}, but got ${got} at that seq`);
      view.set(a.seq, `chat:message ${a.messageId}`);
    }
    return new Map([...view].sort((x, y) => x[0] - y[0]));
  });
  return { chatId, members, acks, requestIds, startSeq, views, echoes };
}

test("one seq order: 3 senders on 3 nodes × 10 messages, AI on: same seqs, same events, gapless, acks match", opts, async () => {
  const users = ["ann", "bob", "cat"];
  const { members, acks, requestIds, startSeq, views } = await burst(shared, users, 10, (u, k) => `[fake:tokens n=3] ${u} ${k}`);
  const expectedSeqs = Array.from({ length: 60 }, (_, k) => startSeq + 1 + k);
  for (let i = 0; i < 3; i++) {
    assert.deepEqual([...views[i].keys()], expectedSeqs, `${users[i]}: 60 events (30 messages, 30 replies), gapless after ${startSeq}`);
    assert.deepEqual([...views[i]], [...views[0]], `${users[i]} (node ${i}) sees the same event at every seq as ${users[0]}`);
  }
  // Every ack's seq is where the others saw that message.
  for (const a of acks) assert.equal(views[0].get(a.seq), `chat:message ${a.messageId}`, `ack of ${a.messageId} at seq ${a.seq}`);
  // Each turn's token stream is the same everywhere and joins to its reply.
  for (let i = 0; i < 3; i++) {
    const { c } = members[i];
    for (const msg of c.of("ai:message").filter((m) => requestIds.has(m.requestId))) {
      const tokens = c.of("ai:token").filter((t) => t.requestId === msg.requestId);
      assert.equal(joinTokens(tokens, msg.messageId), msg.text, `${users[i]}: tokens of ${msg.requestId}`);
      assert.equal(msg.text, numbered(3));
      assert.equal(msg.finishReason, "stop");
    }
  }
  for (const { c } of members) c.close();
});

test(
  "concurrent sends from 3 nodes: no sender gets a chat:message for its own message (CONTRACT §6.9)",
  opts,
  async () => {
    const users = ["ann", "bob", "cat"];
    const { members, echoes } = await burst(shared, users, 15, (u, k) => `[fake:tokens n=1] ${u} ${k}`);
    for (const { c } of members) c.close();
    assert.deepEqual(echoes, [], "chat:message events a sender got for its own message");
  },
);

test("one turn at a time per chat across nodes: upstream never streams two, members never see two overlap", opts, async () => {
  const chatId = uid("serial");
  const users = ["ann", "bob", "cat"];
  const members = [];
  for (let i = 0; i < 3; i++) members.push(await member(shared.url(i), users[i], chatId));

  let maxActive = 0;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const s = await shared.upstream.stats();
      maxActive = Math.max(maxActive, s.active_streams);
      await sleep(5);
    }
  })();
  const sent = await Promise.all(
    members.map(async ({ c }, i) => {
      const out = [];
      for (let k = 0; k < 3; k++) {
        const s = await send(c, chatId, users[i], `[fake:drip n=4 delay_ms=40] ${users[i]} ${k}`);
        assert.equal(s.ack.ok, true, JSON.stringify(s.ack));
        out.push(s.requestId);
      }
      return out;
    }),
  );
  const requestIds = new Set(sent.flat());
  for (let i = 0; i < 3; i++) {
    await members[i].c.until(
      () => members[i].c.of("ai:message").filter((m) => requestIds.has(m.requestId)).length >= 9,
      40000,
      `9 replies at ${users[i]}`,
    );
  }
  polling = false;
  await poller;
  assert.ok(maxActive <= 1, `the upstream had ${maxActive} streams of one chat open at once`);
  for (let i = 0; i < 3; i++) {
    assertTurnsDoNotOverlap(members[i].c, `${users[i]} (node ${i})`, requestIds);
    const working = members[i].c.of("ai:processing").filter((p) => requestIds.has(p.requestId) && p.status === "working");
    assert.equal(new Set(working.map((p) => p.requestId)).size, 9, `${users[i]} saw working for all 9 turns`);
  }
  for (const { c } of members) c.close();
});

test("abort from another node: ai:abort on one node and POST /api/chat/{id}/stop on another end the turn everywhere with its partial text", opts, async () => {
  const chatId = uid("abort");
  const users = ["ann", "bob", "cat"];
  const members = [];
  for (let i = 0; i < 3; i++) members.push(await member(shared.url(i), users[i], chatId));
  const [ann, bob, cat] = members.map((m) => m.c);
  const full = numbered(400);

  // 1. ai:abort sent by a member on a node that does not run the turn.
  const first = await send(ann, chatId, "ann", "[fake:drip n=400 delay_ms=20]");
  assert.equal(first.ack.ok, true);
  await bob.until(() => bob.of("ai:token").filter((t) => t.requestId === first.requestId).length >= 5, 10000, "5 tokens at bob");
  const runner = await runningNode(shared);
  const aborterNode = runner === 1 ? 2 : 1;
  const aborter = members[aborterNode].c;
  const abortAck = await aborter.emit("ai:abort", { chatId, requestId: first.requestId });
  assert.deepEqual(abortAck, { ok: true, requestId: first.requestId }, `ai:abort through node ${aborterNode} (turn on node ${runner})`);
  const ends1 = await Promise.all(members.map(({ c }) => c.waitFor("ai:message", (m) => m.requestId === first.requestId, 10000)));
  for (let i = 0; i < 3; i++) {
    const m = ends1[i];
    assert.equal(m.finishReason, "aborted", `${users[i]}: finishReason`);
    assert.ok(m.text.length > 0 && m.text.length < full.length, `${users[i]}: partial text of ${m.text.length} chars`);
    assert.ok(full.startsWith(m.text), `${users[i]}: the partial text is a prefix of the reply`);
    assert.ok(m.text.startsWith(numbered(5)), `${users[i]}: the 5 tokens seen before the abort are in it`);
    assert.equal(m.text, ends1[0].text, `${users[i]} has the same partial text`);
    assert.equal(m.seq, ends1[0].seq);
    assert.equal(m.messageId, ends1[0].messageId);
    const tokens = members[i].c.of("ai:token").filter((t) => t.requestId === first.requestId);
    assert.equal(joinTokens(tokens, m.messageId), m.text, `${users[i]}: its tokens join to the partial text`);
    assert.equal(members[i].c.of("ai:error").filter((e) => e.requestId === first.requestId).length, 0);
  }

  // 2. POST /api/chat/{id}/stop on a third node, for another turn.
  const second = await send(ann, chatId, "ann", "[fake:drip n=400 delay_ms=20]");
  assert.equal(second.ack.ok, true);
  await cat.until(() => cat.of("ai:token").filter((t) => t.requestId === second.requestId).length >= 5, 10000, "5 tokens at cat");
  const runner2 = await runningNode(shared);
  const stopNode = [2, 1, 0].find((i) => i !== runner2 && i !== aborterNode);
  const res = await fetch(`${shared.url(stopNode)}/api/chat/${encodeURIComponent(chatId)}/stop`, { method: "POST" });
  const body = await res.json();
  assert.equal(res.status, 200, `stop through node ${stopNode} (turn on node ${runner2}): ${JSON.stringify(body)}`);
  assert.deepEqual(body, { ok: true, requestId: second.requestId });
  const ends2 = await Promise.all(members.map(({ c }) => c.waitFor("ai:message", (m) => m.requestId === second.requestId, 10000)));
  for (let i = 0; i < 3; i++) {
    assert.equal(ends2[i].finishReason, "aborted", `${users[i]}: finishReason after stop`);
    assert.ok(ends2[i].text.length > 0 && full.startsWith(ends2[i].text) && ends2[i].text.length < full.length);
    assert.equal(ends2[i].text, ends2[0].text);
    const tokens = members[i].c.of("ai:token").filter((t) => t.requestId === second.requestId);
    assert.equal(joinTokens(tokens, ends2[i].messageId), ends2[i].text, `${users[i]}: tokens join to the stopped text`);
  }

  // Both partial replies are stored as they were sent, whichever node is asked.
  const stored = (await history(shared.url(2), chatId)).filter((m) => m.role === "ai");
  assert.deepEqual(
    stored.map((m) => [m.id, m.finishReason, m.content]),
    [[ends1[0].messageId, "aborted", ends1[0].text], [ends2[0].messageId, "aborted", ends2[0].text]],
  );
  // And nothing runs any more: a stop through any node finds no turn.
  const idle = await fetch(`${shared.url(0)}/api/chat/${encodeURIComponent(chatId)}/stop`, { method: "POST" });
  assert.equal(idle.status, 409);
  for (const { c } of members) c.close();
});

test("late join on another node mid-turn gets the tokens from index 0; AI SDK resume on a third node streams the turn from its start", opts, async () => {
  const chatId = uid("late");
  const { c: ann } = await member(shared.url(0), "ann", chatId);

  // Socket.IO joiner on node 1.
  const first = await send(ann, chatId, "ann", "[fake:drip n=60 delay_ms=30]");
  assert.equal(first.ack.ok, true);
  await ann.until(() => ann.of("ai:token").filter((t) => t.requestId === first.requestId).length >= 10, 10000, "10 tokens at ann");
  const { c: dan, ack: danJoin } = await member(shared.url(1), "dan", chatId);
  assert.equal(ann.of("ai:message").filter((m) => m.requestId === first.requestId).length, 0, "joined while the turn runs");
  const msg = await dan.waitFor("ai:message", (m) => m.requestId === first.requestId, 15000);
  assert.ok(msg.seq > danJoin.seq, "the reply is stored after the join");
  const tokens = dan.of("ai:token").filter((t) => t.requestId === first.requestId);
  assert.equal(tokens[0]?.index, 0, `dan's first token has index 0: ${JSON.stringify(tokens.slice(0, 2))}`);
  assert.equal(joinTokens(tokens, msg.messageId), msg.text, "dan's tokens join to the reply");
  assert.equal(msg.text, numbered(60));

  // AI SDK resume on node 2.
  const second = await send(ann, chatId, "ann", "[fake:drip n=60 delay_ms=30]");
  assert.equal(second.ack.ok, true);
  await ann.until(() => ann.of("ai:token").filter((t) => t.requestId === second.requestId).length >= 10, 10000, "10 tokens of the second turn");
  const transport = new DefaultChatTransport({ api: `${shared.url(2)}/api/chat`, body: { userId: "web" } });
  const stream = await transport.reconnectToStream({ chatId });
  assert.ok(stream, "a turn running on another node is resumable through node 2");
  const chunks = await within(drain(stream).done, 15000, "resumed stream");
  const types = chunks.map((c) => c.type);
  const messageId = ann.of("ai:token").find((t) => t.requestId === second.requestId).messageId;
  assert.equal(types[0], "start", `starts with start: ${JSON.stringify(types.slice(0, 4))}`);
  assert.equal(chunks[0].messageId, messageId, "the same assistant message as the Socket.IO tokens");
  assert.equal(types.at(-1), "finish", `ends with finish: ${JSON.stringify(types.slice(-4))}`);
  assert.equal(types.filter((t) => t === "error" || t === "abort").length, 0);
  const text = chunks.filter((c) => c.type === "text-delta").map((c) => c.delta).join("");
  assert.equal(text, numbered(60), "the whole turn from its first token");
  const reply = await ann.waitFor("ai:message", (m) => m.requestId === second.requestId, 10000);
  assert.equal(reply.text, text);
  assert.equal(reply.messageId, messageId);
  // Idle: 204 through any node.
  const idle = await fetch(`${shared.url(1)}/api/chat/${encodeURIComponent(chatId)}/stream`);
  assert.equal(idle.status, 204);
  ann.close();
  dan.close();
});

test("Socket.IO recovery on another node: lastSeq + epoch replays every missed seq exactly once (recovered: true)", opts, async () => {
  const chatId = uid("recover");
  const { c: ann, ack: annJoin } = await member(shared.url(0), "ann", chatId);
  const { c: bob } = await member(shared.url(1), "bob", chatId);
  const warm = await send(ann, chatId, "ann", "[fake:tokens n=2] warm");
  await ann.waitFor("ai:message", (m) => m.requestId === warm.requestId);
  const lastSeq = Math.max(annJoin.seq, ...seqEvents(ann).map((e) => e.seq), warm.ack.seq);
  ann.close();

  // While ann is away: three exchanges and a read receipt through node 1.
  const missed = [];
  for (let i = 0; i < 3; i++) {
    const s = await send(bob, chatId, "bob", `[fake:tokens n=3] missed ${i}`);
    assert.equal(s.ack.ok, true);
    missed.push(s.messageId);
    await bob.waitFor("ai:message", (m) => m.requestId === s.requestId);
  }
  const read = await bob.emit("message:read", { chatId, userId: "bob", messageIds: missed, readAt: new Date().toISOString() });
  assert.equal(read.ok, true);

  // ann comes back through node 2.
  const back = await connect(shared.url(2), { transports: ["websocket"], query: { userId: "ann" } });
  const ack = await back.emit("chat:join", { chatId, lastSeq, epoch: annJoin.epoch });
  const replayed = seqEvents(back);
  assert.equal(ack.ok, true);
  assert.equal(ack.recovered, true, `recovered: ${JSON.stringify({ ...ack, messages: undefined })}`);
  assert.equal(ack.epoch, annJoin.epoch);
  assert.equal(ack.seq, read.seq, "the ack's seq is the head (the read receipt)");
  assert.deepEqual(replayed.map((e) => e.seq), Array.from({ length: ack.seq - lastSeq }, (_, i) => lastSeq + 1 + i), "every missed seq once, in order");
  assert.deepEqual(replayed.map((e) => e.event), ["chat:message", "ai:message", "chat:message", "ai:message", "chat:message", "ai:message", "message:read"]);
  assert.deepEqual(replayed.filter((e) => e.event === "chat:message").map((e) => e.messageId), missed);
  // Then live, through node 2, from node 1.
  const live = await send(bob, chatId, "bob", "[fake:tokens n=2] live");
  const liveReply = await back.waitFor("ai:message", (m) => m.requestId === live.requestId);
  assert.equal(liveReply.seq, live.ack.seq + 1);
  await sleep(200);
  const all = seqEvents(back).map((e) => e.seq);
  assert.equal(new Set(all).size, all.length, `no seq twice: ${all}`);
  back.close();
  bob.close();
});

test("seed 002: an SSE stream on one node sees a message sent by HTTP to another node, and its reply", opts, async () => {
  const org = uid("org");
  const api = (i) => `${shared.url(i)}/api/v1/chat`;
  const post = async (i, p, body) => {
    const res = await fetch(`${api(i)}/${p}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const json = await res.json();
    assert.equal(res.status, 200, `${p} on node ${i}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  const { chatKey } = await post(0, "create", { orgId: org, userId: "ann" });

  const url = new URL(`${api(1)}/stream`);
  for (const [k, v] of Object.entries({ orgId: org, userId: "ann", clientType: "customer", chatKey })) url.searchParams.set(k, v);
  const es = new EventSource(url);
  const events = [];
  for (const type of ["reconnected", "message", "agent_execution_started", "agent_execution_ended", "error"]) {
    es.addEventListener(type, (e) => typeof e.data === "string" && events.push({ type, id: e.lastEventId, data: JSON.parse(e.data) }));
  }
  try {
    await eventually(() => events.some((e) => e.type === "reconnected"), 10000, "the SSE stream to open");
    // A Socket.IO member of the same chat on node 0 as a third view.
    const sock = await connect(shared.url(0), { transports: ["websocket"], query: { userId: "bob", orgId: org } });
    assert.equal((await sock.emit("chat:join", { chatId: chatKey })).ok, true);

    const id = uid("m");
    assert.deepEqual(await post(2, "send", { orgId: org, chatKey, userId: "ann", message: { id, content: "hello from node two" } }), { success: true });
    await eventually(() => events.some((e) => e.type === "agent_execution_ended"), 15000, "agent_execution_ended on the node-1 stream");
    const order = events.map((e) => (e.type === "message" ? `message:${e.data.message.role}` : e.type));
    assert.deepEqual(order, ["reconnected", "message:user", "agent_execution_started", "message:ai", "agent_execution_ended"]);
    const [user, ai] = events.filter((e) => e.type === "message");
    assert.equal(user.data.message.id, id);
    assert.equal(user.data.message.content, "hello from node two");
    assert.equal(user.id, String(user.data.message.seq));
    assert.equal(ai.data.message.content, "Echo: hello from node two");
    assert.equal(ai.data.message.seq, user.data.message.seq + 1);
    assert.equal(ai.id, String(ai.data.message.seq));

    const chatMessage = await sock.waitFor("chat:message", (m) => m.messageId === id);
    assert.equal(chatMessage.seq, user.data.message.seq, "Socket.IO on node 0 has the same seq");
    const aiMessage = await sock.waitFor("ai:message", (m) => m.messageId === ai.data.message.id, 10000);
    assert.equal(aiMessage.seq, ai.data.message.seq);
    assert.equal(aiMessage.text, ai.data.message.content);
    sock.close();
  } finally {
    es.close();
  }
});

test("presence is global: members on different nodes see each other (join ack and presence:update)", opts, async () => {
  const chatId = uid("presence");
  const { c: ann, ack: a } = await member(shared.url(0), "ann", chatId);
  assert.deepEqual(a.onlineUserIds, ["ann"]);
  const { c: bob, ack: b } = await member(shared.url(1), "bob", chatId);
  assert.deepEqual(b.onlineUserIds, ["ann", "bob"], "bob's join ack on node 1 lists ann from node 0");
  await ann.waitFor("presence:update", (p) => p.chatId === chatId && p.onlineUserIds.join() === "ann,bob", 5000);
  const { c: cat, ack: c3 } = await member(shared.url(2), "cat", chatId);
  assert.deepEqual(c3.onlineUserIds, ["ann", "bob", "cat"]);
  for (const c of [ann, bob]) await c.waitFor("presence:update", (p) => p.onlineUserIds.join() === "ann,bob,cat", 5000);

  assert.equal((await bob.emit("chat:leave", { chatId })).ok, true);
  for (const c of [ann, cat]) await c.waitFor("presence:update", (p) => p.onlineUserIds.join() === "ann,cat", 5000);
  cat.close();
  await ann.until(() => ann.of("presence:update").at(-1)?.onlineUserIds.join() === "ann", 5000, "presence [ann] after cat disconnects on node 2");
  // ann with a second tab on node 2: still listed once.
  const { ack: again } = await member(shared.url(2), "ann", chatId);
  assert.deepEqual(again.onlineUserIds, ["ann"]);
  ann.close();
  bob.close();
});

test("handoff across nodes: three agents taking one chat at the same instant on three nodes are all engaged; the AI is back only after the last leaves", opts, async () => {
  const chatId = uid("handoff");
  const { c: cust } = await member(shared.url(0), "cust", chatId);
  const asked = await cust.emit("handoff:request", { chatId });
  assert.equal(asked.ok, true, JSON.stringify(asked));
  /** Seed 002's /load through node `i`: the chat as the store keeps it. */
  const load = async (i) => {
    const res = await fetch(`${shared.url(i)}/api/v1/chat/load`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ orgId: "default", chatKey: chatId, userId: "cust" }),
    });
    assert.equal(res.status, 200, `/load through node ${i}: ${res.status}`);
    return (await res.json()).chat;
  };
  const agents = await Promise.all(
    [0, 1, 2].map((i) => connect(shared.url(i), { transports: ["websocket"], query: { userId: `agent-${i}`, clientType: "humanAgent" } })),
  );
  // The same instant: every agent joins (and so takes the chat) on its own node at once.
  const joins = await Promise.all(agents.map((a) => a.emit("chat:join", { chatId })));
  for (const j of joins) assert.equal(j.ok, true, JSON.stringify(j));
  await cust.until(() => cust.of("handoff:update").filter((u) => u.reason === "human_agent_joined").length >= 3, 10000, "3 human_agent_joined at the customer");
  const joined = cust.of("handoff:update").filter((u) => u.reason === "human_agent_joined");
  assert.deepEqual(joined.map((u) => u.agentId).sort(), ["agent-0", "agent-1", "agent-2"]);
  for (const i of [0, 1, 2]) {
    const chat = await load(i);
    assert.deepEqual([...chat.humanAgents].sort(), ["agent-0", "agent-1", "agent-2"], `every agent is engaged, read through node ${i}`);
    assert.deepEqual([chat.humanAgentEngaged, chat.aiEngaged, chat.isWaitingForAgent], [true, false, false]);
  }

  // Two leave at the same instant on two nodes: the third is still in.
  const leaves = await Promise.all([0, 1].map((i) => agents[i].emit("chat:leave", { chatId })));
  for (const l of leaves) assert.equal(l.ok, true, JSON.stringify(l));
  await cust.until(() => cust.of("handoff:update").filter((u) => u.reason === "human_agent_left").length >= 2, 10000, "2 human_agent_left at the customer");
  const lastUpdate = () => cust.of("handoff:update").reduce((a, b) => (b.seq > a.seq ? b : a));
  assert.deepEqual([lastUpdate().humanAgentEngaged, lastUpdate().aiEngaged], [true, false], "agent-2 is still engaged");
  assert.deepEqual((await load(1)).humanAgents, ["agent-2"]);

  assert.equal((await agents[2].emit("chat:leave", { chatId })).ok, true);
  await cust.until(() => cust.of("handoff:update").filter((u) => u.reason === "human_agent_left").length >= 3, 10000, "the last human_agent_left");
  assert.deepEqual([lastUpdate().humanAgentEngaged, lastUpdate().aiEngaged], [false, true], "the AI answers again");
  assert.deepEqual((await load(2)).humanAgents, []);
  for (const a of agents) a.close();
  cust.close();
});

// ------------------------------------------------------------------ one cluster per test

test("kill -9 of the node running a turn: interrupted within 15 s, acked messages kept, the chat goes on, the node comes back", opts, async () => {
  const cl = await cluster({ nodes: 3 });
  try {
    const chatId = uid("kill");
    const users = ["ann", "bob", "cat"];
    const members = [];
    for (let i = 0; i < 3; i++) members.push(await member(cl.url(i), users[i], chatId));
    const acked = [];
    for (let i = 0; i < 3; i++) {
      const s = await send(members[i].c, chatId, users[i], `[fake:tokens n=2] warm ${i}`);
      assert.equal(s.ack.ok, true);
      acked.push(s.messageId);
      await members[0].c.waitFor("ai:message", (m) => m.requestId === s.requestId);
    }
    const long = await send(members[0].c, chatId, "ann", "[fake:drip n=1000 delay_ms=20]");
    assert.equal(long.ack.ok, true);
    acked.push(long.messageId);
    await members[1].c.until(() => members[1].c.of("ai:token").filter((t) => t.requestId === long.requestId).length >= 5, 10000, "5 tokens");
    const k = await runningNode(cl);
    // Two more messages through the doomed node, queued behind the running turn.
    const queued = [];
    for (let q = 0; q < 2; q++) {
      const s = await send(members[k].c, chatId, users[k], `[fake:tokens n=2] queued ${q}`);
      assert.equal(s.ack.ok, true);
      acked.push(s.messageId);
      queued.push(s.requestId);
    }

    const killedAt = Date.now();
    assert.deepEqual(await cl.killNode(k), { code: null, signal: "SIGKILL" });
    const survivors = [0, 1, 2].filter((i) => i !== k);
    const ends = await Promise.all(
      survivors.map((i) =>
        members[i].c.until(
          (evs) => evs.find((e) => (e.event === "ai:error" || e.event === "ai:message") && e.payload.requestId === long.requestId),
          15000 - (Date.now() - killedAt),
          `the end of the cut turn at ${users[i]} (node ${i}) within 15 s of killing node ${k}`,
        ),
      ),
    );
    const endMs = Date.now() - killedAt;
    for (let j = 0; j < survivors.length; j++) {
      const { event, payload } = ends[j];
      assert.equal(event, "ai:error", `${users[survivors[j]]}: the cut turn ends with ai:error, got ${event} ${JSON.stringify(payload).slice(0, 300)}`);
      assert.equal(payload.code, "interrupted");
      assert.equal(payload.retryable, true);
      assert.equal(typeof payload.seq, "number");
      assert.equal(payload.seq, ends[0].payload.seq);
    }
    // Each queued turn ends too (run by another node or interrupted), exactly once.
    for (const r of queued) {
      await members[survivors[0]].c.until(
        (evs) => evs.find((e) => (e.event === "ai:error" || e.event === "ai:message") && e.payload.requestId === r),
        20000,
        `the end of queued turn ${r}`,
      );
    }

    // /metrics of the survivors: the takeover is counted, and the cluster figures are there.
    const metrics = await Promise.all(survivors.map(async (i) => (await fetch(`${cl.url(i)}/metrics`)).text()));
    const counter = (text, name) =>
      text.split("\n").filter((l) => l.startsWith(name) && !l.startsWith("#")).reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
    assert.ok(metrics.reduce((sum, m) => sum + counter(m, "natter_turns_taken_over_total"), 0) >= 1, "a survivor counted the turn it took over");
    for (const m of metrics) {
      for (const name of ["natter_bus_redis_ops_total", "natter_bus_lag_seconds"]) {
        assert.ok(m.includes(name), `/metrics has ${name}`);
      }
    }
    // Only a node that drove a chat's turns has set its lease gauge.
    assert.ok(metrics.some((m) => m.includes("natter_leases_held")), "a survivor reports natter_leases_held");

    // Nothing runs any more: the AI SDK resume finds no turn through any live node, and a
    // member joining now is not sent the dead turn's tokens.
    for (const i of survivors) {
      const res = await fetch(`${cl.url(i)}/api/chat/${encodeURIComponent(chatId)}/stream`, { signal: AbortSignal.timeout(3000) });
      let body = "";
      if (res.status !== 204) body = await readSome(res);
      assert.equal(res.status, 204, `resume through node ${i} after every turn ended: ${res.status} ${JSON.stringify(body)}`);
    }
    const { c: joiner } = await member(cl.url(survivors[1]), "fay", chatId);
    await sleep(500);
    const ghost = joiner.of("ai:token").filter((t) => t.requestId === long.requestId);
    joiner.close();
    assert.equal(ghost.length, 0, `a member joining after the cut turn ended got ${ghost.length} of its tokens: ${JSON.stringify(ghost.slice(0, 3))}`);

    // Every acked message is stored, once.
    const stored = await history(cl.url(survivors[0]), chatId);
    for (const id of acked) assert.equal(stored.filter((m) => m.id === id).length, 1, `acked message ${id} is in the history once`);

    // The chat takes a new message and replies.
    const next = await send(members[survivors[0]].c, chatId, users[survivors[0]], "[fake:tokens n=3] after the kill");
    assert.equal(next.ack.ok, true, JSON.stringify(next.ack));
    const reply = await members[survivors[1]].c.waitFor("ai:message", (m) => m.requestId === next.requestId, 15000);
    assert.equal(reply.finishReason, "stop");
    assert.equal(reply.text, numbered(3));
    const head = reply.seq;

    // The killed node comes back into the same chat.
    await cl.restartNode(k);
    const { c: eve, ack: eveJoin } = await member(cl.url(k), "eve", chatId);
    assert.equal(eveJoin.epoch, members[0].ack.epoch, "same epoch through the restarted node");
    assert.ok(eveJoin.seq >= head, `the restarted node sees the head (${eveJoin.seq} >= ${head})`);
    const ids = eveJoin.messages.map((m) => m.messageId);
    for (const id of [...acked, reply.messageId]) assert.ok(ids.includes(id), `the join ack through the restarted node has ${id}`);
    const late = await send(eve, chatId, "eve", "[fake:tokens n=2] back");
    assert.equal(late.ack.ok, true);
    await eve.waitFor("ai:message", (m) => m.requestId === late.requestId, 15000);
    await members[survivors[0]].c.waitFor("chat:message", (m) => m.messageId === late.messageId, 5000);
    process.stderr.write(`# kill test: turn ran on node ${k}; its end reached the survivors ${endMs} ms after the kill\n`);
    eve.close();
    for (const { c } of members) c.close();
  } finally {
    await cl?.stop();
  }
});

test(
  "kill -9 of the node running a turn, nothing queued: once it ends interrupted, no node resumes it or sends its tokens to a joiner",
  opts,
  async () => {
    const cl = await cluster({ nodes: 3 });
    try {
      const chatId = uid("ghost");
      const users = ["ann", "bob", "cat"];
      const members = [];
      for (let i = 0; i < 3; i++) members.push(await member(cl.url(i), users[i], chatId));
      const long = await send(members[0].c, chatId, "ann", "[fake:drip n=1000 delay_ms=20]");
      assert.equal(long.ack.ok, true);
      await members[1].c.until(() => members[1].c.of("ai:token").filter((t) => t.requestId === long.requestId).length >= 5, 10000, "5 tokens");
      const k = await runningNode(cl);
      const killedAt = Date.now();
      await cl.killNode(k);
      const survivors = [0, 1, 2].filter((i) => i !== k);
      const err = await members[survivors[0]].c.waitFor("ai:error", (e) => e.requestId === long.requestId, 15000 - (Date.now() - killedAt));
      assert.equal(err.code, "interrupted");
      const problems = [];
      const resume = async (i, what) => {
        const res = await fetch(`${cl.url(i)}/api/chat/${encodeURIComponent(chatId)}/stream`, { signal: AbortSignal.timeout(3000) });
        if (res.status !== 204) problems.push(`AI SDK resume through ${what} after the cut turn ended interrupted (seq ${err.seq}): ${res.status} ${JSON.stringify((await readSome(res)).slice(0, 400))}`);
      };
      for (const i of survivors) await resume(i, `node ${i}`);
      const { c: joiner } = await member(cl.url(survivors[1]), "fay", chatId);
      await sleep(500);
      const ghost = joiner.of("ai:token").filter((t) => t.requestId === long.requestId);
      if (ghost.length > 0) problems.push(`a member joining node ${survivors[1]} after the cut turn ended got ${ghost.length} of its tokens: ${JSON.stringify(ghost.slice(0, 2))}`);
      const stop = await fetch(`${cl.url(survivors[0])}/api/chat/${encodeURIComponent(chatId)}/stop`, { method: "POST" });
      if (stop.status !== 409) problems.push(`POST /stop after the cut turn ended: ${stop.status} ${await stop.text()} (expected 409 no_active_turn)`);
      // The restarted node agrees.
      await cl.restartNode(k);
      await resume(k, `the restarted node ${k}`);
      // And a new turn runs normally and replaces it.
      const next = await send(members[survivors[0]].c, chatId, users[survivors[0]], "[fake:tokens n=3] next");
      assert.equal(next.ack.ok, true);
      const reply = await joiner.waitFor("ai:message", (m) => m.requestId === next.requestId, 15000);
      assert.equal(reply.text, numbered(3));
      assert.deepEqual(problems, []);
      joiner.close();
      for (const { c } of members) c.close();
    } finally {
      await cl?.stop();
    }
  },
);

test("kill -9 of a node: its members leave presence on the other nodes within 30 s", opts, async () => {
  const cl = await cluster({ nodes: 3 });
  try {
    const chatId = uid("gone");
    const { c: ann } = await member(cl.url(0), "ann", chatId);
    const { c: bob } = await member(cl.url(1), "bob", chatId);
    const { c: cat } = await member(cl.url(2), "cat", chatId);
    for (const c of [ann, cat]) await c.waitFor("presence:update", (p) => p.onlineUserIds.join() === "ann,bob,cat", 5000);
    const killedAt = Date.now();
    await cl.killNode(1);
    try {
      await Promise.all(
        [ann, cat].map((c) => c.waitFor("presence:update", (p) => p.onlineUserIds.join() === "ann,cat", 30000)),
      );
    } catch (e) {
      const probe = await connect(cl.url(2), { transports: ["websocket"], query: { userId: "probe" } });
      const ack = await probe.emit("chat:join", { chatId });
      probe.close();
      throw new Error(`${e.message}\n(after ${Date.now() - killedAt} ms, a new join on node 2 lists ${JSON.stringify(ack.onlineUserIds)})`);
    }
    const goneMs = Date.now() - killedAt;
    assert.ok(goneMs <= 30000);
    const { c: probe, ack } = await member(cl.url(0), "dan", chatId);
    assert.deepEqual(ack.onlineUserIds, ["ann", "cat", "dan"], "a new join does not list the dead node's member");
    process.stderr.write(`# presence test: bob left presence ${goneMs} ms after his node was killed\n`);
    for (const c of [ann, bob, cat, probe]) c.close();
  } finally {
    await cl?.stop();
  }
});

test("Redis outage: /readyz 503 on every node naming the bus, sends acked or refused (never dropped), then back without restarts", opts, async () => {
  const cl = await cluster({ nodes: 3 });
  try {
    const chatId = uid("outage");
    const { c: ann } = await member(cl.url(0), "ann", chatId);
    const { c: bob } = await member(cl.url(1), "bob", chatId);
    const warm = await send(ann, chatId, "ann", "[fake:tokens n=2] warm");
    await bob.waitFor("ai:message", (m) => m.requestId === warm.requestId);
    for (const u of cl.urls) assert.equal((await readyz(u)).status, 200);

    await cl.stopRedis();
    const downAt = Date.now();
    const down = await Promise.all(
      cl.urls.map((u, i) =>
        eventually(async () => {
          const r = await readyz(u).catch(() => null);
          return r?.status === 503 ? r : null;
        }, 10000, `/readyz 503 on node ${i} after Redis went away`),
      ),
    );
    const downMs = Date.now() - downAt;
    for (const { body } of down) {
      assert.equal(body.status, "unavailable");
      assert.equal(body.backends?.store?.status, "ok", `the store is fine: ${JSON.stringify(body)}`);
      assert.equal(body.backends?.bus?.status, "unavailable", `the bus is named: ${JSON.stringify(body)}`);
      assert.equal(body.error?.code, "unavailable");
    }

    // Sends meanwhile, through two nodes: each acked (then stored) or refused with `unavailable`.
    const outcomes = [];
    for (const [c, user] of [[ann, "ann"], [bob, "bob"], [ann, "ann"]]) {
      let s;
      try {
        s = await send(c, chatId, user, "[fake:tokens n=2] during the outage", { timeoutMs: 20000 });
      } catch (e) {
        assert.fail(`a user:message from ${user} during the outage got no ack in 20 s (${e.message})`);
      }
      if (s.ack.ok) outcomes.push({ acked: s.messageId, requestId: s.requestId });
      else {
        assert.equal(s.ack.error?.code, "unavailable", `refused with unavailable: ${JSON.stringify(s.ack)}`);
        outcomes.push({ refused: s.messageId });
      }
    }

    await cl.startRedis();
    const upAt = Date.now();
    await Promise.all(
      cl.urls.map((u, i) =>
        eventually(async () => (await readyz(u).catch(() => null))?.status === 200, 20000, `/readyz 200 again on node ${i} after Redis is back`),
      ),
    );
    const upMs = Date.now() - upAt;

    const next = await send(ann, chatId, "ann", "[fake:tokens n=3] after the outage");
    assert.equal(next.ack.ok, true, JSON.stringify(next.ack));
    const reply = await ann.waitFor("ai:message", (m) => m.requestId === next.requestId, 20000);
    assert.equal(reply.text, numbered(3));
    const atBob = await bob.waitFor("ai:message", (m) => m.requestId === next.requestId, 10000);
    assert.equal(atBob.seq, reply.seq, "bob on node 1 gets the reply again, same seq");
    await bob.waitFor("chat:message", (m) => m.messageId === next.messageId, 5000);

    const stored = await history(cl.url(2), chatId);
    for (const o of outcomes.filter((o) => o.acked)) {
      assert.equal(stored.filter((m) => m.id === o.acked).length, 1, `message ${o.acked} acked during the outage is stored`);
    }
    for (const o of outcomes.filter((o) => o.refused)) {
      assert.equal(stored.filter((m) => m.id === o.refused).length, 0, `message ${o.refused} refused during the outage is not stored`);
    }
    process.stderr.write(
      `# outage test: readyz 503 everywhere after ${downMs} ms, 200 again ${upMs} ms after Redis restarted; sends: ${JSON.stringify(outcomes.map((o) => (o.acked ? "acked" : "refused")))}\n`,
    );
    ann.close();
    bob.close();
  } finally {
    await cl?.stop();
  }
});
