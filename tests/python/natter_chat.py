"""python-socketio as a client of `natter serve` (the demo provider): one chat, end to end.

Usage: natter_chat.py URL

Over WebSocket, over long-polling, and over polling with the upgrade: ann and bob join one
chat (acked, `ok: true`), ann sends `user:message` (acked with its `seq`), and both get the
reply streamed as `ai:token` events whose text adds up to the `ai:message` that ends it; bob
also gets ann's `chat:message`. An unknown event is answered with `error` and an `ok: false`
ack. Exits non-zero with a message on the first difference.
"""

import sys
import threading
import uuid

import socketio


class Member:
    """One connected user: what it received, in order."""

    def __init__(self, url: str, user: str, transports: list[str]):
        self.user = user
        self.client = socketio.Client(reconnection=False)
        self.tokens: list[str] = []
        self.messages: list[dict] = []
        self.errors: list[dict] = []
        self.done = threading.Event()
        self.chat_message = threading.Event()
        self.error = threading.Event()

        @self.client.on("ai:token")
        def on_token(e):
            self.tokens.append(e["token"])

        @self.client.on("ai:message")
        def on_ai_message(e):
            self.messages.append(e)
            self.done.set()

        @self.client.on("chat:message")
        def on_chat_message(e):
            self.chat_message.set()

        @self.client.on("error")
        def on_error(e):
            self.errors.append(e)
            self.error.set()

        self.client.connect(
            f"{url}?userId={user}", transports=transports, wait_timeout=10
        )


def check(url: str, transports: list[str]) -> None:
    chat_id = f"py-{uuid.uuid4()}"
    ann = Member(url, "ann", transports)
    bob = Member(url, "bob", transports)
    try:
        for m in (ann, bob):
            ack = m.client.call("chat:join", {"chatId": chat_id}, timeout=10)
            if not (ack.get("ok") is True and ack.get("chatId") == chat_id):
                raise AssertionError(f"{transports}: {m.user}'s join ack was {ack!r}")
        ack = ann.client.call(
            "user:message",
            {"chatId": chat_id, "messageId": str(uuid.uuid4()), "text": "hello from python"},
            timeout=10,
        )
        if not (ack.get("ok") is True and isinstance(ack.get("seq"), int)):
            raise AssertionError(f"{transports}: user:message ack was {ack!r}")
        if not bob.chat_message.wait(10):
            raise AssertionError(f"{transports}: bob got no chat:message")
        for m in (ann, bob):
            if not m.done.wait(30):
                raise AssertionError(f"{transports}: {m.user} got no ai:message")
            text = m.messages[0]["text"]
            if "".join(m.tokens) != text or not text:
                raise AssertionError(
                    f"{transports}: {m.user}'s tokens {''.join(m.tokens)!r} != {text!r}"
                )
        ack = ann.client.call("no:such:event", {}, timeout=10)
        if ack.get("ok") is not False or ack["error"]["code"] != "unknown_event":
            raise AssertionError(f"{transports}: the unknown event's ack was {ack!r}")
        if not ann.error.wait(10) or ann.errors[0]["code"] != "unknown_event":
            raise AssertionError(f"{transports}: error events {ann.errors!r}")
        if transports == ["polling", "websocket"] and ann.client.transport() != "websocket":
            raise AssertionError(f"{transports}: still on {ann.client.transport()}")
    finally:
        ann.client.disconnect()
        bob.client.disconnect()
    print(f"ok {transports}: {len(ann.tokens)} tokens each, the ai:message matches")


def main() -> None:
    url = sys.argv[1]
    for transports in (["websocket"], ["polling"], ["polling", "websocket"]):
        check(url, transports)


if __name__ == "__main__":
    main()
