"""An echo over lexicons' own network layer, for Autobahn|Testsuite: ``echo_server.py PORT``.

Serves on 127.0.0.1:PORT (0 picks a free port) and sends every text and binary message back
unchanged, in its own type. Prints ``serving on ws://127.0.0.1:PORT`` once it listens.
``echo_server.py PORT --compression`` negotiates permessage-deflate, as a server with
``compression=True`` does.

It is the network layer a lexicons server runs, with another application: the session's
:class:`~lexicons.network.session.Application` seam, here answering each message with
itself instead of dispatching it to signals. Handshake, frames, fragments, UTF-8, control
frames, closing and backpressure are exactly the server's.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from lexicons.network.hub import Hub, listen
from lexicons.network.session import Application, Session
from lexicons.settings import Settings

#: The suite's largest message (cases 9.1.6 and 9.2.6) is 16 MiB.
MAX_SIZE = 16 * 2**20


class Echo(Application):
    """Admits everyone; answers every message with itself."""

    def message(self, ws: Session, data: bytes, text: bool) -> Sequence[Any]:
        ws.send(data, text)
        return ()


async def serve(port: int, compression: bool) -> None:
    settings = Settings(
        host="127.0.0.1", port=port, debug=False, max_size=MAX_SIZE, compression=compression
    ).checked()
    server = await listen(Hub(Echo(), settings), settings.host, port)
    bound = server.sockets[0].getsockname()[1]
    print(f"serving on ws://{settings.host}:{bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    compression = argv[2:] == ["--compression"]
    if len(argv) != 2 + compression or not argv[1].isdigit():
        print("usage: echo_server.py PORT [--compression]  (0: a free port)", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(int(argv[1]), compression))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
