"""The framework's own messages, as msgspec Structs whose JSON Schema the AsyncAPI document
gives: the error frame, the ``$`` requests (the very Structs that decode them) and their
answers, and the notices a channel sends. A test checks real frames against them.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

import msgspec

from ..subscriptions import Named, Subscribe
from .contract import ERROR_CODES, REF_PREFIX, Schema

__all__ = ["FRAMEWORK", "PREFIX", "Framework", "framework"]

#: What the names of these schemas start with, apart from the application's.
PREFIX = "lexicons."


class Failure(msgspec.Struct):
    """One failed request: the signal it named (``null`` for a frame that named none)."""

    signal: str | None
    code: Annotated[
        str,
        msgspec.Meta(
            description="lexicons' own codes: "
            + "; ".join(f"`{code}`: {when}" for code, when in ERROR_CODES.items())
            + "; or a handler's SignalError code",
            examples=list(ERROR_CODES),
        ),
    ]
    message: str


class Position(msgspec.Struct):
    """A channel's position: the offset of its latest publication in the current epoch
    (``""`` and ``0`` without history), and whether the missed publications follow."""

    channel: str
    epoch: str
    offset: Annotated[int, msgspec.Meta(ge=0)]
    recovered: bool


class Member(msgspec.Struct):
    """A connection in a presence channel; ``info`` is the app's presence function's."""

    pk: str
    info: Any


class Members(msgspec.Struct):
    channel: str
    members: list[Member]


class Presence(msgspec.Struct):
    """A connection that joined or left a presence channel."""

    channel: str
    pk: str
    info: Any


class Lagged(msgspec.Struct):
    """Publications of a channel this connection missed while it lagged."""

    channel: str
    dropped: int


class Publication(msgspec.Struct):
    """What a broadcast on a history channel carries beside the signal."""

    channel: str
    offset: Annotated[int, msgspec.Meta(ge=1)]


#: The framework's messages by name: ``(what a client sends, what it receives)``, ``None``
#: where it sends nothing under that name.
FRAMEWORK: dict[str, tuple[Any, Any]] = {
    "Errors": (None, Annotated[list[Failure], msgspec.Meta(min_length=1)]),
    "$subscribe": (Subscribe, Position),
    "$unsubscribe": (Named, Named),
    "$presence": (Named, Members),
    "$join": (None, Presence),
    "$leave": (None, Presence),
    "$lagged": (None, Lagged),
}


class Framework(NamedTuple):
    """The JSON Schema of the framework's messages."""

    #: By message name, the schemas of what a client sends (``None``: nothing) and receives.
    messages: dict[str, tuple[Schema | None, Schema]]
    #: The properties a broadcast on a history channel carries beside the signal.
    publication: dict[str, Schema]
    #: The named schemas the others refer to, by their name (starting with PREFIX).
    schemas: dict[str, Schema]


def framework() -> Framework:
    """msgspec's JSON Schema of :data:`FRAMEWORK` and :class:`Publication`."""
    kinds = [kind for pair in FRAMEWORK.values() for kind in pair if kind is not None]
    found, named = msgspec.json.schema_components(
        kinds, ref_template=REF_PREFIX + PREFIX + "{name}"
    )
    schemas = iter(found)
    messages = {
        name: (None if sends is None else next(schemas), next(schemas))
        for name, (sends, _) in FRAMEWORK.items()
    }
    publication = msgspec.json.schema(Publication)["$defs"]["Publication"]["properties"]
    return Framework(
        messages, publication, {PREFIX + name: schema for name, schema in sorted(named.items())}
    )
