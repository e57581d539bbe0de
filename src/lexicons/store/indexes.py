"""In-memory tables and their indexes.

A :class:`Table` keeps one model's rows in a dict by pk (O(1) ``get``), in creation
order, with a creation number per row so that rows found through an index can be put
back in that order. Rows are updated in place, so an index holds rows, not pks, and
needs no change unless an indexed value changes.

An indexed field has a :class:`FieldIndex`: a dict from value to rows for equality, and
the distinct values in a :class:`SortedKeys` for ranges and ordering, each value kept
next to its rows so that reading a range needs no hashing.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any

from .models import Model, Schema

__all__ = ["FieldIndex", "SortedKeys", "Table"]

_pk = attrgetter("pk")

#: What an index keeps for one value: the row, or ``{pk: row}`` for several (or None
#: in :class:`SortedKeys` once no row holds the value any more).
Holder = Model | dict[str, Model] | None


class SortedKeys:
    """Distinct values kept sorted in chunks, each with its holder, cheap to change.

    One sorted list would move ~800 KB per insert at 100k values; chunks of at most
    ``2 * LOAD`` values with a list of their maxima keep each insert to a short move.
    """

    LOAD = 512
    __slots__ = ("_lists", "_vals", "_maxes", "_len")

    def __init__(self) -> None:
        self._lists: list[list[Any]] = []
        self._vals: list[list[Holder]] = []
        self._maxes: list[Any] = []
        self._len = 0

    @classmethod
    def of(cls, keys: list[Any], vals: list[Holder]) -> SortedKeys:
        """Build from distinct values already sorted, with their holders."""
        new = cls()
        step = cls.LOAD
        new._lists = [keys[i : i + step] for i in range(0, len(keys), step)]
        new._vals = [vals[i : i + step] for i in range(0, len(vals), step)]
        new._maxes = [chunk[-1] for chunk in new._lists]
        new._len = len(keys)
        return new

    def __len__(self) -> int:
        return self._len

    def _find(self, value: Any) -> tuple[int, int] | None:
        maxes = self._maxes
        i = bisect_left(maxes, value)
        if i == len(maxes):
            return None
        chunk = self._lists[i]
        j = bisect_left(chunk, value)
        return (i, j) if chunk[j] == value else None

    def __contains__(self, value: Any) -> bool:
        return self._find(value) is not None

    def set(self, value: Any, holder: Holder) -> bool:
        """Give a present value a new holder; False when the value is not present."""
        found = self._find(value)
        if found is None:
            return False
        self._vals[found[0]][found[1]] = holder
        return True

    def add(self, value: Any, holder: Holder) -> None:
        """Insert a value that is not present, with its holder."""
        maxes, lists, vals = self._maxes, self._lists, self._vals
        self._len += 1
        if not maxes:
            lists.append([value])
            vals.append([holder])
            maxes.append(value)
            return
        i = bisect_left(maxes, value)
        if i == len(maxes):
            i -= 1
            lists[i].append(value)
            vals[i].append(holder)
            maxes[i] = value
        else:
            j = bisect_left(lists[i], value)
            lists[i].insert(j, value)
            vals[i].insert(j, holder)
        if len(lists[i]) > 2 * self.LOAD:
            half = self.LOAD
            keys, held = lists[i], vals[i]
            lists[i : i + 1] = [keys[:half], keys[half:]]
            vals[i : i + 1] = [held[:half], held[half:]]
            maxes[i : i + 1] = [keys[half - 1], keys[-1]]

    def _bounds(
        self, lo: Any, lo_incl: bool, hi: Any, hi_incl: bool
    ) -> tuple[int, int, int, int] | None:
        """(chunk, offset) of the first value in range and of the end (exclusive)."""
        lists, maxes = self._lists, self._maxes
        if not maxes:
            return None
        if lo is None:
            ci, vi = 0, 0
        else:
            find = bisect_left if lo_incl else bisect_right
            ci = find(maxes, lo)
            if ci == len(maxes):
                return None
            vi = find(lists[ci], lo)
        cj, vj = len(lists) - 1, len(lists[-1])
        if hi is not None:
            find = bisect_right if hi_incl else bisect_left
            c = find(maxes, hi)
            if c < len(maxes):
                cj, vj = c, find(lists[c], hi)
        if (ci, vi) >= (cj, vj):
            return None
        return ci, vi, cj, vj

    def parts(
        self,
        lo: Any,
        lo_incl: bool,
        hi: Any,
        hi_incl: bool,
        reverse: bool = False,
        step: int = 64,
        keys: bool = False,
    ) -> Iterator[list[Any]]:
        """The holders (or values, with ``keys``) between ``lo`` and ``hi`` (None: no
        bound) in lists of at most ``step``, ascending, or descending with each reversed.

        Short lists on purpose: copying a slice touches every item's reference count,
        and at 100k rows those objects are out of the CPU cache.
        """
        bounds = self._bounds(lo, lo_incl, hi, hi_incl)
        if bounds is None:
            return
        ci, vi, cj, vj = bounds
        lists = self._lists if keys else self._vals
        for c in range(cj, ci - 1, -1) if reverse else range(ci, cj + 1):
            chunk = lists[c]
            start, stop = vi if c == ci else 0, vj if c == cj else len(chunk)
            if reverse:
                for i in range(stop, start, -step):
                    yield chunk[max(i - step, start) : i][::-1]
            else:
                for i in range(start, stop, step):
                    yield chunk[i : min(i + step, stop)]

    def range(
        self, lo: Any, lo_incl: bool, hi: Any, hi_incl: bool, reverse: bool = False
    ) -> Iterator[Any]:
        """The values between ``lo`` and ``hi``, one by one (see :meth:`parts`)."""
        for part in self.parts(lo, lo_incl, hi, hi_incl, reverse, keys=True):
            yield from part

    def estimate(self, lo: Any, lo_incl: bool, hi: Any, hi_incl: bool) -> int:
        """Roughly how many values a range holds (to whole chunks), cheaply."""
        bounds = self._bounds(lo, lo_incl, hi, hi_incl)
        if bounds is None:
            return 0
        return sum(len(self._lists[c]) for c in range(bounds[0], bounds[2] + 1))


class FieldIndex:
    """Rows by value for one field: a dict for equality, sorted distinct values for ranges.

    A value held by one row maps to the row itself; by several, to a ``{pk: row}`` dict
    (most indexed fields are unique-ish, and a dict per value would cost ~200 bytes).
    The sorted values are brought up to date only when a range or ordered query needs
    them: a write appends a new value to ``pending``, so a create costs a list append and
    a bulk load one sort instead of one sorted insert per row.
    """

    __slots__ = ("name", "buckets", "keys", "pending", "stale")

    def __init__(self, name: str) -> None:
        self.name = name
        self.buckets: dict[Any, Model | dict[str, Model]] = {}
        #: Sorted distinct values and holders; a value no row holds has holder None.
        self.keys = SortedKeys()
        #: Values that got a bucket since the last settle (some may be gone again).
        self.pending: list[Any] = []
        #: How many values in ``keys`` lost their rows since the last rebuild.
        self.stale = 0

    def add(self, value: Any, row: Model) -> None:
        """Record that ``row`` holds ``value``."""
        bucket = self.buckets.setdefault(value, row)
        if bucket is row:
            if value is not None:
                self.pending.append(value)
        elif type(bucket) is dict:
            bucket[row.pk] = row
        else:
            assert isinstance(bucket, Model)
            bucket = self.buckets[value] = {bucket.pk: bucket, row.pk: row}
            if value is not None:
                self.keys.set(value, bucket)

    def discard(self, value: Any, row: Model) -> None:
        """Forget that ``row`` holds ``value``."""
        bucket = self.buckets[value]
        if type(bucket) is dict:
            del bucket[row.pk]
            if bucket:
                return
        del self.buckets[value]
        if value is not None and self.keys.set(value, None):
            self.stale += 1

    def get(self, value: Any) -> list[Model]:
        """The rows holding ``value``, in no particular order."""
        bucket = self.buckets.get(value)
        if bucket is None:
            return []
        if type(bucket) is dict:
            return list(bucket.values())
        return [bucket]  # type: ignore[list-item]

    def settle(self) -> SortedKeys:
        """Bring the sorted values up to date, and return them."""
        pending, keys, buckets = self.pending, self.keys, self.buckets
        if len(pending) + self.stale > (len(keys) >> 3) + 32:
            items = sorted(
                (item for item in buckets.items() if item[0] is not None), key=itemgetter(0)
            )
            self.keys = keys = SortedKeys.of([k for k, _ in items], [v for _, v in items])
            self.stale = 0
        elif pending:
            for value in pending:
                holder = buckets.get(value)
                if holder is not None and not keys.set(value, holder):
                    keys.add(value, holder)
        pending.clear()
        return keys

    def rows(
        self, table: Table, lo: Any, lo_incl: bool, hi: Any, hi_incl: bool, reverse: bool
    ) -> Iterator[Model]:
        """Rows with values in a range, by value; rows sharing a value in creation order."""
        for part in self.settle().parts(lo, lo_incl, hi, hi_incl, reverse):
            for holder in part:
                if type(holder) is dict:
                    yield from table.in_order(list(holder.values()))
                elif holder is not None:  # None: a value no row holds any more
                    yield holder

    def take(
        self, table: Table, lo: Any, lo_incl: bool, hi: Any, hi_incl: bool, reverse: bool, n: int
    ) -> list[Model]:
        """The first ``n`` rows of :meth:`rows`, without a generator step per row."""
        out: list[Model] = []
        for part in self.settle().parts(lo, lo_incl, hi, hi_incl, reverse, max(n, 1)):
            for holder in part:
                if type(holder) is dict:
                    out += table.in_order(list(holder.values()))
                elif holder is not None:
                    out.append(holder)
            if len(out) >= n:
                del out[n:]
                break
        return out

    def comparable(self, value: Any) -> bool:
        """Whether ``value`` can be ordered with the values held (naive vs aware datetimes)."""
        if value is None:
            return True
        for key in self.buckets:
            if key is not None:
                try:
                    _ = value < key
                except TypeError:
                    return False
                return True
        return True


class Table:
    """One model's rows: by pk, in creation order, with the indexes of its fields.

    ``seqs`` numbers rows in creation order (the SQLite rowid in durable mode); rows
    created since it was last needed wait in ``fresh`` and are numbered in bulk by
    :meth:`numbered` (one C loop instead of a dict insertion per create). ``log``
    collects the rows changed since the last commit (``None`` until durable), and
    ``undo`` what those changes replaced, so that a failed commit can be rolled back.
    """

    __slots__ = (
        "schema",
        "rows",
        "seqs",
        "fresh",
        "next_seq",
        "indexes",
        "adding",
        "dated",
        "plans",
        "log",
        "reset",
        "undo",
        "committed_seq",
    )

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.rows: dict[str, Model] = {}
        self.seqs: dict[str, int] = {}
        #: Rows created since ``seqs`` was last brought up to date, numbered from
        #: ``next_seq - len(fresh)`` on.
        self.fresh: list[Model] = []
        self.next_seq = 1
        self.indexes: dict[str, FieldIndex] = {}
        #: Per index: (field, its buckets' setdefault, its pending list's append, the
        #: index), bound once so that adding a row looks nothing up (see :meth:`insert`).
        self.adding: tuple[tuple[str, Any, Any, FieldIndex], ...] = ()
        self._new_indexes()
        #: Indexed datetime fields: naive and aware values cannot share their sorted keys.
        self.dated = tuple(n for n in schema.indexed if schema.fields[n].scalar is datetime)
        #: Compiled query plans by filter shape (see :mod:`lexicons.store.query`).
        self.plans: dict[tuple[str, ...], Any] = {}
        self.log: dict[int, Model | None] | None = None
        #: True when the durable copy must be rewritten whole (after ``load()``).
        self.reset = False
        #: Committed rows changed or deleted since the last commit: seq -> (the row, the
        #: values its changed fields had). Rows numbered from ``committed_seq`` on are
        #: new since then and need no entry: rolling back removes them.
        self.undo: dict[int, tuple[Model, dict[str, Any]]] = {}
        self.committed_seq = 1

    def insert(self, row: Model, seq: int | None = None) -> None:
        """Add a new row (its pk is not present)."""
        pk = row.pk
        if seq is None:
            seq = self.next_seq
            self.next_seq = seq + 1
            self.fresh.append(row)
        else:
            self.numbered()[pk] = seq
            if seq >= self.next_seq:
                self.next_seq = seq + 1
        self.rows[pk] = row
        for name, setdefault, pending, index in self.adding:
            # FieldIndex.add, inlined: this loop runs for every created row.
            value = getattr(row, name)
            if setdefault(value, row) is not row:
                index.add(value, row)  # a value other rows hold
            elif value is not None:
                pending(value)
        if self.log is not None:
            self.log[seq] = row

    def update(self, row: Model, values: dict[str, Any]) -> None:
        """Set checked ``values`` on a stored row, in place, moving it between index buckets."""
        if self.log is not None:
            seq = self.numbered()[row.pk]
            if seq < self.committed_seq and not self.reset:
                old = self.undo.setdefault(seq, (row, {}))[1]
                for name in values:
                    if name not in old:
                        old[name] = getattr(row, name)
        moved = []
        for name, index in self.indexes.items():
            if name in values:
                old, new = getattr(row, name), values[name]
                if not (old == new and type(old) is type(new)):
                    index.discard(old, row)
                    moved.append((index, new))
        setters = self.schema.setters
        for name, value in values.items():
            setters[name](row, value)
        for index, new in moved:
            index.add(new, row)
        if self.log is not None:
            self.log[seq] = row

    def delete(self, pk: str) -> Model | None:
        """Remove the row ``pk``; returns it, or None when it is not there."""
        row = self.rows.pop(pk, None)
        if row is None:
            return None
        seq = self.numbered().pop(pk)
        for name, index in self.indexes.items():
            index.discard(getattr(row, name), row)
        if self.log is not None:
            self.log[seq] = None
            if seq < self.committed_seq and not self.reset:
                self.undo.setdefault(seq, (row, {}))
        return row

    def clear(self) -> None:
        """Drop every row (before a load replaces the table)."""
        if self.log is not None and not self.reset:
            seqs = self.numbered()
            for pk, row in self.rows.items():
                seq = seqs[pk]
                if seq < self.committed_seq:
                    self.undo.setdefault(seq, (row, {}))
        self.rows.clear()
        self.seqs.clear()
        self.fresh.clear()
        self.next_seq = 1
        self._new_indexes()
        if self.log is not None:
            self.log.clear()
            self.reset = True

    def numbered(self) -> dict[str, int]:
        """``seqs``, with the rows created since it was last needed numbered in."""
        fresh = self.fresh
        if fresh:
            next_seq = self.next_seq
            numbers = range(next_seq - len(fresh), next_seq)
            self.seqs.update(zip(map(_pk, fresh), numbers, strict=True))
            fresh.clear()
        return self.seqs

    def _new_indexes(self) -> None:
        self.indexes = {name: FieldIndex(name) for name in self.schema.indexed}
        self.adding = tuple(
            (name, index.buckets.setdefault, index.pending.append, index)
            for name, index in self.indexes.items()
        )

    def committed(self) -> None:
        """The durable copy now holds every change: start a new log."""
        if self.log is not None:
            self.log.clear()
        self.undo.clear()
        self.reset = False
        self.committed_seq = self.next_seq

    def rollback(self) -> None:
        """Undo every change since the last commit, in memory (after a failed commit).

        Rows keep their identity: an updated row gets its old values back in place, a
        deleted one comes back, a new one goes.
        """
        log, self.log = self.log, None  # restoring is not a change to write
        if log is None:
            return
        restored = False
        seqs = self.numbered()
        if self.reset:
            self.rows.clear()
            seqs.clear()
            self._new_indexes()
        else:
            for seq, row in log.items():
                if seq >= self.committed_seq and row is not None and self.rows.get(row.pk) is row:
                    self.delete(row.pk)
        setters = self.schema.setters
        for seq, (row, old) in sorted(self.undo.items()):
            if self.rows.get(row.pk) is row:
                self.update(row, old)
                continue
            for name, value in old.items():
                setters[name](row, value)
            self.insert(row, seq)
            restored = True
        if restored:  # back in creation order, which scans and results rely on
            self.rows = dict(sorted(self.rows.items(), key=lambda item: seqs[item[0]]))
        self.next_seq = self.committed_seq
        self.log = {}
        self.undo.clear()
        self.reset = False

    def in_order(self, rows: list[Model]) -> list[Model]:
        """``rows`` sorted into creation order."""
        if len(rows) > 1:
            seqs = self.numbered()
            rows.sort(key=lambda row: seqs[row.pk])
        return rows
