// Socket.IO's long-polling transport through a real load balancer (CONTRACT §8.7): Debian's
// HAProxy in front of three `natter serve` nodes sharing one PostgreSQL database and one Redis.
// The HAProxy configuration is the one in docs/deploy.md, taken from its ```haproxy block with
// only the addresses changed (and logging plus a stats page added), so the documented set-up is
// what runs here. Clients are stock socket.io-client with `transports: ["polling"]` and
// `withCredentials: true`, which makes engine.io-client (≥ 6.5, socket.io-client ≥ 4.7) keep a
// cookie jar in Node.js: it stores the balancer's `NATTER_NODE` cookie from the handshake
// response and sends it with every later request of the session, as a browser does.
//
// A negative control runs the same configuration without the `cookie` line (pure roundrobin):
// there polling sessions fail, so the sticky test does not pass by luck; so do polling clients
// without `withCredentials` through the sticky balancer (no cookie jar, nothing to stick by).
//
// Needs `haproxy`, `psql` + a PostgreSQL server (NATTER_TEST_PG, default
// postgres://postgres@127.0.0.1:5432) and `redis-server`; without them the tests skip loudly,
// under CI=true they fail.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect, sleep, tempDir, uid } from "../lib/harness.mjs";
import { clusterPrerequisites, freePort, startCluster } from "../lib/cluster.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const deployDoc = path.resolve(here, "../../../docs/deploy.md");

// Short heartbeats, so a test sees several ping/pong round trips through the balancer.
const PING_INTERVAL_MS = 300;
const PING_TIMEOUT_MS = 2000;

// ------------------------------------------------------------------ prerequisites

function prerequisites() {
  const hap = spawnSync("haproxy", ["-v"], { encoding: "utf8" });
  if (hap.error || hap.status !== 0) {
    return { ok: false, reason: `haproxy is not installed (${hap.error?.code ?? `exit ${hap.status}`}); apt-get install haproxy` };
  }
  return clusterPrerequisites();
}

const pre = prerequisites();
const runnable = pre.ok || process.env.CI === "true";
if (!runnable) process.stderr.write(`\n!!! SKIPPED load balancer tests: ${pre.reason}\n!!! (under CI=true they fail instead)\n\n`);
const opts = runnable ? {} : { skip: `!!! SKIPPED: ${pre.reason}` };

// ------------------------------------------------------------------ HAProxy

/** The ```haproxy block of docs/deploy.md. */
function documentedConfig() {
  const md = readFileSync(deployDoc, "utf8");
  const blocks = [...md.matchAll(/```haproxy\n([\s\S]*?)```/g)];
  assert.equal(blocks.length, 1, `docs/deploy.md should hold exactly one \`\`\`haproxy block, found ${blocks.length}`);
  return blocks[0][1];
}

/**
 * docs/deploy.md's configuration on loopback: the frontend bound to `port`, the backend's
 * servers (as many as the docs list, in order) pointed at `backends`, a stats page on
 * `statsPort`, access logs on stderr; without the `cookie` line when `sticky` is false.
 */
function haproxyConfig({ port, statsPort, backends, sticky }) {
  let cfg = documentedConfig();
  for (const required of [/^\s*balance roundrobin\s*$/m, /^\s*cookie NATTER_NODE insert indirect nocache\s*$/m, /^\s*option httpchk GET \/readyz\s*$/m, /^defaults\s*$/m]) {
    assert.match(cfg, required, "docs/deploy.md's HAProxy configuration lost a line this test relies on");
  }
  const binds = cfg.match(/^\s*bind\s.*$/gm) ?? [];
  assert.equal(binds.length, 1, `one bind line in the documented frontend: ${binds}`);
  cfg = cfg.replace(/^(\s*)bind\s.*$/m, `$1bind 127.0.0.1:${port}`);
  let n = 0;
  cfg = cfg.replace(/^(\s*server\s+\S+\s+)\S+(.*)$/gm, (_, head, tail) => `${head}127.0.0.1:${backends[n++]}${tail}`);
  assert.equal(n, backends.length, `the documented backend lists ${n} servers, the test has ${backends.length} nodes`);
  if (!sticky) cfg = cfg.replace(/^\s*cookie NATTER_NODE .*\n/m, "");
  cfg = cfg.replace(/^defaults\s*\n/m, "defaults\n    log global\n    option httplog\n");
  return [
    "global",
    "    log stderr format raw local0",
    "",
    cfg,
    "",
    "listen stats",
    `    bind 127.0.0.1:${statsPort}`,
    "    stats enable",
    "    stats uri /stats",
    "",
  ].join("\n");
}

/** Starts `haproxy -f <cfg> -db` and resolves once every backend server is UP after a check. */
async function startHaproxy(dir, name, { backends, sticky }) {
  const port = await freePort();
  const statsPort = await freePort();
  const cfgPath = path.join(dir, `${name}.cfg`);
  const cfg = haproxyConfig({ port, statsPort, backends, sticky });
  writeFileSync(cfgPath, cfg);
  const check = spawnSync("haproxy", ["-c", "-f", cfgPath], { encoding: "utf8" });
  assert.equal(check.status, 0, `haproxy -c rejects the configuration:\n${check.stdout}${check.stderr}\n${cfg}`);
  const proc = spawn("haproxy", ["-f", cfgPath, "-db"], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  proc.stdout.on("data", (d) => (log += d));
  proc.stderr.on("data", (d) => {
    log += d;
    if (process.env.NATTER_TEST_VERBOSE) process.stderr.write(`[${name}] ${d}`);
  });
  let exited = null;
  proc.on("exit", (code, signal) => (exited = { code, signal }));
  const lb = {
    proc,
    url: `http://127.0.0.1:${port}`,
    cfg,
    log: () => log,
    /** Rows of the stats page for the backend's servers: {svname, status, check_status}. */
    async servers() {
      const text = await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)).text();
      const [header, ...rows] = text.trim().split("\n");
      const cols = header.replace(/^# /, "").split(",");
      return rows
        .map((r) => Object.fromEntries(r.split(",").map((v, i) => [cols[i], v])))
        .filter((r) => r.pxname === "natter" && r.svname !== "BACKEND");
    },
    stop() {
      return new Promise((resolve) => {
        if (exited) return resolve(exited);
        const timer = setTimeout(() => proc.kill("SIGKILL"), 3000);
        proc.once("exit", (code, signal) => {
          clearTimeout(timer);
          resolve({ code, signal });
        });
        proc.kill("SIGTERM");
      });
    },
  };
  const deadline = Date.now() + 15000;
  let last = "no answer from the stats page";
  for (;;) {
    if (exited) throw new Error(`haproxy ${name} exited (${exited.code ?? exited.signal}):\n${log}\n${cfg}`);
    try {
      const servers = await lb.servers();
      last = JSON.stringify(servers.map((s) => [s.svname, s.status, s.check_status]));
      if (servers.length === backends.length && servers.every((s) => s.status === "UP" && s.check_status === "L7OK")) return lb;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) {
      await lb.stop();
      throw new Error(`haproxy ${name}: the backends are not all UP with a passed /readyz check after 15 s: ${last}\n${log}`);
    }
    await sleep(100);
  }
}

// ------------------------------------------------------------------ helpers

/** A polling-only socket.io-client through `url` that keeps cookies; counts heartbeats. */
async function pollingClient(url, userId, extra = {}) {
  const c = await connect(url, { transports: ["polling"], withCredentials: true, query: { userId }, ...extra });
  c.pings = 0;
  c.socket.io.on("ping", () => (c.pings += 1));
  c.disconnects = [];
  c.socket.on("disconnect", (reason) => c.disconnects.push(reason));
  return c;
}

/** The value of the balancer's NATTER_NODE cookie in a client's engine.io cookie jar. */
function nodeCookie(c) {
  const jar = c.socket.io.engine._cookieJar;
  assert.ok(jar, "engine.io-client made no cookie jar: withCredentials did not take effect");
  return new Map(jar.cookies).get("NATTER_NODE")?.value;
}

/** `natter_connections{face="socketio"}` of a node. */
async function socketConnections(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = text.match(/^natter_connections\{[^}]*face="socketio"[^}]*\} (\S+)$/m);
  return m ? Number(m[1]) : 0;
}

/** Rejects if `promise` has not settled in `ms`. */
async function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not done in ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------ one cluster, two balancers

let cluster, sticky, plain, tmp;
before(async () => {
  if (!runnable) return;
  if (!pre.ok) throw new Error(`load balancer prerequisites missing under CI=true: ${pre.reason}`);
  cluster = await startCluster({
    nodes: 3,
    args: ["--ping-interval-ms", String(PING_INTERVAL_MS), "--ping-timeout-ms", String(PING_TIMEOUT_MS)],
  });
  const backends = cluster.urls.map((u) => Number(new URL(u).port));
  tmp = tempDir();
  sticky = await startHaproxy(tmp.dir, "sticky", { backends, sticky: true });
  plain = await startHaproxy(tmp.dir, "roundrobin", { backends, sticky: false });
});
after(async () => {
  await sticky?.stop();
  await plain?.stop();
  await cluster?.stop();
  tmp?.cleanup();
});

test("long-polling through HAProxy with the documented sticky cookie: 6 clients over 3 nodes, one seq order, replies everywhere, heartbeats pass", opts, async () => {
  const chatId = uid("lb");
  const users = Array.from({ length: 6 }, (_, i) => `poll${i}`);
  const clients = [];
  try {
    for (const u of users) clients.push(await pollingClient(sticky.url, u));
    for (const c of clients) assert.equal(c.socket.io.engine.transport.name, "polling");

    // Roundrobin spread the handshakes; the cookie names the node, and the nodes agree.
    const cookies = clients.map(nodeCookie);
    assert.ok(cookies.every((v) => /^n[123]$/.test(v ?? "")), `every client holds a NATTER_NODE cookie: ${JSON.stringify(cookies)}`);
    assert.ok(new Set(cookies).size >= 2, `the clients sit on at least 2 nodes: ${JSON.stringify(cookies)}`);
    const perNode = [1, 2, 3].map((k) => cookies.filter((v) => v === `n${k}`).length);
    const gauges = await Promise.all(cluster.urls.map(socketConnections));
    assert.deepEqual(gauges, perNode, `natter_connections of each node matches the cookies (${JSON.stringify(cookies)})`);

    const joins = [];
    for (const c of clients) joins.push(await c.emit("chat:join", { chatId }));
    for (const j of joins) assert.equal(j.ok, true, JSON.stringify(j));
    assert.equal(new Set(joins.map((j) => j.epoch)).size, 1, "one epoch on every node");

    // Everyone sends at once.
    const sent = await Promise.all(
      clients.map(async (c, i) => {
        const messageId = uid("m");
        const requestId = uid("req");
        const text = `[fake:tokens n=5] hello from ${users[i]}`;
        const ack = await c.emit("user:message", { chatId, messageId, userId: users[i], text, requestId });
        assert.equal(ack.ok, true, `${users[i]}: ${JSON.stringify(ack)}`);
        return { user: users[i], messageId, requestId, text, seq: ack.seq };
      }),
    );
    const requestIds = new Set(sent.map((s) => s.requestId));

    for (let i = 0; i < clients.length; i++) {
      const c = clients[i];
      const others = sent.filter((s) => s.user !== users[i]);
      await c.until(
        () =>
          others.every((s) => c.of("chat:message").some((m) => m.messageId === s.messageId)) &&
          c.of("ai:message").filter((m) => requestIds.has(m.requestId)).length >= sent.length,
        30000,
        `${users[i]} (${cookies[i]}): the others' ${others.length} messages and all ${sent.length} replies`,
      );
    }
    await sleep(200); // anything late or duplicated shows up now

    // One seq per event, the same at every client, and the acks agree.
    const reference = new Map();
    for (const s of sent) reference.set(`user ${s.messageId}`, s.seq);
    for (const m of clients[0].of("ai:message").filter((m) => requestIds.has(m.requestId))) reference.set(`ai ${m.requestId}`, m.seq);
    assert.equal(new Set(reference.values()).size, 2 * sent.length, `12 distinct seqs: ${JSON.stringify([...reference])}`);
    for (let i = 0; i < clients.length; i++) {
      const c = clients[i];
      const view = new Map();
      for (const s of sent.filter((s) => s.user === users[i])) view.set(`user ${s.messageId}`, s.seq);
      for (const m of c.of("chat:message")) {
        const s = sent.find((s) => s.messageId === m.messageId);
        if (!s || s.user === users[i]) continue;
        assert.equal(m.text, s.text);
        assert.ok(!view.has(`user ${m.messageId}`), `${users[i]} got ${m.messageId} twice`);
        view.set(`user ${m.messageId}`, m.seq);
      }
      for (const m of c.of("ai:message").filter((m) => requestIds.has(m.requestId))) {
        assert.equal(m.text, "t0 t1 t2 t3 t4 ", `${users[i]}: reply to ${m.requestId}`);
        assert.equal(m.finishReason, "stop");
        assert.ok(!view.has(`ai ${m.requestId}`), `${users[i]} got the reply to ${m.requestId} twice`);
        view.set(`ai ${m.requestId}`, m.seq);
      }
      assert.deepEqual(new Map([...view].sort()), new Map([...reference].sort()), `${users[i]} (${cookies[i]}) sees the same seqs`);
    }

    // Heartbeats: several ping/pong round trips through the balancer (a pong routed to another
    // node would leave the session unanswered, and the server would drop it after the timeout).
    const pingsBefore = clients.map((c) => c.pings);
    await sleep(PING_INTERVAL_MS + PING_TIMEOUT_MS + 700);
    for (let i = 0; i < clients.length; i++) {
      const c = clients[i];
      assert.ok(c.pings - pingsBefore[i] >= 3, `${users[i]}: ${c.pings - pingsBefore[i]} pings in ${PING_INTERVAL_MS + PING_TIMEOUT_MS + 700} ms`);
      assert.deepEqual(c.disconnects, [], `${users[i]} stays connected`);
      assert.equal(c.socket.connected, true);
      assert.equal(c.socket.io.engine.transport.name, "polling");
    }
    // And the sessions still carry traffic both ways.
    const late = { messageId: uid("m"), requestId: uid("req") };
    const ack = await clients[5].emit("user:message", { chatId, userId: users[5], text: "[fake:tokens n=2] still here", ...late });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    for (let i = 0; i < clients.length; i++) {
      const c = clients[i];
      if (i !== 5) await c.waitFor("chat:message", (m) => m.messageId === late.messageId, 10000);
      const reply = await c.waitFor("ai:message", (m) => m.requestId === late.requestId, 10000);
      assert.equal(reply.text, "t0 t1 ");
    }
  } finally {
    for (const c of clients) c.close();
  }
});

test("the default transports through the same balancer: polling handshake, then the WebSocket upgrade reaches the same node", opts, async () => {
  const chatId = uid("lb-up");
  const a = await connect(sticky.url, { withCredentials: true, query: { userId: "up-a" } });
  const b = await connect(sticky.url, { withCredentials: true, query: { userId: "up-b" } });
  try {
    for (const c of [a, b]) {
      await c.until(() => c.socket.io.engine.transport.name === "websocket", 5000, "the upgrade to websocket");
      assert.match(nodeCookie(c) ?? "", /^n[123]$/);
    }
    assert.equal((await a.emit("chat:join", { chatId })).ok, true);
    assert.equal((await b.emit("chat:join", { chatId })).ok, true);
    const messageId = uid("m");
    const requestId = uid("req");
    assert.equal((await a.emit("user:message", { chatId, messageId, userId: "up-a", text: "[fake:tokens n=3] up", requestId })).ok, true);
    await b.waitFor("chat:message", (m) => m.messageId === messageId);
    for (const c of [a, b]) assert.equal((await c.waitFor("ai:message", (m) => m.requestId === requestId)).text, "t0 t1 t2 ");
  } finally {
    a.close();
    b.close();
  }
});

test("negative control: the same configuration without the cookie line (pure roundrobin) breaks polling sessions", opts, async () => {
  assert.doesNotMatch(plain.cfg, /^\s*cookie NATTER_NODE/m);
  const chatId = uid("lb-rr");
  const outcomes = await Promise.all(
    [0, 1, 2].map(async (i) => {
      let c;
      try {
        c = await within(pollingClient(plain.url, `rr${i}`), 10000, "connect");
      } catch (e) {
        return `connect_error: ${e.message}`;
      }
      try {
        const ack = await c.socket.timeout(3000).emitWithAck("chat:join", { chatId });
        if (!ack.ok) return `join refused: ${JSON.stringify(ack)}`;
        await sleep(PING_INTERVAL_MS + PING_TIMEOUT_MS + 700);
        if (c.disconnects.length) return `disconnect: ${c.disconnects.join(", ")}`;
        return c.socket.connected ? "ok" : "not connected";
      } catch (e) {
        return `failed: ${e.message}; disconnects: ${c.disconnects.join(", ")}`;
      } finally {
        c.close();
      }
    }),
  );
  const failed = outcomes.filter((o) => o !== "ok");
  assert.ok(failed.length >= 1, `without stickiness at least one polling session should fail; outcomes: ${JSON.stringify(outcomes)}`);
  // The control really went through: the balancer logged requests to more than one node.
  const used = new Set([...plain.log().matchAll(/natter\/(n[123]) /g)].map((m) => m[1]));
  assert.ok(used.size >= 2, `roundrobin used ${[...used]} (log:\n${plain.log().slice(-2000)})`);
  process.stderr.write(`loadbalancer: without the cookie: ${JSON.stringify(outcomes)}\n`);
});

test("through the sticky balancer, a Node.js polling client without withCredentials keeps no cookie and fails too", opts, async () => {
  const outcomes = await Promise.all(
    [0, 1, 2].map(async (i) => {
      let c;
      try {
        c = await within(pollingClient(sticky.url, `nocookie${i}`, { withCredentials: false }), 10000, "connect");
      } catch (e) {
        return `connect_error: ${e.message}`;
      }
      try {
        await sleep(PING_INTERVAL_MS + PING_TIMEOUT_MS + 700);
        if (c.disconnects.length) return `disconnect: ${c.disconnects.join(", ")}`;
        return c.socket.connected ? "ok" : "not connected";
      } finally {
        c.close();
      }
    }),
  );
  assert.ok(outcomes.some((o) => o !== "ok"), `without a cookie jar at least one polling session should fail; outcomes: ${JSON.stringify(outcomes)}`);
  process.stderr.write(`loadbalancer: sticky balancer, withCredentials false: ${JSON.stringify(outcomes)}\n`);
});
