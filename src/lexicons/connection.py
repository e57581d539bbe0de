"""The connection object handlers receive as ``ws``: one admitted client."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from websockets.datastructures import Headers

from .broadcasts import Broadcast
from .codecs import JSON, Codec
from .store.models import new_pk

if TYPE_CHECKING:
    from .network.session import Session

__all__ = [
    "Connection",
    "Sent",
    "cut_off",
    "deliver",
    "deliver_all",
    "deliver_keeping_up",
    "reply",
    "reply_now",
    "when_drained",
]

logger = logging.getLogger("lexicons")


class Memberships(Protocol):
    """Where a connection's channel subscriptions are kept (the server's channels)."""

    def joined(self, pk: str) -> frozenset[str]: ...


class Sent:
    """What :meth:`Connection.send` returns: the message is already on its way.

    It may be ignored, awaited (``await ws.send(...)``) or scheduled
    (``asyncio.ensure_future(ws.send(...))``), as the original framework's code does.
    """

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that finishes at once

    def __repr__(self) -> str:
        return "<Sent>"


SENT = Sent()


class Connection:
    """One client, from its handshake to its disconnect.

    ``pk`` identifies it (a uuid4 string) in channels and in ``sv.connections``;
    ``auth`` is set by header functions at the handshake; ``state`` is a free dict for
    application data; ``codec.name`` says what the client speaks (``"json"``, or
    ``"msgpack"``). ``send`` and ``close`` never block: writes are queued on the socket.
    """

    __slots__ = (
        "pk",
        "remote_address",
        "path",
        "headers",
        "auth",
        "state",
        "codec",
        "_session",
        "_send",
        "_memberships",
    )

    def __init__(
        self,
        session: Session,
        remote_address: str,
        path: str,
        headers: Headers,
        *,
        memberships: Memberships,
        send: Callable[[bytes], None] | None = None,
        codec: Codec = JSON,
    ) -> None:
        # The models' batched uuid4 strings: a fraction of uuid.uuid4()'s cost.
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
        #: The encoding the client speaks (JSON, or MessagePack when it negotiated it).
        self.codec = codec
        self._session = session
        #: Sends one encoded message (through the durable commit, in durable mode).
        self._send = send or session.send
        self._memberships = memberships

    def send(self, payload: Any) -> Sent:
        """Send ``payload`` to this client as one message, in the client's encoding.

        ``payload`` is anything msgspec can encode, or JSON already encoded (``bytes`` or
        ``str``), which is sent as it is to a JSON client (re-encoded for a MessagePack
        one). Sent before the connection is admitted (from a header), it waits for
        admission and is dropped if the connection is refused.
        """
        codec = self.codec
        if isinstance(payload, str):
            data = _from_json(codec, payload.encode())
        elif isinstance(payload, bytes | bytearray | memoryview):
            data = bytes(payload)
            try:
                data.decode()
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"ws.send: encoded JSON must be UTF-8 (invalid byte at {exc.start})"
                ) from None
            data = _from_json(codec, data)
        else:
            data = codec.encode(payload)
        self._send(data)
        return SENT

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; ``on_disconnect`` runs once the connection is gone."""
        self._session.close(code, reason)

    @property
    def open(self) -> bool:
        """Whether messages sent now can still reach the client."""
        return self._session.is_open

    @property
    def close_code(self) -> int | None:
        """The close code, once the closing handshake started (in ``on_disconnect``)."""
        return self._session.close_code

    @property
    def channels(self) -> frozenset[str]:
        """The names of the channels this connection is subscribed to."""
        return self._memberships.joined(self.pk)

    def __repr__(self) -> str:
        return f"<Connection {self.pk} from {self.remote_address}>"


def _from_json(codec: Codec, data: bytes) -> bytes:
    try:
        return codec.from_json(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"ws.send: the encoded JSON is not JSON ({exc})") from None


def reply(ws: Connection, data: bytes) -> None:
    """Send a message the framework encoded (a reply, an error) to ``ws``."""
    ws._send(data)


def reply_now(ws: Connection, data: bytes) -> None:
    """Send a message that reports no change (a bad frame's error): it never waits for
    a durable commit."""
    ws._session.send(data)


def deliver(connections: Iterable[Connection], broadcast: Broadcast) -> None:
    """Write one broadcast, in its flavour, to each connection that can still receive it."""
    plain = broadcast.plain
    for ws in connections:
        session = ws._session
        write = session.writer
        if write is not None:
            # Plain text frames, the common case, skip the lookup by flavour.
            flavour = session.flavour
            write(broadcast[flavour] if flavour else plain)


def deliver_all(ws: Connection, broadcasts: Iterable[Broadcast]) -> None:
    """Write several broadcasts to one connection in one go."""
    session = ws._session
    write = session.writer
    if write is not None:
        flavour = session.flavour
        write(b"".join([broadcast[flavour] for broadcast in broadcasts]))


def deliver_keeping_up(
    connections: Iterable[Connection], broadcast: Broadcast
) -> list[Connection]:
    """Write one broadcast to each connection whose socket keeps up; return the others
    that can still receive (what is sent to them waits: they lag)."""
    lagging = []
    for ws in connections:
        session = ws._session
        write = session.writer
        if write is not None:
            if session.congested:
                lagging.append(ws)
            else:
                write(broadcast[session.flavour])
    return lagging


def when_drained(ws: Connection, callback: Callable[[], Any]) -> None:
    """Call ``callback()`` once nothing waits for ``ws``'s socket (never after it closed)."""
    ws._session.when_drained(callback)


def cut_off(ws: Connection, why: str) -> None:
    """Drop a client that cannot keep up, as the network layer does past ``max_buffer``."""
    logger.warning("connection %s cut off: %s", ws.pk, why)
    ws._session.abort()
