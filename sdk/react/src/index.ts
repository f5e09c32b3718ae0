export { useChat } from "./useChat.js";
export type { UseChatReturn } from "./useChat.js";
export { useChatHistory } from "./useChatHistory.js";
export type { UseChatHistoryReturn } from "./useChatHistory.js";
export { useWebSocketChat, useConversationMessages, useConversations } from "./useWebSocketChat.js";
export type { UseWebSocketChatOptions, UseWebSocketChatReturn, WebSocketChatState } from "./useWebSocketChat.js";
// The seeds' types and classes, so `@natter/react` is the only import a seed's code needs.
export {
  ChatClient,
  ChatHistoryClient,
  WebSocketService,
  configureWebSocket,
} from "@natter/client";
export type {
  Attachment,
  Chat,
  ChatEvent,
  ChatEventTypeTS,
  ChatHistoryResult,
  ChatMessage,
  ChatRoleTS,
  ChatStatusTS,
  ChatSummary,
  ChatTransport,
  ConnectionMetrics,
  Conversation,
  ConversationMessage,
  EmojiReaction,
  MessageStatusTS,
  RetryConfig,
  ToolCall,
  TransportError,
  TransportState,
  Unsubscribe,
  UseChatHistoryOptions,
  UseChatOptions,
  WebSocketConfig,
  WebSocketMessage,
  WebSocketMessageType,
} from "@natter/client";
