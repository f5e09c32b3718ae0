// History REST under /api/v1/chats (CONTRACT §3, §6.14): lists with paging, ChatSummary,
// titles, rename/pin, per-user lists, messages paged by seq, delete, org isolation, bad input.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { EventSource } from "eventsource";
import { connect, sleep, startStack, uid } from "../lib/harness.mjs";

let stack, natter;
before(async () => ({ natter } = stack = await startStack()));
after(() => stack?.stop());

const rt = () => `${natter.url}/api/v1/chat`;
const hist = () => `${natter.url}/api/v1/chats`;

/** Any request; returns {status, body} with the body parsed as JSON when it is JSON. */
async function req(method, url, body, { raw = false } = {}) {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { unparsable: text };
  }
  return { status: res.status, body: json, type: res.headers.get("content-type") ?? "" };
}

async function ok(method, url, body) {
  const r = await req(method, url, body);
  assert.equal(r.status, 200, `${method} ${url} → ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

const q = (params) => `?${new URLSearchParams(params)}`;

async function create(orgId, userId, metadata) {
  const { chatKey } = await ok("POST", `${rt()}/create`, { orgId, userId, ...(metadata ? { metadata } : {}) });
  return chatKey;
}

/** Sends a message and waits until its AI reply is stored. Returns the message id. */
async function exchange(orgId, chatKey, userId, content) {
  const id = uid("m");
  await ok("POST", `${rt()}/send`, { orgId, chatKey, userId, message: { id, content } });
  const deadline = Date.now() + 10000;
  for (;;) {
    const { messages } = await ok("GET", `${hist()}/${chatKey}/messages${q({ orgId, limit: 500 })}`);
    const i = messages.findIndex((m) => m.id === id);
    if (i >= 0 && messages.slice(i + 1).some((m) => m.role === "ai")) return id;
    if (Date.now() > deadline) throw new Error(`no reply for ${id}: ${JSON.stringify(messages)}`);
    await sleep(30);
  }
}

function assertError(r, status, code, what) {
  assert.equal(r.status, status, `${what}: status ${r.status} body ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body?.error, "object", `${what}: {error} in ${JSON.stringify(r.body)}`);
  if (code) assert.equal(r.body.error.code, code, `${what}: code`);
  assert.equal(typeof r.body.error.message, "string", `${what}: message`);
  assert.ok(r.body.error.message.length > 0);
  assert.match(r.type, /application\/json/, `${what}: JSON content type`);
}

const SUMMARY_KEYS = ["chatKey", "title", "userId", "status", "lastUpdated", "pinned", "metadata", "seq"];

function assertSummary(s) {
  for (const k of SUMMARY_KEYS) assert.ok(k in s, `ChatSummary has ${k}: ${JSON.stringify(s)}`);
  assert.equal(typeof s.chatKey, "string");
  assert.equal(typeof s.title, "string");
  assert.equal(typeof s.status, "string");
  assert.equal(typeof s.lastUpdated, "number");
  assert.equal(typeof s.pinned, "boolean");
  assert.equal(typeof s.seq, "number");
}

test("list: total, hasMore and paging by limit/offset (POST body and GET query), latest activity first", async () => {
  const org = uid("org");
  const keys = [];
  for (let i = 0; i < 5; i++) {
    keys.push(await create(org, "ann"));
    await sleep(5);
  }
  const newestFirst = [...keys].reverse();

  const pages = [];
  for (const offset of [0, 2, 4]) {
    const page = await ok("POST", hist(), { orgId: org, limit: 2, offset });
    assert.equal(page.total, 5);
    assert.equal(page.chats.length, offset === 4 ? 1 : 2);
    assert.equal(page.hasMore, offset !== 4, `hasMore at offset ${offset}`);
    page.chats.forEach(assertSummary);
    pages.push(...page.chats.map((c) => c.chatKey));
    // The GET form gives the same page.
    const g = await ok("GET", `${hist()}${q({ orgId: org, limit: 2, offset })}`);
    assert.deepEqual(g.chats.map((c) => c.chatKey), page.chats.map((c) => c.chatKey));
    assert.equal(g.total, 5);
    assert.equal(g.hasMore, page.hasMore);
  }
  assert.deepEqual(pages, newestFirst, "every chat once, newest activity first");

  const past = await ok("POST", hist(), { orgId: org, limit: 2, offset: 10 });
  assert.deepEqual(past, { chats: [], total: 5, hasMore: false });
  const all = await ok("POST", hist(), { orgId: org });
  assert.equal(all.chats.length, 5, "default page holds all five");
  assert.equal(all.hasMore, false);
  const none = await ok("POST", hist(), { orgId: org, limit: 0 });
  assert.equal(none.chats.length, 0);
  assert.equal(none.total, 5);

  // Activity moves a chat to the front.
  await exchange(org, keys[0], "ann", "wake up the oldest");
  const after = await ok("POST", hist(), { orgId: org, limit: 5 });
  assert.equal(after.chats[0].chatKey, keys[0]);
  assert.deepEqual(after.chats.slice(1).map((c) => c.chatKey), newestFirst.slice(0, 4));
});

test("title comes from the first user message; GET returns a ChatSummary", async () => {
  const org = uid("org");
  const key = await create(org, "ann", { agentName: "helper" });
  let s = await ok("GET", `${hist()}/${key}${q({ orgId: org })}`);
  assertSummary(s);
  assert.equal(s.chatKey, key);
  assert.equal(s.title, "");
  assert.equal(s.userId, "ann");
  assert.equal(s.status, "active");
  assert.equal(s.pinned, false);
  assert.deepEqual(s.metadata, { agentName: "helper" });
  const seq0 = s.seq;

  await exchange(org, key, "ann", "  Where is   my parcel?\nIt was due Monday.");
  await exchange(org, key, "ann", "A later message does not retitle");
  s = await ok("GET", `${hist()}/${key}${q({ orgId: org })}`);
  assert.equal(s.title, "Where is my parcel?");
  assert.equal(s.seq, seq0 + 4, "two user messages and two replies");
  const listed = (await ok("POST", hist(), { orgId: org })).chats.find((c) => c.chatKey === key);
  assert.deepEqual(listed, s, "the list entry equals GET /{chatKey}");
});

test("PATCH title and pinned: pinned chats come first; a set title is not overwritten", async () => {
  const org = uid("org");
  const keys = [];
  for (let i = 0; i < 3; i++) {
    keys.push(await create(org, "ann"));
    await sleep(5);
  }
  const url = (k) => `${hist()}/${k}${q({ orgId: org })}`;
  let s = await ok("PATCH", url(keys[1]), { title: "Renamed" });
  assertSummary(s);
  assert.equal(s.title, "Renamed");
  assert.equal(s.pinned, false);
  assert.equal((await ok("GET", url(keys[1]))).title, "Renamed");
  await exchange(org, keys[1], "ann", "first message after a rename");
  assert.equal((await ok("GET", url(keys[1]))).title, "Renamed", "a set title wins over the first message");

  // Pin the oldest, least active chat: it comes first.
  s = await ok("PATCH", url(keys[0]), { pinned: true });
  assert.equal(s.pinned, true);
  assert.equal(s.title, "", "pinning leaves the title alone");
  let list = await ok("POST", hist(), { orgId: org });
  assert.equal(list.chats[0].chatKey, keys[0]);
  assert.equal(list.chats[0].pinned, true);
  assert.ok(list.chats.slice(1).every((c) => !c.pinned));
  // Activity elsewhere does not move an unpinned chat above a pinned one.
  await exchange(org, keys[2], "ann", "busy");
  list = await ok("GET", `${hist()}${q({ orgId: org })}`);
  assert.deepEqual(list.chats.map((c) => c.chatKey), [keys[0], keys[2], keys[1]]);

  // Both at once, then unpin.
  s = await ok("PATCH", `${hist()}/${keys[0]}`, { orgId: org, title: "Pinned and named", pinned: false });
  assert.equal(s.title, "Pinned and named");
  assert.equal(s.pinned, false);
  list = await ok("POST", hist(), { orgId: org });
  assert.ok(list.chats.every((c) => !c.pinned));
  assert.equal(list.chats[0].chatKey, keys[0], "the PATCH is the latest activity");
});

test("GET /user/{userId}: chats the user created or posted in, with paging", async () => {
  const org = uid("org");
  const own1 = await create(org, "ann");
  const own2 = await create(org, "ann");
  const bobs = await create(org, "bob");
  const untouched = await create(org, "bob");
  await exchange(org, bobs, "ann", "ann posts in bob's chat");

  const ann = await ok("GET", `${hist()}/user/ann${q({ orgId: org })}`);
  assert.equal(ann.total, 3);
  assert.equal(ann.hasMore, false);
  assert.deepEqual(new Set(ann.chats.map((c) => c.chatKey)), new Set([own1, own2, bobs]));
  assert.equal(ann.chats[0].chatKey, bobs, "latest activity first");
  ann.chats.forEach(assertSummary);

  const bob = await ok("GET", `${hist()}/user/bob${q({ orgId: org })}`);
  assert.deepEqual(new Set(bob.chats.map((c) => c.chatKey)), new Set([bobs, untouched]));

  const p1 = await ok("GET", `${hist()}/user/ann${q({ orgId: org, limit: 2 })}`);
  assert.equal(p1.chats.length, 2);
  assert.equal(p1.total, 3);
  assert.equal(p1.hasMore, true);
  const p2 = await ok("GET", `${hist()}/user/ann${q({ orgId: org, limit: 2, offset: 2 })}`);
  assert.equal(p2.chats.length, 1);
  assert.equal(p2.hasMore, false);
  assert.deepEqual([...p1.chats, ...p2.chats].map((c) => c.chatKey), ann.chats.map((c) => c.chatKey));

  const nobody = await ok("GET", `${hist()}/user/nobody${q({ orgId: org })}`);
  assert.deepEqual(nobody, { chats: [], total: 0, hasMore: false });
  const elsewhere = await ok("GET", `${hist()}/user/ann${q({ orgId: uid("org") })}`);
  assert.equal(elsewhere.total, 0, "another org's lists never include these chats");
});

test("messages paged by seq: after / limit / nextAfter / hasMore", async () => {
  const org = uid("org");
  const key = await create(org, "ann");
  const sent = [];
  for (const text of ["one", "two", "three"]) sent.push(await exchange(org, key, "ann", text));
  await ok("PATCH", `${hist()}/${key}${q({ orgId: org })}`, { title: "not a message" });
  await exchange(org, key, "ann", "four");

  const url = (p) => `${hist()}/${key}/messages${q({ orgId: org, ...p })}`;
  const all = await ok("GET", url({}));
  assert.equal(all.messages.length, 8);
  assert.equal(all.hasMore, false);
  assert.deepEqual(all.messages.map((m) => m.role), ["user", "ai", "user", "ai", "user", "ai", "user", "ai"]);
  assert.deepEqual(all.messages.filter((m) => m.role === "user").map((m) => m.content), ["one", "two", "three", "four"]);
  assert.deepEqual(all.messages.filter((m) => m.role === "user").slice(0, 3).map((m) => m.id), sent);
  const seqs = all.messages.map((m) => m.seq);
  assert.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), `seqs increase: ${seqs}`);
  assert.equal(all.nextAfter, seqs.at(-1));

  // Walk it three at a time.
  const walked = [];
  let after = 0;
  const flags = [];
  for (;;) {
    const page = await ok("GET", url({ after, limit: 3 }));
    assert.ok(page.messages.length <= 3);
    assert.ok(page.messages.every((m) => m.seq > after), "only messages after `after`");
    walked.push(...page.messages);
    flags.push(page.hasMore);
    assert.equal(page.nextAfter, page.messages.at(-1)?.seq ?? after);
    after = page.nextAfter;
    if (!page.hasMore) break;
  }
  assert.deepEqual(flags, [true, true, false]);
  assert.deepEqual(walked.map((m) => m.seq), seqs, "pages join up with no gap or repeat");

  const mid = await ok("GET", url({ after: seqs[3], limit: 2 }));
  assert.deepEqual(mid.messages.map((m) => m.seq), [seqs[4], seqs[5]]);
  assert.equal(mid.hasMore, true);
  assert.equal(mid.nextAfter, seqs[5]);
  const end = await ok("GET", url({ after: seqs.at(-1) }));
  assert.deepEqual(end, { messages: [], hasMore: false, nextAfter: seqs.at(-1) });
});

test("DELETE: gone from GET, lists and messages; SSE stream gets chat_ended (deleted); Socket.IO member gets error not_found", async () => {
  const org = uid("org");
  const keep = await create(org, "ann");
  const key = await create(org, "ann");
  await exchange(org, key, "ann", "doomed");

  const es = new EventSource(`${rt()}/stream${q({ orgId: org, userId: "bob", clientType: "customer", chatKey: key })}`);
  const sse = [];
  for (const t of ["reconnected", "chat_ended"]) es.addEventListener(t, (e) => sse.push({ type: t, data: JSON.parse(e.data) }));
  const sio = await connect(natter.url, { query: { userId: "carl", orgId: org } });
  const join = await sio.emit("chat:join", { chatId: key });
  assert.equal(join.ok, true, JSON.stringify(join));
  const until = async (pred, what) => {
    const deadline = Date.now() + 10000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(sse)}`);
      await sleep(10);
    }
  };
  await until(() => sse.some((e) => e.type === "reconnected"), "SSE reconnected");

  assert.deepEqual(await ok("DELETE", `${hist()}/${key}${q({ orgId: org })}`), { success: true });

  await until(() => sse.some((e) => e.type === "chat_ended"), "SSE chat_ended");
  const ended = sse.find((e) => e.type === "chat_ended");
  assert.equal(ended.data.data.reason, "deleted");
  assert.equal(ended.data.chatKey, key);
  const err = await sio.waitFor("error", (e) => e.code === "not_found");
  assert.match(err.message, new RegExp(key));

  assertError(await req("GET", `${hist()}/${key}${q({ orgId: org })}`), 404, "not_found", "GET deleted");
  assertError(await req("GET", `${hist()}/${key}/messages${q({ orgId: org })}`), 404, "not_found", "messages of deleted");
  assertError(await req("DELETE", `${hist()}/${key}${q({ orgId: org })}`), 404, "not_found", "DELETE twice");
  assertError(await req("PATCH", `${hist()}/${key}${q({ orgId: org })}`, { title: "x" }), 404, "not_found", "PATCH deleted");
  assertError(await req("POST", `${rt()}/load`, { orgId: org, userId: "ann", chatKey: key }), 404, "not_found", "/load deleted");
  assertError(await req("POST", `${rt()}/send`, { orgId: org, userId: "ann", chatKey: key, message: { content: "hi" } }), 404, "not_found", "/send deleted");
  const list = await ok("POST", hist(), { orgId: org });
  assert.deepEqual(list.chats.map((c) => c.chatKey), [keep]);
  assert.equal(list.total, 1);
  const byUser = await ok("GET", `${hist()}/user/ann${q({ orgId: org })}`);
  assert.deepEqual(byUser.chats.map((c) => c.chatKey), [keep]);
  // The socket is no longer in the chat.
  const late = await sio.emit("user:message", { chatId: key, messageId: uid("m"), text: "anyone?" });
  assert.equal(late.ok, false);
  es.close();
  sio.close();
});

test("org isolation: the same chatKey under another orgId is 404 everywhere", async () => {
  const org = uid("org");
  const other = uid("org");
  const key = await create(org, "ann");
  await exchange(org, key, "ann", "private");
  const checks = [
    ["GET", `${hist()}/${key}${q({ orgId: other })}`],
    ["GET", `${hist()}/${key}/messages${q({ orgId: other })}`],
    ["PATCH", `${hist()}/${key}${q({ orgId: other })}`, { title: "hijack" }],
    ["PATCH", `${hist()}/${key}`, { orgId: other, pinned: true }],
    ["DELETE", `${hist()}/${key}${q({ orgId: other })}`],
    ["GET", `${hist()}/${key}`], // no orgId: the default org
  ];
  for (const [m, u, b] of checks) assertError(await req(m, u, b), 404, "not_found", `${m} ${u}`);
  const otherList = await ok("POST", hist(), { orgId: other });
  assert.equal(otherList.total, 0);
  // Untouched in its own org.
  const s = await ok("GET", `${hist()}/${key}${q({ orgId: org })}`);
  assert.equal(s.title, "private");
  assert.equal(s.pinned, false);
  assert.equal((await ok("GET", `${hist()}/${key}/messages${q({ orgId: org })}`)).messages.length, 2);
});

test("bad input on every history endpoint → 4xx JSON errors, never 500", async () => {
  const org = uid("org");
  const key = await create(org, "ann");
  const o = q({ orgId: org });
  const cases = [
    // list (POST body)
    ["POST", hist(), "{\"limit\":", 400, "invalid_payload", true],
    ["POST", hist(), "[]", 400, "invalid_payload", true],
    ["POST", hist(), { orgId: org, limit: -1 }, 400, "invalid_field"],
    ["POST", hist(), { orgId: org, limit: "2" }, 400, "invalid_field"],
    ["POST", hist(), { orgId: org, limit: 1.5 }, 400, "invalid_field"],
    ["POST", hist(), { orgId: org, offset: -3 }, 400, "invalid_field"],
    ["POST", hist(), { orgId: org, offset: true }, 400, "invalid_field"],
    ["POST", hist(), { orgId: [] }, 400, "invalid_field"],
    // list (GET query)
    ["GET", `${hist()}${q({ orgId: org, limit: -1 })}`, undefined, 400, "invalid_field"],
    ["GET", `${hist()}${q({ orgId: org, limit: "abc" })}`, undefined, 400, "invalid_field"],
    ["GET", `${hist()}${q({ orgId: org, offset: "1e3" })}`, undefined, 400, "invalid_field"],
    // get
    ["GET", `${hist()}/no-such-chat${o}`, undefined, 404, "not_found"],
    ["GET", `${hist()}/%20${o}`, undefined, 400, "missing_field"],
    ["GET", `${hist()}/${"k".repeat(300)}${o}`, undefined, 413, "too_large"],
    ["GET", `${hist()}/${key}${q({ orgId: "o".repeat(300) })}`, undefined, 413, "too_large"],
    // patch
    ["PATCH", `${hist()}/${key}${o}`, "{\"title\":\"x", 400, "invalid_payload", true],
    ["PATCH", `${hist()}/${key}${o}`, "[\"title\"]", 400, "invalid_payload", true],
    ["PATCH", `${hist()}/${key}${o}`, {}, 400, "missing_field"],
    ["PATCH", `${hist()}/${key}${o}`, { title: 5 }, 400, "invalid_field"],
    ["PATCH", `${hist()}/${key}${o}`, { title: ["a"] }, 400, "invalid_field"],
    ["PATCH", `${hist()}/${key}${o}`, { pinned: "yes" }, 400, "invalid_field"],
    ["PATCH", `${hist()}/${key}${o}`, { pinned: 1 }, 400, "invalid_field"],
    ["PATCH", `${hist()}/${key}${o}`, { title: "t".repeat(201) }, 413, "too_large"],
    ["PATCH", `${hist()}/no-such-chat${o}`, { title: "x" }, 404, "not_found"],
    // delete
    ["DELETE", `${hist()}/no-such-chat${o}`, undefined, 404, "not_found"],
    // by user
    ["GET", `${hist()}/user/ann${q({ orgId: org, limit: -1 })}`, undefined, 400, "invalid_field"],
    ["GET", `${hist()}/user/ann${q({ orgId: org, offset: "x" })}`, undefined, 400, "invalid_field"],
    ["GET", `${hist()}/user/${"u".repeat(300)}${o}`, undefined, 413, "too_large"],
    // messages
    ["GET", `${hist()}/no-such-chat/messages${o}`, undefined, 404, "not_found"],
    ["GET", `${hist()}/${key}/messages${q({ orgId: org, after: -1 })}`, undefined, 400, "invalid_field"],
    ["GET", `${hist()}/${key}/messages${q({ orgId: org, after: "1.5" })}`, undefined, 400, "invalid_field"],
    ["GET", `${hist()}/${key}/messages${q({ orgId: org, limit: -5 })}`, undefined, 400, "invalid_field"],
    ["GET", `${hist()}/${key}/messages${q({ orgId: org, limit: "ten" })}`, undefined, 400, "invalid_field"],
  ];
  for (const [m, u, b, status, code, raw] of cases) {
    const what = `${m} ${u.slice(natter.url.length, natter.url.length + 100)} ${raw ? b : JSON.stringify(b ?? null).slice(0, 60)}`;
    assertError(await req(m, u, b, { raw: !!raw }), status, code, what);
  }
  // Nothing was half-applied.
  const s = await ok("GET", `${hist()}/${key}${o}`);
  assert.equal(s.title, "");
  assert.equal(s.pinned, false);
  assert.equal(natter.exited(), null);
  assert.equal((await ok("POST", hist(), { orgId: org })).total, 1);
});

test("huge offset / after values are answered (200, empty page), never a dropped connection or a wrapped-around page", async () => {
  const org = uid("org");
  const key = await create(org, "ann");
  await exchange(org, key, "ann", "hello");
  const U64_MAX = "18446744073709551615";
  const I64_OVER = "9223372036854775808"; // 2^63: does not fit SQLite's signed integer
  const outcomes = [];
  const check = async (what, fn) => {
    try {
      await fn();
      outcomes.push(`ok   ${what}`);
    } catch (e) {
      outcomes.push(`FAIL ${what}: ${e.message.split("\n")[0]}`);
    }
  };
  for (const offset of [U64_MAX, I64_OVER]) {
    await check(`GET list offset=${offset}`, async () => {
      const r = await req("GET", `${hist()}${q({ orgId: org, offset })}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, { chats: [], total: 1, hasMore: false });
    });
    await check(`POST list offset=${offset}`, async () => {
      const r = await req("POST", hist(), `{"orgId":"${org}","offset":${offset}}`, { raw: true });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, { chats: [], total: 1, hasMore: false });
    });
    await check(`GET /user offset=${offset}`, async () => {
      const r = await req("GET", `${hist()}/user/ann${q({ orgId: org, offset })}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, { chats: [], total: 1, hasMore: false });
    });
    await check(`GET messages after=${offset}`, async () => {
      const r = await req("GET", `${hist()}/${key}/messages${q({ orgId: org, after: offset })}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body.messages, [], "no message has a seq above `after`");
      assert.equal(r.body.hasMore, false);
    });
  }
  // The server survived either way.
  assert.equal((await ok("GET", `${hist()}/${key}${q({ orgId: org })}`)).chatKey, key);
  assert.deepEqual(outcomes.filter((x) => x.startsWith("FAIL")), [], outcomes.join("\n"));
});
