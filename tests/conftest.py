"""Shared fixtures: a fresh app per test, and a running TestClient over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.frames import Frame, Opcode

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


def handshake_request(host: str = "127.0.0.1", path: str = "/", **headers: str) -> bytes:
    """The bytes of a WebSocket opening handshake, for tests that write it by hand."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def echo_app(**settings: Any) -> Server:
    """An app whose one signal, ``echo``, answers ``{"text": text}``."""
    app = Server(**settings)

    @app.signal
    def echo(text: str) -> dict[str, str]:
        return {"text": text}

    return app


def client_frame(opcode: Opcode, data: bytes = b"", fin: bool = True) -> bytes:
    """The bytes of one masked client frame, for tests that write frames by hand."""
    return Frame(opcode, data, fin).serialize(mask=True, extensions=[])


async def open_websocket(port: int, **headers: str) -> socket.socket:
    """A non-blocking socket whose WebSocket handshake was answered with 101.

    For tests that write frames with plain socket calls, so that the client side
    allocates next to nothing (memory is measured in the test process).
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, handshake_request(**headers))
    head = b""
    while b"\r\n\r\n" not in head:
        data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
        assert data, f"the server hung up during the handshake: {head!r}"
        head += data
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


@contextlib.contextmanager
def traced_memory() -> Iterator[Callable[[], int]]:
    """Trace allocations in every thread during the block; the function it gives
    returns the most memory allocated at once since the block began."""
    gc.collect()
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def chromium_path() -> str | None:
    """Debian's Chromium, when installed."""
    return shutil.which("chromium")


__all__ = [
    "OwnRedis",
    "Process",
    "SmallDisk",
    "asgi_server",
    "chromium_path",
    "client_frame",
    "echo_app",
    "eventually",
    "free_port",
    "handshake_request",
    "open_websocket",
    "redis_available",
    "subprocess",
    "subscribed",
    "traced_memory",
]

ROOT = Path(__file__).parent.parent
SERVING = re.compile(r"serving on (wss?://[^\s\"]+)")


class SmallDisk:
    """A tmpfs of a few hundred KiB mounted for one test: fill it, make it read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        """Take every free byte, so that the next write fails with ENOSPC."""
        with open(self._filler, "ab", buffering=0) as file:
            try:
                while True:
                    file.write(b"\0" * 4096)
            except OSError:
                pass

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def remount(self, mode: str) -> None:
        """``"ro"`` or ``"rw"``: writes to files already open fail too while read-only."""
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 512 KiB tmpfs under tmp_path; needs root (mount), skipped with the reason otherwise."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small tmpfs needs root and mount(8) to be mounted; not running as root")
    path = tmp_path / "small-disk"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs failed: {mounted.stderr.decode().strip()}")
    try:
        yield SmallDisk(path)
    finally:
        # Lazily when a failed test left a file open on it: the mount never outlives the test.
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(path)], check=True)


@pytest.fixture
def redis_url() -> str:
    """The shared Redis on 127.0.0.1:6379; the test is skipped when none answers."""
    pytest.importorskip("redis", reason="the Redis client is missing: pip install -e '.[test]'")
    if not redis_available():
        pytest.skip("no Redis answers on 127.0.0.1:6379 (start redis-server; .ci/run does)")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def namespace() -> str:
    """A broker namespace of this test's own, so parallel runs never see each other."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(redis_url: str, namespace: str) -> AsyncIterator[Any]:
    """A client of the shared Redis; deletes the test namespace's keys afterwards."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def add_forever(app: Any) -> tuple[asyncio.Event, asyncio.Event]:
    """Register ``forever`` on ``app``: a handler that never returns. The events tell when
    it started and when it was cancelled (a client that leaves must not leave it running)."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    @app.signal
    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    return started, cancelled


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    """Wait until ``check()`` is true: for state another process or Redis changes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def subscribed(redis: Any, channel: str, processes: int) -> None:
    """Wait until ``processes`` servers are subscribed in Redis to ``channel``."""

    async def check() -> bool:
        [(_, count)] = await redis.pubsub_numsub(channel)
        return bool(count == processes)

    await eventually(check, f"{processes} subscribers of {channel} in Redis")


class Process:
    """A server started as a subprocess; stopped by its own PID at the end of the test."""

    def __init__(
        self,
        *args: str | Path,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        session: bool = False,
    ) -> None:
        """``session``: in a session (and process group) of its own, as a terminal runs a
        command, so a test can signal the whole group as Ctrl+C does."""
        self.popen = subprocess.Popen(
            [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=session,
        )
        self.stderr: list[str] = []

    def wait_for(self, pattern: str | re.Pattern[str]) -> re.Match[str]:
        """Read stderr lines until one matches ``pattern``; return the match."""
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.stderr.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r}:\n" + "".join(self.stderr))

    def url(self) -> str:
        """Read stderr until the 'serving on' line; return its URL."""
        return self.wait_for(SERVING).group(1)

    def stop(self, signum: int) -> tuple[int, str, str]:
        self.popen.send_signal(signum)
        out, err = self.popen.communicate(timeout=20)
        return self.popen.returncode, out, "".join(self.stderr) + err


@pytest.fixture
def process() -> Iterator[type[Process]]:
    """Start server subprocesses; any still running at the end is killed by its PID."""
    started: list[Process] = []

    class Tracked(Process):
        def __init__(self, *args: str | Path, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    yield Tracked
    for proc in started:
        if proc.popen.poll() is None:
            proc.popen.kill()
        proc.popen.communicate()  # reap it and close its pipes


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


@contextlib.asynccontextmanager
async def asgi_server(app: Any, *, lifespan: str = "on", **options: Any) -> AsyncIterator[str]:
    """Serve the ASGI application ``app`` with uvicorn in this event loop, on a free
    loopback port; yields ``ws://127.0.0.1:<port>``. Leaving stops uvicorn (and its
    lifespan shutdown)."""
    uvicorn = pytest.importorskip("uvicorn", reason="a test dependency: pip install -e '.[test]'")

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan=lifespan, log_level="warning", access_log=False, **options
    )
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))

    async def started() -> bool:
        if serving.done():
            serving.result()  # uvicorn failed to start: say why
        return bool(server.started)

    try:
        await eventually(started, "uvicorn to start")
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


# a redis-server of a test's own, to stop, freeze or flush without touching the shared one


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedis:
    """A redis-server of this test's own on an ephemeral port, stopped by its PID."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.popen: subprocess.Popen[str] | None = None
        self._log: threading.Thread | None = None

    def start(self) -> None:
        self.popen = popen = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert popen.stdout is not None
        seen = []
        for line in popen.stdout:  # its log says when it listens; EOF if it failed
            seen.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            raise AssertionError("redis-server did not start:\n" + "".join(seen))
        # Keep reading its log, so a full pipe never blocks it.
        self._log = threading.Thread(target=popen.stdout.read, daemon=True)
        self._log.start()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop it by its PID, wait for it, and close its log pipe."""
        assert self.popen is not None and self.popen.stdout is not None
        self.popen.send_signal(signum)
        self.popen.wait(timeout=10)
        if self._log is not None:
            self._log.join(10)  # ends at the pipe's EOF
        self.popen.stdout.close()


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    pytest.importorskip("redis", reason="the Redis client is missing: pip install -e '.[test]'")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = OwnRedis()
    server.start()
    yield server
    if server.popen is not None:
        server.stop(signal.SIGKILL)  # nothing to do but closing the pipe if it has stopped
