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

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .errors import ConfigurationError, RegistrationError
from .handlers import Handler, inspect_handler, resolve_component
from .ratelimit import RateLimit

__all__ = ["Response", "Signal", "SignalRegistry"]


class Response:
    """A signal result broadcast to channels instead of replied to the sender.

    ``Response({"text": "hi"}, ["Public"])`` returned from signal ``shout`` sends
    ``{"shout": {"text": "hi"}}`` to every subscriber of ``Public``. ``key`` names what
    the broadcast is about (a player, a vehicle): a subscriber lagging on a ``conflate``
    channel gets only the latest broadcast per key.
    """

    __slots__ = ("payload", "channels", "key")

    def __init__(
        self, payload: Any, channels: Iterable[str] | str, key: str | None = None
    ) -> None:
        self.payload = payload
        self.channels = [channels] if isinstance(channels, str) else list(channels)
        self.key = key

    def __repr__(self) -> str:
        return f"Response({self.payload!r}, {self.channels!r})"


class Signal:
    """Class-style signal: subclass it and define ``execute``; the name is the class name.

    ``execute`` receives the payload's fields as keyword arguments, plus ``ws``, ``sv`` and
    ``db`` when it asks for them by name (``**kwargs`` receives all).
    """

    #: The name clients call; defaults to the class name.
    name: str | None = None

    def execute(self, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.execute is not defined")


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


def _describe(func: Callable[..., Any]) -> str:
    owner = getattr(func, "__self__", None)
    if owner is not None:
        return f"{type(owner).__module__}.{type(owner).__qualname__}"
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func)!s}"
