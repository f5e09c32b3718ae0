// Rate limits and connection caps count per node, also in a cluster (docs/security.md: "All
// counts are per node"; docs/deploy.md, Sizing). Two `natter serve` nodes sharing one PostgreSQL
// database and one Redis, each with `--message-rate-per-user 2` (every other rate off) and
// `--max-connections-per-user 1`: a user gets each budget once per node it reaches. Driven with
// stock socket.io-client. Needs `psql` + a PostgreSQL server (NATTER_TEST_PG, default
// postgres://postgres@127.0.0.1:5432) and `redis-server`; without them the tests skip loudly,
// under CI=true they fail.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { connect, pgDatabaseFor, sleep, startFakeUpstream, startNatter, tempDir, uid } from "../lib/harness.mjs";
import { clusterPrerequisites, freePort, startRedisServer } from "../lib/cluster.mjs";

const pre = clusterPrerequisites();
const runnable = pre.ok || process.env.CI === "true";
if (!runnable) process.stderr.write(`\n!!! SKIPPED per-node limit tests: ${pre.reason}\n!!! (under CI=true they fail instead)\n\n`);
const opts = runnable ? {} : { skip: `!!! SKIPPED: ${pre.reason}` };

/** Two user messages a minute per user; every other message and turn rate off. */
const RATES = [
  "--message-rate-per-connection", "0", "--message-rate-per-user", "2", "--message-rate-per-ip", "0",
  "--turn-rate-per-connection", "0", "--turn-rate-per-user", "0", "--turn-rate-per-ip", "0",
];

let tmp, redis, upstream;
const nodes = [];
before(async () => {
  if (!runnable) return;
  if (!pre.ok) throw new Error(`cluster prerequisites missing under CI=true: ${pre.reason}`);
  tmp = tempDir();
  const dataDir = path.join(tmp.dir, "cluster");
  const database = pgDatabaseFor(dataDir);
  redis = await startRedisServer(await freePort());
  upstream = await startFakeUpstream();
  // One at a time: the first creates the schema, the second finds it.
  for (let i = 0; i < 2; i++) {
    nodes.push(
      await startNatter({ upstream, dataDir, database, bus: redis.url, rateLimits: RATES, args: ["--max-connections-per-user", "1"] }),
    );
  }
});
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  upstream?.stop();
  await redis?.stop();
  tmp?.cleanup();
});

const A = () => nodes[0].url;
const B = () => nodes[1].url;

/** A WebSocket socket.io-client as `userId`; rejects with the connect_error. */
const client = (url, userId) => connect(url, { transports: ["websocket"], query: { userId } });

/** "connected", or the connect_error's message (the refusal's code). */
const attempt = (url, userId) =>
  client(url, userId).then(
    (c) => {
      c.close();
      return "connected";
    },
    (e) => e.message,
  );

/** The chat's stored user messages (history REST through `url`), oldest first. */
async function storedUserMessages(url, chatId) {
  const res = await fetch(`${url}/api/v1/chats/${encodeURIComponent(chatId)}/messages?after=0&limit=500`);
  assert.equal(res.status, 200, `history of ${chatId}: ${res.status} ${await res.clone().text()}`);
  return (await res.json()).messages.filter((m) => m.role === "user");
}

test("message rates count per node: a user's 3rd message on node A is rate_limited and not stored, its 2 on node B go through", opts, async () => {
  const chatId = uid("rate");
  const onA = await client(A(), "ann");
  const onB = await client(B(), "ann");
  try {
    assert.equal((await onA.emit("chat:join", { chatId })).ok, true);
    assert.equal((await onB.emit("chat:join", { chatId })).ok, true);
    const send = (c, label) => {
      const messageId = uid("m");
      const requestId = uid("req");
      return c
        .emit("user:message", { chatId, messageId, requestId, userId: "ann", text: `[fake:tokens n=1] ${label}` })
        .then((ack) => ({ ack, messageId, requestId, label }));
    };

    const a1 = await send(onA, "A1");
    const a2 = await send(onA, "A2");
    const a3 = await send(onA, "A3");
    assert.equal(a1.ack.ok, true, `A1: ${JSON.stringify(a1.ack)}`);
    assert.equal(a2.ack.ok, true, `A2: ${JSON.stringify(a2.ack)}`);
    assert.equal(a3.ack.ok, false, `A3 is over node A's budget of 2: ${JSON.stringify(a3.ack)}`);
    assert.equal(a3.ack.error.code, "rate_limited");
    assert.ok(a3.ack.error.retryAfterMs > 1000 && a3.ack.error.retryAfterMs <= 30_001, `retryAfterMs ${a3.ack.error.retryAfterMs}`);

    // Node B has a budget of its own for the same user (node A's is spent).
    const b1 = await send(onB, "B1");
    const b2 = await send(onB, "B2");
    assert.equal(b1.ack.ok, true, `B1 on node B: ${JSON.stringify(b1.ack)}`);
    assert.equal(b2.ack.ok, true, `B2 on node B: ${JSON.stringify(b2.ack)}`);
    // … and node A's stays spent.
    const a4 = await send(onA, "A4");
    assert.equal(a4.ack.error?.code, "rate_limited", `A4: ${JSON.stringify(a4.ack)}`);

    // Every accepted message gets its reply on both nodes; the refused ones are nowhere.
    const accepted = [a1, a2, b1, b2];
    for (const c of [onA, onB]) {
      for (const s of accepted) await c.waitFor("ai:message", (m) => m.requestId === s.requestId, 15000);
    }
    await sleep(300);
    for (const [where, url] of [["A", A()], ["B", B()]]) {
      const stored = await storedUserMessages(url, chatId);
      assert.deepEqual(
        stored.map((m) => m.id ?? m.messageId).sort(),
        accepted.map((s) => s.messageId).sort(),
        `node ${where}'s history holds exactly the 4 accepted messages: ${JSON.stringify(stored)}`,
      );
    }
    for (const c of [onA, onB]) {
      for (const refused of [a3, a4]) {
        assert.equal(c.of("ai:message").some((m) => m.requestId === refused.requestId), false, `no reply to ${refused.label}`);
        assert.equal(c.of("chat:message").some((m) => m.messageId === refused.messageId), false, `${refused.label} was not delivered`);
      }
    }
    assert.equal(onB.of("chat:message").filter((m) => m.chatId === chatId).length, 2, "node B's socket got A1 and A2 only");
  } finally {
    onA.close();
    onB.close();
  }
});

test("connection caps count per node: a user's 2nd connection on node A is too_many_connections, one on node B is accepted", opts, async () => {
  const first = await client(A(), "bob");
  try {
    assert.equal(await attempt(A(), "bob"), "too_many_connections", "a second connection on node A");
    const onB = await client(B(), "bob");
    assert.equal(onB.socket.connected, true);
    // The cap is one per node: a second one on node B is refused as well, and another user is not limited.
    assert.equal(await attempt(B(), "bob"), "too_many_connections", "a second connection on node B");
    assert.equal(await attempt(A(), "cat"), "connected");
    // Both of bob's connections work.
    const chatId = uid("cap");
    assert.equal((await first.emit("chat:join", { chatId })).ok, true);
    assert.equal((await onB.emit("chat:join", { chatId })).ok, true);
    onB.close();
  } finally {
    first.close();
  }
});
