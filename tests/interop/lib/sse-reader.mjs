// A raw SSE reader over node:http that can stop reading its TCP socket (a stuck tab), for
// slow-consumer tests. `eventsource` cannot pause; this can.
import http from "node:http";

/**
 * GETs `url` (an SSE endpoint) and parses `event:` / `id:` / `data:` blocks. Resolves once the
 * response headers are in. `events` holds `{type, id, data}` (data parsed as JSON when it
 * parses), in order; `ended` is set when the response ends.
 */
export function openSse(url, { headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { accept: "text/event-stream", ...headers } }, (res) => {
      const reader = {
        res,
        status: res.status ?? res.statusCode,
        events: [],
        ended: false,
        bytes: 0,
        of(type) {
          return this.events.filter((e) => e.type === type);
        },
        /** Stops reading from the socket: the server's writes pile up in its buffers. */
        pause() {
          res.socket.pause();
          res.pause();
        },
        resume() {
          res.resume();
          res.socket.resume();
        },
        close() {
          req.destroy();
        },
        async until(pred, timeoutMs = 10000, what = "condition") {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const v = pred(this.events);
            if (v) return v;
            if (Date.now() > deadline) {
              throw new Error(`SSE: timed out waiting for ${what}; last events: ${JSON.stringify(this.events.slice(-5).map((e) => e.type))}`);
            }
            await new Promise((r) => setTimeout(r, 10));
          }
        },
      };
      let buf = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        reader.bytes += Buffer.byteLength(chunk);
        buf += chunk;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let type = "message";
          let id = null;
          const data = [];
          let any = false;
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            any = true;
            const i = line.indexOf(":");
            const field = i < 0 ? line : line.slice(0, i);
            const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
            if (field === "event") type = value;
            else if (field === "id") id = value;
            else if (field === "data") data.push(value);
          }
          if (!any) continue;
          const raw = data.join("\n");
          let parsed = raw;
          try {
            parsed = JSON.parse(raw);
          } catch {
            // not JSON
          }
          reader.events.push({ type, id: id === null ? null : Number(id), data: parsed, at: Date.now() });
        }
      });
      res.on("end", () => (reader.ended = true));
      res.on("close", () => (reader.ended = true));
      resolve(reader);
    });
    req.on("error", reject);
  });
}
