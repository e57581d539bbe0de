"""Random sequences of writes and reads give the answers of a plain-Python reference model.

The reference keeps rows as dicts in creation order and answers filters with list
comprehensions. The store must agree after every step, in memory, across save/load,
and in durable mode across restarts.
"""

from __future__ import annotations

import copy
import re
import tempfile
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from lexicons.errors import IntegrityError, QueryError, StorageError
from lexicons.store.database import Database
from lexicons.store.models import Index, Model, Ref


class Owner(Model):
    name: Annotated[str, Index] = ""


class Item(Model):
    name: Annotated[str, Index] = ""
    label: str = ""
    score: Annotated[float, Index] = 0.0
    rank: int = 0
    level: Annotated[int | None, Index] = None
    tags: list[str] = []
    owner: Ref[Owner] | None = None


FIELDS = ("name", "label", "score", "rank", "level", "tags", "owner")
names = st.sampled_from(["", "a", "b", "ab"])
scores = st.sampled_from([0.0, 0.5, 1.0, -2.5, 3.0])
ranks = st.integers(-2, 3)
levels = st.none() | st.integers(0, 3)
tags = st.lists(st.sampled_from(["x", "y"]), max_size=2)
values = {
    "name": names,
    "label": names,
    "score": scores,
    "rank": ranks,
    "level": levels,
    "tags": tags,
}
# A wrong value for each field (an int where an int is fine is not wrong; bool is).
wrong = {
    "name": st.just(1),
    "label": st.just(None),
    "score": st.just("1.0"),
    "rank": st.just(True),
    "level": st.just(1.5),
    "tags": st.just(["x", 2]),
}

CONDITIONS: dict[str, st.SearchStrategy[Any]] = {
    "name": names,
    "label": names,
    "name__in": st.lists(names, max_size=2),
    "label__nin": st.lists(names, max_size=2),
    "name__f": st.sampled_from(["a", "b"]),
    "label__re": st.sampled_from(["^a", "b$"]),
    "score__ge": scores,
    "score__lt": scores,
    "score__ne": scores,
    "rank__gt": ranks,
    "rank__le": ranks,
    "level": levels,
    "level__ge": st.integers(0, 3),
    "tags__f": st.sampled_from(["x", "y"]),
    "owner__name": names,
    "rank__max": st.just(True),
    "level__min": st.just(True),
}
SORTS = [None, "name", "-name", "score", "-score", "rank", "-rank", "level", "-level"]


def passes(row: dict[str, Any], key: str, value: Any, owners: dict[str, dict[str, Any]]) -> bool:
    field, _, op = key.partition("__")
    got = row[field]
    if field == "owner":
        owner = owners.get(got) if got is not None else None
        return owner is not None and owner["name"] == value
    if op in ("", "eq"):
        return bool(got == value)
    if op == "ne":
        return bool(got != value)
    if op == "in":
        return got in value
    if op == "nin":
        return got not in value
    if got is None:
        return False
    if op == "f":
        return value in got
    if op == "re":
        return re.search(value, got) is not None
    return {
        "gt": got > value,
        "ge": got >= value,
        "lt": got < value,
        "le": got <= value,
    }[op]


def reference_query(
    rows: dict[str, dict[str, Any]], owners: dict[str, dict[str, Any]], filters: dict[str, Any]
) -> list[str]:
    found = list(rows.items())
    for key, value in filters.items():
        if key[:1] != "_" and not key.endswith(("__max", "__min")):
            found = [(pk, row) for pk, row in found if passes(row, key, value, owners)]
    for key in filters:
        if key.endswith(("__max", "__min")):
            field = key.split("__")[0]
            present = [row[field] for _, row in found if row[field] is not None]
            best = (max if key.endswith("max") else min)(present) if present else None
            found = [(pk, row) for pk, row in found if present and row[field] == best]
    sort = filters.get("_sort")
    if sort:
        field = sort.lstrip("-")
        found.sort(
            key=lambda item: (item[1][field] is not None, item[1][field]),
            reverse=sort.startswith("-"),
        )
    if "_limit" in filters:
        found = found[: filters["_limit"]]
    return [pk for pk, _ in found]


@st.composite
def filters(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(CONDITIONS)), max_size=2, unique=True))
    out = {key: draw(CONDITIONS[key]) for key in keys}
    sort = draw(st.sampled_from(SORTS))
    if sort:
        out["_sort"] = sort
    if draw(st.booleans()):
        out["_limit"] = draw(st.integers(0, 4))
    return out


class Store(RuleBasedStateMachine):
    """The database against dicts in creation order."""

    durable = False
    items = Bundle("items")
    owners_ = Bundle("owners")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.db = self.new_db()
        self.rows: dict[str, dict[str, Any]] = {}
        self.owners: dict[str, dict[str, Any]] = {}

    def new_db(self) -> Database:
        db = Database([Owner, Item], data=self.dir.name, durable=self.durable)
        db.open()
        return db

    def teardown(self) -> None:
        self.db.close()
        self.dir.cleanup()

    @initialize(target=owners_, name=names)
    def first_owner(self, name: str) -> str:
        return self.create_owner(name)

    @rule(target=owners_, name=names)
    def create_owner(self, name: str) -> str:
        owner = self.db.create(Owner, name=name)
        self.owners[owner.pk] = {"name": name}
        return owner.pk

    @rule(
        target=items,
        given=st.fixed_dictionaries({}, optional=values),
        owner=st.none() | owners_,
    )
    def create(self, given: dict[str, Any], owner: str | None) -> str:
        if owner is not None and owner not in self.owners:
            with pytest.raises(IntegrityError, match="no Owner row"):
                self.db.create(Item, owner=owner, **given)
            return "gone"
        item = self.db.create(Item, owner=owner, **given)
        row = {"name": "", "label": "", "score": 0.0, "rank": 0, "level": None, "tags": []}
        self.rows[item.pk] = {**row, **given, "owner": owner}
        return item.pk

    @rule(field=st.sampled_from(sorted(wrong)), data=st.data())
    def create_wrong(self, field: str, data: st.DataObject) -> None:
        with pytest.raises(IntegrityError, match=rf"^Item\.{field}: expected"):
            self.db.create(Item, **{field: data.draw(wrong[field])})

    @rule(where=filters(), given=st.fixed_dictionaries({}, optional=values))
    def update(self, where: dict[str, Any], given: dict[str, Any]) -> None:
        chosen = reference_query(self.rows, self.owners, where)
        result = self.db.update(Item, self.db.query(Item, **where), **given)
        assert result.pks == chosen
        for pk in chosen:
            self.rows[pk].update(given)

    @rule(where=filters(), field=st.sampled_from(sorted(wrong)), data=st.data())
    def update_wrong(self, where: dict[str, Any], field: str, data: st.DataObject) -> None:
        with pytest.raises(IntegrityError, match=rf"^Item\.{field}: expected"):
            self.db.update(Item, self.db.query(Item, **where), **{field: data.draw(wrong[field])})

    @rule(where=filters())
    def drop(self, where: dict[str, Any]) -> None:
        chosen = reference_query(self.rows, self.owners, where)
        assert self.db.drop(Item, self.db.query(Item, **where)) == len(chosen)
        for pk in chosen:
            del self.rows[pk]

    @rule(pk=consumes(items))
    def drop_one(self, pk: str) -> None:
        assert self.db.drop("Item", pk) == (1 if pk in self.rows else 0)
        self.rows.pop(pk, None)

    @rule(pk=consumes(owners_))
    def drop_owner(self, pk: str) -> None:  # items keep pointing at it
        self.db.drop(Owner, pk)
        self.owners.pop(pk, None)

    @rule(where=filters())
    def query(self, where: dict[str, Any]) -> None:
        assert self.db.query(Item, **where).pks == reference_query(self.rows, self.owners, where)

    @rule(
        name=names,
        lo=scores,
        sort=st.sampled_from(["score", "-score", "name"]),
        limit=st.none() | st.integers(0, 3),
    )
    def query_indexes(self, name: str, lo: float, sort: str, limit: int | None) -> None:
        """The shapes that read indexes: equality, and a range read in order."""
        for where in ({"name": name}, {"score__ge": lo, "_sort": sort}, {"name__in": [name, "a"]}):
            if limit is not None:
                where["_limit"] = limit
            expected = reference_query(self.rows, self.owners, where)
            assert self.db.query(Item, **where).pks == expected

    @rule(pk=items)
    def get(self, pk: str) -> None:
        row = self.db.get(Item, pk)
        assert (row is None) == (pk not in self.rows)

    @rule(name=names, rank=ranks)
    def get_or_create(self, name: str, rank: int) -> None:
        found = [
            pk for pk, row in self.rows.items() if row["name"] == name and row["rank"] == rank
        ]
        if len(found) > 1:
            with pytest.raises(QueryError, match=f"matched {len(found)} rows"):
                self.db.get_or_create(Item, name=name, rank=rank)
            return
        item = self.db.get_or_create(Item, name=name, rank=rank)
        if found:
            assert item.pk == found[0]
        else:
            self.rows[item.pk] = {
                "name": name,
                "label": "",
                "score": 0.0,
                "rank": rank,
                "level": None,
                "tags": [],
                "owner": None,
            }

    @rule()
    def save_and_load(self) -> None:
        self.db.save()
        self.db.load()

    @precondition(lambda self: self.durable)
    @rule()
    def restart(self) -> None:
        self.db.commit()
        self.db.close()
        self.db = self.new_db()

    @invariant()
    def same_rows(self) -> None:
        stored = [
            (item.pk, {field: getattr(item, field) for field in FIELDS})
            for item in self.db.query(Item)
        ]
        assert stored == list(self.rows.items())
        assert [o.pk for o in self.db.query(Owner)] == list(self.owners)


class DurableStore(Store):
    """The same, in durable mode, with restarts and failing commits in between.

    A commit that fails rolls the store back to the last commit, in memory as on disk:
    the reference goes back to its copy from then.
    """

    durable = True

    def __init__(self) -> None:
        super().__init__()
        self.committed()

    def committed(self) -> None:
        self.saved = (copy.deepcopy(self.rows), copy.deepcopy(self.owners), self.db.changes)
        self.held = {item.pk: item for item in self.db.query(Item)}

    @rule()
    def commit(self) -> None:
        self.db.commit()
        self.committed()

    @rule()
    def failing_commit(self) -> None:
        """SQLite refuses the write (as on a full disk): the changes are undone."""
        rows, owners, changes = self.saved
        conn = self.db._store.conn  # type: ignore[union-attr]
        conn.set_progress_handler(lambda: 1, 1)  # abort every statement: a real SQLite error
        try:
            if self.db.changes == changes:
                self.db.commit()  # nothing to write: nothing to fail
            else:
                with pytest.raises(StorageError, match="cannot write: interrupted"):
                    self.db.commit()
        finally:
            conn.set_progress_handler(None, 0)
        self.rows, self.owners = copy.deepcopy(rows), copy.deepcopy(owners)
        for pk, item in self.held.items():  # the rows held before are the rows restored
            if pk in self.rows:
                assert self.db.get(Item, pk) is item
        self.committed()

    @rule()
    def restart(self) -> None:
        super().restart()
        self.committed()


TestStore = Store.TestCase
TestStore.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDurableStore = DurableStore.TestCase
TestDurableStore.settings = settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
