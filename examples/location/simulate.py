"""Simulated walkers and a watcher for the location example, written with lexicons.Client.

Start the server first (``python examples/location/app.py run``), then::

    python examples/location/simulate.py --walkers 20 --seconds 30

Each walker is its own connection, publishing a random walk five times a second; the
watcher subscribes to the area they walk in and prints a line per snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter
from collections.abc import Callable

from lexicons.client import Client

HOME = (48.855, 2.355)  # the middle of one area (a 0.01-degree cell) in Paris
STEP = 0.0002  # degrees per step, about 20 m: walkers stay in their area for minutes


async def walker(url: str, steps: int, every: float, rng: random.Random) -> None:
    """Publish ``steps`` positions of a random walk, one every ``every`` seconds."""
    lat, lon = HOME
    async with Client(url) as client:
        for _ in range(steps):
            lat += rng.uniform(-STEP, STEP)
            lon += rng.uniform(-STEP, STEP)
            await client.send("move", lat=lat, lon=lon)  # no reply: publishers never wait
            await asyncio.sleep(every)


async def watcher(url: str, seconds: float, report: Callable[[str], None] = print) -> Counter[str]:
    """Watch the walkers' area for ``seconds``; count what arrives, by message name."""
    seen: Counter[str] = Counter()

    async def subscribe(client: Client) -> None:
        # Runs after every (re)connection: a new connection starts with no subscriptions.
        area = await client.call("watch", lat=HOME[0], lon=HOME[1])
        report(f"watching {area['area']}: {len(area['positions'])} walkers there")

    async with Client(url, on_connect=subscribe) as client:
        try:
            async with asyncio.timeout(seconds):
                async for message in client:
                    (name,) = message
                    seen[name] += 1
                    if name == "snapshot":
                        count = len(message[name]["positions"])
                        report(f"snapshot: {count} walkers, {seen['move']} moves so far")
        except TimeoutError:
            pass
    return seen


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:5000/")
    parser.add_argument("--walkers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--every", type=float, default=0.2, help="seconds between moves")
    args = parser.parse_args()
    steps = int(args.seconds / args.every)
    rng = random.Random()
    watching = asyncio.create_task(watcher(args.url, args.seconds + 1))
    await asyncio.gather(*(walker(args.url, steps, args.every, rng) for _ in range(args.walkers)))
    print(f"done: {dict(await watching)}")


if __name__ == "__main__":
    asyncio.run(main())
