// A DOM for the hook tests: happy-dom's globals, but Node's own networking, streams and timers
// (the hooks talk to the real binary over Node's fetch and socket.io-client).
import { GlobalRegistrator } from "@happy-dom/global-registrator";

const KEEP = [
  "fetch", "Request", "Response", "Headers", "FormData", "AbortController", "AbortSignal",
  "ReadableStream", "WritableStream", "TransformStream", "TextEncoder", "TextDecoder", "URL",
  "URLSearchParams", "setTimeout", "clearTimeout", "setInterval", "clearInterval", "queueMicrotask",
  "structuredClone", "crypto", "performance",
] as const;

if (!GlobalRegistrator.isRegistered) {
  const g = globalThis as Record<string, unknown>;
  const saved = Object.fromEntries(KEEP.map((k) => [k, g[k]]));
  GlobalRegistrator.register({ url: "http://localhost:5173/" });
  for (const k of KEEP) Object.defineProperty(globalThis, k, { value: saved[k], configurable: true, writable: true });
  // Updates from the network arrive outside act(); RTL's own act() calls still set this.
  g["IS_REACT_ACT_ENVIRONMENT"] = false;
}

/** console.error lines seen since the last `takeConsoleErrors()`. */
const errors: string[] = [];
const original = console.error.bind(console);
console.error = (...args: unknown[]) => {
  errors.push(args.map(String).join(" "));
  original(...args);
};
export function takeConsoleErrors(): string[] {
  return errors.splice(0);
}

/** The React major this run must use (`NATTER_EXPECT_REACT`, set by `npm run test:react18`; default 19). */
export const EXPECTED_REACT_MAJOR = process.env["NATTER_EXPECT_REACT"] ?? "19";
