"""The original framework's public chat example, written its way and served by lexicons.

Class components, a ``Public`` channel, headers that register or log a client in and
subscribe it, ``self.response`` to broadcast, ``self.send`` to answer one client,
``db.query(...).empty`` and ``row._to_dict()``: the example chat of the framework
lexicons descends from, with only the changes ``docs/porting.md`` lists (each marked
``# port:`` below). Run it::

    python examples/original/app.py run

A client connects with a ``Register`` or a ``Login`` header holding
``{"username": ..., "password": ...}`` (as an HTTP header, a cookie, a subprotocol token
or the query string), then sends ``{"CreateChat": {"body": "hi"}}`` and
``{"GetChatList": {}}``.
"""

import asyncio
import hashlib
import json
import os
from datetime import datetime

from lexicons import Channel, Header, Model, Ref, Server, Signal


class Public(Channel):
    pass


class User(Model):
    username: str
    password: str


class Message(Model):
    user: Ref[User]  # port: was `user: User`; a reference is declared as Ref[Model]
    timestamp: int
    body: str


def encrypt(string):
    """The original's ``lexicons.utils.encrypt``, kept so that stored hashes still match.

    port: lexicons has no ``utils``; a new app should hash with a salt per user
    (``hashlib.scrypt``, as examples/chat does).
    """
    salt = os.environ.get("SALT", "")
    derived_key = hashlib.pbkdf2_hmac(
        "sha256", bytes(string, "UTF-8"), bytes(salt, "UTF-8"), 100_000
    )
    return derived_key.hex()


class Login(Header):
    def execute(self, db=None, sv=None, ws=None, username=None, password=None, **kwargs):
        if not username or not password:
            return False
        user = db.get("User", username=username, password=encrypt(password))
        if user:
            ws.auth = user.pk
            sv.channels["Public"].subscribe(ws.pk)
            return True

        return False


class Register(Header):
    def execute(self, db=None, ws=None, sv=None, username=None, password=None, **kwargs):
        if username and password and db.query("User", username=username).empty:
            user = db.create("User", username=username, password=encrypt(password))
            ws.auth = user.pk
            sv.channels["Public"].subscribe(ws.pk)
            asyncio.ensure_future(ws.send(json.dumps([{"Register": {"success": True}}]).encode()))
            return True  # port: was False; a refused client hears nothing (HTTP 403)

        return False


class CreateChat(Signal):
    def execute(self, db=None, ws=None, body=None, **kwargs):
        user = db.get("User", ws.auth)
        timestamp = int(datetime.now().timestamp())
        message = db.create("Message", user=user.pk, body=body, timestamp=timestamp)
        payload = message._to_dict()
        payload["username"] = user.username
        return self.response(payload, ["Public"])


class GetChatList(Signal):
    def execute(self, db=None, ws=None, **kwargs):
        # port: was a pandas merge of db.Message and db.User; hydrate follows the reference
        payload = [
            {
                "username": row["user"]["username"],
                "body": row["body"],
                "timestamp": row["timestamp"],
            }
            for row in db.hydrate("Message", db.query("Message"))
        ]
        self.send(ws, {"GetChatList": payload})  # port: was self.response(payload, [ws.auth])


def on_disconnect(db=None, sv=None, ws=None):
    user = db.get("User", ws.auth)
    payload = {"UserExit": f"{user.username} is now offline..."}
    sv.broadcast(payload, ["Public"])


def on_connect(db=None, sv=None, ws=None):
    user = db.get("User", ws.auth)
    payload = {"UserEnter": f"{user.username} has come online..."}
    sv.broadcast(payload, ["Public"])


sv = Server(
    Public,
    Login,
    Register,
    Message,
    User,
    CreateChat,
    GetChatList,
    on_connect=on_connect,
    on_disconnect=on_disconnect,
    gate=any,  # port: a header the client did not send counts False; one of the two admits
)


if __name__ == "__main__":
    sv.run()
