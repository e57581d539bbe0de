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

import inspect
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from typing_extensions import Unpack

from .asgi import AsgiApp
from .brokers import LocalBroker
from .channels import Channel, ChannelOptions, Channels
from .commands import main_for
from .connection import Connection
from .errors import LexiconsError, RegistrationError
from .handlers import Handler, inspect_handler
from .headers import Header, HeaderRegistry, check_gate
from .layout import module_statement
from .lifecycle import Running
from .protocol import encode
from .ratelimit import RateLimit
from .security import Origins, Trust
from .settings import Settings
from .signals import Signal, SignalRegistry
from .store import Database, Model
from .tasks import Task, TaskRegistry

if TYPE_CHECKING:
    from .scheduler import TaskInfo

__all__ = ["Server"]

logger = logging.getLogger("lexicons")

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)
Gate = Callable[[list[bool]], Any]
HookName = Literal["on_connect", "on_disconnect", "on_start", "on_shutdown"]
HOOKS: tuple[HookName, ...] = ("on_connect", "on_disconnect", "on_start", "on_shutdown")
#: Settings that hold a list of names, where a single string means one entry.
_LISTS = frozenset({"proxies", "origins"})


def _names(value: Any) -> Any:
    """``"1.2.3.4"`` is one entry, not the list of its characters; other values unchanged."""
    return [value] if isinstance(value, str) else value


class LogStep:
    """Calls the original's ``on_log`` with the keywords it takes.

    The original called ``on_log(status=..., data=..., sv=..., db=...)`` at each step of
    the server's life; a function that names only some of them gets only those.
    """

    __slots__ = ("func", "_takes")

    _OFFERED = ("status", "data", "sv", "db", "ws", "error")

    def __init__(self, func: Callable[..., Any]) -> None:
        if not callable(func) or inspect.iscoroutinefunction(func):
            raise RegistrationError(f"on_log: {func!r} must be a plain (not async) function")
        try:
            parameters = inspect.signature(func).parameters.values()
        except (TypeError, ValueError) as exc:
            raise RegistrationError(f"on_log: cannot read the signature: {exc}") from exc
        names = {p.name for p in parameters if p.kind is not p.VAR_KEYWORD}
        extra = any(p.kind is p.VAR_KEYWORD for p in parameters)
        missing = [
            p.name
            for p in parameters
            if p.default is p.empty
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            and p.name not in self._OFFERED
        ]
        if missing or any(p.kind is p.POSITIONAL_ONLY for p in parameters):
            raise RegistrationError(
                f"on_log: lexicons calls it with keywords among "
                f"{', '.join(self._OFFERED)}; it cannot supply {missing or 'positional-only'}"
            )
        self.func = func
        self._takes = self._OFFERED if extra else tuple(n for n in self._OFFERED if n in names)

    def __call__(self, status: str, data: Any, sv: Any) -> None:
        offered = {"status": status, "data": data, "sv": sv, "db": sv.db, "ws": None}
        try:
            self.func(**{name: offered.get(name) for name in self._takes})
        except Exception:
            logger.exception("on_log failed at %s", status)


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
        trust: Sequence[str] | str = ("*",),
        gate: Gate = all,
        on_log: Callable[..., Any] | None = None,
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
                trust=list(_names(trust)),
                **{k: _names(v) if k in _LISTS else v for k, v in settings.items()},
            )
        except TypeError as exc:
            raise RegistrationError(f"Server: {exc}") from None
        Trust(self.settings.trust, self.settings.proxies)  # an invalid entry fails here
        if self.settings.origins is not None:
            Origins(self.settings.origins)
        self.gate: Gate = check_gate(gate)
        #: A Database passed in is used as given; only one made here follows the settings.
        self._own_database = database is None
        self.db: Database = database if database is not None else Database(data=data)
        #: The original's ``on_log(status=..., ...)``, called at each lifecycle step.
        self.on_log: LogStep | None = LogStep(on_log) if on_log is not None else None
        #: Live connections of this process by pk.
        self.connections: dict[str, Connection] = {}
        self.channels = Channels(self.connections, LocalBroker())
        self.channels.broker.bind(self.channels)
        self.signals = SignalRegistry()
        #: Handshake checks in registration order (the order of ``gate``'s list).
        self.headers = HeaderRegistry()
        #: Register tasks: ``@app.task.startup``, ``.interval(seconds)``, ``.shutdown``.
        self.task = TaskRegistry(guard=self._check_not_running)
        self.hooks: dict[HookName, list[Handler]] = {name: [] for name in HOOKS}
        #: Free slot for application-wide state (a pool, a cache, a game lobby).
        self.state: dict[str, Any] = {}
        self.running: Running | None = None
        self._asgi: AsgiApp | None = None
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
        self._check_not_running(f"signal {_named(target, name)!r}")
        return self.signals.add(target, name, limit=limit)

    def add_channel(
        self, channel: Channel | type[Channel] | str, **options: Unpack[ChannelOptions]
    ) -> Channel:
        """Register a channel given as a name (or a pattern such as ``"room:{id}"``) with
        its options, or a :class:`Channel` class/instance (see :class:`Channel`).

        While serving, create channels with ``sv.channels.create(name)`` instead.
        """
        self._check_not_running(f"channel {_named(channel)!r}")
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
        self._check_not_running(f"header {_named(target, name)!r}")
        return self.headers.add(target, name)

    def add_model(self, model: type[Model]) -> type[Model]:
        """Register a :class:`Model` with the database."""
        self._check_not_running(f"model {_named(model)!r}")
        self.db.add_model(model)
        return model

    def add_task(self, task: Any) -> None:
        """Register a class-style :class:`Task` (subclass or instance)."""
        self.task.add(task)

    def add_hook(self, hook: HookName, func: Callable[..., Any]) -> Handler:
        """Register a lifecycle hook; several per hook run in registration order."""
        if hook not in self.hooks:
            raise RegistrationError(f"unknown hook {hook!r}; hooks are {', '.join(HOOKS)}")
        self._check_not_running(f"{hook} hook {_named(func)!r}")
        handler = inspect_handler(func, hook, payload=False)
        self.hooks[hook].append(handler)
        return handler

    def _check_not_running(self, what: str) -> None:
        """Refuse a registration while serving: handshakes and messages already use the
        registries, so a late component would apply to some connections and not others."""
        if self.running is not None:
            raise RegistrationError(
                f"cannot register {what} while the server is running: register every "
                "component before the server starts (above app.run(), or before app.serve())"
            )

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

    @property
    def owns_database(self) -> bool:
        """Whether the server made its Database (from ``data`` and ``durable``) rather than
        being given one, which it then uses as given."""
        return self._own_database

    def database_for(self, settings: Settings) -> Database:
        """The app's database, pointed at the data directory and mode ``settings`` name.

        A Database passed in as ``Server(database=...)`` is used as given: settings that
        disagree with it are reported, never applied.
        """
        db = self.db
        if self._own_database:
            db.data = settings.data
            db.durable = settings.durable
            return db
        defaults = Settings()
        for name in ("data", "durable"):
            wanted = getattr(settings, name)
            if wanted != getattr(defaults, name) and wanted != getattr(db, name):
                logger.warning(
                    "setting %s=%r is not applied: the Database passed to Server() is used "
                    "as given (%s=%r); set it on that Database",
                    name,
                    wanted,
                    name,
                    getattr(db, name),
                )
        return db

    def log_step(self, status: str, data: Any = None) -> None:
        """Tell ``on_log`` about a lifecycle step; a failing ``on_log`` is logged, not raised."""
        if self.on_log is not None:
            self.on_log(status, data, self)

    @property
    def asgi(self) -> AsgiApp:
        """This application as an ASGI application, for uvicorn, hypercorn or granian
        (``uvicorn chat:app.asgi``) or mounted in Starlette or FastAPI
        (``Mount("/ws", app=app.asgi)``, with ``lifespan=app.asgi.lifespan``).

        Settings come from the code and the ``LEXICONS_*`` environment variables; the
        ASGI server decides the address, TLS and keepalive pings.
        """
        if self._asgi is None:
            self._asgi = AsgiApp(self, self.settings.from_environment)
        return self._asgi

    def serve(self, host: str | None = None, port: int | None = None, **settings: Any) -> Running:
        """Start serving inside the running event loop: ``async with app.serve(port=0) as s:``.

        ``s.port`` is the bound port. Leaving the block runs the whole shutdown sequence.
        """
        changes = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        changes.update(settings)
        return Running(self, self.settings.from_environment().replace(**changes))

    def run(self, argv: Sequence[str] | None = None, /, **settings: Any) -> None:
        """Serve from the command line until stopped, then exit: ``python app.py`` (or
        ``python app.py run --port 8000``), ``python app.py shell``, ``... migrate``.

        ``settings`` override the Server's (``app.run(port=8000, debug=False)``); the
        environment and the flags override them in turn. ``argv`` defaults to
        ``sys.argv[1:]``. The call must be the module's last statement, below every
        component: code after it would never run while the server does.
        """
        caller = module_statement(sys._getframe(1))
        sys.exit(main_for(self, argv, settings, caller))


def _named(component: Any, name: str | None = None) -> str:
    """How an error names a component: the name it is registered under, else its own."""
    if name:
        return name
    if isinstance(component, str):
        return component
    own = getattr(component, "name", None)
    if isinstance(own, str) and own:
        return own
    return str(getattr(component, "__name__", None) or type(component).__name__)
