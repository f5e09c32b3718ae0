// The support-desk helpers (CONTRACT §7.1-7.4) against the real binary: a customer asks for a
// person, a `humanAgent` AIChatSocket takes the chat (no AI reply while it is there), talks,
// hands back (the AI answers again), reactions, end and CSAT; an observer cannot write; auth
// decides who may be an agent. The same on seed 002's ChatClient (POST /event + SSE).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import {
  AIChatSocket,
  ChatClient,
  ChatHistoryClient,
  NatterError,
  type ChatEvent,
  type CsatRequestEvent,
  type HandoffUpdateEvent,
  type ReactionUpdateEvent,
  type ServerToClientEvents,
} from "../src/index.js";
import { startFakeUpstream, startNatter, stopNatter, tempDir, uid, until, sleep, type Natter, type Upstream } from "./harness.js";

type S2C = ServerToClientEvents;

const SECRET = "sdk-test-secret-that-is-long-enough-for-hs256";
function mint(claims: Record<string, unknown>): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ exp: Math.floor(Date.now() / 1000) + 600, ...claims });
  const sig = crypto.createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** Everything one AIChatSocket's callbacks saw. */
interface Seen {
  handoff: HandoffUpdateEvent[];
  reactions: ReactionUpdateEvent[];
  csat: CsatRequestEvent[];
  messages: S2C["chat:message"][];
  replies: S2C["ai:message"][];
  typing: S2C["typing:update"][];
  errors: unknown[];
}

function seen(): Seen {
  return { handoff: [], reactions: [], csat: [], messages: [], replies: [], typing: [], errors: [] };
}

describe("support desk on AIChatSocket", () => {
  let upstream: Upstream;
  let natter: Natter;
  let tmp: { dir: string; cleanup(): void };
  const opened: AIChatSocket[] = [];

  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir });
  });
  after(async () => {
    for (const s of opened) s.destroy();
    await stopNatter(natter);
    upstream?.stop();
    tmp?.cleanup();
  });

  function open(chatId: string, userId: string, clientType?: "customer" | "humanAgent" | "observer"): { socket: AIChatSocket; seen: Seen } {
    const s = seen();
    const socket = new AIChatSocket({
      url: natter.url,
      chatId,
      userId,
      ...(clientType !== undefined ? { clientType } : {}),
      ioOptions: { transports: ["websocket"], auth: { userId } },
      callbacks: {
        onHandoffUpdate: (e) => s.handoff.push(e),
        onReactionUpdate: (e) => s.reactions.push(e),
        onCsatRequest: (e) => s.csat.push(e),
        onChatMessage: (e) => s.messages.push(e),
        onAIMessage: (e) => s.replies.push(e),
        onTypingUpdate: (e) => s.typing.push(e),
        onServerError: (e) => s.errors.push(e),
      },
    });
    opened.push(socket);
    return { socket, seen: s };
  }

  test("handoff: request, an agent takes the chat (no AI), talks, hands back (AI again)", async () => {
    const chatId = uid("desk");
    const customer = open(chatId, "cara");
    await customer.socket.whenReady();
    await customer.socket.sendMessage({ messageId: crypto.randomUUID(), text: "hello bot" });
    await until(() => customer.seen.replies[0], "the AI's first reply");

    await customer.socket.requestHandoff();
    const waiting = await until(() => customer.seen.handoff.find((e) => e.isWaitingForAgent), "handoff:update waiting");
    assert.equal(waiting.chatId, chatId);
    assert.equal(waiting.humanAgentEngaged, false);
    assert.equal(typeof waiting.seq, "number");

    // The queue: history REST lists the chat as waiting.
    const history = new ChatHistoryClient({ baseUrl: natter.url, orgId: "default" });
    const queue = await history.getChatHistory({ waiting: true });
    assert.equal(history.getState().error, null);
    const listed = queue.chats.find((c) => c.chatKey === chatId);
    assert.ok(listed, `the waiting list holds ${chatId}: ${JSON.stringify(queue)}`);
    assert.equal(typeof listed.waitingSince, "number");

    // The agent joins with clientType humanAgent: that takes the chat.
    const agent = open(chatId, "sam", "humanAgent");
    await agent.socket.whenReady();
    const joined = await until(() => customer.seen.handoff.find((e) => e.humanAgentEngaged), "handoff:update agent joined");
    assert.equal(joined.aiEngaged, false);
    assert.equal(joined.isWaitingForAgent, false);
    assert.equal(joined.agentId, "sam");
    assert.ok(joined.seq > waiting.seq);
    await until(() => agent.seen.handoff.find((e) => e.humanAgentEngaged) ?? (agent.socket.recoveryState().lastSeq >= joined.seq), "the agent is in");
    assert.equal((await history.getChatHistory({ waiting: true })).chats.some((c) => c.chatKey === chatId), false, "taken chats leave the queue");

    // No AI turn while the agent is there: the customer's message reaches the agent only.
    const repliesBefore = customer.seen.replies.length;
    await customer.socket.sendMessage({ messageId: crypto.randomUUID(), text: "I need a person" });
    await until(() => agent.seen.messages.find((m) => m.text === "I need a person"), "the agent gets the customer's message");
    await customer.socket.typingStart("cara");
    await until(() => agent.seen.typing.find((t) => t.userId === "cara" && t.typing), "the agent sees the customer typing");
    await agent.socket.sendMessage({ messageId: crypto.randomUUID(), text: "Hi, I am Sam" });
    const fromAgent = await until(() => customer.seen.messages.find((m) => m.text === "Hi, I am Sam"), "the customer gets the agent's message");
    assert.equal(fromAgent.role, "humanAgent");
    assert.equal(fromAgent.userId, "sam");
    await sleep(400);
    assert.equal(customer.seen.replies.length, repliesBefore, "no AI reply while a human agent is engaged");

    // Hand back: the agent leaves; the next customer message gets an AI reply.
    await agent.socket.leave();
    const left = await until(() => customer.seen.handoff.find((e) => !e.humanAgentEngaged && e.seq > joined.seq), "handoff:update agent left");
    assert.equal(left.aiEngaged, true);
    await customer.socket.sendMessage({ messageId: crypto.randomUUID(), text: "thanks" });
    const reply = await until(() => customer.seen.replies.find((r) => r.text === "Echo: thanks"), "the AI answers again");
    assert.equal(reply.role, "assistant");
    assert.deepEqual(customer.seen.errors, []);
  });

  test("reactions: add twice (one), the whole list to every member, remove; bad emoji refused", async () => {
    const chatId = uid("react");
    const ann = open(chatId, "ann");
    const bob = open(chatId, "bob");
    await Promise.all([ann.socket.whenReady(), bob.socket.whenReady()]);
    const messageId = crypto.randomUUID();
    await ann.socket.sendMessage({ messageId, text: "react to me" });

    await bob.socket.addReaction({ messageId, emoji: "👍" });
    await bob.socket.addReaction({ messageId, emoji: "👍" });
    const added = await until(() => ann.seen.reactions.find((r) => r.reactions.length === 1), "reaction:update");
    assert.equal(added.messageId, messageId);
    assert.equal(added.reactions[0]?.emoji, "👍");
    assert.equal(added.reactions[0]?.userId, "bob");
    assert.match(added.reactions[0]?.createdAt ?? "", /^\d{4}-\d\d-\d\dT/);
    await bob.socket.removeReaction({ messageId, emoji: "👍" });
    await until(() => ann.seen.reactions.find((r) => r.reactions.length === 0 && r.seq > added.seq), "reaction:update after the removal");

    await assert.rejects(bob.socket.addReaction({ messageId, emoji: "not an emoji" }), (e: unknown) => e instanceof NatterError && e.code === "invalid_field");
    await assert.rejects(bob.socket.addReaction({ messageId: "no-such-message", emoji: "👍" }), (e: unknown) => e instanceof NatterError && e.code === "not_found");
  });

  test("end and CSAT: the customer is asked, rates, the summary holds the rating", async () => {
    const chatId = uid("csat");
    const customer = open(chatId, "cleo");
    await customer.socket.whenReady();
    await customer.socket.sendMessage({ messageId: crypto.randomUUID(), text: "hi" });
    await until(() => customer.seen.replies[0], "a reply");
    await customer.socket.endChat(undefined, "done");
    const asked = await until(() => customer.seen.csat[0], "csat:request");
    assert.equal(asked.chatId, chatId);
    await assert.rejects(customer.socket.submitCsat(undefined, 6), (e: unknown) => e instanceof NatterError && e.code === "invalid_field");
    await customer.socket.submitCsat(undefined, 4, "quick");
    await customer.socket.submitCsat(chatId, 5, "quick and kind");
    const summary = await new ChatHistoryClient({ baseUrl: natter.url, orgId: "default" }).getChat(chatId);
    assert.equal(summary?.csat?.rating, 5, "a second answer replaces the first");
    assert.equal(summary?.csat?.comment, "quick and kind");
    assert.equal(typeof summary?.csat?.submittedAt, "number");
  });

  test("chat lifecycle callbacks: renamed and pinned, ended, deleted", async () => {
    const chatId = uid("life");
    const updated: unknown[] = [];
    const ended: unknown[] = [];
    const deleted: unknown[] = [];
    const socket = new AIChatSocket({
      url: natter.url,
      chatId,
      userId: "lia",
      ioOptions: { transports: ["websocket"], auth: { userId: "lia" } },
      callbacks: {
        onChatUpdated: (e) => updated.push(e),
        onChatEnded: (e) => ended.push(e),
        onChatDeleted: (e) => deleted.push(e),
      },
    });
    opened.push(socket);
    await socket.whenReady();
    await socket.sendMessage({ messageId: crypto.randomUUID(), text: "hi" });

    const history = new ChatHistoryClient({ baseUrl: natter.url, orgId: "default" });
    assert.equal(await history.updateChat(chatId, { title: "Renamed", pinned: true }), true);
    const u = (await until(() => updated[0], "chat:updated")) as { chatId: string; title?: string; pinned?: boolean; seq: number };
    assert.equal(u.chatId, chatId);
    assert.equal(u.title, "Renamed");
    assert.equal(u.pinned, true);

    const endAck = await socket.endChat(undefined, "done here");
    const e = (await until(() => ended[0], "chat:ended")) as { reason?: string; seq: number };
    assert.equal(e.reason, "done here");
    assert.equal(e.seq, endAck.seq);
    assert.ok(e.seq > u.seq);

    assert.equal(await history.deleteChat(chatId), true);
    const d = (await until(() => deleted[0], "chat:deleted")) as { chatId: string };
    assert.equal(d.chatId, chatId);
  });

  test("an observer reads everything and may not write", async () => {
    const chatId = uid("obs");
    const customer = open(chatId, "olga");
    await customer.socket.whenReady();
    const observer = open(chatId, "otto", "observer");
    await observer.socket.whenReady();
    await customer.socket.sendMessage({ messageId: crypto.randomUUID(), text: "watched" });
    await until(() => observer.seen.replies.find((r) => r.text === "Echo: watched"), "the observer sees the reply");
    await assert.rejects(
      observer.socket.sendMessage({ messageId: crypto.randomUUID(), text: "may I?" }),
      (e: unknown) => e instanceof NatterError && e.code === "forbidden",
    );
    await assert.rejects(observer.socket.requestHandoff(), (e: unknown) => e instanceof NatterError && e.code === "forbidden");
  });
});

describe("support desk with auth on", () => {
  let upstream: Upstream;
  let natter: Natter;
  let tmp: { dir: string; cleanup(): void };
  const opened: AIChatSocket[] = [];

  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir, args: ["--jwt-secret", SECRET] });
  });
  after(async () => {
    for (const s of opened) s.destroy();
    await stopNatter(natter);
    upstream?.stop();
    tmp?.cleanup();
  });

  test("humanAgent needs the chat:agent scope; with it the token's user takes the chat", async () => {
    const chatId = uid("auth-desk");
    const customerErrors: unknown[] = [];
    const handoff: HandoffUpdateEvent[] = [];
    const customer = new AIChatSocket({
      url: natter.url,
      chatId,
      ioOptions: { transports: ["websocket"], auth: { token: mint({ org_id: "acme", user_id: "cy" }) } },
      callbacks: { onServerError: (e) => customerErrors.push(e), onHandoffUpdate: (e) => handoff.push(e) },
    });
    opened.push(customer);
    await customer.whenReady();
    await customer.requestHandoff();
    await until(() => handoff.find((e) => e.isWaitingForAgent), "waiting");

    // The agents' queue, read with the agent's token.
    const agentToken = mint({ org_id: "acme", user_id: "ada", scopes: ["chat:agent"] });
    const history = new ChatHistoryClient({ baseUrl: natter.url, orgId: "acme", token: agentToken });
    const queue = await history.getChatHistory({ waiting: true });
    assert.equal(history.getState().error, null);
    assert.ok(queue.chats.some((c) => c.chatKey === chatId), JSON.stringify(queue));

    // A customer's token asking to be an agent is refused.
    const refusedErrors: unknown[] = [];
    const pretender = new AIChatSocket({
      url: natter.url,
      chatId,
      clientType: "humanAgent",
      ioOptions: { transports: ["websocket"], reconnection: false, auth: { token: mint({ org_id: "acme", user_id: "eve" }) } },
      callbacks: { onServerError: (e) => refusedErrors.push(e) },
    });
    opened.push(pretender);
    const refusal = await until(() => refusedErrors[0], "the handshake's refusal");
    assert.match(String((refusal as Error).message), /forbidden/);
    assert.equal(pretender.isConnected(), false);
    pretender.destroy();

    const agent = new AIChatSocket({
      url: natter.url,
      chatId,
      clientType: "humanAgent",
      ioOptions: { transports: ["websocket"], auth: { token: agentToken } },
    });
    opened.push(agent);
    await agent.whenReady();
    const joined = await until(() => handoff.find((e) => e.humanAgentEngaged), "the agent took the chat");
    assert.equal(joined.agentId, "ada");
  });
});

describe("support desk on seed 002's ChatClient", () => {
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

  test("requestHandoff, joinAsAgent, an agent's message, leaveAsAgent, reactions, end and submitCsat", async () => {
    const base = `${natter.url}/api/v1/chat`;
    const customerEvents: ChatEvent[] = [];
    const customer = new ChatClient({ baseUrl: base, orgId: "default", userId: uid("cust"), transport: "sse-fetch", onMessage: (e) => customerEvents.push(e) });
    const agentEvents: ChatEvent[] = [];
    const agent = new ChatClient({ baseUrl: base, orgId: "default", userId: "sam", clientType: "humanAgent", transport: "sse-fetch", onMessage: (e) => agentEvents.push(e) });
    try {
      await customer.connect();
      const chatKey = await customer.startChat();
      await customer.loadChat(chatKey);
      await customer.sendMessage("hello");
      await until(() => customer.getState().messages.find((m) => m.role === "ai" && m.content === "Echo: hello"), "the AI's reply");

      await customer.requestHandoff();
      await until(() => customerEvents.find((e) => e.type === "human_agent_requested"), "human_agent_requested over SSE");
      assert.equal(customer.getState().currentChat?.isWaitingForAgent, true);

      await agent.connect();
      await agent.loadChat(chatKey);
      await agent.joinAsAgent();
      await until(() => customerEvents.find((e) => e.type === "human_agent_joined"), "human_agent_joined over SSE");
      const chat = customer.getState().currentChat;
      assert.equal(chat?.humanAgentEngaged, true);
      assert.equal(chat?.aiEngaged, false);
      assert.equal(chat?.isWaitingForAgent, false);

      await agent.sendMessage("Sam here");
      const fromAgent = await until(() => customer.getState().messages.find((m) => m.content === "Sam here"), "the agent's message");
      assert.equal(fromAgent.role, "humanAgent");
      await customer.sendMessage("no bot please");
      await sleep(400);
      assert.equal(customer.getState().messages.filter((m) => m.role === "ai").length, 1, "no AI reply while the agent is there");

      await customer.addReaction(fromAgent.id, "🙏");
      await until(() => customer.getState().messages.find((m) => m.id === fromAgent.id)?.reactions?.[0]?.emoji === "🙏", "reaction_update applied");
      await customer.removeReaction(fromAgent.id, "🙏");
      await until(() => customer.getState().messages.find((m) => m.id === fromAgent.id)?.reactions?.length === 0, "reaction removed");

      await agent.leaveAsAgent();
      await until(() => customerEvents.find((e) => e.type === "human_agent_left"), "human_agent_left over SSE");
      assert.equal(customer.getState().currentChat?.aiEngaged, true);
      await customer.sendMessage("bot again");
      await until(() => customer.getState().messages.find((m) => m.role === "ai" && m.content === "Echo: bot again"), "the AI answers again");

      await customer.endChat("done");
      await until(() => customerEvents.find((e) => e.type === "show_csat_survey"), "show_csat_survey");
      await assert.rejects(customer.submitCsat(0), /rating/);
      await customer.submitCsat(3, "ok");
      const summary = await new ChatHistoryClient({ baseUrl: natter.url, orgId: "default" }).getChat(chatKey);
      assert.equal(summary?.csat?.rating, 3);
    } finally {
      customer.destroy();
      agent.destroy();
    }
  });
});
