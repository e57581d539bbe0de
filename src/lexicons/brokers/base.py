"""Brokers carry broadcasts, as bytes encoded once by the publisher, to every process.

The server tells its broker which channels have local subscribers (``subscribe`` on the
first, ``unsubscribe`` when the last one leaves) and hands it each broadcast with
``publish``. The broker calls back ``deliver(channels, data)`` in every process that
subscribed, and that process writes the bytes to its local subscribers. The default
:class:`LocalBroker` does this within one process; a broker that shares channels across
processes implements the same methods (``recount`` and ``count`` only matter to a broker
that keeps a cluster-wide subscriber count).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["Broker", "Deliver", "LocalBroker"]

#: ``deliver(channels, data)``: write ``data`` to the local subscribers of ``channels``.
Deliver = Callable[[Sequence[str], bytes], None]


class Broker:
    """Interface of a broker; :class:`LocalBroker` is the in-process default."""

    def bind(self, deliver: Deliver) -> None:
        """Called once by the server with the function that delivers to local subscribers."""
        self.deliver = deliver

    async def start(self) -> None:
        """Connect; called at start-up before the server listens."""

    async def stop(self) -> None:
        """Disconnect; called at shutdown."""

    def publish(self, channels: Sequence[str], data: bytes) -> None:
        """Send one broadcast to ``channels`` everywhere. Must not block or await."""
        raise NotImplementedError

    def subscribe(self, channel: str) -> None:
        """This process now has local subscribers of ``channel``."""

    def unsubscribe(self, channel: str) -> None:
        """This process has no local subscribers of ``channel`` any more."""

    def recount(self, channel: str, local: int) -> None:
        """This process now has ``local`` subscribers of ``channel`` (called on every change)."""

    async def count(self, channel: str, local: int) -> int:
        """Subscribers of ``channel`` in every process; ``local`` is this process's count."""
        return local


class LocalBroker(Broker):
    """Delivers broadcasts within this process, synchronously, without copying them."""

    def publish(self, channels: Sequence[str], data: bytes) -> None:
        self.deliver(channels, data)
