"""Channels over real sockets: who receives a broadcast, and cleanup on disconnect."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

import pytest

from lexicons import History, LexiconsError, Response, Server
from lexicons.testing import HandshakeFailed, Peer, TestClient


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


# history and recovery


def history_app(count: int = 5, age: float = 60.0, policy: Any = None) -> Server:
    app = Server(debug=False)
    app.channel("news", join=True)
    options: dict[str, Any] = {"policy": policy} if policy else {}
    app.channel("room:{id}", history=History(count, age=age), presence=True, join=True, **options)

    @app.presence
    def info(ws: Any) -> Any:
        return {"name": ws.state.get("name", "?")}

    @app.signal
    def name(ws: Any, name: str) -> bool:
        ws.state["name"] = name
        return True

    @app.signal
    def say(text: str, channels: list[str], key: str | None = None) -> Response:
        return Response({"text": text}, channels, key)

    @app.signal
    def notice(sv: Server, text: str, channels: list[str]) -> bool:
        sv.broadcast({"notice": text}, channels)
        return True

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


async def messages(peer: Peer, signal: str, count: int) -> list[Any]:
    """The next ``count`` whole messages carrying ``signal``; others are skipped."""
    found = []
    while len(found) < count:
        message = await peer.receive()
        if signal in message:
            found.append(message)
    return found


async def test_history_frames_carry_the_channel_and_the_offset() -> None:
    async with TestClient(history_app()) as client:
        alice, bob = await client.connect(), await client.connect()
        answer = await alice.subscribe("room:1")
        assert answer["offset"] == 0 and answer["recovered"] is False and answer["epoch"]
        await alice.expect("$join")
        for n in (1, 2):
            await bob.send("say", text=f"m{n}", channels=["room:1"])
            assert await alice.receive() == {
                "say": {"text": f"m{n}"},
                "channel": "room:1",
                "offset": n,
            }
        assert alice.positions["room:1"] == [answer["epoch"], 2]


async def test_a_client_that_reconnects_recovers_every_missed_publication_once_in_order() -> None:
    async with TestClient(history_app(count=10)) as client:
        alice, bob = await client.connect(), await client.connect()
        await alice.subscribe("room:1")
        await bob.send("say", text="seen", channels=["room:1"])
        assert (await alice.expect("say"))["text"] == "seen"
        await alice.close()
        for n in range(3):
            await bob.send("say", text=f"missed{n}", channels=["room:1"])
        await bob.call("name", name="sync")  # bob's broadcasts were handled before this reply
        again = await client.connect()
        answers = await again.resume(alice)
        assert answers["room:1"]["recovered"] is True and answers["room:1"]["offset"] == 4
        await bob.send("say", text="live", channels=["room:1"])
        received = [await again.receive() for _ in range(4)]
        assert [m["say"]["text"] for m in received if "say" in m] == [
            "missed0",
            "missed1",
            "missed2",
        ]
        assert [m.get("offset") for m in received if "say" in m] == [2, 3, 4]
        assert "$join" in received[3]  # its own join comes after what it missed
        assert await again.receive() == {"say": {"text": "live"}, "channel": "room:1", "offset": 5}
        await again.assert_nothing_received()


async def test_not_recovered_past_the_count_the_age_or_from_another_epoch() -> None:
    app = history_app(count=2, age=30)
    now = [1000.0]
    app.channels.clock = lambda: now[0]
    async with TestClient(app) as client:
        alice, bob = await client.connect(), await client.connect()
        answer = await alice.subscribe("room:1")
        epoch = answer["epoch"]
        for n in range(3):
            await bob.call("notice", text=f"n{n}", channels=["room:1"])
        # Three missed, two kept: the first is gone.
        fresh = await client.connect()
        assert (await fresh.subscribe("room:1", (epoch, 0)))["recovered"] is False
        assert (await fresh.subscribe("room:1", (epoch, 1)))["recovered"] is True
        assert [m["offset"] for m in await messages(fresh, "notice", 2)] == [2, 3]
        # Too old.
        now[0] += 31
        late = await client.connect()
        answer = await late.subscribe("room:1", (epoch, 2))
        assert answer == {"channel": "room:1", "epoch": epoch, "offset": 3, "recovered": False}
        # Another epoch, or an offset the channel never reached.
        assert (await late.subscribe("room:1", ("0123456789abcdef", 3)))["recovered"] is False
        assert (await late.subscribe("room:1", (epoch, 99)))["recovered"] is False
        assert (await late.subscribe("room:1", (epoch, 3)))["recovered"] is True


async def test_the_epoch_changes_when_an_idle_empty_channel_forgot_its_history() -> None:
    app = history_app(count=5, age=30)
    now = [1000.0]
    app.channels.clock = lambda: now[0]
    async with TestClient(app) as client:
        alice, bob = await client.connect(), await client.connect()
        first = await alice.subscribe("room:1")
        await bob.call("notice", text="x", channels=["room:1"])
        await alice.unsubscribe("room:1")
        assert "room:1" not in app.channels  # made from a pattern: gone when empty
        now[0] += 31
        await bob.call("notice", text="y", channels=["room:2"])  # any publication sweeps
        answer = await alice.subscribe("room:1", (first["epoch"], 1))
        assert answer["recovered"] is False and answer["epoch"] != first["epoch"]
        assert answer["offset"] == 0


async def test_a_broadcast_to_several_channels_reaches_each_history_channel_once() -> None:
    async with TestClient(history_app()) as client:
        alice, bob = await client.connect(), await client.connect()
        for channel in ("room:1", "room:2", "news"):
            await alice.subscribe(channel)
        await bob.call("notice", text="all", channels=["room:1", "room:2", "news"])
        frames = await messages(alice, "notice", 3)
        assert sorted(str(m.get("channel")) for m in frames) == ["None", "room:1", "room:2"]
        await alice.assert_nothing_received()


async def test_a_broadcast_to_a_history_channel_must_be_an_object() -> None:
    app = history_app()
    async with TestClient(app):
        with pytest.raises(LexiconsError, match="must be a JSON object"):
            app.broadcast([1, 2], "room:1")


async def test_server_side_subscriptions_get_history_and_presence_too() -> None:
    app = history_app()

    @app.signal
    def enter(ws: Any, sv: Server, room: str) -> list[str]:
        sv.channels[room].subscribe(ws)
        return sorted(ws.channels)

    async with TestClient(app) as client:
        alice, bob = await client.connect(), await client.connect()
        await alice.subscribe("room:1")
        await alice.expect("$join")
        assert await bob.call("enter", room="room:1") == ["room:1"]
        joined = await alice.expect("$join")
        assert joined["pk"] != "" and joined["info"] == {"name": "?"}
        await bob.send("say", text="hi", channels=["room:1"])
        assert (await alice.receive())["offset"] == 1


# presence


async def test_presence_join_leave_and_list() -> None:
    app = history_app()
    async with TestClient(app) as client:
        alice, bob = await client.connect(), await client.connect()
        await alice.call("name", name="alice")
        await bob.call("name", name="bob")
        await alice.subscribe("room:1")
        alice_pk = (await alice.expect("$join"))["pk"]
        await bob.subscribe("room:1")
        joined = await alice.expect("$join")
        assert joined == {"channel": "room:1", "pk": joined["pk"], "info": {"name": "bob"}}
        assert (await bob.expect("$join"))["pk"] == joined["pk"]  # the joiner hears itself
        members = sorted((m["info"]["name"], m["pk"]) for m in await bob.presence("room:1"))
        assert members == [("alice", alice_pk), ("bob", joined["pk"])]
        await bob.close()
        left = await alice.expect("$leave")
        assert left == {"channel": "room:1", "pk": joined["pk"], "info": {"name": "bob"}}
        assert [m["pk"] for m in await alice.presence("room:1")] == [alice_pk]
        await alice.unsubscribe("room:1")
        await alice.assert_nothing_received()  # no $leave for the one that left
        assert await app.channels["room:1"].members() == []


async def test_nothing_is_kept_per_channel_once_everyone_left_and_history_expired() -> None:
    app = history_app(age=10)
    now = [0.0]
    app.channels.clock = lambda: now[0]
    async with TestClient(app) as client:
        alice = await client.connect()
        for n in range(50):
            await alice.subscribe(f"room:{n}")
            await alice.call("notice", text="x", channels=[f"room:{n}"])
            await alice.unsubscribe(f"room:{n}")
        assert len(app.channels) == 1  # news; the rooms went with their last subscriber
        now[0] += 11
        for _ in range(30):  # each publication forgets up to two idle timelines
            await alice.call("notice", text="x", channels=["room:x"])
        assert set(app.channels._timelines) == {"room:x"}
        assert not app.channels._joined and not app.channels._pending


# slow consumers


async def raw_call(client: Any, signal: str, **payload: Any) -> Any:
    """Send a request from a RawClient and read until its reply."""
    client.protocol.send_text(json.dumps({signal: payload, "ref": "r"}).encode())
    await client.flush()
    while True:
        message = await client.next_message()
        if message.get("ref") == "r":
            return message


def fast_pk(app: Server) -> str:
    """The pk of the first connection (the test's well-behaved client)."""
    return next(iter(app.connections))


def feed_app(policy: str) -> Server:
    app = Server(debug=False, max_buffer=64 * 1024)
    app.channel("feed", join=True, policy=policy, history=History(10_000))  # type: ignore[arg-type]
    return app


async def lag(app: Server, fast: Peer, lagging: Any, key: Any = None, limit: int = 2000) -> int:
    """Publish 16 KiB broadcasts, each received by ``fast`` before the next, until
    ``lagging()`` says the reader that stopped lags; how many were published."""
    for n in range(1, limit):
        app.broadcast({"n": n, "blob": "x" * 16384}, "feed", key=key(n) if key else None)
        assert (await fast.receive())["n"] == n  # the fast one gets each, at once
        if lagging():
            return n
    raise AssertionError("the reader that stopped never lagged")


async def test_drop_drops_for_the_lagging_reader_then_tells_it_how_many(raw: Any) -> None:
    app = feed_app("drop")
    async with TestClient(app) as client:
        fast = await client.connect()
        await fast.subscribe("feed")
        slow = await raw(client.url, rcvbuf=4096)
        answer = (await raw_call(slow, "$subscribe", channel="feed"))["$subscribe"]
        (slow_pk,) = set(app.channels["feed"].subscribers) - {fast_pk(app)}
        policy = app.channels["feed"]._slow
        first = await lag(app, fast, lambda: policy.lagging(slow_pk) > 0)  # type: ignore[union-attr]
        for n in range(first + 1, first + 6):  # dropped for the slow one only
            app.broadcast({"n": n, "blob": ""}, "feed")
            assert (await fast.receive())["n"] == n
        published = first + 5
        dropped = policy.lagging(slow_pk)  # type: ignore[union-attr]
        received = []
        while True:  # the slow reader reads again
            message = await slow.next_message()
            if "$lagged" in message:
                break
            received.append(message["offset"])
        assert message == {"$lagged": {"channel": "feed", "dropped": dropped}}
        assert received == list(range(1, published - dropped + 1))
        # It recovers what it missed from history, in order.
        since = {"epoch": answer["epoch"], "offset": received[-1]}
        recovered = await raw_call(slow, "$subscribe", channel="feed", since=since)
        assert recovered["$subscribe"]["recovered"] is True
        missed = [(await slow.next_message())["offset"] for _ in range(dropped)]
        assert missed == list(range(received[-1] + 1, published + 1))
        slow.abort()  # it would not answer the server's closing handshake


async def test_conflate_keeps_the_latest_per_key_for_the_lagging_reader(raw: Any) -> None:
    app = feed_app("conflate")
    async with TestClient(app) as client:
        fast = await client.connect()
        await fast.subscribe("feed")
        slow = await raw(client.url, rcvbuf=4096)
        await raw_call(slow, "$subscribe", channel="feed")
        (slow_pk,) = set(app.channels["feed"].subscribers) - {fast_pk(app)}
        policy = app.channels["feed"]._slow
        waiting = lambda: bool(policy.waiting(slow_pk))  # type: ignore[union-attr]  # noqa: E731
        first = await lag(app, fast, waiting, key=lambda n: f"k{n % 3}")
        latest = {}
        for n in range(first + 1, first + 30):  # positions of three movers
            key = f"k{n % 3}"
            app.broadcast({"n": n, "key": key}, "feed", key=key)
            assert (await fast.receive())["n"] == n
            latest[key] = n
        received: list[int] = []
        last_seen = {}
        while not received or received[-1] < first + 29:  # reads again, until the newest
            message = await slow.next_message()
            received.append(message["n"])
            if "key" in message:
                last_seen[message["key"]] = message["n"]
        assert last_seen == latest  # each key's latest position reached it
        assert received == sorted(received)  # never an older one after a newer one
        assert len(received) < first + 29  # and it did not get them all
        slow.abort()


async def test_disconnect_cuts_off_the_lagging_reader_only(raw: Any) -> None:
    app = feed_app("disconnect")
    async with TestClient(app) as client:
        fast = await client.connect()
        await fast.subscribe("feed")
        slow = await raw(client.url, rcvbuf=4096)
        await raw_call(slow, "$subscribe", channel="feed")
        await lag(app, fast, lambda: len(app.connections) == 1)
        assert list(app.channels["feed"].subscribers) == [fast_pk(app)]


# publishing from other threads


async def test_broadcast_threadsafe_from_threads_arrives_in_call_order() -> None:
    app = history_app()
    with pytest.raises(LexiconsError, match="not running"):
        app.broadcast_threadsafe({"n": 0}, "news")
    async with TestClient(app) as client:
        alice = await client.connect()
        await alice.subscribe("news")
        await alice.subscribe("room:1")
        await alice.expect("$join")

        def worker() -> None:
            for n in range(50):
                app.broadcast_threadsafe({"n": n}, ["news"])
            app.broadcast_threadsafe({"done": True}, ["room:1"], key="end")

        thread = threading.Thread(target=worker)
        thread.start()
        received = [(await alice.receive())["n"] for _ in range(50)]
        assert received == list(range(50))
        assert await alice.receive() == {"done": True, "channel": "room:1", "offset": 1}
        thread.join()


def test_broadcast_threadsafe_from_a_synchronous_test() -> None:
    app = history_app()
    with TestClient(app) as client:
        alice = client.connect()
        alice.subscribe("news")
        app.broadcast_threadsafe({"hello": "from the test's thread"}, "news")
        assert alice.receive() == {"hello": "from the test's thread"}


async def test_history_and_presence_in_durable_mode(tmp_path: Any) -> None:
    app = history_app()
    async with TestClient(app, durable=True, data=str(tmp_path)) as client:
        alice, bob = await client.connect(), await client.connect()
        await alice.subscribe("room:1")
        await bob.subscribe("room:1")
        assert (await alice.expect("$join"))["info"] == {"name": "?"}
        await bob.send("say", text="kept", channels=["room:1"])
        message = await messages(alice, "say", 1)
        assert message == [{"say": {"text": "kept"}, "channel": "room:1", "offset": 1}]
        assert [m["pk"] for m in await bob.presence("room:1")]
