"""Signals: the named endpoints clients call, and the Response that broadcasts a result.

Decorator style (the documented one)::

    @app.signal
    def shout(ws, text: str):
        return Response({"from": ws.pk, "text": text}, ["Public"])

Class style (the original documents' style; both end in the same registry)::

    class Echo(Signal):
        def execute(self, ws=None, **kwargs):
            return kwargs
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from .errors import ConfigurationError, RegistrationError
from .handlers import Handler, inspect_handler, resolve_component
from .ratelimit import RateLimit

__all__ = ["Response", "Signal", "SignalRegistry"]

P = TypeVar("P")


class Response(Generic[P]):
    """A signal result broadcast to channels instead of replied to the sender.

    ``Response({"text": "hi"}, ["Public"])`` returned from signal ``shout`` sends
    ``{"shout": {"text": "hi"}}`` to every subscriber of ``Public``. ``key`` names what
    the broadcast is about (a player, a vehicle): a subscriber lagging on a ``conflate``
    channel gets only the latest broadcast per key. Annotate a signal ``-> Response[T]``
    to give its broadcasts a type (``lexicons schema`` and ``lexicons types`` read it).
    """

    __slots__ = ("payload", "channels", "key")

    def __init__(self, payload: P, channels: Iterable[str] | str, key: str | None = None) -> None:
        self.payload = payload
        self.channels = [channels] if isinstance(channels, str) else list(channels)
        self.key = key

    def __repr__(self) -> str:
        return f"Response({self.payload!r}, {self.channels!r})"


class Signal:
    """Class-style signal: subclass it and define ``execute``; the name is the class name.

    ``execute`` receives the payload's fields as keyword arguments, plus ``ws``, ``sv`` and
    ``db`` when it asks for them by name (``**kwargs`` receives all). As in the original,
    it may return ``self.response(payload, channels)`` (or the tuple ``(payload,
    channels)``) to broadcast, or any other value to reply to the sender::

        class GetData(Signal):
            def execute(self, ws=None, **kwargs):
                return self.response("Hello World!", ["Public"])
    """

    #: The name clients call; defaults to the class name.
    name: str | None = None

    def execute(self, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.execute is not defined")

    def response(self, payload: Any, channels: Iterable[str] | str) -> Response[Any]:
        """A broadcast of ``payload`` to ``channels``, as ``{"<signal name>": payload}``."""
        return Response(payload, channels)

    def send(self, ws: Any, payload: Any) -> Any:
        """Send ``payload`` to one connection only (``ws.send``); returns what it returns."""
        return ws.send(payload)


class SignalRegistry(Mapping[str, Handler]):
    """Signals by name, each inspected once when it is added."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        #: Rate limits per connection, by signal name.
        self.limits: dict[str, RateLimit] = {}

    def add(
        self,
        target: Callable[..., Any] | type[Signal] | Signal,
        name: str | None = None,
        *,
        limit: str | RateLimit | None = None,
    ) -> Handler:
        """Register a function, a :class:`Signal` subclass or a Signal instance; ``limit``
        (``"5/s"``, a :class:`~lexicons.ratelimit.RateLimit`) bounds each connection's use."""
        name, func = resolve_component(target, Signal, "signal", name)
        if name.startswith("$"):
            raise RegistrationError(
                f"signal {name!r}: names beginning with '$' are reserved for lexicons' own "
                "messages ($subscribe, $presence...)"
            )
        if isinstance(getattr(func, "__self__", None), Signal):
            func = _broadcasting_tuples(func)
        if name in self._handlers:
            existing = self._handlers[name].func
            raise RegistrationError(
                f"signal {name!r} is already registered by {_describe(existing)}; "
                f"cannot register {_describe(func)} under the same name"
            )
        handler = inspect_handler(func, name)
        if limit is not None:
            try:
                self.limits[name] = RateLimit.parse(limit)
            except ConfigurationError as exc:
                raise RegistrationError(f"signal {name!r}: {exc}") from None
        self._handlers[name] = handler
        return handler

    def __getitem__(self, name: str) -> Handler:
        return self._handlers[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._handlers.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)


def _broadcasting_tuples(execute: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a class-style ``execute`` so that ``return payload, channels`` broadcasts.

    The original's ``execute`` returned that tuple (``self.response`` built it), and the
    server broadcast it; any other result passes through unchanged.
    """
    if inspect.iscoroutinefunction(execute):

        @functools.wraps(execute)
        async def run_async(**kwargs: Any) -> Any:
            return as_response(await execute(**kwargs))

        return run_async

    @functools.wraps(execute)
    def run(**kwargs: Any) -> Any:
        return as_response(execute(**kwargs))

    return run


def as_response(result: Any) -> Any:
    """``(payload, channels)`` as a :class:`Response` (channels: a name or a list, tuple or
    set of names); anything else unchanged."""
    if type(result) is tuple and len(result) == 2:
        channels = result[1]
        if isinstance(channels, str) or (
            isinstance(channels, (list, tuple, set, frozenset))
            and all(isinstance(channel, str) for channel in channels)
        ):
            return Response(result[0], channels)
    return result


def _describe(func: Callable[..., Any]) -> str:
    owner = getattr(getattr(func, "__wrapped__", func), "__self__", None)
    if owner is not None:
        return f"{type(owner).__module__}.{type(owner).__qualname__}"
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func)!s}"
