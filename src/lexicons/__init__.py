"""lexicons: a fast, typed framework for real-time WebSocket back ends.

::

    from lexicons import Server, Response

    app = Server()
    app.channel("Public")

    @app.on_connect
    def join(ws, sv):
        sv.channels["Public"].subscribe(ws.pk)

    @app.signal
    def shout(ws, text: str):
        return Response({"from": ws.pk, "text": text}, ["Public"])

    if __name__ == "__main__":
        app.run()
"""

from ._version import __version__ as __version__
from .brokers import Broker, LocalBroker
from .channels import Channel, Channels
from .client import Backoff, Client
from .connection import Connection
from .emitter import Emitter
from .errors import (
    ConfigurationError,
    DatabaseError,
    Forbidden,
    HandshakeRejected,
    IntegrityError,
    InternalError,
    InvalidFrame,
    InvalidJSON,
    InvalidPayload,
    LexiconsError,
    QueryError,
    RateLimited,
    RegistrationError,
    SchemaError,
    SignalError,
    StorageError,
    TaskError,
    UnknownChannel,
    UnknownSignal,
)
from .headers import Header
from .history import History
from .lifecycle import Running
from .ratelimit import RateLimit
from .schema import asyncapi_document, typescript_declarations
from .server import Server
from .settings import Settings
from .signals import Response, Signal
from .store import Database, Index, Model, QueryResult, Ref
from .tasks import Task

__all__ = [
    "Backoff",
    "Broker",
    "Channel",
    "Channels",
    "Client",
    "ConfigurationError",
    "Connection",
    "Database",
    "DatabaseError",
    "Emitter",
    "Forbidden",
    "HandshakeRejected",
    "Header",
    "History",
    "Index",
    "IntegrityError",
    "InternalError",
    "InvalidFrame",
    "InvalidJSON",
    "InvalidPayload",
    "LexiconsError",
    "LocalBroker",
    "Model",
    "QueryError",
    "QueryResult",
    "RateLimit",
    "RateLimited",
    "Ref",
    "RegistrationError",
    "Response",
    "Running",
    "SchemaError",
    "Server",
    "Settings",
    "Signal",
    "SignalError",
    "StorageError",
    "Task",
    "TaskError",
    "UnknownChannel",
    "UnknownSignal",
    "asyncapi_document",
    "typescript_declarations",
]
