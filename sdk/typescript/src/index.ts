export * from "./ChatEvents.js";
export { NatterError, SdkErrorCode, checkAck, toNatterError } from "./errors.js";
export {
  ATTACHMENTS_PATH,
  AttachmentTooLargeError,
  AttachmentUploadError,
  UnsupportedMediaTypeError,
  attachmentIdOf,
  attachmentRefs,
  attachmentsEndpoint,
  dataUrlToBlob,
  uploadAttachment,
} from "./attachments.js";
export type { AttachmentProcessingState, AttachmentRef, UploadAttachmentOptions, UploadIdentity, UploadedAttachment } from "./attachments.js";
export { SocketService } from "./SocketService.js";
export type { EmitWithAckOptions, Handlers, IoOptions, Lazy, Listener, PayloadOf, SocketServiceOptions } from "./SocketService.js";
export { TokenAssembler } from "./TokenAssembler.js";
export type { TokenLike, TokenVerdict } from "./TokenAssembler.js";
export { AIChatSocket } from "./AIChatSocket.js";
export type {
  AIChatCallbacks,
  ReactionParams,
  AIChatSocketOptions,
  AITokenUpdate,
  ChatSocketEvents,
  MarkReadParams,
  SendMessageParams,
  ToolResultParams,
  UploadAttachmentParams,
} from "./AIChatSocket.js";
export { NatterChatTransport } from "./NatterChatTransport.js";
export type { NatterChatTransportOptions } from "./NatterChatTransport.js";
export { ChatClient, newMessageId } from "./chat/ChatClient.js";
export type { ChatClientOptions, ChatClientState } from "./chat/ChatClient.js";
export { ChatHistoryClient } from "./chat/ChatHistoryClient.js";
export type { ChatHistoryState } from "./chat/ChatHistoryClient.js";
export { ChatRequestError } from "./chat/http.js";
export { EventSourceTransport, FetchSseTransport } from "./chat/transports.js";
export * from "./chat/types.js";
export { WebSocketService, configureWebSocket } from "./WebSocketService.js";
export type {
  Conversation,
  ConversationMessage,
  WebSocketConfig,
  WebSocketEventType,
  WebSocketHandler,
  WebSocketMessage,
  WebSocketMessageType,
} from "./WebSocketService.js";
