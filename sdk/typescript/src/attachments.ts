// Attachments (CONTRACT §7.6): uploading a file for a chat over HTTP (`POST /api/v1/attachments`,
// multipart `file` + `chatKey`), the typed errors of an upload, and the URLs to read one back.
// Every client of the SDK (AIChatSocket, ChatClient, NatterChatTransport) uploads through here.
import { NatterError } from "./errors.js";

/** What the server answers for a stored file: `url` is `/api/v1/attachments/{id}` (members only). */
export interface UploadedAttachment {
  id: string;
  /** The file name (the one given, else the File's own name). */
  name: string;
  /** The type the server found in the bytes (never the client's claim). */
  mimeType: string;
  size: number;
  /** Lowercase hex. */
  sha256: string;
  url: string;
  /** Documents only: how the server's reading of it stands (updates come as processing events). */
  processing?: AttachmentProcessingState;
}

/** A document's processing as the server stores it (absent for images). */
export interface AttachmentProcessingState {
  status: "processing" | "complete" | "error";
  chars?: number;
  pages?: number;
  error?: { code: string; message: string };
}

/** A reference to a stored attachment as a message carries it: only `id` is needed. */
export interface AttachmentRef {
  id: string;
  [key: string]: unknown;
}

/** The path attachments live under on a Natter server. */
export const ATTACHMENTS_PATH = "/api/v1/attachments";

/** An upload the server (or the network) refused; `code` is the server's, `status` its HTTP status. */
export class AttachmentUploadError extends NatterError {
  /** The HTTP status, when there was a response. */
  readonly status: number | undefined;
  /** True when trying again may help (network trouble, 5xx, 429). */
  readonly retryable: boolean;

  constructor(code: string, message: string, status?: number, details?: unknown) {
    super(code, message, details);
    this.name = "AttachmentUploadError";
    this.status = status;
    this.retryable = status === undefined || status >= 500 || status === 429;
  }
}

/** 413 `too_large`: the file is over the server's `--max-attachment-bytes` (or the chat's quota). */
export class AttachmentTooLargeError extends AttachmentUploadError {
  constructor(code: string, message: string, details?: unknown) {
    super(code, message, 413, details);
    this.name = "AttachmentTooLargeError";
  }
}

/** 415 `unsupported_media_type`: the bytes are not a type the server takes (images, PDF, UTF-8 text). */
export class UnsupportedMediaTypeError extends AttachmentUploadError {
  constructor(code: string, message: string, details?: unknown) {
    super(code, message, 415, details);
    this.name = "UnsupportedMediaTypeError";
  }
}

/** Who uploads: the same identity the client uses for its other HTTP calls. */
export interface UploadIdentity {
  /** A JWT, sent as `Authorization: Bearer` (with auth on, it alone says who this is). */
  token?: string | undefined;
  /** With auth off: the org (default `default`) and the user. */
  orgId?: string | undefined;
  userId?: string | undefined;
}

export interface UploadAttachmentOptions extends UploadIdentity {
  /**
   * The server's root (`http://host:4000`) or the full attachments endpoint
   * (`…/api/v1/attachments`): a URL that already ends with that path is used as it is.
   */
  url: string;
  /** The chat the file is for (its `chatKey` / `chatId`). */
  chatId: string | number;
  file: Blob;
  /** The file name; default the File's own name, else `"file"`. */
  name?: string | undefined;
  signal?: AbortSignal | undefined;
  /** Default: the global `fetch`. */
  fetch?: typeof fetch | undefined;
}

/** The attachments endpoint for a server root or an endpoint URL (see {@link UploadAttachmentOptions.url}). */
export function attachmentsEndpoint(url: string): string {
  const trimmed = url.replace(/\/+$/, "");
  if (trimmed.endsWith(ATTACHMENTS_PATH)) return trimmed;
  // A page that passes `window.location.origin` or a full URL alike: only the origin counts.
  try {
    const u = new URL(trimmed);
    return `${u.origin}${u.pathname.replace(/\/+$/, "")}${ATTACHMENTS_PATH}`;
  } catch {
    return `${trimmed}${ATTACHMENTS_PATH}`;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The name a Blob goes up with: the one given, a File's own, else `file`. */
function fileName(file: Blob, name: string | undefined): string {
  if (name !== undefined && name !== "") return name;
  const own = (file as { name?: unknown }).name;
  return typeof own === "string" && own !== "" ? own : "file";
}

/** The error for a refused upload: 413 and 415 get their own classes. */
function uploadError(status: number, body: unknown, fallback: string): AttachmentUploadError {
  const err = isRecord(body) ? body["error"] : undefined;
  const code = isRecord(err) && typeof err["code"] === "string" ? err["code"] : `http_${status}`;
  const message = isRecord(err) && typeof err["message"] === "string" ? err["message"] : fallback;
  if (status === 413) return new AttachmentTooLargeError(code, message, err);
  if (status === 415) return new UnsupportedMediaTypeError(code, message, err);
  return new AttachmentUploadError(code, message, status, err);
}

/**
 * Uploads `file` for chat `chatId` (multipart `POST /api/v1/attachments`) and resolves to the
 * stored attachment. Rejects with an {@link AttachmentUploadError}: {@link AttachmentTooLargeError}
 * for 413, {@link UnsupportedMediaTypeError} for 415, the server's code otherwise (`not_found`
 * for a chat the caller cannot see, `rate_limited`, …), `network_error` when no answer came.
 * The same bytes uploaded twice to one chat give the same attachment.
 */
export async function uploadAttachment(options: UploadAttachmentOptions): Promise<UploadedAttachment> {
  const { file, chatId } = options;
  if (typeof Blob === "undefined" || !(file instanceof Blob)) {
    throw new AttachmentUploadError("invalid_field", "uploadAttachment: `file` must be a File or a Blob");
  }
  if ((typeof chatId !== "string" && typeof chatId !== "number") || String(chatId) === "") {
    throw new AttachmentUploadError("missing_field", "uploadAttachment: `chatId` must be a non-empty string");
  }
  const endpoint = attachmentsEndpoint(options.url);
  const form = new FormData();
  // The small fields first: the server knows the chat and the caller before the file streams in.
  form.append("chatKey", String(chatId));
  if (options.orgId !== undefined && options.orgId !== "") form.append("orgId", options.orgId);
  if (options.userId !== undefined && options.userId !== "") form.append("userId", options.userId);
  form.append("file", file, fileName(file, options.name));
  const doFetch = options.fetch ?? fetch;
  let response: Response;
  try {
    response = await doFetch(endpoint, {
      method: "POST",
      headers: { Accept: "application/json", ...(options.token ? { Authorization: `Bearer ${options.token}` } : {}) },
      body: form,
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
    });
  } catch (e) {
    if ((e as { name?: unknown })?.name === "AbortError") throw e;
    throw new AttachmentUploadError("network_error", `POST ${endpoint} failed: ${(e as Error)?.message ?? String(e)}`, undefined, e);
  }
  const text = await response.text().catch(() => "");
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!response.ok) throw uploadError(response.status, body, `POST ${endpoint}: HTTP ${response.status}`);
  if (
    !isRecord(body) ||
    typeof body["id"] !== "string" ||
    typeof body["url"] !== "string" ||
    typeof body["mimeType"] !== "string" ||
    typeof body["size"] !== "number"
  ) {
    throw new AttachmentUploadError("bad_response", `POST ${endpoint}: the answer is not an attachment: ${text.slice(0, 200)}`, response.status);
  }
  return {
    id: body["id"],
    name: typeof body["name"] === "string" ? body["name"] : fileName(file, options.name),
    mimeType: body["mimeType"],
    size: body["size"],
    sha256: typeof body["sha256"] === "string" ? body["sha256"] : "",
    url: body["url"],
    ...(isRecord(body["processing"]) && typeof body["processing"]["status"] === "string"
      ? { processing: body["processing"] as unknown as AttachmentProcessingState }
      : {}),
  };
}

/** Only the ids of attachments, as messages send them (`[{id}]`); the rest is the server's to fill. */
export function attachmentRefs(attachments: ReadonlyArray<AttachmentRef | UploadedAttachment | string>): Array<{ id: string }> {
  return attachments.map((a, i) => {
    const id = typeof a === "string" ? a : a?.id;
    if (typeof id !== "string" || id === "") {
      throw new NatterError("invalid_field", `attachments[${i}]: an attachment needs its \`id\` (from uploadAttachment)`);
    }
    return { id };
  });
}

/**
 * The id of a stored attachment's URL: `/api/v1/attachments/{id}` relative, or absolute on
 * `server` (same origin); else `undefined`. Without `server` only a relative URL counts.
 */
export function attachmentIdOf(url: string, server?: string): string | undefined {
  const relative = url.startsWith("/") && !url.startsWith("//");
  let path: string;
  try {
    if (relative) path = new URL(url, "http://relative.invalid").pathname;
    else {
      if (server === undefined) return undefined;
      const u = new URL(url);
      if (u.origin !== new URL(server).origin) return undefined;
      path = u.pathname;
    }
  } catch {
    return undefined;
  }
  const prefix = `${ATTACHMENTS_PATH}/`;
  if (!path.startsWith(prefix)) return undefined;
  let id: string;
  try {
    id = decodeURIComponent(path.slice(prefix.length));
  } catch {
    return undefined;
  }
  return id !== "" && !id.includes("/") ? id : undefined;
}

/** A `data:` URL's bytes and type (base64 or percent-encoded), or `undefined` if it is not one. */
export function dataUrlToBlob(url: string): Blob | undefined {
  const m = /^data:([^,]*?),(.*)$/s.exec(url);
  if (!m) return undefined;
  const meta = m[1] ?? "";
  const payload = m[2] ?? "";
  const base64 = /;base64$/i.test(meta);
  const type = (base64 ? meta.slice(0, -";base64".length) : meta).split(";")[0] || "application/octet-stream";
  let bytes: Uint8Array;
  try {
    if (base64) {
      const bin = atob(payload.replace(/\s+/g, ""));
      bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    } else {
      bytes = new TextEncoder().encode(decodeURIComponent(payload));
    }
  } catch {
    return undefined;
  }
  return new Blob([bytes as BlobPart], { type });
}
