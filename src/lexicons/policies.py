"""What a channel does with a subscriber that cannot keep up: its slow-consumer policy.

A subscriber lags while what is sent to it waits for its socket. Nothing ever waits for
it; the channel's policy decides what it gets meanwhile:

- ``disconnect`` (the default): publications queue like everything else sent to it, and
  past ``max_buffer`` bytes the network layer cuts it off;
- ``drop``: its publications on the channel are dropped and counted while it lags; once
  it has caught up it is told how many (``$lagged``), so it can recover or reload;
- ``conflate``: only the latest publication per key waits for it, and goes out once it
  has caught up: the policy for positions and game state.

A subscriber that keeps up costs one check more than plain delivery. Whatever waits is
bounded: a conflating subscriber whose waiting publications pass ``limit`` bytes (many
keys) is cut off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Literal

from .broadcasts import Broadcast
from .connection import Connection, cut_off, deliver_keeping_up, when_drained

__all__ = ["POLICIES", "Conflate", "Drop", "Policy"]

#: The names a channel's ``policy`` may take.
Policy = Literal["disconnect", "drop", "conflate"]
POLICIES: tuple[Policy, ...] = ("disconnect", "drop", "conflate")


class Drop:
    """``drop``: a lagging subscriber's publications are dropped, counted, then reported."""

    __slots__ = ("_dropped", "_report")

    def __init__(self, report: Callable[[Connection, int], None]) -> None:
        #: Publications dropped so far, by the pk of each lagging subscriber.
        self._dropped: dict[str, int] = {}
        #: ``report(ws, dropped)`` once ``ws`` has caught up (it sends ``$lagged``).
        self._report = report

    def deliver(self, members: Iterable[Connection], frame: Broadcast, key: str | None) -> None:
        dropped = self._dropped
        for ws in deliver_keeping_up(members, frame):
            count = dropped.get(ws.pk)
            if count is None:
                dropped[ws.pk] = 1
                when_drained(ws, partial(self._caught_up, ws))
            else:
                dropped[ws.pk] = count + 1

    def _caught_up(self, ws: Connection) -> None:
        count = self._dropped.pop(ws.pk, 0)
        if count:
            self._report(ws, count)

    def lagging(self, pk: str) -> int:
        """Publications dropped for ``pk`` since it started lagging (0 if it keeps up)."""
        return self._dropped.get(pk, 0)

    def forget(self, pk: str) -> None:
        """``pk`` left the channel."""
        self._dropped.pop(pk, None)


class _Waiting:
    """The latest publication per key, waiting for one lagging subscriber."""

    __slots__ = ("frames", "size")

    def __init__(self) -> None:
        self.frames: dict[str | None, Broadcast] = {}
        self.size = 0

    def hold(self, key: str | None, frame: Broadcast) -> None:
        old = self.frames.pop(key, None)  # popped, so the newest goes last
        if old is not None:
            self.size -= old.size
        self.frames[key] = frame
        self.size += frame.size


class Conflate:
    """``conflate``: only the latest publication per key waits for a lagging subscriber."""

    __slots__ = ("_waiting", "limit")

    def __init__(self, limit: int) -> None:
        self._waiting: dict[str, _Waiting] = {}
        #: Bytes that may wait for one subscriber before it is cut off.
        self.limit = limit

    def deliver(self, members: Iterable[Connection], frame: Broadcast, key: str | None) -> None:
        waiting = self._waiting
        if waiting:
            members = [ws for ws in members if not self._held(ws, key, frame)]
        for ws in deliver_keeping_up(members, frame):
            waiting[ws.pk] = _Waiting()
            self._held(ws, key, frame)
            when_drained(ws, partial(self._caught_up, ws))

    def _held(self, ws: Connection, key: str | None, frame: Broadcast) -> bool:
        """Keep ``frame`` for ``ws`` if it lags; False if it does not."""
        waiting = self._waiting.get(ws.pk)
        if waiting is None:
            return False
        waiting.hold(key, frame)
        if waiting.size > self.limit:
            del self._waiting[ws.pk]
            cut_off(ws, f"more than {self.limit} bytes of conflated publications wait")
        return True

    def _caught_up(self, ws: Connection) -> None:
        waiting = self._waiting.pop(ws.pk, None)
        if waiting is None:
            return
        items = list(waiting.frames.items())
        for index, (_, frame) in enumerate(items):
            if deliver_keeping_up((ws,), frame):  # its socket filled up again
                rest = self._waiting[ws.pk] = _Waiting()
                for key, later in items[index:]:
                    rest.hold(key, later)
                when_drained(ws, partial(self._caught_up, ws))
                return

    def waiting(self, pk: str) -> list[Broadcast]:
        """The broadcasts waiting for ``pk``, oldest first."""
        waiting = self._waiting.get(pk)
        return list(waiting.frames.values()) if waiting is not None else []

    def forget(self, pk: str) -> None:
        """``pk`` left the channel."""
        self._waiting.pop(pk, None)
