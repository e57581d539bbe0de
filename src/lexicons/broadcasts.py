"""One broadcast's bytes on the wire, built once per flavour that has subscribers.

A broadcast is encoded once, as JSON (what crosses the broker). Each connection has a
flavour (:func:`lexicons.network.frames.flavour`: its encoding, and its compression
window if it negotiated permessage-deflate); the frame of each flavour is built the first
time a subscriber of that flavour needs it and then written to all of them. A channel
whose subscribers all speak plain JSON pays for one text frame, as it always did.
"""

from __future__ import annotations

from .codecs import CODECS
from .network.frames import framer

__all__ = ["Broadcast"]


class Broadcast(dict[int, bytes]):
    """The frames of one JSON message by flavour: ``broadcast[session.flavour]``."""

    # A dict, so that the frame of a flavour already built costs one C lookup per
    # subscriber; __missing__ builds the others.
    __slots__ = ("message",)

    def __init__(self, message: bytes) -> None:
        super().__init__()
        #: The message, encoded as JSON.
        self.message = message

    @property
    def plain(self) -> bytes:
        """The plain text frame (flavour 0), which most subscribers take."""
        return self[0]

    @property
    def size(self) -> int:
        """About what one subscriber's copy weighs (for limits on what may wait)."""
        return len(self.message)

    def __missing__(self, flavour: int) -> bytes:
        message = CODECS[flavour & 1].from_json(self.message)
        frame = self[flavour] = framer(flavour)(message)
        return frame

    def __repr__(self) -> str:
        return f"<Broadcast {self.message[:40]!r}>"
