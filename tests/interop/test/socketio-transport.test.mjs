// natter-socketio-transport (the project's own Socket.IO v5 on natter-engineio) driven by stock
// socket.io-client through tools/socketio-protocol-server --transport natter: connect with
// auth, events, acks, binary attachments and namespaces over WebSocket, long-polling and the
// upgrade between them. Natter's own face does not run on it yet.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startProtocolServer } from "../lib/harness.mjs";

describe("natter-socketio-transport with stock socket.io-client", () => {
  let server;
  before(async () => {
    // The suite's server pings every 300 ms; a generous timeout keeps a busy machine's
    // client connected.
    server = await startProtocolServer(["--transport", "natter", "--ping-timeout-ms", "10000"]);
  });
  after(() => server?.stop());

  const connect = (path = "", opts = {}) =>
    new Promise((resolve, reject) => {
      const socket = io(`${server.url}${path}`, { reconnection: false, forceNew: true, ...opts });
      const auth = new Promise((r) => socket.once("auth", r));
      socket.once("connect", () => resolve({ socket, auth }));
      socket.once("connect_error", reject);
    });

  for (const [name, transports] of [["websocket", ["websocket"]], ["polling", ["polling"]], ["polling, then the upgrade", ["polling", "websocket"]]]) {
    test(`${name}: auth echoed, events and acks with every argument, binary kept binary`, async () => {
      const { socket, auth } = await connect("", { transports, auth: { token: "t-1" } });
      assert.deepEqual(await auth, { token: "t-1" });
      if (transports.length === 2) {
        if (socket.io.engine.transport.name !== "websocket") await new Promise((r) => socket.io.engine.once("upgrade", r));
        assert.equal(socket.io.engine.transport.name, "websocket");
      }
      const back = new Promise((r) => socket.once("message-back", (...args) => r(args)));
      socket.emit("message", 1, "2", { 3: [true] }, Buffer.from([1, 2, 3]));
      const args = await back;
      assert.deepEqual(args.slice(0, 3), [1, "2", { 3: [true] }]);
      assert.deepEqual([...Buffer.from(args[3])], [1, 2, 3]);
      const acked = await new Promise((resolve, reject) =>
        socket.timeout(5000).emit("message-with-ack", "a", Buffer.from([9]), (err, ...ackArgs) => (err ? reject(err) : resolve(ackArgs))),
      );
      assert.equal(acked[0], "a");
      assert.deepEqual([...Buffer.from(acked[1])], [9]);
      socket.disconnect();
    });
  }

  test("a custom namespace echoes auth; an unknown one is refused with Invalid namespace", async () => {
    const { socket, auth } = await connect("/custom", { transports: ["websocket"] });
    assert.deepEqual(await auth, {});
    socket.disconnect();
    await assert.rejects(connect("/random", { transports: ["websocket"] }), /Invalid namespace/);
  });

  test("many messages in a row arrive in order", async () => {
    const { socket } = await connect("", { transports: ["websocket"] });
    const got = [];
    const done = new Promise((r) => socket.on("message-back", (n) => { got.push(n); if (got.length === 500) r(); }));
    for (let i = 0; i < 500; i++) socket.emit("message", i);
    await done;
    assert.deepEqual(got, [...Array(500).keys()]);
    socket.disconnect();
  });
});
