// Tools over Socket.IO and the AI SDK face: server-run tools (current_time, http_get),
// client-run tools ([[client_tools]] in the TOML config) answered by a member, timeouts,
// abort during a wait, replay after a reconnect, and the fake upstream's OpenAI-format
// `[fake:toolcall]` (including calls that reuse index 0).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { DefaultChatTransport, readUIMessageStream } from "ai";
import { connect, joinTokens, sleep, startFakeUpstream, startNatter, tempDir, uid } from "../lib/harness.mjs";

const CLIENT_TOOLS = `[[client_tools]]
name = "pick_color"
description = "Ask the people in the chat to pick a color"
parameters = { type = "object", properties = { palette = { type = "string" } } }
`;

let upstream;
let tmp;
let natter; // --tools current_time,http_get, client tool pick_color, default client timeout
let quick; // client tool pick_color, --client-tool-timeout-secs 0.5

before(async () => {
  tmp = tempDir();
  const config = path.join(tmp.dir, "natter.toml");
  writeFileSync(config, CLIENT_TOOLS);
  upstream = await startFakeUpstream();
  natter = await startNatter({
    upstream,
    dataDir: tmp.dir,
    args: ["--config", config, "--tools", "current_time,http_get", "--http-get-allow", `${upstream.url}/`],
  });
  const quickDir = path.join(tmp.dir, "quick");
  mkdirSync(quickDir);
  quick = await startNatter({ upstream, dataDir: quickDir, args: ["--config", config, "--client-tool-timeout-secs", "0.5"] });
});
after(async () => {
  await natter?.stop();
  await quick?.stop();
  upstream?.stop();
  tmp?.cleanup();
});

/** Two members (ann, bob) in a fresh chat on `server`. */
async function pair(server = natter) {
  const chatId = uid("tools");
  const ann = await connect(server.url, { query: { userId: "ann" } });
  const bob = await connect(server.url, { query: { userId: "bob" } });
  const joined = await ann.emit("chat:join", { chatId });
  await bob.emit("chat:join", { chatId });
  return { chatId, ann, bob, joined, close: () => (ann.close(), bob.close()) };
}

/** Sends `text` as ann; returns the requestId. */
async function say(client, chatId, text, userId = "ann") {
  const requestId = uid("req");
  const ack = await client.emit("user:message", { chatId, messageId: uid("m"), userId, text, requestId });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return requestId;
}

/** One turn's ai:* events as `client` saw them. */
const turnEvents = (client, requestId) =>
  client.events.filter((e) => e.event.startsWith("ai:") && e.payload?.requestId === requestId);

/** Event names with consecutive repeats collapsed (`ai:token` × n → one). */
const shape = (events) => events.map((e) => e.event).filter((name, i, all) => i === 0 || all[i - 1] !== name);

/** The fake upstream's recorded chat-completions bodies whose first user message contains `marker`. */
async function upstreamRequests(marker) {
  const { chat_requests: all } = await upstream.stats();
  return all.filter((b) => b.messages?.some((m) => m.role === "user" && String(m.content).includes(marker)));
}

describe("server-run tools over Socket.IO", () => {
  test("a. current_time: tokens, ai:tool_call, ai:tool_result, more tokens, ai:message; the model got the result", async () => {
    const { chatId, ann, bob, close } = await pair();
    const marker = uid("what-time");
    const requestId = await say(ann, chatId, `[fake:toolcall name=current_time args={"timeZone":"Europe/Paris"}] ${marker}`);
    for (const c of [ann, bob]) {
      const msg = await c.waitFor("ai:message", (m) => m.requestId === requestId);
      const events = turnEvents(c, requestId);
      assert.deepEqual(shape(events), [
        "ai:processing",
        "ai:token",
        "ai:tool_call",
        "ai:tool_result",
        "ai:token",
        "ai:message",
      ]);
      const callAt = events.findIndex((e) => e.event === "ai:tool_call");
      const tokens = events.filter((e) => e.event === "ai:token").map((e) => e.payload);
      const before = events.slice(0, callAt).filter((e) => e.event === "ai:token").map((e) => e.payload);
      assert.equal(joinTokens(before), "Calling current_time.");
      assert.equal(joinTokens(tokens), msg.text, "all the turn's tokens, across steps, make the text");

      const call = c.of("ai:tool_call").find((p) => p.requestId === requestId);
      const result = c.of("ai:tool_result").find((p) => p.requestId === requestId);
      assert.equal(call.chatId, chatId);
      assert.equal(call.executor, "server");
      assert.equal(call.name, "current_time");
      assert.deepEqual(call.arguments, { timeZone: "Europe/Paris" });
      assert.equal(call.messageId, msg.messageId);
      assert.equal(typeof call.toolCallId, "string");
      assert.equal(typeof call.seq, "number");
      assert.equal(result.toolCallId, call.toolCallId);
      assert.equal(result.name, "current_time");
      assert.equal(result.messageId, msg.messageId);
      assert.equal(result.seq, call.seq + 1);
      assert.equal(result.error, undefined);
      assert.match(result.result.iso, /(\+01:00|\+02:00)$/);
      assert.equal(result.result.timeZone, "Europe/Paris");
      assert.equal(msg.seq, result.seq + 1);
      assert.equal(msg.finishReason, "stop");
      assert.match(msg.text, /Tool said: /);
      assert.deepEqual(JSON.parse(msg.text.split("Tool said: ")[1]), result.result, "the model got the result JSON");
    }
    const ui = ann.of("ai:tool_call").find((p) => p.requestId === requestId);
    // The second model call carried the assistant's tool call, the tool message, and the tools.
    const reqs = await upstreamRequests(marker);
    assert.equal(reqs.length, 2, "one model call per step");
    for (const body of reqs) {
      assert.ok(body.tools.some((t) => t.type === "function" && t.function.name === "current_time"), JSON.stringify(body.tools));
    }
    const second = reqs[1].messages;
    const assistant = second.find((m) => m.role === "assistant" && m.tool_calls);
    assert.equal(assistant.tool_calls[0].id, ui.toolCallId);
    assert.equal(assistant.tool_calls[0].function.name, "current_time");
    assert.deepEqual(JSON.parse(assistant.tool_calls[0].function.arguments), { timeZone: "Europe/Paris" });
    const toolMsg = second.at(-1);
    assert.equal(toolMsg.role, "tool");
    assert.equal(toolMsg.tool_call_id, ui.toolCallId);
    assert.match(toolMsg.content, /"iso"/);
    close();
  });

  test("b. arguments that break the schema become the tool's error; the turn still ends in text", async () => {
    const { chatId, ann, close } = await pair();
    const requestId = await say(ann, chatId, '[fake:toolcall name=current_time args={"timeZone":5}] bad');
    const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId);
    const call = ann.of("ai:tool_call").find((p) => p.requestId === requestId);
    const result = ann.of("ai:tool_result").find((p) => p.requestId === requestId);
    assert.deepEqual(call.arguments, { timeZone: 5 }, "the arguments as the model sent them");
    assert.equal(result.result, undefined);
    assert.equal(typeof result.error, "string");
    assert.match(result.error, /schema/);
    assert.equal(result.seq, call.seq + 1);
    assert.equal(msg.finishReason, "stop");
    assert.match(msg.text, /Tool said: \{"error":/);
    assert.equal(joinTokens(ann.of("ai:token").filter((t) => t.requestId === requestId)), msg.text);
    close();
  });

  test("h. two calls at index 0 told apart by id: two calls, two results, both back to the model", async () => {
    const { chatId, ann, close } = await pair();
    const requestId = await say(ann, chatId, "[fake:toolcall name=current_time args={} calls=2 reuse_index=true split=2] twice");
    const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId);
    const calls = ann.of("ai:tool_call").filter((p) => p.requestId === requestId);
    const results = ann.of("ai:tool_result").filter((p) => p.requestId === requestId);
    assert.equal(calls.length, 2);
    assert.notEqual(calls[0].toolCallId, calls[1].toolCallId);
    assert.deepEqual(calls.map((c) => c.arguments), [{}, {}]);
    assert.equal(results.length, 2);
    assert.deepEqual(
      results.map((r) => r.toolCallId).sort(),
      calls.map((c) => c.toolCallId).sort(),
    );
    assert.ok(results.every((r) => r.result?.iso?.endsWith("+00:00")), JSON.stringify(results));
    const said = msg.text.split("Tool said: ")[1].split("; ");
    assert.equal(said.length, 2, msg.text);
    close();
  });

  test("i. http_get fetches under an allowed prefix and refuses a URL outside", async () => {
    const { chatId, ann, close } = await pair();
    const inside = await say(ann, chatId, `[fake:toolcall name=http_get args={"url":"${upstream.url}/stats"}] fetch`);
    await ann.waitFor("ai:message", (m) => m.requestId === inside);
    const ok = ann.of("ai:tool_result").find((p) => p.requestId === inside);
    assert.equal(ok.error, undefined, JSON.stringify(ok));
    assert.equal(ok.result.status, 200);

    const outside = await say(ann, chatId, '[fake:toolcall name=http_get args={"url":"http://127.0.0.1:9/secret"}] fetch');
    const msg = await ann.waitFor("ai:message", (m) => m.requestId === outside);
    const refused = ann.of("ai:tool_result").find((p) => p.requestId === outside);
    assert.equal(refused.result, undefined);
    assert.match(refused.error, /not under an allowed prefix/);
    assert.equal(msg.finishReason, "stop");
    close();
  });
});

describe("client-run tools over Socket.IO", () => {
  test("c. another member answers ai:tool_call; a second answer is not_found; the reply uses the result", async () => {
    const { chatId, ann, bob, close } = await pair();
    const requestId = await say(ann, chatId, '[fake:toolcall name=pick_color args={"palette":"cool"}] pick');
    const call = await bob.waitFor("ai:tool_call", (p) => p.requestId === requestId);
    assert.equal(call.executor, "client");
    assert.equal(call.name, "pick_color");
    assert.deepEqual(call.arguments, { palette: "cool" });
    // Every member sees the call.
    await ann.waitFor("ai:tool_call", (p) => p.requestId === requestId);

    const both = await bob.emit("ai:tool_result", { chatId, toolCallId: call.toolCallId, result: "teal", error: "no" });
    assert.equal(both.error?.code, "invalid_field");
    // A socket that is not in the chat cannot answer its calls.
    const stranger = await connect(natter.url, { query: { userId: "eve" } });
    const nowhere = await stranger.emit("ai:tool_result", { toolCallId: call.toolCallId, result: "black" });
    assert.equal(nowhere.error?.code, "chat_required");
    await stranger.emit("chat:join", { chatId: uid("elsewhere") });
    const foreign = await stranger.emit("ai:tool_result", { toolCallId: call.toolCallId, result: "black" });
    assert.equal(foreign.error?.code, "not_found");
    const named = await stranger.emit("ai:tool_result", { chatId, toolCallId: call.toolCallId, result: "black" });
    assert.equal(named.error?.code, "not_joined");
    stranger.close();
    // chatId is optional: the call is found among the socket's chats.
    const ack = await bob.emit("ai:tool_result", { toolCallId: call.toolCallId, result: "teal" });
    assert.deepEqual(ack, { ok: true });
    const again = await bob.emit("ai:tool_result", { chatId, toolCallId: call.toolCallId, result: "red" });
    assert.equal(again.ok, false);
    assert.equal(again.error.code, "not_found");

    const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId);
    const result = ann.of("ai:tool_result").find((p) => p.requestId === requestId);
    assert.equal(result.toolCallId, call.toolCallId);
    assert.equal(result.result, "teal");
    assert.equal(result.seq, call.seq + 1);
    assert.match(msg.text, /teal/);
    assert.doesNotMatch(msg.text, /red|black/);
    assert.equal(ann.of("ai:tool_result").filter((p) => p.requestId === requestId).length, 1);
    close();
  });

  test("d. nobody answers within --client-tool-timeout-secs: the error says so and the turn ends", async () => {
    const { chatId, ann, close } = await pair(quick);
    const requestId = await say(ann, chatId, "[fake:toolcall name=pick_color args={}] anyone?");
    const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId, 10000);
    const call = ann.of("ai:tool_call").find((p) => p.requestId === requestId);
    const result = ann.of("ai:tool_result").find((p) => p.requestId === requestId);
    assert.equal(call.executor, "client");
    assert.equal(result.result, undefined);
    assert.match(result.error, /no member of the chat answered/);
    assert.equal(msg.finishReason, "stop");
    assert.match(msg.text, /no member/);
    // Too late now.
    const late = await ann.emit("ai:tool_result", { chatId, toolCallId: call.toolCallId, result: "x" });
    assert.equal(late.error?.code, "not_found");
    close();
  });

  test("e. ai:abort during the wait ends the turn aborted; a late answer is not_found", async () => {
    const { chatId, ann, bob, close } = await pair();
    const requestId = await say(ann, chatId, "[fake:toolcall name=pick_color args={}] wait");
    const call = await bob.waitFor("ai:tool_call", (p) => p.requestId === requestId);
    const abort = await bob.emit("ai:abort", { chatId, reason: "never mind" });
    assert.deepEqual(abort, { ok: true, requestId });
    const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId);
    assert.equal(msg.finishReason, "aborted");
    assert.equal(msg.text, "Calling pick_color.");
    const late = await bob.emit("ai:tool_result", { chatId, toolCallId: call.toolCallId, result: "teal" });
    assert.equal(late.ok, false);
    assert.equal(late.error.code, "not_found");
    await sleep(200);
    assert.equal(ann.of("ai:tool_result").filter((p) => p.requestId === requestId).length, 0, "no result after the abort");
    assert.equal(ann.of("ai:message").filter((m) => m.requestId === requestId).length, 1);
    // The chat is free for the next turn.
    const next = await say(ann, chatId, "[fake:tokens n=2] next");
    await ann.waitFor("ai:message", (m) => m.requestId === next);
    close();
  });

  test("f. a rejoin with lastSeq replays ai:tool_call and ai:tool_result in order, with their seqs", async () => {
    const { chatId, ann, bob, joined, close } = await pair();
    ann.close();
    const requestId = await say(bob, chatId, "[fake:toolcall name=current_time args={}] while ann is away", "bob");
    await bob.waitFor("ai:message", (m) => m.requestId === requestId);

    const back = await connect(natter.url, { query: { userId: "ann" } });
    const ack = await back.emit("chat:join", { chatId, lastSeq: joined.seq, epoch: joined.epoch });
    assert.equal(ack.recovered, true);
    const replayed = back.events.filter((e) => typeof e.payload?.seq === "number");
    assert.deepEqual(
      replayed.map((e) => e.event),
      ["chat:message", "ai:tool_call", "ai:tool_result", "ai:message"],
    );
    const seqs = replayed.map((e) => e.payload.seq);
    assert.deepEqual(seqs, [1, 2, 3, 4].map((i) => joined.seq + i));
    assert.equal(ack.seq, seqs.at(-1));
    const [, call, result, msg] = replayed.map((e) => e.payload);
    const live = bob.of("ai:tool_call").find((p) => p.requestId === requestId);
    assert.deepEqual(call, live, "the replayed call is the live one");
    assert.equal(result.toolCallId, call.toolCallId);
    assert.equal(result.requestId, requestId);
    assert.match(result.result.iso, /\+00:00$/);
    assert.equal(msg.requestId, requestId);
    back.close();
    close();
  });

  test("j. a member joining with lastSeq during the wait gets the pending call in the replay and can answer it", async () => {
    const { chatId, ann, joined, close } = await pair();
    const requestId = await say(ann, chatId, "[fake:toolcall name=pick_color args={}] who picks?");
    const live = await ann.waitFor("ai:tool_call", (p) => p.requestId === requestId);
    const carl = await connect(natter.url, { query: { userId: "carl" } });
    const ack = await carl.emit("chat:join", { chatId, lastSeq: joined.seq, epoch: joined.epoch });
    assert.equal(ack.recovered, true);
    const replayed = carl.events.filter((e) => typeof e.payload?.seq === "number");
    assert.deepEqual(replayed.map((e) => e.event), ["chat:message", "ai:tool_call"]);
    assert.deepEqual(replayed[1].payload, live);
    const answer = await carl.emit("ai:tool_result", { chatId, toolCallId: live.toolCallId, result: "olive" });
    assert.deepEqual(answer, { ok: true });
    const msg = await carl.waitFor("ai:message", (m) => m.requestId === requestId);
    assert.match(msg.text, /olive/);
    // Then the running turn's tokens from index 0 (documented: after the ack), so all of them.
    assert.equal(joinTokens(carl.of("ai:token").filter((t) => t.requestId === requestId)), msg.text);
    carl.close();
    close();
  });

  test(
    "k. a member joining without lastSeq during the wait learns of the pending call (after the ack, marked pending)",
    async () => {
      const { chatId, ann, close } = await pair();
      const requestId = await say(ann, chatId, "[fake:toolcall name=pick_color args={}] who picks?");
      const live = await ann.waitFor("ai:tool_call", (p) => p.requestId === requestId);
      const carl = await connect(natter.url, { query: { userId: "carl" } });
      try {
        await carl.emit("chat:join", { chatId });
        const seen = await carl.waitFor("ai:tool_call", (p) => p.toolCallId === live.toolCallId, 1500);
        assert.equal(seen.executor, "client");
        assert.equal(seen.pending, true);
      } finally {
        await ann.emit("ai:tool_result", { chatId, toolCallId: live.toolCallId, result: "x" });
        await ann.waitFor("ai:message", (m) => m.requestId === requestId);
        carl.close();
        close();
      }
    },
  );
});

describe("server-run tools on the AI SDK face", () => {
  test("g. DefaultChatTransport: tool-input-*, tool-output-available, a step boundary, then the text", async () => {
    const transport = new DefaultChatTransport({ api: `${natter.url}/api/chat`, body: { userId: "web" } });
    const user = { id: uid("u"), role: "user", parts: [{ type: "text", text: '[fake:toolcall name=current_time args={"timeZone":"Europe/Paris"}] time?' }] };
    const stream = await transport.sendMessages({ chatId: uid("sdk-tools"), messages: [user], trigger: "submit-message", messageId: undefined, abortSignal: undefined });
    const [raw, forUi] = stream.tee();
    const uiDone = (async () => {
      let last;
      for await (const m of readUIMessageStream({ stream: forUi })) last = m;
      return last;
    })();
    const chunks = [];
    const reader = raw.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
    const types = chunks.map((c) => c.type);
    const at = (t) => types.indexOf(t);
    assert.equal(types[0], "start");
    assert.ok(at("tool-input-start") > at("text-delta"), JSON.stringify(types));
    assert.ok(at("tool-input-start") < at("tool-input-available"));
    assert.ok(at("tool-input-available") < at("tool-output-available"));
    const afterOutput = types.slice(at("tool-output-available") + 1);
    assert.deepEqual(afterOutput.slice(0, 3), ["finish-step", "start-step", "text-start"], JSON.stringify(types));
    assert.equal(types.at(-1), "finish");
    assert.equal(chunks.at(-1).finishReason, "stop");
    assert.equal(types.filter((t) => t === "error" || t === "tool-output-error").length, 0);

    const start = chunks[at("tool-input-start")];
    const input = chunks[at("tool-input-available")];
    const output = chunks[at("tool-output-available")];
    assert.equal(start.toolName, "current_time");
    assert.equal(input.toolCallId, start.toolCallId);
    assert.equal(input.input.timeZone, "Europe/Paris");
    assert.equal(output.toolCallId, start.toolCallId);
    assert.match(output.output.iso, /(\+01:00|\+02:00)$/);
    const text = chunks.filter((c) => c.type === "text-delta").map((c) => c.delta).join("");
    assert.match(text, /^Calling current_time\.Tool said: /);

    const ui = await uiDone;
    assert.equal(ui.role, "assistant");
    const toolPart = ui.parts.find((p) => p.type === "tool-current_time" || p.type === "dynamic-tool");
    assert.ok(toolPart, JSON.stringify(ui.parts));
    assert.equal(toolPart.state, "output-available");
    assert.equal(toolPart.toolCallId, start.toolCallId);
    assert.deepEqual(toolPart.input, { timeZone: "Europe/Paris" });
    assert.deepEqual(toolPart.output, output.output);
    assert.match(ui.parts.filter((p) => p.type === "text").map((p) => p.text).join(""), /Tool said/);
  });

  /** Reads a chunk stream in the background. */
  function collect(stream) {
    const chunks = [];
    const reader = stream.getReader();
    const done = (async () => {
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) return chunks;
        chunks.push(value);
      }
    })();
    return { chunks, done };
  }

  test("g2. a resume after a server tool round trip replays the tool chunks and the step boundary", async () => {
    const chatId = uid("sdk-resume");
    const ann = await connect(natter.url, { query: { userId: "ann" } });
    await ann.emit("chat:join", { chatId });
    // delay_ms keeps the second step streaming for a while after the tool result.
    const requestId = await say(ann, chatId, "[fake:toolcall name=current_time args={} delay_ms=150] slow");
    const result = await ann.waitFor("ai:tool_result", (p) => p.requestId === requestId);
    const transport = new DefaultChatTransport({ api: `${natter.url}/api/chat` });
    const stream = await transport.reconnectToStream({ chatId });
    assert.ok(stream, "the turn is still streaming");
    const chunks = await collect(stream).done;
    const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId);
    ann.close();
    const types = chunks.map((c) => c.type);
    assert.equal(chunks[0].messageId, msg.messageId);
    assert.equal(chunks.filter((c) => c.type === "text-delta").map((c) => c.delta).join(""), msg.text);
    // The whole turn so far, as the live stream had it (docs: "the whole turn so far").
    const input = chunks.find((c) => c.type === "tool-input-available");
    const output = chunks.find((c) => c.type === "tool-output-available");
    assert.ok(input && output, `tool chunks missing from the resumed stream: ${JSON.stringify(types)}`);
    assert.equal(output.toolCallId, result.toolCallId);
    assert.deepEqual(output.output, result.result);
    const afterOutput = types.slice(types.indexOf("tool-output-available") + 1);
    assert.deepEqual(afterOutput.slice(0, 3), ["finish-step", "start-step", "text-start"], JSON.stringify(types));
  });

  test("g3. a resume during a client tool wait carries the pending call, so the client can run it", async () => {
    const chatId = uid("sdk-resume-wait");
    const ann = await connect(natter.url, { query: { userId: "ann" } });
    await ann.emit("chat:join", { chatId });
    const requestId = await say(ann, chatId, '[fake:toolcall name=pick_color args={"palette":"warm"}] pick');
    const call = await ann.waitFor("ai:tool_call", (p) => p.requestId === requestId);
    const transport = new DefaultChatTransport({ api: `${natter.url}/api/chat` });
    const stream = await transport.reconnectToStream({ chatId });
    assert.ok(stream, "the turn is still running");
    const got = collect(stream);
    try {
      const deadline = Date.now() + 1500;
      while (!got.chunks.some((c) => c.type === "tool-input-available") && Date.now() < deadline) await sleep(20);
      const input = got.chunks.find((c) => c.type === "tool-input-available");
      assert.ok(input, `no tool-input-available for the waiting call: ${JSON.stringify(got.chunks.map((c) => c.type))}`);
      assert.equal(input.toolCallId, call.toolCallId);
      assert.deepEqual(input.input, { palette: "warm" });
    } finally {
      await ann.emit("ai:tool_result", { chatId, toolCallId: call.toolCallId, result: "amber" });
      await ann.waitFor("ai:message", (m) => m.requestId === requestId);
      await got.done.catch(() => {});
      ann.close();
    }
  });
});
