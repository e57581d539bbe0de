"""Server frames built by hand: the same bytes can be written to every client.

Server frames are not masked, so one framed broadcast serves every subscriber.
"""

from __future__ import annotations

import struct
from functools import partial

from websockets.frames import Opcode

__all__ = ["binary_frame", "text_frame"]

_FIN_TEXT = 0x80 | Opcode.TEXT
_FIN_BINARY = 0x80 | Opcode.BINARY
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
