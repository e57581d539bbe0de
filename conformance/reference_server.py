"""The reference: an echo on the websockets library's own asyncio server.

``reference_server.py PORT`` (0 picks a free port) serves on 127.0.0.1:PORT and prints
``serving on ws://127.0.0.1:PORT`` once it listens. ``conformance/run --reference`` runs
the suite against it and the lexicons echo in one run, with the same message size limit.
"""

from __future__ import annotations

import asyncio
import sys

from echo_server import MAX_SIZE
from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, max_size=MAX_SIZE) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"serving on ws://127.0.0.1:{bound}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: reference_server.py PORT  (0: a free port)")
    try:
        asyncio.run(main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
