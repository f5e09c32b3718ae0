// Seed 004's hooks in a DOM (happy-dom) against the real binary: the seed's Quick Start and
// ConversationView examples with only the import changed, isReady, the streaming text growing
// in state, the React Query lists refreshing by themselves after a reply, StrictMode (one
// connection), unmount cleanup, and a server restart with nothing lost or doubled.
import { takeConsoleErrors } from "./dom.js";
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { StrictMode, type ReactNode } from "react";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { act, cleanup, fireEvent, render, renderHook, screen, waitFor } from "@testing-library/react";
import {
  WebSocketService,
  configureWebSocket,
  useConversationMessages,
  useConversations,
  useWebSocketChat,
} from "../src/index.js";
import { startFakeUpstream, startNatter, tempDir, uid, type Natter, type Upstream, stopNatter } from "./harness.js";

const WAIT = { timeout: 10_000 };

/** Query clients made by a test; cleared after it (their cache timers would keep Node alive). */
const queryClients: QueryClient[] = [];

function withQuery(strict = false) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  queryClients.push(client);
  const Wrapper = ({ children }: { children: ReactNode }) => {
    const inner = <QueryClientProvider client={client}>{children}</QueryClientProvider>;
    return strict ? <StrictMode>{inner}</StrictMode> : inner;
  };
  return { client, Wrapper };
}

afterEach(async () => {
  cleanup();
  for (const c of queryClients.splice(0)) c.clear();
  await new Promise((r) => setTimeout(r, 10)); // the release tick
  WebSocketService.resetInstance();
});

describe("seed 004 hooks", () => {
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

  test("the seed's Quick Start and ConversationView, import changed: status, send, the list refreshes by itself", async () => {
    const conv = uid("conv");
    configureWebSocket({ url: natter.url, auth: { userId: "ann" } });

    // ---- seed 004's Quick Start, verbatim but the import ----
    function ChatComponent() {
      const { state, sendMessage, isReady } = useWebSocketChat({
        conversationId: conv,
        autoConnect: true,
      });

      return (
        <div>
          <div>Status: {state.isConnected ? 'Connected' : 'Disconnected'}</div>
          <button 
            onClick={() => sendMessage('Hello!')} 
            disabled={!isReady}
          >
            Send Message
          </button>
        </div>
      );
    }
    // ---- seed 004's ConversationView, verbatim ----
    function ConversationView({ conversationId }: { conversationId: string }) {
      const { data: messages, isLoading } = useConversationMessages(conversationId);
      // Messages automatically update via WebSocket events
      
      return (
        <div>
          {messages?.map(msg => (
            <div key={msg.id}>{msg.content}</div>
          ))}
        </div>
      );
    }
    // ----

    const { Wrapper } = withQuery(true);
    render(
      <Wrapper>
        <ChatComponent />
        <ConversationView conversationId={conv} />
      </Wrapper>,
    );
    await waitFor(() => assert.ok(screen.getByText("Status: Connected")), WAIT);
    const button = screen.getByText("Send Message") as HTMLButtonElement;
    await waitFor(() => assert.equal(button.disabled, false), WAIT);
    fireEvent.click(button);
    // No refetch by hand: the service's events invalidate the query.
    await waitFor(() => assert.ok(screen.getByText("Echo: Hello!")), WAIT);
    assert.ok(screen.getByText("Hello!"));
    assert.deepEqual(takeConsoleErrors().filter((e) => !e.includes("not wrapped in act")), []);
  });

  test("useWebSocketChat: isReady, streamingMessage grows then clears, messages once each; useConversations refreshes", async () => {
    const conv = uid("conv");
    configureWebSocket({ url: natter.url, auth: { userId: "ann" } });
    const { Wrapper } = withQuery();
    const streamed: string[] = [];
    const { result } = renderHook(
      () => {
        const chat = useWebSocketChat({ conversationId: conv });
        const list = useConversations();
        const history = useConversationMessages(conv);
        const s = chat.state.streamingMessage?.content;
        if (s !== undefined && streamed.at(-1) !== s) streamed.push(s);
        return { chat, list, history };
      },
      { wrapper: Wrapper },
    );
    await waitFor(() => assert.equal(result.current.chat.isReady, true), WAIT);
    assert.equal(result.current.chat.state.isConnected, true);
    await waitFor(() => assert.equal(result.current.list.isSuccess, true), WAIT);
    // The join made the conversation; it has no title until its first message.
    const before = result.current.list.data!.find((c) => c.id === conv);
    assert.equal(before?.title ?? "", "");

    await act(() => result.current.chat.sendMessage("[fake:drip n=12 delay_ms=40] stream please"));
    await waitFor(() => assert.ok(result.current.chat.state.messages.some((m) => m.type === "message_complete")), WAIT);
    const done = result.current.chat.state.messages.find((m) => m.type === "message_complete")!;
    assert.equal(done.content, "t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 t10 t11 ");
    assert.equal(result.current.chat.state.streamingMessage, null);
    assert.ok(streamed.length >= 3, `the streamed text grew over several renders: ${JSON.stringify(streamed)}`);
    for (let i = 1; i < streamed.length; i++) assert.ok(streamed[i]!.startsWith(streamed[i - 1]!), "each render extends the last");
    assert.deepEqual(result.current.chat.state.messages.map((m) => m.type), ["message_received", "message_complete"]);

    // The React Query lists refresh by themselves.
    await waitFor(() => assert.equal(result.current.history.data?.length, 2), WAIT);
    assert.deepEqual(result.current.history.data!.map((m) => m.role), ["user", "assistant"]);
    await waitFor(() => assert.ok(result.current.list.data!.some((c) => c.id === conv && c.title.includes("stream please"))), WAIT);
  });

  test("switching conversationId leaves the old one and starts the new one empty", async () => {
    const first = uid("conv");
    const second = uid("conv");
    configureWebSocket({ url: natter.url, auth: { userId: "ann" } });
    const service = WebSocketService.getInstance();
    const { result, rerender } = renderHook(({ id }: { id: string }) => useWebSocketChat({ conversationId: id }), {
      initialProps: { id: first },
    });
    await waitFor(() => assert.equal(result.current.isReady, true), WAIT);
    await act(() => result.current.sendMessage("in the first"));
    await waitFor(() => assert.equal(result.current.state.messages.length, 2), WAIT);
    rerender({ id: second });
    assert.equal(service.isJoined(first), false);
    await waitFor(() => assert.equal(service.isJoined(second), true), WAIT);
    await waitFor(() => assert.equal(result.current.isReady, true), WAIT);
    assert.equal(result.current.state.messages.length, 0);
    await act(() => result.current.sendMessage("in the second"));
    await waitFor(() => assert.equal(result.current.state.messages.length, 2), WAIT);
    assert.deepEqual(result.current.state.messages.map((m) => m.content), ["in the second", "Echo: in the second"]);
  });

  test("typing from another member shows in typingUserIds", async () => {
    const conv = uid("conv");
    configureWebSocket({ url: natter.url, auth: { userId: "ann" } });
    const { result } = renderHook(() => useWebSocketChat({ conversationId: conv }));
    await waitFor(() => assert.equal(result.current.isReady, true), WAIT);
    const { connect } = await import("./harness.js");
    const bob = await connect(natter.url, { query: { profile: "flat", userId: "bob" } });
    try {
      await bob.emit("join", { conversation_id: conv });
      bob.socket.emit("message", { type: "typing", conversation_id: conv, metadata: { typing: true } });
      await waitFor(() => assert.deepEqual(result.current.state.typingUserIds, ["bob"]), WAIT);
      bob.socket.emit("message", { type: "typing", conversation_id: conv, metadata: { typing: false } });
      await waitFor(() => assert.deepEqual(result.current.state.typingUserIds, []), WAIT);
    } finally {
      bob.close();
    }
  });

  test("StrictMode: one connection; unmount leaves, disconnects and stops updates", async () => {
    const conv = uid("conv");
    configureWebSocket({ url: natter.url, auth: { userId: "ann" } });
    const service = WebSocketService.getInstance();
    const lifecycle: string[] = [];
    service.on("connect", () => lifecycle.push("connect"));
    service.on("disconnect", () => lifecycle.push("disconnect"));
    service.on("joined", () => lifecycle.push("joined"));
    const { Wrapper } = withQuery(true);
    let renders = 0;
    const { result, unmount } = renderHook(
      () => {
        renders += 1;
        return { chat: useWebSocketChat({ conversationId: conv }), messages: useConversationMessages(conv) };
      },
      { wrapper: Wrapper },
    );
    await waitFor(() => assert.equal(result.current.chat.isReady, true), WAIT);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(lifecycle, ["connect", "joined"]);
    unmount();
    await waitFor(() => assert.equal(service.isConnected(), false), WAIT);
    assert.deepEqual(lifecycle, ["connect", "joined", "disconnect"]);
    assert.equal(service.isJoined(conv), false);
    const before = renders;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(renders, before);
  });

  test("autoConnect: false waits for connect(); a bad server shows as state.error", async () => {
    configureWebSocket({ url: "http://127.0.0.1:9", reconnection: false, auth: { userId: "ann" } });
    const { result } = renderHook(() => useWebSocketChat({ conversationId: "c1", autoConnect: false }));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(result.current.state.isConnecting, false);
    assert.equal(result.current.state.isConnected, false);
    await act(() => result.current.connect());
    assert.match(result.current.state.error ?? "", /connect_error|xhr poll error|websocket error/i);
    assert.equal(result.current.isReady, false);
  });
});

describe("seed 004 hooks: server restart", () => {
  test("after a restart the hook reconnects, rejoins, and has every message once", async () => {
    const dir = tempDir();
    const up = await startFakeUpstream();
    let server = await startNatter({ upstream: up, dataDir: dir.dir });
    const port = server.port;
    const conv = uid("conv");
    configureWebSocket({ url: server.url, reconnectionDelay: 300, auth: { userId: "ann" } });
    const { Wrapper } = withQuery();
    try {
      const { result } = renderHook(() => ({ chat: useWebSocketChat({ conversationId: conv }), history: useConversationMessages(conv) }), {
        wrapper: Wrapper,
      });
      await waitFor(() => assert.equal(result.current.chat.isReady, true), WAIT);
      await act(() => result.current.chat.sendMessage("one"));
      await waitFor(() => assert.equal(result.current.chat.state.messages.length, 2), WAIT);
      await stopNatter(server);
      await waitFor(() => assert.equal(result.current.chat.state.isConnected, false), WAIT);
      assert.equal(result.current.chat.isReady, false);
      server = await startNatter({ upstream: up, dataDir: dir.dir, listen: `127.0.0.1:${port}` });
      const { connect } = await import("./harness.js");
      const bob = await connect(server.url, { query: { profile: "flat", userId: "bob" } });
      await bob.emit("join", { conversation_id: conv });
      await bob.emit("message", { content: "two", conversation_id: conv, metadata: { message_id: uid("m") } });
      bob.close();
      await waitFor(() => assert.equal(result.current.chat.isReady, true), { timeout: 20_000 });
      await waitFor(() => assert.equal(result.current.chat.state.messages.length, 4), WAIT);
      await act(() => result.current.chat.sendMessage("three"));
      await waitFor(() => assert.equal(result.current.chat.state.messages.length, 6), WAIT);
      assert.deepEqual(result.current.chat.state.messages.map((m) => m.content), ["one", "Echo: one", "two", "Echo: two", "three", "Echo: three"]);
      await waitFor(() => assert.equal(result.current.history.data?.length, 6), WAIT);
    } finally {
      cleanup();
      WebSocketService.resetInstance();
      await stopNatter(server);
      up.stop();
      dir.cleanup();
    }
  });
});
