"""Rate limits: token buckets without I/O, then per signal and per address over sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import eventually
from hypothesis import given
from hypothesis import strategies as st

from lexicons import ConfigurationError, RegistrationError, Server, SignalError
from lexicons.ratelimit import AddressLimits, RateLimit, TokenBucket
from lexicons.testing import HandshakeFailed, TestClient


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("5/s", RateLimit(5, 1.0)),
        ("5/second", RateLimit(5, 1.0)),
        ("30/min", RateLimit(30, 60.0)),
        ("30 / minutes", RateLimit(30, 60.0)),
        ("100/h", RateLimit(100, 3600.0)),
        ("10/30s", RateLimit(10, 30.0)),
        ("1/0.5s", RateLimit(1, 0.5)),
    ],
)
def test_limits_are_read_from_their_short_form(text: str, limit: RateLimit) -> None:
    assert RateLimit.parse(text) == limit


@pytest.mark.parametrize(
    "text", ["", "5", "five/s", "5/fortnight", "0/s", "5/0s", "-1/s", "5/./s"]
)
def test_a_bad_limit_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ConfigurationError, match="rate limit"):
        RateLimit.parse(text)


@given(
    count=st.integers(1, 20),
    per=st.floats(0.1, 100),
    burst=st.none() | st.integers(1, 20),
    gaps=st.lists(st.floats(0, 5), max_size=60),
)
def test_a_bucket_never_allows_more_than_its_burst_plus_its_rate(
    count: int, per: float, burst: int | None, gaps: list[float]
) -> None:
    limit = RateLimit(count, per, burst)
    bucket = TokenBucket(limit, now=0.0)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        wait = bucket.take(limit, now)
        assert wait >= 0
        if wait == 0:
            allowed += 1
        else:  # after the wait it says, a request is allowed
            probe = TokenBucket(limit, 0.0)
            probe.tokens, probe.stamp = bucket.tokens, bucket.stamp
            assert probe.take(limit, now + wait + 1e-9) == 0
    assert allowed <= limit.capacity + now * limit.rate + 1e-6


def test_a_full_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    limit = RateLimit(2, per=10.0)
    bucket = TokenBucket(limit, now=0.0)
    assert [bucket.take(limit, 0.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.take(limit, 0.0) == pytest.approx(5.0)
    assert bucket.take(limit, 5.0) == 0.0


def test_address_limits_count_open_connections_and_new_ones() -> None:
    limits = AddressLimits(2, RateLimit(3, per=60.0))
    assert limits.admit("a", "10.0.0.1", 0.0) is None
    assert limits.admit("b", "10.0.0.1", 0.0) is None
    assert "more than 2 connections" in str(limits.admit("c", "10.0.0.1", 0.0))
    assert limits.admit("d", "10.0.0.2", 0.0) is None  # another address
    limits.release("a")
    limits.release("never-counted")
    assert limits.admit("e", "10.0.0.1", 0.0) is None
    limits.release("e")
    assert "new connections" in str(limits.admit("f", "10.0.0.1", 0.0))  # the 4th in a minute
    for pk in "bd":
        limits.release(pk)
    assert limits.holding("10.0.0.1") == 0 and limits.holding("10.0.0.2") == 0


def test_address_buckets_are_bounded() -> None:
    limits = AddressLimits(None, RateLimit(1, per=60.0), max_addresses=100)
    for n in range(1000):
        limits.admit(f"pk{n}", f"10.0.{n // 256}.{n % 256}", 0.0)
        limits.release(f"pk{n}")
    assert len(limits._buckets) <= 100 and not limits._open


# over sockets


def limited_app() -> Server:
    app = Server(debug=False)
    app.state["runs"] = 0

    @app.signal(limit="3/min")
    def say(sv: Server, text: str) -> str:
        sv.state["runs"] += 1
        return text

    @app.signal("Shout", limit="1/h")
    def shout(text: str) -> str:
        return text.upper()

    @app.signal
    def free(text: str) -> str:
        return text

    return app


async def test_a_signal_over_its_limit_is_answered_rate_limited_and_not_run() -> None:
    app = limited_app()
    async with TestClient(app) as client:
        alice, bob = await client.connect(), await client.connect()
        for n in range(3):
            assert await alice.call("say", text=str(n)) == str(n)
        with pytest.raises(SignalError) as refused:
            await alice.call("say", text="too many")
        assert refused.value.code == "rate_limited"
        assert "3 per 60 s" in refused.value.message and "retry in" in refused.value.message
        assert app.state["runs"] == 3
        assert await alice.call("free", text="unlimited") == "unlimited"  # other signals
        assert await bob.call("say", text="mine") == "mine"  # other connections
        assert await alice.call("Shout", text="a") == "A"
        with pytest.raises(SignalError, match="retry"):
            await alice.call("Shout", text="b")
        assert alice.ws.close_code is None


async def test_rate_limit_state_goes_with_the_connection() -> None:
    app = limited_app()
    gone = asyncio.Event()
    app.on_disconnect(lambda: gone.set())
    async with TestClient(app) as client:
        alice = await client.connect()
        await alice.call("Shout", text="a")
        assert client.running is not None and client.running._hub is not None
        dispatcher = client.running._hub.app.dispatcher  # type: ignore[attr-defined]
        assert len(dispatcher._buckets) == 1
        await alice.close()
        await asyncio.wait_for(gone.wait(), 5)
        assert dispatcher._buckets == {}


def test_a_bad_limit_fails_at_registration_naming_the_signal() -> None:
    app = Server()
    with pytest.raises(RegistrationError, match="signal 'say': rate limit"):

        @app.signal(limit="lots")
        def say() -> None: ...


async def test_connections_per_address_are_limited_at_the_handshake() -> None:
    app = Server(debug=False, max_connections_per_address=2)
    async with TestClient(app) as client:
        first, _ = await client.connect(), await client.connect()
        with pytest.raises(HandshakeFailed) as refused:
            await client.connect()
        assert (
            refused.value.status == 429 and "connections from this address" in refused.value.body
        )
        await first.close()

        async def released() -> bool:
            return len(app.connections) == 1

        await eventually(released, "the first connection to go")
        await client.connect()


async def test_new_connections_per_address_are_rate_limited() -> None:
    app = Server(debug=False, connection_rate="2/min")
    async with TestClient(app) as client:
        await client.connect()
        await client.connect()
        with pytest.raises(HandshakeFailed) as refused:
            await client.connect()
        assert refused.value.status == 429


def test_limit_settings_are_checked() -> None:
    for bad in ({"max_connections_per_address": 0}, {"connection_rate": "often"}):
        with pytest.raises(ConfigurationError, match=next(iter(bad))):
            Server(**bad).settings.checked()


def test_limits_work_from_the_environment(monkeypatch: Any) -> None:
    from lexicons.settings import Settings

    monkeypatch.setenv("LEXICONS_MAX_CONNECTIONS_PER_ADDRESS", "4")
    monkeypatch.setenv("LEXICONS_CONNECTION_RATE", "10/s")
    settings = Settings().from_environment().checked()
    assert settings.max_connections_per_address == 4 and settings.connection_rate == "10/s"
