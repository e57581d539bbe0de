"""``app.asgi``: a lexicons application as an ASGI application.

:mod:`~lexicons.asgi.application` is the ASGI application (``lifespan``, ``websocket``
and ``http`` scopes); :mod:`~lexicons.asgi.session` the stand-in for the network
session that each WebSocket's connection object writes through.
"""

from __future__ import annotations

from .application import AsgiApp
from .session import AsgiSession

__all__ = ["AsgiApp", "AsgiSession"]
