"""Publishing to a cluster from a plain script: the Emitter, against real servers on Redis."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from apps.cluster_app import make_app
from conftest import OwnRedis, free_port, subscribed
from test_channels import messages
from test_redis_channels import cluster

from lexicons import ConfigurationError, Emitter, LexiconsError, Server


def emit(emitter: Emitter, *broadcasts: tuple[Any, list[str]]) -> None:
    for payload, channels in broadcasts:
        emitter.broadcast(payload, channels)


async def test_an_emitter_reaches_every_process_and_history_numbers_it(
    redis_url: str, namespace: str, redis: Any
) -> None:
    async with cluster(2, redis_url, namespace) as (a, b):
        on_a, on_b = await a.connect(), await b.connect()
        for peer in (on_a, on_b):
            await peer.call("join", channels=["Public"])
            await peer.subscribe("room:1")
        await subscribed(redis, f"{namespace}:Public", 2)
        await subscribed(redis, f"{namespace}:room:1", 2)
        emitter = Emitter(make_app(), redis_url, namespace=namespace)
        with emitter:
            await asyncio.to_thread(  # a plain, blocking script
                emit,
                emitter,
                ({"notice": 1}, ["Public"]),
                ({"notice": 2}, ["room:1", "Public", "Nowhere"]),
            )
        assert emitter.published == 2
        for peer in (on_a, on_b):
            received = await messages(peer, "notice", 3)
            assert {json.dumps(m, sort_keys=True) for m in received} == {
                '{"notice": 1}',
                '{"notice": 2}',
                '{"channel": "room:1", "notice": 2, "offset": 1}',
            }
        late = await b.connect()
        answer = await late.subscribe("room:1", (on_a.positions["room:1"][0], 0))
        assert answer["recovered"] is True
        assert (await late.receive()) == {"notice": 2, "channel": "room:1", "offset": 1}


async def test_an_emitter_loads_the_script_again_when_redis_forgot_it(
    own_redis: OwnRedis, namespace: str
) -> None:
    async with cluster(1, own_redis.url, namespace) as (a,):
        peer = await a.connect()
        await peer.subscribe("room:1")
        await peer.call("join", channels=["Public"])
        with Emitter(make_app(), own_redis.url, namespace=namespace) as emitter:
            await asyncio.to_thread(emitter.broadcast, {"n": 1}, ["room:1", "Public"])
            from redis import Redis

            Redis.from_url(own_redis.url).script_flush()
            await asyncio.to_thread(emitter.broadcast, {"n": 2}, ["room:1", "Public"])
        received = await messages(peer, "n", 4)
        numbered = [m["offset"] for m in received if "offset" in m]
        plain = [m["n"] for m in received if "n" in m and "offset" not in m]
        assert numbered == [1, 2] and plain == [1, 2]  # once each, though sent twice
        # The server's broker finds the script missing too, and loads it again.
        await peer.send("say", publisher="p", seq=3, channels=["room:1"])
        assert (await peer.expect("say"))["seq"] == 3
        await peer.assert_nothing_received()


def test_an_emitter_needs_a_redis_broker() -> None:
    with pytest.raises(ConfigurationError, match="no Redis broker"):
        Emitter(Server())


def test_an_unreachable_redis_is_a_clear_error() -> None:
    pytest.importorskip("redis")
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    emitter = Emitter(make_app(), url, timeout=0.5)
    with pytest.raises(LexiconsError, match=r"Emitter: Redis at redis://:\*\*\*@") as failure:
        emitter.broadcast({"n": 1}, "Public")
    assert "secret" not in str(failure.value)


def test_lexicons_imports_the_emitter_without_the_redis_client() -> None:
    import subprocess

    code = "import sys; sys.modules['redis'] = None\nimport lexicons\nprint(lexicons.Emitter)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30, capture_output=True)
