"""A durable app for the crash test: every `write` is acknowledged only once committed."""

import sys

from lexicons import Model, Server

app = Server(durable=True, debug=False)


@app.model
class Note(Model):
    n: int
    text: str


@app.signal
def write(db, n: int, text: str) -> str:
    return db.create(Note, n=n, text=text).pk


@app.signal
def count(db) -> int:
    return len(db.query(Note))


if __name__ == "__main__":
    app.run(sys.argv[1:])
