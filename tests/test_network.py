"""The network layer over real sockets: handshake, frames, keepalive, close, backpressure, HTTP."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import echo_app, handshake_request
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from lexicons import Response, Server
from lexicons.network.link import Link
from lexicons.network.session import Session
from lexicons.testing import HandshakeFailed, TestClient


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_echo_over_a_real_socket() -> None:
    async with TestClient(echo_app()) as client:
        peer = await client.connect()
        assert await peer.call("echo", text="hi") == {"text": "hi"}


async def test_fragmented_message_is_reassembled() -> None:
    async with TestClient(echo_app()) as client:
        async with connect(client.url) as ws:
            await ws.send(iter(['{"echo": ', '{"text": ', '"pieces"}}']))
            assert json.loads(await ws.recv()) == {"echo": {"text": "pieces"}}


async def test_binary_frame_gets_invalid_frame_and_connection_stays_open() -> None:
    async with TestClient(echo_app()) as client:
        peer = await client.connect()
        await peer.send_raw(b"\x00\x01")
        assert (await peer.receive())["Errors"][0]["code"] == "invalid_frame"
        assert await peer.call("echo", text="still here") == {"text": "still here"}


async def test_oversized_message_closes_that_connection_with_1009() -> None:
    async with TestClient(echo_app(max_size=1024)) as client:
        big = await client.connect()
        other = await client.connect()
        await big.send("echo", text="x" * 2000)
        code, _ = await big.closed()
        assert code == 1009
        assert await other.call("echo", text="fine") == {"text": "fine"}


async def test_client_ping_gets_pong() -> None:
    async with TestClient(echo_app()) as client:
        async with connect(client.url) as ws:
            pong = await ws.ping(b"hello")
            latency = await asyncio.wait_for(pong, 5)
            assert latency >= 0


async def test_server_pings_and_drops_a_client_that_never_answers(raw: Any) -> None:
    app = echo_app(ping_interval=0.05, ping_timeout=0.05)
    async with TestClient(app) as client:
        silent = await raw(client.url)
        # The raw client parses frames, but its automatic pongs are dropped here.
        send_frame = silent.protocol.send_frame
        silent.protocol.send_frame = lambda frame: (  # type: ignore[method-assign]
            None if frame.opcode is Opcode.PONG else send_frame(frame)
        )
        seen = []
        while True:
            event = await silent.next_event()
            if event is None:
                break
            seen.append(event.opcode)
            if event.opcode is Opcode.CLOSE:
                from websockets.frames import Close

                assert Close.parse(event.data).code == 1011
        assert Opcode.PING in seen and Opcode.CLOSE in seen


async def test_keepalive_keeps_an_answering_client() -> None:
    app = echo_app(ping_interval=0.02, ping_timeout=0.5)
    async with TestClient(app) as client:
        async with connect(client.url, ping_interval=None) as ws:
            for _ in range(5):  # several keepalive rounds, answered by the client library
                await ws.send(json.dumps({"echo": {"text": "x"}}))
                assert json.loads(await ws.recv()) == {"echo": {"text": "x"}}
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)


async def test_abrupt_drop_runs_on_disconnect_once(raw: Any) -> None:
    app = echo_app()
    gone: list[str] = []
    dropped = asyncio.Event()

    @app.on_disconnect
    def bye(ws: Any) -> None:
        gone.append(ws.pk)
        dropped.set()

    async with TestClient(app) as client:
        victim = await raw(client.url)
        (pk,) = app.connections
        victim.abort()
        await asyncio.wait_for(dropped.wait(), 5)
        assert gone == [pk] and app.connections == {}
    assert gone == [pk]


async def test_an_ended_connection_is_freed_at_once_not_by_the_garbage_collector() -> None:
    """Nothing a connection leaves is a reference cycle: a busy server would otherwise pay
    collector passes whose cost grows with everything it keeps alive."""
    app = echo_app()
    ended = 0
    all_ended = asyncio.Event()

    @app.on_disconnect
    def bye(ws: Any) -> None:
        nonlocal ended
        ended += 1
        if ended == 3:
            all_ended.set()

    gc.collect()
    gc.disable()
    try:
        async with TestClient(app) as client:
            for offered in (None, ["lexicons"], ["lexicons.msgpack"]):
                async with connect(client.url, subprotocols=offered) as ws:  # type: ignore[arg-type]
                    if offered != ["lexicons.msgpack"]:
                        await ws.send('{"echo": {"text": "hi"}}')
                        assert json.loads(await ws.recv()) == {"echo": {"text": "hi"}}
            await asyncio.wait_for(all_ended.wait(), 5)
        kept = Link | Session | ServerProtocol
        left = [o for o in gc.get_objects() if issubclass(type(o), kept)]
    finally:
        gc.enable()
    assert left == []


async def test_close_handshake_from_client_and_server() -> None:
    app = echo_app()

    @app.signal
    def leave(ws: Any) -> None:
        ws.close(4000, "bye")

    async with TestClient(app) as client:
        peer = await client.connect()
        await peer.send("leave")
        assert await peer.closed() == (4000, "bye")
        async with connect(client.url) as ws:
            await ws.close(1000)
            assert ws.close_code == 1000


async def test_shutdown_closes_connections_with_1001() -> None:
    app = echo_app()
    client = TestClient(app)
    await client.__aenter__()
    async with connect(client.url) as ws:
        closing = asyncio.create_task(client.__aexit__(None, None, None))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1001
        await closing


async def test_slow_reader_is_cut_off_and_others_still_receive(
    raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = echo_app(max_buffer=64 * 1024)
    app.channel("Feed")
    dropped = asyncio.Event()

    @app.on_connect
    def join(ws: Any, sv: Server) -> None:
        sv.channels["Feed"].subscribe(ws.pk)

    @app.on_disconnect
    def bye() -> None:
        dropped.set()

    @app.signal
    def publish(n: int) -> Response:
        return Response({"n": n, "blob": "x" * 65536}, ["Feed"])

    async with TestClient(app) as client:
        slow = await raw(client.url, rcvbuf=4096)  # connects, then never reads again
        fast = await client.connect()
        n = 0
        while not dropped.is_set() and n < 500:
            await fast.send("publish", n=n)
            assert (await fast.receive())["publish"]["n"] == n  # the fast one gets each
            n += 1
        assert dropped.is_set(), "the slow reader was never cut off"
        assert len(app.connections) == 1
        assert slow is not None
    assert "stopped reading" in caplog.text


async def test_frames_wait_for_async_handlers_and_replies_keep_order() -> None:
    app = Server()
    release = asyncio.Event()

    @app.signal
    async def slow(n: int) -> int:
        await release.wait()
        return n

    @app.signal
    def fast(n: int) -> int:
        return n

    async with TestClient(app) as client:
        peer = await client.connect()
        await peer.send_raw([{"slow": {"n": 1}}, {"fast": {"n": 2}}])
        await peer.send("fast", n=3)
        await peer.assert_nothing_received()
        release.set()
        assert [await peer.receive() for _ in range(3)] == [{"slow": 1}, {"fast": 2}, {"fast": 3}]


async def test_async_on_connect_finishes_before_the_first_frame() -> None:
    app = Server()
    order: list[str] = []
    release = asyncio.Event()

    @app.on_connect
    async def setup(ws: Any) -> None:
        await release.wait()
        order.append("on_connect")
        ws.state["ready"] = True

    @app.signal
    def hello(ws: Any) -> bool:
        order.append("hello")
        return bool(ws.state.get("ready"))

    async with TestClient(app) as client:
        peer = await client.connect()
        await peer.send("hello")
        await peer.assert_nothing_received()
        release.set()
        assert await peer.receive() == {"hello": True}
        assert order == ["on_connect", "hello"]


async def test_healthz_static_and_404(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>hi</h1>")
    (tmp_path / "app.js").write_text("console.log(1)")
    secret = tmp_path.parent / "secret.txt"
    secret.write_text("no")
    async with TestClient(echo_app(static=str(tmp_path))) as client:
        port = client.running.port  # type: ignore[union-attr]
        assert await http_get(port, "/healthz") == (200, b"ok\n")
        assert await http_get(port, "/") == (200, b"<h1>hi</h1>")
        assert await http_get(port, "/app.js") == (200, b"console.log(1)")
        assert (await http_get(port, "/missing"))[0] == 404
        assert (await http_get(port, "/../secret.txt"))[0] == 404
        assert (await http_get(port, "/%2e%2e/secret.txt"))[0] == 404
        peer = await client.connect("/any/path")
        assert await peer.call("echo", text="ws on any path") == {"text": "ws on any path"}


async def test_max_connections_answers_503() -> None:
    async with TestClient(echo_app(max_connections=1)) as client:
        await client.connect()
        with pytest.raises(HandshakeFailed) as refused:
            await client.connect()
        assert refused.value.status == 503


async def test_handshake_timeout_drops_a_silent_socket() -> None:
    async with TestClient(echo_app(open_timeout=0.05)) as client:
        port = client.running.port  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        writer.close()


HANDSHAKE = handshake_request()


async def test_closing_handshake_timeout_drops_a_client_that_never_answers_close() -> None:
    app = echo_app(close_timeout=0.05)

    @app.signal
    def bye(ws: Any) -> None:
        ws.close(4000, "bye")

    async with TestClient(app) as client:
        port = client.running.port  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HANDSHAKE)
        writer.write(Frame(Opcode.TEXT, b'{"bye": {}}').serialize(mask=True, extensions=[]))
        # The 101, then the server's close frame; this client never answers it, so
        # the server gives up after close_timeout and drops the socket.
        received = await asyncio.wait_for(reader.read(), 5)
        assert received.startswith(b"HTTP/1.1 101")
        assert received.endswith(b"\x88\x05\x0f\xa0bye")  # close frame: 4000, "bye"
        writer.close()
        assert await client.connect() is not None  # the server is fine


CLOSE_FRAME = Frame(Opcode.CLOSE, b"").serialize(mask=True, extensions=[])
UNMASKED = Frame(Opcode.TEXT, b'{"echo": {"text": "x"}}').serialize(mask=False, extensions=[])
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize(
    ("sent", "full"),
    [
        (HANDSHAKE + CLOSE_FRAME, False),  # a close frame
        (HANDSHAKE + CLOSE_FRAME, True),  # ... when the server would answer 503
        (HANDSHAKE + UNMASKED, False),  # bytes that are not a client frame
        (HANDSHAKE + HEALTHZ, False),  # a second request
        (HEALTHZ + HEALTHZ, False),  # plain HTTP, pipelined
    ],
    ids=["close", "close-when-full", "unmasked", "pipelined-upgrade", "pipelined-http"],
)
async def test_bytes_sent_with_a_request_that_end_the_stream_end_it_quietly(
    sent: bytes, full: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async with TestClient(echo_app(max_connections=1 if full else None)) as client:
        port = client.running.port  # type: ignore[union-attr]
        peer = await client.connect()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # A client must wait for the answer before sending more; this one does not, and
        # the protocol ends the stream before the request is answered.
        writer.write(sent)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # no answer, just the end
        writer.close()
        assert await peer.call("echo", text="ok") == {"text": "ok"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_garbage_instead_of_a_handshake_does_not_hurt_others() -> None:
    async with TestClient(echo_app()) as client:
        port = client.running.port  # type: ignore[union-attr]
        peer = await client.connect()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01garbage\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # dropped, nothing answered
        writer.close()
        assert await peer.call("echo", text="ok") == {"text": "ok"}


async def test_debug_logs_connections_and_signals(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="lexicons")
    async with TestClient(echo_app(debug=True)) as client:
        peer = await client.connect()
        await peer.call("echo", text="x")
        await peer.close()
    assert "connect " in caplog.text and "signal echo" in caplog.text
