// natter-engineio, the project's own Engine.IO v4 transport, driven by stock engine.io-client
// (the layer under socket.io-client) through tools/engineio-echo: the WebSocket and polling
// transports, the upgrade between them, the heartbeat's schedule, closes, bad input, and the
// per-session byte bound. Natter's Socket.IO face does not run on it yet.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { Socket } from "engine.io-client";
import WebSocket from "ws";
import { startEngineioEcho, sleep } from "../lib/harness.mjs";

/** Opens an engine.io-client socket and resolves once it is open. */
function open(url, opts = {}) {
  return new Promise((resolve, reject) => {
    const socket = new Socket(url, { reconnection: false, ...opts });
    const messages = [];
    socket.on("message", (data) => messages.push(data));
    socket.once("open", () => resolve({ socket, messages }));
    socket.once("error", reject);
  });
}

/** Resolves with the `n`th message (1-based) once it has arrived. */
async function nth(messages, n, what) {
  for (let i = 0; i < 400 && messages.length < n; i++) await sleep(25);
  assert.ok(messages.length >= n, `${what}: got ${messages.length} of ${n} messages`);
  return messages[n - 1];
}

const closed = (socket) => new Promise((resolve) => socket.once("close", (reason) => resolve(reason)));

describe("natter-engineio: transports", () => {
  let echo;
  before(async () => {
    echo = await startEngineioEcho();
  });
  after(() => echo?.stop());

  for (const transport of ["websocket", "polling"]) {
    test(`${transport} only: handshake, text and binary echoed in order`, async () => {
      const { socket, messages } = await open(echo.url, { transports: [transport] });
      assert.equal(socket.transport.name, transport);
      assert.match(socket.id, /^[A-Za-z0-9_-]{20}$/);
      socket.send("héllo");
      socket.send(Uint8Array.from([0, 1, 2, 255]));
      socket.send("second");
      assert.equal(await nth(messages, 1, "text"), "héllo");
      assert.deepEqual([...Buffer.from(await nth(messages, 2, "binary"))], [0, 1, 2, 255]);
      assert.equal(await nth(messages, 3, "text"), "second");
      const reason = closed(socket);
      socket.close();
      assert.equal(await reason, "forced close");
    });

    test(`${transport}: the server's close reaches the client and ends the session`, async () => {
      const { socket } = await open(echo.url, { transports: [transport] });
      const reason = closed(socket);
      socket.send("close");
      assert.match(await reason, /transport close|transport error/);
      for (let i = 0; i < 100 && (await echo.stats()).sessions > 0; i++) await sleep(20);
      assert.equal((await echo.stats()).sessions, 0, "the session is gone on the server");
    });
  }

  test("polling upgrades to WebSocket; messages before, during and after arrive in order", async () => {
    const { socket, messages } = await open(echo.url);
    assert.equal(socket.transport.name, "polling");
    const upgraded = new Promise((resolve) => socket.once("upgrade", resolve));
    for (let i = 0; i < 5; i++) socket.send(`m${i}`);
    await upgraded;
    assert.equal(socket.transport.name, "websocket");
    for (let i = 5; i < 10; i++) socket.send(`m${i}`);
    await nth(messages, 10, "echoes");
    assert.deepEqual(messages, [...Array(10).keys()].map((i) => `m${i}`));
    // The old polling session's requests are refused now.
    const stale = await fetch(`${echo.url}/engine.io/?EIO=4&transport=polling&sid=${socket.id}`);
    assert.equal(stale.status, 400);
    assert.deepEqual(await stale.json(), { code: 3, message: "Bad request" });
    socket.close();
  });
});

describe("natter-engineio: heartbeat", () => {
  let echo;
  before(async () => {
    echo = await startEngineioEcho(["--ping-interval-ms", "300", "--ping-timeout-ms", "200"]);
  });
  after(() => echo?.stop());

  for (const transport of ["websocket", "polling"]) {
    test(`${transport}: the first ping comes one interval after the handshake, and pongs keep the session`, async () => {
      const opened = Date.now();
      const { socket } = await open(echo.url, { transports: [transport] });
      const pings = [];
      socket.on("ping", () => pings.push(Date.now() - opened));
      await sleep(1300);
      assert.ok(pings.length >= 2, `pings in 1.3 s: ${pings.length}`);
      // engineioxide sends its first ping at once; engine.io and this transport wait one
      // interval. A lower bound only: a loaded machine delays, it never hurries.
      assert.ok(pings[0] >= 250, `first ping after ${pings[0]} ms`);
      assert.equal(socket.readyState, "open");
      socket.close();
    });
  }

  test("a client that never answers a ping is closed after interval + timeout", async () => {
    const ws = new WebSocket(`${echo.url.replace("http", "ws")}/engine.io/?EIO=4&transport=websocket`);
    const frames = [];
    ws.on("message", (data) => frames.push(String(data)));
    const started = Date.now();
    const code = await new Promise((resolve) => ws.on("close", resolve));
    const lived = Date.now() - started;
    assert.match(frames[0], /^0\{"sid":"[A-Za-z0-9_-]{20}","upgrades":\[\],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000\}$/);
    assert.deepEqual(frames.slice(1), ["2"], "one ping, then the close");
    assert.ok(lived >= 450, `closed after ${lived} ms`);
    assert.equal(typeof code, "number");
  });
});

describe("natter-engineio: bad input", () => {
  let echo;
  before(async () => {
    echo = await startEngineioEcho();
  });
  after(() => echo?.stop());

  const refusal = async (path, init, code, message) => {
    const res = await fetch(`${echo.url}/engine.io/${path}`, init);
    assert.equal(res.status, 400, path);
    assert.deepEqual(await res.json(), { code, message }, path);
  };

  test("wrong version, transport, method or sid: 400 with engine.io's code and message", async () => {
    await refusal("?transport=polling", {}, 5, "Unsupported protocol version");
    await refusal("?EIO=3&transport=polling", {}, 5, "Unsupported protocol version");
    await refusal("?EIO=4&transport=carrier-pigeon", {}, 0, "Transport unknown");
    await refusal("?EIO=4&transport=polling", { method: "POST", body: "4x" }, 2, "Bad handshake method");
    await refusal("?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA", {}, 1, "Session ID unknown");
    await refusal("?EIO=4&transport=polling&sid=%00", {}, 1, "Session ID unknown");
    await refusal("?EIO=4&transport=websocket", {}, 3, "Bad request"); // no Upgrade header
  });

  /** A polling handshake by hand; returns the sid. */
  const handshake = async () => {
    const body = await (await fetch(`${echo.url}/engine.io/?EIO=4&transport=polling`)).text();
    assert.match(body, /^0\{"sid":"[A-Za-z0-9_-]{20}","upgrades":\["websocket"\]/);
    return JSON.parse(body.slice(1)).sid;
  };
  const session = (sid) => `${echo.url}/engine.io/?EIO=4&transport=polling&sid=${sid}`;

  test("an unreadable packet is refused and ends the session", async () => {
    for (const body of ["9nope", "", "4ok\u001e", "b!!!"]) {
      const sid = await handshake();
      const res = await fetch(session(sid), { method: "POST", body });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.deepEqual(await res.json(), { code: 3, message: "Bad request" });
      // The sid is gone at once.
      const after = await fetch(session(sid));
      assert.deepEqual(await after.json(), { code: 1, message: "Session ID unknown" });
    }
  });

  test("a body over maxPayload is refused with 413 and ends the session", async () => {
    const sid = await handshake();
    const res = await fetch(session(sid), { method: "POST", body: "4" + "x".repeat(1_000_001) });
    assert.equal(res.status, 413);
    assert.equal((await fetch(session(sid))).status, 400, "the session is gone");
  });

  test("a client's close over polling: a waiting GET ends with a noop, the sid is gone", async () => {
    const sid = await handshake();
    const waiting = fetch(session(sid));
    await sleep(100);
    assert.equal((await fetch(session(sid), { method: "POST", body: "1" })).status, 200);
    assert.equal(await (await waiting).text(), "6");
    assert.equal((await fetch(session(sid))).status, 400);
  });

  test("a second GET while one waits is refused and ends the session", async () => {
    const sid = await handshake();
    const waiting = fetch(session(sid));
    await sleep(100);
    const second = await fetch(session(sid));
    assert.equal(second.status, 400);
    assert.deepEqual(await second.json(), { code: 3, message: "Bad request" });
    assert.equal(await (await waiting).text(), "1", "the waiting GET gets the close packet");
  });

  test("a WebSocket message over maxPayload closes the connection", async () => {
    const ws = new WebSocket(`${echo.url.replace("http", "ws")}/engine.io/?EIO=4&transport=websocket`);
    await new Promise((resolve) => ws.once("message", resolve));
    ws.send("4" + "x".repeat(1_000_001));
    const code = await new Promise((resolve) => ws.on("close", resolve));
    assert.equal(code, 1009, "message too big");
  });
});

describe("natter-engineio: the per-session byte bound", () => {
  const bound = 256 * 1024;
  let echo;
  before(async () => {
    echo = await startEngineioEcho(["--max-queued-bytes", String(bound)]);
  });
  after(() => echo?.stop());

  test("20 stalled readers while 300 messages of 200 KB flow: the server grows by their bounds, not the flow", async () => {
    const url = `${echo.url.replace("http", "ws")}/engine.io/?EIO=4&transport=websocket`;
    const stalled = [];
    for (let i = 0; i < 20; i++) {
      const ws = new WebSocket(url);
      await new Promise((resolve) => ws.once("message", resolve)); // the open packet
      ws._socket.pause(); // reads nothing more: the kernel's buffers fill, then the server's
      stalled.push(ws);
    }
    const { socket, messages } = await open(echo.url, { transports: ["websocket"] });
    const before = echo.rss();
    const size = 200_000;
    socket.send(`broadcast 300 ${size}`);
    // The reading client gets all 300 while the stalled ones hold only what their bounds let.
    await nth(messages, 300, "the reading client's broadcast");
    const grown = (echo.rss() - before) * 1024;
    const stats = await echo.stats();
    assert.equal(stats.sessions, 21);
    assert.ok(stats.refused > 0, "full outboxes refused messages");
    // Per stalled session: its outbox (the bound, plus the one frame that may exceed it) and
    // the WebSocket's write buffer (128 KiB, plus the frame it was writing); then a constant.
    const perSession = bound + size + 128 * 1024 + size;
    assert.ok(stats.queuedBytes <= 20 * (bound + size), `queued ${stats.queuedBytes}`);
    const limit = 20 * perSession + 16 * 1024 * 1024;
    assert.ok(grown < limit, `grew ${(grown / 1048576).toFixed(1)} MiB, limit ${(limit / 1048576).toFixed(1)} (the flow was ${(300 * size / 1048576).toFixed(1)})`);
    for (const ws of stalled) ws.terminate();
    socket.close();
  });
});
