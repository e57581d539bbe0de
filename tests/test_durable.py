"""Durable mode's gate, without a database: what a unit sends waits for its commit."""

from __future__ import annotations

import asyncio

import pytest

from lexicons.durable import Gate
from lexicons.errors import StorageError


class Store:
    """Counts writes and commits; ``full`` makes commits fail and undo, as a full disk does."""

    def __init__(self) -> None:
        self.changes = 0
        self.rollbacks = 0
        self.pending = 0
        self.committed = 0
        self.full = False
        self.events: list[str] = []

    def write(self) -> None:
        self.changes += 1
        self.pending += 1

    def commit(self) -> None:
        if not self.pending:
            return
        if self.full:
            self.pending = 0
            self.rollbacks += 1
            raise StorageError("disk full")
        self.committed += self.pending
        self.pending = 0
        self.events.append("commit")


@pytest.fixture
def store() -> Store:
    return Store()


def test_a_unit_that_wrote_commits_before_what_it_sends_leaves(store: Store) -> None:
    gate = Gate(store)

    def handler() -> None:
        store.write()
        gate.emit(store.events.append, "reply")

    _, unit = gate.run(handler)
    assert store.events == ["commit", "reply"]
    assert gate.settle(unit) is None


def test_a_unit_that_wrote_nothing_sends_without_committing(store: Store) -> None:
    gate = Gate(store)
    store.write()  # someone else's pending change
    _, unit = gate.run(gate.emit, store.events.append, "reply")
    assert store.events == ["reply"] and store.pending == 1
    assert gate.settle(unit) is None


def test_writes_after_the_last_send_are_committed_when_the_unit_ends(store: Store) -> None:
    gate = Gate(store)
    _, unit = gate.run(store.write)
    assert store.committed == 0
    assert gate.settle(unit) is None and store.committed == 1


def test_a_failed_commit_drops_everything_the_unit_sends_and_says_why(store: Store) -> None:
    gate = Gate(store)
    store.full = True

    def handler() -> None:
        store.write()
        gate.emit(store.events.append, "reply")
        gate.emit(store.events.append, "broadcast")

    _, unit = gate.run(handler)
    error = gate.settle(unit)
    assert isinstance(error, StorageError) and store.events == []
    store.full = False  # space returns: the next writer works again
    _, unit = gate.run(lambda: (store.write(), gate.emit(store.events.append, "ok")))
    assert gate.settle(unit) is None and store.events == ["commit", "ok"]


def test_outside_any_unit_pending_changes_are_committed_first(store: Store) -> None:
    gate = Gate(store)
    store.write()
    gate.emit(store.events.append, "broadcast")
    assert store.events == ["commit", "broadcast"]
    store.full = True
    store.write()
    with pytest.raises(StorageError):
        gate.emit(store.events.append, "lost")


async def test_a_unit_spans_the_awaits_of_async_work(store: Store) -> None:
    gate = Gate(store)
    go, wrote = asyncio.Event(), asyncio.Event()

    async def handler() -> None:
        store.write()
        wrote.set()
        await go.wait()
        gate.emit(store.events.append, "reply")

    unit, token = gate.begin()
    gate.leave(token)
    task = asyncio.ensure_future(gate.finish(unit, handler()))
    await wrote.wait()
    go.set()
    _, error = await task
    assert error is None and store.events == ["commit", "reply"]


async def test_a_neighbours_failed_commit_fails_a_unit_whose_write_it_undid(store: Store) -> None:
    gate = Gate(store)
    go, wrote = asyncio.Event(), asyncio.Event()

    async def slow_writer() -> None:
        store.write()
        wrote.set()
        await go.wait()
        gate.emit(store.events.append, "slow reply")

    unit, token = gate.begin()
    gate.leave(token)
    task = asyncio.ensure_future(gate.finish(unit, slow_writer()))
    await wrote.wait()
    store.full = True  # a neighbour writes and its commit fails: both writes are undone
    _, neighbour = gate.run(store.write)
    assert isinstance(gate.settle(neighbour), StorageError)
    store.full = False
    go.set()
    _, error = await task
    assert isinstance(error, StorageError) and store.events == []
