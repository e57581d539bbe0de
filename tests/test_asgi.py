"""``app.asgi``: the same app under uvicorn and mounted in Starlette, with real clients."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import Process, add_forever, asgi_server, eventually
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from lexicons import ConfigurationError, Connection, HandshakeRejected, Response, Server
from lexicons.asgi import AsgiSession
from lexicons.asgi.session import unframe
from lexicons.client import open_connection
from lexicons.headers import subprotocol_credential
from lexicons.network.frames import binary_frame, text_frame


def chat_app(tmp_path: Path, **settings: Any) -> Server:
    """Signals, a channel, hooks and tasks, recording what happened in ``app.state``."""
    app = Server(data=str(tmp_path), **settings)
    app.channel("Room")
    events: list[str] = []
    app.state["events"] = events

    @app.on_start
    def started() -> None:
        events.append("on_start")

    @app.task.startup
    def startup_task() -> None:
        events.append("startup task")

    @app.on_shutdown
    def stopped() -> None:
        events.append("on_shutdown")

    @app.on_connect
    def joined(ws: Connection, sv: Server) -> None:
        events.append(f"connect {ws.auth}")
        sv.channels["Room"].subscribe(ws)

    @app.on_disconnect
    def left(ws: Connection) -> None:
        events.append(f"disconnect {ws.auth}")

    @app.signal
    def echo(text: str) -> dict[str, str]:
        return {"text": text}

    @app.signal
    def whoami(ws: Connection) -> dict[str, Any]:
        return {"auth": ws.auth, "path": ws.path, "address": ws.remote_address}

    @app.signal
    def say(ws: Connection, text: str) -> Response:
        return Response({"from": ws.auth, "text": text}, ["Room"])

    @app.signal
    async def slow(n: int) -> int:
        await asyncio.sleep(0.01 * (3 - n))
        return n

    return app


async def call(ws: ClientConnection, name: str, ref: int = 1, **payload: Any) -> Any:
    await ws.send(json.dumps({name: payload, "ref": ref}))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if message.get("ref") == ref:
            return message


async def test_signals_channels_and_hooks_under_uvicorn(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    events = app.state["events"]
    async with asgi_server(app.asgi) as url:
        assert events == ["on_start", "startup task"]  # lifespan startup, before any client
        assert app.running is not None
        async with await open_connection(url + "/") as a, await open_connection(url) as b:
            assert await call(a, "echo", text="hi") == {"echo": {"text": "hi"}, "ref": 1}
            await a.send('[{"echo": {"text": "1"}}, {"echo": {"text": "2"}}]')
            assert [json.loads(await a.recv()) for _ in range(2)] == [
                {"echo": {"text": "1"}},
                {"echo": {"text": "2"}},
            ]
            await a.send("not json")
            assert json.loads(await a.recv())["Errors"][0]["code"] == "invalid_json"
            await a.send(b"\x00")
            assert json.loads(await a.recv())["Errors"][0]["code"] == "invalid_frame"
            await b.send(json.dumps({"say": {"text": "to all"}}))
            for ws in (a, b):
                assert json.loads(await ws.recv()) == {"say": {"from": None, "text": "to all"}}
            whoami = await call(b, "whoami")
            assert whoami["whoami"]["address"] == "127.0.0.1"
        await eventually(lambda: _now(events.count("disconnect None") == 2), "both to leave")
    assert events[-1] == "on_shutdown" and app.running is None
    assert events.count("connect None") == 2


async def _now(value: bool) -> bool:
    return value


async def test_msgpack_and_json_clients_under_uvicorn(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with asgi_server(app.asgi) as url:
        packed = await open_connection(url, encoding="msgpack")
        async with packed, await open_connection(url) as plain:
            assert packed.subprotocol == "lexicons.msgpack"
            await packed.send(msgspec.msgpack.encode({"echo": {"text": "hi"}, "ref": 1}))
            assert msgspec.msgpack.decode(await packed.recv()) == {
                "echo": {"text": "hi"},
                "ref": 1,
            }
            await packed.send("{}")
            assert msgspec.msgpack.decode(await packed.recv())["Errors"][0]["code"] == (
                "invalid_frame"
            )
            await plain.send(json.dumps({"say": {"text": "to all"}}))
            expected = {"say": {"from": None, "text": "to all"}}
            assert msgspec.msgpack.decode(await packed.recv()) == expected
            assert json.loads(await plain.recv()) == expected


async def test_requests_run_one_at_a_time_with_replies_in_order(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with asgi_server(app.asgi) as url, await open_connection(url) as ws:
        # The first takes longest: later ones wait for it, and the replies keep their order.
        await ws.send(json.dumps([{"slow": {"n": 0}}, {"slow": {"n": 1}}]))
        await ws.send(json.dumps({"slow": {"n": 2}}))
        await ws.send(json.dumps({"echo": {"text": "last"}}))
        replies = [json.loads(await ws.recv()) for _ in range(4)]
        assert replies == [{"slow": 0}, {"slow": 1}, {"slow": 2}, {"echo": {"text": "last"}}]


async def test_a_departed_clients_work_is_cancelled(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    started, cancelled = add_forever(app)
    async with asgi_server(app.asgi) as url:
        ws = await open_connection(url)
        await ws.send(json.dumps({"forever": {}}))
        await asyncio.wait_for(started.wait(), 5)
        ws.transport.abort()  # gone without a closing handshake
        await asyncio.wait_for(cancelled.wait(), 5)
        events = app.state["events"]
        await eventually(lambda: _now("disconnect None" in events), "on_disconnect")
        assert len(app.connections) == 0


async def test_admission_trust_origin_headers_and_gate(tmp_path: Path) -> None:
    app = chat_app(tmp_path, origins=["https://app.example"])

    @app.header
    def User(ws: Connection, header: str) -> bool:
        ws.auth = header
        return header in ("ada", "bob", "cy", "dee")

    async with asgi_server(app.asgi) as url:
        ways: list[dict[str, Any]] = [
            {"headers": {"User": "ada"}},
            {"cookies": {"User": "bob"}},
            {"query": {"User": "cy"}},
            {"subprotocols": ["lexicons", subprotocol_credential("User", "dee")]},
        ]
        for way, name in zip(ways, ("ada", "bob", "cy", "dee"), strict=True):
            async with await open_connection(url, origin="https://app.example", **way) as ws:
                assert (await call(ws, "whoami"))["whoami"]["auth"] == name
                if "subprotocols" in way:
                    assert ws.subprotocol == "lexicons"
        with pytest.raises(HandshakeRejected) as refused:
            await open_connection(url, headers={"User": "eve"})
        assert refused.value.status == 403 and "refused by gate" in refused.value.reason
        with pytest.raises(HandshakeRejected) as refused:
            await open_connection(url, headers={"User": "ada"}, origin="https://evil.example")
        assert refused.value.status == 403 and "origin" in refused.value.reason
    assert "connect eve" not in app.state["events"]


async def test_untrusted_addresses_and_a_full_server_are_refused(tmp_path: Path) -> None:
    app = chat_app(tmp_path, trust=["10.0.0.0/8"])
    async with asgi_server(app.asgi) as url:
        with pytest.raises(HandshakeRejected) as refused:
            await open_connection(url)
        assert refused.value.status == 403
    full = chat_app(tmp_path / "full", max_connections=1)
    async with asgi_server(full.asgi) as url, await open_connection(url):
        with pytest.raises(HandshakeRejected) as refused:
            await open_connection(url)
        assert refused.value.status == 503


async def test_the_lifespan_context_starts_the_app_and_broadcasts_reach_everyone(
    tmp_path: Path,
) -> None:
    app = chat_app(tmp_path)
    async with app.asgi.lifespan(), asgi_server(app.asgi, lifespan="off") as url:
        assert app.running is not None and app.asgi.running is app.running
        with pytest.raises(ConfigurationError, match="already running"):
            await app.serve(host="127.0.0.1", port=0).start()  # one way at a time
        async with await open_connection(url) as a, await open_connection(url) as b:
            await a.send(json.dumps({"say": {"text": "x"}}))
            assert json.loads(await b.recv()) == {"say": {"from": None, "text": "x"}}
            app.broadcast({"notice": 1}, "Room")  # from server code, as a task would
            assert json.loads(await a.recv()) == {"say": {"from": None, "text": "x"}}
            assert json.loads(await a.recv()) == {"notice": 1}
            assert json.loads(await b.recv()) == {"notice": 1}
    assert app.running is None


async def test_mounted_in_starlette_beside_http_routes(tmp_path: Path) -> None:
    pytest.importorskip("starlette", reason="a test dependency: pip install -e '.[test]'")
    pytest.importorskip("prometheus_client", reason="the metrics extra")
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    lex = chat_app(tmp_path, metrics=True)

    async def hello(request: Any) -> Any:
        return PlainTextResponse("hello from starlette")

    web = Starlette(
        routes=[Route("/hello", hello), Mount("/ws", app=lex.asgi)], lifespan=lex.asgi.lifespan
    )
    async with asgi_server(web) as url:
        assert lex.state["events"] == ["on_start", "startup task"]
        http = url.replace("ws://", "http://")
        assert await http_get(http + "/hello") == (200, "hello from starlette")
        assert await http_get(http + "/ws/healthz") == (200, "ok\n")
        status, body = await http_get(http + "/ws/metrics")
        assert status == 200 and "lexicons_connections 0.0" in body
        assert (await http_get(http + "/ws/nothing"))[0] == 404
        async with await open_connection(url + "/ws/room?x=1") as ws:
            assert (await call(ws, "whoami"))["whoami"]["path"] == "/room?x=1"
            assert await call(ws, "echo", text="mounted") == {
                "echo": {"text": "mounted"},
                "ref": 1,
            }
            await ws.send(json.dumps({"say": {"text": "all"}}))  # one subscriber: itself
            assert json.loads(await ws.recv()) == {"say": {"from": None, "text": "all"}}
            status, body = await http_get(http + "/ws/metrics")
            assert "lexicons_connections 1.0" in body
            assert 'lexicons_handler_seconds_count{signal="whoami"} 1.0' in body  # the first
            assert "lexicons_messages_received_total 3.0" in body
            assert "lexicons_messages_sent_total 3.0" in body
            assert "lexicons_deliveries_total 1.0" in body
    assert lex.state["events"][-1] == "on_shutdown"


async def http_get(url: str) -> tuple[int, str]:
    host, _, rest = url.removeprefix("http://").partition("/")
    address, port = host.split(":")
    reader, writer = await asyncio.open_connection(address, int(port))
    writer.write(f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return int(head.split()[1]), body.decode()


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        length = int(size, 16)
        out, body = out + body[:length], body[length + 2 :]
    return out


async def test_started_on_first_use_without_lifespan(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with asgi_server(app.asgi, lifespan="off") as url:
        assert app.running is None  # nothing started before the first connection
        async with await open_connection(url) as ws:
            assert await call(ws, "echo", text="x") == {"echo": {"text": "x"}, "ref": 1}
        assert app.state["events"][:2] == ["on_start", "startup task"]
    await app.asgi.close()  # what the event loop's end does
    assert app.state["events"][-1] == "on_shutdown"


SCRIPT = """
import sys, uvicorn
sys.path.insert(0, {tests!r})
from test_asgi import chat_app
app = chat_app(__import__("pathlib").Path({data!r}))
app.add_hook("on_shutdown", lambda: print("on_shutdown ran", flush=True))
uvicorn.run(app.asgi, host="127.0.0.1", port=0, lifespan="off", log_level="info")
"""


@pytest.mark.slow
async def test_without_lifespan_the_stop_sequence_runs_when_the_loop_ends(
    tmp_path: Path, process: type[Process]
) -> None:
    script = SCRIPT.format(tests=str(Path(__file__).parent), data=str(tmp_path))
    server = process(sys.executable, "-c", script)
    port = int(server.wait_for(r"Uvicorn running on http://127.0.0.1:(\d+)").group(1))
    async with await open_connection(f"ws://127.0.0.1:{port}") as ws:
        assert await call(ws, "echo", text="x") == {"echo": {"text": "x"}, "ref": 1}
    code, out, err = server.stop(signal.SIGINT)
    assert code == 0, err
    assert "on_shutdown ran" in out


async def test_a_client_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client", reason="the metrics extra")
    app = chat_app(tmp_path, max_buffer=64 * 1024, metrics=True)

    @app.signal
    def flood(n: int) -> Response:
        return Response({"n": n, "blob": "x" * 65536}, ["Room"])

    async with asgi_server(app.asgi) as url:
        slow = await open_connection(url, max_queue=1)  # reads nothing from now on
        slow.transport.pause_reading()
        async with await open_connection(url) as fast:
            for n in range(400):
                await fast.send(json.dumps({"flood": {"n": n}}))
                assert json.loads(await fast.recv())["flood"]["n"] == n
                if len(app.connections) == 1:
                    break
            assert len(app.connections) == 1, "the slow reader was never cut off"
        assert app.running is not None and app.running.metrics is not None
        assert app.running.metrics.meter.cut_off == 1
        slow.transport.abort()


async def test_shutdown_closes_connections_with_1001(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    async with asgi_server(app.asgi) as url:
        ws = await open_connection(url)
        await call(ws, "echo", text="x")
        closing = asyncio.ensure_future(app.asgi.close())
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1001
        await closing
    assert app.state["events"][-2:] == ["disconnect None", "on_shutdown"]


def test_unframe_reverses_every_frame_length() -> None:
    for size in (0, 125, 126, 65535, 65536):
        data = b"x" * size
        assert unframe(text_frame(data)) == (data, True)
        assert unframe(binary_frame(data)) == (data, False)


async def test_a_session_holds_header_messages_until_accepted() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    session = AsgiSession(send, "127.0.0.1", 1024)
    session.send(b'{"hello": 1}')
    assert sent == [] and not session.is_open
    await session.accept("lexicons")
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send"]
    session.in_turn = True  # as a handler running in the connection's task
    session.close(4000, "bye")
    session.send(b"dropped")
    session.in_turn = False
    await session.flush()
    assert sent[-1] == {"type": "websocket.close", "code": 4000, "reason": "bye"}
    assert session.close_code == 4000 and len(sent) == 3


async def test_header_messages_follow_the_accept_and_big_messages_close_1009(
    tmp_path: Path,
) -> None:
    app = chat_app(tmp_path, max_size=100)

    @app.header
    def User(ws: Connection, header: str) -> bool:
        ws.send({"welcome": header})  # waits for admission
        return True

    async with asgi_server(app.asgi) as url:
        async with await open_connection(url, headers={"User": "ada"}) as ws:
            assert json.loads(await ws.recv()) == {"welcome": "ada"}
            await ws.send(json.dumps({"echo": {"text": "x" * 200}}))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1009


async def test_a_failed_start_fails_the_lifespan_and_is_tried_again(tmp_path: Path) -> None:
    app = chat_app(tmp_path)
    attempts = []

    @app.on_start
    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("the database is not up yet")

    sent: list[Any] = []
    events = iter([{"type": "lifespan.startup"}])

    async def receive() -> Any:
        return next(events)

    async def send(message: Any) -> None:
        sent.append(message)

    await app.asgi({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.failed", "message": "the database is not up yet"}]
    assert app.running is None
    async with app.asgi.lifespan():  # the next start runs the whole sequence again
        assert app.running is not None and len(attempts) == 2


# --- the session's output, without a server ---------------------------------------

outputs = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.binary(max_size=300), st.booleans()),
        st.tuples(st.just("broadcast"), st.binary(max_size=300), st.booleans()),
        st.tuples(st.just("read"), st.integers(0, 5), st.just(False)),
        st.tuples(st.just("close"), st.integers(4000, 4999), st.just(False)),
    ),
    max_size=40,
)


@given(outputs, st.integers(200, 2000))
@settings(max_examples=150, deadline=None)
def test_asgi_output_keeps_its_order_its_bound_and_its_end(
    steps: list[tuple[str, Any, bool]], max_buffer: int
) -> None:
    """Whatever is sent, broadcast or closed while the client reads at its own pace, the
    client gets a prefix of what was queued while open, in order, then the close; what
    waits never passes max_buffer besides one message, or the client is cut off."""

    async def scenario() -> None:
        received: list[Any] = []
        readable = asyncio.Semaphore(0)  # the client reads one message per release

        async def send(message: Any) -> None:
            if message["type"] != "websocket.accept":
                await readable.acquire()
            received.append(message)

        session = AsgiSession(send, "127.0.0.1", max_buffer)
        await session.accept(None)
        queued: list[tuple[str, Any]] = []
        closed_with: int | None = None
        for kind, value, text in steps:
            if kind == "read":
                for _ in range(value):
                    readable.release()
                await asyncio.sleep(0)  # a turn of the loop: the flusher may send
            elif kind == "close":
                if session.is_open:
                    closed_with = value
                session.close(value)
            else:
                data = bytes(value) if not text else value.hex().encode()
                if session.is_open:
                    queued.append(("text", data.decode()) if text else ("bytes", data))
                if kind == "send":
                    session.binary = not text
                    session.send(data)
                elif session.writer is not None:
                    session.writer(text_frame(data) if text else binary_frame(data))
            assert session.unsent <= max_buffer + 600  # one message of any size besides
        for _ in range(len(steps) + 2):
            readable.release()
        await session.flush()
        messages = [m for m in received[1:] if m["type"] == "websocket.send"]
        got = [("text", m["text"]) if "text" in m else ("bytes", m["bytes"]) for m in messages]
        assert got == queued[: len(got)]
        if session.cut:
            assert not any(m["type"] == "websocket.close" for m in received)
        else:
            assert got == queued
            ends = [m for m in received if m["type"] == "websocket.close"]
            if closed_with is None:
                assert ends == []
            else:
                assert received[-1] == {"type": "websocket.close", "code": closed_with,
                                        "reason": ""}  # fmt: skip
                assert len(ends) == 1

    asyncio.run(scenario())
