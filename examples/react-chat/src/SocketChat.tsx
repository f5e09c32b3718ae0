// Seeds 000/001: AIChatSocket from @natter/client in a React component (callbacks → state).
import { useEffect, useRef, useState, type FormEvent } from "react";
import { AIChatSocket, newMessageId } from "@natter/client";
import { SERVER_URL, USER_ID } from "./config";

interface Line {
  id: string;
  role: "user" | "assistant" | "error";
  text: string;
  streaming?: boolean;
}

const params = new URLSearchParams(window.location.search);
const CHAT_ID = params.get("chat") ?? `room-${Math.random().toString(36).slice(2, 8)}`;

export function SocketChat() {
  const socketRef = useRef<AIChatSocket | null>(null);
  const [connected, setConnected] = useState(false);
  const [lines, setLines] = useState<Line[]>([]);
  const [online, setOnline] = useState<string[]>([]);
  const [draft, setDraft] = useState("");

  useEffect(() => {
    const upsert = (line: Line) =>
      setLines((ls) => (ls.some((l) => l.id === line.id) ? ls.map((l) => (l.id === line.id ? line : l)) : [...ls, line]));
    const socket = new AIChatSocket({
      url: SERVER_URL,
      chatId: CHAT_ID,
      userId: USER_ID,
      callbacks: {
        onConnect: () => setConnected(true),
        onDisconnect: () => setConnected(false),
        onJoin: (ack) =>
          setLines(ack.messages.map((m) => ({ id: m.messageId, role: m.role === "assistant" ? "assistant" : "user", text: m.text }))),
        onPresenceUpdate: (e) => setOnline(e.onlineUserIds),
        onChatMessage: (e) => upsert({ id: e.messageId, role: "user", text: e.text }),
        onAIToken: (e) => upsert({ id: e.messageId, role: "assistant", text: e.turnText, streaming: true }),
        onAIMessage: (e) => upsert({ id: e.messageId, role: "assistant", text: e.text }),
        onAIError: (e) => upsert({ id: `error-${e.requestId}`, role: "error", text: `${e.code}: ${e.message}` }),
      },
    });
    socketRef.current = socket;
    return () => {
      socketRef.current = null;
      socket.destroy();
    };
  }, []);

  async function send(e: FormEvent) {
    e.preventDefault();
    const text = draft.trim();
    const socket = socketRef.current;
    if (!text || !socket) return;
    setDraft("");
    const messageId = newMessageId();
    setLines((ls) => [...ls, { id: messageId, role: "user", text }]);
    try {
      await socket.sendMessage({ messageId, userId: USER_ID, text });
    } catch (err) {
      setLines((ls) => [...ls, { id: `error-${messageId}`, role: "error", text: String(err) }]);
    }
  }

  return (
    <section>
      <h1>Room {CHAT_ID}</h1>
      <p className="status" data-testid="status" data-state={connected ? "connected" : "disconnected"}>
        {connected ? "connected" : "connecting…"} · online: {online.join(", ")}
      </p>
      <ul className="messages" data-testid="messages">
        {lines.map((l) => (
          <li key={l.id} data-role={l.role} className={l.streaming ? "streaming" : ""}>
            <b>{l.role}:</b> {l.text}
          </li>
        ))}
      </ul>
      <form onSubmit={send}>
        <input aria-label="message" data-testid="input" value={draft} onChange={(e) => setDraft(e.target.value)} placeholder="Ask the assistant" />
        <button type="submit" data-testid="send" disabled={!connected}>
          Send
        </button>
      </form>
    </section>
  );
}
