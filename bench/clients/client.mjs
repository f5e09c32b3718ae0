// One measured turn with a Node client, in a process of its own so that its CPU time and peak
// RSS are its own. Prints one JSON line (the same keys as the Rust `bench_receive` example):
//
//   node bench/clients/client.mjs <baseline|sdk> <natter url> <tokens>
//
// baseline: stock socket.io-client 4.8.1 plus the few lines an app needs to join a turn's
//           tokens correctly (CONTRACT §6.4: next expected index, `through`).
// sdk:      @natter/client's AIChatSocket (sdk/typescript/dist), its onAIToken `turnText`.
//
// The turn is `[fake:bench n=<tokens> delay_ms=0]`: the fake upstream sends the tokens back to
// back. Timing runs from the `user:message` emit to the `ai:message`; CPU is process.cpuUsage()
// over the same span (`cpuTurnMs`) and over the whole process (`cpuTotalMs`, startup and module
// loading included); `maxRssKiB` is the process's peak RSS. `missingTailBytes` is how much of
// ai:message's text never arrived as tokens (0 normally).
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";

const TURN_TIMEOUT_MS = Number(process.env.TURN_TIMEOUT_MS ?? 120_000);
const USER_ID = "bench";

function usage(message) {
  process.stderr.write(`${message}\nusage: node client.mjs <baseline|sdk> <natter url> <tokens>\n`);
  process.exit(2);
}

const [kind, url, tokensArg] = process.argv.slice(2);
if (kind !== "baseline" && kind !== "sdk") usage(`unknown client ${JSON.stringify(kind)}`);
if (!url || !/^https?:\/\//.test(url)) usage(`bad url ${JSON.stringify(url)}`);
const tokens = Number(tokensArg);
if (!Number.isInteger(tokens) || tokens < 1 || tokens > 100_000) usage(`tokens must be 1..100000, got ${JSON.stringify(tokensArg)}`);

const chatId = `bench-${kind}-${process.pid}-${Date.now().toString(36)}`;
const requestId = randomUUID();
const messageId = randomUUID();
const prompt = `[fake:bench n=${tokens} delay_ms=0]`;

/** Rejects after TURN_TIMEOUT_MS, so a lost turn ends the process with a clear error. */
function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${TURN_TIMEOUT_MS} ms waiting for ${what}`)), TURN_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Stock socket.io-client: join, send, join the tokens by index, wait for ai:message. */
async function runBaseline() {
  const { io } = await import("socket.io-client");
  const socket = io(url, { transports: ["websocket"], reconnection: false, forceNew: true, query: { userId: USER_ID } });
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }),
    "connect",
  );
  const join = await socket.timeout(10_000).emitWithAck("chat:join", { chatId, userId: USER_ID });
  if (!join?.ok) throw new Error(`chat:join refused: ${JSON.stringify(join)}`);

  let text = "";
  let next = 0;
  let events = 0;
  let merged = 0;
  let failure = null;
  const done = new Promise((resolve, reject) => {
    socket.on("ai:token", (t) => {
      if (t.requestId !== requestId) return;
      events += 1;
      const last = t.through ?? t.index;
      if (last !== t.index) merged += 1;
      if (last < next) return; // already have it
      if (t.index !== next) {
        failure ??= new Error(`token gap: expected index ${next}, got ${t.index}`);
        return;
      }
      text += t.token;
      next = last + 1;
    });
    socket.on("ai:message", (m) => m.requestId === requestId && resolve(m));
    socket.on("ai:error", (e) => e.requestId === requestId && reject(new Error(`ai:error ${e.code}: ${e.message}`)));
    socket.on("disconnect", (reason) => reject(new Error(`disconnected: ${reason}`)));
  });

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const ack = socket.timeout(10_000).emitWithAck("user:message", { chatId, messageId, requestId, userId: USER_ID, text: prompt });
  const message = await withTimeout(done, "ai:message");
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const acked = await ack;
  if (!acked?.ok) throw new Error(`user:message refused: ${JSON.stringify(acked)}`);
  socket.close();
  if (failure) throw failure;
  return { text, events, merged, message, wallMs, cpu };
}

/** @natter/client's AIChatSocket: its dedupe and per-turn text (onAIToken's turnText). */
async function runSdk() {
  const sdkIndex = new URL("../../sdk/typescript/dist/src/index.js", import.meta.url);
  const { AIChatSocket } = await import(sdkIndex.href);
  let text = "";
  let events = 0;
  let merged = 0;
  let settle;
  const done = new Promise((resolve, reject) => {
    settle = { resolve, reject };
  });
  const chat = new AIChatSocket({
    url,
    chatId,
    userId: USER_ID,
    ioOptions: { transports: ["websocket"], reconnection: false, query: { userId: USER_ID } },
    callbacks: {
      onAIToken: (e) => {
        if (e.requestId !== requestId) return;
        events += 1;
        if (e.through != null && e.through !== e.index) merged += 1;
        text = e.turnText;
      },
      onAIMessage: (m) => m.requestId === requestId && settle.resolve(m),
      onAIError: (e) => e.requestId === requestId && settle.reject(new Error(`ai:error ${e.code}: ${e.message}`)),
      onServerError: (e) => settle.reject(new Error(`server error: ${JSON.stringify(e)}`)),
      onDisconnect: ({ reason }) => settle.reject(new Error(`disconnected: ${reason}`)),
    },
  });
  await withTimeout(chat.whenReady(), "connect and join");

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const ack = chat.sendMessage({ messageId, requestId, userId: USER_ID, text: prompt });
  const message = await withTimeout(done, "ai:message");
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await ack; // rejects with a NatterError if the server refused the message
  chat.destroy();
  // The SDK hands over each new index once (duplicates never reach onAIToken).
  return { text, events, merged, message, wallMs, cpu };
}

try {
  const r = kind === "baseline" ? await runBaseline() : await runSdk();
  // The tokens joined must be the start of ai:message's text. They may stop short of it: a
  // member that fell further behind than the server's channel while the turn ended gets the
  // ai:message (the whole text) without the tokens it missed (see the README).
  if (!r.message.text.startsWith(r.text)) {
    throw new Error(`joined text (${r.text.length} chars) is not a prefix of ai:message.text (${r.message.text.length} chars)`);
  }
  const total = process.cpuUsage();
  const result = {
    client: kind,
    tokens,
    events: r.events,
    merged: r.merged,
    textBytes: Buffer.byteLength(r.text),
    missingTailBytes: Buffer.byteLength(r.message.text) - Buffer.byteLength(r.text),
    wallMs: r.wallMs,
    tokensPerSec: tokens / (r.wallMs / 1000),
    cpuTurnMs: (r.cpu.user + r.cpu.system) / 1000,
    cpuTotalMs: (total.user + total.system) / 1000,
    maxRssKiB: process.resourceUsage().maxRSS,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (error) {
  process.stderr.write(`${kind} client failed: ${error?.stack ?? error}\n`);
  process.exit(1);
}
