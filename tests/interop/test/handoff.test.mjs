// Client types and handoff to a human agent (CONTRACT §7.1, §7.2), with stock clients:
// socket.io-client for customers, agents and observers on Socket.IO, `eventsource` (and the
// raw SSE reader for a first connect with Last-Event-ID) on seed 002's HTTP + SSE face, and
// fetch on the history REST. The fake upstream counts requests, so "the AI stays silent" is
// checked where it matters: nothing was sent upstream.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { EventSource } from "eventsource";
import { connect, sleep, startStack, uid } from "../lib/harness.mjs";
import { openSse } from "../lib/sse-reader.mjs";
import { SECRET, tokenFor } from "../lib/token.mjs";

/** connect() that resolves to the connect_error message instead of rejecting. */
const refusal = (url, opts) =>
  connect(url, { transports: ["websocket"], ...opts }).then(
    (c) => {
      c.close();
      return "connected";
    },
    (e) => e.message,
  );

async function json(url, init = {}) {
  const res = await fetch(url, { ...init, headers: { "content-type": "application/json", ...(init.headers ?? {}) } });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { unparsable: text };
  }
  return { status: res.status, body };
}

const SSE_TYPES = ["reconnected", "message", "human_agent_requested", "human_agent_joined", "human_agent_left", "agent_execution_started", "error"];

/** A stock `eventsource` stream on seed 002's /stream, recording typed events. */
function openStream(base, params) {
  const url = new URL(`${base}/stream`);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const es = new EventSource(url);
  const events = [];
  for (const type of SSE_TYPES) {
    es.addEventListener(type, (e) => {
      if (typeof e.data === "string") events.push({ type, id: e.lastEventId, data: JSON.parse(e.data) });
    });
  }
  const s = {
    events,
    of: (type) => events.filter((e) => e.type === type),
    async waitFor(type, pred = () => true, timeoutMs = 10000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = events.find((e) => e.type === type && pred(e.data, e));
        if (hit) return hit;
        if (Date.now() > deadline) throw new Error(`timed out waiting for SSE ${type}; got ${JSON.stringify(events.map((e) => e.type))}`);
        await sleep(10);
      }
    },
    close: () => es.close(),
  };
  return s;
}

describe("handoff and client types, auth off", () => {
  let stack, natter, upstream;
  before(async () => {
    ({ natter, upstream } = stack = await startStack({ args: ["--retry-max", "0"] }));
  });
  after(() => stack?.stop());

  const rt = () => `${natter.url}/api/v1/chat`;
  const hist = () => `${natter.url}/api/v1/chats`;
  const org = uid("org");
  const X1 = uid("x1");
  const X2 = uid("x2");
  const ctx = {};

  test("a customer asks for a person over Socket.IO: handoff:update, and the waiting list holds it, oldest first", async () => {
    const ann = await connect(natter.url, { query: { userId: "ann", orgId: org } });
    const bob = await connect(natter.url, { query: { userId: "bob", orgId: org } });
    ctx.ann = ann;
    const j1 = await ann.emit("chat:join", { chatId: X1 });
    assert.equal(j1.ok, true, JSON.stringify(j1));
    ctx.x1Before = { seq: j1.seq, epoch: j1.epoch };
    assert.equal((await bob.emit("chat:join", { chatId: X2 })).ok, true);

    const disco = await ann.emit("meta:events:request", {});
    assert.equal(disco.events.handoffRequest, "handoff:request");
    assert.equal(disco.events.handoffUpdate, "handoff:update");
    const a1 = await ann.emit("handoff:request", { chatId: X1 });
    assert.deepEqual(
      { ok: a1.ok, chatId: a1.chatId, w: a1.isWaitingForAgent, h: a1.humanAgentEngaged, ai: a1.aiEngaged },
      { ok: true, chatId: X1, w: true, h: false, ai: true },
    );
    assert.equal(a1.seq, j1.seq + 1, "the request is a durable event with the next seq");
    await sleep(5); // distinct waitingSince
    const a2 = await bob.emit("handoff:request", { chatId: X2 });
    assert.equal(a2.ok, true);
    const again = await ann.emit("handoff:request", { chatId: X1 });
    assert.equal(again.ok, true);
    assert.equal(again.seq, a1.seq, "asking again while waiting changes nothing");

    const up = await ann.waitFor("handoff:update", (u) => u.seq === a1.seq);
    assert.deepEqual(
      { chatId: up.chatId, w: up.isWaitingForAgent, h: up.humanAgentEngaged, ai: up.aiEngaged, reason: up.reason },
      { chatId: X1, w: true, h: false, ai: true, reason: "human_agent_requested" },
    );
    assert.equal(typeof up.waitingSince, "number");

    for (const list of [
      await json(`${hist()}?waiting=true&orgId=${org}`),
      await json(hist(), { method: "POST", body: JSON.stringify({ orgId: org, waiting: true }) }),
    ]) {
      assert.equal(list.status, 200, JSON.stringify(list.body));
      const keys = list.body.chats.map((c) => c.chatKey);
      assert.deepEqual(keys, [X1, X2], "waiting chats only, oldest waitingSince first");
      assert.equal(list.body.total, 2);
      for (const c of list.body.chats) {
        assert.equal(c.isWaitingForAgent, true);
        assert.equal(c.aiEngaged, true);
        assert.equal(typeof c.waitingSince, "number");
      }
      assert.ok(list.body.chats[0].waitingSince < list.body.chats[1].waitingSince);
    }
    const all = await json(`${hist()}?orgId=${org}`);
    assert.equal(all.body.total, 2, "the unfiltered list still lists every chat");
    const one = await json(`${hist()}/${X1}?orgId=${org}`);
    assert.equal(one.body.isWaitingForAgent, true, "ChatSummary shows the wait");
    bob.close();
  });

  test("an agent joins over Socket.IO: the AI stays silent, the agent's messages are role humanAgent, leaving hands back to the AI", async () => {
    const ann = ctx.ann;
    const agent = await connect(natter.url, { query: { userId: "agent-1", orgId: org, clientType: "humanAgent" } });
    ctx.agent = agent;
    assert.equal((await agent.emit("chat:join", { chatId: X1 })).ok, true);
    const joined = await ann.waitFor("handoff:update", (u) => u.reason === "human_agent_joined");
    assert.deepEqual(
      { w: joined.isWaitingForAgent, h: joined.humanAgentEngaged, ai: joined.aiEngaged, agentId: joined.agentId },
      { w: false, h: true, ai: false, agentId: "agent-1" },
    );
    await agent.waitFor("handoff:update", (u) => u.reason === "human_agent_joined");
    const waiting = await json(`${hist()}?waiting=true&orgId=${org}`);
    assert.deepEqual(waiting.body.chats.map((c) => c.chatKey), [X2], "a taken chat leaves the queue");

    await upstream.reset();
    const requestId = uid("req");
    const sent = await ann.emit("user:message", { chatId: X1, messageId: uid("m"), requestId, text: "[fake:tokens n=2] is anyone there?" });
    assert.equal(sent.ok, true, JSON.stringify(sent));
    const seen = await agent.waitFor("chat:message", (m) => m.text.includes("anyone there"));
    assert.equal(seen.role, "user");
    await sleep(600);
    assert.equal((await upstream.stats()).requests, 0, "nothing went upstream while a human agent is engaged");
    assert.equal(ann.of("ai:processing").filter((p) => p.requestId === requestId).length, 0, "no turn was queued");

    const agentMsg = uid("am");
    const a = await agent.emit("user:message", { chatId: X1, messageId: agentMsg, text: "Hi Ann, I am a person." });
    assert.equal(a.ok, true, JSON.stringify(a));
    const got = await ann.waitFor("chat:message", (m) => m.messageId === agentMsg);
    assert.equal(got.role, "humanAgent", "Socket.IO chat:message.role");
    assert.equal(got.userId, "agent-1");
    await sleep(300);
    assert.equal((await upstream.stats()).requests, 0, "an agent's message starts no turn");

    const page = await json(`${hist()}/${X1}/messages?orgId=${org}`);
    const stored = page.body.messages.find((m) => m.id === agentMsg);
    assert.equal(stored?.role, "humanAgent", "history shows the role (seed 002 ChatMessage.role)");
    const late = await connect(natter.url, { query: { userId: "carl", orgId: org } });
    const lateAck = await late.emit("chat:join", { chatId: X1 });
    assert.equal(lateAck.messages.find((m) => m.messageId === agentMsg)?.role, "humanAgent", "the join ack's messages keep the role");
    late.close();

    assert.equal((await agent.emit("chat:leave", { chatId: X1 })).ok, true);
    const left = await ann.waitFor("handoff:update", (u) => u.reason === "human_agent_left");
    assert.deepEqual(
      { w: left.isWaitingForAgent, h: left.humanAgentEngaged, ai: left.aiEngaged, agentId: left.agentId },
      { w: false, h: false, ai: true, agentId: "agent-1" },
    );
    const back = uid("req");
    assert.equal((await ann.emit("user:message", { chatId: X1, messageId: uid("m"), requestId: back, text: "[fake:tokens n=3] back to the bot" })).ok, true);
    const reply = await ann.waitFor("ai:message", (m) => m.requestId === back, 15000);
    assert.equal(reply.text, "t0 t1 t2 ", "with no agent left the next user message gets an AI reply");
  });

  test("handoff events replay on a Socket.IO rejoin with lastSeq", async () => {
    const c = await connect(natter.url, { query: { userId: "ann", orgId: org } });
    const ack = await c.emit("chat:join", { chatId: X1, lastSeq: ctx.x1Before.seq, epoch: ctx.x1Before.epoch });
    assert.equal(ack.recovered, true);
    const updates = c.of("handoff:update");
    assert.deepEqual(updates.map((u) => u.reason), ["human_agent_requested", "human_agent_joined", "human_agent_left"]);
    const seqs = c.events.filter((e) => e.payload && typeof e.payload.seq === "number").map((e) => e.payload.seq);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), "replayed in seq order");
    assert.equal(seqs[0], ctx.x1Before.seq + 1, "from lastSeq + 1");
    c.close();
  });

  test("seed 002: request, agent join, agent message, leave over POST /event; SSE events; /load flags; Last-Event-ID replay", async () => {
    const { body: created } = await json(`${rt()}/create`, { method: "POST", body: JSON.stringify({ orgId: org, userId: "cust" }) });
    const chatKey = created.chatKey;
    const s = openStream(rt(), { orgId: org, userId: "cust", clientType: "customer", chatKey });
    await s.waitFor("reconnected");
    const post = (path, body) => json(`${rt()}/${path}`, { method: "POST", body: JSON.stringify({ orgId: org, chatKey, ...body }) });

    assert.equal((await post("event", { type: "human_agent_requested", userId: "cust" })).status, 200);
    const req = await s.waitFor("human_agent_requested");
    assert.deepEqual(
      { w: req.data.data.isWaitingForAgent, h: req.data.data.humanAgentEngaged, ai: req.data.data.aiEngaged, user: req.data.userId },
      { w: true, h: false, ai: true, user: "cust" },
    );
    assert.ok(Number(req.id) > 0, "a durable event: it has an SSE id");
    let chat = (await post("load", { userId: "cust" })).body.chat;
    assert.equal(chat.isWaitingForAgent, true);
    assert.equal(chat.aiEngaged, true);
    assert.equal(typeof chat.waitingSince, "number");

    const j = await post("event", { type: "human_agent_joined", userId: "agent-2", clientType: "humanAgent" });
    assert.equal(j.status, 200, JSON.stringify(j.body));
    const joined = await s.waitFor("human_agent_joined");
    assert.equal(joined.data.data.agentId, "agent-2");
    assert.equal(joined.data.data.humanAgentEngaged, true);
    assert.equal(joined.data.data.aiEngaged, false);
    chat = (await post("load", { userId: "cust" })).body.chat;
    assert.deepEqual([chat.humanAgentEngaged, chat.aiEngaged, chat.isWaitingForAgent], [true, false, false]);

    await upstream.reset();
    assert.equal((await post("send", { userId: "cust", message: { content: "[fake:tokens n=2] hello?" } })).status, 200);
    const agentMsg = uid("am2");
    assert.equal((await post("send", { userId: "agent-2", message: { id: agentMsg, content: "A person here." } })).status, 200);
    const m = await s.waitFor("message", (d) => d.message?.id === agentMsg);
    assert.equal(m.data.message.role, "humanAgent", "SSE message role");
    await sleep(600);
    assert.equal((await upstream.stats()).requests, 0, "the AI stayed silent");
    assert.equal(s.of("agent_execution_started").length, 0);
    chat = (await post("load", { userId: "cust" })).body.chat;
    assert.equal(chat.messages.find((x) => x.id === agentMsg)?.role, "humanAgent", "/load keeps the role");

    assert.equal((await post("event", { type: "human_agent_left", userId: "agent-2" })).status, 200);
    const left = await s.waitFor("human_agent_left");
    assert.equal(left.data.data.aiEngaged, true);
    assert.equal((await post("send", { userId: "cust", message: { content: "[fake:tokens n=2] bot again" } })).status, 200);
    const ai = await s.waitFor("message", (d) => d.message?.role === "ai", 15000);
    assert.equal(ai.data.message.content, "t0 t1 ");
    s.close();

    // A fresh stream with Last-Event-ID before the request replays the handoff events.
    const replay = await openSse(`${rt()}/stream?orgId=${org}&userId=cust&clientType=customer&chatKey=${chatKey}`, {
      headers: { "last-event-id": String(Number(req.id) - 1) },
    });
    await replay.until((evs) => evs.some((e) => e.type === "human_agent_left"), 10000, "replayed human_agent_left");
    const kinds = replay.events.filter((e) => e.type.startsWith("human_agent_")).map((e) => [e.type, Number(e.id)]);
    assert.deepEqual(kinds.map((k) => k[0]), ["human_agent_requested", "human_agent_joined", "human_agent_left"]);
    assert.equal(kinds[0][1], Number(req.id));
    replay.close();
  });

  test("an observer receives everything, may not write, and is not in presence", async () => {
    const chat = uid("obs-chat");
    const dee = await connect(natter.url, { query: { userId: "dee", orgId: org } });
    assert.equal((await dee.emit("chat:join", { chatId: chat })).ok, true);
    const obs = await connect(natter.url, { query: { userId: "olly", orgId: org, clientType: "observer" } });
    const oj = await obs.emit("chat:join", { chatId: chat });
    assert.equal(oj.ok, true);
    assert.deepEqual(oj.onlineUserIds, ["dee"], "the observer is not listed");
    await sleep(200);
    for (const p of dee.of("presence:update")) assert.ok(!p.onlineUserIds.includes("olly"), JSON.stringify(p));

    const msgId = uid("m");
    assert.equal((await dee.emit("user:message", { chatId: chat, messageId: msgId, text: "[fake:tokens n=1] hi" })).ok, true);
    await obs.waitFor("chat:message", (m) => m.messageId === msgId);
    await obs.waitFor("ai:message", () => true, 15000);

    for (const [event, payload] of [
      ["user:message", { chatId: chat, messageId: uid("m"), text: "let me in" }],
      ["typing:start", { chatId: chat }],
      ["ai:tool_result", { chatId: chat, toolCallId: "call-x", result: 1 }],
      ["handoff:request", { chatId: chat }],
    ]) {
      const ack = await obs.emit(event, payload);
      assert.equal(ack.ok, false, `${event}: ${JSON.stringify(ack)}`);
      assert.equal(ack.error.code, "forbidden", `${event}: ${ack.error.message}`);
    }
    // Seed 002: an observer's /send and typing are refused too, and its stream is not presence.
    const { body: created } = await json(`${rt()}/create`, { method: "POST", body: JSON.stringify({ orgId: org, userId: "dee" }) });
    const send = await json(`${rt()}/send`, { method: "POST", body: JSON.stringify({ orgId: org, chatKey: created.chatKey, userId: "olly", clientType: "observer", message: { content: "x" } }) });
    assert.equal(send.status, 403, JSON.stringify(send.body));
    assert.equal(send.body.error.code, "forbidden");
    const typing = await json(`${rt()}/event`, { method: "POST", body: JSON.stringify({ type: "typing", orgId: org, chatKey: created.chatKey, userId: "olly", clientType: "observer" }) });
    assert.equal(typing.body.error?.code, "forbidden");
    assert.equal(await refusal(natter.url, { query: { userId: "x", clientType: "robot" } }).then((m) => m.split(":")[0]), "invalid_field");
    obs.close();
    dee.close();
  });
});

describe("client types with auth on (and the handoff events remapped)", () => {
  let stack, natter;
  const REMAP = { handoffRequest: "desk:ask", handoffUpdate: "desk:state" };
  before(async () => {
    const names = Object.entries(REMAP).flatMap(([k, v]) => ["--event-name", `${k}=${v}`]);
    ({ natter } = stack = await startStack({ args: ["--jwt-secret", SECRET, "--retry-max", "0", ...names] }));
  });
  after(() => stack?.stop());

  test("a customer token cannot claim humanAgent; an agent-scoped token takes a chat", async () => {
    const org = uid("org");
    const chat = uid("c");
    const customer = tokenFor(org, "cus");
    assert.equal(await refusal(natter.url, { auth: { token: customer, clientType: "humanAgent" } }), "forbidden");
    const claimOnly = tokenFor(org, "cus2", { client_type: "humanAgent" });
    assert.equal(await refusal(natter.url, { auth: { token: claimOnly } }), "forbidden", "the claim alone needs the scope");
    const observerClaim = tokenFor(org, "cus3", { client_type: "observer" });
    assert.equal(await refusal(natter.url, { auth: { token: observerClaim, clientType: "customer" } }), "forbidden", "a hint may not contradict the claim");
    const sse = await fetch(`${natter.url}/api/v1/chat/stream?token=${customer}&clientType=humanAgent`);
    assert.equal(sse.status, 403);
    assert.equal((await sse.json()).error.code, "forbidden");

    const cus = await connect(natter.url, { auth: { token: customer } });
    const disco = await cus.emit("meta:events:request", {});
    assert.equal(disco.events.handoffRequest, REMAP.handoffRequest, "meta:events:response advertises the names in force");
    assert.equal(disco.events.handoffUpdate, REMAP.handoffUpdate);
    assert.equal((await cus.emit("chat:join", { chatId: chat })).ok, true);
    assert.equal((await cus.emit("handoff:request", { chatId: chat })).error?.code, "unknown_event", "the old name is unknown");
    assert.equal((await cus.emit(REMAP.handoffRequest, { chatId: chat })).ok, true);
    const agentToken = tokenFor(org, "agent-9", { scopes: ["chat:agent"] });
    const agent = await connect(natter.url, { auth: { token: agentToken, clientType: "humanAgent" } });
    assert.equal((await agent.emit("chat:join", { chatId: chat })).ok, true);
    const up = await cus.waitFor(REMAP.handoffUpdate, (u) => u.reason === "human_agent_joined");
    assert.equal(up.agentId, "agent-9");
    // With the agent scope and no hint, a token acts as a humanAgent on HTTP too.
    const r = await fetch(`${natter.url}/api/v1/chats?waiting=true`, { headers: { authorization: `Bearer ${agentToken}` } });
    assert.equal(r.status, 200);
    const queue = await r.json();
    assert.ok(!queue.chats.some((c) => c.chatKey === chat), "taken: not in the queue");
    // A customer's POST /event human_agent_joined is refused.
    const { body: created } = await json(`${natter.url}/api/v1/chat/create`, { method: "POST", headers: { authorization: `Bearer ${customer}` }, body: "{}" });
    const steal = await json(`${natter.url}/api/v1/chat/event`, { method: "POST", headers: { authorization: `Bearer ${customer}` }, body: JSON.stringify({ type: "human_agent_joined", chatKey: created.chatKey }) });
    assert.equal(steal.status, 403, JSON.stringify(steal.body));
    assert.equal(steal.body.error.code, "forbidden");
    agent.close();
    cus.close();
  });
});
