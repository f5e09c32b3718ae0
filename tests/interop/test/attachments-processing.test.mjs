// Document processing (CONTRACT §7.6), with stock clients: a PDF written here by hand, a
// text file and hostile PDFs are uploaded with fetch + FormData; their processing events are
// watched on seed 002's SSE face (`eventsource`) and on Socket.IO (`socket.io-client`).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import zlib from "node:zlib";
import { EventSource } from "eventsource";
import { connect, sleep, startStack, uid } from "../lib/harness.mjs";

/** A one-page PDF showing `text` in Helvetica (a correct xref table, offsets counted). */
export function pdfWith(text, { extraObjects = [], contentStream } = {}) {
  const content = contentStream ?? Buffer.from(`BT /F1 24 Tf 72 712 Td (${text}) Tj ET`);
  const contentDict = contentStream ? `<< /Length ${content.length} /Filter /FlateDecode >>` : `<< /Length ${content.length} >>`;
  const objects = [
    Buffer.from("<< /Type /Catalog /Pages 2 0 R >>"),
    Buffer.from("<< /Type /Pages /Kids [3 0 R] /Count 1 >>"),
    Buffer.from("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"),
    Buffer.concat([Buffer.from(`${contentDict}\nstream\n`), content, Buffer.from("\nendstream")]),
    Buffer.from("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"),
    ...extraObjects.map((o) => Buffer.from(o)),
  ];
  const parts = [Buffer.from("%PDF-1.4\n")];
  let length = parts[0].length;
  const offsets = [];
  objects.forEach((body, i) => {
    offsets.push(length);
    const obj = Buffer.concat([Buffer.from(`${i + 1} 0 obj\n`), body, Buffer.from("\nendobj\n")]);
    parts.push(obj);
    length += obj.length;
  });
  const xref = [`xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`, ...offsets.map((o) => `${String(o).padStart(10, "0")} 00000 n \n`)].join("");
  parts.push(Buffer.from(`${xref}trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${length}\n%%EOF\n`));
  return Buffer.concat(parts);
}

/** A FlateDecode stream that inflates to `mib` MiB of zeros (about 1 KB compressed per MiB). */
function deflateBomb(mib) {
  const z = zlib.createDeflate({ level: 9 });
  const chunks = [];
  z.on("data", (c) => chunks.push(c));
  const zeros = Buffer.alloc(1 << 20);
  for (let i = 0; i < mib; i++) z.write(zeros);
  return new Promise((resolve) => {
    z.end(() => resolve(Buffer.concat(chunks)));
  });
}

const SSE_TYPES = ["attachment_processing_started", "attachment_processing_progress", "attachment_processing_complete", "attachment_processing_error", "message"];

function openStream(base, params) {
  const url = new URL(`${base}/stream`);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const es = new EventSource(url);
  const events = [];
  for (const type of SSE_TYPES) {
    es.addEventListener(type, (e) => {
      if (typeof e.data === "string") events.push({ type, data: JSON.parse(e.data) });
    });
  }
  const opened = new Promise((resolve) => es.addEventListener("reconnected", resolve, { once: true }));
  return {
    events,
    opened,
    of: (attachmentId) => events.filter((e) => e.data?.data?.attachmentId === attachmentId),
    async waitFor(type, attachmentId, timeoutMs = 15000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = events.find((e) => e.type === type && e.data?.data?.attachmentId === attachmentId);
        if (hit) return hit.data;
        if (Date.now() > deadline) throw new Error(`timed out waiting for SSE ${type}; got ${JSON.stringify(events.map((e) => e.type))}`);
        await sleep(10);
      }
    },
    close: () => es.close(),
  };
}

async function upload(base, { chatKey, userId = "ann", orgId = "default", name, type, bytes }) {
  const form = new FormData();
  form.append("chatKey", chatKey);
  form.append("orgId", orgId);
  form.append("userId", userId);
  form.append("file", new Blob([bytes], { type }), name);
  const res = await fetch(`${base}/api/v1/attachments`, { method: "POST", body: form });
  const body = await res.json();
  return { status: res.status, body };
}

const TIMEOUT_SECS = 3;
const MEMORY_MB = 256;

describe("document processing", () => {
  let stack, natter;
  before(async () => {
    ({ natter } = stack = await startStack({
      args: ["--retry-max", "0", "--attachment-extract-timeout-secs", String(TIMEOUT_SECS), "--attachment-extract-memory-mb", String(MEMORY_MB)],
    }));
  });
  after(() => stack?.stop());

  const chatKey = uid("docs");
  const ctx = {};

  test("a PDF made here goes processing → complete on SSE and Socket.IO, with its chars and pages", async () => {
    // Bob's join creates the chat (a stream on a chat that does not exist is a 404).
    const bob = await connect(natter.url, { query: { userId: "bob" } });
    ctx.bob = bob;
    assert.equal((await bob.emit("chat:join", { chatId: chatKey })).ok, true);
    const sse = openStream(`${natter.url}/api/v1/chat`, { orgId: "default", userId: "ann", clientType: "customer", chatKey });
    ctx.sse = sse;
    await sse.opened;

    const text = "Quarterly report: natter grew 42 percent";
    const up = await upload(natter.url, { chatKey, name: "report.pdf", type: "application/pdf", bytes: pdfWith(text) });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    assert.equal(up.body.mimeType, "application/pdf");
    const id = up.body.id;
    ctx.pdfId = id;

    const started = await sse.waitFor("attachment_processing_started", id);
    assert.equal(started.type, "attachment_processing_started");
    assert.equal(started.chatKey, chatKey);
    const done = await sse.waitFor("attachment_processing_complete", id);
    assert.equal(done.data.pages, 1);
    assert.ok(done.data.chars >= text.length, JSON.stringify(done.data));
    // Started comes first, complete last, nothing after.
    const kinds = sse.of(id).map((e) => e.type);
    assert.equal(kinds[0], "attachment_processing_started");
    assert.equal(kinds.at(-1), "attachment_processing_complete");
    assert.ok(!kinds.includes("attachment_processing_error"));

    const last = await bob.waitFor("attachment:processing", (p) => p.attachmentId === id && p.status === "complete");
    assert.equal(last.chatId, chatKey);
    assert.equal(last.chars, done.data.chars);
    assert.equal(last.pages, 1);
    const mine = bob.of("attachment:processing").filter((p) => p.attachmentId === id);
    assert.equal(mine[0].status, "processing");
    for (const p of mine.slice(0, -1)) assert.equal(p.status, "processing");
    for (const p of mine) assert.equal(p.seq, undefined, "processing status takes no seq (CONTRACT §6.5)");
    ctx.pdfText = text;
    ctx.pdfChars = done.data.chars;
  });

  test("uploading the same document again processes it once (same attachment, no new events)", async () => {
    const { sse, bob, pdfId } = ctx;
    const before = sse.of(pdfId).length;
    const beforeIo = bob.of("attachment:processing").length;
    const again = await upload(natter.url, { chatKey, name: "copy.pdf", type: "application/pdf", bytes: pdfWith(ctx.pdfText) });
    assert.equal(again.status, 200);
    assert.equal(again.body.id, pdfId);
    await sleep(1000);
    assert.equal(sse.of(pdfId).length, before, "no second processing");
    assert.equal(bob.of("attachment:processing").length, beforeIo);
  });

  test("the PDF's text reaches the upstream with the message that carries it", async () => {
    const { bob, pdfId, pdfText } = ctx;
    await stack.upstream.reset();
    const messageId = uid("m");
    const sent = await bob.emit("user:message", { chatId: chatKey, messageId, text: "summarize the report", attachments: [{ id: pdfId }] });
    assert.equal(sent.ok, true, JSON.stringify(sent));
    const deadline = Date.now() + 15000;
    let stats;
    for (;;) {
      stats = await stack.upstream.stats();
      if (stats.requests >= 1) break;
      if (Date.now() > deadline) throw new Error("the upstream saw no request");
      await sleep(25);
    }
    const user = stats.last_chat_request.messages.filter((m) => m.role === "user").at(-1);
    const content = typeof user.content === "string" ? user.content : JSON.stringify(user.content);
    assert.ok(content.includes("summarize the report"), content);
    assert.ok(content.includes("[document: report.pdf]"), content);
    assert.ok(content.includes(pdfText), content);
  });

  test("a text file completes with its character count (no pages)", async () => {
    const { sse, bob } = ctx;
    const body = "héllo wörld\nsecond line ✓\n";
    const up = await upload(natter.url, { chatKey, name: "notes.md", type: "text/markdown", bytes: Buffer.from(body) });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    const done = await sse.waitFor("attachment_processing_complete", up.body.id);
    assert.equal(done.data.chars, [...body].length);
    assert.equal(done.data.pages, undefined);
    const io = await bob.waitFor("attachment:processing", (p) => p.attachmentId === up.body.id && p.status === "complete");
    assert.equal(io.chars, [...body].length);
  });

  test("a decompression bomb ends in error within the bound, and the server keeps serving", async () => {
    const { sse, bob } = ctx;
    // Inflates to 4x the reader's memory limit.
    const bomb = pdfWith("", { contentStream: await deflateBomb(MEMORY_MB * 4) });
    assert.ok(bomb.length < 2 * 1024 * 1024, `bomb is ${bomb.length} bytes`);
    const t0 = Date.now();
    const up = await upload(natter.url, { chatKey, name: "bomb.pdf", type: "application/pdf", bytes: bomb });
    assert.equal(up.status, 200, JSON.stringify(up.body));
    const err = await sse.waitFor("attachment_processing_error", up.body.id, (TIMEOUT_SECS + 10) * 1000);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < (TIMEOUT_SECS + 5) * 1000, `took ${elapsed} ms`);
    assert.ok(["too_large", "timeout", "unreadable"].includes(err.data.code), JSON.stringify(err.data));
    assert.equal(typeof err.data.message, "string");
    const io = await bob.waitFor("attachment:processing", (p) => p.attachmentId === up.body.id && p.status === "error");
    assert.equal(io.error.code, err.data.code);
    // Still serving: health, and a fresh document processes.
    assert.equal((await fetch(`${natter.url}/healthz`)).status, 200);
    const ok = await upload(natter.url, { chatKey, name: "after.txt", type: "text/plain", bytes: Buffer.from(`after the bomb ${uid("x")}`) });
    await sse.waitFor("attachment_processing_complete", ok.body.id);
  });

  test("deeply nested and truncated PDFs end in error (or empty text), never hang", async () => {
    const { sse } = ctx;
    const nested = Buffer.concat([Buffer.from("%PDF-1.4\n1 0 obj\n"), Buffer.alloc(500_000, "["), Buffer.from("\nendobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")]);
    const truncated = pdfWith("cut short").subarray(0, 200);
    for (const [name, bytes] of [["nested.pdf", nested], ["truncated.pdf", truncated]]) {
      const up = await upload(natter.url, { chatKey, name, type: "application/pdf", bytes });
      assert.equal(up.status, 200, `${name}: ${JSON.stringify(up.body)}`);
      const deadline = Date.now() + (TIMEOUT_SECS + 10) * 1000;
      let end;
      while (!end) {
        end = sse.of(up.body.id).find((e) => e.type === "attachment_processing_error" || e.type === "attachment_processing_complete");
        if (Date.now() > deadline) throw new Error(`${name}: no end; got ${JSON.stringify(sse.of(up.body.id))}`);
        await sleep(20);
      }
      if (end.type === "attachment_processing_complete") assert.equal(end.data.data.chars, 0, name);
    }
    assert.equal((await fetch(`${natter.url}/healthz`)).status, 200);
  });

  test("processing events go to the chat's members only", async () => {
    const other = await connect(natter.url, { query: { userId: "carol" } });
    const otherChat = uid("other");
    assert.equal((await other.emit("chat:join", { chatId: otherChat })).ok, true);
    const up = await upload(natter.url, { chatKey, name: "private.txt", type: "text/plain", bytes: Buffer.from(`private ${uid("p")}`) });
    await ctx.sse.waitFor("attachment_processing_complete", up.body.id);
    await sleep(200);
    assert.equal(other.of("attachment:processing").length, 0);
    other.close();
  });

  after(() => {
    ctx.sse?.close();
    ctx.bob?.close();
  });
});
