// The handshake: chats joined at connect, refused handshakes, cross-origin browsers.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { connect, startStack, uid } from "../lib/harness.mjs";

let stack, natter, upstream;
before(async () => ({ natter, upstream } = stack = await startStack()));
after(() => stack?.stop());

test("an event sent the moment the socket connects lands in the handshake's chat", async () => {
  for (let i = 0; i < 20; i++) {
    const chatId = uid("hs");
    const socket = io(natter.url, { forceNew: true, reconnection: false, transports: ["websocket"], query: { chatId, userId: "ann" } });
    // Emitted before the connection is up: socket.io-client sends it right after CONNECT.
    const ack = await socket.timeout(10000).emitWithAck("user:message", { messageId: uid("m"), text: "[fake:tokens n=1] hi" });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.equal(ack.chatId, chatId);
    assert.equal(ack.seq, 2);
    socket.close();
  }
});

test("a handshake with an over-long userId is refused with connect_error", async () => {
  await assert.rejects(
    connect(natter.url, { query: { userId: "u".repeat(300) } }),
    (err) => /userId/.test(err.message) && /256/.test(err.message),
  );
  // The server keeps serving.
  const ok = await connect(natter.url, { query: { userId: "fine" } });
  assert.equal((await ok.emit("chat:join", { chatId: uid("c") })).ok, true);
  ok.close();
});

test("browsers on other origins may connect (CORS preflight and polling)", async () => {
  const pre = await fetch(`${natter.url}/socket.io/?EIO=4&transport=polling`, {
    method: "OPTIONS",
    headers: { Origin: "http://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type" },
  });
  assert.ok(pre.status < 300, `preflight status ${pre.status}`);
  assert.equal(pre.headers.get("access-control-allow-origin"), "*");
  const open = await fetch(`${natter.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: "http://app.example" } });
  assert.equal(open.status, 200);
  assert.equal(open.headers.get("access-control-allow-origin"), "*");
  assert.match(await open.text(), /^0\{"sid"/);
});

test("an unnamed connection takes the userId of its first applied event, not of a refused one", async () => {
  const chatId = uid("chat");
  const c = await connect(natter.url); // no userId in the handshake
  assert.equal((await c.emit("chat:join", { chatId })).ok, true); // joins anonymously
  // Refused by the core (text over the limit) after the userId hint was read: no trace.
  const refused = await c.emit("user:message", { chatId, messageId: uid("m"), userId: "carol", text: "x".repeat(300 * 1024) });
  assert.equal(refused.error.code, "too_large");
  const ok = await c.emit("user:message", { chatId, messageId: uid("m"), userId: "dave", text: "[fake:tokens n=1]" });
  assert.equal(ok.ok, true, JSON.stringify(ok));
  const spoof = await c.emit("user:message", { chatId, messageId: uid("m"), userId: "carol", text: "hi" });
  assert.equal(spoof.error.code, "forbidden");
  c.close();
});
