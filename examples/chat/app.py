"""Multi-room chat with accounts, history and presence, and the web page that uses it.

Run it and open http://localhost:5000/ in a browser::

    python examples/chat/app.py run

- Accounts: the ``Register``, ``Login`` and ``Session`` headers, any one of which admits
  (``gate=any``). Passwords are stored as salted ``hashlib.scrypt`` hashes.
- Storage: users, messages and sessions are Models in the Database, in durable mode
  (SQLite under ``examples/chat/data/``, or ``--data DIR``).
- Rooms are real-time channels (``room:<name>``) that clients subscribe to themselves,
  with history, so a page that reconnects receives what it missed, and presence, so it
  shows who is there. Who is online is the presence of the ``Lobby`` channel.
- The page (``static/``), on the JavaScript client the server serves at ``/lexicons.js``,
  is served over HTTP from the same port.

Wire messages, client to server: ``$subscribe``/``$unsubscribe`` ``{channel}``,
``history {room}``, ``say {room, text}``, ``logout {token}``. Server to client:
``session``, ``welcome``, ``say`` (in a room), ``$join``/``$leave`` (presence), and the
replies.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from msgspec import Meta

from lexicons import (
    Connection,
    Database,
    History,
    Index,
    Model,
    Response,
    Server,
    SignalError,
)

HERE = Path(__file__).parent
HISTORY = 50  # messages a joiner receives

# Payload types: msgspec checks them before a handler runs, and a client that sends
# anything else gets an `invalid_payload` error naming the field.
Name = Annotated[str, Meta(min_length=1, max_length=24, pattern=r"^[A-Za-z0-9_.-]+$")]
Password = Annotated[str, Meta(min_length=8, max_length=256)]
Text = Annotated[str, Meta(min_length=1, max_length=2000)]

app = Server(
    data=str(HERE / "data"),  # gitignored; `--data DIR` or LEXICONS_DATA puts it elsewhere
    durable=True,  # every change reaches SQLite before the reply or broadcast leaves
    static=str(HERE / "static"),  # the page, served on the same port as the WebSocket
    gate=any,  # Register, Login or Session: one good credential is enough
)


@app.model
class User(Model):
    name: Annotated[str, Index]
    password: str  # "scrypt$<salt hex>$<hash hex>", never the password itself


@app.model
class Message(Model):
    room: Annotated[str, Index]
    author: str  # the user's name: names never change, so no lookup is needed to show it
    text: str
    sent: datetime


@app.model
class Session(Model):
    """A browser's "stay logged in" token. Only its SHA-256 is stored, like a password."""

    token: Annotated[str, Index]
    user: str


# --- passwords ------------------------------------------------------------------------

# scrypt is slow on purpose (tens of milliseconds and 16 MiB per hash with these
# parameters), so the headers hash in a worker thread and the event loop keeps serving.
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    _, salt, expected = stored.split("$")
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), **SCRYPT)
    return hmac.compare_digest(digest, bytes.fromhex(expected))


# Checked for unknown names too, so the reply's timing does not reveal who has an account.
DUMMY = hash_password(secrets.token_hex(16))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(ws: Connection, db: Database, name: str) -> bool:
    """Admit ``name`` and hand the page a token for reconnecting without the password."""
    token = secrets.token_urlsafe(32)
    db.create(Session, token=digest(token), user=name)
    ws.auth = name
    ws.send({"session": {"user": name, "token": token}})  # delivered once admitted
    return True


# --- handshake: any one of these admits ------------------------------------------------


@app.header
async def Register(ws: Connection, db: Database, name: Name, password: Password) -> bool:
    """Create an account; refused when the name is taken."""
    stored = await asyncio.to_thread(hash_password, password)
    # Checked after the slow hash, with no await between check and create: two
    # registrations of one name cannot both pass.
    if db.get(User, name=name) is not None:
        return False
    db.create(User, name=name, password=stored)
    return start_session(ws, db, name)


@app.header
async def Login(ws: Connection, db: Database, name: Name, password: Password) -> bool:
    user = db.get(User, name=name)
    ok = await asyncio.to_thread(verify_password, password, user.password if user else DUMMY)
    return ok and user is not None and start_session(ws, db, name)


@app.header("Session")
def resume(ws: Connection, db: Database, header: str) -> bool:
    """A token from an earlier login (the page keeps it in sessionStorage)."""
    session = db.get(Session, token=digest(header))
    if session is None:
        return False
    ws.auth = session.user
    return True


# --- rooms and presence: real-time channels ---------------------------------------------

ROOM = re.compile(r"[A-Za-z0-9_.-]{1,24}")


# Every page joins the lobby: its members are who is online. (Only admitted connections
# can subscribe, and every admitted connection is logged in.)
app.channel("Lobby", presence=True, join=True)


# A room exists while someone is in it. Its history lets a page that reconnects receive
# what it missed; its presence says who is there.
@app.channel("room:{room}", history=History(HISTORY, age=600), presence=True)
def may_enter(room: str) -> bool:
    return ROOM.fullmatch(room) is not None


@app.presence
def who(ws: Connection) -> dict[str, str]:
    """What the other members see of a connection: its user's name (several tabs of
    one user are several members with one name)."""
    return {"user": ws.auth}


@app.on_connect
def welcome(ws: Connection) -> None:
    ws.send({"welcome": {"user": ws.auth}})  # who the Session token logged in


def channel_of(room: str) -> str:
    return f"room:{room}"


@app.signal
def history(db: Database, room: Name) -> list[Message]:
    """The room's latest messages, oldest first: what a page shows on entering a room, or
    after an outage longer than the room's history remembers."""
    return list(reversed(db.query(Message, room=room, _sort="-sent", _limit=HISTORY)))


@app.signal
def say(ws: Connection, db: Database, room: Name, text: Text) -> Response[Message]:
    """Store a message and broadcast it to the room (the sender receives it too)."""
    if channel_of(room) not in ws.channels:
        raise SignalError("not_in_room", f"subscribe to room:{room} before speaking there")
    message = db.create(Message, room=room, author=ws.auth, text=text, sent=datetime.now(UTC))
    return Response(message, [channel_of(room)])


@app.signal
def logout(ws: Connection, db: Database, token: str) -> dict[str, bool]:
    """Forget a session token, so it cannot log in again."""
    sessions = db.query(Session, token=digest(token), user=ws.auth)
    db.drop(Session, sessions)
    return {"ok": bool(sessions)}


if __name__ == "__main__":
    app.run()
