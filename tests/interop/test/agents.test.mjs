// Agents (CONTRACT §7.5): `[[agents]]` in the TOML config, each with its own system prompt,
// provider, model, tools and temperature. Two agents on two fake upstreams: a chat bound at
// creation (seed 002 `/create {metadata}`, Socket.IO `chat:join {agentId}`, the AI SDK body's
// `agentId`) sends its agent's settings upstream, regenerate included; an unknown agent is
// `not_found` on every face; `GET /api/v1/agents` lists them; a config naming an unknown
// provider or tool, or the same id twice, does not start.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { DefaultChatTransport, WebSocketChatTransport } from "ai";
import { WebSocket } from "ws";
import { binDir, connect, sleep, startFakeUpstream, startNatter, tempDir, uid } from "../lib/harness.mjs";
import { SECRET, tokenFor } from "../lib/token.mjs";

const SUPPORT_PROMPT = "You are the support agent. Be brief.";
const SALES_PROMPT = "You are the sales agent. Be upbeat.";

let tmp, up1, up2, natter;
before(async () => {
  tmp = tempDir();
  up1 = await startFakeUpstream();
  up2 = await startFakeUpstream();
  const config = path.join(tmp.dir, "agents.toml");
  writeFileSync(config, `
tools = ["current_time"]

[[providers]]
name = "second"
kind = "openai"
base_url = "${up2.url}/v1"

[[agents]]
id = "support"
name = "Support"
description = "Answers questions about orders"
system_prompt = "${SUPPORT_PROMPT}"
model = "support-model"
temperature = 0.25
tools = ["current_time"]

[[agents]]
id = "sales"
name = "Sales"
system_prompt = "${SALES_PROMPT}"
provider = "second"
model = "sales-model"
temperature = 1.5
tools = []
`);
  // The server's own provider is up1 (`--provider openai --openai-base-url up1`).
  natter = await startNatter({ upstream: up1, dataDir: tmp.dir, args: ["--config", config, "--retry-max", "0"] });
});
after(async () => {
  await natter?.stop();
  up1?.stop();
  up2?.stop();
  tmp?.cleanup();
});

/** The chat-completions bodies `upstream` got whose user messages contain `marker`. */
async function requestsWith(upstream, marker) {
  const { chat_requests: all } = await upstream.stats();
  return all.filter((b) => b.messages?.some((m) => m.role === "user" && String(m.content).includes(marker)));
}

/** Waits until `upstream` got `n` requests carrying `marker`; returns them. */
async function eventually(upstream, marker, n = 1, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await requestsWith(upstream, marker);
    if (got.length >= n) return got;
    if (Date.now() > deadline) throw new Error(`upstream got ${got.length} of ${n} requests with ${marker}`);
    await sleep(20);
  }
}

function assertSupport(body) {
  assert.equal(body.model, "support-model");
  assert.equal(body.temperature, 0.25);
  assert.deepEqual(body.messages[0], { role: "system", content: SUPPORT_PROMPT });
  assert.deepEqual(body.tools?.map((t) => t.function.name), ["current_time"], "support's tools");
}

function assertSales(body) {
  assert.equal(body.model, "sales-model");
  assert.equal(body.temperature, 1.5);
  assert.deepEqual(body.messages[0], { role: "system", content: SALES_PROMPT });
  assert.equal(body.tools, undefined, "sales has no tools");
}

async function post(pathname, body) {
  const res = await fetch(`${natter.url}${pathname}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** Seed 002's /load until the chat holds an `ai` message; returns the chat. */
async function loadReply(chatKey, userId, count = 1) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const { body } = await post("/api/v1/chat/load", { orgId: "default", chatKey, userId });
    if (body.chat.messages.filter((m) => m.role === "ai").length >= count) return body.chat;
    if (Date.now() > deadline) throw new Error(`no reply in ${chatKey}: ${JSON.stringify(body.chat.messages)}`);
    await sleep(30);
  }
}

const userMsg = (text, id = uid("u")) => ({ id, role: "user", parts: [{ type: "text", text }] });

async function drain(stream) {
  const chunks = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return chunks;
    chunks.push(value);
  }
}

test("GET /api/v1/agents lists {id, name, description}", async () => {
  const res = await fetch(`${natter.url}/api/v1/agents`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {
    agents: [
      { id: "support", name: "Support", description: "Answers questions about orders" },
      { id: "sales", name: "Sales", description: null },
    ],
  });
});

test("with auth on, GET /api/v1/agents needs a valid token (any user of any org)", async () => {
  const dir = path.join(tmp.dir, "auth");
  const secured = await startNatter({
    upstream: up1, dataDir: dir, args: ["--config", path.join(tmp.dir, "agents.toml")], env: { NATTER_JWT_SECRET: SECRET },
  });
  try {
    const bare = await fetch(`${secured.url}/api/v1/agents`);
    assert.equal(bare.status, 401);
    assert.equal((await bare.json()).error.code, "unauthorized");
    const res = await fetch(`${secured.url}/api/v1/agents`, { headers: { authorization: `Bearer ${tokenFor("acme", "ann")}` } });
    assert.equal(res.status, 200);
    assert.deepEqual((await res.json()).agents.map((a) => a.id), ["support", "sales"]);
  } finally {
    await secured.stop();
  }
});

describe("seed 002", () => {
  test("/create {metadata: {agentName}} binds the chat: its turns use the agent's prompt, provider, model, temperature and tools", async () => {
    const { status, body } = await post("/api/v1/chat/create", { orgId: "default", userId: "ann", metadata: { agentName: "Sales", topic: "x" } });
    assert.equal(status, 200, JSON.stringify(body));
    const chatKey = body.chatKey;
    const marker = uid("sales-002");
    const sent = await post("/api/v1/chat/send", { orgId: "default", chatKey, userId: "ann", message: { content: `hello ${marker}` } });
    assert.equal(sent.status, 200);
    const chat = await loadReply(chatKey, "ann");
    assert.deepEqual(chat.metadata, { agentName: "Sales", agentId: "sales", topic: "x" }, "the binding is stored by id");
    const [req] = await eventually(up2, marker);
    assertSales(req);
    assert.equal((await requestsWith(up1, marker)).length, 0, "nothing went to the server's own provider");
  });

  test("/create {metadata: {agentId}} works too; an unknown agentId or agentName is not_found", async () => {
    const { body } = await post("/api/v1/chat/create", { orgId: "default", userId: "ann", metadata: { agentId: "support" } });
    const marker = uid("support-002");
    await post("/api/v1/chat/send", { orgId: "default", chatKey: body.chatKey, userId: "ann", message: { content: marker } });
    await loadReply(body.chatKey, "ann");
    assertSupport((await eventually(up1, marker))[0]);
    for (const metadata of [{ agentId: "nobody" }, { agentName: "Nobody" }]) {
      const r = await post("/api/v1/chat/create", { orgId: "default", userId: "ann", metadata });
      assert.equal(r.status, 404, JSON.stringify(r.body));
      assert.equal(r.body.error.code, "not_found");
      assert.match(r.body.error.message, /no agent/);
    }
    const r = await post("/api/v1/chat/create", { orgId: "default", userId: "ann", metadata: { agentId: 7 } });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, "invalid_field");
  });

  test("a chat created without an agent gets the server's own settings", async () => {
    const { body } = await post("/api/v1/chat/create", { orgId: "default", userId: "ann" });
    const marker = uid("plain-002");
    await post("/api/v1/chat/send", { orgId: "default", chatKey: body.chatKey, userId: "ann", message: { content: marker } });
    await loadReply(body.chatKey, "ann");
    const [req] = await eventually(up1, marker);
    assert.equal(req.model, "fake-model");
    assert.equal(req.temperature, undefined);
    assert.notEqual(req.messages[0].role, "system");
  });
});

describe("Socket.IO", () => {
  test("chat:join {chatId, agentId} on a new chat binds it; regenerate (AI SDK) answers with the same agent", async () => {
    const c = await connect(natter.url, { query: { userId: "bob" } });
    try {
      const chatId = uid("sio-agent");
      const join = await c.emit("chat:join", { chatId, agentId: "support" });
      assert.equal(join.ok, true, JSON.stringify(join));
      const marker = uid("support-sio");
      const ack = await c.emit("user:message", { chatId, messageId: uid("m"), text: `hi ${marker}` });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      const first = await c.waitFor("ai:message", (m) => m.chatId === chatId);
      assertSupport((await eventually(up1, marker))[0]);

      // Regenerate: the new turn uses the chat's agent too.
      const transport = new DefaultChatTransport({ api: `${natter.url}/api/chat`, body: { userId: "bob" } });
      const stream = await transport.sendMessages({
        chatId, messages: [], trigger: "regenerate-message", messageId: first.messageId, abortSignal: undefined,
      });
      const chunks = await drain(stream);
      assert.equal(chunks.at(-1).type, "finish", JSON.stringify(chunks.map((x) => x.type)));
      const both = await eventually(up1, marker, 2);
      assertSupport(both[1]);

      // Rejoining with its own agent is fine; with another it is refused.
      assert.equal((await c.emit("chat:join", { chatId, agentId: "support" })).ok, true);
      const other = await c.emit("chat:join", { chatId, agentId: "sales" });
      assert.equal(other.ok, false);
      assert.equal(other.error.code, "invalid_field");
      assert.match(other.error.message, /bound to agent `support`/);
    } finally {
      c.close();
    }
  });

  test("a handshake join (joinEvent: null) binds a new chat by auth.agentId", async () => {
    const chatId = uid("hs-agent");
    const c = await connect(natter.url, { query: { userId: "dee", chatId }, auth: { agentId: "sales" } });
    try {
      await c.waitFor("presence:update", (p) => p.chatId === chatId);
      const marker = uid("sales-hs");
      const ack = await c.emit("user:message", { chatId, messageId: uid("m"), text: marker });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      await c.waitFor("ai:message", (m) => m.chatId === chatId);
      assertSales((await eventually(up2, marker))[0]);
    } finally {
      c.close();
    }
  });

  test("chat:join with an unknown agentId is not_found and creates nothing", async () => {
    const c = await connect(natter.url, { query: { userId: "bob" } });
    try {
      const chatId = uid("sio-unknown");
      const ack = await c.emit("chat:join", { chatId, agentId: "nobody" });
      assert.equal(ack.ok, false);
      assert.equal(ack.error.code, "not_found");
      const res = await fetch(`${natter.url}/api/v1/chats/${chatId}`);
      assert.equal(res.status, 404, "the chat was not created");
    } finally {
      c.close();
    }
  });
});

describe("AI SDK", () => {
  test("agentId in the request body binds a new chat (DefaultChatTransport)", async () => {
    const transport = new DefaultChatTransport({ api: `${natter.url}/api/chat`, body: { userId: "cy", agentId: "sales" } });
    const chatId = uid("ai-agent");
    const marker = uid("sales-ai");
    const chunks = await drain(await transport.sendMessages({
      chatId, messages: [userMsg(`hey ${marker}`)], trigger: "submit-message", messageId: undefined, abortSignal: undefined,
    }));
    assert.equal(chunks.at(-1).type, "finish");
    assertSales((await eventually(up2, marker))[0]);
    const summary = await (await fetch(`${natter.url}/api/v1/chats/${chatId}`)).json();
    assert.equal(summary.metadata.agentId, "sales");
  });

  test("agentId in the body works on WebSocketChatTransport too; an unknown one is an error frame", async () => {
    const ws = new WebSocketChatTransport({ url: `${natter.url}/api/chat/ws`, webSocket: WebSocket, body: { userId: "cy", agentId: "support" } });
    try {
      const marker = uid("support-ws");
      const chunks = await drain(await ws.sendMessages({
        chatId: uid("ws-agent"), messages: [userMsg(`yo ${marker}`)], trigger: "submit-message", messageId: undefined, abortSignal: undefined,
      }));
      assert.equal(chunks.at(-1).type, "finish");
      assertSupport((await eventually(up1, marker))[0]);
    } finally {
      ws.close();
    }
    const bad = new WebSocketChatTransport({ url: `${natter.url}/api/chat/ws`, webSocket: WebSocket, body: { agentId: "nobody" } });
    try {
      const refused = await bad.sendMessages({ chatId: uid("ws-bad"), messages: [userMsg("x")], trigger: "submit-message", abortSignal: undefined });
      await assert.rejects(drain(refused), /not_found: /);
    } finally {
      bad.close();
    }
  });

  test("an unknown agentId is a 404 not_found before streaming; the ai package rejects", async () => {
    const chatId = uid("ai-unknown");
    const r = await post("/api/chat", { id: chatId, trigger: "submit-message", messages: [userMsg("x")], agentId: "nobody" });
    assert.equal(r.status, 404, JSON.stringify(r.body));
    assert.equal(r.body.error.code, "not_found");
    const transport = new DefaultChatTransport({ api: `${natter.url}/api/chat`, body: { agentId: "nobody" } });
    await assert.rejects(
      transport.sendMessages({ chatId, messages: [userMsg("x")], trigger: "submit-message", messageId: undefined, abortSignal: undefined }),
      /not_found|no agent/,
    );
  });
});

describe("configuration refused", () => {
  const cases = [
    ["an unknown provider", `[[agents]]\nid = "a"\nname = "A"\nsystem_prompt = "p"\nprovider = "nope"\n`, /agent `a`: unknown provider `nope`/],
    ["an unknown tool", `[[agents]]\nid = "a"\nname = "A"\nsystem_prompt = "p"\ntools = ["teleport"]\n`, /agent `a`: unknown tool `teleport`/],
    ["a repeated id", `[[agents]]\nid = "a"\nname = "A"\nsystem_prompt = "p"\n[[agents]]\nid = "a"\nname = "B"\nsystem_prompt = "q"\n`, /two agents have the id `a`/],
  ];
  for (const [what, toml, message] of cases) {
    test(`${what}: serve exits non-zero naming it, and config check reports it`, () => {
      const file = path.join(tmp.dir, `${uid("bad")}.toml`);
      writeFileSync(file, toml);
      const env = { ...process.env, NATTER_LOG: "warn" };
      const serve = spawnSync(path.join(binDir, "natter"), ["serve", "--config", file, "--listen", "127.0.0.1:0", "--provider", "demo"], { env, encoding: "utf8", timeout: 20000 });
      assert.notEqual(serve.status, 0, `serve started: ${serve.stdout}`);
      assert.match(serve.stderr, message);
      const check = spawnSync(path.join(binDir, "natter"), ["config", "check", file], { env, encoding: "utf8", timeout: 20000 });
      assert.equal(check.status, 1, check.stdout);
      assert.match(check.stderr, message);
    });
  }
});
