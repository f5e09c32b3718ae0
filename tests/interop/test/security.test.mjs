// Auth, tenant isolation, members-only chats and limits (docs/security.md) on every face, with
// stock clients against the real binary: socket.io-client, the `ai` package's
// DefaultChatTransport, `ws` for the AI SDK WebSocket, `eventsource` for seed 002's SSE
// stream, and fetch for the POSTs and history REST.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { DefaultChatTransport } from "ai";
import { EventSource } from "eventsource";
import { WebSocket } from "ws";
import { binDir, connect, sleep, startStack, uid } from "../lib/harness.mjs";
import { openSse } from "../lib/sse-reader.mjs";
import { SECRET, badTokens, mint, now } from "../lib/token.mjs";

const AUTH = ["--jwt-secret", SECRET, "--jwt-issuer", "gw", "--jwt-audience", "api", "--jwt-leeway-secs", "0"];
const tok = (org, user, extra = {}) => mint({ org_id: org, user_id: user, iss: "gw", aud: "api", ...extra });
const bearer = (t) => (t ? { authorization: `Bearer ${t}` } : {});
const userMsg = (text, id = uid("u")) => ({ id, role: "user", parts: [{ type: "text", text }] });

/** `{status, code}` of an HTTP call; `code` from the JSON error body, if any. */
async function call(url, { method = "GET", token, body, headers = {} } = {}) {
  const res = await fetch(url, {
    method,
    headers: { "content-type": "application/json", ...bearer(token), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, code: json?.error?.code, message: json?.error?.message, json, headers: res.headers, text };
}

/** The HTTP status of a WebSocket upgrade to /api/chat/ws (101 when it opens). */
function wsStatus(url, token) {
  return new Promise((resolve) => {
    const q = token ? `?token=${encodeURIComponent(token)}` : "";
    const ws = new WebSocket(`${url.replace("http", "ws")}/api/chat/ws${q}`);
    ws.on("open", () => {
      ws.close();
      resolve(101);
    });
    ws.on("unexpected-response", (_req, res) => {
      resolve(res.statusCode);
      ws.terminate();
    });
    ws.on("error", () => {});
  });
}

/** The status an SSE stream open gets (the body is not read). */
async function sseStatus(url, token, query = "") {
  const ctl = new AbortController();
  const res = await fetch(`${url}/api/v1/chat/stream?${token ? `token=${encodeURIComponent(token)}&` : ""}${query}`, { signal: ctl.signal });
  const status = res.status;
  const body = status === 200 ? null : await res.json();
  ctl.abort();
  return { status, code: body?.error?.code };
}

/** connect() that resolves to the connect_error message instead of rejecting. */
const refusal = (url, opts) =>
  connect(url, { transports: ["websocket"], ...opts }).then(
    (c) => {
      c.close();
      return "connected";
    },
    (e) => e.message,
  );

describe("tokens on every face", () => {
  let stack, url;
  before(async () => {
    stack = await startStack({ args: AUTH });
    url = stack.natter.url;
  });
  after(() => stack.stop());

  test("no token, and every kind of bad token, is refused on all six faces; a good one works", async () => {
    const faces = {
      "socket.io": async (t) => refusal(url, t ? { auth: { token: t } } : {}),
      "aisdk POST": async (t) => (await call(`${url}/api/chat`, { method: "POST", token: t, body: { id: uid("c"), messages: [userMsg("hi")] } })).status,
      "aisdk ws": (t) => wsStatus(url, t),
      "seed002 POST": async (t) => (await call(`${url}/api/v1/chat/create`, { method: "POST", token: t, body: {} })).status,
      "seed002 SSE": async (t) => (await sseStatus(url, t)).status,
      history: async (t) => (await call(`${url}/api/v1/chats`, { token: t })).status,
    };
    const refused = { "socket.io": "unauthorized" };
    let cases = 0;
    for (const [face, attempt] of Object.entries(faces)) {
      const expect = refused[face] ?? 401;
      assert.equal(await attempt(undefined), expect, `${face}: no token`);
      for (const [kind, t] of Object.entries(badTokens("acme", "ann"))) {
        assert.equal(await attempt(t), expect, `${face}: ${kind}`);
        cases++;
      }
      const good = await attempt(tok("acme", "ann"));
      assert.ok(good === "connected" || good === 200 || good === 101, `${face}: a good token got ${good}`);
    }
    assert.equal(cases, 6 * 9);
    // The HTTP refusal says why, with the catalog shape and the Bearer challenge.
    const r = await call(`${url}/api/v1/chats`, { token: badTokens("acme", "ann").expired });
    assert.equal(r.code, "unauthorized");
    assert.match(r.message, /expired/);
    assert.equal(r.headers.get("www-authenticate"), "Bearer");
    // POSTs do not take ?token= (tokens stay out of logged URLs); GETs do.
    const viaQuery = await call(`${url}/api/v1/chat/create?token=${tok("acme", "ann")}`, { method: "POST", body: {} });
    assert.equal(viaQuery.status, 401);
    assert.equal((await call(`${url}/api/v1/chats?token=${tok("acme", "ann")}`)).status, 200);
  });

  test("the AI SDK's own DefaultChatTransport carries the token in its headers option", async () => {
    const transport = new DefaultChatTransport({ api: `${url}/api/chat`, headers: bearer(tok("acme", "ann")) });
    const stream = await transport.sendMessages({ chatId: uid("c"), messages: [userMsg("[fake:tokens n=3] hi")], trigger: "submit-message", abortSignal: undefined });
    const types = [];
    for await (const chunk of stream) types.push(chunk.type);
    assert.equal(types[0], "start");
    assert.ok(types.includes("finish"), types.join(","));
    const anonymous = new DefaultChatTransport({ api: `${url}/api/chat` });
    await assert.rejects(anonymous.sendMessages({ chatId: uid("c"), messages: [userMsg("hi")], trigger: "submit-message", abortSignal: undefined }));
  });

  test("a payload, body or query naming another user or org is forbidden, never followed", async () => {
    const ann = await connect(url, { auth: { token: tok("acme", "ann") } });
    const chatId = uid("c");
    assert.equal((await ann.emit("chat:join", { chatId })).ok, true);
    const spoof = await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "bob", text: "as bob" });
    assert.equal(spoof.error.code, "forbidden");
    assert.equal(await refusal(url, { auth: { token: tok("acme", "ann") }, query: { userId: "bob" } }), "forbidden");
    assert.equal(await refusal(url, { auth: { token: tok("acme", "ann"), orgId: "other" } }), "forbidden");
    const t = tok("acme", "ann");
    const send = await call(`${url}/api/v1/chat/send`, { method: "POST", token: t, body: { chatKey: chatId, userId: "bob", message: { content: "x" } } });
    assert.deepEqual([send.status, send.code], [403, "forbidden"]);
    const org = await call(`${url}/api/v1/chats?orgId=other`, { token: t });
    assert.deepEqual([org.status, org.code], [403, "forbidden"]);
    const list = await call(`${url}/api/v1/chats/user/bob`, { token: t });
    assert.deepEqual([list.status, list.code], [403, "forbidden"], "another user's list is for admins");
    // Nothing was stored by the refused attempts.
    const msgs = await call(`${url}/api/v1/chats/${chatId}/messages`, { token: t });
    assert.equal(msgs.json.messages.length, 0);
    ann.close();
  });

  test("--jwt-required-scope: a token without it is forbidden", async () => {
    const s = await startStack({ args: [...AUTH, "--jwt-required-scope", "chat:connect"] });
    try {
      assert.equal(await refusal(s.natter.url, { auth: { token: tok("acme", "ann") } }), "forbidden");
      assert.equal(await refusal(s.natter.url, { auth: { token: tok("acme", "ann", { scopes: ["chat:connect"] }) } }), "connected");
      assert.equal((await call(`${s.natter.url}/api/v1/chats`, { token: tok("acme", "ann") })).code, "forbidden");
      assert.equal((await call(`${s.natter.url}/api/v1/chats`, { token: tok("acme", "ann", { scopes: "chat:connect" }) })).status, 200);
    } finally {
      await s.stop();
    }
  });

  test("an expiring token: auth:refresh keeps the socket; without it, token_expired then disconnect; SSE ends with token_expired", async () => {
    const soon = () => tok("acme", "ann", { exp: now() + 2 });
    const kept = await connect(url, { auth: { token: soon() } });
    const dropped = await connect(url, { auth: { token: soon() } });
    const refreshed = await kept.emit("auth:refresh", { token: tok("acme", "ann", { exp: now() + 600 }) });
    assert.equal(refreshed.ok, true);
    assert.ok(Date.parse(refreshed.expiresAt) > Date.now() + 500_000, refreshed.expiresAt);
    const other = await kept.emit("auth:refresh", { token: tok("acme", "bob") });
    assert.equal(other.error.code, "forbidden", "a refresh must be for the same user");
    assert.equal((await kept.emit("auth:refresh", { token: badTokens("acme", "ann")["another key"] })).error.code, "unauthorized");
    const reason = await new Promise((resolve) => dropped.socket.on("disconnect", resolve));
    assert.equal(reason, "io server disconnect");
    assert.equal(dropped.of("error")[0].code, "token_expired");
    assert.equal(kept.socket.connected, true);
    kept.close();

    const events = [];
    const es = new EventSource(`${url}/api/v1/chat/stream?token=${soon()}`);
    es.addEventListener("error", (e) => e.data && events.push(JSON.parse(e.data)));
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no token_expired on SSE")), 8000);
      const poll = setInterval(() => {
        if (events.some((e) => e.data?.code === "token_expired")) {
          clearTimeout(t);
          clearInterval(poll);
          resolve();
        }
      }, 20);
    });
    es.close();
  });

  test("an SSE stream ends right after its token_expired error, with or without chatKey", async () => {
    const soon = () => tok("acme", "ann", { exp: now() + 2 });
    const created = await call(`${url}/api/v1/chat/create`, { method: "POST", token: tok("acme", "ann"), body: {} });
    assert.equal(created.status, 200, created.text);
    const chatKey = created.json.chatKey;
    // A stream follows the chat its chatKey names, or one its user loads from another tab;
    // following a chat must not keep it open.
    const cases = [
      ["with chatKey", `chatKey=${encodeURIComponent(chatKey)}&`, false],
      ["without chatKey", "", false],
      ["without chatKey, following a loaded chat", "", true],
    ];
    for (const [what, query, load] of cases) {
      const sse = await openSse(`${url}/api/v1/chat/stream?${query}token=${encodeURIComponent(soon())}`);
      try {
        assert.equal(sse.status, 200, what);
        if (load) {
          const loaded = await call(`${url}/api/v1/chat/load`, { method: "POST", token: tok("acme", "ann"), body: { chatKey } });
          assert.equal(loaded.status, 200, loaded.text);
          await sse.until((es) => es.some((e) => e.type === "load_chat_response"), 2000, "load_chat_response");
        }
        await sse.until((es) => es.some((e) => e.type === "error" && e.data?.data?.code === "token_expired"), 8000, `token_expired ${what}`);
        const expiredAt = Date.now();
        await sse.until(() => sse.ended, 3000, `the stream to end after token_expired ${what}`);
        assert.ok(Date.now() - expiredAt < 3000, what);
        assert.equal(sse.events.at(-1).data?.data?.code, "token_expired", `${what}: token_expired is the last event`);
      } finally {
        sse.close();
      }
    }
  });

  test("startup refuses auth on without a usable secret", () => {
    const run = (args) => spawnSync(path.join(binDir, "natter"), ["serve", "--listen", "127.0.0.1:0", ...args], { encoding: "utf8", timeout: 20000, env: { ...process.env, NATTER_JWT_SECRET: "" } });
    const none = run(["--auth", "on"]);
    assert.notEqual(none.status, 0);
    assert.match(none.stderr, /NATTER_JWT_SECRET/);
    const short = run(["--jwt-secret", "short"]);
    assert.notEqual(short.status, 0);
    assert.match(short.stderr, /at least 32/);
  });
});

describe("tenant isolation and members-only chats", () => {
  let stack, url;
  before(async () => {
    stack = await startStack({ args: AUTH });
    url = stack.natter.url;
  });
  after(() => stack.stop());

  test("the same chatId in two orgs: org B can never reach org A's chat, on any face", async () => {
    const chatId = uid("shared");
    const a = tok("org-a", "ann");
    const b = tok("org-b", "eve");
    const ann = await connect(url, { auth: { token: a } });
    await ann.emit("chat:join", { chatId });
    await ann.emit("user:message", { chatId, messageId: uid("m"), text: "[fake:drip n=60 delay_ms=40] org A secret" });
    await ann.waitFor("ai:token");

    const probes = {
      "history get": () => call(`${url}/api/v1/chats/${chatId}`, { token: b }),
      "history messages": () => call(`${url}/api/v1/chats/${chatId}/messages`, { token: b }),
      "history patch": () => call(`${url}/api/v1/chats/${chatId}`, { method: "PATCH", token: b, body: { title: "pwned" } }),
      "history delete": () => call(`${url}/api/v1/chats/${chatId}`, { method: "DELETE", token: b }),
      "seed002 load": () => call(`${url}/api/v1/chat/load`, { method: "POST", token: b, body: { chatKey: chatId } }),
      "seed002 send": () => call(`${url}/api/v1/chat/send`, { method: "POST", token: b, body: { chatKey: chatId, message: { content: "x" } } }),
      "seed002 typing": () => call(`${url}/api/v1/chat/typing`, { method: "POST", token: b, body: { chatKey: chatId } }),
      "seed002 end": () => call(`${url}/api/v1/chat/end`, { method: "POST", token: b, body: { chatKey: chatId } }),
      "seed002 event": () => call(`${url}/api/v1/chat/event`, { method: "POST", token: b, body: { type: "client_action_callback", chatKey: chatId, data: { toolCallId: "x", result: 1 } } }),
      "seed002 stream": () => sseStatus(url, b, `chatKey=${chatId}`),
      "aisdk stop": () => call(`${url}/api/chat/${chatId}/stop`, { method: "POST", token: b, body: {} }),
    };
    for (const [what, probe] of Object.entries(probes)) {
      const r = await probe();
      assert.deepEqual([r.status, r.code], [404, "not_found"], what);
    }
    // Resuming org A's running turn as org B: nothing to resume (204), not A's stream.
    const resume = await fetch(`${url}/api/chat/${chatId}/stream`, { headers: bearer(b) });
    assert.equal(resume.status, 204);
    // Lists hold only the caller's org.
    const listB = await call(`${url}/api/v1/chats`, { token: b });
    assert.ok(!listB.json.chats.some((c) => c.chatKey === chatId));
    // A Socket.IO join of the same id as org B is org B's own (new) chat: none of A's events.
    const eve = await connect(url, { auth: { token: b } });
    const join = await eve.emit("chat:join", { chatId });
    assert.equal(join.ok, true);
    assert.equal(join.messages.length, 0);
    assert.deepEqual(join.onlineUserIds, ["eve"]);
    // An AI SDK POST as org B to that id also lands in org B's chat.
    const transport = new DefaultChatTransport({ api: `${url}/api/chat`, headers: bearer(b) });
    for await (const _ of await transport.sendMessages({ chatId, messages: [userMsg("[fake:tokens n=2] org B")], trigger: "submit-message", abortSignal: undefined }));
    await ann.waitFor("ai:message", () => true, 15000);
    await sleep(200);
    assert.equal(eve.of("ai:token").filter((t) => t.token.includes("secret")).length, 0);
    assert.ok(!ann.events.some((e) => JSON.stringify(e.payload ?? "").includes("org B")), "org A saw org B's message");
    const aMsgs = await call(`${url}/api/v1/chats/${chatId}/messages`, { token: a });
    assert.ok(aMsgs.json.messages.every((m) => !String(m.content).includes("org B")));
    assert.equal((await call(`${url}/api/v1/chats/${chatId}`, { token: a })).json.title.includes("pwned"), false);
    ann.close();
    eve.close();
  });

  test("members-only chats: outsiders are forbidden on every face; members, the creator and admins get in", async () => {
    const t = (u, extra) => tok("acme", u, extra);
    const created = await call(`${url}/api/v1/chat/create`, { method: "POST", token: t("ann"), body: { members: ["bob"] } });
    const chatKey = created.json.chatKey;
    const cat = t("cat");
    for (const [what, r] of [
      ["load", await call(`${url}/api/v1/chat/load`, { method: "POST", token: cat, body: { chatKey } })],
      ["send", await call(`${url}/api/v1/chat/send`, { method: "POST", token: cat, body: { chatKey, message: { content: "x" } } })],
      ["history get", await call(`${url}/api/v1/chats/${chatKey}`, { token: cat })],
      ["messages", await call(`${url}/api/v1/chats/${chatKey}/messages`, { token: cat })],
      ["sse", await sseStatus(url, cat, `chatKey=${chatKey}`)],
      ["aisdk POST", await call(`${url}/api/chat`, { method: "POST", token: cat, body: { id: chatKey, messages: [userMsg("x")] } })],
    ]) {
      assert.deepEqual([r.status, r.code], [403, "forbidden"], what);
    }
    const catSock = await connect(url, { auth: { token: cat } });
    assert.equal((await catSock.emit("chat:join", { chatId: chatKey })).error.code, "forbidden");
    const bob = await connect(url, { auth: { token: t("bob") } });
    assert.equal((await bob.emit("chat:join", { chatId: chatKey })).ok, true);
    const admin = await connect(url, { auth: { token: t("root", { scopes: ["chat:admin"] }) } });
    assert.equal((await admin.emit("chat:join", { chatId: chatKey })).ok, true);
    // Only the creator (or an admin) changes the list; [] opens the chat to the org.
    const byBob = await call(`${url}/api/v1/chats/${chatKey}`, { method: "PATCH", token: t("bob"), body: { members: ["bob", "cat"] } });
    assert.deepEqual([byBob.status, byBob.code], [403, "forbidden"]);
    const opened = await call(`${url}/api/v1/chats/${chatKey}`, { method: "PATCH", token: t("ann"), body: { members: [] } });
    assert.equal(opened.status, 200);
    assert.equal((await catSock.emit("chat:join", { chatId: chatKey })).ok, true);
    // Lists: a member sees its own chats; an admin sees the org's.
    const adminList = await call(`${url}/api/v1/chats?limit=200`, { token: t("root", { scopes: "chat:admin" }) });
    assert.ok(adminList.json.chats.some((c) => c.chatKey === chatKey));
    const nobodyList = await call(`${url}/api/v1/chats`, { token: t("nobody") });
    assert.equal(nobodyList.json.total, 0);
    for (const c of [catSock, bob, admin]) c.close();
  });
});

describe("limits", () => {
  test("rates: over the turn rate is rate_limited with a retry hint on Socket.IO and HTTP, and nothing is stored or sent upstream", async () => {
    const s = await startStack({ rateLimits: ["--turn-rate-per-user", "2", "--message-rate-per-connection", "0"] });
    try {
      const url = s.natter.url;
      const ann = await connect(url, { query: { userId: "ann" } });
      const chatId = uid("c");
      await ann.emit("chat:join", { chatId });
      await s.upstream.reset();
      for (let i = 0; i < 2; i++) assert.equal((await ann.emit("user:message", { chatId, messageId: uid("m"), text: "[fake:tokens n=1] ok" })).ok, true);
      const third = await ann.emit("user:message", { chatId, messageId: uid("m"), text: "[fake:tokens n=1] over" });
      assert.equal(third.error.code, "rate_limited");
      assert.ok(third.error.retryAfterMs > 1000 && third.error.retryAfterMs <= 30_001, String(third.error.retryAfterMs));
      const ev = await ann.waitFor("error", (e) => e.code === "rate_limited");
      assert.equal(ev.retryAfterMs, third.error.retryAfterMs);
      // The same user on another face shares the budget.
      const http = await call(`${url}/api/v1/chat/send`, { method: "POST", body: { chatKey: chatId, userId: "ann", message: { content: "over" } } });
      assert.deepEqual([http.status, http.code], [429, "rate_limited"]);
      assert.ok(Number(http.headers.get("retry-after")) >= 1);
      await sleep(500);
      const stored = await call(`${url}/api/v1/chats/${chatId}/messages`);
      assert.equal(stored.json.messages.filter((m) => m.role === "user").length, 2);
      assert.equal((await s.upstream.stats()).requests, 2);
      // Another user is not limited by ann's budget.
      const bob = await connect(url, { query: { userId: "bob" } });
      await bob.emit("chat:join", { chatId });
      assert.equal((await bob.emit("user:message", { chatId, messageId: uid("m"), text: "[fake:tokens n=1] bob" })).ok, true);
      ann.close();
      bob.close();
    } finally {
      await s.stop();
    }
  });

  test("a message rate refills: after retryAfterMs the next message goes through", async () => {
    // Only the per-connection message rate is on (turns unlimited): 60 a minute refills one a second.
    const s = await startStack({ rateLimits: ["--message-rate-per-connection", "60", "--message-rate-per-user", "0", "--message-rate-per-ip", "0", "--turn-rate-per-connection", "0", "--turn-rate-per-user", "0", "--turn-rate-per-ip", "0"] });
    try {
      const ann = await connect(s.natter.url, { query: { userId: "ann" } });
      const chatId = uid("c");
      await ann.emit("chat:join", { chatId });
      let refused;
      for (let i = 0; i < 70 && !refused; i++) {
        const ack = await ann.emit("user:message", { chatId, messageId: uid("m"), text: `n${i}` });
        if (!ack.ok) refused = ack.error;
      }
      assert.equal(refused?.code, "rate_limited");
      assert.ok(refused.retryAfterMs <= 1001, String(refused.retryAfterMs));
      await sleep(refused.retryAfterMs + 50);
      assert.equal((await ann.emit("user:message", { chatId, messageId: uid("m"), text: "after the wait" })).ok, true);
      ann.close();
    } finally {
      await s.stop();
    }
  });

  test("connection caps per user, joins per socket, and an oversized text keeps the socket", async () => {
    const s = await startStack({ args: ["--max-connections-per-user", "2", "--max-joins-per-socket", "2", "--max-text-bytes", "1000"] });
    try {
      const url = s.natter.url;
      const one = await connect(url, { query: { userId: "ann" } });
      const two = await connect(url, { query: { userId: "ann" } });
      assert.equal(await refusal(url, { query: { userId: "ann" } }), "too_many_connections");
      const sse = await sseStatus(url, null, "userId=ann");
      assert.deepEqual([sse.status, sse.code], [429, "too_many_connections"]);
      assert.equal(await refusal(url, { query: { userId: "bob" } }), "connected");
      two.close();
      await sleep(300);
      assert.equal(await refusal(url, { query: { userId: "ann" } }), "connected", "a closed connection frees its slot");

      assert.equal((await one.emit("chat:join", { chatId: uid("a") })).ok, true);
      const b = uid("b");
      assert.equal((await one.emit("chat:join", { chatId: b })).ok, true);
      assert.equal((await one.emit("chat:join", { chatId: uid("c") })).error.code, "too_many_joins");
      assert.equal((await one.emit("chat:join", { chatId: b })).ok, true, "a rejoin is not a new join");
      const big = await one.emit("user:message", { chatId: b, messageId: uid("m"), text: "x".repeat(1001) });
      assert.equal(big.error.code, "too_large");
      assert.equal(one.socket.connected, true);
      one.close();
    } finally {
      await s.stop();
    }
  });

  test("origin allow-list: another origin is refused, the allowed one and non-browsers pass", async () => {
    const s = await startStack({ args: ["--allowed-origins", "https://app.example.com"] });
    try {
      const url = s.natter.url;
      const evil = await call(`${url}/api/v1/chats`, { headers: { origin: "https://evil.example" } });
      assert.deepEqual([evil.status, evil.code], [403, "forbidden"]);
      const good = await call(`${url}/api/v1/chats`, { headers: { origin: "https://app.example.com" } });
      assert.equal(good.status, 200);
      assert.equal(good.headers.get("access-control-allow-origin"), "https://app.example.com");
      assert.equal((await call(`${url}/api/v1/chats`)).status, 200);
      assert.equal(await refusal(url, { query: { userId: "x" }, extraHeaders: { origin: "https://evil.example" } }) !== "connected", true);
    } finally {
      await s.stop();
    }
  });
});
