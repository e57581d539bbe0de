"""The app the JavaScript client's tests (clients/js/test) run against.

``Token`` admits ``ok`` and ``ok2`` and refuses anything else (so a test can tell a 403
from an outage); ``room:<id>`` channels keep history and presence, and clients may join
them; ``feed`` drops publications for a reader that lags, and ``flood`` makes one lag.
Run as ``python -m lexicons run tests/apps/js_app.py --port 0``; the tests pass
``--broker redis://...`` to share channels between two processes.
"""

import asyncio

from lexicons import History, Response, Server, SignalError

app = Server(debug=False)
app.channel("room:{id}", history=History(1000, age=600), presence=True, join=True)
app.channel("plain:{id}", join=True)
app.channel("closed", join=False)
app.channel("feed", join=True, policy="drop", history=History(10_000))


@app.header
def Token(ws, header: str) -> bool:
    ws.auth = header
    return header in ("ok", "ok2")


@app.presence
def info(ws) -> dict[str, str]:
    return {"token": ws.auth}


@app.signal
def add(a: int, b: int) -> int:
    return a + b


@app.signal
def whoami(ws) -> str:
    return ws.auth


@app.signal
def fail(code: str) -> None:
    raise SignalError(code, "failed on purpose")


@app.signal
async def hang() -> None:
    await asyncio.Event().wait()  # never answers: the client's timeout must end the call


@app.signal
def say(room: str, text: str) -> Response:
    return Response({"room": room, "text": text}, [room])


@app.signal
def flood(sv, count: int, size: int) -> int:
    """Publish ``count`` blobs of ``size`` bytes on ``feed``: enough to make a reader
    that stopped reading lag (the channel drops for it, then sends ``$lagged``)."""
    for n in range(1, count + 1):
        sv.broadcast({"blob": {"n": n, "data": "x" * size}}, ["feed"])
    return count


@app.signal
def tell(ws, text: str) -> None:
    ws.send({"told": {"text": text}})


if __name__ == "__main__":
    app.run()
