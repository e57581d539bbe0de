"""Timeouts of one fixed length for many connections, served by a single timer.

Every connection spends a moment in its opening handshake and another in its closing
one, and must be dropped if the client does not finish in time. A ``loop.call_later``
per connection costs a timer handle, a heap push and a cancellation each time, for
deadlines that almost never expire: at a few thousand connections per second that is a
tenth of what a connection costs the server.

Since every deadline in one :class:`Deadlines` is "now + the same delay", deadlines
expire in the order they were added. A dict keeps that order, so adding and
discarding are one dict operation each, and one timer, set for the earliest deadline
still pending, expires whatever is due when it fires::

    opening = Deadlines(10.0, lambda link: link.expire("opening handshake timed out"), loop)
    opening.add(link)        # at connection_made
    opening.discard(link)    # once the handshake is done
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

Item = TypeVar("Item", bound=Hashable)

logger = logging.getLogger("lexicons")


class Deadlines(Generic[Item]):
    """Call ``expire(item)`` ``delay`` seconds after ``add(item)`` unless it is discarded.

    Only ``loop.time`` and ``loop.call_at`` are used, from the loop's own thread.
    """

    __slots__ = ("delay", "_expire", "_loop", "_due", "_timer")

    def __init__(
        self, delay: float, expire: Callable[[Item], object], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.delay = delay
        self._expire = expire
        self._loop = loop
        #: item -> loop time at which it expires, in increasing order.
        self._due: dict[Item, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, item: object) -> bool:
        return item in self._due

    def add(self, item: Item) -> None:
        """Start ``item``'s clock; adding it again restarts it."""
        due, loop = self._due, self._loop
        due.pop(item, None)  # a restarted clock belongs at the end of the order
        deadline = due[item] = loop.time() + self.delay
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._fire)

    def discard(self, item: Item) -> None:
        """Stop ``item``'s clock, if it is running."""
        self._due.pop(item, None)

    def cancel(self) -> None:
        """Stop every clock (at shutdown)."""
        self._due.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        due, loop = self._due, self._loop
        now = loop.time()
        while due:
            item = next(iter(due))
            deadline = due[item]
            if deadline > now:
                self._timer = loop.call_at(deadline, self._fire)
                return
            del due[item]
            try:
                self._expire(item)  # may add or discard items: the loop reads ``due`` afresh
            except Exception:  # one failing callback must not hold back the others
                logger.exception("timeout of %r failed", item)
