// One turn end to end on each face, against the same natter and fake upstream, in one run:
// time to the first token and to the end of the turn, per face, with the Socket.IO face as the
// baseline. Rounds interleave the faces so machine noise hits them alike.
//
//   cargo build --release --bins && (cd tests/interop && npm ci)
//   NATTER_BIN_DIR=target/release node tests/interop/bench/faces.mjs [rounds=60] [tokens=50]
import { performance } from "node:perf_hooks";
import { DefaultChatTransport, WebSocketChatTransport } from "ai";
import { EventSource } from "eventsource";
import WebSocket from "ws";
import { connect, startStack, uid } from "../lib/harness.mjs";

const rounds = Number(process.argv[2] ?? 60);
const tokens = Number(process.argv[3] ?? 50);
const prompt = `[fake:tokens n=${tokens}] go`;

async function readChunks(stream, t0) {
  let first = null;
  const reader = stream.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (first === null && value.type === "text-delta") first = performance.now() - t0;
  }
  return { first, total: performance.now() - t0 };
}

/** One turn through an AI SDK transport, per call, in a chat of its own. */
async function aisdk(transport) {
  const chatId = uid("aisdk");
  return async () => {
    const t0 = performance.now();
    const stream = await transport.sendMessages({
      chatId, trigger: "submit-message", messageId: undefined, abortSignal: undefined,
      messages: [{ id: uid("m"), role: "user", parts: [{ type: "text", text: prompt }] }],
    });
    return readChunks(stream, t0);
  };
}

const faces = {
  async socketio(url) {
    const c = await connect(url, { query: { userId: "bench" }, transports: ["websocket"] });
    const chatId = uid("sio");
    await c.socket.emitWithAck("chat:join", { chatId });
    return async () => {
      const messageId = uid("m");
      let first = null;
      const t0 = performance.now();
      const done = new Promise((resolve) => {
        const onToken = () => {
          if (first === null) first = performance.now() - t0;
        };
        c.socket.on("ai:token", onToken);
        c.socket.once("ai:message", () => {
          c.socket.off("ai:token", onToken);
          resolve();
        });
      });
      await c.socket.emitWithAck("user:message", { chatId, messageId, userId: "bench", text: prompt });
      await done;
      return { first, total: performance.now() - t0 };
    };
  },
  aisdkHttp: (url) => aisdk(new DefaultChatTransport({ api: `${url}/api/chat`, body: { userId: "bench" } })),
  aisdkWs: (url) =>
    aisdk(new WebSocketChatTransport({ url: `${url.replace("http", "ws")}/api/chat/ws`, webSocket: WebSocket, body: { userId: "bench" } })),
  // Seed 002 sends no tokens: "first" is the whole reply's arrival.
  async seed002(url) {
    const base = `${url}/api/v1/chat`;
    const post = (op, body) => fetch(`${base}/${op}`, { method: "POST", body: JSON.stringify({ orgId: "default", userId: "bench", ...body }) }).then((r) => r.json());
    const { chatKey } = await post("create", {});
    const es = new EventSource(`${base}/stream?orgId=default&userId=bench&chatKey=${chatKey}`);
    await new Promise((r) => es.addEventListener("reconnected", r, { once: true }));
    return async () => {
      const t0 = performance.now();
      const got = new Promise((resolve) => {
        const on = (ev) => {
          if (JSON.parse(ev.data).message?.role === "ai") {
            es.removeEventListener("message", on);
            resolve();
          }
        };
        es.addEventListener("message", on);
      });
      await post("send", { chatKey, message: { id: uid("m"), content: prompt } });
      await got;
      const total = performance.now() - t0;
      return { first: total, total };
    };
  },
};

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

const stack = await startStack({ args: ["--merge-delta-bytes", "0"] });
try {
  const runners = {};
  for (const [name, make] of Object.entries(faces)) runners[name] = await make(stack.natter.url);
  const results = Object.fromEntries(Object.keys(faces).map((n) => [n, { first: [], total: [] }]));
  for (let r = 0; r < rounds + 5; r++) {
    for (const [name, run] of Object.entries(runners)) {
      const { first, total } = await run();
      if (r >= 5) {
        results[name].first.push(first);
        results[name].total.push(total);
      }
    }
  }
  const base = results.socketio;
  console.log(`rounds=${rounds} tokens=${tokens} (first 5 rounds discarded as warm-up)`);
  console.log("face        first-token p50/p90 ms   turn p50/p90 ms   turn p50 vs socketio");
  for (const [name, r] of Object.entries(results)) {
    const ratio = pct(r.total, 50) / pct(base.total, 50);
    console.log(
      `${name.padEnd(11)} ${pct(r.first, 50).toFixed(2).padStart(7)} / ${pct(r.first, 90).toFixed(2).padStart(7)}   ` +
        `${pct(r.total, 50).toFixed(2).padStart(7)} / ${pct(r.total, 90).toFixed(2).padStart(7)}   ${ratio.toFixed(2)}x`,
    );
  }
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  await stack.stop();
  // Open sockets and event sources would keep node alive.
  process.exit();
}
