"""Persistence: JSON save/load and migrate, the durable SQLite store, and a SIGKILL mid-write."""

from __future__ import annotations

import json
import logging
import math
import os
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest
from conftest import SmallDisk
from durable_writer import Entry, expected
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lexicons.errors import StorageError
from lexicons.store.database import Database
from lexicons.store.models import Index, Model, Ref
from lexicons.store.storage import FILE_NAME


class Kind(Model):
    label: str = ""


class Sample(Model):
    text: str = ""
    number: int = 0
    ratio: float = 0.0
    flag: bool = False
    items: list = []
    mapping: dict = {}
    bag: set = set()
    ints: list[int] = []
    scores: dict[str, float] = {}
    tags: set[str] = set()
    keyed: dict[int, list[float | None]] = {}
    when: datetime | None = None
    maybe: str | None = None
    kind: Ref[Kind] | None = None
    kinds: list[Ref[Kind]] = []
    kind_by: dict[str, Ref[Kind]] = {}
    rank: Annotated[int | None, Index] = None


MODELS = [Kind, Sample]

finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers() | finite | st.text(max_size=5)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
zones = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones
).map(lambda moment: moment.replace(fold=0))
fields = st.fixed_dictionaries(
    {},
    optional={
        "text": st.text(),
        "number": st.integers(),
        "ratio": finite,
        "flag": st.booleans(),
        "items": st.lists(json_values, max_size=3),
        "mapping": st.dictionaries(st.text(max_size=4), json_values, max_size=3),
        "bag": st.sets(scalars, max_size=3),
        "ints": st.lists(st.integers(), max_size=3),
        "scores": st.dictionaries(st.text(max_size=4), finite, max_size=3),
        "tags": st.sets(st.text(max_size=4), max_size=3),
        "keyed": st.dictionaries(st.integers(), st.lists(st.none() | finite, max_size=2)),
        "when": st.none() | moments,
        "maybe": st.none() | st.text(max_size=4),
        "kind": st.none() | st.integers(0, 2),
        "kinds": st.lists(st.integers(0, 2), max_size=3),
        "kind_by": st.dictionaries(st.text(max_size=3), st.integers(0, 2), max_size=2),
        "rank": st.none() | st.integers(-5, 5),
    },
)


def fill(db: Database, samples: list[dict[str, Any]]) -> None:
    kinds = [db.create(Kind, label=f"k{i}") for i in range(3)]
    for values in samples:
        values = dict(values)
        for name in ("kind", "kinds", "kind_by"):
            if isinstance(values.get(name), int):
                values[name] = kinds[values[name]]
            elif isinstance(values.get(name), list):
                values[name] = [kinds[i] for i in values[name]]
            elif isinstance(values.get(name), dict):
                values[name] = {key: kinds[i] for key, i in values[name].items()}
        db.create(Sample, **values)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down: -0.0, offsets and int/float count."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Model):
        return all(same(getattr(a, f), getattr(b, f)) for f in a.__struct_fields__)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset() and a.tzinfo == b.tzinfo
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def contents(db: Database) -> list[Model]:
    return [*db.query(Kind), *db.query(Sample)]


def assert_same_rows(a: Database, b: Database) -> None:
    left, right = contents(a), contents(b)
    assert len(left) == len(right)
    for x, y in zip(left, right, strict=True):
        assert same(x, y), (x, y)
    assert (
        a.query(Sample, rank__ge=0, _sort="-rank").pks
        == b.query(Sample, rank__ge=0, _sort="-rank").pks
    )  # the indexes were rebuilt too


# --- JSON files ---------------------------------------------------------------------


def test_save_writes_one_readable_json_file_per_model(tmp_path: Path) -> None:
    db = Database(MODELS, data=tmp_path)
    fill(db, [{"text": "hello", "tags": {"a"}}])
    db.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Kind.json", "Sample.json"]
    text = (tmp_path / "Sample.json").read_text()
    assert text.startswith("[\n  {\n") and '"text": "hello"' in text
    assert json.loads((tmp_path / "Kind.json").read_text())[0]["label"] == "k0"


@settings(max_examples=60, deadline=None)
@given(st.lists(fields, max_size=6))
def test_save_then_load_round_trips_every_type_exactly(samples: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as data:
        db = Database(MODELS, data=data)
        fill(db, samples)
        db.save()
        again = Database(MODELS, data=data)
        again.load()
        assert_same_rows(db, again)


def test_load_checks_every_file_before_changing_any_table(tmp_path: Path) -> None:
    db = Database(MODELS, data=tmp_path)
    fill(db, [{"text": "saved"}])
    db.save()
    db.create(Sample, text="unsaved")
    (tmp_path / "Sample.json").write_text("[{]")
    with pytest.raises(StorageError, match=r"Sample\.json: not valid JSON"):
        db.load()
    assert [s.text for s in db.query(Sample)] == ["saved", "unsaved"]
    (tmp_path / "Sample.json").unlink()
    db.load()  # Kind.json replaces Kind; Sample has no file and is left as it is
    assert len(db.query(Sample)) == 2 and len(db.query(Kind)) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"text": 5}]', r"Sample\.json: does not match model Sample: Expected `str`"),
        ('[{"colour": "red"}]', r"unknown field `colour`.*python app\.py migrate"),
        ('[{"pk": "a"}, {"pk": "a"}]', "Sample pk 'a' is repeated"),
        ('[{"pk": ""}]', r"row '': Sample\.pk: expected a non-empty str"),
        ("{}", "does not match model Sample"),
        ("", "not valid JSON"),
    ],
)
def test_a_bad_json_file_fails_naming_it(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "Sample.json").write_text(content)
    with pytest.raises(StorageError, match=message) as info:
        Database(MODELS, data=tmp_path).load()
    assert str(tmp_path / "Sample.json") in str(info.value)
    assert (tmp_path / "Sample.json").read_text() == content  # never replaced


def versions() -> tuple[type[Model], type[Model], type[Model]]:
    """One model, three times: as first written, changed, and changed with no default."""

    class Gadget(Model):
        name: str = ""
        colour: str = "red"

    first = Gadget

    class Gadget(Model):  # type: ignore[no-redef]
        name: str = ""
        weight: float = 1.5

    changed = Gadget

    class Gadget(Model):  # type: ignore[no-redef]
        serial: int
        name: str = ""

    return first, changed, Gadget


def test_migrate_json_adds_and_drops_fields(tmp_path: Path) -> None:
    first, changed, required = versions()
    old = Database([first], data=tmp_path)
    gadgets = [old.create(first, name=f"g{i}") for i in range(3)]
    old.save()
    new = Database([changed], data=tmp_path)
    with pytest.raises(StorageError, match="unknown field `colour`"):
        new.load()
    summary = new.migrate()
    assert summary == f"{tmp_path / 'Gadget.json'}: 3 rows (added weight; removed colour)"
    new.load()
    assert [(g.pk, g.name, g.weight) for g in new.query(changed)] == [
        (g.pk, g.name, 1.5) for g in gadgets
    ]
    assert "(already current)" in new.migrate()
    assert Database([Kind], data=tmp_path / "empty").migrate().startswith("nothing to migrate")


def test_migrate_fills_a_new_field_without_default_with_its_empty_value(tmp_path: Path) -> None:
    """As the original did: "" for str, 0 for int, [] for a list, None for X | None."""
    first, _, required = versions()
    old = Database([first], data=tmp_path)
    made = old.create(first, name="g")
    old.save()
    summary = Database([required], data=tmp_path).migrate()
    assert summary == (
        f"{tmp_path / 'Gadget.json'}: 1 rows (added serial; removed colour; "
        "serial has no default: filled with 0)"
    )
    new = Database([required], data=tmp_path)
    new.load()
    assert [(g.pk, g.serial, g.name) for g in new.query(required)] == [(made.pk, 0, "g")]

    class Gadget(Model):
        name: str = ""
        serial: int
        tags: list[str]
        kinds: set[int]
        owner: Ref[Kind] | None
        flag: bool

    assert Database([Gadget, Kind], data=tmp_path).migrate() == (
        f"{tmp_path / 'Gadget.json'}: 1 rows (added flag, kinds, owner, tags; "
        "flag has no default: filled with False; kinds has no default: filled with set(); "
        "owner has no default: filled with None; tags has no default: filled with [])"
    )
    loaded = Database([Gadget, Kind], data=tmp_path)
    loaded.load()
    row = loaded.get(Gadget, made.pk)
    assert row is not None
    assert (row.serial, row.tags, row.kinds, row.owner, row.flag) == (0, [], set(), None, False)


class Dated(Model):
    name: str = ""
    since: datetime


class Linked(Model):
    name: str = ""
    since: Ref[Linked]


@pytest.mark.parametrize("model", [Dated, Linked])
def test_migrate_refuses_a_new_field_whose_type_has_no_empty_value(
    tmp_path: Path, model: type[Model]
) -> None:
    (tmp_path / f"{model.__name__}.json").write_text('[{"pk": "a", "name": "old"}]')
    with pytest.raises(StorageError, match="row 0: cannot convert.*`since`.*needs a default"):
        Database([model], data=tmp_path).migrate()


# --- the durable store ----------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # each example opens SQLite files
@given(st.lists(fields, max_size=5), st.lists(st.integers(0, 10), max_size=4))
def test_a_durable_restart_round_trips_every_type_exactly(
    samples: list[dict[str, Any]], drops: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as data:
        db = Database(MODELS, data=data, durable=True)
        db.open()
        fill(db, samples)
        db.commit()
        rows = db.query(Sample)
        for i in drops:
            if rows:
                db.drop(Sample, rows[i % len(rows)])
        db.update(Sample, db.query(Sample, rank__ge=0), maybe="updated", when=None)
        db.close()  # commits what is left
        again = Database(MODELS, data=data, durable=True)
        again.open()
        assert_same_rows(db, again)
        again.create(Kind, label="after a restart")  # numbering goes on after the last row
        again.close()
        third = Database(MODELS, data=data, durable=True)
        with third:
            assert [k.label for k in third.query(Kind)][-1] == "after a restart"


def test_the_durable_file_is_sqlite_in_wal_mode(tmp_path: Path) -> None:
    with Database(MODELS, data=tmp_path / "data", durable=True) as db:
        kind = db.create(Kind, label="x")
        db.commit()
        db.commit()  # nothing new: nothing to do
        assert (tmp_path / "data" / FILE_NAME).exists()
        assert (tmp_path / "data" / f"{FILE_NAME}-wal").exists()
    conn = sqlite3.connect(tmp_path / "data" / FILE_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = conn.execute('SELECT seq, pk, json_extract(data, "$.label") FROM "Kind"').fetchall()
    assert rows == [(1, kind.pk, "x")]
    conn.close()


def test_opening_in_memory_beside_a_durable_file_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Database(MODELS, data=tmp_path, durable=True) as db:
        db.create(Kind)
    with caplog.at_level(logging.WARNING, logger="lexicons.database"):
        Database(MODELS, data=tmp_path).open()
    assert "exists but durable mode is off" in caplog.text


def test_load_in_durable_mode_rewrites_the_durable_tables(tmp_path: Path) -> None:
    source = Database(MODELS, data=tmp_path)
    fill(source, [{"text": "from json"}])
    source.save()
    with Database(MODELS, data=tmp_path, durable=True) as db:
        db.create(Kind, label="replaced by the load")
        db.commit()
        db.load()
    with Database(MODELS, data=tmp_path, durable=True) as db:
        assert [k.label for k in db.query(Kind)] == ["k0", "k1", "k2"]
        assert [s.text for s in db.query(Sample)] == ["from json"]


def test_rows_a_load_dropped_stay_dropped_after_reopen(tmp_path: Path) -> None:
    """The commit after load() rewrites the table whole: no old row comes back."""
    with Database(MODELS, data=tmp_path, durable=True) as db:
        kept = db.create(Kind, label="kept")
        db.save()
        db.create(Kind, label="dropped by the load")
        db.create(Kind, label="this one too")
        db.commit()
        db.load()
        assert [k.pk for k in db.query(Kind)] == [kept.pk]
    with Database(MODELS, data=tmp_path, durable=True) as db:
        assert [(k.pk, k.label) for k in db.query(Kind)] == [(kept.pk, "kept")]


def test_an_update_alone_is_a_change_to_commit(tmp_path: Path) -> None:
    """Each kind of write counts in db.changes and reaches the file at the next commit."""
    with Database(MODELS, data=tmp_path, durable=True) as db:
        row = db.create(Kind, label="before")
        db.commit()
        changes = db.changes
        db.update(Kind, row, label="after")
        assert db.changes > changes
        db.commit()
        changes = db.changes
        db.drop(Kind, db.create(Kind, label="gone"))
        assert db.changes >= changes + 2
    with Database(MODELS, data=tmp_path, durable=True) as db:
        assert [k.label for k in db.query(Kind)] == ["after"]


def test_a_corrupt_durable_file_fails_at_open_naming_it(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(b"this is not a database, but it is someone's data" * 100)
    before = path.read_bytes()
    with pytest.raises(StorageError, match=rf"{path}: cannot open the durable store: .*not a"):
        Database(MODELS, data=tmp_path, durable=True).open()
    assert path.read_bytes() == before


def test_a_corrupt_row_fails_at_open_naming_file_table_and_row(tmp_path: Path) -> None:
    with Database(MODELS, data=tmp_path, durable=True) as db:
        db.create(Kind, label="fine")
    db.close()
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    conn.execute("""UPDATE "Kind" SET data = '{"label": "cut sh'""")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match=r"lexicons\.sqlite3: table Kind, row 1: .*truncated"):
        Database(MODELS, data=tmp_path, durable=True).open()


def test_another_sqlite_file_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="not a lexicons data file; it was left untouched"):
        Database(MODELS, data=tmp_path, durable=True).open()


def test_a_second_process_cannot_open_the_same_durable_file(tmp_path: Path) -> None:
    with Database(MODELS, data=tmp_path, durable=True):
        with pytest.raises(StorageError, match="another process has it open"):
            Database(MODELS, data=tmp_path, durable=True).open()


def test_an_unwritable_data_directory_fails_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match=rf"{blocker / 'data' / FILE_NAME}: cannot open"):
        Database(MODELS, data=blocker / "data", durable=True).open()
    with pytest.raises(StorageError, match="Kind.json: cannot write"):
        Database(MODELS, data=blocker).save()


def test_a_changed_model_needs_migrate_then_opens(tmp_path: Path) -> None:
    first, changed, _ = versions()
    with Database([first], data=tmp_path, durable=True) as db:
        kept = db.create(first, name="kept", colour="blue")
    with pytest.raises(StorageError, match=r"table Gadget, row 1: .*colour.*migrate"):
        Database([changed], data=tmp_path, durable=True).open()
    new = Database([changed], data=tmp_path, durable=True)
    assert new.migrate() == (
        f"{tmp_path / FILE_NAME}: Gadget: 1 rows (added weight; removed colour)"
    )
    with new:
        assert [(g.pk, g.name, g.weight) for g in new.query(changed)] == [(kept.pk, "kept", 1.5)]
        assert "Gadget: 1 rows (already current)" in new.migrate()  # also when open


def test_synchronous_is_checked(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="synchronous must be"):
        Database(MODELS, data=tmp_path, durable=True, synchronous="SOMETIMES").open()
    with Database(MODELS, data=tmp_path, durable=True, synchronous="full") as db:
        db.create(Kind)


# --- a crash in the middle of acknowledged writes loses none of them ------------------


def _lines(proc: subprocess.Popen[str], count: int, seconds: float) -> list[str]:
    """Read ``count`` whole lines from the child's stdout, failing after ``seconds``."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    while len(lines) < count:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
        if not ready:
            raise AssertionError(f"the writer acknowledged {len(lines)} writes in {seconds}s")
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the writer stopped: {proc.wait()}, {lines[-1:]}")
        lines.append(line)
    return lines


@pytest.mark.slow
def test_sigkill_during_acknowledged_writes_loses_none(tmp_path: Path) -> None:
    writer = Path(__file__).parent / "durable_writer.py"
    acknowledged: list[str] = []
    for _ in range(2):  # kill it twice: the second run restarts from the first's file
        proc = subprocess.Popen(
            [sys.executable, str(writer), str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            acknowledged += _lines(proc, 300, seconds=30)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            assert proc.stdout is not None
            acknowledged += proc.stdout.readlines()  # written before the kill landed
        finally:
            if proc.poll() is None:  # pragma: no cover - only when an assertion failed
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
    pks = [line[:-1] for line in acknowledged if line.endswith("\n")]
    db = Database([Entry], data=tmp_path, durable=True)
    with db:  # every stored row decodes whole, or open() would have failed
        rows = list(db.query(Entry))
        assert {row.pk for row in rows} >= set(pks)
        assert len(pks) <= len(rows) <= len(pks) + 2  # at most one unacknowledged per run
        for n, row in enumerate(rows):
            assert msgspec.structs.asdict(row) == {**expected(n), "pk": row.pk}


def test_a_closed_durable_database_opens_again_from_its_file(tmp_path: Path) -> None:
    """A server object served twice in one process (tests, embedders) reopens its store."""
    db = Database(MODELS, data=tmp_path, durable=True)
    with db:
        kept = db.create(Kind, label="kept")
    with pytest.raises(StorageError, match="not open"):
        db.create(Kind, label="lost")
    with db:
        assert [k.pk for k in db.query(Kind)] == [kept.pk]
        db.create(Kind, label="second")
    with Database(MODELS, data=tmp_path, durable=True) as again:
        assert [k.label for k in again.query(Kind)] == ["kept", "second"]


# --- a full disk, a read-only directory ---------------------------------------------------


class Blob(Model):
    label: Annotated[str, Index] = ""
    body: str = ""


def blob_state(db: Database) -> list[tuple[str, str, str]]:
    return [(b.pk, b.label, b.body) for b in db.query(Blob)]


def test_a_full_disk_fails_the_commit_undoes_it_and_recovers(small_disk: SmallDisk) -> None:
    data = small_disk.path / "data"
    db = Database([Blob], data=data, durable=True)
    db.open()
    kept = [db.create(Blob, label=f"k{i}", body="x" * 500) for i in range(20)]
    db.commit()
    acknowledged = blob_state(db)
    small_disk.fill()
    for attempt in range(2):  # retrying while the disk is still full fails the same way
        db.create(Blob, label="new", body="y" * 200_000)
        db.update(Blob, kept[0], label="changed", body="z" * 1000)
        db.drop(Blob, kept[1])
        with pytest.raises(StorageError, match=r"cannot write: .*\(the disk is full"):
            db.commit()
        assert blob_state(db) == acknowledged, attempt  # undone in memory, too
        assert db.get(Blob, kept[0].pk) is kept[0] and kept[0].label == "k0"
        assert db.get(Blob, label="k1") is kept[1]  # indexes restored
        assert db.get(Blob, label="new") is None and db.get(Blob, label="changed") is None
    with pytest.raises(StorageError, match="cannot write"):
        db.save()  # the JSON files fail alike, and leave nothing half-written behind
    assert not [p.name for p in data.iterdir() if p.suffix in (".json", ".tmp")]
    small_disk.free()
    db.create(Blob, label="new", body="y" * 200_000)
    db.update(Blob, kept[0], label="changed")
    db.drop(Blob, kept[1])
    db.commit()
    after = blob_state(db)
    db.close()
    with Database([Blob], data=data, durable=True) as again:
        assert blob_state(again) == after


def test_a_read_only_directory_fails_clearly_and_serves_again_once_writable(
    small_disk: SmallDisk,
) -> None:
    """A store on a read-only mount refuses to open (durable writes could not be kept)."""
    data = small_disk.path / "data"
    with Database([Blob], data=data, durable=True) as db:
        first = db.create(Blob, label="first")
    small_disk.remount("ro")
    try:
        with pytest.raises(StorageError, match=rf"{data / FILE_NAME}: cannot open .*read"):
            Database([Blob], data=data, durable=True).open()
        memory = Database([Blob], data=data)
        memory.create(Blob, label="unsaved")
        with pytest.raises(StorageError, match=r"Blob\.json: cannot write: .*Read-only"):
            memory.save()
    finally:
        small_disk.remount("rw")
    with Database([Blob], data=data, durable=True) as again:
        assert blob_state(again) == [(first.pk, "first", "")]
        again.create(Blob, label="second")
    with Database([Blob], data=data, durable=True) as again:
        assert [b.label for b in again.query(Blob)] == ["first", "second"]


def test_save_replaces_no_file_unless_every_file_is_written(small_disk: SmallDisk) -> None:
    data = small_disk.path
    db = Database([Kind, Blob], data=data)
    db.create(Kind, label="old")
    db.save()
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    assert set(before) == {"Kind.json", "Blob.json"}
    db.create(Kind, label="new")  # Kind.json is written first and fits...
    db.create(Blob, body="b" * 600_000)  # ...Blob.json cannot fit on the disk at all
    with pytest.raises(StorageError, match=r"Blob\.json: cannot write"):
        db.save()
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before  # and no .tmp left


def test_a_value_json_cannot_hold_fails_the_commit_or_save_cleanly(tmp_path: Path) -> None:
    """Text with a lone surrogate comes only from Python code (JSON cannot carry it)."""
    with Database(MODELS, data=tmp_path / "durable", durable=True) as db:
        kept = db.create(Kind, label="kept")
        db.commit()
        db.create(Kind, label="bad \ud800")
        with pytest.raises(StorageError, match="table Kind: a row cannot be written as JSON"):
            db.commit()
        assert [k.pk for k in db.query(Kind)] == [kept.pk]  # rolled back
        db.create(Kind, label="next")
        db.commit()  # the transaction was closed: writing goes on
    memory = Database(MODELS, data=tmp_path / "files")
    memory.create(Kind, label="bad \ud800")
    with pytest.raises(StorageError, match=r"Kind\.json: a row cannot be written as JSON"):
        memory.save()
    assert not list((tmp_path / "files").glob("*"))
