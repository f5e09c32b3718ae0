// Operations: health, readiness, metrics, structured logs, the config file, the global turn limit.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { connect, startStack, testOnPostgres, uid } from "../lib/harness.mjs";

let stack, natter;
before(async () => {
  stack = await startStack({ args: ["--log-format", "json", "--max-concurrent-turns", "1"], env: { NATTER_LOG: "info" } });
  natter = stack.natter;
});
after(() => stack?.stop());

test("healthz and readyz answer", async () => {
  const h = await fetch(`${natter.url}/healthz`);
  assert.equal(h.status, 200);
  assert.deepEqual(await h.json(), { status: "ok" });
  const r = await fetch(`${natter.url}/readyz`);
  assert.equal(r.status, 200);
  assert.equal((await r.json()).status, "ready");
});

test("a turn shows in /metrics and in the JSON logs with its span fields", async () => {
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  await ann.emit("chat:join", { chatId });
  const requestId = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "[fake:tokens n=3]", requestId, traceId: "trace-ops-1" });
  await ann.waitFor("ai:message", (m) => m.requestId === requestId);
  const text = await (await fetch(`${natter.url}/metrics`)).text();
  for (const name of [
    'natter_connections{face="socketio"} 1',
    'natter_turns_total{outcome="finished"}',
    "natter_tokens_total",
    "natter_messages_total",
    "natter_turn_duration_seconds_bucket",
    "natter_turn_first_token_seconds_bucket",
    "natter_chats_active",
  ]) {
    assert.ok(text.includes(name), `metrics lack ${name}`);
  }
  // The SQLite store's group commit: the message and the reply were appends, each committed
  // in a batch of at least one.
  const commits = text.match(/^natter_sqlite_appends_per_commit_count (\d+)/m);
  if (testOnPostgres) {
    assert.equal(commits, null, "no SQLite metric on PostgreSQL");
  } else {
    assert.ok(commits && Number(commits[1]) >= 1, `metrics lack natter_sqlite_appends_per_commit_count: ${commits}`);
    assert.ok(text.includes('natter_sqlite_appends_per_commit_bucket{le="64"}'), "its buckets go up to the batch limit");
  }
  ann.close();
  // The turn's "turn ended" line carries the span's fields.
  const line = natter
    .stderr()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l))
    .find((l) => l.fields?.message === "turn ended" && l.span?.requestId === requestId);
  assert.ok(line, "a JSON log line for the turn's end");
  assert.equal(line.span.name, "turn");
  assert.equal(line.span.chatId, chatId);
  assert.equal(line.span.traceId, "trace-ops-1");
});

test("--max-concurrent-turns bounds turns across chats", async () => {
  const [a, b] = [uid("chat"), uid("chat")];
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  await ann.emit("chat:join", { chatId: a });
  await ann.emit("chat:join", { chatId: b });
  const [ra, rb] = [uid("req"), uid("req")];
  await ann.emit("user:message", { chatId: a, messageId: uid("m"), text: "[fake:drip n=10 delay_ms=30]", requestId: ra });
  await ann.waitFor("ai:token", (t) => t.requestId === ra);
  await ann.emit("user:message", { chatId: b, messageId: uid("m"), text: "[fake:tokens n=2]", requestId: rb });
  await ann.waitFor("ai:message", (m) => m.requestId === rb);
  // The limit bounds generations: b's first token comes after a's last one.
  const order = ann.events.map((e) => `${e.event}:${e.payload?.requestId}`);
  const firstB = order.indexOf(`ai:token:${rb}`);
  const lastA = order.lastIndexOf(`ai:token:${ra}`);
  assert.ok(firstB > lastA && lastA >= 0, "chat b streamed only after chat a's generation ended");
  ann.close();
});

test("settings come from a TOML file, flags win over it", async () => {
  const path = `${process.env.TMPDIR ?? "/tmp"}/natter-test-${process.pid}-${Date.now()}.toml`;
  writeFileSync(path, 'system_prompt = "one two three"\nmax_text_bytes = 5\n[event_names]\naiMessage = "reply:done"\n');
  const other = await startStack({ args: ["--config", path, "--max-text-bytes", "50"] });
  try {
    const c = await connect(other.natter.url, { query: { userId: "ann" } });
    const disco = await c.emit("meta:events:request", {});
    assert.equal(disco.events.aiMessage, "reply:done");
    const chatId = uid("chat");
    await c.emit("chat:join", { chatId });
    // 20 bytes: over the file's 5, under the flag's 50.
    const ack = await c.emit("user:message", { chatId, messageId: uid("m"), text: "x".repeat(20) });
    assert.equal(ack.ok, true);
    const done = await c.waitFor("reply:done");
    // The fake counts words over all messages: 3 (system prompt from the file) + 1.
    assert.equal(done.usage.promptTokens, 4);
    c.close();
  } finally {
    await other.stop();
    rmSync(path, { force: true });
  }
});
