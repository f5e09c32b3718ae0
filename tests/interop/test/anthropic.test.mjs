// The Anthropic provider end to end: natter --provider anthropic against the fake upstream's
// /v1/messages (Anthropic streaming format), with stock socket.io-client.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, joinTokens, startNatter, startStack, tempDir, uid } from "../lib/harness.mjs";

const SYSTEM = "You are a fake.";
let stack, natter, upstream;
before(async () => ({ natter, upstream } = stack = await startStack({ provider: "anthropic", args: ["--system-prompt", SYSTEM, "--turn-timeout-secs", "5"] })));
after(() => stack?.stop());

/** Two members in a fresh chat. */
async function pair() {
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  const bob = await connect(natter.url, { query: { userId: "bob" } });
  await ann.emit("chat:join", { chatId });
  await bob.emit("chat:join", { chatId });
  return { chatId, ann, bob, close: () => (ann.close(), bob.close()) };
}

async function send(ann, chatId, text) {
  const requestId = uid("req");
  const ack = await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text, requestId });
  assert.equal(ack.ok, true);
  return requestId;
}

/** Reads a raw SSE body into `{event, data}` records. */
function parseSse(text) {
  return text
    .split("\n\n")
    .filter((f) => f.trim())
    .map((frame) => {
      const lines = frame.split("\n");
      const event = lines.find((l) => l.startsWith("event:"))?.slice(6).trim();
      const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
      return { event, data: data ? JSON.parse(data) : null };
    });
}

test("a text turn streams tokens, usage as the fake counted; headers and system prompt reach the API", async () => {
  const { chatId, ann, bob, close } = await pair();
  await upstream.reset();
  const requestId = await send(ann, chatId, "hello anthropic world");
  const msg = await bob.waitFor("ai:message", (m) => m.requestId === requestId);
  const tokens = bob.of("ai:token").filter((t) => t.requestId === requestId);
  assert.ok(tokens.length >= 1);
  assert.deepEqual(tokens.map((t) => t.index), [...Array(tokens.length).keys()]);
  assert.equal(joinTokens(tokens), msg.text);
  assert.equal(msg.text, "Echo: hello anthropic world");
  assert.equal(msg.finishReason, "stop");
  // The fake counts words over `system` and every message; output = tokens sent.
  assert.deepEqual(msg.usage, { promptTokens: 4 + 3, completionTokens: 4, totalTokens: 11 });

  const stats = await upstream.stats();
  assert.equal(stats.requests, 1);
  assert.deepEqual(stats.by_scenario, { echo: 1 });
  const last = stats.last_messages_request;
  assert.equal(last.x_api_key, "test-anthropic-key");
  assert.equal(last.anthropic_version, "2023-06-01");
  assert.equal(last.body.system, SYSTEM);
  assert.equal(last.body.model, "fake-model");
  assert.equal(last.body.stream, true);
  assert.equal(typeof last.body.max_tokens, "number");
  assert.deepEqual(last.body.messages, [{ role: "user", content: "hello anthropic world" }]);
  close();
});

test("many tokens: indexes, join and usage", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = await send(ann, chatId, "[fake:tokens n=30] go");
  const msg = await bob.waitFor("ai:message", (m) => m.requestId === requestId);
  const tokens = bob.of("ai:token").filter((t) => t.requestId === requestId);
  assert.equal(joinTokens(tokens), msg.text);
  assert.equal(msg.text, Array.from({ length: 30 }, (_, i) => `t${i} `).join(""));
  assert.equal(msg.usage.completionTokens, 30);
  assert.equal(msg.usage.totalTokens, msg.usage.promptTokens + 30);
  close();
});

test("529 overloaded once, then success: retrying, then the reply", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = uid("req");
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: `[fake:fail503 times=1 key=${requestId}] hi`, requestId });
  const msg = await bob.waitFor("ai:message", (m) => m.requestId === requestId);
  assert.equal(msg.text, "Echo: hi");
  const retrying = bob.of("ai:processing").filter((p) => p.requestId === requestId && p.status === "retrying");
  assert.equal(retrying.length, 1);
  assert.match(retrying[0].reason, /upstream_unavailable/);
  assert.equal(bob.of("ai:error").length, 0);
  close();
});

test("429 with retry-after, then success", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = uid("req");
  const started = Date.now();
  await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: `[fake:ratelimit times=1 retry_after=0.5 key=${requestId}] hi`, requestId });
  const msg = await bob.waitFor("ai:message", (m) => m.requestId === requestId);
  assert.equal(msg.text, "Echo: hi");
  assert.ok(Date.now() - started >= 450, "waited for retry-after");
  const retrying = bob.of("ai:processing").find((p) => p.requestId === requestId && p.status === "retrying");
  assert.match(retrying.reason, /upstream_rate_limited/);
  close();
});

test("401 is upstream_auth, not retried", async () => {
  const { chatId, ann, bob, close } = await pair();
  await upstream.reset();
  const requestId = await send(ann, chatId, "[fake:auth401]");
  const err = await bob.waitFor("ai:error", (e) => e.requestId === requestId);
  assert.equal(err.code, "upstream_auth");
  assert.equal(err.retryable, false);
  assert.equal((await upstream.stats()).requests, 1);
  close();
});

test("prompt is too long → context_too_long", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = await send(ann, chatId, "[fake:context400]");
  const err = await bob.waitFor("ai:error", (e) => e.requestId === requestId);
  assert.equal(err.code, "context_too_long");
  close();
});

test("a stream without message_stop is upstream_cut and keeps the partial text", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = await send(ann, chatId, "[fake:cut after=4]");
  const err = await bob.waitFor("ai:error", (e) => e.requestId === requestId);
  assert.equal(err.code, "upstream_cut");
  assert.equal(err.retryable, true);
  assert.equal(err.details.partialText, "t0 t1 t2 t3 ");
  assert.equal(joinTokens(bob.of("ai:token").filter((t) => t.requestId === requestId)), "t0 t1 t2 t3 ");
  close();
});

test("an error event mid-stream ends the turn with upstream_error", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = await send(ann, chatId, "[fake:stream_error after=2]");
  const err = await bob.waitFor("ai:error", (e) => e.requestId === requestId);
  assert.equal(err.code, "upstream_error");
  assert.match(err.message, /overloaded_error/);
  assert.equal(err.details.partialText, "t0 t1 ");
  close();
});

test("a tool_use reply ends the turn (no tools are offered, so nothing runs)", async () => {
  const { chatId, ann, bob, close } = await pair();
  const requestId = await send(ann, chatId, '[fake:tooluse name=lookup input={"q":"rust"}]');
  const end = await bob.until(
    (evs) => evs.find((e) => (e.event === "ai:message" || e.event === "ai:error") && e.payload.requestId === requestId),
    10000,
    "the end of the turn",
  );
  if (end.event === "ai:message") assert.match(end.payload.text, /^Calling lookup\./);
  close();
});

test("the fake's tooluse stream: input split over input_json_delta events, stop_reason tool_use", async () => {
  const input = { city: "San Francisco", days: [1, 2] };
  const directive = `[fake:tooluse name=get_weather id=toolu_7 chunks=4 input=${JSON.stringify(input).replaceAll(" ", "%20").replaceAll("]", "%5D")}]`;
  const res = await fetch(`${upstream.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": "k", "anthropic-version": "2023-06-01" },
    body: JSON.stringify({ model: "m", max_tokens: 100, stream: true, messages: [{ role: "user", content: directive }] }),
  });
  assert.equal(res.status, 200);
  const events = parseSse(await res.text());
  const start = events.find((e) => e.event === "content_block_start" && e.data.content_block.type === "tool_use");
  assert.deepEqual([start.data.content_block.id, start.data.content_block.name], ["toolu_7", "get_weather"]);
  const parts = events.filter((e) => e.data?.delta?.type === "input_json_delta").map((e) => e.data.delta.partial_json);
  assert.ok(parts.filter(Boolean).length === 4);
  assert.deepEqual(JSON.parse(parts.join("")), input);
  assert.equal(events.find((e) => e.event === "message_delta").data.delta.stop_reason, "tool_use");
  assert.equal(events.at(-1).event, "message_stop");
});

test("the fake wants x-api-key and anthropic-version", async () => {
  const body = JSON.stringify({ model: "m", max_tokens: 10, stream: true, messages: [{ role: "user", content: "hi" }] });
  const noKey = await fetch(`${upstream.url}/v1/messages`, { method: "POST", headers: { "anthropic-version": "2023-06-01" }, body });
  assert.equal(noKey.status, 401);
  assert.equal((await noKey.json()).error.type, "authentication_error");
  const noVersion = await fetch(`${upstream.url}/v1/messages`, { method: "POST", headers: { "x-api-key": "k" }, body });
  assert.equal(noVersion.status, 400);
  assert.equal((await noVersion.json()).error.type, "invalid_request_error");
});

test("--provider anthropic without ANTHROPIC_API_KEY (and no local base URL) refuses to start", async () => {
  const tmp = tempDir();
  try {
    await assert.rejects(
      startNatter({ dataDir: tmp.dir, args: ["--provider", "anthropic"], env: { ANTHROPIC_API_KEY: "" } }),
      /ANTHROPIC_API_KEY is not set/,
    );
  } finally {
    tmp.cleanup();
  }
});
