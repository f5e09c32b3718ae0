// Seed 002's HTTP + SSE face (CONTRACT §3, §6.9, §6.10, §6.13), driven with the stock npm
// `eventsource` client: POST /create /send /load /typing /end /event and GET /stream.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { EventSource } from "eventsource";
import { connect, sleep, startStack, uid } from "../lib/harness.mjs";

const MAX_PAYLOAD = 65536;
const HEARTBEAT_SECS = 0.3;

let stack, natter;
before(async () => {
  ({ natter } = stack = await startStack({
    args: [
      "--sse-heartbeat-secs", String(HEARTBEAT_SECS),
      "--retry-max", "0",
      "--max-payload-bytes", String(MAX_PAYLOAD),
    ],
  }));
});
after(() => stack?.stop());

const base = () => `${natter.url}/api/v1/chat`;

/** POSTs JSON (or a raw string body) to a realtime endpoint; returns {status, body}. */
async function post(path, body, { raw = false, headers = {} } = {}) {
  const res = await fetch(`${base()}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: raw ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { unparsable: text };
  }
  return { status: res.status, body: json, headers: res.headers };
}

/** POST that must succeed; returns the JSON body. */
async function ok(path, body) {
  const r = await post(path, body);
  assert.equal(r.status, 200, `${path} ${JSON.stringify(body)} → ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

async function create(orgId, userId, metadata) {
  const { chatKey } = await ok("create", { orgId, userId, ...(metadata ? { metadata } : {}) });
  assert.equal(typeof chatKey, "string");
  assert.ok(chatKey.length > 0);
  return chatKey;
}

const send = (orgId, chatKey, userId, content, id) =>
  ok("send", { orgId, chatKey, userId, message: { ...(id ? { id } : {}), content } });

const load = async (orgId, chatKey, userId) => (await ok("load", { orgId, chatKey, userId })).chat;

/** Polls /load until `pred(chat)`; returns the chat. */
async function loadUntil(orgId, chatKey, userId, pred, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const chat = await load(orgId, chatKey, userId);
    if (pred(chat)) return chat;
    if (Date.now() > deadline) throw new Error(`timed out polling /load: ${JSON.stringify(chat.messages)}`);
    await sleep(50);
  }
}

const EVENT_TYPES = [
  "reconnected", "message", "agent_execution_started", "agent_execution_ended", "typing",
  "stopped_typing", "new_chat_created", "load_chat_response", "chat_ended", "error",
];

/**
 * An `eventsource` EventSource on /stream that records every typed event as
 * `{type, id, data}` (data = the parsed ChatEvent). Connection errors (the package's
 * ErrorEvent, which shares the name `error` with the server's event) go to `connErrors`.
 */
function openStream(params, { fetch: fetchImpl } = {}) {
  const url = new URL(`${base()}/stream`);
  for (const [k, v] of Object.entries({ clientType: "customer", ...params })) url.searchParams.set(k, v);
  const es = new EventSource(url, fetchImpl ? { fetch: fetchImpl } : undefined);
  const events = [];
  const connErrors = [];
  for (const type of EVENT_TYPES) {
    es.addEventListener(type, (e) => {
      if (typeof e.data !== "string") {
        if (type === "error") connErrors.push({ code: e.code, message: e.message });
        return;
      }
      events.push({ type, id: e.lastEventId, data: JSON.parse(e.data) });
    });
  }
  const s = {
    es,
    events,
    connErrors,
    of(type) {
      return events.filter((e) => e.type === type);
    },
    async until(pred, timeoutMs = 10000, what = "condition") {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = pred(events);
        if (v) return v;
        if (Date.now() > deadline) {
          throw new Error(`timed out waiting for ${what}; stream got: ${JSON.stringify(events.map((e) => e.type))} conn errors: ${JSON.stringify(connErrors)}`);
        }
        await sleep(10);
      }
    },
    waitFor(type, pred = () => true, timeoutMs = 10000) {
      return s.until((evs) => evs.find((e) => e.type === type && pred(e.data, e)), timeoutMs, `SSE ${type}`);
    },
    /** Waits until `n` events of `type` matching `pred` arrived. */
    waitCount(type, n, pred = () => true, timeoutMs = 10000) {
      return s.until((evs) => {
        const m = evs.filter((e) => e.type === type && pred(e.data, e));
        return m.length >= n ? m : null;
      }, timeoutMs, `${n}× SSE ${type}`);
    },
    opened() {
      return s.waitFor("reconnected");
    },
    close() {
      es.close();
    },
  };
  return s;
}

/** A `fetch` for `openStream` that sends `Last-Event-ID: id`, as a reconnecting EventSource does. */
const withLastEventId = (id) => (input, init) =>
  fetch(input, { ...init, headers: { ...(init?.headers ?? {}), "Last-Event-ID": String(id) } });

/** AI replies (role "ai") seen on a stream. */
const aiMessages = (s) => s.of("message").filter((e) => e.data.message?.role === "ai");

/** Asserts a 4xx `{error:{code,message}}` response. */
function assertError(r, status, code, what) {
  assert.equal(r.status, status, `${what}: status ${r.status} body ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body?.error, "object", `${what}: error object in ${JSON.stringify(r.body)}`);
  if (code) assert.equal(r.body.error.code, code, `${what}: code`);
  assert.equal(typeof r.body.error.message, "string", `${what}: message`);
  assert.ok(r.body.error.message.length > 0, `${what}: non-empty message`);
}

test("create → stream → send → load: reconnected, user message, started, AI message, ended, in order", async () => {
  const org = uid("org");
  const chatKey = await create(org, "ann", { agentName: "helper" });
  const s = openStream({ orgId: org, userId: "ann", chatKey });
  const hello = await s.opened();
  assert.equal(hello.data.type, "reconnected");
  assert.equal(hello.data.chatKey, chatKey);
  assert.equal(hello.data.orgId, org);
  assert.equal(hello.data.data.connectionType, "sse");

  const msgId = uid("m");
  assert.deepEqual(await send(org, chatKey, "ann", "hello there friend", msgId), { success: true });
  await s.waitFor("agent_execution_ended");
  const order = s.events.map((e) => (e.type === "message" ? `message:${e.data.message.role}` : e.type));
  assert.deepEqual(order, ["reconnected", "message:user", "agent_execution_started", "message:ai", "agent_execution_ended"]);

  const [user, ai] = s.of("message");
  assert.equal(user.data.type, "message");
  assert.equal(user.data.chatKey, chatKey);
  assert.equal(user.data.message.id, msgId, "the client's message id is kept");
  assert.equal(user.data.message.role, "user");
  assert.equal(user.data.message.content, "hello there friend");
  assert.equal(user.data.message.senderId, "ann");
  assert.equal(typeof user.data.message.createdAt, "number", "seed 002 times are epoch ms");
  assert.equal(typeof user.data.timestamp, "number");
  assert.equal(ai.data.message.role, "ai");
  assert.equal(ai.data.message.content, "Echo: hello there friend");
  // SSE ids are the seq of the durable events of the named chat.
  assert.equal(user.id, String(user.data.message.seq));
  assert.equal(ai.id, String(ai.data.message.seq));
  assert.equal(ai.data.message.seq, user.data.message.seq + 1);
  const started = s.of("agent_execution_started")[0];
  const ended = s.of("agent_execution_ended")[0];
  assert.equal(started.id, "", "live events carry no id");
  assert.equal(ended.data.data.messageId, ai.data.message.id);
  assert.equal(started.data.data.requestId, ended.data.data.requestId);

  const chat = await load(org, chatKey, "ann");
  assert.equal(chat.key, chatKey);
  assert.equal(chat.orgId, org);
  assert.equal(chat.status, "active");
  assert.deepEqual(chat.metadata, { agentName: "helper" });
  assert.equal(chat.messages.length, 2);
  assert.deepEqual(chat.messages.map((m) => [m.id, m.role]), [[msgId, "user"], [ai.data.message.id, "ai"]]);
  assert.equal(chat.messages[1].content, ai.data.message.content);
  assert.ok(chat.messages[1].content.length > 0);
  s.close();
});

test("a stream that joins while a turn runs is told it started, once; one that saw it before is not told again", async () => {
  const org = uid("org");
  const chatKey = await create(org, "ann");
  const watcher = openStream({ orgId: org, userId: "ann", chatKey });
  await watcher.opened();
  await send(org, chatKey, "ann", "[fake:drip n=40 delay_ms=25] go");
  const begun = await watcher.waitFor("agent_execution_started");
  const requestId = begun.data.data.requestId;
  const userSeq = Number(watcher.of("message")[0].id);

  // Joins after the turn's `queued` notice went out: without Last-Event-ID, and from just
  // before the message that asked for the turn.
  const late = openStream({ orgId: org, userId: "bob", chatKey });
  const fromBefore = openStream({ orgId: org, userId: "cat", chatKey }, { fetch: withLastEventId(userSeq - 1) });
  // From the message itself: the turn's start came after what this client says it saw, but
  // a seed client that saw the message saw the notice with it, so none is sent again.
  const fromMessage = openStream({ orgId: org, userId: "dan", chatKey }, { fetch: withLastEventId(userSeq) });
  try {
    for (const s of [late, fromBefore, fromMessage]) await s.waitFor("agent_execution_ended", () => true, 20000);
    for (const [name, s, want] of [["no Last-Event-ID", late, 1], ["Last-Event-ID before the message", fromBefore, 1], ["Last-Event-ID at the message", fromMessage, 0]]) {
      const started = s.of("agent_execution_started");
      assert.equal(started.length, want, `${name}: ${JSON.stringify(s.events.map((e) => e.type))}`);
      if (want) {
        assert.equal(started[0].data.data.requestId, requestId, name);
        const order = s.events.map((e) => e.type);
        assert.ok(order.indexOf("agent_execution_started") < order.indexOf("agent_execution_ended"), `${name}: ${order}`);
      }
    }
    assert.equal(watcher.of("agent_execution_started").length, 1, "the watcher got the live one only");
  } finally {
    for (const s of [watcher, late, fromBefore, fromMessage]) s.close();
  }
});

test("Last-Event-ID after a drop replays exactly the missed events", async () => {
  const org = uid("org");
  const chatKey = await create(org, "ann");
  const s1 = openStream({ orgId: org, userId: "ann", chatKey });
  await s1.opened();
  await send(org, chatKey, "ann", "first");
  await s1.waitFor("agent_execution_ended");
  const lastId = aiMessages(s1).at(-1).id;
  assert.match(lastId, /^\d+$/);
  s1.close();

  // While ann is away: two more exchanges, watched by bob to know they finished.
  const bob = openStream({ orgId: org, userId: "bob", chatKey });
  await bob.opened();
  const missedIds = [uid("m"), uid("m")];
  await send(org, chatKey, "ann", "second", missedIds[0]);
  await bob.waitCount("agent_execution_ended", 1);
  await send(org, chatKey, "ann", "third", missedIds[1]);
  await bob.waitCount("agent_execution_ended", 2);

  const expected = (await load(org, chatKey, "ann")).messages.filter((m) => m.seq > Number(lastId));
  assert.equal(expected.length, 4);

  let sentHeader;
  const withHeader = (input, init) => {
    const headers = { ...(init?.headers ?? {}), "Last-Event-ID": lastId };
    sentHeader = headers["Last-Event-ID"];
    return fetch(input, { ...init, headers });
  };
  const s2 = openStream({ orgId: org, userId: "ann", chatKey }, { fetch: withHeader });
  await s2.waitCount("message", 4);
  await sleep(300);
  assert.equal(sentHeader, lastId);
  const got = s2.of("message");
  assert.deepEqual(got.map((e) => e.data.message.id), expected.map((m) => m.id), "exactly the missed messages");
  assert.deepEqual(got.map((e) => Number(e.id)), expected.map((m) => m.seq));
  const ids = got.map((e) => Number(e.id));
  assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), `ids strictly increasing: ${ids}`);
  assert.ok(ids[0] > Number(lastId));
  assert.deepEqual(got.filter((e) => e.data.message.role === "user").map((e) => e.data.message.id), missedIds);

  // Then live, with no duplicate of the replay.
  await send(org, chatKey, "ann", "fourth");
  await s2.waitCount("message", 6);
  await sleep(200);
  const all = s2.of("message").map((e) => Number(e.id));
  assert.equal(new Set(all).size, all.length, `no duplicates: ${all}`);
  assert.equal(all.length, 6);

  // Last-Event-ID at the head: nothing to replay.
  const head = all.at(-1);
  const s3 = openStream({ orgId: org, userId: "ann", chatKey }, { fetch: withLastEventId(head) });
  await s3.opened();
  await sleep(300);
  assert.deepEqual(s3.events.map((e) => e.type), ["reconnected"]);
  s3.close();
  s2.close();
  bob.close();
});

test("EventSource's own reconnect after a network drop sends Last-Event-ID and catches up", async () => {
  const org = uid("org");
  const chatKey = await create(org, "ann");
  const calls = [];
  let dropFirst;
  let releaseReconnect;
  const gate = new Promise((r) => (releaseReconnect = r));
  // A fetch whose first response body we can break, like a dropped connection; the
  // reconnect waits at the gate until the test has sent what it should miss.
  const flaky = async (input, init) => {
    calls.push({ lastEventId: init?.headers?.["Last-Event-ID"] });
    if (calls.length === 1) {
      const res = await fetch(input, init);
      const reader = res.body.getReader();
      let ctrl;
      const body = new ReadableStream({
        start(c) {
          ctrl = c;
        },
        async pull(c) {
          try {
            const { done, value } = await reader.read();
            if (done) c.close();
            else c.enqueue(value);
          } catch {
            /* dropped */
          }
        },
      });
      dropFirst = () => {
        reader.cancel().catch(() => {});
        ctrl.error(new TypeError("network connection lost"));
      };
      return new Response(body, { status: res.status, headers: res.headers });
    }
    await gate;
    return fetch(input, init);
  };
  const s = openStream({ orgId: org, userId: "ann", chatKey }, { fetch: flaky });
  await s.opened();
  await send(org, chatKey, "ann", "before the drop");
  await s.waitFor("agent_execution_ended");
  const lastId = aiMessages(s).at(-1).id;

  dropFirst();
  await s.until(() => s.connErrors.length >= 1, 5000, "a connection error");
  assert.equal(s.es.readyState, EventSource.CONNECTING, "the client is reconnecting, not closed");

  const watcher = openStream({ orgId: org, userId: "bob", chatKey });
  await watcher.opened();
  const missed = uid("m");
  await send(org, chatKey, "ann", "while dropped", missed);
  await watcher.waitCount("agent_execution_ended", 1);
  releaseReconnect();

  await s.waitCount("reconnected", 2, () => true, 10000);
  await s.waitCount("message", 4);
  await sleep(300);
  assert.equal(calls.length, 2);
  assert.equal(calls[1].lastEventId, lastId, "the reconnect carried the last id seen");
  assert.equal(s.es.readyState, EventSource.OPEN);
  const msgs = s.of("message");
  assert.equal(msgs.length, 4, "2 before the drop + 2 missed, no duplicates");
  assert.equal(msgs[2].data.message.id, missed);
  assert.equal(msgs[3].data.message.role, "ai");
  const ids = msgs.map((e) => Number(e.id));
  assert.ok(ids.every((id, i) => i === 0 || id === ids[i - 1] + 1), `contiguous ids: ${ids}`);
  s.close();
  watcher.close();
});

test("`: heartbeat` comments arrive every --sse-heartbeat-secs on the raw stream", async () => {
  const org = uid("org");
  const ac = new AbortController();
  const res = await fetch(`${base()}/stream?orgId=${org}&userId=ann&clientType=customer`, { signal: ac.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/event-stream/);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const stamps = [];
  const started = Date.now();
  const deadline = started + 3000;
  while (stamps.length < 4 && Date.now() < deadline) {
    const { value, done } = await Promise.race([
      reader.read(),
      sleep(deadline - Date.now()).then(() => ({ done: true })),
    ]);
    if (done) break;
    text += decoder.decode(value, { stream: true });
    const n = (text.match(/^: ?heartbeat$/gm) ?? []).length;
    while (stamps.length < n) stamps.push(Date.now() - started);
  }
  ac.abort();
  assert.match(text, /^event: reconnected$/m);
  assert.ok(stamps.length >= 3, `at least 3 heartbeats in 3 s, got ${stamps.length}: ${JSON.stringify(text)}`);
  assert.ok(stamps[0] <= 1000, `first heartbeat within 1 s (${stamps[0]} ms)`);
  assert.match(text, /^: heartbeat\n\n/m, "a heartbeat is a comment line ending an SSE block");
});

test("multi-tab: new_chat_created, the AI reply and load_chat_response reach every stream of the user, and no other user", async () => {
  const org = uid("org");
  const tabA = openStream({ orgId: org, userId: "ann" });
  const tabB = openStream({ orgId: org, userId: "ann" });
  const other = openStream({ orgId: org, userId: "bob" });
  const otherOrg = openStream({ orgId: uid("org"), userId: "ann" });
  await Promise.all([tabA.opened(), tabB.opened(), other.opened(), otherOrg.opened()]);
  assert.equal(tabA.events[0].data.chatKey, "", "a stream without chatKey names no chat");

  const chatKey = await create(org, "ann"); // "tab A" creates
  for (const tab of [tabA, tabB]) {
    const ev = await tab.waitFor("new_chat_created");
    assert.equal(ev.data.data.chatKey, chatKey);
    assert.equal(ev.data.chatKey, chatKey);
    assert.equal(ev.data.userId, "ann");
  }

  const msgId = uid("m");
  await send(org, chatKey, "ann", "from tab A", msgId);
  for (const tab of [tabA, tabB]) {
    const reply = await tab.waitFor("message", (d) => d.message.role === "ai");
    assert.equal(reply.data.chatKey, chatKey);
    assert.equal(reply.data.message.content, "Echo: from tab A");
    assert.equal(reply.id, "", "no ids for chats the stream did not name");
    const own = tab.of("message").filter((e) => e.data.message.id === msgId);
    assert.equal(own.length, 1, "the user's own message arrives once (clients dedupe by id)");
  }

  const chat = await load(org, chatKey, "ann");
  for (const tab of [tabA, tabB]) {
    const ev = await tab.waitFor("load_chat_response");
    assert.equal(ev.data.data.chat.key, chatKey);
    assert.equal(ev.data.data.chat.messages.length, chat.messages.length);
  }
  await sleep(300);
  for (const s of [other, otherOrg]) {
    const types = s.events.map((e) => e.type);
    assert.deepEqual(types, ["reconnected"], "another user or org sees none of it");
  }
  for (const s of [tabA, tabB, other, otherOrg]) s.close();
});

test("typing / stopped_typing via /typing and /event reach another user's stream; /end → chat_ended and status closed", async () => {
  const org = uid("org");
  const chatKey = await create(org, "ann");
  const bob = openStream({ orgId: org, userId: "bob", chatKey });
  await bob.opened();

  assert.deepEqual(await ok("typing", { orgId: org, chatKey, userId: "ann", typing: true }), { success: true });
  let ev = await bob.waitFor("typing");
  assert.equal(ev.data.userId, "ann");
  assert.equal(ev.data.chatKey, chatKey);
  assert.equal(ev.data.data.userId, "ann");
  await ok("typing", { orgId: org, chatKey, userId: "ann", typing: false });
  ev = await bob.waitFor("stopped_typing");
  assert.equal(ev.data.userId, "ann");

  await ok("event", { type: "typing", orgId: org, chatKey, userId: "carol" });
  await bob.waitFor("typing", (d) => d.userId === "carol");
  await ok("event", { type: "stopped_typing", orgId: org, chatKey, userId: "carol" });
  await bob.waitFor("stopped_typing", (d) => d.userId === "carol");
  assert.deepEqual(bob.events.filter((e) => e.type.includes("typing")).map((e) => `${e.type}:${e.data.userId}`),
    ["typing:ann", "stopped_typing:ann", "typing:carol", "stopped_typing:carol"]);

  assert.deepEqual(await ok("end", { orgId: org, chatKey, userId: "ann", data: { reason: "resolved" } }), { success: true });
  ev = await bob.waitFor("chat_ended");
  assert.equal(ev.data.data.reason, "resolved");
  assert.equal(ev.data.data.endedBy, "ann");
  assert.match(ev.id, /^\d+$/, "chat_ended is durable: it carries an id");
  assert.equal((await load(org, chatKey, "ann")).status, "closed");

  // The generic event ends a chat too.
  const chat2 = await create(org, "ann");
  const bob2 = openStream({ orgId: org, userId: "bob", chatKey: chat2 });
  await bob2.opened();
  await ok("event", { type: "chat_ended", orgId: org, chatKey: chat2, userId: "ann" });
  await bob2.waitFor("chat_ended");
  assert.equal((await load(org, chat2, "ann")).status, "closed");
  bob.close();
  bob2.close();
});

test("a failed turn → failed AI message, `error` with data.code, then agent_execution_ended", async () => {
  const org = uid("org");
  const chatKey = await create(org, "ann");
  const s = openStream({ orgId: org, userId: "ann", chatKey });
  await s.opened();
  await send(org, chatKey, "ann", "[fake:always500] please fail");
  await s.waitFor("agent_execution_ended");
  const order = s.events.map((e) => e.type);
  assert.deepEqual(order, ["reconnected", "message", "agent_execution_started", "message", "error", "agent_execution_ended"]);
  const err = s.of("error")[0];
  assert.equal(err.data.type, "error");
  assert.equal(err.data.chatKey, chatKey);
  assert.equal(typeof err.data.data.code, "string");
  assert.equal(err.data.data.code, "upstream_unavailable");
  assert.equal(typeof err.data.data.message, "string");
  assert.equal(err.data.data.retryable, true);
  const failed = s.of("message")[1].data.message;
  assert.equal(failed.role, "ai");
  assert.equal(failed.status, "failed");
  assert.equal(failed.error.code, err.data.data.code);
  assert.equal(s.of("agent_execution_ended")[0].data.data.error, err.data.data.code);
  assert.equal(s.connErrors.length, 0, "the server's `error` event is not a connection error");
  assert.equal(s.es.readyState, EventSource.OPEN);
  // The stream and chat keep working.
  await send(org, chatKey, "ann", "and now succeed");
  await s.waitFor("message", (d) => d.message.role === "ai" && d.message.status === "sent");
  s.close();
});

test("Socket.IO ⇄ HTTP+SSE: a socket message reaches the SSE stream, an HTTP /send reaches the socket", async () => {
  const org = uid("org");
  const chatKey = await create(org, "web");
  const s = openStream({ orgId: org, userId: "web", chatKey });
  await s.opened();
  const sio = await connect(natter.url, { query: { userId: "sio", orgId: org } });
  const join = await sio.emit("chat:join", { chatId: chatKey });
  assert.equal(join.ok, true, JSON.stringify(join));

  const sioMsg = uid("m");
  const ack = await sio.emit("user:message", { chatId: chatKey, messageId: sioMsg, userId: "sio", text: "from socket" });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  const got = await s.waitFor("message", (d) => d.message.id === sioMsg);
  assert.equal(got.data.message.role, "user");
  assert.equal(got.data.message.content, "from socket");
  assert.equal(got.data.message.senderId, "sio");
  assert.equal(Number(got.id), ack.seq);
  const sioReply = await sio.waitFor("ai:message", (m) => m.seq === ack.seq + 1);
  const sseReply = await s.waitFor("message", (d) => d.message.role === "ai");
  assert.equal(sseReply.data.message.id, sioReply.messageId, "one assistant message id on every face");
  assert.equal(sseReply.data.message.content, sioReply.text);

  const webMsg = uid("m");
  await send(org, chatKey, "web", "from http", webMsg);
  const cm = await sio.waitFor("chat:message", (m) => m.messageId === webMsg);
  assert.equal(cm.text, "from http");
  assert.equal(cm.userId, "web");
  assert.equal(cm.role, "user");
  assert.equal(cm.chatId, chatKey);
  await sio.waitFor("ai:message", (m) => m.seq === cm.seq + 1);

  // A socket in another org never sees it.
  const stranger = await connect(natter.url, { query: { userId: "sio", orgId: uid("org") } });
  const j2 = await stranger.emit("chat:join", { chatId: chatKey });
  assert.equal(j2.messages?.length ?? 0, 0, "same chatKey in another org is another (empty) chat");
  sio.close();
  stranger.close();
  s.close();
});

test("bad input on every realtime endpoint → 4xx {error:{code,message}}; nothing half-applied; server keeps serving", async () => {
  const org = uid("org");
  const chatKey = await create(org, "ann");
  const who = { orgId: org, userId: "ann" };
  const cases = [
    // malformed JSON / not an object
    ["create", "{\"orgId\":", 400, "invalid_payload", true],
    ["send", "{not json", 400, "invalid_payload", true],
    ["load", "[1,2]", 400, "invalid_payload", true],
    ["typing", "\"typing\"", 400, "invalid_payload", true],
    ["end", "{\"orgId\": }", 400, "invalid_payload", true],
    ["event", "nul", 400, "invalid_payload", true],
    // wrong types
    ["create", { orgId: {}, userId: "ann" }, 400, "invalid_field"],
    ["create", { ...who, userId: true }, 400, "invalid_field"],
    ["create", { ...who, metadata: "x" }, 400, "invalid_field"],
    ["send", { ...who, chatKey: {}, message: { content: "x" } }, 400, "invalid_field"],
    ["send", { ...who, chatKey, message: "x" }, 400, "invalid_payload"],
    ["send", { ...who, chatKey, message: { content: 5 } }, 400, "invalid_field"],
    ["send", { ...who, chatKey, message: { id: { a: 1 }, content: "x" } }, 400, "invalid_field"],
    ["load", { ...who, chatKey: [chatKey] }, 400, "invalid_field"],
    ["typing", { ...who, chatKey, typing: "yes" }, 400, "invalid_field"],
    ["end", { ...who, chatKey, data: "x" }, 400, "invalid_field"],
    ["end", { ...who, chatKey, data: { reason: 5 } }, 400, "invalid_field"],
    ["event", { ...who, chatKey, type: 5 }, 400, "invalid_field"],
    ["event", { ...who, chatKey, type: "bogus" }, 400, "invalid_field"],
    // missing fields
    ["send", { ...who, message: { content: "x" } }, 400, "missing_field"],
    ["send", { ...who, chatKey }, 400, "missing_field"],
    ["send", { ...who, chatKey, message: {} }, 400, "missing_field"],
    ["send", { ...who, chatKey, message: { id: "m", content: "" } }, 400, "missing_field"],
    ["load", { ...who }, 400, "missing_field"],
    ["typing", { ...who, typing: true }, 400, "missing_field"],
    ["end", { ...who, chatKey: "   " }, 400, "missing_field"],
    ["event", { ...who, chatKey }, 400, "missing_field"],
    // unknown chat (and another org's chat)
    ["send", { ...who, chatKey: "no-such-chat", message: { content: "x" } }, 404, "not_found"],
    ["load", { ...who, chatKey: "no-such-chat" }, 404, "not_found"],
    ["load", { orgId: uid("org"), userId: "ann", chatKey }, 404, "not_found"],
    ["typing", { ...who, chatKey: "no-such-chat", typing: true }, 404, "not_found"],
    ["end", { ...who, chatKey: "no-such-chat" }, 404, "not_found"],
    ["event", { ...who, chatKey: "no-such-chat", type: "typing" }, 404, "not_found"],
    // over the limits
    ["send", { ...who, chatKey: "k".repeat(300), message: { content: "x" } }, 413, "too_large"],
    ["send", { ...who, chatKey, message: { content: "x".repeat(MAX_PAYLOAD + 1000) } }, 413, "too_large"],
    ["create", { ...who, metadata: { blob: "y".repeat(MAX_PAYLOAD * 2) } }, 413, "too_large"],
  ];
  for (const [path, body, status, code, raw] of cases) {
    const what = `${path} ${raw ? body : JSON.stringify(body).slice(0, 120)}`;
    const r = await post(path, body, { raw: !!raw });
    assertError(r, status, code, what);
    assert.match(r.headers.get("content-type") ?? "", /application\/json/, `${what}: JSON content type`);
  }

  // GET /stream: unknown chat → 404, bad Last-Event-ID → 400 (JSON, before any streaming).
  const streamUrl = (q) => `${base()}/stream?${new URLSearchParams({ clientType: "customer", ...q })}`;
  let res = await fetch(streamUrl({ ...who, chatKey: "no-such-chat" }));
  assertError({ status: res.status, body: await res.json() }, 404, "not_found", "stream unknown chat");
  for (const bad of ["abc", "-1", "1.5"]) {
    res = await fetch(streamUrl({ ...who, chatKey }), { headers: { "Last-Event-ID": bad } });
    assertError({ status: res.status, body: await res.json() }, 400, "invalid_field", `Last-Event-ID ${bad}`);
  }
  res = await fetch(streamUrl({ orgId: org, userId: "u".repeat(300) }));
  assertError({ status: res.status, body: await res.json() }, 413, "too_large", "stream userId over the id limit");
  // The EventSource client sees the 404 as a failed (closed, not retried) connection.
  const es404 = openStream({ ...who, chatKey: "no-such-chat" });
  await es404.until(() => es404.connErrors.length > 0, 5000, "a connection error");
  assert.equal(es404.connErrors[0].code, 404);
  assert.equal(es404.es.readyState, EventSource.CLOSED);
  es404.close();

  // Nothing was half-applied: the chat has no messages and is still active.
  const chat = await load(org, chatKey, "ann");
  assert.equal(chat.messages.length, 0);
  assert.equal(chat.status, "active");

  // And the server still serves a normal create/send/stream.
  const fresh = await create(org, "ann");
  const s = openStream({ ...who, chatKey: fresh });
  await s.opened();
  await send(org, fresh, "ann", "still alive?");
  const reply = await s.waitFor("message", (d) => d.message.role === "ai");
  assert.equal(reply.data.message.content, "Echo: still alive?");
  s.close();
  assert.equal(natter.exited(), null);
});
