// Runs the client benchmark's rounds against a natter that is already up (run.sh starts it):
// each client in a process of its own, one turn per process, clients alternating (the order
// rotates every round), a discarded warm-up round first. Prints Markdown tables of medians
// (min–max) with ratios against the stock socket.io-client baseline measured in the same run,
// and writes every run's figures as JSON.
//
//   node bench/clients/run.mjs --url http://127.0.0.1:PORT --server-pid PID \
//       [--upstream-pid PID] [--rust-bin PATH] [--sizes 20000,2000] [--reps 5] [--out FILE]
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    "server-pid": { type: "string" },
    "upstream-pid": { type: "string" },
    "rust-bin": { type: "string", default: path.join(repo, "target/release/examples/bench_receive") },
    sizes: { type: "string", default: "20000,2000" },
    reps: { type: "string", default: "5" },
    clients: { type: "string", default: "baseline,sdk,rust" },
    "timeout-s": { type: "string", default: "120" },
    out: { type: "string" },
  },
});

function fail(message) {
  process.stderr.write(`run.mjs: ${message}\n`);
  process.exit(2);
}

if (!opts.url) fail("--url is required");
const serverPid = Number(opts["server-pid"]);
if (!Number.isInteger(serverPid) || serverPid <= 0) fail("--server-pid must be the natter process id");
const upstreamPid = opts["upstream-pid"] === undefined ? null : Number(opts["upstream-pid"]);
const sizes = opts.sizes.split(",").map(Number);
if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 100_000)) fail(`--sizes must be integers 1..100000, got ${opts.sizes}`);
const reps = Number(opts.reps);
if (!Number.isInteger(reps) || reps < 1) fail(`--reps must be a positive integer, got ${opts.reps}`);
const clients = opts.clients.split(",");
const KNOWN = ["baseline", "sdk", "rust"];
if (clients.some((c) => !KNOWN.includes(c))) fail(`--clients must be among ${KNOWN.join(",")}`);
if (!clients.includes("baseline")) fail("--clients must include baseline: every ratio is against it");
const timeoutMs = Number(opts["timeout-s"]) * 1000;

/** utime + stime of `pid` in ms, from /proc/<pid>/stat (USER_HZ = 100 on Linux). */
function procCpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Field 2 (the command) is parenthesised and may hold spaces; utime/stime are the 12th and
  // 13th fields after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function command(client, size) {
  switch (client) {
    case "baseline":
    case "sdk":
      return [process.execPath, [path.join(here, "client.mjs"), client, opts.url, String(size)]];
    case "rust":
      return [opts["rust-bin"], [opts.url, String(size)]];
    default:
      throw new Error(`unknown client ${client}`);
  }
}

/** Spawns one client for one turn; resolves with its JSON line plus the server's CPU meanwhile. */
function runOnce(client, size) {
  const [bin, args] = command(client, size);
  const serverBefore = procCpuMs(serverPid);
  const upstreamBefore = upstreamPid === null ? null : procCpuMs(upstreamPid);
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`${client} could not start (${bin}): ${e.message}`));
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`${client} n=${size} exited with ${code ?? signal}:\n${stderr.trim()}`));
        return;
      }
      const line = stdout.trim().split("\n").pop();
      let result;
      try {
        result = JSON.parse(line);
      } catch {
        reject(new Error(`${client} n=${size} printed no JSON result: ${JSON.stringify(stdout)}`));
        return;
      }
      resolve({
        ...result,
        serverCpuMs: procCpuMs(serverPid) - serverBefore,
        upstreamCpuMs: upstreamBefore === null ? null : procCpuMs(upstreamPid) - upstreamBefore,
      });
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const stats = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

const runs = [];
const rotate = (xs, k) => xs.map((_, i) => xs[(i + k) % xs.length]);
const rounds = reps + 1; // round 0 is the warm-up
const startedAt = new Date();
const loadAtStart = os.loadavg()[0];
for (let round = 0; round < rounds; round++) {
  for (const size of sizes) {
    for (const client of rotate(clients, round)) {
      const r = await runOnce(client, size);
      const warmup = round === 0;
      runs.push({ round, warmup, ...r });
      process.stderr.write(
        `[clients] ${warmup ? "warm-up" : `round ${round}/${reps}`} n=${size} ${client.padEnd(8)} ` +
          `${Math.round(r.tokensPerSec)} tok/s, wall ${r.wallMs.toFixed(0)} ms, client CPU ${r.cpuTurnMs.toFixed(0)} ms ` +
          `(total ${r.cpuTotalMs.toFixed(0)}), RSS ${(r.maxRssKiB / 1024).toFixed(1)} MiB, server CPU ${r.serverCpuMs} ms` +
          `${r.events !== size ? `, ${r.events} token events (${r.merged} merged)` : ""}` +
          `${r.missingTailBytes > 0 ? `, the last ${r.missingTailBytes} bytes came only in ai:message` : ""}\n`,
      );
    }
  }
}

// ---- summary ----

const measured = runs.filter((r) => !r.warmup);
const fmt = (v, digits = 0) => (v === null || v === undefined ? "–" : v.toFixed(digits));
const spread = (s, digits = 0, scale = 1) =>
  `${fmt(s.median / scale, digits)} (${fmt(s.min / scale, digits)}–${fmt(s.max / scale, digits)})`;

const summary = [];
const lines = [];
for (const size of sizes) {
  const of = (client) => measured.filter((r) => r.client === client && r.tokens === size);
  const base = of("baseline");
  const baseByRound = new Map(base.map((r) => [r.round, r]));
  lines.push(
    `\n**${size} tokens per turn** (${reps} runs per client; median (min–max); ratio = this client's median / the baseline's median, in brackets the range of the per-round ratios)\n`,
    "| client | tokens/s | tokens/s vs baseline | token events | client CPU in turn, ms | CPU vs baseline | client busy, % of wall | client CPU whole process, ms | max RSS, MiB | RSS vs baseline | server CPU, ms | upstream CPU, ms | wall, ms |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  );
  for (const client of clients) {
    const rs = of(client);
    if (rs.length === 0) continue;
    const metric = (key) => stats(rs.map((r) => r[key]));
    const ratio = (key) => {
      const mine = median(rs.map((r) => r[key]));
      const theirs = median(base.map((r) => r[key]));
      const paired = rs.filter((r) => baseByRound.has(r.round)).map((r) => r[key] / baseByRound.get(r.round)[key]);
      return { ofMedians: mine / theirs, perRound: stats(paired) };
    };
    const row = {
      client,
      tokens: size,
      tokensPerSec: metric("tokensPerSec"),
      cpuTurnMs: metric("cpuTurnMs"),
      cpuTotalMs: metric("cpuTotalMs"),
      maxRssKiB: metric("maxRssKiB"),
      serverCpuMs: metric("serverCpuMs"),
      upstreamCpuMs: upstreamPid === null ? null : metric("upstreamCpuMs"),
      wallMs: metric("wallMs"),
      tokenEvents: metric("events"),
      clientBusyPct: stats(rs.map((x) => (100 * x.cpuTurnMs) / x.wallMs)),
      ratios: { tokensPerSec: ratio("tokensPerSec"), cpuTurnMs: ratio("cpuTurnMs"), maxRssKiB: ratio("maxRssKiB") },
    };
    summary.push(row);
    const r = (x) =>
      client === "baseline"
        ? "1.00"
        : `**${x.ofMedians.toFixed(2)}×** (${x.perRound.min.toFixed(2)}–${x.perRound.max.toFixed(2)})`;
    lines.push(
      `| ${client} | ${spread(row.tokensPerSec)} | ${r(row.ratios.tokensPerSec)} | ${spread(row.tokenEvents)} | ` +
        `${spread(row.cpuTurnMs)} | ${r(row.ratios.cpuTurnMs)} | ${spread(row.clientBusyPct)} | ${spread(row.cpuTotalMs)} | ${spread(row.maxRssKiB, 1, 1024)} | ${r(row.ratios.maxRssKiB)} | ${spread(row.serverCpuMs)} | ` +
        `${row.upstreamCpuMs ? spread(row.upstreamCpuMs) : "–"} | ${spread(row.wallMs)} |`,
    );
  }
  const short = measured.filter((r) => r.tokens === size && r.missingTailBytes > 0);
  if (short.length > 0) {
    lines.push(
      `\nTail skipped (the turn's last tokens came only inside ai:message) in ${short.length} of ` +
        `${measured.filter((r) => r.tokens === size).length} runs: ` +
        short.map((r) => `${r.client} round ${r.round} (${r.missingTailBytes} bytes)`).join(", "),
    );
  }
}

const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model ?? "unknown CPU"}), Node ${process.version}, ${os.type()} ${os.release()}`;
const load = `1-min load average ${loadAtStart.toFixed(2)} at the start, ${os.loadavg()[0].toFixed(2)} at the end`;
const header = `Client benchmark, ${startedAt.toISOString()} — ${machine}; ${load}`;
process.stdout.write(`${header}\n${lines.join("\n")}\n`);
if (opts.out) {
  writeFileSync(opts.out, `${JSON.stringify({ startedAt, machine, load, sizes, reps, clients, summary, runs }, null, 2)}\n`);
  process.stderr.write(`[clients] every run's figures: ${opts.out}\n`);
}
