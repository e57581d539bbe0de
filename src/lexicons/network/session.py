"""One connection's state machine, without I/O: the connection session.

websockets' Sans-I/O :class:`~websockets.server.ServerProtocol` parses and frames; the
:class:`Session` decides what happens when. Bytes and events go in
(:meth:`~Session.receive_data`, :meth:`~Session.receive_eof`, the end of a piece of work,
:meth:`~Session.pause_writing`, :meth:`~Session.connection_lost`, a timer); bytes to
write, work to run, timers and close or abort decisions come out through the
:class:`Port` the adapter gives it. What a server does with requests and messages is
its :class:`Application`. The session never imports asyncio, so every rule below is
tested by calling it, without sockets:

- **Order.** Everything written goes out in one order, through one queue: the 101, a
  header's messages, replies, broadcasts, pongs and close frames. A pong is never sent
  after the reply to a message that was completed after its ping.
- **One piece of work at a time.** Requests run in arrival order; while an async handler,
  hook or header runs, later messages wait, bounded in bytes and in count; past either
  bound the session stops reading, so the client's own TCP window holds the rest.
- **Fairness.** A turn handles a bounded number of requests and parses a bounded number
  of bytes; what is left waits for the next turn, after every other connection's.
- **Fragments** are bounded in bytes (``max_size``) and in count, and a text message is
  checked as UTF-8 fragment by fragment: the first invalid one fails the connection
  with 1007.
- **Slow readers,** judged over time, never by one write. Nothing waits on a client:
  while its socket is congested, output queues here. A client that has more than
  ``max_buffer`` waiting and drains none of it for a deadline (``ping_timeout``) is cut
  off; one that keeps reading is not, up to a hard bound of four times ``max_buffer``
  that holds memory in check however fast it reads. One message of any size always
  gets through to a client that reads.
  ``congested`` and ``when_drained`` tell a channel when a client lags and when it
  caught up, so it can drop or conflate instead of queueing.
- **The end.** When the connection is gone, the work it started is cancelled, whatever
  waited is dropped, and nothing more is written.
"""

from __future__ import annotations

import codecs
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from websockets.extensions import ServerExtensionFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN as PROTOCOL_OPEN
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from .deflate import negotiated_bits
from .frames import flavour, framer, text_frame
from .http import StaticFile, answer_not_found, is_attempt, is_upgrade, plain_response

__all__ = ["Application", "Limits", "Phase", "Port", "Session", "Work"]

logger = logging.getLogger("lexicons")

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_CLOSE = Opcode.CLOSE


class Phase(enum.Enum):
    """Where a connection is in its life."""

    #: Waiting for the HTTP request.
    CONNECTING = "connecting"
    #: A WebSocket handshake is being checked (headers may be running).
    ADMITTING = "admitting"
    #: Admitted: messages flow both ways.
    OPEN = "open"
    #: A close frame or an HTTP answer went out; waiting for the client to hang up.
    CLOSING = "closing"
    #: The TCP connection is gone.
    ENDED = "ended"


CONNECTING, ADMITTING, OPEN, CLOSING, ENDED = Phase


class Work(Protocol):
    """A handle on running work (an asyncio task, in practice)."""

    def cancel(self) -> Any: ...


class Port(Protocol):
    """What the session asks of the I/O side (the asyncio adapter, or a test)."""

    def peer(self) -> str:
        """The client's IP address as the socket sees it ("" when unknown)."""

    def end(self) -> None:
        """Half-close the socket after what was written (or close it)."""

    def abort(self) -> None:
        """Drop the TCP connection now, discarding unsent data."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...

    def spawn(self, work: Awaitable[Any], done: Callable[[Any], None] | None) -> Work:
        """Run ``work``, then call ``done(result)``.

        Not called when the work was cancelled; when it raised, the port logs the error
        and aborts the connection instead (the application's work answers its own errors).
        """

    def defer(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` soon, after the turns of other connections."""

    def start_timer(self, kind: str) -> None:
        """Start the ``opening``, ``answered``, ``closing`` or ``lagging`` deadline
        (replacing any)."""

    def cancel_timer(self) -> None: ...

    def stream(self, file: StaticFile, done: Callable[[], None]) -> None:
        """Write ``file``'s body, reading it off the event loop; then call ``done()``."""


class Application:
    """What a server does with its connections; the session calls these.

    The defaults admit everyone and ignore every message; a server overrides what it
    needs. ``message`` splits a message into the items ``dispatch`` runs one at a time,
    so the session can interleave the items of a large batch with other connections'.
    """

    def connection(self, session: Session, request: Request) -> Any:
        """The object handlers receive for this connection (``ws``)."""
        return session

    def full(self) -> bool:
        """Whether a new WebSocket must be refused with 503 (too many connections)."""
        return False

    def admit(self, ws: Any, request: Request) -> Response | None | Awaitable[Response | None]:
        """``None`` to admit, a response to refuse with; or an awaitable of either."""
        return None

    def opened(self, ws: Any) -> Awaitable[Any] | None:
        """The connection was admitted; an awaitable holds its first message back."""
        return None

    def closed(self, ws: Any, admitted: bool) -> Awaitable[Any] | None:
        """The connection is gone (``admitted``: it was open); called exactly once."""
        return None

    def cut_off(self, ws: Any) -> None:
        """``ws`` is being cut off: its unsent output passed ``max_buffer``."""

    def respond(self, request: Request) -> Response | StaticFile:
        """The answer to a plain HTTP request (not a WebSocket upgrade)."""
        return answer_not_found()

    def attempt(self, ws: Any, request: Request) -> Response | Awaitable[Response]:
        """The answer to the client's probe (``GET /lexicons.attempt``): the status the
        handshake it stands for would get, readable by a page. ``ws`` is then closed,
        never admitted."""
        return answer_not_found()

    def message(self, ws: Any, data: bytes, text: bool) -> Sequence[Any]:
        """The items of one complete message (text is valid UTF-8); answer errors here."""
        return ()

    def dispatch(self, item: Any, ws: Any) -> Awaitable[Any] | None:
        """Run one item; an awaitable holds the connection's next items back until done."""
        return None


class Limits:
    """Bounds shared by every session of one server."""

    __slots__ = ("max_size", "max_buffer", "high_water", "max_fragments", "max_waiting", "turn")

    def __init__(
        self,
        *,
        max_size: int = 2**20,
        max_buffer: int = 4 * 2**20,
        high_water: int | None = None,
        max_fragments: int | None = None,
        max_waiting: int = 64,
        turn: int = 64,
    ) -> None:
        #: Largest incoming message, in bytes (also what may wait behind a handler).
        self.max_size = max_size
        #: Unsent bytes a client may leave waiting before it is cut off (besides one
        #: message of any size).
        self.max_buffer = max_buffer
        #: The part of them the socket's own buffer holds; the rest waits in the session.
        self.high_water = max_buffer // 2 if high_water is None else high_water
        #: Most frames one message may come in; by default one per 64 bytes of max_size.
        self.max_fragments = max_fragments or max(64, max_size // 64)
        #: Most messages that may wait behind a running handler before reading pauses.
        self.max_waiting = max_waiting
        #: Requests one connection may run per turn before others get theirs.
        self.turn = turn


#: However a client reads, no more than this many times ``max_buffer`` waits for it.
HARD_LIMIT = 4

#: Bytes handed to the parser at once; parsing them costs a quarter of a turn's budget,
#: so a read full of tiny frames is parsed over several turns, between other connections'.
CHUNK = 4096


_recv_frame = ServerProtocol.recv_frame


class Answer:
    """What the protocol wrote on receiving a control frame (a pong, the close echo and
    the end of the stream), kept in its place among the events it follows."""

    __slots__ = ("writes",)

    def __init__(self, writes: list[bytes]) -> None:
        self.writes = writes


class _ServerProtocol(ServerProtocol):
    """websockets' server protocol, with two changes to how control frames are answered.

    - Their answers become events in arrival order, instead of going out ahead of the
      messages received before them: a reply to a message completed before a ping or a
      close precedes the pong or the close echo, and one completed after follows it.
    - A close frame between the fragments of a message is answered normally (RFC 6455
      5.4 lets control frames arrive there); the message is abandoned.

    It also leaves no reference cycle to the garbage collector, whose passes cost a busy
    server in proportion to everything it keeps alive: the server's ``select_subprotocol``
    is kept unbound (websockets binds it to the protocol), and :meth:`release` ends the
    parser (a generator that refers back to the protocol) once the connection is gone.
    """

    def __init__(
        self,
        select_subprotocol: Callable[[ServerProtocol, Sequence[str]], str | None] | None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._select = select_subprotocol

    def select_subprotocol(self, subprotocols: Sequence[Subprotocol]) -> Subprotocol | None:
        if self._select is None:
            return super().select_subprotocol(subprotocols)
        return self._select(self, subprotocols)  # type: ignore[return-value]

    def release(self) -> None:
        """The connection is gone: end the parser, which nothing will feed again."""
        self.parser.close()

    def recv_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
            _recv_frame(self, frame)
            return
        if opcode is _CLOSE:
            self.current_size = None
        written = len(self.writes)
        _recv_frame(self, frame)
        if len(self.writes) > written:
            self.events.append(Answer(self.writes[written:]))  # type: ignore[arg-type]
            del self.writes[written:]


class Session:
    """One TCP connection, from its first byte to its end."""

    __slots__ = (
        "app",
        "limits",
        "proto",
        "port",
        "phase",
        "ws",
        "writer",
        "binary",
        "flavour",
        "_frame",
        "_out",
        "_backlog",
        "_backlog_bytes",
        "_congested",
        "_lagging",
        "_drained",
        "_held",
        "_eof_due",
        "_streaming",
        "_ended_output",
        "_inbox",
        "_waiting",
        "_waiting_bytes",
        "_batch",
        "_batch_at",
        "_work",
        "_budget",
        "_turn_due",
        "_reading_paused",
        "_fragments",
        "_fragment_text",
        "_fragment_count",
        "_utf8",
        "_heard",
        "_pinged",
    )

    def __init__(
        self,
        app: Application,
        limits: Limits,
        port: Port,
        write: Callable[[bytes], Any],
        *,
        select_subprotocol: Callable[[ServerProtocol, Sequence[str]], str | None] | None = None,
        wire_logger: logging.Logger | None = None,
        extensions: Sequence[ServerExtensionFactory] | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
        self.port = port
        self.proto = _ServerProtocol(
            select_subprotocol,
            extensions=extensions,
            max_size=limits.max_size,
            logger=wire_logger,
        )
        self.phase = CONNECTING
        #: The application's object for this connection, once the handshake arrived.
        self.ws: Any = None
        #: Writes one framed message now: the socket's own ``write`` while the connection
        #: is open and the socket keeps up, a queue while it is congested, ``None`` when
        #: messages can no longer be sent. Broadcasts call it for each subscriber.
        self.writer: Callable[[bytes], Any] | None = None
        #: Messages go in binary frames: the application sets it when it learns, at the
        #: handshake, that the client speaks a binary encoding.
        self.binary = False
        #: How this connection's frames are built (:func:`~.frames.flavour`), known once
        #: the handshake is accepted: a broadcast writes its frame of this flavour.
        self.flavour = 0
        self._frame: Callable[[bytes], bytes] = text_frame
        self._out = write
        self._backlog: deque[bytes] | None = None
        self._backlog_bytes = 0
        self._congested = False
        #: More than max_buffer waits: the "lagging" deadline runs until the client drains.
        self._lagging = False
        #: Called once output no longer waits (see when_drained).
        self._drained: list[Callable[[], Any]] | None = None
        #: Messages sent before the connection is admitted (by header functions).
        self._held: list[tuple[bytes, bool | None]] | None = []
        #: The protocol ended the stream; the end is written once nothing waits before it.
        self._eof_due = False
        self._streaming = False
        self._ended_output = False
        self._inbox: bytearray | None = None
        self._waiting: deque[tuple[bytes, bool]] | None = None
        self._waiting_bytes = 0
        self._batch: Sequence[Any] = ()
        self._batch_at = 0
        self._work: Work | None = None
        self._budget = limits.turn
        self._turn_due = False
        self._reading_paused = False
        self._fragments: bytearray | None = None
        self._fragment_text = False
        self._fragment_count = 0
        self._utf8: codecs.IncrementalDecoder | None = None
        self._heard = True
        self._pinged = False
        port.start_timer("opening")

    # --- state the application may read ---------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether messages sent now can still reach the client."""
        return self.phase is OPEN

    @property
    def busy(self) -> bool:
        """Whether work this connection started (a handler, hook or header) is running."""
        return self._work is not None

    @property
    def close_code(self) -> int | None:
        """The close code received or sent, once the closing handshake started."""
        return self.proto.close_code

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol selected at the handshake."""
        return self.proto.subprotocol

    # --- input ----------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes arrived from the client."""
        self._heard = True
        if self._inbox is None and len(data) <= CHUNK and not self._turn_due:
            # The common case: parse it all now and handle what it completes.
            self._budget = self.limits.turn
            self._parse(data)
            if self._waiting is not None or self._batch or self._reading_paused:
                self._after_input()
            return
        if self._inbox is None:
            self._inbox = bytearray(data)
        else:
            self._inbox += data
        if not self._turn_due:
            self._turn()

    def receive_eof(self) -> None:
        """The client closed its side of the TCP connection."""
        if self.phase is ENDED:
            return
        self.proto.receive_eof()
        self._flush_protocol()

    def _parse(self, data: bytes | bytearray | memoryview) -> None:
        proto = self.proto
        proto.receive_data(data)  # type: ignore[arg-type]  # copied into its own buffer
        events: list[Any] = proto.events_received()
        for event in events:
            if type(event) is Frame:
                opcode = event.opcode
                if opcode is _TEXT and event.fin and self._fragments is None:
                    data = bytes(event.data)  # bytes() of bytes is the same object
                    try:
                        data.decode()
                    except UnicodeDecodeError as exc:
                        self._fail(1007, f"invalid UTF-8 at position {exc.start}")
                        continue
                    self._message(data, True)
                elif opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                    self._fragment(event)
                elif opcode is _CLOSE:
                    self._closing_started()
            elif type(event) is Answer:
                for chunk in event.writes:
                    if chunk:
                        self._write(chunk)
                    else:
                        self._eof_due = True
                self._end_when_flushed()
            elif isinstance(event, Request):
                self._request(event)
        # What the parser wrote itself comes after every event: a failure's close frame,
        # or the answer to a request line it could not read.
        if proto.writes:
            self._flush_protocol()
        if proto.state is not PROTOCOL_OPEN and self.phase is OPEN:
            self._closing_started()

    def _fragment(self, frame: Frame) -> None:
        if frame.opcode is not _CONT:
            self._fragments = bytearray()
            self._fragment_text = frame.opcode is _TEXT
            self._fragment_count = 0
            self._utf8 = codecs.getincrementaldecoder("utf-8")() if self._fragment_text else None
        fragments = self._fragments
        if fragments is None:  # pragma: no cover - the parser refuses a stray continuation
            return
        self._fragment_count += 1
        if self._fragment_count > self.limits.max_fragments:
            self._fail(1009, f"message in more than {self.limits.max_fragments} fragments")
            return
        if self._utf8 is not None:
            try:
                self._utf8.decode(frame.data, frame.fin)
            except UnicodeDecodeError as exc:
                start = len(fragments) + exc.start
                self._fail(1007, f"invalid UTF-8 at position {start}")
                return
        fragments += frame.data
        if frame.fin:
            self._fragments = self._utf8 = None
            self._message(bytes(fragments), self._fragment_text)

    def _message(self, data: bytes, text: bool) -> None:
        """A complete message arrived: handle it now, or let it wait its turn."""
        phase = self.phase
        if (
            phase is OPEN
            and self._work is None
            and self._waiting is None
            and not self._batch
            and self._budget > 0
        ):
            self._budget -= 1
            items = self.app.message(self.ws, data, text)
            if items:
                self._run(items, 0)
            return
        if phase is not OPEN and phase is not ADMITTING:
            return
        if self._waiting is None:
            self._waiting = deque()
        self._waiting.append((data, text))
        self._waiting_bytes += len(data)

    def _handle(self, data: bytes, text: bool) -> None:
        self._budget -= 1
        items = self.app.message(self.ws, data, text)
        if items:
            self._run(items, 0)

    def _run(self, items: Sequence[Any], index: int) -> None:
        """Dispatch ``items`` from ``index`` on, until one is async or the turn is over."""
        dispatch = self.app.dispatch
        ws = self.ws
        count = len(items)
        while index < count:
            if self.phase is not OPEN:
                self._batch = ()
                return
            if index and self._budget <= 0:
                break
            item = items[index]
            index += 1
            self._budget -= 1
            pending = dispatch(item, ws)
            if pending is not None:
                self._start(pending)
                break
        if index < count:
            self._batch, self._batch_at = items, index
        else:
            self._batch = ()

    def _start(self, pending: Awaitable[Any]) -> None:
        self._work = self.port.spawn(pending, self._work_done)

    def _work_done(self, result: Any = None) -> None:
        """The running handler or hook finished: carry on where the connection stopped."""
        self._work = None
        self._turn()

    def _turn(self) -> None:
        """Run a turn: waiting requests and messages, then more input, within the budget."""
        self._turn_due = False
        self._budget = self.limits.turn
        while self._budget > 0 and self.phase is not ENDED:
            idle = self._work is None
            if idle and self._batch:
                self._run(self._batch, self._batch_at)
            elif idle and self._waiting and self.phase is OPEN:
                data, text = self._waiting.popleft()
                self._waiting_bytes -= len(data)
                if not self._waiting:
                    self._waiting = None
                self._handle(data, text)
            elif self._inbox and not self._input_full():
                chunk = self._inbox[:CHUNK]
                del self._inbox[:CHUNK]
                if not self._inbox:
                    self._inbox = None
                self._budget -= max(1, self.limits.turn // 4)
                self._parse(chunk)
            else:
                break
        self._after_input()

    def _input_full(self) -> bool:
        """Whether enough messages wait that reading more must wait too."""
        waiting = self._waiting
        return waiting is not None and (
            len(waiting) >= self.limits.max_waiting or self._waiting_bytes >= self.limits.max_size
        )

    def _after_input(self) -> None:
        """Pause or resume reading, and ask for another turn when work is left."""
        if self.phase is ENDED:
            return
        can_run = self._work is None and (
            bool(self._batch) or (bool(self._waiting) and self.phase is OPEN)
        )
        more_input = self._inbox is not None and not self._input_full()
        if (can_run or more_input) and not self._turn_due:
            self._turn_due = True
            self.port.defer(self._turn)
        pause = self._turn_due or self._inbox is not None or self._input_full()
        if pause and not self._reading_paused:
            self._reading_paused = True
            self.port.pause_reading()
        elif not pause and self._reading_paused:
            self._reading_paused = False
            self.port.resume_reading()

    # --- the handshake -----------------------------------------------------------------

    def _request(self, request: Request) -> None:
        # The client may have sent more than its request before the answer, and the parser
        # already ended the stream for it (a close frame, bytes that are not a frame):
        # nothing may be written after that end, so the request gets no answer.
        if self.proto.close_expected():
            return
        upgrade = is_upgrade(request)
        probe = not upgrade and is_attempt(request)
        if not upgrade and not probe:
            answer = self.app.respond(request)
            if isinstance(answer, StaticFile):
                self._streaming = answer.path is not None
                self._answer(answer.head)
                if self._streaming:
                    self.port.stream(answer, self._streamed)
            else:
                self._answer(answer)
            return
        if self._refused_as_full():
            return
        self.phase = ADMITTING
        self.ws = ws = self.app.connection(self, request)
        # A probe is admitted like a handshake and always answered with a response.
        verdict = self.app.attempt(ws, request) if probe else self.app.admit(ws, request)
        if verdict is None or isinstance(verdict, Response):
            self._conclude(verdict, request)
        else:
            # Frames sent along with the handshake wait for the verdict.
            self._work = self.port.spawn(verdict, lambda refusal: self._admitted(refusal, request))

    def _admitted(self, refusal: Response | None, request: Request) -> None:
        """The verdict of a handshake whose checks awaited: the parser may have ended the
        stream meanwhile, and other connections may have been admitted."""
        self._work = None
        if self.phase is ADMITTING and not self.proto.close_expected():
            if refusal is None and self._refused_as_full():
                self._refused()
            else:
                self._conclude(refusal, request)
        self._turn()

    def _refused_as_full(self) -> bool:
        if not self.app.full():
            return False
        self._answer(plain_response(503, "too many connections\n"))
        return True

    def _conclude(self, refusal: Response | None, request: Request) -> None:
        """Answer the handshake: refused with ``refusal``, or accepted (``None``)."""
        if refusal is not None:
            self._answer(refusal)
            self._refused()
            return
        response = self.proto.accept(request)
        if response.status_code != 101:
            self._answer(response)
            self._refused()
            return
        self.proto.send_response(response)
        self.port.cancel_timer()
        self._flush_protocol()
        self.phase = OPEN
        self.flavour = flavour(self.binary, negotiated_bits(self.proto.extensions))
        self._frame = framer(self.flavour)
        self._update_writer()
        held, self._held = self._held, None
        for data, text in held or ():
            self._write(self._framed(data, text))
        pending = self.app.opened(self.ws)
        if pending is not None:
            self._start(pending)

    def _refused(self) -> None:
        ws, self.ws = self.ws, None
        self.app.closed(ws, False)

    def _answer(self, response: Response) -> None:
        """Send a plain HTTP answer; the connection ends once the client hangs up."""
        self._held = None
        self.phase = CLOSING
        self.proto.send_response(response)
        self._flush_protocol()
        if self._streaming:
            self.port.cancel_timer()  # the port bounds a download that makes no progress
        else:
            self.port.start_timer("answered")

    def write_body(self, data: bytes) -> None:
        """Write part of a streamed HTTP body (the port calls it while streaming)."""
        self._write(data)

    @property
    def congested(self) -> bool:
        """Whether output waits for the socket to drain: a streamed body should pause, and
        a channel that drops or conflates for slow clients does so."""
        return self._congested or bool(self._backlog)

    def when_drained(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once nothing waits for the socket any more: at once if
        nothing waits now, otherwise when the socket has taken everything queued here.

        A callback that writes may congest the socket again; it then asks again. None
        is called once the connection can no longer send.
        """
        if self.writer is None:
            return
        if not self._congested and not self._backlog:
            callback()
        elif self._drained is None:
            self._drained = [callback]
        else:
            self._drained.append(callback)

    def _streamed(self) -> None:
        self._streaming = False
        self._end_when_flushed()
        if self.phase is not ENDED:
            self.port.start_timer("answered")

    # --- output ---------------------------------------------------------------------

    def send(self, data: bytes, text: bool | None = None) -> None:
        """Frame and send one message: held until admission, dropped after the close.

        It goes in the connection's kind of frame, or in a text (``text=True``) or binary
        one, as an echo answers each message in its own kind.
        """
        writer = self.writer
        if writer is not None:
            writer(self._frame(data) if text is None else self._framed(data, text))
        elif self._held is not None:
            self._held.append((data, text))

    def _framed(self, data: bytes, text: bool | None) -> bytes:
        if text is None or text is not self.binary:
            return self._frame(data)
        return framer(self.flavour ^ 1)(data)

    def _update_writer(self) -> None:
        if self.phase is not OPEN or self._ended_output:
            self.writer = None
        elif self._congested or self._backlog:
            self.writer = self._queue
        else:
            self.writer = self._out

    def _write(self, data: bytes) -> None:
        """Write bytes in order: now, or behind what waits for a congested socket."""
        if self._ended_output:
            return
        if self._congested or self._backlog:
            self._queue(data)
        else:
            self._out(data)

    def _queue(self, data: bytes) -> None:
        backlog = self._backlog
        if backlog is None:
            self._backlog = backlog = deque()
            self._update_writer()
        elif self._backlog_bytes + len(data) > HARD_LIMIT * self.limits.max_buffer:
            self._cut_off()
            return
        backlog.append(data)
        self._backlog_bytes += len(data)
        # One message of any size may wait alone; past max_buffer, the client has until
        # the deadline to drain some of it.
        if not self._lagging and len(backlog) > 1 and self._backlog_bytes > self._share():
            self._lagging = True
            self.port.start_timer("lagging")

    def _share(self) -> int:
        """What may wait here: max_buffer, less what the socket's own buffer holds."""
        return self.limits.max_buffer - self.limits.high_water

    def _cut_off(self) -> None:
        logger.warning(
            "connection %s cut off: more than %d bytes unsent, not read in time "
            "(the client stopped reading)",
            getattr(self.ws, "pk", "?"),
            self.limits.max_buffer,
        )
        self.app.cut_off(self.ws)
        self.abort()

    def pause_writing(self) -> None:
        """The socket's buffer is full: queue output here until it drains."""
        self._congested = True
        self._update_writer()

    def resume_writing(self) -> None:
        """The socket drained: write what waited, until it is full again."""
        self._congested = False
        backlog = self._backlog
        while backlog and not self._congested and not self._ended_output:
            data = backlog.popleft()
            self._backlog_bytes -= len(data)
            self._out(data)
        if not backlog:
            self._backlog = None
            self._backlog_bytes = 0
        if self._lagging:  # the client read: a new deadline, or none once caught up
            if self._backlog_bytes > self._share():
                self.port.start_timer("lagging")
            else:
                self._lagging = False
                self.port.cancel_timer()
        self._update_writer()
        self._end_when_flushed()
        if self._drained is not None and not self._backlog and not self._congested:
            waiting, self._drained = self._drained, None
            for callback in waiting:
                if self.writer is None:
                    break
                callback()

    def _flush_protocol(self) -> None:
        """Write what websockets' protocol produced: a response, pongs, a close, EOF."""
        for data in self.proto.data_to_send():
            if data:
                self._write(data)
            else:
                self._eof_due = True
        self._end_when_flushed()

    def _end_when_flushed(self) -> None:
        """Half-close once the protocol ended the stream and nothing waits before the end."""
        if self._eof_due and not self._backlog and not self._streaming:
            self._eof_due = False
            if not self._ended_output:
                self._ended_output = True
                self._update_writer()
                self.port.end()

    # --- closing ----------------------------------------------------------------------

    def _closing_started(self) -> None:
        """A close frame went out or came in: no more messages either way."""
        self._lagging = False  # the closing deadline governs from here
        if self.phase is OPEN or self.phase is ADMITTING:
            self.phase = CLOSING
            self._update_writer()
        self._drop_input()
        if self.proto.close_expected():
            self.port.start_timer("closing")

    def _fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket connection (RFC 6455 7.1.7) with ``code``."""
        self._fragments = self._utf8 = None
        self.proto.fail(code, reason)
        self._flush_protocol()
        self._closing_started()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (or drop a connection still in its handshake)."""
        if self.phase is OPEN and self.proto.state is PROTOCOL_OPEN:
            self.proto.send_close(code, reason)
            self._flush_protocol()
            self._closing_started()
        elif self.phase is CONNECTING or self.phase is ADMITTING:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection now, discarding unsent data."""
        if self.phase is not ENDED:
            self._ended_output = True
            self._update_writer()
            self.port.abort()

    def _drop_input(self) -> None:
        self._inbox = None
        self._waiting = None
        self._waiting_bytes = 0
        self._batch = ()
        self._fragments = self._utf8 = None

    def connection_lost(self) -> None:
        """The TCP connection is gone: cancel its work, drop what waited, tell the app."""
        if self.phase is ENDED:
            return
        # A refused or plain HTTP connection has no ws any more; an admitting one has.
        admitted = self.ws is not None and self.phase is not ADMITTING
        self.phase = ENDED
        self._ended_output = True
        self.writer = None
        self._drop_input()
        self._backlog = None
        self._drained = None
        self._held = None
        self.proto.release()
        work, self._work = self._work, None
        if work is not None:
            work.cancel()
        self.port.cancel_timer()
        ws, self.ws = self.ws, None
        if ws is not None:
            pending = self.app.closed(ws, admitted)
            if pending is not None:
                self.port.spawn(pending, None)

    # --- keepalive and timers ---------------------------------------------------------

    def ping_if_quiet(self) -> bool:
        """Ping the client if it sent nothing since the last round; True when pinged."""
        if self.phase is not OPEN:
            return False
        if self._heard:
            self._heard = False
            return False
        self._pinged = True
        self.proto.send_ping(b"lexicons")
        self._flush_protocol()
        return True

    def drop_if_silent(self) -> None:
        """Fail with 1011 when nothing, not even the pong, arrived since the ping."""
        if self.phase is OPEN and self._pinged and not self._heard:
            logger.info("connection %s dropped: no pong", getattr(self.ws, "pk", "?"))
            self._fail(1011, "keepalive ping timeout")
        self._pinged = False

    def expire(self, why: str) -> None:
        """The deadline this connection waited on passed (``why``): drop it."""
        if self._lagging:
            self._cut_off()
        elif self.phase is not ENDED:
            logger.debug("%s; connection aborted", why)
            self.abort()

    def __repr__(self) -> str:
        return f"<Session {self.phase.value}>"
