// Test harness: starts the real `natter` binary and the fake OpenAI upstream, and wraps
// stock npm clients. Binaries come from $NATTER_BIN_DIR (default: target/debug).
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
export const binDir = process.env.NATTER_BIN_DIR ?? path.join(repo, "target", "debug");

/** Spawns a binary and resolves once it prints `listening on http://…`. */
function startListening(bin, args, env = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(path.join(binDir, bin), args, {
      env: { ...process.env, NATTER_LOG: process.env.NATTER_LOG ?? "warn", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    let out = "";
    const timer = setTimeout(() => reject(new Error(`${bin} did not start in 20 s:\n${stderr}`)), 20000);
    proc.stderr.on("data", (d) => {
      stderr += d;
      if (process.env.NATTER_TEST_VERBOSE) process.stderr.write(d);
    });
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1], stderr: () => stderr });
      }
    });
    proc.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited early (${code ?? signal}):\n${stderr}`));
    });
  });
}

const TICKS_PER_S = 100; // USER_HZ on Linux

/** A process's CPU time so far (utime + stime), in seconds, from /proc (the benches). */
export function cpuSeconds(pid) {
  // Fields after the `(comm)`: state is 3rd, utime the 14th, stime the 15th (1-based).
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
}

/** A process's resident memory (VmRSS), in KiB. */
export function rssKib(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(status.match(/VmRSS:\s+(\d+) kB/)[1]);
}

/** Starts tools/socketio-protocol-server (the protocol suite's demo server) with `args`. */
export async function startProtocolServer(args = []) {
  const s = await startListening("socketio-protocol-server", ["--listen", "127.0.0.1:0", ...args]);
  return { ...s, stop: () => s.proc.kill("SIGKILL") };
}

/** Starts `engineio-echo` (tools/engineio-echo) with `args`; `rss()` reads its resident KiB. */
export async function startEngineioEcho(args = []) {
  const s = await startListening("engineio-echo", args);
  return {
    ...s,
    async stats() {
      return (await fetch(`${s.url}/stats`)).json();
    },
    rss() {
      return rssKib(s.proc.pid);
    },
    stop() {
      s.proc.kill("SIGKILL");
    },
  };
}

export async function startFakeUpstream() {
  const s = await startListening("natter-fake-upstream", ["--listen", "127.0.0.1:0"]);
  return {
    ...s,
    async stats() {
      return (await fetch(`${s.url}/stats`)).json();
    },
    async reset() {
      await fetch(`${s.url}/stats/reset`, { method: "POST" });
    },
    stop() {
      s.proc.kill("SIGKILL");
    },
  };
}

// ---------------------------------------------------------------- PostgreSQL and Redis
//
// `NATTER_TEST_DATABASE=postgres`: `startNatter` stores in a PostgreSQL database per data
// directory (`natter_it_<hash of dataDir>` on `NATTER_TEST_PG`, default
// postgres://postgres@127.0.0.1:5432), created with `psql` on first use in this process, so a
// restart on the same dataDir keeps its data, and dropped by `tempDir().cleanup` /
// `startStack().stop`. `NATTER_TEST_BUS=redis://…` adds `--bus <url>`. Neither set: SQLite and
// the in-process bus, as always.

/** The server PostgreSQL test databases live on (no database name). */
export const pgServer = (process.env.NATTER_TEST_PG ?? "postgres://postgres@127.0.0.1:5432").replace(/\/+$/, "");
/** True when the suite runs on PostgreSQL instead of SQLite. */
export const testOnPostgres = process.env.NATTER_TEST_DATABASE === "postgres";
/** The `--bus` URL every `startNatter` gets by default (`undefined`: the in-process bus). */
export const testBus = process.env.NATTER_TEST_BUS?.startsWith("redis://") ? process.env.NATTER_TEST_BUS : undefined;

/** Runs one SQL statement with `psql` against the server's `postgres` database; throws on failure. */
export function psql(sql, { database = "postgres", timeout = 15000 } = {}) {
  return execFileSync("psql", [`${pgServer}/${database}`, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout,
  });
}

/** Databases this process created: name → the data directory (resolved) it belongs to. */
const pgDatabases = new Map();

/** The test database name of `dataDir`. */
export function pgDatabaseName(dataDir) {
  return `natter_it_${createHash("sha256").update(path.resolve(dataDir)).digest("hex").slice(0, 16)}`;
}

/**
 * The URL of `dataDir`'s PostgreSQL database, created (fresh: a leftover of the same name is
 * dropped first) the first time this process asks for it; later calls reuse it with its data.
 */
export function pgDatabaseFor(dataDir) {
  const name = pgDatabaseName(dataDir);
  if (!pgDatabases.has(name)) {
    psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    psql(`CREATE DATABASE ${name}`);
    pgDatabases.set(name, path.resolve(dataDir));
  }
  return `${pgServer}/${name}`;
}

/** Drops (best effort) every database this process created for `dir` or a directory under it. */
export function dropPgDatabases(dir) {
  const root = path.resolve(dir);
  for (const [name, owner] of [...pgDatabases]) {
    if (owner !== root && !owner.startsWith(root + path.sep)) continue;
    pgDatabases.delete(name);
    try {
      psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    } catch (e) {
      process.stderr.write(`harness: could not drop test database ${name}: ${e.stderr || e.message}\n`);
    }
  }
}

/** A fresh data directory, removed by `cleanup` (with its PostgreSQL databases, if any). */
export function tempDir() {
  const dir = mkdtempSync(path.join(tmpdir(), "natter-test-"));
  return {
    dir,
    cleanup: () => {
      dropPgDatabases(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Rate limits off: the suites send bursts from one user and one address that the defaults
 * (sized for people typing) would refuse. The `limits` tests of `security.test.mjs` and
 * `limits-cluster.test.mjs` set their own and test them.
 */
export const NO_RATE_LIMITS = [
  "--message-rate-per-connection", "0", "--message-rate-per-user", "0", "--message-rate-per-ip", "0",
  "--turn-rate-per-connection", "0", "--turn-rate-per-user", "0", "--turn-rate-per-ip", "0",
];

/**
 * Starts `natter serve` against the fake upstream. `args` are extra flags. `provider` is
 * `openai` (the fake's Chat Completions endpoint, OPENAI_API_KEY) or `anthropic` (its
 * `/v1/messages`, ANTHROPIC_API_KEY). Retries are fast by default so retry tests stay short.
 * `database` (a URL) overrides the data directory's database; `bus` (a `redis://` URL, or
 * `null` for the in-process bus) overrides `NATTER_TEST_BUS`.
 */
export async function startNatter({ upstream, dataDir, args = [], env = {}, listen = "127.0.0.1:0", durability = "normal", provider = "openai", rateLimits = NO_RATE_LIMITS, database, bus = testBus }) {
  const upstreamArgs = !upstream
    ? []
    : provider === "anthropic"
      ? ["--provider", "anthropic", "--anthropic-base-url", upstream.url, "--model", "fake-model"]
      : ["--provider", "openai", "--openai-base-url", `${upstream.url}/v1`, "--model", "fake-model"];
  let databaseArgs;
  if (database) {
    databaseArgs = ["--database", database];
  } else if (testOnPostgres) {
    mkdirSync(dataDir, { recursive: true });
    databaseArgs = ["--database", pgDatabaseFor(dataDir)];
  } else {
    databaseArgs = ["--database", `sqlite://${dataDir}/natter.db`];
  }
  if (databaseArgs[1].startsWith("sqlite:")) databaseArgs.push("--sqlite-durability", durability);
  const full = [
    "serve",
    "--listen", listen,
    ...databaseArgs,
    ...(bus ? ["--bus", bus] : []),
    ...upstreamArgs,
    "--retry-base-delay-ms", "50",
    ...rateLimits,
    ...args,
  ];
  const keyEnv = provider === "anthropic" ? { ANTHROPIC_API_KEY: "test-anthropic-key" } : { OPENAI_API_KEY: "test-key" };
  const s = await startListening("natter", full, { ...keyEnv, ...env });
  let exited = null;
  s.proc.on("exit", (code, signal) => (exited = { code, signal }));
  return {
    ...s,
    port: Number(new URL(s.url).port),
    exited: () => exited,
    /** Sends `signal` and waits for the process to exit. */
    stop(signal = "SIGTERM") {
      return new Promise((resolve) => {
        if (exited) return resolve(exited);
        s.proc.once("exit", (code, sig) => resolve({ code, signal: sig }));
        s.proc.kill(signal);
      });
    },
  };
}

/** A fake upstream and `natter serve` on a fresh data directory; `stop()` tears all down. */
export async function startStack(opts = {}) {
  const tmp = tempDir();
  const upstream = await startFakeUpstream();
  const natter = await startNatter({ upstream, dataDir: tmp.dir, ...opts });
  return {
    upstream,
    natter,
    async stop() {
      await natter.stop();
      upstream.stop();
      tmp.cleanup();
    },
  };
}

/**
 * Connects a stock socket.io-client and records every event it receives, in order.
 *
 * A handshake that fails at the transport level before the Engine.IO session opened ("xhr
 * poll error", "websocket error": no HTTP response, or a 5xx one) is tried once more, as
 * the stock client's default reconnection would, with a loud line saying what failed. It
 * happened once in six CI runs (the discovery test of transports.test.mjs, 10 ms in, cause
 * unknown: the error carried no status then) and did not recur in 1,500 handshakes in a loop
 * nor in eight runs of that file; the line and the status now in the message keep the
 * evidence. Refusals by the server (a 4xx, or `connect_error` with a message), and a second
 * failure, still reject.
 */
export async function connect(url, opts = {}) {
  try {
    return await connectOnce(url, opts);
  } catch (err) {
    // A 4xx is the server's deliberate answer (an origin refused with 403, say): no retry.
    const status = err?.httpStatus;
    if (err?.type !== "TransportError" || err.engineOpened || (status >= 400 && status < 500)) throw err;
    console.error(`\n!!! handshake to ${url} failed at the transport level, trying once more: ${err.message}\n`);
    return connectOnce(url, opts);
  }
}

function connectOnce(url, opts) {
  const socket = io(url, { forceNew: true, reconnection: false, ...opts });
  let engineOpened = false;
  socket.io.once("open", () => (engineOpened = true));
  const events = [];
  socket.onAny((event, payload) => events.push({ event, payload }));
  const client = {
    socket,
    events,
    /** Events named `name`, payloads only. */
    of(name) {
      return events.filter((e) => e.event === name).map((e) => e.payload);
    },
    /** Waits until `pred(events)` is truthy; returns its value. */
    async until(pred, timeoutMs = 10000, what = "condition") {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = pred(events);
        if (v) return v;
        if (Date.now() > deadline) {
          throw new Error(`timed out waiting for ${what}; got events: ${JSON.stringify(events.map((e) => e.event))}`);
        }
        await sleep(10);
      }
    },
    /** Waits for the first event named `name` whose payload satisfies `pred`. */
    async waitFor(name, pred = () => true, timeoutMs = 10000) {
      return client.until(
        (evs) => evs.find((e) => e.event === name && pred(e.payload))?.payload,
        timeoutMs,
        `event ${name}`,
      );
    },
    emit(event, payload) {
      return socket.timeout(10000).emitWithAck(event, payload);
    },
    close() {
      socket.close();
    },
  };
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(client));
    socket.once("connect_error", (err) => {
      // engine.io-client's transport errors ("xhr poll error", "websocket error") carry the
      // HTTP status or the underlying error only in `description` / `context`: say them.
      const status = err?.context?.status;
      const body = err?.context?.responseText;
      const cause = err?.description?.message ?? err?.description;
      if (err?.type === "TransportError") {
        err.engineOpened = engineOpened;
        // Polling: the XHR's status (0 without a response); WebSocket: the `ws` package's
        // "Unexpected server response: NNN".
        const wsStatus = /Unexpected server response: (\d+)/.exec(String(cause ?? ""))?.[1];
        err.httpStatus = status || (wsStatus ? Number(wsStatus) : undefined);
        err.message += ` (transport ${socket.io.engine?.transport?.name ?? "?"}, status ${err.httpStatus ?? status ?? "?"}, ` +
          `description ${JSON.stringify(String(cause ?? ""))}, body ${JSON.stringify(String(body ?? "").slice(0, 200))})`;
      }
      reject(err);
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let counter = 0;
/** A unique id for this test run. */
export function uid(prefix = "id") {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

/** Joins a turn's tokens by index (deduped), honouring coalesced `through` events. */
export function joinTokens(tokens, messageId) {
  let next = 0;
  let text = "";
  for (const t of tokens) {
    if (messageId && t.messageId !== messageId) continue;
    const last = t.through ?? t.index;
    if (last < next) continue;
    if (t.index !== next) throw new Error(`token gap: expected index ${next}, got ${t.index}`);
    text += t.token;
    next = last + 1;
  }
  return text;
}
