"""A durable app for the crash test: every `write` is acknowledged only once committed."""

import asyncio
import sys

from lexicons import Model, Server

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
async def announce(db, sv, n: int, text: str) -> None:
    """Write, tell the listeners (not the sender), then never finish: told means stored,
    even though the work that wrote has not ended (nothing commits it later)."""
    note = db.create(Note, n=n, text=text)
    sv.broadcast({"announce": {"pk": note.pk, "n": n}}, "News")
    await asyncio.Event().wait()


if __name__ == "__main__":
    app.run(sys.argv[1:])
