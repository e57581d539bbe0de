"""One ASGI WebSocket connection, as the connection object and broadcasts see it.

:class:`AsgiSession` stands in for lexicons' network session: messages queue without
blocking and go to the ASGI server in order, from a task of their own or from the
connection's own task after a turn; a client whose unsent messages pass ``max_buffer``
is cut off; the close goes out after what was queued before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from websockets.datastructures import Headers
from websockets.http11 import Response

from ..network.frames import flavour

if TYPE_CHECKING:
    from ..metrics import Meter

__all__ = [
    "ADMITTING",
    "CLOSING",
    "ENDED",
    "OPEN",
    "AsgiSession",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "asgi_headers",
    "unframe",
]

logger = logging.getLogger("lexicons")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Where a connection is: its handshake is being checked, it is open, it is closing
#: (the close frame waits behind what was queued), or nothing more is sent.
ADMITTING, OPEN, CLOSING, ENDED = "admitting", "open", "closing", "ended"


class AsgiSession:
    """Stands in for the network session of one ASGI WebSocket connection.

    It offers what a :class:`~lexicons.Connection` and a broadcast use of a session:
    ``send`` (never blocks: messages queue and go out in order), ``writer`` (writes one
    framed broadcast), ``close``, ``is_open``, ``close_code``, ``subprotocol`` and
    ``port.peer()``. Unsent messages past ``max_buffer`` bytes cut the client off.
    With metrics on, ``meter`` counts the messages ``send`` sends (broadcasts are
    counted by the broker).
    """

    __slots__ = (
        "port",
        "writer",
        "binary",
        "flavour",
        "subprotocol",
        "close_code",
        "state",
        "in_turn",
        "cut",
        "on_cut_off",
        "_send",
        "_held",
        "_queue",
        "_queued",
        "_closing",
        "_flushing",
        "_drainer",
        "_task",
        "_max_buffer",
        "_meter",
    )

    def __init__(self, send: Send, peer: str, max_buffer: int, meter: Meter | None = None) -> None:
        self.port = _Peer(peer)
        #: Writes a framed broadcast while the connection is open; ``None`` otherwise.
        self.writer: Callable[[bytes], None] | None = None
        #: The client speaks MessagePack (binary frames); set by the application.
        self.binary = False
        #: The frames broadcasts write here (the ASGI server compresses, if anything).
        self.flavour = 0
        self.subprotocol: str | None = None
        self.close_code: int | None = None
        self.state = ADMITTING
        #: The connection's own task is running requests: it sends what they queue.
        self.in_turn = False
        #: The client was cut off for not reading.
        self.cut = False
        self.on_cut_off: Callable[[], None] | None = None
        self._send = send
        self._held: list[tuple[bytes, bool]] | None = []
        self._queue: deque[tuple[bytes, bool]] = deque()
        self._queued = 0
        self._closing: tuple[int, str] | None = None
        self._flushing = False
        #: The task sending what waits, when one does.
        self._drainer: asyncio.Task[None] | None = None
        self._task = asyncio.current_task()
        self._max_buffer = max_buffer
        self._meter = meter

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    # admission

    async def deny(self, response: Response, scope: Scope) -> None:
        """Refuse the handshake with ``response`` when the server can send one, else 403."""
        self.state = ENDED
        self._held = None
        if "websocket.http.response" not in scope.get("extensions", {}):
            await self._send({"type": "websocket.close", "code": 1008})
            return
        await self._send(
            {
                "type": "websocket.http.response.start",
                "status": response.status_code,
                "headers": asgi_headers(response.headers),
            }
        )
        await self._send({"type": "websocket.http.response.body", "body": response.body or b""})

    async def accept(self, subprotocol: str | None) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        self.subprotocol = subprotocol
        self.flavour = flavour(self.binary, 0)
        self.state = OPEN
        self.writer = self._write_frame
        held, self._held = self._held, None
        if held:  # what headers sent goes right after the accept
            self.in_turn = True
            for data, text in held:
                self._enqueue(data, text)
            self.in_turn = False
            await self.flush()

    # output

    def send(self, data: bytes) -> None:
        """Queue one message: held until admission, dropped after the close."""
        text = not self.binary
        if self.state == OPEN:
            if self._meter is not None:
                self._meter.sent += 1
            self._enqueue(data, text)
        elif self._held is not None:
            self._held.append((data, text))

    def _write_frame(self, frame: bytes) -> None:
        data, text = unframe(frame)
        self._enqueue(data, text)

    def _enqueue(self, data: bytes, text: bool) -> None:
        queue = self._queue
        if queue and self._queued + len(data) > self._max_buffer:
            # One message of any size may wait alone, as on lexicons' listener.
            self._cut_off()
            return
        queue.append((data, text))
        self._queued += len(data)
        if not self.in_turn:
            self.schedule_flush()

    @property
    def unsent(self) -> int:
        """Bytes of messages waiting to be handed to the server."""
        return self._queued

    def has_output(self) -> bool:
        """Whether output waits with nobody sending it."""
        return bool(self._queue or self._closing) and not self._flushing

    def schedule_flush(self) -> None:
        """Send what waits from a task of its own (unless one already does)."""
        if not self._flushing:
            self._flushing = True
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def flush(self) -> None:
        """Send what waits, in order, then the close frame if one is due; return once
        everything queued so far was handed to the server (a drain under way included)."""
        drainer = self._drainer
        if drainer is not None:
            await asyncio.wait({drainer})  # its end, cancelled or not; not ours
        if not self._flushing and (self._queue or self._closing):
            self._flushing = True
            await self._drain()

    async def _drain(self) -> None:
        send, queue = self._send, self._queue
        try:
            while queue:
                data, text = queue.popleft()
                self._queued -= len(data)
                if text:
                    await send({"type": "websocket.send", "text": data.decode()})
                else:
                    await send({"type": "websocket.send", "bytes": data})
            if self._closing is not None:
                code, reason = self._closing
                self._closing = None
                await send({"type": "websocket.close", "code": code, "reason": reason})
        except OSError:  # the client is gone; its disconnect event follows
            self._drop_output()
        finally:
            self._flushing = False
            if self._drainer is asyncio.current_task():
                self._drainer = None

    def _drop_output(self) -> None:
        self.writer = None
        self._queue.clear()
        self._queued = 0

    # the end

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after what was queued; during admission, refuse the handshake."""
        if self.state == OPEN:
            self.state = CLOSING
            self.writer = None
            self.close_code = code
            self._closing = (code, reason)
            if not self.in_turn:
                self.schedule_flush()
        elif self.state == ADMITTING:
            self.state = ENDED

    def _cut_off(self) -> None:
        logger.warning(
            "connection cut off: more than %d bytes unsent (the client stopped reading)",
            self._max_buffer,
        )
        if self.on_cut_off is not None:
            self.on_cut_off()
        self.cut = True
        self.end()
        if self._task is not None:
            self._task.cancel()  # it may be waiting on the client to read

    def left(self, code: int) -> None:
        """The client disconnected with ``code``."""
        if self.close_code is None:
            self.close_code = code
        self.end()

    def end(self) -> None:
        """Nothing more is sent (a send the client never took is given up)."""
        self.state = ENDED
        self._held = None
        self._closing = None
        self._drop_output()
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            drainer.cancel()


class _Peer:
    """The client's address, as the session's port gives it."""

    __slots__ = ("address",)

    def __init__(self, address: str) -> None:
        self.address = address

    def peer(self) -> str:
        return self.address


def asgi_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    """Response headers for the ASGI server, which sets ``Connection`` and ``Date`` itself."""
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers.raw_items()
        if name.lower() not in ("connection", "date")
    ]


def unframe(frame: bytes) -> tuple[bytes, bool]:
    """The payload of a frame :mod:`lexicons.network.frames` built, and whether it is text."""
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    return frame[start:], frame[0] & 0x0F == 1
