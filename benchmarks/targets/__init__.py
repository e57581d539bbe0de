"""The servers the benchmarks compare, each run as its own process.

    python -m benchmarks.targets lexicons --loop uvloop      # prints READY <port>

Every target speaks the same application protocol: ``Echo`` replies to the sender,
``Subscribe`` joins the channel :data:`ROOM` and answers, ``Publish`` broadcasts to
:data:`ROOM`. The lexicons-style targets speak it as JSON objects
(``{"Echo": {"text": ...}}``), ``lexicons-msgpack`` as the same in MessagePack,
``lexicons-deflate`` as JSON with permessage-deflate; python-socketio speaks it as Socket.IO events
(``42["Echo", {"text": ...}]``). Every handshake carries the header ``Token`` and every
target checks it (and the lexicons target also its trust list and gate). Keepalive pings
are off everywhere: the client does not answer them, and they cost nothing per message.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ROOM", "TARGETS", "TOKEN", "Target", "loop_factory", "missing"]

#: The one channel (room) every fan-out target broadcasts to.
ROOM = "Room"
#: The handshake header value every target checks.
TOKEN = "bench-token"


@dataclass(frozen=True)
class Target:
    """One server under test: how to start it and how a client speaks to it."""

    name: str
    #: Module under ``benchmarks.targets`` whose ``main(loop, variant)`` runs it.
    module: str
    #: ``"json"`` (lexicons' wire protocol), ``"msgpack"`` (the same as MessagePack),
    #: ``"deflate"`` (JSON, compressed), or ``"socketio"`` (Engine.IO 4 over WebSocket).
    dialect: str
    #: What the table calls it.
    label: str
    #: Packages it needs besides lexicons' own dependencies.
    requires: tuple[str, ...] = ()
    #: Passed to ``main`` for modules that serve several targets.
    variant: str = ""


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("lexicons", "lexicons_app", "json", "lexicons"),
        Target(
            "lexicons-metrics",
            "lexicons_app",
            "json",
            "lexicons (metrics on)",
            requires=("prometheus_client",),
            variant="metrics",
        ),
        Target(
            "lexicons-asgi",
            "lexicons_app",
            "json",
            "lexicons (ASGI, uvicorn)",
            requires=("uvicorn",),
            variant="asgi",
        ),
        Target("lexicons-msgpack", "lexicons_app", "msgpack", "lexicons (MessagePack)"),
        Target(
            "lexicons-deflate",
            "lexicons_app",
            "deflate",
            "lexicons (permessage-deflate)",
            variant="compression",
        ),
        Target("raw", "raw", "json", "raw websockets (msgspec)", variant="msgspec"),
        Target("raw-json", "raw", "json", "raw websockets (json)", variant="json"),
        Target("floor", "floor", "json", "Sans-I/O floor"),
        Target(
            "socketio-aiohttp",
            "socketio_app",
            "socketio",
            "python-socketio (aiohttp)",
            requires=("socketio", "aiohttp"),
            variant="aiohttp",
        ),
        Target(
            "socketio-uvicorn",
            "socketio_app",
            "socketio",
            "python-socketio (uvicorn)",
            requires=("socketio", "uvicorn"),
            variant="uvicorn",
        ),
    )
}


def missing(target: Target, loop: str = "asyncio") -> str | None:
    """Why ``target`` cannot run on ``loop`` here (a package is not installed), or None."""
    needed = (*target.requires, "uvloop") if loop == "uvloop" else target.requires
    absent = [name for name in needed if importlib.util.find_spec(name) is None]
    if absent:
        return f"not installed: {', '.join(absent)}"
    return None


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop constructor named ``loop``: ``"uvloop"`` or ``"asyncio"``."""
    if loop == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    if loop == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"loop: {loop!r} is not 'uvloop' or 'asyncio'")
