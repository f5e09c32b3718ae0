// Server CPU per large client message over the WebSocket transport, for one or more natter
// binaries in one run (issue 15: what a smaller WebSocket read buffer costs on big inbound
// frames). Each round starts every binary fresh, in turn; each opens `sockets` stock
// socket.io-client WebSockets that each send `messages` acked events of `kib` KiB (an event
// the server does not know, so it reads and parses the frame and answers `unknown_event`
// without touching the store), and reads the server's CPU (utime + stime) around them.
//
//   cargo build --release --no-default-features -p natter && (cd tests/interop && npm ci)
//   node tests/interop/bench/inbound.mjs <natter binary>... [-- rounds=3 sockets=10 messages=100 kib=100]
import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { connect, cpuSeconds, NO_RATE_LIMITS, tempDir } from "../lib/harness.mjs";

const split = process.argv.indexOf("--");
const bins = process.argv.slice(2, split < 0 ? undefined : split);
const opts = Object.fromEntries(
  (split < 0 ? [] : process.argv.slice(split + 1)).map((a) => a.split("=")).map(([k, v]) => [k, Number(v)]),
);
const { rounds = 3, sockets = 10, messages = 100, kib = 100 } = opts;
if (bins.length === 0) {
  console.error("usage: node tests/interop/bench/inbound.mjs <natter binary>... [-- rounds=3 sockets=10 messages=100 kib=100]");
  process.exit(2);
}


/** Starts `bin serve` (demo provider, limits off) and resolves with its url and process. */
function start(bin, dataDir) {
  const args = ["serve", "--listen", "127.0.0.1:0", "--provider", "demo", "--database", `sqlite://${dataDir}/natter.db`,
    "--max-connections-per-user", "0", "--max-connections-per-ip", "0", ...NO_RATE_LIMITS];
  const proc = spawn(bin, args, { env: { ...process.env, NATTER_LOG: "warn" }, stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) resolve({ url: m[1], pid: proc.pid, stop: () => new Promise((r) => { proc.once("exit", r); proc.kill("SIGTERM"); }) });
    });
    proc.once("exit", (code) => reject(new Error(`${bin} exited early (${code})`)));
  });
}

async function measure(bin) {
  const tmp = tempDir();
  const natter = await start(bin, tmp.dir);
  try {
    const clients = await Promise.all(
      Array.from({ length: sockets }, (_, i) =>
        connect(natter.url, { query: { userId: `inbound-${i}` }, transports: ["websocket"] }),
      ),
    );
    const blob = { text: "x".repeat(kib * 1024) };
    const cpu0 = cpuSeconds(natter.pid);
    const t0 = performance.now();
    await Promise.all(
      clients.map(async (c) => {
        for (let i = 0; i < messages; i++) {
          const ack = await c.socket.timeout(30000).emitWithAck("bench:inbound", blob);
          if (ack?.error?.code !== "unknown_event") throw new Error(`unexpected ack ${JSON.stringify(ack)}`);
        }
      }),
    );
    const wall = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(natter.pid) - cpu0;
    for (const c of clients) c.close();
    return { cpu, wall };
  } finally {
    await natter.stop();
    tmp.cleanup();
  }
}

const results = Object.fromEntries(bins.map((b) => [b, []]));
for (let r = 0; r < rounds; r++) {
  for (const bin of bins) results[bin].push(await measure(bin));
}
const total = sockets * messages;
for (const bin of bins) {
  const runs = results[bin];
  const us = runs.map((x) => ((x.cpu / total) * 1e6).toFixed(0));
  const wall = runs.map((x) => x.wall.toFixed(2));
  console.log(`${bin}: server CPU per ${kib} KiB message (µs), each round: ${us.join(", ")}; wall s: ${wall.join(", ")}`);
}
