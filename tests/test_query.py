"""Queries: every operator, sorting, limits, traversal, errors, indexes against scans."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lexicons.errors import QueryError
from lexicons.store.database import Database
from lexicons.store.indexes import SortedKeys
from lexicons.store.models import Index, Model, Ref
from lexicons.store.query import OPERATORS, QueryResult


class Team(Model):
    name: Annotated[str, Index]
    city: str = ""


class Player(Model):
    name: str
    nick: Annotated[str, Index] = ""
    age: int = 0
    rank: Annotated[int | None, Index] = None
    score: float = 0.0
    points: Annotated[float, Index] = 0.0
    joined: datetime | None = None
    tags: list[str] = []
    team: Ref[Team] | None = None
    mentors: list[Ref[Player]] = []
    roles: dict[str, Ref[Team]] = {}


T0 = datetime(2024, 1, 1, tzinfo=UTC)
PEOPLE = [
    # name, age, rank, score, tags
    ("ann", 31, 2, 7.5, ["a", "x"]),
    ("bob", 25, None, 9.0, []),
    ("cat", 40, 1, 7.5, ["x"]),
    ("dan", 25, 3, 1.0, ["b"]),
    ("eve", 19, None, 3.25, ["a"]),
]


@pytest.fixture
def db() -> Database:
    db = Database([Team, Player])
    db.open()
    red = db.create(Team, name="red", city="Oslo")
    blue = db.create(Team, name="blue", city="Rome")
    rows: list[Player] = []
    for i, (name, age, rank, score, tags) in enumerate(PEOPLE):
        rows.append(
            db.create(
                Player,
                name=name,
                nick=name,
                age=age,
                rank=rank,
                score=score,
                points=score,
                joined=T0 + timedelta(days=i),
                tags=tags,
                team=red if i % 2 == 0 else blue,
                mentors=rows[-1:],
                roles={"coach": blue} if i == 4 else {},
            )
        )
    return db


def names(result: QueryResult[Player]) -> list[str]:
    return [row.name for row in result]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["ann", "bob", "cat", "dan", "eve"]),
        ({"age": 25}, ["bob", "dan"]),
        ({"age__eq": 25}, ["bob", "dan"]),
        ({"age__ne": 25}, ["ann", "cat", "eve"]),
        ({"age__gt": 25}, ["ann", "cat"]),
        ({"age__ge": 25}, ["ann", "bob", "cat", "dan"]),
        ({"age__lt": 25}, ["eve"]),
        ({"age__le": 25}, ["bob", "dan", "eve"]),
        ({"age__max": True}, ["cat"]),
        ({"score__max": True}, ["bob"]),
        ({"score__min": True}, ["dan"]),
        ({"score": 7.5, "age__min": True}, ["ann"]),
        ({"age": 25, "score__max": 0}, ["bob"]),  # the value of max/min is not used
        ({"age__in": [19, 40]}, ["cat", "eve"]),
        ({"age__nin": (19, 40)}, ["ann", "bob", "dan"]),
        ({"name__f": "a"}, ["ann", "cat", "dan"]),
        ({"tags__f": "x"}, ["ann", "cat"]),
        ({"name__re": "^[ab]"}, ["ann", "bob"]),
        ({"name__re": re.compile("N$", re.I)}, ["ann", "dan"]),
        ({"rank": None}, ["bob", "eve"]),
        ({"rank__ne": None}, ["ann", "cat", "dan"]),
        ({"rank__gt": 1}, ["ann", "dan"]),
        ({"rank__in": [None, 1]}, ["bob", "cat", "eve"]),
        ({"rank__max": True}, ["dan"]),
        ({"tags": []}, ["bob"]),
        ({"joined__ge": T0 + timedelta(days=3)}, ["dan", "eve"]),
        ({"score": 7}, []),
        ({"score__gt": 7}, ["ann", "bob", "cat"]),  # an int compares with floats
        ({"age__gt": 20, "age__lt": 35}, ["ann", "bob", "dan"]),
        ({"team__name": "red"}, ["ann", "cat", "eve"]),
        ({"team__city__f": "om"}, ["bob", "dan"]),
        ({"team__name": "red", "team__city": "Rome"}, []),
        ({"team__name__in": ["blue"], "age__gt": 30}, []),
        ({"mentors__name": "ann"}, ["bob"]),
        ({"mentors__team__name": "blue"}, ["cat", "eve"]),
        ({"roles__name": "blue"}, ["eve"]),
        ({"mentors__mentors__name": "ann"}, ["cat"]),
    ],
)
def test_filters(db: Database, filters: dict[str, Any], expected: list[str]) -> None:
    assert names(db.query(Player, **filters)) == expected
    assert names(db.query("Player", **filters)) == expected


def test_every_operator_is_covered() -> None:
    assert {"f", "re", "eq", "ne", "gt", "lt", "ge", "le", "max", "min", "in", "nin"} == OPERATORS


def test_a_reference_can_be_compared_by_pk_or_row(db: Database) -> None:
    red = db.get(Team, name="red")
    assert red is not None
    assert names(db.query(Player, team=red)) == ["ann", "cat", "eve"]
    assert names(db.query(Player, team=red.pk, age__lt=35)) == ["ann", "eve"]
    assert names(db.query(Player, team__pk=red.pk, age__gt=35)) == ["cat"]
    assert names(db.query(Player, team__in=[red])) == ["ann", "cat", "eve"]
    ann = db.get(Player, name="ann")
    assert names(db.query(Player, mentors__f=ann)) == []  # f compares with the pk as given
    assert ann is not None and names(db.query(Player, mentors__f=ann.pk)) == ["bob"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("age", ["eve", "bob", "dan", "ann", "cat"]),
        ("-age", ["cat", "ann", "bob", "dan", "eve"]),  # ties keep creation order
        ("rank", ["bob", "eve", "cat", "ann", "dan"]),  # None first ascending, as SQL
        ("-rank", ["dan", "ann", "cat", "bob", "eve"]),  # and last descending
        ("score", ["dan", "eve", "ann", "cat", "bob"]),
        ("-points", ["bob", "ann", "cat", "eve", "dan"]),  # indexed: read in order
        ("name", ["ann", "bob", "cat", "dan", "eve"]),
    ],
)
@pytest.mark.parametrize("limit", [None, 0, 2, 10])
def test_sort_and_limit(db: Database, sort: str, expected: list[str], limit: int | None) -> None:
    options: dict[str, Any] = {"_sort": sort}
    if limit is not None:
        options["_limit"] = limit
    assert names(db.query(Player, **options)) == expected[:limit]


def test_limit_without_sort_keeps_creation_order(db: Database) -> None:
    assert names(db.query(Player, age__lt=35, _limit=2)) == ["ann", "bob"]
    assert names(db.query(Player, points__ge=3, _limit=2)) == ["ann", "bob"]


def test_query_result(db: Database) -> None:
    result = db.query(Player, age=25)
    assert len(result) == 2 and bool(result) and not db.query(Player, age=99)
    assert [row.name for row in result] == ["bob", "dan"] == [result[0].name, result[-1].name]
    assert isinstance(result[:1], QueryResult) and names(result[:1]) == ["bob"]
    assert result.first() is result[0] and db.query(Player, age=99).first() is None
    assert result.pks == [row.pk for row in result]
    assert result == list(result) and result == db.query(Player, age=25)
    assert result != db.query(Team) and repr(result) == "<QueryResult Player × 2>"
    with pytest.raises(TypeError):
        hash(result)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"height": 1}, "Player has no field 'height' (in filter 'height')"),
        ({"age__bigger": 1}, "unknown operator 'bigger' in filter 'age__bigger' on Player.age"),
        ({"age__gt__lt": 1}, "unknown operator 'gt__lt'"),
        ({"team__colour": "x"}, "Team has no field 'colour', and 'colour' is not an operator"),
        ({"team__name__zz": "x"}, "unknown operator 'zz' in filter 'name__zz' on Team.name"),
        ({"_order": "age"}, "unknown option '_order'"),
        ({"_sort": "height"}, "Player has no field 'height' (in _sort)"),
        ({"_sort": "tags"}, "cannot sort by a list[str] field"),
        ({"_sort": 3}, "_sort must be a field name"),
        ({"_limit": -1}, "_limit must be a whole number"),
        ({"_limit": "3"}, "_limit must be a whole number"),
        ({"age": "25"}, "Player.age: expected int, got str"),
        ({"age__gt": None}, "Player.age__gt: expected int, got NoneType"),
        ({"rank__gt": None}, "Player.rank__gt: expected int, got NoneType"),
        ({"name__gt": 3}, "Player.name__gt: expected str, got int"),
        ({"age__in": 25}, "Player.age__in: expected a list, tuple or set, got int"),
        ({"age__in": [25, "x"]}, "Player.age__in: expected int, got str"),
        ({"name__f": 1}, "Player.name__f: expected str, got int"),
        ({"age__f": 1}, "f needs a text or container field; Player.age has type int"),
        ({"age__re": "1"}, "re needs a text field; Player.age has type int"),
        ({"name__re": "("}, "not a regular expression"),
        ({"tags__max": True}, "max needs an ordered field; Player.tags has type list[str]"),
        ({"tags__lt": []}, "lt needs an ordered field"),
    ],
)
def test_a_bad_filter_is_an_error_naming_it(
    db: Database, filters: dict[str, Any], message: str
) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        db.query(Player, **filters)


def test_an_unknown_model_is_an_error(db: Database) -> None:
    with pytest.raises(QueryError, match=r"unknown model 'Coach' \(registered: Team, Player\)"):
        db.query("Coach")

    class Team(Model):  # same name, not the registered class
        name: str = ""

    with pytest.raises(QueryError, match="is not the registered model 'Team'"):
        db.query(Team)


def test_comparing_naive_and_aware_datetimes_is_a_query_error(db: Database) -> None:
    with pytest.raises(QueryError, match="cannot compare"):
        db.query(Player, joined__lt=datetime(2024, 1, 2))


# --- indexes give the answers of a scan ---------------------------------------------


class Twin(Model):
    """The same values twice: ``i*`` fields are indexed, ``s*`` fields are scanned."""

    inum: Annotated[int | None, Index] = None
    snum: int | None = None
    itext: Annotated[str, Index] = ""
    stext: str = ""
    when: Annotated[datetime, Index] = T0


numbers = st.none() | st.integers(-3, 3)
texts = st.sampled_from(["", "a", "b", "ab", "ba"])
rows = st.lists(st.tuples(numbers, texts), max_size=25)
ops = st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le", "in", "nin", "max", "min"])


def _filter(field: str, op: str, value: Any) -> tuple[str, Any]:
    if op in ("in", "nin"):
        return f"{field}__{op}", [value, 0 if field == "num" else "a"]
    if op in ("gt", "ge", "lt", "le") and value is None:
        return f"{field}__{op}", 0
    return f"{field}__{op}", value


edits = st.lists(
    st.tuples(st.sampled_from(["update", "drop"]), st.integers(0, 30), numbers, texts),
    max_size=10,
)


@settings(max_examples=200, deadline=None)
@given(
    rows,
    edits,
    st.lists(st.tuples(st.sampled_from(["num", "text"]), ops, numbers | texts), max_size=2),
    st.sampled_from([None, "num", "-num", "text", "-text"]),
    st.none() | st.integers(0, 6),
)
def test_indexed_queries_answer_like_scans(
    given: list[tuple[int | None, str]],
    changes: list[tuple[str, int, int | None, str]],
    conditions: list[tuple[str, str, Any]],
    sort: str | None,
    limit: int | None,
) -> None:
    indexed: dict[str, Any] = {}
    scanned: dict[str, Any] = {}
    for field, op, value in conditions:
        if (field == "num") != (value is None or isinstance(value, int)):
            continue  # a value for the other field
        if field == "text" and value is None:
            continue
        key, val = _filter(field, op, value)
        indexed["i" + key], scanned["s" + key] = val, val
    for options, prefix in ((indexed, "i"), (scanned, "s")):
        if sort:
            options["_sort"] = sort.replace(sort.lstrip("-"), prefix + sort.lstrip("-"))
        if limit is not None:
            options["_limit"] = limit
    db = Database([Twin])
    db.open()
    for number, text in given:
        db.create(Twin, inum=number, snum=number, itext=text, stext=text)
    # Read before the changes too, so that the sorted keys exist when rows move.
    assert db.query(Twin, **indexed).pks == db.query(Twin, **scanned).pks
    assert (
        db.query(Twin, inum__ge=-9, _sort="inum").pks
        == db.query(Twin, snum__ge=-9, _sort="snum").pks
    )
    for action, at, number, text in changes:  # moves rows between index buckets
        rows = db.query(Twin)
        if not rows:
            break
        row = rows[at % len(rows)]
        if action == "update":
            db.update(Twin, row, inum=number, snum=number, itext=text, stext=text)
        else:
            db.drop(Twin, row)
    assert db.query(Twin, **indexed).pks == db.query(Twin, **scanned).pks


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2000), min_size=50, max_size=400), st.integers(0, 2000))
def test_large_indexed_ranges_answer_like_scans(values: list[int], start: int) -> None:
    db = Database([Twin])
    db.open()
    for value in values:
        db.create(Twin, inum=value, snum=value)
    for action in (lambda: None, lambda: db.drop(Twin, db.query(Twin, snum__lt=start // 2))):
        action()
        for options in ({"_sort": "-{}num"}, {"_sort": "{}num", "_limit": 7}, {}):
            got, want = [
                db.query(
                    Twin,
                    **{f"{p}num__ge": start, f"{p}num__lt": start + 900},
                    **{k: v.format(p) if isinstance(v, str) else v for k, v in options.items()},
                ).pks
                for p in "is"
            ]
            assert got == want


def test_indexed_datetimes_refuse_to_mix_naive_and_aware() -> None:
    db = Database([Twin])
    db.open()
    db.create(Twin, when=T0)
    with pytest.raises(Exception, match="cannot mix naive and timezone-aware"):
        db.create(Twin, when=datetime(2024, 1, 1))
    assert db.query(Twin, when__ge=T0 - timedelta(days=1)).first() is not None


# --- the sorted keys behind ranges --------------------------------------------------


class TinyKeys(SortedKeys):
    LOAD = 2  # many chunks, so that every boundary case is met


@settings(max_examples=200, deadline=None)
@given(
    st.sets(st.integers(0, 60), max_size=60),
    st.none() | st.integers(-2, 62),
    st.booleans(),
    st.none() | st.integers(-2, 62),
    st.booleans(),
    st.booleans(),
    st.integers(1, 5),
)
def test_sorted_keys_ranges(
    values: set[int],
    lo: int | None,
    lo_incl: bool,
    hi: int | None,
    hi_incl: bool,
    reverse: bool,
    step: int,
) -> None:
    keys = TinyKeys()
    for value in values:
        keys.add(value, f"holder {value}")
    within: Callable[[int], bool] = lambda v: (  # noqa: E731
        (lo is None or (v >= lo if lo_incl else v > lo))
        and (hi is None or (v <= hi if hi_incl else v < hi))
    )
    expected = sorted((v for v in values if within(v)), reverse=reverse)
    assert list(keys.range(lo, lo_incl, hi, hi_incl, reverse)) == expected
    holders = [h for part in keys.parts(lo, lo_incl, hi, hi_incl, reverse, step) for h in part]
    assert holders == [f"holder {v}" for v in expected]
    assert keys.estimate(lo, lo_incl, hi, hi_incl) >= len(expected)
    assert len(keys) == len(values) and all(v in keys for v in values)
    assert (61 in keys) is False and keys.set(61, None) is False
    rebuilt = TinyKeys.of(sorted(values), [f"holder {v}" for v in sorted(values)])
    assert list(rebuilt.range(lo, lo_incl, hi, hi_incl, reverse)) == expected


def test_empty_says_whether_anything_matched() -> None:
    db = Database([Team, Player])
    db.create(Player, name="Ada", age=36)
    assert db.query(Player, name="Bob").empty
    assert not db.query(Player, name="Ada").empty
    assert db.query(Team).empty
