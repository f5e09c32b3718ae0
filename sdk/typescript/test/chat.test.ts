// NatterChatTransport driven by the `ai` package's own Chat (AbstractChat with an array state,
// which is what @ai-sdk/react's useChat wraps).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  AbstractChat,
  lastAssistantMessageIsCompleteWithToolCalls,
  type ChatInit,
  type ChatState,
  type ChatStatus,
  type UIMessage,
} from "ai";
import { NatterChatTransport, type ServerToClientEvents } from "../src/index.js";
import { connect, startFakeUpstream, startNatter, tempDir, uid, until, type Natter, type Upstream } from "./harness.js";

type S2C = ServerToClientEvents;

class ArrayState implements ChatState<UIMessage> {
  status: ChatStatus = "ready";
  error: Error | undefined = undefined;
  messages: UIMessage[] = [];
  pushMessage = (m: UIMessage) => {
    this.messages = [...this.messages, m];
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (i: number, m: UIMessage) => {
    this.messages = [...this.messages.slice(0, i), m, ...this.messages.slice(i + 1)];
  };
  snapshot = <T>(thing: T): T => structuredClone(thing);
}

class TestChat extends AbstractChat<UIMessage> {
  constructor(init: Omit<ChatInit<UIMessage>, "messages">) {
    super({ ...init, state: new ArrayState() });
  }
}

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

function transport(): NatterChatTransport {
  const t = new NatterChatTransport({ url: natter.url, userId: "ann" });
  transports.push(t);
  return t;
}

const textOf = (m: UIMessage | undefined) => (m?.parts ?? []).map((p) => (p.type === "text" ? p.text : "")).join("");

async function observe(chatId: string) {
  const observer = await connect(natter.url, { query: { userId: "obs" } });
  await observer.emit("chat:join", { chatId });
  return observer;
}

test("Chat.sendMessage: the assistant message equals the stored reply", async () => {
  const chatId = uid("chat");
  const observer = await observe(chatId);
  const errors: Error[] = [];
  const chat = new TestChat({ id: chatId, transport: transport(), onError: (e) => errors.push(e) });
  await chat.sendMessage({ text: "[fake:tokens n=6] via Chat" });
  const stored = (await observer.waitFor("ai:message")) as S2C["ai:message"];
  assert.deepEqual(errors, []);
  assert.equal(chat.status, "ready");
  assert.equal(chat.messages.length, 2);
  assert.equal(chat.messages[1]?.id, stored.messageId);
  assert.equal(textOf(chat.messages[1]), stored.text);
  const relayed = (await observer.waitFor("chat:message")) as S2C["chat:message"];
  assert.equal(relayed.messageId, chat.messages[0]?.id, "the UIMessage id is the messageId");
  observer.close();
});

test("Chat with a client-run tool: onToolCall + addToolOutput + sendAutomaticallyWhen finish the same turn", async () => {
  const chatId = uid("chat");
  const observer = await observe(chatId);
  const errors: Error[] = [];
  const chat: TestChat = new TestChat({
    id: chatId,
    transport: transport(),
    onError: (e) => errors.push(e),
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
    onToolCall: ({ toolCall }) => {
      // Not awaited, as the SDK's docs ask (it would wait for this very call).
      void chat.addToolOutput({ tool: toolCall.toolName, toolCallId: toolCall.toolCallId, output: "teal" });
    },
  });
  const tools = [{ name: "pick_color", description: "Picks a colour", parameters: { type: "object" } }];
  await chat.sendMessage({ text: "[fake:toolcall name=pick_color args={}] pick" }, { body: { tools } });
  const stored = (await observer.waitFor("ai:message")) as S2C["ai:message"];
  await until(() => chat.status === "ready" && textOf(chat.messages[1]) === stored.text, "the continued turn in the Chat");
  assert.deepEqual(errors, []);
  assert.equal(chat.messages.length, 2, "one assistant message for the whole turn");
  assert.equal(chat.messages[1]?.id, stored.messageId);
  assert.match(stored.text, /teal/);
  const tool = chat.messages[1]?.parts.find((p) => p.type === "tool-pick_color");
  assert.ok(tool && "state" in tool && tool.state === "output-available");
  observer.close();
});

test("Chat.resumeStream on a new page follows a running turn to its end", async () => {
  const chatId = uid("chat");
  const observer = await observe(chatId);
  await observer.emit("user:message", { chatId, messageId: uid("m"), userId: "obs", text: "[fake:drip n=40 delay_ms=15] go" });
  await until(() => observer.of("ai:token").length >= 5, "5 tokens");
  const errors: Error[] = [];
  const chat = new TestChat({ id: chatId, transport: transport(), onError: (e) => errors.push(e) });
  await chat.resumeStream();
  const stored = (await observer.waitFor("ai:message")) as S2C["ai:message"];
  assert.deepEqual(errors, []);
  assert.equal(chat.messages.length, 1);
  assert.equal(chat.messages[0]?.id, stored.messageId);
  assert.equal(textOf(chat.messages[0]), stored.text);
  observer.close();
});

test("Chat.stop aborts the turn on the server; the partial reply is stored", async () => {
  const chatId = uid("chat");
  const observer = await observe(chatId);
  const errors: Error[] = [];
  const chat = new TestChat({ id: chatId, transport: transport(), onError: (e) => errors.push(e) });
  const sending = chat.sendMessage({ text: "[fake:drip n=500 delay_ms=10] stop me" });
  await until(() => observer.of("ai:token").length >= 5, "5 tokens");
  await chat.stop();
  await sending;
  const stored = (await observer.waitFor("ai:message")) as S2C["ai:message"];
  assert.equal(stored.finishReason, "aborted");
  assert.ok(stored.text.length > 0);
  assert.deepEqual(errors, []);
  assert.equal(chat.status, "ready");
  observer.close();
});
