"""The Redis broker: channels shared by every process and host connected to one Redis.

::

    app = Server(broker="redis://127.0.0.1:6379/0")   # or LEXICONS_BROKER, or --broker

Each process holds two connections. The *writer* sends, in order, everything this
process tells Redis: broadcasts (``PUBLISH``), its subscriber counts and a heartbeat. The
*reader* is subscribed to exactly the channels that have local subscribers here, and
hands what arrives to the local subscribers as the bytes the publisher encoded.

A broadcast is delivered to the publisher's own subscribers at once, then queued for the
writer; the copy Redis sends back to the publisher's process is recognised by the
process id in its envelope and skipped, so nobody receives a broadcast twice. When Redis
is unreachable the server keeps serving: broadcasts reach local subscribers only (they
are counted in :attr:`RedisBroker.undelivered`), and the broker reconnects with backoff
and subscribes again to every channel that has local subscribers.

Redis channel and key names start with the namespace (``broker_namespace``, default
``lexicons``), because pub/sub channels are shared by every database of a Redis server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import struct
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from ..errors import ConfigurationError, LexiconsError
from .base import Broker

__all__ = ["RedisBroker", "pack", "redacted", "unpack"]

logger = logging.getLogger("lexicons.broker")

#: Envelope header: format version, publisher's process id, its sequence number, and the
#: length of the channel list (JSON) that follows; the payload comes after, untouched.
_HEADER = struct.Struct("!B8sQI")
#: Where the origin sits in an envelope: checked before anything else is decoded.
_ORIGIN = slice(1, 9)
_VERSION = 1
_encode_names = msgspec.json.Encoder().encode
_decode_names = msgspec.json.Decoder(list[str]).decode

#: Most commands the writer sends in one round trip.
_BATCH = 1024
#: Reconnection backoff: first delay, cap (seconds).
_BACKOFF = (0.05, 5.0)

#: A command for the writer: a PUBLISH already in Redis's wire format, or arguments.
Command = bytes | tuple[Any, ...]


def pack(origin: bytes, seq: int, channels: Sequence[str], data: bytes) -> bytes:
    """Wrap an encoded broadcast for Redis: ``header + channel list + payload``."""
    names = _encode_names(channels)
    return b"".join((_HEADER.pack(_VERSION, origin, seq, len(names)), names, data))


def unpack(message: bytes) -> tuple[bytes, int, list[str], bytes]:
    """``(origin, seq, channels, payload)`` of an envelope; ValueError if it is not one."""
    try:
        version, origin, seq, size = _HEADER.unpack_from(message)
        if version != _VERSION:
            raise ValueError(f"envelope version {version}")
        end = _HEADER.size + size
        channels = _decode_names(message[_HEADER.size : end])
    except (struct.error, msgspec.DecodeError) as exc:
        raise ValueError(str(exc)) from None
    return origin, seq, channels, message[end:]


def _publish_command(key: bytes, envelope: bytes) -> bytes:
    """``PUBLISH key envelope`` in RESP, built here: the one command sent per broadcast."""
    head = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n$%d\r\n" % (len(key), key, len(envelope))
    return b"".join((head, envelope, b"\r\n"))


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


class _Session:
    """The two connections of one period during which Redis answered."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader = reader
        self.writer = writer
        #: Redis channels the reader is subscribed to (or has asked for).
        self.upstream: set[str] = set()
        self.writing: asyncio.Task[None] | None = None
        #: Why the heartbeat gave up on this session, if it did.
        self.failure: BaseException | None = None

    async def close(self) -> None:
        for conn in (self.reader, self.writer):
            try:
                await conn.disconnect()
            except Exception:  # pragma: no cover - closing a broken socket
                pass


class RedisBroker(Broker):
    """Shares channels through Redis pub/sub; see the module docstring.

    ``timeout`` bounds connecting and waiting for Redis's replies; ``heartbeat`` is how
    often the process proves it is alive (its subscriber counts are ignored three
    heartbeats after it dies) and checks that Redis still answers; ``max_pending``
    bounds the broadcasts waiting for the writer, beyond which they stay local.

    >>> broker = RedisBroker("redis://127.0.0.1:6379/0", namespace="chat")
    """

    def __init__(
        self,
        url: str,
        namespace: str = "lexicons",
        *,
        timeout: float = 5.0,
        heartbeat: float = 5.0,
        max_pending: int = 100_000,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.max_pending = max_pending
        #: This process's id in envelopes and in the subscriber-count hashes.
        self.origin = os.urandom(8)
        #: The name of this process's connections in Redis (``CLIENT LIST``).
        self.client_name = f"lexicons:{namespace}:{self.origin.hex()}"
        self._connect = _connection_factory(url, timeout, self.client_name)
        from redis.exceptions import RedisError, ResponseError

        #: What a lost or broken connection raises; what Redis answers to a bad command.
        self._failures: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._refused: type[BaseException] = ResponseError
        self._pid = self.origin.hex().encode()
        self._prefix = f"{namespace}:"
        self._seq = 0
        #: Channels with local subscribers, and their local counts.
        self._wanted: set[str] = set()
        self._counts: dict[str, int] = {}
        self._dirty_counts: set[str] = set()
        self._written_counts: set[str] = set()
        self._resubscribe = False
        self._beat_due = False
        self._pending: deque[tuple[Command, asyncio.Future[Any] | None]] = deque()
        #: Redis channel names by channel, encoded once.
        self._keys: dict[str, bytes] = {}
        self._last_seq: dict[bytes, int] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: _Session | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._last_heard = 0.0
        self._waiting_since = 0.0
        self._online = False
        self._sessions = 0
        self._closing = False
        self._warned_undelivered = False
        self._warned_foreign = False
        self._outage_undelivered = 0
        #: Broadcasts sent to Redis, and received from other processes.
        self.published = 0
        self.received = 0
        #: Broadcasts that reached this process's subscribers only (Redis was unreachable).
        self.undelivered = 0

    @property
    def online(self) -> bool:
        """Whether Redis answers now (broadcasts reach other processes)."""
        return self._online

    # the Broker interface

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            session = await self._open()
        except self._failures as exc:
            raise ConfigurationError(
                f"broker: cannot use Redis at {redacted(self.url)!r}: {exc}"
            ) from None
        self._online = True
        self._task = loop.create_task(self._run(session), name="lexicons redis broker")
        self._beat = loop.call_later(self.heartbeat, self._on_beat)

    async def stop(self) -> None:
        """Send what is queued, withdraw this process's counts, then disconnect."""
        self._closing = True
        if self._beat is not None:
            self._beat.cancel()
        task, self._task = self._task, None
        if task is None:
            return
        self._wake_writer()
        done: Any = ()
        if self._online:  # flush what is queued; Redis is not waited for when it is down
            done, _ = await asyncio.wait([task], timeout=self.timeout)
        if not done:
            task.cancel()
            await asyncio.wait([task])
        self._online = False

    def publish(self, channels: Sequence[str], data: bytes, key: str | None = None) -> None:
        self.target.deliver(channels, data, key)
        if not self._online or len(self._pending) >= self.max_pending:
            self._not_sent(channels)
            return
        self._seq += 1
        envelope = pack(self.origin, self._seq, channels, data)
        keys = self._keys
        for name in channels:
            redis_key = keys.get(name)
            if redis_key is None:
                if len(keys) > 10_000:  # run-time channels come and go
                    keys.clear()
                redis_key = keys[name] = (self._prefix + name).encode()
            self._pending.append((_publish_command(redis_key, envelope), None))
        self.published += 1
        self._wake_writer()

    def subscribe(self, channel: str) -> None:
        self._wanted.add(channel)
        self._resubscribe = True
        self._wake_writer()

    def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._resubscribe = True
        self._wake_writer()

    def recount(self, channel: str, local: int) -> None:
        self._counts[channel] = local
        self._dirty_counts.add(channel)
        self._wake_writer()

    async def count(self, channel: str, local: int) -> int:
        """``local`` plus the counts other live processes recorded in Redis."""
        key = self._count_key(channel)
        entries = await self._request(b"HGETALL", key)
        others = [
            (entries[i], int(entries[i + 1]))
            for i in range(0, len(entries), 2)
            if entries[i] != self._pid
        ]
        if not others:
            return local
        # A process that died without withdrawing its counts stops renewing its key.
        alive = await asyncio.gather(
            *(self._request(b"EXISTS", self._process_key(pid)) for pid, _ in others)
        )
        total = local
        dead = []
        for (pid, number), live in zip(others, alive, strict=True):
            if live:
                total += number
            else:
                dead.append(pid)
        if dead:
            self._pending.append(((b"HDEL", key, *dead), None))
            self._wake_writer()
        return total

    # keys

    def _count_key(self, channel: str) -> str:
        return f"{self._prefix}count:{channel}"

    def _process_key(self, pid: bytes) -> str:
        return f"{self._prefix}process:{pid.decode()}"

    # queueing (never blocks: the writer task does the I/O)

    def _wake_writer(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _request(self, *command: Any) -> asyncio.Future[Any]:
        if not self._online:
            raise LexiconsError(
                f"broker: Redis at {redacted(self.url)} is unreachable; "
                "cluster-wide counts are unknown until it is back"
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        self._wake_writer()
        return future

    def _not_sent(self, channels: Sequence[str]) -> None:
        self.undelivered += 1
        self._outage_undelivered += 1
        if not self._warned_undelivered:
            self._warned_undelivered = True
            why = "Redis is unreachable" if not self._online else "too many are waiting"
            logger.warning(
                "broadcast to %s was delivered to this process's subscribers only: %s "
                "(later ones are counted in broker.undelivered)",
                list(channels),
                why,
            )

    def _on_beat(self) -> None:
        """Every ``heartbeat``: renew this process's key, and give up on a silent Redis."""
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
        else:
            self._beat_due = True
            self._wake_writer()

    # connecting

    async def _open(self) -> _Session:
        reader, writer = self._connect(), self._connect()
        try:
            await asyncio.wait_for(reader.connect(), self.timeout)
            await asyncio.wait_for(writer.connect(), self.timeout)
            await writer.send_packed_command(writer.pack_command(b"PING"), check_health=False)
            await asyncio.wait_for(writer.read_response(), self.timeout)
        except BaseException:
            await _Session(reader, writer).close()
            raise
        return _Session(reader, writer)

    async def _run(self, session: _Session | None) -> None:
        """Serve sessions one after the other until :meth:`stop`, reconnecting between."""
        loop = asyncio.get_running_loop()
        delay = _BACKOFF[0]
        while True:
            if session is not None:
                started = loop.time()
                try:
                    await self._serve(session)
                except Exception as exc:
                    if not isinstance(exc, self._failures):
                        logger.exception("the Redis broker failed; reconnecting")
                    self._offline(exc)
                finally:
                    self._session = None
                    await session.close()
                if loop.time() - started > _BACKOFF[1]:
                    delay = _BACKOFF[0]  # it worked for a while: retry quickly at first
            if self._closing:
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _BACKOFF[1])
            try:
                session = await self._open()
            except self._failures as exc:
                logger.debug("Redis at %s still unreachable: %s", redacted(self.url), exc)
                session = None

    async def _serve(self, session: _Session) -> None:
        """Use one session until a connection fails (raises) or the broker closes."""
        self._sessions += 1
        self._session = session
        self._online = True
        self._resubscribe = True
        self._beat_due = True
        self._dirty_counts.update(self._counts)
        self._last_heard = asyncio.get_running_loop().time()
        self._waiting_since = 0.0
        if self._sessions > 1:
            logger.warning(
                "reconnected to Redis at %s; subscribed again to %d channels; %d broadcasts "
                "made during the outage were delivered locally only",
                redacted(self.url),
                len(self._wanted),
                self._outage_undelivered,
            )
        self._outage_undelivered = 0
        self._warned_undelivered = False
        session.writing = asyncio.create_task(self._write(session))
        tasks = {asyncio.create_task(self._read(session.reader)), session.writing}
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
        """Log the loss once; fail what was waiting for the writer."""
        was_online, self._online = self._online, False
        if was_online and not self._closing:
            logger.warning(
                "lost the connection to Redis at %s (%s); serving this process's "
                "subscribers only until it is back",
                redacted(self.url),
                str(exc) or type(exc).__name__,
            )
        failed = [self._pending.popleft() for _ in range(len(self._pending))]
        self._fail(failed, exc)

    def _fail(self, items: list[tuple[Command, asyncio.Future[Any] | None]], exc: object) -> None:
        """Commands that may not have reached Redis: fail requests, count broadcasts."""
        for command, future in items:
            if future is not None:
                if not future.done():
                    future.set_exception(LexiconsError(f"broker: lost Redis: {exc}"))
            elif type(command) is bytes:
                self.undelivered += 1
                self._outage_undelivered += 1

    # the two connections

    async def _read(self, conn: Any) -> None:
        """Hand every message from Redis to the local subscribers; raise when Redis goes."""
        received = self._received
        loop = asyncio.get_running_loop()
        while True:
            reply = await conn.read_response()
            if reply[0] == b"message":
                received(reply[2])
            else:  # pong, (un)subscribe confirmations
                self._last_heard = loop.time()

    def _received(self, message: bytes) -> None:
        if message[_ORIGIN] == self.origin:
            return  # our own broadcast, delivered locally when it was published
        try:
            origin, seq, channels, payload = unpack(message)
        except ValueError as exc:
            if not self._warned_foreign:
                self._warned_foreign = True
                logger.warning("ignored a message in namespace %r: %s", self.namespace, exc)
            return
        # A broadcast to several channels arrives once per channel this process is
        # subscribed to, in the publisher's order: deliver the first copy only.
        if seq <= self._last_seq.get(origin, 0):
            return
        self._last_seq[origin] = seq
        self.received += 1
        try:
            self.target.deliver(channels, payload, None)
        except Exception:
            logger.exception("delivering a broadcast from Redis failed")

    async def _write(self, session: _Session) -> None:
        """The one writer: subscriptions, counts, heartbeat and broadcasts, in order."""
        pending = self._pending
        wake = self._wake
        assert wake is not None
        while True:
            if not (pending or self._resubscribe or self._dirty_counts or self._beat_due):
                if self._closing:
                    await self._farewell(session.writer)
                    return
                wake.clear()
                await wake.wait()
                continue
            if self._resubscribe:
                self._resubscribe = False
                await self._subscriptions(session)
            batch: list[tuple[Command, asyncio.Future[Any] | None]] = []
            if self._beat_due:
                self._beat_due = False
                reader = session.reader
                await reader.send_packed_command(reader.pack_command(b"PING"), check_health=False)
                ttl = max(1, round(3 * self.heartbeat))
                batch.append(((b"SET", self._process_key(self._pid), b"1", b"EX", ttl), None))
            for channel in self._dirty_counts:
                batch.append((self._count_command(channel), None))
            self._dirty_counts.clear()
            while pending and len(batch) < _BATCH:
                batch.append(pending.popleft())
            await self._round_trip(session.writer, batch)

    def _count_command(self, channel: str) -> tuple[Any, ...]:
        number = self._counts.get(channel, 0)
        key = self._count_key(channel)
        if number:
            self._written_counts.add(channel)
            return (b"HSET", key, self._pid, number)
        self._counts.pop(channel, None)
        self._written_counts.discard(channel)
        return (b"HDEL", key, self._pid)

    async def _round_trip(
        self, conn: Any, batch: list[tuple[Command, asyncio.Future[Any] | None]]
    ) -> None:
        """Send ``batch`` pipelined and read its replies; the heartbeat bounds the wait."""
        chunks: list[bytes] = []
        for command, _ in batch:
            if type(command) is bytes:
                chunks.append(command)
            else:
                chunks.extend(conn.pack_command(*command))
        self._waiting_since = asyncio.get_running_loop().time()
        index = 0  # replies read so far: the commands before it surely reached Redis
        try:
            await conn.send_packed_command(chunks, check_health=False)
            read = conn.read_response
            for index in range(len(batch)):
                command, future = batch[index]
                try:
                    reply = await read()
                except self._refused as exc:  # this command failed; the stream is fine
                    if future is None:
                        name = command[:20] if type(command) is bytes else command[0]
                        logger.error("Redis refused %r: %s", name, exc)
                    elif not future.done():
                        future.set_exception(exc)
                    continue
                if future is not None and not future.done():
                    future.set_result(reply)
        except BaseException as exc:
            self._fail(batch[index:], exc)
            raise
        finally:
            self._waiting_since = 0.0

    async def _subscriptions(self, session: _Session) -> None:
        """Bring the reader's Redis subscriptions in line with the local subscribers."""
        prefix = self._prefix
        wanted = {prefix + name for name in self._wanted}
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

    async def _farewell(self, conn: Any) -> None:
        """At a clean stop, remove this process's counts and liveness key from Redis."""
        batch: list[tuple[Command, asyncio.Future[Any] | None]] = [
            ((b"HDEL", self._count_key(channel), self._pid), None)
            for channel in self._written_counts
        ]
        batch.append(((b"DEL", self._process_key(self._pid)), None))
        await self._round_trip(conn, batch)
