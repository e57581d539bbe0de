"""permessage-deflate (RFC 7692) for the frames lexicons builds itself, without I/O.

websockets' extension negotiates the parameters and decompresses what clients send; the
server asks for ``server_no_context_takeover``, so every message it sends is compressed
on its own, with a fresh compressor. That is what lets one compressed broadcast serve
every subscriber that negotiated the same window size: :func:`compress` is called once
per broadcast and window size, never per subscriber.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)

__all__ = ["MIN_SIZE", "compress", "negotiated_bits", "offer"]

#: Messages shorter than this go uncompressed (RSV1 clear, which RFC 7692 allows on a
#: compressed connection): deflate's block overhead makes them longer, not shorter.
MIN_SIZE = 64

_TAIL = b"\x00\x00\xff\xff"


def offer() -> ServerPerMessageDeflateFactory:
    """The extension factory a server with ``compression`` on negotiates with."""
    return ServerPerMessageDeflateFactory(server_no_context_takeover=True)


def negotiated_bits(extensions: Sequence[Any]) -> int:
    """The window size (bits) of the server's compressed messages, 0 without deflate.

    Only a connection whose client agreed to ``server_no_context_takeover`` counts: the
    server's factory always asks for it, so any other is not ours to share frames with.
    """
    for extension in extensions:
        if isinstance(extension, PerMessageDeflate) and extension.local_no_context_takeover:
            bits = int(extension.local_max_window_bits or 15)
            # zlib deflates with a 512-byte window when asked for 256 (RFC 7692's 8 bits),
            # which such a client may not inflate: it gets uncompressed messages.
            return bits if bits > 8 else 0
    return 0


def compress(data: bytes, bits: int) -> bytes:
    """``data`` deflated as one message with a ``bits`` window, without the sync tail."""
    compressor = zlib.compressobj(wbits=-bits)
    deflated = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return deflated[:-4] if deflated.endswith(_TAIL) else deflated
