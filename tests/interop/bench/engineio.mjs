// natter-engineio against engineioxide, one engine at a time and alternating, in one run
// (issue 15): tools/engineio-echo serves the same echo on either, and stock engine.io-client
// WebSockets drive it.
//
// - idle: `sessions` open sessions; server RSS per session (the RSS before the first one
//   subtracted), after `settle_s`, with a ping interval short enough that pings and pongs flow.
// - fanout: `fanout_sessions` sessions; the server sends one `tick_bytes` message to every
//   session every `tick_ms`; over `window_s`, messages delivered per server CPU second
//   (utime + stime) and the latency from the server's clock to the client's (one machine).
//
// - sio_idle: the same idle measurement one layer up: `sio_sessions` stock socket.io-client
//   WebSockets joined to `/` of tools/socketio-protocol-server on socketioxide and on the
//   own Socket.IO transport (needs `protocol_server=<binary>`).
//
//   cargo build --release -p engineio-echo -p socketio-protocol-server && (cd tests/interop && npm ci)
//   node tests/interop/bench/engineio.mjs <engineio-echo binary> [-- rounds=2 sessions=5000 settle_s=5 fanout_sessions=200 tick_ms=1 tick_bytes=60 window_s=10 sio_sessions=5000] [protocol_server=<binary>]
import { spawn } from "node:child_process";
import { Socket } from "engine.io-client";
import { io } from "socket.io-client";
import { cpuSeconds, rssKib } from "../lib/harness.mjs";

const split = process.argv.indexOf("--");
const bin = process.argv[2];
const pairs = (split < 0 ? [] : process.argv.slice(split + 1)).map((a) => a.split("="));
const opts = Object.fromEntries(pairs.filter(([k]) => k !== "protocol_server").map(([k, v]) => [k, Number(v)]));
const protocolServer = pairs.find(([k]) => k === "protocol_server")?.[1];
const { rounds = 2, sessions = 5000, settle_s = 5, fanout_sessions = 200, tick_ms = 1, tick_bytes = 60, window_s = 10 } = opts;
const sio_sessions = protocolServer ? (opts.sio_sessions ?? 5000) : 0;
if (!bin || bin === "--") {
  console.error("usage: node tests/interop/bench/engineio.mjs <engineio-echo binary> [-- rounds=2 sessions=5000 ...]");
  process.exit(2);
}
const ENGINES = ["natter", "engineioxide"];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function start(engine, args, program = bin, select = ["--engine", engine]) {
  const proc = spawn(program, [...select, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) resolve({ url: m[1], pid: proc.pid, stop: () => new Promise((r) => { proc.once("exit", r); proc.kill("SIGKILL"); }) });
    });
    proc.once("exit", (code) => reject(new Error(`${bin} exited early (${code})`)));
  });
}

/** Opens `n` WebSocket sessions, 100 at a time; resolves with them once all are open. */
async function openMany(url, n, onMessage) {
  const all = [];
  for (let i = 0; i < n; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 100); j++) {
      batch.push(new Promise((resolve, reject) => {
        const s = new Socket(url, { transports: ["websocket"] });
        if (onMessage) s.on("message", onMessage);
        s.once("open", () => resolve(s));
        s.once("error", reject);
      }));
    }
    all.push(...(await Promise.all(batch)));
  }
  return all;
}

async function idle(engine) {
  const server = await start(engine, ["--ping-interval-ms", "1000", "--ping-timeout-ms", "5000"]);
  await sleep(500);
  const before = rssKib(server.pid);
  const socks = await openMany(server.url, sessions);
  await sleep(settle_s * 1000);
  const after = rssKib(server.pid);
  const open = socks.filter((s) => s.readyState === "open").length;
  for (const s of socks) s.close();
  await server.stop();
  return { engine, before_kib: before, after_kib: after, kib_per_session: +((after - before) / sessions).toFixed(2), open };
}

/** Idle socket.io-client sessions on the protocol server, on `transport`. */
async function sioIdle(transport) {
  const server = await start(transport, ["--listen", "127.0.0.1:0", "--ping-interval-ms", "1000", "--ping-timeout-ms", "5000"],
    protocolServer, ["--transport", transport]);
  await sleep(500);
  const before = rssKib(server.pid);
  const socks = [];
  for (let i = 0; i < sio_sessions; i += 100) {
    socks.push(...(await Promise.all([...Array(Math.min(100, sio_sessions - i))].map(() => new Promise((resolve, reject) => {
      const s = io(server.url, { transports: ["websocket"], forceNew: true, reconnection: false });
      s.once("connect", () => resolve(s));
      s.once("connect_error", reject);
    })))));
  }
  await sleep(settle_s * 1000);
  const after = rssKib(server.pid);
  const open = socks.filter((s) => s.connected).length;
  for (const s of socks) s.disconnect();
  await server.stop();
  return { transport, before_kib: before, after_kib: after, kib_per_session: +((after - before) / sio_sessions).toFixed(2), open };
}

async function fanout(engine) {
  const server = await start(engine, ["--tick-ms", String(tick_ms), "--tick-bytes", String(tick_bytes)]);
  let delivered = 0;
  let latencies = [];
  const onMessage = (data) => {
    delivered++;
    const sent = Number(String(data).slice(0, 16));
    // Microseconds: Date.now() has only milliseconds.
    latencies.push((performance.timeOrigin + performance.now()) * 1000 - sent);
  };
  const socks = await openMany(server.url, fanout_sessions, onMessage);
  await sleep(1000); // warm up
  delivered = 0;
  latencies = [];
  const cpu0 = cpuSeconds(server.pid);
  await sleep(window_s * 1000);
  const cpu = cpuSeconds(server.pid) - cpu0;
  const got = delivered;
  const lat = latencies.sort((a, b) => a - b);
  const pct = (p) => +(lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] / 1000).toFixed(2);
  for (const s of socks) s.close();
  await server.stop();
  return { engine, delivered: got, cpu_s: cpu, per_cpu_s: Math.round(got / cpu), p50_ms: pct(0.5), p99_ms: pct(0.99) };
}

for (let round = 1; round <= rounds; round++) {
  for (const engine of round % 2 ? ENGINES : [...ENGINES].reverse()) {
    if (sessions > 0) console.log("RESULT idle", JSON.stringify({ round, ...(await idle(engine)) }));
    if (fanout_sessions > 0) console.log("RESULT fanout", JSON.stringify({ round, ...(await fanout(engine)) }));
  }
  for (const transport of round % 2 ? ["natter", "socketioxide"] : ["socketioxide", "natter"]) {
    if (sio_sessions > 0) console.log("RESULT sio_idle", JSON.stringify({ round, ...(await sioIdle(transport)) }));
  }
}
process.exit(0);
