"""An app run as several processes sharing a broker, for the Redis and workers tests.

``whoami`` and ``join`` answer with the process id, so a test can tell which process (or
worker) a connection landed on; ``on_shutdown`` prints the pid on stdout. Tests that run
several servers in one process build their own copies with :func:`make_app`.
"""

import os
import sys

from lexicons import Response, Server


def make_app(**settings) -> Server:
    app = Server(debug=False, **settings)
    app.channel("Public")
    app.channel("Other")

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
