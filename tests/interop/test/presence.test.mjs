// Two members, presence, typing and read receipts over stock socket.io-client.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, startStack, uid } from "../lib/harness.mjs";

let stack, natter, upstream;
before(async () => ({ natter, upstream } = stack = await startStack()));
after(() => stack?.stop());

test("two members see each other online, and presence follows leave and disconnect", async () => {
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  const bob = await connect(natter.url, { query: { userId: "bob" } });
  const a = await ann.emit("chat:join", { chatId });
  assert.equal(a.ok, true);
  assert.deepEqual(a.onlineUserIds, ["ann"]);
  assert.equal(typeof a.epoch, "string");
  assert.equal(a.seq, 1, "a new chat's log starts with its creation at seq 1");
  const b = await bob.emit("chat:join", { chatId });
  assert.deepEqual(b.onlineUserIds, ["ann", "bob"]);
  assert.equal(b.epoch, a.epoch);
  await ann.waitFor("presence:update", (p) => p.chatId === chatId && p.onlineUserIds.length === 2);

  const left = await bob.emit("chat:leave", { chatId });
  assert.equal(left.ok, true);
  await ann.waitFor("presence:update", (p) => p.onlineUserIds.join() === "ann");

  await bob.emit("chat:join", { chatId });
  await ann.waitFor("presence:update", (p) => p.onlineUserIds.join() === "ann,bob");
  const seen = ann.of("presence:update").length;
  bob.close();
  await ann.until((evs) => evs.filter((e) => e.event === "presence:update").length > seen && ann.of("presence:update").at(-1).onlineUserIds.join() === "ann", 5000, "presence after disconnect");
  ann.close();
});

test("typing reaches the others, not the typist", async () => {
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  const bob = await connect(natter.url, { query: { userId: "bob" } });
  await ann.emit("chat:join", { chatId });
  await bob.emit("chat:join", { chatId });
  assert.equal((await ann.emit("typing:start", { chatId, userId: "ann" })).ok, true);
  const t = await bob.waitFor("typing:update", (p) => p.typing === true);
  assert.deepEqual(t, { chatId, userId: "ann", typing: true });
  await ann.emit("typing:stop", { chatId, userId: "ann" });
  await bob.waitFor("typing:update", (p) => p.typing === false);
  assert.equal(ann.of("typing:update").length, 0);
  ann.close();
  bob.close();
});

test("read receipts are stored in the log and reach the room", async () => {
  const chatId = uid("chat");
  const ann = await connect(natter.url, { query: { userId: "ann" } });
  const bob = await connect(natter.url, { query: { userId: "bob" } });
  await ann.emit("chat:join", { chatId });
  await bob.emit("chat:join", { chatId });
  const sent = await ann.emit("user:message", { chatId, messageId: uid("m"), userId: "ann", text: "read me" });
  await bob.waitFor("ai:message");
  const readAt = new Date().toISOString();
  const ack = await bob.emit("message:read", { chatId, userId: "bob", messageIds: [sent.messageId], readAt });
  assert.equal(ack.ok, true);
  assert.ok(ack.seq > sent.seq);
  const r = await ann.waitFor("message:read");
  assert.equal(r.userId, "bob");
  assert.deepEqual(r.messageIds, [sent.messageId]);
  assert.equal(r.seq, ack.seq);
  assert.equal(new Date(r.readAt).toISOString(), readAt);
  ann.close();
  bob.close();
});
