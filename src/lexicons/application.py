"""How a lexicons :class:`~lexicons.Server` serves each connection.

The network layer's session asks, and this answers: who the client is
(:class:`~lexicons.Connection`), whether it is admitted (trust, origin, headers, gate),
what happens when it opens and closes (``sv.connections``, channels, hooks), what a plain
HTTP request gets, how a message splits into requests, and how one request runs (the
:class:`~lexicons.protocol.Dispatcher`). In durable mode each piece of user code runs as
one unit of the :class:`~lexicons.durable.Gate`, so nothing it sends leaves before its
changes are committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from websockets.http11 import Request, Response

from .admission import Admission, admit_now
from .channels import Channels
from .connection import Connection, reply, reply_now
from .durable import Gate, Unit
from .errors import InvalidFrame, SignalError, StorageError
from .handlers import Handler
from .network.http import (
    StaticFile,
    answer,
    attempt_handshake,
    cors_headers,
    is_attempt_path,
    plain_response,
)
from .network.session import Application, Session
from .protocol import Dispatcher, decode_frame, encode_errors
from .protocol import Request as Call
from .ratelimit import AddressLimits, RateLimit
from .security import Origins, Trust
from .signals import SignalRegistry
from .subscriptions import Subscriptions

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["App", "ServerApplication", "invoke"]

logger = logging.getLogger("lexicons")

_BINARY = InvalidFrame("binary frames are not supported; send JSON text frames")


class App(Protocol):
    """What serving needs of an application (:class:`~lexicons.Server` is one)."""

    @property
    def connections(self) -> dict[str, Connection]:
        """Live connections of this process by pk."""

    @property
    def channels(self) -> Channels: ...
    @property
    def signals(self) -> SignalRegistry: ...
    @property
    def db(self) -> Any:
        """The store (``db`` in handlers)."""

    @property
    def headers(self) -> Any:
        """Handshake checks; ``headers.handlers`` in registration order."""

    @property
    def hooks(self) -> Mapping[Any, list[Handler]]: ...
    @property
    def gate(self) -> Callable[[list[bool]], Any]:
        """Combines the header results into the verdict."""


async def invoke(
    handler: Handler, gate: Gate | None, ws: Connection | None, sv: Any, db: Any
) -> Any:
    """Call a hook or task with ``ws``/``sv``/``db`` injected, as one durable unit."""
    if gate is None:
        result = handler.call({}, ws, sv, db)
        return await result if handler.is_async else result
    result, unit = gate.run(handler.call, {}, ws, sv, db)
    if handler.is_async:
        result, error = await gate.finish(unit, result)
    else:
        error = gate.settle(unit)
    if error is not None:
        raise error
    return result


class ServerApplication(Application):
    """The session's application for one running :class:`~lexicons.Server`."""

    def __init__(self, app: App, settings: Settings, gate: Gate | None) -> None:
        self.app = app
        self.gate = gate
        self.debug = settings.debug
        #: Development only: exception and refusal details reach clients.
        self.expose_errors = settings.expose_errors
        self.connections = app.connections
        self.channels = app.channels
        self.max_connections = settings.max_connections
        self.static = Path(settings.static) if settings.static else None
        self.dispatcher = Dispatcher(
            app.signals,
            sv=app,
            db=app.db,
            debug=settings.debug,
            expose_errors=settings.expose_errors,
            reply=reply,
            publish=app.channels.publish,
            reserved=Subscriptions(app.channels, sv=app, db=app.db, reply=reply).handlers,
            limits=app.signals.limits,
        )
        self._addresses = AddressLimits(
            settings.max_connections_per_address,
            RateLimit.parse(settings.connection_rate) if settings.connection_rate else None,
        )
        self._trust = Trust(settings.trust, settings.proxies)
        self._origins = Origins(settings.origins)
        self._secure = settings.protocol == "wss"
        self._headers = app.headers.handlers
        self._on_connect: list[Handler] = app.hooks["on_connect"]
        self._on_disconnect: list[Handler] = app.hooks["on_disconnect"]
        if gate is None:  # nothing to wrap: the session calls the dispatcher itself
            self.dispatch = self.dispatcher.dispatch  # type: ignore[method-assign,assignment]

    # who the client is, and whether it may connect

    def connection(self, session: Session, request: Request) -> Connection:
        send = None if self.gate is None else partial(self.gate.emit, session.send)
        return Connection(
            session,
            session.port.peer(),
            request.path,
            request.headers,
            memberships=self.channels,
            send=send,
        )

    def full(self) -> bool:
        limit = self.max_connections
        return limit is not None and len(self.connections) >= limit

    def admit(self, ws: Connection, request: Request, secure: bool | None = None) -> Any:
        """The verdict on a handshake (see :meth:`Application.admit`); ``secure`` says
        whether the client connected over TLS, when another server than lexicons' own
        listener accepted it (ASGI); by default, whether lexicons serves TLS."""
        peer = ws.remote_address
        # Header functions may read the address, so apply the proxy rule first.
        ws.remote_address = self._trust.client_address(peer, request.headers)
        if self._addresses.active:
            refusal = self._addresses.admit(ws.pk, ws.remote_address, time.monotonic())
            if refusal is not None:
                logger.info("refused %s: %s", ws.remote_address, refusal)
                return plain_response(429, refusal + "\n")
        if self._headers:
            self.channels.expect(ws)
        app = self.app

        def call(handler: Handler, kwargs: dict[str, Any]) -> Any:
            return handler.call(kwargs, ws, app, app.db)

        def check() -> Admission | Awaitable[Admission]:
            return admit_now(
                request,
                peer=peer,
                trust=self._trust,
                origins=self._origins,
                headers=self._headers,
                gate=app.gate,
                call=call,
                secure=self._secure if secure is None else secure,
            )

        gate = self.gate
        if gate is None:
            verdict = check()
            if isinstance(verdict, Admission):
                return self._answer(verdict)
            return self._answer_later(verdict, None)
        verdict, unit = gate.run(check)
        if isinstance(verdict, Admission):
            return self._answer(verdict, gate.settle(unit))
        return self._answer_later(verdict, unit)

    async def _answer_later(
        self, pending: Awaitable[Admission], unit: Unit | None
    ) -> Response | None:
        if unit is None or self.gate is None:
            return self._answer(await pending)
        admission, error = await self.gate.finish(unit, pending)
        return self._answer(admission, error)

    def _answer(self, admission: Admission, error: StorageError | None = None) -> Response | None:
        """``None`` to admit, else the refusal to send."""
        if error is not None:
            logger.error("handshake from %s refused: storage failed", admission.address)
            self.refused("storage unavailable")
            return plain_response(503, "storage unavailable\n")
        if admission.allowed:
            return None
        self.refused(admission.reason)
        reason = admission.detail if self.expose_errors else admission.reason
        return plain_response(admission.status, reason + "\n")

    def refused(self, reason: str) -> None:
        """A handshake was refused for ``reason`` (its short reason); metrics count it."""

    # a connection's life

    def opened(self, ws: Connection) -> Coroutine[Any, Any, None] | None:
        self.connections[ws.pk] = ws
        self.channels.admitted(ws)
        if self.debug:
            logger.debug("connect %s from %s", ws.pk, ws.remote_address)
        if not self._on_connect:
            return None
        return self._run_hooks(self._on_connect, ws, close_on_error=True)

    def closed(self, ws: Connection, admitted: bool) -> Coroutine[Any, Any, None] | None:
        self._addresses.release(ws.pk)
        if not admitted:
            self.channels.refused(ws)
            return None
        if self.connections.pop(ws.pk, None) is None:
            return None
        self.channels.drop(ws)
        self.dispatcher.forget(ws.pk)
        if self.debug:
            logger.debug("disconnect %s (%s)", ws.pk, ws.close_code)
        if not self._on_disconnect:
            return None
        return self._run_hooks(self._on_disconnect, ws, close_on_error=False)

    def _run_hooks(
        self, hooks: list[Handler], ws: Connection, *, close_on_error: bool
    ) -> Coroutine[Any, Any, None] | None:
        """Run hooks in order: sync ones now; from the first async one on, in a coroutine
        returned for the session to run (the connection's messages wait for it)."""
        app, gate = self.app, self.gate
        for index, handler in enumerate(hooks):
            if handler.is_async or gate is not None:
                return self._hooks_from(hooks, index, ws, close_on_error)
            try:
                handler.call({}, ws, app, app.db)
            except Exception as exc:
                self._hook_failed(handler, ws, exc, close_on_error)
                return None
        return None

    async def _hooks_from(
        self, hooks: list[Handler], index: int, ws: Connection, close_on_error: bool
    ) -> None:
        for handler in hooks[index:]:
            try:
                await invoke(handler, self.gate, ws, self.app, self.app.db)
            except Exception as exc:
                self._hook_failed(handler, ws, exc, close_on_error)
                return

    def _hook_failed(
        self, handler: Handler, ws: Connection, exc: BaseException, close_on_error: bool
    ) -> None:
        logger.error("%s failed for %s", handler.name, ws.pk, exc_info=exc)
        if close_on_error:
            ws.close(1011, f"{handler.name} failed")

    # plain HTTP and messages

    def respond(self, request: Request) -> Response | StaticFile:
        if getattr(request, "method", "GET") == "OPTIONS" and is_attempt_path(request):
            # The browser's preflight of a cross-origin probe: allowed for the origins the
            # handshake admits, since the probe reveals nothing more than a handshake.
            if not self._page_admitted(request):
                return plain_response(403, "origin not allowed\n")
            return plain_response(200, b"", "text/plain", *cors_headers(request, True))
        return answer(request, self.static)

    def attempt(self, ws: Connection, request: Request) -> Response | Awaitable[Response]:
        """The probe's answer: the handshake's own checks and limits, then 200 where the
        upgrade would go ahead and the refusal (403, 429...) where it would not."""
        verdict = self.admit(ws, attempt_handshake(request))
        if verdict is None or isinstance(verdict, Response):
            return self._attempt_answer(verdict, request)
        return self._attempt_later(verdict, request)

    async def _attempt_later(
        self, verdict: Awaitable[Response | None], request: Request
    ) -> Response:
        return self._attempt_answer(await verdict, request)

    def _attempt_answer(self, verdict: Response | None, request: Request) -> Response:
        response = plain_response(200, "admitted\n") if verdict is None else verdict
        if "Origin" in request.headers and self._page_admitted(request):
            for name, value in cors_headers(request, False):
                response.headers[name] = value
        return response

    def _page_admitted(self, request: Request) -> bool:
        headers = request.headers
        origin, host = headers.get_all("Origin"), headers.get_all("Host")
        if len(origin) != 1 or len(host) > 1:
            return False
        return self._origins.admits(origin[0], host[0] if host else None, self._secure)

    def message(self, ws: Connection, data: bytes, text: bool) -> Sequence[Any]:
        if not text:
            reply_now(ws, encode_errors(None, _BINARY))
            return ()
        try:
            return decode_frame(data)
        except SignalError as exc:
            # A frame-level error reports no change: it never waits for a commit.
            reply_now(ws, encode_errors(None, exc))
            return ()

    def dispatch(self, item: Call, ws: Connection) -> Coroutine[Any, Any, None] | None:
        gate = self.gate
        assert gate is not None  # without a gate, dispatch is the dispatcher's own
        pending, unit = gate.run(self.dispatcher.dispatch, item, ws)
        if pending is None:
            self._settled(gate.settle(unit), item, ws)
            return None
        return self._finish(gate, unit, pending, item, ws)

    async def _finish(
        self, gate: Gate, unit: Unit, pending: Awaitable[None], item: Call, ws: Connection
    ) -> None:
        _, error = await gate.finish(unit, pending)
        self._settled(error, item, ws)

    def _settled(self, error: StorageError | None, item: Call, ws: Connection) -> None:
        """Tell the client when what its request wrote could not be saved."""
        if error is None:
            return
        logger.error("signal %s from %s not saved: %s", item.name, ws.pk, error)
        detail = f": {error}" if self.expose_errors else ""
        failure = SignalError("storage_error", f"the change could not be saved{detail}")
        reply_now(ws, encode_errors(item.name, failure, item.ref))
