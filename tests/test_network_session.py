"""The connection session, without sockets: a websockets client protocol on one side,
a recording port on the other, and the rules in between.

The client is websockets' own Sans-I/O ``ClientProtocol``: it builds the handshake and
masked frames, and parses everything the session writes, so a malformed answer fails the
test. The port records what the session asks of the I/O side and lets the test decide
when work finishes, when deferred turns run and when the socket drains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from lexicons.network.http import StaticFile, plain_response
from lexicons.network.session import CLOSING, ENDED, OPEN, Application, Limits, Session

__all__ = ["Client", "Harness", "Pending", "RecordingApp"]


class Pending:
    """Work the test finishes by hand: ``finish(result)`` calls the session back."""

    def __init__(self, label: Any) -> None:
        self.label = label
        self.done: Callable[[Any], None] | None = None
        self.cancelled = False
        self.finished = False

    def cancel(self) -> None:
        self.cancelled = True

    def finish(self, result: Any = None) -> None:
        assert not self.cancelled and not self.finished
        self.finished = True
        if self.done is not None:
            self.done(result)

    def __await__(self) -> Any:  # pragma: no cover - the port never awaits it
        raise AssertionError("awaited outside the test's control")


class Port:
    """Records what the session asks of the I/O side."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.ended = False
        self.aborted = False
        self.paused = False
        self.work: list[Pending] = []
        self.deferred: list[Callable[[], None]] = []
        self.timer: str | None = None
        self.streams: list[tuple[StaticFile, Callable[[], None]]] = []
        self.writes_after_end = 0
        #: Called after each write, as the socket would call pause_writing when full.
        self.after_write: Callable[[], None] | None = None

    def write(self, data: bytes) -> None:
        if self.ended or self.aborted:
            self.writes_after_end += 1
        self.written.append(bytes(data))
        if self.after_write is not None:
            self.after_write()

    def peer(self) -> str:
        return "127.0.0.1"

    def end(self) -> None:
        self.ended = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def spawn(self, work: Any, done: Callable[[Any], None] | None) -> Pending:
        pending = work if isinstance(work, Pending) else Pending(work)
        pending.done = done
        self.work.append(pending)
        return pending

    def defer(self, callback: Callable[[], None]) -> None:
        self.deferred.append(callback)

    def start_timer(self, kind: str) -> None:
        self.timer = kind

    def cancel_timer(self) -> None:
        self.timer = None

    def stream(self, file: StaticFile, done: Callable[[], None]) -> None:
        self.streams.append((file, done))

    def run_deferred(self) -> int:
        """Run deferred turns until none is left; how many ran."""
        ran = 0
        while self.deferred:
            self.deferred.pop(0)()
            ran += 1
        return ran


class RecordingApp(Application):
    """Messages are comma-separated items; ``a:<x>`` items are async, others reply ``re:<x>``."""

    def __init__(self) -> None:
        self.dispatched: list[str] = []
        self.closed_calls: list[bool] = []
        self.opened_calls = 0
        self.verdict: Any = None
        self.on_open: Any = None
        self.binary: list[bytes] = []

    def admit(self, ws: Any, request: Any) -> Any:
        return self.verdict

    def opened(self, ws: Any) -> Any:
        self.opened_calls += 1
        return self.on_open

    def closed(self, ws: Any, admitted: bool) -> None:
        self.closed_calls.append(admitted)

    def respond(self, request: Any) -> Response | StaticFile:
        if request.path == "/file":
            head = plain_response(200, b"")
            return StaticFile(head, None, 0)
        return plain_response(404, "not found\n")

    def message(self, ws: Session, data: bytes, text: bool) -> Sequence[str]:
        if not text:
            self.binary.append(data)
            return ()
        return data.decode().split(",") if data else [""]

    def dispatch(self, item: str, ws: Session) -> Pending | None:
        self.dispatched.append(item)
        if item.startswith("a:"):
            return Pending(item)
        ws.send(f"re:{item}".encode())
        return None


class Client:
    """websockets' client protocol, fed with what the session writes."""

    def __init__(self) -> None:
        self.proto = ClientProtocol(parse_uri("ws://127.0.0.1/"), max_size=None)
        self.events: list[Any] = []

    def handshake(self) -> bytes:
        self.proto.send_request(self.proto.connect())
        return b"".join(self.proto.data_to_send())

    def frame(self, opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
        self.proto.send_frame(Frame(opcode, data, fin))
        return b"".join(self.proto.data_to_send())

    def text(self, data: str | bytes, fin: bool = True) -> bytes:
        return self.frame(Opcode.TEXT, data.encode() if isinstance(data, str) else data, fin)

    def receive(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.proto.receive_data(chunk)
        self.events.extend(self.proto.events_received())

    def messages(self) -> list[str]:
        """Text messages received, and ``ping``/``pong:<data>``/``close:<code>`` markers."""
        shown = []
        for event in self.events:
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    shown.append(event.data.decode())
                elif event.opcode is Opcode.PONG:
                    shown.append(f"pong:{event.data.decode()}")
                elif event.opcode is Opcode.CLOSE:
                    shown.append(
                        f"close:{self.proto.close_rcvd.code if self.proto.close_rcvd else ''}"
                    )
                elif event.opcode is Opcode.BINARY:
                    shown.append(f"binary:{len(event.data)}")
        return shown


class Harness:
    """A session, its port, its app and a client, wired together."""

    def __init__(self, limits: Limits | None = None, app: RecordingApp | None = None) -> None:
        self.app = app or RecordingApp()
        self.port = Port()
        self.limits = limits or Limits(max_size=4096, max_buffer=8192, turn=8)
        self.session = Session(self.app, self.limits, self.port, self.port.write)
        self.client = Client()
        self.read = 0

    def feed(self, data: bytes) -> None:
        self.session.receive_data(data)

    def open(self) -> None:
        self.feed(self.client.handshake())
        self.flush()
        assert self.client.proto.state is State.OPEN, self.port.written[:1]

    def flush(self) -> None:
        """Hand the client what the session wrote since the last flush."""
        new = self.port.written[self.read :]
        self.read = len(self.port.written)
        self.client.receive(new)


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.open()
    return harness


# the handshake


def test_handshake_is_answered_with_101_and_the_session_opens() -> None:
    h = Harness()
    assert h.port.timer == "opening"
    h.open()
    assert h.session.phase is OPEN and h.session.is_open
    assert h.app.opened_calls == 1
    assert h.port.timer is None


def test_frames_sent_with_the_handshake_wait_for_an_async_verdict() -> None:
    h = Harness()
    h.app.verdict = Pending("admission")
    h.feed(h.client.handshake() + h.client.text("x"))
    assert h.app.dispatched == [] and h.port.written == []
    (admission,) = h.port.work
    admission.finish(None)  # admitted
    h.flush()
    assert h.app.dispatched == ["x"]
    assert h.client.messages() == ["re:x"]


def test_a_refused_connection_gets_the_refusal_and_never_runs_its_frames() -> None:
    h = Harness()
    h.app.verdict = Pending("admission")
    h.feed(h.client.handshake() + h.client.text("x"))
    h.session.send(b"from a header")  # held until admission
    h.port.work[0].finish(plain_response(403, "no\n"))
    assert h.port.written[0].startswith(b"HTTP/1.1 403")
    assert b"from a header" not in b"".join(h.port.written)
    assert h.app.dispatched == []
    assert h.app.closed_calls == [False]
    assert h.port.ended and h.port.timer == "answered"
    h.session.connection_lost()
    assert h.app.closed_calls == [False]  # exactly once


def test_header_messages_go_out_after_the_101_when_admitted() -> None:
    h = Harness()
    h.app.verdict = Pending("admission")
    h.feed(h.client.handshake())
    h.session.send(b"welcome")
    h.port.work[0].finish(None)
    h.flush()
    assert h.client.messages() == ["welcome"]


def test_leaving_during_an_async_verdict_cancels_it() -> None:
    h = Harness()
    h.app.verdict = Pending("admission")
    h.feed(h.client.handshake())
    h.session.connection_lost()
    assert h.port.work[0].cancelled
    assert h.app.closed_calls == [False]


def test_plain_http_gets_an_answer_and_the_end_of_the_stream() -> None:
    h = Harness()
    h.feed(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    assert h.port.written[0].startswith(b"HTTP/1.1 404")
    assert h.port.ended and h.port.timer == "answered"


class Probed(RecordingApp):
    """Answers the client's probe with whatever ``attempt_answer`` holds (or awaits)."""

    attempt_answer: Any = None

    def attempt(self, ws: Any, request: Any) -> Any:
        return self.attempt_answer


@pytest.mark.parametrize("waits", [False, True])
def test_a_probe_is_answered_and_never_admitted(waits: bool) -> None:
    app = Probed()
    answer = plain_response(403, "refused by gate\n")
    app.attempt_answer = Pending("probe") if waits else answer
    h = Harness(app=app)
    h.feed(b"GET /lexicons.attempt HTTP/1.1\r\nHost: x\r\n\r\n" + h.client.text("x"))
    if waits:
        assert h.port.written == []
        h.port.work[0].finish(answer)
    assert h.port.written[0].startswith(b"HTTP/1.1 403")
    assert h.port.ended and h.port.timer == "answered"
    assert h.app.closed_calls == [False] and h.app.opened_calls == 0
    assert h.app.dispatched == []  # bytes after a plain request are never frames


def test_a_probe_whose_client_vanishes_is_cancelled_and_closed_once() -> None:
    app = Probed()
    app.attempt_answer = Pending("probe")
    h = Harness(app=app)
    h.feed(b"GET /lexicons.attempt HTTP/1.1\r\nHost: x\r\n\r\n")
    h.session.connection_lost()
    assert h.port.work[0].cancelled
    assert h.app.closed_calls == [False] and h.port.written == []


def test_only_a_plain_get_is_a_probe() -> None:
    app = Probed()
    app.attempt_answer = plain_response(200, "admitted\n")
    h = Harness(app=app)
    h.feed(b"HEAD /lexicons.attempt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert h.port.written[0].startswith(b"HTTP/1.1 404")  # respond(): not the probe
    assert h.app.closed_calls == []


def test_a_streamed_file_ends_the_stream_only_after_its_body() -> None:
    app = RecordingApp()

    class Files(RecordingApp):
        def respond(self, request: Any) -> StaticFile:
            return StaticFile(plain_response(200, b""), object(), 5)  # type: ignore[arg-type]

    app = Files()
    h = Harness(app=app)
    h.feed(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
    assert h.port.written[0].startswith(b"HTTP/1.1 200") and not h.port.ended
    assert h.port.timer is None  # no deadline cuts a download short
    (_, done) = h.port.streams[0]
    h.session.write_body(b"hello")
    done()
    assert h.port.written[1] == b"hello" and h.port.ended
    assert h.port.timer == "answered"


# messages and order


def test_items_run_in_order_and_replies_keep_it(h: Harness) -> None:
    h.feed(h.client.text("a,b") + h.client.text("c"))
    h.flush()
    assert h.app.dispatched == ["a", "b", "c"]
    assert h.client.messages() == ["re:a", "re:b", "re:c"]


def test_later_items_wait_for_an_async_one(h: Harness) -> None:
    h.feed(h.client.text("a:1,b") + h.client.text("c"))
    assert h.app.dispatched == ["a:1"] and h.session.busy
    h.port.work[0].finish()
    h.flush()
    assert h.app.dispatched == ["a:1", "b", "c"]
    assert h.client.messages() == ["re:b", "re:c"]


def test_a_pong_for_a_ping_between_fragments_precedes_the_reply(h: Harness) -> None:
    data = h.client.text("x", fin=False)
    data += h.client.frame(Opcode.PING, b"p")
    data += h.client.frame(Opcode.CONT, b"y")
    h.feed(data)
    h.flush()
    assert h.client.messages() == ["pong:p", "re:xy"]


def test_a_reply_to_a_message_before_a_ping_precedes_the_pong(h: Harness) -> None:
    h.feed(h.client.text("x") + h.client.frame(Opcode.PING, b"p"))
    h.flush()
    assert h.client.messages() == ["re:x", "pong:p"]


def test_a_reply_precedes_the_close_after_a_bad_frame_in_the_same_read(h: Harness) -> None:
    bad = bytes([0x81 | 0x70, 0x80])  # reserved bits set: a protocol error
    h.feed(h.client.text("x") + bad + b"\x00" * 4)
    h.flush()
    assert h.client.messages() == ["re:x", "close:1002"]


def test_a_close_between_fragments_is_answered_cleanly(h: Harness) -> None:
    h.feed(h.client.text("x", fin=False))
    h.client.proto.send_close(1000)
    h.feed(b"".join(h.client.proto.data_to_send()))
    h.flush()
    assert h.client.messages() == ["close:1000"]
    assert h.session.phase is CLOSING and h.port.ended
    assert h.app.dispatched == []


def test_invalid_utf8_fails_with_1007_at_the_first_bad_fragment(h: Harness) -> None:
    h.feed(h.client.text(b"ok", fin=False) + h.client.frame(Opcode.CONT, b"\xff", fin=False))
    h.flush()
    assert h.client.messages() == ["close:1007"]
    assert h.app.dispatched == []


def test_invalid_utf8_in_one_frame_fails_with_1007_and_is_never_dispatched(h: Harness) -> None:
    h.feed(h.client.text(b'{"x": "\xc3\x28"}'))
    h.flush()
    assert h.client.messages() == ["close:1007"]
    assert h.app.dispatched == []


def test_a_utf8_sequence_split_across_fragments_is_fine(h: Harness) -> None:
    euro = "€".encode()
    h.feed(h.client.text(euro[:1], fin=False) + h.client.frame(Opcode.CONT, euro[1:]))
    h.flush()
    assert h.client.messages() == ["re:€"]


def test_binary_messages_reach_the_app_whole(h: Harness) -> None:
    h.feed(h.client.frame(Opcode.BINARY, b"ab", fin=False) + h.client.frame(Opcode.CONT, b"c"))
    assert h.app.binary == [b"abc"]


# bounds


def test_fragments_are_bounded_in_count_empty_ones_included(h: Harness) -> None:
    limit = h.limits.max_fragments
    data = h.client.text("", fin=False)
    data += b"".join(h.client.frame(Opcode.CONT, b"", fin=False) for _ in range(limit))
    h.feed(data)
    h.flush()
    assert h.client.messages() == ["close:1009"]


def test_fragments_are_bounded_in_bytes(h: Harness) -> None:
    piece = b"x" * 1000
    data = h.client.text(piece, fin=False)
    data += b"".join(h.client.frame(Opcode.CONT, piece, fin=False) for _ in range(5))
    h.feed(data)
    h.flush()
    assert h.client.messages() == ["close:1009"]


def test_waiting_messages_pause_reading_past_the_byte_bound(h: Harness) -> None:
    h.feed(h.client.text("a:1"))
    for _ in range(3):
        h.feed(h.client.text("x" * 1500))
    assert h.port.paused  # 4500 bytes wait behind the handler: more than max_size
    h.port.work[0].finish()
    h.port.run_deferred()
    assert not h.port.paused
    assert h.app.dispatched == ["a:1"] + ["x" * 1500] * 3


def test_waiting_messages_pause_reading_past_the_count_bound() -> None:
    h = Harness(Limits(max_size=4096, max_buffer=8192, max_waiting=4, turn=8))
    h.open()
    h.feed(h.client.text("a:1") + b"".join(h.client.text("e") for _ in range(4)))
    assert h.port.paused


def test_a_large_batch_runs_over_several_turns(h: Harness) -> None:
    h.feed(h.client.text(",".join(str(n) for n in range(20))))
    assert len(h.app.dispatched) == h.limits.turn - 1  # the message itself took a turn's share
    assert h.port.paused and h.port.deferred
    turns = h.port.run_deferred()
    assert turns >= 2
    assert h.app.dispatched == [str(n) for n in range(20)]
    assert not h.port.paused


def test_many_small_frames_in_one_read_are_parsed_over_several_turns(h: Harness) -> None:
    flood = b"".join(h.client.text("e") for _ in range(2000))  # 14 KB of frames
    h.feed(flood)
    first = len(h.app.dispatched)
    assert 0 < first < 2000 and h.port.paused
    h.port.run_deferred()
    assert len(h.app.dispatched) == 2000


# output: slow readers


def test_output_waits_while_the_socket_is_congested_then_goes_in_order(h: Harness) -> None:
    h.session.pause_writing()
    h.feed(h.client.text("a,b"))
    assert h.port.written[h.read :] == []
    h.session.resume_writing()
    h.flush()
    assert h.client.messages() == ["re:a", "re:b"]


def test_a_client_that_drains_nothing_past_max_buffer_is_cut_off_at_the_deadline(
    h: Harness,
) -> None:
    h.session.pause_writing()
    for _ in range(12):  # 6 KB of replies: past the queue's share of max_buffer
        h.feed(h.client.text("x" * 500))
    h.port.run_deferred()
    assert h.port.timer == "lagging" and not h.port.aborted
    h.session.expire("the client stopped reading")
    assert h.port.aborted
    assert h.session.writer is None


def test_a_client_that_keeps_reading_is_never_cut_off_by_a_burst(h: Harness) -> None:
    h.session.pause_writing()
    for n in range(20):  # 20 KB, past max_buffer (8 KB) but under the hard bound
        h.session.send(b"%d" % n + b"x" * 1000)
    assert h.port.timer == "lagging"
    h.session.resume_writing()  # the client read everything: no deadline any more
    assert h.port.timer is None and not h.port.aborted
    h.flush()
    assert len(h.client.messages()) == 20


def test_reading_some_of_the_backlog_restarts_the_deadline(h: Harness) -> None:
    port = h.port
    h.session.pause_writing()
    for _ in range(20):
        h.session.send(b"x" * 1000)
    # The socket takes one message and is full again: progress, so the deadline starts over.
    port.after_write = h.session.pause_writing
    port.timer = None
    h.session.resume_writing()
    assert port.timer == "lagging" and not port.aborted


def test_however_a_client_reads_at_most_four_max_buffers_wait(h: Harness) -> None:
    h.session.pause_writing()
    for _ in range(40):  # 40 KB against max_buffer 8 KB
        h.session.send(b"x" * 1000)
    assert h.port.aborted


def test_one_message_of_any_size_gets_through_to_a_client_that_reads(h: Harness) -> None:
    h.session.pause_writing()
    h.session.send(b"x" * 100_000)  # alone in the queue: allowed
    assert not h.port.aborted
    h.session.resume_writing()
    h.flush()
    assert h.client.messages() == ["x" * 100_000]


def test_the_end_of_the_stream_waits_behind_queued_output(h: Harness) -> None:
    h.session.pause_writing()
    h.session.send(b"last words")
    h.session.close(1000)
    h.session.receive_data(b"".join(h.client.proto.data_to_send()))  # nothing yet
    h.session.resume_writing()
    h.flush()
    assert h.client.messages() == ["last words", "close:1000"]
    h.feed(b"".join(h.client.proto.data_to_send()))  # the client's close answer
    h.session.pause_writing()
    h.session.receive_eof()
    assert h.port.ended


def test_congested_while_the_socket_is_full_or_output_waits(h: Harness) -> None:
    assert not h.session.congested
    h.session.pause_writing()
    assert h.session.congested
    h.session.send(b"queued")
    h.session.resume_writing()
    assert not h.session.congested


def test_when_drained_runs_at_once_when_nothing_waits(h: Harness) -> None:
    calls: list[str] = []
    h.session.when_drained(lambda: calls.append("drained"))
    assert calls == ["drained"]


def test_when_drained_runs_once_after_the_queue_went_out(h: Harness) -> None:
    calls: list[str] = []
    h.session.pause_writing()
    h.session.send(b"one")
    h.session.when_drained(lambda: calls.append(f"after {len(h.port.written)} writes"))
    h.session.when_drained(lambda: calls.append("second"))
    written = len(h.port.written)
    assert calls == []
    h.session.resume_writing()
    assert calls == [f"after {written + 1} writes", "second"]
    h.session.pause_writing()
    h.session.resume_writing()
    assert len(calls) == 2  # once


class CongestingPort(Port):
    """A socket that fills up again after ``room`` more writes."""

    def __init__(self) -> None:
        super().__init__()
        self.room: int | None = None
        self.session: Session | None = None

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.room is not None:
            self.room -= 1
            if self.room == 0 and self.session is not None:
                self.session.pause_writing()


def test_when_drained_waits_while_the_socket_fills_up_again() -> None:
    h = Harness()
    port = CongestingPort()
    h.port = port
    h.session = port.session = Session(h.app, h.limits, port, port.write)
    h.open()
    calls: list[str] = []
    h.session.pause_writing()
    for n in range(3):
        h.session.send(b"m%d" % n)
    h.session.when_drained(lambda: calls.append("drained"))
    port.room = 2  # takes two of the three, then is full again
    h.session.resume_writing()
    assert calls == [] and h.session.congested
    port.room = None
    h.session.resume_writing()
    assert calls == ["drained"]
    h.flush()
    assert h.client.messages() == ["m0", "m1", "m2"]


def test_a_drained_callback_may_write_and_ask_again(h: Harness) -> None:
    calls: list[int] = []

    def again() -> None:
        calls.append(len(calls))
        h.session.send(b"more")  # the socket takes it: not congested
        if len(calls) == 1:
            h.session.when_drained(again)

    h.session.pause_writing()
    h.session.when_drained(again)
    h.session.resume_writing()
    assert calls == [0, 1]


def test_when_drained_is_never_called_after_the_end(h: Harness) -> None:
    calls: list[str] = []
    h.session.pause_writing()
    h.session.send(b"queued")
    h.session.when_drained(lambda: calls.append("drained"))
    h.session.connection_lost()
    h.session.resume_writing()
    h.session.when_drained(lambda: calls.append("late"))
    assert calls == []


def test_when_drained_is_not_called_for_a_client_cut_off(h: Harness) -> None:
    calls: list[str] = []
    h.session.pause_writing()
    h.session.when_drained(lambda: calls.append("drained"))
    for _ in range(12):
        h.session.send(b"x" * 1000)
    h.session.expire("the client stopped reading")
    assert h.port.aborted
    h.session.resume_writing()
    assert calls == []


# the end


def test_leaving_cancels_work_drops_what_waited_and_tells_the_app_once(h: Harness) -> None:
    h.feed(h.client.text("a:1,b") + h.client.text("c"))
    h.session.connection_lost()
    assert h.port.work[0].cancelled
    assert h.app.dispatched == ["a:1"]
    assert h.app.closed_calls == [True]
    h.session.connection_lost()
    assert h.app.closed_calls == [True]
    h.session.send(b"late")
    assert h.port.writes_after_end == 0
    assert h.session.phase is ENDED


def test_nothing_is_dispatched_after_the_close(h: Harness) -> None:
    h.feed(h.client.text("a:1,b"))
    h.session.close(1000)
    h.port.work[0].finish()
    h.port.run_deferred()
    assert h.app.dispatched == ["a:1"]


def test_an_async_open_hook_holds_the_first_message() -> None:
    app = RecordingApp()
    app.on_open = Pending("hook")
    h = Harness(app=app)
    h.feed(h.client.handshake() + h.client.text("x"))
    assert app.dispatched == []
    h.port.work[0].finish()
    assert app.dispatched == ["x"]


# keepalive and timers


def test_a_quiet_client_is_pinged_and_dropped_if_it_stays_silent(h: Harness) -> None:
    assert not h.session.ping_if_quiet()  # it spoke (the handshake) since the last round
    assert h.session.ping_if_quiet()
    h.session.drop_if_silent()
    h.flush()
    assert h.client.messages() == ["close:1011"]


def test_a_pong_keeps_a_client(h: Harness) -> None:
    h.session.ping_if_quiet()
    assert h.session.ping_if_quiet()
    h.flush()
    h.feed(b"".join(h.client.proto.data_to_send()))  # the client's automatic pong
    h.session.drop_if_silent()
    assert h.session.is_open


def test_the_closing_handshake_has_a_deadline(h: Harness) -> None:
    h.session.close(1000)
    assert h.port.timer == "closing"
    h.session.expire("closing handshake timed out")
    assert h.port.aborted


# random interleavings


class SessionMachine(RuleBasedStateMachine):
    """Frames, pings, chunk boundaries, slow handlers, congestion, closes and departures
    in any order: the session keeps order, bounds and its end, and stays protocol-valid."""

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(Limits(max_size=2048, max_buffer=4096, max_waiting=6, turn=5))
        self.h.open()
        self.wire = bytearray()  # client bytes the session has not received yet
        self.items: list[str] = []  # items of the messages sent, in order
        self.pings: list[bytes] = []
        self.count = 0
        self.lost = False
        self.congested_at: int | None = None  # writes made when the socket filled up
        self.drain_asked: int | None = None  # writes made when a drain callback was asked
        self.drains = 0

    def _can_send(self) -> bool:
        return not self.lost and self.h.client.proto.state is State.OPEN

    @rule(
        kinds=st.lists(st.booleans(), min_size=1, max_size=4),
        pieces=st.integers(1, 3),
        ping=st.booleans(),
    )
    def send_message(self, kinds: list[bool], pieces: int, ping: bool) -> None:
        if not self._can_send():
            return
        items = [
            f"a:{self.count + i}" if slow else str(self.count + i) for i, slow in enumerate(kinds)
        ]
        self.count += len(items)
        payload = ",".join(items).encode()
        size = -(-len(payload) // pieces)
        parts = [payload[i : i + size] for i in range(0, len(payload), size)]
        client = self.h.client
        for index, part in enumerate(parts):
            opcode = Opcode.TEXT if index == 0 else Opcode.CONT
            self.wire += client.frame(opcode, part, fin=index == len(parts) - 1)
            if ping and index == 0:
                self.pings.append(b"p%d" % len(self.pings))
                self.wire += client.frame(Opcode.PING, self.pings[-1])
        self.items.extend(items)

    @rule(size=st.integers(1, 600))
    def deliver(self, size: int) -> None:
        if self.lost or self.h.port.paused or not self.wire:
            return
        chunk = bytes(self.wire[:size])
        del self.wire[:size]
        self.h.session.receive_data(chunk)

    @rule()
    def run_a_deferred_turn(self) -> None:
        if self.h.port.deferred:
            self.h.port.deferred.pop(0)()

    @rule()
    def finish_the_running_work(self) -> None:
        running = [w for w in self.h.port.work if not w.finished and not w.cancelled]
        if running:
            running[0].finish()

    @rule()
    def congest(self) -> None:
        if not self.lost and self.congested_at is None:
            self.h.session.pause_writing()
            self.congested_at = len(self.h.port.written)

    @rule()
    def drain(self) -> None:
        if not self.lost:
            self.congested_at = None
            self.h.session.resume_writing()

    @rule()
    def wait_for_the_drain(self) -> None:
        if self.drain_asked is None:
            self.drain_asked = len(self.h.port.written)
            self.h.session.when_drained(self._drained)

    def _drained(self) -> None:
        assert not self.h.session.congested and not self.lost
        self.drains += 1
        self.drain_asked = None

    @rule()
    def client_reads(self) -> None:
        self.h.flush()

    @rule()
    def client_closes(self) -> None:
        if self._can_send():
            self.h.client.proto.send_close(1000)
            self.wire += b"".join(self.h.client.proto.data_to_send())

    @rule()
    def server_closes(self) -> None:
        self.h.session.close(1001)

    @rule()
    def client_vanishes(self) -> None:
        self.h.session.connection_lost()
        self.lost = True

    @invariant()
    def items_run_once_in_order(self) -> None:
        dispatched = self.h.app.dispatched
        assert dispatched == self.items[: len(dispatched)]

    @invariant()
    def one_piece_of_work_at_a_time(self) -> None:
        running = [w for w in self.h.port.work if not w.finished and not w.cancelled]
        assert len(running) <= 1
        if self.lost:
            assert not running

    @invariant()
    def what_waits_is_bounded(self) -> None:
        session, limits = self.h.session, self.h.limits
        # One message past the bounds may be parsed before reading pauses.
        assert session._waiting_bytes <= limits.max_size + limits.max_size
        assert session._backlog_bytes <= limits.max_buffer + limits.max_size
        if session._input_full() and not self.lost:
            assert self.h.port.paused

    @invariant()
    def nothing_is_written_to_a_full_socket(self) -> None:
        if self.congested_at is not None:
            assert len(self.h.port.written) == self.congested_at

    @invariant()
    def a_drain_callback_waits_only_while_output_waits(self) -> None:
        session = self.h.session
        if self.drain_asked is not None and not self.lost and session.writer is not None:
            assert session.congested

    @invariant()
    def nothing_is_written_after_the_end(self) -> None:
        assert self.h.port.writes_after_end == 0

    @invariant()
    def the_app_hears_of_the_end_once(self) -> None:
        assert self.h.app.closed_calls == ([True] if self.lost else [])

    @invariant()
    def the_client_sees_a_valid_stream_in_order(self) -> None:
        self.h.flush()  # raises if the session wrote anything that is not valid WebSocket
        shown = self.h.client.messages()
        replies = [int(m[3:]) for m in shown if m.startswith("re:")]
        assert replies == sorted(replies)
        pongs = [m[5:].encode() for m in shown if m.startswith("pong:")]
        assert pongs == self.pings[: len(pongs)]


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
