"""The wire protocol, without I/O: decode a frame, dispatch requests, encode replies and errors.

A frame holds ``{"Name": {...}}`` or a list of such objects, each with an optional
``"ref"``. Replies are ``{"Name": value}`` (with the request's ``ref``); errors go to the
sender as ``{"Errors": [{"signal", "code", "message"}]}``. Each request is answered in its
own encoding (JSON or MessagePack, see :mod:`lexicons.codecs`); broadcasts are JSON.
This module never touches a socket or an event loop: the network layer feeds it frames
and writes what it returns, so everything here is tested with plain function calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from .codecs import CODECS, JSON, Request
from .errors import InternalError, RateLimited, SignalError, UnknownSignal
from .handlers import Handler
from .ratelimit import RateLimit, TokenBucket
from .signals import Response

__all__ = [
    "Dispatcher",
    "Request",
    "decode_frame",
    "encode",
    "encode_errors",
    "encode_reply",
]

logger = logging.getLogger("lexicons")

#: Encodes every outgoing JSON message; msgspec Structs, datetimes and sets are understood.
encode = JSON.encode
#: Split a JSON text frame into requests (see :meth:`Codec.decode_frame`).
decode_frame = JSON.decode_frame
#: ``{"Name": value}`` in JSON, with ``"ref"`` when the request carried one.
encode_reply = JSON.encode_reply
#: The JSON error frame for one failed request (``name`` is ``None`` for a bad frame).
encode_errors = JSON.encode_errors


#: A handler of the framework's own requests (``$subscribe``...): ``None`` when done.
Reserved = Callable[["Request", Any], "Awaitable[None] | None"]


class Dispatcher:
    """Runs requests against the registered signals and turns results into output.

    ``reply(ws, data)`` writes bytes to one connection and ``publish(channels, data,
    key)`` hands a broadcast (encoded once) to the broker; both are supplied by the
    server, which keeps this class free of I/O. ``reserved`` handles the framework's own
    ``$`` requests: each answers its client itself, and raises (or returns an awaitable
    that raises) for an error, which is answered here like a handler's.
    """

    __slots__ = (
        "_signals",
        "_sv",
        "_db",
        "_debug",
        "_expose",
        "_reply",
        "_publish",
        "_reserved",
        "_limits",
        "_buckets",
        "_clock",
    )

    def __init__(
        self,
        signals: Mapping[str, Handler],
        *,
        sv: Any,
        db: Any,
        debug: bool,
        reply: Callable[[Any, bytes], None],
        publish: Callable[[list[str], bytes, str | None], None],
        reserved: Mapping[str, Reserved] | None = None,
        limits: Mapping[str, RateLimit] | None = None,
        clock: Callable[[], float] = time.monotonic,
        expose_errors: bool = False,
    ) -> None:
        # A plain dict: signals cannot be added while serving, and a registry's Python
        # ``get`` cost a call per message.
        self._signals = dict(signals)
        self._sv = sv
        self._db = db
        self._debug = debug
        self._expose = expose_errors
        self._reply = reply
        self._publish = publish
        self._reserved = dict(reserved or {})
        self._limits = dict(limits or {})
        #: Token buckets by (connection pk, signal name), made on first use.
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._clock = clock

    def dispatch(self, request: Request, ws: Any) -> Coroutine[Any, Any, None] | None:
        """Handle one request for ``ws``.

        A sync handler runs now and its output is written; ``None`` is returned. For an
        async handler a coroutine is returned that awaits it and writes its output; the
        connection's next requests wait for it.
        """
        handler = self._signals.get(request.name)
        if self._debug:
            logger.debug("signal %s from %s", request.name, ws.pk)
        try:
            if self._limits and request.name in self._limits:
                self._take(request.name, ws)
            if handler is None:
                special = self._reserved.get(request.name)
                if special is None:
                    raise UnknownSignal(f"no signal named {request.name!r}")
                pending = special(request, ws)
                return None if pending is None else self._finish(pending, request, ws)
            payload = handler.payload
            if request.binary:
                kwargs = payload.from_msgpack(request.payload)
            else:
                kwargs = payload.from_json(request.payload)
            result = handler.call(kwargs, ws, self._sv, self._db)
        except Exception as exc:
            self.fail(request, exc, ws)
            return None
        if handler.is_async:
            return self._finish(result, request, ws)
        self.complete(request, result, ws)
        return None

    async def _finish(self, pending: Awaitable[Any], request: Request, ws: Any) -> None:
        try:
            result = await pending
        except Exception as exc:
            self.fail(request, exc, ws)
        except BaseException as exc:
            # A cancellation: the connection's own end cancels its work, and then it must
            # go through. A CancelledError raised by something the handler awaited, while
            # the connection is open, is that handler's failure, answered as one.
            if ws.open and not isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                self.fail(request, exc, ws)
            else:
                raise
        else:
            self.complete(request, result, ws)

    def _take(self, name: str, ws: Any) -> None:
        """Take a token of ``name``'s limit for ``ws``, or raise :class:`RateLimited`."""
        limit = self._limits[name]
        now = self._clock()
        bucket = self._buckets.get((ws.pk, name))
        if bucket is None:
            bucket = self._buckets[ws.pk, name] = TokenBucket(limit, now)
        wait = bucket.take(limit, now)
        if wait:
            raise RateLimited(f"{name} is limited to {limit}; retry in {wait:.2g} s")

    def forget(self, pk: str) -> None:
        """Connection ``pk`` is gone: drop its rate-limit state."""
        for name in self._limits:
            self._buckets.pop((pk, name), None)

    def complete(self, request: Request, result: Any, ws: Any) -> None:
        """Send a handler's result: nothing, a broadcast, or a reply to the sender."""
        if result is None:
            return
        try:
            if isinstance(result, Response):
                data = encode({request.name: result.payload})
                if self._debug:
                    logger.debug("broadcast %s to %s", request.name, ", ".join(result.channels))
                self._publish(result.channels, data, result.key)
                return
            data = CODECS[request.binary].encode_reply(request.name, result, request.ref)
        except (TypeError, ValueError) as exc:  # a result msgspec cannot encode
            self.fail(request, exc, ws)
            return
        self._reply(ws, data)

    def fail(self, request: Request, exc: BaseException, ws: Any) -> None:
        """Answer a failed request with an error frame; log handler crashes."""
        if not isinstance(exc, SignalError):
            logger.error("signal %s raised", request.name, exc_info=exc)
            message = f"{type(exc).__name__}: {exc}" if self._expose else "the handler failed"
            exc = InternalError(message)
        codec = CODECS[request.binary]
        self._reply(ws, codec.encode_errors(request.name, exc, request.ref))
