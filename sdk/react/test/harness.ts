// A copy of sdk/typescript/test/harness.ts (typed access to the interop harness).
// Typed access to the interop harness (tests/interop/lib/harness.mjs), which starts the real
// `natter` binary and the fake LLM upstream. Found by walking up from this file, so it works
// from test/ and from the compiled dist/test/ alike.
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
type Socket = { emit(event: string, ...args: unknown[]): unknown; close(): void };

export interface Upstream {
  url: string;
  stop(): void;
}

export interface Natter {
  url: string;
  port: number;
  stop(signal?: string): Promise<{ code: number | null; signal: string | null }>;
}

export interface StartNatterOptions {
  upstream?: Upstream;
  dataDir: string;
  args?: string[];
  env?: Record<string, string>;
  listen?: string;
  durability?: "normal" | "full";
}

export interface RecordingClient {
  socket: Socket;
  events: Array<{ event: string; payload: unknown }>;
  of(name: string): unknown[];
  waitFor(name: string, pred?: (payload: never) => boolean, timeoutMs?: number): Promise<unknown>;
  emit(event: string, payload: unknown): Promise<unknown>;
  close(): void;
}

interface HarnessModule {
  startFakeUpstream(): Promise<Upstream>;
  startNatter(opts: StartNatterOptions): Promise<Natter>;
  tempDir(): { dir: string; cleanup(): void };
  uid(prefix?: string): string;
  connect(url: string, opts?: Record<string, unknown>): Promise<RecordingClient>;
  sleep(ms: number): Promise<void>;
}

function findHarness(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, "tests", "interop", "lib", "harness.mjs");
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("tests/interop/lib/harness.mjs not found above " + import.meta.url);
    dir = parent;
  }
}

const harness = (await import(pathToFileURL(findHarness()).href)) as HarnessModule;

export const { startFakeUpstream, startNatter, tempDir, uid, connect, sleep } = harness;

/** Polls `pred` until it returns a truthy value or `timeoutMs` passes. */
export async function until<T>(pred: () => T | undefined | null | false, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * Stops a server with SIGTERM and, if it has not exited within `ms`, says so loudly and
 * SIGKILLs it, so a shutdown that hangs fails nothing but cannot hang the suite either.
 */
export async function stopNatter(natter: Natter | undefined, ms = 15_000): Promise<void> {
  if (!natter) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), ms)));
  const how = await Promise.race([natter.stop().then(() => "ok" as const), late]);
  clearTimeout(timer);
  if (how === "late") {
    console.error(`*** natter did not exit within ${ms} ms of SIGTERM: killing it ***`);
    await natter.stop("SIGKILL");
  }
}
