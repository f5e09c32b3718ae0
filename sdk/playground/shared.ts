// Helpers both pages use: the playground (main.ts, the customer's side) and the desk (desk.ts).

export function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

/** A v4 UUID. `crypto.randomUUID` exists only in secure contexts; a LAN http:// page is not one. */
export function newId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x40;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** `code: message` for a NatterError, a server `{code, message}`, or any thrown value. */
export function describeError(e: unknown): string {
  if (e && typeof e === "object") {
    const o = e as { code?: unknown; message?: unknown };
    if (typeof o.message === "string") {
      return typeof o.code === "string" && !o.message.startsWith(o.code) ? `${o.code}: ${o.message}` : o.message;
    }
  }
  return String(e);
}

/** A string field of an `ai:error`'s free-form `details`, if it has one. */
export function detail(details: unknown, key: string): string | undefined {
  if (typeof details !== "object" || details === null || Array.isArray(details)) return undefined;
  const value = (details as Record<string, unknown>)[key];
  return typeof value === "string" ? value : undefined;
}

/** The local time of an ISO 8601 string or epoch milliseconds; `""` for anything else. */
export function formatTime(when: unknown): string {
  if (typeof when !== "string" && typeof when !== "number") return "";
  const d = new Date(when);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString();
}

/**
 * A string claim of a JWT (`user_id`, `org_id`), read without checking the signature: only to
 * prefill the page (the server checks the token and takes the identity from it, whatever the
 * page shows).
 */
export function tokenClaim(jwt: string, claim: string): string | undefined {
  try {
    const body = jwt.split(".")[1];
    if (!body) return undefined;
    const bytes = Uint8Array.from(atob(body.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    const json = new TextDecoder().decode(bytes);
    const claims: unknown = JSON.parse(json);
    const value = typeof claims === "object" && claims !== null ? (claims as Record<string, unknown>)[claim] : undefined;
    return typeof value === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The token's `user_id` (see {@link tokenClaim}). */
export function tokenUser(jwt: string): string | undefined {
  return tokenClaim(jwt, "user_id");
}
