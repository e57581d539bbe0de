"""The Redis broker: channels shared by every process and host connected to one Redis.

::

    app = Server(broker="redis://127.0.0.1:6379/0")   # or LEXICONS_BROKER, or --broker

Each process holds two connections. The *writer* sends, in order, everything this
process tells Redis: broadcasts, its subscriber counts, presence and a heartbeat. The
*reader* is subscribed to exactly the channels that have local subscribers here, and
hands what arrives to the local subscribers as the bytes the publisher encoded.

**Channels without history.** A broadcast is delivered to the publisher's own
subscribers at once, then queued for the writer; the copy Redis sends back to the
publisher's process is recognised by the process id in its envelope and skipped. Each
publisher numbers its broadcasts per channel, so a process that missed some (its
connection dropped) counts them in :attr:`RedisBroker.lost` and logs it. When Redis is
unreachable, broadcasts reach local subscribers only (counted in ``undelivered``).

**History channels.** A Lua script numbers each publication, appends it to the channel's
stream and publishes it, atomically; every process, the publisher's too, delivers it from
pub/sub in offset order (:mod:`~lexicons.brokers.lines`). A process that sees a gap, or
whose connection comes back, fetches what it missed from the stream before going on;
what the stream no longer holds is counted in ``lost`` and its subscribers get
``$lagged``. A publication waits for Redis while it is unreachable, and is sent once
(resent publications are recognised by the script).

**Presence** is a hash per channel in Redis; the members of a process that died are
removed, and announced as leaving, within 4 heartbeats.

Everything waiting for Redis is bounded in bytes (``max_queue``): past it a broadcast is
not sent, and that is counted and logged. Redis key names start with the namespace
(``broker_namespace``, default ``lexicons``), because pub/sub channels are shared by
every database of a Redis server; :mod:`~lexicons.brokers.scripts` lists them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigurationError
from . import scripts
from .base import Broker, BrokerUnavailable
from .envelope import KIND, NUMBERED, ORIGIN, PLAIN, pack, unpack
from .lines import Line, Publication
from .scripts import PUBLISH_AT, READ
from .scripts import milliseconds as _ms

if TYPE_CHECKING:
    from ..history import History

__all__ = ["RedisBroker", "redacted"]

logger = logging.getLogger("lexicons.broker")

#: Most commands the writer sends in one round trip.
_BATCH = 1024
#: Reconnection backoff: first delay, cap (seconds).
_BACKOFF = (0.05, 5.0)
#: Publishers remembered per channel, to count what a process missed of each.
_PUBLISHERS = 64
#: Bytes a queued command costs besides its payload (its envelope and our bookkeeping).
_OVERHEAD = 256

#: A command for the writer: a PUBLISH already in Redis's wire format, or arguments.
Command = bytes | tuple[Any, ...]
#: A queued command: the command, the future of its reply (a request), its size in
#: bytes, and whether it is a numbered publication (sent again after a reconnection).
Item = tuple[Command, "asyncio.Future[Any] | None", int, bool]


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


class RedisBroker(Broker):
    """Shares channels, history and presence through Redis; see the module docstring.

    ``timeout`` bounds connecting and waiting for Redis's replies; ``heartbeat`` is how
    often the process proves it is alive (its subscriber counts and presence members
    are ignored three heartbeats after it dies) and checks that Redis still answers;
    ``max_queue`` bounds, in bytes, what waits for Redis.

    >>> broker = RedisBroker("redis://127.0.0.1:6379/0", namespace="chat")
    """

    shared = True

    def __init__(
        self,
        url: str,
        namespace: str = "lexicons",
        *,
        timeout: float = 5.0,
        heartbeat: float = 5.0,
        max_queue: int = 64 * 2**20,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.max_queue = max_queue
        #: This process's id in envelopes and in the subscriber-count hashes.
        self.origin = os.urandom(8)
        #: The name of this process's connections in Redis (``CLIENT LIST``).
        self.client_name = f"lexicons:{namespace}:{self.origin.hex()}"
        self._connect = _connection_factory(url, timeout, self.client_name)
        from redis.exceptions import NoScriptError, RedisError, ResponseError

        #: What a lost or broken connection raises; what Redis answers to a bad command.
        self._failures: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._refused: type[BaseException] = ResponseError
        self._no_script: type[BaseException] = NoScriptError
        self._unavailable = (BrokerUnavailable, RedisError, OSError)
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
        self._pending: deque[Item] = deque()
        self._queued = 0
        #: Redis channel names by channel, encoded once, and this process's sequence
        #: numbers of its broadcasts per channel.
        self._keys: dict[str, bytes] = {}
        self._channel_seqs: dict[str, int] = {}
        #: The last sequence number received per origin (a broadcast to several channels
        #: arrives once per channel), and per channel and origin (to count what was missed).
        self._last_seq: dict[bytes, int] = {}
        self._heard: dict[str, dict[bytes, int]] = {}
        #: The history channels this process follows, and their fills under way.
        self._lines: dict[str, Line] = {}
        self._histories: dict[str, History] = {}
        self._fills: dict[str, asyncio.Task[None]] = {}
        #: Presence members of this process, per channel.
        self._present: dict[str, int] = {}
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: _Session | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._last_heard = 0.0
        self._waiting_since = 0.0
        self._online = False
        self._sessions = 0
        self._closing = False
        self._warned: set[str] = set()
        self._outage_undelivered = 0
        #: Broadcasts sent to Redis, and received from other processes.
        self.published = 0
        self.received = 0
        #: Broadcasts that reached this process's subscribers only (Redis was unreachable,
        #: or ``max_queue`` bytes were already waiting).
        self.undelivered = 0
        #: Publications to history channels not sent: ``max_queue`` bytes were waiting.
        self.dropped = 0
        #: Broadcasts other processes made that this process did not receive: on channels
        #: without history, and on history channels beyond what history still held.
        self.lost = 0
        #: Publications of history channels fetched back from history after a gap.
        self.recovered = 0

    @property
    def online(self) -> bool:
        """Whether Redis answers now (broadcasts reach other processes)."""
        return self._online

    @property
    def queued(self) -> int:
        """Bytes waiting for Redis (sent and unanswered included)."""
        return self._queued

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
        for work in list(self._tasks):
            work.cancel()
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
        if self._pending:
            logger.warning(
                "stopped with %d commands not sent to Redis (it was unreachable)",
                len(self._pending),
            )

    def publish(self, channels: Sequence[str], data: bytes, key: str | None = None) -> None:
        self.target.deliver(channels, data, key)
        size = (len(data) + _OVERHEAD) * len(channels)
        if not self._online or self._queued + size > self.max_queue:
            self._not_sent(channels)
            return
        self._seq += 1
        seqs = self._channel_seqs
        numbers = []
        for name in channels:
            numbers.append(seqs.get(name, 0) + 1)
            seqs[name] = numbers[-1]
        envelope = pack(self.origin, self._seq, channels, numbers, key, data)
        for name in channels:
            self._queue((_publish_command(self._key(name), envelope), None, len(envelope), False))
        self.published += 1
        self._wake_writer()

    def publish_at(self, channel: str, data: bytes, key: str | None, history: History) -> None:
        size = len(data) + _OVERHEAD
        if self._queued + size > self.max_queue:
            self.dropped += 1
            self._warn(
                "dropped",
                "a publication to history channel %r was dropped: %d bytes already wait "
                "for Redis (later ones are counted in broker.dropped)",
                channel,
                self._queued,
            )
            return
        self._seq += 1
        ttl = self._history_ttl(history)
        command = scripts.publish_at(
            self._prefix, channel, history, ttl, self.origin, self._seq, key, data
        )
        self._queue((command, None, size, True))
        self.published += 1
        self._wake_writer()

    def subscribe(self, channel: str) -> None:
        self._wanted.add(channel)
        self._resubscribe = True
        self._wake_writer()

    def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._heard.pop(channel, None)
        self._lines.pop(channel, None)
        self._histories.pop(channel, None)
        fill = self._fills.pop(channel, None)
        if fill is not None:
            fill.cancel()
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
        alive = await self._alive({pid for pid, _ in others})
        dead = [pid for pid, _ in others if pid not in alive]
        if dead:
            self._queue(((b"HDEL", key, *dead), None, _OVERHEAD, False))
            self._wake_writer()
        return local + sum(number for pid, number in others if pid in alive)

    # history

    def attached(self, channel: str) -> bool:
        line = self._lines.get(channel)
        return line is not None and line.started

    async def read(
        self, channel: str, since: tuple[str, int] | None, history: History
    ) -> tuple[str, int, list[tuple[int, bytes]] | None]:
        self._histories[channel] = history
        line = self._lines.get(channel)
        if line is None:
            line = self._lines[channel] = Line(self.max_queue)
        await self._confirmed(channel)
        epoch, offset, entries = await self._read(channel, since, history)
        if not line.started and self._lines.get(channel) is line:
            self.target.restart(channel, epoch, offset)
            self._follow(channel, line, *line.start(epoch, offset))
        if since is None or entries is None:
            return epoch, offset, None
        return epoch, offset, [(since[1] + 1 + i, data) for i, (data, _) in enumerate(entries)]

    async def _read(
        self, channel: str, since: tuple[str, int] | None, history: History
    ) -> tuple[str, int, list[tuple[bytes, str | None]] | None]:
        ttl = self._history_ttl(history)
        reply = await self._request(*scripts.read(self._prefix, channel, history, ttl, since))
        epoch, offset, recovered, *flat = reply
        entries = None
        if recovered:
            entries = [(flat[i], flat[i + 1].decode() or None) for i in range(0, len(flat), 2)]
        return epoch.decode(), int(offset), entries

    def _history_ttl(self, history: History) -> float:
        """How long a history channel's position outlives its last publication: its age,
        or while a process follows it (renewed every heartbeat)."""
        return max(history.age, 3 * self.heartbeat)

    def _follow(self, channel: str, line: Line, deliver: list[Publication], fill: bool) -> None:
        """Deliver what a line released; start a fill when it found a gap."""
        target = self.target
        for publication in deliver:
            try:
                target.deliver_at(channel, *publication)
            except Exception:
                logger.exception("delivering a publication from Redis failed")
        if fill and channel not in self._fills:
            self._fills[channel] = self._spawn(self._fill(channel, line))

    async def _fill(self, channel: str, line: Line) -> None:
        """Fetch what a line missed from history, once Redis has the subscription."""
        try:
            await self._confirmed(channel)
            history = self._histories[channel]
            since = (line.epoch or "", line.offset)
            epoch, offset, entries = await self._read(channel, since, history)
        except self._unavailable:
            return  # the next session fills it
        finally:
            if self._fills.get(channel) is asyncio.current_task():
                del self._fills[channel]
        if self._lines.get(channel) is not line:
            return  # nobody follows it any more
        if entries:
            self.recovered += len(entries)
        deliver, again, lost = line.filled(epoch, offset, entries)
        if lost:
            self.lost += lost
            logger.warning(
                "%d publications of history channel %r were lost before this process "
                "received them (history no longer held them); its subscribers were told",
                lost,
                channel,
            )
            self.target.lagged(channel, lost)
        self._follow(channel, line, deliver, again)

    # presence

    def present(self, channel: str, pk: str, info: bytes) -> None:
        self._present[channel] = self._present.get(channel, 0) + 1
        key = f"{self._prefix}presence:{channel}"
        self._queue(((b"HSET", key, pk, self._pid + info), None, len(info) + _OVERHEAD, False))
        self._queue(((b"PEXPIRE", key, _ms(3 * self.heartbeat)), None, _OVERHEAD, False))
        self._wake_writer()

    def absent(self, channel: str, pk: str) -> None:
        left = self._present.get(channel, 0) - 1
        if left > 0:
            self._present[channel] = left
        else:
            self._present.pop(channel, None)
        self._queue(((b"HDEL", f"{self._prefix}presence:{channel}", pk), None, _OVERHEAD, False))
        self._wake_writer()

    async def members(self, channel: str) -> list[tuple[str, bytes]]:
        """Members of live processes; those of dead ones are removed (and announced)."""
        key = f"{self._prefix}presence:{channel}"
        flat = await self._request(b"HGETALL", key)
        entries = [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]
        alive = await self._alive({value[:16] for _, value in entries} - {self._pid})
        alive.add(self._pid)
        members, dead = [], []
        for pk, value in entries:
            if value[:16] in alive:
                members.append((pk, value[16:]))
            else:
                dead.append((pk, value[16:]))
        if dead:
            removed = await asyncio.gather(*(self._request(b"HDEL", key, pk) for pk, _ in dead))
            for (pk, info), gone in zip(dead, removed, strict=True):
                if gone:  # whoever removes it announces it, once
                    self.target.departed(channel, pk, info)
        return members

    async def _alive(self, pids: set[bytes]) -> set[bytes]:
        """Which of the processes ``pids`` renewed their heartbeat key recently."""
        ordered = sorted(pids)
        found = await asyncio.gather(
            *(self._request(b"EXISTS", self._process_key(pid)) for pid in ordered)
        )
        return {pid for pid, live in zip(ordered, found, strict=True) if live}

    def _sweep_presence(self) -> None:
        """Every heartbeat: renew this process's presence, drop dead processes' members."""
        for channel in self._present:
            key = f"{self._prefix}presence:{channel}"
            self._queue(((b"PEXPIRE", key, _ms(3 * self.heartbeat)), None, _OVERHEAD, False))
            self._spawn(self._swept(channel))
        for channel, line in self._lines.items():
            history = self._histories.get(channel)
            if line.started and history is not None:
                meta = f"{self._prefix}history:{channel}"
                command = (b"PEXPIRE", meta, _ms(self._history_ttl(history)))
                self._queue((command, None, _OVERHEAD, False))

    async def _swept(self, channel: str) -> None:
        try:
            await self.members(channel)
        except self._unavailable:
            pass

    # keys

    def _key(self, name: str) -> bytes:
        keys = self._keys
        key = keys.get(name)
        if key is None:
            if len(keys) > 10_000:  # run-time channels come and go
                keys.clear()
                self._channel_seqs.clear()
            key = keys[name] = (self._prefix + name).encode()
        return key

    def _count_key(self, channel: str) -> str:
        return f"{self._prefix}count:{channel}"

    def _process_key(self, pid: bytes) -> str:
        return f"{self._prefix}process:{pid.decode()}"

    # queueing (never blocks: the writer task does the I/O)

    def _queue(self, item: Item) -> None:
        self._pending.append(item)
        self._queued += item[2]

    def _wake_writer(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _request(self, *command: Any) -> asyncio.Future[Any]:
        """Send ``command``; its reply. Raises :class:`BrokerUnavailable` when Redis is
        unreachable now, and the future does when the connection is lost before the reply."""
        if not self._online:
            raise BrokerUnavailable(f"Redis at {redacted(self.url)} is unreachable")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue((command, future, _OVERHEAD, False))
        self._wake_writer()
        return future

    async def _confirmed(self, channel: str) -> None:
        """Wait, at most ``timeout``, until Redis confirmed the subscription to ``channel``."""
        key = self._prefix + channel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            session = self._session
            if session is not None and key in session.confirmed and self._online:
                return
            if channel not in self._wanted:
                raise BrokerUnavailable(f"not subscribed to {channel!r}")
            waiter: asyncio.Future[None] = loop.create_future()
            self._confirmations.setdefault(key, []).append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise BrokerUnavailable(
                    f"Redis at {redacted(self.url)} did not confirm a subscription "
                    f"within {self.timeout:g} s"
                ) from None

    def _not_sent(self, channels: Sequence[str]) -> None:
        self.undelivered += 1
        self._outage_undelivered += 1
        why = "Redis is unreachable" if not self._online else "too many bytes wait for Redis"
        self._warn(
            "undelivered",
            "broadcast to %s was delivered to this process's subscribers only: %s "
            "(later ones are counted in broker.undelivered)",
            list(channels),
            why,
        )

    def _warn(self, what: str, message: str, *args: Any) -> None:
        """Log a kind of loss once per period that Redis answered; the counters say more."""
        if what not in self._warned:
            self._warned.add(what)
            logger.warning(message, *args)

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
            self._sweep_presence()
            self._wake_writer()

    # connecting

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

    async def _run(self, session: _Session | None) -> None:
        """Serve sessions one after the other until :meth:`stop`, reconnecting between."""
        delay = _BACKOFF[0]
        while True:
            if session is not None:
                try:
                    await self._serve(session)
                except Exception as exc:
                    if not isinstance(exc, self._failures):
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
                "made during the outage were delivered locally only; history channels are "
                "filled from history, losses on the others are counted as they show",
                redacted(self.url),
                len(self._wanted),
                self._outage_undelivered,
            )
            for channel, line in self._lines.items():
                if line.started:
                    line.hold()
                    self._follow(channel, line, [], True)
        self._outage_undelivered = 0
        self._warned.clear()
        session.writing = asyncio.create_task(self._write(session))
        tasks = {asyncio.create_task(self._read_messages(session)), session.writing}
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
        was_online, self._online = self._online, False
        if was_online and not self._closing:
            logger.warning(
                "lost the connection to Redis at %s (%s); serving this process's "
                "subscribers only until it is back",
                redacted(self.url),
                str(exc) or type(exc).__name__,
            )
        items = list(self._pending)
        self._pending.clear()
        self._fail(items, exc)

    def _fail(self, items: list[Item], exc: object) -> None:
        """Commands that may not have reached Redis: fail requests, count broadcasts, and
        queue numbered publications again (the script recognises one sent twice)."""
        again = []
        for item in items:
            command, future, size, numbered = item
            if numbered:
                again.append(item)
                continue
            self._queued -= size
            if future is not None:
                if not future.done():
                    future.set_exception(BrokerUnavailable(f"lost Redis: {exc}"))
            elif type(command) is bytes:
                self.undelivered += 1
                self._outage_undelivered += 1
        self._pending.extendleft(reversed(again))

    # the two connections

    async def _read_messages(self, session: _Session) -> None:
        """Hand every message from Redis to the local subscribers; raise when Redis goes."""
        received = self._received
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

    def _received(self, message: bytes) -> None:
        kind = message[KIND] if message else 0
        if kind == PLAIN and message[ORIGIN] == self.origin:
            return  # our own broadcast, delivered locally when it was published
        try:
            _, origin, seq, head, payload = unpack(message)
        except ValueError as exc:
            self._warn("foreign", "ignored a message in namespace %r: %s", self.namespace, exc)
            return
        try:
            if kind == NUMBERED:
                self._numbered(head.channels[0], head.epoch, head.offset, payload, head.key)
                return
            # A broadcast to several channels arrives once per channel this process is
            # subscribed to, in the publisher's order: deliver the first copy only.
            if seq <= self._last_seq.get(origin, 0):
                return
            self._last_seq[origin] = seq
            self._count_missed(origin, head.channels, head.seqs)
            self.received += 1
            self.target.deliver(head.channels, payload, head.key)
        except Exception:
            logger.exception("delivering a broadcast from Redis failed")

    def _numbered(
        self, channel: str, epoch: str, offset: int, data: bytes, key: str | None
    ) -> None:
        line = self._lines.get(channel)
        if line is None:
            if channel not in self._wanted:
                return
            line = self._lines[channel] = Line(self.max_queue)  # held until read() starts it
        self.received += 1
        self._follow(channel, line, *line.arrive(Publication(epoch, offset, data, key)))

    def _count_missed(self, origin: bytes, channels: list[str], seqs: list[int]) -> None:
        """Count the broadcasts of ``origin`` this process missed on its channels."""
        missed = 0
        for name, number in zip(channels, seqs, strict=False):
            if name not in self._wanted:
                continue
            heard = self._heard.get(name)
            if heard is None:
                heard = self._heard[name] = {}
            last = heard.pop(origin, None)
            if last is not None and number > last + 1:
                missed += number - last - 1
            heard[origin] = number  # the most recent publisher goes last
            if len(heard) > _PUBLISHERS:
                del heard[next(iter(heard))]
        if missed:
            self.lost += missed
            self._warn(
                "lost",
                "%d broadcasts to channels without history were lost between Redis and "
                "this process (its connection dropped); later ones are counted in "
                "broker.lost",
                missed,
            )

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
            batch: list[Item] = []
            if self._beat_due:
                self._beat_due = False
                reader = session.reader
                await reader.send_packed_command(reader.pack_command(b"PING"), check_health=False)
                alive = _ms(3 * self.heartbeat)
                command = (b"SET", self._process_key(self._pid), b"1", b"PX", alive)
                batch.append((command, None, 0, False))
            for channel in self._dirty_counts:
                batch.append((self._count_command(channel), None, 0, False))
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
                    self._queued -= size
                    if future is None:
                        name = command[:20] if type(command) is bytes else command[0]
                        logger.error("Redis refused %r: %s", name, exc)
                    elif not future.done():
                        future.set_exception(exc)
                    continue
                self._queued -= size
                if future is not None and not future.done():
                    future.set_result(reply)
        except BaseException as exc:
            self._fail(unscripted + batch[index:], exc)
            raise
        finally:
            self._waiting_since = 0.0
        if unscripted:
            await self._load_scripts(conn)
            self._pending.extendleft(reversed(unscripted))

    async def _load_scripts(self, conn: Any) -> None:
        """Load the scripts into Redis (a new connection, or Redis forgot them)."""
        commands = [(b"SCRIPT", b"LOAD", script.source) for script in (PUBLISH_AT, READ)]
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        for _ in commands:
            await conn.read_response()

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
        batch: list[Item] = [
            ((b"HDEL", self._count_key(channel), self._pid), None, 0, False)
            for channel in self._written_counts
        ]
        batch.append(((b"DEL", self._process_key(self._pid)), None, 0, False))
        await self._round_trip(conn, batch)
