// Soak benchmark (not a test, not run in CI): holds a steady load of concurrent token streams
// on one `natter serve` (release build, fresh data dir, the fake upstream) for a long time and
// watches the server's memory, fds and CPU, and the clients' throughput, latency and correctness.
//
//   cargo build --release -p natter -p natter-fake-upstream && (cd tests/interop && npm ci)
//   node tests/interop/bench/soak.mjs                    # 30 minutes
//   node tests/interop/bench/soak.mjs --quick            # ~2 minutes
//   node tests/interop/bench/soak.mjs --minutes 60 --out /tmp/soak-60.json \
//        -- --max-connections-per-ip 2000               # args after `--` go to `natter serve`
//
// Load (defaults): 40 chats × 5 Socket.IO members (200 sockets); 8 of the chats are made by seed
// 002's `/create` and followed by an SSE stream (`GET /stream?chatKey=…`), whose user sends a
// quarter of that chat's messages with `POST /send`; 4 AI SDK clients POST `/api/chat` turns into
// random live chats. In each chat a message goes out every ~6 s (uniform 0.5–1.5×) whose turn
// drips 100 tokens 30 ms apart (`[fake:drip]`), at most 2 turns outstanding per chat. Churn: about
// once a second a member drops and reconnects (joining with lastSeq + epoch; some over polling,
// some rejoin on the same socket) or an SSE stream reopens with Last-Event-ID; every 20 s the
// oldest chat is drained and abandoned and a new one takes its place.
//
// Every --sample-secs (30) it records the server's VmRSS/VmHWM, open fds and CPU (from /proc), the
// server's /metrics gauges, node's own CPU, and the clients' turns, tokens, errors by code and
// turn latency (message sent → `ai:message` at the first member to get it). Correctness is
// checked all along: every member's tokens, joined by index (`through` honoured, duplicates
// dropped), must equal the turn's `ai:message.text` (or `ai:error.details.partialText`); the SSE
// reply and the AI SDK stream's text must equal it too; rejoins with lastSeq must be `recovered`;
// seqs must only rise; no turn may be lost. Exit code 1 when any of that failed.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
process.env.NATTER_BIN_DIR ??= path.join(repo, "target", "release");
const harness = await import("../lib/harness.mjs");
const { io } = await import("socket.io-client");
const { EventSource } = await import("eventsource");

// ---------------------------------------------------------------------------------------------
// Options

const USAGE = `usage: node tests/interop/bench/soak.mjs [options] [-- natter serve args…]
  --minutes N            soak duration (default 30)
  --quick                ~2 minute run: --minutes 2 --sample-secs 10 --baseline-min 0.5 --rotate-secs 5
  --sample-secs N        sampling period (default 30)
  --baseline-min N       RSS growth is measured from this minute to the end (default 5)
  --chats N              live chats (default 40)
  --members N            Socket.IO members per chat (default 5)
  --sse N                chats made by seed 002 /create, each followed by one SSE stream (default 8)
  --aisdk N              AI SDK clients, each POSTing /api/chat turns one after another (default 4)
  --aisdk-think-secs N   pause between one AI SDK client's turns (default 3)
  --tokens N             tokens per turn (fake drip n=, default 100)
  --token-delay-ms N     gap between tokens (fake drip delay_ms=, default 30)
  --interval-secs N      mean gap between messages in one chat (default 6)
  --max-outstanding N    a chat skips a send while this many turns are open (default 2)
  --churn-secs N         mean gap between churn events (drop + reconnect), 0 = off (default 1)
  --rotate-secs N        one chat drained and replaced every N s, 0 = off (default 20)
  --out FILE             samples as JSON (default /tmp/natter-soak.json)
  --server-arg ARG       one extra \`natter serve\` argument (repeatable; same as after \`--\`)
  --server-limits        keep the server's own rate limits (default: rate limits off, as in
                         the interop tests, since all the load comes from one address)
  --durability MODE      --sqlite-durability for the server (default: the server's, full)
  --verbose              server stderr to this terminal
Binaries from $NATTER_BIN_DIR (default target/release).`;

function parseArgs(argv) {
  const o = {
    minutes: 30, sampleSecs: 30, baselineMin: 5, chats: 40, members: 5, sse: 8, aisdk: 4,
    aisdkThinkSecs: 3, tokens: 100, tokenDelayMs: 30, intervalSecs: 6, maxOutstanding: 2,
    churnSecs: 1, rotateSecs: 20, out: "/tmp/natter-soak.json", serverArgs: [],
    serverLimits: false, durability: null, verbose: false, quick: false,
  };
  const set = {};
  const num = {
    "--minutes": "minutes", "--sample-secs": "sampleSecs", "--baseline-min": "baselineMin",
    "--chats": "chats", "--members": "members", "--sse": "sse", "--aisdk": "aisdk",
    "--aisdk-think-secs": "aisdkThinkSecs", "--tokens": "tokens", "--token-delay-ms": "tokenDelayMs",
    "--interval-secs": "intervalSecs", "--max-outstanding": "maxOutstanding",
    "--churn-secs": "churnSecs", "--rotate-secs": "rotateSecs",
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let inline = null;
    if (a === "--") {
      o.serverArgs.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("--") && a.includes("=")) [a, inline] = [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)];
    const val = () => {
      if (inline !== null) return inline;
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a in num) {
      const v = Number(val());
      if (!Number.isFinite(v) || v < 0) throw new Error(`${a}: not a non-negative number`);
      o[num[a]] = v;
      set[num[a]] = true;
    } else if (a === "--quick") o.quick = true;
    else if (a === "--out") o.out = val();
    else if (a === "--server-arg") o.serverArgs.push(val());
    else if (a === "--server-limits") o.serverLimits = true;
    else if (a === "--durability") o.durability = val();
    else if (a === "--verbose") o.verbose = true;
    else if (a === "--help" || a === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${a}\n${USAGE}`);
  }
  if (o.quick) {
    for (const [k, v] of Object.entries({ minutes: 2, sampleSecs: 10, baselineMin: 0.5, rotateSecs: 5 })) if (!set[k]) o[k] = v;
  }
  if (o.sse > o.chats) o.sse = o.chats;
  if (o.members < 1) throw new Error("--members must be at least 1");
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error(e.message);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const jitter = (mean) => mean * (0.5 + Math.random());
const pick = (xs) => xs[Math.floor(Math.random() * xs.length)];
const runId = `${process.pid.toString(36)}${Date.now().toString(36)}`;
let idCounter = 0;
const uid = (p) => `${p}-${runId}-${(++idCounter).toString(36)}`;
const mmss = (s) => `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(Math.round(s % 60)).padStart(2, "0")}`;
const mb = (kb) => kb / 1024;

/** Where two texts first differ, with a little context, for failure reports. */
function diff(got, want) {
  let i = 0;
  while (i < got.length && i < want.length && got[i] === want[i]) i++;
  const from = Math.max(0, i - 20);
  return { at: i, got: got.slice(from, i + 20), want: want.slice(from, i + 20), gotLen: got.length, wantLen: want.length };
}

function pct(xs, p) {
  if (!xs.length) return null;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** VmRSS / VmHWM (kB), open fds and CPU seconds of a process, from /proc. */
function procStats(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k) => Number(status.match(new RegExp(`^${k}:\\s+(\\d+)`, "m"))?.[1] ?? NaN);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields after the comm: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    const cpu = (Number(f[11]) + Number(f[12])) / CLK_TCK;
    let fds = NaN;
    try {
      fds = readdirSync(`/proc/${pid}/fd`).length;
    } catch {}
    return { rssKb: kb("VmRSS"), hwmKb: kb("VmHWM"), threads: kb("Threads"), fds, cpu };
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Client-side counters

/** Reset at every sample. */
let win = freshWindow();
function freshWindow() {
  return { turns: 0, turnErrors: 0, tokens: 0, tokenEvents: 0, lat: [], ttft: [], aisdkLat: [], errors: {}, sends: 0, skipped: 0, streamingSum: 0, streamingTicks: 0 };
}
/** Whole run. */
const total = {
  turns: 0, turnErrors: 0, tokens: 0, tokenEvents: 0, sends: 0, skipped: 0, lat: [], errors: {},
  reconnects: 0, rejoins: 0, sseReopens: 0, chatsCreated: 0, chatsRetired: 0, presenceUpdates: 0,
};
/** Correctness: everything under `fail` must stay 0. */
const check = {
  ok: 0, // member texts that matched
  sseOk: 0,
  aisdkOk: 0,
  fail: { sseMissed: 0, mismatch: 0, tokenGap: 0, tokensAfterEnd: 0, notRecovered: 0, seqRegression: 0, sseIdRegression: 0, sseMismatch: 0, aisdkMismatch: 0, lostTurns: 0, unresolved: 0, notInPresence: 0 },
  // Not failures, but worth seeing: turn ends a member got with no tokens of that turn on its
  // current connection (replayed after a reconnect, or it joined as the turn ended), and
  // duplicates a same-socket rejoin may legitimately cause (events of the old membership still
  // in flight when the replay starts; the client recipe drops them by seq / token index).
  replayedNoTokens: 0,
  // A member that lagged past the bus while the turn ended gets the rest of the text in
  // `ai:message` only (docs/protocol.md, Slow consumers, step 2): its tokens are a prefix.
  completedByMessage: 0,
  liveNoTokens: 0,
  noMemberToCompare: 0,
  rejoinSeqDups: 0,
  rejoinTokensAfterEnd: 0,
  examples: [],
};
function fail(kind, detail) {
  check.fail[kind]++;
  if (check.examples.length < 20) check.examples.push({ kind, ...detail });
}
function countError(key) {
  win.errors[key] = (win.errors[key] ?? 0) + 1;
  total.errors[key] = (total.errors[key] ?? 0) + 1;
}
function addTokens(n, events = 1) {
  win.tokens += n;
  win.tokenEvents += events;
  total.tokens += n;
  total.tokenEvents += events;
}

// ---------------------------------------------------------------------------------------------
// The server

function defaultServerArgs() {
  // Rate limits and the per-address connection cap off unless asked: all the load comes from
  // one address. A flag the caller passes replaces its default here (clap refuses a flag given
  // twice), and a default flag this build of the server does not know is left out.
  const pairs = [];
  const limits = opts.serverLimits ? [] : [...(harness.NO_RATE_LIMITS ?? []), "--max-connections-per-ip", "0"];
  for (let i = 0; i + 1 < limits.length; i += 2) pairs.push([limits[i], limits[i + 1]]);
  if (opts.durability) pairs.push(["--sqlite-durability", opts.durability]);
  const given = new Set(opts.serverArgs.filter((a) => a.startsWith("--")).map((a) => a.split("=")[0]));
  let help = "";
  try {
    help = execFileSync(path.join(harness.binDir, "natter"), ["serve", "--help"], { encoding: "utf8" });
  } catch {}
  const known = (flag) => !help || new RegExp(`${flag}(?![\\w-])`).test(help);
  for (const [flag] of pairs) if (!given.has(flag) && !known(flag)) console.log(`note: this natter has no ${flag}; not passing it`);
  return pairs.filter(([flag]) => !given.has(flag) && known(flag)).flat();
}

let stderrTail = "";
const logCounts = { WARN: 0, ERROR: 0 };
const logLines = []; // the first few WARN / ERROR lines, without colours
const ANSI = /\x1b\[[0-9;]*m/g;
function startNatter(upstreamUrl, dataDir) {
  const args = [
    "serve",
    "--listen", "127.0.0.1:0",
    "--database", `sqlite://${dataDir}/natter.db`,
    "--provider", "openai", "--openai-base-url", `${upstreamUrl}/v1`, "--model", "fake-model",
    ...defaultServerArgs(),
    ...opts.serverArgs,
  ];
  return new Promise((resolve, reject) => {
    const proc = spawn(path.join(harness.binDir, "natter"), args, {
      env: { ...process.env, NATTER_LOG: process.env.NATTER_LOG ?? "warn", OPENAI_API_KEY: "soak-key" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let started = false;
    const timer = setTimeout(() => reject(new Error(`natter did not start in 20 s:\n${stderrTail}`)), 20000);
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (d) => {
      if (opts.verbose) process.stderr.write(d);
      for (const raw of d.split("\n")) {
        const line = raw.replace(ANSI, "");
        const level = line.match(/\b(WARN|ERROR)\b/)?.[1];
        if (!level) continue;
        logCounts[level]++;
        if (logLines.length < 10) logLines.push(line.slice(0, 300));
      }
      stderrTail = (stderrTail + d).slice(-8000);
    });
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m && !started) {
        started = true;
        clearTimeout(timer);
        resolve({ proc, url: m[1], args });
      }
      if (out.length > 100000) out = out.slice(-1000);
    });
    proc.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`natter exited (${code ?? signal}):\n${stderrTail}`));
    });
  });
}

async function scrapeMetrics(url) {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const sum = (name) => {
      let s = null;
      for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, "gm"))) s = (s ?? 0) + Number(m[1]);
      return s;
    };
    return {
      chatsActive: sum("natter_chats_active"),
      connections: sum("natter_connections"),
      turnsRunning: sum("natter_turns_running"),
      tokensTotal: sum("natter_tokens_total"),
      turnsTotal: sum("natter_turns_total"),
      slowConsumers: sum("natter_slow_consumer_disconnects_total"),
    };
  } catch (e) {
    countError(`metrics:${e.name}`);
    return {};
  }
}

// ---------------------------------------------------------------------------------------------
// Chats and their clients

let URL_ = null;
let stopping = false; // no new sends or reconnects
const chats = []; // live chats, oldest first
let chatSerial = 0;

class Chat {
  constructor({ sse }) {
    this.serial = ++chatSerial;
    this.sse = sse;
    this.id = null; // Socket.IO chatId == seed 002 chatKey == AI SDK id
    this.members = [];
    this.sseClient = null;
    this.retiring = false;
    this.closed = false;
    this.sending = 0; // sends not acked yet
    this.pending = new Map(); // requestId -> t0 (turns whose latency we measure)
    this.pendingByMsg = new Map(); // user messageId -> t0 (sent on a face that gives no requestId)
    this.active = new Map(); // requestId -> time first seen (queued or sent), until its end
    this.streaming = new Set(); // requestIds with a token seen, not ended
    this.endedReq = new Set();
    this.finalText = new Map(); // assistant messageId -> text of its ai:message / partialText
    this.waiters = new Map(); // assistant messageId -> [{text, source}]
    this.sendTimer = null;
  }

  get outstanding() {
    return this.active.size + this.sending;
  }

  async open() {
    if (this.sse) {
      const userId = `sse-${this.serial}`;
      const res = await postJson(`${URL_}/api/v1/chat/create`, { orgId: "default", userId, metadata: { soak: true } });
      if (!res.ok) throw new Error(`seed 002 /create: ${res.status}`);
      this.id = res.body.chatKey;
      this.sseClient = new SseClient(this, userId);
      this.sseClient.open();
      await this.sseClient.opened();
    } else {
      this.id = `soak-${runId}-${this.serial}`;
    }
    for (let m = 0; m < opts.members; m++) this.members.push(new Member(this, `u${this.serial}-${m}`));
    // The first member creates the chat (Socket.IO chats); the rest join it in parallel.
    await this.members[0].connect({ recover: false });
    await Promise.all(this.members.slice(1).map((m) => m.connect({ recover: false })));
    total.chatsCreated++;
    this.scheduleSend(Math.random() * opts.intervalSecs * 1000);
  }

  scheduleSend(delayMs = jitter(opts.intervalSecs * 1000)) {
    if (this.retiring || stopping) return;
    this.sendTimer = setTimeout(() => this.sendOne().catch((e) => countError(`client:${e.message}`)), delayMs);
  }

  async sendOne() {
    if (this.retiring || stopping) return;
    this.scheduleSend();
    this.expire();
    if (this.outstanding >= opts.maxOutstanding) {
      win.skipped++;
      total.skipped++;
      return;
    }
    const text = `[fake:drip n=${opts.tokens} delay_ms=${opts.tokenDelayMs}] soak chat ${this.serial}`;
    const messageId = uid("m");
    win.sends++;
    total.sends++;
    this.sending++;
    try {
      if (this.sseClient && Math.random() < 0.25) {
        const t0 = now();
        this.pendingByMsg.set(messageId, t0);
        const res = await postJson(`${URL_}/api/v1/chat/send`, {
          orgId: "default", chatKey: this.id, userId: this.sseClient.userId, message: { id: messageId, content: text },
        });
        if (!res.ok) {
          this.pendingByMsg.delete(messageId);
          countError(`send:${res.body?.error?.code ?? res.status}`);
        }
        return;
      }
      const member = pick(this.members.filter((m) => m.joined)) ?? null;
      if (!member) {
        countError("client:no_member_joined");
        return;
      }
      const requestId = uid("r");
      const t0 = now();
      this.pending.set(requestId, t0);
      this.active.set(requestId, t0);
      let ack;
      try {
        ack = await member.socket.timeout(15000).emitWithAck("user:message", { chatId: this.id, messageId, userId: member.userId, text, requestId });
      } catch {
        ack = { ok: false, error: { code: "ack_timeout" } };
      }
      if (!ack.ok) {
        this.pending.delete(requestId);
        this.active.delete(requestId);
        countError(`ack:${ack.error?.code}`);
      }
    } finally {
      this.sending--;
    }
  }

  /** Turns open far longer than any turn may run are lost: their end reached no member. */
  expire() {
    const limit = now() - 180000;
    for (const [req, t] of this.active) {
      if (t < limit) {
        this.active.delete(req);
        this.pending.delete(req);
        this.streaming.delete(req);
        fail("lostTurns", { chat: this.id, requestId: req });
      }
    }
    for (const [msg, t] of this.pendingByMsg) if (t < limit) this.pendingByMsg.delete(msg);
  }

  onQueued(requestId) {
    if (!this.endedReq.has(requestId) && !this.active.has(requestId)) this.active.set(requestId, now());
  }

  onUserMessage(e) {
    const t0 = this.pendingByMsg.get(e.messageId);
    if (t0 !== undefined && e.requestId) {
      this.pendingByMsg.delete(e.messageId);
      if (!this.endedReq.has(e.requestId)) this.pending.set(e.requestId, t0);
    }
  }

  onFirstToken(requestId) {
    if (this.endedReq.has(requestId) || this.streaming.has(requestId)) return;
    this.streaming.add(requestId);
    const t0 = this.pending.get(requestId);
    if (t0 !== undefined) win.ttft.push(now() - t0);
  }

  /** The first member to see a turn's end counts it. */
  onTurnEnd(requestId, messageId, text, errorCode) {
    if (this.endedReq.has(requestId)) return;
    this.endedReq.add(requestId);
    this.active.delete(requestId);
    this.streaming.delete(requestId);
    const t0 = this.pending.get(requestId);
    this.pending.delete(requestId);
    if (errorCode) {
      win.turnErrors++;
      total.turnErrors++;
      countError(`turn:${errorCode}`);
    } else {
      win.turns++;
      total.turns++;
      if (t0 !== undefined) {
        const l = now() - t0;
        win.lat.push(l);
        total.lat.push(l);
      }
    }
    this.finalText.set(messageId, text);
    for (const w of this.waiters.get(messageId) ?? []) this.compare(messageId, w.text, w.source);
    this.waiters.delete(messageId);
  }

  /** The reply text another face got for `messageId` must equal the turn's final text. */
  expect(messageId, text, source) {
    if (this.finalText.has(messageId)) return this.compare(messageId, text, source);
    // With no member in the chat (all refused or reconnecting) nothing can be compared.
    if (!this.members.some((m) => m.joined)) return void check.noMemberToCompare++;
    if (!this.waiters.has(messageId)) this.waiters.set(messageId, []);
    this.waiters.get(messageId).push({ text, source });
  }

  compare(messageId, text, source) {
    const want = this.finalText.get(messageId);
    if (want === text) check[`${source}Ok`]++;
    else fail(`${source}Mismatch`, { chat: this.id, messageId, ...diff(text, want) });
  }

  /** Stops sending, waits for open turns to end, then drops every client. */
  async retire(maxWaitMs = 30000) {
    this.retiring = true;
    clearTimeout(this.sendTimer);
    const deadline = now() + maxWaitMs;
    while ((this.outstanding > 0 || this.pendingByMsg.size > 0) && now() < deadline) {
      this.expire();
      await sleep(200);
    }
    await this.finish(true);
    total.chatsRetired++;
  }

  /** Final checks (every reply reached the other faces), then closes every client. */
  async finish(leave) {
    const until = now() + 5000;
    while (this.sseClient?.reopening && now() < until) await sleep(100);
    await sleep(500); // let the other faces' copies of the last reply arrive
    this.expire();
    this.retiring = true;
    this.closed = true;
    for (const [messageId, ws] of this.waiters) for (const w of ws) fail("unresolved", { chat: this.id, messageId, source: w.source });
    this.waiters.clear();
    // The SSE stream (reopened with Last-Event-ID after each drop) must have had every reply.
    if (this.sseClient && !this.sseClient.reopening) {
      for (const messageId of this.finalText.keys()) if (!this.sseClient.seen.has(messageId)) fail("sseMissed", { chat: this.id, messageId });
    }
    for (const m of this.members) m.close(leave && Math.random() < 0.5);
    this.sseClient?.close();
  }
}

class Member {
  constructor(chat, userId) {
    this.chat = chat;
    this.userId = userId;
    this.socket = null;
    this.joined = false;
    this.epoch = null;
    this.lastSeq = 0;
    this.streams = new Map(); // assistant messageId -> {next, text, broken}
    this.done = new Set(); // assistant messageIds ended on this connection
    this.busy = false; // connecting or rejoining
    this.inRejoin = false; // a same-socket chat:join is between its emit and its ack
    this.rejoined = false; // this connection has rejoined at least once
    this.retryMs = 1000;
  }

  async connect({ recover, polling = false }) {
    this.busy = true;
    try {
      const socket = io(URL_, {
        forceNew: true,
        reconnection: false,
        transports: polling ? ["polling", "websocket"] : ["websocket"],
        query: { userId: this.userId },
      });
      this.socket = socket;
      this.joined = false;
      this.streams = new Map();
      this.done = new Set();
      this.rejoined = false;
      this.attach(socket);
      await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("connect_timeout")), 15000);
        socket.once("connect", () => (clearTimeout(t), resolve()));
        socket.once("connect_error", (e) => (clearTimeout(t), reject(new Error(`connect_error:${e.message}`))));
      });
      await this.join(recover);
      this.retryMs = 1000;
    } catch (e) {
      countError(`sio:${e.message}`);
      this.socket?.close();
      this.socket = null;
      // Refused (e.g. too_many_connections): try again, backing off up to 15 s.
      if (!this.chat.closed && !stopping) setTimeout(() => this.connect({ recover: true }).catch(() => {}), this.retryMs);
      this.retryMs = Math.min(15000, this.retryMs * 2);
    } finally {
      this.busy = false;
    }
  }

  async join(recover) {
    const socket = this.socket;
    const payload = recover && this.epoch ? { chatId: this.chat.id, lastSeq: this.lastSeq, epoch: this.epoch } : { chatId: this.chat.id };
    this.joined = false;
    let ack;
    try {
      ack = await socket.timeout(20000).emitWithAck("chat:join", payload);
    } catch {
      throw new Error("join_ack_timeout");
    }
    if (!ack.ok) throw new Error(`join:${ack.error?.code}`);
    if (payload.lastSeq !== undefined && !ack.recovered) fail("notRecovered", { chat: this.chat.id, user: this.userId, lastSeq: payload.lastSeq, head: ack.seq });
    if (!ack.onlineUserIds?.includes(this.userId)) fail("notInPresence", { chat: this.chat.id, user: this.userId });
    if (this.epoch && ack.epoch !== this.epoch) countError("sio:epoch_changed");
    this.epoch = ack.epoch;
    this.lastSeq = Math.max(ack.recovered ? this.lastSeq : 0, ack.seq);
    this.joined = socket === this.socket;
  }

  attach(socket) {
    const mine = () => socket === this.socket;
    socket.on("ai:token", (t) => mine() && this.onToken(t));
    socket.on("ai:message", (e) => mine() && this.onEnd(e, e.text, null));
    socket.on("ai:error", (e) => mine() && this.onEnd(e, e.details?.partialText ?? "", e.code));
    socket.on("chat:message", (e) => {
      if (!mine() || !this.seqOk(e)) return;
      this.chat.onUserMessage(e);
    });
    socket.on("message:read", (e) => mine() && this.seqOk(e));
    socket.on("ai:processing", (e) => mine() && e.status === "queued" && this.chat.onQueued(e.requestId));
    socket.on("presence:update", () => total.presenceUpdates++);
    socket.on("error", (e) => countError(`sio_event:${e?.code}`));
    socket.on("disconnect", (reason) => {
      if (!mine()) return;
      this.joined = false;
      if (reason === "io client disconnect") return;
      countError(`disconnect:${reason}`);
      if (!this.chat.closed && !stopping) {
        total.reconnects++;
        setTimeout(() => this.connect({ recover: true }).catch(() => {}), 1000);
      }
    });
  }

  /** Events with a seq must come in rising order on one connection (replays included). */
  seqOk(e) {
    if (typeof e.seq !== "number") return true;
    if (e.seq <= this.lastSeq) {
      if (this.inRejoin) {
        check.rejoinSeqDups++;
        return false;
      }
      fail("seqRegression", { chat: this.chat.id, user: this.userId, seq: e.seq, lastSeq: this.lastSeq });
      return false;
    }
    this.lastSeq = e.seq;
    return true;
  }

  onToken(t) {
    const last = t.through ?? t.index;
    if (this.done.has(t.messageId)) {
      if (this.rejoined) return void check.rejoinTokensAfterEnd++;
      fail("tokensAfterEnd", { chat: this.chat.id, user: this.userId, messageId: t.messageId, index: t.index });
      return;
    }
    let s = this.streams.get(t.messageId);
    if (!s) this.streams.set(t.messageId, (s = { next: 0, text: "", broken: false }));
    if (last < s.next) return; // a rejoin re-sends the running turn from index 0
    if (t.index !== s.next) {
      if (!s.broken) fail("tokenGap", { chat: this.chat.id, user: this.userId, messageId: t.messageId, expected: s.next, got: t.index, through: t.through, rejoined: this.rejoined, inRejoin: this.inRejoin });
      s.broken = true;
    }
    addTokens(last - Math.max(s.next, t.index) + 1);
    s.text += t.token;
    s.next = last + 1;
    this.chat.onFirstToken(t.requestId);
  }

  onEnd(e, text, code) {
    if (!this.seqOk(e)) return;
    const messageId = code ? e.details?.messageId : e.messageId;
    this.done.add(messageId);
    const s = this.streams.get(messageId);
    this.streams.delete(messageId);
    if (s) {
      if (!s.broken) {
        if (s.text === text) check.ok++;
        else if (s.text.length < text.length && text.startsWith(s.text)) check.completedByMessage++;
        else fail("mismatch", { chat: this.chat.id, user: this.userId, messageId, ...diff(s.text, text) });
      }
    } else if (text !== "") {
      if (this.joined) check.liveNoTokens++;
      else check.replayedNoTokens++;
    }
    this.chat.onTurnEnd(e.requestId, messageId, text, code);
  }

  /** Drops the connection (optionally leaving the chat first). */
  close(leave = false) {
    const s = this.socket;
    this.socket = null;
    this.joined = false;
    if (!s) return;
    if (leave && s.connected) s.timeout(2000).emitWithAck("chat:leave", { chatId: this.chat.id }).catch(() => {}).finally(() => s.close());
    else s.close();
  }

  /** Churn: drop and come back after a while, joining with lastSeq + epoch. */
  async bounce() {
    if (this.busy || !this.joined) return;
    this.busy = true;
    total.reconnects++;
    this.close(Math.random() < 0.2);
    await sleep(300 + Math.random() * 2700);
    this.busy = false;
    if (this.chat.closed || stopping) return;
    await this.connect({ recover: true, polling: Math.random() < 0.25 });
  }

  /** Churn: join again on the same socket (replaces the membership), with lastSeq + epoch. */
  async rejoin() {
    if (this.busy || !this.joined) return;
    this.busy = true;
    total.rejoins++;
    // Token state is kept: the running turn is re-sent from index 0 and dropped by index.
    this.inRejoin = true;
    this.rejoined = true;
    try {
      await this.join(true);
    } catch (e) {
      countError(`sio:${e.message}`);
    } finally {
      this.inRejoin = false;
      this.busy = false;
    }
  }
}

class SseClient {
  constructor(chat, userId) {
    this.chat = chat;
    this.userId = userId;
    this.es = null;
    this.lastId = 0;
    this.seen = new Set(); // assistant messageIds whose reply came, over every reopen
    this.reopening = false;
  }

  open() {
    const lastId = this.lastId;
    const url = `${URL_}/api/v1/chat/stream?orgId=default&userId=${encodeURIComponent(this.userId)}&clientType=soak&chatKey=${this.chat.id}`;
    const es = new EventSource(url, {
      // The first request of a reopened stream carries the id we got to; the package's own
      // reconnects set Last-Event-ID themselves.
      fetch: (input, init) =>
        fetch(input, lastId && !init.headers?.["Last-Event-ID"] ? { ...init, headers: { ...init.headers, "Last-Event-ID": String(lastId) } } : init),
    });
    this.es = es;
    const mine = () => es === this.es;
    es.addEventListener("message", (ev) => {
      if (!mine()) return;
      if (ev.lastEventId) {
        const id = Number(ev.lastEventId);
        if (id <= this.lastId) fail("sseIdRegression", { chat: this.chat.id, id, lastId: this.lastId });
        else this.lastId = id;
      }
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return countError("sse:bad_json");
      }
      if (data.message?.role === "ai") {
        this.seen.add(data.message.id);
        this.chat.expect(data.message.id, data.message.content ?? "", "sse");
      }
    });
    es.addEventListener("error", (ev) => {
      if (!mine()) return;
      if (ev.data) {
        let code = "unknown";
        try {
          code = JSON.parse(ev.data).data?.code ?? code;
        } catch {}
        countError(`sse_event:${code}`);
      } else countError(`sse:${ev.code ?? "conn_error"}`);
    });
  }

  /** Churn: drop the stream, come back 0.2–3 s later with Last-Event-ID. */
  async reopen() {
    if (this.reopening) return;
    this.reopening = true;
    total.sseReopens++;
    this.es?.close();
    this.es = null;
    await sleep(200 + Math.random() * 2800);
    if (!this.chat.closed) this.open();
    this.reopening = false;
  }

  /** Resolves once the stream has said `reconnected` (or after 10 s). */
  opened() {
    const es = this.es;
    return new Promise((resolve) => {
      const t = setTimeout(() => (countError("sse:open_timeout"), resolve()), 10000);
      es.addEventListener("reconnected", () => (clearTimeout(t), resolve()), { once: true });
    });
  }

  close() {
    this.es?.close();
    this.es = null;
  }
}

async function postJson(url, body) {
  try {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: AbortSignal.timeout(30000) });
    let parsed = null;
    try {
      parsed = await res.json();
    } catch {}
    return { ok: res.ok, status: res.status, body: parsed };
  } catch (e) {
    return { ok: false, status: e.name, body: null };
  }
}

// ---------------------------------------------------------------------------------------------
// AI SDK clients: POST /api/chat (DefaultChatTransport's request), read the UI message stream.

async function aisdkTurn(k) {
  const candidates = chats.filter((c) => !c.retiring && c.outstanding < opts.maxOutstanding);
  if (!candidates.length) return;
  const chat = pick(candidates);
  const userId = `aisdk-${k}`;
  const msgId = uid("a");
  const text = `[fake:drip n=${opts.tokens} delay_ms=${opts.tokenDelayMs}] soak ai sdk ${k}`;
  const t0 = now();
  chat.pendingByMsg.set(msgId, t0);
  chat.sending++;
  win.sends++;
  total.sends++;
  let res;
  try {
    res = await fetch(`${URL_}/api/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: chat.id, trigger: "submit-message", userId, messages: [{ id: msgId, role: "user", parts: [{ type: "text", text }] }] }),
      signal: AbortSignal.timeout(150000),
    });
  } catch (e) {
    chat.pendingByMsg.delete(msgId);
    chat.sending--;
    return countError(`aisdk:${e.name}`);
  }
  chat.sending--;
  if (!res.ok) {
    chat.pendingByMsg.delete(msgId);
    let code = res.status;
    try {
      code = (await res.json()).error?.code ?? code;
    } catch {}
    return countError(`aisdk:${code}`);
  }
  let assistantId = null;
  let reply = "";
  let deltas = 0;
  let end = null;
  const decoder = new TextDecoder();
  let buf = "";
  try {
    for await (const bytes of res.body) {
      buf += decoder.decode(bytes, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of frame.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          const c = JSON.parse(data);
          if (c.type === "start") assistantId = c.messageId;
          else if (c.type === "text-delta") {
            reply += c.delta;
            deltas++;
          } else if (c.type === "finish") end = "finish";
          else if (c.type === "abort") end = "abort";
          else if (c.type === "error") {
            end = "error";
            countError(`aisdk_stream:${String(c.errorText).split(":")[0]}`);
          }
        }
      }
    }
  } catch (e) {
    return countError(`aisdk_read:${e.name}`);
  }
  addTokens(deltas, deltas);
  if (!end) countError("aisdk:no_end_chunk");
  if (end === "finish") win.aisdkLat.push(now() - t0);
  if (assistantId && !chat.closed) chat.expect(assistantId, reply, "aisdk");
}

async function aisdkLoop(k) {
  await sleep(Math.random() * opts.aisdkThinkSecs * 1000);
  while (!stopping) {
    await aisdkTurn(k).catch((e) => countError(`client:${e.message}`));
    await sleep(jitter(opts.aisdkThinkSecs * 1000));
  }
}

// ---------------------------------------------------------------------------------------------
// Churn and rotation

/** One churn event: 10 % an SSE stream reopens, 25 % a same-socket rejoin, else a reconnect. */
async function churnOnce() {
  const live = chats.filter((c) => !c.retiring);
  const r = Math.random();
  const sse = live.filter((c) => c.sseClient && !c.sseClient.reopening);
  if (r < 0.1 && sse.length) return pick(sse).sseClient.reopen();
  if (!live.length) return;
  const m = pick(pick(live).members);
  if (r < 0.35) return m.rejoin();
  return m.bounce();
}

function newChat() {
  const sseLive = chats.filter((c) => c.sse && !c.retiring).length;
  const chat = new Chat({ sse: sseLive < opts.sse });
  chats.push(chat);
  return chat.open().catch((e) => countError(`client:open:${e.message}`));
}

async function rotateOnce() {
  const oldest = chats.find((c) => !c.retiring);
  if (!oldest) return;
  oldest.retiring = true;
  await newChat();
  await oldest.retire();
  chats.splice(chats.indexOf(oldest), 1);
}

function every(meanMs, fn, randomize = true) {
  let t = null;
  const tick = () => {
    if (stopping) return;
    t = setTimeout(() => {
      Promise.resolve()
        .then(fn)
        .catch((e) => countError(`client:${e.message}`));
      tick();
    }, randomize ? jitter(meanMs) : meanMs);
  };
  tick();
  return () => clearTimeout(t);
}

// ---------------------------------------------------------------------------------------------
// Sampling and the report

const samples = [];
let last = null;

async function takeSample(natter, upstream, t0) {
  const t = (now() - t0) / 1000;
  const s = procStats(natter.proc.pid) ?? {};
  const u = procStats(upstream.proc.pid) ?? {};
  const nodeCpu = process.cpuUsage();
  const nodeCpuS = (nodeCpu.user + nodeCpu.system) / 1e6;
  const metrics = await scrapeMetrics(natter.url);
  const dt = last ? t - last.t : 0;
  const rate = (x) => (dt > 0 ? x / dt : null);
  const cpuPct = (cur, prev) => (dt > 0 && cur != null && prev != null ? (100 * (cur - prev)) / dt : null);
  const sockets = chats.reduce((n, c) => n + c.members.filter((m) => m.socket?.connected).length, 0);
  const sse = chats.filter((c) => c.sseClient?.es && c.sseClient.es.readyState === 1).length;
  const sample = {
    t: Math.round(t),
    rssMB: +mb(s.rssKb).toFixed(1),
    hwmMB: +mb(s.hwmKb).toFixed(1),
    fds: s.fds,
    threads: s.threads,
    serverCpuS: s.cpu,
    serverCpuPct: cpuPct(s.cpu, last?.serverCpuS),
    upstreamRssMB: +mb(u.rssKb).toFixed(1),
    upstreamCpuPct: cpuPct(u.cpu, last?.upstreamCpuS),
    upstreamCpuS: u.cpu,
    nodeCpuS,
    nodeCpuPct: cpuPct(nodeCpuS, last?.nodeCpuS),
    nodeRssMB: +(process.memoryUsage().rss / 1048576).toFixed(1),
    sockets,
    sseStreams: sse,
    chatsLive: chats.filter((c) => !c.closed).length,
    server: metrics,
    serverTokensPerS: last?.server?.tokensTotal != null && metrics.tokensTotal != null ? rate(metrics.tokensTotal - last.server.tokensTotal) : null,
    sends: win.sends,
    skippedSends: win.skipped,
    turns: win.turns,
    turnErrors: win.turnErrors,
    turnsPerS: rate(win.turns),
    tokensPerS: rate(win.tokens),
    tokenEventsPerS: rate(win.tokenEvents),
    avgStreaming: win.streamingTicks ? win.streamingSum / win.streamingTicks : null,
    p50Ms: pct(win.lat, 50),
    p99Ms: pct(win.lat, 99),
    ttftP50Ms: pct(win.ttft, 50),
    aisdkP50Ms: pct(win.aisdkLat, 50),
    errors: win.errors,
    failures: Object.values(check.fail).reduce((a, b) => a + b, 0),
  };
  samples.push(sample);
  last = sample;
  win = freshWindow();
  printRow(sample);
  return sample;
}

const fmt = (v, d = 0, w = 7) => (v == null || Number.isNaN(v) ? "-" : v.toFixed(d)).padStart(w);
const HEADER =
  "  time   RSS MB  HWM MB    fds  chats  socks  srv CPU%  node CPU%  turns/s  tokens/s  strm   p50 ms   p99 ms  errs  fails";
const LEGEND =
  "RSS/HWM: server VmRSS/VmHWM; fds: server open fds; chats: server's natter_chats_active; socks: Socket.IO clients connected;\n" +
  "CPU%: of one core over the interval; turns/s: turns ended (all faces); tokens/s: token indexes received by all clients;\n" +
  "strm: turns streaming at once (avg); p50/p99: send → ai:message at the first member, queueing behind the chat's\n" +
  "previous turn included; errs: client-side errors in the interval; fails: correctness failures so far (must stay 0)";
function printRow(s) {
  const errs = Object.values(s.errors).reduce((a, b) => a + b, 0);
  console.log(
    `${mmss(s.t).padStart(6)} ${fmt(s.rssMB, 1, 8)}${fmt(s.hwmMB, 1, 8)}${fmt(s.fds, 0, 7)}${fmt(s.server?.chatsActive, 0, 7)}${fmt(s.sockets, 0, 7)}` +
      `${fmt(s.serverCpuPct, 0, 10)}${fmt(s.nodeCpuPct, 0, 11)}${fmt(s.turnsPerS, 2, 9)}${fmt(s.tokensPerS, 0, 10)}${fmt(s.avgStreaming, 1, 6)}` +
      `${fmt(s.p50Ms, 0, 9)}${fmt(s.p99Ms, 0, 9)}${fmt(errs, 0, 6)}${fmt(s.failures, 0, 7)}`,
  );
}

function linearSlope(points) {
  if (points.length < 2) return null;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den ? num / den : null;
}

function report(startedAt, natterArgs, exitInfo) {
  const rows = samples.filter((s) => s.t > 0);
  console.log("\n" + HEADER);
  for (const s of samples) printRow(s);
  console.log(LEGEND);
  const baseT = opts.baselineMin * 60;
  const base = samples.find((s) => s.t >= baseT - opts.sampleSecs / 2) ?? samples[0];
  const end = samples[samples.length - 1];
  const durS = end.t;
  console.log("");
  const avg = (k) => rows.reduce((a, s) => a + (s[k] ?? 0), 0) / Math.max(1, rows.length);
  const sessionTurns = total.turns;
  console.log(
    `load: ${opts.chats} chats × ${opts.members} Socket.IO members (${opts.chats * opts.members} sockets), ${opts.sse} SSE streams, ` +
      `${opts.aisdk} AI SDK clients; ${opts.tokens} tokens × ${opts.tokenDelayMs} ms per turn, a message every ~${opts.intervalSecs} s per chat`,
  );
  console.log(
    `totals: ${sessionTurns} turns (${(sessionTurns / durS).toFixed(2)}/s), ${total.turnErrors} failed turns, ${total.tokens} tokens received ` +
      `(${(total.tokens / durS).toFixed(0)}/s, ${total.tokenEvents} events), ${total.sends} sends (${total.skipped} skipped: chat busy), ` +
      `avg ${avg("avgStreaming").toFixed(1)} turns streaming at once; turn latency (send → ai:message) p50 ${fmt(pct(total.lat, 50), 0, 0)} ms ` +
      `p99 ${fmt(pct(total.lat, 99), 0, 0)} ms (a turn of ${opts.tokens} × ${opts.tokenDelayMs} ms streams ${((opts.tokens * opts.tokenDelayMs) / 1000).toFixed(1)} s)`,
  );
  console.log(
    `churn: ${total.reconnects} reconnects, ${total.rejoins} same-socket rejoins, ${total.sseReopens} SSE reopens, ` +
      `${total.chatsCreated} chats created, ${total.chatsRetired} retired; ${total.presenceUpdates} presence updates`,
  );
  console.log(
    `cpu: server avg ${avg("serverCpuPct").toFixed(0)}%, fake upstream avg ${avg("upstreamCpuPct").toFixed(0)}%, ` +
      `node (this client) avg ${avg("nodeCpuPct").toFixed(0)}% max ${Math.max(0, ...rows.map((s) => s.nodeCpuPct ?? 0)).toFixed(0)}% of one core`,
  );
  const errs = Object.entries(total.errors).sort((a, b) => b[1] - a[1]);
  console.log(`errors by code: ${errs.length ? errs.map(([k, v]) => `${k}=${v}`).join(" ") : "none"}`);
  console.log(`server log: ${logCounts.WARN} WARN, ${logCounts.ERROR} ERROR lines; exit during the soak: ${exitInfo ? JSON.stringify(exitInfo) : "no"}`);
  for (const l of logLines.slice(0, 5)) console.log(`  ${l}`);
  const failures = Object.entries(check.fail).filter(([, v]) => v > 0);
  console.log(
    `correctness: ${check.ok} member texts matched, ${check.sseOk} SSE replies matched, ${check.aisdkOk} AI SDK streams matched; ` +
      `completed by ai:message after a lag: ${check.completedByMessage}; ` +
      `not checkable: ${check.replayedNoTokens} replayed, ${check.liveNoTokens} live without tokens, ${check.noMemberToCompare} with no member joined; rejoin duplicates dropped: ${check.rejoinSeqDups} seq + ${check.rejoinTokensAfterEnd} tokens; ` +
      `failures: ${failures.length ? failures.map(([k, v]) => `${k}=${v}`).join(" ") : "0"}`,
  );
  for (const ex of check.examples.slice(0, 5)) console.log(`  e.g. ${JSON.stringify(ex)}`);
  const growth = end.rssMB - base.rssMB;
  const after = samples.filter((s) => s.t >= base.t).map((s) => [s.t / 3600, s.rssMB]);
  const slope = linearSlope(after);
  console.log(
    `verdict: RSS ${base.rssMB.toFixed(1)} MB at ${mmss(base.t)} → ${end.rssMB.toFixed(1)} MB at ${mmss(end.t)}: ` +
      `${growth >= 0 ? "+" : ""}${growth.toFixed(1)} MB (×${(end.rssMB / base.rssMB).toFixed(3)}), trend ${slope == null ? "-" : slope.toFixed(1)} MB/h; ` +
      `HWM ${end.hwmMB.toFixed(1)} MB; fds ${base.fds} → ${end.fds}; server chats ${base.server?.chatsActive ?? "-"} → ${end.server?.chatsActive ?? "-"}; ` +
      `correctness ${failures.length ? "FAILED" : "OK"}`,
  );
  const doc = {
    startedAt,
    options: opts,
    natterArgs,
    binDir: harness.binDir,
    clkTck: CLK_TCK,
    samples,
    totals: { ...total, lat: undefined, p50Ms: pct(total.lat, 50), p99Ms: pct(total.lat, 99) },
    correctness: check,
    serverLog: { ...logCounts, first: logLines, tail: stderrTail.slice(-4000).replace(ANSI, "") },
    verdict: { baseT: base.t, baseRssMB: base.rssMB, endT: end.t, endRssMB: end.rssMB, growthMB: +growth.toFixed(1), ratio: +(end.rssMB / base.rssMB).toFixed(3), slopeMBPerHour: slope, correctnessOk: !failures.length },
  };
  writeFileSync(opts.out, JSON.stringify(doc, null, 2));
  console.log(`samples written to ${opts.out}`);
  return failures.length === 0;
}

// ---------------------------------------------------------------------------------------------
// Main

process.on("unhandledRejection", (e) => countError(`client:unhandled:${e?.message ?? e}`));

const startedAt = new Date().toISOString();
const dataDir = mkdtempSync(path.join(tmpdir(), "natter-soak-"));
let upstream = null;
let natter = null;
let ok = false;
let interrupted = false;
process.on("SIGINT", () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  console.log("\ninterrupted: stopping the load and reporting (Ctrl-C again to quit at once)");
});

try {
  upstream = await harness.startFakeUpstream();
  natter = await startNatter(upstream.url, dataDir);
  URL_ = natter.url;
  let exitInfo = null;
  natter.proc.on("exit", (code, signal) => (exitInfo = { code, signal }));
  console.log(`natter ${natter.url} pid ${natter.proc.pid} (${harness.binDir}); data ${dataDir}`);
  console.log(`server args: ${natter.args.slice(1).join(" ")}`);
  console.log(
    `soak: ${opts.minutes} min, sample every ${opts.sampleSecs} s; ${opts.chats} chats × ${opts.members} members, ${opts.sse} SSE, ${opts.aisdk} AI SDK; ` +
      `drip ${opts.tokens}×${opts.tokenDelayMs} ms every ~${opts.intervalSecs} s; churn ~${opts.churnSecs} s; rotate ${opts.rotateSecs} s`,
  );

  // Open the chats in small batches so the start is not one connection storm.
  const setupT0 = now();
  for (let i = 0; i < opts.chats; i += 8) await Promise.all(Array.from({ length: Math.min(8, opts.chats - i) }, () => newChat()));
  console.log(`setup: ${chats.length} chats open in ${((now() - setupT0) / 1000).toFixed(1)} s\n`);
  console.log(HEADER);

  const t0 = now();
  win = freshWindow();
  await takeSample(natter, upstream, t0);
  const stops = [];
  stops.push(every(1000, () => {
    win.streamingSum += chats.reduce((n, c) => n + c.streaming.size, 0);
    win.streamingTicks++;
  }, false));
  if (opts.churnSecs > 0) stops.push(every(opts.churnSecs * 1000, churnOnce));
  if (opts.rotateSecs > 0) stops.push(every(opts.rotateSecs * 1000, rotateOnce, false));
  const aisdkDone = Array.from({ length: opts.aisdk }, (_, k) => aisdkLoop(k));

  const endAt = t0 + opts.minutes * 60000;
  let nextSample = t0 + opts.sampleSecs * 1000;
  while (now() < endAt && !interrupted && !exitInfo) {
    await sleep(Math.max(0, Math.min(1000, nextSample - now(), endAt - now())));
    if (now() >= nextSample - 5 && now() < endAt - 1000 && !interrupted && !exitInfo) {
      await takeSample(natter, upstream, t0);
      nextSample += opts.sampleSecs * 1000;
    }
  }
  // Last sample while the load is still on, so it is comparable with the others.
  if (!exitInfo) await takeSample(natter, upstream, t0);

  // Drain: no new sends; let open turns end so their checks run.
  stopping = true;
  for (const s of stops) s();
  for (const c of chats) clearTimeout(c.sendTimer);
  const drainUntil = now() + 30000;
  while (chats.some((c) => c.outstanding > 0 || c.pendingByMsg.size > 0) && now() < drainUntil && !exitInfo) await sleep(200);
  await Promise.race([Promise.all(aisdkDone), sleep(5000)]);
  await Promise.all(chats.map((c) => c.finish(false)));
  if (exitInfo) console.error(`\nnatter exited during the soak: ${JSON.stringify(exitInfo)}\n${stderrTail}`);
  ok = report(startedAt, natter.args, exitInfo) && !exitInfo;
} catch (e) {
  console.error(e);
} finally {
  if (natter && natter.proc.exitCode === null) {
    const exited = new Promise((r) => natter.proc.once("exit", r));
    natter.proc.kill("SIGTERM");
    await Promise.race([exited, sleep(10000)]);
    if (natter.proc.exitCode === null) natter.proc.kill("SIGKILL");
  }
  upstream?.stop();
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(ok ? 0 : 1);
}
