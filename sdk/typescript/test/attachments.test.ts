// Attachments in the SDK (CONTRACT §7.6) against the real binary: AIChatSocket.uploadAttachment
// and sendMessage({attachments}), ChatClient's upload and send (seed 002), NatterChatTransport's
// file parts, the typed 413/415 errors, and the upload carrying the token with auth on.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import zlib from "node:zlib";
import type { UIMessage } from "ai";
import {
  AIChatSocket,
  AttachmentTooLargeError,
  AttachmentUploadError,
  ChatClient,
  NatterChatTransport,
  NatterError,
  UnsupportedMediaTypeError,
  attachmentIdOf,
  dataUrlToBlob,
  type ChatEvent,
  type ServerToClientEvents,
} from "../src/index.js";
import { connect, startFakeUpstream, startNatter, stopNatter, tempDir, uid, until, type Natter, type Upstream } from "./harness.js";

type S2C = ServerToClientEvents;

/** A valid `w`×`h` RGB PNG (so the server can read its size), different bytes per `seed`. */
function png(w: number, h: number, seed = 0): Buffer {
  const chunk = (type: string, data: Buffer) => {
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
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const rows = Buffer.alloc((w * 3 + 1) * h);
  for (let i = 0; i < rows.length; i++) rows[i] = i % (w * 3 + 1) === 0 ? 0 : (i * 7 + seed) & 0xff;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** A Blob of `bytes` (copied: Node's Buffer may sit on a shared pool). */
const blob = (bytes: Buffer, type?: string) => new Blob([new Uint8Array(bytes)], type !== undefined ? { type } : {});
const sha256 = (b: Buffer) => crypto.createHash("sha256").update(b).digest("hex");
/** An ELF header: an executable, whatever it is called. */
const ELF = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(120, 1)]);

const SECRET = "sdk-test-secret-that-is-long-enough-for-hs256";
function mint(org: string, user: string): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ org_id: org, user_id: user, exp: Math.floor(Date.now() / 1000) + 600 });
  const sig = crypto.createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** Joins `chatId` as `user` on a stock socket.io-client, to see what other members get. */
async function member(natter: Natter, chatId: string, user: string) {
  const peer = await connect(natter.url, { query: { userId: user } });
  const ack = (await peer.emit("chat:join", { chatId, userId: user })) as { ok: boolean };
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return peer;
}

describe("attachments: auth off", () => {
  let upstream: Upstream;
  let natter: Natter;
  let tmp: { dir: string; cleanup(): void };
  const sockets: AIChatSocket[] = [];
  const closers: Array<() => void> = [];

  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    // Small enough to test 413 without big bodies; the PNGs here are well under it.
    natter = await startNatter({ upstream, dataDir: tmp.dir, args: ["--max-attachment-bytes", "65536"] });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    for (const c of closers) c();
    await stopNatter(natter);
    upstream?.stop();
    tmp?.cleanup();
  });

  function socket(chatId: string, userId: string, callbacks: ConstructorParameters<typeof AIChatSocket>[0]["callbacks"] = {}) {
    const s = new AIChatSocket({ url: natter.url, chatId, userId, ioOptions: { transports: ["websocket"], auth: { userId } }, callbacks });
    sockets.push(s);
    return s;
  }

  test("AIChatSocket: upload, the same bytes twice are one attachment, a message carries it to the others", async () => {
    const chatId = uid("att");
    const ann = socket(chatId, "ann");
    await ann.whenReady();
    const bob = await member(natter, chatId, "bob");
    closers.push(() => bob.close());

    const bytes = png(8, 6, 1);
    // A PNG named .txt, claimed as text: the type comes from the bytes.
    const uploaded = await ann.uploadAttachment(undefined, blob(bytes, "text/plain"), { name: "picture.txt" });
    assert.equal(uploaded.mimeType, "image/png");
    assert.equal(uploaded.name, "picture.txt");
    assert.equal(uploaded.size, bytes.length);
    assert.equal(uploaded.sha256, sha256(bytes));
    assert.equal(uploaded.url, `/api/v1/attachments/${uploaded.id}`);
    assert.equal(attachmentIdOf(uploaded.url), uploaded.id);
    const again = await ann.uploadAttachment(chatId, blob(bytes), { name: "again.png" });
    assert.equal(again.id, uploaded.id, "the same bytes in the same chat are stored once");

    const ack = await ann.sendMessage({ messageId: uid("m"), text: "[fake:echo] look at this", attachments: [uploaded] });
    assert.equal(ack.ok, true);
    const relayed = (await bob.waitFor("chat:message")) as S2C["chat:message"];
    assert.equal(relayed.text, "[fake:echo] look at this");
    assert.equal(relayed.attachments?.length, 1);
    const shown = relayed.attachments?.[0];
    assert.equal(shown?.id, uploaded.id);
    assert.equal(shown?.mimeType, "image/png");
    assert.equal(shown?.size, bytes.length);
    assert.equal(shown?.url, uploaded.url);

    // The download has the stored bytes and type.
    const download = await fetch(`${natter.url}${uploaded.url}?userId=ann`);
    assert.equal(download.status, 200, await download.clone().text());
    assert.equal(download.headers.get("content-type"), "image/png");
    assert.deepEqual(Buffer.from(await download.arrayBuffer()), bytes);

    // A later joiner sees the attachment on the message in the join ack.
    const carol = socket(chatId, "carol");
    const joined = await new Promise<Parameters<NonNullable<NonNullable<ConstructorParameters<typeof AIChatSocket>[0]["callbacks"]>["onJoin"]>>[0]>((resolve) =>
      carol.setCallbacks({ onJoin: resolve }),
    );
    const inHistory = joined.messages.find((m) => m.role === "user" && m.text === "[fake:echo] look at this");
    assert.ok(inHistory && inHistory.role === "user");
    assert.equal(inHistory.attachments?.[0]?.id, uploaded.id);
  });

  test("onAttachmentProcessing: a document is read after upload; the upload answer says where it stands", async () => {
    const chatId = uid("att-doc");
    const seen: Array<{ attachmentId: string; status: string; chars?: number }> = [];
    const ann = socket(chatId, "ann", { onAttachmentProcessing: (e) => seen.push(e) });
    await ann.whenReady();
    const csv = Buffer.from("name,qty\napples,3\npears,5\n", "utf8");
    const uploaded = await ann.uploadAttachment(undefined, blob(csv), { name: "stock.csv" });
    assert.equal(uploaded.mimeType.split(";")[0], "text/csv");
    assert.ok(uploaded.processing && ["processing", "complete"].includes(uploaded.processing.status), JSON.stringify(uploaded));
    const done = await until(() => seen.find((e) => e.attachmentId === uploaded.id && e.status !== "processing"), "the end of processing", 20_000);
    assert.equal(done.status, "complete", JSON.stringify(seen));
    assert.ok((done.chars ?? 0) > 0);
    // An image has no processing.
    const image = await ann.uploadAttachment(undefined, blob(png(2, 2, 7)), { name: "i.png" });
    assert.equal(image.processing, undefined);
  });

  test("typed errors: 415 for an executable claimed as PNG, 413 over the limit, not_found for an unknown id", async () => {
    const chatId = uid("att-err");
    const ann = socket(chatId, "ann");
    await ann.whenReady();
    await assert.rejects(ann.uploadAttachment(undefined, blob(ELF, "image/png"), { name: "cat.png" }), (e: unknown) => {
      assert.ok(e instanceof UnsupportedMediaTypeError, String(e));
      assert.ok(e instanceof AttachmentUploadError && e instanceof NatterError);
      assert.equal(e.code, "unsupported_media_type");
      assert.equal(e.status, 415);
      return true;
    });
    const big = Buffer.concat([png(4, 4), Buffer.alloc(70_000, 0x41)]);
    await assert.rejects(ann.uploadAttachment(undefined, blob(big), { name: "big.png" }), (e: unknown) => {
      assert.ok(e instanceof AttachmentTooLargeError, String(e));
      assert.equal(e.code, "too_large");
      assert.equal(e.status, 413);
      assert.equal(e.retryable, false);
      return true;
    });
    await assert.rejects(ann.sendMessage({ messageId: uid("m"), text: "ghost", attachments: ["no-such-attachment"] }), (e: unknown) => {
      assert.ok(e instanceof NatterError);
      assert.equal(e.code, "not_found");
      return true;
    });
    // Refused before anything is sent: an attachment without an id.
    await assert.rejects(ann.sendMessage({ messageId: uid("m"), text: "x", attachments: [{ id: "" }] }), (e: unknown) => {
      assert.ok(e instanceof NatterError);
      assert.equal(e.code, "invalid_field");
      return true;
    });
  });

  test("ChatClient (seed 002): uploadAttachment, sendMessage with it, the message on the stream and in /load", async () => {
    const user = uid("cara");
    const events: ChatEvent[] = [];
    const chat = new ChatClient({ baseUrl: `${natter.url}/api/v1/chat`, orgId: "default", userId: user, transport: "sse-fetch", onMessage: (e) => events.push(e) });
    closers.push(() => chat.destroy());
    const chatKey = await chat.startChat();
    await chat.connect();
    const bytes = Buffer.from("# Notes\n\nhello from a markdown file\n", "utf8");
    const uploaded = await chat.uploadAttachment(undefined, blob(bytes), { name: "notes.md" });
    assert.equal(uploaded.mimeType.split(";")[0], "text/markdown");
    assert.equal(uploaded.size, bytes.length);
    await chat.sendMessage("[fake:echo] read my notes", [uploaded]);
    // The optimistic copy is replaced by the server's, which lists the attachment.
    const fromStream = await until(
      () => events.find((e) => e.type === "message" && e.message?.role === "user" && (e.message.attachments?.length ?? 0) > 0),
      "the user message with its attachment on the stream",
      15_000,
    );
    assert.equal(fromStream.message?.attachments?.[0]?.id, uploaded.id);
    assert.equal(fromStream.message?.attachments?.[0]?.name, "notes.md");
    await until(() => chat.getState().messages.some((m) => m.role === "ai"), "the reply", 15_000);
    const loaded = await chat.loadChat(chatKey);
    const mine = loaded.messages.find((m) => m.role === "user");
    assert.equal(mine?.attachments?.[0]?.id, uploaded.id);
    assert.equal(mine?.attachments?.[0]?.url, uploaded.url);

    // A refused upload rejects with the typed error and sets `error` like every operation.
    await assert.rejects(chat.uploadAttachment(undefined, blob(ELF), { name: "n.md" }), (e: unknown) => {
      assert.ok(e instanceof UnsupportedMediaTypeError, String(e));
      return true;
    });
    assert.equal(chat.getState().error?.code, "unsupported_media_type");
    assert.equal(chat.getState().error?.status, 415);
  });

  test("NatterChatTransport: a data: URL file part is uploaded and sent as an attachment; foreign URLs are refused", async () => {
    const chatId = uid("att-t");
    const bob = await member(natter, chatId, "bob");
    closers.push(() => bob.close());
    const t = new NatterChatTransport({ url: natter.url, userId: "ann", ioOptions: { auth: { userId: "ann" } } });
    closers.push(() => t.close());
    const bytes = png(5, 5, 3);
    const dataUrl = `data:image/png;base64,${bytes.toString("base64")}`;
    const message: UIMessage = {
      id: uid("u"),
      role: "user",
      parts: [
        { type: "file", mediaType: "image/png", filename: "dot.png", url: dataUrl },
        { type: "text", text: "[fake:echo] what is this?" },
      ],
    };
    const stream = await t.sendMessages({ trigger: "submit-message", chatId, messageId: undefined, messages: [message], abortSignal: undefined });
    const relayed = (await bob.waitFor("chat:message")) as S2C["chat:message"];
    assert.equal(relayed.messageId, message.id);
    assert.equal(relayed.attachments?.length, 1);
    const stored = relayed.attachments?.[0];
    assert.equal(stored?.name, "dot.png");
    assert.equal(stored?.mimeType, "image/png");
    assert.equal(stored?.size, bytes.length);
    // The part on the wire points at the stored copy, not the bytes.
    const filePart = ((relayed.parts ?? []) as Array<{ type: string; url?: string }>).find((p) => p.type === "file");
    assert.equal(filePart?.url, stored?.url);
    for await (const _ of stream) void _; // the turn ends

    // The stored URL is accepted as it is (same attachment), relative or absolute.
    const second: UIMessage = {
      id: uid("u"),
      role: "user",
      parts: [
        { type: "file", mediaType: "image/png", url: `${natter.url}${stored?.url}` },
        { type: "text", text: "again" },
      ],
    };
    const s2 = await t.sendMessages({ trigger: "submit-message", chatId, messageId: undefined, messages: [message, second], abortSignal: undefined });
    const relayed2 = (await bob.waitFor("chat:message", (m: S2C["chat:message"]) => m.messageId === second.id)) as S2C["chat:message"];
    assert.equal(relayed2.attachments?.[0]?.id, stored?.id);
    for await (const _ of s2) void _;

    const foreign: UIMessage = {
      id: uid("u"),
      role: "user",
      parts: [
        { type: "file", mediaType: "image/png", url: "https://example.com/cat.png" },
        { type: "text", text: "fetch this" },
      ],
    };
    await assert.rejects(
      t.sendMessages({ trigger: "submit-message", chatId, messageId: undefined, messages: [foreign], abortSignal: undefined }),
      (e: unknown) => {
        assert.ok(e instanceof NatterError);
        assert.equal(e.code, "invalid_field");
        return true;
      },
    );
    assert.equal(bob.of("chat:message").length, 2, "the refused message was never sent");
  });

  test("dataUrlToBlob decodes base64 and percent-encoded data: URLs", async () => {
    const b = dataUrlToBlob("data:text/plain;charset=utf-8,h%C3%A9llo");
    assert.equal(b?.type, "text/plain");
    assert.equal(await b?.text(), "héllo");
    const p = dataUrlToBlob(`data:image/png;base64,${png(1, 1).toString("base64")}`);
    assert.deepEqual(Buffer.from(await p!.arrayBuffer()), png(1, 1));
    assert.equal(dataUrlToBlob("https://example.com/x"), undefined);
  });
});

describe("attachments: auth on", () => {
  let upstream: Upstream;
  let natter: Natter;
  let tmp: { dir: string; cleanup(): void };
  const sockets: AIChatSocket[] = [];

  before(async () => {
    tmp = tempDir();
    upstream = await startFakeUpstream();
    natter = await startNatter({ upstream, dataDir: tmp.dir, args: ["--jwt-secret", SECRET] });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await stopNatter(natter);
    upstream?.stop();
    tmp?.cleanup();
  });

  test("the upload carries the socket's token; another org can neither read it nor send it", async () => {
    const chatId = uid("att-auth");
    const token = mint("acme", "dana");
    const dana = new AIChatSocket({ url: natter.url, chatId, ioOptions: { transports: ["websocket"], auth: { token } } });
    sockets.push(dana);
    await dana.whenReady();
    const uploaded = await dana.uploadAttachment(undefined, blob(png(3, 3, 9)), { name: "a.png" });
    assert.equal(uploaded.mimeType, "image/png");
    const ok = await fetch(`${natter.url}${uploaded.url}`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    const other = await fetch(`${natter.url}${uploaded.url}`, { headers: { Authorization: `Bearer ${mint("globex", "dana")}` } });
    assert.equal(other.status, 404, "another org's download is 404");

    // The same chat id in another org is another chat: dana's attachment is not there.
    const eve = new AIChatSocket({ url: natter.url, chatId, ioOptions: { transports: ["websocket"], auth: { token: mint("globex", "eve") } } });
    sockets.push(eve);
    await eve.whenReady();
    await assert.rejects(eve.sendMessage({ messageId: uid("m"), text: "mine now", attachments: [uploaded] }), (e: unknown) => {
      assert.ok(e instanceof NatterError);
      assert.equal(e.code, "not_found");
      return true;
    });
    const own = await eve.uploadAttachment(undefined, blob(png(3, 3, 9)), { name: "same-bytes.png" });
    assert.notEqual(own.id, uploaded.id, "the same bytes in another org's chat are another attachment");
    // Without a token at all.
    const anon = await fetch(`${natter.url}/api/v1/attachments`, { method: "POST", body: new FormData() });
    assert.equal(anon.status, 401);
  });
});
