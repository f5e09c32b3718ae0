// JSON over HTTP for the seed-002 and history clients: the token as `Authorization: Bearer`,
// errors as TransportError with the server's `{error: {code, message}}`.
import { transportError } from "./transports.js";
import type { TokenProvider, TransportError } from "./types.js";

/** Thrown (rejected) by a failed request. */
export class ChatRequestError extends Error {
  readonly error: TransportError;
  constructor(error: TransportError) {
    super(error.message);
    this.name = "ChatRequestError";
    this.error = error;
  }
}

export async function resolveToken(getToken: TokenProvider | undefined, token: string | undefined): Promise<string | undefined> {
  if (getToken) {
    try {
      const t = await getToken();
      return t ? t : undefined;
    } catch (e) {
      throw new ChatRequestError(transportError("token_error", `getToken failed: ${(e as Error)?.message ?? String(e)}`, true, { cause: e }));
    }
  }
  return token ? token : undefined;
}

export async function requestJson(
  method: string,
  url: string,
  body: unknown,
  token: string | undefined,
): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: {
        Accept: "application/json",
        ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (e) {
    throw new ChatRequestError(transportError("network_error", `${method} ${url} failed: ${(e as Error).message}`, true, { cause: e }));
  }
  const text = await response.text().catch(() => "");
  let parsed: unknown = undefined;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
  }
  if (!response.ok) {
    const err = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    throw new ChatRequestError(
      transportError(
        typeof err?.code === "string" ? err.code : `http_${response.status}`,
        typeof err?.message === "string" ? err.message : `${method} ${url}: HTTP ${response.status}`,
        response.status >= 500 || response.status === 429,
        { status: response.status },
      ),
    );
  }
  if (text && parsed === undefined) {
    throw new ChatRequestError(transportError("bad_response", `${method} ${url}: the response is not JSON`, false, { status: response.status }));
  }
  return parsed;
}

export function asTransportError(e: unknown): TransportError {
  if (e instanceof ChatRequestError) return e.error;
  return transportError("client_error", (e as Error)?.message ?? String(e), false, { cause: e });
}

export function joinUrl(base: string, path: string): string {
  return base.replace(/\/+$/, "") + path;
}
