"""The Redis broker: channels shared by server processes through a real Redis.

Several servers run in this test's event loop, each with its own broker and its own
connections to Redis, exactly as separate processes would; the last tests start real
server processes. Each test uses a namespace of its own, so runs never see each other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from apps.cluster_app import make_app
from conftest import OwnRedis, Process, eventually, subscribed
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect

from lexicons import ConfigurationError, LocalBroker
from lexicons.brokers import make_broker
from lexicons.brokers.envelope import NUMBERED, PLAIN, Head, head_prefix, pack, prefix, unpack
from lexicons.brokers.redis import RedisBroker, redacted
from lexicons.settings import Settings
from lexicons.testing import Peer, TestClient

CLUSTER_APP = Path(__file__).parent / "apps" / "cluster_app.py"


# helpers


@asynccontextmanager
async def cluster(count: int, broker: str, namespace: str) -> AsyncIterator[list[TestClient]]:
    """``count`` copies of the cluster app, each served with its own Redis broker."""
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            app = make_app()
            client = TestClient(app, broker=broker, broker_namespace=namespace)
            clients.append(await stack.enter_async_context(client))
        yield clients


class Recorder:
    """A broker's target that records what it is given."""

    def __init__(self) -> None:
        self.delivered: list[bytes] = []
        self.numbered: list[tuple[str, str, int, bytes]] = []
        self.lags: list[tuple[str, int]] = []
        self.departures: list[tuple[str, str]] = []

    def deliver(self, names: Any, data: bytes, key: str | None) -> None:
        self.delivered.append(data)

    def deliver_at(self, name: str, epoch: str, offset: int, data: bytes, key: Any) -> None:
        self.numbered.append((name, epoch, offset, data))

    def restart(self, name: str, epoch: str, offset: int) -> None:
        pass

    def lagged(self, name: str, count: int) -> None:
        self.lags.append((name, count))

    def departed(self, name: str, pk: str, info: bytes) -> None:
        self.departures.append((name, pk))


async def messages(peer: Peer, count: int) -> list[Any]:
    return [await peer.receive() for _ in range(count)]


# the envelope


@given(
    origin=st.binary(min_size=8, max_size=8),
    seq=st.integers(min_value=0, max_value=2**64 - 1),
    channels=st.lists(st.text(), min_size=1, max_size=4),
    key=st.none() | st.text(),
    data=st.binary(),
)
def test_envelope_round_trip(
    origin: bytes, seq: int, channels: list[str], key: str | None, data: bytes
) -> None:
    seqs = list(range(1, len(channels) + 1))
    envelope = pack(origin, seq, channels, seqs, key, data)
    assert unpack(envelope) == (PLAIN, origin, seq, Head(channels, seqs, key), data)


@given(
    origin=st.binary(min_size=8, max_size=8),
    channel=st.text(),
    key=st.none() | st.text(),
    offset=st.integers(1, 2**53),
    data=st.binary(),
)
def test_a_numbered_envelope_as_the_script_completes_it(
    origin: bytes, channel: str, key: str | None, offset: int, data: bytes
) -> None:
    head = head_prefix(channel, key) + b'"e1",%d]' % offset  # what the script appends
    envelope = prefix(origin, 7) + len(head).to_bytes(4, "big") + head + data
    assert unpack(envelope) == (NUMBERED, origin, 7, Head([channel], [], key, "e1", offset), data)


@given(st.binary())
def test_any_message_unpacks_or_raises_value_error(message: bytes) -> None:
    try:
        kind, origin, seq, head, payload = unpack(message)
    except ValueError:
        return
    assert len(origin) == 8 and head.channels


# settings and start-up


def test_make_broker_builds_the_broker_the_url_names() -> None:
    pytest.importorskip("redis", reason="the Redis client is missing: pip install -e '.[test]'")
    assert isinstance(make_broker(Settings()), LocalBroker)
    for url in ("redis://127.0.0.1:6379/0", "rediss://example.com", "unix:///tmp/redis.sock"):
        broker = make_broker(Settings(broker=url, broker_namespace="ns"))
        assert isinstance(broker, RedisBroker) and broker.namespace == "ns"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("amqp://user:secret@host/", "broker: 'amqp://user:***@host/' is not a broker URL"),
        ("redis://127.0.0.1:port/0", "broker: 'redis://127.0.0.1:port/0' is not a Redis URL"),
    ],
)
def test_unusable_broker_url_is_refused_naming_the_setting(url: str, message: str) -> None:
    pytest.importorskip("redis", reason="the Redis client is missing: pip install -e '.[test]'")
    with pytest.raises(ConfigurationError, match="^" + message.replace("*", r"\*")):
        make_broker(Settings(broker=url))


def test_bad_namespace_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="broker_namespace"):
        Settings(broker_namespace="two words").checked()


def test_redacted_hides_only_the_password() -> None:
    assert redacted("redis://me:secret@host:1/0") == "redis://me:***@host:1/0"
    assert redacted("redis://host:1/0") == "redis://host:1/0"


async def test_unreachable_redis_fails_at_start_naming_the_setting(redis_url: str) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    app = make_app(broker=f"redis://:hunter2@127.0.0.1:{port}/0")
    with pytest.raises(ConfigurationError, match="^broker: cannot use Redis at") as failure:
        await app.serve(host="127.0.0.1", port=0).start()
    assert "hunter2" not in str(failure.value)
    assert app.running is None


def test_missing_client_fails_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("redis", "redis.asyncio", "redis.asyncio.connection"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigurationError, match=r"pip install 'lexicons\[redis\]'"):
        make_broker(Settings(broker="redis://127.0.0.1:6379/0"))


def test_lexicons_imports_without_the_redis_client() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import lexicons, lexicons.cli, lexicons.workers\n"
        "lexicons.Server(broker=None)\n"
        "assert sys.modules['redis'] is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# delivery across processes


async def test_broadcast_reaches_every_process_once(
    redis_url: str, namespace: str, redis: Any
) -> None:
    async with cluster(2, redis_url, namespace) as (a, b):
        a1, a2, b1 = await a.connect(), await a.connect(), await b.connect()
        for peer in (a1, a2, b1):
            await peer.call("join", channels=["Public"])
        await subscribed(redis, f"{namespace}:Public", 2)
        await a1.send("say", publisher="a1", seq=1, channels=["Public"])
        for peer in (a1, a2, b1):
            assert await peer.receive() == {"say": {"publisher": "a1", "seq": 1}}
        # b1 has a1's broadcast, so Redis handled it before this one: a copy coming back
        # to the publisher's process would reach a1 and a2 before b1's broadcast.
        await b1.send("say", publisher="b1", seq=2, channels=["Public"])
        for peer in (a1, a2, b1):
            assert await peer.receive() == {"say": {"publisher": "b1", "seq": 2}}
        assert a.app.channels.broker.published == 1  # type: ignore[attr-defined]
        assert a.app.channels.broker.received == 1  # type: ignore[attr-defined]


async def test_broadcast_to_several_channels_reaches_a_member_of_both_once(
    redis_url: str, namespace: str, redis: Any
) -> None:
    async with cluster(2, redis_url, namespace) as (a, b):
        sender, both, public = await a.connect(), await b.connect(), await b.connect()
        await both.call("join", channels=["Public", "Other"])
        await public.call("join", channels=["Public"])
        await sender.call("join", channels=["Other"])
        await subscribed(redis, f"{namespace}:Other", 2)
        await subscribed(redis, f"{namespace}:Public", 1)
        await sender.send("say", publisher="s", seq=1, channels=["Public", "Other"])
        assert await public.receive() == {"say": {"publisher": "s", "seq": 1}}
        # A second copy of the first broadcast would reach ``both`` before this one.
        await public.send("say", publisher="p", seq=2, channels=["Public", "Other"])
        for peer in (both, sender):
            assert [m["say"]["seq"] for m in await messages(peer, 2)] == [1, 2]
        assert await public.receive() == {"say": {"publisher": "p", "seq": 2}}


async def test_redis_subscriptions_follow_local_subscribers(
    redis_url: str, namespace: str, redis: Any
) -> None:
    async def channels() -> set[bytes]:
        return set(await redis.pubsub_channels(f"{namespace}:*"))

    async with cluster(1, redis_url, namespace) as (a,):
        first, second = await a.connect(), await a.connect()
        assert await channels() == set()
        await first.call("join", channels=["Public"])
        await second.call("join", channels=["Public"])
        await subscribed(redis, f"{namespace}:Public", 1)
        assert await channels() == {f"{namespace}:Public".encode()}
        await first.call("leave", channels=["Public"])
        await second.call("whoami")  # still subscribed: one local subscriber is left
        assert await channels() == {f"{namespace}:Public".encode()}
        await second.close()
        await subscribed(redis, f"{namespace}:Public", 0)


async def test_namespaces_keep_apps_apart(redis_url: str, namespace: str, redis: Any) -> None:
    async with (
        cluster(1, redis_url, namespace) as (a,),
        cluster(1, redis_url, namespace + "-other") as (b,),
    ):
        alice, bob = await a.connect(), await b.connect()
        await alice.call("join", channels=["Public"])
        await bob.call("join", channels=["Public"])
        await subscribed(redis, f"{namespace}:Public", 1)
        await subscribed(redis, f"{namespace}-other:Public", 1)
        await alice.send("say", publisher="alice", seq=1, channels=["Public"])
        assert await alice.receive() == {"say": {"publisher": "alice", "seq": 1}}
        await bob.send("say", publisher="bob", seq=2, channels=["Public"])
        assert await bob.receive() == {"say": {"publisher": "bob", "seq": 2}}
        await alice.assert_nothing_received()
        await bob.assert_nothing_received()


async def test_count_is_cluster_wide_and_skips_dead_processes(
    redis_url: str, namespace: str, redis: Any
) -> None:
    async with cluster(2, redis_url, namespace) as (a, b):
        peers = [await a.connect(), await a.connect(), await b.connect()]
        for peer in peers:
            await peer.call("join", channels=["Public"])
        key = f"{namespace}:count:Public"
        # A process that died without cleaning up: its count stays, its heartbeat key
        # expires, and counting ignores (and removes) it.
        await redis.hset(key, "0123456789abcdef", 40)

        async def counted(expected: int) -> bool:
            results = {await peer.call("count", channel="Public") for peer in peers[1:]}
            return results == {expected}

        await eventually(lambda: counted(3), "a count of 3 from both processes")
        assert not await redis.hexists(key, "0123456789abcdef")
        await peers.pop(0).close()
        await eventually(lambda: counted(2), "a count of 2 after a disconnect")
    assert await redis.exists(key) == 0  # both processes withdrew their counts


# Redis going away and coming back


async def test_redis_restart_keeps_local_delivery_and_resumes_sharing(
    own_redis: OwnRedis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    from redis.asyncio import Redis

    caplog.set_level(logging.WARNING, logger="lexicons.broker")
    async with cluster(2, own_redis.url, namespace) as (a, b):
        brokers = [a.app.channels.broker, b.app.channels.broker]
        a1, a2, b1 = await a.connect(), await a.connect(), await b.connect()
        for peer in (a1, a2, b1):
            await peer.call("join", channels=["Public"])

        own_redis.stop()

        async def offline() -> bool:
            return not any(broker.online for broker in brokers)  # type: ignore[attr-defined]

        await eventually(offline, "both brokers to notice Redis is gone")
        for seq in range(3):
            await a1.send("say", publisher="a1", seq=seq, channels=["Public"])
        for peer in (a1, a2):
            assert [m["say"]["seq"] for m in await messages(peer, 3)] == [0, 1, 2]
        assert brokers[0].undelivered == 3  # type: ignore[attr-defined]
        assert await a1.call("whoami") == os.getpid()  # still serving

        own_redis.start()
        client = Redis.from_url(own_redis.url)
        try:
            await subscribed(client, f"{namespace}:Public", 2)
        finally:
            await client.aclose()
        await b1.send("say", publisher="b1", seq=9, channels=["Public"])
        for peer in (a1, a2, b1):
            assert await peer.receive() == {"say": {"publisher": "b1", "seq": 9}}
        await b1.assert_nothing_received()  # the broadcasts made while down stayed local

    logged = [record.getMessage() for record in caplog.records]
    assert sum("lost the connection to Redis" in m for m in logged) == 2  # once per broker
    assert sum("delivered to this process's subscribers only" in m for m in logged) == 1
    assert sum("reconnected to Redis" in m for m in logged) == 2
    assert any("3 broadcasts made during the outage" in m for m in logged)


# real server processes


async def _collect(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    import json

    received = []
    for _ in range(count):
        received.append(json.loads(await asyncio.wait_for(ws.recv(), 20))["say"])
    return received


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 3])
async def test_processes_share_channels_exactly_once_in_order(
    process: type[Process], redis_url: str, namespace: str, redis: Any, processes: int
) -> None:
    import json

    env = {"LEXICONS_BROKER": redis_url, "LEXICONS_BROKER_NAMESPACE": namespace}
    servers = [
        process(sys.executable, CLUSTER_APP, "run", "--host", "127.0.0.1", "--port", "0", env=env)
        for _ in range(processes)
    ]
    urls = [server.url() for server in servers]
    per_publisher = 200
    async with AsyncExitStack() as stack:
        # On every server: one client that publishes and listens, one that only listens.
        publishers, listeners = [], []
        for url in urls:
            publishers.append(await stack.enter_async_context(connect(url)))
            listeners.append(await stack.enter_async_context(connect(url)))
        for ws in publishers + listeners:
            await ws.send(json.dumps({"join": {"channels": ["Public"]}, "ref": 0}))
            await ws.recv()
        await subscribed(redis, f"{namespace}:Public", processes)

        async def publish(index: int, ws: ClientConnection) -> None:
            for seq in range(per_publisher):
                say = {"publisher": f"p{index}", "seq": seq, "channels": ["Public"]}
                await ws.send(json.dumps({"say": say}))

        expected = per_publisher * processes
        collecting = [asyncio.create_task(_collect(ws, expected)) for ws in publishers + listeners]
        await asyncio.gather(*(publish(i, ws) for i, ws in enumerate(publishers)))
        everything = await asyncio.gather(*collecting)
        for received in everything:
            for index in range(processes):
                seqs = [m["seq"] for m in received if m["publisher"] == f"p{index}"]
                assert seqs == list(range(per_publisher))
        # Everyone has every broadcast, so Redis handled them all before these markers:
        # a duplicate of any of them would arrive before the markers do.
        for index, ws in enumerate(publishers):
            marker = {"publisher": f"marker{index}", "seq": -1, "channels": ["Public"]}
            await ws.send(json.dumps({"say": marker}))
        for ws in publishers + listeners:
            assert {m["publisher"] for m in await _collect(ws, processes)} == {
                f"marker{index}" for index in range(processes)
            }
    for server in servers:
        code, out, err = server.stop(signal.SIGTERM)
        assert code == 0, err


async def test_a_redis_that_stops_answering_is_given_up_and_rejoined(
    own_redis: OwnRedis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A frozen Redis (SIGSTOP) keeps the sockets open: the heartbeat must notice."""
    target = Recorder()
    delivered = target.delivered
    broker = RedisBroker(own_redis.url, namespace, timeout=0.3, heartbeat=0.1)
    broker.bind(target)
    await broker.start()
    try:
        broker.subscribe("Public")
        assert own_redis.popen is not None
        own_redis.popen.send_signal(signal.SIGSTOP)
        try:
            broker.publish(["Public"], b'{"n":1}')  # local delivery does not wait for Redis

            async def offline() -> bool:
                return not broker.online

            await eventually(offline, "the heartbeat to give up on the frozen Redis")
        finally:
            own_redis.popen.send_signal(signal.SIGCONT)

        async def online() -> bool:
            return broker.online

        await eventually(online, "the broker to reconnect")
        assert delivered == [b'{"n":1}']
        assert broker.undelivered == 1  # it was waiting for Redis's reply when it froze
    finally:
        await broker.stop()
    assert any(
        "did not answer" in r.getMessage() or "stopped answering" in r.getMessage()
        for r in caplog.records
    )


# faults: losses while a process reconnects, memory while Redis is frozen


async def kill_connections(redis: Any, name: str) -> int:
    """Kill the Redis connections named ``name`` (one process's broker); how many."""
    killed = 0
    for client in await redis.client_list():
        if client.get("name") == name:
            killed += await redis.client_kill_filter(_id=client["id"])
    return killed


async def test_a_process_whose_redis_connections_die_loses_nothing_on_history_and_counts_the_rest(
    redis_url: str, namespace: str, redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lexicons.broker")
    async with cluster(2, redis_url, namespace) as (a, b):
        listener = await b.connect()
        await listener.call("join", channels=["Public", "Hist"])
        for channel in ("Public", "Hist"):
            await subscribed(redis, f"{namespace}:{channel}", 1)
        broker = b.app.channels.broker
        # What B missed is counted from the first broadcast it heard from A.
        published = 1
        a.app.broadcast({"n": published}, "Public")
        a.app.broadcast({"n": published}, "Hist")
        assert (await listener.receive())["n"] == published
        assert (await listener.receive())["n"] == published
        for _ in range(10):
            assert await kill_connections(redis, broker.client_name)  # type: ignore[attr-defined]
            for _ in range(20):  # while B reconnects
                published += 1
                a.app.broadcast({"n": published}, "Public")
                a.app.broadcast({"n": published}, "Hist")

            async def back() -> bool:
                [(_, count)] = await redis.pubsub_numsub(f"{namespace}:Public")
                return bool(count == 1 and broker.online)  # type: ignore[attr-defined]

            await eventually(back, "B to subscribe again")
        published += 1
        a.app.broadcast({"n": published}, "Public")
        a.app.broadcast({"n": published}, "Hist")
        plain, history = [1], [{"n": 1, "offset": 1}]
        while not (history and history[-1]["n"] == published and plain[-1:] == [published]):
            message = await listener.receive()
            if "channel" in message:
                history.append({"n": message["n"], "offset": message["offset"]})
            else:
                plain.append(message["n"])
        assert [m["n"] for m in history] == list(range(1, published + 1))
        assert [m["offset"] for m in history] == list(range(1, published + 1))
        assert plain == sorted(set(plain))
        lost = broker.lost  # type: ignore[attr-defined]
        assert lost > 0 and len(plain) + lost == published
        assert broker.recovered > 0  # type: ignore[attr-defined]
        await listener.assert_nothing_received()
    logged = caplog.text
    assert "broadcasts to channels without history were lost" in logged


async def test_a_frozen_redis_holds_at_most_broker_queue_bytes_and_counts_the_rest(
    own_redis: OwnRedis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    import tracemalloc

    caplog.set_level(logging.WARNING, logger="lexicons.broker")
    bound = 2**20
    broker = make_broker(
        Settings(broker=own_redis.url, broker_namespace=namespace, broker_queue=bound)
    )
    broker.bind(Recorder())
    await broker.start()
    assert own_redis.popen is not None
    blob = b'{"blob":"' + b"x" * 65536 + b'"}'
    tracemalloc.start()
    try:
        own_redis.popen.send_signal(signal.SIGSTOP)
        before = tracemalloc.take_snapshot()
        for _ in range(200):  # 13 MB of broadcasts
            broker.publish(["Public"], blob)
        after = tracemalloc.take_snapshot()
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert grown < 2 * bound
        assert broker.undelivered >= 200 - bound // len(blob) - 1  # type: ignore[attr-defined]
    finally:
        tracemalloc.stop()
        own_redis.popen.send_signal(signal.SIGCONT)
        await broker.stop()
    assert "to ['Public'] was delivered to this process's subscribers only" in caplog.text
