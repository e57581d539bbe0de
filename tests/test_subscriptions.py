"""Clients joining channels over real sockets: $subscribe, $unsubscribe, $presence, and
each channel's authorization."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from lexicons import Channel, Forbidden, RegistrationError, Response, Server, SignalError
from lexicons.patterns import ChannelPattern
from lexicons.testing import Peer, TestClient


def lobby_app() -> Server:
    app = Server(debug=False)
    app.channel("Lobby")  # server code subscribes; clients may not join
    app.channel("news", join=True)  # anyone may join

    @app.channel("room:{id}", presence=True)
    def room(ws: Any, channel: str, id: str) -> bool:
        ws.state.setdefault("asked", []).append((channel, id))
        return id != "secret"

    @app.channel("team:{team}:{member}")
    async def team(ws: Any, team: str, member: str) -> bool:
        await asyncio.sleep(0)  # an async authorization holds the connection's next requests
        return team == "red"

    @app.signal
    def asked(ws: Any) -> list[list[str]]:
        return [list(pair) for pair in ws.state.get("asked", [])]

    @app.signal
    def say(text: str, channel: str) -> Response:
        return Response({"text": text}, [channel])

    return app


async def error(peer: Peer, signal: str, **payload: Any) -> tuple[str, str]:
    with pytest.raises(SignalError) as refused:
        await peer.call(signal, **payload)
    return refused.value.code, refused.value.message


async def test_a_joinable_channel_admits_and_answers_its_position() -> None:
    async with TestClient(lobby_app()) as client:
        alice, bob = await client.connect(), await client.connect()
        answer = await alice.subscribe("news")
        assert answer == {"channel": "news", "epoch": "", "offset": 0, "recovered": False}
        await bob.send("say", text="hello", channel="news")
        assert await alice.receive() == {"say": {"text": "hello"}}  # today's frame, exactly
        await bob.assert_nothing_received()


async def test_a_pattern_channel_asks_its_authorization_with_the_values() -> None:
    app = lobby_app()
    async with TestClient(app) as client:
        alice = await client.connect()
        await alice.subscribe("room:7")
        assert await alice.call("asked") == [["room:7", "7"]]
        assert "room:7" in app.channels and "room:8" not in app.channels


async def test_refusals_have_their_codes() -> None:
    async with TestClient(lobby_app()) as client:
        alice = await client.connect()
        assert (await error(alice, "$subscribe", channel="room:secret"))[0] == "forbidden"
        assert (await error(alice, "$subscribe", channel="Lobby"))[0] == "forbidden"
        assert (await error(alice, "$subscribe", channel="nowhere"))[0] == "unknown_channel"
        assert (await error(alice, "$subscribe", channel="room:a:b"))[0] == "unknown_channel"
        assert (await error(alice, "$unsubscribe", channel="nowhere"))[0] == "unknown_channel"
        assert (await error(alice, "$unsubscribe", channel="Lobby"))[0] == "forbidden"
        assert (await error(alice, "$subscribe", channel="team:blue:x"))[0] == "forbidden"
        assert await alice.subscribe("team:red:x")
        assert alice.ws.close_code is None  # refusals never close the connection


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"channel": 5},
        {"channel": ""},
        {"channel": "x" * 257},
        {"channel": "news", "since": {"epoch": "e"}},
        {"channel": "news", "since": {"epoch": "e", "offset": -1}},
        {"channel": "news", "extra": True},
        {"channel": {"deeply": [[[[[]]]]]}},
    ],
)
async def test_malformed_requests_are_invalid_payload(payload: dict[str, Any]) -> None:
    async with TestClient(lobby_app()) as client:
        alice = await client.connect()
        code, _ = await error(alice, "$subscribe", **payload)
        assert code == "invalid_payload"
        await alice.send_raw(json.dumps({"$subscribe": None, "ref": 9}))
        assert (await alice.receive())["Errors"][0]["code"] == "invalid_payload"


async def test_unsubscribe_stops_delivery_and_is_harmless_twice() -> None:
    async with TestClient(lobby_app()) as client:
        alice, bob = await client.connect(), await client.connect()
        await alice.subscribe("news")
        await alice.subscribe("news")  # twice: still one subscription
        assert await alice.unsubscribe("news") == {"channel": "news"}
        assert await alice.unsubscribe("news") == {"channel": "news"}
        await bob.send("say", text="nobody hears", channel="news")
        await alice.assert_nothing_received()


async def test_an_authorization_that_raises_answers_for_itself() -> None:
    app = Server(debug=False)

    @app.channel("vip:{level}")
    def vip(level: str) -> bool:
        if level == "gold":
            raise Forbidden("gold members only, and you are silver")
        raise RuntimeError("database down")

    async with TestClient(app) as client:
        alice = await client.connect()
        code, message = await error(alice, "$subscribe", channel="vip:gold")
        assert (code, message) == ("forbidden", "gold members only, and you are silver")
        assert (await error(alice, "$subscribe", channel="vip:x"))[0] == "internal_error"


async def test_class_style_channels_authorize_with_a_method() -> None:
    app = Server(debug=False)

    @app.channel
    class Room(Channel):
        name = "room:{id}"
        presence = True

        def authorize(self, ws: Any, id: str) -> bool:
            return id.isdigit()

    async with TestClient(app) as client:
        alice = await client.connect()
        await alice.subscribe("room:1")
        assert (await error(alice, "$subscribe", channel="room:x"))[0] == "forbidden"
        assert [m["pk"] for m in await alice.presence("room:1")] == [
            next(iter(app.channels["room:1"].subscribers))
        ]


async def test_presence_requests_are_for_subscribers_of_presence_channels() -> None:
    async with TestClient(lobby_app()) as client:
        alice = await client.connect()
        assert (await error(alice, "$presence", channel="room:1"))[0] == "not_subscribed"
        await alice.subscribe("news")
        assert (await error(alice, "$presence", channel="news"))[0] == "no_presence"
        assert (await error(alice, "$presence", channel="nowhere"))[0] == "unknown_channel"


def test_declarations_are_checked_at_registration() -> None:
    app = Server()
    with pytest.raises(RegistrationError, match="parameter 'who'"):

        @app.channel("room:{id}")
        def room(who: str) -> bool:
            return True

    with pytest.raises(RegistrationError, match="policy"):
        app.channel("x", policy="ignore")  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="History"):
        app.channel("y", history=10)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="options go with a name"):
        app.add_channel(Channel("z"), presence=True)
    app.channel("game:{id}")
    with pytest.raises(RegistrationError, match="already registered"):
        app.channel("game:{id}")
    with pytest.raises(RegistrationError, match="reserved"):
        app.add_signal(lambda: None, "$subscribe")
    with pytest.raises(RegistrationError, match="must not be async"):

        @app.presence
        async def info(ws: Any) -> None: ...


def test_patterns_match_whole_segments() -> None:
    pattern = ChannelPattern("game:{game}:{team}")
    assert pattern.match("game:7:red") == {"game": "7", "team": "red"}
    assert pattern.match("game:7") is None
    assert pattern.match("game:7:red:x") is None
    assert ChannelPattern("a.b{x}").match("aXbc") is None  # literals are literal
    for bad in ("a{b{c}", "a}{b}", "r:{}", "r:{ws}", "r:{a}:{a}", "r:{channel}"):
        with pytest.raises(RegistrationError):
            ChannelPattern(bad)
