"""Server frames built by hand: the same bytes can be written to every client.

Server frames are not masked, so one framed broadcast serves every subscriber. A
connection's *flavour* says how its messages are framed: text or binary (its encoding),
and deflated with which window size, if it negotiated permessage-deflate. Frames of one
flavour can be written to every connection of that flavour.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import cache, partial

from websockets.frames import Opcode

from .deflate import MIN_SIZE, compress

__all__ = ["binary_frame", "flavour", "framer", "text_frame"]

_FIN_TEXT = 0x80 | Opcode.TEXT
_FIN_BINARY = 0x80 | Opcode.BINARY
_RSV1 = 0x40
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


def _frame(first: int, data: bytes) -> bytes:
    # The header by hand (RFC 6455 5.2: FIN + opcode, then the length in 7, 16 or 64
    # bits) instead of Frame.serialize, which checks, builds a BytesIO and packs with
    # struct: several times cheaper, and the largest single cost of a reply.
    length = len(data)
    if length < 126:
        return bytes((first, length)) + data
    if length < 65536:
        return _HEAD16.pack(first, 126, length) + data
    return _HEAD64.pack(first, 127, length) + data


#: ``text_frame(data)``: ``data`` (UTF-8) as one unmasked, final text frame.
text_frame = partial(_frame, _FIN_TEXT)
#: ``binary_frame(data)``: ``data`` as one unmasked, final binary frame.
binary_frame = partial(_frame, _FIN_BINARY)


def _deflated(first: int, bits: int, data: bytes) -> bytes:
    if len(data) < MIN_SIZE:
        return _frame(first, data)
    return _frame(first | _RSV1, compress(data, bits))


def flavour(binary: bool, bits: int) -> int:
    """The flavour of a connection: binary or text frames, deflated with a ``bits``
    window (0: not compressed). Flavour 0 is plain text frames."""
    return int(binary) | bits << 1


@cache
def framer(flavour: int) -> Callable[[bytes], bytes]:
    """What frames one message for connections of ``flavour`` (made once per flavour)."""
    first = _FIN_BINARY if flavour & 1 else _FIN_TEXT
    bits = flavour >> 1
    if bits:
        return partial(_deflated, first, bits)
    return partial(_frame, first)
