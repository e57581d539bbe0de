"""Write rows to a durable Database until killed; print each pk once it is committed.

Run by ``tests/test_storage.py``: a printed pk is an acknowledged write, which must survive
a SIGKILL at any moment. ``python tests/durable_writer.py DATA_DIR``
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from lexicons.store.database import Database
from lexicons.store.models import Model

__all__ = ["Entry", "expected", "main"]

START = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2)))


class Entry(Model):
    n: int
    text: str
    score: float
    at: datetime
    tags: set[str]
    extra: dict[str, list[int]]


def expected(n: int) -> dict[str, Any]:
    """The fields of row ``n``: sizes vary so that writes cross SQLite page boundaries."""
    return {
        "n": n,
        "text": f"row {n} " * (n % 97 * 7),
        "score": n / 7,
        "at": START + timedelta(seconds=n),
        "tags": {f"t{n % 5}", f"u{n % 3}"},
        "extra": {str(n): list(range(n % 50))},
    }


def main(data: str) -> None:
    db = Database([Entry], data=data, durable=True)
    db.open()
    n = len(db.query(Entry))
    while True:
        row = db.create(Entry, **expected(n))
        db.commit()
        sys.stdout.write(row.pk + "\n")
        sys.stdout.flush()
        n += 1


if __name__ == "__main__":
    main(sys.argv[1])
