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
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from websockets.http11 import Request

from .admission import Admission, admit_now
from .brokers import LocalBroker, make_broker
from .connection import Connection
from .errors import ConfigurationError
from .handlers import Handler
from .headers import select_subprotocol
from .network import Hub
from .protocol import Dispatcher
from .scheduler import TaskRunner
from .security import Origins, Trust

if TYPE_CHECKING:
    from .server import Server
    from .settings import Settings

__all__ = ["Running"]

logger = logging.getLogger("lexicons")


class Running:
    """A server started with :meth:`Server.serve`; use ``async with`` or ``await``.

    ``port`` is the bound port (useful with ``port=0``) and ``url`` the address to
    connect to. ``close()`` runs the shutdown sequence; it is safe to call twice.
    """

    def __init__(self, app: Server, settings: Settings) -> None:
        self.app = app
        self.settings = settings.checked()
        self.host = settings.host
        self.port = settings.port
        self.runner = TaskRunner(app.task, self._invoke_task, grace=self.settings.task_grace)
        self._server: asyncio.Server | None = None
        self._hub: Hub | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._closed: asyncio.Event | None = None
        self._steps: list[str] = []

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
        trust = Trust(settings.trust, settings.proxies)
        origins = Origins(settings.origins)
        ssl_context = settings.ssl_context()
        self._closed = asyncio.Event()
        app.running = self
        app.log_step("STARTING")
        try:
            app.database_for(settings).open()
            self._steps.append("db")
            broker = make_broker(settings)
            broker.bind(app.channels.deliver)
            app.channels.broker = broker
            await broker.start()
            self._steps.append("broker")
            commit = app.db.commit if app.db.durable else None
            app.channels.commit = commit
            for hook in app.hooks["on_start"]:
                await self._invoke(hook)
            self._steps.append("hooks")  # from here on_shutdown runs, even if start fails
            await self.runner.run_startup()
            self._steps.append("tasks")
            self._hub = hub = Hub(
                settings=settings,
                dispatcher=Dispatcher(
                    app.signals,
                    sv=app,
                    db=app.db,
                    debug=settings.debug,
                    reply=_reply,
                    publish=app.channels.publish,
                ),
                channels=app.channels,
                admit=self._admitter(trust, origins),
                select_subprotocol=_select_subprotocol,
                on_connect=self._hooks_runner("on_connect", close_on_error=True),
                on_disconnect=self._hooks_runner("on_disconnect", close_on_error=False),
                commit=commit,
                connections=app.connections,
            )
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                hub.protocol,
                settings.host,
                settings.port,
                ssl=ssl_context,
                reuse_port=settings.reuse_port or None,
            )
        except BaseException:
            await self._undo()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self.runner.start_intervals()
        if settings.ping_interval is not None:
            self._schedule_keepalive()
        logger.info("serving on %s", self.url)
        return self

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
                await app.channels.broker.stop()
                app.channels.broker = LocalBroker()
                app.channels.broker.bind(app.channels.deliver)
            if "db" in self._steps:
                app.db.close()
        finally:
            self._steps.clear()
            app.running = None
            assert self._closed is not None
            self._closed.set()

    # calling user code

    async def _invoke(self, handler: Handler, ws: Connection | None = None) -> Any:
        result = handler.call({}, ws, self.app, self.app.db)
        if handler.is_async:
            result = await result
        if self.app.db.durable:
            self.app.db.commit()
        return result

    async def _invoke_task(self, handler: Handler) -> Any:
        return await self._invoke(handler)

    def _hooks_runner(self, hook: str, *, close_on_error: bool) -> Any:
        """Build the function the network layer calls to run ``on_connect``/``on_disconnect``.

        Sync hooks run inline; from the first async one on, the rest run in a coroutine
        that is returned for the network layer to schedule. None when there are no hooks,
        so a connection costs no call for them.
        """
        hooks: list[Handler] = self.app.hooks[hook]  # type: ignore[index]
        if not hooks:
            return None
        app = self.app

        def failed(ws: Connection, exc: BaseException) -> None:
            logger.error("%s hook failed for %s", hook, ws.pk, exc_info=exc)
            if close_on_error:
                ws.close(1011, f"{hook} failed")

        async def rest(ws: Connection, pending: Any, index: int) -> None:
            try:
                await pending
                for handler in hooks[index:]:
                    await self._invoke(handler, ws)
            except Exception as exc:
                failed(ws, exc)
            if app.db.durable:
                app.db.commit()

        def run(ws: Connection) -> Coroutine[Any, Any, None] | None:
            for index, handler in enumerate(hooks):
                try:
                    result = handler.call({}, ws, app, app.db)
                except Exception as exc:
                    failed(ws, exc)
                    return None
                if handler.is_async:
                    return rest(ws, result, index + 1)
            if app.db.durable:
                app.db.commit()
            return None

        return run

    def _admitter(self, trust: Trust, origins: Origins) -> Any:
        """Build the admission check the network layer runs at every handshake.

        When every header answers synchronously the verdict comes back at once, so a
        handshake costs no task.
        """
        app = self.app
        headers = app.headers.handlers
        secure = self.settings.protocol == "wss"

        def check(ws: Connection, request: Request, peer: str) -> Admission | Any:
            # Header functions may read the address, so apply the proxy rule first.
            ws.remote_address = trust.client_address(peer, request.headers)
            return admit_now(
                request,
                peer=peer,
                trust=trust,
                origins=origins,
                headers=headers,
                gate=app.gate,
                call=lambda handler, kwargs: handler.call(kwargs, ws, app, app.db),
                secure=secure,
            )

        return check


def _reply(ws: Connection, data: bytes) -> None:
    ws._link.send_data(data)


def _select_subprotocol(protocol: Any, offered: Any) -> Any:
    return select_subprotocol(offered)
