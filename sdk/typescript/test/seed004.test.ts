// Seed 004's WebSocketService against the real binary: the singleton on the flat profile,
// join/send/typing/on(type), streamed tokens, the REST lists, reconnection after a server
// restart that rejoins and recovers what was missed (lastSeq/epoch), and clear errors.
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { WebSocketService, configureWebSocket, type WebSocketMessage } from "../src/index.js";
import { connect, startFakeUpstream, startNatter, tempDir, uid, until, type Natter, type Upstream, stopNatter } from "./harness.js";

afterEach(() => WebSocketService.resetInstance());

describe("seed 004 WebSocketService", () => {
  let upstream: Upstream;
  let natter: Natter;
  let tmp: { dir: string; cleanup(): void };
  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir });
  });
  after(async () => {
    await stopNatter(natter);
    upstream?.stop();
    tmp?.cleanup();
  });

  test("a singleton configured by configureWebSocket; bad config is refused clearly", () => {
    assert.throws(() => configureWebSocket({ url: "not a url" }), /url must be an http/);
    assert.throws(() => configureWebSocket({ timeout: -1 }), /timeout must be a non-negative number/);
    configureWebSocket({ url: natter.url, auth: { userId: "ann" } });
    const a = WebSocketService.getInstance();
    assert.equal(WebSocketService.getInstance(), a);
    assert.equal(a.getConfig().url, natter.url);
    assert.equal(a.getConfig().reconnection, true);
    WebSocketService.getInstance({ enableLogging: false, auth: { token: "t" } });
    assert.deepEqual(a.getConfig().auth, { userId: "ann", token: "t" });
    assert.throws(() => a.joinConversation(""), /conversationId/);
  });

  test("join, send, streamed tokens, message_complete, typing and message_received from another member", async () => {
    const conv = uid("conv");
    const svc = WebSocketService.getInstance({ url: natter.url, auth: { userId: "ann" } });
    const seen: WebSocketMessage[] = [];
    for (const t of ["message_received", "token", "chunk", "message_complete", "typing", "system", "error"] as const) svc.on(t, (m) => seen.push(m));
    const lifecycle: string[] = [];
    svc.on("connect", () => lifecycle.push("connect"));
    svc.on("joined", (m) => lifecycle.push(`joined:${m.conversation_id}`));
    await assert.rejects(svc.sendMessage(conv, "hi"), /not in conversation/);

    await svc.connect();
    assert.equal(svc.isConnected(), true);
    await svc.joinConversation(conv);
    assert.equal(svc.isJoined(conv), true);
    assert.deepEqual(lifecycle, ["connect", `joined:${conv}`]);

    const { messageId, seq } = await svc.sendMessage(conv, "[fake:drip n=8 delay_ms=30] go");
    assert.ok(messageId);
    assert.equal(typeof seq, "number");
    // Our own message comes to our handlers (local), the server does not echo it.
    const own = seen.find((m) => m.type === "message_received" && m.metadata?.["messageId"] === messageId);
    assert.equal(own?.metadata?.["local"], true);

    const done = await until(() => seen.find((m) => m.type === "message_complete" && m.conversation_id === conv), "message_complete");
    const tokens = seen.filter((m) => (m.type === "token" || m.type === "chunk") && m.metadata?.["messageId"] === done.metadata?.["messageId"]);
    assert.ok(tokens.length >= 2, "tokens streamed before the reply completed");
    assert.equal(tokens.map((t) => t.content).join(""), done.content);
    assert.equal(done.content, "t0 t1 t2 t3 t4 t5 t6 t7 ");

    // Another member (a plain flat socket) writes and types.
    const bob = await connect(natter.url, { query: { profile: "flat", userId: "bob" } });
    try {
      const joinAck = (await bob.emit("join", { conversation_id: conv })) as { ok: boolean };
      assert.equal(joinAck.ok, true);
      bob.socket.emit("message", { type: "typing", conversation_id: conv, metadata: { typing: true } });
      const typing = await until(() => seen.find((m) => m.type === "typing" && m.metadata?.["userId"] === "bob"), "bob typing");
      assert.equal(typing.metadata?.["typing"], true);
      svc.sendTyping(conv, true);
      await bob.waitFor("message", (m: WebSocketMessage) => m.type === "typing" && m.metadata?.["userId"] === "ann");
      const ack = (await bob.emit("message", { content: "hello ann", conversation_id: conv, metadata: { message_id: "bob-1" } })) as { ok: boolean };
      assert.equal(ack.ok, true);
      const got = await until(() => seen.find((m) => m.type === "message_received" && m.metadata?.["messageId"] === "bob-1"), "bob's message");
      assert.equal(got.content, "hello ann");
      assert.equal(got.metadata?.["local"], undefined);
    } finally {
      bob.close();
    }
    svc.leaveConversation(conv);
    assert.equal(svc.isJoined(conv), false);
    assert.deepEqual(seen.filter((m) => m.type === "error"), []);
  });

  test("joins are counted; a second join of a joined conversation resolves at once", async () => {
    const conv = uid("conv");
    const svc = WebSocketService.getInstance({ url: natter.url, auth: { userId: "ann" } });
    await svc.connect();
    await svc.joinConversation(conv);
    await svc.joinConversation(conv);
    svc.leaveConversation(conv);
    assert.equal(svc.isJoined(conv), true);
    svc.leaveConversation(conv);
    assert.equal(svc.isJoined(conv), false);
  });

  test("the REST lists: fetchConversations and fetchConversationMessages (oldest first, assistant role)", async () => {
    const conv = uid("conv");
    const svc = WebSocketService.getInstance({ url: natter.url, auth: { userId: "ann" } });
    const changed: string[] = [];
    svc.onConversationChange((id) => changed.push(id));
    await svc.connect();
    await svc.joinConversation(conv);
    await svc.sendMessage(conv, "hello there");
    await until(() => changed.filter((c) => c === conv).length >= 3, "changes: join, own send, reply");
    const messages = await svc.fetchConversationMessages(conv);
    assert.deepEqual(messages.map((m) => [m.role, m.content]), [["user", "hello there"], ["assistant", "Echo: hello there"]]);
    assert.match(messages[0]!.createdAt, /^\d{4}-\d\d-\d\dT/);
    const list = await svc.fetchConversations();
    const row = list.find((c) => c.id === conv);
    assert.equal(row?.title, "hello there");
    assert.match(row!.lastUpdated, /^\d{4}-\d\d-\d\dT/);
    assert.deepEqual(await svc.fetchConversationMessages(uid("nope")), [], "an unknown conversation has no messages");
  });

  test("a refused handshake rejects connect() with the server's reason", async () => {
    const svc = WebSocketService.getInstance({ url: natter.url, reconnection: false });
    // Seed 004 connections always use profile=flat; an invalid userId shows a refusal instead.
    svc.configure({ auth: { userId: "x".repeat(5000) } });
    await assert.rejects(svc.connect(), (e: Error & { code?: string }) => e.code === "connect_error");
    assert.equal(svc.isConnected(), false);
  });
});

describe("seed 004 WebSocketService: reconnecting", () => {
  test("after a server restart it rejoins with last_seq/epoch and gets what it missed, once", async () => {
    const tmp = tempDir();
    const upstream = await startFakeUpstream();
    let natter = await startNatter({ upstream, dataDir: tmp.dir });
    const port = natter.port;
    const conv = uid("conv");
    const svc = WebSocketService.getInstance({ url: natter.url, reconnectionDelay: 300, auth: { userId: "ann" } });
    const received: WebSocketMessage[] = [];
    const lifecycle: string[] = [];
    svc.on("message_received", (m) => received.push(m));
    svc.on("message_complete", (m) => received.push(m));
    svc.on("reconnect", () => lifecycle.push("reconnect"));
    svc.on("disconnect", () => lifecycle.push("disconnect"));
    const joins: WebSocketMessage[] = [];
    svc.on("joined", (m) => joins.push(m));
    try {
      await svc.connect();
      await svc.joinConversation(conv);
      await svc.sendMessage(conv, "before");
      await until(() => received.find((m) => m.content === "Echo: before"), "the first reply");

      await stopNatter(natter);
      await until(() => lifecycle.includes("disconnect"), "disconnect");
      natter = await startNatter({ upstream, dataDir: tmp.dir, listen: `127.0.0.1:${port}` });
      // Bob writes before ann is back.
      const bob = await connect(natter.url, { query: { profile: "flat", userId: "bob" } });
      await bob.emit("join", { conversation_id: conv });
      await bob.emit("message", { content: "missed this?", conversation_id: conv, metadata: { message_id: "bob-missed" } });
      await bob.waitFor("message", (m: WebSocketMessage) => m.type === "message_complete");
      bob.close();

      await until(() => lifecycle.includes("reconnect"), "reconnect", 20_000);
      await until(() => joins.length === 2, "the rejoin", 10_000);
      assert.equal(joins[1]!.metadata?.["recovered"], true);
      await until(() => received.find((m) => m.content === "Echo: missed this?"), "the missed reply");
      await svc.sendMessage(conv, "after");
      await until(() => received.find((m) => m.content === "Echo: after"), "the reply after");
      // Our own messages reach our handlers after their ack, which may be after the reply's
      // event: the chat's order is `seq`.
      const contents = received.sort((a, b) => a.metadata!["seq"] - b.metadata!["seq"]).map((m) => m.content);
      assert.deepEqual(contents, ["before", "Echo: before", "missed this?", "Echo: missed this?", "after", "Echo: after"]);
      assert.equal(new Set(received.map((m) => m.metadata!["seq"])).size, 6, "each once");
    } finally {
      WebSocketService.resetInstance();
      await stopNatter(natter);
      upstream.stop();
      tmp.cleanup();
    }
  });
});

describe("seed 004 WebSocketService with auth on", () => {
  const SECRET = "sdk-test-secret-that-is-long-enough-for-hs256";
  const mint = (user: string, expSecs: number) => {
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const head = b64({ alg: "HS256", typ: "JWT" });
    const body = b64({ org_id: "acme", user_id: user, exp: Math.floor(Date.now() / 1000) + expSecs });
    return `${head}.${body}.${crypto.createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url")}`;
  };
  let upstream: Upstream;
  let natter: Natter;
  let tmp: { dir: string; cleanup(): void };
  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir, args: ["--jwt-secret", SECRET, "--jwt-leeway-secs", "0"] });
  });
  after(async () => {
    await stopNatter(natter);
    upstream?.stop();
    tmp?.cleanup();
  });

  test("no token: connect() rejects with unauthorized; a new auth.token over a live socket keeps it past the old token's expiry", async () => {
    const svc = WebSocketService.getInstance({ url: natter.url, reconnection: false });
    await assert.rejects(svc.connect(), /unauthorized/);
    svc.configure({ auth: { token: mint("ann", 2), userId: "ann" } });
    const drops: WebSocketMessage[] = [];
    svc.on("disconnect", (m) => drops.push(m));
    await svc.connect();
    const conv = uid("conv");
    await svc.joinConversation(conv);
    configureWebSocket({ auth: { token: mint("ann", 600) } });
    await new Promise((r) => setTimeout(r, 3500));
    assert.deepEqual(drops, [], "still connected after the first token expired");
    assert.equal(svc.isConnected(), true);
    const { seq } = await svc.sendMessage(conv, "still here");
    assert.ok(seq > 0);
    const rows = await svc.fetchConversationMessages(conv);
    assert.equal(rows[0]?.content, "still here", "REST reads use the bearer token");
  });
});
