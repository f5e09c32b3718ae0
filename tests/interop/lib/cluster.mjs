// A Natter cluster on loopback for the interop tests (CONTRACT §8): its own redis-server on a
// free port (stoppable and restartable on the same port), a fresh PostgreSQL database, one fake
// upstream, and N `natter serve` processes sharing the database and Redis.
import { spawn, spawnSync } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { pgDatabaseFor, pgServer, psql, sleep, startFakeUpstream, startNatter, tempDir } from "./harness.mjs";

/** A free TCP port on 127.0.0.1 (free when asked; nothing holds it afterwards). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

let checked;
/**
 * Whether a cluster can run here: `redis-server` and `psql` installed and PostgreSQL answering
 * at `pgServer`. `{ ok: true }` or `{ ok: false, reason }` (checked once per process).
 */
export function clusterPrerequisites() {
  return (checked ??= checkPrerequisites());
}

function checkPrerequisites() {
  const redis = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  if (redis.error || redis.status !== 0) {
    return { ok: false, reason: `redis-server is not installed (${redis.error?.code ?? `exit ${redis.status}`}); apt-get install redis-server` };
  }
  const which = spawnSync("psql", ["--version"], { encoding: "utf8" });
  if (which.error || which.status !== 0) {
    return { ok: false, reason: `psql is not installed (${which.error?.code ?? `exit ${which.status}`}); apt-get install postgresql-client` };
  }
  try {
    psql("SELECT 1", { timeout: 5000 });
  } catch (e) {
    return { ok: false, reason: `PostgreSQL does not answer at ${pgServer}: ${(e.stderr || e.message || "").trim()}` };
  }
  return { ok: true };
}

/**
 * `test()` options for a cluster test: skipped with a loud `!!! SKIPPED` line when the
 * prerequisites are missing, except under `CI=true`, where the test runs and fails with why.
 */
export function clusterTestOptions(extra = {}) {
  const pre = clusterPrerequisites();
  if (pre.ok || process.env.CI === "true") return extra;
  if (!clusterTestOptions.warned) {
    clusterTestOptions.warned = true;
    process.stderr.write(`\n!!! SKIPPED cluster tests: ${pre.reason}\n!!! (under CI=true they fail instead)\n\n`);
  }
  return { ...extra, skip: `!!! SKIPPED: ${pre.reason}` };
}

/**
 * Starts a cluster for a test, or resolves `null` when the prerequisites are missing (the
 * tests are then skipped by `clusterTestOptions`); under `CI=true` a missing piece throws.
 */
export async function clusterOrSkip(options) {
  const pre = clusterPrerequisites();
  if (!pre.ok && process.env.CI !== "true") return null;
  if (!pre.ok) throw new Error(`cluster prerequisites missing under CI=true: ${pre.reason}`);
  return startCluster(options);
}

/** Spawns redis-server on `port` (no persistence) and resolves once it answers. */
export async function startRedisServer(port) {
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  proc.stdout.on("data", (d) => (log += d));
  proc.stderr.on("data", (d) => (log += d));
  let exited = null;
  proc.on("exit", (code, signal) => (exited = { code, signal }));
  const deadline = Date.now() + 10000;
  for (;;) {
    if (exited) throw new Error(`redis-server on port ${port} exited (${exited.code ?? exited.signal}):\n${log}`);
    if (await redisPing(port)) break;
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`redis-server on port ${port} did not answer in 10 s:\n${log}`);
    }
    await sleep(25);
  }
  return {
    proc,
    port,
    url: `redis://127.0.0.1:${port}/`,
    log: () => log,
    /** Kills it (SIGKILL by default: its data is gone either way, nothing is saved). */
    stop(signal = "SIGKILL") {
      return new Promise((resolve) => {
        if (exited) return resolve(exited);
        proc.once("exit", (code, sig) => resolve({ code, signal: sig }));
        proc.kill(signal);
      });
    },
  };
}

/** True when something on `port` answers a RESP `PING` with `+PONG`. */
function redisPing(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    let buf = "";
    const done = (v) => {
      sock.destroy();
      resolve(v);
    };
    sock.setTimeout(1000, () => done(false));
    sock.on("error", () => done(false));
    sock.on("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => {
      buf += d;
      if (buf.includes("\r\n")) done(buf.startsWith("+PONG"));
    });
  });
}

/** Stops a natter node: `signal`, then SIGKILL if it has not exited after `graceMs`. */
async function stopNode(natter, signal = "SIGTERM", graceMs = 5000) {
  if (natter.exited()) return natter.exited();
  let timer;
  const killed = new Promise((resolve) => {
    timer = setTimeout(() => {
      natter.proc.kill("SIGKILL");
      resolve();
    }, graceMs);
  });
  const result = natter.stop(signal);
  await Promise.race([result, killed]);
  clearTimeout(timer);
  return result;
}

/**
 * Starts a cluster of `nodes` natter processes. `args` are extra `natter serve` flags for every
 * node, `env` extra environment. Returns:
 * - `urls` (getter, current), `node(i)` (the harness's natter handle), `upstream`, `redis`,
 *   `database` (the Postgres URL), `redisUrl`;
 * - `killNode(i, signal = "SIGKILL")`, `restartNode(i)` (same port when it is still free);
 * - `stopRedis()` / `startRedis()` (the same port);
 * - `stderr(i)`: node i's stderr so far (all its incarnations);
 * - `stop()`: tears everything down (nodes, upstream, Redis, database, temp dir).
 */
export async function startCluster({ nodes = 3, args = [], env = {} } = {}) {
  const tmp = tempDir();
  const dataDir = path.join(tmp.dir, "cluster");
  const database = pgDatabaseFor(dataDir);
  const cluster = {
    tmp,
    dataDir,
    database,
    upstream: null,
    redis: null,
    redisPort: null,
    nodes: [],
    /** stderr of node i's earlier incarnations. */
    pastLogs: [],
  };
  try {
    cluster.redisPort = await freePort();
    cluster.redis = await startRedisServer(cluster.redisPort);
    cluster.upstream = await startFakeUpstream();
    const redisUrl = cluster.redis.url;
    const opts = (listen = "127.0.0.1:0") => ({
      upstream: cluster.upstream,
      dataDir,
      database,
      bus: redisUrl,
      listen,
      args,
      env,
    });
    // One at a time: the first creates the schema, the others find it.
    for (let i = 0; i < nodes; i++) {
      cluster.nodes[i] = await startNatter(opts());
      cluster.pastLogs[i] = "";
    }

    return {
      get urls() {
        return cluster.nodes.map((n) => n.url);
      },
      url: (i) => cluster.nodes[i].url,
      node: (i) => cluster.nodes[i],
      upstream: cluster.upstream,
      get redis() {
        return cluster.redis;
      },
      redisUrl,
      database,
      stderr(i) {
        return cluster.pastLogs[i] + cluster.nodes[i].stderr();
      },
      /** Sends `signal` (SIGKILL by default) to node i and waits for it to exit. */
      async killNode(i, signal = "SIGKILL") {
        return cluster.nodes[i].stop(signal);
      },
      /** Starts node i again (after `killNode`), on its old port if that is free. */
      async restartNode(i) {
        const old = cluster.nodes[i];
        if (!old.exited()) await stopNode(old, "SIGKILL");
        cluster.pastLogs[i] += `${old.stderr()}\n--- node ${i} restarted ---\n`;
        let natter;
        try {
          natter = await startNatter(opts(`127.0.0.1:${old.port}`));
        } catch {
          natter = await startNatter(opts());
        }
        cluster.nodes[i] = natter;
        return natter;
      },
      /** Kills redis-server (its data goes with it: nothing is persisted). */
      async stopRedis() {
        await cluster.redis.stop("SIGKILL");
      },
      /** Starts redis-server again on the same port. */
      async startRedis() {
        cluster.redis = await startRedisServer(cluster.redisPort);
        return cluster.redis;
      },
      async stop() {
        await Promise.all(cluster.nodes.map((n) => n && stopNode(n)));
        cluster.upstream?.stop();
        await cluster.redis?.stop();
        tmp.cleanup();
      },
    };
  } catch (e) {
    await Promise.all(cluster.nodes.map((n) => n && stopNode(n, "SIGKILL")));
    cluster.upstream?.stop();
    await cluster.redis?.stop();
    tmp.cleanup();
    throw e;
  }
}
