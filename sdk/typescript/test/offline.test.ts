// Behaviour that needs no server: typing of the public API (checked by tsc when the tests are
// built) and what happens to emits that cannot be sent.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AIChatSocket, NatterError, SocketService, type ChatEvents } from "../src/index.js";

/** Nothing listens here (port 9 is discard); with autoConnect false nothing is even tried. */
const NOWHERE = "http://127.0.0.1:9";

test("SocketService's emit, on and handlers are typed by the event map", () => {
  const texts: string[] = [];
  const svc = new SocketService<ChatEvents>({
    url: NOWHERE,
    autoConnect: false,
    handlers: {
      "presence:update": (e) => texts.push(...e.onlineUserIds.map(String)),
    },
  });
  svc.emit("user:message", { messageId: "m", userId: "u", text: "typed" });
  // @ts-expect-error `text` must be a string
  svc.emit("user:message", { messageId: "m", userId: "u", text: 5 });
  // @ts-expect-error `messageId` is required
  svc.emit("user:message", { userId: "u", text: "x" });
  // A name outside the map takes any payload (seed 001's string fallback).
  svc.emit("consultation:ping", { anything: [1, 2, 3] });
  const off = svc.on("ai:token", (e) => texts.push(e.token.toUpperCase()));
  // @ts-expect-error an ai:token has no `text`
  svc.on("ai:token", (e) => texts.push(e.text));
  off();
  svc.destroy();
  assert.deepEqual(texts, []);
});

test("an emit that cannot be sent rejects with not_sent and is dropped from the queue", async () => {
  const svc = new SocketService<ChatEvents>({ url: NOWHERE, autoConnect: false, chatId: "c" });
  await assert.rejects(
    svc.emitWithAck("typing:start", { userId: "u" }, { timeoutMs: 30 }),
    (e: unknown) => e instanceof NatterError && e.code === "not_sent",
  );
  const pending = svc.emitWithAck("typing:stop", { userId: "u" }, { timeoutMs: null });
  svc.destroy();
  await assert.rejects(pending, (e: unknown) => e instanceof NatterError && e.code === "destroyed");
});

test("ignoring a helper's promise causes no unhandled rejection; the failure reaches onServerError", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  const errors: unknown[] = [];
  const chat = new AIChatSocket({
    url: NOWHERE,
    chatId: "c",
    autoConnect: false,
    ackTimeoutMs: 30,
    callbacks: { onServerError: (e) => errors.push(e) },
  });
  try {
    void chat.sendMessage({ messageId: "m1", userId: "u", text: "never sent" });
    chat.typingStart("u");
    await new Promise((r) => setTimeout(r, 150));
    assert.deepEqual(unhandled, []);
    assert.deepEqual(
      errors.map((e) => (e as NatterError).code),
      ["not_sent", "not_sent"],
    );
    // Awaiting still throws.
    await assert.rejects(chat.markRead({ userId: "u", messageIds: ["m1"], readAt: new Date().toISOString() }), /not connected/);
  } finally {
    process.off("unhandledRejection", onUnhandled);
    chat.destroy();
  }
});

test("event names: defaults, eventNames, setEventNames, then eventResolver's last word", () => {
  const chat = new AIChatSocket({
    url: NOWHERE,
    autoConnect: false,
    eventNames: { userMessage: "msg:send" },
    serverErrorEvent: "oops",
    eventResolver: (key, name) => (key === "aiToken" ? `v2:${name}` : name),
  });
  assert.equal(chat.name("join"), "chat:join");
  assert.equal(chat.name("userMessage"), "msg:send");
  assert.equal(chat.name("serverError"), "oops");
  assert.equal(chat.name("aiToken"), "v2:ai:token");
  chat.setEventNames({ aiToken: "stream:token", join: "room:enter" });
  assert.equal(chat.name("aiToken"), "v2:stream:token");
  assert.equal(chat.name("join"), "room:enter");
  chat.destroy();
});

test("clientType goes into the handshake's auth, beside what was there (an auth callback too)", async () => {
  const plain = new AIChatSocket({ url: NOWHERE, autoConnect: false, clientType: "humanAgent" });
  assert.deepEqual(plain.service.socket.auth, { clientType: "humanAgent" });
  const merged = new AIChatSocket({
    url: NOWHERE,
    autoConnect: false,
    clientType: "observer",
    ioOptions: { auth: { token: "t" } },
  });
  assert.deepEqual(merged.service.socket.auth, { token: "t", clientType: "observer" });
  const lazy = new AIChatSocket({
    url: NOWHERE,
    autoConnect: false,
    clientType: "humanAgent",
    ioOptions: { auth: (cb) => cb({ token: "fresh" }) },
  });
  const auth = lazy.service.socket.auth;
  assert.equal(typeof auth, "function");
  const got = await new Promise((resolve) => (auth as (cb: (d: object) => void) => void)(resolve));
  assert.deepEqual(got, { token: "fresh", clientType: "humanAgent" });
  const none = new AIChatSocket({ url: NOWHERE, autoConnect: false });
  assert.equal(none.service.socket.auth, undefined, "no clientType, no auth added");
  // @ts-expect-error not a client type
  new AIChatSocket({ url: NOWHERE, autoConnect: false, clientType: "admin" }).destroy();
  for (const c of [plain, merged, lazy, none]) c.destroy();
});

test("the support-desk helpers are typed: rating a number, reactions need messageId and emoji", () => {
  const chat = new AIChatSocket({ url: NOWHERE, chatId: "c", autoConnect: false, ackTimeoutMs: 5 });
  const pending = [
    chat.requestHandoff(),
    chat.addReaction({ messageId: "m", emoji: "👍" }),
    chat.removeReaction({ messageId: "m", emoji: "👍", chatId: "other" }),
    chat.endChat(undefined, "done"),
    chat.submitCsat("c", 5, "great"),
    chat.leave(),
  ];
  // @ts-expect-error `emoji` is required
  void chat.addReaction({ messageId: "m" });
  // @ts-expect-error `rating` is a number
  void chat.submitCsat(undefined, "5");
  assert.equal(chat.name("handoffRequest"), "handoff:request");
  assert.equal(chat.name("csatRequest"), "csat:request");
  chat.destroy();
  return Promise.allSettled(pending).then((results) => assert.ok(results.every((r) => r.status === "rejected")));
});
