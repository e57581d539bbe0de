"""Brokers carry broadcasts between processes; :func:`make_broker` picks one from settings.

:class:`LocalBroker` (the default) delivers within this process; :class:`RedisBroker`
shares channels between every process and host connected to one Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .base import Broker, BrokerUnavailable, LocalBroker, Target

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["Broker", "BrokerUnavailable", "LocalBroker", "Target", "make_broker"]


def make_broker(settings: Settings) -> Broker:
    """The broker the ``broker`` setting names: ``None`` in-process, a Redis URL shared."""
    url = settings.broker
    if url is None:
        return LocalBroker()
    from .redis import RedisBroker, redacted

    if url.partition("://")[0].lower() in ("redis", "rediss", "unix"):
        return RedisBroker(
            url,
            namespace=settings.broker_namespace,
            heartbeat=settings.broker_heartbeat,
            max_queue=settings.broker_queue,
        )
    raise ConfigurationError(
        f"broker: {redacted(url)!r} is not a broker URL; use redis://host:port/db, "
        "rediss://... or unix:///path/to/redis.sock, or leave it unset for the "
        "in-process broker"
    )
