"""The framework's own requests about channels: ``$subscribe``, ``$unsubscribe``, ``$presence``.

::

    {"$subscribe": {"channel": "room:1", "since": {"epoch": "...", "offset": 40}}, "ref": 1}
    {"$unsubscribe": {"channel": "room:1"}, "ref": 2}
    {"$presence": {"channel": "room:1"}, "ref": 3}

A client may join a channel declared joinable, by name or pattern, once the channel's
authorization function (if any) says yes; each request is answered with its own name and
``ref``, or with an error frame (``forbidden``, ``unknown_channel``, ``invalid_payload``,
``not_subscribed``, ``no_presence``, ``unavailable``). The wire contract is in
``docs/protocol.md``; what a join does (history, presence) is the channels' business.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec

from .brokers import BrokerUnavailable
from .channels import Answer, Channel, Channels
from .codecs import CODECS
from .connection import Connection
from .errors import Forbidden, InvalidPayload, SignalError, UnknownChannel
from .protocol import Request, Reserved

__all__ = ["MAX_NAME", "Subscriptions"]

#: The longest channel name a client may ask for.
MAX_NAME = 256

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]


class Since(msgspec.Struct, forbid_unknown_fields=True):
    epoch: str
    offset: Annotated[int, msgspec.Meta(ge=0)]


class Subscribe(msgspec.Struct, forbid_unknown_fields=True):
    channel: Name
    since: Since | None = None


class Named(msgspec.Struct, forbid_unknown_fields=True):
    channel: Name


# By ``request.binary``: a JSON and a MessagePack decoder of each payload.
_subscribe = (msgspec.json.Decoder(Subscribe), msgspec.msgpack.Decoder(Subscribe))
_named = (msgspec.json.Decoder(Named), msgspec.msgpack.Decoder(Named))


def _decode(decoders: tuple[Any, Any], request: Request) -> Any:
    try:
        return decoders[request.binary].decode(request.payload)
    except msgspec.DecodeError as exc:
        raise InvalidPayload(str(exc)) from None


def _encode_reply(request: Request, value: Any) -> bytes:
    """The answer to ``request``, in its encoding."""
    return CODECS[request.binary].encode_reply(request.name, value, request.ref)


class Subscriptions:
    """Answers the ``$`` requests of one server; :attr:`handlers` go to the dispatcher."""

    def __init__(
        self, channels: Channels, *, sv: Any, db: Any, reply: Callable[[Any, bytes], None]
    ) -> None:
        self._channels = channels
        self._sv = sv
        self._db = db
        self._reply = reply
        self.handlers: dict[str, Reserved] = {
            "$subscribe": self.subscribe,
            "$unsubscribe": self.unsubscribe,
            "$presence": self.presence,
        }

    def _declared(self, name: str) -> tuple[Channel, dict[str, str]]:
        found = self._channels.declared(name)
        if found is None:
            raise UnknownChannel(f"no channel named {name!r}")
        return found

    def subscribe(self, request: Request, ws: Connection) -> Awaitable[None] | None:
        args = _decode(_subscribe, request)
        name = args.channel
        declaration, values = self._declared(name)
        if not declaration.joinable:
            raise Forbidden(f"clients may not join {name!r}")
        since = (args.since.epoch, args.since.offset) if args.since is not None else None
        authorize = declaration._authorize
        if authorize is not None:
            verdict = authorize(ws, self._sv, self._db, {"channel": name, **values})
            if inspect.isawaitable(verdict):
                return self._subscribe_later(verdict, request, ws, name, since)
            _check(verdict, name)
        return self._join(request, ws, name, since)

    async def _subscribe_later(
        self,
        verdict: Awaitable[Any],
        request: Request,
        ws: Connection,
        name: str,
        since: tuple[str, int] | None,
    ) -> None:
        _check(await verdict, name)
        pending = self._join(request, ws, name, since)
        if pending is not None:
            await pending

    def _join(
        self, request: Request, ws: Connection, name: str, since: tuple[str, int] | None
    ) -> Awaitable[None] | None:
        answer = self._answer(request, ws, name)
        pending = self._channels.join(ws, self._channels[name], since, answer)
        return None if pending is None else _unavailable_as_error(pending)

    def _answer(self, request: Request, ws: Connection, name: str) -> Answer:
        def answer(epoch: str, offset: int, recovered: bool) -> None:
            position = {"channel": name, "epoch": epoch, "offset": offset, "recovered": recovered}
            self._reply(ws, _encode_reply(request, position))

        return answer

    def unsubscribe(self, request: Request, ws: Connection) -> None:
        name = _decode(_named, request).channel
        declaration, _ = self._declared(name)
        if not declaration.joinable:
            raise Forbidden(f"clients may not leave {name!r}: the server subscribes to it")
        self._channels.unsubscribe(name, ws.pk)
        self._reply(ws, _encode_reply(request, {"channel": name}))

    def presence(self, request: Request, ws: Connection) -> Awaitable[None] | None:
        name = _decode(_named, request).channel
        declaration, _ = self._declared(name)
        if not declaration.presence:
            raise SignalError("no_presence", f"channel {name!r} has no presence")
        if name not in self._channels.joined(ws.pk):
            raise SignalError("not_subscribed", f"subscribe to {name!r} to see who is there")
        members = self._channels.presence(name)
        if isinstance(members, list):
            self._list(request, ws, name, members)
            return None
        return self._list_later(request, ws, name, members)

    async def _list_later(
        self,
        request: Request,
        ws: Connection,
        name: str,
        pending: Awaitable[list[tuple[str, bytes]]],
    ) -> None:
        self._list(request, ws, name, await _unavailable_as_error(pending))

    def _list(
        self, request: Request, ws: Connection, name: str, members: list[tuple[str, bytes]]
    ) -> None:
        embed = CODECS[request.binary].embed
        listed = [{"pk": pk, "info": embed(info)} for pk, info in members]
        body = {"channel": name, "members": listed}
        self._reply(ws, _encode_reply(request, body))


def _check(verdict: Any, name: str) -> None:
    if not verdict:
        raise Forbidden(f"not allowed to join {name!r}")


async def _unavailable_as_error(pending: Awaitable[Any]) -> Any:
    try:
        return await pending
    except BrokerUnavailable as exc:
        raise SignalError("unavailable", f"try again: {exc}") from None
