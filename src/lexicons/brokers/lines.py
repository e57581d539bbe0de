"""A process's place in each history channel it follows through Redis, without I/O.

Redis numbers a history channel's publications; pub/sub brings them to every process,
but a process whose connection drops misses some. A :class:`Line` hands publications on
strictly in offset order: the next one is delivered, a duplicate is skipped, and a gap
(or a reconnection) holds what follows until the missing ones are fetched from the
channel's history (a *fill*). What history no longer holds is reported as lost, so the
subscribers can be told.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Line", "Publication"]


class Publication(NamedTuple):
    """One numbered publication of a history channel."""

    epoch: str
    offset: int
    data: bytes
    key: str | None


class Line:
    """One history channel's publications, as this process delivers them.

    Until :meth:`start` gives the position to follow from, and while a fill runs, what
    arrives is held (up to ``limit`` bytes; past it the held ones are dropped, and the
    gap the next one shows is filled from history instead).
    """

    __slots__ = ("epoch", "offset", "held", "held_bytes", "limit")

    def __init__(self, limit: int) -> None:
        self.epoch: str | None = None
        self.offset = 0
        #: Publications waiting for the position or for a fill; None while following.
        self.held: list[Publication] | None = []
        self.held_bytes = 0
        self.limit = limit

    @property
    def started(self) -> bool:
        """Whether the position to follow from is known."""
        return self.epoch is not None

    @property
    def filling(self) -> bool:
        """Whether publications wait for the position or for a fill."""
        return self.held is not None

    def start(self, epoch: str, offset: int) -> tuple[list[Publication], bool]:
        """Follow from ``(epoch, offset)``: what to deliver of those held, and whether a
        fill must start."""
        self.epoch, self.offset = epoch, offset
        return self._release()

    def arrive(self, publication: Publication) -> tuple[list[Publication], bool]:
        """A publication from pub/sub: what to deliver now, and whether a fill must start."""
        held = self.held
        if held is not None:
            if self.held_bytes + len(publication.data) <= self.limit:
                held.append(publication)
                self.held_bytes += len(publication.data)
            return [], False
        return self._next(publication)

    def hold(self) -> None:
        """The link to Redis came back: hold what arrives until a fill caught up."""
        if self.held is None:
            self.held = []
            self.held_bytes = 0

    def filled(
        self, epoch: str, offset: int, entries: list[tuple[bytes, str | None]] | None
    ) -> tuple[list[Publication], bool, int]:
        """The answer to a fill from the current position: the channel is at ``(epoch,
        offset)`` and ``entries`` are the publications after the position, or None when
        history no longer holds them. Returns what to deliver, whether another fill must
        start, and how many publications are lost."""
        deliver: list[Publication] = []
        lost = 0
        if entries is not None and epoch == self.epoch:
            first = self.offset + 1
            deliver = [Publication(epoch, first + i, d, k) for i, (d, k) in enumerate(entries)]
            self.offset = offset
        else:
            held = self.held
            resume_epoch, resume_at = (
                (held[0].epoch, held[0].offset - 1) if held else (epoch, offset)
            )
            # Lost: the rest of this epoch up to where we go on, or, in a new epoch, what
            # came before where we go on (the old epoch's tail is unknown).
            lost = resume_at - self.offset if resume_epoch == self.epoch else resume_at
            self.epoch, self.offset = resume_epoch, resume_at
        more, again = self._release()
        return deliver + more, again, max(lost, 0)

    def _release(self) -> tuple[list[Publication], bool]:
        held, self.held, self.held_bytes = self.held or [], None, 0
        deliver: list[Publication] = []
        for index, publication in enumerate(held):
            out, gap = self._next(publication)
            deliver += out
            if gap:
                assert self.held is not None
                self.held += held[index + 1 :]
                self.held_bytes = sum(len(p.data) for p in self.held)
                return deliver, True
        return deliver, False

    def _next(self, publication: Publication) -> tuple[list[Publication], bool]:
        if publication.epoch != self.epoch:  # history was lost: a new epoch
            self.epoch, self.offset = publication.epoch, 0
        if publication.offset <= self.offset:
            return [], False  # already delivered
        if publication.offset == self.offset + 1:
            self.offset += 1
            return [publication], False
        self.held = [publication]
        self.held_bytes = len(publication.data)
        return [], True
