"""What a channel keeps of its publications, so a client that reconnects can catch up.

A channel declared with :class:`History` numbers its publications: offsets grow by one
per publication within an *epoch*, a random string that changes whenever history was
lost, so an offset from before a loss is never mistaken for one after it. Recovery asks
for everything after an offset; it is possible when the epoch is the current one and
every publication after that offset is still held (the latest ``count``, none older than
``age`` seconds); otherwise the client must reload its state.

A :class:`Timeline` is one channel's numbered publications. In a single process it is
the authority that numbers them; on a broker that shares history (Redis) the broker
numbers them and the timeline is this process's cache of the latest ones, so a client
that reconnects to the same process recovers without asking Redis. No I/O here: the
caller passes the time.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from itertools import islice

from .errors import RegistrationError

__all__ = ["History", "Timeline", "new_epoch"]


@dataclass(frozen=True, slots=True)
class History:
    """Keep a channel's latest ``count`` publications, none for longer than ``age`` seconds.

    ``app.channel("room:{id}", history=History(100, age=600))``. ``History(50)`` keeps 50
    for five minutes.
    """

    count: int
    age: float = 300.0

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1:
            raise RegistrationError(
                f"History: count must be a whole number >= 1, not {self.count!r}"
            )
        if not isinstance(self.age, int | float) or isinstance(self.age, bool) or self.age <= 0:
            raise RegistrationError(
                f"History: age must be a positive number of seconds, not {self.age!r}"
            )


def new_epoch() -> str:
    """A fresh epoch: 16 random hex digits."""
    return os.urandom(8).hex()


class Timeline:
    """One channel's publications by offset, bounded by its :class:`History`.

    ``offset`` is the latest publication's (0 before the first). The entries held are
    always the contiguous run that ends at ``offset``.
    """

    __slots__ = ("history", "epoch", "offset", "touched", "_entries")

    def __init__(
        self, history: History, now: float, epoch: str | None = None, offset: int = 0
    ) -> None:
        self.history = history
        self.epoch = epoch or new_epoch()
        self.offset = offset
        #: When it was last published to or left by a subscriber.
        self.touched = now
        #: (offset, time, data), oldest first.
        self._entries: deque[tuple[int, float, bytes]] = deque()

    @property
    def position(self) -> tuple[str, int]:
        return self.epoch, self.offset

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, data: bytes, now: float) -> int:
        """Number a new publication (this timeline is the authority); its offset."""
        self.offset += 1
        self._hold(self.offset, now, data)
        return self.offset

    def record(self, epoch: str, offset: int, data: bytes, now: float) -> bool:
        """Keep a publication the broker numbered; False if it is not the next one
        (a new epoch, or a gap: what was held no longer leads up to it, and is dropped)."""
        follows = epoch == self.epoch and offset == self.offset + 1
        if not follows:
            self.reset(epoch, offset - 1)
        self.offset = offset
        self._hold(offset, now, data)
        return follows

    def reset(self, epoch: str, offset: int) -> None:
        """Forget every entry; the position is now ``(epoch, offset)``."""
        self._entries.clear()
        self.epoch = epoch
        self.offset = offset

    def since(self, epoch: str, offset: int, now: float) -> list[tuple[int, bytes]] | None:
        """The publications after ``offset``, in order, if every one is held; else None."""
        if epoch != self.epoch or not 0 <= offset <= self.offset:
            return None
        if offset == self.offset:
            return []
        self._expire(now)
        entries = self._entries
        first = entries[0][0] if entries else self.offset + 1
        if offset + 1 < first:
            return None
        return [(o, data) for o, _, data in islice(entries, offset + 1 - first, None)]

    def idle(self, now: float) -> bool:
        """Whether it was neither published to nor left for ``age`` seconds: nothing it
        holds is still recoverable, and a channel without subscribers may forget it."""
        return now - self.touched >= self.history.age

    def _hold(self, offset: int, now: float, data: bytes) -> None:
        self.touched = now
        entries = self._entries
        entries.append((offset, now, data))
        history = self.history
        if len(entries) > history.count:
            entries.popleft()
        if entries[0][1] < now - history.age:
            self._expire(now)

    def _expire(self, now: float) -> None:
        entries = self._entries
        oldest = now - self.history.age
        while entries and entries[0][1] < oldest:
            entries.popleft()
