"""The Server: settings, registries and decorators of one application.

::

    app = Server()

    @app.signal
    def echo(text: str):
        return {"text": text}

    if __name__ == "__main__":
        app.run()          # python app.py run | shell | migrate

Every decorator is sugar over an ``add_*`` method and returns the decorated object
unchanged. Class-style components (``Signal``, ``Channel``, ``Header``, ``Task``,
``Model`` subclasses) install through the same methods, positionally or by keyword.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from typing_extensions import Unpack

from .brokers import LocalBroker
from .channels import Channel, ChannelOptions, Channels
from .connection import Connection
from .database import Database
from .errors import LexiconsError, RegistrationError
from .handlers import Handler, inspect_handler
from .headers import Header, HeaderRegistry, check_gate
from .models import Model
from .protocol import encode
from .ratelimit import RateLimit
from .security import Origins, Trust
from .settings import Settings
from .signals import Signal, SignalRegistry
from .tasks import Task, TaskRegistry

if TYPE_CHECKING:
    from .lifecycle import Running
    from .scheduler import TaskInfo

__all__ = ["Server"]

logger = logging.getLogger("lexicons")

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)
Gate = Callable[[list[bool]], Any]
HookName = Literal["on_connect", "on_disconnect", "on_start", "on_shutdown"]
HOOKS: tuple[HookName, ...] = ("on_connect", "on_disconnect", "on_start", "on_shutdown")


class Server:
    """One lexicons application: what it serves, how, and with which settings.

    Every setting has a working default; environment variables (``LEXICONS_PORT`` ...)
    override the arguments, and command-line flags override both.
    """

    def __init__(
        self,
        *components: Any,
        database: Database | None = None,
        data: str = "./",
        protocol: str = "ws",
        host: str = "localhost",
        port: int = 5000,
        debug: bool = True,
        trust: Sequence[str] = ("*",),
        gate: Gate = all,
        on_connect: Callable[..., Any] | None = None,
        on_disconnect: Callable[..., Any] | None = None,
        on_start: Callable[..., Any] | None = None,
        on_shutdown: Callable[..., Any] | None = None,
        channels: Iterable[Any] = (),
        models: Iterable[type[Model]] = (),
        signals: Iterable[Any] = (),
        tasks: Iterable[Any] = (),
        headers: Iterable[Any] = (),
        **settings: Any,
    ) -> None:
        try:
            self.settings = Settings(
                host=host,
                port=port,
                protocol=protocol,
                debug=debug,
                data=data,
                trust=list(trust),
                **settings,
            )
        except TypeError as exc:
            raise RegistrationError(f"Server: {exc}") from None
        Trust(self.settings.trust, self.settings.proxies)  # an invalid entry fails here
        if self.settings.origins is not None:
            Origins(self.settings.origins)
        self.gate: Gate = check_gate(gate)
        self.db: Database = database if database is not None else Database(data=data)
        #: Live connections of this process by pk.
        self.connections: dict[str, Connection] = {}
        self.channels = Channels(self.connections, LocalBroker())
        self.channels.broker.bind(self.channels)
        self.signals = SignalRegistry()
        #: Handshake checks in registration order (the order of ``gate``'s list).
        self.headers = HeaderRegistry()
        #: Register tasks: ``@app.task.startup``, ``.interval(seconds)``, ``.shutdown``.
        self.task = TaskRegistry()
        self.hooks: dict[HookName, list[Handler]] = {name: [] for name in HOOKS}
        #: Free slot for application-wide state (a pool, a cache, a game lobby).
        self.state: dict[str, Any] = {}
        self.running: Running | None = None
        hooks = (on_connect, on_disconnect, on_start, on_shutdown)
        for hook, func in zip(HOOKS, hooks, strict=True):
            if func is not None:
                self.add_hook(hook, func)
        for component in components:
            self.add(component)
        for channel in channels:
            self.add_channel(channel)
        for model in models:
            self.add_model(model)
        for signal in signals:
            self.add_signal(signal)
        for task in tasks:
            self.add_task(task)
        for header in headers:
            self.add_header(header)

    # registration

    def add(self, component: Any) -> None:
        """File a class-style component (or instance) by its kind."""
        kind = component if isinstance(component, type) else type(component)
        for base, add in (
            (Signal, self.add_signal),
            (Channel, self.add_channel),
            (Header, self.add_header),
            (Task, self.add_task),
            (Model, self.add_model),
        ):
            if issubclass(kind, base):
                add(component)
                return
        raise RegistrationError(
            f"Server: cannot tell what {component!r} is; pass a subclass of Signal, "
            "Channel, Header, Task or Model, or use the keyword lists"
        )

    def add_signal(
        self, target: Any, name: str | None = None, *, limit: str | RateLimit | None = None
    ) -> Handler:
        """Register a signal function or :class:`Signal` class under ``name``.

        ``limit`` (``"5/s"``, a :class:`RateLimit`) bounds how often one connection may
        call it; past it the client gets ``rate_limited``.
        """
        self._check_not_running("signal")
        return self.signals.add(target, name, limit=limit)

    def add_channel(
        self, channel: Channel | type[Channel] | str, **options: Unpack[ChannelOptions]
    ) -> Channel:
        """Register a channel given as a name (or a pattern such as ``"room:{id}"``) with
        its options, or a :class:`Channel` class/instance (see :class:`Channel`)."""
        return self.channels.add(channel, **options)

    def add_presence(self, func: Callable[..., Any]) -> Handler:
        """Register the function that describes a connection to the other members of a
        presence channel (its ``info``; never a credential)."""
        self._check_not_running("presence function")
        handler = inspect_handler(func, "presence", payload=False)
        if handler.is_async:
            raise RegistrationError(
                "presence: the presence function must not be async (it runs as a "
                "connection subscribes); look what it needs up in a header or on_connect"
            )
        self.channels.describe = lambda ws: handler.call({}, ws, self, self.db)
        return handler

    def add_header(self, target: Any, name: str | None = None) -> Handler:
        """Register a handshake check (a function or :class:`Header` class) under ``name``."""
        self._check_not_running("header")
        return self.headers.add(target, name)

    def add_model(self, model: type[Model]) -> type[Model]:
        """Register a :class:`Model` with the database."""
        self._check_not_running("model")
        self.db.add_model(model)
        return model

    def add_task(self, task: Any) -> None:
        """Register a class-style :class:`Task` (subclass or instance)."""
        self._check_not_running("task")
        self.task.add(task)

    def add_hook(self, hook: HookName, func: Callable[..., Any]) -> Handler:
        """Register a lifecycle hook; several per hook run in registration order."""
        if hook not in self.hooks:
            raise RegistrationError(f"unknown hook {hook!r}; hooks are {', '.join(HOOKS)}")
        self._check_not_running(hook)
        handler = inspect_handler(func, hook, payload=False)
        self.hooks[hook].append(handler)
        return handler

    def _check_not_running(self, what: str) -> None:
        if self.running is not None:
            raise RegistrationError(f"cannot register a {what} while the server is running")

    # decorators

    @overload
    def signal(self, target: F, /) -> F: ...
    @overload
    def signal(
        self, name: str | None = None, /, *, limit: str | RateLimit | None = None
    ) -> Callable[[F], F]: ...
    def signal(self, target: Any = None, /, *, limit: str | RateLimit | None = None) -> Any:
        """Register a signal: ``@app.signal``, named for the function, or ``@app.signal("Name")``.

        ``@app.signal(limit="5/s")`` limits how often one connection may call it. Returns
        the function unchanged.
        """
        if limit is None:
            return self._decorator(self.add_signal, target)
        return self._decorator(partial(self.add_signal, limit=limit), target)

    @overload
    def header(self, target: F, /) -> F: ...
    @overload
    def header(self, name: str | None = None, /) -> Callable[[F], F]: ...
    def header(self, target: Any = None, /) -> Any:
        """Register a handshake check: ``@app.header`` or ``@app.header("Login")``."""
        return self._decorator(self.add_header, target)

    @overload
    def channel(self, target: str, /, **options: Unpack[ChannelOptions]) -> Channel: ...
    @overload
    def channel(self, target: C, /) -> C: ...
    def channel(self, target: Any, /, **options: Any) -> Any:
        """Create a channel by name (``app.channel("Public", history=History(50))``) or
        register a Channel class.

        The channel returned is also a decorator for its authorization function, which
        lets clients ``$subscribe``::

            @app.channel("room:{id}", presence=True)
            def room(ws, id: str) -> bool:
                return ws.auth is not None
        """
        channel = self.add_channel(target, **options)
        return channel if isinstance(target, str) else target

    def presence(self, func: F) -> F:
        """Register the presence function: ``info`` of a connection in ``$join``, ``$leave``
        and ``$presence``::

            @app.presence
            def info(ws):
                return {"name": ws.auth.name}
        """
        self.add_presence(func)
        return func

    def model(self, model: C) -> C:
        """Register a model class: ``@app.model``."""
        self.add_model(model)
        return model

    def on_connect(self, func: F) -> F:
        """Run ``func`` for each admitted connection, before its first message is handled."""
        self.add_hook("on_connect", func)
        return func

    def on_disconnect(self, func: F) -> F:
        """Run ``func`` once for each admitted connection that is gone, however it went."""
        self.add_hook("on_disconnect", func)
        return func

    def on_start(self, func: F) -> F:
        """Run ``func`` at start-up, before the startup tasks and before listening."""
        self.add_hook("on_start", func)
        return func

    def on_shutdown(self, func: F) -> F:
        """Run ``func`` at shutdown, after the shutdown tasks."""
        self.add_hook("on_shutdown", func)
        return func

    @staticmethod
    def _decorator(add: Callable[..., Any], target: Any) -> Any:
        if target is None or isinstance(target, str):
            name = target

            def decorate(func: F) -> F:
                add(func, name)
                return func

            return decorate
        add(target)
        return target

    # at run time

    def broadcast(
        self, payload: Any, channels: Iterable[str] | str, key: str | None = None
    ) -> None:
        """Send ``payload`` to the subscribers of ``channels`` (unknown names are logged).

        ``key`` names what it is about: a subscriber lagging on a ``conflate`` channel gets
        only the latest broadcast per key.
        """
        names = [channels] if isinstance(channels, str) else list(channels)
        self.channels.publish(names, encode(payload), key)

    def broadcast_threadsafe(
        self, payload: Any, channels: Iterable[str] | str, key: str | None = None
    ) -> None:
        """:meth:`broadcast` from another thread (a worker, a hardware poller).

        The payload is encoded in the calling thread; the broadcast is handed to the
        server's event loop and goes out in call order. Raises :class:`LexiconsError`
        when the server is not running.
        """
        running = self.running
        if running is None:
            raise LexiconsError("broadcast_threadsafe: the server is not running")
        names = [channels] if isinstance(channels, str) else list(channels)
        data = encode(payload)
        try:
            running.loop.call_soon_threadsafe(self.channels.publish, names, data, key)
        except RuntimeError:  # the loop closed since the check
            raise LexiconsError("broadcast_threadsafe: the server has stopped") from None

    @property
    def tasks(self) -> list[TaskInfo]:
        """Every task with its kind, next run, last duration and last error."""
        if self.running is not None:
            return self.running.runner.tasks
        return self.task.infos()

    def database_for(self, settings: Settings) -> Database:
        """The app's database, pointed at the data directory and mode ``settings`` name."""
        self.db.data = settings.data
        self.db.durable = settings.durable
        return self.db

    def serve(self, host: str | None = None, port: int | None = None, **settings: Any) -> Running:
        """Start serving inside the running event loop: ``async with app.serve(port=0) as s:``.

        ``s.port`` is the bound port. Leaving the block runs the whole shutdown sequence.
        """
        from .lifecycle import Running

        changes = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        changes.update(settings)
        return Running(self, self.settings.from_environment().replace(**changes))

    def run(self, argv: Sequence[str] | None = None) -> None:
        """Command line: ``python app.py run [--port P] | shell | migrate``."""
        from .cli import main_for

        sys.exit(main_for(self, argv))
