// The two built-in stream transports of seed 002: `"sse"` (EventSource) and `"sse-fetch"`
// (fetch + ReadableStream, for React Native and runtimes without EventSource). Each opens one
// stream and reports; reconnection is the ChatClient's (retryConfig, Last-Event-ID, token).
import { CHAT_EVENT_TYPES, type ChatTransport, type StreamHandlers, type TransportError } from "./types.js";

export function transportError(
  code: string,
  message: string,
  retryable: boolean,
  extra: { status?: number; cause?: unknown } = {},
): TransportError {
  return {
    code,
    message,
    retryable,
    timestamp: Date.now(),
    ...(extra.status !== undefined ? { status: extra.status } : {}),
    ...(extra.cause !== undefined ? { cause: extra.cause } : {}),
  };
}

function withLastEventId(url: string, lastEventId: string | undefined): string {
  if (lastEventId === undefined) return url;
  const u = new URL(url);
  u.searchParams.set("lastEventId", lastEventId);
  return u.toString();
}

interface EventSourceLike {
  readonly readyState: number;
  addEventListener(type: string, listener: (event: MessageEvent | Event) => void): void;
  close(): void;
}
type EventSourceCtor = new (url: string) => EventSourceLike;

/**
 * `"sse"`: the platform's `EventSource`. EventSource cannot send headers, so the resume point
 * goes as `?lastEventId=` (the server reads it like `Last-Event-ID`) and the token as
 * `?token=` (in the URL the client builds). Its own automatic reconnection is cut short: on the
 * first error the stream is closed and reported, so the client reconnects with a fresh token
 * and its backoff.
 */
export class EventSourceTransport implements ChatTransport {
  readonly type = "sse";

  static available(): boolean {
    return typeof (globalThis as { EventSource?: unknown }).EventSource === "function";
  }

  open(url: string, handlers: StreamHandlers, options: { lastEventId?: string }): { close(): void } {
    const Ctor = (globalThis as { EventSource?: EventSourceCtor }).EventSource;
    if (!Ctor) throw new Error('transport "sse" needs a global EventSource; use "sse-fetch" here');
    const es = new Ctor(withLastEventId(url, options.lastEventId));
    let closed = false;
    const close = () => {
      closed = true;
      es.close();
    };
    es.addEventListener("open", () => {
      if (!closed) handlers.onOpen();
    });
    const forward = (type: string) => (event: MessageEvent | Event) => {
      if (closed) return;
      const m = event as MessageEvent;
      if (type === "error" && typeof m.data !== "string") {
        // EventSource's own error: the connection failed or dropped. (A server `event: error`
        // carries data and is forwarded like any other event.)
        close();
        const status = (event as { code?: unknown }).code;
        handlers.onError(
          transportError(
            typeof status === "number" && status >= 400 ? `http_${status}` : "stream_closed",
            typeof status === "number" ? `the event stream failed (HTTP ${status})` : "the event stream failed or was closed",
            typeof status === "number" ? status >= 500 || status === 429 : true,
            typeof status === "number" ? { status } : {},
          ),
        );
        return;
      }
      handlers.onEvent(type, typeof m.data === "string" ? m.data : "", m.lastEventId ? m.lastEventId : undefined);
    };
    for (const type of CHAT_EVENT_TYPES) es.addEventListener(type, forward(type));
    return { close };
  }
}

/**
 * `"sse-fetch"`: `fetch` + `ReadableStream`, parsing `text/event-stream` itself (comments,
 * `event:`, `data:` over several lines, `id:`). Sends `Last-Event-ID` as a header.
 */
export class FetchSseTransport implements ChatTransport {
  readonly type = "sse-fetch";

  open(url: string, handlers: StreamHandlers, options: { lastEventId?: string }): { close(): void } {
    const controller = new AbortController();
    let closed = false;
    const fail = (e: TransportError) => {
      if (closed) return;
      closed = true;
      controller.abort();
      handlers.onError(e);
    };
    void (async () => {
      let response: Response;
      try {
        response = await fetch(url, {
          headers: {
            Accept: "text/event-stream",
            ...(options.lastEventId !== undefined ? { "Last-Event-ID": options.lastEventId } : {}),
          },
          signal: controller.signal,
          cache: "no-store",
        });
      } catch (e) {
        fail(transportError("network_error", `could not open the event stream: ${(e as Error).message}`, true, { cause: e }));
        return;
      }
      if (!response.ok || !response.body) {
        const body = await response.text().catch(() => "");
        let code = `http_${response.status}`;
        let message = `the event stream was refused (HTTP ${response.status})`;
        try {
          const parsed = JSON.parse(body) as { error?: { code?: string; message?: string } };
          if (parsed.error?.code) code = parsed.error.code;
          if (parsed.error?.message) message = parsed.error.message;
        } catch {
          // not JSON: keep the status
        }
        fail(transportError(code, message, response.status >= 500 || response.status === 429, { status: response.status }));
        return;
      }
      if (closed) return;
      handlers.onOpen();
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let type = "";
      let data: string[] = [];
      let id: string | undefined;
      const dispatchLine = (line: string) => {
        if (line === "") {
          if (data.length > 0 && !closed) handlers.onEvent(type || "message", data.join("\n"), id);
          type = "";
          data = [];
          return;
        }
        if (line.startsWith(":")) return; // comment (heartbeat)
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") type = value;
        else if (field === "data") data.push(value);
        else if (field === "id" && !value.includes("\0")) id = value;
      };
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let nl: number;
          while ((nl = buffer.search(/\r\n|\r|\n/)) !== -1) {
            const line = buffer.slice(0, nl);
            buffer = buffer.slice(nl + (buffer[nl] === "\r" && buffer[nl + 1] === "\n" ? 2 : 1));
            dispatchLine(line);
            if (closed) return;
          }
        }
        fail(transportError("stream_closed", "the server ended the event stream", true));
      } catch (e) {
        fail(transportError("stream_closed", `the event stream broke: ${(e as Error).message}`, true, { cause: e }));
      }
    })();
    return {
      close() {
        closed = true;
        controller.abort();
      },
    };
  }
}
