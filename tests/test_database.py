"""The Database API: create, get, update, drop, get_or_create, hydrate.

The examples in docs/model.md and docs/database.md run in tests/test_docs.py.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec
import pytest

from lexicons.errors import IntegrityError, QueryError, StorageError
from lexicons.store.database import Database
from lexicons.store.models import Index, Model, Ref
from lexicons.store.storage import FILE_NAME


class Company(Model):
    name: Annotated[str, Index]
    owner: Ref[Person] | None = None


class Person(Model):
    email: Annotated[str, Index]
    name: str = ""
    age: int = 0
    employer: Ref[Company] | None = None
    friends: list[Ref[Person]] = []
    contacts: dict[str, Ref[Person]] = {}


class Post(Model):
    author: Ref[Person]
    title: str = ""
    at: datetime | None = None


@pytest.fixture
def db() -> Database:
    db = Database([Company, Person, Post])
    db.open()
    return db


def test_create_and_get(db: Database) -> None:
    ann = db.create(Person, email="ann@x", name="Ann", age=30)
    assert isinstance(ann, Person) and ann.name == "Ann"
    assert db.get(Person, ann.pk) is ann
    assert db.get("Person", ann.pk) is ann  # the original API used model names
    assert db.get(Person, "nope") is None
    assert db.get(Person, email="ann@x") is ann
    assert db.get(Person, ann.pk, age=30) is ann
    assert db.get(Person, ann.pk, age=31) is None
    assert db.get(Person, email="bob@x") is None
    given = db.create(Person, pk="p-1", email="p@x")
    assert db.get(Person, "p-1") is given


def test_get_with_several_matches_names_the_count(db: Database) -> None:
    for i in range(3):
        db.create(Person, email=f"{i}@x", age=20)
    with pytest.raises(QueryError, match=r"get\(Person, age=20\) matched 3 rows, not one"):
        db.get(Person, age=20)
    with pytest.raises(QueryError, match="needs a pk or filters"):
        db.get(Person)


def test_a_wrong_type_writes_nothing(db: Database) -> None:
    with pytest.raises(IntegrityError, match=r"^Person\.age: expected int, got str$"):
        db.create(Person, email="a@x", age="30")
    assert len(db.query(Person)) == 0
    ann = db.create(Person, email="ann@x", age=30)
    with pytest.raises(IntegrityError, match=r"^Person\.name: expected str, got int$"):
        db.update(Person, ann, age=31, name=5)
    assert (ann.age, ann.name) == (30, "")
    with pytest.raises(IntegrityError, match="Person has no field colour"):
        db.update(Person, ann, colour="red")
    with pytest.raises(IntegrityError, match=r"Person\.pk cannot be changed"):
        db.update(Person, ann, pk="other")
    with pytest.raises(IntegrityError, match="a row with pk .* already exists"):
        db.create(Person, pk=ann.pk, email="again@x")


def test_references_must_point_at_rows(db: Database) -> None:
    ann = db.create(Person, email="ann@x")
    with pytest.raises(IntegrityError, match=r"Post\.author: no Person row with pk 'ghost'"):
        db.create(Post, author="ghost")
    with pytest.raises(IntegrityError, match=r"Person\.friends: no Person row with pk 'ghost'"):
        db.create(Person, email="b@x", friends=[ann, "ghost"])
    with pytest.raises(IntegrityError, match=r"Person\.contacts: no Person row"):
        db.update(Person, ann, contacts={"mum": "ghost"})
    post = db.create(Post, author=ann)  # a row or its pk
    assert post.author == ann.pk
    me = db.create(Person, pk="me", email="me@x", friends=["me"])  # itself
    assert me.friends == ["me"]
    assert len(db.query(Post)) == 1 and len(db.query(Person)) == 2


def test_update_changes_rows_in_place_and_returns_them(db: Database) -> None:
    people = [db.create(Person, email=f"{i}@x", age=i) for i in range(4)]
    young = db.query(Person, age__lt=2)
    updated = db.update(Person, young, name="young", age=10)
    assert list(updated) == people[:2] and updated[0] is people[0]
    assert [p.age for p in people] == [10, 10, 2, 3] and people[0].name == "young"
    assert db.query(Person, age=10).pks == [p.pk for p in people[:2]]
    assert db.update(Person, people[3].pk, age=4).first() is people[3]
    assert db.update(Person, [people[2], people[3].pk], age=5).pks == [people[2].pk, people[3].pk]
    assert len(db.update(Person, [], age=1)) == 0


def test_a_query_of_another_model_is_refused(db: Database) -> None:
    db.create(Company, name="acme")
    with pytest.raises(QueryError, match="the query holds Company rows"):
        db.update(Person, db.query(Company), age=1)
    with pytest.raises(QueryError, match="cannot select"):
        db.drop(Person, [db.query(Company)[0]])


def test_drop_and_cascade_along_references(db: Database) -> None:
    boss = db.create(Person, email="boss@x")
    acme = db.create(Company, name="acme", owner=boss)
    ann = db.create(Person, email="ann@x", employer=acme)
    bob = db.create(Person, email="bob@x", employer=acme, friends=[ann])
    post = db.create(Post, author=bob)
    assert db.drop(Post, post, cascade=["author__employer__owner"]) == 4
    assert db.query(Person).pks == [ann.pk]  # ann is not on the path
    assert len(db.query(Company)) == 0 and len(db.query(Post)) == 0
    assert ann.employer == acme.pk  # left pointing at the dropped row
    assert db.hydrate(Person, ann)[0]["employer"] is None


def test_cascade_is_checked_first_and_survives_cycles(db: Database) -> None:
    ann = db.create(Person, email="ann@x")
    bob = db.create(Person, email="bob@x", friends=[ann])
    db.update(Person, ann, friends=[bob], contacts={"self": ann})
    with pytest.raises(QueryError, match=r"cascade: Person\.name is not a reference"):
        db.drop(Person, ann, cascade=["friends", "name"])
    with pytest.raises(QueryError, match=r"cascade: Person\.email is not a reference"):
        db.drop(Person, ann, cascade=["friends__email"])
    assert len(db.query(Person)) == 2  # nothing was dropped
    assert db.drop(Person, ann, cascade=["friends__friends__friends", "contacts"]) == 2
    assert len(db.query(Person)) == 0


def test_drop_by_query_and_by_pk(db: Database) -> None:
    people = [db.create(Person, email=f"{i}@x", age=i % 2) for i in range(5)]
    assert db.drop(Person, db.query(Person, age=1)) == 2
    assert db.drop("Person", people[0].pk) == 1
    assert db.drop(Person, people[0].pk) == 0  # already gone
    assert db.query(Person).pks == [people[2].pk, people[4].pk]


def test_get_or_create(db: Database) -> None:
    ann = db.get_or_create(Person, email="ann@x", age=30)
    assert db.get_or_create(Person, email="ann@x", age=30) is ann
    other = db.get_or_create(Person, email="ann@x", age=31)
    assert other is not ann and len(db.query(Person)) == 2
    with pytest.raises(QueryError, match=r"matched 2 rows"):
        db.get_or_create(Person, email="ann@x")
    with pytest.raises(QueryError, match="field=value only"):
        db.get_or_create(Person, age__gt=3)
    assert db.get_or_create(Company, name="acme").name == "acme"


def test_hydrate_expands_references_recursively(db: Database) -> None:
    ann = db.create(Person, email="ann@x", name="Ann")
    acme = db.create(Company, name="acme", owner=ann)
    bob = db.create(Person, email="bob@x", employer=acme, friends=[ann])
    when = datetime(2024, 5, 1, tzinfo=UTC)
    post = db.create(Post, author=bob, title="hi", at=when)
    [out] = db.hydrate(Post, db.query(Post))
    assert out == {
        "pk": post.pk,
        "author": {
            "pk": bob.pk,
            "email": "bob@x",
            "name": "",
            "age": 0,
            "employer": {"pk": acme.pk, "name": "acme", "owner": ann.pk},
            "friends": [  # met first here (depth 2), so expanded here, not in owner
                {
                    "pk": ann.pk,
                    "email": "ann@x",
                    "name": "Ann",
                    "age": 0,
                    "employer": None,
                    "friends": [],
                    "contacts": {},
                }
            ],
            "contacts": {},
        },
        "title": "hi",
        "at": when,
    }
    out["author"]["friends"].append("x")  # plain data: changing it changes no row
    assert bob.friends == [ann.pk]
    db.drop(Company, acme)
    assert db.hydrate(Post, post)[0]["author"]["employer"] is None  # a dangling reference


def test_hydrate_is_safe_on_cycles_and_can_stop_at_a_depth(db: Database) -> None:
    ann = db.create(Person, email="ann@x")
    bob = db.create(Person, email="bob@x", friends=[ann])
    db.update(Person, bob, contacts={"me": bob})
    db.update(Person, ann, friends=[bob])
    [a, b] = db.hydrate(Person, db.query(Person))
    assert a["friends"][0]["pk"] == bob.pk and a["friends"][0]["friends"] == [ann.pk]
    assert a["friends"][0]["contacts"] == {"me": bob.pk}
    assert b["friends"][0]["friends"] == [bob.pk]
    [shallow] = db.hydrate(Person, ann, depth=0)
    assert shallow["friends"] == [bob.pk]
    [one] = db.hydrate("Person", [ann.pk], depth=1)
    assert one["friends"][0]["friends"] == [ann.pk]


def test_models_and_repr(db: Database) -> None:
    assert list(db.models) == ["Company", "Person", "Post"]
    with pytest.raises(TypeError):
        db.models["X"] = Post  # type: ignore[index]
    assert repr(db) == "<Database in memory data='./' models=['Company', 'Person', 'Post']>"


def test_a_durable_database_refuses_writes_before_open(tmp_path: Path) -> None:
    db = Database([Company, Person], data=tmp_path, durable=True)
    with pytest.raises(StorageError, match=r"not open: call db\.open\(\)"):
        db.create(Company, name="acme")
    db.open()
    db.create(Company, name="acme")
    db.close()
    assert db.query(Company).first() is not None  # still readable after close


# --- one validation on every path ------------------------------------------------------


class Strict(Model):
    name: str = ""
    ratio: float = 0.0
    count: Annotated[int, msgspec.Meta(ge=0)] = 0
    bag: list = []  # untyped: JSON values only
    tagged: dict[str, list[float]] = {}


#: (field, value, what the error says): values every write path must refuse.
BAD = [
    ("name", 5, r"Strict\.name: expected str, got int$"),
    ("ratio", math.nan, r"Strict\.ratio: nan cannot be stored"),
    ("ratio", -math.inf, r"Strict\.ratio: -inf cannot be stored"),
    ("count", -1, r"Strict\.count: expected int, got int \(Expected `int` >= 0\)"),
    ("bag", [("a", 1)], r"Strict\.bag: tuple values cannot be stored"),
    ("bag", [{1: "x"}], r"Strict\.bag: untyped dict keys must be str"),
    ("tagged", {"a": [1.0, math.inf]}, r"Strict\.tagged: inf cannot be stored"),
    (
        "tagged",
        {"a": ["x"]},
        r"Strict\.tagged: expected dict\[str, list\[float\]\], got dict \("
        r"Expected `float`, got `str` - at `\$\[\.\.\.\]\[0\]`\)",
    ),
    ("pk", "", r"Strict\.pk: expected a non-empty str"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD)
@pytest.mark.parametrize("path", ["create", "create(row)", "update", "get_or_create"])
def test_every_write_path_refuses_the_same_values(
    path: str, field: str, value: object, message: str
) -> None:
    db = Database([Strict])
    db.open()
    kept = db.create(Strict, name="kept")
    before = msgspec.structs.asdict(kept)
    if path == "update" and field == "pk":
        message = r"Strict\.pk cannot be changed"  # any pk, before its value is read
    with pytest.raises(IntegrityError, match=message):
        if path == "create":
            db.create(Strict, **{field: value})
        elif path == "create(row)":
            db.create(Strict(**{field: value}))
        elif path == "update":
            db.update(Strict, kept, **{field: value})
        else:
            db.get_or_create(Strict, **{field: value})
    assert [msgspec.structs.asdict(row) for row in db.query(Strict)] == [before]


#: The JSON-expressible ones, as stored rows: every read path refuses them too.
STORED = [
    ('{"pk": "a", "name": 5}', r"Expected `str`, got `int` - at `\$\[0\]\.name`"),
    ('{"pk": "a", "count": -1}', r"Expected `int` >= 0"),
    ('{"pk": "a", "ratio": 1e999}', r"Number out of range"),
    ('{"pk": ""}', r"Strict\.pk: expected a non-empty str"),
]


@pytest.mark.parametrize(("row", "message"), STORED)
def test_every_read_path_refuses_the_same_values(tmp_path: Path, row: str, message: str) -> None:
    (tmp_path / "Strict.json").write_text(f"[{row}]")
    with pytest.raises(StorageError, match=message):
        Database([Strict], data=tmp_path).load()
    with pytest.raises(StorageError, match=message.replace(r"\$\[0\]", r"\$")):
        Database([Strict], data=tmp_path).migrate()
    # The durable file: a row written behind the store's back is refused at open.
    durable = tmp_path / "durable"
    with Database([Strict], data=durable, durable=True):
        pass
    with sqlite3.connect(durable / FILE_NAME) as conn:
        conn.execute('INSERT INTO "Strict" (seq, pk, data) VALUES (1, ?, ?)', ("a", row))
    conn.close()
    with pytest.raises(StorageError, match=message.replace(r"\$\[0\]", r"\$")):
        Database([Strict], data=durable, durable=True).open()
