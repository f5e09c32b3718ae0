// `natter chat`, the terminal client, used as a person would: in a real terminal (tmux), with
// keys sent and the screen read back, against the real server and a socket.io-client peer.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import { after, before, test } from "node:test";

import { binDir, connect, sleep, startFakeUpstream, startNatter, tempDir, uid } from "../lib/harness.mjs";

const haveTmux = spawnSync("tmux", ["-V"]).status === 0;
if (!haveTmux) {
  if (process.env.CI === "true") throw new Error("tmux is required under CI=true (.ci/run installs it)");
  console.error("!!! tmux not found: the terminal client tests are SKIPPED");
}

// A private tmux server, so the test never touches a user's sessions.
const tmuxSocket = `natter-test-${process.pid}`;
const tmux = (...args) => execFileSync("tmux", ["-L", tmuxSocket, ...args], { encoding: "utf8" });
const session = "chat";

function screen() {
  // -J joins wrapped lines; -S - takes the whole scrollback.
  return tmux("capture-pane", "-p", "-J", "-S", "-", "-t", session);
}

function alive() {
  return spawnSync("tmux", ["-L", tmuxSocket, "has-session", "-t", session]).status === 0;
}

async function waitScreen(pred, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    last = alive() ? screen() : last;
    if (pred(last)) return last;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}; the screen:\n${last}`);
}

function typeLine(text) {
  tmux("send-keys", "-t", session, "-l", text);
  tmux("send-keys", "-t", session, "Enter");
}

let tmp;
let upstream;
let natter;

before(async () => {
  if (!haveTmux) return;
  tmp = tempDir();
  upstream = await startFakeUpstream();
  natter = await startNatter({ upstream, dataDir: tmp.dir });
});

after(async () => {
  if (!haveTmux) return;
  spawnSync("tmux", ["-L", tmuxSocket, "kill-server"]);
  await natter?.stop("SIGKILL");
  upstream?.stop();
  tmp?.cleanup();
});

test("natter chat: history, presence, typing, streaming, Ctrl-C, a server restart, quit", { skip: !haveTmux }, async () => {
  const chatId = uid("term");
  const join = async (peer) => {
    const ack = await peer.emit("chat:join", { chatId, userId: "bob" });
    assert.equal(ack.ok, true, JSON.stringify(ack));
  };

  // bob talks first, so alice's terminal has history to print.
  const bob = await connect(natter.url, { auth: { userId: "bob" } });
  await join(bob);
  const first = await bob.emit("user:message", { chatId, messageId: uid("m"), text: "hi from bob" });
  assert.equal(first.ok, true);
  const firstReply = await bob.waitFor("ai:message");

  tmux(
    "new-session", "-d", "-s", session, "-x", "200", "-y", "50",
    path.join(binDir, "natter"), "chat", "--url", natter.url, "--chat", chatId, "--user", "alice",
  );

  // History, then presence.
  await waitScreen((s) => s.includes("bob: hi from bob") && s.includes(`assistant: ${firstReply.text}`), "history");
  await waitScreen((s) => s.includes("[online: alice, bob]"), "presence with both users");

  // bob types: alice sees it.
  await bob.emit("typing:start", { chatId });
  await waitScreen((s) => s.includes("[bob is typing…]"), "bob's typing indicator");
  await bob.emit("typing:stop", { chatId });

  // alice sends; bob gets her message, and the streamed reply on alice's screen is the stored one.
  typeLine("hello from alice");
  const fromAlice = await bob.waitFor("chat:message", (m) => m.userId === "alice" && m.text === "hello from alice").catch((e) => {
    throw new Error(`${e.message}\nthe screen:\n${screen()}`);
  });
  const reply = await bob.waitFor("ai:message", (m) => m.seq > fromAlice.seq);
  await waitScreen((s) => s.includes(`assistant: ${reply.text}\n`), "alice's streamed reply");

  // A long reply, stopped with Ctrl-C: the partial text stays and the client keeps running.
  typeLine("[fake:drip n=400 delay_ms=40]");
  await waitScreen((s) => / t5 t6 /.test(s), "the long reply streaming");
  tmux("send-keys", "-t", session, "C-c");
  const stopped = await bob.waitFor("ai:message", (m) => m.finishReason === "aborted");
  assert.ok(stopped.text.length > 0 && !stopped.text.includes("t399"), stopped.text);
  await waitScreen((s) => s.includes("[stopped]"), "the stopped marker");
  assert.ok(alive(), "the first Ctrl-C only stops the reply");

  // The server dies and comes back on the same port and data: the client reconnects, catches
  // up, and sees what was said after.
  bob.close();
  const port = natter.port;
  await natter.stop("SIGKILL");
  await waitScreen((s) => s.includes("reconnecting"), "the client noticing the drop");
  natter = await startNatter({ upstream, dataDir: tmp.dir, listen: `127.0.0.1:${port}` });
  await waitScreen((s) => s.includes("[caught up]"), "the rejoin after the restart", 30000);
  const bob2 = await connect(natter.url, { auth: { userId: "bob" } });
  await join(bob2);
  await bob2.emit("user:message", { chatId, messageId: uid("m"), text: "after the restart" });
  const late = await bob2.waitFor("ai:message");
  await waitScreen(
    (s) => s.includes("bob: after the restart") && s.includes(`assistant: ${late.text}`),
    "messages after the restart",
  );

  // What alice typed was stored once, under her name.
  const res = await fetch(`${natter.url}/api/v1/chats/${chatId}/messages?after=0&limit=100`);
  assert.equal(res.status, 200);
  const { messages } = await res.json();
  const mine = messages.filter((m) => m.content === "hello from alice");
  assert.equal(mine.length, 1, JSON.stringify(messages));
  assert.equal(mine[0].senderId, "alice");

  // Ctrl-C with nothing running quits.
  tmux("send-keys", "-t", session, "C-c");
  const deadline = Date.now() + 10000;
  while (alive() && Date.now() < deadline) await sleep(50);
  assert.ok(!alive(), "Ctrl-C with no reply running quits the client");
  bob2.close();
});

test("natter chat: a server that refuses the token is a clear error, not a hang", { skip: !haveTmux }, async () => {
  const secretDir = tempDir();
  const secured = await startNatter({
    upstream,
    dataDir: secretDir.dir,
    args: ["--jwt-secret", "0123456789abcdef0123456789abcdef-test"],
  });
  try {
    const run = spawnSync(
      path.join(binDir, "natter"),
      ["chat", "--url", secured.url, "--chat", "c", "--user", "mallory", "--token", "not-a-jwt"],
      { encoding: "utf8", timeout: 20000, stdio: ["ignore", "pipe", "pipe"] },
    );
    assert.notEqual(run.status, 0, `exit status ${run.status}, stdout: ${run.stdout}`);
    assert.match(run.stderr, /unauthorized/);
  } finally {
    await secured.stop("SIGKILL");
    secretDir.cleanup();
  }
});
