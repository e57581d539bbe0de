"""Rate limits, without I/O: token buckets per signal per connection, and per client
address at the handshake.

::

    @app.signal(limit="5/s")             # 5 a second per connection, bursts of 5
    def say(ws, text: str): ...

    @app.signal(limit=RateLimit(10, per=60, burst=3))
    def report(ws, text: str): ...

A request over its signal's limit is answered with ``rate_limited`` and not run. At the
handshake, ``max_connections_per_address`` bounds the connections one client address
holds open, and ``connection_rate`` (``"30/min"``) how fast it may open them; over either
the handshake is answered 429. The caller passes the time.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from .errors import ConfigurationError

__all__ = ["AddressLimits", "RateLimit", "TokenBucket"]

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_TEXT = re.compile(r"\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+?)s?\s*")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``count`` requests per ``per`` seconds, in bursts of at most ``burst`` (``count``).

    ``RateLimit.parse("30/min")`` reads the short form: a count, a slash, an optional
    number and a unit (``s``, ``min``, ``h``), as in ``"5/s"``, ``"10/30s"``.
    """

    count: int
    per: float = 1.0
    burst: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1:
            raise ConfigurationError(f"rate limit: count must be a whole number >= 1 ({self!r})")
        if not self.per > 0:
            raise ConfigurationError(f"rate limit: per must be a positive number ({self!r})")
        if self.burst is not None and self.burst < 1:
            raise ConfigurationError(f"rate limit: burst must be >= 1 ({self!r})")

    @classmethod
    def parse(cls, text: str | RateLimit) -> RateLimit:
        """A limit from its short form (``"5/s"``, ``"30/min"``, ``"100/h"``), or as given."""
        if isinstance(text, RateLimit):
            return text
        found = _TEXT.fullmatch(text.lower()) if isinstance(text, str) else None
        if found is None or found.group(3) not in _UNITS or found.group(2) in (".",):
            raise ConfigurationError(
                f"rate limit {text!r}: write it as count/unit, such as '5/s', '30/min' or '100/h'"
            )
        count, number, unit = found.groups()
        return cls(int(count), float(number or 1) * _UNITS[unit])

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else self.count

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return self.count / self.per

    def __str__(self) -> str:
        burst = f", bursts of {self.burst}" if self.burst is not None else ""
        return f"{self.count} per {self.per:g} s{burst}"


class TokenBucket:
    """One rate-limited stream of requests: full at first, refilled at the limit's rate."""

    __slots__ = ("tokens", "stamp")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.tokens = float(limit.capacity)
        self.stamp = now

    def take(self, limit: RateLimit, now: float) -> float:
        """Take a token: 0 when allowed, else the seconds until one is available."""
        tokens = min(limit.capacity, self.tokens + (now - self.stamp) * limit.rate)
        self.stamp = now
        if tokens >= 1:
            self.tokens = tokens - 1
            return 0.0
        self.tokens = tokens
        return (1 - tokens) / limit.rate


class AddressLimits:
    """Connections per client address: open at once, and opened per unit of time.

    Memory is bounded: at most ``max_addresses`` buckets are kept (the least recently
    used go first); an address's count goes when its last connection does.
    """

    def __init__(
        self,
        most: int | None,
        rate: RateLimit | None,
        *,
        max_addresses: int = 65536,
    ) -> None:
        self.most = most
        self.rate = rate
        self.max_addresses = max_addresses
        self._open: Counter[str] = Counter()
        #: The address each counted connection holds, by its pk.
        self._holders: dict[str, str] = {}
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return self.most is not None or self.rate is not None

    def admit(self, pk: str, address: str, now: float) -> str | None:
        """Count connection ``pk`` from ``address``; or why it is refused (not counted)."""
        if self.most is not None and self._open[address] >= self.most:
            return f"more than {self.most} connections from this address"
        if self.rate is not None:
            bucket = self._buckets.pop(address, None)
            if bucket is None:
                bucket = TokenBucket(self.rate, now)
                if len(self._buckets) >= self.max_addresses:
                    del self._buckets[next(iter(self._buckets))]
            self._buckets[address] = bucket  # the most recently used goes last
            if bucket.take(self.rate, now):
                return f"more than {self.rate} new connections from this address"
        self._open[address] += 1
        self._holders[pk] = address
        return None

    def release(self, pk: str) -> None:
        """Connection ``pk`` is gone (harmless if it was never counted)."""
        address = self._holders.pop(pk, None)
        if address is None:
            return
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def holding(self, address: str) -> int:
        """Connections counted for ``address``."""
        return self._open.get(address, 0)
