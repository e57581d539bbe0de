"""Channels: named sets of subscribers that broadcasts reach.

::

    app.channel("Public")                                # server code subscribes to it
    app.channel("news", join=True)                       # any client may $subscribe

    @app.channel("room:{id}", history=History(100), presence=True)
    def room(ws, id: str) -> bool:                       # rooms made on demand; who may join
        return ws.auth is not None

    @app.on_connect
    def join(ws, sv):
        sv.channels["Public"].subscribe(ws.pk)

    sv.broadcast({"notice": "hello"}, ["Public"])        # or sv.channels["Public"].broadcast(...)

A broadcast is encoded once and framed once per flavour of subscriber (:func:`broadcast_frame`:
JSON or MessagePack, compressed or not), then the same bytes are written to every local
subscriber of that flavour without waiting for any of them.

A channel may keep **history**: its publications are numbered, frames carry ``channel``
and ``offset``, and a client that reconnects recovers what it missed. It may keep
**presence**: subscribers hear ``$join``/``$leave`` and may list the members. Its
**policy** says what a subscriber that cannot keep up gets (:mod:`lexicons.policies`).
Channels named by a pattern exist while they have subscribers; their history outlives
them by its ``age``.

A header function may subscribe the connection it is checking: the subscription takes
effect when the connection is admitted and is discarded if it is refused. A connection
that is gone can no longer be subscribed (late work of a departed client is ignored).
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import msgspec
from typing_extensions import Unpack

from .broadcasts import Broadcast
from .connection import Connection, cut_off, deliver, deliver_all
from .errors import LexiconsError, RegistrationError
from .handlers import INJECTED, Handler, inspect_handler
from .history import History, Timeline
from .patterns import ChannelPattern, is_pattern
from .policies import POLICIES, Conflate, Drop, Policy
from .protocol import encode

if TYPE_CHECKING:
    from .brokers import Broker
    from .durable import Gate

__all__ = ["Answer", "Channel", "ChannelOptions", "Channels", "History", "broadcast_frame"]

logger = logging.getLogger("lexicons")

F = TypeVar("F", bound=Callable[..., Any])


class ChannelOptions(TypedDict, total=False):
    """A channel's options, as keyword arguments (see :class:`Channel`)."""

    history: History | None
    presence: bool | None
    policy: Policy | None
    join: bool | Callable[..., Any] | None


#: ``answer(epoch, offset, recovered)``: reply to a client's ``$subscribe``, called once
#: its position is known and before the publications it missed.
Answer = Callable[[str, int, bool], None]


def broadcast_frame(data: bytes, channel: str | None = None, offset: int = 0) -> Broadcast:
    """The frames of one broadcast, built once per flavour for all its subscribers.

    This is the one place a broadcast becomes bytes on the wire. ``data`` is the encoded
    message (a JSON object); on a history channel (``channel`` given) the frames carry
    ``"channel"`` and ``"offset"`` beside the signal, in every encoding.
    """
    if channel is not None:
        position = _positions.get(channel) or _position(channel)
        if len(data) > 2:
            data = b"%b,%b%d}" % (data[:-1], position, offset)
        else:  # {}
            data = b"{%b%d}" % (position, offset)
    return Broadcast(data)


#: ``"channel":<name>,"offset":`` by channel name, encoded once.
_positions: dict[str, bytes] = {}


def _position(channel: str) -> bytes:
    if len(_positions) > 10_000:  # channels made at run time come and go
        _positions.clear()
    position = _positions[channel] = b'"channel":%b,"offset":' % encode(channel)
    return position


class Authorization:
    """A channel's authorization function, inspected once: what to pass it by name."""

    __slots__ = ("handler", "names")

    def __init__(self, func: Callable[..., Any], channel: str, params: tuple[str, ...]) -> None:
        self.handler: Handler = inspect_handler(func, f"channel {channel!r} authorization")
        offered = ("channel", *params)
        signature = inspect.signature(func)
        takes_all = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        names = []
        for param in signature.parameters.values():
            if param.kind is param.VAR_KEYWORD or param.name in INJECTED:
                continue
            if param.name in offered:
                names.append(param.name)
            elif param.default is param.empty:
                raise RegistrationError(
                    f"channel {channel!r} authorization: parameter {param.name!r} is neither "
                    f"ws, sv, db nor one of {', '.join(offered)}"
                )
        self.names = offered if takes_all else tuple(names)

    def __call__(self, ws: Any, sv: Any, db: Any, values: dict[str, str]) -> Any:
        """The verdict (truthy admits), or an awaitable of it."""
        return self.handler.call({name: values[name] for name in self.names}, ws, sv, db)


class _Sync:
    """A subscriber whose join waits for the broker (shared history): what reaches the
    channel meanwhile waits here, then only what follows its answer is written."""

    __slots__ = ("ws", "buffer", "size", "after")

    def __init__(self, ws: Connection) -> None:
        self.ws = ws
        #: (offset or None for a frame without one, frame), until the join is answered.
        self.buffer: list[tuple[int | None, Broadcast]] | None = []
        self.size = 0
        #: Once answered: the offset the answer covered.
        self.after = 0


class Channel:
    """A named set of subscribers; subclass it for class-style registration.

    The name defaults to the class name (``class Public(Channel): pass``); a name with a
    placeholder (``"room:{id}"``) declares every channel it matches. Options, as keyword
    arguments or as class attributes of a subclass:

    - ``history``: a :class:`History` (count and age) to number publications and let
      clients recover what they missed;
    - ``presence``: subscribers hear ``$join``/``$leave`` and may list the members;
    - ``policy``: ``"disconnect"`` (default), ``"drop"`` or ``"conflate"`` for a subscriber
      that cannot keep up;
    - ``join``: whether clients may ``$subscribe``: ``True`` for anyone, or an
      authorization function receiving ``ws``/``sv``/``db``, ``channel`` (the name) and
      the pattern's placeholders by name. Using the channel as a decorator, or defining
      ``authorize`` on a subclass, sets it.
    """

    #: The channel's name; defaults to the class name.
    name: str
    history: History | None = None
    presence: bool = False
    policy: Policy = "disconnect"
    join: bool | Callable[..., Any] = False

    def __init__(
        self,
        name: str | None = None,
        *,
        history: History | None = None,
        presence: bool | None = None,
        policy: Policy | None = None,
        join: bool | Callable[..., Any] | None = None,
    ) -> None:
        self.name = name or getattr(type(self), "name", None) or type(self).__name__
        self.pattern = ChannelPattern(self.name) if is_pattern(self.name) else None
        if history is not None:
            self.history = history
        if presence is not None:
            self.presence = presence
        if policy is not None:
            self.policy = policy
        if self.history is not None and not isinstance(self.history, History):
            raise RegistrationError(
                f"channel {self.name!r}: history must be a History(count, age)"
            )
        if self.policy not in POLICIES:
            raise RegistrationError(
                f"channel {self.name!r}: policy {self.policy!r} is not one of "
                + ", ".join(POLICIES)
            )
        self.joinable = False
        self._authorize: Authorization | None = None
        if join is None:
            join = getattr(self, "authorize", None) or type(self).join
        self._set_join(join)
        #: The pattern channel this one was made from.
        self._template: Channel | None = None
        self._registry: Channels | None = None
        self._reset()

    def _reset(self) -> None:
        """Start with no subscribers (a new channel, or one made from a pattern)."""
        self._members: dict[str, Connection] = {}
        self._syncing: dict[str, _Sync] = {}
        #: Presence info by pk, encoded.
        self._present: dict[str, bytes] = {}
        self._slow: Drop | Conflate | None = None

    def _set_join(self, join: bool | Callable[..., Any]) -> None:
        if callable(join):
            params = self.pattern.params if self.pattern is not None else ()
            self._authorize = Authorization(join, self.name, params)
            self.joinable = True
        else:
            self.joinable = bool(join)

    def __call__(self, func: F) -> F:
        """Use the channel as a decorator: ``func`` is its authorization function."""
        self._set_join(func)
        return func

    @property
    def subscribers(self) -> KeysView[str]:
        """The pks of this process's subscribers."""
        return self._live()._members.keys()

    def subscribe(self, pk: str | Connection) -> None:
        """Add a connection (by pk, or the connection itself); subscribing twice is harmless.

        Inside a header function the subscription waits for the connection's admission.
        """
        self._bound().subscribe(self, pk)

    def unsubscribe(self, pk: str | Connection) -> None:
        """Remove a connection; unsubscribing a non-member is harmless."""
        if self._registry is not None:
            self._registry.unsubscribe(self.name, pk if isinstance(pk, str) else pk.pk)

    def broadcast(self, payload: Any, key: str | None = None) -> None:
        """Send ``payload`` to every subscriber, in every process that shares the broker.

        ``key``: on a ``conflate`` channel, a lagging subscriber gets the latest per key.
        """
        self._bound().publish([self.name], encode(payload), key)

    async def count(self) -> int:
        """Subscribers in every process (this process's count with the in-process broker)."""
        registry = self._bound()
        return await registry.broker.count(self.name, _interest(self._live()))

    async def members(self) -> list[dict[str, Any]]:
        """Presence: ``{"pk", "info"}`` of every member, in every process."""
        members = self._bound().presence(self.name)
        if not isinstance(members, list):
            members = await members
        return [{"pk": pk, "info": msgspec.json.decode(info)} for pk, info in members]

    def _live(self) -> Channel:
        """The registered channel of this name (a pattern-made view may not be it)."""
        registry = self._registry
        if registry is None:
            return self
        return registry._channels.get(self.name, self)

    def _bound(self) -> Channels:
        if self._registry is None:
            raise LexiconsError(f"channel {self.name!r} is not registered with a server")
        if self.pattern is not None:
            raise LexiconsError(
                f"{self.name!r} is a channel pattern: use one of its channels, "
                f"for example sv.channels[{self.name.replace('{', '').replace('}', '')!r}]"
            )
        return self._registry

    def __repr__(self) -> str:
        return f"<Channel {self.name} ({len(self._members)} local subscribers)>"


def _interest(channel: Channel) -> int:
    """Local subscribers, joining ones included."""
    return len(channel._members) + len(channel._syncing)


class Channels(Mapping[str, Channel]):
    """The server's channels by name: ``sv.channels["Public"]``.

    A name that matches a declared pattern gives its channel even before anyone subscribed
    (``sv.channels["room:7"]``); iteration, ``len`` and ``in`` count the channels that
    exist: declared by name, or made from a pattern and not empty.
    """

    def __init__(self, connections: Mapping[str, Connection], broker: Broker) -> None:
        self._channels: dict[str, Channel] = {}
        self._patterns: list[Channel] = []
        self._connections = connections
        self.broker = broker
        #: Durable mode: broadcasts wait for the commit of the work that made them.
        self.gate: Gate | None = None
        #: Channel names by subscriber pk.
        self._joined: dict[str, set[str]] = {}
        #: Connections whose handshake headers are running, and what they subscribed to.
        self._admitting: dict[str, Connection] = {}
        self._pending: dict[str, set[str]] = {}
        #: History channels' timelines (the authority here, or a cache of the broker's).
        self._timelines: dict[str, Timeline] = {}
        #: The presence info of a connection (the app's presence function).
        self.describe: Callable[[Connection], Any] | None = None
        #: Runs a join that waits for the broker, for server code that subscribes.
        self.spawn: Callable[[Coroutine[Any, Any, Any]], Any] | None = None
        #: Bytes that may wait for one subscriber (conflated, or while it joins).
        self.max_buffer = 4 * 2**20
        self.clock: Callable[[], float] = time.monotonic
        self._next_sweep = 0.0

    # declaring channels

    def add(
        self, channel: Channel | type[Channel] | str, **options: Unpack[ChannelOptions]
    ) -> Channel:
        """Register a channel given as a name (or pattern), a :class:`Channel` subclass or
        instance; options go with a name (a class sets them as attributes)."""
        given: ChannelOptions = {k: v for k, v in options.items() if v is not None}  # type: ignore[assignment]
        if isinstance(channel, str):
            channel = Channel(channel, **given)
        elif given:
            raise RegistrationError(
                f"channel {channel!r}: options go with a name; a Channel class or instance "
                "sets them as attributes"
            )
        elif isinstance(channel, type):
            channel = channel()
        name = channel.name
        if name in self._channels or any(p.name == name for p in self._patterns):
            raise RegistrationError(f"channel {name!r} is already registered")
        channel._registry = self
        if channel.pattern is not None:
            self._patterns.append(channel)
        else:
            self._register(channel)
        return channel

    def create(self, name: str) -> Channel:
        """Create and register a channel at run time (a room, a game).

        A name that matches a declared pattern gets that pattern's options.
        """
        if name in self._channels:
            raise RegistrationError(f"channel {name!r} is already registered")
        template = self._template_for(name)
        if template is None:
            return self.add(name)
        return self._register(self._made(name, template))

    def remove(self, name: str) -> None:
        """Remove a channel and unsubscribe everyone from it."""
        channel = self._channels[name]
        for pk in [*channel._members, *channel._syncing]:
            self.unsubscribe(name, pk)
        channel._registry = None
        self._channels.pop(name, None)

    def __delitem__(self, name: str) -> None:
        self.remove(name)

    def __getitem__(self, name: str) -> Channel:
        channel = self._channels.get(name)
        if channel is not None:
            return channel
        template = self._template_for(name)
        if template is None:
            raise KeyError(name)
        return self._made(name, template)

    def __contains__(self, name: object) -> bool:
        return name in self._channels

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    def declarations(self) -> list[Channel]:
        """The channels and channel patterns the application declared (not those made
        from a pattern): the named ones, then the patterns, each in declaration order."""
        named = [channel for channel in self._channels.values() if channel._template is None]
        return named + self._patterns

    def declared(self, name: str) -> tuple[Channel, dict[str, str]] | None:
        """The channel (or pattern) declaring ``name``, and the pattern's values."""
        channel = self._channels.get(name)
        if channel is not None and channel._template is None:
            return channel, {}
        for template in self._patterns:
            values = template.pattern.match(name) if template.pattern is not None else None
            if values is not None:
                return template, values
        return None

    def _template_for(self, name: str) -> Channel | None:
        for template in self._patterns:
            if template.pattern is not None and template.pattern.match(name) is not None:
                return template
        return None

    def _made(self, name: str, template: Channel) -> Channel:
        """A channel of ``template``'s pattern (registered once someone subscribes)."""
        channel = copy.copy(template)
        channel.name = name
        channel.pattern = None
        channel._template = template
        channel._reset()
        return channel

    def _register(self, channel: Channel) -> Channel:
        channel._registry = self
        if channel.policy == "drop":
            channel._slow = Drop(lambda ws, count: self._report_lag(channel.name, ws, count))
        elif channel.policy == "conflate":
            channel._slow = Conflate(self.max_buffer)
        self._channels[channel.name] = channel
        return channel

    def _adopt(self, view: Channel) -> Channel:
        """The registered channel of ``view``'s name, registering ``view`` if none is."""
        live = self._channels.get(view.name)
        return live if live is not None else self._register(view)

    def _release(self, channel: Channel) -> None:
        """Forget a channel made from a pattern once nobody is subscribed to it."""
        if (
            channel._template is not None
            and not _interest(channel)
            and self._channels.get(channel.name) is channel
        ):
            del self._channels[channel.name]

    def configure(self, max_buffer: int) -> None:
        """Apply the server's settings (at start-up)."""
        self.max_buffer = max_buffer
        for channel in self._channels.values():
            if isinstance(channel._slow, Conflate):
                channel._slow.limit = max_buffer

    # connections

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

    def expect(self, ws: Connection) -> None:
        """``ws`` is being admitted: what its headers subscribe it to waits for the verdict."""
        self._admitting[ws.pk] = ws

    def admitted(self, ws: Connection) -> None:
        """``ws`` was admitted: the subscriptions its headers made take effect."""
        if self._admitting.pop(ws.pk, None) is None:
            return
        for name in self._pending.pop(ws.pk, ()):
            channel = self._channels.get(name) or self._made_or_none(name)
            if channel is not None:
                channel.subscribe(ws)

    def _made_or_none(self, name: str) -> Channel | None:
        template = self._template_for(name)
        return self._made(name, template) if template is not None else None

    def refused(self, ws: Connection) -> None:
        """``ws`` was refused or left during its handshake: forget what it subscribed to."""
        self._admitting.pop(ws.pk, None)
        self._pending.pop(ws.pk, None)

    def drop(self, ws: Connection) -> None:
        """Unsubscribe a departing connection from every channel it joined."""
        for name in self._joined.pop(ws.pk, ()):
            self.unsubscribe(name, ws.pk)

    # subscribing

    def subscribe(self, view: Channel, pk: str | Connection) -> None:
        """Server code subscribes a connection (see :meth:`Channel.subscribe`)."""
        ws = self.connection(pk)
        if ws is None:
            return
        if ws.pk in self._admitting:
            self._pending.setdefault(ws.pk, set()).add(view.name)
            return
        pending = self.join(ws, view, None, None)
        if pending is not None:
            assert self.spawn is not None, "a shared broker runs inside a server"
            self.spawn(pending)

    def join(
        self,
        ws: Connection,
        view: Channel,
        since: tuple[str, int] | None,
        answer: Answer | None,
    ) -> Coroutine[Any, Any, None] | None:
        """Subscribe ``ws``, recovering after ``since`` on a history channel.

        ``answer`` is called with the position before anything else reaches ``ws`` from
        the channel. Returns a coroutine when the join waits for the broker.
        """
        channel = self._adopt(view)
        name, pk = channel.name, ws.pk
        member = name in self._joined.get(pk, ())
        info = self._describe(channel, ws) if not member else None
        history = channel.history
        if history is None:
            if answer is not None:
                answer("", 0, False)
            if not member:
                self._attend(channel, ws)
                self._enter(channel, ws, info)
            return None
        now = self.clock()
        self._sweep(now)
        timeline = self._timelines.get(name)
        shared = self.broker.shared
        if not shared and timeline is None:
            timeline = self._timelines[name] = Timeline(history, now)
        if timeline is not None and (not shared or self.broker.attached(name)):
            missed = timeline.since(*since, now) if since is not None else None
            if not shared or since is None or missed is not None:
                if answer is not None:
                    answer(timeline.epoch, timeline.offset, missed is not None)
                _write_missed(ws, name, missed)
                if not member:
                    self._attend(channel, ws)
                    self._enter(channel, ws, info)
                return None
        sync = _Sync(ws)
        was = channel._members.pop(pk, None)
        channel._syncing[pk] = sync
        if was is None:
            self._joined.setdefault(pk, set()).add(name)
            self._interested(channel)
        return self._join_later(channel, ws, since, answer, sync, info)

    async def _join_later(
        self,
        channel: Channel,
        ws: Connection,
        since: tuple[str, int] | None,
        answer: Answer | None,
        sync: _Sync,
        info: bytes | None,
    ) -> None:
        name, pk = channel.name, ws.pk
        assert channel.history is not None
        try:
            epoch, offset, missed = await self.broker.read(name, since, channel.history)
        except BaseException:
            if channel._syncing.get(pk) is sync:
                self.unsubscribe(name, pk)
            raise
        if channel._syncing.get(pk) is not sync:
            # It was unsubscribed (or subscribed again) meanwhile: its request still
            # gets an answer, without publications.
            if answer is not None:
                answer(epoch, offset, False)
            return
        if answer is not None:
            answer(epoch, offset, missed is not None)
        _write_missed(ws, name, missed)
        buffered, sync.buffer = sync.buffer or [], None
        sync.after = offset
        _write(ws, [frame for at, frame in buffered if at is None or at > offset])
        if info is not None:
            self._enter(channel, ws, info)
        timeline = self._timelines.get(name)
        if timeline is None or timeline.epoch != epoch or timeline.offset >= offset:
            self._promote(channel, pk)

    def _promote(self, channel: Channel, pk: str) -> None:
        """A joining subscriber caught up with the channel: it now receives as a member."""
        sync = channel._syncing.pop(pk)
        channel._members[pk] = sync.ws

    def _describe(self, channel: Channel, ws: Connection) -> bytes | None:
        """The presence info of ``ws``, encoded, when ``channel`` has presence."""
        if not channel.presence:
            return None
        return encode(self.describe(ws) if self.describe is not None else None)

    def _enter(self, channel: Channel, ws: Connection, info: bytes | None) -> None:
        """``ws`` is now subscribed: bookkeeping and presence."""
        name, pk = channel.name, ws.pk
        self._joined.setdefault(pk, set()).add(name)
        if info is not None:
            channel._present[pk] = info
            if self.broker.shared:
                self.broker.present(name, pk, info)
            self._announce("$join", channel, pk, info)

    def _attend(self, channel: Channel, ws: Connection) -> None:
        """``ws`` receives the channel's broadcasts from now on."""
        channel._members[ws.pk] = ws
        self._interested(channel)

    def _interested(self, channel: Channel) -> None:
        count = _interest(channel)
        if count == 1:
            self.broker.subscribe(channel.name)
        self.broker.recount(channel.name, count)

    def unsubscribe(self, name: str, pk: str) -> None:
        """Remove connection ``pk`` from channel ``name`` (harmless if it is not in it)."""
        pending = self._pending.get(pk)
        if pending is not None:
            pending.discard(name)
        channel = self._channels.get(name)
        if channel is None:
            return
        ws = channel._members.pop(pk, None)
        sync = channel._syncing.pop(pk, None)
        if ws is None and sync is None:
            return
        joined = self._joined.get(pk)
        if joined is not None:
            joined.discard(name)
            if not joined:
                del self._joined[pk]
        if channel._slow is not None:
            channel._slow.forget(pk)
        info = channel._present.pop(pk, None)
        if info is not None:
            if self.broker.shared:
                self.broker.absent(name, pk)
            self._announce("$leave", channel, pk, info)
        count = _interest(channel)
        if not count:
            self.broker.unsubscribe(name)
            timeline = self._timelines.get(name)
            if timeline is not None:
                timeline.touched = self.clock()
        self.broker.recount(name, count)
        self._release(channel)

    # presence

    def _announce(self, event: str, channel: Channel, pk: str, info: bytes) -> None:
        data = encode({event: {"channel": channel.name, "pk": pk, "info": msgspec.Raw(info)}})
        # On a conflating channel the latest event per member waits for a slow subscriber.
        self._emit(self.broker.publish, [channel.name], data, f"$presence:{pk}")

    def presence(self, name: str) -> list[tuple[str, bytes]] | Awaitable[list[tuple[str, bytes]]]:
        """``(pk, info)`` of the members of ``name`` (every process on a shared broker)."""
        if self.broker.shared:
            return self.broker.members(name)
        channel = self._channels.get(name)
        return list(channel._present.items()) if channel is not None else []

    def departed(self, name: str, pk: str, info: bytes) -> None:
        """A member of ``name`` in a process that died is gone."""
        channel = self._channels.get(name) or self._made_or_none(name)
        if channel is not None:
            self._announce("$leave", channel, pk, info)

    # publishing and delivering

    def sort(
        self, names: Iterable[str], data: bytes
    ) -> tuple[list[str], list[tuple[str, History]]]:
        """The channels without history and the history channels among ``names``; unknown
        names are logged and left out. Raises when ``data`` cannot go to a history channel
        (it must be a JSON object: its frames carry the channel and the offset)."""
        plain: list[str] = []
        numbered: list[tuple[str, History]] = []
        for name in names:
            channel = self._channels.get(name) or self._template_for(name)
            if channel is None:
                logger.warning("broadcast to unknown channel %r dropped", name)
            elif channel.history is None:
                plain.append(name)
            else:
                numbered.append((name, channel.history))
        if numbered and not data.startswith(b"{"):
            raise LexiconsError(
                f"a broadcast to history channel {numbered[0][0]!r} must be a JSON object "
                "(its frames carry the channel and the offset beside it)"
            )
        return plain, numbered

    def publish(self, names: Iterable[str], data: bytes, key: str | None = None) -> None:
        """Hand an encoded broadcast to the broker for the known channels among ``names``."""
        plain, numbered = self.sort(names, data)
        for name, history in numbered:
            self._emit(self._publish_at, name, history, data, key)
        if plain:
            self._emit(self.broker.publish, plain, data, key)

    def _emit(self, action: Callable[..., Any], *args: Any) -> None:
        if self.gate is None:
            action(*args)
        else:
            self.gate.emit(action, *args)

    def _publish_at(self, name: str, history: History, data: bytes, key: str | None) -> None:
        if self.broker.shared:
            self.broker.publish_at(name, data, key, history)
            return
        now = self.clock()
        timeline = self._timelines.get(name)
        if timeline is None:
            timeline = self._timelines[name] = Timeline(history, now)
        offset = timeline.append(data, now)
        self._sweep(now)
        channel = self._channels.get(name)
        if channel is not None and channel._members:
            _fan_out(channel, broadcast_frame(data, name, offset), key)

    def deliver(self, names: Sequence[str], data: bytes, key: str | None = None) -> None:
        """Write one broadcast to this process's subscribers of ``names``, each once."""
        frame = broadcast_frame(data)
        if len(names) == 1:
            channel = self._channels.get(names[0])
            if channel is not None:
                _fan_out(channel, frame, key)
                if channel._syncing:
                    self._hold(channel, None, frame)
            return
        members: dict[str, Connection] = {}
        lagging: list[Channel] = []
        for name in names:
            channel = self._channels.get(name)
            if channel is not None:
                if channel._slow is None:
                    members.update(channel._members)
                else:
                    lagging.append(channel)
                if channel._syncing:
                    self._hold(channel, None, frame)
        deliver(members.values(), frame)
        for channel in lagging:
            assert channel._slow is not None
            rest = {pk: ws for pk, ws in channel._members.items() if pk not in members}
            channel._slow.deliver(rest.values(), frame, key)
            members.update(rest)

    def deliver_at(self, name: str, epoch: str, offset: int, data: bytes, key: str | None) -> None:
        """Write publication ``offset`` of history channel ``name`` (a shared broker's)."""
        now = self.clock()
        timeline = self._timelines.get(name)
        channel = self._channels.get(name)
        if timeline is None:
            timeline = Timeline(self._history_of(name), now, epoch, offset - 1)
            self._timelines[name] = timeline
        renewed = epoch != timeline.epoch
        timeline.record(epoch, offset, data, now)
        self._sweep(now)
        if channel is None:
            return
        if renewed:  # history was lost: what a joining subscriber was told no longer counts
            for pk, sync in list(channel._syncing.items()):
                if sync.buffer is None:
                    self._promote(channel, pk)
        frame = broadcast_frame(data, name, offset)
        _fan_out(channel, frame, key)
        if channel._syncing:
            self._hold(channel, offset, frame)

    def _hold(self, channel: Channel, offset: int | None, frame: Broadcast) -> None:
        """A frame for the subscribers that are joining: kept, written or skipped."""
        for pk, sync in list(channel._syncing.items()):
            if sync.buffer is not None:
                sync.buffer.append((offset, frame))
                sync.size += frame.size
                if sync.size > self.max_buffer:
                    sync.buffer = []
                    cut_off(sync.ws, f"more than {self.max_buffer} bytes arrived while it joined")
            elif offset is None or offset > sync.after:
                deliver((sync.ws,), frame)
                if offset is not None:
                    self._promote(channel, pk)
            elif offset == sync.after:
                self._promote(channel, pk)

    def restart(self, name: str, epoch: str, offset: int) -> None:
        """The broker follows history channel ``name`` from ``(epoch, offset)`` on."""
        timeline = self._timelines.get(name)
        if timeline is not None and timeline.position != (epoch, offset):
            timeline.reset(epoch, offset)
            timeline.touched = self.clock()
        elif timeline is None:
            self._timelines[name] = Timeline(self._history_of(name), self.clock(), epoch, offset)

    def _history_of(self, name: str) -> History:
        channel = self._channels.get(name) or self._template_for(name)
        history = channel.history if channel is not None else None
        return history or History(1)

    def lagged(self, name: str, count: int) -> None:
        """Tell this process's subscribers of ``name`` that ``count`` publications were lost."""
        channel = self._channels.get(name)
        if channel is not None:
            for ws in list(channel._members.values()):
                self._report_lag(name, ws, count)

    def _report_lag(self, name: str, ws: Connection, count: int) -> None:
        data = encode({"$lagged": {"channel": name, "dropped": count}})
        deliver((ws,), broadcast_frame(data))

    def _sweep(self, now: float) -> None:
        """Once a second at most: forget the timelines nobody published to or left for
        their age, of channels nobody is subscribed to. Nothing accumulates per channel."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        for name, timeline in list(self._timelines.items()):
            channel = self._channels.get(name)
            if timeline.idle(now) and (channel is None or not _interest(channel)):
                del self._timelines[name]


def _fan_out(channel: Channel, frame: Broadcast, key: str | None) -> None:
    """Write a framed broadcast to a channel's subscribers, by its slow-consumer policy."""
    slow = channel._slow
    if slow is None:
        deliver(channel._members.values(), frame)
    else:
        slow.deliver(channel._members.values(), frame, key)


def _write_missed(ws: Connection, name: str, missed: list[tuple[int, bytes]] | None) -> None:
    if missed:
        _write(ws, [broadcast_frame(data, name, offset) for offset, data in missed])


def _write(ws: Connection, frames: list[Broadcast]) -> None:
    """Write broadcasts to one connection in one go."""
    if frames:
        deliver_all(ws, frames)
