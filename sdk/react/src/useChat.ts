// Seed 002's `useChat` (`@elqnt/chat/hooks`) on @natter/client's ChatClient.
import { useEffect, useMemo, useRef, useSyncExternalStore } from "react";
import {
  ChatClient,
  type Chat,
  type ChatEvent,
  type ChatMessage,
  type ConnectionMetrics,
  type TransportError,
  type TransportState,
  type Unsubscribe,
  type UseChatOptions,
} from "@natter/client";

export interface UseChatReturn {
  // Connection
  connect: () => Promise<void>;
  disconnect: () => void;
  connectionState: TransportState;
  isConnected: boolean;
  // Chat operations (POST under the hood, resolve from the HTTP response)
  startChat: (metadata?: Record<string, unknown>) => Promise<string>;
  loadChat: (chatKey: string) => Promise<Chat>;
  sendMessage: (content: string, attachments?: unknown[], data?: Record<string, unknown>) => Promise<void>;
  sendEvent: (event: Omit<ChatEvent, "timestamp">) => Promise<void>;
  endChat: (reason?: string) => Promise<void>;
  // Typing indicators (fire-and-forget POST /typing)
  startTyping: () => void;
  stopTyping: () => void;
  // State (auto-maintained from SSE)
  currentChat: Chat | null;
  chatKey: string | null;
  messages: ChatMessage[];
  error: TransportError | null;
  metrics: ConnectionMetrics;
  // Event subscription
  on: (eventType: string, handler: (event: ChatEvent) => void) => Unsubscribe;
  clearError: () => void;
}

/**
 * One ChatClient per mounted component (and per `baseUrl`/`orgId`/`userId`/`clientType`/
 * `transport`/`retryConfig`): its state is React state, its methods are stable, and it
 * disconnects on unmount. Callbacks and `getToken`/`token` are read fresh on every use, so
 * passing new functions each render does not reconnect. In StrictMode the double effect
 * still opens a single stream.
 */
export function useChat(options: UseChatOptions): UseChatReturn {
  const latest = useRef(options);
  latest.current = options;
  const { baseUrl, orgId, userId, clientType, transport, retryConfig, debug } = options;
  const retryKey = JSON.stringify(retryConfig ?? {});
  const client = useMemo(
    () =>
      new ChatClient({
        baseUrl,
        orgId,
        userId,
        ...(clientType !== undefined ? { clientType } : {}),
        ...(transport !== undefined ? { transport } : {}),
        ...(retryConfig !== undefined ? { retryConfig } : {}),
        ...(debug !== undefined ? { debug } : {}),
        autoConnect: false,
        onMessage: (e) => latest.current.onMessage?.(e),
        onError: (e) => latest.current.onError?.(e),
        onConnectionChange: (s) => latest.current.onConnectionChange?.(s),
        getToken: () => {
          const o = latest.current;
          return o.getToken ? o.getToken() : o.token;
        },
      }),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [baseUrl, orgId, userId, clientType, transport, retryKey, debug],
  );
  const state = useSyncExternalStore(client.subscribe, client.getState, client.getState);

  useEffect(() => {
    if (latest.current.autoConnect) void client.connect();
    return () => client.disconnect();
  }, [client]);

  return useMemo(
    () => ({
      connect: client.connect,
      disconnect: client.disconnect,
      connectionState: state.connectionState,
      isConnected: state.isConnected,
      startChat: client.startChat,
      loadChat: client.loadChat,
      sendMessage: client.sendMessage,
      sendEvent: client.sendEvent,
      endChat: client.endChat,
      startTyping: client.startTyping,
      stopTyping: client.stopTyping,
      currentChat: state.currentChat,
      chatKey: state.chatKey,
      messages: state.messages,
      error: state.error,
      metrics: state.metrics,
      on: client.on,
      clearError: client.clearError,
    }),
    [client, state],
  );
}
