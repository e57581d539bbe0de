"""An app run as several processes sharing a broker, for the Redis and workers tests.

``whoami`` and ``join`` answer with the process id, so a test can tell which process (or
worker) a connection landed on; ``on_shutdown`` prints the pid on stdout. Tests that run
several servers in one process build their own copies with :func:`make_app`.

``Hist`` keeps history; clients may join ``room:<id>`` channels (history and presence,
``info`` being the name a client gives with ``name``).
"""

import os
import sys

from lexicons import History, Response, Server


def make_app(**settings) -> Server:
    app = Server(debug=False, **settings)
    app.channel("Public")
    app.channel("Other")
    app.channel("Hist", history=History(100_000))
    app.channel("room:{id}", history=History(1000, age=600), presence=True, join=True)

    @app.presence
    def info(ws) -> str:
        return ws.state.get("name", "?")

    @app.signal
    def name(ws, name: str) -> int:
        ws.state["name"] = name
        return os.getpid()

    @app.signal
    def whoami() -> int:
        return os.getpid()

    @app.signal
    def join(ws, sv, channels: list[str]) -> int:
        for name in channels:
            sv.channels[name].subscribe(ws.pk)
        return os.getpid()

    @app.signal
    def leave(ws, sv, channels: list[str]) -> bool:
        for name in channels:
            sv.channels[name].unsubscribe(ws.pk)
        return True

    @app.signal
    def say(publisher: str, seq: int, channels: list[str]) -> Response:
        return Response({"publisher": publisher, "seq": seq}, channels)

    @app.signal
    async def count(sv, channel: str) -> int:
        return await sv.channels[channel].count()

    @app.on_shutdown
    def goodbye() -> None:
        # One write: the workers share stdout, and print() may write in two pieces.
        sys.stdout.write(f"on_shutdown {os.getpid()}\n")
        sys.stdout.flush()

    return app


app = make_app()

if __name__ == "__main__":
    app.run(sys.argv[1:])
