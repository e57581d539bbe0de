"""The load generator's WebSocket client: callbacks only, and cheaper per message than a server.

A server is measured by the CPU it spends, so the client must never be what sets the
pace. It therefore does the least a client can: frames it sends are built (and masked)
once and written as the same bytes every time; frames it receives are never decoded,
except the few a run checks for correctness. A :class:`Client` counts frames by their
headers while a connection opens; in a measured window a :class:`Tally` takes over and
counts them by bytes alone. There is no task and no future per message, only a callback
per read. It speaks lexicons' JSON objects (``json``), the same as MessagePack
(``msgpack``) or with permessage-deflate negotiated (``deflate``), and Socket.IO events over
Engine.IO 4 (``socketio``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import zlib
from collections.abc import Callable
from typing import Any

import msgspec
from websockets.frames import Close, Frame, Opcode

__all__ = [
    "Client",
    "Deflated",
    "Dialect",
    "Tally",
    "client_frame",
    "dialect",
    "frame_length",
]

_TEXT = 0x1
_BINARY = 0x2
_CLOSE = 0x8
_RSV1 = 0x40


class Deflated(bytes):
    """A kept payload that arrived compressed (RSV1): its length is the wire's."""

    def inflated(self) -> bytes:
        return zlib.decompressobj(-15).decompress(bytes(self) + b"\x00\x00\xff\xff")


def client_frame(payload: bytes, opcode: Opcode = Opcode.TEXT) -> bytes:
    """One masked client frame, built once and reused (servers cannot tell)."""
    return Frame(opcode, payload).serialize(mask=True)


_CLOSE_FRAME = client_frame(Close(1000, "").serialize(), Opcode.CLOSE)
_KEY = base64.b64encode(os.urandom(16)).decode()


class Dialect:
    """How a client speaks to one kind of target: handshake path, messages, replies.

    ``messages`` maps a signal (``Echo``, ``Subscribe``, ``Publish``) to the bytes of the
    frame to send; ``payload_of`` recovers the decoded application payload of a received
    frame (for the correctness checks only).
    """

    #: Extra handshake headers (a subprotocol, an extension offer).
    headers = ""
    #: The opcode of the frames it sends.
    opcode = Opcode.TEXT

    def __init__(self, name: str, path: str, text: str) -> None:
        self.name = name
        self.path = path
        self.text = text
        self.frames = {
            "Echo": client_frame(self.encode("Echo", {"text": text}), self.opcode),
            "Subscribe": client_frame(self.encode("Subscribe", {"channel": "Room"}), self.opcode),
            "Publish": client_frame(self.encode("Publish", {"text": text}), self.opcode),
        }

    def encode(self, name: str, payload: Any) -> bytes:
        return msgspec.json.encode({name: payload})

    def decode(self, data: bytes) -> tuple[str, Any]:
        """``(name, payload)`` of a received message."""
        if isinstance(data, Deflated):
            data = data.inflated()
        ((name, payload),) = msgspec.json.decode(data).items()
        return name, payload

    #: Frames to expect after the HTTP upgrade before the connection is usable.
    opening = 0

    def opened(self, client: Client, data: bytes) -> bool:
        """Handle one opening frame; True when the connection is ready."""
        return True

    def request(self, port: int) -> bytes:
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n"
            f"Token: bench-token\r\n{self.headers}\r\n"
        ).encode()


class MessagePack(Dialect):
    """lexicons' messages as MessagePack in binary frames (the ``lexicons.msgpack``
    subprotocol)."""

    headers = "Sec-WebSocket-Protocol: lexicons.msgpack\r\n"
    opcode = Opcode.BINARY

    def encode(self, name: str, payload: Any) -> bytes:
        return msgspec.msgpack.encode({name: payload})

    def decode(self, data: bytes) -> tuple[str, Any]:
        ((name, payload),) = msgspec.msgpack.decode(data).items()
        return name, payload


class Deflate(Dialect):
    """lexicons' JSON with permessage-deflate offered: the server compresses what it
    sends (this client sends uncompressed frames, which the extension allows)."""

    headers = "Sec-WebSocket-Extensions: permessage-deflate\r\n"


class SocketIO(Dialect):
    """Socket.IO 5 events over Engine.IO 4, the WebSocket transport from the start."""

    opening = 2

    def encode(self, name: str, payload: Any) -> bytes:
        return b"42" + msgspec.json.encode([name, payload])

    def decode(self, data: bytes) -> tuple[str, Any]:
        if not data.startswith(b"42"):
            raise ValueError(f"not a Socket.IO event: {data[:40]!r}")
        name, payload = msgspec.json.decode(data[2:])
        return name, payload

    _CONNECT = client_frame(b"40")

    def opened(self, client: Client, data: bytes) -> bool:
        if data.startswith(b"0{"):  # Engine.IO open: now join the default namespace
            client.transport.write(self._CONNECT)
            return False
        if data.startswith(b"40"):
            return True
        raise ValueError(f"unexpected Socket.IO opening frame {data[:60]!r}")


def feed_text(size: int) -> str:
    """``size`` characters of a location feed (ids and coordinates, fixed seed): text that
    compresses as such feeds do, neither random nor one pattern repeated."""
    rng = random.Random(14)
    parts: list[str] = []
    length = 0
    while length < size:
        part = (
            f"id={rng.randrange(1000)} lat={rng.uniform(48, 49):.5f} lon={rng.uniform(2, 3):.5f};"
        )
        parts.append(part)
        length += len(part)
    return "".join(parts)[:size]


def dialect(name: str, text: str = "hello, this is a benchmark message") -> Dialect:
    """The dialect called ``name`` (``json``, ``msgpack``, ``deflate`` or ``socketio``),
    sending ``text``."""
    if name == "socketio":
        return SocketIO(name, "/socket.io/?EIO=4&transport=websocket", text)
    if name == "json":
        return Dialect(name, "/", text)
    if name == "msgpack":
        return MessagePack(name, "/", text)
    if name == "deflate":
        return Deflate(name, "/", text)
    raise ValueError(f"unknown dialect {name!r}")


#: ``on_frames(client, count)``: ``count`` complete frames arrived on ``client``.
OnFrames = Callable[[Any, int], None]


def frame_length(payload: int) -> int:
    """Bytes of an unmasked (server) frame carrying ``payload`` bytes."""
    return payload + (2 if payload < 126 else 4 if payload < 65536 else 10)


_HANDSHAKE, _OPENING, _OPEN, _CLOSING = range(4)


class Client(asyncio.Protocol):
    """One client connection, driven by callbacks.

    ``ready`` resolves when the handshake (and the dialect's opening) is done, ``closed``
    when the TCP connection is gone. Once open, each read calls ``on_frames(self,
    count)`` with the number of complete text frames; with ``keep`` set, their payloads
    are appended to ``kept`` too, for correctness checks.
    """

    __slots__ = (
        "dialect",
        "port",
        "on_frames",
        "transport",
        "ready",
        "closed",
        "stage",
        "buffer",
        "keep",
        "kept",
        "sent_at",
        "opening_left",
    )

    def __init__(self, dialect: Dialect, port: int, on_frames: OnFrames | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.dialect = dialect
        self.port = port
        self.on_frames = on_frames
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.ready: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.stage = _HANDSHAKE
        self.buffer = b""
        self.keep = False
        self.kept: list[bytes] = []
        #: When the last message was sent (``perf_counter_ns``), for latencies.
        self.sent_at = 0
        self.opening_left = dialect.opening

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(self.dialect.request(self.port))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        if self.stage is _HANDSHAKE:
            head, found, rest = buf.partition(b"\r\n\r\n")
            if not found:
                self.buffer = buf
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self._fail(ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace")))
                return
            self.stage = _OPENING if self.opening_left else _OPEN
            if self.stage is _OPEN:
                self.ready.set_result(None)
            buf = rest
        # Count complete frames by their headers; server frames are never masked.
        n = len(buf)
        pos = 0
        count = 0
        while n - pos >= 2:
            length = buf[pos + 1]
            if length < 126:
                start = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                start = pos + 4
                length = buf[pos + 2] << 8 | buf[pos + 3]
            else:
                if n - pos < 10:
                    break
                start = pos + 10
                length = int.from_bytes(buf[pos + 2 : start], "big")
            end = start + length
            if end > n:
                break
            first = buf[pos]
            opcode = first & 0x0F
            if (opcode != _TEXT and opcode != _BINARY) or self.stage is not _OPEN:
                self._special(opcode, buf[start:end])
            else:
                count += 1
                if self.keep:
                    payload = buf[start:end]
                    self.kept.append(Deflated(payload) if first & _RSV1 else payload)
            pos = end
        self.buffer = buf[pos:] if pos < n else b""
        if count and self.on_frames is not None:
            self.on_frames(self, count)

    def _special(self, opcode: int, payload: bytes) -> None:
        """A frame off the fast path: the dialect's opening, or a close."""
        if opcode == _CLOSE:
            if self.stage is not _CLOSING:
                self.stage = _CLOSING
                self.transport.write(_CLOSE_FRAME)
            return
        if self.stage is _OPENING and opcode == _TEXT:
            self.opening_left -= 1
            try:
                done = self.dialect.opened(self, payload)
            except ValueError as exc:
                self._fail(exc)
                return
            if done:
                self.stage = _OPEN
                self.ready.set_result(None)

    def send(self, frame: bytes) -> None:
        self.transport.write(frame)

    def close(self) -> None:
        """Start the closing handshake; ``closed`` resolves when the server has hung up."""
        if self.stage is not _CLOSING and not self.transport.is_closing():
            self.stage = _CLOSING
            self.transport.write(_CLOSE_FRAME)

    def eof_received(self) -> bool:
        return False  # the server hung up: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed before it was ready"))
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        self.transport.abort()

    def tally(self, length: int, on_frames: OnFrames) -> Tally:
        """Hand this connection over to a :class:`Tally` counting ``length``-byte frames."""
        if self.buffer:
            raise RuntimeError("a frame was half received when counting began")
        tally = Tally(self.transport, length, on_frames)
        self.transport.set_protocol(tally)
        return tally


#: Where every Tally's reads land: the bytes are never looked at, so one buffer serves all.
_SINK = memoryview(bytearray(256 * 1024))


class Tally(asyncio.BufferedProtocol):
    """Counts frames that all have the same length, by bytes alone: the cheapest reader.

    In a measured window every frame a client receives is the same reply or the same
    broadcast, so counting bytes is counting frames. The kernel copies into one buffer
    that is reused; nothing is allocated or parsed per read. ``pending`` is the bytes of a
    frame not complete yet: zero once a run has drained, which the scenarios check.
    """

    __slots__ = ("transport", "length", "on_frames", "pending", "sent_at")

    def __init__(self, transport: Any, length: int, on_frames: OnFrames) -> None:
        self.transport: asyncio.Transport = transport
        self.length = length
        self.on_frames = on_frames
        self.pending = 0
        #: When the last message was sent (``perf_counter_ns``), for latencies.
        self.sent_at = 0

    def get_buffer(self, sizehint: int) -> memoryview:
        return _SINK

    def buffer_updated(self, nbytes: int) -> None:
        pending = self.pending + nbytes
        if pending >= self.length:
            count, self.pending = divmod(pending, self.length)
            self.on_frames(self, count)
        else:
            self.pending = pending

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        pass
