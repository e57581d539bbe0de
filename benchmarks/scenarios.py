"""The four scenarios, each driven against one running server process.

Each scenario warms the server up, drains it (nothing in flight), then measures a window
that ends drained too, so the server CPU read at both ends covers exactly the counted
work. The headline is that CPU divided by the work: per message (echo), per delivered
message (fan-out), per connection (churn); idle memory is RSS per connection.
Correctness is checked once per run (the first reply and the first broadcast are
decoded), so a server answering errors cannot pass for a fast one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from .client import Client, Dialect, Tally, frame_length
from .harness import ServerProcess, Window

__all__ = [
    "SETTLE",
    "EchoLoad",
    "FanoutLoad",
    "Scenario",
    "Sizes",
    "check",
    "close_all",
    "complete",
    "connect",
    "connect_many",
    "exchange",
    "measured",
    "percentiles",
    "scenarios",
    "subscribe_all",
]

HOST = "127.0.0.1"
#: Pause after a drained phase so the server finishes what it does after its last write.
SETTLE = 0.02
#: Longest a drain or a set-up step may take before the run is declared stuck.
STUCK = 60.0


@dataclass(frozen=True)
class Sizes:
    """How big and how long: the full run's sizes, or :meth:`quick` for the smoke test."""

    echo_clients: int = 50
    fanout: tuple[int, ...] = (1000, 5000)
    #: Broadcasts in flight: two keep the server busy while the last one is counted.
    fanout_window: int = 2
    churn_concurrency: int = 50
    idle_connections: int = 5000
    connect_concurrency: int = 100
    warmup: float = 0.3
    duration: float = 1.5
    #: Characters of the message text (a location feed, see ``client.feed_text``);
    #: 0 keeps the short default message.
    text_size: int = 0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            echo_clients=4,
            fanout=(20,),
            churn_concurrency=4,
            idle_connections=20,
            connect_concurrency=10,
            warmup=0.05,
            duration=0.15,
        )


Result = dict[str, Any]
Run = Callable[[ServerProcess, Dialect, Sizes], Coroutine[Any, Any, Result]]


@dataclass(frozen=True)
class Scenario:
    """One scenario: how to run it against a server, and which figure is its headline."""

    name: str
    #: The headline's unit, as the table prints it.
    unit: str
    run: Run
    #: Which field of the result is the headline, and the factor into ``unit``.
    key: str = "cpu_per_unit_us"
    scale: float = 1.0

    def headline(self, result: Result) -> float:
        return float(result[self.key]) * self.scale


# --- shared steps ----------------------------------------------------------------------------


async def connect(dialect: Dialect, port: int) -> Client:
    """One client, handshake (and the dialect's opening) done."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(dialect, port), HOST, port)
    await client.ready
    return client


async def connect_many(dialect: Dialect, port: int, count: int, concurrency: int) -> list[Client]:
    """``count`` clients, at most ``concurrency`` handshakes at a time (a listen backlog)."""
    clients: list[Client] = []
    numbers = iter(range(count))

    async def opener() -> None:
        for _ in numbers:
            clients.append(await connect(dialect, port))

    await asyncio.wait_for(
        asyncio.gather(*(opener() for _ in range(min(concurrency, count)))), STUCK
    )
    return clients


async def exchange(client: Client, frame: bytes, replies: int = 1) -> list[bytes]:
    """Send ``frame`` and return the payloads of the next ``replies`` frames."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    previous = client.on_frames
    client.kept.clear()
    client.keep = True

    def arrived(c: Client, count: int) -> None:
        if len(c.kept) >= replies and not done.done():
            done.set_result(None)

    client.on_frames = arrived
    client.send(frame)
    try:
        await asyncio.wait_for(done, STUCK)
    finally:
        client.keep = False
        client.on_frames = previous
    kept = client.kept[:replies]
    client.kept.clear()
    return kept


def check(dialect: Dialect, data: bytes, name: str, payload: Any) -> None:
    """Raise unless ``data`` is message ``name`` carrying ``payload``."""
    try:
        got = dialect.decode(data)
    except (ValueError, TypeError) as exc:
        raise AssertionError(f"undecodable reply {data[:120]!r}: {exc}") from None
    if got != (name, payload):
        raise AssertionError(f"expected {name} {payload!r}, got {data[:120]!r}")


def complete(tallies: list[Tally]) -> None:
    """Raise if a counted connection holds part of a frame once drained.

    Byte counting is exact only if every frame had the counted length; a leftover means
    some frame did not (an error frame, a ping), and the count cannot be trusted.
    """
    odd = sum(1 for tally in tallies if tally.pending)
    if odd:
        raise AssertionError(f"{odd} connections received frames of another length")


def close_all(clients: list[Client]) -> None:
    for client in clients:
        client.transport.abort()


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    if not samples_ns:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    data = sorted(samples_ns)
    last = len(data) - 1
    return {
        "p50_ms": data[last * 50 // 100] / 1e6,
        "p99_ms": data[last * 99 // 100] / 1e6,
    }


def measured(window: Window, units: int, latencies: list[int]) -> Result:
    """The common record of a measured window: CPU per unit, rate, latencies."""
    return {
        "units": units,
        "cpu_per_unit_us": window.server_cpu / units * 1e6 if units else float("nan"),
        "rate_per_s": units / window.wall if window.wall else 0.0,
        **percentiles(latencies),
        **window.as_dict(),
    }


async def drained(done: asyncio.Future[None], what: str) -> None:
    try:
        await asyncio.wait_for(done, STUCK)
    except TimeoutError:
        raise RuntimeError(f"{what}: replies stopped arriving (the server is stuck)") from None


# --- echo ------------------------------------------------------------------------------------


class EchoLoad:
    """A closed loop: each client sends its next message when its reply arrives."""

    def __init__(self, frame: bytes) -> None:
        self.frame = frame
        self.running = False
        self.done = 0
        self.latencies: list[int] = []
        self.outstanding = 0
        self.idle: asyncio.Future[None] | None = None

    def start(self, clients: Sequence[Client | Tally]) -> None:
        self.running = True
        self.done = 0
        self.latencies = []
        now = time.perf_counter_ns()
        for client in clients:
            client.sent_at = now
            client.transport.write(self.frame)
        self.outstanding = len(clients)

    async def stop(self) -> None:
        self.idle = asyncio.get_running_loop().create_future()
        self.running = False
        await drained(self.idle, "echo")

    def replied(self, client: Client | Tally, count: int) -> None:
        now = time.perf_counter_ns()
        self.latencies.append(now - client.sent_at)
        self.done += count
        if self.running:
            client.sent_at = now
            client.transport.write(self.frame)
            return
        self.outstanding -= 1
        if self.outstanding == 0 and self.idle is not None and not self.idle.done():
            self.idle.set_result(None)


async def echo(server: ServerProcess, dialect: Dialect, sizes: Sizes) -> Result:
    clients = await connect_many(
        dialect, server.port, sizes.echo_clients, sizes.connect_concurrency
    )
    try:
        frame = dialect.frames["Echo"]
        (reply,) = await exchange(clients[0], frame)
        check(dialect, reply, "Echo", {"text": dialect.text})
        load = EchoLoad(frame)
        # Every reply is the same frame: from here on, replies are counted by bytes.
        tallies = [client.tally(frame_length(len(reply)), load.replied) for client in clients]
        load.start(tallies)
        await asyncio.sleep(sizes.warmup)
        await load.stop()
        await asyncio.sleep(SETTLE)
        with Window(server.pid, server.cpu) as window:
            load.start(tallies)
            await asyncio.sleep(sizes.duration)
            await load.stop()
            await asyncio.sleep(SETTLE)
        complete(tallies)
        result = measured(window, load.done, load.latencies)
        return {"clients": len(clients), "frame_bytes": frame_length(len(reply)), **result}
    finally:
        close_all(clients)


# --- fan-out ---------------------------------------------------------------------------------


class FanoutLoad:
    """One publisher keeps ``window`` broadcasts in flight to ``members`` subscribers.

    Deliveries are counted across all subscribers; broadcast *k* counts as complete when
    ``(k + 1) * members`` deliveries have arrived (each connection receives in order, so
    this is exact up to which subscriber is late). Its latency is from the publish to
    that moment: the time for a broadcast to reach everyone.
    """

    def __init__(self, publisher: Client, frame: bytes, members: int, window: int) -> None:
        self.publisher = publisher
        self.frame = frame
        self.members = members
        self.window = window
        self.running = False
        self.reset()
        self.idle: asyncio.Future[None] | None = None

    def reset(self) -> None:
        self.total = 0
        self.sent = 0
        self.completed = 0
        self.mark = self.members
        self.sent_at: list[int] = []
        self.latencies: list[int] = []

    def start(self) -> None:
        self.reset()
        self.running = True
        self._pump(time.perf_counter_ns())

    async def stop(self) -> None:
        self.idle = asyncio.get_running_loop().create_future()
        self.running = False
        if self.completed == self.sent:
            self.idle.set_result(None)
        await drained(self.idle, "fan-out")

    def delivered(self, client: Client, count: int) -> None:
        self.total += count
        if self.total >= self.mark:
            self._advance()

    def _advance(self) -> None:
        now = time.perf_counter_ns()
        members = self.members
        while self.completed < self.sent and self.total >= (self.completed + 1) * members:
            self.latencies.append(now - self.sent_at[self.completed])
            self.completed += 1
        self.mark = (self.completed + 1) * members
        if self.running:
            self._pump(now)
        elif self.completed == self.sent and self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    def _pump(self, now: int) -> None:
        write = self.publisher.transport.write
        while self.sent - self.completed < self.window:
            write(self.frame)
            self.sent_at.append(now)
            self.sent += 1


def fanout(members: int) -> Run:
    async def run(server: ServerProcess, dialect: Dialect, sizes: Sizes) -> Result:
        subscribers = await connect_many(dialect, server.port, members, sizes.connect_concurrency)
        clients = list(subscribers)
        try:
            await subscribe_all(dialect, subscribers, sizes.connect_concurrency)
            publisher = await connect(dialect, server.port)
            clients.append(publisher)
            load = FanoutLoad(publisher, dialect.frames["Publish"], members, sizes.fanout_window)
            for subscriber in subscribers:
                subscriber.on_frames = load.delivered
            subscribers[0].keep = True
            load.start()
            await asyncio.sleep(sizes.warmup)
            await load.stop()
            subscribers[0].keep = False
            first = subscribers[0].kept[0]
            check(dialect, first, "Publish", {"text": dialect.text})
            # Every broadcast is the same frame: from here on, counted by bytes.
            tallies = [s.tally(frame_length(len(first)), load.delivered) for s in subscribers]
            await asyncio.sleep(SETTLE)
            with Window(server.pid, server.cpu) as window:
                load.start()
                await asyncio.sleep(sizes.duration)
                await load.stop()
                await asyncio.sleep(SETTLE)
            complete(tallies)
            result = measured(window, load.total, load.latencies)
            frame_bytes = frame_length(len(first))
            return {
                "subscribers": members,
                "broadcasts": load.completed,
                "frame_bytes": frame_bytes,
                **result,
            }
        finally:
            close_all(clients)

    return run


async def subscribe_all(dialect: Dialect, subscribers: list[Client], concurrency: int) -> None:
    """Subscribe every client to the channel, checking the first answer."""
    frame = dialect.frames["Subscribe"]
    (reply,) = await exchange(subscribers[0], frame)
    check(dialect, reply, "Subscribe", True)
    pending = iter(subscribers[1:])

    async def joiner() -> None:
        for client in pending:
            await exchange(client, frame)

    await asyncio.gather(*(joiner() for _ in range(concurrency)))


#: The name benchmarks/redis_fanout.py imports.
_subscribe_all = subscribe_all


# --- churn -----------------------------------------------------------------------------------


async def churn(server: ServerProcess, dialect: Dialect, sizes: Sizes) -> Result:
    """``churn_concurrency`` loops that each open a connection, then close it, again and again.

    One unit is one connection: TCP accept, handshake with its checks, admission, the
    closing handshake and the clean-up. Latency is the time to open one.
    """
    running = False
    count = 0
    latencies: list[int] = []

    async def cycler() -> None:
        nonlocal count
        while running:
            start = time.perf_counter_ns()
            client = await connect(dialect, server.port)
            latencies.append(time.perf_counter_ns() - start)
            client.close()
            await client.closed
            count += 1

    async def phase(seconds: float) -> None:
        nonlocal running, count
        running, count = True, 0
        latencies.clear()
        loops = [asyncio.ensure_future(cycler()) for _ in range(sizes.churn_concurrency)]
        await asyncio.sleep(seconds)
        running = False
        try:
            await asyncio.wait_for(asyncio.gather(*loops), STUCK)
        except TimeoutError:
            raise RuntimeError(
                "churn: connections stopped closing (the server is stuck)"
            ) from None

    await phase(sizes.warmup)
    await asyncio.sleep(SETTLE)
    with Window(server.pid, server.cpu) as window:
        await phase(sizes.duration)
        await asyncio.sleep(SETTLE)
    return {"concurrency": sizes.churn_concurrency, **measured(window, count, latencies)}


# --- idle memory -----------------------------------------------------------------------------


async def idle(server: ServerProcess, dialect: Dialect, sizes: Sizes) -> Result:
    """RSS per connection: open many connections that then do nothing, read the growth.

    A first batch is opened and closed before the baseline, so modules a server imports
    on its first connection are not counted per connection.
    """
    port = server.port
    warm = await connect_many(
        dialect, port, min(100, sizes.idle_connections), sizes.connect_concurrency
    )
    for client in warm:
        client.close()
    await asyncio.wait_for(asyncio.gather(*(c.closed for c in warm)), STUCK)
    await asyncio.sleep(sizes.warmup)
    before = server.rss_bytes()
    with Window(server.pid, server.cpu) as window:
        clients = await connect_many(
            dialect, port, sizes.idle_connections, sizes.connect_concurrency
        )
        await asyncio.sleep(sizes.warmup)
    try:
        after = server.rss_bytes()
    finally:
        close_all(clients)
    per_connection = (after - before) / len(clients)
    return {
        "connections": len(clients),
        "units": len(clients),
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "per_connection_kib": per_connection / 1024,
        "cpu_per_open_us": window.server_cpu / len(clients) * 1e6,
        **window.as_dict(),
    }


def scenarios(sizes: Sizes) -> dict[str, Scenario]:
    """Scenario name -> how to run it and read its headline (fan-out sizes from ``sizes``)."""
    table = {"echo": Scenario("echo", "µs per message", echo)}
    for members in sizes.fanout:
        name = f"fanout-{members // 1000}k" if members >= 1000 else f"fanout-{members}"
        table[name] = Scenario(name, "µs per delivery", fanout(members))
    table["churn"] = Scenario("churn", "ms per connection", churn, scale=1e-3)
    table["idle"] = Scenario("idle", "KiB per connection", idle, key="per_connection_kib")
    return table
