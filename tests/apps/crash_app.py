"""A durable app exposing every mutation of the store as a signal, for the crash test.

``CRASH_MODEL_VERSION=2`` serves the next version of the models: ``Author`` gains a
required ``bio`` (``migrate`` fills it with ""), ``Post`` loses ``score``. The test
kills this process with SIGKILL at random points and checks what survives.
"""

import json
import os
import sys
from typing import Annotated, Any

from lexicons import Database, Index, Model, Ref, Server

VERSION = int(os.environ.get("CRASH_MODEL_VERSION", "1"))

if VERSION == 1:

    class Author(Model):
        name: Annotated[str, Index] = ""
        age: int = 0

    class Post(Model):
        author: Ref[Author]
        title: str = ""
        tags: list[str] = []
        score: float = 0.0

else:

    class Author(Model):  # type: ignore[no-redef]
        name: Annotated[str, Index] = ""
        age: int = 0
        bio: str

    class Post(Model):  # type: ignore[no-redef]
        author: Ref[Author]
        title: str = ""
        tags: list[str] = []


class Comment(Model):
    post: Ref[Post]
    author: Ref[Author] | None = None
    text: str = ""


app = Server(Author, Post, Comment, durable=True, debug=True)


@app.signal
def create(db: Database, model: str, fields: dict[str, Any]) -> str:
    return db.create(model, **fields).pk


@app.signal
def update(db: Database, model: str, pks: list[str], fields: dict[str, Any]) -> int:
    return len(db.update(model, pks, **fields))


@app.signal
def drop(db: Database, model: str, pks: list[str], cascade: list[str]) -> int:
    return db.drop(model, pks, cascade=cascade)


@app.signal
def get_or_create(db: Database, model: str, fields: dict[str, Any]) -> str:
    return db.get_or_create(model, **fields).pk


@app.signal
def load(db: Database) -> bool:
    db.load()
    return True


@app.signal
def save(db: Database) -> bool:
    db.save()
    return True


@app.signal
def migrate(db: Database) -> str:
    return db.migrate()


@app.signal
def dump(db: Database) -> dict[str, list[dict[str, Any]]]:
    """The rows in memory."""
    return {name: [row._to_dict() for row in db.query(name)] for name in db.models}


@app.signal
def stored(db: Database) -> dict[str, list[Any]]:
    """The rows as the durable file holds them, read through the store's own connection
    (the file is locked to it): what a SIGKILL now would leave."""
    conn = db._store.conn  # type: ignore[union-attr]  # a test looking behind the store
    return {
        name: [
            json.loads(data) for (data,) in conn.execute(f'SELECT data FROM "{name}" ORDER BY seq')
        ]
        for name in db.models
    }


if __name__ == "__main__":
    app.run(sys.argv[1:])
