"""A process's place in a history channel followed through Redis, without I/O: whatever
pub/sub loses or repeats, publications go out once, in order, or are counted lost."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lexicons.brokers.lines import Line, Publication


def pub(offset: int, epoch: str = "e") -> Publication:
    return Publication(epoch, offset, b"%d" % offset, None)


def test_in_order_publications_go_out_and_repeats_are_skipped() -> None:
    line = Line(limit=1 << 20)
    assert line.arrive(pub(1)) == ([], False)  # held until the position is known
    delivered, fill = line.start("e", 0)
    assert delivered == [pub(1)] and not fill
    assert line.arrive(pub(2)) == ([pub(2)], False)
    assert line.arrive(pub(2)) == ([], False)


def test_a_gap_holds_what_follows_until_the_fill() -> None:
    line = Line(limit=1 << 20)
    line.start("e", 0)
    line.arrive(pub(1))
    assert line.arrive(pub(4)) == ([], True)
    assert line.arrive(pub(5)) == ([], False)  # held behind the gap
    delivered, again, lost = line.filled("e", 4, [(b"2", None), (b"3", None), (b"4", None)])
    assert [p.offset for p in delivered] == [2, 3, 4, 5]
    assert not again and not lost


def test_what_history_no_longer_holds_is_counted_lost() -> None:
    line = Line(limit=1 << 20)
    line.start("e", 10)
    line.arrive(pub(15))
    delivered, again, lost = line.filled("e", 15, None)
    assert [p.offset for p in delivered] == [15] and lost == 4


def test_a_new_epoch_is_followed_from_its_start() -> None:
    line = Line(limit=1 << 20)
    line.start("e", 7)
    assert line.arrive(pub(1, "f")) == ([pub(1, "f")], False)
    assert line.arrive(pub(3, "f")) == ([], True)  # 2 is missing in the new epoch
    delivered, _, lost = line.filled("f", 3, [(b"2", None), (b"3", None)])
    assert [p.offset for p in delivered] == [2, 3] and not lost


def test_a_reconnection_holds_until_a_fill_caught_up() -> None:
    line = Line(limit=1 << 20)
    line.start("e", 3)
    line.hold()
    assert line.arrive(pub(6)) == ([], False)
    delivered, again, _ = line.filled("e", 5, [(b"4", None), (b"5", None)])
    assert [p.offset for p in delivered] == [4, 5, 6] and not again


def test_held_publications_are_bounded_in_bytes() -> None:
    line = Line(limit=10)
    line.start("e", 0)
    line.hold()
    for offset in range(1, 20):
        line.arrive(pub(offset))
    assert line.held_bytes <= 10


@given(
    received=st.lists(st.integers(1, 40), max_size=60),
    kept=st.integers(0, 40),
    fills=st.lists(st.booleans(), max_size=60),
)
def test_publications_go_out_once_in_order_or_are_counted_lost(
    received: list[int], kept: int, fills: list[bool]
) -> None:
    """Pub/sub brings some publications (any order, repeats); history keeps the last
    ``kept`` of those published so far; fills are answered now or later."""
    line = Line(limit=1 << 20)
    line.start("e", 0)
    out: list[int] = []
    lost = 0
    published = 0
    pending_fill = False
    answers = iter(fills)
    for offset in sorted(received):  # pub/sub keeps the publisher's order
        published = max(published, offset)
        delivered, fill = line.arrive(pub(offset))
        out += [p.offset for p in delivered]
        pending_fill |= fill
        while pending_fill and next(answers, True):
            pending_fill = False
            start = line.offset
            held = published - start <= kept
            entries = [(b"%d" % o, None) for o in range(start + 1, published + 1)]
            delivered, again, gone = line.filled("e", published, entries if held else None)
            out += [p.offset for p in delivered]
            lost += gone
            pending_fill = again
    assert out == sorted(set(out))  # once each, in order
    if out and not pending_fill:
        assert len(out) + lost == out[-1]  # everything up to the last is delivered or counted
