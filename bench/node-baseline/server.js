// The baseline natter-bench compares Natter against: what a typical Node implementation of a
// real-time AI chat looks like. A socket.io 4.8 server that, for each user message, streams a
// completion through the official `openai` SDK and relays every delta to the chat's room.
//
// It implements only the part of Natter's Socket.IO contract the bench uses: `chat:join`,
// `user:message` → `chat:message` to the others, `ai:token`*, then `ai:message` (or `ai:error`).
// No persistence, no sequence numbers, no auth: the comparison is generous to the baseline.
//
// Env: PORT (default 4100), HOST (default 127.0.0.1), OPENAI_BASE_URL (e.g.
// http://127.0.0.1:PORT/v1), OPENAI_API_KEY (default "x"), OPENAI_MODEL (default "fake").

import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import OpenAI from "openai";
import { Server } from "socket.io";

const port = Number(process.env.PORT ?? 4100);
const host = process.env.HOST ?? "127.0.0.1";
const model = process.env.OPENAI_MODEL ?? "fake";

const openai = new OpenAI({
  baseURL: process.env.OPENAI_BASE_URL,
  apiKey: process.env.OPENAI_API_KEY ?? "x",
});

const httpServer = createServer((req, res) => {
  if (req.url === "/healthz") {
    res.end("ok\n");
  } else {
    res.writeHead(404).end();
  }
});

const io = new Server(httpServer, { cors: { origin: "*" } });

io.on("connection", (socket) => {
  const userId = socket.handshake.auth?.userId ?? socket.handshake.query.userId ?? socket.id;

  socket.on("chat:join", (payload, ack) => {
    const chatId = payload?.chatId == null ? "" : String(payload.chatId);
    if (!chatId) {
      ack?.({ ok: false, error: { code: "invalid_payload", message: "chatId is required" } });
      return;
    }
    socket.join(chatId);
    ack?.({ ok: true, chatId, seq: 0, epoch: "x", recovered: false, onlineUserIds: [], messages: [] });
  });

  socket.on("user:message", async (payload, ack) => {
    const chatId = payload?.chatId == null ? "" : String(payload.chatId);
    const { messageId, text } = payload ?? {};
    if (!chatId || !messageId || typeof text !== "string") {
      ack?.({ ok: false, error: { code: "invalid_payload", message: "chatId, messageId and text are required" } });
      return;
    }
    const requestId = payload.requestId ?? randomUUID();
    ack?.({ ok: true, messageId, seq: 0 });
    socket.to(chatId).emit("chat:message", {
      chatId,
      messageId,
      userId: payload.userId ?? userId,
      role: "user",
      text,
      createdAt: new Date().toISOString(),
      seq: 0,
    });

    const assistantId = randomUUID();
    let full = "";
    let index = 0;
    let finishReason = "stop";
    try {
      const stream = await openai.chat.completions.create({
        model,
        messages: [{ role: "user", content: text }],
        stream: true,
      });
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        const token = choice?.delta?.content;
        if (token) {
          full += token;
          io.to(chatId).emit("ai:token", { chatId, requestId, messageId: assistantId, token, index: index++ });
        }
        if (choice?.finish_reason) finishReason = choice.finish_reason;
      }
      io.to(chatId).emit("ai:message", {
        chatId,
        messageId: assistantId,
        role: "assistant",
        text: full,
        createdAt: new Date().toISOString(),
        requestId,
        finishReason,
        seq: 0,
      });
    } catch (err) {
      io.to(chatId).emit("ai:error", {
        chatId,
        code: "upstream_error",
        message: String(err?.message ?? err),
        requestId,
        retryable: true,
      });
    }
  });
});

httpServer.listen(port, host, () => {
  console.log(`listening on http://${host}:${port}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
