"""The envelope a broadcast travels in between processes: a binary header, a small JSON
head, then the payload the publisher encoded, untouched.

::

    header  !B8sQI   kind, publisher's process id (origin), its sequence number, head length
    head    JSON     [channels, seqs, key, epoch, offset]   (trailing defaults left out)
    payload bytes

``kind`` is :data:`PLAIN` for a broadcast to channels without history, where ``seqs``
numbers it per channel for its publisher (so a receiver can count what it missed), or
:data:`NUMBERED` for a publication to one history channel, with the ``epoch`` and
``offset`` Redis gave it (the Lua script that numbers it writes the head's end).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import msgspec

__all__ = ["NUMBERED", "PLAIN", "Head", "head_prefix", "pack", "prefix", "unpack"]

_HEADER = struct.Struct("!B8sQI")
#: Where the kind and the origin sit: checked before anything else is decoded.
KIND = 0
ORIGIN = slice(1, 9)
PLAIN = 2
NUMBERED = 3


class Head(msgspec.Struct, array_like=True, omit_defaults=True):
    """What a receiver needs besides the payload."""

    channels: list[str]
    seqs: list[int] = []
    key: str | None = None
    epoch: str = ""
    offset: int = 0


_encode = msgspec.json.Encoder().encode
_decode_head = msgspec.json.Decoder(Head).decode


def pack(
    origin: bytes,
    seq: int,
    channels: Sequence[str],
    seqs: Sequence[int],
    key: str | None,
    data: bytes,
) -> bytes:
    """A broadcast to channels without history, ready to PUBLISH."""
    head = _encode(Head(list(channels), list(seqs), key))
    return b"".join((_HEADER.pack(PLAIN, origin, seq, len(head)), head, data))


def prefix(origin: bytes, seq: int) -> bytes:
    """The first 17 bytes of a numbered envelope; the script appends the head's length."""
    return _HEADER.pack(NUMBERED, origin, seq, 0)[:-4]


def head_prefix(channel: str, key: str | None) -> bytes:
    """A numbered envelope's head up to its epoch: the script appends ``"epoch",offset]``."""
    return b"[[%b],[],%b," % (_encode(channel), _encode(key))


def unpack(message: bytes) -> tuple[int, bytes, int, Head, bytes]:
    """``(kind, origin, seq, head, payload)``; ValueError if it is not an envelope."""
    try:
        kind, origin, seq, size = _HEADER.unpack_from(message)
        if kind not in (PLAIN, NUMBERED):
            raise ValueError(f"envelope kind {kind}")
        end = _HEADER.size + size
        head = _decode_head(message[_HEADER.size : end])
    except (struct.error, msgspec.DecodeError) as exc:
        raise ValueError(str(exc)) from None
    if not head.channels or (kind == NUMBERED and (not head.epoch or head.offset < 1)):
        raise ValueError("envelope without channels, or a numbered one without its number")
    return kind, origin, seq, head, message[end:]
