// Edges of the HTTP faces: shutdown with streams open, wrong methods, and an SSE
// Last-Event-ID the log cannot replay from.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { startStack, sleep, uid } from "../lib/harness.mjs";

test("SIGTERM closes open SSE streams and WebSockets and the server exits", async () => {
  const stack = await startStack({ args: ["--shutdown-grace-secs", "1"] });
  const { url } = stack.natter;
  try {
    const base = `${url}/api/v1/chat`;
    const created = await fetch(`${base}/create`, { method: "POST", body: JSON.stringify({ userId: "ann" }) });
    const { chatKey } = await created.json();
    const sse = await fetch(`${base}/stream?userId=ann&chatKey=${chatKey}`);
    assert.equal(sse.status, 200);
    const sseDone = (async () => {
      const reader = sse.body.getReader();
      for (;;) if ((await reader.read()).done) return "ended";
    })();

    // A slow AI SDK turn, followed by a resumed stream.
    const chatId = uid("shutdown");
    const post = await fetch(`${url}/api/chat`, {
      method: "POST",
      body: JSON.stringify({
        id: chatId,
        trigger: "submit-message",
        messages: [{ id: uid("m"), role: "user", parts: [{ type: "text", text: "[fake:drip n=400 delay_ms=50] go" }] }],
      }),
    });
    assert.equal(post.status, 200);
    const postText = post.text();

    const ws = new WebSocket(`${url.replace("http", "ws")}/api/chat/ws`);
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    const wsClosed = new Promise((resolve) => ws.once("close", () => resolve("closed")));
    await sleep(300);

    const exited = stack.natter.stop("SIGTERM");
    const timeout = (ms) => sleep(ms).then(() => "timeout");
    assert.notEqual(await Promise.race([exited, timeout(10000)]), "timeout", "natter did not exit");
    assert.equal(await Promise.race([sseDone, timeout(1000)]), "ended");
    assert.equal(await Promise.race([wsClosed, timeout(1000)]), "closed");
    // The turn ended for shutdown, as a stream error chunk, and the stream was completed.
    const body = await postText;
    const chunks = body.split("\n\n").filter(Boolean).map((l) => l.replace(/^data: /, ""));
    assert.equal(chunks.at(-1), "[DONE]");
    const last = JSON.parse(chunks.at(-2));
    assert.equal(last.type, "error");
    assert.match(last.errorText, /^shutdown: /);
  } finally {
    await stack.stop();
  }
});

test("a known HTTP path with the wrong method answers 405 in the JSON error shape", async () => {
  const stack = await startStack();
  try {
    for (const [method, path] of [["PUT", "/api/v1/chats/x"], ["GET", "/api/v1/chat/send"], ["DELETE", "/api/chat"]]) {
      const res = await fetch(`${stack.natter.url}${path}`, { method });
      assert.equal(res.status, 405, `${method} ${path}`);
      const body = await res.json();
      assert.equal(body.error.code, "method_not_allowed");
      assert.match(body.error.message, new RegExp(`^${method} is not allowed`));
    }
  } finally {
    await stack.stop();
  }
});

test("an SSE Last-Event-ID the log cannot replay from gets the whole chat as load_chat_response", async () => {
  const stack = await startStack();
  try {
    const base = `${stack.natter.url}/api/v1/chat`;
    const post = async (op, body) =>
      (await fetch(`${base}/${op}`, { method: "POST", body: JSON.stringify({ userId: "ann", ...body }) })).json();
    const { chatKey } = await post("create", {});
    await post("send", { chatKey, message: { id: uid("m"), content: "hello" } });
    for (let i = 0; i < 200; i++) {
      const { chat } = await post("load", { chatKey });
      if (chat.messages.length === 2) break;
      await sleep(25);
    }
    const ctrl = new AbortController();
    const res = await fetch(`${base}/stream?userId=ann&chatKey=${chatKey}`, {
      headers: { "last-event-id": "999" },
      signal: ctrl.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let text = "";
    const deadline = Date.now() + 5000;
    while (!text.includes("event: load_chat_response") && Date.now() < deadline) {
      text += decoder.decode((await reader.read()).value ?? new Uint8Array(), { stream: true });
    }
    ctrl.abort();
    const block = text.split("\n\n").find((b) => b.startsWith("event: load_chat_response"));
    assert.ok(block, `no load_chat_response in ${text}`);
    const event = JSON.parse(block.split("\n").find((l) => l.startsWith("data: ")).slice(6));
    assert.equal(event.data.recovered, false);
    assert.equal(event.data.chat.key, chatKey);
    assert.deepEqual(event.data.chat.messages.map((m) => m.role), ["user", "ai"]);
  } finally {
    await stack.stop();
  }
});
