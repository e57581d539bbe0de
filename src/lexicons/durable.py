"""Durable mode's rule: nothing that reports a change leaves before the change is on disk.

Work that may change the store runs as a *unit*: one request's handler, one hook, the
headers of one handshake, one task run. Whenever a unit that has written to the store
sends something (to its own client, to any other connection, to a channel), the store
is committed first; when the unit ends, whatever it wrote since is committed too. If a
commit fails (a full disk, a read-only folder), the unit is marked failed: nothing more
it sends leaves, and the server tells its client with a ``storage_error`` instead of a
confirmation. A unit that wrote nothing never commits, so connections that only read
keep working while the disk is full.

Outside durable mode there is no gate and everything is sent at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from typing import Any, Protocol

from .errors import StorageError

__all__ = ["Gate", "Store", "Unit"]


class Store(Protocol):
    """What the gate needs of the database."""

    #: Durable writes so far: compared before and after a unit's sends.
    changes: int
    #: Failed commits so far, each of which undid every uncommitted change.
    rollbacks: int

    def commit(self) -> None: ...


class Unit:
    """One piece of work, and whether its changes could be saved."""

    __slots__ = ("saved", "rollbacks", "error")

    def __init__(self, saved: int, rollbacks: int) -> None:
        #: ``store.changes`` when everything this unit wrote was last known saved.
        self.saved = saved
        #: ``store.rollbacks`` at that moment.
        self.rollbacks = rollbacks
        #: Why a commit failed; from then on nothing the unit sends leaves.
        self.error: StorageError | None = None


#: The unit the running code belongs to; tasks carry it across awaits.
_current: ContextVar[Unit | None] = ContextVar("lexicons_unit", default=None)


class Gate:
    """Commits the store before anything a unit sends leaves."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def emit(self, action: Callable[..., Any], *args: Any) -> None:
        """Call ``action(*args)`` (a send, a broadcast) once the changes it may report are saved.

        Outside any unit (code in a thread, a timer) pending changes are committed first,
        and a failure is raised to that code, which has no client to tell.
        """
        unit = _current.get()
        if unit is None:
            self.store.commit()
        elif not self._saved(unit):
            return
        action(*args)

    def _saved(self, unit: Unit) -> bool:
        """Commit what ``unit`` wrote since its last commit; False if that failed before or now."""
        if unit.error is not None:
            return False
        store = self.store
        if store.changes != unit.saved:
            if store.rollbacks != unit.rollbacks:
                # Another unit's commit failed since this one wrote, and undid every
                # uncommitted change, possibly this unit's own.
                unit.error = StorageError("undone by a commit that failed meanwhile")
                return False
            try:
                store.commit()
            except StorageError as exc:
                unit.error = exc
                return False
            unit.saved = store.changes
        unit.rollbacks = store.rollbacks
        return True

    def begin(self) -> tuple[Unit, Token[Unit | None]]:
        """Start a unit in the current context; pass the token to :meth:`leave`."""
        unit = Unit(self.store.changes, self.store.rollbacks)
        return unit, _current.set(unit)

    @staticmethod
    def leave(token: Token[Unit | None]) -> None:
        _current.reset(token)

    def settle(self, unit: Unit) -> StorageError | None:
        """The unit ended: commit what it wrote last; the error if any commit failed."""
        self._saved(unit)
        return unit.error

    def run(self, func: Callable[..., Any], *args: Any) -> tuple[Any, Unit]:
        """Call ``func(*args)`` as the body of a new unit (settle it when its work ends)."""
        unit, token = self.begin()
        try:
            return func(*args), unit
        finally:
            self.leave(token)

    async def finish(self, unit: Unit, pending: Awaitable[Any]) -> tuple[Any, StorageError | None]:
        """Await the rest of ``unit`` (an async handler, hook or header), then settle it."""
        token = _current.set(unit)
        try:
            result = await pending
        finally:
            self.leave(token)
        return result, self.settle(unit)
