// Attachments referenced by messages and handed to the model (CONTRACT §7.6), end to end:
// upload with fetch + FormData (POST /api/v1/attachments), then refer to the attachment on
// Socket.IO (stock socket.io-client), seed 002 (/send) and the AI SDK (stock `ai` package, a
// `file` part with a `data:` URL), and look at what reached the fake upstream.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { DefaultChatTransport } from "ai";
import { connect, sleep, startStack, uid } from "../lib/harness.mjs";

// ------------------------------------------------------------------ helpers

/** CRC-32 (PNG chunks), since Node 20's zlib has none. */
function crc32(bytes) {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** A PNG header of `width` x `height` (signature + IHDR + IEND): enough for the sniffer. */
function png(width, height) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

const IMAGE = png(2, 3);
const IMAGE_B64 = IMAGE.toString("base64");
const IMAGE_DATA_URL = `data:image/png;base64,${IMAGE_B64}`;

/** Uploads `bytes` as `name` to `chatKey`; returns {status, body}. */
async function upload(natter, { orgId = "default", userId = "ann", chatKey, name, type = "application/octet-stream", bytes }) {
  const form = new FormData();
  form.append("chatKey", chatKey);
  form.append("orgId", orgId);
  form.append("userId", userId);
  form.append("file", new Blob([bytes], { type }), name);
  const res = await fetch(`${natter.url}/api/v1/attachments`, { method: "POST", body: form });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function uploaded(natter, opts) {
  const r = await upload(natter, opts);
  assert.equal(r.status, 200, `upload ${opts.name}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** The wire shape every face shows for a message's attachment. */
const shown = (a) => ({ id: a.id, name: a.name, mimeType: a.mimeType, size: a.size, url: `/api/v1/attachments/${a.id}` });
const pick = (a) => ({ id: a.id, name: a.name, mimeType: a.mimeType, size: a.size, url: a.url });

/** Waits until the fake upstream has seen `n` chat requests; returns its stats. */
async function upstreamRequests(upstream, n, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = await upstream.stats();
    if (stats.requests >= n) return stats;
    if (Date.now() > deadline) throw new Error(`the upstream saw ${stats.requests} requests, not ${n}`);
    await sleep(25);
  }
}

/** The last user message of the last OpenAI-style request. */
const lastUser = (stats) => stats.last_chat_request.messages.filter((m) => m.role === "user").at(-1);

async function post(natter, path, body) {
  const res = await fetch(`${natter.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** A member of a fresh Socket.IO chat. */
async function member(natter, chatId, userId = "ann") {
  const c = await connect(natter.url, { query: { userId } });
  const ack = await c.emit("chat:join", { chatId });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return c;
}

// ================================================================== OpenAI-compatible, vision on

describe("OpenAI-compatible upstream, vision on", () => {
  let stack, natter, upstream;
  const BUDGET = 50;
  before(async () => {
    ({ natter, upstream } = stack = await startStack({
      args: ["--attachment-text-budget", String(BUDGET), "--attachment-processing-timeout-secs", "5"],
    }));
  });
  after(() => stack?.stop());

  test("Socket.IO: an image reaches the upstream as an image_url part; chat:message and the join ack show it", async () => {
    const chatId = uid("chat");
    const ann = await member(natter, chatId, "ann");
    const bob = await member(natter, chatId, "bob");
    const a = await uploaded(natter, { chatKey: chatId, name: "dot.png", bytes: IMAGE });
    assert.equal(a.mimeType, "image/png");
    await upstream.reset();
    const messageId = uid("m");
    const requestId = uid("req");
    const ack = await ann.emit("user:message", { chatId, messageId, requestId, text: "what is this?", attachments: [{ id: a.id }] });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    const seen = await bob.waitFor("chat:message", (m) => m.messageId === messageId);
    assert.deepEqual(seen.attachments.map(pick), [shown(a)]);
    await bob.waitFor("ai:message", (m) => m.requestId === requestId);
    const stats = await upstreamRequests(upstream, 1);
    assert.deepEqual(lastUser(stats).content, [
      { type: "text", text: "what is this?" },
      { type: "image_url", image_url: { url: IMAGE_DATA_URL } },
    ]);
    // A later joiner's ack lists the message with its attachment.
    const cy = await connect(natter.url, { query: { userId: "cy" } });
    const join = await cy.emit("chat:join", { chatId });
    const listed = join.messages.find((m) => m.messageId === messageId);
    assert.deepEqual(listed.attachments.map(pick), [shown(a)]);
    // The download URL it shows works for a member.
    const dl = await fetch(`${natter.url}${listed.attachments[0].url}?orgId=default&userId=ann`);
    assert.equal(dl.status, 200);
    assert.deepEqual(Buffer.from(await dl.arrayBuffer()), IMAGE);
    ann.close(), bob.close(), cy.close();
  });

  test("Socket.IO: another chat's attachment is not_found; too many or malformed `attachments` are refused", async () => {
    const chatId = uid("chat");
    const other = uid("chat");
    const ann = await member(natter, chatId);
    const theirs = await uploaded(natter, { chatKey: other, name: "dot.png", bytes: IMAGE });
    const send = (attachments) => ann.emit("user:message", { chatId, messageId: uid("m"), text: "x", attachments });
    const notFound = await send([{ id: theirs.id }]);
    assert.equal(notFound.ok, false);
    assert.equal(notFound.error.code, "not_found", notFound.error.message);
    assert.equal((await send([{ id: "no-such-attachment" }])).error.code, "not_found");
    const many = Array.from({ length: 11 }, (_, i) => ({ id: `a${i}` }));
    for (const [bad, code] of [
      [many, "invalid_field"],
      ["abc", "invalid_field"],
      [{ id: theirs.id }, "invalid_field"],
      [[theirs.id], "invalid_field"],
      [[{}], "missing_field"],
      [[{ id: 5 }], "invalid_field"],
      [[{ id: "" }], "invalid_field"],
    ]) {
      const r = await send(bad);
      assert.equal(r.ok, false, JSON.stringify(bad));
      assert.equal(r.error.code, code, `${JSON.stringify(bad)}: ${r.error.message}`);
    }
    // Nothing was stored by the refused sends.
    const cy = await connect(natter.url, { query: { userId: "cy" } });
    const join = await cy.emit("chat:join", { chatId });
    assert.equal(join.messages.length, 0);
    ann.close(), cy.close();
  });

  test("seed 002: /send with message.attachments; /load and history show them; the upstream gets the image", async () => {
    const orgId = uid("org");
    const { body: created } = await post(natter, "/api/v1/chat/create", { orgId, userId: "ann" });
    const chatKey = created.chatKey;
    const a = await uploaded(natter, { orgId, chatKey, name: "shot.png", bytes: IMAGE });
    await upstream.reset();
    const id = uid("m");
    const sent = await post(natter, "/api/v1/chat/send", {
      orgId, chatKey, userId: "ann", message: { id, content: "", attachments: [{ id: a.id }] },
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const stats = await upstreamRequests(upstream, 1);
    assert.deepEqual(lastUser(stats).content, [{ type: "image_url", image_url: { url: IMAGE_DATA_URL } }]);
    const { body: loaded } = await post(natter, "/api/v1/chat/load", { orgId, chatKey, userId: "ann" });
    const m = loaded.chat.messages.find((x) => x.id === id);
    assert.deepEqual(m.attachments.map(pick), [shown(a)]);
    const hist = await (await fetch(`${natter.url}/api/v1/chats/${chatKey}/messages?orgId=${orgId}&userId=ann`)).json();
    assert.deepEqual(hist.messages.find((x) => x.id === id).attachments.map(pick), [shown(a)]);
    // Another chat's attachment: not_found; a bad field: invalid_field.
    const { body: other } = await post(natter, "/api/v1/chat/create", { orgId, userId: "ann" });
    const stranger = await post(natter, "/api/v1/chat/send", {
      orgId, chatKey: other.chatKey, userId: "ann", message: { content: "x", attachments: [{ id: a.id }] },
    });
    assert.equal(stranger.status, 404, JSON.stringify(stranger.body));
    assert.equal(stranger.body.error.code, "not_found");
    const bad = await post(natter, "/api/v1/chat/send", {
      orgId, chatKey, userId: "ann", message: { content: "x", attachments: "nope" },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, "invalid_field");
  });

  test("AI SDK: a file part with a data: URL is stored and reaches the upstream; a foreign URL is refused", async () => {
    const transport = new DefaultChatTransport({ api: `${natter.url}/api/chat`, body: { userId: "web" } });
    const chatId = uid("chat");
    await upstream.reset();
    const id = uid("u");
    const stream = await transport.sendMessages({
      chatId,
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: undefined,
      messages: [{
        id, role: "user",
        parts: [{ type: "text", text: "and this?" }, { type: "file", mediaType: "image/png", filename: "pic.png", url: IMAGE_DATA_URL }],
      }],
    });
    const reader = stream.getReader();
    while (!(await reader.read()).done);
    const stats = await upstreamRequests(upstream, 1);
    assert.deepEqual(lastUser(stats).content, [
      { type: "text", text: "and this?" },
      { type: "image_url", image_url: { url: IMAGE_DATA_URL } },
    ]);
    // Stored as an attachment: history shows it, and the stored part points at it (no copy of
    // the bytes in the log).
    const hist = await (await fetch(`${natter.url}/api/v1/chats/${chatId}/messages?userId=web`)).json();
    const m = hist.messages.find((x) => x.id === id);
    assert.equal(m.attachments.length, 1);
    assert.equal(m.attachments[0].name, "pic.png");
    assert.equal(m.attachments[0].mimeType, "image/png");
    const file = m.parts.find((p) => p.type === "file");
    assert.equal(file.url, m.attachments[0].url);

    // The URL of the stored attachment is accepted as is (relative and absolute).
    for (const url of [m.attachments[0].url, `${natter.url}${m.attachments[0].url}`]) {
      const r = await post(natter, "/api/chat", {
        id: chatId, trigger: "submit-message", userId: "web",
        messages: [{ id: uid("u"), role: "user", parts: [{ type: "file", mediaType: "image/png", url }] }],
      });
      assert.equal(r.status, 200, `${url}: ${JSON.stringify(r.body)}`);
    }

    // Anything else is refused: the server fetches nothing.
    for (const url of ["https://example.com/cat.png", "file:///etc/passwd", "data:image/png,notbase64", "data:image/png;base64,%%%"]) {
      const r = await post(natter, "/api/chat", {
        id: chatId, trigger: "submit-message", userId: "web",
        messages: [{ id: uid("u"), role: "user", parts: [{ type: "file", mediaType: "image/png", url }] }],
      });
      assert.equal(r.status, 400, url);
      assert.equal(r.body.error.code, "invalid_field", `${url}: ${JSON.stringify(r.body)}`);
    }
    // A data: URL of a type not accepted is 415 like an upload.
    const exe = await post(natter, "/api/chat", {
      id: chatId, trigger: "submit-message", userId: "web",
      messages: [{ id: uid("u"), role: "user", parts: [{ type: "file", mediaType: "image/png", url: `data:image/png;base64,${Buffer.from("MZ\x90\x00\x03binary\x00\x01\x02").toString("base64")}` }] }],
    });
    assert.equal(exe.status, 415, JSON.stringify(exe.body));
  });

  test("a text document's content reaches the upstream, framed, cut past the budget with a marker", async () => {
    const chatId = uid("chat");
    const ann = await member(natter, chatId);
    const text = "0123456789".repeat(12); // 120 characters, budget 50
    const doc = await uploaded(natter, { chatKey: chatId, name: "notes.txt", type: "text/plain", bytes: Buffer.from(text) });
    assert.equal(doc.mimeType, "text/plain");
    await upstream.reset();
    const requestId = uid("req");
    const ack = await ann.emit("user:message", { chatId, messageId: uid("m"), requestId, text: "summarize", attachments: [{ id: doc.id }] });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    await ann.waitFor("ai:message", (m) => m.requestId === requestId, 15000);
    const content = lastUser(await upstreamRequests(upstream, 1)).content;
    assert.equal(typeof content, "string");
    assert.ok(content.startsWith("summarize\n\n[document: notes.txt]\n"), content);
    assert.ok(content.includes(`${text.slice(0, BUDGET)}[… cut: ${120 - BUDGET} more characters]`), content);
    assert.ok(content.endsWith("[end of document: notes.txt]"), content);
    ann.close();
  });
});

// ================================================================== Anthropic

describe("Anthropic upstream", () => {
  let stack, natter, upstream;
  before(async () => ({ natter, upstream } = stack = await startStack({ provider: "anthropic" })));
  after(() => stack?.stop());

  test("an image goes as an `image` block with base64 source", async () => {
    const chatId = uid("chat");
    const ann = await member(natter, chatId);
    const a = await uploaded(natter, { chatKey: chatId, name: "dot.png", bytes: IMAGE });
    await upstream.reset();
    const requestId = uid("req");
    const ack = await ann.emit("user:message", { chatId, messageId: uid("m"), requestId, text: "look", attachments: [{ id: a.id }] });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    await ann.waitFor("ai:message", (m) => m.requestId === requestId);
    const stats = await upstreamRequests(upstream, 1);
    assert.deepEqual(stats.last_messages_request.body.messages.at(-1), {
      role: "user",
      content: [
        { type: "text", text: "look" },
        { type: "image", source: { type: "base64", media_type: "image/png", data: IMAGE_B64 } },
      ],
    });
    ann.close();
  });
});

// ================================================================== --vision off

describe("--vision off", () => {
  let stack, natter, upstream;
  before(async () => ({ natter, upstream } = stack = await startStack({ args: ["--vision", "off"] })));
  after(() => stack?.stop());

  test("the model gets a `[image: name, WxH]` line instead of the image", async () => {
    const chatId = uid("chat");
    const ann = await member(natter, chatId);
    const a = await uploaded(natter, { chatKey: chatId, name: "dot.png", bytes: IMAGE });
    await upstream.reset();
    const requestId = uid("req");
    const ack = await ann.emit("user:message", { chatId, messageId: uid("m"), requestId, text: "what is it", attachments: [{ id: a.id }] });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    await ann.waitFor("ai:message", (m) => m.requestId === requestId);
    assert.equal(lastUser(await upstreamRequests(upstream, 1)).content, "what is it\n[image: dot.png, 2x3]");
    ann.close();
  });
});
