"""The asyncio side of one connection: a thin adapter between a socket and its session.

:class:`Link` is the ``asyncio.Protocol`` the event loop calls; it hands bytes and events
to its :class:`~lexicons.network.session.Session` and carries out what the session asks
(write, half-close, abort, pause reading, run work, start a timer). It holds no rules of
its own: those are the session's, tested without sockets. There is no coroutine per
connection and no task per message: a sync handler runs inside ``buffer_updated``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from websockets.extensions import ServerExtensionFactory
from websockets.server import ServerProtocol

from ..settings import Settings
from .deadlines import Deadlines
from .http import StaticFile
from .session import Application, Limits, Session

__all__ = ["Link", "Shared"]

logger = logging.getLogger("lexicons")

#: Every connection reads into this one buffer, which the parser copies from before the
#: next read of the same loop can happen. With a plain Protocol, asyncio reads each time
#: into a fresh 256 KiB bytes object, which the allocator maps and unmaps. One buffer per
#: thread, since each event loop runs in one thread.
_READ_SIZE = 256 * 1024

#: Bytes read from a file per step of a streamed HTTP body.
_FILE_CHUNK = 256 * 1024


class Shared(Protocol):
    """What every link of one server shares (the :class:`~lexicons.network.hub.Hub`)."""

    app: Application
    settings: Settings
    limits: Limits
    loop: asyncio.AbstractEventLoop
    read_buffer: memoryview
    links: set[Link]

    @property
    def deadlines(self) -> Mapping[str, Deadlines[Link]]: ...

    wire_logger: logging.Logger
    select_subprotocol: Callable[[ServerProtocol, Sequence[str]], str | None] | None
    extensions: Sequence[ServerExtensionFactory] | None
    #: The session class (a subclass counts for metrics).
    session_type: type[Session]

    def spawn(self, work: Any) -> asyncio.Task[Any]: ...
    def forget(self, link: Link) -> None: ...


class Link(asyncio.BufferedProtocol):
    """One TCP connection: the asyncio protocol, and the session's :class:`Port`."""

    # Slots: thousands of these live at once, and each is made and dropped per connection.
    __slots__ = ("hub", "session", "transport", "_buffer", "_deadlines", "_lost", "_drained")

    def __init__(self, hub: Shared) -> None:
        self.hub = hub
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.session: Session = None  # type: ignore[assignment]
        self._buffer = hub.read_buffer
        #: The deadline this connection waits on, if any.
        self._deadlines: Deadlines[Link] | None = None
        self._lost = False
        #: Set while a streamed file may write more (made only for files).
        self._drained: asyncio.Event | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = transport
        hub = self.hub
        transport.set_write_buffer_limits(high=hub.limits.high_water)
        hub.links.add(self)
        self.session = hub.session_type(
            hub.app,
            hub.limits,
            self,
            transport.write,
            select_subprotocol=hub.select_subprotocol,
            wire_logger=hub.wire_logger,
            extensions=hub.extensions,
        )

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.session.receive_data(self._buffer[:nbytes])

    def eof_received(self) -> None:
        self.session.receive_eof()
        # Returning None lets the transport close its side: the client is gone.

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.session.connection_lost()  # which cancels the timer
        if self._drained is not None:
            self._drained.set()
        self.hub.forget(self)
        # The session holds this link as its port: letting go of it frees both now, not
        # at the garbage collector's next pass. Nothing asks the session anything after.
        self.session = None  # type: ignore[assignment]

    def pause_writing(self) -> None:
        if self._drained is not None:
            self._drained.clear()
        self.session.pause_writing()

    def resume_writing(self) -> None:
        self.session.resume_writing()
        if self._drained is not None and not self.session.congested:
            self._drained.set()

    # the session's Port

    def peer(self) -> str:
        peer = self.transport.get_extra_info("peername")
        return peer[0] if peer else ""

    def end(self) -> None:
        if self._lost:
            return
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        try:
            self.transport.write_eof()  # half-close; keep reading until the client's EOF
        except OSError:  # the client reset the connection while its input waited
            self.transport.abort()

    def abort(self) -> None:
        if not self._lost:
            self.transport.abort()

    def pause_reading(self) -> None:
        if not self._lost:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._lost:
            self.transport.resume_reading()

    def spawn(self, work: Awaitable[Any], done: Callable[[Any], None] | None) -> asyncio.Task[Any]:
        task = self.hub.spawn(work)
        task.add_done_callback(lambda task: self._finished(task, done))
        return task

    def _finished(self, task: asyncio.Task[Any], done: Callable[[Any], None] | None) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("connection work failed; connection aborted", exc_info=error)
            if not self._lost:
                self.session.abort()
        elif done is not None:
            done(task.result())

    def defer(self, callback: Callable[[], None]) -> None:
        self.hub.loop.call_soon(callback)

    def start_timer(self, kind: str) -> None:
        self.cancel_timer()
        deadlines = self.hub.deadlines[kind]
        deadlines.add(self)
        self._deadlines = deadlines

    def cancel_timer(self) -> None:
        if self._deadlines is not None:
            self._deadlines.discard(self)
            self._deadlines = None

    def expire(self, why: str) -> None:
        """The deadline this connection waited on passed."""
        self._deadlines = None
        self.session.expire(why)

    def stream(self, file: StaticFile, done: Callable[[], None]) -> None:
        self._drained = asyncio.Event()
        self._drained.set()
        self.spawn(self._stream(file), lambda _: done())

    async def _stream(self, file: StaticFile) -> None:
        """Write a file's body in chunks read in a thread, at the pace the client reads.

        A client that reads nothing for ``ping_timeout`` seconds is dropped.
        """
        assert file.path is not None and self._drained is not None
        loop, session = self.hub.loop, self.session  # kept: the link lets go of it at the end
        handle = await loop.run_in_executor(None, open, file.path, "rb")
        try:
            remaining = file.size
            while remaining > 0 and not self._lost:
                chunk = await loop.run_in_executor(None, handle.read, min(_FILE_CHUNK, remaining))
                if not chunk:  # the file shrank since its size was sent: cannot finish
                    session.abort()
                    return
                session.write_body(chunk)
                remaining -= len(chunk)
                try:
                    await asyncio.wait_for(self._drained.wait(), self.hub.settings.ping_timeout)
                except TimeoutError:
                    logger.info("download of %s dropped: the client stopped reading", file.path)
                    session.abort()
                    return
        finally:
            handle.close()
