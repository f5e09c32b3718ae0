// Seed 004's conversation view: useWebSocketChat for the live state and React Query
// (useConversationMessages, useConversations) for the lists, refreshed by the service's events.
import { useState, type FormEvent } from "react";
import { useConversationMessages, useConversations, useWebSocketChat } from "@natter/react";

const params = new URLSearchParams(window.location.search);
const defaultConversation = params.get("conversation") ?? `conv-${Math.random().toString(36).slice(2, 8)}`;

export function ConversationPage() {
  const [conversationId, setConversationId] = useState(defaultConversation);
  const conversations = useConversations();
  return (
    <section>
      <h1>Conversation {conversationId}</h1>
      <ConversationView conversationId={conversationId} />
      <div className="side">
        <b>Conversations</b>
        <ul data-testid="conversations">
          {conversations.data?.map((c) => (
            <li key={c.id}>
              <a href="#/conversations" onClick={(e) => (e.preventDefault(), setConversationId(c.id))}>
                {c.title || c.id}
              </a>{" "}
              <span className="status">{new Date(c.lastUpdated).toLocaleTimeString()}</span>
            </li>
          ))}
        </ul>
      </div>
    </section>
  );
}

function ConversationView({ conversationId }: { conversationId: string }) {
  const { state, sendMessage, sendTyping, isReady } = useWebSocketChat({ conversationId, autoConnect: true });
  const { data: messages, isLoading } = useConversationMessages(conversationId);
  const [draft, setDraft] = useState("");

  function send(e: FormEvent) {
    e.preventDefault();
    if (!draft.trim()) return;
    void sendMessage(draft.trim());
    sendTyping(false);
    setDraft("");
  }

  return (
    <>
      <p className="status" data-testid="status" data-state={isReady ? "connected" : state.isConnecting ? "connecting" : "disconnected"}>
        Status: {state.isConnected ? "Connected" : "Disconnected"}
        {isReady ? " · joined" : ""}
        {state.typingUserIds.length > 0 ? ` · ${state.typingUserIds.join(", ")} typing…` : ""}
      </p>
      {isLoading && <p className="status">loading history…</p>}
      <ul className="messages" data-testid="messages">
        {messages?.map((m) => (
          <li key={m.id} data-role={m.role}>
            <b>{m.role}:</b> {m.content}
          </li>
        ))}
        {state.streamingMessage && (
          <li className="streaming" data-testid="streaming" data-role="assistant">
            <b>assistant:</b> {state.streamingMessage.content}
          </li>
        )}
      </ul>
      {state.error && <p className="error" data-testid="error">{state.error}</p>}
      <form onSubmit={send}>
        <input
          aria-label="message"
          data-testid="input"
          value={draft}
          onChange={(e) => (setDraft(e.target.value), sendTyping(e.target.value !== ""))}
          placeholder="Say something"
        />
        <button type="submit" data-testid="send" disabled={!isReady}>
          Send Message
        </button>
      </form>
    </>
  );
}
