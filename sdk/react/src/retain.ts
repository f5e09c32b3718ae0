// Which hooks use the WebSocketService: when the last one that connected it unmounts, the
// connection is closed (after a tick, so StrictMode's unmount/remount keeps it).
import type { WebSocketService } from "@natter/client";

const users = new Map<WebSocketService, number>();

export function retain(service: WebSocketService): void {
  users.set(service, (users.get(service) ?? 0) + 1);
}

export function release(service: WebSocketService): void {
  const n = (users.get(service) ?? 1) - 1;
  if (n > 0) {
    users.set(service, n);
    return;
  }
  users.delete(service);
  setTimeout(() => {
    if (!users.has(service)) service.disconnect();
  }, 0);
}
