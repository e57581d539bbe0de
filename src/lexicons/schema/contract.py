"""What an application offers its clients, read from its registries and annotations.

Every type is described by JSON Schema from msgspec (``schema_components``), never by
hand: a signal's payload from the Struct its parameters decode as, its reply and its
broadcasts from its return annotation (``-> Reply``, ``-> Response[Broadcast]``, a union
of both, ``-> None``). What cannot be known, an un-annotated return, is the empty schema
:data:`UNKNOWN`, which every value meets. The AsyncAPI and TypeScript writers render a
:class:`Contract`; nothing here does I/O.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import LexiconsError
from ..signals import Response

__all__ = [
    "ERROR_CODES",
    "Application",
    "REF_PREFIX",
    "UNKNOWN",
    "ChannelContract",
    "Contract",
    "HeaderContract",
    "Schema",
    "SignalContract",
    "contract_of",
    "split_return",
]

#: A JSON Schema, as msgspec emits it.
Schema = dict[str, Any]

#: The schema every value meets: what a type that cannot be known becomes.
UNKNOWN: Schema = {}

#: Where a ``$ref`` points: the schemas of :attr:`Contract.schemas`, by name.
REF_PREFIX = "#/components/schemas/"

#: The error codes lexicons itself answers with, and when (docs/protocol.md lists them).
ERROR_CODES: dict[str, str] = {
    "invalid_json": "the text frame is not JSON, or nested too deeply",
    "invalid_frame": "JSON that is not an object or a list of objects naming one signal "
    "each, or a binary frame",
    "unknown_signal": "no signal of that name",
    "invalid_payload": "the payload does not match the signal's parameters",
    "internal_error": "the handler raised",
    "storage_error": "durable mode: what the request wrote could not be saved",
    "rate_limited": "the signal's rate limit for this connection is used up",
    "forbidden": "the channel's authorization refused, or clients may not join it",
    "unknown_channel": "no channel or channel pattern of that name",
    "not_subscribed": "$presence on a channel the connection is not subscribed to",
    "no_presence": "$presence on a channel declared without presence",
    "unavailable": "the servers' Redis is unreachable: try again",
}


@dataclass(frozen=True, slots=True)
class SignalContract:
    """One signal: what a client sends, and what it may receive under the same name."""

    name: str
    doc: str
    payload: Schema
    #: What a reply carries; ``None`` when the signal never replies.
    reply: Schema | None
    #: Whether a request may get no reply (``-> None``, ``-> Response``, ``X | None``).
    silent: bool
    #: What a broadcast carries; ``None`` when the signal never broadcasts.
    broadcast: Schema | None


@dataclass(frozen=True, slots=True)
class ChannelContract:
    """One declared channel, or channel pattern (``room:{id}`` has ``params`` ``("id",)``)."""

    name: str
    params: tuple[str, ...]
    joinable: bool
    #: ``(count, age in seconds or None)`` of its history, ``None`` without history.
    history: tuple[int, float | None] | None
    presence: bool
    policy: str


@dataclass(frozen=True, slots=True)
class HeaderContract:
    """One handshake credential: its name and the value it expects."""

    name: str
    doc: str
    #: The value: a JSON object's schema, or the text's when ``text`` is true.
    value: Schema
    #: Whether the value is plain text (a ``header: str`` parameter) rather than JSON.
    text: bool


@dataclass(frozen=True, slots=True)
class Contract:
    """An application's signals, channels and credentials, sorted by name (headers in the
    gate's order), and the named schemas their ``$ref`` point to."""

    signals: tuple[SignalContract, ...]
    channels: tuple[ChannelContract, ...]
    headers: tuple[HeaderContract, ...]
    #: ``"all"``, ``"any"``, or ``"custom"``: how header results admit a connection.
    gate: str
    schemas: Mapping[str, Schema]


class Application(typing.Protocol):
    """What a contract is read from (:class:`lexicons.Server` is one)."""

    @property
    def signals(self) -> Mapping[str, Any]: ...

    @property
    def headers(self) -> Mapping[str, Any]: ...

    @property
    def channels(self) -> Any: ...

    @property
    def gate(self) -> Callable[[list[bool]], Any]: ...


#: Stands for a type that cannot be known while types are being gathered.
_UNKNOWN_TYPE = object()


def contract_of(app: Application) -> Contract:
    """The contract of ``app`` (a :class:`lexicons.Server`); raises LexiconsError naming
    the signal or header whose annotation has no JSON Schema."""
    gathered = _Types()
    signals = [_signal(gathered, name, app.signals[name]) for name in sorted(app.signals)]
    headers = [_header(gathered, name, app.headers[name]) for name in app.headers]
    gathered.describe()
    return Contract(
        signals=tuple(make() for make in signals),
        channels=tuple(
            sorted((_channel(c) for c in app.channels.declarations()), key=lambda c: c.name)
        ),
        headers=tuple(make() for make in headers),
        gate=_gate_name(app.gate),
        schemas=gathered.schemas,
    )


def _signal(gathered: _Types, name: str, handler: Any) -> Callable[[], SignalContract]:
    """Gather a signal's types; returns what makes its contract once they are described."""
    replies, silent, broadcasts = split_return(handler.returns)
    payload = gathered.payload(handler.payload, f"signal {name!r}: payload")
    reply = gathered.add(replies, f"signal {name!r}: reply")
    broadcast = gathered.add(broadcasts, f"signal {name!r}: broadcast")
    doc = _doc(handler.func)
    return lambda: SignalContract(name, doc, payload(), reply(), silent, broadcast())


def _header(gathered: _Types, name: str, handler: Any) -> Callable[[], HeaderContract]:
    """Gather a header's value type: a JSON object's, or the text's (``header: str``)."""
    fields = msgspec.structs.fields(handler.payload.struct)
    text = [field.name for field in fields] == ["header"] and not handler.payload.named
    if text:
        value = gathered.add([fields[0].type], f"header {name!r}")
    else:
        value = gathered.payload(handler.payload, f"header {name!r}")
    doc = _doc(handler.func)
    return lambda: HeaderContract(name, doc, value() or UNKNOWN, text)


def split_return(annotation: Any) -> tuple[list[Any] | None, bool, list[Any] | None]:
    """``(reply types, may be silent, broadcast types)`` of a signal's return annotation.

    A list holds the union's members (:data:`_UNKNOWN_TYPE` when unknowable); ``None``
    means never. ``Response[T]`` broadcasts ``T``; ``None`` and ``Response`` send no reply.
    """
    annotation = _awaited(annotation)
    if annotation in (inspect.Signature.empty, Any, object):
        return [_UNKNOWN_TYPE], True, [_UNKNOWN_TYPE]
    members = _members(annotation)
    replies: list[Any] = []
    broadcasts: list[Any] = []
    silent = False
    for member in members:
        if member is type(None):
            silent = True
        elif member is Response or typing.get_origin(member) is Response:
            silent = True
            args = typing.get_args(member)
            broadcasts.append(_UNKNOWN_TYPE if not args or args[0] in (Any, object) else args[0])
        elif member in (Any, object):
            return [_UNKNOWN_TYPE], True, [_UNKNOWN_TYPE]
        else:
            replies.append(member)
    return replies or None, silent, broadcasts or None


def _awaited(annotation: Any) -> Any:
    """``X`` for ``Awaitable[X]`` or ``Coroutine[..., X]``: what a sync function's
    awaitable result resolves to."""
    origin = typing.get_origin(annotation)
    if origin in (collections.abc.Awaitable, collections.abc.Coroutine):
        args = typing.get_args(annotation)
        return args[-1] if args else Any
    return annotation


def _members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


#: A schema known once the gathered types are described; ``None`` for "never".
_Later = Callable[[], Schema | None]


class _Types:
    """Gathers the Python types of a contract, then has msgspec describe them all at once,
    so that every named type becomes one shared schema."""

    def __init__(self) -> None:
        self._types: list[Any] = []
        self._owners: list[str] = []
        self._found: tuple[Schema, ...] = ()
        #: Payloads made from parameters with ``**kwargs``: other fields reach them too.
        self._open: list[int] = []
        #: The names of the Structs new rows decode from, whose ``pk`` clients must omit.
        self._rows: set[str] = set()
        self.schemas: dict[str, Schema] = {}

    def add(self, members: Sequence[Any] | None, owner: str) -> _Later:
        """The schema of the union of ``members``: UNKNOWN when one is unknowable, None
        when there are none."""
        if members is None:
            return lambda: None
        if _UNKNOWN_TYPE in members:
            return lambda: UNKNOWN
        kind = members[0] if len(members) == 1 else typing.Union[tuple(members)]  # noqa: UP007
        index = self._index(kind, owner)
        return lambda: self._found[index]

    def payload(self, spec: Any, owner: str) -> Callable[[], Schema]:
        """A payload's schema; inline when it has no fields of its own (a signal without
        parameters: an empty object, or any object with ``**kwargs``)."""
        if not spec.named and not msgspec.structs.fields(spec.struct):
            inline: Schema = {"type": "object"}
            if not spec.takes_extra:
                inline |= {"properties": {}, "additionalProperties": False}
            return lambda: inline
        index = self._index(spec.struct, owner)
        if spec.takes_extra and not spec.named:
            self._open.append(index)
        self._rows.update(row.__name__ for row in spec.rows)
        return lambda: self._found[index]

    def _index(self, kind: Any, owner: str) -> int:
        self._types.append(kind)
        self._owners.append(owner)
        return len(self._types) - 1

    def describe(self) -> None:
        """Describe every gathered type (raises LexiconsError naming the owner of a type
        msgspec cannot describe)."""
        try:
            self._found, self.schemas = _components(self._types)
        except (TypeError, ValueError):
            for kind, owner in zip(self._types, self._owners, strict=True):
                try:
                    _components([kind])
                except (TypeError, ValueError) as exc:
                    raise LexiconsError(
                        f"{owner}: {kind!r} has no JSON Schema ({exc}); annotate it with "
                        "types msgspec can encode"
                    ) from exc
            raise
        for index in self._open:
            # Said explicitly: an object schema without the keyword is read as closed.
            name = self._found[index]["$ref"].removeprefix(REF_PREFIX)
            self.schemas[name]["additionalProperties"] = True
        for named in self.schemas.values():
            if named.get("title") in self._rows and named["properties"].get("pk") == {}:
                # Sending a pk is refused (invalid_payload): the schema leaves it out.
                del named["properties"]["pk"]
        self.schemas = dict(sorted(self.schemas.items()))


def _components(kinds: Iterable[Any]) -> tuple[tuple[Schema, ...], dict[str, Schema]]:
    return msgspec.json.schema_components(kinds, ref_template=REF_PREFIX + "{name}")


def _channel(channel: Any) -> ChannelContract:
    history = channel.history
    return ChannelContract(
        name=channel.name,
        params=channel.pattern.params if channel.pattern is not None else (),
        joinable=channel.joinable,
        history=None if history is None else (history.count, history.age),
        presence=bool(channel.presence),
        policy=channel.policy,
    )


def _gate_name(gate: Callable[[list[bool]], Any]) -> str:
    return "all" if gate is all else "any" if gate is any else "custom"


def _doc(func: Callable[..., Any]) -> str:
    """The first paragraph of a handler's docstring, or of its class's (class style)."""
    owner = getattr(getattr(func, "__wrapped__", func), "__self__", None)
    text = func.__doc__ or (type(owner).__doc__ if owner is not None else None)
    if not text:
        return ""
    return " ".join(inspect.cleandoc(text).split("\n\n", 1)[0].split())
