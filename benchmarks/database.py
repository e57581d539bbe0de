"""The built-in store against the standard library's sqlite3, doing the same work in one run.

    python -m benchmarks.database                      # 10,000 and 100,000 rows
    python -m benchmarks.database --rows 50000
    python -m benchmarks.database --quick              # tiny sizes, a couple of seconds

Both sides store the same rows (``email`` and ``score`` indexed on both) and take their
primary keys from the same generator, so the ratio measures the store, not uuid4. sqlite3
runs in ``:memory:`` with statements cached by the module, one transaction for the
inserts; durable rows compare with a sqlite3 file in WAL mode. Times are CPU time of the
process, best of ``--repeat`` runs with the two sides taking turns. Prints a table and
writes the raw numbers to ``benchmarks/results/database.json``. Ratio above 1: lexicons
is faster.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from lexicons.store.database import Database
from lexicons.store.models import Index, Model, Ref, new_pk

__all__ = ["OPERATIONS", "durable_ratios", "main", "run", "table"]

RESULTS = Path(__file__).parent / "results" / "database.json"
#: Timed runs per measurement (the best counts); 1 in quick mode.
_settings = {"repeat": 3}


class User(Model):
    email: Annotated[str, Index]
    name: str
    age: int
    score: Annotated[float, Index]


class Post(Model):
    author: Ref[User]
    topic: Annotated[int, Index]
    title: str


#: Operation name -> the target ratio (sqlite3 time / lexicons time), or None.
OPERATIONS: dict[str, float | None] = {
    "create": 2.0,
    "get by pk": 5.0,
    "equality, indexed": 2.0,
    "equality, not indexed": None,
    "filtered scan, not indexed": 1.0,
    "range on indexed, sorted, limit 10": 2.0,
    "hydrate 1 reference": None,
    "durable create, 1 commit per 1,000": None,
    "durable create, 1 commit each": None,
}

_SCHEMA = [
    "CREATE TABLE user (pk TEXT PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, "
    "age INTEGER NOT NULL, score REAL NOT NULL)",
    "CREATE INDEX user_email ON user (email)",
    "CREATE INDEX user_score ON user (score)",
    "CREATE TABLE post (pk TEXT PRIMARY KEY, author TEXT NOT NULL REFERENCES user (pk), "
    "topic INTEGER NOT NULL, title TEXT NOT NULL)",
    "CREATE INDEX post_topic ON post (topic)",
]
_INSERT_USER = "INSERT INTO user (pk, email, name, age, score) VALUES (?, ?, ?, ?, ?)"


def _pair(
    ours: Callable[[], Any],
    theirs: Callable[[], Any],
    count: int,
    setup_ours: Callable[[], Any] | None = None,
    setup_theirs: Callable[[], Any] | None = None,
) -> tuple[float, float]:
    """Seconds per operation for each side doing ``count`` operations: the best of
    ``repeat`` runs, the two sides taking turns.

    Measured in CPU time of this process (user + system, so SQLite's own work and its
    writes count): on a shared machine, time spent waiting for a core is not the store's.
    """
    best = [float("inf"), float("inf")]
    for _ in range(_settings["repeat"]):
        for side, (work, setup) in enumerate(((ours, setup_ours), (theirs, setup_theirs))):
            if setup is not None:
                setup()
            gc.collect()
            start = time.process_time()
            work()
            best[side] = min(best[side], time.process_time() - start)
    return best[0] / count, best[1] / count


def _users(n: int, rng: random.Random) -> list[tuple[str, str, int, float]]:
    return [
        (f"user{i}@example.com", f"name{i % 1000}", rng.randrange(90), rng.random() * 1000)
        for i in range(n)
    ]


def run_size(n: int, quick: bool = False) -> list[dict[str, Any]]:
    """Time every operation at ``n`` rows; returns one record per operation."""
    rng = random.Random(n)
    users = _users(n, rng)
    reps = 20 if not quick else 3
    lookups = min(n, 20_000 if not quick else 200)
    out: list[dict[str, Any]] = []

    def record(name: str, ours: float, theirs: float | None, note: str = "") -> None:
        target = OPERATIONS[name]
        ratio = theirs / ours if theirs else None
        out.append(
            {
                "operation": name,
                "rows": n,
                "lexicons_us": ours * 1e6,
                "sqlite3_us": theirs * 1e6 if theirs else None,
                "ratio": ratio,
                "target": target,
                "met": None if target is None or ratio is None else ratio >= target,
                "note": note,
            }
        )

    db = Database([User, Post])
    conn = sqlite3.connect(":memory:")

    def fresh_ours() -> None:
        nonlocal db
        db = Database([User, Post])
        db.open()

    def fresh_theirs() -> None:
        nonlocal conn
        conn.close()
        conn = sqlite3.connect(":memory:")
        for statement in _SCHEMA:
            conn.execute(statement)

    def ours_create() -> None:
        create = db.create
        for email, name, age, score in users:
            create(User, email=email, name=name, age=age, score=score)

    def theirs_create() -> None:
        execute = conn.execute
        for email, name, age, score in users:
            execute(_INSERT_USER, (new_pk(), email, name, age, score))
        conn.commit()

    record("create", *_pair(ours_create, theirs_create, n, fresh_ours, fresh_theirs))
    pks = [row.pk for row in db.query(User)]
    sql_pks = [row[0] for row in conn.execute("SELECT pk FROM user")]
    picks = rng.sample(range(n), lookups)

    our_keys = [pks[i] for i in picks]
    their_keys = [sql_pks[i] for i in picks]

    def ours_get() -> None:
        get = db.get
        for pk in our_keys:
            get(User, pk)

    def theirs_get() -> None:
        execute = conn.execute
        for pk in their_keys:
            execute("SELECT * FROM user WHERE pk = ?", (pk,)).fetchone()

    record("get by pk", *_pair(ours_get, theirs_get, lookups))
    emails = [users[i][0] for i in picks]

    def ours_eq() -> None:
        query = db.query
        for email in emails:
            query(User, email=email)

    def theirs_eq() -> None:
        execute = conn.execute
        for email in emails:
            execute("SELECT * FROM user WHERE email = ?", (email,)).fetchall()

    record("equality, indexed", *_pair(ours_eq, theirs_eq, lookups))
    names = [f"name{rng.randrange(1000)}" for _ in range(reps)]

    def ours_eq_scan() -> None:
        for name in names:
            db.query(User, name=name)

    def theirs_eq_scan() -> None:
        for name in names:
            conn.execute("SELECT * FROM user WHERE name = ?", (name,)).fetchall()

    record("equality, not indexed", *_pair(ours_eq_scan, theirs_eq_scan, reps))
    needles = [str(rng.randrange(10, 100)) for _ in range(reps)]

    def ours_scan() -> None:
        for needle in needles:
            db.query(User, age__gt=80, name__f=needle)

    def theirs_scan() -> None:
        for needle in needles:
            conn.execute(
                "SELECT * FROM user WHERE age > ? AND instr(name, ?) > 0", (80, needle)
            ).fetchall()

    record("filtered scan, not indexed", *_pair(ours_scan, theirs_scan, reps))
    starts = [rng.random() * 1000 for _ in range(lookups)]

    def ours_range() -> None:
        query = db.query
        for start in starts:
            query(User, score__ge=start, _sort="score", _limit=10)

    def theirs_range() -> None:
        execute = conn.execute
        for start in starts:
            execute(
                "SELECT * FROM user WHERE score >= ? ORDER BY score LIMIT 10", (start,)
            ).fetchall()

    record("range on indexed, sorted, limit 10", *_pair(ours_range, theirs_range, lookups))
    _hydrate(db, conn, n, pks, sql_pks, rng, reps, record)
    _durable(n, users, quick, record)
    conn.close()
    db.close()
    return out


def _hydrate(
    db: Database,
    conn: sqlite3.Connection,
    n: int,
    pks: list[str],
    sql_pks: list[str],
    rng: random.Random,
    reps: int,
    record: Callable[..., None],
) -> None:
    posts = max(n // 10, 100)
    topics = 100
    for i in range(posts):
        j = rng.randrange(n)
        db.create(Post, author=pks[j], topic=i % topics, title=f"post {i}")
        conn.execute(
            "INSERT INTO post (pk, author, topic, title) VALUES (?, ?, ?, ?)",
            (new_pk(), sql_pks[j], i % topics, f"post {i}"),
        )
    conn.commit()
    chosen = [rng.randrange(topics) for _ in range(reps * 10)]
    per = posts // topics

    def ours() -> None:
        for topic in chosen:
            db.hydrate(Post, db.query(Post, topic=topic))

    def theirs() -> None:
        for topic in chosen:
            [
                {
                    "pk": pk,
                    "author": {"pk": upk, "email": email, "name": name, "age": age, "score": s},
                    "topic": t,
                    "title": title,
                }
                for pk, t, title, upk, email, name, age, s in conn.execute(
                    "SELECT p.pk, p.topic, p.title, u.pk, u.email, u.name, u.age, u.score "
                    "FROM post p JOIN user u ON u.pk = p.author WHERE p.topic = ?",
                    (topic,),
                )
            ]

    count = len(chosen) * per
    record("hydrate 1 reference", *_pair(ours, theirs, count), f"per post; {per} per query")


class _Stores:
    """The current store of each side, replaced by a fresh one before each timed run."""

    def __init__(self) -> None:
        self.db = Database([User, Post])
        self.conn = sqlite3.connect(":memory:")


def _durable(
    n: int, users: list[tuple[str, str, int, float]], quick: bool, record: Callable[..., None]
) -> None:
    each = min(n, 2_000 if not quick else 20)
    runs = iter(range(1_000_000))
    with tempfile.TemporaryDirectory() as tmp:
        for name, batch, count in (
            ("durable create, 1 commit per 1,000", 1000, n),
            ("durable create, 1 commit each", 1, each),
        ):
            rows = users[:count]
            stores = _Stores()

            def fresh_ours(stores: _Stores = stores) -> None:
                stores.db.close()
                data = Path(tmp) / f"ours{next(runs)}"
                stores.db = Database([User, Post], data=data, durable=True)
                stores.db.open()

            def fresh_theirs(stores: _Stores = stores) -> None:
                stores.conn.close()
                conn = sqlite3.connect(Path(tmp) / f"theirs{next(runs)}", isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                for statement in _SCHEMA:
                    conn.execute(statement)
                stores.conn = conn

            def ours(
                rows: list[tuple[str, str, int, float]] = rows,
                batch: int = batch,
                stores: _Stores = stores,
            ) -> None:
                create, commit = stores.db.create, stores.db.commit
                for i, (email, name_, age, score) in enumerate(rows, 1):
                    create(User, email=email, name=name_, age=age, score=score)
                    if i % batch == 0:
                        commit()
                commit()

            def theirs(
                rows: list[tuple[str, str, int, float]] = rows,
                batch: int = batch,
                stores: _Stores = stores,
            ) -> None:
                execute = stores.conn.execute
                execute("BEGIN")
                for i, (email, name_, age, score) in enumerate(rows, 1):
                    execute(_INSERT_USER, (new_pk(), email, name_, age, score))
                    if i % batch == 0:
                        execute("COMMIT")
                        execute("BEGIN")
                execute("COMMIT")

            timings = _pair(ours, theirs, count, fresh_ours, fresh_theirs)
            record(name, *timings, "sqlite3 file, WAL, synchronous=NORMAL")
            stores.db.close()
            stores.conn.close()


def run(sizes: list[int], quick: bool = False, out: Path | None = RESULTS) -> dict[str, Any]:
    """Run every size; print the table; write JSON to ``out`` (None: do not write)."""
    results: list[dict[str, Any]] = []
    if quick:
        _settings["repeat"] = 1
    for n in sizes:
        results += run_size(n, quick)
    report = {
        "benchmark": "database",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "command": " ".join(["python -m benchmarks.database", *sys.argv[1:]]),
        "clock": "time.process_time (CPU time of the process), best of the runs",
        "repeat": _settings["repeat"],
        "results": results,
    }
    report["durable_over_memory"] = durable_ratios(results)
    print(table(results))
    for rows, ratio in report["durable_over_memory"].items():
        print(
            f"durable create (1 commit per 1,000) / in-memory create at {rows:,} rows: "
            f"{ratio:.2f}x (target: at most 3x)"
        )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def durable_ratios(results: list[dict[str, Any]]) -> dict[int, float]:
    """Durable create time over in-memory create time, by table size."""
    times = {(r["operation"], r["rows"]): r["lexicons_us"] for r in results}
    return {
        rows: times[("durable create, 1 commit per 1,000", rows)] / us
        for (operation, rows), us in times.items()
        if operation == "create"
    }


def table(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| operation | rows | lexicons µs/op | sqlite3 µs/op | ratio | target |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        theirs = f"{r['sqlite3_us']:.2f}" if r["sqlite3_us"] is not None else "–"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "–"
        target = f"≥ {r['target']:g}x" if r["target"] is not None else ""
        if r["met"] is False:
            target += " (missed)"
        lines.append(
            f"| {r['operation']} | {r['rows']:,} | {r['lexicons_us']:.2f} | {theirs} | "
            f"{ratio} | {target} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", default="10000,100000", help="comma-separated table sizes")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--out", default=str(RESULTS), help="where to write the JSON results")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per side; best counts")
    args = parser.parse_args(argv)
    _settings["repeat"] = args.repeat
    sizes = [200, 1000] if args.quick else [int(s) for s in args.rows.split(",")]
    run(sizes, quick=args.quick, out=Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
