"""Metrics on a running server: what counts the events, and the ``GET /metrics`` answer.

With ``metrics=True`` a server serves its connections with a :class:`MeteredApplication`:
the :class:`~lexicons.application.ServerApplication` with the few methods where events
happen overridden to add to a :class:`~lexicons.metrics.meter.Meter` first. With metrics
off none of this exists, so counting costs nothing then.

- a message received: :meth:`MeteredApplication.message`;
- a message sent to one client (a reply, an error, ``ws.send``): :class:`MeteredSession`,
  the network session with ``send`` counting;
- a broadcast published, and its deliveries: :class:`CountedBroker` around the server's
  broker counts each publication, and each broadcast it hands this process for delivery
  with the number of local subscribers of its channels (one count per broadcast, not one
  per subscriber, so large fan-outs cost nothing more);
- a handler's latency: for one message in :data:`~lexicons.metrics.meter.SAMPLE`,
  :meth:`MeteredApplication.message` has the message's requests dispatched through a
  timing wrapper; the others are dispatched as with metrics off;
- a refused handshake, an admitted connection, a slow consumer cut off: the
  application's ``refused``, ``full``, ``opened`` and ``cut_off``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from websockets.http11 import Request, Response

from ..application import App, ServerApplication
from ..brokers import Broker
from ..brokers.base import Target
from ..connection import Connection
from ..durable import Gate
from ..errors import ConfigurationError
from ..network.http import StaticFile, plain_response
from ..network.session import Application, Session
from ..protocol import Request as Call
from .meter import SAMPLE, Meter, Snapshot, Timing, Totals, combine
from .shared import PUBLISH_EVERY, SharedFigures

if TYPE_CHECKING:
    from ..history import History
    from ..settings import Settings
    from .exposition import FiguresCollector

__all__ = [
    "PATH",
    "CountedBroker",
    "MeteredApplication",
    "MeteredSession",
    "ServerMetrics",
    "require_client",
]

#: Where the scrape is answered.
PATH = "/metrics"


def require_client() -> None:
    """Raise a :class:`ConfigurationError` naming the extra when prometheus_client is absent."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "metrics: serving metrics needs prometheus_client; install it with "
            "pip install 'lexicons[metrics]', or turn metrics off"
        ) from None


class ServerMetrics:
    """The metrics of one running server: its meter, and the figures a scrape reads.

    ``shared`` is the directory ``--workers`` processes publish their figures to (see
    :mod:`lexicons.metrics.shared`); ``None`` for a single process.
    """

    def __init__(self, app: App, *, shared: str | None = None, sample: int = SAMPLE) -> None:
        require_client()
        from .exposition import FiguresCollector

        self.app = app
        self.meter = Meter(app.signals, sample=sample)
        self.shared = SharedFigures(shared) if shared else None
        self.collector: FiguresCollector = FiguresCollector(self.totals)
        self._timer: asyncio.TimerHandle | None = None

    def application(self, settings: Settings, gate: Gate | None) -> MeteredApplication:
        """The serving application that counts into this meter."""
        return MeteredApplication(self.app, settings, gate, self)

    def broker(self, broker: Broker) -> CountedBroker:
        """``broker``, counting what is published through it and delivered here."""
        return CountedBroker(broker, self.meter, self.app.channels)

    def snapshot(self, *, live: bool = True) -> Snapshot:
        broker = self.app.channels.broker
        return self.meter.snapshot(
            connections=len(self.app.connections),
            broker_connected=bool(getattr(broker, "online", True)),
            broker_undelivered=int(getattr(broker, "undelivered", 0)),
            live=live,
        )

    def totals(self) -> Totals:
        """This process's figures now, plus every other worker's last published ones."""
        others = self.shared.others() if self.shared is not None else []
        return combine([self.snapshot(), *others])

    def scrape(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition (body, content type) for a scraper sending ``accept``."""
        from .exposition import render

        return render(self.collector, accept)

    # publishing to the other workers

    def start(self) -> None:
        """Publish this worker's figures now and every second (workers only)."""
        if self.shared is not None:
            self._publish()

    def _publish(self) -> None:
        assert self.shared is not None
        self.shared.publish(self.snapshot())
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(PUBLISH_EVERY, self._publish)

    def stop(self) -> None:
        """Publish the final figures: the counters stay in the totals, the gauges leave."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.shared is not None:
            self.shared.publish(self.snapshot(live=False))


# The base classes' methods as module globals: called per message, ``Base.method(self, ...)``
# looks the class attribute up each time (Python 3.11 does not specialize that lookup),
# which cost as much as the rest of the counting together.
_send = Session.send
_message = ServerApplication.message


class MeteredSession(Session):
    """The network session, counting each message it sends to its client directly
    (replies, errors, ``ws.send``); broadcasts are counted once each, by the broker."""

    __slots__ = ("meter",)

    def __init__(self, app: Application, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self.meter: Meter = app.meter  # type: ignore[attr-defined]  # a MeteredApplication

    def send(self, data: bytes, text: bool | None = None) -> None:
        if self.writer is not None:
            self.meter.sent += 1
        _send(self, data, text)


class MeteredApplication(ServerApplication):
    """The server's application, counting into ``metrics.meter`` where events happen."""

    def __init__(
        self, app: App, settings: Settings, gate: Gate | None, metrics: ServerMetrics
    ) -> None:
        super().__init__(app, settings, gate)
        self.metrics = metrics
        self.meter = meter = metrics.meter
        self._timings = meter.timings
        self._other = meter.other
        self._mask = meter.sample - 1
        # What runs a request with metrics off (the dispatcher, or the durable wrapper).
        self._run: Callable[[Call, Connection], Coroutine[Any, Any, None] | None] = self.dispatch

    def full(self) -> bool:
        if super().full():
            self.meter.refuse("too many connections")
            return True
        return False

    def refused(self, reason: str) -> None:
        self.meter.refuse(reason)

    def opened(self, ws: Connection) -> Coroutine[Any, Any, None] | None:
        self.meter.opened += 1
        return super().opened(ws)

    def cut_off(self, ws: Any) -> None:
        self.meter.cut_off += 1

    def message(self, ws: Connection, data: bytes, text: bool) -> Sequence[Any]:
        # This runs for every message: the sample taken from the count, no super() object.
        meter = self.meter
        received = meter.received = meter.received + 1
        if not (received - 1) & self._mask:  # messages 1, 1 + sample, 1 + 2 * sample ...
            self.dispatch = self._timed  # type: ignore[method-assign]
        return _message(self, ws, data, text)

    def _timed(self, item: Call, ws: Connection) -> Coroutine[Any, Any, None] | None:
        """Dispatch the requests of a sampled message, timing each."""
        self.dispatch = self._run  # type: ignore[method-assign,assignment]
        timing = self._timings.get(item.name, self._other)
        start = perf_counter()
        pending = self._run(item, ws)
        if pending is None:
            timing.observe(perf_counter() - start)
            return None
        return _observed(pending, timing, start)

    def respond(self, request: Request) -> Response | StaticFile:
        if urlsplit(request.path).path != PATH:
            return super().respond(request)
        method = getattr(request, "method", "GET")
        if method not in ("GET", "HEAD"):
            return super().respond(request)  # 405, as for every path
        body, content_type = self.metrics.scrape(request.headers.get("Accept"))
        response = plain_response(200, body, content_type)
        if method == "HEAD":
            return Response(response.status_code, response.reason_phrase, response.headers, b"")
        return response


async def _observed(pending: Awaitable[None], timing: Timing, start: float) -> None:
    """Await an async handler's work, then record how long the request took."""
    await pending
    timing.observe(perf_counter() - start)


class CountedBroker(Broker):
    """A broker that counts the broadcasts published through it and those it delivers
    here, and passes everything to the broker it wraps (``tests/test_metrics.py`` checks
    that it passes every method of :class:`~lexicons.Broker`; other attributes are read
    through)."""

    def __init__(self, inner: Broker, meter: Meter, channels: Mapping[str, Any]) -> None:
        self.inner = inner
        self.meter = meter
        self.channels = channels
        #: History and presence live where the wrapped broker keeps them.
        self.shared = inner.shared

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def bind(self, target: Target) -> None:
        self.inner.bind(CountedTarget(target, self.meter, self.channels))

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    def publish(self, channels: Sequence[str], data: bytes, key: str | None = None) -> None:
        self.meter.broadcasts += 1
        self.inner.publish(channels, data, key)

    def subscribe(self, channel: str) -> None:
        self.inner.subscribe(channel)

    def unsubscribe(self, channel: str) -> None:
        self.inner.unsubscribe(channel)

    def recount(self, channel: str, local: int) -> None:
        self.inner.recount(channel, local)

    async def count(self, channel: str, local: int) -> int:
        return await self.inner.count(channel, local)

    def publish_at(self, channel: str, data: bytes, key: str | None, history: History) -> None:
        self.meter.broadcasts += 1
        self.inner.publish_at(channel, data, key, history)

    def attached(self, channel: str) -> bool:
        return self.inner.attached(channel)

    async def read(
        self, channel: str, since: tuple[str, int] | None, history: History
    ) -> tuple[str, int, list[tuple[int, bytes]] | None]:
        return await self.inner.read(channel, since, history)

    def present(self, channel: str, pk: str, info: bytes) -> None:
        self.inner.present(channel, pk, info)

    def absent(self, channel: str, pk: str) -> None:
        self.inner.absent(channel, pk)

    async def members(self, channel: str) -> list[tuple[str, bytes]]:
        return await self.inner.members(channel)


class CountedTarget:
    """The server's channels, as the broker delivers to them, with deliveries counted."""

    def __init__(self, target: Target, meter: Meter, channels: Mapping[str, Any]) -> None:
        self.target = target
        self.meter = meter
        self.channels = channels

    def _count(self, names: Sequence[str]) -> None:
        reached = recipients(self.channels, names)
        self.meter.deliveries += reached
        self.meter.sent += reached

    def deliver(self, names: Sequence[str], data: bytes, key: str | None) -> None:
        self._count(names)
        self.target.deliver(names, data, key)

    def deliver_at(self, name: str, epoch: str, offset: int, data: bytes, key: str | None) -> None:
        self._count((name,))
        self.target.deliver_at(name, epoch, offset, data, key)

    def restart(self, name: str, epoch: str, offset: int) -> None:
        self.target.restart(name, epoch, offset)

    def lagged(self, name: str, count: int) -> None:
        self.target.lagged(name, count)

    def departed(self, name: str, pk: str, info: bytes) -> None:
        self.target.departed(name, pk, info)


def recipients(channels: Mapping[str, Any], names: Sequence[str]) -> int:
    """How many local subscribers a broadcast to ``names`` is written to (each once).

    A subscriber whose connection is closing at that moment counts, though nothing more
    is written to it.
    """
    if len(names) == 1:
        channel = channels.get(names[0])
        return 0 if channel is None else len(channel.subscribers)
    reached: set[str] = set()
    for name in names:
        channel = channels.get(name)
        if channel is not None:
            reached.update(channel.subscribers)
    return len(reached)
