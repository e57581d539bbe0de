"""Who may open a connection: source addresses, trusted proxies, browser origins.

Everything here is pure: the network layer passes in what it read from the socket and
the handshake request, and gets a yes or no. Nothing here raises on client input::

    trust = Trust(["10.0.0.0/8", "2001:db8::/32"], proxies=["10.0.0.2"])
    address = trust.client_address(peer, request.headers)  # X-Forwarded-For when peer is a proxy
    trust.admits(address)                                   # False -> HTTP 403

    Origins().admits("https://example.com", "example.com", secure=False)  # same-origin: True
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from websockets.datastructures import Headers
from websockets.frames import Frame

from .errors import ConfigurationError

__all__ = ["UNKNOWN", "Origins", "Trust", "WireLogFilter", "redact"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The client address when forwarded headers are present but cannot be believed
#: (malformed, obfuscated, or X-Forwarded-For and Forwarded naming different clients).
#: It is inside no network, so only ``"*"`` admits it.
UNKNOWN = "unknown"

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> Address | None:
    """Parse one IP address; an IPv4-mapped IPv6 address becomes its IPv4 form.

    Cached: a handshake looks at the same peer address several times, and parsing with
    ipaddress was a tenth of a connection's cost (benchmarks, churn). Bounded, so
    forwarded-header text from clients cannot grow it.
    """
    try:
        address = ipaddress.ip_address(text.strip())
    except (ValueError, TypeError, AttributeError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _network(entry: object, setting: str) -> Network:
    """Parse one ``trust``/``proxies`` entry, or raise naming it."""
    if isinstance(entry, ipaddress.IPv4Address | ipaddress.IPv6Address):
        entry = str(entry)
    elif isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
        entry = str(entry)
    if not isinstance(entry, str):
        raise ConfigurationError(f"{setting}: {entry!r} is not an IP address or network")
    try:
        # strict=False: "10.0.0.5/24" means 10.0.0.0/24, as most firewalls read it.
        network = ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ConfigurationError(
            f"{setting}: {entry!r} is not an IP address or network "
            "(write 10.0.0.1, 10.0.0.0/8, 2001:db8::/32 or '*'; host names are not resolved)"
        ) from None
    # "::ffff:10.0.0.0/104" is the IPv4 network 10.0.0.0/8 written in mapped form.
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None  # inside ::ffff:0:0/96
        network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _entries(entries: Iterable[object] | str, setting: str) -> list[object]:
    if isinstance(entries, str):  # trust="10.0.0.0/8" means one entry, not ten characters
        return [entries]
    try:
        return list(entries)
    except TypeError:
        raise ConfigurationError(f"{setting}: {entries!r} is not a list of addresses") from None


class _Networks:
    """A set of networks answering ``address in networks`` for either IP version."""

    __slots__ = ("_v4", "_v6")

    def __init__(self, networks: Iterable[Network]) -> None:
        self._v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
        self._v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]

    def __contains__(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv4Address):
            return any(address in n for n in self._v4)
        return any(address in n for n in self._v6)


class Trust:
    """Who may connect, by source address; built from the ``trust`` and ``proxies`` settings.

    ``entries`` are IP addresses, CIDR networks (IPv4 or IPv6) or ``"*"`` (everyone, the
    default). A client reaching a dual-stack socket over IPv4 shows up as
    ``::ffff:a.b.c.d``; it is matched against the IPv4 entries, like ``a.b.c.d``. IPv6
    entries match IPv6 clients only (``::/0`` does not admit IPv4 clients).

    ``proxies`` are the reverse proxies in front of the server. Only when the socket's
    peer is one of them are ``X-Forwarded-For`` / ``Forwarded`` read; otherwise a client
    could claim any address by sending those headers itself::

        Trust(["203.0.113.0/24"], proxies=["10.0.0.2"])
    """

    __slots__ = ("_everyone", "_networks", "_proxies", "_peer", "_listed")

    def __init__(self, entries: Iterable[str] = ("*",), proxies: Iterable[str] = ()) -> None:
        listed = _entries(entries, "trust")
        if not listed:
            raise ConfigurationError(
                "trust: the list is empty, so no one could connect; use ['*'] for everyone"
            )
        everyone = False
        networks: list[Network] = []
        for entry in listed:
            if isinstance(entry, str) and entry.strip() == "*":
                everyone = True
            else:
                networks.append(_network(entry, "trust"))
        self._everyone = everyone
        self._networks = _Networks(networks)
        proxy_networks: list[Network] = []
        for entry in _entries(proxies, "proxies"):
            if isinstance(entry, str) and entry.strip() == "*":
                raise ConfigurationError(
                    "proxies: '*' would believe the X-Forwarded-For header of any client, "
                    "so anyone could claim any address; list your proxies' addresses"
                )
            proxy_networks.append(_network(entry, "proxies"))
        self._proxies = _Networks(proxy_networks)
        # A server sees the same few peers (and its proxies) over and over, and each check
        # with ipaddress costs a microsecond or more, so answers are kept per address text.
        # Bounded: forwarded-header text from clients cannot grow them.
        self._peer = functools.lru_cache(maxsize=4096)(self._read_peer)
        self._listed = functools.lru_cache(maxsize=4096)(self._is_listed)

    @property
    def everyone(self) -> bool:
        """True when ``"*"`` is listed: every source is admitted."""
        return self._everyone

    def is_proxy(self, address: str) -> bool:
        """Whether ``address`` is one of the trusted proxies (never raises)."""
        parsed = _address(address) if isinstance(address, str) else None
        return parsed is not None and parsed in self._proxies

    def client_address(self, peer: str, headers: Headers) -> str:
        """The address of the client behind ``peer``, the socket's remote address.

        When ``peer`` is a trusted proxy, the client is the right-most address of
        ``X-Forwarded-For`` (or of the ``for=`` values of RFC 7239 ``Forwarded``) that is
        not itself a trusted proxy: everything left of it was written by hosts we do not
        trust. A malformed, ``unknown`` or obfuscated value in that position, or the two
        headers naming different clients, gives :data:`UNKNOWN`, which only ``"*"``
        admits. Without forwarded headers, or when ``peer`` is not a trusted proxy, the
        answer is ``peer`` itself (IPv4-mapped addresses in their IPv4 form).
        """
        address, is_proxy = self._peer(peer) if isinstance(peer, str) else (None, False)
        if address is None:
            return peer
        if not is_proxy:
            return address
        found: list[str] = []
        for name, split in (("X-Forwarded-For", _split_xff), ("Forwarded", _split_forwarded)):
            try:
                values = headers.get_all(name)
            except Exception:  # a headers object we cannot read: believe nothing
                return UNKNOWN
            if not values:
                continue
            chain = split(",".join(values))
            if chain:
                found.append(self._rightmost(chain))
        if not found:
            return address
        if any(other != found[0] for other in found):
            return UNKNOWN  # we cannot tell which header the proxy wrote
        return found[0]

    def _read_peer(self, peer: str) -> tuple[str | None, bool]:
        """``(address, is_proxy)`` of a socket peer: its canonical text, or None."""
        parsed = _address(peer)
        if parsed is None:
            return None, False
        return str(parsed), parsed in self._proxies

    def _rightmost(self, chain: list[Address | None]) -> str:
        for hop in reversed(chain):
            if hop is None:
                return UNKNOWN
            if hop not in self._proxies:
                return str(hop)
        # Every hop is a trusted proxy: the request came from the left-most one.
        return str(chain[0])

    def admits(self, address: str) -> bool:
        """Whether a client at ``address`` may connect. Never raises.

        ``"*"`` admits every source, even one whose address is :data:`UNKNOWN`; otherwise
        an address that does not parse is refused.
        """
        if self._everyone:
            return True
        return isinstance(address, str) and self._listed(address)

    def _is_listed(self, address: str) -> bool:
        parsed = _address(address)
        return parsed is not None and parsed in self._networks

    def __repr__(self) -> str:
        return f"<Trust everyone={self._everyone}>"


def _hop(text: str) -> Address | None:
    """One forwarded node: ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]:80``."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        rest = text[end + 1 :]
        if rest and not re.fullmatch(r":(\d{1,5}|_[A-Za-z0-9._-]+)", rest):
            return None
        address = _address(text[1:end])
        return address if isinstance(address, ipaddress.IPv6Address) else None
    if text.count(":") == 1:  # IPv4 with a port
        host, _, port = text.partition(":")
        if not re.fullmatch(r"\d{1,5}|_[A-Za-z0-9._-]+", port):
            return None
        address = _address(host)
        return address if isinstance(address, ipaddress.IPv4Address) else None
    return _address(text)


def _split_xff(value: str) -> list[Address | None]:
    """``X-Forwarded-For: client, proxy1, proxy2`` -> hops, ``None`` for a malformed one."""
    return [_hop(item) for item in value.split(",") if item.strip()]


def _split_forwarded(value: str) -> list[Address | None]:
    """RFC 7239 ``Forwarded: for=a;proto=https, for="[v6]:port"`` -> the ``for=`` hops.

    An element without exactly one ``for=``, or one that does not parse (an unclosed
    quote), gives ``None`` for that hop.
    """
    hops: list[Address | None] = []
    for element in _split_quoted(value, ","):
        if element is None:
            hops.append(None)
            continue
        if not element.strip():
            continue
        found: list[str] = []
        broken = False
        for pair in _split_quoted(element, ";"):
            if pair is None:
                broken = True
                break
            name, equals, raw = pair.partition("=")
            if not pair.strip():
                continue
            if not equals:
                broken = True
                break
            if name.strip().lower() == "for":
                unquoted = _unquote(raw.strip())
                if unquoted is None:
                    broken = True
                    break
                found.append(unquoted)
        hops.append(None if broken or len(found) != 1 else _hop(found[0]))
    return hops


def _split_quoted(text: str, separator: str) -> list[str | None]:
    """Split on ``separator`` outside double quotes; ``[None]`` when a quote is unclosed."""
    parts: list[str | None] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted or escaped:
        parts.append(None)
    else:
        parts.append("".join(current))
    return parts


def _unquote(value: str) -> str | None:
    """An RFC 7230 token or quoted-string value; ``None`` when it is neither."""
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            return None
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    if '"' in value:
        return None
    return value


# --- origins -----------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)"
_ORIGIN = re.compile(rf"([A-Za-z][A-Za-z0-9+.-]*)://{_HOST}(?::(\d{{1,5}}))?", re.ASCII)
_HOST_HEADER = re.compile(rf"{_HOST}(?::(\d{{1,5}}))?", re.ASCII)


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    #: The explicit port, or the scheme's default; None for a scheme without one.
    port: int | None


def _host(text: str) -> str | None:
    """Lower-case a host; IPv6 literals in their compressed form, in brackets."""
    if text.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
        except ValueError:
            return None
    return text.lower()


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    port = int(text)
    return port if port <= 65535 else -1


def _parse_origin(text: str) -> _Origin | None:
    """``scheme://host[:port]`` -> its parts, or None when it is not an origin."""
    match = _ORIGIN.fullmatch(text)
    if match is None:
        return None
    scheme, raw_host, raw_port = match.groups()
    host = _host(raw_host)
    port = _port(raw_port)
    if host is None or port == -1:
        return None
    scheme = scheme.lower()
    return _Origin(scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme))


def _parse_host(text: str) -> tuple[str, int | None] | None:
    """A ``Host`` header -> (host, port or None), or None when malformed."""
    match = _HOST_HEADER.fullmatch(text)
    if match is None:
        return None
    host = _host(match.group(1))
    port = _port(match.group(2))
    if host is None or port == -1:
        return None
    return host, port


class Origins:
    """Which browser origins may open a connection; built from the ``origins`` setting.

    Browsers send cookies with a WebSocket handshake from any site, so without this
    check any web page could act as the logged-in user (cross-site WebSocket hijacking).

    - ``None`` (default): same-origin. The ``Origin``'s host and port must equal the
      ``Host`` header's; a missing port is the scheme's default, so ``Origin:
      https://x`` matches ``Host: x`` behind a TLS proxy.
    - A list of ``scheme://host[:port]`` values, and/or ``"*"`` for any origin.

    A handshake without an ``Origin`` header is not from a browser and passes.
    ``Origin: null`` (sandboxed frames, ``file:`` pages) is refused unless ``"*"`` is listed::

        Origins(["https://app.example.com", "http://localhost:3000"])
    """

    __slots__ = ("_any", "_allowed", "_same_origin")

    def __init__(self, allowed: Iterable[str] | None = None) -> None:
        self._any = False
        self._allowed: frozenset[_Origin] = frozenset()
        self._same_origin = allowed is None
        if allowed is None:
            return
        parsed: set[_Origin] = set()
        for entry in _entries(allowed, "origins"):
            if not isinstance(entry, str):
                raise ConfigurationError(f"origins: {entry!r} is not an origin")
            text = entry.strip()
            if text == "*":
                self._any = True
                continue
            if text.lower() == "null":
                raise ConfigurationError(
                    "origins: 'null' is sent by sandboxed frames of any site, so allowing it "
                    "is allowing everyone; write '*' if that is what you mean"
                )
            origin = _parse_origin(text.removesuffix("/"))
            if origin is None:
                raise ConfigurationError(
                    f"origins: {entry!r} is not an origin "
                    "(write scheme://host[:port], for example 'https://example.com', or '*')"
                )
            parsed.add(origin)
        self._allowed = frozenset(parsed)

    @property
    def same_origin(self) -> bool:
        """True for the default: only pages served by this host may connect."""
        return self._same_origin

    def admits(self, origin: str | None, host: str | None, secure: bool) -> bool:
        """Whether a handshake with this ``Origin`` (None: none sent) may proceed. Never raises.

        ``host`` is the ``Host`` header, used by the same-origin default; ``secure`` says
        the connection itself is TLS, so a ``Host`` without a port means port 443.
        """
        if origin is None or self._any:
            return True
        if not isinstance(origin, str):
            return False
        parsed = _parse_origin(origin.strip())
        if parsed is None:
            return False  # "null", empty or malformed
        if not self._same_origin:
            return parsed in self._allowed
        if parsed.port is None or not isinstance(host, str):
            return False
        target = _parse_host(host.strip())
        if target is None:
            return False
        host_name, host_port = target
        if host_port is None:
            # The port the client dialled: 443 on our own TLS; otherwise the default of
            # the page's scheme, since a TLS proxy in front of us forwards Host unchanged.
            host_port = 443 if secure else _DEFAULT_PORTS.get(parsed.scheme)
        return parsed.host == host_name and parsed.port == host_port

    def __repr__(self) -> str:
        if self._same_origin:
            return "<Origins same-origin>"
        return f"<Origins any={self._any} allowed={len(self._allowed)}>"


# --- logs --------------------------------------------------------------------------------


def redact(path: str) -> str:
    """Hide every query-string value of a request path, for log lines.

    Credentials may travel in the query string (``/?Login=...``), so no log line shows
    a value::

        >>> redact("/chat?Login=secret&x=1")
        '/chat?Login=***&x=***'

    An item without ``=`` may itself be a value and is hidden whole. Control characters
    and anything outside printable ASCII are escaped, so a path cannot forge log lines.
    """
    if not isinstance(path, str):
        return "***"
    if not (path.isascii() and path.isprintable()):
        path = "".join(
            c if " " <= c < "\x7f" else c.encode("unicode_escape").decode() for c in path
        )
    base, question, query = path.partition("?")
    if not question:
        return path
    items: list[str] = []
    for item in query.split("&"):
        if not item:
            items.append(item)
            continue
        name, equals, _ = item.partition("=")
        items.append(f"{name}=***" if equals else "***")
    return f"{base}?{'&'.join(items)}"


class WireLogFilter(logging.Filter):
    """Keeps the handshake out of websockets' protocol logs, whatever their level.

    At DEBUG, websockets logs the request line and every header it sends or receives:
    query strings, cookies, credential subprotocols. Attached to the logger given to a
    websockets protocol, this filter passes records above DEBUG ("connection open",
    errors) and, at DEBUG, only frames and state changes. It is an allowlist, so a debug
    line that a later websockets adds is dropped rather than leaked::

        wire = logging.getLogger("lexicons.wire")
        wire.addFilter(WireLogFilter())
        ServerProtocol(logger=wire)
    """

    #: websockets' debug lines that carry nothing from the handshake but a status.
    SAFE = frozenset(
        {"= connection is %s", "< EOF", "> EOF", "> HTTP/1.1 %d %s", "< HTTP/1.1 %d %s"}
    )
    #: Its frame lines: passed only when the argument is a frame, not a header or a path.
    FRAMES = frozenset({"< %s", "> %s"})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            return True
        if record.msg in self.FRAMES:
            args = record.args
            return isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], Frame)
        return record.msg in self.SAFE
