"""A process's two connections to Redis, kept alive: what the Redis broker stands on.

The *writer* sends, in order and pipelined, every command queued with
:meth:`RedisLink.queue` (or :meth:`RedisLink.request`, which returns the reply). The
*reader* is subscribed to the channels :meth:`RedisLink.want` names and hands every
message to its owner. A heartbeat proves the process alive and notices a Redis that
stopped answering; a lost session is replaced with backoff while connecting fails. What
waits for Redis is bounded in bytes by the owner, which counts each queued command's
size. Commands that may not have reached Redis when a session is lost are failed
(requests), reported to the owner (broadcasts), or, for numbered publications, sent
again in the next session.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigurationError
from .base import BrokerUnavailable
from .scripts import PUBLISH_AT, READ

__all__ = ["Command", "Item", "LinkOwner", "RedisLink", "redacted"]

logger = logging.getLogger("lexicons.broker")

#: Most commands the writer sends in one round trip.
_BATCH = 1024
#: Reconnection backoff: first delay, cap (seconds).
_BACKOFF = (0.05, 5.0)

#: A command for the writer: a command already in Redis's wire format, or arguments.
Command = bytes | tuple[Any, ...]
#: A queued command: the command, the future of its reply (a request), its size in
#: bytes, and whether it is sent again after a reconnection (a numbered publication).
Item = tuple[Command, "asyncio.Future[Any] | None", int, bool]


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _connection_factory(url: str, timeout: float, name: str) -> Any:
    """A function making unconnected redis-py connections to ``url``, named ``name`` in
    Redis's CLIENT LIST; checks the URL now."""
    try:
        from redis.asyncio.connection import ConnectionPool, parse_url
    except ImportError:
        raise ConfigurationError(
            f"broker: {redacted(url)!r} needs the Redis client; install it with "
            "pip install 'lexicons[redis]'"
        ) from None
    try:
        options: dict[str, Any] = dict(parse_url(url))
    except ValueError as exc:
        raise ConfigurationError(f"broker: {redacted(url)!r} is not a Redis URL: {exc}") from None
    options.setdefault("socket_connect_timeout", timeout)
    # Envelopes are bytes and replies are read in RESP2 shape. Reads never time out by
    # themselves: the reader waits for messages, and the heartbeat watches the writer.
    options.update(protocol=2, decode_responses=False, socket_timeout=None, client_name=name)
    return ConnectionPool(**options).make_connection


class LinkOwner(Protocol):
    """What a :class:`RedisLink` tells the broker that owns it."""

    def message(self, data: bytes) -> None:
        """A pub/sub message arrived."""

    def connected(self, again: bool) -> None:
        """A session started (``again``: after one was lost)."""

    def beat(self) -> list[Item]:
        """Commands for this heartbeat (sent at the start of the next round trip)."""

    def first(self) -> list[Item]:
        """Commands to send at the start of each round trip (counts that changed)."""

    def unsent(self, command: Command) -> None:
        """A broadcast that may not have reached Redis (its session was lost)."""

    def farewell(self) -> list[Item]:
        """Commands to send at a clean stop."""


class _Session:
    """The two connections of one period during which Redis answered."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader = reader
        self.writer = writer
        #: Redis channels the reader is subscribed to (or has asked for).
        self.upstream: set[str] = set()
        #: Those Redis confirmed.
        self.confirmed: set[str] = set()
        self.writing: asyncio.Task[None] | None = None
        #: Why the heartbeat gave up on this session, if it did.
        self.failure: BaseException | None = None

    async def close(self) -> None:
        for conn in (self.reader, self.writer):
            try:
                await conn.disconnect()
            except Exception:  # pragma: no cover - closing a broken socket
                pass


class RedisLink:
    """The reader and the writer of one process, and the queue in front of the writer."""

    def __init__(
        self, url: str, name: str, owner: LinkOwner, *, timeout: float, heartbeat: float
    ) -> None:
        self.url = url
        self.owner = owner
        self.timeout = timeout
        self.heartbeat = heartbeat
        self._connect = _connection_factory(url, timeout, name)
        from redis.exceptions import NoScriptError, RedisError, ResponseError

        #: What a lost or broken connection raises; what Redis answers to a bad command.
        self.failures: tuple[type[BaseException], ...] = (RedisError, OSError)
        self.unavailable = (BrokerUnavailable, RedisError, OSError)
        self._refused: type[BaseException] = ResponseError
        self._no_script: type[BaseException] = NoScriptError
        self.pending: deque[Item] = deque()
        #: Bytes waiting for Redis (sent and unanswered included).
        self.queued = 0
        #: Redis channels the reader should be subscribed to.
        self._wanted: set[str] = set()
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._resubscribe = False
        self._beat_due = False
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: _Session | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._last_heard = 0.0
        self._waiting_since = 0.0
        self.online = False
        self._sessions = 0
        self._closing = False

    async def start(self) -> None:
        """Connect (raises :class:`ConfigurationError` if Redis cannot be used)."""
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            session = await self._open()
        except self.failures as exc:
            raise ConfigurationError(
                f"broker: cannot use Redis at {redacted(self.url)!r}: {exc}"
            ) from None
        self.online = True
        self._task = loop.create_task(self._run(session), name="lexicons redis broker")
        self._beat = loop.call_later(self.heartbeat, self._on_beat)

    async def stop(self) -> None:
        """Send what is queued and the farewell (waiting at most ``timeout`` while Redis
        answers, not at all when it does not), then disconnect."""
        self._closing = True
        if self._beat is not None:
            self._beat.cancel()
        task, self._task = self._task, None
        if task is None:
            return
        self.wake()
        done: Any = ()
        if self.online:
            done, _ = await asyncio.wait([task], timeout=self.timeout)
        if not done:
            task.cancel()
            await asyncio.wait([task])
        self.online = False
        if self.pending:
            logger.warning(
                "stopped with %d commands not sent to Redis (it was unreachable)",
                len(self.pending),
            )

    # what the owner asks

    def queue(self, item: Item) -> None:
        """Queue one command for the writer (call :meth:`wake` once done queueing)."""
        self.pending.append(item)
        self.queued += item[2]

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def request(self, *command: Any) -> asyncio.Future[Any]:
        """Send ``command``; its reply. Raises :class:`BrokerUnavailable` when Redis is
        unreachable now, and the future does when the session is lost before the reply."""
        if not self.online:
            raise BrokerUnavailable(f"Redis at {redacted(self.url)} is unreachable")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue((command, future, 0, False))
        self.wake()
        return future

    def want(self, keys: Iterable[str]) -> None:
        """The reader should be subscribed to exactly these Redis channels."""
        self._wanted = set(keys)
        self._resubscribe = True
        self.wake()

    async def confirmed(self, key: str) -> None:
        """Wait, at most ``timeout``, until Redis confirmed the subscription to ``key``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            session = self._session
            if session is not None and key in session.confirmed and self.online:
                return
            if key not in self._wanted:
                raise BrokerUnavailable(f"not subscribed to {key!r}")
            waiter: asyncio.Future[None] = loop.create_future()
            self._confirmations.setdefault(key, []).append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise BrokerUnavailable(
                    f"Redis at {redacted(self.url)} did not confirm a subscription "
                    f"within {self.timeout:g} s"
                ) from None

    # the heartbeat

    def _on_beat(self) -> None:
        """Every ``heartbeat``: renew what the owner renews, give up on a silent Redis."""
        loop = asyncio.get_running_loop()
        self._beat = loop.call_later(self.heartbeat, self._on_beat)
        session = self._session
        if session is None or session.writing is None:
            return
        now = loop.time()
        if self._waiting_since and now - self._waiting_since > self.timeout:
            session.failure = ConnectionError(f"Redis did not answer within {self.timeout:g} s")
        elif now - self._last_heard > 3 * self.heartbeat:
            session.failure = ConnectionError("Redis stopped answering the subscriber connection")
        if session.failure is not None:
            session.writing.cancel()
            return
        self._beat_due = True
        for item in self.owner.beat():
            self.queue(item)
        self.wake()

    # sessions

    async def _open(self) -> _Session:
        reader, writer = self._connect(), self._connect()
        try:
            await asyncio.wait_for(reader.connect(), self.timeout)
            await asyncio.wait_for(writer.connect(), self.timeout)
            await asyncio.wait_for(self._load_scripts(writer), self.timeout)
        except BaseException:
            await _Session(reader, writer).close()
            raise
        return _Session(reader, writer)

    async def _load_scripts(self, conn: Any) -> None:
        """Load the scripts into Redis (a new connection, or Redis forgot them)."""
        commands = [(b"SCRIPT", b"LOAD", script.source) for script in (PUBLISH_AT, READ)]
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        for _ in commands:
            await conn.read_response()

    async def _run(self, session: _Session | None) -> None:
        """Serve sessions one after the other until :meth:`stop`, reconnecting between."""
        delay = _BACKOFF[0]
        while True:
            if session is not None:
                try:
                    await self._serve(session)
                except Exception as exc:
                    if not isinstance(exc, self.failures):
                        logger.exception("the Redis broker failed; reconnecting")
                    self._offline(exc)
                finally:
                    self._session = None
                    await session.close()
                # Redis answered: a connection that broke is retried quickly at first;
                # the backoff grows only while connecting fails.
                delay = _BACKOFF[0]
            if self._closing:
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _BACKOFF[1])
            try:
                session = await self._open()
            except self.failures as exc:
                logger.debug("Redis at %s still unreachable: %s", redacted(self.url), exc)
                session = None

    async def _serve(self, session: _Session) -> None:
        """Use one session until a connection fails (raises) or the link closes."""
        self._sessions += 1
        self._session = session
        self.online = True
        self._resubscribe = True
        self._beat_due = True
        self._last_heard = asyncio.get_running_loop().time()
        self._waiting_since = 0.0
        self.owner.connected(again=self._sessions > 1)
        session.writing = asyncio.create_task(self._write(session))
        tasks = {asyncio.create_task(self._read(session)), session.writing}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        for task in done:
            if task.cancelled():  # the heartbeat gave up on Redis
                raise session.failure or ConnectionError("the writer was cancelled")
            error = task.exception()
            if error is not None:
                raise error

    def _offline(self, exc: BaseException) -> None:
        """Log the loss once; fail what was waiting, keep numbered publications queued."""
        was_online, self.online = self.online, False
        if was_online and not self._closing:
            logger.warning(
                "lost the connection to Redis at %s (%s); serving this process's "
                "subscribers only until it is back",
                redacted(self.url),
                str(exc) or type(exc).__name__,
            )
        items = list(self.pending)
        self.pending.clear()
        self._fail(items, exc)

    def _fail(self, items: list[Item], exc: object) -> None:
        """Commands that may not have reached Redis: fail requests, report broadcasts,
        and queue numbered publications again (the script recognises one sent twice)."""
        again = []
        for item in items:
            command, future, size, resend = item
            if resend:
                again.append(item)
                continue
            self.queued -= size
            if future is not None:
                if not future.done():
                    future.set_exception(BrokerUnavailable(f"lost Redis: {exc}"))
            elif type(command) is bytes:
                self.owner.unsent(command)
        self.pending.extendleft(reversed(again))

    # the two connections

    async def _read(self, session: _Session) -> None:
        """Hand every message from Redis to the owner; raise when Redis goes."""
        received = self.owner.message
        conn = session.reader
        loop = asyncio.get_running_loop()
        while True:
            reply = await conn.read_response()
            kind = reply[0]
            if kind == b"message":
                received(reply[2])
                continue
            self._last_heard = loop.time()  # pong, (un)subscribe confirmations
            if kind == b"subscribe":
                key = reply[1].decode()
                session.confirmed.add(key)
                for waiter in self._confirmations.pop(key, ()):
                    if not waiter.done():
                        waiter.set_result(None)
            elif kind == b"unsubscribe":
                session.confirmed.discard(reply[1].decode())

    async def _write(self, session: _Session) -> None:
        """The one writer: subscriptions, the owner's first commands, the queue, in order."""
        pending = self.pending
        wake = self._wake
        assert wake is not None
        while True:
            first = self.owner.first()
            if not (pending or first or self._resubscribe or self._beat_due):
                if self._closing:
                    await self._round_trip(session.writer, self.owner.farewell())
                    return
                wake.clear()
                await wake.wait()
                continue
            if self._resubscribe:
                self._resubscribe = False
                await self._subscriptions(session)
            if self._beat_due:
                self._beat_due = False
                reader = session.reader
                await reader.send_packed_command(reader.pack_command(b"PING"), check_health=False)
            batch = first
            while pending and len(batch) < _BATCH:
                batch.append(pending.popleft())
            if batch:
                await self._round_trip(session.writer, batch)

    async def _round_trip(self, conn: Any, batch: list[Item]) -> None:
        """Send ``batch`` pipelined and read its replies; the heartbeat bounds the wait."""
        chunks: list[bytes] = []
        for command, _, _, _ in batch:
            if type(command) is bytes:
                chunks.append(command)
            else:
                chunks.extend(conn.pack_command(*command))
        self._waiting_since = asyncio.get_running_loop().time()
        index = 0  # replies read so far: the commands before it surely reached Redis
        unscripted: list[Item] = []
        try:
            await conn.send_packed_command(chunks, check_health=False)
            read = conn.read_response
            for index in range(len(batch)):
                command, future, size, _ = batch[index]
                try:
                    reply = await read()
                except self._no_script:  # Redis lost its scripts (SCRIPT FLUSH): again
                    unscripted.append(batch[index])
                    continue
                except self._refused as exc:  # this command failed; the stream is fine
                    self.queued -= size
                    if future is None:
                        name = command[:20] if type(command) is bytes else command[0]
                        logger.error("Redis refused %r: %s", name, exc)
                    elif not future.done():
                        future.set_exception(exc)
                    continue
                self.queued -= size
                if future is not None and not future.done():
                    future.set_result(reply)
        except BaseException as exc:
            self._fail(unscripted + batch[index:], exc)
            raise
        finally:
            self._waiting_since = 0.0
        if unscripted:
            await self._load_scripts(conn)
            self.pending.extendleft(reversed(unscripted))

    async def _subscriptions(self, session: _Session) -> None:
        """Bring the reader's Redis subscriptions in line with what the owner wants."""
        wanted = set(self._wanted)
        add = wanted - session.upstream
        drop = session.upstream - wanted
        commands: list[tuple[Any, ...]] = []
        if add:
            commands.append((b"SUBSCRIBE", *sorted(add)))
        if drop:
            commands.append((b"UNSUBSCRIBE", *sorted(drop)))
        if commands:
            session.upstream = wanted
            conn = session.reader
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
