"""lexicons.Client against a real server: calls, credentials, iteration, reconnection."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexicons import HandshakeRejected, History, Response, Server, SignalError
from lexicons.client import Backoff, Client, handshake
from lexicons.headers import subprotocol_credential
from lexicons.testing import TestClient

FAST = Backoff(initial=0.01, maximum=0.05)


def make_app() -> Server:
    """Echo, a broadcast room, a login header, and a way to drop a connection."""
    app = Server(debug=True)
    app.channel("Room")
    app.state["banned"] = set()

    @app.header
    def Login(ws, sv, user: str) -> bool:
        ws.auth = user
        return user not in sv.state["banned"]

    @app.on_connect
    def hello(ws):
        ws.send({"hello": ws.auth})

    @app.signal
    def echo(text: str):
        return {"text": text}

    @app.signal
    def join(ws, sv):
        sv.channels["Room"].subscribe(ws.pk)
        return {"joined": True}

    @app.signal
    def say(ws, text: str):
        return Response({"from": ws.auth, "text": text}, ["Room"])

    @app.signal
    def refuse():
        raise SignalError("not_allowed", "no")

    @app.signal
    def drop(ws, sv, ban: bool = False):
        if ban:
            sv.state["banned"].add(ws.auth)
        ws.close(1011, "dropped on request")

    @app.signal
    async def slow(sv):
        await sv.state["release"].wait()
        return {"late": True}

    @app.channel("room:{id}", history=History(50), presence=True)
    def room(ws, id: str) -> bool:
        return id != "closed"

    @app.presence
    def who(ws):
        return ws.auth

    @app.signal
    def post(text: str, room: str):
        return Response({"text": text}, [room])

    @app.signal
    def miss(ws, sv, room: str):
        """Leave the room behind the client's back, so it misses what follows."""
        sv.channels[room].unsubscribe(ws)
        return True

    @app.signal
    def lag(ws, room: str, dropped: int):
        ws.send({"$lagged": {"channel": room, "dropped": dropped}})

    return app


@pytest.fixture
async def served() -> TestClient:
    async with TestClient(make_app()) as client:
        yield client


LOGIN = {"Login": json.dumps({"user": "ada"})}


async def test_call_send_and_iterate(served: TestClient) -> None:
    async with Client(served.url, headers=LOGIN, reconnect=None) as client:
        assert await client.receive(timeout=5) == {"hello": "ada"}
        assert await client.call("echo", text="hi") == {"text": "hi"}
        assert await client.call("join") == {"joined": True}
        await client.send("say", text="one")
        await client.send("say", text="two")
        texts = []
        async for message in client:
            texts.append(message["say"]["text"])
            if len(texts) == 2:
                break
        assert texts == ["one", "two"]


async def test_error_frame_raises_signal_error_with_its_code(served: TestClient) -> None:
    async with Client(served.url, headers=LOGIN) as client:
        with pytest.raises(SignalError) as refused:
            await client.call("refuse")
        assert refused.value.code == "not_allowed"
        with pytest.raises(SignalError) as unknown:
            await client.call("nope")
        assert unknown.value.code == "unknown_signal"


@pytest.mark.parametrize(
    "credentials",
    [
        {"query": {"Login": json.dumps({"user": "ada"})}},
        {"cookies": {"Login": "%7B%22user%22%3A%22ada%22%7D"}},
        {"subprotocols": ["lexicons", subprotocol_credential("Login", '{"user": "ada"}')]},
    ],
    ids=["query", "cookie", "subprotocol"],
)
async def test_credentials_without_headers(served: TestClient, credentials: dict) -> None:
    async with Client(served.url, **credentials) as client:
        assert await client.receive(timeout=5) == {"hello": "ada"}


async def test_refused_handshake_raises_at_connect(served: TestClient) -> None:
    with pytest.raises(HandshakeRejected) as refused:
        await Client(served.url).connect()
    assert refused.value.status == 403


async def test_reconnects_and_runs_on_connect_again(served: TestClient) -> None:
    joins = 0

    async def rejoin(client: Client) -> None:
        nonlocal joins
        joins += 1
        await client.call("join")

    async with Client(served.url, headers=LOGIN, reconnect=FAST, on_connect=rejoin) as client:
        assert await client.receive(timeout=5) == {"hello": "ada"}
        await client.send("drop")
        # The next hello comes from the new connection, after on_connect re-subscribed.
        assert await client.receive(timeout=5) == {"hello": "ada"}
        await client.send("say", text="after")
        assert await client.receive(timeout=5) == {"say": {"from": "ada", "text": "after"}}
        assert joins == 2 and client.reconnections == 1


async def test_on_connect_failing_after_a_reconnection_is_logged(
    served: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    runs = 0

    def flaky(client: Client) -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            raise RuntimeError("second time unlucky")

    async with Client(served.url, headers=LOGIN, reconnect=FAST, on_connect=flaky) as client:
        assert await client.receive(timeout=5) == {"hello": "ada"}
        await client.send("drop")
        assert await client.receive(timeout=5) == {"hello": "ada"}
        assert await client.call("echo", text="still here") == {"text": "still here"}
    assert runs == 2
    assert "on_connect failed after a reconnection" in caplog.text


async def test_failing_on_connect_fails_connect(served: TestClient) -> None:
    def broken(client: Client) -> None:
        raise RuntimeError("no")

    client = Client(served.url, headers=LOGIN, on_connect=broken)
    with pytest.raises(RuntimeError):
        await client.connect()
    assert not client.connected


async def test_drop_fails_waiting_call_and_ends_iteration_without_reconnect(
    served: TestClient,
) -> None:
    served.app.state["release"] = asyncio.Event()
    async with Client(served.url, headers=LOGIN, reconnect=None) as client:
        assert await client.receive(timeout=5) == {"hello": "ada"}
        waiting = asyncio.create_task(client.call("slow"))
        await client.send("drop")
        with pytest.raises(ConnectionError):
            await waiting
        with pytest.raises(ConnectionError, match="lost"):
            async for _ in client:
                pass
        with pytest.raises(ConnectionError):
            await client.send("echo", text="x")


async def test_refused_reconnection_gives_up_at_once(served: TestClient) -> None:
    async with Client(served.url, headers=LOGIN, reconnect=FAST) as client:
        assert await client.receive(timeout=5) == {"hello": "ada"}
        await client.send("drop", ban=True)
        with pytest.raises(ConnectionError):
            await client.receive(timeout=5)
        assert isinstance(client._failure, HandshakeRejected)
        assert client.reconnections == 0


async def test_gives_up_after_the_last_attempt() -> None:
    async with TestClient(make_app()) as served:
        client = await Client(
            served.url, headers=LOGIN, reconnect=Backoff(initial=0.01, attempts=2)
        ).connect()
        assert await client.receive(timeout=5) == {"hello": "ada"}
    # The server is gone: both attempts are refused by the operating system.
    with pytest.raises(ConnectionError, match="gave up"):
        async for _ in client:
            pass
    await client.close()


async def test_late_reply_after_timeout_is_dropped(served: TestClient) -> None:
    served.app.state["release"] = release = asyncio.Event()
    async with Client(served.url, headers=LOGIN) as client:
        assert await client.receive(timeout=5) == {"hello": "ada"}
        with pytest.raises(TimeoutError):
            await client.call("slow", timeout=0.05)
        release.set()
        assert await client.call("join") == {"joined": True}
        await client.send("say", text="next")
        assert await client.receive(timeout=5) == {"say": {"from": "ada", "text": "next"}}


async def test_use_before_connect_and_after_close(served: TestClient) -> None:
    client = Client(served.url, headers=LOGIN)
    with pytest.raises(RuntimeError, match="connect first"):
        await client.send("echo", text="x")
    await client.connect()
    await client.close()
    await client.close()
    assert not client.connected
    with pytest.raises(ConnectionError):
        await client.call("echo", text="x")
    assert [m async for m in client] == [{"hello": "ada"}]


def test_handshake_puts_query_and_cookies_in_place() -> None:
    url, headers = handshake(
        "ws://h/chat?room=a", headers={"X": "1"}, query={"Token": "a b"}, cookies={"S": "s"}
    )
    assert url == "ws://h/chat?room=a&Token=a+b"
    assert headers == {"X": "1", "Cookie": "S=s"}


@given(
    initial=st.floats(0.001, 10),
    spread=st.floats(1, 100),
    factor=st.floats(1, 4),
    attempts=st.integers(1, 30),
    seed=st.integers(0, 2**32),
)
def test_backoff_delays_stay_under_a_growing_ceiling(
    initial: float, spread: float, factor: float, attempts: int, seed: int
) -> None:
    backoff = Backoff(initial=initial, maximum=initial * spread, factor=factor, attempts=attempts)
    delays = list(backoff.delays(random.Random(seed)))
    assert len(delays) == attempts
    for n, delay in enumerate(delays):
        assert 0 <= delay <= min(backoff.maximum, initial * factor**n) * (1 + 1e-9)


def test_backoff_is_endless_without_attempts() -> None:
    delays = Backoff(initial=1, maximum=2).delays(random.Random(1))
    assert all(0 <= next(delays) <= 2 for _ in range(1000))


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"initial": 5, "maximum": 1}, {"factor": 0.5}, {"attempts": 0}],
)
def test_backoff_refuses_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**kwargs)


# channels


async def test_subscribe_list_presence_and_unsubscribe(served: TestClient) -> None:
    async with Client(served.url, headers=LOGIN, reconnect=None) as client:
        answer = await client.subscribe("room:1")
        assert answer["channel"] == "room:1" and answer["recovered"] is False
        assert [m["info"] for m in await client.presence("room:1")] == ["ada"]
        with pytest.raises(SignalError) as refused:
            await client.subscribe("room:closed")
        assert refused.value.code == "forbidden"
        assert await client.unsubscribe("room:1") == {"channel": "room:1"}
        assert client.positions == {}


async def test_recovers_what_it_missed_after_reconnecting(served: TestClient) -> None:
    away = asyncio.Event()
    back = asyncio.Event()

    async def on_connect(client: Client) -> None:
        if away.is_set():
            await back.wait()  # the others publish before it subscribes again

    bob = {"Login": json.dumps({"user": "bob"})}
    async with (
        Client(served.url, headers=LOGIN, reconnect=FAST, on_connect=on_connect) as ada,
        Client(served.url, headers=bob, reconnect=None) as other,
    ):
        assert await ada.receive(timeout=5) == {"hello": "ada"}
        epoch = (await ada.subscribe("room:1"))["epoch"]
        await other.send("post", text="before", room="room:1")
        frames = [await ada.receive(timeout=5) for _ in range(2)]
        assert frames[-1] == {"post": {"text": "before"}, "channel": "room:1", "offset": 1}
        assert ada.positions["room:1"] == [epoch, 1]
        away.set()
        await ada.send("drop")
        assert await ada.receive(timeout=5) == {"hello": "ada"}  # reconnected, waiting
        for n in range(3):
            await other.send("post", text=f"missed {n}", room="room:1")
        assert await other.call("echo", text="sync") == {"text": "sync"}
        back.set()
        answer = await ada.receive(timeout=5)
        assert answer["$subscribe"]["recovered"] is True and answer["ref"]
        missed = [await ada.receive(timeout=5) for _ in range(3)]
        assert [m["offset"] for m in missed] == [2, 3, 4]
        assert "$join" in await ada.receive(timeout=5)
        await other.send("post", text="live", room="room:1")
        assert (await ada.receive(timeout=5))["offset"] == 5
        assert ada.positions["room:1"] == [epoch, 5]


async def test_lagged_recovers_from_history_by_itself(served: TestClient) -> None:
    bob = {"Login": json.dumps({"user": "bob"})}
    async with (
        Client(served.url, headers=LOGIN, reconnect=None) as ada,
        Client(served.url, headers=bob, reconnect=None) as other,
    ):
        await ada.receive(timeout=5)  # hello
        await ada.subscribe("room:2")
        await ada.receive(timeout=5)  # its $join
        await ada.call("miss", room="room:2")
        for n in range(2):
            await other.send("post", text=f"dropped {n}", room="room:2")
        assert await other.call("echo", text="sync") == {"text": "sync"}
        await ada.send("lag", room="room:2", dropped=2)
        assert await ada.receive(timeout=5) == {"$lagged": {"channel": "room:2", "dropped": 2}}
        assert (await ada.receive(timeout=5))["$subscribe"]["recovered"] is True
        assert [(await ada.receive(timeout=5))["offset"] for _ in range(2)] == [1, 2]


async def test_a_refusal_after_reconnecting_arrives_among_the_messages(
    served: TestClient,
) -> None:
    async with Client(served.url, headers=LOGIN, reconnect=FAST) as ada:
        assert await ada.receive(timeout=5) == {"hello": "ada"}
        await ada.subscribe("room:3")
        await ada.receive(timeout=5)  # its $join
        served.app.channels._patterns[0]._set_join(lambda: False)  # the server changed its mind
        await ada.send("drop")
        assert await ada.receive(timeout=5) == {"hello": "ada"}
        refusal = await ada.receive(timeout=5)
        assert refusal["Errors"][0]["code"] == "forbidden"
        assert ada.positions == {}
