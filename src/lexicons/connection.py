"""The connection object handlers receive as ``ws``: one admitted client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from websockets.datastructures import Headers

from .protocol import encode
from .store.models import new_pk

if TYPE_CHECKING:
    from .network import Link

__all__ = ["Connection"]


class Connection:
    """One client, from its handshake to its disconnect.

    ``pk`` identifies it (a uuid4 string) in channels and in ``sv.connections``;
    ``auth`` is set by header functions at the handshake; ``state`` is a free dict for
    application data. ``send`` and ``close`` never block: writes are queued on the socket.
    """

    __slots__ = ("pk", "remote_address", "path", "headers", "auth", "state", "_link", "_channels")

    def __init__(self, link: Link, remote_address: str, path: str, headers: Headers) -> None:
        # The models' batched uuid4 strings: 0.3 µs instead of 2.7 µs per connection.
        self.pk: str = new_pk()
        #: The client's IP address (behind a trusted proxy: the forwarded one).
        self.remote_address = remote_address
        #: The handshake's path, with its query string.
        self.path = path
        #: The handshake's HTTP headers (case-insensitive mapping).
        self.headers = headers
        #: Whatever a header function decided about the client (a user, a role, ...).
        self.auth: Any = None
        #: Free slot for application data about this connection.
        self.state: dict[str, Any] = {}
        self._link = link
        #: Names of the channels this connection is subscribed to.
        self._channels: set[str] = set()

    def send(self, payload: Any) -> None:
        """Send ``payload`` (anything msgspec can encode) to this client as a JSON message."""
        self._link.send_data(encode(payload))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; ``on_disconnect`` runs once the connection is gone."""
        self._link.close(code, reason)

    @property
    def open(self) -> bool:
        """Whether messages sent now can still reach the client."""
        return self._link.is_open

    @property
    def channels(self) -> frozenset[str]:
        """The names of the channels this connection is subscribed to."""
        return frozenset(self._channels)

    def __repr__(self) -> str:
        return f"<Connection {self.pk} from {self.remote_address}>"
