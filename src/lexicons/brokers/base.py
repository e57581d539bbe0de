"""Brokers carry broadcasts, as bytes encoded once by the publisher, to every process.

The server tells its broker which channels have local subscribers (``subscribe`` on the
first, ``unsubscribe`` when the last one leaves) and hands it each broadcast with
``publish``. The broker calls its :class:`Target` (the server's channels) back in every
process that subscribed, and that process writes the bytes to its local subscribers. The
default :class:`LocalBroker` does this within one process; a broker that shares channels
across processes implements the same methods (``recount`` and ``count`` only matter to a
broker that keeps a cluster-wide subscriber count).

A broker whose :attr:`Broker.shared` is true also keeps the history and presence of
channels for every process: it numbers publications to history channels
(``publish_at``), answers recovery (``read``) and lists presence (``members``). Otherwise
the server keeps both itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from ..errors import LexiconsError

if TYPE_CHECKING:
    from ..history import History

__all__ = ["Broker", "BrokerUnavailable", "LocalBroker", "Target"]


class BrokerUnavailable(LexiconsError):
    """The broker cannot answer now (Redis is unreachable); raised by its async methods."""


class Target(Protocol):
    """What a broker delivers to: the server's channels."""

    def deliver(self, names: Sequence[str], data: bytes, key: str | None) -> None:
        """Write a broadcast to this process's subscribers of ``names``, each once."""

    def deliver_at(self, name: str, epoch: str, offset: int, data: bytes, key: str | None) -> None:
        """Write the publication numbered ``offset`` of history channel ``name``."""

    def restart(self, name: str, epoch: str, offset: int) -> None:
        """The broker follows history channel ``name`` from ``(epoch, offset)`` on."""

    def lagged(self, name: str, count: int) -> None:
        """``count`` publications of history channel ``name`` could not be delivered here."""

    def departed(self, name: str, pk: str, info: bytes) -> None:
        """A member of ``name`` in a process that died is gone (tell the subscribers)."""


class Broker:
    """Interface of a broker; :class:`LocalBroker` is the in-process default."""

    #: Whether history and presence live in the broker, shared by every process.
    shared = False

    def bind(self, target: Target) -> None:
        """Called once by the server with the channels that receive what it carries."""
        self.target = target

    async def start(self) -> None:
        """Connect; called at start-up before the server listens."""

    async def stop(self) -> None:
        """Disconnect; called at shutdown."""

    def publish(self, channels: Sequence[str], data: bytes, key: str | None = None) -> None:
        """Send one broadcast to ``channels`` everywhere. Must not block or await.

        ``key`` is the broadcast's conflation key, for subscribers of a ``conflate`` channel.
        """
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

    # shared history and presence (only called when ``shared`` is true)

    def publish_at(self, channel: str, data: bytes, key: str | None, history: History) -> None:
        """Number and send one publication to a history channel; every process (this one
        too) receives it through :meth:`Target.deliver_at`, in offset order."""
        raise NotImplementedError

    def attached(self, channel: str) -> bool:
        """Whether this process follows ``channel``'s publications in order now."""
        raise NotImplementedError

    async def read(
        self, channel: str, since: tuple[str, int] | None, history: History
    ) -> tuple[str, int, list[tuple[int, bytes]] | None]:
        """Follow ``channel`` (once subscribed) and return its position ``(epoch, offset)``
        and, when ``since`` is in that epoch and every publication after it is held,
        those publications; None otherwise. Raises :class:`BrokerUnavailable`."""
        raise NotImplementedError

    def present(self, channel: str, pk: str, info: bytes) -> None:
        """Connection ``pk`` (described by ``info``, encoded) is a member of ``channel``."""
        raise NotImplementedError

    def absent(self, channel: str, pk: str) -> None:
        """Connection ``pk`` is no longer a member of ``channel``."""
        raise NotImplementedError

    async def members(self, channel: str) -> list[tuple[str, bytes]]:
        """``(pk, info)`` of every member of ``channel`` in every live process."""
        raise NotImplementedError


class LocalBroker(Broker):
    """Delivers broadcasts within this process, synchronously, without copying them."""

    def publish(self, channels: Sequence[str], data: bytes, key: str | None = None) -> None:
        self.target.deliver(channels, data, key)
