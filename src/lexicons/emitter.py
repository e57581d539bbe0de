"""Publish to a cluster of servers from a plain script: a cron job, a worker, a shell.

::

    from chat import app                   # the app module: its channels and settings
    from lexicons import Emitter

    with Emitter(app) as emitter:          # its broker: LEXICONS_BROKER, or broker=
        emitter.broadcast({"notice": "maintenance at 2am"}, ["Lobby", "room:1"])

No server runs here: the emitter speaks to the app's Redis directly, the way a server's
broker does, so every server process delivers the broadcast to its subscribers. History
channels number it (and keep it for recovery) as if a server had published it. It is
synchronous and safe to share between threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .brokers import scripts
from .brokers.envelope import pack
from .brokers.redis import redacted
from .errors import ConfigurationError, LexiconsError
from .protocol import encode

if TYPE_CHECKING:
    from .server import Server

__all__ = ["Emitter"]


class Emitter:
    """Broadcasts to the channels of ``app``'s servers through their Redis broker.

    ``broker`` and ``namespace`` default to the app's settings (with ``LEXICONS_*``
    variables applied). Raises :class:`~lexicons.errors.ConfigurationError` when there is
    no Redis broker to publish to, and :class:`~lexicons.errors.LexiconsError` when
    Redis does not answer a broadcast.
    """

    def __init__(
        self,
        app: Server,
        broker: str | None = None,
        *,
        namespace: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        settings = app.settings.from_environment()
        url = broker or settings.broker
        if url is None or url.partition("://")[0].lower() not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                "Emitter: the app has no Redis broker to publish to; set broker= "
                "(or LEXICONS_BROKER) to the servers' redis://... URL"
            )
        try:
            from redis import Redis
            from redis.exceptions import NoScriptError, RedisError
        except ImportError:
            raise ConfigurationError(
                "Emitter needs the Redis client; install it with pip install 'lexicons[redis]'"
            ) from None
        self.url = url
        self._channels = app.channels
        self._prefix = f"{namespace or settings.broker_namespace}:"
        self._heartbeat = settings.broker_heartbeat
        self._failures = (RedisError, OSError)
        self._no_script = NoScriptError
        self.origin = os.urandom(8)
        try:
            self._redis = Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                client_name=f"lexicons-emitter:{self.origin.hex()}",
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"Emitter: {redacted(url)!r} is not a Redis URL: {exc}"
            ) from None
        self._lock = threading.Lock()
        self._seq = 0
        self._channel_seqs: dict[str, int] = {}
        #: Broadcasts sent.
        self.published = 0

    def broadcast(
        self, payload: Any, channels: Iterable[str] | str, key: str | None = None
    ) -> None:
        """Send ``payload`` to the subscribers of ``channels`` in every server process.

        As :meth:`Server.broadcast <lexicons.Server.broadcast>`: unknown channel names are
        logged and left out, ``key`` is the conflation key.
        """
        names = [channels] if isinstance(channels, str) else list(channels)
        data = encode(payload)
        plain, numbered = self._channels.sort(names, data)
        if not plain and not numbered:
            return
        with self._lock:
            commands = self._commands(plain, numbered, data, key)
            self._send(commands)
            self.published += 1

    def _commands(
        self, plain: list[str], numbered: list[tuple[str, Any]], data: bytes, key: str | None
    ) -> list[tuple[Any, ...]]:
        commands: list[tuple[Any, ...]] = []
        if plain:
            self._seq += 1
            numbers = []
            for name in plain:
                numbers.append(self._channel_seqs.get(name, 0) + 1)
                self._channel_seqs[name] = numbers[-1]
            envelope = pack(self.origin, self._seq, plain, numbers, key, data)
            commands += [(b"PUBLISH", f"{self._prefix}{name}", envelope) for name in plain]
        for name, history in numbered:
            self._seq += 1
            ttl = max(history.age, 3 * self._heartbeat)
            commands.append(
                scripts.publish_at(
                    self._prefix, name, history, ttl, self.origin, self._seq, key, data
                )
            )
        return commands

    def _send(self, commands: list[tuple[Any, ...]]) -> None:
        """Send ``commands`` in one round trip; those that found no script (a Redis that
        never saw it, or restarted) are sent again once it is loaded."""
        try:
            for attempt in (1, 2):
                pipe = self._redis.pipeline(transaction=False)
                for command in commands:
                    pipe.execute_command(*command)  # type: ignore[no-untyped-call]
                results = pipe.execute(raise_on_error=False)
                again = []
                for command, result in zip(commands, results, strict=True):
                    if isinstance(result, self._no_script):
                        again.append(command)
                    elif isinstance(result, Exception):
                        raise result
                if not again:
                    return
                if attempt == 1:
                    self._redis.script_load(scripts.PUBLISH_AT.source)
                commands = again
            raise LexiconsError("Emitter: Redis does not keep the publishing script")
        except self._failures as exc:
            raise LexiconsError(f"Emitter: Redis at {redacted(self.url)}: {exc}") from None

    def close(self) -> None:
        """Close the connection to Redis."""
        self._redis.close()

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
