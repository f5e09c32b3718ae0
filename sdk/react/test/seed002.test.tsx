// Seed 002's hooks in a DOM (happy-dom) against the real binary: the seed's own ChatPanel
// example with only its import lines changed, useChat's state and cleanup, StrictMode (one
// stream), getToken refresh, reconnect after a server restart, and useChatHistory.
import { EXPECTED_REACT_MAJOR, takeConsoleErrors } from "./dom.js";
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { StrictMode, useEffect, useState, version as reactVersion } from "react";
import { version as reactDomVersion } from "react-dom";
import { act, cleanup, fireEvent, render, renderHook, screen, waitFor } from "@testing-library/react";
import { useChat, useChatHistory, type ChatEvent } from "../src/index.js";
import { startFakeUpstream, startNatter, tempDir, uid, type Natter, type Upstream, stopNatter } from "./harness.js";

const SECRET = "react-test-secret-that-is-long-enough-for-hs256";
function mint(org: string, user: string, expSecs = 600): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ org_id: org, user_id: user, exp: Math.floor(Date.now() / 1000) + expSecs });
  return `${head}.${body}.${crypto.createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url")}`;
}

/** Counts the SSE streams opened through fetch, and which are still open. */
function watchStreams() {
  const real = globalThis.fetch;
  const streams: Array<{ url: string; signal: AbortSignal | undefined }> = [];
  globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => {
    if (String(input).includes("/stream?")) streams.push({ url: String(input), signal: init?.signal ?? undefined });
    return real(input, init);
  }) as typeof fetch;
  return {
    streams,
    open: () => streams.filter((s) => !s.signal?.aborted).length,
    restore: () => void (globalThis.fetch = real),
  };
}

const WAIT = { timeout: 10_000 };

afterEach(() => cleanup());

test(`runs on React ${EXPECTED_REACT_MAJOR}`, () => {
  assert.equal(reactVersion.split(".")[0], EXPECTED_REACT_MAJOR);
  assert.equal(reactDomVersion.split(".")[0], EXPECTED_REACT_MAJOR);
});

describe("useChat", () => {
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

  test("the seed's ChatPanel example, import lines changed: start, ask, one reply, thinking indicator", async () => {
    process.env["NEXT_PUBLIC_API_GATEWAY_URL"] = natter.url;
    // Seed 002's example calls getGatewayToken from @elqnt/api-client; with auth off any
    // token-less provider does.
    const getGatewayToken = async () => null;

    // ---- the seed's example (SKILL.md "Minimal end-to-end chat"), verbatim but the imports ----
    function ChatPanel({ orgId, userId, agentName }: {
      orgId: string; userId: string; agentName: string;
    }) {
      const chat = useChat({
        baseUrl: `${process.env.NEXT_PUBLIC_API_GATEWAY_URL}/api/v1/chat`, // chat prefix, NOT gateway root
        orgId, userId, autoConnect: true,
        getToken: getGatewayToken, // tier-2 token — the service rejects token-less connects
      });
      const [thinking, setThinking] = useState(false);

      useEffect(() => {
        chat.connect();
        return () => chat.disconnect();
      }, []); // eslint-disable-line

      useEffect(() => chat.on("agent_execution_started", () => setThinking(true)), [chat.on]);
      useEffect(() => chat.on("agent_execution_ended", () => setThinking(false)), [chat.on]);

      async function begin() {
        await chat.startChat({ agentName }); // binds thread → a saved agent (see @elqnt/agents)
      }

      return (
        <div>
          <button onClick={begin} disabled={!chat.isConnected}>Start</button>
          <ul>
            {chat.messages.map((m) => (
              <li key={m.id}><b>{m.role}:</b> {m.content}</li>
            ))}
          </ul>
          {thinking && <p>…thinking</p>}
          <button onClick={() => chat.sendMessage("What's your refund policy?")}>Ask</button>
        </div>
      );
    }
    // ---- end of the seed's example ----

    const watch = watchStreams();
    try {
      const view = render(<StrictMode><ChatPanel orgId="default" userId={uid("ann")} agentName="support" /></StrictMode>);
      const start = screen.getByText("Start") as HTMLButtonElement;
      await waitFor(() => assert.equal(start.disabled, false), WAIT);
      fireEvent.click(start);
      // startChat resolves from HTTP; Ask needs the chatKey.
      await new Promise((r) => setTimeout(r, 300));
      fireEvent.click(screen.getByText("Ask"));
      await waitFor(() => assert.ok(screen.getByText("Echo: What's your refund policy?")), WAIT);
      await waitFor(() => assert.equal(screen.queryByText("…thinking"), null), WAIT);
      const items = [...view.container.querySelectorAll("li")].map((li) => li.textContent);
      assert.deepEqual(items, ["user: What's your refund policy?", "ai: Echo: What's your refund policy?"]);
      assert.equal(watch.open(), 1, "one stream open under StrictMode");
      view.unmount();
      assert.equal(watch.open(), 0, "the stream is closed on unmount");
    } finally {
      watch.restore();
    }
  });

  test("state re-renders; StrictMode double effects open one stream; unmount closes it and stops updates", async () => {
    const watch = watchStreams();
    let renders = 0;
    try {
      const user = uid("bo");
      const { result, unmount } = renderHook(
        () => {
          renders += 1;
          return useChat({ baseUrl: `${natter.url}/api/v1/chat`, orgId: "default", userId: user, autoConnect: true, transport: "sse-fetch" });
        },
        { wrapper: StrictMode },
      );
      await waitFor(() => assert.equal(result.current.connectionState, "connected"), WAIT);
      assert.equal(watch.streams.length, 1);
      assert.equal(result.current.isConnected, true);
      const on = result.current.on;
      let chatKey = "";
      await act(async () => {
        chatKey = await result.current.startChat();
      });
      assert.equal(result.current.chatKey, chatKey);
      const events: ChatEvent[] = [];
      const off = result.current.on("message", (e) => events.push(e));
      await act(() => result.current.sendMessage("hi there"));
      await waitFor(() => assert.equal(result.current.messages.length, 2), WAIT);
      assert.deepEqual(result.current.messages.map((m) => [m.role, m.status]), [["user", "sent"], ["ai", "sent"]]);
      assert.equal(result.current.on, on, "methods are stable across renders");
      off();

      unmount();
      assert.equal(watch.open(), 0);
      const before = renders;
      // A message from another user to the same chat: no re-render after unmount.
      await fetch(`${natter.url}/api/v1/chat/send`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ orgId: "default", chatKey, userId: "someone", message: { content: "late" } }),
      });
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(renders, before);
      assert.ok(events.length >= 2);
      assert.deepEqual(takeConsoleErrors().filter((e) => !e.includes("not wrapped in act")), []);
    } finally {
      watch.restore();
    }
  });

  test("the seed's flow through the hook: on(), loadChat in a second tab, typing, endChat", async () => {
    const user = uid("fay");
    const base = `${natter.url}/api/v1/chat`;
    const tab1 = renderHook(() => useChat({ baseUrl: base, orgId: "default", userId: user, autoConnect: true, transport: "sse-fetch" }));
    const agent = uid("agent");
    const tab2 = renderHook(() => useChat({ baseUrl: base, orgId: "default", userId: agent, autoConnect: true }));
    await waitFor(() => assert.equal(tab1.result.current.isConnected && tab2.result.current.isConnected, true), WAIT);
    let key = "";
    await act(async () => {
      key = await tab1.result.current.startChat({ agentName: "support" });
      await tab1.result.current.sendMessage("first question");
    });
    await waitFor(() => assert.equal(tab1.result.current.messages.length, 2), WAIT);

    const seen: string[] = [];
    const offs = ["load_chat_response", "typing", "stopped_typing", "chat_ended"].map((t) => tab2.result.current.on(t, (e) => seen.push(e.type)));
    await act(async () => {
      const chat = await tab2.result.current.loadChat(key);
      assert.equal(chat.messages.length, 2);
    });
    assert.equal(tab2.result.current.chatKey, key);
    assert.deepEqual(tab2.result.current.messages.map((m) => m.content), ["first question", "Echo: first question"]);
    assert.equal(tab2.result.current.currentChat?.metadata?.["agentName"], "support");
    await waitFor(() => assert.ok(seen.includes("load_chat_response")), WAIT);

    act(() => tab1.result.current.startTyping());
    await waitFor(() => assert.ok(seen.includes("typing")), WAIT);
    act(() => tab1.result.current.stopTyping());
    await waitFor(() => assert.ok(seen.includes("stopped_typing")), WAIT);

    // A message from tab 1 reaches tab 2's state once.
    await act(() => tab1.result.current.sendMessage("second question"));
    await waitFor(() => assert.equal(tab2.result.current.messages.length, 4), WAIT);
    await act(() => tab1.result.current.endChat("done"));
    assert.equal(tab1.result.current.currentChat, null, "tab 1 never loaded the chat");
    await waitFor(() => assert.equal(tab2.result.current.currentChat?.status, "closed"), WAIT);
    assert.ok(seen.includes("chat_ended"));
    for (const off of offs) off();
    assert.equal(new Set(tab2.result.current.messages.map((m) => m.id)).size, 4);
  });

  test("reconnect after the server restarts: transport_reconnected, nothing lost or doubled in messages", async () => {
    const dir = tempDir();
    const up = await startFakeUpstream();
    let server = await startNatter({ upstream: up, dataDir: dir.dir });
    const port = server.port;
    try {
      const { result } = renderHook(() =>
        useChat({
          baseUrl: `${server.url}/api/v1/chat`,
          orgId: "default",
          userId: "ann",
          autoConnect: true,
          transport: "sse-fetch",
          retryConfig: { initialDelay: 1000, jitter: false, maxDelay: 1500 },
        }),
      );
      const reconnects: ChatEvent[] = [];
      await waitFor(() => assert.equal(result.current.isConnected, true), WAIT);
      result.current.on("transport_reconnected", (e) => reconnects.push(e));
      let chatKey = "";
      await act(async () => {
        chatKey = await result.current.startChat();
        await result.current.sendMessage("one");
      });
      await waitFor(() => assert.equal(result.current.messages.length, 2), WAIT);
      await stopNatter(server);
      await waitFor(() => assert.equal(result.current.connectionState, "reconnecting"), WAIT);
      server = await startNatter({ upstream: up, dataDir: dir.dir, listen: `127.0.0.1:${port}` });
      await fetch(`${server.url}/api/v1/chat/send`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ orgId: "default", chatKey, userId: "bob", message: { content: "two" } }),
      });
      await waitFor(() => assert.equal(reconnects.length, 1), { timeout: 15_000 });
      await waitFor(() => assert.equal(result.current.messages.length, 4), WAIT);
      await act(() => result.current.sendMessage("three"));
      await waitFor(() => assert.equal(result.current.messages.length, 6), WAIT);
      assert.deepEqual(result.current.messages.map((m) => m.content), ["one", "Echo: one", "two", "Echo: two", "three", "Echo: three"]);
      assert.equal(result.current.metrics.reconnectCount, 1);
    } finally {
      cleanup();
      await stopNatter(server);
      up.stop();
      dir.cleanup();
    }
  });

  test("useChatHistory: results as React state; failures resolve to defaults and set error, never throw", async () => {
    const user = uid("cy");
    const chat = renderHook(() => useChat({ baseUrl: `${natter.url}/api/v1/chat`, orgId: "default", userId: user }));
    let key = "";
    await act(async () => {
      key = await chat.result.current.startChat();
      await chat.result.current.sendMessage("history please");
    });
    const { result } = renderHook(() => useChatHistory({ baseUrl: natter.url, orgId: "default" }));
    let list: Awaited<ReturnType<typeof result.current.getChatHistory>> | undefined;
    await act(async () => {
      list = await result.current.getChatHistory({ limit: 200 });
    });
    assert.ok(list!.chats.some((c) => c.chatKey === key));
    assert.equal(result.current.error, null);
    await act(async () => {
      assert.equal(await result.current.updateChat(key, { title: "Renamed" }), true);
      assert.equal((await result.current.getChat(key))?.title, "Renamed");
      assert.deepEqual((await result.current.getChatsByUser(user)).map((c) => c.chatKey), [key]);
      assert.equal(await result.current.deleteChat(key), true);
      assert.equal(await result.current.getChat(key), null);
    });
    assert.match(result.current.error ?? "", /^not_found/);

    const dead = renderHook(() => useChatHistory({ baseUrl: "http://127.0.0.1:9", orgId: "default" }));
    await act(async () => {
      assert.deepEqual(await dead.result.current.getChatHistory(), { chats: [], total: 0, hasMore: false });
    });
    assert.match(dead.result.current.error ?? "", /^network_error/);
    assert.equal(dead.result.current.loading, false);
    await act(async () => {
      assert.equal(await dead.result.current.getChat("k"), null);
      assert.equal(await dead.result.current.updateChat("k", {}), false);
      assert.equal(await dead.result.current.deleteChat("k"), false);
      assert.deepEqual(await dead.result.current.getChatsByUser("u"), []);
    });
  });
});

describe("useChat with auth on", () => {
  let upstream: Upstream;
  let natter: Natter;
  let tmp: { dir: string; cleanup(): void };
  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir, args: ["--jwt-secret", SECRET] });
  });
  after(async () => {
    await stopNatter(natter);
    upstream?.stop();
    tmp?.cleanup();
  });

  test("getToken: the latest function passed is awaited per connect and per send (no reconnect on a new function)", async () => {
    const user = uid("dee");
    const calls: string[] = [];
    const watch = watchStreams();
    try {
      const { result, rerender } = renderHook(
        ({ tag }: { tag: string }) =>
          useChat({
            baseUrl: `${natter.url}/api/v1/chat`,
            orgId: "acme",
            userId: user,
            autoConnect: true,
            transport: "sse-fetch",
            getToken: async () => {
              calls.push(tag);
              return mint("acme", user);
            },
          }),
        { initialProps: { tag: "first" } },
      );
      await waitFor(() => assert.equal(result.current.isConnected, true), WAIT);
      assert.deepEqual(calls, ["first"]);
      rerender({ tag: "second" });
      await act(async () => {
        await result.current.startChat();
        await result.current.sendMessage("with a fresh token");
      });
      assert.deepEqual(calls, ["first", "second", "second"]);
      assert.equal(watch.streams.length, 1, "a new getToken function does not reconnect");
      await waitFor(() => assert.equal(result.current.messages.length, 2), WAIT);
      assert.match(watch.streams[0]!.url, /[?&]token=/);
    } finally {
      watch.restore();
    }
  });

  test("a refused token shows as error, and the next send with a good token works", async () => {
    const user = uid("eve");
    let good = false;
    const { result } = renderHook(() =>
      useChat({ baseUrl: `${natter.url}/api/v1/chat`, orgId: "acme", userId: user, getToken: () => (good ? mint("acme", user) : "not-a-token") }),
    );
    await act(async () => {
      await assert.rejects(result.current.startChat());
    });
    assert.equal(result.current.error?.code, "unauthorized");
    good = true;
    await act(async () => {
      result.current.clearError();
      assert.ok(await result.current.startChat());
    });
    assert.equal(result.current.error, null);
  });
});
