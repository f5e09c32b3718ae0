// Reactions (CONTRACT §7.3), chat end and CSAT (§7.4), and the Socket.IO events for log
// events that had none (rename, pin, end, delete, regenerate), with stock clients:
// socket.io-client on Socket.IO, `eventsource` and a raw SSE reader (for Last-Event-ID) on
// seed 002's HTTP + SSE face, fetch on history REST and /metrics.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { EventSource } from "eventsource";
import { connect, sleep, startStack, uid } from "../lib/harness.mjs";
import { openSse } from "../lib/sse-reader.mjs";

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

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

const SSE_TYPES = ["reconnected", "message", "reaction_update", "chat_ended", "show_csat_survey", "csat_submitted", "error"];

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
  return {
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
}

describe("reactions, chat end and CSAT", () => {
  let stack, natter;
  before(async () => {
    ({ natter } = stack = await startStack({ args: ["--retry-max", "0"] }));
  });
  after(() => stack?.stop());

  const rt = () => `${natter.url}/api/v1/chat`;
  const hist = () => `${natter.url}/api/v1/chats`;
  const R = uid("react");
  const ctx = {};

  test("Socket.IO: add, idempotent add, remove; every member gets reaction:update with the whole list", async () => {
    const ann = await connect(natter.url, { query: { userId: "ann" } });
    const bob = await connect(natter.url, { query: { userId: "bob" } });
    ctx.ann = ann;
    ctx.bob = bob;
    const j = await ann.emit("chat:join", { chatId: R });
    assert.equal(j.ok, true);
    ctx.joinSeq = j.seq;
    ctx.epoch = j.epoch;
    assert.equal((await bob.emit("chat:join", { chatId: R })).ok, true);
    const requestId = uid("req");
    const mid = uid("m");
    const sent = await ann.emit("user:message", { chatId: R, messageId: mid, requestId, text: "[fake:tokens n=2] hello" });
    assert.equal(sent.ok, true);
    const reply = await ann.waitFor("ai:message", (m) => m.requestId === requestId, 15000);
    ctx.mid = mid;
    ctx.aiId = reply.messageId;

    const a1 = await bob.emit("reaction:add", { chatId: R, messageId: mid, emoji: "👍" });
    assert.equal(a1.ok, true, JSON.stringify(a1));
    assert.equal(a1.changed, true);
    assert.equal(a1.seq, reply.seq + 1);
    assert.equal(a1.messageId, mid);
    assert.equal(a1.reactions.length, 1);
    assert.equal(a1.reactions[0].emoji, "👍");
    assert.equal(a1.reactions[0].userId, "bob");
    assert.match(a1.reactions[0].createdAt, ISO_RE);
    for (const c of [ann, bob]) {
      const u = await c.waitFor("reaction:update", (e) => e.seq === a1.seq);
      assert.deepEqual({ chatId: u.chatId, messageId: u.messageId, reactions: u.reactions }, { chatId: R, messageId: mid, reactions: a1.reactions });
    }

    // The same (user, message, emoji) again: no error, no change, no event.
    const again = await bob.emit("reaction:add", { chatId: R, messageId: mid, emoji: "👍" });
    assert.equal(again.ok, true);
    assert.equal(again.changed, false);
    assert.equal(again.seq, undefined, "no event was logged");
    assert.deepEqual(again.reactions, a1.reactions);

    // A family emoji (several scalar values joined) counts as one emoji; ann reacts on the reply.
    const fam = "👨‍👩‍👧";
    const a2 = await ann.emit("reaction:add", { chatId: R, messageId: reply.messageId, emoji: fam });
    assert.equal(a2.ok, true, JSON.stringify(a2));
    assert.equal(a2.seq, a1.seq + 1);
    const a3 = await ann.emit("reaction:add", { chatId: R, messageId: mid, emoji: "🎉" });
    assert.deepEqual(a3.reactions.map((r) => [r.userId, r.emoji]), [["bob", "👍"], ["ann", "🎉"]], "in the order added");

    const rm = await bob.emit("reaction:remove", { chatId: R, messageId: mid, emoji: "👍" });
    assert.equal(rm.ok, true);
    assert.equal(rm.changed, true);
    assert.deepEqual(rm.reactions.map((r) => [r.userId, r.emoji]), [["ann", "🎉"]]);
    const u = await ann.waitFor("reaction:update", (e) => e.seq === rm.seq);
    assert.deepEqual(u.reactions, rm.reactions);
    const rmAgain = await bob.emit("reaction:remove", { chatId: R, messageId: mid, emoji: "👍" });
    assert.deepEqual([rmAgain.ok, rmAgain.changed, rmAgain.seq], [true, false, undefined]);
    await sleep(200);
    assert.equal(bob.of("reaction:update").length, 4, "one update per change, none for the no-ops");
    ctx.lastReactionSeq = rm.seq;
  });

  test("Socket.IO: bad reactions are refused with a code, unknown messages are not_found", async () => {
    const { bob, mid } = ctx;
    const cases = [
      [{ chatId: R, messageId: mid }, "missing_field"],
      [{ chatId: R, messageId: mid, emoji: "" }, "missing_field"],
      [{ chatId: R, emoji: "👍" }, "missing_field"],
      [{ chatId: R, messageId: mid, emoji: "👍 👍" }, "invalid_field"],
      [{ chatId: R, messageId: mid, emoji: "abcdefghi" }, "invalid_field"],
      [{ chatId: R, messageId: mid, emoji: "\u0007" }, "invalid_field"],
      [{ chatId: R, messageId: mid, emoji: "🏳️‍🌈🏳️‍🌈🏳️‍🌈" }, "invalid_field"],
      [{ chatId: R, messageId: mid, emoji: 5 }, "invalid_field"],
      [{ chatId: R, messageId: "no-such-message", emoji: "👍" }, "not_found"],
    ];
    for (const [payload, code] of cases) {
      const ack = await bob.emit("reaction:add", payload);
      assert.equal(ack.ok, false, JSON.stringify(payload));
      assert.equal(ack.error.code, code, `${JSON.stringify(payload)}: ${ack.error.message}`);
      assert.ok(ack.error.message.length > 0);
    }
    const ack = await bob.emit("reaction:remove", { chatId: R, messageId: "no-such-message", emoji: "👍" });
    assert.equal(ack.error.code, "not_found");

    // An observer receives everything and may not react, end the chat or rate it (§7.1).
    const obs = await connect(natter.url, { query: { userId: "olga", clientType: "observer" } });
    assert.equal((await obs.emit("chat:join", { chatId: R })).ok, true);
    for (const [event, payload] of [
      ["reaction:add", { chatId: R, messageId: mid, emoji: "👀" }],
      ["reaction:remove", { chatId: R, messageId: mid, emoji: "🎉" }],
      ["chat:end", { chatId: R }],
      ["csat:submit", { chatId: R, rating: 5 }],
    ]) {
      const a = await obs.emit(event, payload);
      assert.equal(a.ok, false, event);
      assert.equal(a.error.code, "forbidden", `${event}: ${a.error.message}`);
    }
    obs.close();
  });

  test("reactions are in the join ack's messages, /load and history pages", async () => {
    const carl = await connect(natter.url, { query: { userId: "carl" } });
    const j = await carl.emit("chat:join", { chatId: R });
    const byId = Object.fromEntries(j.messages.map((m) => [m.messageId, m]));
    assert.deepEqual(byId[ctx.mid].reactions.map((r) => [r.userId, r.emoji]), [["ann", "🎉"]]);
    assert.match(byId[ctx.mid].reactions[0].createdAt, ISO_RE);
    assert.deepEqual(byId[ctx.aiId].reactions.map((r) => r.emoji), ["👨‍👩‍👧"]);
    carl.close();

    const load = await json(`${rt()}/load`, { method: "POST", body: JSON.stringify({ userId: "ann", chatKey: R }) });
    assert.equal(load.status, 200, JSON.stringify(load.body));
    const m = load.body.chat.messages.find((x) => x.id === ctx.mid);
    assert.deepEqual(m.reactions.map((r) => [r.userId, r.emoji]), [["ann", "🎉"]]);
    assert.equal(typeof m.reactions[0].createdAt, "number", "epoch ms on seed 002");

    const page = await json(`${hist()}/${R}/messages?after=0`);
    assert.equal(page.status, 200);
    const p = page.body.messages.find((x) => x.id === ctx.aiId);
    assert.deepEqual(p.reactions.map((r) => [r.userId, r.emoji]), [["ann", "👨‍👩‍👧"]]);
    assert.ok(!page.body.messages.some((x) => x.id !== ctx.aiId && x.id !== ctx.mid), "reaction events are not messages");
  });

  test("a Socket.IO rejoin with lastSeq replays the reaction updates in order", async () => {
    const dave = await connect(natter.url, { query: { userId: "dave" } });
    const j = await dave.emit("chat:join", { chatId: R, lastSeq: ctx.joinSeq, epoch: ctx.epoch });
    assert.equal(j.recovered, true);
    const ups = dave.of("reaction:update");
    assert.deepEqual(ups.map((u) => u.seq), [...ups.map((u) => u.seq)].sort((a, b) => a - b));
    assert.equal(ups.length, 4);
    assert.equal(ups.at(-1).seq, ctx.lastReactionSeq);
    assert.deepEqual(ups.at(-1).reactions.map((r) => r.emoji), ["🎉"], "each replayed update holds the list as it was then");
    assert.deepEqual(ups[0].reactions.map((r) => r.emoji), ["👍"]);
    dave.close();
  });

  test("seed 002: reaction_added / reaction_removed over POST /event, reaction_update on SSE, and to Socket.IO members", async () => {
    const created = await json(`${rt()}/create`, { method: "POST", body: JSON.stringify({ userId: "sue" }) });
    const key = created.body.chatKey;
    ctx.key = key;
    const sse = openStream(rt(), { userId: "sue", chatKey: key, clientType: "customer" });
    ctx.sse = sse;
    await sse.waitFor("reconnected");
    const sock = await connect(natter.url, { query: { userId: "tom" } });
    ctx.tom = sock;
    assert.equal((await sock.emit("chat:join", { chatId: key })).ok, true);
    const mid = uid("s");
    assert.equal((await json(`${rt()}/send`, { method: "POST", body: JSON.stringify({ userId: "sue", chatKey: key, message: { id: mid, content: "[fake:tokens n=2] hi" } }) })).status, 200);
    await sse.waitFor("message", (d) => d.message?.role === "ai", 15000);
    ctx.sseMid = mid;

    const ev = (type, data) => json(`${rt()}/event`, { method: "POST", body: JSON.stringify({ type, userId: "sue", chatKey: key, data }) });
    const add = await ev("reaction_added", { messageId: mid, emoji: "👍" });
    assert.equal(add.status, 200, JSON.stringify(add.body));
    assert.equal(add.body.success, true);
    assert.equal(add.body.changed, true);
    assert.equal(typeof add.body.seq, "number");
    const up = await sse.waitFor("reaction_update", (d) => d.data.messageId === mid);
    assert.equal(up.id, String(add.body.seq), "SSE id is the seq");
    assert.deepEqual(up.data.data.reactions.map((r) => [r.userId, r.emoji]), [["sue", "👍"]]);
    assert.equal(typeof up.data.data.reactions[0].createdAt, "number");
    const sio = await sock.waitFor("reaction:update", (e) => e.seq === add.body.seq);
    assert.match(sio.reactions[0].createdAt, ISO_RE);

    const dup = await ev("reaction_added", { messageId: mid, emoji: "👍" });
    assert.deepEqual([dup.status, dup.body.success, dup.body.changed, dup.body.seq], [200, true, false, undefined]);

    for (const [data, status, code] of [
      [undefined, 400, "missing_field"],
      [{ messageId: mid }, 400, "missing_field"],
      [{ messageId: mid, emoji: "x".repeat(40) }, 400, "invalid_field"],
      [{ messageId: mid, emoji: "a b" }, 400, "invalid_field"],
      [{ messageId: "nope", emoji: "👍" }, 404, "not_found"],
    ]) {
      const r = await ev("reaction_added", data);
      assert.equal(r.status, status, JSON.stringify([data, r.body]));
      assert.equal(r.body.error.code, code);
    }

    const rm = await ev("reaction_removed", { messageId: mid, emoji: "👍" });
    assert.equal(rm.body.changed, true);
    const up2 = await sse.waitFor("reaction_update", (d, e) => e.id === String(rm.body.seq));
    assert.deepEqual(up2.data.data.reactions, []);
    ctx.sseReactSeqs = [add.body.seq, rm.body.seq];
  });

  test("chat:end over Socket.IO: chat:ended to everyone, csat:request to customers only; SSE show_csat_survey", async () => {
    const { key, sse, tom } = ctx;
    const agent = await connect(natter.url, { query: { userId: "agnes", clientType: "humanAgent" } });
    ctx.agent = agent;
    assert.equal((await agent.emit("chat:join", { chatId: key })).ok, true);
    const bad = await tom.emit("chat:end", { chatId: key, reason: 5 });
    assert.equal(bad.error.code, "invalid_field");
    const ack = await tom.emit("chat:end", { chatId: key, reason: "resolved" });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.equal(typeof ack.seq, "number");
    ctx.endSeq = ack.seq;
    for (const c of [tom, agent]) {
      const e = await c.waitFor("chat:ended", (x) => x.seq === ack.seq);
      assert.deepEqual({ chatId: e.chatId, endedBy: e.endedBy, reason: e.reason }, { chatId: key, endedBy: "tom", reason: "resolved" });
    }
    const req = await tom.waitFor("csat:request", (x) => x.chatId === key);
    assert.equal(req.seq, ack.seq);
    const ended = await sse.waitFor("chat_ended", (d, e) => e.id === String(ack.seq));
    assert.equal(ended.data.data.reason, "resolved");
    await sse.waitFor("show_csat_survey");
    await sleep(300);
    assert.equal(agent.of("csat:request").length, 0, "a human agent is not asked to rate");
    const summary = await json(`${hist()}/${key}`);
    assert.equal(summary.body.status, "closed");
  });

  test("CSAT on both faces: stored, replaced, shown in ChatSummary.csat and lists, and counted in /metrics", async () => {
    const { key, tom, sse, agent } = ctx;
    const bad = [
      [{ chatId: key }, "missing_field"],
      [{ chatId: key, rating: 0 }, "invalid_field"],
      [{ chatId: key, rating: 6 }, "invalid_field"],
      [{ chatId: key, rating: 4.5 }, "invalid_field"],
      [{ chatId: key, rating: "5" }, "invalid_field"],
      [{ chatId: key, rating: 5, comment: "x".repeat(2001) }, "too_large"],
      [{ chatId: key, rating: 5, comment: 7 }, "invalid_field"],
    ];
    for (const [payload, code] of bad) {
      const a = await tom.emit("csat:submit", payload);
      assert.equal(a.ok, false, JSON.stringify(payload));
      assert.equal(a.error.code, code, JSON.stringify(payload));
    }
    const first = await tom.emit("csat:submit", { chatId: key, rating: 4, comment: "quick" });
    assert.equal(first.ok, true, JSON.stringify(first));
    const seen = await agent.waitFor("csat:submitted", (e) => e.seq === first.seq);
    assert.deepEqual({ u: seen.userId, r: seen.rating, c: seen.comment }, { u: "tom", r: 4, c: "quick" });
    assert.match(seen.submittedAt, ISO_RE);
    let s = await json(`${hist()}/${key}`);
    assert.deepEqual([s.body.csat.rating, s.body.csat.comment], [4, "quick"]);
    assert.equal(typeof s.body.csat.submittedAt, "number");

    // A second answer from the same user replaces the first; the comment may be left out.
    const second = await tom.emit("csat:submit", { chatId: key, rating: 2 });
    assert.equal(second.seq, first.seq + 1);
    s = await json(`${hist()}/${key}`);
    assert.equal(s.body.csat.rating, 2);
    assert.equal(s.body.csat.comment, undefined);

    // Seed 002: POST /event csat_submitted.
    const ev = (data) => json(`${rt()}/event`, { method: "POST", body: JSON.stringify({ type: "csat_submitted", userId: "sue", chatKey: key, data }) });
    for (const [data, code] of [[undefined, "missing_field"], [{ rating: 9 }, "invalid_field"], [{ rating: true }, "invalid_field"]]) {
      const r = await ev(data);
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, code);
    }
    const http = await ev({ rating: 5, comment: "great" });
    assert.equal(http.status, 200, JSON.stringify(http.body));
    assert.equal(http.body.success, true);
    const e = await sse.waitFor("csat_submitted", (d, ev) => ev.id === String(http.body.seq));
    assert.deepEqual([e.data.userId, e.data.data.rating, e.data.data.comment], ["sue", 5, "great"]);
    s = await json(`${hist()}/${key}`);
    assert.deepEqual([s.body.csat.rating, s.body.csat.comment], [5, "great"]);
    const loaded = await json(`${rt()}/load`, { method: "POST", body: JSON.stringify({ userId: "sue", chatKey: key }) });
    assert.equal(loaded.body.chat.csat.rating, 5, "/load's Chat carries it too");
    const list = await json(`${hist()}?limit=200`);
    const inList = list.body.chats.find((c) => c.chatKey === key);
    assert.equal(inList.csat.rating, 5);
    ctx.csatSeqs = [first.seq, second.seq, http.body.seq];

    const metrics = await (await fetch(`${natter.url}/metrics`)).text();
    assert.match(metrics, /^natter_csat_rating_bucket\{le="1"\} \d+/m);
    assert.match(metrics, /^natter_csat_rating_bucket\{le="5"\} 3$/m);
    assert.match(metrics, /^natter_csat_rating_count 3$/m);
    assert.match(metrics, /^natter_csat_rating_sum 11$/m);
  });

  test("SSE Last-Event-ID replays reactions, the end (with its survey) and CSAT answers", async () => {
    const { key, sseReactSeqs, csatSeqs, endSeq } = ctx;
    const from = sseReactSeqs[0] - 1;
    const raw = await openSse(`${rt()}/stream?userId=sue&clientType=customer&chatKey=${encodeURIComponent(key)}`, { headers: { "Last-Event-ID": String(from) } });
    try {
      await raw.until((evs) => evs.some((e) => e.type === "csat_submitted" && e.id === csatSeqs[2]), 10000, "the last CSAT answer");
      const durable = raw.events.filter((e) => e.id !== null);
      const ids = durable.map((e) => Number(e.id));
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b), "in seq order");
      assert.deepEqual(raw.of("reaction_update").map((e) => Number(e.id)), sseReactSeqs);
      assert.deepEqual(raw.of("chat_ended").map((e) => Number(e.id)), [endSeq]);
      assert.equal(raw.of("show_csat_survey").length, 1);
      assert.deepEqual(raw.of("csat_submitted").map((e) => Number(e.id)), csatSeqs);
      assert.deepEqual(raw.of("csat_submitted").map((e) => e.data.data.rating), [4, 2, 5]);
    } finally {
      raw.close();
    }
  });

  test("a Socket.IO rejoin with lastSeq replays chat:ended, csat:request and csat:submitted", async () => {
    const { key, endSeq, csatSeqs } = ctx;
    const s = await connect(natter.url, { query: { userId: "uma" } });
    const load = await json(`${rt()}/load`, { method: "POST", body: JSON.stringify({ userId: "uma", chatKey: key }) });
    const j = await s.emit("chat:join", { chatId: key, lastSeq: endSeq - 1, epoch: load.body.chat.epoch });
    assert.equal(j.ok, true);
    assert.deepEqual(s.of("chat:ended").map((e) => e.seq), [endSeq]);
    assert.equal(s.of("csat:request").length, 1);
    assert.deepEqual(s.of("csat:submitted").map((e) => e.seq), csatSeqs);
    s.close();
  });

  test("rename, pin, regenerate, end and delete reach a Socket.IO member as events", async () => {
    const chatId = uid("life");
    const m = await connect(natter.url, { query: { userId: "vic" } });
    assert.equal((await m.emit("chat:join", { chatId })).ok, true);
    const requestId = uid("req");
    const userMsg = uid("u");
    await m.emit("user:message", { chatId, messageId: userMsg, requestId, text: "[fake:tokens n=2] hi" });
    const first = await m.waitFor("ai:message", (x) => x.requestId === requestId, 15000);

    const renamed = await json(`${hist()}/${chatId}`, { method: "PATCH", body: JSON.stringify({ title: "New name" }) });
    assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
    const u1 = await m.waitFor("chat:updated", (e) => e.title === "New name");
    assert.deepEqual([u1.chatId, u1.pinned, u1.seq], [chatId, undefined, renamed.body.seq]);
    const pinned = await json(`${hist()}/${chatId}`, { method: "PATCH", body: JSON.stringify({ pinned: true }) });
    const u2 = await m.waitFor("chat:updated", (e) => e.pinned === true);
    assert.equal(u2.seq, pinned.body.seq);

    // Regenerate through the AI SDK face: the old reply is superseded.
    const res = await fetch(`${natter.url}/api/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: chatId, trigger: "regenerate-message", messageId: first.messageId, messages: [{ id: userMsg, role: "user", parts: [{ type: "text", text: "[fake:tokens n=2] hi" }] }] }),
    });
    assert.equal(res.status, 200);
    await res.text();
    const sup = await m.waitFor("message:superseded", (e) => e.messageId === first.messageId);
    assert.equal(sup.chatId, chatId);
    assert.equal(typeof sup.requestId, "string");
    assert.ok(sup.seq > u2.seq);
    await m.waitFor("ai:message", (x) => x.requestId === sup.requestId, 15000);

    const ended = await m.emit("chat:end", { chatId });
    const e = await m.waitFor("chat:ended", (x) => x.seq === ended.seq);
    assert.equal(e.endedBy, "vic");

    const del = await json(`${hist()}/${chatId}`, { method: "DELETE" });
    assert.equal(del.status, 200);
    const d = await m.waitFor("chat:deleted", (x) => x.chatId === chatId);
    assert.ok(d.deletedBy === undefined || typeof d.deletedBy === "string");
    const err = await m.waitFor("error", (x) => x.code === "not_found");
    assert.ok(err.message.includes(chatId));
    const seqs = [u1.seq, u2.seq, sup.seq, e.seq];
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "in log order");
    m.close();
  });

  test("meta:events:response advertises the new event keys", async () => {
    const c = await connect(natter.url, { query: { userId: "wes" } });
    const ack = await c.emit("meta:events:request", {});
    for (const [k, v] of Object.entries({
      reactionAdd: "reaction:add",
      reactionRemove: "reaction:remove",
      reactionUpdate: "reaction:update",
      chatEnd: "chat:end",
      csatSubmit: "csat:submit",
      csatRequest: "csat:request",
      csatSubmitted: "csat:submitted",
      chatUpdated: "chat:updated",
      chatEnded: "chat:ended",
      chatDeleted: "chat:deleted",
      messageSuperseded: "message:superseded",
    })) {
      assert.equal(ack.events[k], v, k);
    }
    c.close();
  });

  after(() => {
    ctx.sse?.close();
    for (const c of [ctx.ann, ctx.bob, ctx.tom, ctx.agent]) c?.close();
  });
});

describe("--csat off", () => {
  let stack, natter;
  before(async () => {
    ({ natter } = stack = await startStack({ args: ["--csat", "off"] }));
  });
  after(() => stack?.stop());

  test("chat:ended still comes, csat:request and show_csat_survey do not; answers are still taken", async () => {
    const chatId = uid("nocsat");
    const c = await connect(natter.url, { query: { userId: "ann" } });
    assert.equal((await c.emit("chat:join", { chatId })).ok, true);
    const sse = openStream(`${natter.url}/api/v1/chat`, { userId: "ann", chatKey: chatId, clientType: "customer" });
    try {
      await sse.waitFor("reconnected");
      // The stream follows the chat once it shows a message of it.
      const mid = uid("m");
      assert.equal((await c.emit("user:message", { chatId, messageId: mid, text: "[fake:tokens n=1] hi" })).ok, true);
      // (the user message, or the reply if the stream followed the chat only after it)
      await sse.waitFor("message", () => true, 15000);
      const ack = await c.emit("chat:end", { chatId });
      await c.waitFor("chat:ended", (e) => e.seq === ack.seq);
      await sse.waitFor("chat_ended");
      await sleep(300);
      assert.equal(c.of("csat:request").length, 0);
      assert.equal(sse.of("show_csat_survey").length, 0);
      const a = await c.emit("csat:submit", { chatId, rating: 3 });
      assert.equal(a.ok, true);
    } finally {
      sse.close();
      c.close();
    }
  });
});
