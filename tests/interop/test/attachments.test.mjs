// Attachments: upload and download (CONTRACT §7.6) with Node's own fetch + FormData against the
// real binary: the type from the bytes, 415 for anything else, 413 past the limit without the
// server reading the body into memory (its RSS is checked), download headers, members only
// (another org or a non-member: 404), the same bytes once per chat, rate and quota errors,
// deleting the chat deletes its attachments, `natter attachments gc` removes orphans.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { binDir, pgDatabaseName, pgServer, startFakeUpstream, startNatter, tempDir, testOnPostgres, uid } from "../lib/harness.mjs";

const MAX = 1024 * 1024;
const QUOTA = 1536 * 1024;
const RATE = 4;

/** A PNG header of `w` x `h`: signature and IHDR (enough for the sniffer). */
function png(w, h) {
  const b = Buffer.alloc(33);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]).copy(b, 0);
  b.write("IHDR", 12, "ascii");
  b.writeUInt32BE(w, 16);
  b.writeUInt32BE(h, 20);
  b[24] = 8;
  b[25] = 2;
  return b;
}

const ELF = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(64, 0)]);
const MZ = Buffer.concat([Buffer.from("MZ"), Buffer.from([0x90, 0, 3, 0, 0, 0]), Buffer.alloc(64, 0)]);

let upstream, natter, tmp;
before(async () => {
  tmp = tempDir();
  upstream = await startFakeUpstream();
  natter = await startNatter({
    upstream,
    dataDir: tmp.dir,
    args: [
      "--max-attachment-bytes", String(MAX),
      "--attachment-quota-bytes", String(QUOTA),
      "--attachment-uploads-per-minute", String(RATE),
    ],
  });
});
after(async () => {
  await natter?.stop();
  upstream?.stop();
  tmp?.cleanup();
});

/** POSTs a form; `fields` are appended first, then the file (if any). */
async function upload({ chatKey, userId = uid("u"), orgId, name = "f.bin", type = "application/octet-stream", bytes, fields = {} }) {
  const form = new FormData();
  if (chatKey !== undefined) form.append("chatKey", chatKey);
  form.append("userId", userId);
  if (orgId) form.append("orgId", orgId);
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  if (bytes !== undefined) form.append("file", new Blob([bytes], { type }), name);
  const res = await fetch(`${natter.url}/api/v1/attachments`, { method: "POST", body: form });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { unparsable: text };
  }
  return { status: res.status, body, headers: res.headers };
}

const download = (id, q) => fetch(`${natter.url}/api/v1/attachments/${id}?${new URLSearchParams(q)}`);

/** A chat created by `userId` (seed 002 /create), members-only when `members` is given. */
async function createChat(userId, { orgId, members } = {}) {
  const res = await fetch(`${natter.url}/api/v1/chat/create`, {
    method: "POST",
    body: JSON.stringify({ userId, ...(orgId ? { orgId } : {}), ...(members ? { members } : {}) }),
  });
  assert.equal(res.status, 200);
  return (await res.json()).chatKey;
}

const rssKb = () => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${natter.proc.pid}/status`, "utf8"));
  return Number(m[1]);
};

describe("attachments: upload and download", () => {
  test("a PNG named .txt and claimed text/plain is stored as image/png, with its sha256", async () => {
    const userId = uid("u");
    const chatKey = await createChat(userId);
    const bytes = png(4, 3);
    const r = await upload({ chatKey, userId, name: "notes.txt", type: "text/plain", bytes });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const { createHash } = await import("node:crypto");
    assert.deepEqual(r.body, {
      id: r.body.id,
      name: "notes.txt",
      mimeType: "image/png",
      size: bytes.length,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      url: `/api/v1/attachments/${r.body.id}`,
    });
    const d = await download(r.body.id, { userId });
    assert.equal(d.status, 200);
    assert.equal(d.headers.get("content-type"), "image/png");
    assert.equal(d.headers.get("x-content-type-options"), "nosniff");
    assert.match(d.headers.get("content-security-policy"), /default-src 'none'/);
    assert.match(d.headers.get("content-security-policy"), /sandbox/);
    assert.match(d.headers.get("content-disposition"), /^inline;/, "images are shown inline");
    assert.deepEqual(Buffer.from(await d.arrayBuffer()), bytes);
  });

  test("text is typed by the client's claim or name among text types only; documents download as attachments", async () => {
    const userId = uid("u");
    const chatKey = await createChat(userId);
    const csv = await upload({ chatKey, userId, name: "data.csv", type: "application/octet-stream", bytes: Buffer.from("a,b\n1,2\n") });
    assert.equal(csv.body.mimeType, "text/csv");
    const md = await upload({ chatKey, userId, name: "x.bin", type: "text/markdown", bytes: Buffer.from("# Title\n") });
    assert.equal(md.body.mimeType, "text/markdown");
    const pdf = await upload({ chatKey, userId, name: "r.png", type: "image/png", bytes: Buffer.from("%PDF-1.4\n%%EOF\n") });
    assert.equal(pdf.body.mimeType, "application/pdf", "a PDF claimed as PNG is a PDF");
    const d = await download(csv.body.id, { userId });
    assert.equal(d.headers.get("content-type"), "text/csv");
    assert.equal(d.headers.get("content-disposition"), "attachment; filename*=UTF-8''data.csv");
    assert.equal(d.headers.get("x-content-type-options"), "nosniff");
  });

  test("an executable claimed as PNG (ELF, MZ) is 415 unsupported_media_type; so is binary claimed as text", async () => {
    const userId = uid("u");
    const chatKey = await createChat(userId);
    for (const [bytes, name, type] of [[ELF, "cat.png", "image/png"], [MZ, "setup.png", "image/png"], [Buffer.from([0, 1, 2, 0xff]), "a.txt", "text/plain"]]) {
      const r = await upload({ chatKey, userId, name, type, bytes });
      assert.equal(r.status, 415, `${name}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, "unsupported_media_type");
      assert.ok(r.body.error.message.length > 0);
    }
  });

  test("over --max-attachment-bytes is 413 too_large", async () => {
    const userId = uid("u");
    const chatKey = await createChat(userId);
    const r = await upload({ chatKey, userId, name: "big.txt", type: "text/plain", bytes: Buffer.alloc(MAX + 1, 0x61) });
    assert.equal(r.status, 413, JSON.stringify(r.body));
    assert.equal(r.body.error.code, "too_large");
    const exact = await upload({ chatKey, userId, name: "exact.txt", type: "text/plain", bytes: Buffer.alloc(MAX, 0x62) });
    assert.equal(exact.status, 200, "exactly the limit is accepted");
  });

  test("a 200 MiB streamed body is refused early: the server reads a little of it and its RSS stays far below", async () => {
    const userId = uid("u");
    const chatKey = await createChat(userId);
    const boundary = "----natter-test-boundary";
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="chatKey"\r\n\r\n${chatKey}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="userId"\r\n\r\n${userId}\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.txt"\r\nContent-Type: text/plain\r\n\r\n`,
    );
    const TOTAL = 200 * 1024 * 1024;
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let sent = 0;
    let peakKb = rssKb();
    const before = peakKb;
    const sampler = setInterval(() => {
      try {
        peakKb = Math.max(peakKb, rssKb());
      } catch {}
    }, 20);
    const body = new ReadableStream({
      start(c) {
        c.enqueue(head);
      },
      pull(c) {
        if (sent >= TOTAL) {
          c.enqueue(Buffer.from(`\r\n--${boundary}--\r\n`));
          c.close();
          return;
        }
        sent += chunk.length;
        c.enqueue(chunk);
      },
    });
    let status, code;
    try {
      const res = await fetch(`${natter.url}/api/v1/attachments`, {
        method: "POST",
        body,
        duplex: "half",
        headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
      });
      status = res.status;
      code = (await res.json().catch(() => ({})))?.error?.code;
    } catch (e) {
      // The server may close the connection while the client still sends: also a refusal.
      status = `closed (${e.cause?.code ?? e.message})`;
    }
    clearInterval(sampler);
    peakKb = Math.max(peakKb, rssKb());
    if (typeof status === "number") {
      assert.equal(status, 413);
      assert.equal(code, "too_large");
    }
    assert.ok(sent < TOTAL / 2, `the client got to send only part of the body (${sent} of ${TOTAL} bytes)`);
    const grownMb = (peakKb - before) / 1024;
    assert.ok(grownMb < 50, `the server's RSS grew by ${grownMb.toFixed(1)} MiB (peak ${(peakKb / 1024).toFixed(0)} MiB) for a 200 MiB body`);
    // And it still serves.
    const ok = await upload({ chatKey, userId: uid("u2"), name: "ok.txt", bytes: Buffer.from("fine") });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });

  test("download: another org's and a non-member's is 404; a member's is 200", async () => {
    const owner = uid("owner");
    const chatKey = await createChat(owner, { orgId: "org-x", members: [owner, "bea"] });
    const r = await upload({ chatKey, userId: owner, orgId: "org-x", name: "a.png", bytes: png(1, 1) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((await download(r.body.id, { userId: owner, orgId: "org-x" })).status, 200);
    assert.equal((await download(r.body.id, { userId: "bea", orgId: "org-x" })).status, 200, "a listed member");
    for (const q of [{ userId: owner, orgId: "org-y" }, { userId: owner }, { userId: "mallory", orgId: "org-x" }]) {
      const d = await download(r.body.id, q);
      assert.equal(d.status, 404, JSON.stringify(q));
      assert.equal((await d.json()).error.code, "not_found");
    }
    const unknown = await download("no-such-id", { userId: owner, orgId: "org-x" });
    assert.equal(unknown.status, 404);
    // A non-member cannot upload into a members-only chat.
    const up = await upload({ chatKey, userId: "mallory", orgId: "org-x", name: "m.txt", bytes: Buffer.from("x") });
    assert.equal(up.status, 403);
    assert.equal(up.body.error.code, "forbidden");
  });

  test("the same bytes twice in a chat are one attachment; in another chat, another", async () => {
    const userId = uid("u");
    const chatKey = await createChat(userId);
    const bytes = Buffer.from(`same bytes ${uid("b")}`);
    const a = await upload({ chatKey, userId, name: "one.txt", bytes });
    const b = await upload({ chatKey, userId, name: "two.txt", bytes });
    assert.equal(a.status, 200);
    assert.equal(b.body.id, a.body.id);
    assert.equal(b.body.name, "one.txt", "the first upload's metadata");
    const other = await createChat(userId);
    const c = await upload({ chatKey: other, userId, name: "one.txt", bytes });
    assert.notEqual(c.body.id, a.body.id);
  });

  test("per-chat quota: quota_exceeded (413); per-user rate: rate_limited (429)", async () => {
    const userId = uid("u");
    const chatKey = await createChat(userId);
    const first = await upload({ chatKey, userId, name: "a.txt", bytes: Buffer.alloc(MAX, 0x61) });
    assert.equal(first.status, 200);
    const over = await upload({ chatKey, userId, name: "b.txt", bytes: Buffer.alloc(QUOTA - MAX + 1, 0x62) });
    assert.equal(over.status, 413, JSON.stringify(over.body));
    assert.equal(over.body.error.code, "quota_exceeded");
    assert.match(over.body.error.message, /quota/);

    const rater = uid("rater");
    const chat2 = await createChat(rater);
    let refused;
    for (let i = 0; i < RATE + 1; i++) {
      const r = await upload({ chatKey: chat2, userId: rater, name: `${i}.txt`, bytes: Buffer.from(`n${i}`) });
      if (r.status !== 200) {
        refused = r;
        break;
      }
    }
    assert.ok(refused, `upload ${RATE + 1} in a minute is refused`);
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error.code, "rate_limited");
    assert.ok(Number(refused.headers.get("retry-after")) >= 1);
  });

  test("deleting the chat deletes its attachments", async () => {
    const userId = uid("u");
    const chatKey = await createChat(userId);
    const r = await upload({ chatKey, userId, name: "gone.png", bytes: png(2, 2) });
    assert.equal((await download(r.body.id, { userId })).status, 200);
    const del = await fetch(`${natter.url}/api/v1/chats/${chatKey}?userId=${userId}`, { method: "DELETE" });
    assert.ok(del.status < 300, `delete: ${del.status}`);
    assert.equal((await download(r.body.id, { userId })).status, 404);
  });

  test("natter attachments gc removes orphans older than --older-than, and keeps newer ones", async () => {
    const userId = uid("u");
    const chatKey = await createChat(userId);
    const r = await upload({ chatKey, userId, name: "orphan.txt", bytes: Buffer.from(`orphan ${uid("o")}`) });
    assert.equal(r.status, 200);
    const database = testOnPostgres ? `${pgServer}/${pgDatabaseName(tmp.dir)}` : `sqlite://${tmp.dir}/natter.db`;
    const gc = (olderThan) =>
      new Promise((resolve, reject) =>
        execFile(path.join(binDir, "natter"), ["attachments", "gc", "--database", database, "--older-than", olderThan], { timeout: 30000 }, (e, stdout, stderr) =>
          e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout),
        ),
      );
    assert.match(await gc("24h"), /deleted 0 orphan attachments/);
    assert.equal((await download(r.body.id, { userId })).status, 200, "a new orphan is kept");
    await new Promise((res) => setTimeout(res, 1100));
    assert.match(await gc("1s"), /deleted [1-9]\d* orphan attachments/);
    assert.equal((await download(r.body.id, { userId })).status, 404, "the old orphan is gone");
  });
});
