"""Queries: reading filters, choosing an index, evaluating, and the result collection.

Filters are ``field=value`` or ``field__op=value``; a reference field can be followed
into the model it points at (``author__email="a@b"``). The shape of a filter (its keys,
and the ``_sort`` field) is compiled once per table into a :class:`Plan`: which index
drives the search, and a Python function that tests the remaining conditions. Running a
plan only checks the values and calls that function.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from operator import attrgetter
from typing import Any, Generic, TypeVar, overload

import msgspec

from ..errors import QueryError
from .indexes import Table
from .models import FieldInfo, Model, Schema

__all__ = ["OPERATORS", "Plan", "QueryResult", "select"]

M = TypeVar("M", bound=Model)

#: The filter operators: ``field__op=value``.
OPERATORS = frozenset({"f", "re", "eq", "ne", "gt", "lt", "ge", "le", "max", "min", "in", "nin"})
_RANGE = {"gt": (True, False), "ge": (True, True), "lt": (False, False), "le": (False, True)}
_CMP = {"eq": "==", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_CACHE = 256

#: Finds a table by model name (raises QueryError for an unknown model).
Lookup = Callable[[str], Table]


class QueryResult(Sequence[M], Generic[M]):
    """Rows matched by a query, in order: iterate, ``len``, index, slice, ``.first()``.

    Pass it back as the ``query`` argument of ``update``, ``drop`` and ``hydrate``::

        admins = db.query(User, role="admin", _sort="-created")
        db.update(User, admins, active=False)
    """

    __slots__ = ("model", "_rows")

    def __init__(self, model: type[M], rows: list[M]) -> None:
        self.model = model
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[M]:
        return iter(self._rows)

    @overload
    def __getitem__(self, index: int) -> M: ...

    @overload
    def __getitem__(self, index: slice) -> QueryResult[M]: ...

    def __getitem__(self, index: int | slice) -> M | QueryResult[M]:
        if isinstance(index, slice):
            return QueryResult(self.model, self._rows[index])
        return self._rows[index]

    def __bool__(self) -> bool:
        return bool(self._rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QueryResult):
            return self.model is other.model and self._rows == other._rows
        if isinstance(other, list):
            return self._rows == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<QueryResult {self.model.__name__} × {len(self._rows)}>"

    @property
    def empty(self) -> bool:
        """True when nothing matched (the original's ``db.query(...).empty``)."""
        return not self._rows

    def first(self) -> M | None:
        """The first row, or None when nothing matched."""
        return self._rows[0] if self._rows else None

    @property
    def pks(self) -> list[str]:
        """The rows' primary keys, in order."""
        return [row.pk for row in self._rows]


def select(table: Table, filters: Mapping[str, Any], lookup: Lookup) -> list[Model]:
    """Run ``filters`` on ``table``; returns matching rows (creation order unless sorted)."""
    key = tuple(filters)
    if "_sort" in filters:
        sort = filters["_sort"]
        if not isinstance(sort, str):
            raise QueryError(f"{table.schema.name}: _sort must be a field name, got {sort!r}")
        key += (sort,)
    plan = table.plans.get(key)
    if plan is None:
        plan = Plan(table, filters, lookup)
        if len(table.plans) >= _CACHE:
            table.plans.clear()
        table.plans[key] = plan
    try:
        return plan.run(table, filters, lookup)
    except TypeError as exc:  # e.g. naive and aware datetimes, or None in a sort key
        raise QueryError(f"{table.schema.name}: cannot compare values: {exc}") from None


class _Cond:
    """One condition: a field, an operator, and where its value comes from."""

    __slots__ = ("key", "info", "op", "subs")

    def __init__(self, key: str, info: FieldInfo, op: str, subs: list[tuple[str, str]]) -> None:
        self.key, self.info, self.op, self.subs = key, info, op, subs


class Plan:
    """How to answer one filter shape on one table: a driving index and a test function."""

    __slots__ = (
        "schema",
        "conds",
        "extremes",
        "sort",
        "desc",
        "driver",
        "drive",
        "lo",
        "hi",
        "scan",
        "scan_lazy",
        "rest",
        "rest_lazy",
        "rest_conds",
    )

    def __init__(self, table: Table, filters: Mapping[str, Any], lookup: Lookup) -> None:
        schema = self.schema = table.schema
        conds: list[_Cond] = []
        subs: dict[str, _Cond] = {}
        self.extremes: list[_Cond] = []
        self.sort: FieldInfo | None = None
        self.desc = False
        for key in filters:
            if key == "_limit":
                continue
            if key == "_sort":
                self._parse_sort(filters[key])
                continue
            if key[:1] == "_":
                raise QueryError(f"{schema.name}: unknown option {key!r} (options: _sort, _limit)")
            info, op, rest = _parse(schema, key, lookup)
            if rest is not None:
                cond = subs.get(info.name)
                if cond is None:
                    cond = subs[info.name] = _Cond(key, info, "sub", [])
                    conds.append(cond)
                cond.subs.append((key, rest))
            elif op in ("max", "min"):
                self.extremes.append(_Cond(key, info, op, []))
            else:
                conds.append(_Cond(key, info, op, []))
        self.conds = conds
        self._choose_driver(table, conds, "_limit" in filters)
        self.scan, self.scan_lazy = _compile(conds)
        self.rest_conds = [c for c in conds if c is not self.drive and c not in (self.lo, self.hi)]
        self.rest, self.rest_lazy = _compile(self.rest_conds)

    def _parse_sort(self, value: str) -> None:
        name = value[1:] if value[:1] == "-" else value
        info = self.schema.fields.get(name)
        if info is None:
            raise QueryError(f"{self.schema.name} has no field {name!r} (in _sort)")
        if not info.orderable:
            raise QueryError(f"{self.schema.name}.{name}: cannot sort by a {info.label} field")
        self.sort, self.desc = info, value[:1] == "-"

    def _choose_driver(self, table: Table, conds: list[_Cond], limited: bool) -> None:
        self.driver, self.drive, self.lo, self.hi = "scan", None, None, None
        indexed = table.indexes
        for cond in conds:
            name, op = cond.info.name, cond.op
            if name == "pk" and op in ("eq", "in"):
                self.driver, self.drive = "pk" if op == "eq" else "pks", cond
                return
        for op in ("eq", "in"):
            for cond in conds:
                if cond.op == op and cond.info.name in indexed:
                    self.driver, self.drive = op, cond
                    return
        ranged = [c for c in conds if c.op in _RANGE and c.info.name in indexed]
        if ranged:
            sort = self.sort.name if self.sort else None
            field = next((c.info.name for c in ranged if c.info.name == sort), ranged[0].info.name)
            self.driver = "range"
            mine = [c for c in ranged if c.info.name == field]
            self.lo = next((c for c in mine if _RANGE[c.op][0]), None)
            self.hi = next((c for c in mine if not _RANGE[c.op][0]), None)
            self.drive = self.lo or self.hi
        elif self.sort and self.sort.name in indexed and limited and not self.extremes:
            self.driver = "ordered"

    def run(self, table: Table, filters: Mapping[str, Any], lookup: Lookup) -> list[Model]:
        """Evaluate the plan with this call's values."""
        limit = filters.get("_limit")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise QueryError(f"{self.schema.name}: _limit must be a whole number >= 0")
        driver = self.driver
        early = limit if not self.extremes else None
        if driver == "pk" or driver == "eq":
            rows = self._equal(table, filters, lookup)
            if self.rest_conds:
                rows = self.rest(rows, *self._values(self.rest_conds, filters, lookup))
            ordered = False
        elif driver == "range":
            found = self._range(table, filters, lookup)
            if found is None:
                rows, ordered = self._scan(table, filters, lookup, early), False
            else:
                rows, ordered = found
        elif driver == "ordered":
            rows, ordered = self._ordered(table, filters, lookup, limit), True
        elif driver == "scan":
            rows, ordered = self._scan(table, filters, lookup, early), False
        else:  # pk__in, or in on an indexed field
            assert self.drive is not None
            keys = _bind(self.schema, self.drive, filters, lookup)
            if driver == "pks":
                get = table.rows.get
                rows = table.in_order([r for r in map(get, keys) if r is not None])
            else:
                index = table.indexes[self.drive.info.name]
                rows = table.in_order([row for key in keys for row in index.get(key)])
            if self.rest_conds:
                rows = self.rest(rows, *self._values(self.rest_conds, filters, lookup))
            ordered = False
        for cond in self.extremes:
            rows = _extreme(rows, cond)
        if self.sort is not None and not ordered:
            rows = _sorted(rows, self.sort, self.desc)
        if limit is not None and len(rows) > limit:
            del rows[limit:]
        return rows

    def _equal(self, table: Table, filters: Mapping[str, Any], lookup: Lookup) -> list[Model]:
        cond = self.drive
        assert cond is not None
        value = filters[cond.key]
        if type(value) is not cond.info.scalar:
            value = _bind(self.schema, cond, filters, lookup)
        if self.driver == "pk":
            row = table.rows.get(value)
            return [] if row is None else [row]
        found = table.indexes[cond.info.name].buckets.get(value)
        if found is None:
            return []
        if type(found) is dict:
            return table.in_order(list(found.values()))
        return [found]  # type: ignore[list-item]

    def _range(
        self, table: Table, filters: Mapping[str, Any], lookup: Lookup
    ) -> tuple[list[Model], bool] | None:
        """Rows from an index range, or None when a scan will be cheaper."""
        assert self.drive is not None
        index = table.indexes[self.drive.info.name]
        lo = _bind(self.schema, self.lo, filters, lookup) if self.lo else None
        hi = _bind(self.schema, self.hi, filters, lookup) if self.hi else None
        lo_incl = self.lo is not None and self.lo.op == "ge"
        hi_incl = self.hi is not None and self.hi.op == "le"
        ordered = self.sort is not None and self.sort.name == index.name
        if not ordered and index.settle().estimate(lo, lo_incl, hi, hi_incl) * 8 > len(table.rows):
            return None  # most of the table: scanning beats putting rows back in order
        found = index.rows(table, lo, lo_incl, hi, hi_incl, ordered and self.desc)
        values = self._values(self.rest_conds, filters, lookup)
        if not ordered:
            return table.in_order(self.rest(found, *values)), False
        limit = filters.get("_limit") if not self.extremes else None
        if limit is not None and not self.rest_conds:
            desc = self.desc
            return index.take(table, lo, lo_incl, hi, hi_incl, desc, limit), True
        return self._take(self.rest_lazy, found, values, limit), True

    def _ordered(
        self, table: Table, filters: Mapping[str, Any], lookup: Lookup, limit: int | None
    ) -> list[Model]:
        """Walk the sort field's index in order, stopping after ``limit`` matches."""
        assert self.sort is not None
        index = table.indexes[self.sort.name]
        found = index.rows(table, None, True, None, True, self.desc)
        if None in index.buckets:
            nones = iter(table.in_order(index.get(None)))
            found = _chain(found, nones) if self.desc else _chain(nones, found)
        values = self._values(self.rest_conds, filters, lookup)
        return self._take(self.rest_lazy, found, values, limit)

    def _scan(
        self, table: Table, filters: Mapping[str, Any], lookup: Lookup, early: int | None
    ) -> list[Model]:
        values = self._values(self.conds, filters, lookup)
        if early is not None and self.sort is None:
            return self._take(self.scan_lazy, table.rows.values(), values, early)
        return self.scan(table.rows.values(), *values)

    def _values(self, conds: list[_Cond], filters: Mapping[str, Any], lookup: Lookup) -> list[Any]:
        return [_bind(self.schema, c, filters, lookup) for c in conds]

    @staticmethod
    def _take(
        lazy: Callable[..., Iterator[Model]], rows: Iterable[Model], values: list[Any], n: Any
    ) -> list[Model]:
        return list(lazy(rows, *values) if n is None else islice(lazy(rows, *values), n))


def _chain(first: Iterator[Model], second: Iterator[Model]) -> Iterator[Model]:
    yield from first
    yield from second


def _extreme(rows: list[Model], cond: _Cond) -> list[Model]:
    get = attrgetter(cond.info.name)
    present = [v for v in map(get, rows) if v is not None]
    if not present:
        return []
    best = max(present) if cond.op == "max" else min(present)
    return [row for row in rows if get(row) == best]


def _sorted(rows: list[Model], info: FieldInfo, desc: bool) -> list[Model]:
    """Sort stably by one field; None sorts first ascending and last descending (as SQL)."""
    get = attrgetter(info.name)
    if info.optional:
        nones = [row for row in rows if get(row) is None]
        rest = [row for row in rows if get(row) is not None]
        rest.sort(key=get, reverse=desc)
        return rest + nones if desc else nones + rest
    rows.sort(key=get, reverse=desc)
    return rows


# --- parsing -------------------------------------------------------------------------


def _parse(schema: Schema, key: str, lookup: Lookup) -> tuple[FieldInfo, str, str | None]:
    """Read one filter key: (field, operator, rest of the key when it follows a reference)."""
    name, _, rest = key.partition("__")
    info = schema.fields.get(name)
    if info is None:
        raise QueryError(f"{schema.name} has no field {name!r} (in filter {key!r})")
    if not rest:
        return info, "eq", None
    if info.ref is not None:
        target = lookup(info.ref).schema
        head = rest.partition("__")[0]
        if head in target.fields:  # a field of the referenced model wins over an operator
            _parse(target, rest, lookup)  # fails now on an unknown name further along
            return info, "sub", rest
        if rest not in OPERATORS:
            raise QueryError(
                f"{target.name} has no field {head!r}, and {rest!r} is not an operator "
                f"(in filter {key!r})"
            )
    elif rest not in OPERATORS:
        raise QueryError(
            f"unknown operator {rest!r} in filter {key!r} on {schema.name}.{name} "
            f"(operators: {', '.join(sorted(OPERATORS))})"
        )
    _check_op(schema, info, rest, key)
    return info, rest, None


def _check_op(schema: Schema, info: FieldInfo, op: str, key: str) -> None:
    where = f"{schema.name}.{info.name}"
    if op in _RANGE or op in ("max", "min"):
        if not info.orderable:
            raise QueryError(f"{key}: {op} needs an ordered field; {where} has type {info.label}")
    elif op == "re":
        if info.scalar is not str:
            raise QueryError(f"{key}: re needs a text field; {where} has type {info.label}")
    elif op == "f" and info.scalar is not None and info.scalar is not str:
        raise QueryError(
            f"{key}: f needs a text or container field; {where} has type {info.label}"
        )


def _bind(schema: Schema, cond: _Cond | None, filters: Mapping[str, Any], lookup: Lookup) -> Any:
    """Check one condition's value for this call and convert it to what the test uses."""
    assert cond is not None
    info, op, key = cond.info, cond.op, cond.key
    if op == "sub":
        assert info.ref is not None
        target = lookup(info.ref)
        found = select(target, {rest: filters[k] for k, rest in cond.subs}, lookup)
        return {row.pk for row in found}
    value = filters[key]
    if op in ("eq", "ne"):
        return _coerce(schema, info, value, key, info.optional)
    if op in _RANGE:
        return _coerce(schema, info, value, key, False)
    if op == "f":
        if info.scalar is str and not isinstance(value, str):
            raise QueryError(f"{schema.name}.{key}: expected str, got {type(value).__name__}")
        return value
    if op == "re":
        try:
            return re.compile(value).search
        except (re.error, TypeError) as exc:
            raise QueryError(f"{schema.name}.{key}: not a regular expression: {exc}") from None
    # in / nin
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise QueryError(
            f"{schema.name}.{key}: expected a list, tuple or set, got {type(value).__name__}"
        )
    items = [_coerce(schema, info, item, key, info.optional) for item in value]
    try:
        return frozenset(items)
    except TypeError:
        return tuple(items)


def _coerce(schema: Schema, info: FieldInfo, value: Any, key: str, none_ok: bool) -> Any:
    if isinstance(value, Model) and (info.ref is not None or info.name == "pk"):
        value = value.pk
    if type(value) is info.scalar or (value is None and none_ok):
        return value
    tp = info.type if none_ok or info.scalar is None else info.scalar
    try:
        return msgspec.convert(value, tp)
    except msgspec.ValidationError:
        expected = info.label if none_ok else info.label.removesuffix(" | None")
        raise QueryError(
            f"{schema.name}.{key}: expected {expected}, got {type(value).__name__}"
        ) from None


# --- the test function ----------------------------------------------------------------


def _compile(
    conds: list[_Cond],
) -> tuple[Callable[..., list[Model]], Callable[..., Iterator[Model]]]:
    """Build ``f(rows, *values)`` returning the rows that pass every condition.

    Generated source, because one comprehension with the tests inlined runs several
    times faster than calling a predicate per row. Names are model field names
    (identifiers, checked at registration) and values are passed as arguments.
    """
    if not conds:
        return (lambda rows: list(rows)), (lambda rows: iter(rows))
    args = [f"v{i}" for i in range(len(conds))]
    test = " and ".join(_expr(cond, arg) for cond, arg in zip(conds, args, strict=True))
    params = ", ".join(args)
    source = (
        f"def now(rows, {params}):\n    return [r for r in rows if {test}]\n"
        f"def lazy(rows, {params}):\n    return (r for r in rows if {test})\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "<lexicons query>", "exec"), namespace)
    return namespace["now"], namespace["lazy"]


def _expr(cond: _Cond, v: str) -> str:
    info, op = cond.info, cond.op
    field = f"r.{info.name}"
    if op == "sub":
        if info.ref_kind == "one":
            return f"{field} in {v}"
        items = field if info.ref_kind == "list" else f"{field}.values()"
        test = f"not {v}.isdisjoint({items})"
    elif op in _CMP:
        test = f"{field} {_CMP[op]} {v}"
        if op in ("eq", "ne") or not info.optional:
            return test
    elif op == "in":
        return f"{field} in {v}"
    elif op == "nin":
        return f"{field} not in {v}"
    elif op == "f":
        test = f"{v} in {field}"
    else:  # re
        test = f"{v}({field}) is not None"
    return f"({field} is not None and {test})" if info.optional else test
