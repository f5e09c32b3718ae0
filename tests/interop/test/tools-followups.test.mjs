// Tools, the follow-ups: a call's input streamed to AI SDK clients as it comes
// (tool-input-start / tool-input-delta), earlier turns' tool calls and results in the next
// turn's context (OpenAI and Anthropic formats), a pending client-run call sent again on a
// plain join (Socket.IO) or a fresh SSE stream (seed 002), and tools declared with a message
// kept for a regenerate and for a turn another node runs.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { DefaultChatTransport, readUIMessageStream } from "ai";
import { EventSource } from "eventsource";
import { connect, sleep, startStack, tempDir, uid } from "../lib/harness.mjs";
import { clusterOrSkip, clusterTestOptions } from "../lib/cluster.mjs";

const CLIENT_TOOLS = `[[client_tools]]
name = "pick_color"
description = "Ask the people in the chat to pick a color"
parameters = { type = "object", properties = { palette = { type = "string" } } }
`;

async function waitFor(pred, what, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Sends `text` over Socket.IO as `userId`; returns the requestId. */
async function say(client, chatId, text, extra = {}, userId = "ann") {
  const requestId = uid("req");
  const ack = await client.emit("user:message", { chatId, messageId: uid("m"), userId, text, requestId, ...extra });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return requestId;
}

/** Sends one AI SDK request; returns every chunk and the last UI message the SDK's reader built from them. */
async function sdkTurn(url, chatId, messages, opts = {}) {
  const transport = new DefaultChatTransport({ api: `${url}/api/chat`, body: { userId: "web", ...(opts.body ?? {}) } });
  const stream = await transport.sendMessages({
    chatId,
    messages,
    trigger: opts.trigger ?? "submit-message",
    messageId: opts.messageId,
    abortSignal: undefined,
  });
  const [raw, forUi] = stream.tee();
  const states = [];
  const ui = (async () => {
    let last;
    for await (const m of readUIMessageStream({ stream: forUi })) {
      last = m;
      states.push(structuredClone(m));
    }
    return last;
  })();
  const chunks = [];
  const reader = raw.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  return { chunks, ui: await ui, states };
}

const userMessage = (text) => ({ id: uid("u"), role: "user", parts: [{ type: "text", text }] });

describe("tool follow-ups on the OpenAI-compatible upstream", () => {
  let stack;
  let tmp;
  before(async () => {
    tmp = tempDir();
    const config = path.join(tmp.dir, "natter.toml");
    writeFileSync(config, CLIENT_TOOLS);
    stack = await startStack({ args: ["--config", config, "--tools", "current_time"] });
  });
  after(async () => {
    await stack?.stop();
    tmp?.cleanup();
  });

  /** The recorded chat-completions bodies whose last user message contains `marker`. */
  async function requestsFor(marker) {
    const { chat_requests: all } = await stack.upstream.stats();
    return all.filter((b) => {
      const users = b.messages?.filter((m) => m.role === "user") ?? [];
      return String(users.at(-1)?.content ?? "").includes(marker);
    });
  }

  test("1. AI SDK: the call's arguments stream as tool-input-delta between tool-input-start and tool-input-available", async () => {
    const args = '{"timeZone":"Europe/Paris"}';
    const { chunks, ui, states } = await sdkTurn(stack.natter.url, uid("delta"), [
      userMessage(`[fake:toolcall name=current_time args=${args} split=4 delay_ms=60] time?`),
    ]);
    const types = chunks.map((c) => c.type);
    const start = types.indexOf("tool-input-start");
    const available = types.indexOf("tool-input-available");
    const deltas = chunks.filter((c) => c.type === "tool-input-delta");
    assert.ok(start >= 0 && available > start, JSON.stringify(types));
    assert.ok(deltas.length >= 2, `the input arrives in pieces: ${JSON.stringify(types)}`);
    for (const d of deltas) {
      const at = chunks.indexOf(d);
      assert.ok(at > start && at < available, "every delta between the start and the whole input");
      assert.equal(d.toolCallId, chunks[start].toolCallId);
      assert.equal(typeof d.inputTextDelta, "string");
    }
    assert.equal(chunks[start].toolName, "current_time");
    assert.equal(deltas.map((d) => d.inputTextDelta).join(""), args, "the deltas concatenate to the model's arguments");
    assert.equal(types.filter((t) => t === "tool-input-start").length, 1, "one start per call");
    assert.deepEqual(chunks[available].input, { timeZone: "Europe/Paris" });
    assert.ok(types.indexOf("tool-output-available") > available);
    assert.equal(types.at(-1), "finish");
    assert.equal(types.filter((t) => t === "error").length, 0);

    // The SDK's own reader took the stream: the part was input-streaming with a partial input first.
    const streaming = states
      .map((m) => m.parts.find((p) => p.type === "tool-current_time"))
      .filter((p) => p?.state === "input-streaming");
    assert.ok(streaming.length >= 2, "the UI saw the input grow");
    const part = ui.parts.find((p) => p.type === "tool-current_time");
    assert.equal(part.state, "output-available");
    assert.deepEqual(part.input, { timeZone: "Europe/Paris" });
  });

  test("1b. Socket.IO members get the whole ai:tool_call only (no input-delta event)", async () => {
    const chatId = uid("delta-sio");
    const ann = await connect(stack.natter.url, { query: { userId: "ann" } });
    try {
      await ann.emit("chat:join", { chatId });
      const requestId = await say(ann, chatId, "[fake:toolcall name=current_time args={} split=3 delay_ms=10] t");
      await ann.waitFor("ai:message", (m) => m.requestId === requestId);
      const names = new Set(ann.events.map((e) => e.event));
      assert.deepEqual([...names].filter((n) => n.includes("input")), []);
      assert.equal(ann.of("ai:tool_call").filter((c) => c.requestId === requestId).length, 1);
    } finally {
      ann.close();
    }
  });

  test("2. the next turn's upstream request holds the first turn's tool call and result", async () => {
    const chatId = uid("context");
    const ann = await connect(stack.natter.url, { query: { userId: "ann" } });
    try {
      await ann.emit("chat:join", { chatId });
      const first = await say(ann, chatId, '[fake:toolcall name=current_time args={"timeZone":"UTC"}] what time is it');
      const reply = await ann.waitFor("ai:message", (m) => m.requestId === first);
      const call = ann.of("ai:tool_call").find((c) => c.requestId === first);
      const result = ann.of("ai:tool_result").find((r) => r.requestId === first);
      const marker = uid("second");
      const second = await say(ann, chatId, `and now? ${marker}`);
      await ann.waitFor("ai:message", (m) => m.requestId === second);

      const [body] = await requestsFor(marker);
      assert.ok(body, "the second turn's request was recorded");
      const roles = body.messages.map((m) => m.role);
      assert.deepEqual(roles, ["user", "assistant", "tool", "assistant", "user"], JSON.stringify(body.messages));
      const [, withCalls, tool, text, user] = body.messages;
      assert.equal(withCalls.tool_calls.length, 1);
      assert.equal(withCalls.tool_calls[0].id, call.toolCallId);
      assert.equal(withCalls.tool_calls[0].type, "function");
      assert.equal(withCalls.tool_calls[0].function.name, "current_time");
      assert.deepEqual(JSON.parse(withCalls.tool_calls[0].function.arguments), { timeZone: "UTC" });
      assert.equal(tool.tool_call_id, call.toolCallId);
      assert.deepEqual(JSON.parse(tool.content), result.result, "the model sees what its tool returned");
      assert.equal(text.content, reply.text);
      assert.match(user.content, new RegExp(marker));
    } finally {
      ann.close();
    }
  });

  test("3. a plain chat:join during a client tool's wait gets the pending ai:tool_call and can answer it", async () => {
    const chatId = uid("reload");
    const ann = await connect(stack.natter.url, { query: { userId: "ann" } });
    let carl;
    try {
      await ann.emit("chat:join", { chatId });
      const requestId = await say(ann, chatId, '[fake:toolcall name=pick_color args={"palette":"cool"}] who picks?');
      const live = await ann.waitFor("ai:tool_call", (p) => p.requestId === requestId);
      // A page reload: a new socket, a join that knows nothing.
      ann.close();
      carl = await connect(stack.natter.url, { query: { userId: "ann" } });
      const ack = await carl.emit("chat:join", { chatId });
      assert.equal(ack.ok, true);
      assert.equal(ack.recovered, false);
      const pending = await carl.waitFor("ai:tool_call", (p) => p.toolCallId === live.toolCallId, 3000);
      assert.equal(pending.pending, true);
      assert.equal(pending.executor, "client");
      assert.equal(pending.seq, live.seq);
      assert.ok(pending.seq <= ack.seq);
      const { pending: _, ...same } = pending;
      assert.deepEqual(same, live, "the stored call, marked pending");
      const ackAt = carl.events.findIndex((e) => e.event === "ai:tool_call");
      assert.ok(ackAt >= 0);
      const answer = await carl.emit("ai:tool_result", { chatId, toolCallId: pending.toolCallId, result: "teal" });
      assert.deepEqual(answer, { ok: true });
      const msg = await carl.waitFor("ai:message", (m) => m.requestId === requestId);
      assert.match(msg.text, /teal/);
      // A later plain join has nothing pending.
      const dave = await connect(stack.natter.url, { query: { userId: "dave" } });
      await dave.emit("chat:join", { chatId });
      await sleep(200);
      assert.equal(dave.of("ai:tool_call").length, 0);
      dave.close();
    } finally {
      carl?.close();
      ann.close();
    }
  });

  test("3b. a join with lastSeq replays the call once, without `pending`", async () => {
    const chatId = uid("reload-seq");
    const ann = await connect(stack.natter.url, { query: { userId: "ann" } });
    const joined = await ann.emit("chat:join", { chatId });
    const requestId = await say(ann, chatId, "[fake:toolcall name=pick_color args={}] pick");
    const live = await ann.waitFor("ai:tool_call", (p) => p.requestId === requestId);
    const bob = await connect(stack.natter.url, { query: { userId: "bob" } });
    try {
      const ack = await bob.emit("chat:join", { chatId, lastSeq: joined.seq, epoch: joined.epoch });
      assert.equal(ack.recovered, true);
      await sleep(200);
      const calls = bob.of("ai:tool_call");
      assert.equal(calls.length, 1);
      assert.equal(calls[0].pending, undefined);
      await bob.emit("ai:tool_result", { chatId, toolCallId: live.toolCallId, result: "red" });
      await ann.waitFor("ai:message", (m) => m.requestId === requestId);
    } finally {
      bob.close();
      ann.close();
    }
  });

  test("3c. seed 002: a stream opened during the wait gets the pending client_action; the callback completes the turn", async () => {
    const base = `${stack.natter.url}/api/v1/chat`;
    const post = async (op, body) => {
      const r = await fetch(`${base}/${op}`, { method: "POST", body: JSON.stringify({ orgId: "default", userId: "ann", ...body }) });
      return { status: r.status, body: await r.json() };
    };
    const { body: created } = await post("create", {});
    const chatKey = created.chatKey;
    const ann = await connect(stack.natter.url, { query: { userId: "ann" } });
    await ann.emit("chat:join", { chatId: chatKey });
    await post("send", { chatKey, message: { id: uid("m"), content: "[fake:toolcall name=pick_color args={}] go" } });
    let es;
    try {
      // The call is waiting before the (reloaded) page opens its stream.
      await ann.waitFor("ai:tool_call", (c) => c.chatId === chatKey);
      es = new EventSource(`${base}/stream?orgId=default&userId=ann&chatKey=${chatKey}`);
      const events = [];
      for (const type of ["client_action", "message"]) {
        es.addEventListener(type, (e) => events.push({ type, id: e.lastEventId, data: JSON.parse(e.data) }));
      }
      const action = await waitFor(() => events.find((e) => e.type === "client_action"), "the pending client_action", 5000);
      assert.equal(action.data.data.name, "pick_color");
      const call = ann.of("ai:tool_call").find((c) => c.chatId === chatKey);
      assert.equal(action.id, String(call.seq), "the pending action carries its seq as the SSE id");
      const answered = await post("event", { type: "client_action_callback", chatKey, data: { toolCallId: action.data.data.toolCallId, result: "ochre" } });
      assert.equal(answered.status, 200);
      const reply = await waitFor(() => events.find((e) => e.type === "message" && e.data.message.role === "ai"), "the AI reply");
      assert.match(reply.data.message.content, /ochre/);
    } finally {
      es?.close();
      ann.close();
    }
  });

  test("4. a regenerate after a message that declared a client tool offers the tool again", async () => {
    const chatId = uid("regen-tools");
    const ann = await connect(stack.natter.url, { query: { userId: "ann" } });
    try {
      await ann.emit("chat:join", { chatId });
      const marker = uid("declared");
      const tools = [{ name: "confirm_order", description: "Ask the user to confirm", parameters: { type: "object", properties: { id: { type: "string" } } } }];
      const first = await say(ann, chatId, `[fake:toolcall name=confirm_order args={"id":"7"}] ${marker}`, { tools });
      const call = await ann.waitFor("ai:tool_call", (c) => c.requestId === first);
      assert.equal(call.executor, "client");
      await ann.emit("ai:tool_result", { chatId, toolCallId: call.toolCallId, result: "confirmed" });
      const reply = await ann.waitFor("ai:message", (m) => m.requestId === first);
      assert.match(reply.text, /confirmed/);
      const before = (await requestsFor(marker)).length;

      // Regenerate that reply (AI SDK face): the new turn offers confirm_order again and can call it.
      const transport = new DefaultChatTransport({ api: `${stack.natter.url}/api/chat`, body: { userId: "ann" } });
      const stream = await transport.sendMessages({ chatId, messages: [], trigger: "regenerate-message", messageId: reply.messageId, abortSignal: undefined });
      const reader = stream.getReader();
      const chunks = [];
      const drained = (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return chunks;
          chunks.push(value);
        }
      })();
      const again = await ann.waitFor("ai:tool_call", (c) => c.requestId !== first && c.name === "confirm_order");
      assert.equal(again.executor, "client", "the declared tool is known to the regenerated turn");
      await ann.emit("ai:tool_result", { chatId, toolCallId: again.toolCallId, result: "confirmed again" });
      const second = await ann.waitFor("ai:message", (m) => m.requestId === again.requestId);
      assert.match(second.text, /confirmed again/);
      await drained;

      const reqs = await requestsFor(marker);
      assert.ok(reqs.length > before, "the regenerated turn asked the upstream");
      const regenerated = reqs[before];
      assert.ok(
        regenerated.tools?.some((t) => t.function?.name === "confirm_order"),
        `the regenerated turn's request offers the declared tool: ${JSON.stringify(regenerated.tools)}`,
      );
    } finally {
      ann.close();
    }
  });
});

describe("tool follow-ups on the Anthropic upstream", () => {
  let stack;
  before(async () => {
    stack = await startStack({ provider: "anthropic", args: ["--tools", "current_time"] });
  });
  after(async () => {
    await stack?.stop();
  });

  test("1. input_json_delta pieces stream as tool-input-delta", async () => {
    const { chunks, ui } = await sdkTurn(stack.natter.url, uid("a-delta"), [
      userMessage('[fake:tooluse name=current_time input={"timeZone":"Asia/Tokyo"} chunks=3] time?'),
    ]);
    const types = chunks.map((c) => c.type);
    const start = types.indexOf("tool-input-start");
    const available = types.indexOf("tool-input-available");
    const deltas = chunks.filter((c) => c.type === "tool-input-delta");
    assert.ok(start >= 0 && available > start, JSON.stringify(types));
    // The fake sends the pieces back to back, so pieces that arrived together may go out
    // merged (as text deltas are): at least one delta, and they make the whole input.
    assert.ok(deltas.length >= 1, JSON.stringify(types));
    assert.deepEqual(JSON.parse(deltas.map((d) => d.inputTextDelta).join("")), { timeZone: "Asia/Tokyo" });
    assert.ok(deltas.every((d) => d.toolCallId === chunks[start].toolCallId));
    assert.equal(ui.parts.find((p) => p.type === "tool-current_time")?.state, "output-available");
  });

  test("2. the next turn's request carries the tool_use and tool_result blocks", async () => {
    const chatId = uid("a-context");
    const ann = await connect(stack.natter.url, { query: { userId: "ann" } });
    try {
      await ann.emit("chat:join", { chatId });
      const first = await say(ann, chatId, '[fake:tooluse name=current_time input={"timeZone":"UTC"}] time');
      const reply = await ann.waitFor("ai:message", (m) => m.requestId === first);
      const call = ann.of("ai:tool_call").find((c) => c.requestId === first);
      const result = ann.of("ai:tool_result").find((r) => r.requestId === first);
      const second = await say(ann, chatId, "thanks");
      await ann.waitFor("ai:message", (m) => m.requestId === second);
      const { last_messages_request: last } = await stack.upstream.stats();
      const messages = last.body.messages;
      const blocks = messages.flatMap((m) => (Array.isArray(m.content) ? m.content.map((b) => ({ role: m.role, ...b })) : []));
      const use = blocks.find((b) => b.type === "tool_use");
      const res = blocks.find((b) => b.type === "tool_result");
      assert.ok(use && res, JSON.stringify(messages));
      assert.equal(use.role, "assistant");
      assert.equal(use.id, call.toolCallId);
      assert.deepEqual(use.input, { timeZone: "UTC" });
      assert.equal(res.role, "user");
      assert.equal(res.tool_use_id, call.toolCallId);
      assert.deepEqual(JSON.parse(res.content), result.result);
      assert.ok(messages.some((m) => m.role === "assistant" && m.content === reply.text));
      assert.equal(messages.at(-1).content, "thanks");
    } finally {
      ann.close();
    }
  });
});

describe("tool follow-ups across two nodes (PostgreSQL + Redis)", () => {
  let c;
  before(async () => {
    c = await clusterOrSkip({ nodes: 2 });
  });
  after(async () => {
    await c?.stop();
  });

  test("tools declared on one node reach the turn another node runs; a plain join on the first node gets the pending call and answers it", clusterTestOptions(), async () => {
    const chatId = uid("cluster-tools");
    const ann = await connect(c.urls[0], { transports: ["websocket"], query: { userId: "ann" } });
    const bob = await connect(c.urls[1], { transports: ["websocket"], query: { userId: "bob" } });
    let carl;
    try {
      await ann.emit("chat:join", { chatId });
      await bob.emit("chat:join", { chatId });
      // Node 1 takes the chat's lease with a first turn (and keeps it a few seconds).
      const warm = await say(bob, chatId, "[fake:tokens n=2] warm up", {}, "bob");
      await bob.waitFor("ai:message", (m) => m.requestId === warm);
      const tools = [{ name: "sign_off", description: "Ask for a signature", parameters: { type: "object" } }];
      const requestId = await say(ann, chatId, "[fake:toolcall name=sign_off args={}] sign?", { tools });
      const call = await ann.waitFor("ai:tool_call", (p) => p.requestId === requestId);
      assert.equal(call.executor, "client", "the declared tool was known to the node running the turn");

      carl = await connect(c.urls[0], { transports: ["websocket"], query: { userId: "carl" } });
      await carl.emit("chat:join", { chatId });
      const pending = await carl.waitFor("ai:tool_call", (p) => p.toolCallId === call.toolCallId, 3000);
      assert.equal(pending.pending, true);
      const answer = await carl.emit("ai:tool_result", { chatId, toolCallId: call.toolCallId, result: "signed" });
      assert.deepEqual(answer, { ok: true });
      const msg = await bob.waitFor("ai:message", (m) => m.requestId === requestId);
      assert.match(msg.text, /signed/);
    } finally {
      carl?.close();
      ann.close();
      bob.close();
    }
  });
});
