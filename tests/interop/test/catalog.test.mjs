// One table of malformed inputs across every face (CONTRACT "General rules": every payload
// that fails validation gets a clear error, `code` + human `message`, never a panic, a silent
// drop or a half-applied change; docs/protocol.md "Error codes" and "HTTP errors").
//
// The cases are picked to complement malformed.test.mjs (Socket.IO), realtime.test.mjs (seed
// 002), history.test.mjs and aisdk.test.mjs: nulls where a value is required, floats and
// integers beyond 2^64, arrays and scalars instead of objects, invalid UTF-8 bytes in a body,
// bodies that are JSON `null`/`true`/a number, oversize ids and texts, bad WebSocket frames,
// unknown event names, wrong methods. After the whole table, every face still serves a
// normal turn.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { connect, startStack, uid } from "../lib/harness.mjs";
import { openSse } from "../lib/sse-reader.mjs";

const MAX_TEXT = 4096;
const MAX_PAYLOAD = 65536;

let stack, natter;
before(async () => {
  ({ natter } = stack = await startStack({
    args: ["--max-text-bytes", String(MAX_TEXT), "--max-payload-bytes", String(MAX_PAYLOAD), "--retry-max", "0"],
  }));
});
after(() => stack?.stop());

const A = uid("cat-a");
const B = uid("cat-b");
const ISO = "2026-01-02T03:04:05.000Z";
const BIG_ID = "k".repeat(300);
const INVALID_UTF8 = Buffer.concat([Buffer.from('{"id":"'), Buffer.from([0xff, 0xfe, 0xc3, 0x28]), Buffer.from('","messages":[]}')]);
const userMsg = (text, extra = {}) => ({ id: uid("m"), role: "user", parts: [{ type: "text", text }], ...extra });
const aisdkBody = (extra = {}) => ({ id: uid("ai"), trigger: "submit-message", messages: [userMsg("hi")], ...extra });

// Filled in by the test before the table runs.
const ctx = { sio: null, ws: null, chatKey: null, histKey: null };

/** Socket.IO: emits with an ack; returns the ack's error, and checks the `error` event too. */
const sio = (event, payload) => async () => {
  const c = ctx.sio;
  const before = c.of("error").length;
  const ack = await c.socket.timeout(10000).emitWithAck(event, payload);
  assert.equal(ack?.ok, false, `ack: ${JSON.stringify(ack)}`);
  const ev = await c.until((evs) => evs.filter((e) => e.event === "error")[before]?.payload, 5000, `error event for ${event}`);
  assert.equal(ev.code, ack.error.code, "the error event has the ack's code");
  assert.equal(ev.event, event, "the error event names the refused event");
  return { code: ack.error.code, message: ack.error.message };
};

/** HTTP: any method, a JSON value, a raw string or a Buffer as the body. */
const http = (method, path, body, { raw = false, headers = {} } = {}) => async () => {
  const init = { method, headers: { "content-type": "application/json", ...headers } };
  if (body !== undefined) init.body = raw ? body : JSON.stringify(body);
  const res = await fetch(`${natter.url}${path}`, init);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    assert.fail(`${method} ${path} → ${res.status}, not JSON: ${text.slice(0, 200)}`);
  }
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  return { status: res.status, code: json?.error?.code, message: json?.error?.message };
};

/** AI SDK WebSocket: sends one frame on the shared socket, returns the `error` frame it gets. */
const wsFrame = (frame, { binary = false, requestId } = {}) => async () => {
  const ws = ctx.ws;
  const before = ws.frames.length;
  ws.sock.send(binary ? Buffer.from(frame) : typeof frame === "string" ? frame : JSON.stringify(frame), { binary });
  const deadline = Date.now() + 5000;
  while (ws.frames.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const out = ws.frames[before];
  assert.ok(out, "an answer frame");
  assert.equal(out.type, "error", JSON.stringify(out));
  if (requestId !== undefined) assert.equal(out.requestId, requestId, "the error names the request");
  const m = /^([a-z_]+): (.*)$/s.exec(out.errorText ?? "");
  assert.ok(m, `errorText is "<code>: <message>": ${out.errorText}`);
  return { code: m[1], message: m[2] };
};

/** Attachments: a multipart/form-data upload of `parts` ([name, value] or [name, Blob, filename]). */
const form = (parts) => async () => {
  const f = new FormData();
  for (const p of parts) f.append(...(typeof p[1] === "function" ? [p[0], p[1](), p[2]] : p));
  const res = await fetch(`${natter.url}/api/v1/attachments`, { method: "POST", body: f });
  const json = await res.json();
  return { status: res.status, code: json?.error?.code, message: json?.error?.message };
};
const blob = (bytes, type = "application/octet-stream") => () => new Blob([bytes], { type });

const rt = "/api/v1/chat";
const hist = "/api/v1/chats";
const q = (o) => `?${new URLSearchParams(o)}`;

const CASES = [
  // ---------------------------------------------------------------- Socket.IO
  { face: "socket.io", name: "chat:join, an array instead of an object", send: sio("chat:join", [{ chatId: A }]), code: "invalid_payload" },
  { face: "socket.io", name: "chat:join, chatId null", send: sio("chat:join", { chatId: null }), code: "missing_field" },
  { face: "socket.io", name: "chat:join, chatId 1e300 (a float)", send: sio("chat:join", { chatId: 1e300 }), code: "invalid_field" },
  { face: "socket.io", name: "chat:join, chatId 2^64 (beyond u64)", send: sio("chat:join", { chatId: 2 ** 64 }), code: "invalid_field" },
  { face: "socket.io", name: "chat:join, lastSeq 2^64", send: sio("chat:join", { chatId: A, lastSeq: 2 ** 64, epoch: "e" }), code: "invalid_field" },
  { face: "socket.io", name: "chat:join, members a string", send: sio("chat:join", { chatId: uid("new"), members: "ann" }), code: "invalid_field" },
  { face: "socket.io", name: "chat:join, agentId an object", send: sio("chat:join", { chatId: uid("new"), agentId: { id: "x" } }), code: "invalid_field" },
  { face: "socket.io", name: "chat:join, chatId of 300 bytes", send: sio("chat:join", { chatId: BIG_ID }), code: "too_large" },
  { face: "socket.io", name: "chat:join, epoch an object", send: sio("chat:join", { chatId: A, lastSeq: 1, epoch: {} }), code: "invalid_field" },
  { face: "socket.io", name: "user:message, messageId null", send: sio("user:message", { chatId: A, messageId: null, text: "x" }), code: "missing_field" },
  { face: "socket.io", name: "user:message, messageId whitespace only", send: sio("user:message", { chatId: A, messageId: " \t ", text: "x" }), code: "missing_field" },
  { face: "socket.io", name: "user:message, tools a string", send: sio("user:message", { chatId: A, messageId: uid("m"), text: "x", tools: "lookup" }), code: "invalid_field" },
  { face: "socket.io", name: "user:message, a tool whose name is a number", send: sio("user:message", { chatId: A, messageId: uid("m"), text: "x", tools: [{ name: 5 }] }), code: "invalid_field" },
  { face: "socket.io", name: "user:message, attachments a string", send: sio("user:message", { chatId: A, messageId: uid("m"), text: "x", attachments: "a1" }), code: "invalid_field" },
  { face: "socket.io", name: "user:message, an attachment without id", send: sio("user:message", { chatId: A, messageId: uid("m"), text: "x", attachments: [{}] }), code: "missing_field" },
  { face: "socket.io", name: "user:message, an attachment id a number", send: sio("user:message", { chatId: A, messageId: uid("m"), text: "x", attachments: [{ id: 5 }] }), code: "invalid_field" },
  { face: "socket.io", name: "user:message, 11 attachments", send: sio("user:message", { chatId: A, messageId: uid("m"), text: "x", attachments: Array.from({ length: 11 }, (_, i) => ({ id: `a${i}` })) }), code: "invalid_field" },
  { face: "socket.io", name: "message:read, 501 messageIds", send: sio("message:read", { chatId: A, messageIds: Array.from({ length: 501 }, (_, i) => `m${i}`), readAt: ISO }), code: "too_large" },
  { face: "socket.io", name: "message:read, readAt month 13", send: sio("message:read", { chatId: A, messageIds: ["m"], readAt: "2026-13-45T99:00:00Z" }), code: "invalid_field" },
  { face: "socket.io", name: "message:read, a messageId 1.5", send: sio("message:read", { chatId: A, messageIds: [1.5], readAt: ISO }), code: "invalid_field" },
  { face: "socket.io", name: "ai:abort, reason a number", send: sio("ai:abort", { chatId: A, reason: 5 }), code: "invalid_field" },
  { face: "socket.io", name: "ai:tool_result, result and error together", send: sio("ai:tool_result", { chatId: A, toolCallId: "call-1", result: 1, error: "x" }), code: "invalid_field" },
  { face: "socket.io", name: "ai:tool_result, toolCallId empty", send: sio("ai:tool_result", { chatId: A, toolCallId: "", result: 1 }), code: "missing_field" },
  { face: "socket.io", name: "typing:start, chatId null while in two chats", send: sio("typing:start", { chatId: null }), code: "chat_required" },
  // A JS string may hold a lone surrogate (an emoji cut in half); JSON.stringify escapes it as
  // "\ud83d", which is not a Unicode scalar value: the payload cannot be read.
  { face: "socket.io", name: "user:message, text with a lone surrogate (half an emoji)", send: sio("user:message", { chatId: A, messageId: uid("m"), text: "cut \ud83d" }), code: "invalid_payload" },
  { face: "socket.io", name: "handoff:request, chatId an object", send: sio("handoff:request", { chatId: { id: A } }), code: "invalid_field" },
  { face: "socket.io", name: "handoff:request, an array payload", send: sio("handoff:request", [A]), code: "invalid_payload" },
  { face: "socket.io", name: "handoff:request, chatId null while in two chats", send: sio("handoff:request", { chatId: null }), code: "chat_required" },
  { face: "socket.io", name: "reaction:add, emoji absent", send: sio("reaction:add", { chatId: A, messageId: "m1" }), code: "missing_field" },
  { face: "socket.io", name: "reaction:add, emoji empty", send: sio("reaction:add", { chatId: A, messageId: "m1", emoji: "" }), code: "missing_field" },
  { face: "socket.io", name: "reaction:add, emoji with a space", send: sio("reaction:add", { chatId: A, messageId: "m1", emoji: "👍 👍" }), code: "invalid_field" },
  { face: "socket.io", name: "reaction:add, emoji of 9 scalar values", send: sio("reaction:add", { chatId: A, messageId: "m1", emoji: "abcdefghi" }), code: "invalid_field" },
  { face: "socket.io", name: "reaction:add, emoji over 32 bytes", send: sio("reaction:add", { chatId: A, messageId: "m1", emoji: "🏳️‍🌈🏳️‍🌈🏳️‍🌈" }), code: "invalid_field" },
  { face: "socket.io", name: "reaction:add, emoji a number", send: sio("reaction:add", { chatId: A, messageId: "m1", emoji: 1 }), code: "invalid_field" },
  { face: "socket.io", name: "reaction:add, an unknown messageId", send: sio("reaction:add", { chatId: A, messageId: "no-such", emoji: "👍" }), code: "not_found" },
  { face: "socket.io", name: "reaction:remove, messageId null", send: sio("reaction:remove", { chatId: A, messageId: null, emoji: "👍" }), code: "missing_field" },
  { face: "socket.io", name: "reaction:remove, an array payload", send: sio("reaction:remove", [A]), code: "invalid_payload" },
  { face: "socket.io", name: "chat:end, reason a number", send: sio("chat:end", { chatId: A, reason: 5 }), code: "invalid_field" },
  { face: "socket.io", name: "chat:end, chatId null while in two chats", send: sio("chat:end", { chatId: null }), code: "chat_required" },
  { face: "socket.io", name: "csat:submit, rating absent", send: sio("csat:submit", { chatId: A }), code: "missing_field" },
  { face: "socket.io", name: "csat:submit, rating 6", send: sio("csat:submit", { chatId: A, rating: 6 }), code: "invalid_field" },
  { face: "socket.io", name: "csat:submit, rating 2.5", send: sio("csat:submit", { chatId: A, rating: 2.5 }), code: "invalid_field" },
  { face: "socket.io", name: "csat:submit, rating \"5\"", send: sio("csat:submit", { chatId: A, rating: "5" }), code: "invalid_field" },
  { face: "socket.io", name: "csat:submit, comment of 2001 characters", send: sio("csat:submit", { chatId: A, rating: 5, comment: "é".repeat(2001) }), code: "too_large" },
  { face: "socket.io", name: "an empty event name", send: sio("", { chatId: A }), code: "unknown_event" },
  { face: "socket.io", name: "a server→client name (meta:events:response)", send: sio("meta:events:response", {}), code: "unknown_event" },
  { face: "socket.io", name: "an emoji event name", send: sio("💬", { chatId: A }), code: "unknown_event" },

  // ---------------------------------------------------------------- AI SDK POST /api/chat
  { face: "aisdk http", name: "invalid UTF-8 bytes in the body", send: http("POST", "/api/chat", INVALID_UTF8, { raw: true }), status: 400, code: "invalid_payload" },
  { face: "aisdk http", name: "body is the number 42", send: http("POST", "/api/chat", "42", { raw: true }), status: 400, code: "invalid_payload" },
  { face: "aisdk http", name: "body is JSON null", send: http("POST", "/api/chat", "null", { raw: true }), status: 400, code: "invalid_payload" },
  { face: "aisdk http", name: "the user message has no id", send: http("POST", "/api/chat", aisdkBody({ messages: [{ role: "user", parts: [{ type: "text", text: "hi" }] }] })), status: 400, code: "missing_field" },
  { face: "aisdk http", name: "parts is a string", send: http("POST", "/api/chat", aisdkBody({ messages: [userMsg("x", { parts: "hi" })] })), status: 400, code: "invalid_field" },
  { face: "aisdk http", name: "id of 300 bytes", send: http("POST", "/api/chat", aisdkBody({ id: BIG_ID })), status: 413, code: "too_large" },
  { face: "aisdk http", name: "id empty", send: http("POST", "/api/chat", aisdkBody({ id: "" })), status: 400, code: "missing_field" },
  { face: "aisdk http", name: "regenerate with messageId an object", send: http("POST", "/api/chat", aisdkBody({ trigger: "regenerate-message", messageId: {} })), status: 400, code: "invalid_field" },
  { face: "aisdk http", name: `text over --max-text-bytes (${MAX_TEXT + 1} bytes, body under the payload limit)`, send: http("POST", "/api/chat", aisdkBody({ messages: [userMsg("x".repeat(MAX_TEXT + 1))] })), status: 413, code: "too_large" },
  { face: "aisdk http", name: "agentId an array", send: http("POST", "/api/chat", aisdkBody({ agentId: ["support"] })), status: 400, code: "invalid_field" },
  { face: "aisdk http", name: "a tool with an empty name", send: http("POST", "/api/chat", aisdkBody({ tools: [{ name: "" }] })), status: 400, code: "invalid_field" },
  { face: "aisdk http", name: "a file part with an https URL (the server fetches nothing)", send: http("POST", "/api/chat", aisdkBody({ messages: [userMsg("x", { parts: [{ type: "file", mediaType: "image/png", url: "https://example.com/a.png" }] })] })), status: 400, code: "invalid_field" },
  { face: "aisdk http", name: "a file part without url", send: http("POST", "/api/chat", aisdkBody({ messages: [userMsg("x", { parts: [{ type: "file", mediaType: "image/png" }] })] })), status: 400, code: "missing_field" },
  { face: "aisdk http", name: "a file part whose data: URL is not base64", send: http("POST", "/api/chat", aisdkBody({ messages: [userMsg("x", { parts: [{ type: "file", mediaType: "text/plain", url: "data:text/plain,hello" }] })] })), status: 400, code: "invalid_field" },
  { face: "aisdk http", name: "PUT on …/stop", send: http("PUT", "/api/chat/some-chat/stop"), status: 405, code: "method_not_allowed" },

  // ---------------------------------------------------------------- AI SDK WebSocket
  { face: "aisdk ws", name: "a binary frame", send: wsFrame('{"type":"send"}', { binary: true, requestId: "" }), code: "invalid_payload" },
  { face: "aisdk ws", name: "a frame that is not JSON", send: wsFrame("send please", { requestId: "" }), code: "invalid_payload" },
  { face: "aisdk ws", name: "a JSON array frame", send: wsFrame("[1,2]", { requestId: "" }), code: "invalid_payload" },
  { face: "aisdk ws", name: "a frame without requestId", send: wsFrame({ type: "send", id: "x" }, { requestId: "" }), code: "missing_field" },
  { face: "aisdk ws", name: "requestId a number", send: wsFrame({ type: "send", requestId: 5 }, { requestId: "" }), code: "invalid_field" },
  { face: "aisdk ws", name: "an unknown frame type", send: wsFrame({ type: "subscribe", requestId: "r-type" }, { requestId: "r-type" }), code: "invalid_field" },
  { face: "aisdk ws", name: "send without id", send: wsFrame({ type: "send", requestId: "r-noid", trigger: "submit-message", messages: [userMsg("x")] }, { requestId: "r-noid" }), code: "missing_field" },
  { face: "aisdk ws", name: "resume with id an object", send: wsFrame({ type: "resume", requestId: "r-res", id: {} }, { requestId: "r-res" }), code: "invalid_field" },
  { face: "aisdk ws", name: "send with messages a string", send: wsFrame({ type: "send", requestId: "r-msgs", id: uid("w"), trigger: "submit-message", messages: "hi" }, { requestId: "r-msgs" }), code: "invalid_field" },

  // ---------------------------------------------------------------- seed 002 POSTs
  { face: "seed002", name: "/send with invalid UTF-8 bytes", send: http("POST", `${rt}/send`, INVALID_UTF8, { raw: true }), status: 400, code: "invalid_payload" },
  { face: "seed002", name: "/send, content with a lone surrogate escape", send: () => http("POST", `${rt}/send`, `{"userId":"ann","chatKey":"${ctx.chatKey}","message":{"content":"cut \\ud83d"}}`, { raw: true })(), status: 400, code: "invalid_payload" },
  { face: "seed002", name: "/send, message.attachments an object", send: () => http("POST", `${rt}/send`, { userId: "ann", chatKey: ctx.chatKey, message: { content: "x", attachments: { id: "a1" } } })(), status: 400, code: "invalid_field" },
  { face: "seed002", name: "/send, an attachment id of 300 bytes", send: () => http("POST", `${rt}/send`, { userId: "ann", chatKey: ctx.chatKey, message: { content: "x", attachments: [{ id: BIG_ID }] } })(), status: 400, code: "invalid_field" },
  { face: "seed002", name: "/send with body `true`", send: http("POST", `${rt}/send`, "true", { raw: true }), status: 400, code: "invalid_payload" },
  { face: "seed002", name: `/send content over --max-text-bytes`, send: () => http("POST", `${rt}/send`, { userId: "ann", chatKey: ctx.chatKey, message: { content: "é".repeat(MAX_TEXT / 2 + 1) } })(), status: 413, code: "too_large" },
  { face: "seed002", name: "/send message.id of 300 bytes", send: () => http("POST", `${rt}/send`, { userId: "ann", chatKey: ctx.chatKey, message: { id: BIG_ID, content: "x" } })(), status: 413, code: "too_large" },
  { face: "seed002", name: "/send orgId of 300 bytes", send: () => http("POST", `${rt}/send`, { orgId: "o".repeat(300), userId: "ann", chatKey: ctx.chatKey, message: { content: "x" } })(), status: 413, code: "too_large" },
  { face: "seed002", name: "/create members a string", send: http("POST", `${rt}/create`, { userId: "ann", members: "bob" }), status: 400, code: "invalid_field" },
  { face: "seed002", name: "/event client_action_callback without toolCallId", send: () => http("POST", `${rt}/event`, { type: "client_action_callback", userId: "ann", chatKey: ctx.chatKey, data: { result: 1 } })(), status: 400, code: "missing_field" },
  { face: "seed002", name: "/event client_action_callback for no waiting call", send: () => http("POST", `${rt}/event`, { type: "client_action_callback", userId: "ann", chatKey: ctx.chatKey, data: { toolCallId: "call-none", result: 1 } })(), status: 404, code: "not_found" },
  { face: "seed002", name: "/event reaction_added without data", send: () => http("POST", `${rt}/event`, { type: "reaction_added", userId: "ann", chatKey: ctx.chatKey })(), status: 400, code: "missing_field" },
  { face: "seed002", name: "/event reaction_added, emoji of 40 bytes", send: () => http("POST", `${rt}/event`, { type: "reaction_added", userId: "ann", chatKey: ctx.chatKey, data: { messageId: "m1", emoji: "x".repeat(40) } })(), status: 400, code: "invalid_field" },
  { face: "seed002", name: "/event reaction_removed, an unknown messageId", send: () => http("POST", `${rt}/event`, { type: "reaction_removed", userId: "ann", chatKey: ctx.chatKey, data: { messageId: "no-such", emoji: "👍" } })(), status: 404, code: "not_found" },
  { face: "seed002", name: "/event csat_submitted, rating 0", send: () => http("POST", `${rt}/event`, { type: "csat_submitted", userId: "ann", chatKey: ctx.chatKey, data: { rating: 0 } })(), status: 400, code: "invalid_field" },
  { face: "seed002", name: "/event csat_submitted, comment an object", send: () => http("POST", `${rt}/event`, { type: "csat_submitted", userId: "ann", chatKey: ctx.chatKey, data: { rating: 3, comment: {} } })(), status: 400, code: "invalid_field" },
  { face: "seed002", name: "/event human_agent_joined with chatKey null", send: http("POST", `${rt}/event`, { type: "human_agent_joined", userId: "ann", chatKey: null }), status: 400, code: "missing_field" },
  { face: "seed002", name: "/event human_agent_requested, clientType robot", send: () => http("POST", `${rt}/event`, { type: "human_agent_requested", userId: "ann", chatKey: ctx.chatKey, clientType: "robot" })(), status: 400, code: "invalid_field" },
  { face: "seed002", name: "/send clientType a number", send: () => http("POST", `${rt}/send`, { userId: "ann", chatKey: ctx.chatKey, clientType: 5, message: { content: "x" } })(), status: 400, code: "invalid_field" },
  { face: "seed002", name: "/load with chatKey null", send: http("POST", `${rt}/load`, { userId: "ann", chatKey: null }), status: 400, code: "missing_field" },

  // ---------------------------------------------------------------- seed 002 SSE /stream
  { face: "sse", name: "/stream lastEventId beyond u64", send: () => http("GET", `${rt}/stream${q({ userId: "ann", chatKey: ctx.chatKey, lastEventId: "99999999999999999999999" })}`)(), status: 400, code: "invalid_field" },
  { face: "sse", name: "/stream Last-Event-ID negative zero-padded", send: () => http("GET", `${rt}/stream${q({ userId: "ann", chatKey: ctx.chatKey })}`, undefined, { headers: { "last-event-id": "-0001" } })(), status: 400, code: "invalid_field" },
  { face: "sse", name: "/stream chatKey blank", send: http("GET", `${rt}/stream${q({ userId: "ann", chatKey: " " })}`), status: 400, code: "missing_field" },
  { face: "sse", name: "/stream orgId of 300 bytes", send: http("GET", `${rt}/stream${q({ userId: "ann", orgId: "o".repeat(300) })}`), status: 413, code: "too_large" },
  { face: "sse", name: "/stream chatKey of 300 bytes", send: http("GET", `${rt}/stream${q({ userId: "ann", chatKey: BIG_ID })}`), status: 413, code: "too_large" },
  { face: "sse", name: "/stream clientType robot", send: http("GET", `${rt}/stream${q({ userId: "ann", clientType: "robot" })}`), status: 400, code: "invalid_field" },
  { face: "sse", name: "POST /stream", send: http("POST", `${rt}/stream`, {}), status: 405, code: "method_not_allowed" },

  // ---------------------------------------------------------------- history REST
  { face: "history", name: "list, limit 1e300", send: http("POST", hist, { limit: 1e300 }), status: 400, code: "invalid_field" },
  { face: "history", name: "list, offset 2^64 in the query", send: http("GET", `${hist}${q({ offset: "18446744073709551616" })}`), status: 400, code: "invalid_field" },
  { face: "history", name: "list, waiting \"yes\" (not a boolean)", send: http("POST", hist, { waiting: "yes" }), status: 400, code: "invalid_field" },
  { face: "history", name: "list, waiting=maybe in the query", send: http("GET", `${hist}${q({ waiting: "maybe" })}`), status: 400, code: "invalid_field" },
  { face: "history", name: "list, body JSON null", send: http("POST", hist, "null", { raw: true }), status: 400, code: "invalid_payload" },
  { face: "history", name: "messages, after beyond u64", send: () => http("GET", `${hist}/${ctx.histKey}/messages${q({ after: "99999999999999999999" })}`)(), status: 400, code: "invalid_field" },
  { face: "history", name: "messages, limit not a number", send: () => http("GET", `${hist}/${ctx.histKey}/messages${q({ limit: "ten" })}`)(), status: 400, code: "invalid_field" },
  { face: "history", name: "PATCH, title and pinned both null", send: () => http("PATCH", `${hist}/${ctx.histKey}`, { title: null, pinned: null })(), status: 400, code: "missing_field" },
  { face: "history", name: "PATCH, members a string", send: () => http("PATCH", `${hist}/${ctx.histKey}`, { members: "ann" })(), status: 400, code: "invalid_field" },
  { face: "history", name: "PATCH, a member 5.5", send: () => http("PATCH", `${hist}/${ctx.histKey}`, { members: ["ann", 5.5] })(), status: 400, code: "invalid_field" },
  { face: "history", name: "PATCH, invalid UTF-8 bytes", send: () => http("PATCH", `${hist}/${ctx.histKey}`, Buffer.from([0x7b, 0x22, 0x74, 0xff, 0x22, 0x3a, 0x31, 0x7d]), { raw: true })(), status: 400, code: "invalid_payload" },
  { face: "history", name: "PUT on the list", send: http("PUT", hist, {}), status: 405, code: "method_not_allowed" },
  // A path segment that is not UTF-8 once %-decoded: refused like any bad field, in the JSON
  // error shape (docs/protocol.md "HTTP errors").
  { face: "history", name: "GET a chatKey that %-decodes to invalid UTF-8", send: http("GET", `${hist}/%FF%FE`), status: 400, code: "invalid_field" },
  { face: "aisdk http", name: "POST …/stop on an id that %-decodes to invalid UTF-8", send: http("POST", "/api/chat/%C3%28/stop"), status: 400, code: "invalid_field" },

  // ---------------------------------------------------------------- attachments (upload, download)
  { face: "attachments", name: "upload without a file part", send: form([["chatKey", A], ["userId", "ann"]]), status: 400, code: "missing_field" },
  { face: "attachments", name: "upload without chatKey", send: form([["userId", "ann"], ["file", blob("hi"), "a.txt"]]), status: 400, code: "missing_field" },
  { face: "attachments", name: "upload, chatKey with a control character", send: form([["chatKey", "a\u0001b"], ["userId", "ann"], ["file", blob("hi"), "a.txt"]]), status: 400, code: "invalid_field" },
  { face: "attachments", name: "upload, chatKey of 300 bytes", send: form([["chatKey", BIG_ID], ["userId", "ann"], ["file", blob("hi"), "a.txt"]]), status: 413, code: "too_large" },
  { face: "attachments", name: "upload, two file parts", send: form([["chatKey", A], ["userId", "ann"], ["file", blob("a"), "a.txt"], ["file", blob("b"), "b.txt"]]), status: 400, code: "invalid_field" },
  { face: "attachments", name: "upload, an empty file", send: form([["chatKey", A], ["userId", "ann"], ["file", blob(""), "a.txt"]]), status: 400, code: "invalid_field" },
  { face: "attachments", name: "upload, an ELF executable claimed as PNG", send: form([["chatKey", A], ["userId", "ann"], ["file", blob(Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), "image/png"), "cat.png"]]), status: 415, code: "unsupported_media_type" },
  { face: "attachments", name: "upload, a JSON body (not multipart)", send: http("POST", "/api/v1/attachments", { chatKey: A, file: "aGk=" }), status: 400, code: "invalid_payload" },
  { face: "attachments", name: "upload, multipart with a broken body", send: http("POST", "/api/v1/attachments", "--nope\r\ngarbage", { raw: true, headers: { "content-type": "multipart/form-data; boundary=XyZ" } }), status: 400, code: "invalid_payload" },
  { face: "attachments", name: "download an unknown id", send: http("GET", "/api/v1/attachments/no-such-id?userId=ann"), status: 404, code: "not_found" },
  { face: "attachments", name: "PUT on the upload path", send: http("PUT", "/api/v1/attachments", {}), status: 405, code: "method_not_allowed" },
];

test(`malformed-input catalog: ${CASES.length} cases over every face, then a normal turn on each`, async (t) => {
  const faces = new Set(CASES.map((c) => c.face));
  assert.ok(CASES.length >= 40, `${CASES.length} cases`);
  assert.deepEqual([...faces].sort(), ["aisdk http", "aisdk ws", "attachments", "history", "seed002", "socket.io", "sse"]);

  // Setup: a Socket.IO connection in two chats, a seed-002 chat, an AI SDK WebSocket.
  ctx.sio = await connect(natter.url, { query: { userId: "ann" } });
  assert.equal((await ctx.sio.emit("chat:join", { chatId: A })).ok, true);
  assert.equal((await ctx.sio.emit("chat:join", { chatId: B })).ok, true);
  const create = await (await fetch(`${natter.url}${rt}/create`, { method: "POST", body: JSON.stringify({ userId: "ann" }) })).json();
  ctx.chatKey = create.chatKey;
  ctx.histKey = create.chatKey;
  const sock = new WebSocket(`${natter.url.replace("http", "ws")}/api/chat/ws?userId=ann`);
  const frames = [];
  sock.on("message", (d) => frames.push(JSON.parse(d.toString())));
  await new Promise((resolve, reject) => sock.once("open", resolve).once("error", reject));
  ctx.ws = { sock, frames };
  const headBefore = (await (await fetch(`${natter.url}${hist}/${ctx.chatKey}`)).json()).seq;

  try {
    for (const c of CASES) {
      await t.test(`[${c.face}] ${c.name} → ${c.status ? `${c.status} ` : ""}${c.code}`, async () => {
        const r = await c.send();
        assert.equal(r.code, c.code, `code (message: ${r.message})`);
        if (c.status) assert.equal(r.status, c.status, "HTTP status");
        assert.equal(typeof r.message, "string");
        assert.ok(r.message.trim().length > 0, "a human message");
      });
    }

    await t.test("nothing was stored by the refused inputs, and the connections are still up", async () => {
      const head = (await (await fetch(`${natter.url}${hist}/${ctx.chatKey}`)).json()).seq;
      assert.equal(head, headBefore, "the seed-002 chat's log did not move");
      const a = await ctx.sio.emit("chat:join", { chatId: A });
      assert.deepEqual(a.messages, [], "chat A holds no message");
      assert.equal(ctx.sio.socket.connected, true);
      assert.equal(sock.readyState, WebSocket.OPEN);
      const others = ctx.sio.events.filter((e) => !["error", "presence:update"].includes(e.event));
      assert.deepEqual(others.map((e) => e.event), [], "no chat:message / ai:* / typing from refused events");
    });

    await t.test("Socket.IO: the same connection sends a message and gets the reply", async () => {
      const requestId = uid("req");
      const ack = await ctx.sio.emit("user:message", { chatId: A, messageId: uid("m"), requestId, text: "[fake:tokens n=3] after the catalog" });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      const reply = await ctx.sio.waitFor("ai:message", (m) => m.requestId === requestId, 15000);
      assert.equal(reply.text, "t0 t1 t2 ");
    });

    await t.test("AI SDK POST /api/chat streams a finished turn", async () => {
      const res = await fetch(`${natter.url}/api/chat`, { method: "POST", body: JSON.stringify(aisdkBody({ messages: [userMsg("[fake:tokens n=3] over http")] })) });
      assert.equal(res.status, 200);
      const chunks = (await res.text()).split("\n\n").filter(Boolean).map((l) => l.replace(/^data: /, ""));
      assert.equal(chunks.at(-1), "[DONE]");
      const parsed = chunks.slice(0, -1).map((c) => JSON.parse(c));
      assert.equal(parsed.filter((c) => c.type === "text-delta").map((c) => c.delta).join(""), "t0 t1 t2 ");
      assert.equal(parsed.at(-1).type, "finish");
    });

    await t.test("AI SDK WebSocket: the same socket streams a finished turn", async () => {
      const requestId = uid("wsreq");
      const before = frames.length;
      sock.send(JSON.stringify({ type: "send", requestId, id: uid("w"), trigger: "submit-message", messages: [userMsg("[fake:tokens n=3] over ws")], headers: {}, body: { userId: "ann" } }));
      const deadline = Date.now() + 15000;
      while (!frames.slice(before).some((f) => f.type === "end" && f.requestId === requestId) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const mine = frames.slice(before).filter((f) => f.requestId === requestId);
      assert.deepEqual([mine[0]?.type, mine.at(-1)?.type], ["start", "end"], JSON.stringify(mine.map((f) => f.type)));
      const deltas = mine.filter((f) => f.type === "chunk" && f.chunk.type === "text-delta").map((f) => f.chunk.delta);
      assert.equal(deltas.join(""), "t0 t1 t2 ");
    });

    await t.test("seed 002: /send is answered over the SSE stream, and history lists the messages", async () => {
      const sse = await openSse(`${natter.url}${rt}/stream${q({ userId: "ann", chatKey: ctx.chatKey })}`);
      try {
        assert.equal(sse.status, 200);
        await sse.until((evs) => evs.some((e) => e.type === "reconnected"), 5000, "reconnected");
        const id = uid("s");
        const sent = await fetch(`${natter.url}${rt}/send`, { method: "POST", body: JSON.stringify({ userId: "ann", chatKey: ctx.chatKey, message: { id, content: "[fake:tokens n=3] over sse" } }) });
        assert.equal(sent.status, 200);
        const ai = await sse.until((evs) => evs.find((e) => e.type === "message" && e.data.message?.role === "ai"), 15000, "the reply");
        assert.equal(ai.data.message.content, "t0 t1 t2 ");
        const page = await (await fetch(`${natter.url}${hist}/${ctx.histKey}/messages${q({ after: "0" })}`)).json();
        assert.deepEqual(page.messages.map((m) => m.role), ["user", "ai"]);
        assert.equal(page.messages[0].id, id);
        const patched = await fetch(`${natter.url}${hist}/${ctx.histKey}`, { method: "PATCH", body: JSON.stringify({ title: "after the catalog" }) });
        assert.equal(patched.status, 200);
        assert.equal((await patched.json()).title, "after the catalog");
      } finally {
        sse.close();
      }
    });
  } finally {
    ctx.sio.close();
    sock.close();
  }
});
