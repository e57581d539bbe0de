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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import scripts
from .base import Broker
from .envelope import KIND, NUMBERED, ORIGIN, PLAIN, pack, unpack
from .lines import Line, Publication
from .redis_link import Command, Item, RedisLink, redacted
from .scripts import milliseconds as _ms

if TYPE_CHECKING:
    from ..history import History

__all__ = ["RedisBroker", "redacted"]

logger = logging.getLogger("lexicons.broker")

#: Publishers remembered per channel, to count what a process missed of each.
_PUBLISHERS = 64
#: Bytes a queued command costs besides its payload (its envelope and our bookkeeping).
_OVERHEAD = 256


def _publish_command(key: bytes, envelope: bytes) -> bytes:
    """``PUBLISH key envelope`` in RESP, built here: the one command sent per broadcast."""
    head = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n$%d\r\n" % (len(key), key, len(envelope))
    return b"".join((head, envelope, b"\r\n"))


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
        self._link = RedisLink(url, self.client_name, self, timeout=timeout, heartbeat=heartbeat)
        self._unavailable = self._link.unavailable
        self._pid = self.origin.hex().encode()
        self._prefix = f"{namespace}:"
        self._seq = 0
        #: Channels with local subscribers, and their local counts.
        self._wanted: set[str] = set()
        self._counts: dict[str, int] = {}
        self._dirty_counts: set[str] = set()
        self._written_counts: set[str] = set()
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
        #: The start of the command publishing to each history channel, encoded once.
        self._heads: dict[str, tuple[History, bytes]] = {}
        self._histories: dict[str, History] = {}
        self._fills: dict[str, asyncio.Task[None]] = {}
        #: Presence members of this process, per channel.
        self._present: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
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
        return self._link.online

    @property
    def queued(self) -> int:
        """Bytes waiting for Redis (sent and unanswered included)."""
        return self._link.queued

    # the Broker interface

    async def start(self) -> None:
        await self._link.start()

    async def stop(self) -> None:
        """Send what is queued, withdraw this process's counts, then disconnect."""
        for work in list(self._tasks):
            work.cancel()
        await self._link.stop()

    def publish(self, channels: Sequence[str], data: bytes, key: str | None = None) -> None:
        self.target.deliver(channels, data, key)
        size = (len(data) + _OVERHEAD) * len(channels)
        if not self._link.online or self._link.queued + size > self.max_queue:
            self._not_sent(channels)
            return
        self._seq += 1
        seqs = self._channel_seqs
        numbers = []
        for name in channels:
            numbers.append(seqs.get(name, 0) + 1)
            seqs[name] = numbers[-1]
        envelope = pack(self.origin, self._seq, channels, numbers, key, data)
        size = len(envelope)
        for name in channels:
            self._link.queue((_publish_command(self._key(name), envelope), None, size, False))
        self.published += 1
        self._link.wake()

    def publish_at(self, channel: str, data: bytes, key: str | None, history: History) -> None:
        size = len(data) + _OVERHEAD
        if self._link.queued + size > self.max_queue:
            self.dropped += 1
            self._warn(
                "dropped",
                "a publication to history channel %r was dropped: %d bytes already wait "
                "for Redis (later ones are counted in broker.dropped)",
                channel,
                self._link.queued,
            )
            return
        self._seq += 1
        head = self._heads.get(channel)
        if head is None or head[0] is not history:
            if len(self._heads) > 10_000:  # run-time channels come and go
                self._heads.clear()
            ttl = self._history_ttl(history)
            args = scripts.publish_at_head(self._prefix, channel, history, ttl, self.origin)
            head = self._heads[channel] = (history, b"*16\r\n" + scripts.resp(args))
        tail = scripts.publish_at_tail(self.origin, self._seq, channel, key, data)
        self._link.queue((head[1] + scripts.resp(tail), None, size, True))
        self.published += 1
        self._link.wake()

    def subscribe(self, channel: str) -> None:
        self._wanted.add(channel)
        self._link.want(self._prefix + name for name in self._wanted)

    def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._heard.pop(channel, None)
        self._lines.pop(channel, None)
        self._histories.pop(channel, None)
        self._heads.pop(channel, None)
        fill = self._fills.pop(channel, None)
        if fill is not None:
            fill.cancel()
        self._link.want(self._prefix + name for name in self._wanted)

    def recount(self, channel: str, local: int) -> None:
        self._counts[channel] = local
        self._dirty_counts.add(channel)
        self._link.wake()

    async def count(self, channel: str, local: int) -> int:
        """``local`` plus the counts other live processes recorded in Redis."""
        key = self._count_key(channel)
        entries = await self._link.request(b"HGETALL", key)
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
            self._link.queue(((b"HDEL", key, *dead), None, _OVERHEAD, False))
            self._link.wake()
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
        await self._link.confirmed(self._prefix + channel)
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
        reply = await self._link.request(*scripts.read(self._prefix, channel, history, ttl, since))
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
            await self._link.confirmed(self._prefix + channel)
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
        size = len(info) + _OVERHEAD
        self._link.queue(((b"HSET", key, pk, self._pid + info), None, size, False))
        self._link.queue(((b"PEXPIRE", key, _ms(3 * self.heartbeat)), None, _OVERHEAD, False))
        self._link.wake()

    def absent(self, channel: str, pk: str) -> None:
        left = self._present.get(channel, 0) - 1
        if left > 0:
            self._present[channel] = left
        else:
            self._present.pop(channel, None)
        key = f"{self._prefix}presence:{channel}"
        self._link.queue(((b"HDEL", key, pk), None, _OVERHEAD, False))
        self._link.wake()

    async def members(self, channel: str) -> list[tuple[str, bytes]]:
        """Members of live processes; those of dead ones are removed (and announced)."""
        key = f"{self._prefix}presence:{channel}"
        flat = await self._link.request(b"HGETALL", key)
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
            request = self._link.request
            removed = await asyncio.gather(*(request(b"HDEL", key, pk) for pk, _ in dead))
            for (pk, info), gone in zip(dead, removed, strict=True):
                if gone:  # whoever removes it announces it, once
                    self.target.departed(channel, pk, info)
        return members

    async def _alive(self, pids: set[bytes]) -> set[bytes]:
        """Which of the processes ``pids`` renewed their heartbeat key recently."""
        ordered = sorted(pids)
        found = await asyncio.gather(
            *(self._link.request(b"EXISTS", self._process_key(pid)) for pid in ordered)
        )
        return {pid for pid, live in zip(ordered, found, strict=True) if live}

    def beat(self) -> list[Item]:
        """Every heartbeat: prove this process alive, renew its presence and the positions
        of the history channels it follows, and drop dead processes' members."""
        alive = _ms(3 * self.heartbeat)
        commands: list[Item] = [
            ((b"SET", self._process_key(self._pid), b"1", b"PX", alive), None, 0, False)
        ]
        for channel in self._present:
            key = f"{self._prefix}presence:{channel}"
            commands.append(((b"PEXPIRE", key, alive), None, 0, False))
            self._spawn(self._swept(channel))
        for channel, line in self._lines.items():
            history = self._histories.get(channel)
            if line.started and history is not None:
                meta = f"{self._prefix}history:{channel}"
                ttl = _ms(self._history_ttl(history))
                commands.append(((b"PEXPIRE", meta, ttl), None, 0, False))
        return commands

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

    # queueing (never blocks: the link's writer does the I/O)

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _not_sent(self, channels: Sequence[str]) -> None:
        self.undelivered += 1
        self._outage_undelivered += 1
        why = "Redis is unreachable" if not self._link.online else "too many bytes wait for Redis"
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

    # what the link tells

    def connected(self, again: bool) -> None:
        """A session started: counts and liveness are written again; after a loss, the
        history channels followed are filled from history."""
        self._dirty_counts.update(self._counts)
        for item in self.beat():
            self._link.queue(item)
        if again:
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

    def first(self) -> list[Item]:
        dirty = self._dirty_counts
        commands: list[Item] = [(self._count_command(c), None, 0, False) for c in dirty]
        self._dirty_counts.clear()
        return commands

    def unsent(self, command: Command) -> None:
        self.undelivered += 1
        self._outage_undelivered += 1

    def farewell(self) -> list[Item]:
        """At a clean stop, remove this process's counts and liveness key from Redis."""
        commands: list[Item] = [
            ((b"HDEL", self._count_key(channel), self._pid), None, 0, False)
            for channel in self._written_counts
        ]
        commands.append(((b"DEL", self._process_key(self._pid)), None, 0, False))
        return commands

    # receiving

    def message(self, message: bytes) -> None:
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

    def _count_command(self, channel: str) -> tuple[Any, ...]:
        number = self._counts.get(channel, 0)
        key = self._count_key(channel)
        if number:
            self._written_counts.add(channel)
            return (b"HSET", key, self._pid, number)
        self._counts.pop(channel, None)
        self._written_counts.discard(channel)
        return (b"HDEL", key, self._pid)
