// A generic, typed wrapper around one socket.io-client socket (seed 001, "SocketService").
import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";
import { NatterError, SdkErrorCode } from "./errors.js";

/** socket.io-client's options (query, auth, extraHeaders, transports, reconnection …). */
export type IoOptions = Partial<ManagerOptions & SocketOptions>;

/** The payload type of `event` in the map `E`; `unknown` for a name the map does not know. */
export type PayloadOf<E, K extends string> = K extends keyof E ? E[K] : unknown;

export type Listener<P> = (payload: P) => void;

/** Initial listeners by event name: typed for the names in `E`, `unknown` payloads for others. */
export type Handlers<E> = { [K in keyof E & string]?: Listener<E[K]> } & {
  [event: string]: Listener<never> | undefined;
};

/** A value, or a function that produces it each time it is needed. */
export type Lazy<T> = T | (() => T);

export interface SocketServiceOptions<E extends object> {
  url: string;
  /** The chat to join on every connect (omit for backends without rooms). */
  chatId?: string | number;
  /** Join event name; default `"chat:join"`; `null` skips the join. */
  joinEvent?: Lazy<string | null>;
  /** Join payload; default `{ chatId }`. A function is called on every (re)connect. */
  joinPayload?: Lazy<unknown>;
  /** Passed to socket.io-client's `io()`. `forceNew` defaults to true: each service owns its socket. */
  ioOptions?: IoOptions;
  handlers?: Handlers<E>;
  /** Connect at construction; default true. */
  autoConnect?: boolean;
  /** The server's protocol-error event; default `"error"`; `null` to not listen. */
  serverErrorEvent?: string | null;
  /** Default ack timeout for {@link SocketService.emitWithAck}, ms; default 10 000. */
  ackTimeoutMs?: number;

  /** Runs after each connect, before the join (e.g. to discover event names). */
  beforeJoin?: () => Promise<void>;
  /**
   * Called with every join ack (whatever it holds), before queued emits are sent. Returning
   * `false` (a refused join) keeps the service not ready: queued emits wait (and time out).
   * A join that gets no ack at all (a server that does not ack joins) counts as joined.
   */
  onJoinAck?: (ack: unknown) => boolean | void;
  /** Called once the socket is connected and joined (or connected, when there is no join). */
  onReady?: () => void;
  /** Called on every disconnect, with socket.io-client's reason. */
  onDisconnect?: (reason: string) => void;
  /** Server `error` events, `connect_error`, and failures of the join. */
  onError?: (error: unknown) => void;
}

export interface EmitWithAckOptions {
  /** Ack timeout in ms (counted from the call, queueing included); `null` waits forever. */
  timeoutMs?: number | null;
  /** Send now even if the join has not been acked yet (used for the join's own prelude). */
  immediate?: boolean;
}

const DEFAULT_ACK_TIMEOUT_MS = 10_000;

/** socket.io-client's own listener type; payload types are this class's business. */
type AnyListener = (...args: unknown[]) => void;

/**
 * One socket.io-client socket with typed `emit`/`on`/`off`, an automatic join on every
 * (re)connect, and lifecycle control.
 *
 * Emits made before the socket is connected **and** its join acked wait in a queue and are
 * sent, in order, right after the join ack: socket.io-client would otherwise flush them before
 * the join, and the server would refuse them (`not_joined`). The queue is unbounded, like
 * socket.io-client's own send buffer.
 */
export class SocketService<E extends object> {
  /** The underlying socket.io-client socket, for anything this class does not wrap. */
  readonly socket: Socket;

  private readonly options: SocketServiceOptions<E>;
  private ready = false;
  private destroyed = false;
  /** Bumped on every connect and disconnect so a stale join cannot mark a newer connection ready. */
  private generation = 0;
  private readonly queue: Array<{ send: () => void; fail: (e: NatterError) => void }> = [];

  constructor(options: SocketServiceOptions<E>) {
    this.options = options;
    this.socket = io(options.url, { forceNew: true, ...options.ioOptions, autoConnect: false });
    this.socket.on("connect", () => void this.afterConnect());
    this.socket.on("disconnect", (reason: string) => {
      this.generation += 1;
      this.ready = false;
      options.onDisconnect?.(reason);
    });
    this.socket.on("connect_error", (err: Error) => options.onError?.(err));
    const errorEvent = options.serverErrorEvent === undefined ? "error" : options.serverErrorEvent;
    if (errorEvent !== null) this.socket.on(errorEvent, (payload: unknown) => options.onError?.(payload));
    if (options.autoConnect ?? true) this.connect(options.handlers);
    else if (options.handlers) this.register(options.handlers);
  }

  /** Registers `initialHandlers` (if given) and opens the connection. */
  connect(initialHandlers?: Handlers<E>): void {
    if (this.destroyed) throw new NatterError(SdkErrorCode.Destroyed, "connect() after destroy()");
    if (initialHandlers && initialHandlers !== this.registered) this.register(initialHandlers);
    if (!this.socket.connected) this.socket.connect();
  }

  /** Closes the connection; `connect()` opens it again (and rejoins). Queued emits stay queued. */
  disconnect(): void {
    this.generation += 1;
    this.ready = false;
    this.socket.disconnect();
  }

  /** Closes the connection for good, removes every listener and fails every queued emit. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.disconnect();
    this.socket.removeAllListeners();
    this.socket.offAny();
    const queued = this.queue.splice(0);
    for (const item of queued) item.fail(new NatterError(SdkErrorCode.Destroyed, "the socket was destroyed"));
  }

  /** Whether the socket is connected (the join may still be in flight; see {@link isReady}). */
  isConnected(): boolean {
    return this.socket.connected;
  }

  /** Whether the socket is connected and its join acked, so emits go out at once. */
  isReady(): boolean {
    return this.ready;
  }

  on<K extends string>(event: K, listener: Listener<PayloadOf<E, K>>): () => void {
    this.socket.on(event as string, listener as AnyListener);
    return () => this.off(event, listener);
  }

  off<K extends string>(event: K, listener: Listener<PayloadOf<E, K>>): void {
    this.socket.off(event as string, listener as AnyListener);
  }

  /** Every incoming event, with its name. Returns the function that removes the listener. */
  onAny(listener: (event: string, ...args: unknown[]) => void): () => void {
    this.socket.onAny(listener);
    return () => this.socket.offAny(listener);
  }

  /**
   * Sends `payload` (typed by `E` for names it knows). `ack` gets the server's answer as is;
   * it is not called if the connection drops first (use {@link emitWithAck} for a timeout).
   */
  emit<K extends string>(event: K, payload: PayloadOf<E, K>, ack?: (response: unknown) => void): void {
    const send = () => {
      if (ack) this.socket.emit(event, payload, ack);
      else this.socket.emit(event, payload);
    };
    if (this.ready) send();
    else this.queue.push({ send, fail: () => undefined });
  }

  /**
   * Sends `payload` and resolves with the server's ack, whatever it holds. Rejects with
   * `not_sent` (still queued at the timeout; it is then dropped, never sent), `ack_timeout`
   * (sent, no ack in time) or `destroyed`.
   */
  emitWithAck<K extends string>(event: K, payload: PayloadOf<E, K>, opts: EmitWithAckOptions = {}): Promise<unknown> {
    return this.emitWithAckAs(() => event, payload, opts);
  }

  /**
   * {@link emitWithAck} with the event name resolved when the emit is actually sent, not when
   * it is queued (names can change meanwhile, e.g. by discovery before the join).
   */
  emitWithAckAs(resolveEvent: () => string, payload: unknown, opts: EmitWithAckOptions = {}): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      let settled = false;
      let sentAs: string | undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        fn();
      };
      const item = {
        send: () => {
          sentAs = resolveEvent();
          this.socket.emit(sentAs, payload, (ack: unknown) => settle(() => resolve(ack)));
        },
        fail: (e: NatterError) => settle(() => reject(e)),
      };
      const timeoutMs = opts.timeoutMs === undefined ? (this.options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS) : opts.timeoutMs;
      if (timeoutMs !== null) {
        timer = setTimeout(() => {
          const at = this.queue.indexOf(item);
          if (at >= 0) this.queue.splice(at, 1);
          const e =
            sentAs !== undefined
              ? new NatterError(SdkErrorCode.AckTimeout, `${sentAs}: no ack within ${timeoutMs} ms`)
              : new NatterError(
                  SdkErrorCode.NotSent,
                  `${resolveEvent()}: not connected and joined within ${timeoutMs} ms; not sent`,
                );
          settle(() => reject(e));
        }, timeoutMs);
      }
      if (this.destroyed) item.fail(new NatterError(SdkErrorCode.Destroyed, "the socket was destroyed"));
      else if (this.ready || opts.immediate) item.send();
      else this.queue.push(item);
    });
  }

  private registered: Handlers<E> | undefined;

  private register(handlers: Handlers<E>): void {
    this.registered = handlers;
    for (const [event, listener] of Object.entries(handlers)) {
      if (typeof listener === "function") this.socket.on(event, listener as Listener<unknown>);
    }
  }

  private resolveJoinEvent(): string | null {
    const j = this.options.joinEvent;
    if (j === undefined) return "chat:join";
    return typeof j === "function" ? j() : j;
  }

  private async afterConnect(): Promise<void> {
    this.generation += 1;
    const generation = this.generation;
    const current = () => generation === this.generation && this.socket.connected && !this.destroyed;
    try {
      await this.options.beforeJoin?.();
    } catch (e) {
      this.options.onError?.(e);
    }
    if (!current()) return;
    const joinEvent = this.resolveJoinEvent();
    const { chatId, joinPayload } = this.options;
    if (joinEvent !== null && (chatId !== undefined || joinPayload !== undefined)) {
      const payload = joinPayload === undefined ? { chatId } : typeof joinPayload === "function" ? joinPayload() : joinPayload;
      try {
        const ack = await this.emitWithAck(joinEvent, payload as PayloadOf<E, string>, { immediate: true });
        if (!current()) return;
        if (this.options.onJoinAck?.(ack) === false) return;
      } catch (e) {
        if (!current()) return;
        this.options.onError?.(e);
      }
    }
    this.ready = true;
    // Sent in order; each refused one gets its own error ack from the server.
    for (const item of this.queue.splice(0)) item.send();
    this.options.onReady?.();
  }
}
