"""The network layer: one asyncio protocol per connection over websockets' Sans-I/O.

Bytes from the socket go to a :class:`websockets.server.ServerProtocol`; the events it
parses are handled here, and whatever it wants to send is written straight to the
transport. There is no coroutine per connection and no task per message: a sync handler
runs inline when its frame arrives. An async handler or hook runs as a task, and the
connection's later frames wait for it, so replies keep request order.

This module owns what a WebSocket server must do besides messages: the handshake and its
timeout, keepalive pings, the closing handshake and its timeout, fragmented messages,
write backpressure (a client that stops reading is cut off, because broadcasts never
wait), plain HTTP answers, and the graceful close of every connection at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, State
from websockets.server import ServerProtocol

from .admission import Admission
from .connection import Connection
from .deadlines import Deadlines
from .errors import InvalidFrame, SignalError
from .http import answer, is_upgrade, plain_response
from .protocol import decode_frame, encode_errors, text_frame
from .security import WireLogFilter

if TYPE_CHECKING:
    from .channels import Channels
    from .protocol import Dispatcher
    from .settings import Settings

__all__ = ["Hub", "Link"]

logger = logging.getLogger("lexicons")
# websockets' own protocol logger prints raw handshake headers at debug level, credentials
# included, so it gets a logger of its own that stays at warning, and a filter that keeps
# the handshake out even when someone lowers that level (logging config, caplog).
_wire_logger = logging.getLogger("lexicons.wire")
_wire_logger.setLevel(logging.WARNING)
_wire_logger.addFilter(WireLogFilter())

#: A received message as the protocol hands it over (bytes, in practice).
Buffer = bytes | bytearray | memoryview

#: Frames that may wait behind a running async handler before reading pauses.
MAX_WAITING = 32

#: Every connection reads into this one buffer, which the parser copies from before the
#: next read can happen. With a plain Protocol, asyncio's own loop reads each time into a
#: fresh 256 KiB bytes object, which glibc maps and unmaps: 13 µs per read on the test
#: machine, a quarter of an echo's cost (uvloop gains little: one copy less).
_READ = memoryview(bytearray(256 * 1024))

_TEXT = Opcode.TEXT
_CONT = Opcode.CONT
_BINARY = Opcode.BINARY
_CLOSE = Opcode.CLOSE


#: ``admit(ws, request, peer)``: an Admission, or an awaitable of one.
Admit = Callable[[Connection, Request, str], "Admission | Awaitable[Admission]"]
#: ``hooks(ws)``: run the connect/disconnect hooks; returns a coroutine for async ones.
#: ``None`` when there are none.
RunHooks = Callable[[Connection], "Coroutine[Any, Any, None] | None"] | None


class Hub:
    """What every connection of one running server shares."""

    def __init__(
        self,
        *,
        settings: Settings,
        dispatcher: Dispatcher,
        channels: Channels,
        admit: Admit,
        select_subprotocol: Callable[[ServerProtocol, Any], Any] | None,
        on_connect: RunHooks,
        on_disconnect: RunHooks,
        commit: Callable[[], None] | None,
        connections: dict[str, Connection],
    ) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.channels = channels
        self.admit = admit
        self.select_subprotocol = select_subprotocol
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        #: Commits the durable store before anything is written (``None``: not durable).
        self.commit = commit
        self.debug = settings.debug
        self.static = Path(settings.static) if settings.static else None
        self.connections = connections
        self.links: set[Link] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self._emptied: asyncio.Event | None = None
        # Each handshake waits on one of these, so no connection needs a timer of its own.
        loop = asyncio.get_running_loop()
        self.opening = _timeouts(settings.open_timeout, "opening handshake timed out", loop)
        self.answered = _timeouts(settings.close_timeout, "client did not close", loop)
        self.closing = _timeouts(settings.close_timeout, "closing handshake timed out", loop)

    def protocol(self) -> Link:
        """Protocol factory for ``loop.create_server``."""
        return Link(self)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task the hub keeps until it ends (shutdown waits for it)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task failed", exc_info=task.exception())

    def forget(self, link: Link) -> None:
        self.links.discard(link)
        if not self.links and self._emptied is not None:
            self._emptied.set()

    def keepalive(self) -> None:
        """Ping connections that were quiet for a round; drop those that stay silent."""
        pinged = [link for link in list(self.links) if link.ping_if_quiet()]
        if pinged:
            asyncio.get_running_loop().call_later(self.settings.ping_timeout, _drop_silent, pinged)

    async def close_all(self, timeout: float) -> None:
        """Close every connection with 1001 and wait, at most ``timeout``, for them to go."""
        self._emptied = asyncio.Event()
        for link in list(self.links):
            link.close(1001, "server shutting down")
        if self.links:
            try:
                await asyncio.wait_for(self._emptied.wait(), timeout)
            except TimeoutError:
                logger.warning("%d connections did not close in time; aborted", len(self.links))
                for link in list(self.links):
                    link.abort()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)
        for deadlines in (self.opening, self.answered, self.closing):
            deadlines.cancel()


def _timeouts(delay: float, why: str, loop: asyncio.AbstractEventLoop) -> Deadlines[Link]:
    return Deadlines(delay, lambda link: link.expire(why), loop)


def _drop_silent(links: list[Link]) -> None:
    for link in links:
        link.drop_if_silent()


class Link(asyncio.BufferedProtocol):
    """One TCP connection: a WebSocket once its handshake is admitted."""

    # Slots: thousands of these live at once, and each is made and dropped per connection.
    __slots__ = (
        "hub",
        "proto",
        "transport",
        "ws",
        "is_open",
        "_early",
        "_busy",
        "_waiting",
        "_paused",
        "_fragments",
        "_fragment_op",
        "_alive",
        "_pinged",
        "_deadlines",
        "_lost",
    )

    def __init__(self, hub: Hub) -> None:
        settings = hub.settings
        self.hub = hub
        self.proto = ServerProtocol(
            max_size=settings.max_size,
            select_subprotocol=hub.select_subprotocol,
            logger=_wire_logger,
        )
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.ws: Connection | None = None
        #: Admitted and not closing: messages may be written.
        self.is_open = False
        self._early: list[bytes] | None = []  # frames sent by header functions
        self._busy = False
        # Made when a frame first has to wait: an empty deque is 760 bytes per connection.
        self._waiting: deque[Buffer] | None = None
        self._paused = False
        self._fragments: list[Buffer] | None = None
        self._fragment_op = _TEXT
        self._alive = True
        self._pinged = False
        #: The handshake timeout this connection waits on, if any.
        self._deadlines: Deadlines[Link] | None = None
        self._lost = False

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=self.hub.settings.max_buffer)
        self.hub.links.add(self)
        self._start_timer(self.hub.opening)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_READ[:nbytes])

    def data_received(self, data: Buffer) -> None:
        self._alive = True
        proto = self.proto
        # The parser appends ``data`` to a bytearray of its own, so a view is enough.
        proto.receive_data(data)  # type: ignore[arg-type]
        events = proto.events_received()
        if events:
            self._handle(events)
        if proto.state is not OPEN:
            self._closing()
        self._flush()

    def eof_received(self) -> None:
        self.proto.receive_eof()
        self._flush()
        # Returning None lets the transport close its side: the client is gone.

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.is_open = False
        self._cancel_timer()
        self._waiting = None
        ws = self.ws
        hub = self.hub
        if ws is not None and hub.connections.pop(ws.pk, None) is not None:
            hub.channels.drop(ws)
            if hub.debug:
                logger.debug("disconnect %s (%s)", ws.pk, self.proto.close_code)
            if hub.on_disconnect is not None:
                pending = hub.on_disconnect(ws)
                if pending is not None:
                    hub.spawn(pending)
        hub.forget(self)

    def pause_writing(self) -> None:
        # Broadcasts never wait for a slow reader, so its backlog is bounded instead.
        peer = self.ws.pk if self.ws else self.transport.get_extra_info("peername")
        logger.warning(
            "connection %s cut off: more than %d bytes unsent (the client stopped reading)",
            peer,
            self.hub.settings.max_buffer,
        )
        self.abort()

    # incoming events

    def _handle(self, events: list[Any]) -> None:
        for event in events:
            if type(event) is Frame:
                opcode = event.opcode
                if opcode is _TEXT and event.fin and self._fragments is None:
                    self._message(event.data)
                elif opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                    self._fragment(event)
                elif opcode is _CLOSE:
                    self.is_open = False
            elif isinstance(event, Request):
                self._request(event)

    def _fragment(self, frame: Frame) -> None:
        if frame.opcode is not _CONT:
            self._fragments = []
            self._fragment_op = frame.opcode
        if self._fragments is None:  # pragma: no cover - the protocol refuses this
            return
        self._fragments.append(frame.data)
        if frame.fin:
            data = b"".join(self._fragments)
            self._fragments = None
            if self._fragment_op is _TEXT:
                self._message(data)
            else:
                self._binary()

    def _binary(self) -> None:
        error = InvalidFrame("binary frames are not supported; send JSON text frames")
        self.send_data(encode_errors(None, error))

    def _message(self, data: Buffer) -> None:
        # Busy: an async handler, hook or header runs; frames wait (and are dropped at
        # their turn if the connection is no longer open by then).
        if self._busy:
            if self._waiting is None:
                self._waiting = deque()
            self._waiting.append(data)
            if len(self._waiting) >= MAX_WAITING and not self._paused:
                self._paused = True
                self.transport.pause_reading()
            return
        if self.is_open:
            self._run_frame(data)

    def _run_frame(self, data: Buffer) -> None:
        try:
            requests = decode_frame(data)
        except SignalError as exc:
            self.send_data(encode_errors(None, exc))
            return
        self._run(requests, 0)

    def _run(self, requests: list[Any], index: int) -> None:
        dispatch = self.hub.dispatcher.dispatch
        ws = self.ws
        count = len(requests)
        while index < count:
            request = requests[index]
            index += 1
            pending = dispatch(request, ws)
            if pending is not None:
                self._busy = True
                self.hub.spawn(self._finish(pending, request, requests, index))
                return

    async def _finish(self, pending: Any, request: Any, requests: list[Any], index: int) -> None:
        dispatcher = self.hub.dispatcher
        try:
            result = await pending
        except Exception as exc:
            dispatcher.fail(request, exc, self.ws)
        else:
            dispatcher.complete(request, result, self.ws)
        self._busy = False
        self._run(requests, index)
        self._drain()

    async def _after_hooks(self, pending: Coroutine[Any, Any, None]) -> None:
        await pending
        self._busy = False
        self._drain()

    def _drain(self) -> None:
        """Handle the frames that waited for an async handler, until one is async again."""
        waiting = self._waiting
        while waiting and not self._busy and self.is_open:
            self._run_frame(waiting.popleft())
        if self._paused and not self._busy and not self._lost:
            self._paused = False
            self.transport.resume_reading()
        self._flush()

    # the handshake

    def _request(self, request: Request) -> None:
        hub = self.hub
        if self._ended_early():
            return
        if not is_upgrade(request):
            self._respond(answer(request, hub.static))
            return
        if self._refused_as_full():  # before any header function runs
            return
        peer = self.transport.get_extra_info("peername")
        ws = Connection(self, peer[0] if peer else "", request.path, request.headers)
        self.ws = ws
        admission = hub.admit(ws, request, ws.remote_address)
        if isinstance(admission, Admission):
            self._conclude(admission, request)
        else:
            self._busy = True  # frames sent along with the handshake wait for the verdict
            self.transport.pause_reading()
            hub.spawn(self._admit_later(admission, request))

    async def _admit_later(self, pending: Awaitable[Admission], request: Request) -> None:
        admission = await pending
        if self._lost:
            return
        self.transport.resume_reading()
        self._busy = False
        self._conclude(admission, request)  # async on_connect hooks make it busy again
        self._drain()

    def _refused_as_full(self) -> bool:
        """Answer 503 and return True when ``max_connections`` are open."""
        limit = self.hub.settings.max_connections
        if limit is None or len(self.hub.connections) < limit:
            return False
        self._early = None
        self._respond(plain_response(503, "too many connections\n"))
        return True

    def _ended_early(self) -> bool:
        """Whether the client sent more than its request before the answer, and the
        protocol already ended the stream for it (a close frame, or bytes that are not a
        frame): nothing may be written after that end, so the request gets no answer."""
        return self.proto.close_expected()  # while connecting: the end was queued

    def _conclude(self, admission: Admission, request: Request) -> None:
        if self._ended_early():
            return
        if not admission.allowed:
            self._early = None
            reason = admission.detail if self.hub.debug else admission.reason
            self._respond(plain_response(admission.status, reason + "\n"))
            return
        # Again: other handshakes may have been admitted while async headers ran.
        if self._refused_as_full():
            return
        response = self.proto.accept(request)
        if response.status_code != 101:
            self._respond(response)
            return
        self.proto.send_response(response)
        self._flush()
        self._cancel_timer()
        ws = self.ws
        assert ws is not None
        hub = self.hub
        self.is_open = True
        hub.connections[ws.pk] = ws
        early, self._early = self._early, None
        for frame in early or ():
            self.transport.write(frame)
        if hub.debug:
            logger.debug("connect %s from %s", ws.pk, ws.remote_address)
        if hub.on_connect is not None:
            pending = hub.on_connect(ws)
            if pending is not None:
                self._busy = True
                hub.spawn(self._after_hooks(pending))

    def _respond(self, response: Response) -> None:
        self.proto.send_response(response)
        self._flush()
        self._start_timer(self.hub.answered)

    # outgoing data

    def send_data(self, data: bytes) -> None:
        """Frame and write one JSON message; queued until admission, dropped after close."""
        if self.is_open:
            if self.hub.commit is not None:
                self.hub.commit()
            self.transport.write(text_frame(data))
        elif self._early is not None:
            self._early.append(text_frame(data))

    def write_frame(self, frame: bytes) -> None:
        """Write an already framed message (a broadcast, framed once for everyone)."""
        if self.is_open:
            self.transport.write(frame)

    def _flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()  # half-close, keep reading until the client's EOF
            else:
                self.transport.close()

    def _closing(self) -> None:
        self.is_open = False
        if self.proto.close_expected() and self._deadlines is None:
            self._start_timer(self.hub.closing)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (or drop a connection still in its handshake)."""
        if self._lost:
            return
        if self.proto.state is OPEN:
            self.is_open = False
            self.proto.send_close(code, reason)
            self._flush()
            self._closing()
        elif self.proto.state is State.CONNECTING:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection now, discarding unsent data."""
        self.is_open = False
        if not self._lost:
            self.transport.abort()

    def ping_if_quiet(self) -> bool:
        """Ping the client if it sent nothing since the last round; True when pinged."""
        if not self.is_open:
            return False
        if self._alive:
            self._alive = False
            return False
        self._pinged = True
        self.proto.send_ping(b"lexicons")
        self._flush()
        return True

    def drop_if_silent(self) -> None:
        """Close with 1011 when nothing, not even the pong, arrived since the ping."""
        if self.is_open and self._pinged and not self._alive:
            logger.info("connection %s dropped: no pong", self.ws.pk if self.ws else "?")
            self.proto.fail(1011, "keepalive ping timeout")
            self._flush()
            self._closing()
        self._pinged = False

    # timers

    def _start_timer(self, deadlines: Deadlines[Link]) -> None:
        self._cancel_timer()
        deadlines.add(self)
        self._deadlines = deadlines

    def _cancel_timer(self) -> None:
        if self._deadlines is not None:
            self._deadlines.discard(self)
            self._deadlines = None

    def expire(self, why: str) -> None:
        """Abort: the handshake this connection waited on timed out (``why``)."""
        self._deadlines = None
        if not self._lost:
            if self.hub.debug:
                logger.debug("%s; connection aborted", why)
            self.abort()
