"""The built-in store: typed models in memory, queried by filters, optionally durable.

Every handler can ask for it as ``db``::

    user = db.create(User, email="ada@example.com")
    db.query(User, email__f="@example.com", _sort="-score", _limit=10)
    db.update(User, db.query(User, name=""), name="anonymous")

In memory by default, with explicit ``save()``/``load()`` of one JSON file per model.
In durable mode every change is written to ``<data>/lexicons.sqlite3`` by ``commit()``,
which the server calls before it sends the replies of each frame.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar, overload

import msgspec

from ..errors import IntegrityError, QueryError, RegistrationError, SchemaError, StorageError
from .indexes import Table
from .models import Model, Schema, Unresolved, analyze, copy_value
from .query import QueryResult, select
from .storage import FILE_NAME, DurableStore, load_json, migrate_json, save_json

__all__ = ["Database", "QueryResult"]

log = logging.getLogger("lexicons.database")
_asdict = msgspec.structs.asdict

M = TypeVar("M", bound=Model)
#: What ``update``, ``drop`` and ``hydrate`` accept as ``query``: a result, rows or pks.
Selection = QueryResult[Any] | Model | str | Iterable[Model | str]


class Database:
    """Typed tables in memory: create, query, update, drop, hydrate; save/load; durable.

    ``models`` may be given here or added with :meth:`add_model`. ``data`` is the
    directory of JSON files and of the durable file; ``durable`` writes every change to
    SQLite at :meth:`commit`. Both are plain attributes until :meth:`open`::

        with Database([User], data="data", durable=True) as db:
            db.create(User, email="ada@example.com")
            db.commit()
    """

    def __init__(
        self,
        models: Iterable[type[Model]] = (),
        *,
        data: str | os.PathLike[str] = "./",
        durable: bool = False,
        synchronous: str = "NORMAL",
    ) -> None:
        self.data = data
        self.durable = durable
        #: SQLite ``synchronous`` for durable mode: NORMAL survives a crash of the
        #: process; FULL also survives a power cut, at one fsync per commit.
        self.synchronous = synchronous
        self._models: dict[str, type[Model]] = {}
        self._tables: dict[str, Table] = {}
        self._by_key: dict[str | type[Model], Table] = {}
        self._pending: dict[str, type[Model]] = {}
        self._store: DurableStore | None = None
        self._opened = False
        self._changed = False
        #: Closed after a full commit: the rows in memory are the file's, reread at open.
        self._reopening = False
        #: Changes written to the durable log since the store was made; a caller compares
        #: it before and after a piece of work to tell whether that work wrote anything.
        self.changes = 0
        #: Failed commits whose changes were undone in memory: work that wrote before one
        #: and has not seen its writes committed knows they may be gone.
        self.rollbacks = 0
        for model in models:
            self.add_model(model)

    def __repr__(self) -> str:
        mode = "durable" if self.durable else "in memory"
        return f"<Database {mode} data={str(self.data)!r} models={list(self._models)}>"

    # --- registration -------------------------------------------------------------

    @property
    def models(self) -> Mapping[str, type[Model]]:
        """Registered models by name (read-only)."""
        return MappingProxyType(self._models)

    def add_model(self, model: type[M]) -> type[M]:
        """Register a model class; returns it, so it also works as a decorator.

        Raises RegistrationError for a second model of the same name, SchemaError for a
        field that cannot be stored. References may name models registered later.
        """
        if not (isinstance(model, type) and issubclass(model, Model)) or model is Model:
            raise RegistrationError(f"{model!r} is not a lexicons Model subclass")
        name = model.__name__
        known = self._models.get(name)
        if known is model:
            return model
        if known is not None:
            raise RegistrationError(
                f"two models named {name!r}: {known.__module__}.{known.__qualname__} "
                f"and {model.__module__}.{model.__qualname__}"
            )
        self._models[name] = model
        self._pending[name] = model
        try:
            self._resolve(final=self._opened)  # once open, every name must resolve now
        except SchemaError:
            if name in self._pending:
                del self._pending[name], self._models[name]
            raise
        if self._store is not None:
            self._load_table(self._tables[name])
        return model

    def _resolve(self, final: bool) -> None:
        """Analyse models waiting for names they reference; at ``final``, fail on any left."""
        progress = True
        while self._pending and progress:
            progress = False
            for name, model in list(self._pending.items()):
                try:
                    schema = analyze(model, self._models)
                except Unresolved as exc:
                    if final:
                        raise SchemaError(
                            f"{exc} (is that model registered, and defined or imported in "
                            "the module of the model that names it?)"
                        ) from None
                    continue
                except SchemaError:
                    del self._pending[name], self._models[name]
                    raise
                del self._pending[name]
                table = Table(schema)
                self._tables[name] = self._by_key[name] = self._by_key[model] = table
                progress = True
        if final:
            for table in self._tables.values():
                for info in table.schema.refs:
                    if info.ref not in self._tables:
                        raise SchemaError(
                            f"{table.schema.name}.{info.name}: references {info.ref}, "
                            "which is not a registered model"
                        )

    def _table(self, model: type[Model] | str) -> Table:
        table = self._by_key.get(model)
        if table is not None:
            return table
        if self._pending:
            self._resolve(final=True)
            if (table := self._by_key.get(model)) is not None:
                return table
        name = model if isinstance(model, str) else getattr(model, "__name__", repr(model))
        if name in self._models:
            raise QueryError(f"{model!r} is not the registered model {name!r}")
        raise QueryError(f"unknown model {name!r} (registered: {', '.join(self._models)})")

    def _named(self, name: str) -> Table:
        return self._table(name)

    # --- lifecycle ----------------------------------------------------------------

    def open(self) -> None:
        """Get ready to serve: check references; in durable mode, load the SQLite file.

        Raises StorageError naming the file when it cannot be opened or read; the file
        is never replaced. Called by the server before ``on_start``.
        """
        self._resolve(final=True)
        if self._opened:
            return
        if self.durable:
            if not self._reopening and any(t.rows for t in self._tables.values()):
                raise StorageError("durable mode: rows were created before open(); open first")
            store = DurableStore(Path(self.data) / FILE_NAME, self.synchronous)
            store.open()
            self._store = store
            try:
                for table in self._tables.values():
                    self._load_table(table)
            except BaseException:
                self._store = None
                store.close()
                raise
            log.info("durable store %s: %d rows", store.path, self._count())
        elif (Path(self.data) / FILE_NAME).exists():
            log.warning(
                "%s exists but durable mode is off: its rows are not loaded",
                Path(self.data) / FILE_NAME,
            )
        self._opened = True

    def _load_table(self, table: Table) -> None:
        assert self._store is not None
        stored = self._store.load(table.schema)
        table.log = None
        table.clear()
        for seq, row in stored:
            table.insert(row, seq)
        table.log = {}
        table.committed()

    def _count(self) -> int:
        return sum(len(t.rows) for t in self._tables.values())

    def commit(self) -> None:
        """Durable mode: write every change since the last commit in one transaction.

        Free when nothing changed or when not durable. When the file cannot be written
        (a full disk, a read-only directory) it raises StorageError and rolls the
        changes since the last commit back in memory too, so the store stays what the
        file holds: nothing a client was not told about survives, and the next write
        works again once the disk does.
        """
        if self._changed:
            assert self._store is not None
            try:
                self._store.commit(self._tables.values())
            except StorageError:
                for table in self._tables.values():
                    table.rollback()
                self.rollbacks += 1
                self._changed = False
                log.warning("commit failed: the changes since the last commit were undone")
                raise
            self._changed = False

    def close(self) -> None:
        """Commit and close the durable file; the rows stay readable in memory."""
        store, self._opened = self._store, False
        if store is None:
            return
        try:
            self.commit()
            self._reopening = True
        finally:
            self._store = None
            for table in self._tables.values():
                table.log = None
            store.close()

    def __enter__(self) -> Database:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _writing(self, table: Table) -> None:
        if table.log is not None:
            self._changed = True
            self.changes += 1
        elif self.durable:
            raise StorageError("the durable store is not open: call db.open() before writing")

    # --- reading ------------------------------------------------------------------

    @overload
    def query(self, model: type[M], /, **filters: Any) -> QueryResult[M]: ...

    @overload
    def query(self, model: str, /, **filters: Any) -> QueryResult[Model]: ...

    def query(self, model: type[Model] | str, /, **filters: Any) -> QueryResult[Any]:
        """Rows matching every filter, in creation order unless ``_sort`` is given.

        ``db.query(User, age__ge=18, name__f="an", _sort="-age", _limit=10)``
        """
        table = self._by_key.get(model) or self._table(model)
        return QueryResult(table.schema.cls, select(table, filters, self._named))

    @overload
    def get(self, model: type[M], pk: str | None = None, /, **filters: Any) -> M | None: ...

    @overload
    def get(self, model: str, pk: str | None = None, /, **filters: Any) -> Model | None: ...

    def get(self, model: type[Model] | str, pk: str | None = None, /, **filters: Any) -> Any:
        """The one row with this pk or matching these filters; None when there is none.

        Raises QueryError naming the count when several rows match: ``db.get(User, pk)``,
        ``db.get("User", email="ada@example.com")``.
        """
        table = self._by_key.get(model) or self._table(model)
        if pk is not None:
            row = table.rows.get(pk)
            if not filters or row is None:
                return row
            filters = {**filters, "pk": pk}
        if not filters:
            raise QueryError(f"get({table.schema.name}) needs a pk or filters")
        return self._one(table, filters)

    def _one(self, table: Table, filters: dict[str, Any]) -> Model | None:
        rows = select(table, {**filters, "_limit": 2}, self._named)
        if len(rows) > 1:
            count = len(
                select(table, {k: v for k, v in filters.items() if k != "_limit"}, self._named)
            )
            shown = ", ".join(f"{k}={v!r}" for k, v in filters.items())
            raise QueryError(f"get({table.schema.name}, {shown}) matched {count} rows, not one")
        return rows[0] if rows else None

    def hydrate(
        self, model: type[Model] | str, query: Selection, /, *, depth: int | None = None
    ) -> list[dict[str, Any]]:
        """The rows as plain dicts with every reference replaced by the referenced row.

        Expands recursively (``depth`` levels at most, when given). A missing row becomes
        None. Each row is expanded once per result, where it is met first (breadth
        first); any other reference to it, a cycle or a repeat, stays its pk.
        """
        table = self._table(model)
        return [self._expand(table, row, depth) for row in self._rows(table, query)]

    def _expand(self, table: Table, row: Model, depth: int | None) -> dict[str, Any]:
        """One row as a dict, references expanded; each row once, where it is met first.

        Breadth first, so "first" is the shallowest place, then the first in field order.
        """
        seen = {(table.schema.name, row.pk)}
        root = {"pk": row.pk, **_asdict(row)}  # pk first, then the fields in order
        todo: deque[tuple[Schema, dict[str, Any], int]] = deque([(table.schema, root, 0)])
        while todo:
            schema, out, level = todo.popleft()
            for name in schema.containers:
                out[name] = copy_value(out[name])
            deeper = depth is None or level < depth
            for info in schema.refs:
                value = out[info.name]
                if value is None:
                    continue
                if not deeper:
                    out[info.name] = copy_value(value)
                    continue
                one = _Expander(self._tables[info.ref], seen, todo, level + 1)  # type: ignore[index]
                if info.ref_kind == "one":
                    out[info.name] = one(value)
                elif info.ref_kind == "list":
                    out[info.name] = [one(pk) for pk in value]
                else:
                    out[info.name] = {key: one(pk) for key, pk in value.items()}
        return root

    # --- writing ------------------------------------------------------------------

    @overload
    def create(self, model: type[M], /, **fields: Any) -> M: ...

    @overload
    def create(self, model: str, /, **fields: Any) -> Model: ...

    @overload
    def create(self, model: M, /) -> M: ...

    def create(self, model: type[Model] | str | Model, /, **fields: Any) -> Model:
        """Validate and store a new row; returns it. ``pk`` is made when not given.

        ``db.create(User, email=...)``, or ``db.create(user)`` for a row built elsewhere
        (a handler's Model parameter): it is checked like any other and stored as a new
        row with its pk. Raises IntegrityError naming model, field, expected and given
        type (nothing is written), for a repeated pk, or for a reference to a row that
        does not exist.
        """
        try:
            table = self._by_key.get(model) or self._table(model)  # type: ignore[arg-type]
        except TypeError:  # rows are unhashable: this is db.create(row)
            if not isinstance(model, Model) or fields:
                raise QueryError(
                    f"create() takes a model and fields, or one row, not {model!r}"
                ) from None
            table = self._table(type(model))
            fields = msgspec.structs.asdict(model)
        schema = table.schema
        row = schema.build(fields)
        # A pk made by new_pk() is a fresh uuid4: only a given one can be taken.
        if "pk" in fields and row.pk in table.rows:
            raise IntegrityError(f"{schema.name}: a row with pk {row.pk!r} already exists")
        if schema.refs:
            self._check_refs(table, fields, row.pk, row)
        if table.dated:
            self._check_dates(table, fields)
        if table.log is not None:
            self._changed = True
            self.changes += 1
        elif self.durable:
            self._writing(table)
        table.insert(row)
        return row

    @overload
    def get_or_create(self, model: type[M], /, **fields: Any) -> M: ...

    @overload
    def get_or_create(self, model: str, /, **fields: Any) -> Model: ...

    def get_or_create(self, model: type[Model] | str, /, **fields: Any) -> Model:
        """The row whose fields equal these values, created from them when there is none.

        Raises QueryError naming the count when several rows match.
        """
        table = self._table(model)
        for key in fields:
            if "__" in key or key[:1] == "_":
                raise QueryError(
                    f"get_or_create({table.schema.name}) takes field=value only, not {key}"
                )
        # Checked as create would check them, so that a bad value is the same error here.
        values = {name: table.schema.value(name, value) for name, value in fields.items()}
        found = self._one(table, values) if values else None
        return found if found is not None else self.create(model, **values)

    @overload
    def update(self, model: type[M], query: Selection, /, **fields: Any) -> QueryResult[M]: ...

    @overload
    def update(self, model: str, query: Selection, /, **fields: Any) -> QueryResult[Model]: ...

    def update(self, model: type[Model] | str, query: Selection, /, **fields: Any) -> Any:
        """Set ``fields`` on every row of ``query``, in place; returns the updated rows.

        Values are checked first; on an error nothing is written.
        """
        table = self._table(model)
        schema = table.schema
        rows = self._rows(table, query)
        if "pk" in fields:
            raise IntegrityError(f"{schema.name}.pk cannot be changed")
        values = {name: schema.value(name, value) for name, value in fields.items()}
        if schema.refs:
            self._check_refs(table, values, None, None)
        if table.dated:
            self._check_dates(table, values)
        if values and rows:
            self._writing(table)
        if values:
            for row in rows:
                table.update(row, values)
        return QueryResult(schema.cls, rows)

    def drop(
        self, model: type[Model] | str, query: Selection, /, cascade: Sequence[str] = ()
    ) -> int:
        """Delete the rows of ``query``; returns how many rows were deleted in all.

        ``cascade`` names reference fields whose rows are deleted too, nested with
        ``__``: ``db.drop(Post, posts, cascade=["comments", "comments__author"])``.
        Rows that point at a deleted row keep its pk (``hydrate`` shows None).
        """
        table = self._table(model)
        paths = [path.split("__") for path in cascade]
        for path in paths:
            self._check_cascade(table, path)
        return self._drop(table, self._rows(table, query), paths)

    def _check_cascade(self, table: Table, path: list[str]) -> None:
        schema = table.schema
        info = schema.fields.get(path[0])
        if info is None or info.ref is None:
            raise QueryError(f"cascade: {schema.name}.{path[0]} is not a reference field")
        if len(path) > 1:
            self._check_cascade(self._tables[info.ref], path[1:])

    def _drop(self, table: Table, rows: list[Model], paths: list[list[str]]) -> int:
        if rows:
            self._writing(table)
        gone = [row for row in rows if table.delete(row.pk) is not None]
        count = len(gone)
        heads: dict[str, list[list[str]]] = {}
        for path in paths:
            heads.setdefault(path[0], [])
            if len(path) > 1:
                heads[path[0]].append(path[1:])
        for name, rest in heads.items():
            info = table.schema.fields[name]
            assert info.ref is not None
            target = self._tables[info.ref]
            pks: dict[str, None] = {}
            for row in gone:
                value = getattr(row, name)
                if value is None:
                    continue
                items = [value] if info.ref_kind == "one" else value
                pks.update(dict.fromkeys(items.values() if isinstance(items, dict) else items))
            found = [r for r in map(target.rows.get, pks) if r is not None]
            count += self._drop(target, found, rest)
        return count

    def _rows(self, table: Table, query: Selection) -> list[Model]:
        """The current rows a ``query`` argument stands for, once each, in its order."""
        cls = table.schema.cls
        if isinstance(query, QueryResult):
            if query.model is not cls:
                raise QueryError(
                    f"{table.schema.name}: the query holds {query.model.__name__} rows"
                )
            items: Iterable[Model | str] = query
        elif isinstance(query, (Model, str)):
            items = (query,)
        else:
            items = query
        rows: dict[str, Model] = {}
        current = table.rows
        for item in items:
            if isinstance(item, str):
                pk = item
            elif type(item) is cls:
                pk = item.pk
            else:
                raise QueryError(f"{table.schema.name}: cannot select {item!r}")
            row = current.get(pk)
            if row is not None:
                rows[pk] = row
        return list(rows.values())

    def _check_refs(
        self, table: Table, values: dict[str, Any], own: str | None, row: Model | None
    ) -> None:
        for info in table.schema.refs:
            if info.name not in values:
                continue
            value = getattr(row, info.name) if row is not None else values[info.name]
            if value is None:
                continue
            target = self._tables.get(info.ref) if info.ref else None
            if target is None:
                self._resolve(final=True)
                target = self._tables[info.ref]  # type: ignore[index]
            pks = (value,) if info.ref_kind == "one" else value
            for pk in pks.values() if isinstance(pks, dict) else pks:
                if pk not in target.rows and not (target is table and pk == own):
                    raise IntegrityError(
                        f"{table.schema.name}.{info.name}: no {info.ref} row with pk {pk!r}"
                    )

    def _check_dates(self, table: Table, values: dict[str, Any]) -> None:
        for name in table.dated:
            if name in values and not table.indexes[name].comparable(values[name]):
                raise IntegrityError(
                    f"{table.schema.name}.{name}: an indexed field cannot mix naive and "
                    "timezone-aware datetimes"
                )

    # --- files ----------------------------------------------------------------------

    def save(self) -> None:
        """Write each model's rows to ``<data>/<Model>.json`` (readable, indented JSON).

        No file is replaced unless every file could be written (StorageError otherwise).
        """
        self._resolve(final=True)
        save_json(
            {Path(self.data) / f"{name}.json": t.rows.values() for name, t in self._tables.items()}
        )

    def load(self) -> None:
        """Replace each model's rows with its ``<data>/<Model>.json``, when the file exists.

        Every file is read and checked before any table changes; StorageError names the
        file that is unreadable or does not match its model.
        """
        self._resolve(final=True)
        loaded = []
        for name, table in self._tables.items():
            rows = load_json(Path(self.data) / f"{name}.json", table.schema)
            if rows is not None:
                loaded.append((table, rows))
        for table, rows in loaded:
            self._writing(table)
            table.clear()
            for row in rows:
                table.insert(row)

    def migrate(self) -> str:
        """Bring stored data to the current models: new fields get their defaults, removed
        fields are dropped, in the JSON files and the durable file. Returns a summary.
        """
        self._resolve(final=True)
        lines = []
        for name, table in self._tables.items():
            line = migrate_json(Path(self.data) / f"{name}.json", table.schema)
            if line:
                lines.append(line)
        path = Path(self.data) / FILE_NAME
        if self._store is not None:
            self.commit()
            lines += self._store.migrate(t.schema for t in self._tables.values())
            for table in self._tables.values():
                self._load_table(table)
        elif path.exists():
            store = DurableStore(path, self.synchronous)
            store.open()
            try:
                lines += store.migrate(t.schema for t in self._tables.values())
            finally:
                store.close()
        summary = "\n".join(lines) or f"nothing to migrate in {self.data}"
        log.info("migrate: %s", summary)
        return summary


class _Expander:
    """Turns one reference into the row as a dict (queued on ``todo``), its pk, or None."""

    __slots__ = ("target", "seen", "todo", "level")

    def __init__(
        self,
        target: Table,
        seen: set[tuple[str, str]],
        todo: deque[tuple[Schema, dict[str, Any], int]],
        level: int,
    ) -> None:
        self.target, self.seen, self.todo, self.level = target, seen, todo, level

    def __call__(self, pk: str) -> Any:
        found = self.target.rows.get(pk)
        if found is None:
            return None
        key = (self.target.schema.name, pk)
        if key in self.seen:
            return pk
        self.seen.add(key)
        child = {"pk": pk, **_asdict(found)}
        self.todo.append((self.target.schema, child, self.level))
        return child
