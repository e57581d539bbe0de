"""What the Redis broker keeps in Redis, and the Lua scripts that keep it consistent.

Keys, after the namespace prefix (``lexicons:`` by default)::

    <channel>            the pub/sub channel a broadcast is published to
    count:<channel>      hash: subscribers per process
    process:<pid>        a live process's heartbeat (expires 3 heartbeats after it died)
    history:<channel>    hash: epoch, offset, and per publisher the last sequence number
    stream:<channel>     stream: the publications held, entry id "<offset>-0",
                         fields t (Redis time, ms), d (payload), k (conflation key)
    presence:<channel>   hash: connection pk -> publisher pid (16 hex digits) + info

Scripts run atomically, so offsets, the stream and pub/sub stay in one order, and a
publication resent after a reconnection (its reply was lost) is numbered only once.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

from .envelope import head_prefix, prefix

if TYPE_CHECKING:
    from ..history import History

__all__ = [
    "PUBLISH_AT",
    "READ",
    "Script",
    "milliseconds",
    "publish_at",
    "publish_at_head",
    "publish_at_tail",
    "read",
    "resp",
]


class Script:
    """A Lua script and its SHA1, as EVALSHA wants it."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


def _epoch(fresh: str) -> str:
    """Lua making the channel's epoch (``fresh``) if its history was lost or never was."""
    return f"""
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = {fresh}
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""


#: KEYS: history, stream, pub/sub channel. ARGV: max entries, stream ttl ms, history ttl
#: ms, publisher (hex), then per publication a new epoch, the publisher's sequence number,
#: the envelope's prefix (17 bytes), the head's prefix, the payload and the key. Returns
#: the offset, or 0 for a publication already numbered.
PUBLISH_AT = Script(
    _epoch("ARGV[5]")
    + """
local publisher = 'p:' .. ARGV[4]
local seq = tonumber(ARGV[6])
if seq <= tonumber(redis.call('HGET', meta, publisher) or '0') then
  return 0
end
local offset = redis.call('HINCRBY', meta, 'offset', 1)
redis.call('HSET', meta, publisher, ARGV[6])
redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], offset .. '-0',
           't', now_ms(), 'd', ARGV[9], 'k', ARGV[10])
redis.call('PEXPIRE', stream, ARGV[2])
redis.call('PEXPIRE', meta, ARGV[3])
local head = ARGV[8] .. '"' .. epoch .. '",' .. offset .. ']'
local n = #head
local size = string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
                         math.floor(n / 256) % 256, n % 256)
redis.call('PUBLISH', KEYS[3], ARGV[7] .. size .. head .. ARGV[9])
return offset
"""
)

#: KEYS: history, stream. ARGV: new epoch, epoch asked for ("" for none), offset asked
#: for, max entries, max age ms, history ttl ms. Returns {epoch, offset, recovered, then
#: payload and key of each publication after the offset asked for when recovered}.
READ = Script(
    _epoch("ARGV[1]")
    + """
redis.call('PEXPIRE', meta, ARGV[6])
local offset = tonumber(redis.call('HGET', meta, 'offset'))
local since = tonumber(ARGV[3])
if ARGV[2] ~= epoch or since > offset or since < offset - tonumber(ARGV[4]) then
  return {epoch, offset, 0}
end
if since == offset then
  return {epoch, offset, 1}
end
local entries = redis.call('XRANGE', stream, (since + 1) .. '-0', offset .. '-0')
if #entries ~= offset - since then
  return {epoch, offset, 0}
end
local oldest = now_ms() - tonumber(ARGV[5])
local reply = {epoch, offset, 1}
for i, entry in ipairs(entries) do
  local fields = entry[2]
  local found = {}
  for j = 1, #fields, 2 do
    found[fields[j]] = fields[j + 1]
  end
  if i == 1 and tonumber(found['t']) < oldest then
    return {epoch, offset, 0}
  end
  reply[#reply + 1] = found['d']
  reply[#reply + 1] = found['k']
end
return reply
"""
)


def milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def publish_at_head(
    namespace: str, channel: str, history: History, ttl: float, origin: bytes
) -> tuple[Any, ...]:
    """What every EVALSHA publishing to ``channel`` starts with (see :func:`publish_at`)."""
    return (
        b"EVALSHA",
        PUBLISH_AT.sha,
        3,
        f"{namespace}history:{channel}",
        f"{namespace}stream:{channel}",
        f"{namespace}{channel}",
        history.count,
        milliseconds(history.age),
        milliseconds(ttl),
        origin.hex(),
    )


def publish_at_tail(
    origin: bytes, seq: int, channel: str, key: str | None, data: bytes
) -> tuple[Any, ...]:
    """The rest of it: what changes with each publication."""
    return (
        b"%s%x" % (origin.hex().encode(), seq),  # an epoch, should this one start one
        seq,
        prefix(origin, seq),
        head_prefix(channel, key),
        data,
        key or "",
    )


def publish_at(
    namespace: str,
    channel: str,
    history: History,
    ttl: float,
    origin: bytes,
    seq: int,
    key: str | None,
    data: bytes,
) -> tuple[Any, ...]:
    """The EVALSHA that numbers and publishes one publication of ``channel``.

    ``namespace`` is the key prefix (``"lexicons:"``); ``ttl`` how long, in seconds, the
    channel's position outlives its last publication; ``origin`` and ``seq`` identify the
    publication, so sending it twice numbers it once.
    """
    head = publish_at_head(namespace, channel, history, ttl, origin)
    return head + publish_at_tail(origin, seq, channel, key, data)


def resp(args: tuple[Any, ...]) -> bytes:
    """``args`` (bytes, str or int) as RESP bulk strings, without the array's header."""
    parts = []
    for arg in args:
        if type(arg) is not bytes:
            arg = str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(parts)


def read(
    namespace: str, channel: str, history: History, ttl: float, since: tuple[str, int] | None
) -> tuple[Any, ...]:
    """The EVALSHA that answers a channel's position, and what followed ``since``."""
    return (
        b"EVALSHA",
        READ.sha,
        2,
        f"{namespace}history:{channel}",
        f"{namespace}stream:{channel}",
        os.urandom(8).hex(),  # an epoch, should the channel start one
        since[0] if since is not None else "",
        since[1] if since is not None else 0,
        history.count,
        milliseconds(history.age),
        milliseconds(ttl),
    )
