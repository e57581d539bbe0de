"""Every error lexicons raises, in one tree.

.. code-block:: text

    LexiconsError
    ├── ConfigurationError      a bad setting; raised at start-up, names the setting
    ├── RegistrationError       a bad or duplicate component; raised at registration
    ├── SignalError             an error answered to one client as an error frame
    │   ├── InvalidJSON             invalid_json
    │   ├── InvalidFrame            invalid_frame
    │   ├── UnknownSignal           unknown_signal
    │   ├── InvalidPayload          invalid_payload
    │   ├── InternalError           internal_error
    │   ├── RateLimited             rate_limited
    │   ├── Forbidden               forbidden
    │   └── UnknownChannel          unknown_channel
    ├── HandshakeRejected       a connection refused before the upgrade (HTTP status)
    ├── TaskError               a startup task failed; the server does not start
    └── DatabaseError           raised by the built-in store
        ├── SchemaError             a model that cannot be stored
        ├── QueryError              an unknown field or operator, or an ambiguous get
        ├── IntegrityError          a wrong type or a reference to a missing row
        └── StorageError            a data file that cannot be read or written

A :class:`SignalError` raised inside a signal handler is answered to the sender with
its own code and message, so handlers can refuse a request with a stable code::

    raise SignalError("not_allowed", "only the room owner may do that")
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DatabaseError",
    "Forbidden",
    "HandshakeRejected",
    "IntegrityError",
    "InternalError",
    "InvalidFrame",
    "InvalidJSON",
    "InvalidPayload",
    "LexiconsError",
    "QueryError",
    "RateLimited",
    "RegistrationError",
    "SchemaError",
    "SignalError",
    "StorageError",
    "TaskError",
    "UnknownChannel",
    "UnknownSignal",
]


class LexiconsError(Exception):
    """Base class of every error raised by lexicons."""


class ConfigurationError(LexiconsError):
    """A setting has a value lexicons cannot use; the message names the setting."""


class RegistrationError(LexiconsError):
    """A component cannot be registered: a duplicate name, a bad signature, too late."""


class SignalError(LexiconsError):
    """An error answered to the client that caused it, as ``{"Errors": [...]}``.

    ``code`` is stable and machine-readable; ``message`` is for people.
    """

    code: str = "error"

    def __init__(self, code: str | None = None, message: str = "") -> None:
        if code is not None:
            self.code = code
        self.message = message
        super().__init__(message)


class InvalidJSON(SignalError):
    """The text frame is not valid JSON."""

    code = "invalid_json"

    def __init__(self, message: str = "") -> None:
        super().__init__(None, message)


class InvalidFrame(SignalError):
    """The frame is JSON but not an object or list of objects, or is binary."""

    code = "invalid_frame"

    def __init__(self, message: str = "") -> None:
        super().__init__(None, message)


class UnknownSignal(SignalError):
    """No signal of that name is registered."""

    code = "unknown_signal"

    def __init__(self, message: str = "") -> None:
        super().__init__(None, message)


class InvalidPayload(SignalError):
    """The payload does not match the signal's parameters; the message names the path."""

    code = "invalid_payload"

    def __init__(self, message: str = "") -> None:
        super().__init__(None, message)


class InternalError(SignalError):
    """The handler raised; its text reaches the client only with ``expose_errors``."""

    code = "internal_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(None, message)


class RateLimited(SignalError):
    """The signal's rate limit for this connection is used up; the request did not run."""

    code = "rate_limited"

    def __init__(self, message: str = "") -> None:
        super().__init__(None, message)


class Forbidden(SignalError):
    """A channel's authorization refused; an authorization function may raise it too."""

    code = "forbidden"

    def __init__(self, message: str = "") -> None:
        super().__init__(None, message)


class UnknownChannel(SignalError):
    """No channel, and no channel pattern, of that name."""

    code = "unknown_channel"

    def __init__(self, message: str = "") -> None:
        super().__init__(None, message)


class HandshakeRejected(LexiconsError):
    """A connection refused before the WebSocket upgrade, with an HTTP status."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}")


class TaskError(LexiconsError):
    """A task failed where failure stops the server (a startup task), or is misconfigured."""


class DatabaseError(LexiconsError):
    """Base class of the built-in store's errors."""


class SchemaError(DatabaseError):
    """A model cannot be stored: unsupported field type or unknown referenced model."""


class QueryError(DatabaseError):
    """An unknown model, field or operator, or a ``get`` that matched several rows."""


class IntegrityError(DatabaseError):
    """A value of the wrong type, or a reference to a row that does not exist."""


class StorageError(DatabaseError):
    """A data file is missing, corrupt or cannot be written; names the file."""
