"""Channels as a service across processes on the Redis broker: history numbered by Redis,
recovery on the same or another process, presence cluster-wide, a process that dies.

Most tests run two servers in this test's event loop, each with its own broker and
Redis connections, as separate processes would; the last ones start real processes.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from apps.cluster_app import make_app
from conftest import Process, eventually, subscribed

from lexicons.testing import Peer, TestClient

CLUSTER_APP = Path(__file__).parent / "apps" / "cluster_app.py"


@asynccontextmanager
async def cluster(
    count: int, broker: str, namespace: str, **settings: Any
) -> AsyncIterator[list[TestClient]]:
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            client = TestClient(make_app(), broker=broker, broker_namespace=namespace, **settings)
            clients.append(await stack.enter_async_context(client))
        yield clients


async def said(peer: Peer, count: int) -> list[tuple[int, int]]:
    """The next ``count`` ``say`` frames as (seq, offset); presence events are skipped."""
    found = []
    while len(found) < count:
        message = await peer.receive()
        if "say" in message:
            found.append((message["say"]["seq"], message["offset"]))
    return found


async def joined(peer: Peer, info: str) -> str:
    """The pk in the ``$join`` of the member described by ``info``."""
    while True:
        event = await peer.expect("$join")
        if event["info"] == info:
            return str(event["pk"])


async def say(peer: Peer, seq: int, channel: str = "room:1") -> None:
    await peer.send("say", publisher="p", seq=seq, channels=[channel])


async def test_every_process_delivers_redis_numbering_in_one_order(
    redis_url: str, namespace: str, redis: Any
) -> None:
    async with cluster(2, redis_url, namespace) as (a, b):
        on_a, on_b = await a.connect(), await b.connect()
        first = await on_a.subscribe("room:1")
        second = await on_b.subscribe("room:1")
        assert first["epoch"] == second["epoch"] and second["offset"] == 0
        await subscribed(redis, f"{namespace}:room:1", 2)
        for seq in range(6):
            await say(on_a if seq % 2 else on_b, seq)
        expected = await said(on_a, 6)
        assert [offset for _, offset in expected] == [1, 2, 3, 4, 5, 6]
        assert await said(on_b, 6) == expected  # the same order everywhere


async def test_a_client_recovers_on_the_same_and_on_the_other_process(
    redis_url: str, namespace: str, redis: Any
) -> None:
    async with cluster(2, redis_url, namespace) as (a, b):
        alice, publisher = await a.connect(), await b.connect()
        await alice.subscribe("room:1")
        await publisher.subscribe("room:1")
        await subscribed(redis, f"{namespace}:room:1", 2)
        await say(publisher, 0)
        assert await said(alice, 1) == [(0, 1)] == await said(publisher, 1)
        for target in (a, b, a):  # the same process, the other one, back
            await alice.close()
            for seq in range(3):
                await say(publisher, seq)
            latest = (await said(publisher, 3))[-1][1]  # Redis numbered them
            again = await target.connect()
            answers = await again.resume(alice)
            assert answers["room:1"]["recovered"] is True
            assert answers["room:1"]["offset"] >= latest
            await say(publisher, 99)  # live, after what it missed
            received = await said(again, 4)
            assert [offset for _, offset in received] == list(range(latest - 2, latest + 2))
            assert received[-1][0] == 99
            assert await said(publisher, 1) == [received[-1]]
            await again.assert_nothing_received()
            alice = again


async def test_not_recovered_past_the_count_or_once_redis_lost_the_history(
    redis_url: str, namespace: str, redis: Any
) -> None:
    async with cluster(2, redis_url, namespace) as (a, b):
        alice, publisher = await a.connect(), await b.connect()
        answer = await alice.subscribe("room:1")
        for seq in range(3):
            await say(publisher, seq)
        assert [o for _, o in await said(alice, 3)] == [1, 2, 3]
        fresh = await b.connect()
        assert (await fresh.subscribe("room:1", (answer["epoch"], 1)))["recovered"] is True
        assert (await fresh.subscribe("room:1", ("another", 1)))["recovered"] is False
        # Redis loses the channel's history (flushed, restarted without persistence).
        await redis.delete(f"{namespace}:history:room:1", f"{namespace}:stream:room:1")
        await say(publisher, 3)
        assert [o for _, o in await said(alice, 1)] == [1]  # A follows the new epoch
        late = await a.connect()
        renewed = await late.subscribe("room:1", (answer["epoch"], 3))
        assert renewed["recovered"] is False and renewed["epoch"] != answer["epoch"]
        assert renewed["offset"] == 1


async def test_presence_is_cluster_wide(redis_url: str, namespace: str, redis: Any) -> None:
    async with cluster(2, redis_url, namespace) as (a, b):
        alice, bob = await a.connect(), await b.connect()
        await alice.call("name", name="alice")
        await bob.call("name", name="bob")
        await alice.subscribe("room:1")
        await subscribed(redis, f"{namespace}:room:1", 1)
        alice_pk = await joined(alice, "alice")
        await bob.subscribe("room:1")
        bob_pk = await joined(alice, "bob")  # from the other process
        assert await joined(bob, "bob") == bob_pk
        names = sorted(m["info"] for m in await alice.presence("room:1"))
        assert names == ["alice", "bob"] == sorted(m["info"] for m in await bob.presence("room:1"))
        await bob.close()
        assert (await alice.expect("$leave"))["pk"] == bob_pk
        assert [m["pk"] for m in await alice.presence("room:1")] == [alice_pk]
        await alice.unsubscribe("room:1")
        key = f"{namespace}:presence:room:1"

        async def emptied() -> bool:
            return not await redis.exists(key)

        await eventually(emptied, "the presence hash to empty")


async def test_server_code_subscribing_to_a_history_channel_on_redis(
    redis_url: str, namespace: str, redis: Any
) -> None:
    async with cluster(2, redis_url, namespace) as (a, b):
        alice, bob = await a.connect(), await b.connect()
        await alice.call("join", channels=["Hist"])
        await bob.call("join", channels=["Hist"])
        await subscribed(redis, f"{namespace}:Hist", 2)
        await bob.send("say", publisher="bob", seq=1, channels=["Hist"])
        for peer in (alice, bob):
            message = await peer.receive()
            assert message["say"]["seq"] == 1 and message["channel"] == "Hist"


# real processes


@pytest.mark.slow
async def test_a_killed_process_leaves_presence_and_its_clients_recover_elsewhere(
    process: type[Process], redis_url: str, namespace: str, redis: Any
) -> None:
    env = {
        "LEXICONS_BROKER": redis_url,
        "LEXICONS_BROKER_NAMESPACE": namespace,
        "LEXICONS_BROKER_HEARTBEAT": "0.2",  # a dead process is gone within 0.8 s
    }
    args = (sys.executable, CLUSTER_APP, "run", "--host", "127.0.0.1", "--port", "0")
    first, second = process(*args, env=env), process(*args, env=env)
    url_a, url_b = first.url(), second.url()
    async with TestClient(make_app()) as local:  # only its client side is used
        on_a = await connect(local, url_a)
        on_b = await connect(local, url_b)
        await on_a.call("name", name="stays")
        await on_b.call("name", name="dies")
        await on_a.subscribe("room:1")
        await on_b.subscribe("room:1")
        await subscribed(redis, f"{namespace}:room:1", 2)
        doomed = await joined(on_b, "dies")
        assert sorted(m["info"] for m in await on_a.presence("room:1")) == ["dies", "stays"]
        await say(on_a, 0)
        assert await said(on_b, 1) == [(0, 1)]

        second.popen.send_signal(signal.SIGKILL)
        second.popen.wait(10)
        left = await on_a.expect("$leave", timeout=10)  # swept by the survivor
        assert left == {"channel": "room:1", "pk": doomed, "info": "dies"}
        assert [m["info"] for m in await on_a.presence("room:1")] == ["stays"]

        for seq in (1, 2):  # while the killed process's client is away
            await say(on_a, seq)
        again = await connect(local, url_a)
        answers = await again.resume(on_b)
        assert answers["room:1"]["recovered"] is True
        assert await said(again, 2) == [(1, 2), (2, 3)]
    code, _, err = first.stop(signal.SIGTERM)
    assert code == 0, err


async def connect(client: TestClient, url: str) -> Peer:
    """A test peer connected to a server the test started as a process."""
    from lexicons.client import open_connection

    return Peer(await open_connection(url))
