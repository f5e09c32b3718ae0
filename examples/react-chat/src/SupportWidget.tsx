// Seed 002's support widget: useChat (POST + SSE) and useChatHistory.
import { useEffect, useRef, useState, type FormEvent } from "react";
import { useChat, useChatHistory, type ChatSummary } from "@natter/react";
import { ORG_ID, SERVER_URL, USER_ID } from "./config";

export function SupportWidget() {
  const chat = useChat({
    baseUrl: `${SERVER_URL}/api/v1/chat`, // the chat prefix, not the server root
    orgId: ORG_ID,
    userId: USER_ID,
    autoConnect: true,
    getToken: async () => null, // with auth on: return a token for this org and user
  });
  const history = useChatHistory({ baseUrl: SERVER_URL, orgId: ORG_ID });
  const [thinking, setThinking] = useState(false);
  const [draft, setDraft] = useState("");
  const [recent, setRecent] = useState<ChatSummary[]>([]);
  const typingTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  useEffect(() => chat.on("agent_execution_started", () => setThinking(true)), [chat.on]);
  useEffect(() => chat.on("agent_execution_ended", () => setThinking(false)), [chat.on]);
  useEffect(() => () => clearTimeout(typingTimer.current), []);

  const refreshRecent = () => void history.getChatsByUser(USER_ID).then(setRecent);
  useEffect(refreshRecent, [history.getChatsByUser]); // eslint-disable-line react-hooks/exhaustive-deps

  async function send(e: FormEvent) {
    e.preventDefault();
    const text = draft.trim();
    if (!text) return;
    setDraft("");
    chat.stopTyping();
    if (!chat.chatKey) await chat.startChat({ source: "react-chat example" });
    await chat.sendMessage(text).catch(() => undefined); // a failure shows in chat.error
    refreshRecent();
  }

  function onDraft(value: string) {
    setDraft(value);
    if (!chat.chatKey) return;
    chat.startTyping();
    clearTimeout(typingTimer.current);
    typingTimer.current = setTimeout(() => chat.stopTyping(), 1500);
  }

  return (
    <section>
      <h1>Support</h1>
      <p className="status" data-testid="status" data-state={chat.connectionState}>
        {chat.connectionState}
        {chat.chatKey ? ` · chat ${chat.chatKey.slice(0, 8)}` : ""}
      </p>
      <ul className="messages" data-testid="messages">
        {chat.messages.map((m) => (
          <li key={m.id} data-role={m.role} data-status={m.status}>
            <b>{m.role === "ai" ? "Assistant" : m.senderId}:</b> {m.content}
          </li>
        ))}
      </ul>
      {thinking && <p className="thinking">…thinking</p>}
      {chat.error && (
        <p className="error" data-testid="error">
          {chat.error.code}: {chat.error.message} <button onClick={chat.clearError}>dismiss</button>
        </p>
      )}
      <form onSubmit={send}>
        <input aria-label="message" data-testid="input" value={draft} onChange={(e) => onDraft(e.target.value)} placeholder="How can we help?" />
        <button type="submit" data-testid="send" disabled={!chat.isConnected}>
          Send
        </button>
        <button type="button" disabled={!chat.chatKey} onClick={() => void chat.endChat("resolved").catch(() => undefined)}>
          End
        </button>
      </form>
      <div className="side">
        <b>Your chats</b> {history.error && <span className="error">({history.error})</span>}
        <ul data-testid="recent">
          {recent.map((c) => (
            <li key={c.chatKey}>
              <a href="#/support" onClick={(e) => (e.preventDefault(), void chat.loadChat(c.chatKey).catch(() => undefined))}>
                {c.title || c.chatKey}
              </a>{" "}
              <span className="status">{c.status}</span>
            </li>
          ))}
        </ul>
      </div>
    </section>
  );
}
