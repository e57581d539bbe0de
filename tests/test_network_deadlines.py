"""Deadlines: many equal timeouts on one timer, checked against a plain model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexicons.network.deadlines import Deadlines


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    """The two loop methods Deadlines uses, on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.handles.append(handle)
        return handle

    @property
    def pending(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled]

    def advance(self, seconds: float) -> None:
        """Move the clock, running every timer that falls due, earliest first."""
        self.now += seconds
        while True:
            due = [h for h in self.pending if h.when <= self.now]
            if not due:
                return
            handle = min(due, key=lambda h: h.when)
            handle.cancelled = True  # ran: no longer pending
            handle.callback()


def deadlines(delay: float, expired: list[Any]) -> tuple[Deadlines[Any], Clock]:
    clock = Clock()
    return Deadlines(delay, expired.append, cast(asyncio.AbstractEventLoop, clock)), clock


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 5)),
        st.tuples(st.just("discard"), st.integers(0, 5)),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 0.3, 0.5, 1.0, 2.5])),
    ),
    max_size=40,
)


@given(operations)
def test_items_expire_once_in_deadline_order_unless_discarded(ops: list[Any]) -> None:
    expired: list[int] = []
    queue, clock = deadlines(1.0, expired)
    model: dict[int, float] = {}  # item -> deadline
    expected: list[int] = []
    for op, arg in ops:
        if op == "add":
            model.pop(arg, None)
            model[arg] = clock.now + 1.0
            queue.add(arg)
        elif op == "discard":
            model.pop(arg, None)
            queue.discard(arg)
        else:
            clock.advance(arg)
            # Equal deadlines expire in the order the items were (last) added.
            due = sorted((d, n, i) for n, (i, d) in enumerate(model.items()) if d <= clock.now)
            for _, _, item in due:
                del model[item]
                expected.append(item)
        assert expired == expected
        assert len(queue) == len(model)
        assert all(item in queue for item in model)
        assert len(clock.pending) <= 1  # one timer, however many items


def test_a_restarted_clock_counts_from_the_restart() -> None:
    expired: list[str] = []
    queue, clock = deadlines(1.0, expired)
    queue.add("a")
    queue.add("b")
    clock.advance(0.6)
    queue.add("a")  # restarted: now due at 1.6, after "b"
    clock.advance(0.5)
    assert expired == ["b"]
    clock.advance(0.5)
    assert expired == ["b", "a"]


def test_expire_may_add_and_discard() -> None:
    expired: list[str] = []
    clock = Clock()

    def expire(item: str) -> None:
        expired.append(item)
        if item == "a":
            queue.discard("b")  # due at the same moment, but gone
            queue.add("c")

    queue: Deadlines[str] = Deadlines(1.0, expire, cast(asyncio.AbstractEventLoop, clock))
    queue.add("a")
    queue.add("b")
    clock.advance(1.0)
    assert expired == ["a"] and "c" in queue
    clock.advance(1.0)
    assert expired == ["a", "c"] and len(queue) == 0


def test_a_failing_expire_is_logged_and_the_others_still_expire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    expired: list[str] = []
    clock = Clock()

    def expire(item: str) -> None:
        if item == "bad":
            raise RuntimeError("boom")
        expired.append(item)

    queue: Deadlines[str] = Deadlines(1.0, expire, cast(asyncio.AbstractEventLoop, clock))
    queue.add("bad")
    queue.add("good")
    clock.advance(0.5)
    queue.add("later")
    clock.advance(0.5)
    assert expired == ["good"] and "timeout of 'bad' failed" in caplog.text
    clock.advance(0.5)
    assert expired == ["good", "later"]


def test_cancel_stops_every_clock() -> None:
    expired: list[str] = []
    queue, clock = deadlines(1.0, expired)
    queue.add("a")
    queue.cancel()
    clock.advance(5.0)
    assert expired == [] and len(queue) == 0 and clock.pending == []
    queue.add("b")  # usable again after cancel
    clock.advance(1.0)
    assert expired == ["b"]


async def test_on_a_real_loop() -> None:
    fired = asyncio.Event()
    expired: list[str] = []

    def expire(item: str) -> None:
        expired.append(item)
        fired.set()

    queue: Deadlines[str] = Deadlines(0.01, expire, asyncio.get_running_loop())
    queue.add("gone")
    queue.add("late")
    queue.discard("gone")
    await asyncio.wait_for(fired.wait(), 5)
    assert expired == ["late"]
