// The AI SDK hook path needs nothing new: `useChat` from @ai-sdk/react with Natter's
// NatterChatTransport (Socket.IO) or the SDK's own DefaultChatTransport (HTTP) streams a reply
// from the real binary. The README's example, as a test.
import "./dom.js";
import { after, afterEach, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport, type UIMessage } from "ai";
import { act, cleanup, renderHook, waitFor } from "@testing-library/react";
import { NatterChatTransport } from "@natter/client";
import { startFakeUpstream, startNatter, tempDir, uid, type Natter, type Upstream, stopNatter } from "./harness.js";

const textOf = (m: UIMessage | undefined) =>
  (m?.parts ?? []).map((p) => (p.type === "text" ? p.text : "")).join("");

afterEach(() => cleanup());

describe("@ai-sdk/react useChat on Natter", () => {
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

  test("with NatterChatTransport (Socket.IO): the reply streams into messages", async () => {
    const transport = new NatterChatTransport({ url: natter.url, userId: "ann" });
    const id = uid("room");
    try {
      const { result } = renderHook(() => useChat({ id, transport }));
      await act(() => result.current.sendMessage({ text: "[fake:drip n=6 delay_ms=30] hi" }));
      await waitFor(() => assert.equal(result.current.status, "ready"), { timeout: 10_000 });
      assert.equal(result.current.error, undefined);
      assert.deepEqual(result.current.messages.map((m) => m.role), ["user", "assistant"]);
      assert.equal(textOf(result.current.messages[1]), "t0 t1 t2 t3 t4 t5 ");
    } finally {
      transport.close();
    }
  });

  test("with DefaultChatTransport (POST /api/chat): the reply streams into messages", async () => {
    const transport = new DefaultChatTransport({ api: `${natter.url}/api/chat`, body: { userId: "ann" } });
    const id = uid("room");
    const { result } = renderHook(() => useChat({ id, transport }));
    await act(() => result.current.sendMessage({ text: "hello there" }));
    await waitFor(() => assert.equal(result.current.status, "ready"), { timeout: 10_000 });
    assert.equal(result.current.error, undefined);
    assert.equal(textOf(result.current.messages[1]), "Echo: hello there");
  });
});
