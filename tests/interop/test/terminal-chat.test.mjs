// `natter chat`, the terminal client, used as a person would: in a real terminal (tmux), with
// keys sent and the screen read back, against the real server and a socket.io-client peer.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
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

/** A valid `w`×`h` RGB PNG. */
function png(w, h) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const rows = Buffer.alloc((w * 3 + 1) * h, 0x80);
  for (let y = 0; y < h; y++) rows[y * (w * 3 + 1)] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

test("natter chat: /attach uploads a file, the next message carries it, others' files show", { skip: !haveTmux }, async () => {
  const chatId = uid("term-att");
  // A leftover session of a failed test above would make new-session fail.
  spawnSync("tmux", ["-L", tmuxSocket, "kill-session", "-t", session]);
  const bob = await connect(natter.url, { auth: { userId: "bob" } });
  const ack = await bob.emit("chat:join", { chatId, userId: "bob" });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  const picture = path.join(tmp.dir, "shot.png");
  writeFileSync(picture, png(32, 20));
  const elf = path.join(tmp.dir, "cat.png");
  writeFileSync(elf, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(100, 1)]));

  tmux(
    "new-session", "-d", "-s", session, "-x", "200", "-y", "50",
    path.join(binDir, "natter"), "chat", "--url", natter.url, "--chat", chatId, "--user", "alice",
  );
  await waitScreen((s) => s.includes("[joined chat"), "the join");

  typeLine(`/attach ${picture}`);
  await waitScreen((s) => s.includes("[attached shot.png (image/png, ") && s.includes("): it goes with your next message]"), "the upload");
  typeLine("/attach");
  await waitScreen((s) => s.includes("[your next message carries: shot.png]"), "the pending list");
  typeLine("see my picture");
  const sent = await bob.waitFor("chat:message", (m) => m.userId === "alice" && m.text === "see my picture").catch((e) => {
    throw new Error(`${e.message}\nthe screen:\n${screen()}`);
  });
  assert.equal(sent.attachments?.length, 1, JSON.stringify(sent));
  assert.equal(sent.attachments[0].name, "shot.png");
  assert.equal(sent.attachments[0].mimeType, "image/png");
  assert.equal(sent.attachments[0].width, 32);
  await waitScreen((s) => s.includes("[sent with shot.png]"), "the sent note");
  // Only the next message: the one after carries nothing.
  typeLine("and no file here");
  const plain = await bob.waitFor("chat:message", (m) => m.text === "and no file here");
  assert.equal(plain.attachments, undefined, JSON.stringify(plain));

  // Refusals are clear lines, and the client keeps going.
  typeLine(`/attach ${elf}`);
  await waitScreen((s) => s.includes(`[could not attach ${elf}: HTTP 415: unsupported_media_type`), "the 415");
  typeLine(`/attach ${path.join(tmp.dir, "missing.png")}`);
  await waitScreen((s) => s.includes("[could not attach") && s.includes("missing.png: No such file"), "the missing file");

  // bob sends a document: alice's transcript shows it on his message.
  const form = new FormData();
  form.append("chatKey", chatId);
  form.append("userId", "bob");
  form.append("file", new Blob(["# Notes\n\nfor alice\n"]), "notes.md");
  const up = await fetch(`${natter.url}/api/v1/attachments`, { method: "POST", body: form });
  assert.equal(up.status, 200, await up.clone().text());
  const doc = await up.json();
  const posted = await bob.emit("user:message", { chatId, messageId: uid("m"), text: "here are my notes", attachments: [{ id: doc.id }] });
  assert.equal(posted.ok, true, JSON.stringify(posted));
  await waitScreen((s) => /bob: here are my notes \[file: notes\.md, text\/markdown[^,\]]*, \d+ B\]/.test(s), "bob's file in the transcript");

  typeLine("/quit");
  const deadline = Date.now() + 10000;
  while (alive() && Date.now() < deadline) await sleep(50);
  assert.ok(!alive(), "/quit leaves");
  bob.close();
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
