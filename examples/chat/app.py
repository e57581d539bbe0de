"""Multi-room chat with accounts, history and presence, and the web page that uses it.

Run it and open http://localhost:5000/ in a browser::

    python examples/chat/app.py run

- Accounts: the ``Register``, ``Login`` and ``Session`` headers, any one of which admits
  (``gate=any``). Passwords are stored as salted ``hashlib.scrypt`` hashes.
- Storage: users, messages and sessions are Models in the Database, in durable mode
  (SQLite under ``examples/chat/data/``, or ``--data DIR``).
- Rooms are channels, created on first ``join``; joining returns the room's history.
- ``online``/``offline`` notices come from ``on_connect``/``on_disconnect``.
- The page (``static/``) is served over HTTP from the same port.

Wire messages, client to server: ``join {room}``, ``leave {room}``, ``say {room, text}``,
``logout {token}``. Server to client: ``session``, ``welcome``, ``say``, ``joined``,
``left``, ``online``, ``offline``, and the replies to ``join`` and ``leave``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from msgspec import Meta

from lexicons import Connection, Database, Index, Model, Response, Server, SignalError

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
app.channel("Lobby")  # everyone online; presence notices go here


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


# --- presence -------------------------------------------------------------------------

online: Counter[str] = Counter()  # open connections per user (several tabs count once)


@app.on_connect
def arrive(ws: Connection, sv: Server) -> None:
    online[ws.auth] += 1
    if online[ws.auth] == 1:
        sv.broadcast({"online": {"user": ws.auth}}, "Lobby")  # before subscribing: others only
    sv.channels["Lobby"].subscribe(ws)
    ws.state["rooms"] = set()
    ws.send({"welcome": {"user": ws.auth, "online": sorted(online)}})


@app.on_disconnect
def depart(ws: Connection, sv: Server) -> None:
    # The connection has already left every channel; tell the rooms it was in.
    for room in list(ws.state.get("rooms", ())):
        leave_room(ws, sv, room)
    online[ws.auth] -= 1
    if online[ws.auth] <= 0:
        del online[ws.auth]
        sv.broadcast({"offline": {"user": ws.auth}}, "Lobby")


# --- rooms ------------------------------------------------------------------------------


def channel_of(room: str) -> str:
    return f"room:{room}"


def members(sv: Server, room: str) -> list[str]:
    channel = sv.channels.get(channel_of(room))
    if channel is None:
        return []
    return sorted({sv.connections[pk].auth for pk in channel.subscribers})


def leave_room(ws: Connection, sv: Server, room: str) -> None:
    channel = sv.channels.get(channel_of(room))
    if room not in ws.state["rooms"] or channel is None:
        return  # not in that room: nothing to announce
    ws.state["rooms"].discard(room)
    channel.unsubscribe(ws)
    if channel.subscribers:
        sv.broadcast({"left": {"room": room, "user": ws.auth}}, channel.name)
    else:
        sv.channels.remove(channel.name)  # rooms exist while someone is in them


@app.signal
def join(ws: Connection, sv: Server, db: Database, room: Name) -> dict[str, Any]:
    """Enter a room: the others hear ``joined``; the reply carries history and members."""
    name = channel_of(room)
    channel = sv.channels.get(name) or sv.channels.create(name)
    if room not in ws.state["rooms"]:
        sv.broadcast({"joined": {"room": room, "user": ws.auth}}, name)
        channel.subscribe(ws)
        ws.state["rooms"].add(room)
    recent = db.query(Message, room=room, _sort="-sent", _limit=HISTORY)
    return {"room": room, "history": list(reversed(recent)), "members": members(sv, room)}


@app.signal
def leave(ws: Connection, sv: Server, room: Name) -> dict[str, str]:
    leave_room(ws, sv, room)
    return {"room": room}


@app.signal
def say(ws: Connection, db: Database, room: Name, text: Text) -> Response[Message]:
    """Store a message and broadcast it to the room (the sender receives it too)."""
    if room not in ws.state["rooms"]:
        raise SignalError("not_in_room", f"join {room!r} before speaking there")
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
