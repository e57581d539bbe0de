"""What every connection of one listening server shares, and the listener itself.

The :class:`Hub` holds the application and the limits, the read buffer, one timer per
kind of deadline, the tasks connections started, keepalive rounds and the graceful close
of every connection at shutdown. :func:`listen` opens the socket::

    hub = Hub(application, settings)
    server = await listen(hub, "127.0.0.1", 0)
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from websockets.extensions import ServerExtensionFactory
from websockets.server import ServerProtocol

from ..security import WireLogFilter
from ..settings import Settings
from .deadlines import Deadlines
from .deflate import offer
from .link import _READ_SIZE, Link
from .session import Application, Limits, Session

__all__ = ["Hub", "listen"]

logger = logging.getLogger("lexicons")
# websockets' own protocol logger prints raw handshake headers at debug level, credentials
# included, so it gets a logger of its own that stays at warning, and a filter that keeps
# the handshake out even when someone lowers that level (logging config, caplog).
_wire_logger = logging.getLogger("lexicons.wire")
_wire_logger.setLevel(logging.WARNING)
_wire_logger.addFilter(WireLogFilter())

SelectSubprotocol = Callable[[ServerProtocol, Sequence[str]], "str | None"]


class Hub:
    """The connections of one server, and what they share."""

    def __init__(
        self,
        app: Application,
        settings: Settings,
        *,
        select_subprotocol: SelectSubprotocol | None = None,
        session_type: type[Session] = Session,
    ) -> None:
        self.app = app
        self.session_type = session_type
        self.settings = settings
        self.limits = Limits(max_size=settings.max_size, max_buffer=settings.max_buffer)
        self.select_subprotocol = select_subprotocol
        #: The extensions each connection negotiates (permessage-deflate, when enabled).
        self.extensions: Sequence[ServerExtensionFactory] | None = (
            [offer()] if settings.compression else None
        )
        self.wire_logger = _wire_logger
        self.read_buffer = memoryview(bytearray(_READ_SIZE))
        self.loop = asyncio.get_running_loop()
        self.links: set[Link] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self._emptied: asyncio.Event | None = None
        # Each handshake waits on one of these, so no connection needs a timer of its own.
        self.deadlines: dict[str, Deadlines[Link]] = {
            "opening": self._timeouts(settings.open_timeout, "opening handshake timed out"),
            "answered": self._timeouts(settings.close_timeout, "client did not close"),
            "closing": self._timeouts(settings.close_timeout, "closing handshake timed out"),
            "lagging": self._timeouts(settings.ping_timeout, "the client stopped reading"),
        }

    def _timeouts(self, delay: float, why: str) -> Deadlines[Link]:
        return Deadlines(delay, lambda link: link.expire(why), self.loop)

    def protocol(self) -> Link:
        """Protocol factory for ``loop.create_server``."""
        return Link(self)

    def spawn(self, work: Any) -> asyncio.Task[Any]:
        """Run ``work`` as a task the hub keeps until it ends (shutdown waits for it)."""
        coroutine = work if asyncio.iscoroutine(work) else _awaited(work)
        task: asyncio.Task[Any] = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def forget(self, link: Link) -> None:
        self.links.discard(link)
        if not self.links and self._emptied is not None:
            self._emptied.set()

    def keepalive(self) -> None:
        """Ping connections that were quiet for a round; drop those that stay silent."""
        pinged = [link.session for link in self.links if link.session.ping_if_quiet()]
        if pinged:
            self.loop.call_later(self.settings.ping_timeout, _drop_silent, pinged)

    async def close_all(self, timeout: float) -> None:
        """Close every connection with 1001 and wait, at most ``timeout``, for them to go."""
        self._emptied = asyncio.Event()
        for link in list(self.links):
            link.session.close(1001, "server shutting down")
        if self.links:
            try:
                await asyncio.wait_for(self._emptied.wait(), timeout)
            except TimeoutError:
                logger.warning("%d connections did not close in time; aborted", len(self.links))
                for link in list(self.links):
                    link.abort()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)
        for deadlines in self.deadlines.values():
            deadlines.cancel()


async def _awaited(work: Any) -> Any:
    return await work


def _drop_silent(sessions: list[Any]) -> None:
    for session in sessions:
        session.drop_if_silent()


async def listen(
    hub: Hub,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
) -> asyncio.Server:
    """Listen on ``host:port`` with one :class:`Link` per connection."""
    return await hub.loop.create_server(
        hub.protocol, host, port, ssl=ssl_context, reuse_port=reuse_port or None
    )
