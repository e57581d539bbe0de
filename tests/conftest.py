"""Shared fixtures: a fresh app per test, and a running TestClient over real sockets."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from lexicons import Server
from lexicons.testing import TestClient


@pytest.fixture
def app(tmp_path: object) -> Server:
    """A new application with its data directory under the test's tmp_path."""
    return Server(data=str(tmp_path), debug=True)


@pytest.fixture
async def client(app: Server) -> AsyncIterator[TestClient]:
    """``app`` served on 127.0.0.1:<ephemeral> for the duration of the test."""
    async with TestClient(app) as test_client:
        yield test_client


def redis_available(host: str = "127.0.0.1", port: int = 6379) -> bool:
    """Whether a Redis server answers on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def chromium_path() -> str | None:
    """Debian's Chromium, when installed."""
    return shutil.which("chromium")


__all__ = ["chromium_path", "redis_available", "subprocess"]


class RawClient:
    """A WebSocket client driven frame by frame, for what a polite client never does.

    It speaks through websockets' Sans-I/O ``ClientProtocol`` over a plain asyncio
    stream, so a test can send fragments, skip pongs, stop reading, or drop the TCP
    connection without a closing handshake.
    """

    def __init__(self, reader: Any, writer: Any, protocol: Any) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = protocol
        self.events: list[Any] = []

    @classmethod
    async def connect(cls, url: str, rcvbuf: int | None = None, **headers: str) -> RawClient:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        uri = parse_uri(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        protocol = ClientProtocol(uri, max_size=None)
        request = protocol.connect()
        for name, value in headers.items():
            request.headers[name.replace("_", "-")] = value
        protocol.send_request(request)
        client = cls(reader, writer, protocol)
        await client.flush()
        response = await client.next_event()
        assert getattr(response, "status_code", None) == 101, response
        return client

    async def flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
            elif self.writer.can_write_eof():
                self.writer.write_eof()
        await self.writer.drain()

    async def next_event(self, timeout: float = 5.0) -> Any:
        """The next event (a Response or a Frame); None at EOF."""
        while not self.events:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                self.protocol.receive_eof()
                await self.flush()
                return None
            self.protocol.receive_data(data)
            self.events.extend(self.protocol.events_received())
            await self.flush()
        return self.events.pop(0)

    async def next_message(self, timeout: float = 5.0) -> Any:
        """The next text message, decoded; control frames are skipped."""
        from websockets.frames import Opcode

        while True:
            event = await self.next_event(timeout)
            if event is None:
                raise EOFError("connection closed")
            if event.opcode is Opcode.TEXT:
                return json.loads(event.data)

    async def close_code(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; return the close code it sent."""
        from websockets.frames import Close, Opcode

        code = None
        while True:
            event = await self.next_event(timeout)
            if event is None:
                return code
            if getattr(event, "opcode", None) is Opcode.CLOSE:
                code = Close.parse(event.data).code

    def abort(self) -> None:
        self.writer.transport.abort()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[..., Awaitable[RawClient]]]:
    """Open RawClients; every one is dropped at the end of the test."""
    opened: list[RawClient] = []

    async def open_raw(url: str, **kwargs: Any) -> RawClient:
        client = await RawClient.connect(url, **kwargs)
        opened.append(client)
        return client

    yield open_raw
    for client in opened:
        client.abort()
