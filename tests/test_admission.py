"""Admission: trust, then origin, then headers, then gate; the order is the security."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logcapture import Capture
from websockets.datastructures import Headers
from websockets.http11 import Request

from lexicons import admission as module
from lexicons.admission import Admission, admit, admit_now
from lexicons.handlers import Handler, inspect_handler
from lexicons.headers import subprotocol_credential
from lexicons.security import Origins, Trust

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_exports() -> None:
    assert set(module.__all__) == {"Admission", "Checks", "admit", "admit_now"}


class Recorder:
    """The network layer's ``call``: runs a header and records what reached it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, handler: Handler, kwargs: dict[str, Any]) -> Any:
        self.calls.append((handler.name, dict(kwargs)))
        return handler.call(kwargs, None, None, None)


def check(name: str, expected: str | None = None) -> Handler:
    """A header that passes when it receives ``expected`` (or anything, when None)."""

    def header(header: str) -> bool:
        return expected is None or header == expected

    return inspect_handler(header, name)


async def run(
    path: str = "/",
    *pairs: tuple[str, str],
    peer: str = "192.0.2.1",
    trust: Trust | None = None,
    origins: Origins | None = None,
    headers: list[Handler] | None = None,
    gate: Callable[[list[bool]], Any] = all,
    call: Recorder | None = None,
    secure: bool = False,
) -> Admission:
    return await admit(
        Request(path, Headers(list(pairs))),
        peer=peer,
        trust=trust or Trust(),
        origins=origins or Origins(),
        headers=headers or [],
        gate=gate,
        call=call or Recorder(),
        secure=secure,
    )


async def test_admitted_with_no_headers() -> None:
    result = await run("/", ("Host", "example.com"))
    assert result == Admission(True, 101, "admitted", "192.0.2.1", ())


async def test_untrusted_source_is_refused_before_anything_runs() -> None:
    call = Recorder()
    result = await run(
        "/?Login=x",
        ("Host", "x"),
        trust=Trust(["10.0.0.0/8"]),
        headers=[check("Login")],
        call=call,
    )
    assert (result.allowed, result.status, result.reason) == (False, 403, "untrusted address")
    assert result.address == "192.0.2.1" and call.calls == []


async def test_forwarded_address_is_what_trust_checks() -> None:
    trust = Trust(["203.0.113.0/24"], proxies=["10.0.0.2"])
    forwarded = ("X-Forwarded-For", "6.6.6.6, 203.0.113.7")
    assert (await run("/", forwarded, peer="10.0.0.2", trust=trust)).address == "203.0.113.7"
    assert (await run("/", forwarded, peer="10.0.0.2", trust=trust)).allowed
    spoofed = ("X-Forwarded-For", "203.0.113.7")
    assert not (await run("/", spoofed, peer="198.51.100.1", trust=trust)).allowed


async def test_disallowed_origin_is_refused_before_headers_run() -> None:
    call = Recorder()
    result = await run(
        "/",
        ("Host", "bank.example"),
        ("Origin", "https://evil.example"),
        ("Cookie", "Login=session"),
        headers=[check("Login")],
        call=call,
    )
    assert (result.allowed, result.status, result.reason) == (False, 403, "origin not allowed")
    assert call.calls == [] and result.outcomes == ()


async def test_several_origin_headers_are_refused() -> None:
    result = await run(
        "/",
        ("Host", "x"),
        ("Origin", "https://x"),
        ("Origin", "https://x"),
        origins=Origins(["*"]),
    )
    assert result.reason == "origin not allowed"


async def test_gate_refusal_detail() -> None:
    def Boom(header: str) -> bool:
        raise RuntimeError("backend unavailable")

    headers = [check("Login", "ok"), inspect_handler(Boom, "Boom"), check("Token")]
    result = await run("/?Login=no&Boom=1", ("Host", "x"), headers=headers)
    assert (result.allowed, result.status, result.reason) == (False, 403, "refused by gate")
    assert [o.passed for o in result.outcomes] == [False, False, False]
    assert result.detail == (
        "refused by gate (Login: returned False; Boom: raised RuntimeError: backend "
        "unavailable; Token: not sent; gate refused [False, False, False])"
    )
    admitted = await run("/?Login=no", ("Host", "x"), headers=headers[:1], gate=lambda r: True)
    assert admitted.allowed and admitted.detail == "admitted (Login: returned False)"


async def test_admission_of_sync_headers_never_suspends() -> None:
    """With only sync header functions, the coroutine finishes on its first step.

    The network layer relies on this to admit without creating a task.
    """
    coro = admit(
        Request("/?Login=ok", Headers([("Host", "x")])),
        peer="127.0.0.1",
        trust=Trust(),
        origins=Origins(),
        headers=[check("Login", "ok")],
        gate=all,
        call=Recorder(),
        secure=False,
    )
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    assert done.value.value.allowed


async def test_admit_now_answers_without_a_coroutine_when_it_can() -> None:
    def now(headers: list[Handler]) -> Any:
        return admit_now(
            Request("/?Login=ok&Later=ok", Headers([("Host", "x")])),
            peer="127.0.0.1",
            trust=Trust(),
            origins=Origins(),
            headers=headers,
            gate=all,
            call=Recorder(),
            secure=False,
        )

    async def Later(header: str) -> bool:
        return header == "ok"

    def Wrapped(header: str) -> Any:  # a sync function handing back a coroutine
        return Later(header)

    direct = now([check("Login", "ok")])
    assert isinstance(direct, Admission) and direct.allowed
    for second in (inspect_handler(Later, "Later"), inspect_handler(Wrapped, "Later")):
        pending = now([check("Login", "ok"), second, check("Login", "no")])
        assert not isinstance(pending, Admission)
        result = await pending
        assert [o.passed for o in result.outcomes] == [True, True, False]
        assert not result.allowed


async def test_refusals_are_logged_with_address_and_redacted_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lexicons")
    secret = "S3crQueryPassword"
    await run(f"/chat?Login={secret}&room=1", trust=Trust(["10.0.0.0/8"]), peer="192.0.2.9")
    await run(f"/chat?Login={secret}", ("Host", "x"), ("Origin", "https://evil.example"))
    await run(f"/chat?Login={secret}", ("Host", "x"), headers=[check("Login", "other")])
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("refused 192.0.2.9 /chat?Login=***&room=***: untrusted address")
    assert "origin 'https://evil.example' is not this server's own" in lines[1]
    assert lines[2].startswith("refused 192.0.2.1 /chat?Login=***: refused by gate")
    assert secret not in caplog.text


#: How a log line names the setting that allows an origin.
ORIGINS_SETTING = ("origins setting", "--origins", "LEXICONS_ORIGINS", "Server(origins=[...])")


@pytest.mark.parametrize(
    ("origins", "said"),
    [
        (None, "is not this server's own (Host 'localhost:5000')"),
        (["https://app.example"], "is not in the origins setting"),
    ],
)
async def test_an_origin_refusal_names_the_setting_that_allows_it(
    origins: list[str] | None, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A page from another origin sees only close code 1006: the log line must say why
    and how to allow it."""
    caplog.set_level(logging.INFO, logger="lexicons")
    page = ("Origin", "http://localhost:3000")
    result = await run("/", ("Host", "localhost:5000"), page, origins=Origins(origins))
    assert not result.allowed
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("refused 192.0.2.1 /: origin 'http://localhost:3000' " + said)
    assert all(name in line for name in ORIGINS_SETTING)


@pytest.mark.parametrize("hosts", [[], ["localhost:5000", "localhost:5000"]])
async def test_an_origin_refused_for_want_of_one_host_says_so(
    hosts: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lexicons")
    pairs = [("Host", host) for host in hosts]
    result = await run("/", *pairs, ("Origin", "http://localhost:5000"))
    assert not result.allowed
    (line,) = [r.getMessage() for r in caplog.records]
    assert "is not this server's own (no single Host header)" in line
    assert all(name in line for name in ORIGINS_SETTING)


async def test_an_untrusted_address_refusal_names_the_trust_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await run("/", ("Host", "x"), trust=Trust(["10.0.0.0/8"]), peer="192.0.2.9")
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("refused 192.0.2.9 /: untrusted address")
    for name in ("--trust", "LEXICONS_TRUST", "Server(trust=[...])"):
        assert name in line


# --- properties ---------------------------------------------------------------------------------


#: Any header value a request can carry (what websockets' parser lets through).
header_values = st.text(
    st.sampled_from("\t")
    | st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=2000,
)


@FAST
@given(origin=header_values, host=st.none() | header_values)
async def test_a_refused_origin_is_one_short_log_line_whatever_was_sent(
    origin: str, host: str | None
) -> None:
    """The Origin and Host of a refused handshake are the client's words: escaped, cut,
    and never able to start a second log line."""
    pairs = [("Origin", origin)] + ([] if host is None else [("Host", host)])
    with Capture() as lines:
        result = await run("/", *pairs)
    if result.allowed:
        return
    (line,) = lines
    assert len(line.splitlines()) == 1 and len(line) < 700


hosts = st.sampled_from(["bank.example", "BANK.example:443", "bank.example:8443", "evil.example"])
origin_values = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "https://bank.example",
            "http://bank.example",
            "https://bank.example:8443",
            "https://evil.example",
            "https://bank.example.evil.example",
            "null",
            "",
            "bank.example",
        ]
    ),
)
origin_settings = st.one_of(
    st.none(),
    st.lists(st.sampled_from(["https://bank.example", "https://app.example", "*"]), max_size=2),
)


@FAST
@given(
    origin_settings,
    origin_values,
    st.none() | hosts,
    st.booleans(),
    st.lists(st.sampled_from(["Login", "Session", "Token"]), min_size=1, max_size=3, unique=True),
    st.sampled_from([all, any, lambda r: True]),
)
async def test_cookie_values_never_reach_headers_when_the_origin_is_refused(
    allowed: list[str] | None,
    origin: str | None,
    host: str | None,
    secure: bool,
    names: list[str],
    gate: Callable[[list[bool]], Any],
) -> None:
    """No value read from a cookie reaches a header function unless the Origin is allowed.

    Every registered header has a value in a cookie, so the property fails as soon as
    headers run before (or without) the origin check.
    """
    origins = Origins(allowed)
    pairs = [("Cookie", "; ".join(f"{name}=cookie-{name}" for name in names))]
    if host is not None:
        pairs.append(("Host", host))
    if origin is not None:
        pairs.append(("Origin", origin))
    call = Recorder()
    result = await run(
        "/",
        *pairs,
        origins=origins,
        headers=[check(name) for name in names],
        gate=gate,
        call=call,
        secure=secure,
    )
    if not origins.admits(origin, host, secure):
        assert call.calls == []
        assert (result.allowed, result.reason) == (False, "origin not allowed")
    else:
        assert call.calls == [(name, {"header": f"cookie-{name}"}) for name in names]
        assert result.allowed is bool(gate([True] * len(names)))


BEHAVIOURS = ("true", "false", "raise", "invalid", "async_true", "async_false")
SOURCES = ("header", "cookie", "subprotocol", "query")


def place(name: str, value: str, source: str) -> tuple[str, list[tuple[str, str]]]:
    """Where a client puts ``value`` for header ``name``: (query item, headers)."""
    if source == "header":
        return "", [(name, value)]
    if source == "cookie":
        return "", [("Cookie", f"{name}={quote(value, safe='')}")]
    if source == "subprotocol":
        return "", [("Sec-WebSocket-Protocol", f"lexicons, {subprotocol_credential(name, value)}")]
    return f"{name}={quote(value, safe='')}", []


def build(placed: list[tuple[str, list[tuple[str, str]]]]) -> Request:
    query = "&".join(q for q, _ in placed if q)
    pairs = [p for _, ps in placed for p in ps]
    return Request("/live" + (f"?{query}" if query else ""), Headers(pairs))


@FAST
@given(
    st.lists(
        st.tuples(st.sampled_from(BEHAVIOURS), st.booleans(), st.sampled_from(SOURCES)), max_size=5
    ),
    st.sampled_from(
        [all, any, lambda r: sum(r) >= 2, lambda r: not r or r[0], lambda r: r[3], lambda r: r]
    ),
)
async def test_admitted_iff_gate_of_results(
    spec: list[tuple[str, bool, str]], gate: Callable[[list[bool]], Any]
) -> None:
    """End to end: absent, raising and invalid headers count as False; a raising gate rejects."""
    handlers: list[Handler] = []
    placed = []
    expected: list[bool] = []
    for i, (behaviour, sent, source) in enumerate(spec):
        handlers.append(inspect_handler(_behaving(behaviour), f"H{i}"))
        if sent:
            value = '{"n": "x"}' if behaviour == "invalid" else "v"
            placed.append(place(f"H{i}", value, source))
        expected.append(sent and behaviour in ("true", "async_true"))
    try:
        verdict = bool(gate(expected))
    except Exception:
        verdict = False
    request = build(placed)
    result = await admit(
        request,
        peer="::1",
        trust=Trust(),
        origins=Origins(),
        headers=handlers,
        gate=gate,
        call=Recorder(),
        secure=False,
    )
    assert [o.passed for o in result.outcomes] == expected
    assert result.allowed is verdict
    assert result.status == (101 if verdict else 403)


def _behaving(behaviour: str) -> Callable[..., Any]:
    if behaviour == "invalid":

        def typed(n: int) -> bool:
            return True

        return typed
    if behaviour.startswith("async"):

        async def coroutine(header: str) -> bool:
            return behaviour == "async_true"

        return coroutine

    def plain(header: str) -> bool:
        if behaviour == "raise":
            raise RuntimeError("no")
        return behaviour == "true"

    return plain


@FAST
@given(
    st.from_regex(r"S3cr[A-Za-z0-9]{8,16}", fullmatch=True),
    st.sampled_from(SOURCES),
    st.sampled_from(["untrusted", "origin", "false", "raise", "invalid", "admitted"]),
)
async def test_no_log_line_or_reason_holds_a_credential(
    secret: str, source: str, case: str
) -> None:
    def Login(header: str) -> bool:
        if case == "raise":
            raise ValueError(f"unknown password {header!r} ({header})")
        return case == "admitted"

    def Typed(role: int) -> bool:
        return True

    handler = inspect_handler(Typed if case == "invalid" else Login, "Login")
    value = f'{{"role": "{secret}"}}' if case == "invalid" else secret
    request = build([place("Login", value, source)])
    if case == "origin":
        request.headers["Origin"] = "https://evil.example"
    request.headers["Host"] = "bank.example"
    with Capture() as lines:
        result = await admit(
            request,
            peer="192.0.2.1",
            trust=Trust(["10.0.0.0/8"] if case == "untrusted" else ["*"]),
            origins=Origins(),
            headers=[handler],
            gate=all,
            call=Recorder(),
            secure=False,
        )
    assert result.allowed is (case == "admitted")
    assert lines, "every refusal is logged"
    assert not [line for line in lines if secret in line]
    assert secret not in result.reason and secret not in result.detail
