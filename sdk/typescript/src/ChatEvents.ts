// The typed event contract between a client and Natter. The event maps and payload types are
// generated from the server's Rust types (src/generated/); this file re-exports them and adds
// small aliases the SDK and seed 000's examples use.
export * from "./generated/protocol.js";

/** A chat id: the server uses strings; a number is accepted and turned into its decimal string. */
export type ChatID = string | number;
/** A user id, same rule as {@link ChatID}. */
export type UserID = string | number;

/** A successful ack: `{ ok: true, ... }` with per-event fields. */
export type AckOk<T extends object = Record<string, unknown>> = { ok: true } & T;

/** Who a connection is (CONTRACT §7.1): handshake `auth.clientType`, or the token's `client_type` claim. */
export type SocketClientType = "customer" | "humanAgent" | "observer";
