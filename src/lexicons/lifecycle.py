"""Starting and stopping a server, in the one order every entry point shares.

Start: open the store → start the broker → ``on_start`` → startup tasks → listen →
interval tasks and keepalive. Stop: stop accepting → close connections with 1001 (their
``on_disconnect`` runs) → stop interval tasks → shutdown tasks → ``on_shutdown`` →
stop the broker → flush and close the store. ``python app.py run``, the test client
and embedders all go through :class:`Running`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .application import App, ServerApplication, invoke
from .brokers import LocalBroker, make_broker
from .durable import Gate
from .errors import ConfigurationError
from .handlers import Handler
from .headers import select_subprotocol
from .metrics import MeteredSession, ServerMetrics
from .network.hub import Hub, listen
from .network.session import Session
from .scheduler import Schedule, TaskRunner
from .security import Origins, Trust

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["Runnable", "Running", "run_hooks"]

logger = logging.getLogger("lexicons")


class Runnable(App, Protocol):
    """What starting and stopping needs of an application (:class:`~lexicons.Server`)."""

    #: The server running this application, while one does.
    running: Running | None

    @property
    def task(self) -> Schedule: ...

    def database_for(self, settings: Settings) -> Any: ...

    def log_step(self, status: str, data: Any = None) -> None:
        """Tell the application's ``on_log`` where the start or stop sequence is."""


class Running:
    """A server started with :meth:`Server.serve`; use ``async with`` or ``await``.

    ``port`` is the bound port (useful with ``port=0``) and ``url`` the address to
    connect to. ``close()`` runs the shutdown sequence; it is safe to call twice.
    ``shared_metrics`` is the directory where ``--workers`` processes add up their
    metrics (:mod:`lexicons.metrics.shared`). With ``listen=False`` everything starts but
    the socket, for a server that receives its connections from elsewhere (ASGI).
    """

    def __init__(
        self,
        app: Runnable,
        settings: Settings,
        *,
        shared_metrics: str | None = None,
        listen: bool = True,
    ) -> None:
        self.app = app
        self.settings = settings.checked()
        self.host = settings.host
        self.port = settings.port
        self.runner = TaskRunner(app.task, self._invoke, grace=self.settings.task_grace)
        #: The server's metrics, with ``metrics=True``.
        self.metrics: ServerMetrics | None = None
        #: How the server serves connections, once started.
        self.application: ServerApplication | None = None
        self._shared_metrics = shared_metrics
        self._listen = listen
        self._server: asyncio.Server | None = None
        self._hub: Hub | None = None
        self._gate: Gate | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._closed: asyncio.Event | None = None
        self._steps: list[str] = []
        #: Joins that wait for the broker, started by server code that subscribes.
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        """``ws://host:port/`` (or ``wss://``) of the listening socket."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{self.settings.protocol}://{host}:{self.port}/"

    # entry points

    async def __aenter__(self) -> Running:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, Running]:
        return self.start().__await__()

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has finished."""
        assert self._closed is not None, "the server was not started"
        await self._closed.wait()

    # start

    async def start(self) -> Running:
        """Run the start-up sequence; on any failure, undo what was started and raise."""
        app, settings = self.app, self.settings
        if app.running is not None:
            raise ConfigurationError("this server is already running; stop it first")
        Trust(settings.trust, settings.proxies)  # a bad entry fails before anything starts
        Origins(settings.origins)
        ssl_context = settings.ssl_context()
        if settings.metrics:  # prometheus_client missing fails here, before anything starts
            self.metrics = ServerMetrics(app, shared=self._shared_metrics)
        self._closed = asyncio.Event()
        #: The event loop serving the app (what ``broadcast_threadsafe`` hands work to).
        self.loop = asyncio.get_running_loop()
        app.running = self
        app.log_step("STARTING")
        try:
            app.database_for(settings).open()
            self._steps.append("db")
            broker = make_broker(settings)
            if self.metrics is not None:
                broker = self.metrics.broker(broker)
            broker.bind(app.channels)
            app.channels.broker = broker
            app.channels.configure(settings.max_buffer)
            app.channels.spawn = self._spawn
            await broker.start()
            self._steps.append("broker")
            self._gate = Gate(app.db) if app.db.durable else None
            app.channels.gate = self._gate
            for hook in app.hooks["on_start"]:
                await self._invoke(hook)
            self._steps.append("hooks")  # from here on_shutdown runs, even if start fails
            await self.runner.run_startup()
            self._steps.append("tasks")
            if self.metrics is None:
                self.application = ServerApplication(app, settings, self._gate)
            else:
                self.application = self.metrics.application(settings, self._gate)
            if self._listen:
                await self._start_listening(self.application, ssl_context)
        except BaseException:
            await self._undo()
            raise
        self.runner.start_intervals()
        if self.metrics is not None:
            self.metrics.start()
        if self._listen:
            if settings.ping_interval is not None:
                self._schedule_keepalive()
            logger.info("serving on %s", self.url)
        return self

    async def _start_listening(
        self, application: ServerApplication, ssl_context: ssl.SSLContext | None
    ) -> None:
        settings = self.settings
        self._hub = hub = Hub(
            application,
            settings,
            select_subprotocol=_select_subprotocol,
            session_type=Session if self.metrics is None else MeteredSession,
        )
        self._server = await listen(
            hub,
            settings.host,
            settings.port,
            ssl_context=ssl_context,
            reuse_port=settings.reuse_port,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def _schedule_keepalive(self) -> None:
        assert self.settings.ping_interval is not None
        loop = asyncio.get_running_loop()
        self._keepalive = loop.call_later(self.settings.ping_interval, self._keepalive_round)

    def _keepalive_round(self) -> None:
        if self._hub is not None:
            self._hub.keepalive()
            self._schedule_keepalive()

    # stop

    async def close(self) -> None:
        """Run the shutdown sequence once; later calls wait for the first to finish."""
        if self.app.running is not self:
            if self._closed is not None:
                await self._closed.wait()
            return
        self.app.log_step("SHUTDOWN")
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self._server is not None:
            self._server.close()
        if self._hub is not None:
            await self._hub.close_all(self.settings.shutdown_timeout)
        if self.metrics is not None:
            self.metrics.stop()
        await self._undo()
        if self._server is not None:
            await self._server.wait_closed()
        logger.info("stopped")

    async def _undo(self) -> None:
        """Stop whatever the start-up sequence started, in reverse order."""
        app = self.app
        try:
            if "tasks" in self._steps:
                app.log_step("CLEANUP-TASKS-STARTED")
                await self.runner.stop_intervals()
                await self.runner.run_shutdown()
                app.log_step("CLEANUP-TASKS-COMPLETE")
            if "hooks" in self._steps:
                for hook in app.hooks["on_shutdown"]:
                    try:
                        await self._invoke(hook)
                    except Exception:
                        logger.exception("on_shutdown hook %s failed", hook.func.__qualname__)
            if "broker" in self._steps:
                for task in list(self._tasks):
                    task.cancel()
                await app.channels.broker.stop()
                app.channels.broker = LocalBroker()
                app.channels.broker.bind(app.channels)
            if "db" in self._steps:
                app.channels.gate = None
                app.db.close()
        finally:
            self._steps.clear()
            app.running = None
            assert self._closed is not None
            self._closed.set()

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("subscribing failed", exc_info=task.exception())

    # calling user code

    async def _invoke(self, handler: Handler) -> Any:
        return await invoke(handler, self._gate, None, self.app, self.app.db)


async def run_hooks(app: App, hook: Literal["on_start", "on_shutdown"], *, durable: bool) -> None:
    """Run ``app``'s ``hook`` functions in order with ``sv`` and ``db``, as the start and
    stop sequences do, for commands that do not listen (``shell``, ``migrate``)."""
    gate = Gate(app.db) if durable else None
    for handler in app.hooks[hook]:
        await invoke(handler, gate, None, app, app.db)


def _select_subprotocol(protocol: Any, offered: Any) -> Any:
    return select_subprotocol(offered)
