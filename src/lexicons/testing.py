"""Test an application over real sockets, inside the test's event loop.

::

    from lexicons.testing import TestClient

    async def test_echo():
        async with TestClient(app) as client:
            alice = await client.connect()
            assert await alice.call("echo", text="hi") == {"text": "hi"}

The server listens on an ephemeral port on 127.0.0.1; clients are real WebSocket
connections (the ``websockets`` client), so handshake checks, channels and the wire
protocol are exercised exactly as in production.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from .errors import SignalError

if TYPE_CHECKING:
    from .lifecycle import Running
    from .server import Server

__all__ = ["HandshakeFailed", "Peer", "TestClient"]

#: Default seconds to wait for an expected message before failing the test.
TIMEOUT = 5.0


class HandshakeFailed(Exception):
    """The server refused the connection; ``status`` and ``body`` say how."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"handshake refused: {status} {body.strip()}")


class TestClient:
    """Run ``app`` on 127.0.0.1 for the duration of an ``async with`` block.

    Keyword arguments override settings for this run (``debug=False``, ``durable=True``...).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, app: Server, **settings: Any) -> None:
        self.app = app
        self._settings = {"host": "127.0.0.1", "port": 0, **settings}
        self.running: Running | None = None
        self._peers: list[Peer] = []

    async def __aenter__(self) -> TestClient:
        self.running = await self.app.serve(**self._settings).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for peer in self._peers:
            await peer.close()
        if self.running is not None:
            await self.running.close()

    @property
    def url(self) -> str:
        assert self.running is not None, "use TestClient in an async with block"
        return self.running.url

    async def connect(
        self,
        path: str = "/",
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] | None = None,
        origin: str | None = None,
    ) -> Peer:
        """Open a WebSocket to the app, with optional handshake credentials.

        Raises :class:`HandshakeFailed` when the server answers with an HTTP error.
        """
        url = self.url.rstrip("/") + path
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        extra = dict(headers or {})
        if cookies:
            extra["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        try:
            ws = await connect(
                url,
                additional_headers=extra,
                subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
                origin=origin,  # type: ignore[arg-type]
                ssl=None,
                open_timeout=TIMEOUT,
                compression=None,
            )
        except InvalidStatus as exc:
            body = exc.response.body.decode(errors="replace") if exc.response.body else ""
            raise HandshakeFailed(exc.response.status_code, body) from None
        peer = Peer(ws)
        self._peers.append(peer)
        return peer


class Peer:
    """One connected test client: send signals, receive messages, assert silence."""

    __test__ = False

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._backlog: deque[Any] = deque()
        self._refs = itertools.count(1)

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server selected."""
        return self.ws.subprotocol

    async def send(self, signal: str, **payload: Any) -> None:
        """Send ``{signal: payload}``."""
        await self.ws.send(json.dumps({signal: payload}))

    async def send_raw(self, data: str | bytes | Any) -> None:
        """Send a frame as given: text, bytes, or any JSON value (encoded here)."""
        if not isinstance(data, str | bytes):
            data = json.dumps(data)
        await self.ws.send(data)

    async def receive(self, timeout: float = TIMEOUT) -> Any:
        """The next message, decoded; fails the test after ``timeout`` seconds."""
        if self._backlog:
            return self._backlog.popleft()
        return await self._read(timeout)

    async def call(self, signal: str, timeout: float = TIMEOUT, **payload: Any) -> Any:
        """Send a request with a fresh ``ref`` and return its reply's payload.

        Messages that arrive meanwhile are kept for :meth:`receive`. An error frame for
        this request raises :class:`~lexicons.errors.SignalError` with its code.
        """
        ref = next(self._refs)
        await self.ws.send(json.dumps({signal: payload, "ref": ref}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message = await self._read(max(deadline - loop.time(), 0.001))
            if isinstance(message, dict) and message.get("ref") == ref:
                if "Errors" in message:
                    error = message["Errors"][0]
                    raise SignalError(error["code"], error["message"])
                return message[signal]
            self._backlog.append(message)

    async def assert_nothing_received(self) -> None:
        """Fail if any message is waiting.

        A ping's pong comes back after everything the server wrote before it, so once it
        arrives any message sent earlier has arrived too: no sleeping, no guessing.
        """
        assert not self._backlog, f"expected nothing, received {self._backlog[0]!r}"
        pong = await self.ws.ping()
        await asyncio.wait_for(pong, TIMEOUT)
        try:
            message = await asyncio.wait_for(self.ws.recv(), 0.01)
        except TimeoutError:
            return
        raise AssertionError(f"expected nothing, received {message!r}")

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
        """Wait for the server to close the connection; return (code, reason)."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code, rcvd.reason) if rcvd else (None, None)

    async def close(self) -> None:
        """Close the connection (harmless when already closed)."""
        await self.ws.close()

    async def _read(self, timeout: float) -> Any:
        try:
            data = await asyncio.wait_for(self.ws.recv(), timeout)
        except TimeoutError:
            raise AssertionError(f"no message within {timeout:g} s") from None
        return json.loads(data)
