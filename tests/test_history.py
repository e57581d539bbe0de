"""A channel's timeline of numbered publications, without I/O: offsets, epochs, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexicons.errors import RegistrationError
from lexicons.history import History, Timeline, new_epoch


def test_history_refuses_nonsense() -> None:
    for count in (0, -1, 1.5, True):
        with pytest.raises(RegistrationError, match="count"):
            History(count)  # type: ignore[arg-type]
    for age in (0, -1, "long"):
        with pytest.raises(RegistrationError, match="age"):
            History(10, age=age)  # type: ignore[arg-type]


def test_offsets_grow_by_one_and_recovery_returns_what_followed() -> None:
    timeline = Timeline(History(10), now=0.0)
    assert timeline.offset == 0
    assert [timeline.append(b"%d" % n, now=1.0) for n in range(3)] == [1, 2, 3]
    epoch = timeline.epoch
    assert timeline.since(epoch, 1, now=1.0) == [(2, b"1"), (3, b"2")]
    assert timeline.since(epoch, 3, now=1.0) == []
    assert timeline.since(epoch, 0, now=1.0) == [(1, b"0"), (2, b"1"), (3, b"2")]


def test_another_epoch_or_an_offset_from_the_future_is_not_recovered() -> None:
    timeline = Timeline(History(10), now=0.0)
    timeline.append(b"x", now=0.0)
    assert timeline.since(new_epoch(), 0, now=0.0) is None
    assert timeline.since(timeline.epoch, 2, now=0.0) is None
    assert timeline.since(timeline.epoch, -1, now=0.0) is None


def test_epochs_differ() -> None:
    assert len({new_epoch() for _ in range(100)}) == 100


@given(
    gaps=st.lists(st.floats(0, 5), min_size=0, max_size=40),
    count=st.integers(1, 10),
    age=st.floats(0.5, 20),
    asked=st.integers(0, 45),
    later=st.floats(0, 10),
)
def test_recovery_is_exactly_what_the_bounds_keep(
    gaps: list[float], count: int, age: float, asked: int, later: float
) -> None:
    timeline = Timeline(History(count, age=age), now=0.0)
    published: list[tuple[int, float, bytes]] = []
    now = 0.0
    for gap in gaps:
        now += gap
        data = b"%d" % len(published)
        published.append((timeline.append(data, now), now, data))
    now += later
    asked = min(asked, timeline.offset)
    missed = [(o, t, d) for o, t, d in published if o > asked]
    recoverable = len(missed) <= count and all(t >= now - age for _, t, _ in missed)
    expected = [(o, d) for o, _, d in missed] if recoverable else None
    assert timeline.since(timeline.epoch, asked, now) == expected
    assert len(timeline) <= count


def test_recorded_publications_keep_a_contiguous_run() -> None:
    timeline = Timeline(History(10), now=0.0, epoch="e1", offset=4)
    assert timeline.record("e1", 5, b"five", now=0.0)
    assert timeline.since("e1", 4, now=0.0) == [(5, b"five")]
    # A gap: what is held no longer leads up to the new one.
    assert not timeline.record("e1", 8, b"eight", now=0.0)
    assert timeline.since("e1", 4, now=0.0) is None
    assert timeline.since("e1", 7, now=0.0) == [(8, b"eight")]
    # A new epoch starts again.
    assert not timeline.record("e2", 1, b"one", now=0.0)
    assert timeline.position == ("e2", 1)
    assert timeline.since("e1", 7, now=0.0) is None
    assert timeline.since("e2", 0, now=0.0) == [(1, b"one")]


def test_a_timeline_is_idle_age_seconds_after_it_was_last_touched() -> None:
    timeline = Timeline(History(10, age=5), now=0.0)
    assert not timeline.idle(4.9)
    timeline.append(b"x", now=4.0)
    assert not timeline.idle(8.9)
    assert timeline.idle(9.0)
    timeline.touched = 20.0
    assert not timeline.idle(24.0)
