"""Test an application over real sockets, inside the test's event loop.

::

    from lexicons.testing import TestClient

    async def test_echo():
        async with TestClient(app) as client:
            alice = await client.connect()
            assert await alice.call("echo", text="hi") == {"text": "hi"}

    def test_echo_sync():                       # a plain test: the server runs in a thread
        with TestClient(app) as client:
            alice = client.connect()
            assert alice.call("echo", text="hi") == {"text": "hi"}

The server listens on an ephemeral port on 127.0.0.1; clients are real WebSocket
connections (the ``websockets`` client), so handshake checks, channels and the wire
protocol are exercised exactly as in production.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import ssl as ssl_module
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .client import Encoding, open_connection, raise_for_errors
from .codecs import MSGPACK_SUBPROTOCOL
from .errors import HandshakeRejected
from .security import WireLogFilter

if TYPE_CHECKING:
    from .lifecycle import Running
    from .server import Server

__all__ = [
    "BlockingClient",
    "BlockingPeer",
    "HandshakeFailed",
    "HttpResponse",
    "Peer",
    "TestClient",
]

T = TypeVar("T")

#: Default seconds to wait for an expected message before failing the test.
TIMEOUT = 5.0

# The websockets client logs its handshake (query string, cookies, credential
# subprotocols) at debug level; test runs keep logs in CI, so the same filter as the
# server's keeps credentials out of them.
_client_logger = logging.getLogger("lexicons.testing")
_client_logger.addFilter(WireLogFilter())


class HandshakeFailed(HandshakeRejected):
    """The server refused the connection; ``status`` and ``body`` say how."""

    def __init__(self, status: int, body: str) -> None:
        self.body = body
        super().__init__(status, body.strip())


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A plain HTTP answer from the app's port (health check, static files)."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


class TestClient:
    """Run ``app`` on 127.0.0.1 for the duration of an ``async with`` (or ``with``) block.

    Keyword arguments override settings for this run (``debug=False``, ``durable=True``,
    ``data=tmp_path``...). Unless ``data`` is given, the app's data lives in a new
    temporary directory, removed at the end of the block: a test never reads or writes
    the data of a development server, and runs the same every time. ``async with``
    serves inside the test's event loop and gives this object; plain ``with`` serves
    from a background thread and gives a :class:`BlockingClient` for synchronous tests.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, app: Server, **settings: Any) -> None:
        self.app = app
        self._settings = {"host": "127.0.0.1", "port": 0, **settings}
        self.running: Running | None = None
        self._peers: list[Peer] = []
        self._blocking: BlockingClient | None = None
        self._data: tempfile.TemporaryDirectory[str] | None = None

    async def __aenter__(self) -> TestClient:
        settings = dict(self._settings)
        if "data" not in settings and self.app.owns_database:
            self._data = tempfile.TemporaryDirectory(prefix="lexicons-test-")
            settings["data"] = self._data.name
        try:
            self.running = await self.app.serve(**settings).start()
        except BaseException:
            self._remove_data()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            for peer in self._peers:
                await peer.close()
            if self.running is not None:
                await self.running.close()
        finally:
            self._remove_data()

    def _remove_data(self) -> None:
        if self._data is not None:
            self._data.cleanup()
            self._data = None

    def __enter__(self) -> BlockingClient:
        self._blocking = BlockingClient(self)
        return self._blocking

    def __exit__(self, *exc_info: object) -> None:
        assert self._blocking is not None
        self._blocking.stop()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/`` of the running app."""
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
        ssl: ssl_module.SSLContext | None = None,
        encoding: Encoding = "json",
        compression: bool = False,
    ) -> Peer:
        """Open a WebSocket to the app, with optional handshake credentials.

        ``ssl`` is the client's TLS context for an app served with ``protocol="wss"``, for
        example one trusting a test CA (``trustme.CA().configure_trust(context)``).
        ``encoding="msgpack"`` offers MessagePack and ``compression=True``
        permessage-deflate, as :class:`~lexicons.Client` does. Raises
        :class:`HandshakeFailed` when the server answers with an HTTP error.
        """
        # websockets refuses ssl=None for a wss:// URL; without a context it makes a default one.
        tls: dict[str, Any] = {"ssl": ssl} if ssl is not None else {}
        try:
            ws = await open_connection(
                self.url.rstrip("/") + path,
                headers=headers,
                query=query,
                cookies=cookies,
                subprotocols=subprotocols,
                origin=origin,
                timeout=TIMEOUT,
                encoding=encoding,
                compression=compression,
                logger=_client_logger,
                **tls,
            )
        except HandshakeRejected as exc:
            raise HandshakeFailed(exc.status, exc.reason) from None
        peer = Peer(ws)
        self._peers.append(peer)
        return peer

    async def get(self, path: str = "/", headers: Mapping[str, str] | None = None) -> HttpResponse:
        """Send a plain HTTP GET to the app's port: ``/healthz``, or a ``static`` file."""
        address = urlsplit(self.url)
        assert address.hostname is not None and address.port is not None
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        lines = [f"GET {path} HTTP/1.1", f"Host: {address.netloc}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            data = await asyncio.wait_for(reader.read(), TIMEOUT)  # the server closes after it
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        return HttpResponse(int(status_line.split()[1]), fields, body)


class Peer:
    """One connected test client: send signals, receive messages, assert silence.

    It speaks JSON in text frames, or MessagePack in binary frames when the server
    selected ``lexicons.msgpack``; a frame of the other kind fails the test. Messages
    read while looking for something else (a reply to :meth:`call`, a signal
    given to :meth:`expect`) are kept, in order, for :meth:`receive`. ``positions`` holds,
    per channel subscribed with :meth:`subscribe`, the epoch of its answer and the offset
    of the last frame read from it, so :meth:`resume` on a new peer recovers from there.
    """

    __test__ = False

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        #: Whether this peer speaks MessagePack (the server selected it).
        self.binary = ws.subprotocol == MSGPACK_SUBPROTOCOL
        self._backlog: deque[Any] = deque()
        self._refs = itertools.count(1)
        #: ``[epoch, offset]`` by channel: where this client is in each channel's history.
        self.positions: dict[str, list[Any]] = {}

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server selected."""
        return self.ws.subprotocol

    async def send(self, signal: str, **payload: Any) -> None:
        """Send ``{signal: payload}``."""
        await self.send_raw({signal: payload})

    async def send_raw(self, data: str | bytes | Any) -> None:
        """Send a frame as given: text, bytes, or any value (encoded here, as JSON text or
        MessagePack bytes)."""
        if not isinstance(data, str | bytes):
            data = msgspec.msgpack.encode(data) if self.binary else json.dumps(data)
        await self.ws.send(data)

    async def receive(self, timeout: float = TIMEOUT) -> Any:
        """The next message, decoded; fails the test after ``timeout`` seconds."""
        if self._backlog:
            return self._backlog.popleft()
        return await self._read(timeout)

    async def expect(self, signal: str, timeout: float = TIMEOUT) -> Any:
        """The payload of the next message named ``signal`` (a broadcast, a notice).

        Other messages stay queued for :meth:`receive`; fails the test after ``timeout``.
        """
        message = await self._first(lambda m: isinstance(m, dict) and signal in m, timeout)
        return message[signal]

    async def call(self, signal: str, timeout: float = TIMEOUT, **payload: Any) -> Any:
        """Send a request with a fresh ``ref`` and return its reply's payload.

        An error frame for this request raises :class:`~lexicons.errors.SignalError` with
        its code. A signal that broadcasts (returns a ``Response``) sends no reply: use
        :meth:`send` and :meth:`expect` for it.
        """
        ref = next(self._refs)
        await self.send_raw({signal: payload, "ref": ref})
        message = await self._first(lambda m: isinstance(m, dict) and m.get("ref") == ref, timeout)
        raise_for_errors(message)
        return message[signal]

    async def subscribe(self, channel: str, since: tuple[str, int] | None = None) -> Any:
        """``$subscribe`` to ``channel`` (after ``since``, an ``(epoch, offset)``); the answer.

        Refusals raise :class:`~lexicons.errors.SignalError` (``forbidden``...).
        """
        payload: dict[str, Any] = {"channel": channel}
        if since is not None:
            payload["since"] = {"epoch": since[0], "offset": since[1]}
        answer = await self.call("$subscribe", **payload)
        self.positions[channel] = [answer["epoch"], answer["offset"]]
        return answer

    async def unsubscribe(self, channel: str) -> Any:
        """``$unsubscribe`` from ``channel``."""
        self.positions.pop(channel, None)
        return await self.call("$unsubscribe", channel=channel)

    async def presence(self, channel: str) -> list[Any]:
        """The members of ``channel`` (``{"pk", "info"}`` each), by ``$presence``."""
        return list((await self.call("$presence", channel=channel))["members"])

    async def resume(self, earlier: Peer) -> dict[str, Any]:
        """Subscribe to the channels ``earlier`` was in, from where it stopped reading.

        Returns the answers by channel (``recovered`` says whether nothing was lost).
        """
        return {
            channel: await self.subscribe(channel, (epoch, offset))
            for channel, (epoch, offset) in earlier.positions.items()
        }

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

    async def _first(self, wanted: Callable[[Any], bool], timeout: float) -> Any:
        """The first message, queued or new, that ``wanted`` accepts; others stay queued."""
        for index, message in enumerate(self._backlog):
            if wanted(message):
                del self._backlog[index]
                return message
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message = await self._read(max(deadline - loop.time(), 0.001))
            if wanted(message):
                return message
            self._backlog.append(message)

    async def _read(self, timeout: float) -> Any:
        try:
            data = await asyncio.wait_for(self.ws.recv(), timeout)
        except TimeoutError:
            raise AssertionError(f"no message within {timeout:g} s") from None
        if isinstance(data, str) == self.binary:
            kind = "text" if isinstance(data, str) else "binary"
            speaks = "MessagePack" if self.binary else "JSON"
            raise AssertionError(f"a {kind} frame on a {speaks} connection: {data[:80]!r}")
        if isinstance(data, str):
            message = json.loads(data)
        else:
            message = msgspec.msgpack.decode(data)
        if isinstance(message, dict) and type(message.get("offset")) is int:
            position = self.positions.get(message.get("channel"))  # type: ignore[arg-type]
            if position is not None:
                position[1] = message["offset"]
        return message


class BlockingClient:
    """:class:`TestClient` for synchronous tests: ``with TestClient(app) as client:``.

    The app is served by an event loop in a background thread; every method blocks
    until that loop has done the work. Handlers run in that thread, not the test's.
    """

    __test__ = False

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="lexicons-testclient", daemon=True
        )
        self._thread.start()
        try:
            self.run(client.__aenter__())
        except BaseException:
            self._stop_loop()
            raise

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    @property
    def app(self) -> Server:
        return self.client.app

    @property
    def url(self) -> str:
        return self.client.url

    def connect(self, path: str = "/", **credentials: Any) -> BlockingPeer:
        """Like :meth:`TestClient.connect`, with the same keyword arguments."""
        return BlockingPeer(self, self.run(self.client.connect(path, **credentials)))

    def get(self, path: str = "/", headers: Mapping[str, str] | None = None) -> HttpResponse:
        """Like :meth:`TestClient.get`."""
        return self.run(self.client.get(path, headers))

    def stop(self) -> None:
        """Close every peer, run the app's shutdown, and end the thread."""
        try:
            self.run(self.client.__aexit__(None, None, None))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class BlockingPeer:
    """:class:`Peer` with blocking methods, for synchronous tests."""

    __test__ = False

    def __init__(self, client: BlockingClient, peer: Peer) -> None:
        self.peer = peer
        self._run = client.run

    @property
    def subprotocol(self) -> str | None:
        return self.peer.subprotocol

    def send(self, signal: str, **payload: Any) -> None:
        self._run(self.peer.send(signal, **payload))

    def send_raw(self, data: str | bytes | Any) -> None:
        self._run(self.peer.send_raw(data))

    def receive(self, timeout: float = TIMEOUT) -> Any:
        return self._run(self.peer.receive(timeout))

    def expect(self, signal: str, timeout: float = TIMEOUT) -> Any:
        return self._run(self.peer.expect(signal, timeout))

    def call(self, signal: str, timeout: float = TIMEOUT, **payload: Any) -> Any:
        return self._run(self.peer.call(signal, timeout, **payload))

    def subscribe(self, channel: str, since: tuple[str, int] | None = None) -> Any:
        return self._run(self.peer.subscribe(channel, since))

    def unsubscribe(self, channel: str) -> Any:
        return self._run(self.peer.unsubscribe(channel))

    def presence(self, channel: str) -> list[Any]:
        return self._run(self.peer.presence(channel))

    def resume(self, earlier: BlockingPeer) -> dict[str, Any]:
        return self._run(self.peer.resume(earlier.peer))

    @property
    def positions(self) -> dict[str, list[Any]]:
        return self.peer.positions

    def assert_nothing_received(self) -> None:
        self._run(self.peer.assert_nothing_received())

    def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
        return self._run(self.peer.closed(timeout))

    def close(self) -> None:
        self._run(self.peer.close())
