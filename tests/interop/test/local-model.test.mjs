// The offline local model (SmolLM2-135M-Instruct on llama.cpp) through the real binary and
// stock clients (socket.io-client, the `ai` package's DefaultChatTransport): a real reply,
// abort mid-generation, tools not offered (and the reply saying so), and provider selection.
// Needs the model file: NATTER_MODEL_PATH (scripts/test sets it after `natter model pull`).
// Without it the tests skip loudly, except under CI=true, where they fail.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { spawn } from "node:child_process";
import path from "node:path";
import { DefaultChatTransport } from "ai";
import { binDir, connect, joinTokens, startNatter, tempDir, uid } from "../lib/harness.mjs";

const modelPath = process.env.NATTER_MODEL_PATH;
const haveModel = !!modelPath && fs.existsSync(modelPath);
if (!haveModel) {
  const why = `local model tests: no model file (NATTER_MODEL_PATH=${modelPath ?? "unset"}); run \`natter model pull\``;
  if (process.env.CI === "true") throw new Error(why);
  console.error(`\n!!! SKIPPED: ${why}\n`);
}

/** A member in a fresh chat. */
async function member(natter) {
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  await ann.emit("chat:join", { chatId });
  return { chatId, ann };
}

async function ask(client, chatId, text, timeoutMs = 60000) {
  const requestId = uid("req");
  const ack = await client.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text, requestId });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return requestId;
}

describe("local model", { skip: !haveModel && "no model file" }, () => {
  let tmp, natter;
  before(async () => {
    tmp = tempDir();
    natter = await startNatter({
      dataDir: tmp.dir,
      // Greedy decoding, so the answer below is the model's most likely one.
      args: ["--provider", "local", "--model-path", modelPath, "--local-temperature", "0", "--local-max-tokens", "400"],
      env: { OPENAI_API_KEY: "" },
    });
  });
  after(async () => {
    await natter?.stop();
    tmp?.cleanup();
  });

  test("a real reply streams token by token and is stored", async () => {
    const { chatId, ann } = await member(natter);
    const requestId = await ask(ann, chatId, "What is the capital of France? Answer in one sentence.");
    const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId, 60000);
    const tokens = ann.of("ai:token").filter((t) => t.requestId === requestId);
    assert.match(msg.text, /Paris/);
    assert.equal(msg.finishReason, "stop");
    assert.equal(joinTokens(tokens), msg.text);
    assert.ok(tokens.length >= 3, `streamed in pieces, got ${tokens.length}`);
    assert.ok(msg.usage.promptTokens > 20, "the ChatML prompt with its system message");
    assert.ok(msg.usage.completionTokens >= tokens.length);
    // Stored like any reply: the history has it with the same text.
    const res = await fetch(`${natter.url}/api/v1/chats/${encodeURIComponent(chatId)}/messages?userId=ann`);
    const page = await res.json();
    assert.equal(page.messages.at(-1).content, msg.text);
    ann.close();
  });

  test("non-ASCII text reaches the client as whole characters", async () => {
    const { chatId, ann } = await member(natter);
    const requestId = await ask(ann, chatId, "Write the word café three times, then the emoji 😀.");
    const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId, 60000);
    const tokens = ann.of("ai:token").filter((t) => t.requestId === requestId);
    // Greedy SmolLM2 answers with accented letters and emoji, which byte-level BPE splits
    // across tokens: each streamed piece must still be whole characters.
    assert.match(msg.text, /é/);
    assert.match(msg.text, /\p{Extended_Pictographic}/u);
    for (const t of tokens) assert.ok(!t.token.includes("\uFFFD"), `a broken character in ${JSON.stringify(t.token)}`);
    assert.equal(joinTokens(tokens), msg.text);
    ann.close();
  });

  test("tools are not offered to the local model, and the reply says so on every face", async () => {
    const weather = { name: "get_weather", description: "The weather in a city", parameters: { type: "object", properties: { city: { type: "string" } } } };
    const expectWarning = (warnings, where) => {
      assert.equal(warnings?.length, 1, `${where}: ${JSON.stringify(warnings)}`);
      assert.equal(warnings[0].code, "tools_not_offered", where);
      assert.match(warnings[0].message, /local provider cannot call tools.*get_weather/, where);
    };

    // Socket.IO: tools declared on user:message.
    const { chatId, ann } = await member(natter);
    const requestId = uid("req");
    const ack = await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "What is the weather in Paris?", requestId, tools: [weather] });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId, 60000);
    assert.ok(msg.text.length > 0, "the model still answers, in text");
    expectWarning(msg.warnings, "ai:message");
    assert.equal(ann.of("ai:tool_call").length, 0, "no tool call");
    // Stored with the reply: history REST and a later join's messages carry it too.
    const page = await (await fetch(`${natter.url}/api/v1/chats/${encodeURIComponent(chatId)}/messages?userId=ann`)).json();
    expectWarning(page.messages.at(-1).warnings, "history REST");
    const late = await connect(natter.url, { query: { userId: "bea" } });
    const joined = await late.emit("chat:join", { chatId });
    expectWarning(joined.messages.at(-1).warnings, "join ack");
    late.close();

    // A turn without tools has no warnings.
    const plain = await ask(ann, chatId, "Say hello.");
    const plainMsg = await ann.waitFor("ai:message", (m) => m.requestId === plain, 60000);
    assert.equal(plainMsg.warnings, undefined);
    ann.close();

    // The AI SDK face: tools in the transport's body; the warning is in the finish chunk's
    // messageMetadata.
    const transport = new DefaultChatTransport({ api: `${natter.url}/api/chat`, body: { userId: "ann", tools: [weather] } });
    const stream = await transport.sendMessages({
      chatId: uid("sdk-local"),
      messages: [{ id: uid("u"), role: "user", parts: [{ type: "text", text: "What is the weather in Rome?" }] }],
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: undefined,
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const finish = chunks.find((c) => c.type === "finish");
    assert.ok(finish, `a finish chunk in ${JSON.stringify(chunks.map((c) => c.type))}`);
    expectWarning(finish.messageMetadata?.warnings, "AI SDK finish");
    assert.ok(!chunks.some((c) => c.type.startsWith("tool-")), "no tool chunk");
  });

  test("ai:abort stops the generation; the model is free for the next turn", async () => {
    const { chatId, ann } = await member(natter);
    const requestId = await ask(ann, chatId, "Write a very long story about a dragon who learns to bake bread. Make it at least 1000 words.");
    await ann.until((evs) => evs.filter((e) => e.event === "ai:token" && e.payload.requestId === requestId).length >= 5, 60000, "5 tokens");
    const ack = await ann.emit("ai:abort", { chatId, reason: "enough" });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    const msg = await ann.waitFor("ai:message", (m) => m.requestId === requestId, 20000);
    assert.equal(msg.finishReason, "aborted");
    assert.ok(msg.text.length > 0);
    const tokensAtAbort = ann.of("ai:token").filter((t) => t.requestId === requestId).length;
    assert.ok(msg.usage === undefined || msg.usage.completionTokens < 400, "stopped well before max tokens");
    // With one worker, the next reply can only come if the aborted generation let go of it.
    const next = await ask(ann, chatId, "Say hello.");
    const reply = await ann.waitFor("ai:message", (m) => m.requestId === next, 60000);
    // The model ended the reply itself or ran to its token limit: either way it generated
    // again. Which one depends on the aborted text before it (where the abort landed), so a
    // real model sometimes rambles to the limit (seen once in CI-like runs: "length").
    assert.ok(["stop", "length"].includes(reply.finishReason), `next turn finished: ${reply.finishReason}`);
    assert.ok(reply.text.length > 0, "the next turn generated text");
    assert.equal(ann.of("ai:token").filter((t) => t.requestId === requestId).length, tokensAtAbort, "no token of the aborted turn after its end");
    ann.close();
  });
});

/** Runs `natter serve` with `args` until it prints `pattern` or exits; returns its output. */
function serveOutput(args, env, pattern, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const clean = { ...process.env };
    for (const k of ["OPENAI_API_KEY", "NATTER_API_KEY", "ANTHROPIC_API_KEY", "NATTER_PROVIDER", "NATTER_MODEL_PATH"]) delete clean[k];
    const proc = spawn(path.join(binDir, "natter"), ["serve", "--listen", "127.0.0.1:0", ...args], { env: { ...clean, ...env } });
    let out = "";
    const timer = setTimeout(() => (proc.kill("SIGKILL"), reject(new Error(`no match in ${timeoutMs} ms: ${out}`))), timeoutMs);
    const check = () => {
      if (pattern.test(out)) {
        clearTimeout(timer);
        proc.kill("SIGKILL");
        resolve(out);
      }
    };
    proc.stdout.on("data", (d) => ((out += d), check()));
    proc.stderr.on("data", (d) => ((out += d), check()));
    proc.on("exit", (code) => {
      clearTimeout(timer);
      resolve(`${out}\n[exit ${code}]`);
    });
  });
}

describe("provider selection", () => {
  test("--provider local without the model file is a startup error that says how to get it", async () => {
    const tmp = tempDir();
    const out = await serveOutput(["--database", `sqlite://${tmp.dir}/n.db`, "--provider", "local", "--model-path", `${tmp.dir}/none.gguf`], {}, /\[exit/);
    assert.match(out, /no model file at .*none\.gguf/);
    assert.match(out, /natter model pull/);
    assert.match(out, /\[exit 1\]/);
    tmp.cleanup();
  });

  test("with no provider and no model, the demo provider says how to get the model", async () => {
    const tmp = tempDir();
    const out = await serveOutput(["--database", `sqlite://${tmp.dir}/n.db`, "--model-path", `${tmp.dir}/none.gguf`], {}, /listening|\[exit/);
    assert.match(out, /DEMO provider/);
    assert.match(out, /natter model pull/);
    tmp.cleanup();
  });

  test("with no provider and the model present, the local model is the default", { skip: !haveModel && "no model file" }, async () => {
    const tmp = tempDir();
    const out = await serveOutput(["--database", `sqlite://${tmp.dir}/n.db`], { NATTER_MODEL_PATH: modelPath }, /listening|\[exit/, 60000);
    assert.match(out, /local model loaded/);
    assert.doesNotMatch(out, /DEMO/);
    tmp.cleanup();
  });
});
