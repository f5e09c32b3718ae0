// A raw Engine.IO v4 / Socket.IO v5 client over the `ws` package, for tests that need what a
// stock client hides: stop reading the TCP socket (a slow consumer), send hand-made packets,
// see every packet the server wrote, in order.
//
// Only the default namespace `/` and text packets:
//   Engine.IO: 0 open, 1 close, 2 ping, 3 pong, 4 message, 6 noop
//   Socket.IO (inside an Engine.IO message): 0 connect, 1 disconnect, 2 event, 3 ack,
//   4 connect_error; `42<ackId>["name", payload]`, `43<ackId>[payload]`.
import WebSocket from "ws";

/**
 * Opens a raw Socket.IO connection. `query` is added to the handshake URL. Resolves once the
 * Socket.IO CONNECT is acknowledged (`40{"sid":…}`).
 */
export function rawConnect(url, { query = {}, auth, timeoutMs = 10000 } = {}) {
  const qs = new URLSearchParams({ EIO: "4", transport: "websocket", ...query });
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/socket.io/?${qs}`);
  /** Every Socket.IO event received, in order: `{event, payload, at}`. */
  const events = [];
  /** Every raw Engine.IO packet received (text), in order. */
  const packets = [];
  const acks = new Map();
  let nextAck = 0;
  let closed = null;
  let bytesReceived = 0;
  let serverDisconnected = false;

  const client = {
    ws,
    events,
    packets,
    sid: null,
    get closed() {
      return closed;
    },
    get bytesReceived() {
      return bytesReceived;
    },
    /** Whether the server sent a Socket.IO DISCONNECT (`41`). */
    get serverDisconnected() {
      return serverDisconnected;
    },
    of(name) {
      return events.filter((e) => e.event === name).map((e) => e.payload);
    },
    /** Sends a raw Engine.IO text packet. */
    sendRaw(text) {
      ws.send(text);
    },
    /** Emits an event; with `ack`, resolves with the ack's first argument. */
    emit(event, payload, { ack = true, timeoutMs: t = 10000 } = {}) {
      const args = payload === undefined ? [event] : [event, payload];
      if (!ack) {
        ws.send(`42${JSON.stringify(args)}`);
        return Promise.resolve();
      }
      const id = nextAck++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          acks.delete(id);
          reject(new Error(`no ack for ${event} in ${t} ms`));
        }, t);
        acks.set(id, (value) => {
          clearTimeout(timer);
          resolve(value);
        });
        ws.send(`42${id}${JSON.stringify(args)}`);
      });
    },
    /** Stops reading from the TCP socket: the server's writes pile up in its buffers. */
    pause() {
      ws._socket.pause();
    },
    resume() {
      ws._socket.resume();
    },
    async until(pred, timeoutMs = 10000, what = "condition") {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = pred(events);
        if (v) return v;
        if (Date.now() > deadline) {
          throw new Error(`raw client: timed out waiting for ${what}; last events: ${JSON.stringify(events.slice(-5).map((e) => e.event))}`);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    /** Resolves when the WebSocket is closed (at once if it already is). */
    whenClosed() {
      return closed ? Promise.resolve(closed) : new Promise((r) => ws.once("close", (code) => r({ code })));
    },
    close() {
      try {
        ws.close();
      } catch {
        // already closed
      }
    },
    /** Drops the TCP connection without any close handshake. */
    destroy() {
      ws._socket?.destroy();
    },
  };

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("raw client: no Socket.IO connect")), timeoutMs);
    ws.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    ws.on("close", (code) => {
      closed = { code };
      clearTimeout(timer);
    });
    ws.on("message", (data, isBinary) => {
      bytesReceived += data.length;
      if (isBinary) return;
      const text = data.toString();
      packets.push(text);
      const eio = text[0];
      if (eio === "0") {
        ws.send(auth ? `40${JSON.stringify(auth)}` : "40");
      } else if (eio === "2") {
        ws.send("3");
      } else if (eio === "4") {
        const sio = text[1];
        const body = text.slice(2);
        if (sio === "0") {
          client.sid = JSON.parse(body).sid;
          clearTimeout(timer);
          resolve(client);
        } else if (sio === "4") {
          clearTimeout(timer);
          reject(new Error(`connect_error: ${body}`));
        } else if (sio === "1") {
          serverDisconnected = true;
          events.push({ event: "__disconnect", payload: null, at: Date.now() });
        } else if (sio === "2" || sio === "3") {
          const m = body.match(/^(\d*)(.*)$/s);
          const id = m[1] === "" ? null : Number(m[1]);
          const arr = JSON.parse(m[2]);
          if (sio === "3") {
            acks.get(id)?.(arr[0]);
            acks.delete(id);
          } else {
            events.push({ event: arr[0], payload: arr[1], at: Date.now() });
          }
        }
      }
    });
  });
}

/** VmRSS of a process in KiB (Linux), or null when /proc cannot tell. */
export async function rssKiB(pid) {
  const { readFile } = await import("node:fs/promises");
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const m = status.match(/^VmRSS:\s+(\d+)\s+kB/m);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** mulberry32: a small seeded PRNG, returns floats in [0, 1). */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
