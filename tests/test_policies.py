"""Slow-consumer policies without sockets: real sessions, a port the test drains by hand."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_network_session import Harness
from websockets.datastructures import Headers

from lexicons.broadcasts import Broadcast
from lexicons.connection import Connection
from lexicons.network.session import Limits
from lexicons.policies import Conflate, Drop


class NoMemberships:
    def joined(self, pk: str) -> frozenset[str]:
        return frozenset()


def subscriber(limits: Limits | None = None) -> tuple[Harness, Connection]:
    h = Harness(limits)
    h.open()
    ws = Connection(h.session, "127.0.0.1", "/", Headers(), memberships=NoMemberships())
    return h, ws


def received(h: Harness) -> list[str]:
    h.flush()
    return h.client.messages()


def test_drop_writes_to_those_keeping_up_and_counts_for_the_lagging() -> None:
    reports: list[tuple[str, int]] = []
    policy = Drop(lambda ws, n: reports.append((ws.pk, n)))
    (fast_h, fast), (slow_h, slow) = subscriber(), subscriber()
    policy.deliver([fast, slow], Broadcast(b"1"), None)
    slow_h.session.pause_writing()
    for n in (2, 3, 4):
        policy.deliver([fast, slow], Broadcast(b"%d" % n), None)
    assert received(fast_h) == ["1", "2", "3", "4"]
    assert policy.lagging(slow.pk) == 3 and reports == []
    slow_h.session.resume_writing()
    assert reports == [(slow.pk, 3)]
    assert policy.lagging(slow.pk) == 0
    policy.deliver([fast, slow], Broadcast(b"5"), None)
    assert received(slow_h) == ["1", "5"]


def test_drop_forgets_a_subscriber_that_left() -> None:
    reports: list[int] = []
    policy = Drop(lambda ws, n: reports.append(n))
    h, ws = subscriber()
    h.session.pause_writing()
    policy.deliver([ws], Broadcast(b"x"), None)
    policy.forget(ws.pk)
    h.session.resume_writing()
    assert reports == []


def test_conflate_keeps_the_latest_per_key_for_a_lagging_subscriber() -> None:
    policy = Conflate(limit=1 << 20)
    (fast_h, fast), (slow_h, slow) = subscriber(), subscriber()
    slow_h.session.pause_writing()
    for key, value in [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2)]:
        policy.deliver([fast, slow], Broadcast(b"%s%d" % (key.encode(), value)), key)
    assert received(fast_h) == ["a1", "b1", "a2", "c1", "b2"]
    assert received(slow_h) == []
    slow_h.session.resume_writing()
    assert received(slow_h) == ["a2", "c1", "b2"]  # each key's latest, newest last


def test_conflate_without_keys_keeps_only_the_latest() -> None:
    policy = Conflate(limit=1 << 20)
    h, ws = subscriber()
    h.session.pause_writing()
    for n in range(5):
        policy.deliver([ws], Broadcast(b"%d" % n), None)
    h.session.resume_writing()
    assert received(h) == ["4"]


def test_conflate_cuts_off_a_subscriber_past_its_limit() -> None:
    policy = Conflate(limit=1000)
    h, ws = subscriber()
    h.session.pause_writing()
    for n in range(20):  # 20 keys of 100 bytes
        policy.deliver([ws], Broadcast(b"x" * 100), f"k{n}")
    assert h.port.aborted
    assert policy.waiting(ws.pk) == []


class PolicyMachine(RuleBasedStateMachine):
    """Publications, congestion and drains in any order, for one subscriber per policy."""

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[int] = []
        self.drop = Drop(lambda ws, n: self.reports.append(n))
        self.conflate = Conflate(limit=1 << 20)
        self.drop_h, self.drop_ws = subscriber()
        self.conflate_h, self.conflate_ws = subscriber()
        self.congested = False
        self.published: list[tuple[str, int]] = []
        self.kept_up: list[int] = []  # what the dropping subscriber should have
        self.dropped = 0

    @rule(key=st.sampled_from(["a", "b", "c"]))
    def publish(self, key: str) -> None:
        n = len(self.published)
        self.published.append((key, n))
        frame = Broadcast(b"%s:%d" % (key.encode(), n))
        self.drop.deliver([self.drop_ws], frame, key)
        self.conflate.deliver([self.conflate_ws], frame, key)
        if self.congested:
            self.dropped += 1
        else:
            self.kept_up.append(n)

    @precondition(lambda self: not self.congested)
    @rule()
    def congest(self) -> None:
        self.congested = True
        for h in (self.drop_h, self.conflate_h):
            h.session.pause_writing()

    @precondition(lambda self: self.congested)
    @rule()
    def drain(self) -> None:
        self.congested = False
        for h in (self.drop_h, self.conflate_h):
            h.session.resume_writing()
        if self.dropped:
            assert self.reports[-1] == self.dropped
        self.dropped = 0

    @invariant()
    def the_dropping_subscriber_has_what_was_published_while_it_kept_up(self) -> None:
        shown = received(self.drop_h)
        assert [int(m.split(":")[1]) for m in shown] == self.kept_up

    @invariant()
    def the_conflating_subscriber_misses_no_latest_value(self) -> None:
        shown = received(self.conflate_h)
        numbers = [int(m.split(":")[1]) for m in shown]
        assert numbers == sorted(numbers)  # never an older value after a newer one
        if not self.congested:
            latest = {key: n for key, n in self.published}
            for key, n in latest.items():
                assert f"{key}:{n}" in shown


TestPolicyMachine = PolicyMachine.TestCase
TestPolicyMachine.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
