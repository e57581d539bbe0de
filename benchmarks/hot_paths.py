"""``python -m benchmarks.hot_paths``: the JSON hot paths in process, without sockets.

Prints the CPU of one echo (decode, dispatch, encode, frame) and of one delivery of a
broadcast to 1,000 subscribers (the loop that writes each its frame, with writes that do
nothing), best of several runs so that other processes on the machine matter less. Run it
with ``PYTHONPATH=<another checkout>/src`` to compare two versions of lexicons.
"""

from __future__ import annotations

import time
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Request

from lexicons import Server
from lexicons.application import ServerApplication
from lexicons.settings import Settings

ROUNDS = 15
ECHO = b'{"Echo":{"text":"hello, this is a benchmark message"}}'
PUBLISH = b'{"Publish":{"text":"hello, this is a benchmark message"}}'


class _Port:
    def peer(self) -> str:
        return "127.0.0.1"


class _Session:
    """What a connection and a broadcast use of a session; writes go nowhere."""

    def __init__(self) -> None:
        self.port = _Port()
        self.binary = False
        self.flavour = 0
        self.is_open = True
        self.close_code = None
        self.writer = _discard

    def send(self, data: bytes, text: Any = None) -> None:
        self.writer(data)


def _discard(frame: bytes) -> None:
    pass


def main(rounds: int = ROUNDS, echoes: int = 20_000, broadcasts: int = 100) -> None:
    app = Server(debug=False)
    app.channel("Room")

    @app.signal
    def Echo(text: str) -> dict[str, str]:
        return {"text": text}

    application = ServerApplication(app, Settings(debug=False), None)

    def connect() -> Any:
        ws = application.connection(_Session(), Request("/", Headers()))  # type: ignore[arg-type]
        application.opened(ws)
        return ws

    ws = connect()
    for member in [connect() for _ in range(1000)]:
        app.channels["Room"].subscribe(member)

    def echo(count: int) -> float:
        message, dispatch = application.message, application.dispatch
        began = time.perf_counter()
        for _ in range(count):
            for item in message(ws, ECHO, True):
                dispatch(item, ws)
        return (time.perf_counter() - began) / count * 1e6

    def fanout(count: int) -> float:
        deliver = app.channels.deliver
        began = time.perf_counter()
        for _ in range(count):
            deliver(["Room"], PUBLISH)
        return (time.perf_counter() - began) / count / 1000 * 1e6

    print(f"echo        {min(echo(echoes) for _ in range(rounds)):.3f} µs per message")
    print(f"fan-out 1k  {min(fanout(broadcasts) for _ in range(rounds)):.4f} µs per delivery")


if __name__ == "__main__":
    main()
