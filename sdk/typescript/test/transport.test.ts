// NatterChatTransport against the real binary, consumed with the `ai` package's own functions.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readUIMessageStream, type UIMessage, type UIMessageChunk } from "ai";
import { NatterChatTransport, type ServerToClientEvents } from "../src/index.js";
import { connect, startFakeUpstream, startNatter, tempDir, uid, until, type Natter, type Upstream } from "./harness.js";

type S2C = ServerToClientEvents;

let upstream: Upstream;
let natter: Natter;
let tmp: { dir: string; cleanup(): void };
const transports: NatterChatTransport[] = [];

before(async () => {
  tmp = tempDir();
  upstream = await startFakeUpstream();
  natter = await startNatter({ upstream, dataDir: tmp.dir });
});

after(async () => {
  for (const t of transports) t.close();
  await natter?.stop();
  upstream?.stop();
  tmp?.cleanup();
});

function transport(userId: string): NatterChatTransport {
  const t = new NatterChatTransport({ url: natter.url, userId });
  transports.push(t);
  return t;
}

function userMessage(text: string, id = uid("u")): UIMessage {
  return { id, role: "user", parts: [{ type: "text", text }] };
}

/** Tees the stream: one side is read by the `ai` package into a UIMessage, the other collected. */
async function consume(
  stream: ReadableStream<UIMessageChunk>,
): Promise<{ message: UIMessage | undefined; chunks: UIMessageChunk[]; errors: unknown[] }> {
  const [forSdk, forTest] = stream.tee();
  const chunks: UIMessageChunk[] = [];
  const collect = (async () => {
    for await (const c of forTest) chunks.push(c);
  })();
  let message: UIMessage | undefined;
  const errors: unknown[] = [];
  for await (const m of readUIMessageStream<UIMessage>({ stream: forSdk, onError: (e) => errors.push(e) })) message = m;
  await collect;
  return { message, chunks, errors };
}

const textOf = (m: UIMessage | undefined) => (m?.parts ?? []).map((p) => (p.type === "text" ? p.text : "")).join("");

test("sendMessages streams the turn; the assembled UIMessage equals the stored assistant message", async () => {
  const chatId = uid("chat");
  const observer = await connect(natter.url, { query: { userId: "obs" } });
  await observer.emit("chat:join", { chatId });
  const t = transport("ann");
  const sent = userMessage("[fake:tokens n=12] round trip");
  const stream = await t.sendMessages({ trigger: "submit-message", chatId, messageId: undefined, messages: [sent], abortSignal: undefined });
  const { message, chunks, errors } = await consume(stream);
  const stored = (await observer.waitFor("ai:message")) as S2C["ai:message"];
  assert.deepEqual(errors, []);
  assert.ok(message);
  assert.equal(message.id, stored.messageId, "start.messageId is the assistant message id");
  assert.equal(textOf(message), stored.text);
  assert.ok(stored.text.length > 0);
  const types = chunks.map((c) => c.type);
  assert.deepEqual(types.slice(0, 3), ["start", "start-step", "text-start"]);
  assert.deepEqual(types.slice(-3), ["text-end", "finish-step", "finish"]);
  // Deltas the upstream sent together are merged at the source, the same for every member:
  // one text-delta per ai:token event.
  const tokenEvents = observer.of("ai:token").filter((t) => (t as S2C["ai:token"]).messageId === stored.messageId);
  assert.equal(types.filter((x) => x === "text-delta").length, tokenEvents.length);
  const finish = chunks.at(-1);
  assert.equal(finish?.type === "finish" ? finish.finishReason : undefined, "stop");
  // The user message kept its UIMessage id on the wire.
  const relayed = (await observer.waitFor("chat:message")) as S2C["chat:message"];
  assert.equal(relayed.messageId, sent.id);
  assert.equal(relayed.text, "[fake:tokens n=12] round trip");
  observer.close();
});

test("the abort signal stops the turn: the stream ends with abort and the partial text is stored", async () => {
  const chatId = uid("chat");
  const observer = await connect(natter.url, { query: { userId: "obs" } });
  await observer.emit("chat:join", { chatId });
  const t = transport("ann");
  const controller = new AbortController();
  const stream = await t.sendMessages({
    trigger: "submit-message",
    chatId,
    messageId: undefined,
    messages: [userMessage("[fake:drip n=500 delay_ms=10] long")],
    abortSignal: controller.signal,
  });
  const reading = consume(stream);
  await until(() => observer.of("ai:token").length >= 5, "5 tokens");
  controller.abort();
  const { message, chunks } = await reading;
  const stored = (await observer.waitFor("ai:message")) as S2C["ai:message"];
  assert.equal(stored.finishReason, "aborted");
  assert.ok(stored.text.length > 0 && stored.text.length < 500 * 3);
  assert.equal(chunks.at(-1)?.type, "abort");
  assert.ok(!chunks.some((c) => c.type === "error"), "an abort is not an error");
  assert.equal(textOf(message), stored.text);
  observer.close();
});

test("regenerate-message sends the last user text again as a new message and streams a new turn", async () => {
  const chatId = uid("chat");
  const t = transport("ann");
  const first = userMessage("[fake:tokens n=3] again please");
  const one = await consume(
    await t.sendMessages({ trigger: "submit-message", chatId, messageId: undefined, messages: [first], abortSignal: undefined }),
  );
  assert.ok(one.message);
  const two = await consume(
    await t.sendMessages({
      trigger: "regenerate-message",
      chatId,
      messageId: one.message.id,
      messages: [first, one.message],
      abortSignal: undefined,
    }),
  );
  assert.ok(two.message);
  assert.notEqual(two.message.id, one.message.id);
  assert.equal(textOf(two.message), textOf(one.message), "the fake answers the same text the same way");
  // Sending the same user message id again is refused: its reply already exists.
  await assert.rejects(
    t.sendMessages({ trigger: "submit-message", chatId, messageId: undefined, messages: [first], abortSignal: undefined }),
    (e: unknown) => (e as { code?: string }).code === "duplicate",
  );
});

test("reconnectToStream: null with nothing running; a running turn from its start, then live", async () => {
  const chatId = uid("chat");
  const ann = transport("ann");
  // Nothing has run yet (the chat is created by the join).
  assert.equal(await ann.reconnectToStream({ chatId }), null);

  const observer = await connect(natter.url, { query: { userId: "obs" } });
  await observer.emit("chat:join", { chatId });
  const original = await ann.sendMessages({
    trigger: "submit-message",
    chatId,
    messageId: undefined,
    messages: [userMessage("[fake:drip n=60 delay_ms=15] resume me")],
    abortSignal: undefined,
  });
  await original.cancel(); // the page went away; the turn goes on
  await until(() => observer.of("ai:token").length >= 10, "10 tokens");

  // A new page: a fresh transport, whose socket has seen nothing of this turn.
  const reloaded = transport("ann");
  const resumed = await reloaded.reconnectToStream({ chatId });
  assert.ok(resumed, "a running turn is resumable");
  const { message, chunks } = await consume(resumed);
  const stored = (await observer.waitFor("ai:message")) as S2C["ai:message"];
  assert.equal(message?.id, stored.messageId);
  assert.equal(textOf(message), stored.text, "the resumed stream holds the whole turn, each token once");
  assert.equal(chunks[0]?.type, "start");
  assert.equal(chunks.at(-1)?.type, "finish");

  // Finished now: nothing to resume, on either transport.
  assert.equal(await reloaded.reconnectToStream({ chatId }), null);
  assert.equal(await ann.reconnectToStream({ chatId }), null);
  observer.close();
});

test("reconnectToStream returns null for a turn that failed", async () => {
  const chatId = uid("chat");
  const t = transport("ann");
  const { chunks, errors } = await consume(
    await t.sendMessages({
      trigger: "submit-message",
      chatId,
      messageId: undefined,
      messages: [userMessage("[fake:cut after=2] broken")],
      abortSignal: undefined,
    }),
  );
  const last = chunks.at(-1);
  assert.equal(last?.type, "error");
  assert.match(last?.type === "error" ? last.errorText : "", /^upstream_cut: /);
  assert.equal(errors.length, 1, "the ai package saw the error chunk");
  // The failed turn is not in the join ack's messages; the log replay shows its ai:error.
  const fresh = transport("ann");
  assert.equal(await fresh.reconnectToStream({ chatId }), null);
});

test("server-run tools map to tool chunks and a tool part, with a step boundary before the text after", async () => {
  const withTools = await startNatter({ upstream, dataDir: `${tmp.dir}/tools`, args: ["--tools", "current_time"] });
  try {
    const t = new NatterChatTransport({ url: withTools.url, userId: "ann" });
    transports.push(t);
    const chatId = uid("chat");
    const { message, chunks, errors } = await consume(
      await t.sendMessages({
        trigger: "submit-message",
        chatId,
        messageId: undefined,
        messages: [userMessage('[fake:toolcall name=current_time args={"timeZone":"Europe/Paris"}] now')],
        abortSignal: undefined,
      }),
    );
    assert.deepEqual(errors, []);
    const types = chunks.map((c) => c.type);
    const toolStart = types.indexOf("tool-input-start");
    assert.ok(toolStart > 0, `tool chunks in ${types}`);
    assert.deepEqual(types.slice(toolStart, toolStart + 5), [
      "tool-input-start",
      "tool-input-available",
      "tool-output-available",
      "finish-step",
      "start-step",
    ]);
    assert.equal(types.at(-1), "finish");
    const tool = message?.parts.find((p) => p.type === "tool-current_time");
    assert.ok(tool && "state" in tool, "the ai package built a tool part");
    assert.equal(tool.state, "output-available");
    assert.deepEqual("input" in tool ? tool.input : undefined, { timeZone: "Europe/Paris" });
    // The text after the tool is the stored reply's text (the whole turn's tokens).
    const chat = t.chat(chatId);
    const ack = await chat.rejoin();
    const stored = ack.messages.at(-1);
    assert.equal(stored?.role, "assistant");
    assert.equal(textOf(message), stored?.text);
  } finally {
    await withTools.stop();
  }
});

test("client-run tools follow the SDK's round trip: finish tool-calls, then the answered message continues the turn", async () => {
  const chatId = uid("chat");
  const observer = await connect(natter.url, { query: { userId: "obs" } });
  await observer.emit("chat:join", { chatId });
  const t = transport("ann");
  const user = userMessage('[fake:toolcall name=pick_color args={"palette":"cool"}] pick');
  const tools = [{ name: "pick_color", description: "Picks a colour", parameters: { type: "object" } }];
  const first = await consume(
    await t.sendMessages({ trigger: "submit-message", chatId, messageId: undefined, messages: [user], abortSignal: undefined, body: { tools } }),
  );
  const finish = first.chunks.at(-1);
  assert.equal(finish?.type === "finish" ? finish.finishReason : finish?.type, "tool-calls");
  const assistant = first.message;
  assert.ok(assistant);
  const call = assistant.parts.find((p) => p.type === "tool-pick_color");
  assert.ok(call && "state" in call && call.state === "input-available");

  // What addToolOutput does to the message, then the SDK sends it back.
  const answered: UIMessage = {
    ...assistant,
    parts: assistant.parts.map((p) => (p === call ? { ...call, state: "output-available", output: "teal" } : p)) as UIMessage["parts"],
  };
  const stream = await t.sendMessages({
    trigger: "submit-message",
    chatId,
    messageId: undefined,
    messages: [user, answered],
    abortSignal: undefined,
  });
  const [forSdk, forTest] = stream.tee();
  const chunks: UIMessageChunk[] = [];
  const collect = (async () => {
    for await (const c of forTest) chunks.push(c);
  })();
  let final: UIMessage | undefined;
  for await (const m of readUIMessageStream<UIMessage>({ message: answered, stream: forSdk })) final = m;
  await collect;

  const stored = (await observer.waitFor("ai:message")) as S2C["ai:message"];
  assert.equal(chunks[0]?.type === "start" ? chunks[0].messageId : undefined, assistant.id, "the same assistant message goes on");
  assert.equal(final?.id, stored.messageId);
  assert.match(stored.text, /teal/);
  assert.equal(textOf(final), stored.text);
  assert.equal(chunks.at(-1)?.type, "finish");
  observer.close();
});
