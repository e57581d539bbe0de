"""A durable app for the crash test: every `write` is acknowledged only once committed."""

import sys

from lexicons import Model, Response, Server

# Every connection is admitted; a Visit header, when sent, writes a row first.
app = Server(durable=True, debug=False, gate=lambda results: True)
app.channel("News")


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


@app.header
def Visit(db, header: str) -> bool:
    """A header that writes: admitted means stored."""
    db.create(Note, n=-1, text=header)
    return True


@app.signal
def listen(ws, sv) -> bool:
    sv.channels["News"].subscribe(ws.pk)
    return True


@app.signal
def announce(db, n: int, text: str) -> Response:
    """Write, then tell the listeners (and not the sender): told means stored."""
    note = db.create(Note, n=n, text=text)
    return Response({"pk": note.pk, "n": n}, ["News"])


if __name__ == "__main__":
    app.run(sys.argv[1:])
