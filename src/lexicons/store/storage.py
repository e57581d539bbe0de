"""Persistence: JSON files for ``save()``/``load()``, and the SQLite file of durable mode.

Both hold each row as the JSON msgspec writes for the model, so a value round-trips
exactly (sets, datetimes with their offset, big integers, nested containers).

The durable file is ``<data>/lexicons.sqlite3``: one table per model with columns
``seq`` (creation order, the rowid), ``pk`` and ``data`` (the row as JSON text). Each
``commit()`` writes every change since the last one in a single transaction, in WAL
mode; a crash loses at most what was never committed, and never half a row.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from ..errors import IntegrityError, StorageError
from .indexes import Table
from .models import Model, Schema, copy_value

__all__ = ["FILE_NAME", "DurableStore", "load_json", "migrate_json", "save_json"]

log = logging.getLogger("lexicons.database")

#: The durable store's file name inside the data directory.
FILE_NAME = "lexicons.sqlite3"
_APPLICATION_ID = 0x4C584442  # "LXDB": marks the file as ours
_FORMAT = 1  # PRAGMA user_version
_MIGRATE = "if the model changed, run `python app.py migrate`"
_encode = msgspec.json.Encoder().encode


# --- JSON files ---------------------------------------------------------------------


def save_json(files: Mapping[Path, Iterable[Model]]) -> None:
    """Write each file's rows as an indented JSON array, all or nothing.

    Every file is written to a temporary name and flushed to disk first; only when all
    are written are they renamed into place, so a full disk or a crash while writing
    leaves every old file as it was (a crash among the renames, a few microseconds,
    can leave some files new and others old, each whole).
    """
    written: list[tuple[Path, Path]] = []
    try:
        for path, rows in files.items():
            try:
                body = msgspec.json.format(_encode(list(rows)), indent=2) + b"\n"
            except (TypeError, ValueError) as exc:  # a str with a lone surrogate, say
                raise StorageError(f"{path}: a row cannot be written as JSON: {exc}") from exc
            tmp = path.with_name(f".{path.name}.tmp")
            written.append((tmp, path))
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as file:
                file.write(body)
                file.flush()
                os.fsync(file.fileno())
    except OSError as exc:
        for tmp, _ in written:
            with contextlib.suppress(OSError):  # a read-only disk refuses even this
                tmp.unlink(missing_ok=True)
        raise StorageError(f"{written[-1][1]}: cannot write: {exc}") from exc
    for tmp, path in written:
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"{path}: cannot write: {exc}") from exc
    for folder in {path.parent for _, path in written}:
        _sync_directory(folder)


def _sync_directory(folder: Path) -> None:
    """Make the renames in ``folder`` durable (where the platform allows it)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened, renames are durable there
    try:
        os.fsync(handle)
    except OSError as exc:
        raise StorageError(f"{folder}: cannot write: {exc}") from exc
    finally:
        os.close(handle)


def _read(path: Path) -> bytes | None:
    """A data file's bytes; None when there is no file, StorageError when unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"{path}: cannot read: {exc}") from exc


def load_json(path: Path, schema: Schema) -> list[Model] | None:
    """Read and check a file written by :func:`save_json`; None when there is no file."""
    raw = _read(path)
    if raw is None:
        return None
    try:
        rows: list[Model] = msgspec.json.decode(raw, type=list[schema.cls])  # type: ignore[name-defined]
    except msgspec.ValidationError as exc:
        raise StorageError(
            f"{path}: does not match model {schema.name}: {exc}; {_MIGRATE}"
        ) from None
    except msgspec.DecodeError as exc:
        raise StorageError(f"{path}: not valid JSON: {exc}") from None
    _check_rows(str(path), schema, rows)
    return rows


def migrate_json(path: Path, schema: Schema) -> str | None:
    """Bring one model's JSON file to the current fields; returns a summary line."""
    raw = _read(path)
    if raw is None:
        return None
    try:
        objects = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise StorageError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(objects, list):
        raise StorageError(f"{path}: expected a JSON array of rows")
    changes = _Changes()
    rows = [_upgrade(f"{path}: row {i}", obj, schema, changes) for i, obj in enumerate(objects)]
    _check_rows(str(path), schema, rows)
    if changes:
        save_json({path: rows})
    return f"{path}: {len(rows)} rows{changes}"


class _Changes:
    """What migrating one model's rows changed: fields added, removed, filled in."""

    __slots__ = ("added", "removed", "filled")

    def __init__(self) -> None:
        self.added: set[str] = set()
        self.removed: set[str] = set()
        #: New fields without a default, and the empty value they were given.
        self.filled: dict[str, Any] = {}

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)

    def __str__(self) -> str:
        parts = []
        if self.added:
            parts.append("added " + ", ".join(sorted(self.added)))
        if self.removed:
            parts.append("removed " + ", ".join(sorted(self.removed)))
        for name, value in sorted(self.filled.items()):
            parts.append(f"{name} has no default: filled with {value!r}")
        return f" ({'; '.join(parts)})" if parts else " (already current)"


def _upgrade(where: str, obj: Any, schema: Schema, changes: _Changes) -> Model:
    """One stored row to the current model: drop removed fields, default new ones, check.

    A new field without a default gets its type's empty value (``""``, ``0``, ``[]``,
    ``None``...), as the original's migrate did; one whose type has none (a datetime,
    a reference) cannot be filled in and fails, naming it.
    """
    if not isinstance(obj, dict):
        raise StorageError(f"{where}: expected a JSON object")
    gone = obj.keys() - schema.names
    for name in gone:
        del obj[name]
    changes.removed |= gone
    new = schema.names - obj.keys()
    changes.added |= new
    for name in new:
        info = schema.fields[name]
        if info.required and info.blank is not msgspec.NODEFAULT:
            obj[name] = copy_value(info.blank)
            changes.filled[name] = info.blank
    try:
        return msgspec.convert(obj, schema.cls)
    except msgspec.ValidationError as exc:
        raise StorageError(
            f"{where}: cannot convert to model {schema.name}: {exc} "
            "(a new field of this type needs a default; a changed type needs the data "
            "changed by hand)"
        ) from None


def _check_rows(where: str, schema: Schema, rows: list[Model]) -> None:
    """Rows read back: each checked as a new row would be, and no pk twice."""
    seen: set[str] = set()
    for row in rows:
        try:
            schema.verify(row)
        except IntegrityError as exc:
            raise StorageError(f"{where}: row {row.pk!r}: {exc}") from None
        if row.pk in seen:
            raise StorageError(f"{where}: {schema.name} pk {row.pk!r} is repeated")
        seen.add(row.pk)


# --- the durable SQLite store ---------------------------------------------------------


class DurableStore:
    """The SQLite file behind durable mode: load tables at start, write changes at commit.

    The file is opened in exclusive locking mode, so a second process cannot open the
    same data directory and quietly diverge from the first.
    """

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._conn: sqlite3.Connection | None = None

    def _fail(self, doing: str, exc: BaseException) -> StorageError:
        name = getattr(exc, "sqlite_errorname", "")
        hint = ""
        if "locked" in str(exc):
            hint = " (another process has it open: durable mode allows one process per file)"
        elif name == "SQLITE_FULL":
            hint = " (the disk is full: writes fail until space is freed)"
        elif name.startswith(("SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN")):
            hint = " (the file or its directory cannot be written: read-only or failing)"
        return StorageError(f"{self.path}: cannot {doing}: {exc}{hint}")

    def open(self) -> None:
        """Open or create the file and check it is a lexicons store of a known format."""
        if self.synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StorageError(f"{self.path}: synchronous must be NORMAL, FULL, EXTRA or OFF")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=1.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._fail("open the durable store", exc) from exc
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id != _APPLICATION_ID and (app_id or tables):
                raise StorageError(f"{self.path}: not a lexicons data file; it was left untouched")
            if version > _FORMAT:
                raise StorageError(f"{self.path}: written by a newer lexicons (format {version})")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: journal mode %s (WAL unavailable here)", self.path, mode)
            conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            # Writing the header takes the exclusive lock now, not at the first commit.
            conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={_FORMAT}")
        except sqlite3.Error as exc:
            conn.close()
            raise self._fail("open the durable store", exc) from exc
        except StorageError:
            conn.close()
            raise
        self._conn = conn

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (StorageError when closed)."""
        if self._conn is None:
            raise StorageError(f"{self.path}: the durable store is not open")
        return self._conn

    def load(self, schema: Schema) -> list[tuple[int, Model]]:
        """Create the model's table if new, and return its rows as (seq, row)."""
        decode = msgspec.json.Decoder(schema.cls).decode
        name = schema.name
        rows: list[tuple[int, Model]] = []
        try:
            self.conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{name}" '
                "(seq INTEGER PRIMARY KEY, pk TEXT NOT NULL, data TEXT NOT NULL)"
            )
            for seq, data in self.conn.execute(f'SELECT seq, data FROM "{name}" ORDER BY seq'):
                try:
                    rows.append((seq, decode(data)))
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    raise StorageError(
                        f"{self.path}: table {name}, row {seq}: {exc}; {_MIGRATE}"
                    ) from None
        except sqlite3.Error as exc:
            raise self._fail(f"read table {name}", exc) from exc
        _check_rows(f"{self.path}: table {name}", schema, [row for _, row in rows])
        return rows

    def commit(self, tables: Iterable[Table]) -> None:
        """Write every change logged on ``tables`` in one transaction, then clear the logs."""
        conn = self.conn
        dirty = [t for t in tables if t.log or t.reset]
        if not dirty:
            return
        try:
            conn.execute("BEGIN")
            for table in dirty:
                name, changes = table.schema.name, table.log or {}
                if table.reset:
                    conn.execute(f'DELETE FROM "{name}"')
                gone = [(seq,) for seq, row in changes.items() if row is None]
                if gone:
                    conn.executemany(f'DELETE FROM "{name}" WHERE seq = ?', gone)
                conn.executemany(
                    f'INSERT OR REPLACE INTO "{name}" (seq, pk, data) VALUES (?, ?, ?)',
                    _records(name, changes),
                )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abort()
            raise self._fail("write", exc) from exc
        except StorageError:
            self._abort()
            raise
        for table in dirty:
            table.committed()

    def _abort(self) -> None:
        """Roll back a transaction that failed; the file keeps the last commit."""
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # SQLite rolls back on its own when it must
            log.warning("%s: rollback after a failed write: %s", self.path, exc)

    def migrate(self, schemas: Iterable[Schema]) -> list[str]:
        """Bring every model's table to the current fields, in one transaction."""
        conn, lines = self.conn, []
        known = {s.name: s for s in schemas}
        try:
            names = [
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            conn.execute("BEGIN")
            for name in names:
                schema = known.get(name)
                if schema is None:
                    lines.append(f"{self.path}: table {name} has no model (left unchanged)")
                    continue
                changes = _Changes()
                stored = conn.execute(f'SELECT seq, data FROM "{name}" ORDER BY seq').fetchall()
                where = f"{self.path}: table {name}"
                rows = [
                    (seq, _upgrade(f"{where}, row {seq}", _json(data), schema, changes))
                    for seq, data in stored
                ]
                _check_rows(where, schema, [row for _, row in rows])
                if changes:
                    conn.executemany(
                        f'UPDATE "{name}" SET pk = ?, data = ? WHERE seq = ?',
                        [(row.pk, _encode(row).decode(), seq) for seq, row in rows],
                    )
                lines.append(f"{self.path}: {name}: {len(rows)} rows{changes}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._fail("migrate", exc) from exc
        except StorageError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return lines

    def close(self) -> None:
        """Close the file (SQLite folds the WAL back into it)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error as exc:  # pragma: no cover - close rarely fails
                raise self._fail("close", exc) from exc
            finally:
                self._conn = None


def _records(name: str, changes: dict[int, Model | None]) -> list[tuple[int, str, str]]:
    """``(seq, pk, JSON)`` of the rows written since the last commit."""
    try:
        return [
            (seq, row.pk, _encode(row).decode()) for seq, row in changes.items() if row is not None
        ]
    except (TypeError, ValueError) as exc:  # UnicodeError is a ValueError
        raise StorageError(f"table {name}: a row cannot be written as JSON: {exc}") from exc


def _json(data: str) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise StorageError(f"a stored row is not valid JSON: {exc}") from None
