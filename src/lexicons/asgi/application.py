"""``app.asgi``: a lexicons application as an ASGI application.

The same app runs under uvicorn, hypercorn or granian, or mounted inside Starlette or
FastAPI beside HTTP routes::

    uvicorn chat:app.asgi

    lex = Server()
    web = Starlette(routes=[Mount("/ws", app=lex.asgi)], lifespan=lex.asgi.lifespan)

Each WebSocket goes through the server's own :class:`~lexicons.application.ServerApplication`,
as on lexicons' listener: trust, origin, headers (HTTP headers, cookies, the subprotocol
offer, the query string) and the gate; ``on_connect``; one request at a time per
connection with replies in order; channels, broadcasts and ``on_disconnect`` exactly once.
An :class:`AsgiSession` stands in for the network session where the connection object
expects one. A plain HTTP request gets what the listener answers (``/healthz``,
``/metrics``, ``static`` files, 404).

The start sequence (store, broker, ``on_start``, startup tasks, interval tasks) runs on
the ``lifespan`` startup event, or on first use when the ASGI server or the parent
application does not forward lifespan events; then the stop sequence runs when the event
loop ends. Forward the lifespan (``lifespan=lex.asgi.lifespan``) to stop cleanly, with
``on_shutdown`` run before the process exits. lexicons' own listener (``app.run()``)
remains the fast path.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..application import ServerApplication
from ..headers import select_subprotocol
from ..lifecycle import Runnable, Running
from ..metrics import MeteredApplication
from ..network.http import StaticFile, is_attempt, plain_response
from ..network.session import Session
from .session import ADMITTING, AsgiSession, Message, Receive, Scope, Send, asgi_headers

if TYPE_CHECKING:
    from ..connection import Connection
    from ..settings import Settings

__all__ = ["AsgiApp", "HttpRequest"]

logger = logging.getLogger("lexicons")

#: Most messages that may wait behind a running handler before receiving pauses.
MAX_WAITING = 64
#: Bytes read from a static file per body message.
_FILE_CHUNK = 256 * 1024


class AsgiApp:
    """The ASGI application of one :class:`~lexicons.Server`: ``app.asgi``."""

    def __init__(self, server: Runnable, settings: Callable[[], Settings]) -> None:
        self.server = server
        self._settings = settings
        self._running: Running | None = None
        self._starting: asyncio.Future[Running] | None = None
        self._sessions: set[AsgiSession] = set()
        self._emptied: asyncio.Event | None = None
        #: ``on_disconnect`` hooks still running; shutdown waits for them.
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Stops the server when the event loop ends, if no lifespan event will.
        self._guard: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan_events(receive, send)
        else:
            raise ValueError(f"lexicons: unsupported ASGI scope type {kind!r}")

    # starting and stopping

    @property
    def running(self) -> Running | None:
        """The started server, or ``None``."""
        return self._running

    async def start(self) -> Running:
        """Run the start sequence once (concurrent first uses share it)."""
        if self._running is not None:
            return self._running
        starting = self._starting
        if starting is None:
            starting = self._starting = asyncio.ensure_future(self._start())
        try:
            return await asyncio.shield(starting)
        except BaseException:
            if starting.done() and self._starting is starting:
                self._starting = None  # a failed start is tried again by the next use
            raise

    async def _start(self) -> Running:
        running = Running(self.server, self._settings(), listen=False)
        await running.start()
        self._running = running
        return running

    async def close(self) -> None:
        """Close every connection with 1001, then run the stop sequence."""
        running = self._running
        if running is None:
            return
        self._running = self._starting = None
        guard, self._guard = self._guard, None
        if guard is not None and guard is not asyncio.current_task():
            guard.cancel()
        timeout = running.settings.shutdown_timeout
        self._emptied = asyncio.Event()
        for session in list(self._sessions):
            session.close(1001, "server shutting down")
        if self._sessions:
            try:
                await asyncio.wait_for(self._emptied.wait(), timeout)
            except TimeoutError:
                logger.warning("%d connections did not close in time", len(self._sessions))
                for session in list(self._sessions):
                    session.end()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        await running.close()

    @asynccontextmanager
    async def lifespan(self, parent: Any = None) -> AsyncIterator[None]:
        """Start, and stop on leaving: ``Starlette(..., lifespan=lex.asgi.lifespan)``, or
        ``async with lex.asgi.lifespan():`` inside the parent application's own lifespan."""
        await self.start()
        try:
            yield
        finally:
            await self.close()

    async def _lifespan_events(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    logger.error("could not start: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _started(self) -> Running:
        """The running server; started now, on first use, when no lifespan event came."""
        if self._running is not None:
            return self._running
        running = await self.start()
        if self._guard is None and self._running is running:
            logger.info(
                "started on first use: the ASGI server did not forward lifespan events; "
                "the stop sequence runs when the event loop ends (pass "
                "lifespan=app.asgi.lifespan to the parent application to stop it cleanly)"
            )
            self._guard = asyncio.get_running_loop().create_task(self._stop_with_the_loop())
        return running

    async def _stop_with_the_loop(self) -> None:
        """Wait for the event loop's end (``asyncio.run`` cancels every task), then stop."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if self._guard is asyncio.current_task():
                self._guard = None
                await self.close()
            raise

    # plain HTTP

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        running = await self._started()
        assert running.application is not None
        request = HttpRequest(_target(scope), _headers(scope), method=scope.get("method", "GET"))
        answer: Response | StaticFile
        if is_attempt(request):
            answer = await self._attempt(running, scope, request)
        else:
            answer = running.application.respond(request)
        head = answer.head if isinstance(answer, StaticFile) else answer
        await send(
            {
                "type": "http.response.start",
                "status": head.status_code,
                "headers": asgi_headers(head.headers),
            }
        )
        if isinstance(answer, StaticFile) and answer.path is not None:
            await _stream_file(answer, send)
        else:
            await send({"type": "http.response.body", "body": head.body or b""})

    async def _attempt(self, running: Running, scope: Scope, request: Request) -> Response:
        """The JavaScript client's probe: the handshake's own verdict, never an admission
        (as lexicons' listener answers it; see :meth:`ServerApplication.attempt`)."""
        application = running.application
        assert application is not None
        client = scope.get("client")
        session = AsgiSession(_no_send, client[0] if client else "", running.settings.max_buffer)
        ws = application.connection(cast(Session, session), request)
        verdict = application.attempt(ws, request)
        if not isinstance(verdict, Response):
            verdict = await verdict
        application.closed(ws, False)
        return verdict

    # WebSocket

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        running = await self._started()
        application = running.application
        assert application is not None
        if (await receive())["type"] != "websocket.connect":
            return
        settings = running.settings
        client = scope.get("client")
        meter = application.meter if isinstance(application, MeteredApplication) else None
        session = AsgiSession(send, client[0] if client else "", settings.max_buffer, meter)
        if application.full():
            await session.deny(_refusal(503, "too many connections\n"), scope)
            return
        request = Request(_target(scope), _headers(scope))
        ws = application.connection(cast(Session, session), request)
        session.on_cut_off = lambda: application.cut_off(ws)
        verdict = application.admit(ws, request, secure=scope.get("scheme") == "wss")
        if verdict is not None and not isinstance(verdict, Response):
            verdict = await verdict
        if verdict is None and application.full():  # others were admitted meanwhile
            verdict = _refusal(503, "too many connections\n")
        if verdict is not None or session.state != ADMITTING:
            application.closed(ws, False)
            await session.deny(verdict or _refusal(403, "closed\n"), scope)
            return
        offered = scope.get("subprotocols") or []
        self._sessions.add(session)
        accepted = False  # until then the connection is refused, as far as the app knows
        try:
            await session.accept(select_subprotocol(offered))
            accepted = True
            await _Turns(session, ws, application, receive, settings.max_size).run()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not session.cut or current is None:
                raise
            current.uncancel()  # cut off: the connection ends here, the server goes on
        finally:
            session.end()
            self._sessions.discard(session)
            if not self._sessions and self._emptied is not None:
                self._emptied.set()
            pending = application.closed(ws, accepted)
            if pending is not None:
                task = asyncio.ensure_future(pending)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)


class _Turns:
    """One connection's message loop: what the session's turns do on lexicons' listener."""

    def __init__(
        self,
        session: AsgiSession,
        ws: Connection,
        application: ServerApplication,
        receive: Receive,
        max_size: int,
    ) -> None:
        self.session = session
        self.ws = ws
        self.application = application
        self.receive = receive
        self.max_size = max_size
        self.waiting: deque[tuple[bytes, bool]] = deque()
        self.batch: deque[Any] = deque()
        self.work: asyncio.Future[Any] | None = None

    async def run(self) -> None:
        session = self.session
        receiving: asyncio.Future[Message] | None = None
        pending = self.application.opened(self.ws)
        if pending is not None:
            self.work = asyncio.ensure_future(pending)
        try:
            while True:
                self._turn()
                if session.has_output():
                    if self.work is None:
                        await session.flush()
                    else:
                        session.schedule_flush()
                if self.work is None:
                    message = await (receiving if receiving is not None else self.receive())
                    receiving = None
                else:
                    if receiving is None and len(self.waiting) < MAX_WAITING:
                        receiving = asyncio.ensure_future(self.receive())
                    waits = {self.work} if receiving is None else {self.work, receiving}
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    if self.work.done():
                        self._work_done(self.work)
                    if receiving is None or not receiving.done():
                        continue
                    message = receiving.result()
                    receiving = None
                if message["type"] == "websocket.disconnect":
                    session.left(message.get("code", 1005))
                    return
                self._received(message)
        finally:
            if self.work is not None:
                self.work.cancel()  # the client is gone: its work is too
            if receiving is not None:
                receiving.cancel()

    def _received(self, message: Message) -> None:
        text = message.get("text")
        data = text.encode() if text is not None else message.get("bytes") or b""
        if len(data) > self.max_size:
            self.session.close(1009, f"message over {self.max_size} bytes")
            return
        if self.session.is_open:
            self.waiting.append((data, text is not None))

    def _turn(self) -> None:
        """Run waiting requests until one is async (then it runs as the connection's work)."""
        session, application, ws = self.session, self.application, self.ws
        session.in_turn = True
        try:
            while self.work is None and session.is_open:
                if self.batch:
                    pending = application.dispatch(self.batch.popleft(), ws)
                    if pending is not None:
                        self.work = asyncio.ensure_future(pending)
                elif self.waiting:
                    data, text = self.waiting.popleft()
                    self.batch.extend(application.message(ws, data, text))
                else:
                    break
        finally:
            session.in_turn = False

    def _work_done(self, work: asyncio.Future[Any]) -> None:
        self.work = None
        if not work.cancelled() and work.exception() is not None:
            logger.error("connection work failed; connection closed", exc_info=work.exception())
            self.session.close(1011, "internal error")


@dataclass
class HttpRequest(Request):
    """A plain HTTP request with its method (websockets' ``Request`` has none)."""

    method: str = "GET"


def _target(scope: Scope) -> str:
    """The request target relative to where the application is mounted, with the query."""
    root = scope.get("root_path", "")
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"])
    if root and path.startswith(root):
        path = path[len(root) :]
    path = path or "/"
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _headers(scope: Scope) -> Headers:
    return Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])


async def _no_send(message: Message) -> None:
    """A probe's session sends nothing: its answer is the HTTP response."""


def _refusal(status: int, body: str) -> Response:
    return plain_response(status, body)


async def _stream_file(file: StaticFile, send: Send) -> None:
    assert file.path is not None
    loop = asyncio.get_running_loop()
    handle = await loop.run_in_executor(None, open, file.path, "rb")
    try:
        remaining = file.size
        while remaining > 0:
            chunk = await loop.run_in_executor(None, handle.read, min(_FILE_CHUNK, remaining))
            if not chunk:
                break  # the file shrank since its size was sent
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
    finally:
        handle.close()
