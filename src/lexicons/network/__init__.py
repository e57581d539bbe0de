"""The network layer: the only code that touches sockets.

A frame's way in, one module each::

    link.py      the asyncio protocol of one TCP connection: bytes in, writes out
    session.py   that connection's state machine, without I/O (order, limits, fairness)
    frames.py    server frames, framed once for every subscriber
    http.py      answers to plain HTTP requests (health check, static files)
    deadlines.py handshake and close timeouts on one timer per kind
    hub.py       what all connections of one server share; the listener

What a server does with connections and messages is its
:class:`~lexicons.network.session.Application`; lexicons' own is in
``lexicons/application.py``.
"""

__all__: list[str] = []
