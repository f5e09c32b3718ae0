// Seed 004's hooks on @natter/client's WebSocketService: useWebSocketChat (live state) and the
// TanStack Query hooks useConversationMessages / useConversations, which refresh by themselves
// when the service sees a conversation change.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { useQuery, useQueryClient, type UseQueryResult } from "@tanstack/react-query";
import { WebSocketService, type Conversation, type ConversationMessage, type WebSocketMessage } from "@natter/client";
import { release, retain } from "./retain.js";

export interface UseWebSocketChatOptions {
  conversationId: string;
  /** Connect on mount; default the config's `autoConnect` (true). */
  autoConnect?: boolean;
}

export interface WebSocketChatState {
  isConnected: boolean;
  isConnecting: boolean;
  error: string | null;
  /** The conversation: `message_received` and `message_complete` messages, oldest first, once each. */
  messages: WebSocketMessage[];
  /** The reply being written: grows with each `token`/`chunk`; `null` when none is. */
  streamingMessage: { id: string; content: string } | null;
  /** Who else is typing. */
  typingUserIds: string[];
}

export interface UseWebSocketChatReturn {
  state: WebSocketChatState;
  /** Sends a message; a failure sets `state.error` (the promise does not reject). */
  sendMessage: (content: string, metadata?: Record<string, unknown>) => Promise<void>;
  sendTyping: (isTyping: boolean) => void;
  /** Connected and joined to the conversation. */
  isReady: boolean;
  connect: () => Promise<void>;
  disconnect: () => void;
}

const idOf = (m: WebSocketMessage): string | undefined => {
  const id = m.metadata?.["messageId"];
  return typeof id === "string" ? id : undefined;
};

const seqOf = (m: WebSocketMessage): number | undefined => {
  const seq = m.metadata?.["seq"];
  return typeof seq === "number" ? seq : undefined;
};

/**
 * Replaces the message with the same id, or inserts it in `seq` order (the chat's order: our
 * own message, known from its ack, can reach us after the reply that follows it).
 */
function upsert(list: WebSocketMessage[], m: WebSocketMessage): WebSocketMessage[] {
  const id = idOf(m);
  const i = id === undefined ? -1 : list.findIndex((x) => idOf(x) === id);
  if (i !== -1) {
    const next = list.slice();
    next[i] = m;
    return next;
  }
  const seq = seqOf(m);
  const at = seq === undefined ? -1 : list.findIndex((x) => (seqOf(x) ?? -Infinity) > seq);
  if (at === -1) return [...list, m];
  return [...list.slice(0, at), m, ...list.slice(at)];
}

const errorText = (e: unknown) => (e as Error)?.message ?? String(e);

export function useWebSocketChat({ conversationId, autoConnect }: UseWebSocketChatOptions): UseWebSocketChatReturn {
  const service = WebSocketService.getInstance();
  const [state, setState] = useState<WebSocketChatState>(() => ({
    isConnected: service.isConnected(),
    isConnecting: false,
    error: null,
    messages: [],
    streamingMessage: null,
    typingUserIds: [],
  }));
  const [joined, setJoined] = useState(false);
  /** The conversation `state` describes: another one starts from empty. */
  const stateFor = useRef(conversationId);

  useEffect(() => {
    let alive = true;
    if (stateFor.current !== conversationId) {
      stateFor.current = conversationId;
      setState((s) => ({ ...s, error: null, messages: [], streamingMessage: null, typingUserIds: [] }));
    }
    const update = (fn: (s: WebSocketChatState) => WebSocketChatState) => {
      if (alive) setState(fn);
    };
    const mine = (m: WebSocketMessage) => m.conversation_id !== undefined && String(m.conversation_id) === String(conversationId);
    const me = service.getConfig().auth?.userId;
    setJoined(service.isJoined(conversationId));
    const offs = [
      service.on("connect", () => update((s) => ({ ...s, isConnected: true, isConnecting: false, error: null }))),
      service.on("disconnect", () => {
        if (alive) setJoined(false);
        update((s) => ({ ...s, isConnected: false, typingUserIds: [] }));
      }),
      service.on("joined", (m) => {
        if (!mine(m) || !alive) return;
        setJoined(true);
        const recovered = m.metadata?.["recovered"] === true;
        const history = (m.metadata?.["messages"] ?? []) as WebSocketMessage[];
        update((s) => {
          if (recovered) return s;
          // A fresh join (or one that could not recover): the server's latest messages, plus
          // any of ours it does not list yet.
          let messages = history;
          for (const x of s.messages) if (!messages.some((h) => idOf(h) === idOf(x))) messages = [...messages, x];
          return { ...s, messages, streamingMessage: null };
        });
      }),
      service.on("message_received", (m) => {
        if (mine(m)) update((s) => ({ ...s, messages: upsert(s.messages, m) }));
      }),
      ...(["token", "chunk"] as const).map((t) =>
        service.on(t, (m) => {
          if (!mine(m)) return;
          const id = idOf(m) ?? "";
          update((s) => ({
            ...s,
            streamingMessage:
              s.streamingMessage && s.streamingMessage.id === id
                ? { id, content: s.streamingMessage.content + (m.content ?? "") }
                : { id, content: m.content ?? "" },
          }));
        }),
      ),
      service.on("message_complete", (m) => {
        if (!mine(m)) return;
        update((s) => ({
          ...s,
          messages: upsert(s.messages, m),
          streamingMessage: s.streamingMessage && s.streamingMessage.id === idOf(m) ? null : s.streamingMessage,
        }));
      }),
      service.on("error", (m) => {
        if (m.conversation_id !== undefined && !mine(m)) return;
        // A failed turn ends the reply being written.
        const endsTurn = mine(m) && m.metadata?.["requestId"] !== undefined;
        update((s) => ({ ...s, isConnecting: false, error: m.content ?? "error", streamingMessage: endsTurn ? null : s.streamingMessage }));
      }),
      service.on("typing", (m) => {
        if (!mine(m)) return;
        const who = m.metadata?.["userId"];
        if (typeof who !== "string" || who === me) return;
        const typing = m.metadata?.["typing"] !== false;
        update((s) => {
          const rest = s.typingUserIds.filter((u) => u !== who);
          return { ...s, typingUserIds: typing ? [...rest, who] : rest };
        });
      }),
    ];
    retain(service);
    const shouldConnect = autoConnect ?? service.getConfig().autoConnect;
    if (shouldConnect && !service.isConnected()) {
      update((s) => ({ ...s, isConnecting: true }));
      service.connect().catch((e: unknown) => update((s) => ({ ...s, isConnecting: false, error: errorText(e) })));
    }
    service.joinConversation(conversationId).catch((e: unknown) => {
      const code = (e as { code?: string }).code;
      if (code !== "left" && code !== "disconnected") update((s) => ({ ...s, error: errorText(e) }));
    });
    return () => {
      alive = false;
      for (const off of offs) off();
      service.leaveConversation(conversationId);
      release(service);
    };
  }, [service, conversationId, autoConnect]);

  const sendMessage = useCallback(
    async (content: string, metadata?: Record<string, unknown>) => {
      try {
        await service.sendMessage(conversationId, content, metadata);
      } catch (e) {
        setState((s) => ({ ...s, error: errorText(e) }));
      }
    },
    [service, conversationId],
  );
  const sendTyping = useCallback((isTyping: boolean) => service.sendTyping(conversationId, isTyping), [service, conversationId]);
  const connect = useCallback(
    () =>
      service.connect().catch((e: unknown) => {
        setState((s) => ({ ...s, error: errorText(e) }));
      }),
    [service],
  );
  const disconnect = useCallback(() => service.disconnect(), [service]);

  return useMemo(
    () => ({ state, sendMessage, sendTyping, isReady: joined && state.isConnected, connect, disconnect }),
    [state, sendMessage, sendTyping, joined, connect, disconnect],
  );
}

/** Keeps the service connected and in `conversationId` while mounted, and runs `onChange` on its changes. */
function useLiveConversation(conversationId: string | undefined, onChange: (id: string) => void): void {
  const service = WebSocketService.getInstance();
  useEffect(() => {
    const off = service.onConversationChange(onChange);
    retain(service);
    if (service.getConfig().autoConnect && !service.isConnected()) service.connect().catch(() => undefined);
    if (conversationId) service.joinConversation(conversationId).catch(() => undefined);
    return () => {
      off();
      if (conversationId) service.leaveConversation(conversationId);
      release(service);
    };
  }, [service, conversationId, onChange]);
}

/**
 * The conversation's messages over the history REST, oldest first (query key
 * `["conversations", conversationId, "messages"]`), refetched whenever a message or reply
 * arrives in it. Needs a QueryClientProvider.
 */
export function useConversationMessages(conversationId: string): UseQueryResult<ConversationMessage[], Error> {
  const service = WebSocketService.getInstance();
  const queryClient = useQueryClient();
  const queryKey = useMemo(() => ["conversations", conversationId, "messages"] as const, [conversationId]);
  const onChange = useCallback(
    (id: string) => {
      if (id === String(conversationId)) void queryClient.invalidateQueries({ queryKey });
    },
    [queryClient, queryKey, conversationId],
  );
  useLiveConversation(conversationId || undefined, onChange);
  return useQuery({
    queryKey,
    queryFn: () => service.fetchConversationMessages(conversationId),
    enabled: Boolean(conversationId),
  });
}

/**
 * The chat list (query key `["conversations"]`), refetched whenever a conversation the service
 * is in changes. Needs a QueryClientProvider.
 */
export function useConversations(): UseQueryResult<Conversation[], Error> {
  const service = WebSocketService.getInstance();
  const queryClient = useQueryClient();
  const onChange = useCallback(() => void queryClient.invalidateQueries({ queryKey: ["conversations"], exact: true }), [queryClient]);
  useLiveConversation(undefined, onChange);
  return useQuery({ queryKey: ["conversations"], queryFn: () => service.fetchConversations() });
}
