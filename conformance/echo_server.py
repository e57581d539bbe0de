"""An echo over lexicons' own network layer, for Autobahn|Testsuite: ``echo_server.py PORT``.

Serves on 127.0.0.1:PORT (0 picks a free port) and sends every text and binary message back
unchanged, in its own type. Prints ``serving on ws://127.0.0.1:PORT`` once it listens.

TEMPORARY ADAPTATION. The network layer has no seam for an echo yet: the subclasses below
override three private methods of ``lexicons.network.Link`` so that a complete message is
written back instead of being dispatched to signals. Everything else (handshake, frames,
fragments, control frames, closing, backpressure) is today's network layer, unchanged. Its
only purpose is to measure that layer; it goes once the connection session provides the
seam.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from websockets.frames import Frame, Opcode

from lexicons.admission import SWITCHING_PROTOCOLS, Admission
from lexicons.brokers import LocalBroker
from lexicons.channels import Channels
from lexicons.connection import Connection
from lexicons.network import Buffer, Hub, Link
from lexicons.settings import Settings

#: The suite's largest message (cases 9.1.6 and 9.2.6) is 16 MiB.
MAX_SIZE = 16 * 2**20


class EchoLink(Link):
    """A Link whose complete messages are echoed instead of dispatched (temporary)."""

    __slots__ = ("_binary_message",)

    def _run_frame(self, data: Buffer) -> None:
        # A complete text message, at its turn: the same write path as any reply.
        self.send_data(bytes(data))

    def _fragment(self, frame: Frame) -> None:
        # Link joins a binary message and calls _binary() without it: keep it for the echo.
        op = self._fragment_op if frame.opcode is Opcode.CONT else frame.opcode
        if op is Opcode.BINARY and frame.fin:
            parts = (self._fragments or []) if frame.opcode is Opcode.CONT else []
            self._binary_message = b"".join([*parts, frame.data])
        super()._fragment(frame)

    def _binary(self) -> None:
        message, self._binary_message = self._binary_message, b""
        self.write_frame(Frame(Opcode.BINARY, message).serialize(mask=False))


class EchoHub(Hub):
    """A Hub that makes EchoLinks and admits every handshake."""

    def protocol(self) -> Link:
        return EchoLink(self)


def _admit(ws: Connection, request: Any, peer: str) -> Admission:
    return Admission(True, SWITCHING_PROTOCOLS, "", peer)


async def serve(port: int) -> None:
    settings = Settings(host="127.0.0.1", port=port, debug=False, max_size=MAX_SIZE).checked()
    connections: dict[str, Connection] = {}
    hub = EchoHub(
        settings=settings,
        dispatcher=None,  # type: ignore[arg-type]  # an echo dispatches nothing
        channels=Channels(connections, LocalBroker()),
        admit=_admit,
        select_subprotocol=None,
        on_connect=None,
        on_disconnect=None,
        commit=None,
        connections=connections,
    )
    server = await asyncio.get_running_loop().create_server(hub.protocol, settings.host, port)
    bound = server.sockets[0].getsockname()[1]
    print(f"serving on ws://{settings.host}:{bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: echo_server.py PORT  (0: a free port)", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(int(argv[1])))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
