"""The wire over real sockets: JSON and MessagePack clients side by side on one channel,
errors in MessagePack, and frames of the wrong kind."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from conftest import subscribed

from lexicons import Client, History, Response, Server
from lexicons.testing import Peer, TestClient


class Point(msgspec.Struct):
    x: float
    y: float


def wire_app(**settings: Any) -> Server:
    app = Server(debug=False, **settings)
    app.channel("room:{id}", history=History(50), presence=True, join=True)

    @app.presence
    def info(ws: Any) -> Any:
        return {"speaks": ws.codec.name}

    @app.header
    def Hello(ws: Any) -> bool:
        ws.send({"hello": ws.codec.name})  # held until admission, then in the client's encoding
        return True

    @app.signal
    def echo(text: str) -> dict[str, str]:
        return {"text": text}

    @app.signal
    def move(point: Point) -> Point:
        return Point(point.x + 1, point.y + 1)

    @app.signal
    def say(text: str, room: str) -> Response:
        return Response({"text": text}, [f"room:{room}"])

    @app.signal
    def raw(ws: Any) -> None:
        ws.send(b'{"raw": [1, 2.5, "three"]}')  # JSON a handler encoded itself

    return app


async def connect(client: TestClient, encoding: str, **options: Any) -> Peer:
    peer = await client.connect(encoding=encoding, headers={"Hello": "{}"}, **options)  # type: ignore[arg-type]
    assert await peer.expect("hello") == ("msgpack" if encoding == "msgpack" else "json")
    return peer


async def test_json_and_msgpack_subscribers_each_receive_broadcasts_in_their_encoding() -> None:
    async with TestClient(wire_app()) as client:
        plain = await connect(client, "json")
        packed = await connect(client, "msgpack")
        assert plain.subprotocol is None and packed.subprotocol == "lexicons.msgpack"
        for peer in (plain, packed):
            answer = await peer.subscribe("room:1")
            assert answer["channel"] == "room:1" and answer["recovered"] is False
        joins = [await plain.expect("$join"), await plain.expect("$join")]
        assert [join["info"]["speaks"] for join in joins] == ["json", "msgpack"]
        assert (await packed.expect("$join"))["info"] == {"speaks": "msgpack"}
        for n, sender in enumerate((plain, packed, plain)):
            await sender.send("say", text=f"hello {n}", room="1")
            for peer in (plain, packed):  # a frame of the wrong kind fails the test
                message = await peer.expect("say")
                assert message == {"text": f"hello {n}"}
        assert plain.positions["room:1"][1] == packed.positions["room:1"][1] == 3


async def test_msgpack_client_recovers_history_with_channel_and_offset() -> None:
    async with TestClient(wire_app()) as client:
        first = await connect(client, "msgpack")
        await first.subscribe("room:2")
        writer = await connect(client, "json")
        await writer.send("say", text="seen", room="2")
        assert await first.expect("say") == {"text": "seen"}
        await first.close()
        for text in ("missed 1", "missed 2"):
            await writer.send("say", text=text, room="2")
        again = await connect(client, "msgpack")
        answers = await again.resume(first)
        assert answers["room:2"]["recovered"] is True
        missed = [await again.receive(), await again.receive()]
        assert [m["say"]["text"] for m in missed] == ["missed 1", "missed 2"]
        assert [(m["channel"], m["offset"]) for m in missed] == [("room:2", 2), ("room:2", 3)]
        members = await again.presence("room:2")
        assert [m["info"] for m in members] == [{"speaks": "msgpack"}]


async def test_replies_and_typed_payloads_in_msgpack() -> None:
    async with TestClient(wire_app()) as client:
        peer = await connect(client, "msgpack")
        assert await peer.call("echo", text="hi") == {"text": "hi"}
        assert await peer.call("move", x=1.5, y=-2) == {"x": 2.5, "y": -1.0}
        await peer.send("raw")
        assert await peer.expect("raw") == [1, 2.5, "three"]
        await peer.send_raw([{"echo": {"text": "a"}, "ref": "r1"}, {"echo": {"text": "b"}}])
        assert await peer.receive() == {"echo": {"text": "a"}, "ref": "r1"}
        assert await peer.receive() == {"echo": {"text": "b"}}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"nope": {}, "ref": 7}, "unknown_signal"),
        ({"echo": {"text": 3}, "ref": 7}, "invalid_payload"),
        ({"echo": {"text": "x", "extra": 1}, "ref": 7}, "invalid_payload"),
        ({"$subscribe": {"channel": ""}, "ref": 7}, "invalid_payload"),
        (b"\xc1", "invalid_json"),
        (b"\x81\xa4echo" + b"\x91" * 50_000 + b"\x01", "invalid_json"),
        (msgspec.msgpack.encode([1, 2]), "invalid_frame"),
        ('{"echo": {"text": "json"}}', "invalid_frame"),  # a text frame
    ],
)
async def test_errors_in_msgpack(frame: Any, code: str) -> None:
    async with TestClient(wire_app()) as client:
        peer = await connect(client, "msgpack")
        await peer.send_raw(frame)
        error = await peer.receive()
        assert error["Errors"][0]["code"] == code
        if isinstance(frame, dict):
            assert error["ref"] == 7
        assert await peer.call("echo", text="still here") == {"text": "still here"}


async def test_a_binary_frame_on_a_json_connection_stays_invalid_frame() -> None:
    async with TestClient(wire_app()) as client:
        peer = await connect(client, "json")
        await peer.send_raw(msgspec.msgpack.encode({"echo": {"text": "x"}}))
        assert (await peer.receive())["Errors"][0]["code"] == "invalid_frame"


async def test_a_msgpack_client_that_vanishes_leaves_the_others_served() -> None:
    async with TestClient(wire_app()) as client:
        gone = await connect(client, "msgpack")
        await gone.subscribe("room:3")
        stay = await connect(client, "json")
        await stay.subscribe("room:3")
        gone.ws.transport.abort()
        await stay.send("say", text="after", room="3")
        assert await stay.expect("say") == {"text": "after"}


async def test_the_python_client_speaks_msgpack() -> None:
    async with TestClient(wire_app()) as server:
        async with Client(
            server.url, encoding="msgpack", reconnect=None, headers={"Hello": "{}"}
        ) as client:
            assert client.subprotocol == "lexicons.msgpack"
            assert await client.receive(5) == {"hello": "msgpack"}
            assert await client.call("echo", text="hi") == {"text": "hi"}
            await client.subscribe("room:4")
            await client.send("say", text="to all", room="4")
            assert (await client.receive(5))["$join"]["info"] == {"speaks": "msgpack"}
            assert await client.receive(5) == {
                "say": {"text": "to all"},
                "channel": "room:4",
                "offset": 1,
            }


@pytest.mark.parametrize("compression", [True, False])
async def test_compressed_and_uncompressed_clients_side_by_side(compression: bool) -> None:
    async with TestClient(wire_app(compression=compression)) as client:
        peers = [
            await connect(client, encoding, compression=compressed)
            for encoding in ("json", "msgpack")
            for compressed in (True, False)
        ]
        negotiated = [bool(peer.ws.protocol.extensions) for peer in peers]
        assert negotiated == [compression, False, compression, False]
        for peer in peers:
            await peer.subscribe("room:5")
        long = "position " * 200
        for n, sender in enumerate(peers):
            await sender.send("say", text=f"{n} {long}", room="5")
            for peer in peers:
                assert await peer.expect("say") == {"text": f"{n} {long}"}
            assert await sender.call("echo", text=long) == {"text": long}


async def test_msgpack_and_json_subscribers_on_two_servers_sharing_redis(
    redis_url: str, namespace: str, redis: Any
) -> None:
    settings = {"broker": redis_url, "broker_namespace": namespace, "compression": True}
    async with (
        TestClient(wire_app(**settings)) as a,
        TestClient(wire_app(**settings)) as b,
    ):
        peers = [
            await connect(a, "msgpack", compression=True),
            await connect(a, "json"),
            await connect(b, "msgpack"),
            await connect(b, "json", compression=True),
        ]
        for peer in peers:
            await peer.subscribe("room:6")
        await subscribed(redis, f"{namespace}:room:6", 2)
        for n in range(3):
            await peers[n].send("say", text=f"across {n} " * 20, room="6")
            for peer in peers:
                message = await peer.expect("say")
                assert message == {"text": f"across {n} " * 20}
        offsets = {peer.positions["room:6"][1] for peer in peers}
        assert offsets == {3}


async def test_a_compressed_message_over_max_size_closes_only_that_connection() -> None:
    async with TestClient(wire_app(compression=True, max_size=64 * 1024)) as client:
        bomb = await connect(client, "json", compression=True)
        other = await connect(client, "msgpack", compression=True)
        await bomb.send("echo", text="0" * 2**20)  # a few kilobytes once deflated
        code, _ = await bomb.closed()
        assert code == 1009
        assert await other.call("echo", text="fine") == {"text": "fine"}
