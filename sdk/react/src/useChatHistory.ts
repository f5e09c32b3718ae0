// Seed 002's `useChatHistory` on @natter/client's ChatHistoryClient: calls never throw.
import { useMemo, useRef, useSyncExternalStore } from "react";
import { ChatHistoryClient, type ChatHistoryResult, type ChatSummary, type UseChatHistoryOptions } from "@natter/client";

export interface UseChatHistoryReturn {
  /** POST /api/v1/chats; `{chats: [], total: 0, hasMore: false}` on failure. */
  getChatHistory: (params?: { limit?: number; offset?: number; skipCache?: boolean }) => Promise<ChatHistoryResult>;
  /** GET /api/v1/chats/{chatKey}; `null` on failure. */
  getChat: (chatKey: string) => Promise<ChatSummary | null>;
  /** PATCH /api/v1/chats/{chatKey}; `false` on failure. */
  updateChat: (chatKey: string, updates: { title?: string; pinned?: boolean }) => Promise<boolean>;
  /** DELETE /api/v1/chats/{chatKey}; `false` on failure. */
  deleteChat: (chatKey: string) => Promise<boolean>;
  /** GET /api/v1/chats/user/{userId}; `[]` on failure. */
  getChatsByUser: (userEmail: string) => Promise<ChatSummary[]>;
  /** True while a call runs. */
  loading: boolean;
  /** The last failure as `"code: message"`; cleared when a call starts. */
  error: string | null;
}

export function useChatHistory(options: UseChatHistoryOptions): UseChatHistoryReturn {
  const latest = useRef(options);
  latest.current = options;
  const { baseUrl, orgId } = options;
  const client = useMemo(
    () =>
      new ChatHistoryClient({
        baseUrl,
        orgId,
        getToken: () => {
          const o = latest.current;
          return o.getToken ? o.getToken() : o.token;
        },
      }),
    [baseUrl, orgId],
  );
  const state = useSyncExternalStore(client.subscribe, client.getState, client.getState);
  return useMemo(
    () => ({
      getChatHistory: client.getChatHistory,
      getChat: client.getChat,
      updateChat: client.updateChat,
      deleteChat: client.deleteChat,
      getChatsByUser: client.getChatsByUser,
      loading: state.loading,
      error: state.error,
    }),
    [client, state],
  );
}
