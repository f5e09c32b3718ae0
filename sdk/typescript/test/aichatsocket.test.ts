// AIChatSocket and SocketService against the real `natter serve` binary.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  AIChatSocket,
  NatterError,
  SocketService,
  type AITokenUpdate,
  type ChatEvents,
  type ChatID,
  type JoinAck,
  type ServerToClientEvents,
} from "../src/index.js";
import { connect, startFakeUpstream, startNatter, tempDir, uid, until, type Natter, type Upstream } from "./harness.js";

type S2C = ServerToClientEvents;

let upstream: Upstream;
let natter: Natter;
let tmp: { dir: string; cleanup(): void };
const opened: AIChatSocket[] = [];

before(async () => {
  tmp = tempDir();
  upstream = await startFakeUpstream();
  natter = await startNatter({ upstream, dataDir: `${tmp.dir}/main`, args: ["--chat-key-fields", "consultationId"] });
});

after(async () => {
  for (const c of opened) c.destroy();
  await natter?.stop();
  upstream?.stop();
  tmp?.cleanup();
});

/** An AIChatSocket that is destroyed after the suite. */
function open(options: ConstructorParameters<typeof AIChatSocket>[0]): AIChatSocket {
  const chat = new AIChatSocket(options);
  opened.push(chat);
  return chat;
}

test("seed 000's example works unchanged: callbacks fire and the tokens make up ai:message.text", async () => {
  const log: string[] = [];
  const tokens: AITokenUpdate[] = [];
  const messages: S2C["ai:message"][] = [];
  const errors: unknown[] = [];
  const presence: S2C["presence:update"][] = [];
  const statuses: string[] = [];
  const env = { VITE_SOCKET_URL: natter.url, VITE_CHAT_ID: uid("chat") };

  // The seed's construction, with console.log swapped for a log the test reads.
  const chat = open({
    url: env.VITE_SOCKET_URL as string,
    chatId: env.VITE_CHAT_ID as ChatID,
    ioOptions: { transports: ["websocket"] },
    callbacks: {
      onConnect: () => log.push("connected"),
      onDisconnect: () => log.push("disconnected"),
      onPresenceUpdate: (e) => presence.push(e),
      onAIProcessing: (e) => statuses.push(e.status),
      onAIToken: (e) => tokens.push(e),
      onAIMessage: (e) => messages.push(e),
      onAIError: (e) => errors.push(e),
      onChatMessage: (e) => log.push(`user: ${e.text}`),
      onServerError: (e) => errors.push(e),
    },
    autoConnect: true,
  });

  // Sent at once, before the connection is even up: it waits for the join.
  void chat.sendMessage({ messageId: crypto.randomUUID(), userId: "user-1", text: "Hello!" });
  const reply = await until(() => messages[0], "ai:message");

  assert.deepEqual(log, ["connected"]);
  assert.deepEqual(statuses, ["queued", "working"]);
  assert.equal(reply.text, "Echo: Hello!");
  assert.equal(tokens.map((t) => t.token).join(""), reply.text);
  assert.deepEqual(tokens.map((t) => t.index), tokens.map((_, i) => i));
  assert.equal(tokens.at(-1)?.turnText, reply.text);
  assert.ok(tokens.every((t) => t.messageId === reply.messageId));
  // The seed names no user at the join, so the server lists the socket under a made-up name.
  assert.ok(presence.length >= 1 && presence.every((p) => p.onlineUserIds.length === 1), "onPresenceUpdate fired");

  await chat.typingStart("user-1");
  await chat.typingStop("user-1");
  // Nothing is running: the server refuses the abort, reported on the promise and on onServerError.
  await assert.rejects(chat.abort("user canceled"), (e: unknown) => e instanceof NatterError && e.code === "no_active_turn");
  await until(() => errors.some((e) => (e as { code?: string }).code === "no_active_turn"), "onServerError(no_active_turn)");
  const read = await chat.markRead({ userId: "user-1", messageIds: ["m1", "m2"], readAt: new Date().toISOString() });
  assert.equal(typeof read.seq, "number");
  assert.equal(errors.length, 1, `only the refused abort is an error: ${JSON.stringify(errors)}`);

  chat.disconnect();
  await until(() => log.includes("disconnected"), "onDisconnect");
  assert.equal(chat.isConnected(), false);
});

test("SocketService: typed emit with ack, handlers, and the join", async () => {
  const chatId = uid("chat");
  const seen: Array<S2C["ai:message"]> = [];
  const service = new SocketService<ChatEvents>({
    url: natter.url,
    chatId,
    ioOptions: { query: { userId: "svc" } },
    handlers: {
      "ai:message": (evt) => seen.push(evt as S2C["ai:message"]),
    },
  });
  try {
    const ack = (await service.emitWithAck("user:message", {
      chatId,
      messageId: "u1",
      userId: "svc",
      text: "[fake:tokens n=3] hi",
    })) as { ok: boolean; seq: number; duplicate: boolean; messageId: string };
    assert.equal(ack.ok, true);
    assert.equal(ack.messageId, "u1");
    assert.equal(ack.duplicate, false);
    // The callback form of the seed.
    const again = await new Promise<unknown>((resolve) =>
      service.emit("user:message", { chatId, messageId: "u1", userId: "svc", text: "again" }, resolve),
    );
    assert.deepEqual(again, { ok: true, messageId: "u1", seq: ack.seq, chatId, duplicate: true });
    await until(() => seen[0], "ai:message via handlers");
    assert.equal(seen.length, 1, "a duplicate starts no second turn");

    // A refused event still resolves emitWithAck: the ack carries the error.
    const refused = (await service.emitWithAck("user:message", { chatId, messageId: "", userId: "svc", text: "x" })) as {
      ok: boolean;
      error: { code: string };
    };
    assert.equal(refused.ok, false);
    assert.equal(refused.error.code, "missing_field");
  } finally {
    service.destroy();
  }
  await assert.rejects(
    service.emitWithAck("typing:start", { chatId }),
    (e: unknown) => e instanceof NatterError && e.code === "destroyed",
  );
});

test("joinEvent null: the handshake query joins the chat (chatId, or a configured key such as consultationId)", async () => {
  for (const key of ["chatId", "consultationId"]) {
    const room = uid(key);
    const observer = await connect(natter.url, { query: { userId: "obs" } });
    await observer.emit("chat:join", { chatId: room });
    const replies: S2C["ai:message"][] = [];
    const chat = open({
      url: natter.url,
      ioOptions: { transports: ["websocket"], query: { [key]: room, userId: "nr" } },
      joinEvent: null,
      meta: { consultationId: room },
      callbacks: { onAIMessage: (e) => replies.push(e) },
    });
    const ack = await chat.sendMessage({ messageId: uid("m"), userId: "nr", text: "no rooms" });
    assert.equal(ack.chatId, room);
    const reply = await until(() => replies[0], "ai:message");
    assert.equal(reply.text, "Echo: no rooms");
    assert.equal(reply.chatId, room);
    const seenByObserver = (await observer.waitFor("chat:message")) as S2C["chat:message"];
    assert.equal(seenByObserver.text, "no rooms");
    observer.close();
    chat.destroy();
  }
});

test("meta is merged into every emit; the server echoes its traceId on the events it causes", async () => {
  const chatId = uid("chat");
  const observer = await connect(natter.url, { query: { userId: "obs" } });
  await observer.emit("chat:join", { chatId });
  const processing: S2C["ai:processing"][] = [];
  const replies: S2C["ai:message"][] = [];
  const chat = open({
    url: natter.url,
    chatId,
    userId: "meta-user",
    meta: { traceId: "trace-meta-1", tenant: "acme" },
    callbacks: { onAIProcessing: (e) => processing.push(e), onAIMessage: (e) => replies.push(e) },
  });
  await chat.sendMessage({ messageId: uid("m"), userId: "meta-user", text: "traced" });
  const reply = await until(() => replies[0], "ai:message");
  assert.equal(reply.traceId, "trace-meta-1");
  assert.ok(processing.length > 0 && processing.every((p) => p.traceId === "trace-meta-1"));
  const relayed = (await observer.waitFor("chat:message")) as S2C["chat:message"];
  assert.equal(relayed.traceId, "trace-meta-1");
  // A helper's own traceId wins over meta's.
  await chat.typingStart("meta-user", "trace-own");
  const typing = (await observer.waitFor("typing:update")) as S2C["typing:update"];
  assert.equal(typing.traceId, "trace-own");
  observer.close();
});

test("typing and read receipts reach a second client's callbacks", async () => {
  const chatId = uid("chat");
  const typing: S2C["typing:update"][] = [];
  const receipts: S2C["message:read"][] = [];
  const bob = open({
    url: natter.url,
    chatId,
    userId: "bob",
    callbacks: { onTypingUpdate: (e) => typing.push(e), onReadReceipt: (e) => receipts.push(e) },
  });
  const ann = open({ url: natter.url, chatId, userId: "ann" });
  await Promise.all([bob.whenReady(), ann.whenReady()]);
  await ann.typingStart("ann");
  await ann.typingStop("ann");
  const readAt = "2026-01-02T03:04:05.678Z";
  const ack = await ann.markRead({ userId: "ann", messageIds: ["m1", "m2"], readAt });
  await until(() => receipts[0], "message:read");
  assert.deepEqual(
    typing.map((t) => [t.userId, t.typing]),
    [
      ["ann", true],
      ["ann", false],
    ],
  );
  assert.deepEqual(receipts[0], { chatId, userId: "ann", messageIds: ["m1", "m2"], readAt, seq: ack.seq });
});

test("discoverEvents adapts to a server whose event names are remapped", async () => {
  const remapped = await startNatter({
    upstream,
    dataDir: `${tmp.dir}/remap`,
    args: ["--event-name", "userMessage=msg:send,aiMessage=bot:reply,aiToken=bot:token,join=room:enter"],
  });
  try {
    const chatId = uid("chat");
    const replies: S2C["ai:message"][] = [];
    const tokens: AITokenUpdate[] = [];
    const chat = open({
      url: remapped.url,
      chatId,
      userId: "disc",
      discoverEvents: true,
      callbacks: { onAIMessage: (e) => replies.push(e), onAIToken: (e) => tokens.push(e) },
    });
    await chat.sendMessage({ messageId: uid("m"), userId: "disc", text: "[fake:tokens n=4] remapped" });
    const reply = await until(() => replies[0], "bot:reply");
    assert.equal(tokens.map((t) => t.token).join(""), reply.text);
    assert.equal(chat.name("userMessage"), "msg:send");
    assert.equal(chat.name("join"), "room:enter");
    assert.equal(chat.name("typingStart"), "typing:start");
    chat.destroy();

    // Without discovery the default names are refused, which is what discovery is for.
    const errors: unknown[] = [];
    const blind = open({ url: remapped.url, chatId, userId: "blind", callbacks: { onServerError: (e) => errors.push(e) } });
    await until(() => errors.some((e) => (e as { code?: string }).code === "unknown_event"), "unknown_event for chat:join");
    blind.destroy();

    // eventNames set by hand work too.
    const manual = open({
      url: remapped.url,
      chatId,
      userId: "manual",
      eventNames: { userMessage: "msg:send", aiMessage: "bot:reply", aiToken: "bot:token", join: "room:enter" },
      callbacks: { onAIMessage: (e) => replies.push(e) },
    });
    await manual.sendMessage({ messageId: uid("m"), userId: "manual", text: "by hand" });
    await until(() => replies.find((r) => r.text === "Echo: by hand"), "bot:reply by hand");
  } finally {
    await remapped.stop();
  }
});

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  test(`after a server restart (${signal}) the client rejoins with lastSeq/epoch: nothing lost, nothing twice`, async () => {
    const dataDir = `${tmp.dir}/restart-${signal}`;
    let server = await startNatter({ upstream, dataDir, durability: "full" });
    const port = server.port;
    const chatId = uid("chat");
    type Seen = { kind: string; seq: number | undefined; id: string; at: number; text?: string; partialText?: string };
    const seen: Seen[] = [];
    const joins: JoinAck[] = [];
    const tokens: AITokenUpdate[] = [];
    const order: string[] = [];
    const record = (kind: string, e: { seq?: number; messageId?: string; text?: string; partialText?: string }) => {
      seen.push({
        kind,
        seq: e.seq,
        id: e.messageId ?? "",
        at: order.length,
        ...(e.text !== undefined ? { text: e.text } : {}),
        ...(e.partialText !== undefined ? { partialText: e.partialText } : {}),
      });
      order.push(kind);
    };
    const ann = open({
      url: server.url,
      chatId,
      userId: "ann",
      // Reconnect slowly, so that bob's messages land while ann is away and must be replayed.
      ioOptions: { reconnectionDelay: 2500, reconnectionDelayMax: 2500, randomizationFactor: 0 },
      callbacks: {
        onJoin: (ack) => {
          joins.push(ack);
          order.push("join");
        },
        onChatMessage: (e) => record("chat:message", e),
        onAIMessage: (e) => record("ai:message", e),
        onAIError: (e) => {
          const details = (e.details ?? {}) as { messageId?: string; partialText?: string };
          record("ai:error", { ...e, messageId: details.messageId ?? "", partialText: details.partialText ?? "" });
        },
        onAIToken: (e) => tokens.push(e),
      },
    });
    const own = await ann.sendMessage({ messageId: "ann-1", userId: "ann", text: "[fake:tokens n=3] before" });
    await until(() => seen.find((s) => s.kind === "ai:message"), "first reply");
    // SIGTERM: a long turn that the shutdown cuts ends with ai:error shutdown, stored in the log.
    // (SIGKILL: no turn runs; a turn killed mid-way is never ended by the server today.)
    const cut =
      signal === "SIGTERM"
        ? await ann.sendMessage({ messageId: "ann-2", userId: "ann", text: "[fake:drip n=400 delay_ms=10] long" })
        : await ann.sendMessage({ messageId: "ann-2", userId: "ann", text: "[fake:tokens n=2] second" });
    if (signal === "SIGTERM") await until(() => tokens.length >= 8, "some tokens of the long turn");
    else await until(() => seen.filter((s) => s.kind === "ai:message").length === 2, "second reply");
    await server.stop(signal);

    server = await startNatter({ upstream, dataDir, durability: "full", listen: `127.0.0.1:${port}` });
    const bob = await connect(server.url, { query: { userId: "bob" } });
    await bob.emit("chat:join", { chatId });
    const bobAcks: number[] = [];
    for (const text of ["[fake:tokens n=2] while away 1", "[fake:tokens n=2] while away 2"]) {
      const ack = (await bob.emit("user:message", { chatId, messageId: uid("bob"), userId: "bob", text })) as { seq: number };
      bobAcks.push(ack.seq);
    }
    await until(() => bob.of("ai:message").length === 2, "bob's two replies");
    await until(() => joins.length === 2, "ann's rejoin", 15_000);
    bob.close();

    const rejoin = joins[1];
    assert.ok(rejoin);
    assert.equal(rejoin.recovered, true, "same data dir, same epoch: recovered");
    assert.equal(rejoin.epoch, joins[0]?.epoch);
    // bob's messages came in the replay, i.e. before the rejoin ack.
    const joinAt = order.lastIndexOf("join");
    const replayed = seen.filter((s) => typeof s.seq === "number" && bobAcks.includes(s.seq));
    assert.equal(replayed.length, 2);
    for (const s of replayed) assert.ok(s.at < joinAt, `seq ${s.seq} replayed before the rejoin ack`);

    // Every durable seq from 2 to the head once: ann's own messages are in her acks, the rest in callbacks.
    const head = rejoin.seq;
    const callbackSeqs = seen.map((s) => s.seq).filter((s): s is number => typeof s === "number");
    assert.equal(new Set(callbackSeqs).size, callbackSeqs.length, `no seq twice: ${callbackSeqs}`);
    const all = [...callbackSeqs, own.seq, cut.seq].sort((a, b) => a - b);
    assert.deepEqual(all, Array.from({ length: head - 1 }, (_, i) => i + 2), "no seq missing");
    const cutErrors = seen.filter((s) => s.kind === "ai:error");
    if (signal === "SIGTERM") {
      // The cut turn: its error arrived once, and the tokens ann saw are a prefix of its partial text.
      assert.equal(cutErrors.length, 1);
      const cutText = tokens.filter((t) => t.messageId === cutErrors[0]?.id).map((t) => t.token).join("");
      assert.ok(cutText.length > 0);
      assert.ok(cutErrors[0]?.partialText?.startsWith(cutText), "the streamed tokens are a prefix of the stored partial text");
    } else {
      assert.equal(cutErrors.length, 0);
    }
    // Each reply's tokens reached ann once each, from index 0, making up its stored text; a
    // reply that ended while ann was away comes whole from the replay, without tokens.
    for (const reply of seen.filter((s) => s.kind === "ai:message")) {
      const streamed = tokens.filter((t) => t.messageId === reply.id);
      assert.deepEqual(streamed.map((t) => t.index), streamed.map((_, i) => i), `token indexes of ${reply.id}`);
      if (streamed.length > 0) assert.equal(streamed.map((t) => t.token).join(""), reply.text);
    }
    assert.deepEqual(ann.recoveryState(), { epoch: rejoin.epoch, lastSeq: head });
    ann.destroy();
    await server.stop();
  });
}

test("a client-run tool declared with the message is answered with sendToolResult", async () => {
  const chatId = uid("chat");
  const calls: S2C["ai:tool_call"][] = [];
  const results: S2C["ai:tool_result"][] = [];
  const replies: S2C["ai:message"][] = [];
  const chat: AIChatSocket = open({
    url: natter.url,
    chatId,
    userId: "ann",
    callbacks: {
      onAIToolCall: (e) => {
        calls.push(e);
        if (e.executor === "client") void chat.sendToolResult({ requestId: e.requestId, toolCallId: e.toolCallId, result: "teal" });
      },
      onAIToolResult: (e) => results.push(e),
      onAIMessage: (e) => replies.push(e),
    },
  });
  const requestId = uid("req");
  await chat.sendMessage({
    messageId: uid("m"),
    userId: "ann",
    requestId,
    text: '[fake:toolcall name=pick_color args={"palette":"cool"}] pick',
    tools: [{ name: "pick_color", description: "Picks a colour", parameters: { type: "object" } }],
  });
  const reply = await until(() => replies[0], "ai:message");
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0]?.arguments, { palette: "cool" });
  assert.equal(results.length, 1);
  assert.equal(results[0]?.result, "teal");
  assert.equal(reply.requestId, requestId);
  assert.match(reply.text, /teal/);
});

test("a reloaded page (a new AIChatSocket, plain join) gets the pending client-run call and answers it", async () => {
  const chatId = uid("chat");
  const first = open({ url: natter.url, chatId, userId: "ann" });
  const seen: S2C["ai:tool_call"][] = [];
  first.subscribe("aiToolCall", (e) => seen.push(e));
  const requestId = uid("req");
  await first.sendMessage({
    messageId: uid("m"),
    userId: "ann",
    requestId,
    text: "[fake:toolcall name=pick_color args={}] pick",
    tools: [{ name: "pick_color", description: "Picks a colour", parameters: { type: "object" } }],
  });
  const call = await until(() => seen[0], "the first page's ai:tool_call");
  first.destroy();

  const replies: S2C["ai:message"][] = [];
  const again: S2C["ai:tool_call"][] = [];
  const reloaded: AIChatSocket = open({
    url: natter.url,
    chatId,
    userId: "ann",
    callbacks: {
      onAIToolCall: (e) => {
        again.push(e);
        void reloaded.sendToolResult({ requestId: e.requestId, toolCallId: e.toolCallId, result: "olive" });
      },
      onAIMessage: (e) => replies.push(e),
    },
  });
  const reply = await until(() => replies.find((r) => r.requestId === requestId), "ai:message");
  assert.equal(again.length, 1);
  assert.equal(again[0]?.toolCallId, call.toolCallId);
  assert.equal(again[0]?.pending, true);
  assert.match(reply.text, /olive/);
});
