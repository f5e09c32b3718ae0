export * from "./ChatEvents.js";
export { NatterError, SdkErrorCode, checkAck, toNatterError } from "./errors.js";
export { SocketService } from "./SocketService.js";
export type { EmitWithAckOptions, Handlers, IoOptions, Lazy, Listener, PayloadOf, SocketServiceOptions } from "./SocketService.js";
export { TokenAssembler } from "./TokenAssembler.js";
export type { TokenLike, TokenVerdict } from "./TokenAssembler.js";
export { AIChatSocket } from "./AIChatSocket.js";
export type {
  AIChatCallbacks,
  AIChatSocketOptions,
  AITokenUpdate,
  ChatSocketEvents,
  MarkReadParams,
  SendMessageParams,
  ToolResultParams,
} from "./AIChatSocket.js";
export { NatterChatTransport } from "./NatterChatTransport.js";
export type { NatterChatTransportOptions } from "./NatterChatTransport.js";
