"""The network layer against hostile and departing clients, over real sockets.

Each test runs an unmodified app on a real socket: invalid UTF-8, control frames and
closes inside fragmented messages, large replies, floods of requests and empty frames,
fragment and queue memory, work that outlives its client, and what a refused handshake
logs. Fairness is shown by order and progress (how much of a flood had run when another
client's echo ran), never by timing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Process,
    add_forever,
    client_frame,
    echo_app,
    handshake_request,
    open_websocket,
    traced_memory,
)
from websockets.asyncio.client import connect
from websockets.frames import Close, Opcode

from lexicons import Server
from lexicons.errors import SignalError
from lexicons.testing import HandshakeFailed, TestClient

TEXT, CONT, PING, CLOSE = Opcode.TEXT, Opcode.CONT, Opcode.PING, Opcode.CLOSE
KiB, MiB = 1024, 1024 * 1024
LIFECYCLE_APP = Path(__file__).parent / "apps" / "lifecycle_app.py"


def echo_request(text: str) -> bytes:
    return json.dumps({"echo": {"text": text}}, ensure_ascii=False).encode()


def port_of(client: TestClient) -> int:
    assert client.running is not None
    return client.running.port


async def push(sock: socket.socket, data: bytes, cap: int) -> int:
    """Write ``data`` over and over without blocking until ``cap`` bytes went out, the
    server stopped taking more (no progress in many loop turns) or hung up; the count."""
    view = memoryview(data)
    sent = stalled = 0
    while sent < cap and stalled < 200:
        try:
            sent += sock.send(view[sent % len(data) :])
            stalled = 0
        except BlockingIOError:
            stalled += 1
        except OSError:  # reset or broken pipe: the server hung up
            break
        await asyncio.sleep(0)  # one loop turn: the server reads meanwhile (it is this loop)
    return sent


async def read_until(sock: socket.socket, marker: bytes) -> bytes:
    """What the server writes until ``marker`` arrives or it closes its side."""
    loop = asyncio.get_running_loop()
    received = b""
    while marker not in received and (
        data := await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
    ):
        received += data
    return received


def close_code(received: bytes) -> int:
    """The code of the close frame ``received`` ends with (a short one, unmasked)."""
    start = received.rindex(b"\x88")
    return int.from_bytes(received[start + 2 : start + 4], "big")


# --- UTF-8, control frames inside fragmented messages, the close --------------------------


async def test_invalid_utf8_fails_on_the_first_invalid_fragment_with_1007(raw: Any) -> None:
    async with TestClient(echo_app()) as client:
        peer = await raw(client.url)
        # A valid message whose two-byte character is split between fragments is echoed.
        first, second = echo_request("h\u00e9").split(b"\xa9")
        peer.writer.write(
            client_frame(TEXT, first, fin=False) + client_frame(CONT, b"\xa9" + second)
        )
        assert await peer.next_message() == {"echo": {"text": "h\u00e9"}}
        # The next one turns invalid in its second fragment; its last never comes.
        peer.writer.write(client_frame(TEXT, b'{"echo": {"text": "', fin=False))
        peer.writer.write(client_frame(CONT, b"\xff\xfe", fin=False))
        assert await peer.close_code() == 1007


async def test_invalid_utf8_is_never_answered_nor_its_ref_echoed(raw: Any) -> None:
    async with TestClient(echo_app()) as client:
        peer = await raw(client.url)
        peer.writer.write(client_frame(TEXT, b'{"nothing": {}, "ref": "\xff\xfe"}'))
        first = await peer.next_event()
        assert first.opcode is CLOSE, f"answered with {first}"
        assert Close.parse(first.data).code == 1007
        assert await peer.next_event() is None  # and then the end
        other = await client.connect()
        assert await other.call("echo", text="fine") == {"text": "fine"}


async def test_a_ping_inside_a_fragmented_message_is_answered_before_its_reply(
    raw: Any,
) -> None:
    async with TestClient(echo_app()) as client:
        peer = await raw(client.url)
        first, last = echo_request("pieces").split(b"pie")
        peer.writer.write(
            client_frame(TEXT, first, fin=False)
            + client_frame(PING, b"between")
            + client_frame(CONT, b"pie" + last)
        )
        pong = await peer.next_event()
        assert (pong.opcode, pong.data) == (Opcode.PONG, b"between")
        assert await peer.next_message() == {"echo": {"text": "pieces"}}
        peer.abort()


async def test_a_close_inside_a_fragmented_message_closes_cleanly(raw: Any) -> None:
    async with TestClient(echo_app()) as client:
        peer = await raw(client.url)
        peer.writer.write(
            client_frame(TEXT, b'{"echo": ', fin=False)
            + client_frame(CLOSE, Close(1000, "").serialize())
        )
        assert await peer.close_code() == 1000


# --- large outgoing messages -------------------------------------------------------------


async def test_a_reply_larger_than_max_buffer_reaches_a_client_that_reads(raw: Any) -> None:
    app = echo_app(max_buffer=64 * KiB, max_size=8 * MiB)
    async with TestClient(app) as client:
        # A small receive buffer: the reply cannot leave in one write, and waits for reads.
        peer = await raw(client.url, rcvbuf=16 * KiB)
        text = "0123456789abcdef" * (4 * MiB // 16)
        peer.writer.write(client_frame(TEXT, echo_request(text)))
        assert await peer.next_message() == {"echo": {"text": text}}
        peer.writer.write(client_frame(TEXT, echo_request("again")))
        assert await peer.next_message() == {"echo": {"text": "again"}}
        peer.abort()


async def test_a_burst_past_max_buffer_reaches_a_client_that_reads(raw: Any) -> None:
    app = Server()  # max_buffer: 4 MiB
    burst = 1000  # 10 MiB sent at once: more than twice max_buffer

    @app.on_connect
    def flood(ws: Any) -> None:
        for n in range(burst):
            ws.send({"n": n, "blob": "x" * 10 * KiB})

    async with TestClient(app) as client:
        peer = await raw(client.url, rcvbuf=16 * KiB)
        assert [(await peer.next_message())["n"] for _ in range(burst)] == list(range(burst))
        peer.abort()


# --- fairness ------------------------------------------------------------------------------


async def test_a_batch_of_requests_does_not_hold_another_clients_echo() -> None:
    app = Server()
    total = 20_000
    ran = 0
    flood_started = asyncio.Event()
    seen_by_echo: list[int] = []

    @app.signal
    def noop() -> None:
        nonlocal ran
        ran += 1
        flood_started.set()

    @app.signal
    def echo(text: str) -> str:
        seen_by_echo.append(ran)
        return text

    @app.signal
    def last() -> int:
        return ran

    async with TestClient(app) as client:
        other = await client.connect()
        flooder = await client.connect()
        await flooder.send_raw([{"noop": {}}] * total + [{"last": {}, "ref": "last"}])
        await asyncio.wait_for(flood_started.wait(), 5)
        assert await other.call("echo", text="me too") == "me too"
        assert (await flooder.receive(timeout=30))["last"] == total  # the batch ran whole
    # The echo ran while the flood was under way, not after it.
    assert seen_by_echo[0] < total // 2, f"the echo waited for {seen_by_echo[0]} no-ops"


async def test_an_empty_frame_flood_does_not_keep_a_new_client_out(raw: Any) -> None:
    # Every empty frame is answered with an error: let those wait, unread.
    app = echo_app(max_buffer=64 * MiB)
    order: list[str] = []
    flood_done = asyncio.Event()

    @app.signal
    def last() -> None:
        order.append("flood done")
        flood_done.set()

    async with TestClient(app) as client:
        flooder = await raw(client.url)
        flooder.writer.write(client_frame(TEXT) * 20_000 + client_frame(TEXT, b'{"last": {}}'))
        # Its first error shows the server is working through the flood.
        assert (await flooder.next_message())["Errors"][0]["code"] == "invalid_json"
        newcomer = await client.connect()
        assert await newcomer.call("echo", text="hello") == {"text": "hello"}
        order.append("newcomer answered")
        await asyncio.wait_for(flood_done.wait(), 30)
        flooder.abort()
    assert order == ["newcomer answered", "flood done"]


# --- fragment and queue memory -------------------------------------------------------------


async def test_endless_empty_continuation_frames_are_closed_with_1009(raw: Any) -> None:
    async with TestClient(echo_app(max_size=64 * KiB)) as client:
        peer = await raw(client.url)
        peer.writer.write(client_frame(TEXT, b'{"echo": ', fin=False))
        peer.writer.write(client_frame(CONT, fin=False) * 50_000)
        assert await peer.close_code() == 1009
        other = await client.connect()
        assert await other.call("echo", text="fine") == {"text": "fine"}


async def test_one_byte_fragments_cannot_grow_the_server_past_a_few_max_size() -> None:
    max_size = 256 * KiB
    fragments = 30_000
    # Built before memory is traced: the client side allocates nothing while it sends.
    message = client_frame(TEXT, b"[", fin=False) + client_frame(CONT, b" ", fin=False) * fragments
    async with TestClient(echo_app(max_size=max_size)) as client:
        sock = await open_websocket(port_of(client))
        try:
            with traced_memory() as peak:
                sent = await push(sock, message, len(message))
                # The pong (or the close) comes once everything before the ping was read.
                await asyncio.get_running_loop().sock_sendall(sock, client_frame(PING, b"sync"))
                received = await read_until(sock, b"\x8a\x04sync")
                grown = peak()
            assert sent == len(message)  # far more fragments than a message may have
            assert grown < 4 * max_size, f"the server grew by {grown} bytes"
            assert close_code(received) == 1009
        finally:
            sock.close()
        other = await client.connect()
        assert await other.call("echo", text="fine") == {"text": "fine"}


async def test_what_waits_behind_a_running_handler_is_bounded_in_bytes() -> None:
    max_size = MiB
    app = echo_app(max_size=max_size)
    started, release = asyncio.Event(), asyncio.Event()

    @app.signal
    async def block() -> None:
        started.set()
        await release.wait()

    frame = client_frame(TEXT, echo_request("x" * (max_size - 100)))
    async with TestClient(app) as client:
        sock = await open_websocket(port_of(client))
        try:
            await asyncio.get_running_loop().sock_sendall(
                sock, client_frame(TEXT, b'{"block": {}}')
            )
            await asyncio.wait_for(started.wait(), 5)
            with traced_memory() as peak:
                sent = await push(sock, frame, 48 * max_size)
                grown = peak()
            assert sent > 2 * max_size, f"only {sent} bytes could be sent"  # more than it may hold
            assert grown < 4 * max_size, f"the server grew by {grown} bytes"
        finally:
            release.set()  # the replies then wait for a client that never reads: cut off
            sock.close()
        other = await client.connect()
        assert await other.call("echo", text="fine") == {"text": "fine"}


# --- work that outlives its client -----------------------------------------------------------


async def test_the_rest_of_a_batch_does_not_run_after_its_client_left(raw: Any) -> None:
    app = Server()
    ran: list[str] = []
    started, finished, gone = asyncio.Event(), asyncio.Event(), asyncio.Event()
    release = asyncio.Event()

    @app.signal
    async def slow() -> None:
        started.set()
        try:
            await release.wait()
        finally:
            ran.append("slow ended")
            finished.set()

    @app.signal
    def after(n: int) -> None:
        ran.append(f"after {n}")

    @app.on_disconnect
    def bye() -> None:
        ran.append("on_disconnect")
        gone.set()

    async with TestClient(app) as client:
        peer = await raw(client.url)
        batch: list[dict[str, Any]] = [{"slow": {}}, *({"after": {"n": n}} for n in range(3))]
        peer.writer.write(client_frame(TEXT, json.dumps(batch).encode()))
        await asyncio.wait_for(started.wait(), 5)
        peer.abort()
        await asyncio.wait_for(gone.wait(), 5)
        release.set()  # had it not been cancelled, the handler could end now
        await asyncio.wait_for(finished.wait(), 5)
        assert "on_disconnect" in ran and not [step for step in ran if step.startswith("after")]


async def test_an_async_on_connect_never_subscribes_a_client_that_left(raw: Any) -> None:
    app = Server()
    room = app.channel("Room")
    leavers = 20
    release = asyncio.Event()
    entered: asyncio.Queue[str] = asyncio.Queue()
    disconnected: asyncio.Queue[str] = asyncio.Queue()
    ended: list[str] = []
    all_ended = asyncio.Event()

    @app.on_connect
    async def join(ws: Any) -> None:
        entered.put_nowait(ws.pk)
        try:
            await release.wait()  # a slow lookup, say
            room.subscribe(ws)
        finally:
            ended.append(ws.pk)
            if len(ended) == leavers + 1:
                all_ended.set()

    @app.on_disconnect
    def bye(ws: Any) -> None:
        disconnected.put_nowait(ws.pk)

    async with TestClient(app) as client:
        for _ in range(leavers):
            leaver = await raw(client.url)
            pk = await asyncio.wait_for(entered.get(), 5)
            leaver.abort()
            assert await asyncio.wait_for(disconnected.get(), 5) == pk
        stayer = await client.connect()
        await asyncio.wait_for(entered.get(), 5)
        release.set()
        await asyncio.wait_for(all_ended.wait(), 5)
        assert len(room.subscribers) == 1  # the one still connected
        room.broadcast({"news": "only for the living"})
        assert await stayer.expect("news") == "only for the living"


def forever_app(**settings: Any) -> tuple[Server, asyncio.Event, asyncio.Event]:
    """An echo app with ``forever``, a handler that never returns; the events tell when
    it started and when it was cancelled."""
    app = echo_app(**settings)
    return app, *add_forever(app)


async def test_a_handler_that_never_returns_is_cancelled_when_its_client_leaves(
    raw: Any,
) -> None:
    app, started, cancelled = forever_app()
    async with TestClient(app) as client:
        peer = await raw(client.url)
        peer.writer.write(client_frame(TEXT, b'{"forever": {}}'))
        await asyncio.wait_for(started.wait(), 5)
        peer.abort()
        await asyncio.wait_for(cancelled.wait(), 5)
        other = await client.connect()
        assert await other.call("echo", text="fine") == {"text": "fine"}


async def test_a_client_that_leaves_while_its_input_waits_is_found_and_its_handler_cancelled() -> (
    None
):
    # While messages wait behind a handler the server reads nothing, so it cannot see
    # the client hang up; keepalive finds it (its ping cannot be answered, or written).
    max_size = 64 * KiB
    app, started, cancelled = forever_app(max_size=max_size, ping_interval=0.05, ping_timeout=0.05)
    async with TestClient(app) as client:
        sock = await open_websocket(port_of(client))
        try:
            await asyncio.get_running_loop().sock_sendall(
                sock, client_frame(TEXT, b'{"forever": {}}')
            )
            await asyncio.wait_for(started.wait(), 5)
            frame = client_frame(TEXT, echo_request("x" * (max_size - 100)))
            assert await push(sock, frame, 256 * max_size) < 256 * max_size  # reading paused
        finally:
            sock.close()
        await asyncio.wait_for(cancelled.wait(), 5)
        other = await client.connect()
        assert await other.call("echo", text="fine") == {"text": "fine"}


@pytest.mark.parametrize("ending", ["client hangs up", "open_timeout"])
async def test_a_handshake_that_ends_cancels_its_async_header(ending: str) -> None:
    app = echo_app(open_timeout=0.2 if ending == "open_timeout" else 10)
    room = app.channel("Room")
    entered, left = asyncio.Event(), asyncio.Event()

    @app.header
    async def Token(ws: Any, header: str) -> bool:
        if header == "ok":
            return True
        room.subscribe(ws)
        entered.set()
        try:
            await asyncio.Event().wait()  # a password check that never answers
        finally:
            left.set()
        return False

    async with TestClient(app) as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(client))
        writer.write(handshake_request(Token="stall"))
        await asyncio.wait_for(entered.wait(), 5)
        if ending == "client hangs up":
            writer.transport.abort()
        else:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # dropped, nothing answered
            writer.close()
        await asyncio.wait_for(left.wait(), 5)
        assert not room.subscribers
        honest = await client.connect(headers={"Token": "ok"})
        assert await honest.call("echo", text="in") == {"text": "in"}


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_a_client_gone_before_its_input_is_parsed_leaves_no_error(
    process: type[Process], loop: str
) -> None:
    # In a process of its own: what the server leaves behind must not reach this one.
    # Far more fragments than a message may have (max_size / 64), parsed turn by turn
    # after the client hung up: the close frame they earn goes to a socket already gone.
    server = process(*serve_on(loop, LIFECYCLE_APP), env={"LEXICONS_MAX_SIZE": str(MiB)})
    url = server.url()
    sock = await open_websocket(int(url.rsplit(":", 1)[1].strip("/")))
    flood = client_frame(TEXT, b"[", fin=False) + client_frame(CONT, fin=False) * 20_000
    await asyncio.get_running_loop().sock_sendall(sock, flood)
    sock.close()
    async with connect(url) as ws:
        # The flood's turns alternate with this batch's, so it is parsed by the end.
        await ws.send(json.dumps([{"hello": {}}] * 200))
        assert [json.loads(await ws.recv()) for _ in range(200)] == [{"hello": "hi"}] * 200
    code, _, err = server.stop(signal.SIGTERM)
    assert code == 0 and "Traceback" not in err, err


def serve_on(loop: str, app: Path) -> list[str | Path]:
    """The command that runs ``app`` on 127.0.0.1:0 with ``loop``'s event loop (``run``
    takes uvloop whenever it is installed)."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
        prelude = ""
    else:
        prelude = "import sys; sys.modules['uvloop'] = None; "
    code = prelude + f"import runpy; runpy.run_path({str(app)!r}, run_name='__main__')"
    return [sys.executable, "-c", code, "run", "--host", "127.0.0.1", "--port", "0"]


# --- errors in handlers and frames -----------------------------------------------------------


async def test_a_cancelled_error_inside_a_handler_answers_internal_error() -> None:
    app = echo_app()

    @app.signal
    async def flaky() -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future  # raises CancelledError inside the handler

    async with TestClient(app) as client:
        peer = await client.connect()
        with pytest.raises(SignalError) as failed:
            await peer.call("flaky")
        assert failed.value.code == "internal_error"
        assert await peer.call("echo", text="still here") == {"text": "still here"}


async def test_deeply_nested_json_gets_invalid_json_and_the_connection_stays() -> None:
    async with TestClient(echo_app()) as client:
        peer = await client.connect()
        await peer.send_raw('{"echo": ' + "[" * 10_000 + "]" * 10_000 + "}")
        assert (await peer.receive())["Errors"][0]["code"] == "invalid_json"
        await peer.send_raw('{"echo": ' * 10_000 + "{}" + "}" * 10_000)
        assert (await peer.receive())["Errors"][0]["code"] == "invalid_json"
        assert await peer.call("echo", text="still here") == {"text": "still here"}


# --- what a refused handshake logs -----------------------------------------------------------


async def test_a_refused_handshakes_path_cannot_forge_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    app = echo_app()

    @app.header
    def Token(header: str) -> bool:
        return header == "ok"

    forged = "/\r\x1b[2K2024-01-01\tINFO\tadmitted\troot\x1b[0m"  # no spaces: a request line
    async with TestClient(app) as client:
        with pytest.raises(HandshakeFailed):  # a plain path, for comparison
            await client.connect("/plain")
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(client))
        writer.write(handshake_request(path=forged))
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 403")
        writer.close()
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(refusals) == 2, refusals
    assert "/plain" in refusals[0]
    assert "/\\r\\x1b[2K2024-01-01\\tINFO\\tadmitted\\troot\\x1b[0m" in refusals[1]
    assert not any(c in message for message in refusals for c in "\r\n\t\x1b")
