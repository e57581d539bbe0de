"""Channels over real sockets: who receives a broadcast, and cleanup on disconnect."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from lexicons import LexiconsError, Response, Server
from lexicons.testing import HandshakeFailed, TestClient


def rooms_app() -> Server:
    app = Server()
    app.channel("A")
    app.channel("B")

    @app.signal
    def join(ws: Any, sv: Server, room: str) -> list[str]:
        sv.channels[room].subscribe(ws.pk)
        return sorted(ws.channels)

    @app.signal
    def leave(ws: Any, sv: Server, room: str) -> bool:
        sv.channels[room].unsubscribe(ws.pk)
        return True

    @app.signal
    def say(text: str, rooms: list[str]) -> Response:
        return Response({"text": text}, rooms)

    @app.signal
    def notice(sv: Server, text: str, rooms: list[str]) -> bool:
        sv.broadcast({"notice": text}, rooms)
        return True

    return app


async def test_broadcast_reaches_subscribers_and_only_them() -> None:
    async with TestClient(rooms_app()) as client:
        a1, a2, b1, nobody = [await client.connect() for _ in range(4)]
        await a1.call("join", room="A")
        await a2.call("join", room="A")
        await b1.call("join", room="B")
        await a1.send("say", text="hello A", rooms=["A"])
        assert await a1.receive() == {"say": {"text": "hello A"}}
        assert await a2.receive() == {"say": {"text": "hello A"}}
        await b1.assert_nothing_received()
        await nobody.assert_nothing_received()


async def test_subscriber_of_several_channels_receives_once() -> None:
    async with TestClient(rooms_app()) as client:
        both = await client.connect()
        await both.call("join", room="A")
        assert await both.call("join", room="B") == ["A", "B"]
        assert await both.call("notice", text="hi", rooms=["A", "B"]) is True
        assert await both.receive() == {"notice": "hi"}
        await both.assert_nothing_received()


async def test_unsubscribe_and_disconnect_cleanup() -> None:
    app = rooms_app()
    gone = asyncio.Event()

    @app.on_disconnect
    def bye() -> None:
        gone.set()

    async with TestClient(app) as client:
        stay, leaver, dropper = [await client.connect() for _ in range(3)]
        for peer in (stay, leaver, dropper):
            await peer.call("join", room="A")
        await leaver.call("leave", room="A")
        await dropper.close()
        await asyncio.wait_for(gone.wait(), 5)
        assert len(app.channels["A"].subscribers) == 1
        assert await app.channels["A"].count() == 1
        await stay.send("say", text="x", rooms=["A"])
        assert await stay.receive() == {"say": {"text": "x"}}
        await leaver.assert_nothing_received()


async def test_unknown_channel_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="lexicons")
    async with TestClient(rooms_app()) as client:
        peer = await client.connect()
        await peer.call("join", room="A")
        assert await peer.call("notice", text="n", rooms=["Nowhere", "A"]) is True
        assert await peer.receive() == {"notice": "n"}
    assert "unknown channel 'Nowhere'" in caplog.text


async def test_channels_created_and_removed_at_run_time() -> None:
    app = Server()

    @app.signal
    def open_room(ws: Any, sv: Server, name: str) -> int:
        sv.channels.create(name).subscribe(ws)
        return len(sv.channels)

    @app.signal
    def close_room(ws: Any, sv: Server, name: str) -> list[str]:
        del sv.channels[name]
        return sorted(ws.channels)

    async with TestClient(app) as client:
        peer = await client.connect()
        assert await peer.call("open_room", name="r1") == 1
        assert await peer.call("close_room", name="r1") == []
        assert "r1" not in app.channels


def test_channel_needs_a_server_and_a_live_connection() -> None:
    from lexicons import Channel

    with pytest.raises(LexiconsError, match="not registered"):
        Channel("Loose").broadcast({})
    app = Server()
    room = app.channel("Room")
    with pytest.raises(LexiconsError, match="no connection"):
        room.subscribe("not-a-pk")


def header_rooms_app() -> Server:
    """An app whose ``Join`` header, given ``<how>:<verdict>``, subscribes the connection
    it checks to channel A (``how``: by the connection ``ws``, by its ``pk``, or
    ``none``), then admits or refuses it."""
    app = rooms_app()

    @app.header
    def Join(ws: Any, sv: Server, header: str) -> bool:
        how, _, verdict = header.partition(":")
        if how != "none":
            sv.channels["A"].subscribe(ws if how == "ws" else ws.pk)
        return verdict == "admit"

    @app.signal
    def mine(ws: Any) -> list[str]:
        return sorted(ws.channels)

    return app


async def test_a_header_that_subscribes_and_refuses_leaves_no_subscriber() -> None:
    app = header_rooms_app()
    async with TestClient(app) as client:
        for how in ("ws", "pk"):
            with pytest.raises(HandshakeFailed) as refused:
                await client.connect(headers={"Join": f"{how}:refuse"})
            assert refused.value.status == 403
        assert not app.channels["A"].subscribers
        assert await app.channels["A"].count() == 0
        member = await client.connect(headers={"Join": "ws:admit"})
        assert await member.call("mine") == ["A"]
        assert len(app.channels["A"].subscribers) == 1


async def test_a_header_that_subscribes_and_admits_receives_the_channels_broadcasts() -> None:
    app = header_rooms_app()
    async with TestClient(app) as client:
        by_pk = await client.connect(headers={"Join": "pk:admit"})
        by_ws = await client.connect(headers={"Join": "ws:admit"})
        outsider = await client.connect(headers={"Join": "none:admit"})
        assert await by_pk.call("mine") == await by_ws.call("mine") == ["A"]
        assert await outsider.call("mine") == []
        await outsider.send("say", text="news", rooms=["A"])
        for member in (by_pk, by_ws):
            assert await member.receive() == {"say": {"text": "news"}}
        await outsider.assert_nothing_received()
