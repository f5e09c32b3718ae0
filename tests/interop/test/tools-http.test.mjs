// Client-run tools on the HTTP faces: the AI SDK's own round trip (AbstractChat with
// onToolCall + addToolOutput + lastAssistantMessageIsCompleteWithToolCalls), and seed 002's
// client_action / client_action_callback over POST + SSE.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { AbstractChat, DefaultChatTransport, lastAssistantMessageIsCompleteWithToolCalls } from "ai";
import { EventSource } from "eventsource";
import { connect, sleep, startStack, tempDir, uid } from "../lib/harness.mjs";

/** The minimal ChatState a Node app needs for the SDK's AbstractChat (React brings its own). */
class NodeChat extends AbstractChat {
  constructor(init) {
    const state = {
      status: "ready",
      error: undefined,
      messages: [],
      pushMessage(m) {
        this.messages = [...this.messages, m];
      },
      popMessage() {
        this.messages = this.messages.slice(0, -1);
      },
      replaceMessage(i, m) {
        this.messages = this.messages.map((old, j) => (j === i ? m : old));
      },
      snapshot: (x) => structuredClone(x),
    };
    super({ ...init, state });
    this.nodeState = state;
  }
}

async function waitFor(pred, what, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe("client-run tools over HTTP", () => {
  let stack;
  let tmp;
  before(async () => {
    tmp = tempDir();
    const config = path.join(tmp.dir, "natter.toml");
    writeFileSync(
      config,
      `[[client_tools]]
name = "pick_color"
description = "Ask the user to pick a color"
parameters = { type = "object", properties = { palette = { type = "string" } } }
`,
    );
    stack = await startStack({ args: ["--config", config] });
  });
  after(async () => {
    await stack?.stop();
    tmp?.cleanup();
  });

  test("the ai package's own client-tool round trip ends in the final text on one message", async () => {
    const chatId = uid("sdk-tool");
    const calls = [];
    const chat = new NodeChat({
      id: chatId,
      transport: new DefaultChatTransport({ api: `${stack.natter.url}/api/chat`, body: { userId: "ann" } }),
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
      onToolCall: async ({ toolCall }) => {
        calls.push(toolCall);
        // Not awaited, as the SDK's docs advise (it would wait for the stream to end).
        chat.addToolOutput({ tool: toolCall.toolName, toolCallId: toolCall.toolCallId, output: { color: "teal" } });
      },
    });
    await chat.sendMessage({ text: '[fake:toolcall name=pick_color args={"palette":"warm"}] pick one' });
    const last = await waitFor(() => {
      const m = chat.nodeState.messages.at(-1);
      return chat.nodeState.status === "ready" && m?.role === "assistant" && m.parts.some((p) => p.type === "text" && p.text.includes("Tool said"))
        ? m
        : null;
    }, "the final text");
    assert.equal(chat.nodeState.error, undefined);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].toolName, "pick_color");
    assert.deepEqual(calls[0].input, { palette: "warm" });
    // One assistant message carries the call, its output and the final text.
    const assistants = chat.nodeState.messages.filter((m) => m.role === "assistant");
    assert.equal(assistants.length, 1);
    const toolPart = last.parts.find((p) => p.type === "tool-pick_color");
    assert.equal(toolPart.state, "output-available");
    assert.deepEqual(toolPart.output, { color: "teal" });
    const text = last.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
    assert.match(text, /teal/);

    // The log agrees: the stored reply has the same id and the final text.
    const res = await fetch(`${stack.natter.url}/api/v1/chats/${chatId}/messages`);
    const { messages } = await res.json();
    const reply = messages.filter((m) => m.role === "ai").at(-1);
    assert.equal(reply.id, last.id);
    assert.match(reply.content, /teal/);
  });

  test("a continuation with no waiting call is refused with no_active_turn", async () => {
    const res = await fetch(`${stack.natter.url}/api/chat`, {
      method: "POST",
      body: JSON.stringify({
        id: uid("none"),
        trigger: "submit-message",
        messages: [
          { id: uid("a"), role: "assistant", parts: [{ type: "tool-pick_color", toolCallId: "nope", state: "output-available", input: {}, output: 1 }] },
        ],
      }),
    });
    assert.equal(res.status, 409);
    assert.equal((await res.json()).error.code, "no_active_turn");
  });

  test("seed 002: client_action out over SSE, client_action_callback in, the reply follows", async () => {
    const base = `${stack.natter.url}/api/v1/chat`;
    const post = async (op, body) => {
      const r = await fetch(`${base}/${op}`, { method: "POST", body: JSON.stringify({ orgId: "default", userId: "ann", ...body }) });
      return { status: r.status, body: await r.json() };
    };
    const { body: created } = await post("create", {});
    const chatKey = created.chatKey;
    const es = new EventSource(`${base}/stream?orgId=default&userId=ann&chatKey=${chatKey}`);
    const events = [];
    for (const type of ["client_action", "message", "agent_execution_ended"]) {
      es.addEventListener(type, (e) => events.push({ type, id: e.lastEventId, data: JSON.parse(e.data) }));
    }
    try {
      await new Promise((r) => es.addEventListener("reconnected", r, { once: true }));
      await post("send", { chatKey, message: { id: uid("m"), content: "[fake:toolcall name=pick_color args={}] go" } });
      const action = await waitFor(() => events.find((e) => e.type === "client_action"), "client_action");
      assert.equal(action.data.data.name, "pick_color");
      assert.ok(Number(action.id) > 0, "client_action carries its seq as the SSE id");
      const toolCallId = action.data.data.toolCallId;

      const answered = await post("event", { type: "client_action_callback", chatKey, data: { toolCallId, result: "magenta" } });
      assert.equal(answered.status, 200);
      const again = await post("event", { type: "client_action_callback", chatKey, data: { toolCallId, result: "red" } });
      assert.equal(again.status, 404);
      assert.equal(again.body.error.code, "not_found");
      const missing = await post("event", { type: "client_action_callback", chatKey, data: {} });
      assert.equal(missing.status, 400);

      const reply = await waitFor(
        () => events.find((e) => e.type === "message" && e.data.message.role === "ai"),
        "the AI reply",
      );
      assert.match(reply.data.message.content, /magenta/);
      await waitFor(() => events.find((e) => e.type === "agent_execution_ended"), "agent_execution_ended");
    } finally {
      es.close();
    }
  });
});

describe("client-run tools declared with a message", () => {
  let stack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.stop();
  });

  test("AI SDK: tools in the request body make a client-run call the SDK answers", async () => {
    const chat = new NodeChat({
      id: uid("declared"),
      transport: new DefaultChatTransport({
        api: `${stack.natter.url}/api/chat`,
        body: { userId: "ann", tools: [{ name: "confirm", description: "Ask the user", parameters: { type: "object" } }] },
      }),
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
      onToolCall: async ({ toolCall }) => {
        chat.addToolOutput({ tool: toolCall.toolName, toolCallId: toolCall.toolCallId, output: "yes" });
      },
    });
    await chat.sendMessage({ text: "[fake:toolcall name=confirm args={}] sure?" });
    const last = await waitFor(() => {
      const m = chat.nodeState.messages.at(-1);
      return chat.nodeState.status === "ready" && m?.parts.some((p) => p.type === "text" && p.text.includes("Tool said")) ? m : null;
    }, "the final text");
    assert.equal(last.parts.find((p) => p.type === "tool-confirm")?.state, "output-available");
  });

  test("Socket.IO: tools on user:message; a member answers; bad declarations are refused", async () => {
    const ann = await connect(stack.natter.url, { query: { userId: "ann" } });
    const bob = await connect(stack.natter.url, { query: { userId: "bob" } });
    try {
      const chatId = uid("declared-sio");
      await ann.emit("chat:join", { chatId });
      await bob.emit("chat:join", { chatId });
      const bad = await ann.emit("user:message", {
        chatId, messageId: uid("m"), userId: "ann", text: "x", tools: [{ name: "has space" }],
      });
      assert.equal(bad.ok, false);
      assert.equal(bad.error.code, "invalid_field");
      const ack = await ann.emit("user:message", {
        chatId, messageId: uid("m"), userId: "ann", text: "[fake:toolcall name=confirm args={}] ok?",
        tools: [{ name: "confirm", description: "Ask", parameters: { type: "object" } }],
      });
      assert.equal(ack.ok, true);
      const call = await bob.waitFor("ai:tool_call", (c) => c.chatId === chatId);
      assert.equal(call.executor, "client");
      const answer = await bob.emit("ai:tool_result", { chatId, toolCallId: call.toolCallId, result: "fine" });
      assert.equal(answer.ok, true);
      const done = await ann.waitFor("ai:message", (m) => m.chatId === chatId);
      assert.match(done.text, /fine/);
    } finally {
      ann.close();
      bob.close();
    }
  });
});
