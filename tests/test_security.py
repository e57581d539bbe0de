"""Trust (addresses, networks, proxies), origins and log redaction: units and properties."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from websockets.datastructures import Headers

from lexicons import security
from lexicons.errors import ConfigurationError
from lexicons.security import UNKNOWN, Origins, Trust, WireLogFilter, redact

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def test_exports() -> None:
    assert set(security.__all__) == {"UNKNOWN", "Origins", "Trust", "WireLogFilter", "redact"}
    assert all(hasattr(security, name) for name in security.__all__)


# --- strategies ------------------------------------------------------------------------------

ipv4 = st.ip_addresses(v=4)


def not_mapped(address: Address) -> bool:
    return not (isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped)


ipv6: st.SearchStrategy[Address] = st.ip_addresses(v=6).filter(not_mapped)
addresses = st.one_of(ipv4, ipv6)


@st.composite
def networks(draw: st.DrawFn, version: int | None = None) -> Network:
    v = version or draw(st.sampled_from([4, 6]))
    address = draw(ipv4 if v == 4 else ipv6)
    prefix = draw(st.integers(0, 32 if v == 4 else 128))
    return ipaddress.ip_network((address, prefix), strict=False)


def mapped_network(net: Network) -> ipaddress.IPv6Network:
    """The IPv4 network written in IPv4-mapped IPv6 form (``::ffff:a.b.c.d/96+n``)."""
    assert isinstance(net, ipaddress.IPv4Network)
    return ipaddress.IPv6Network((f"::ffff:{net.network_address}", 96 + net.prefixlen))


@st.composite
def entries(draw: st.DrawFn) -> list[str]:
    """Trust lists: addresses, networks, mapped-form networks and sometimes '*'."""
    items = draw(
        st.lists(
            st.one_of(
                addresses.map(str),
                networks().map(str),
                networks(4).map(lambda n: str(mapped_network(n))),
                st.just("*"),
            ),
            min_size=1,
            max_size=6,
        )
    )
    if "*" in items and draw(st.booleans()):  # keep "*" rarer than the rest
        items = [e for e in items if e != "*"] or ["10.0.0.0/8"]
    return items


def inside(address: Address, entry: str) -> bool:
    """Reference: is ``address`` inside the entry's network, checked with ipaddress only."""
    net = ipaddress.ip_network(entry, strict=False)
    if address.version == net.version:
        return address in net
    if isinstance(address, ipaddress.IPv4Address) and isinstance(net, ipaddress.IPv6Network):
        # An entry written in mapped form is an IPv4 network.
        return net.subnet_of(MAPPED) and ipaddress.IPv6Address(f"::ffff:{address}") in net
    return False


def reference_admits(address: Address, listed: list[str]) -> bool:
    return "*" in listed or any(inside(address, e) for e in listed if e != "*")


@st.composite
def address_near(draw: st.DrawFn, listed: list[str]) -> Address:
    """A random address, or (often) one inside a listed network, so both answers occur."""
    nets = [ipaddress.ip_network(e, strict=False) for e in listed if e != "*"]
    if not nets or draw(st.booleans()):
        return draw(addresses)
    net = draw(st.sampled_from(nets))
    offset = draw(st.integers(0, net.num_addresses - 1))
    address = net.network_address + offset
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# --- trust -----------------------------------------------------------------------------------


@FAST
@given(st.data())
def test_trust_admits_iff_star_or_inside_an_entry(data: st.DataObject) -> None:
    listed = data.draw(entries())
    address = data.draw(address_near(listed))
    assert Trust(listed).admits(str(address)) == reference_admits(address, listed)


@FAST
@given(entries(), ipv4)
def test_mapped_addresses_agree_with_their_ipv4_form(listed: list[str], address: Address) -> None:
    trust = Trust(listed + ["::/0"])  # even an IPv6 catch-all does not change the answer
    assert trust.admits(f"::ffff:{address}") == trust.admits(str(address))
    assert Trust(listed).admits(f"::ffff:{address}") == reference_admits(address, listed)


@FAST
@given(networks(4), ipv4)
def test_mapped_entries_are_ipv4_networks(net: ipaddress.IPv4Network, address: Address) -> None:
    assert Trust([str(mapped_network(net))]).admits(str(address)) == (address in net)


def test_trust_examples() -> None:
    trust = Trust(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"])
    assert trust.admits("10.1.2.3")
    assert trust.admits("::ffff:10.1.2.3")
    assert trust.admits("192.168.1.7")
    assert not trust.admits("192.168.1.8")
    assert trust.admits("2001:db8::1")
    assert not trust.admits("2001:db9::1")
    assert not trust.admits("::ffff:11.0.0.1")
    assert not Trust(["::/0"]).admits("10.0.0.1")  # IPv6 entries match IPv6 clients
    assert Trust(["10.0.0.5/24"]).admits("10.0.0.200")  # host bits are ignored
    assert Trust().admits("203.0.113.9") and Trust().everyone
    assert Trust("10.0.0.0/8").admits("10.0.0.1")  # one string is one entry
    assert Trust([ipaddress.ip_network("10.0.0.0/8")]).admits("10.0.0.1")  # type: ignore[list-item]


@pytest.mark.parametrize("bad", ["", "abc", UNKNOWN, "10.0.0.1:80", "1.2.3.4/32", None])
def test_unparseable_addresses_are_refused(bad: str) -> None:
    trust = Trust(["0.0.0.0/0", "::/0"])
    assert trust.admits(bad) is False
    assert Trust(["*"]).admits(bad) is True  # "*" admits every source, even unknown ones


@FAST
@given(st.text(max_size=60))
def test_admits_never_raises(text: str) -> None:
    assert Trust(["10.0.0.0/8", "::1"]).admits(text) in (True, False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"entries": ["10.0.0.0/8", "abc"]}, "trust: 'abc' is not an IP address or network"),
        ({"entries": ["localhost"]}, "trust: 'localhost' is not an IP address"),
        ({"entries": ["10.0.0.0/33"]}, "trust: '10.0.0.0/33'"),
        ({"entries": [42]}, "trust: 42 is not an IP address"),
        ({"entries": []}, "trust: the list is empty"),
        ({"proxies": ["10.0.0.1", "proxy.local"]}, "proxies: 'proxy.local' is not an IP"),
        ({"proxies": ["*"]}, "proxies: '*' would believe"),
    ],
)
def test_bad_settings_name_the_entry(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Trust(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


@FAST
@given(st.lists(st.text(max_size=20), max_size=4))
def test_arbitrary_entries_parse_or_name_the_bad_one(listed: list[str]) -> None:
    try:
        Trust(listed)
    except ConfigurationError as exc:
        assert str(exc).startswith("trust:")
        assert not listed or any(repr(e) in str(exc) for e in listed)


# --- forwarded addresses ---------------------------------------------------------------------

PROXIES = ["10.0.0.0/24", "fd00::/64"]
proxy_addresses = st.one_of(
    st.integers(0, 255).map(lambda i: ipaddress.IPv4Address(f"10.0.0.{i}")),
    st.integers(0, 2**64 - 1).map(lambda i: ipaddress.IPv6Address("fd00::") + i),
)
#: What a header value may hold (websockets refuses anything else), with forwarded-like
#: fragments mixed in so that the parser's corners are reached.
header_text = st.lists(
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0x80, max_codepoint=0xFF),
        st.sampled_from(["\t", "for=", "For=", '"', "\\", "[", "]", ":", ",", ";", "=", "_x"]),
        st.sampled_from(["1.2.3.4", "::1", "10.0.0.3", "fd00::5", "::ffff:10.0.0.4", "unknown"]),
    ),
    max_size=12,
).map("".join)
forwarded_pairs = st.lists(
    st.tuples(st.sampled_from(["X-Forwarded-For", "Forwarded", "x-forwarded-for"]), header_text),
    max_size=3,
)


def hop_text(address: Address, port: int | None, style: str) -> str:
    if style == "xff":
        if port is None:
            return str(address)
        return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
    node = f"[{address}]" if address.version == 6 else str(address)
    if port is not None:
        node += f":{port}"
    quote_it = address.version == 6 or port is not None
    return f'for="{node}"' if quote_it else f"for={node}"


@st.composite
def forwarded_headers(draw: st.DrawFn, chain: list[Address]) -> Headers:
    """The chain written as X-Forwarded-For, Forwarded, or both, in realistic spellings."""
    styles = draw(st.sampled_from([("xff",), ("fwd",), ("xff", "fwd")]))
    ports = [draw(st.none() | st.integers(1, 65535)) for _ in chain]
    pairs: list[tuple[str, str]] = []
    if "xff" in styles:
        items = [hop_text(a, p, "xff") for a, p in zip(chain, ports, strict=True)]
        split = draw(st.integers(0, len(items)))  # sometimes as two header lines
        for part in (items[:split], items[split:]):
            if part:
                pairs.append(("X-Forwarded-For", ", ".join(part)))
    if "fwd" in styles:
        elements = []
        for a, p in zip(chain, ports, strict=True):
            extra = draw(st.sampled_from(["", ";proto=https", "proto=http;", ";by=_hidden"]))
            text = hop_text(a, p, "fwd")
            elements.append(extra + text if extra.endswith(";") else text + extra)
        pairs.append(("Forwarded", ",".join(elements)))
    return Headers(pairs)


def expected_client(chain: list[Address], proxies: Trust) -> str:
    for address in reversed(chain):
        if not proxies.is_proxy(str(address)):
            return str(address)
    return str(chain[0])


@FAST
@given(st.data())
def test_forwarded_rule_takes_the_rightmost_untrusted_hop(data: st.DataObject) -> None:
    trust = Trust(["*"], proxies=PROXIES)
    peer = data.draw(proxy_addresses)
    chain = data.draw(st.lists(st.one_of(addresses, proxy_addresses), min_size=1, max_size=5))
    headers = data.draw(forwarded_headers(chain))
    assert trust.client_address(str(peer), headers) == expected_client(chain, trust)


@FAST
@given(addresses, forwarded_pairs)
def test_forwarded_headers_change_nothing_unless_the_peer_is_a_trusted_proxy(
    peer: Address, pairs: list[tuple[str, str]]
) -> None:
    assume(not any(peer in net for net in map(ipaddress.ip_network, PROXIES)))
    trust = Trust(["192.0.2.0/24"], proxies=PROXIES)
    assert trust.client_address(str(peer), Headers(pairs)) == str(peer)
    assert trust.client_address(str(peer), Headers()) == str(peer)


@FAST
@given(forwarded_pairs)
def test_arbitrary_forwarded_text_never_raises(pairs: list[tuple[str, str]]) -> None:
    trust = Trust(["192.0.2.0/24"], proxies=PROXIES)
    address = trust.client_address("10.0.0.1", Headers(pairs))
    assert address == UNKNOWN or ipaddress.ip_address(address)
    assert trust.admits(address) in (True, False)


@pytest.mark.parametrize(
    ("peer", "pairs", "expected"),
    [
        ("203.0.113.5", [("X-Forwarded-For", "1.2.3.4")], "203.0.113.5"),  # not a proxy
        ("10.0.0.2", [], "10.0.0.2"),  # a proxy sending no forwarded header
        ("10.0.0.2", [("X-Forwarded-For", "")], "10.0.0.2"),
        ("10.0.0.2", [("X-Forwarded-For", "1.2.3.4")], "1.2.3.4"),
        ("::ffff:10.0.0.2", [("X-Forwarded-For", "1.2.3.4")], "1.2.3.4"),  # mapped proxy
        ("10.0.0.2", [("X-Forwarded-For", "6.6.6.6, 1.2.3.4, 10.0.0.3")], "1.2.3.4"),
        ("10.0.0.2", [("X-Forwarded-For", "10.0.0.9, 10.0.0.3")], "10.0.0.9"),  # all proxies
        ("10.0.0.2", [("X-Forwarded-For", "1.2.3.4:5555")], "1.2.3.4"),
        ("10.0.0.2", [("X-Forwarded-For", "::ffff:1.2.3.4")], "1.2.3.4"),
        ("10.0.0.2", [("X-Forwarded-For", "1.2.3.4, garbage")], UNKNOWN),  # fail closed
        ("10.0.0.2", [("X-Forwarded-For", "1.2.3.4, unknown")], UNKNOWN),
        ("10.0.0.2", [("Forwarded", 'for="[2001:db8:cafe::17]:4711"')], "2001:db8:cafe::17"),
        ("10.0.0.2", [("Forwarded", "For=192.0.2.60;proto=http;by=203.0.113.43")], "192.0.2.60"),
        ("10.0.0.2", [("Forwarded", "for=1.1.1.1, for=2.2.2.2;proto=https")], "2.2.2.2"),
        ("10.0.0.2", [("Forwarded", "for=_hidden")], UNKNOWN),
        ("10.0.0.2", [("Forwarded", 'for="1.2.3.4')], UNKNOWN),  # unclosed quote
        ("10.0.0.2", [("Forwarded", "proto=https")], UNKNOWN),  # no for=
        ("10.0.0.2", [("Forwarded", "for=1.2.3.4;for=5.6.7.8")], UNKNOWN),
        # RFC 7239 wants brackets quoted; the proxy wrote it, so read it leniently.
        ("10.0.0.2", [("Forwarded", "for=[2001:db8::1]")], "2001:db8::1"),
        # Both headers present and naming different clients: we cannot tell which is real.
        ("10.0.0.2", [("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for=5.6.7.8")], UNKNOWN),
        ("10.0.0.2", [("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for=1.2.3.4")], "1.2.3.4"),
        ("unix-socket", [("X-Forwarded-For", "1.2.3.4")], "unix-socket"),
    ],
)
def test_client_address_examples(peer: str, pairs: list[tuple[str, str]], expected: str) -> None:
    trust = Trust(["*"], proxies=["10.0.0.0/24"])
    assert trust.client_address(peer, Headers(pairs)) == expected


def test_unknown_client_is_refused_unless_star() -> None:
    headers = Headers([("X-Forwarded-For", "1.2.3.4, garbage")])
    listed = Trust(["10.0.0.0/8"], proxies=["10.0.0.2"])
    address = listed.client_address("10.0.0.2", headers)
    assert address == UNKNOWN
    assert not listed.admits(address)  # the proxy's own (trusted) address is not used instead
    assert Trust(["*"], proxies=["10.0.0.2"]).admits(address)


# --- origins ---------------------------------------------------------------------------------

DEFAULTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
hosts = st.sampled_from(
    ["example.com", "EXAMPLE.com", "a.example.com", "localhost", "127.0.0.1", "[::1]", "[0::1]"]
)
schemes = st.sampled_from(["http", "https", "HTTPS", "ws", "wss", "app"])
ports = st.none() | st.sampled_from([80, 443, 3000, 5000, 8443])


def norm_host(host: str) -> str:
    if host.startswith("["):
        return f"[{ipaddress.IPv6Address(host[1:-1])}]"
    return host.lower()


def with_port(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"


@FAST
@given(schemes, hosts, ports, hosts, ports, st.booleans())
def test_same_origin_rule(
    scheme: str,
    origin_host: str,
    origin_port: int | None,
    host: str,
    host_port: int | None,
    secure: bool,
) -> None:
    origin = f"{scheme}://{with_port(origin_host, origin_port)}"
    o_port = origin_port if origin_port is not None else DEFAULTS.get(scheme.lower())
    if host_port is not None:
        h_port: int | None = host_port
    else:
        h_port = 443 if secure else DEFAULTS.get(scheme.lower())
    expected = (
        o_port is not None and norm_host(origin_host) == norm_host(host) and o_port == h_port
    )
    assert Origins().admits(origin, with_port(host, host_port), secure) == expected


@pytest.mark.parametrize(
    ("origin", "host", "secure", "expected"),
    [
        ("https://x", "x", False, True),  # behind a TLS proxy
        ("https://x", "x", True, True),
        ("http://x", "x", False, True),
        ("http://x", "x", True, False),  # the socket is on 443, the page on 80
        ("https://x:443", "x", False, True),
        ("http://x:8000", "x:8000", False, True),
        ("http://localhost:3000", "localhost:5000", False, False),
        ("https://evil.example", "x", False, False),
        ("https://X", "x", False, True),
        ("https://x.", "x", False, False),
        ("http://[::1]:8000", "[0:0::1]:8000", False, True),
        ("null", "x", False, False),
        ("", "x", False, False),
        ("https://x/", "x", False, False),  # an Origin never has a path
        ("https://x", None, False, False),  # no Host: nothing to compare with
        ("https://x", "x:99999", False, False),
        (None, None, False, True),  # no Origin: not a browser
    ],
)
def test_same_origin_examples(
    origin: str | None, host: str | None, secure: bool, expected: bool
) -> None:
    assert Origins().admits(origin, host, secure) is expected


@FAST
@given(
    st.lists(st.tuples(schemes, hosts, ports), min_size=1, max_size=4),
    st.tuples(schemes, hosts, ports),
    st.booleans(),
)
def test_listed_origins(
    listed: list[tuple[str, str, int | None]], candidate: tuple[str, str, int | None], pick: bool
) -> None:
    def text(o: tuple[str, str, int | None]) -> str:
        return f"{o[0]}://{with_port(o[1], o[2])}"

    def key(o: tuple[str, str, int | None]) -> tuple[str, str, int | None]:
        return (
            o[0].lower(),
            norm_host(o[1]),
            o[2] if o[2] is not None else DEFAULTS.get(o[0].lower()),
        )

    if pick:
        candidate = listed[0]
    origins = Origins([text(o) for o in listed])
    expected = key(candidate) in {key(o) for o in listed}
    assert origins.admits(text(candidate), "unrelated.host", False) == expected


def test_null_origin_is_refused_and_star_allows_everything() -> None:
    assert not Origins().admits("null", "x", False)
    assert not Origins(["https://x"]).admits("null", "x", False)
    star = Origins(["*"])
    assert star.admits("null", "x", False)
    assert star.admits("https://evil.example", "x", False)
    assert not Origins(["https://x"]).admits("https://x.evil.example", "x", False)
    assert Origins(["https://x/"]).admits("https://x", None, False)  # a trailing slash is fine


@FAST
@given(st.one_of(st.none(), st.lists(st.sampled_from(["*", "https://a.example"]))), hosts)
def test_missing_origin_always_passes(allowed: list[str] | None, host: str) -> None:
    assert Origins(allowed).admits(None, host, False)


@FAST
@given(st.text(max_size=40), st.none() | st.text(max_size=40), st.booleans())
def test_arbitrary_origin_and_host_text_never_raise(
    origin: str, host: str | None, secure: bool
) -> None:
    for origins in (Origins(), Origins(["https://x", "http://localhost:3000"])):
        assert origins.admits(origin, host, secure) in (True, False)


@FAST
@given(st.lists(st.text(max_size=30), max_size=3))
def test_arbitrary_origin_entries_parse_or_name_the_bad_one(listed: list[str]) -> None:
    try:
        Origins(listed)
    except ConfigurationError as exc:
        assert str(exc).startswith("origins:")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("null", "origins: 'null' is sent by sandboxed frames"),
        ("example.com", "origins: 'example.com' is not an origin"),
        ("https://x/app", "origins: 'https://x/app' is not an origin"),
        ("https://x:99999", "origins: 'https://x:99999'"),
        ("https://user@x", "origins: 'https://user@x'"),
        (42, "origins: 42 is not an origin"),
    ],
)
def test_bad_origins_name_the_entry(entry: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Origins(["https://ok.example", entry])  # type: ignore[list-item]
    assert message in str(info.value)


# --- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/chat?Login=secret&x=1", "/chat?Login=***&x=***"),
        ("/chat", "/chat"),
        ("/?token", "/?***"),  # an item without "=" may be the value itself
        ("/?a=&b=c=d", "/?a=***&b=***"),
        ("/?a=1&&b=2", "/?a=***&&b=***"),
        ("/?", "/?"),
    ],
)
def test_redact_examples(path: str, expected: str) -> None:
    assert redact(path) == expected


@FAST
@given(st.lists(st.tuples(st.text(min_size=1), st.text(min_size=1)), min_size=1, max_size=4))
def test_redact_hides_every_value(pairs: list[tuple[str, str]]) -> None:
    path = "/chat?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    redacted = redact(path)
    assert [v for _, v in parse_qsl(redacted.partition("?")[2])] == ["***"] * len(pairs)
    assert [k for k, _ in parse_qsl(redacted.partition("?")[2])] == [k for k, _ in pairs]


@FAST
@given(st.text())
def test_redact_never_shows_anything_after_an_equals_sign(path: str) -> None:
    shown = redact(path)
    assert shown.isascii() and shown.isprintable()  # nothing can forge a log line
    base, question, query = shown.partition("?")
    original = path.partition("?")[0]
    assert "\\" in original or base.encode().decode("unicode_escape") == original
    for item in query.split("&") if question else []:
        name, equals, value = item.partition("=")
        assert item in ("", "***") or (equals and value == "***" and "=" not in name)


# --- websockets' protocol logs --------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)  # fills exc_text, so a secret in a traceback is seen too
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in self.records)


@pytest.fixture
def wire() -> Iterator[tuple[logging.Logger, Records]]:
    """A DEBUG logger with the filter, as a websockets protocol would be given."""
    logger = logging.getLogger("lexicons.test_wire")
    logger.setLevel(logging.DEBUG)
    logger.addFilter(WireLogFilter())
    records = Records()
    logger.addHandler(records)
    yield logger, records
    logger.removeHandler(records)
    logger.filters.clear()


def test_wire_filter_keeps_the_handshake_out_of_websockets_debug_logs(
    wire: tuple[logging.Logger, Records],
) -> None:
    from websockets.client import ClientProtocol
    from websockets.server import ServerProtocol
    from websockets.uri import parse_uri

    from lexicons.headers import subprotocol_credential

    logger, records = wire
    client = ClientProtocol(
        parse_uri("ws://example.com/?Login=S3crQuery"),
        subprotocols=["lexicons", subprotocol_credential("Login", "S3crOffer")],  # type: ignore[list-item]
        logger=logger,
    )
    server = ServerProtocol(select_subprotocol=lambda _, offered: "lexicons", logger=logger)
    request = client.connect()
    request.headers["Cookie"] = "Login=S3crCookie"
    request.headers["Login"] = "S3crHeader"
    client.send_request(request)
    server.receive_data(b"".join(client.data_to_send()))
    (received,) = server.events_received()
    server.send_response(server.accept(received))
    client.receive_data(b"".join(server.data_to_send()))
    client.send_text(b'{"whoami": {}}')
    server.receive_data(b"".join(client.data_to_send()))
    broken = ServerProtocol(logger=logger)  # a request line websockets cannot parse
    broken.receive_data(b"GET /?Login=S3crBroken HTTP/1.0\r\nLogin: S3crBroken\r\n\r\n")

    text = records.text()
    assert "S3cr" not in text
    lines = [r.getMessage() for r in records.records]
    assert "> HTTP/1.1 101 Switching Protocols" in lines  # status lines, state, frames pass
    assert "= connection is OPEN" in lines
    assert any(line.startswith("< TEXT '{\"whoami\": {}}'") for line in lines)


@pytest.mark.parametrize(
    ("level", "msg", "args", "passes"),
    [
        (logging.DEBUG, "< %s: %s", ("Cookie", "S3cr"), False),  # a header line
        (logging.DEBUG, "< %s %s %s", ("GET", "/?Login=S3cr", "HTTP/1.1"), False),
        (logging.DEBUG, "< %s", ("/?Login=S3cr",), False),  # a frame line without a frame
        (logging.DEBUG, "something websockets adds later %s", ("S3cr",), False),
        (logging.DEBUG, "= connection is %s", ("OPEN",), True),
        (logging.INFO, "connection open", (), True),
        (logging.ERROR, "opening handshake failed", (), True),
    ],
)
def test_wire_filter_is_an_allowlist_at_debug(
    level: int, msg: str, args: tuple[object, ...], passes: bool
) -> None:
    record = logging.LogRecord("lexicons.wire", level, __file__, 1, msg, args, None)
    assert WireLogFilter().filter(record) is passes
