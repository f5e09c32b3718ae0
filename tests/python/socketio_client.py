"""python-socketio as a client of tools/socketio-protocol-server, on either transport.

Usage: socketio_client.py URL

Connects over WebSocket, over long-polling, and over polling with the upgrade; on each checks
the `auth` echo, an event with text, JSON and binary arguments coming back as `message-back`,
an ack with every argument, and a `/custom` namespace on the same connection. Exits non-zero
with a message on the first difference.
"""

import sys
import threading

import socketio


def check(url: str, transports: list[str]) -> None:
    client = socketio.Client(reconnection=False)
    got: dict[str, object] = {}
    events = {name: threading.Event() for name in ("auth", "custom_auth", "back")}

    @client.on("auth")
    def on_auth(data):
        got["auth"] = data
        events["auth"].set()

    @client.on("auth", namespace="/custom")
    def on_custom_auth(data):
        got["custom_auth"] = data
        events["custom_auth"].set()

    @client.on("message-back")
    def on_back(*args):
        got["back"] = list(args)
        events["back"].set()

    client.connect(
        url,
        transports=transports,
        namespaces=["/", "/custom"],
        auth={"token": "py-1"},
        wait_timeout=10,
    )
    try:
        for name in ("auth", "custom_auth"):
            if not events[name].wait(10):
                raise AssertionError(f"{transports}: no {name} event")
        if got["auth"] != {"token": "py-1"}:
            raise AssertionError(f"{transports}: auth echoed as {got['auth']!r}")
        client.emit("message", (1, "2", {"3": [True]}, b"\x01\x02\x03"))
        if not events["back"].wait(10):
            raise AssertionError(f"{transports}: no message-back")
        if got["back"] != [1, "2", {"3": [True]}, b"\x01\x02\x03"]:
            raise AssertionError(f"{transports}: message-back was {got['back']!r}")
        acked = client.call("message-with-ack", ("a", b"\x09"), timeout=10)
        if acked != ("a", b"\x09"):
            raise AssertionError(f"{transports}: ack was {acked!r}")
        if transports == ["polling", "websocket"] and client.transport() != "websocket":
            raise AssertionError(f"{transports}: still on {client.transport()}")
    finally:
        client.disconnect()


def main() -> None:
    url = sys.argv[1]
    for transports in (["websocket"], ["polling"], ["polling", "websocket"]):
        check(url, transports)
        print(f"ok {'+'.join(transports)}")


if __name__ == "__main__":
    main()
