"""A durable app for the crash test of header writes: a sign-up header creates an
account and confirms it to the client, before the connection is even admitted."""

import asyncio
import sys
from typing import Any

from lexicons import Model, Server

# A client sends one of the two headers: either admits it.
app = Server(durable=True, debug=False, gate=any)


@app.model
class Account(Model):
    name: str


@app.header
def Signup(ws: Any, db: Any, header: str) -> bool:
    account = db.create(Account, name=header)
    ws.send({"signed_up": account.pk, "name": header})
    return True


@app.header
async def Enroll(ws: Any, db: Any, header: str) -> bool:
    await asyncio.sleep(0)  # an async header: the write happens after an await
    account = db.create(Account, name=header)
    ws.send({"signed_up": account.pk, "name": header})
    return True


@app.signal
def count(db: Any) -> int:
    return len(db.query(Account))


if __name__ == "__main__":
    app.run(sys.argv[1:])
