"""An asyncio client for Python programs: bots, simulations, load scripts.

::

    async with Client("ws://localhost:5000/", headers={"Login": login}) as client:
        print(await client.call("join", room="lobby"))    # waits for the reply to it
        await client.send("say", room="lobby", text="hi")  # fire and forget
        async for message in client:                       # everything that is not a reply
            print(message)

When the connection drops, the client reconnects with exponential backoff and jitter
(:class:`Backoff`), runs ``on_connect`` again, and subscribes again to the channels it
joined with :meth:`Client.subscribe`, from where it stopped: on a history channel the
server sends what it missed meanwhile, and the answer (``recovered``) arrives among the
messages, so the program knows whether to reload::

    await client.subscribe("room:1")
    async for message in client:
        if message.get("$subscribe", {}).get("recovered") is False:
            ...  # publications were lost while away: reload the room
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from .codecs import MSGPACK_SUBPROTOCOL
from .errors import HandshakeRejected, SignalError
from .security import WireLogFilter

__all__ = ["Backoff", "Client", "handshake", "open_connection", "raise_for_errors"]

logger = logging.getLogger("lexicons.client")
# websockets logs the handshake (query string, cookies, credential subprotocols) at
# debug level; the server's filter keeps credentials out of the client's logs too.
_wire = logging.getLogger("lexicons.client.wire")
_wire.addFilter(WireLogFilter())

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_decode_msgpack = msgspec.msgpack.decode
_encode_msgpack = msgspec.msgpack.Encoder().encode
#: The encodings a client may ask for.
Encoding = Literal["json", "msgpack"]
_CLOSED = object()  # ends iteration once the client is closed


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait between reconnection attempts: exponential, with full jitter.

    Attempt ``n`` (from 0) waits a random time in ``[0, min(maximum, initial * factor**n)]``.
    The randomness spreads out the clients of a restarted server, which would otherwise
    all come back in the same instant. ``attempts=None`` retries forever::

        Client(url, reconnect=Backoff(initial=0.1, maximum=5, attempts=20))
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    attempts: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("Backoff: need 0 < initial <= maximum")
        if self.factor < 1:
            raise ValueError("Backoff: factor must be at least 1")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError("Backoff: attempts must be positive, or None for no limit")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits before each attempt, in order (endless when ``attempts`` is None)."""
        uniform = (rng or random).uniform
        ceiling = self.initial
        for _ in range(self.attempts) if self.attempts is not None else itertools.count():
            yield uniform(0.0, ceiling)
            ceiling = min(self.maximum, ceiling * self.factor)


def handshake(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    """The URL and extra HTTP headers that carry a client's handshake credentials.

    ``query`` is URL-encoded onto the URL; ``cookies`` become one ``Cookie`` header::

        >>> handshake("ws://h/", query={"Token": "a b"}, cookies={"Session": "s"})
        ('ws://h/?Token=a+b', {'Cookie': 'Session=s'})
    """
    if query:
        url += ("&" if "?" in url else "?") + urlencode(query)
    extra = dict(headers or {})
    if cookies:
        extra["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    return url, extra


def raise_for_errors(message: Any) -> None:
    """Raise the first error of an ``{"Errors": [...]}`` frame as a :class:`SignalError`."""
    if isinstance(message, dict) and "Errors" in message:
        error = message["Errors"][0]
        raise SignalError(error.get("code"), error.get("message", ""))


async def open_connection(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
    subprotocols: Sequence[str] | None = None,
    origin: str | None = None,
    timeout: float = 10.0,
    encoding: Encoding = "json",
    compression: bool = False,
    **options: Any,
) -> ClientConnection:
    """Open one WebSocket with handshake credentials; HTTP refusals raise HandshakeRejected.

    ``encoding="msgpack"`` offers the ``lexicons.msgpack`` subprotocol (the connection's
    ``subprotocol`` says whether the server selected it); ``compression`` offers
    permessage-deflate. ``options`` go to ``websockets.asyncio.client.connect``
    (``ssl``, ``logger``...).
    """
    options.setdefault("logger", _wire)
    url, extra = handshake(url, headers=headers, query=query, cookies=cookies)
    offered = list(subprotocols or ())
    if encoding == "msgpack":
        offered.insert(0, MSGPACK_SUBPROTOCOL)
    elif encoding != "json":
        raise ValueError(f"encoding must be 'json' or 'msgpack', not {encoding!r}")
    try:
        return await connect(
            url,
            additional_headers=extra,
            subprotocols=[Subprotocol(p) for p in offered] if offered else None,
            origin=origin,  # type: ignore[arg-type]
            open_timeout=timeout,
            compression="deflate" if compression else None,
            **options,
        )
    except InvalidStatus as exc:
        response = exc.response
        body = response.body.decode(errors="replace").strip() if response.body else ""
        raise HandshakeRejected(response.status_code, body) from None


OnConnect = Callable[["Client"], Awaitable[None] | None]


class Client:
    """A lexicons client: ``call`` and ``send`` signals, iterate over what arrives.

    Credentials go in ``headers`` (HTTP headers), ``query`` (the URL's query string),
    ``cookies`` or ``subprotocols`` (see :func:`lexicons.headers.subprotocol_credential`).
    ``encoding="msgpack"`` speaks MessagePack when the server agrees (JSON otherwise);
    ``compression=True`` offers permessage-deflate. Messages arrive decoded either way.
    ``reconnect`` is a :class:`Backoff`, or ``None`` to stop at the first drop.
    ``on_connect(client)`` runs after every connection, the first and each reconnection,
    so subscriptions made there are restored after a drop::

        async def rejoin(client: Client) -> None:
            await client.call("join", room="lobby")

        async with Client("ws://localhost:5000/", on_connect=rejoin) as client:
            async for message in client:
                ...

    Calls waiting for a reply when the connection drops raise ``ConnectionError``; they
    are not sent again, since the server may have run them already. ``timeout`` bounds
    the handshake, each call, and a send's wait for a reconnection; ``rng`` is the
    jitter's random source (tests pass a seeded ``random.Random``).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] | None = None,
        reconnect: Backoff | None = Backoff(),  # noqa: B008 - frozen, so safe to share
        on_connect: OnConnect | None = None,
        timeout: float = 10.0,
        rng: random.Random | None = None,
        encoding: Encoding = "json",
        compression: bool = False,
    ) -> None:
        self.url = url
        self._handshake: dict[str, Any] = {
            "headers": headers,
            "query": query,
            "cookies": cookies,
            "subprotocols": subprotocols,
            "encoding": encoding,
            "compression": compression,
        }
        self.reconnect = reconnect
        self.on_connect = on_connect
        #: Default seconds to wait for a connection or a reply.
        self.timeout = timeout
        self._rng = rng
        self._ws: ClientConnection | None = None
        self._open = asyncio.Event()
        self._refs = itertools.count(1)
        self._last_ref = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._finished = False
        self._failure: BaseException | None = None
        #: How many times the connection was re-established after a drop.
        self.reconnections = 0
        #: ``[epoch, offset]`` by channel joined with :meth:`subscribe`: the epoch of its
        #: last answer, the offset of the last publication received from it.
        self.positions: dict[str, list[Any]] = {}
        self._recovering: set[asyncio.Future[None]] = set()
        self._echoed: set[int] = set()

    # --- opening and closing -------------------------------------------------------------

    async def connect(self) -> Client:
        """Open the first connection and run ``on_connect``; raises when either fails.

        Only later drops are retried: a wrong URL or refused credentials fail here at once.
        """
        if self._supervisor is not None:
            raise RuntimeError("this client is already connected")
        ws = await self._open_one()
        first = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.create_task(self._supervise(ws, first))
        try:
            await first  # set once on_connect has run
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Close the connection and stop reconnecting; iteration ends. Safe to call twice."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._finish(None)

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._open.is_set() and not self._finished

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server selected on the current connection."""
        return self._ws.subprotocol if self._ws is not None else None

    # --- sending -------------------------------------------------------------------------

    async def send(self, signal: str, /, **payload: Any) -> None:
        """Send ``{signal: payload}`` without waiting for an answer.

        While reconnecting, waits (up to ``timeout``) for the connection to come back.
        """
        await self._send({signal: payload})

    async def call(self, signal: str, /, timeout: float | None = None, **payload: Any) -> Any:
        """Send ``signal`` with a fresh ``ref`` and return the payload of its reply.

        An error frame raises :class:`~lexicons.errors.SignalError` with its code; no reply
        within ``timeout`` raises ``TimeoutError``. A signal that broadcasts (returns a
        ``Response``) sends no reply: :meth:`send` it and read the broadcast instead.
        """
        return await self._call(signal, payload, timeout, echo=False)

    async def _call(
        self, signal: str, payload: dict[str, Any], timeout: float | None, echo: bool
    ) -> Any:
        """:meth:`call`; with ``echo`` the reply also goes to the messages, in its place."""
        timeout = self.timeout if timeout is None else timeout
        ref = self._last_ref = next(self._refs)
        reply = self._pending[ref] = asyncio.get_running_loop().create_future()
        if echo:
            self._echoed.add(ref)
        try:
            await self._send({signal: payload, "ref": ref})
            message = await asyncio.wait_for(reply, timeout)
        finally:
            self._pending.pop(ref, None)
            self._echoed.discard(ref)
        raise_for_errors(message)
        return message.get(signal)

    # --- channels ------------------------------------------------------------------------

    async def subscribe(
        self, channel: str, since: tuple[str, int] | None = None, timeout: float | None = None
    ) -> Any:
        """Join ``channel`` (``$subscribe``); the answer: ``{"channel", "epoch", "offset",
        "recovered"}``. ``since`` (an epoch and an offset) asks for what followed it.

        Refusals raise :class:`~lexicons.errors.SignalError` (``forbidden``,
        ``unknown_channel``). The client keeps its place in the channel and, after a
        reconnection, subscribes again from there.
        """
        return await self._subscribe(channel, since, timeout, echo=False)

    async def _subscribe(
        self, channel: str, since: tuple[str, int] | None, timeout: float | None, echo: bool
    ) -> Any:
        payload: dict[str, Any] = {"channel": channel}
        if since is not None:
            payload["since"] = {"epoch": since[0], "offset": since[1]}
        answer = await self._call("$subscribe", payload, timeout, echo)
        self.positions[channel] = [answer["epoch"], answer["offset"]]
        return answer

    async def unsubscribe(self, channel: str, timeout: float | None = None) -> Any:
        """Leave ``channel`` (``$unsubscribe``); it is not joined again after a reconnection."""
        self.positions.pop(channel, None)
        return await self.call("$unsubscribe", timeout, channel=channel)

    async def presence(self, channel: str, timeout: float | None = None) -> list[Any]:
        """The members of ``channel``, ``{"pk", "info"}`` each (``$presence``)."""
        return list((await self.call("$presence", timeout, channel=channel))["members"])

    async def _rejoin(self, channel: str) -> None:
        """Subscribe again from the last position; the answer (or the refusal) goes to
        the messages, before what was missed, so the program learns whether anything
        was lost."""
        position = self.positions.get(channel)
        if position is None:
            return
        since = (position[0], position[1]) if position[0] else None
        try:
            await self._subscribe(channel, since, None, echo=True)
        except SignalError:
            self.positions.pop(channel, None)
        except (ConnectionError, TimeoutError) as exc:
            logger.info("subscribing again to %s failed: %s", channel, exc)

    async def _rejoin_all(self) -> None:
        for channel in list(self.positions):
            await self._rejoin(channel)

    # --- receiving -----------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> Any:
        """The next message that is not a reply to :meth:`call`, decoded.

        Waits forever by default. Raises ``ConnectionError`` once the client is closed or
        gave up reconnecting, and ``TimeoutError`` after ``timeout`` seconds.
        """
        message = await asyncio.wait_for(self._inbox.get(), timeout)
        if message is _CLOSED:
            self._inbox.put_nowait(_CLOSED)  # every later receive ends too
            raise self._closed_error()
        return message

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        # Ends quietly after close(); raises why when the client gave up reconnecting.
        while True:
            try:
                yield await self.receive()
            except ConnectionError:
                if self._failure is not None:
                    raise
                return

    # --- the connection's life -----------------------------------------------------------

    async def _open_one(self) -> ClientConnection:
        return await open_connection(self.url, timeout=self.timeout, **self._handshake)

    async def _current(self) -> ClientConnection:
        """The open connection; while reconnecting, wait up to ``timeout`` for the next one."""
        if self._supervisor is None:
            raise RuntimeError("connect first: async with Client(url) as client")
        if not self._open.is_set():
            await asyncio.wait_for(self._open.wait(), self.timeout)
        if self._finished or self._ws is None:
            raise self._closed_error()
        return self._ws

    async def _send(self, message: Any) -> None:
        ws = await self._current()
        try:
            if ws.subprotocol == MSGPACK_SUBPROTOCOL:
                await ws.send(_encode_msgpack(message), text=False)
            else:
                await ws.send(_encode(message), text=True)
        except ConnectionClosed as exc:  # dropped just now; the supervisor reconnects
            raise ConnectionError(f"connection lost: {exc}") from exc

    def _closed_error(self) -> ConnectionError:
        """Why nothing more can be sent or received: closed, or the failure that ended it."""
        if self._failure is None:
            return ConnectionError("the client is closed")
        error = ConnectionError(f"the client stopped: {self._failure}")
        error.__cause__ = self._failure
        return error

    async def _supervise(self, ws: ClientConnection, first: asyncio.Future[None]) -> None:
        """Read each connection until it drops, then reconnect, until closed or out of tries."""
        try:
            while True:
                await self._serve(ws, first)
                if self._closing:
                    break
                if self.reconnect is None:
                    raise ConnectionError(f"connection to {self.url} lost")
                ws = await self._reopen()
                self.reconnections += 1
        except Exception as exc:  # out of attempts, refused, or the first on_connect failed
            if not first.done():
                first.set_exception(exc)
            self._finish(exc)
        else:
            self._finish(None)

    async def _serve(self, ws: ClientConnection, first: asyncio.Future[None]) -> None:
        """One connection: read it in the background while ``on_connect`` runs, until it ends."""
        self._ws = ws
        self._open.set()
        reader = asyncio.create_task(self._read(ws))
        try:
            await self._run_on_connect(first)
            await self._rejoin_all()
            await reader
        finally:
            reader.cancel()
            self._open.clear()
            self._fail_pending(ConnectionError("connection lost before the reply"))

    async def _run_on_connect(self, first: asyncio.Future[None]) -> None:
        try:
            if self.on_connect is not None:
                result = self.on_connect(self)
                if inspect.isawaitable(result):
                    await result
        except Exception:
            if not first.done():  # the first time, connect() raises it
                raise
            # After a reconnection nobody is waiting: keep the connection, say why.
            logger.exception("on_connect failed after a reconnection")
        if not first.done():
            first.set_result(None)

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in ws:
                self._dispatch(data)

    def _dispatch(self, data: str | bytes) -> None:
        try:
            message = _decode(data) if isinstance(data, str) else _decode_msgpack(data)
        except msgspec.DecodeError:
            logger.warning("ignored a message that cannot be decoded: %.80r", data)
            return
        if not isinstance(message, dict):
            self._inbox.put_nowait(message)
            return
        ref = message.get("ref")
        if type(ref) is int and 0 < ref <= self._last_ref:
            reply = self._pending.get(ref)
            if reply is not None and not reply.done():
                reply.set_result(message)
                if ref in self._echoed:
                    self._inbox.put_nowait(message)
            return  # a reply whose call timed out is dropped, not mistaken for news
        offset = message.get("offset")
        if type(offset) is int:
            position = self.positions.get(message.get("channel"))  # type: ignore[arg-type]
            if position is not None:
                position[1] = offset
        elif "$lagged" in message:
            # Publications were dropped while it lagged: recover them from history.
            lagged = message["$lagged"]
            channel = lagged.get("channel") if isinstance(lagged, dict) else None
            if channel in self.positions and self.positions[channel][0]:
                self._recovering.add(asyncio.ensure_future(self._rejoin(channel)))
                self._recovering = {task for task in self._recovering if not task.done()}
        self._inbox.put_nowait(message)

    async def _reopen(self) -> ClientConnection:
        assert self.reconnect is not None
        last: BaseException | None = None
        for attempt, delay in enumerate(self.reconnect.delays(self._rng), 1):
            logger.info("reconnecting to %s in %.2f s (attempt %d)", self.url, delay, attempt)
            await asyncio.sleep(delay)
            try:
                return await self._open_one()
            except HandshakeRejected as exc:
                if exc.status < 500:  # refused credentials do not get better by retrying
                    raise
                last = exc
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                last = exc
        raise ConnectionError(f"gave up reconnecting to {self.url}: {last}") from last

    def _fail_pending(self, exc: BaseException) -> None:
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(exc)

    def _finish(self, failure: BaseException | None) -> None:
        """Closed for good: fail waiting calls, wake waiting senders, end iteration."""
        if self._finished:
            return
        self._finished = True
        self._closing = True
        self._failure = failure
        self._fail_pending(ConnectionError("the client is closed"))
        self._open.set()  # wakes senders waiting for a reconnection; they see _finished
        self._inbox.put_nowait(_CLOSED)
