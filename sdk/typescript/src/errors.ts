/**
 * An error with the server's (or the SDK's) error `code`, e.g. `not_joined`, `too_large`,
 * `ack_timeout`. `details` holds the rest of the server's error object, if any.
 */
export class NatterError extends Error {
  readonly code: string;
  readonly details: unknown;

  constructor(code: string, message: string, details?: unknown) {
    super(message);
    this.name = "NatterError";
    this.code = code;
    this.details = details;
  }
}

/** SDK-side codes (server codes are listed in docs/protocol.md "Error codes"). */
export const SdkErrorCode = {
  /** An ack did not come back in time; the event may or may not have been applied. */
  AckTimeout: "ack_timeout",
  /** The event waited for the connection (and join) too long and was never sent. */
  NotSent: "not_sent",
  /** The client was destroyed before the event was sent or acked. */
  Destroyed: "destroyed",
  /** An ack that is neither `{ok: true}` nor `{ok: false, error}`. */
  BadAck: "bad_ack",
  /** A token event that leaves a hole in its turn's indexes (the server promises none). */
  TokenGap: "token_gap",
} as const;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/**
 * Reads a Natter ack: returns it when `ok: true`, throws a {@link NatterError} carrying the
 * server's `code` when `ok: false`, and throws `bad_ack` for anything else.
 */
export function checkAck<T extends object>(event: string, ack: unknown): { ok: true } & T {
  if (isRecord(ack) && ack["ok"] === true) return ack as { ok: true } & T;
  if (isRecord(ack) && ack["ok"] === false) {
    const err = ack["error"];
    if (isRecord(err) && typeof err["code"] === "string") {
      const message = typeof err["message"] === "string" ? err["message"] : err["code"];
      return throwError(new NatterError(err["code"], `${event}: ${message}`, err));
    }
  }
  return throwError(new NatterError(SdkErrorCode.BadAck, `${event}: unexpected ack ${safeJson(ack)}`, ack));
}

function throwError(e: Error): never {
  throw e;
}

/** The error as a {@link NatterError}: server error objects `{code, message}` keep their code. */
export function toNatterError(value: unknown): NatterError {
  if (value instanceof NatterError) return value;
  if (isRecord(value) && typeof value["code"] === "string") {
    const message = typeof value["message"] === "string" ? value["message"] : value["code"];
    return new NatterError(value["code"], message, value);
  }
  if (value instanceof Error) return new NatterError("error", value.message, value);
  return new NatterError("error", safeJson(value), value);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
