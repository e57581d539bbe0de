"""examples/location: area channels, moves, snapshots, stale positions, the simulator."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from types import ModuleType

import pytest
from example_apps import load_example

from lexicons import SignalError
from lexicons.testing import TestClient

PARIS = {"lat": 48.855, "lon": 2.355}
NEARBY = {"lat": 48.8551, "lon": 2.3552}  # the same area
ELSEWHERE = {"lat": 48.875, "lon": 2.355}  # two areas north


@pytest.fixture
def location() -> ModuleType:
    return load_example("location")


@pytest.fixture
async def client(location: ModuleType) -> AsyncIterator[TestClient]:
    async with TestClient(location.app) as client:
        yield client


async def test_watchers_of_an_area_see_its_moves(client: TestClient) -> None:
    watcher, walker, far = [await client.connect() for _ in range(3)]
    watching = await watcher.call("watch", **PARIS)
    assert watching == {"area": "area:4885:235", "positions": []}
    await walker.send("move", **NEARBY)
    moved = await watcher.expect("move")
    assert (moved["lat"], moved["lon"], moved["area"]) == (48.8551, 2.3552, "area:4885:235")
    await far.send("move", **ELSEWHERE)  # another area: this watcher hears nothing of it
    await watcher.assert_nothing_received()
    await walker.assert_nothing_received()  # publishers get no reply

    late = await client.connect()
    assert [p["id"] for p in (await late.call("watch", **PARIS))["positions"]] == [moved["id"]]


async def test_leaving_an_area_is_seen_by_its_watchers_then_gone(client: TestClient) -> None:
    watcher, walker = await client.connect(), await client.connect()
    await watcher.call("watch", **PARIS)
    await walker.send("move", **PARIS)
    pk = (await watcher.expect("move"))["id"]
    await walker.send("move", **ELSEWHERE)
    assert (await watcher.expect("move"))["area"] == "area:4887:235"
    await walker.send("move", **PARIS)
    await watcher.expect("move")
    await walker.close()
    assert await watcher.expect("gone") == {"id": pk, "area": "area:4885:235"}


async def test_unwatch_stops_updates(client: TestClient) -> None:
    watcher, walker = await client.connect(), await client.connect()
    area = (await watcher.call("watch", **PARIS))["area"]
    assert await watcher.call("unwatch", area=area) == {"area": area}
    await walker.send("move", **PARIS)
    await watcher.assert_nothing_received()


async def test_positions_are_checked(client: TestClient) -> None:
    walker = await client.connect()
    with pytest.raises(SignalError) as bad:
        await walker.call("move", lat=91.0, lon=0.0)
    assert bad.value.code == "invalid_payload"


async def test_snapshots_resync_and_drop_stale_positions(
    location: ModuleType, client: TestClient
) -> None:
    watcher, walker, quiet = [await client.connect() for _ in range(3)]
    await watcher.call("watch", **PARIS)
    await walker.send("move", **PARIS)
    await quiet.send("move", **NEARBY)
    ids = {(await watcher.expect("move"))["id"] for _ in range(2)}
    snapshot = await watcher.expect("snapshot")
    assert {p["id"] for p in snapshot["positions"]} == ids

    # Age one position past STALE, as if its publisher had stopped sending.
    stale = next(pk for pk, p in location.positions.items() if p.lat == NEARBY["lat"])
    location.positions[stale].at -= location.STALE + 1
    while stale in {p["id"] for p in (await watcher.expect("snapshot"))["positions"]}:
        pass  # a snapshot taken before the change may still be on its way
    assert stale not in location.positions and len(location.positions) == 1


async def test_the_simulators_walker_and_watcher(client: TestClient) -> None:
    simulate = load_example("location", "simulate")
    lines: list[str] = []
    news = asyncio.Event()

    def report(line: str) -> None:
        lines.append(line)
        news.set()

    watching = asyncio.create_task(simulate.watcher(client.url, seconds=30, report=report))
    await asyncio.wait_for(news.wait(), 5)
    assert lines == ["watching area:4885:235: 0 walkers there"]
    await simulate.walker(client.url, steps=3, every=0, rng=random.Random(1))
    while not any("3 moves so far" in line for line in lines):
        news.clear()
        await asyncio.wait_for(news.wait(), 5)  # the next snapshot line
    watching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watching


async def test_serves_its_page(client: TestClient) -> None:
    page = await client.get("/")
    script = await client.get("/location.js")
    assert page.status == 200 and "<title>lexicons location</title>" in page.text
    assert script.status == 200 and 'from "/lexicons.js"' in script.text
