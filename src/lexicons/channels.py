"""Channels: named sets of subscribers that broadcasts reach.

::

    app.channel("Public")                          # create one by name

    @app.on_connect
    def join(ws, sv):
        sv.channels["Public"].subscribe(ws.pk)

    sv.broadcast({"notice": "hello"}, ["Public"])  # or sv.channels["Public"].broadcast(...)

A broadcast is encoded once and framed once, then the same bytes are written to every
local subscriber's socket without waiting for any of them.

A header function may subscribe the connection it is checking: the subscription takes
effect when the connection is admitted and is discarded if it is refused. A connection
that is gone can no longer be subscribed (late work of a departed client is ignored).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, KeysView, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .connection import Connection, deliver
from .errors import LexiconsError, RegistrationError
from .network.frames import text_frame
from .protocol import encode

if TYPE_CHECKING:
    from .brokers import Broker
    from .durable import Gate

__all__ = ["Channel", "Channels"]

logger = logging.getLogger("lexicons")


class Channel:
    """A named set of subscribers; subclass it for class-style registration.

    The name defaults to the class name (``class Public(Channel): pass``).
    """

    #: The channel's name; defaults to the class name.
    name: str

    def __init__(self, name: str | None = None) -> None:
        self.name = name or getattr(type(self), "name", None) or type(self).__name__
        self._members: dict[str, Connection] = {}
        self._registry: Channels | None = None

    @property
    def subscribers(self) -> KeysView[str]:
        """The pks of this process's subscribers."""
        return self._members.keys()

    def subscribe(self, pk: str | Connection) -> None:
        """Add a connection (by pk, or the connection itself); subscribing twice is harmless.

        Inside a header function the subscription waits for the connection's admission.
        """
        registry = self._bound()
        ws = registry.connection(pk)
        if ws is None or ws.pk in self._members:
            return
        if ws.pk in registry._admitting:
            registry._pending.setdefault(ws.pk, set()).add(self.name)
            return
        self._members[ws.pk] = ws
        registry._joined.setdefault(ws.pk, set()).add(self.name)
        broker = registry.broker
        if len(self._members) == 1:
            broker.subscribe(self.name)
        broker.recount(self.name, len(self._members))

    def unsubscribe(self, pk: str | Connection) -> None:
        """Remove a connection; unsubscribing a non-member is harmless."""
        key = pk if isinstance(pk, str) else pk.pk
        registry = self._registry
        if registry is not None and key in registry._pending:
            registry._pending[key].discard(self.name)
        ws = self._members.pop(key, None)
        if ws is None:
            return
        if registry is not None:
            joined = registry._joined.get(key)
            if joined is not None:
                joined.discard(self.name)
                if not joined:
                    del registry._joined[key]
            broker = registry.broker
            if not self._members:
                broker.unsubscribe(self.name)
            broker.recount(self.name, len(self._members))

    def broadcast(self, payload: Any) -> None:
        """Send ``payload`` to every subscriber, in every process that shares the broker."""
        self._bound().publish([self.name], encode(payload))

    async def count(self) -> int:
        """Subscribers in every process (this process's count with the in-process broker)."""
        return await self._bound().broker.count(self.name, len(self._members))

    def _bound(self) -> Channels:
        if self._registry is None:
            raise LexiconsError(f"channel {self.name!r} is not registered with a server")
        return self._registry

    def __repr__(self) -> str:
        return f"<Channel {self.name} ({len(self._members)} local subscribers)>"


class Channels(Mapping[str, Channel]):
    """The server's channels by name: ``sv.channels["Public"]``."""

    def __init__(self, connections: Mapping[str, Connection], broker: Broker) -> None:
        self._channels: dict[str, Channel] = {}
        self._connections = connections
        self.broker = broker
        #: Durable mode: broadcasts wait for the commit of the work that made them.
        self.gate: Gate | None = None
        #: Channel names by subscriber pk.
        self._joined: dict[str, set[str]] = {}
        #: Connections whose handshake headers are running, and what they subscribed to.
        self._admitting: dict[str, Connection] = {}
        self._pending: dict[str, set[str]] = {}

    def add(self, channel: Channel | type[Channel] | str) -> Channel:
        """Register a channel given as a name, a :class:`Channel` subclass or instance."""
        if isinstance(channel, str):
            channel = Channel(channel)
        elif isinstance(channel, type):
            channel = channel()
        if channel.name in self._channels:
            raise RegistrationError(f"channel {channel.name!r} is already registered")
        channel._registry = self
        self._channels[channel.name] = channel
        return channel

    def create(self, name: str) -> Channel:
        """Create and register a channel at run time (a room, a game)."""
        return self.add(name)

    def remove(self, name: str) -> None:
        """Remove a channel and unsubscribe everyone from it."""
        channel = self._channels[name]
        for pk in list(channel.subscribers):
            channel.unsubscribe(pk)
        channel._registry = None
        del self._channels[name]

    def __delitem__(self, name: str) -> None:
        self.remove(name)

    def __getitem__(self, name: str) -> Channel:
        return self._channels[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    def connection(self, pk: str | Connection) -> Connection | None:
        """The connection ``pk`` names, connected or in its handshake here.

        ``None`` for a connection object that is gone; an unknown pk raises.
        """
        if not isinstance(pk, str):
            key = pk.pk
            if key in self._connections or key in self._admitting:
                return pk
            logger.debug("connection %s is gone; not subscribed", key)
            return None
        found = self._connections.get(pk) or self._admitting.get(pk)
        if found is None:
            raise LexiconsError(f"no connection with pk {pk!r} on this server")
        return found

    def joined(self, pk: str) -> frozenset[str]:
        """The names of the channels connection ``pk`` is subscribed to."""
        return frozenset(self._joined.get(pk, ()))

    # the connection's life, as the server tells it

    def expect(self, ws: Connection) -> None:
        """``ws`` is being admitted: what its headers subscribe it to waits for the verdict."""
        self._admitting[ws.pk] = ws

    def admitted(self, ws: Connection) -> None:
        """``ws`` was admitted: the subscriptions its headers made take effect."""
        if self._admitting.pop(ws.pk, None) is None:
            return
        for name in self._pending.pop(ws.pk, ()):
            channel = self._channels.get(name)
            if channel is not None:
                channel.subscribe(ws)

    def refused(self, ws: Connection) -> None:
        """``ws`` was refused or left during its handshake: forget what it subscribed to."""
        self._admitting.pop(ws.pk, None)
        self._pending.pop(ws.pk, None)

    def publish(self, names: Iterable[str], data: bytes) -> None:
        """Hand an encoded broadcast to the broker for the known channels among ``names``."""
        known = []
        for name in names:
            if name in self._channels:
                known.append(name)
            else:
                logger.warning("broadcast to unknown channel %r dropped", name)
        if not known:
            return
        if self.gate is None:
            self.broker.publish(known, data)
        else:
            self.gate.emit(self.broker.publish, known, data)

    def deliver(self, names: Sequence[str], data: bytes) -> None:
        """Write one broadcast to this process's subscribers of ``names``, each once."""
        frame = text_frame(data)
        if len(names) == 1:
            channel = self._channels.get(names[0])
            if channel is not None:
                deliver(channel._members.values(), frame)
            return
        members: dict[str, Connection] = {}
        for name in names:
            channel = self._channels.get(name)
            if channel is not None:
                members.update(channel._members)
        deliver(members.values(), frame)

    def drop(self, ws: Connection) -> None:
        """Unsubscribe a departing connection from every channel it joined."""
        joined = self._joined.get(ws.pk)
        if joined is None:
            return
        for name in list(joined):
            channel = self._channels.get(name)
            if channel is not None:
                channel.unsubscribe(ws.pk)
        self._joined.pop(ws.pk, None)
