"""Handshake headers: where a value is found, how it is parsed, running headers, the gate."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Literal
from urllib.parse import quote

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logcapture import Capture
from websockets.datastructures import Headers
from websockets.http11 import Request

from lexicons import headers as module
from lexicons.errors import ConfigurationError, InvalidPayload, RegistrationError
from lexicons.handlers import Handler, inspect_handler
from lexicons.headers import (
    SUBPROTOCOL,
    Header,
    HeaderOutcome,
    HeaderRegistry,
    check_gate,
    find_value,
    gate_admits,
    header_arguments,
    run_headers,
    run_headers_now,
    scrub,
    select_subprotocol,
    subprotocol_credential,
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def request(path: str = "/", *pairs: tuple[str, str]) -> Request:
    return Request(path, Headers(list(pairs)))


def test_exports() -> None:
    assert all(hasattr(module, name) for name in module.__all__)
    assert {"Header", "SUBPROTOCOL", "find_value", "run_headers", "gate_admits"} <= set(
        module.__all__
    )


# --- strategies ------------------------------------------------------------------------------

#: Text without lone surrogates (anything a client can encode as UTF-8).
texts = st.text(st.characters(codec="utf-8"), max_size=40)
#: Text a header value can hold (websockets refuses control characters).
header_texts = st.text(
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0xA0, max_codepoint=0xFF),
    ),
    max_size=40,
)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True)


@st.composite
def recased(draw: st.DrawFn, name: str) -> str:
    """``name`` with each letter's case chosen at random: sources ignore case."""
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)


# --- registration ----------------------------------------------------------------------------


def test_registry_names_and_order() -> None:
    registry = HeaderRegistry()

    def Login(ws: Any, user: str) -> bool:
        return True

    class Token(Header):
        def execute(self, ws: Any = None, sv: Any = None, db: Any = None, **kw: Any) -> bool:
            return True

    class Named(Header):
        name = "Api-Key"

        def execute(self, ws: Any = None, sv: Any = None, db: Any = None, **kw: Any) -> bool:
            return True

    registry.add(Login)
    registry.add(Token)
    registry.add(Named())
    registry.add(lambda header: True, "Session")
    assert list(registry) == ["Login", "Token", "Api-Key", "Session"]
    assert [h.name for h in registry.handlers] == list(registry)
    assert len(registry) == 4 and registry["Token"].name == "Token"


def test_registry_refuses_bad_headers() -> None:
    registry = HeaderRegistry()
    registry.add(lambda header: True, "Login")
    with pytest.raises(RegistrationError, match="already registered as 'Login'"):
        registry.add(lambda header: True, "LOGIN")
    with pytest.raises(RegistrationError, match="must be an HTTP token"):
        registry.add(lambda header: True, "Lo gin")
    with pytest.raises(RegistrationError, match="must be an HTTP token"):
        registry.add(lambda header: True, "Anmeldung\u00e4")

    class Empty(Header):
        pass

    with pytest.raises(RegistrationError, match="define execute"):
        registry.add(Empty)
    with pytest.raises(RegistrationError, match="needs a name"):
        registry.add(functools.partial(token))
    with pytest.raises(NotImplementedError):
        Header().execute()


# --- finding a value -------------------------------------------------------------------------


def test_subprotocol_encoding() -> None:
    assert (
        subprotocol_credential("Login", '{"user":"ada"}') == "lexicons.Login.eyJ1c2VyIjoiYWRhIn0"
    )
    assert subprotocol_credential("T", "") == "lexicons.T."
    with pytest.raises(ValueError, match="not an HTTP token"):
        subprotocol_credential("a b", "x")


@FAST
@given(st.lists(st.one_of(st.just(SUBPROTOCOL), st.builds(subprotocol_credential, names, texts))))
def test_the_selected_subprotocol_is_never_a_credential(offered: list[str]) -> None:
    selected = select_subprotocol(offered)
    assert selected == (SUBPROTOCOL if SUBPROTOCOL in offered else None)


def test_find_value_sources() -> None:
    token = subprotocol_credential("login", "from-subprotocol")
    assert find_value("Login", request("/", ("LOGIN", "from-header"))) == "from-header"
    assert find_value("Login", request("/", ("Cookie", "a=1; login=from%20cookie"))) == (
        "from cookie"
    )
    assert find_value("Login", request("/", ("Sec-WebSocket-Protocol", f"lexicons, {token}"))) == (
        "from-subprotocol"
    )
    assert find_value("Login", request("/chat?x=1&LoGiN=from%20query%2B")) == "from query+"
    assert find_value("Login", request("/chat?x=1", ("Cookie", "other=1"))) is None


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        ('broken"; =; ;;Login="quoted"', "quoted"),  # malformed pairs before ours
        ("Login=a+b%2Bc%3D", "a+b+c="),  # "+" stays "+" (no form decoding)
        ("Login=%E2%82%AC%ZZ", "\u20ac%ZZ"),  # bad escapes are left as they are
        ("x=1;Login=first;Login=second", "first"),
        ("Login", None),  # no "=": not a cookie of that name
        ("Login=", ""),
    ],
)
def test_cookies_are_parsed_tolerantly(cookie: str, expected: str | None) -> None:
    assert find_value("Login", request("/", ("Cookie", cookie))) == expected


def test_cookie_headers_are_all_read() -> None:
    assert find_value("b", request("/", ("Cookie", "a=1"), ("Cookie", "b=2"))) == "2"


def test_undecodable_subprotocol_tokens_are_skipped() -> None:
    offered = "lexicons.Login.a, lexicons.Login.!!, lexicons.Login.__8, lexicons.Login.gA"
    # "a" has an impossible length, "!!" is not base64url, "__8" and "gA" are not UTF-8.
    req = request("/?Login=from-query", ("Sec-WebSocket-Protocol", offered))
    assert find_value("Login", req) == "from-query"
    valid = subprotocol_credential("Login", "ok")
    req = request("/", ("Sec-WebSocket-Protocol", f"{offered}, {valid}"))
    assert find_value("Login", req) == "ok"


def test_query_string() -> None:
    assert find_value("Login", request("/?Login")) == ""
    assert find_value("Login", request("/?Login=1&login=2")) == "1"
    assert find_value("Login", request("/?a=b%3D%26c")) is None
    assert find_value("a", request("/?a=b%3D%26c")) == "b=&c"


SOURCES = ("header", "cookie", "subprotocol", "query")


def place(name: str, value: str, source: str) -> tuple[str, list[tuple[str, str]]]:
    """Where a client puts ``value`` for header ``name``: (path, extra headers)."""
    if source == "header":
        return "", [(name, value)]
    if source == "cookie":
        return "", [("Cookie", f"theme=dark; {name}={quote(value, safe='')}")]
    if source == "subprotocol":
        return "", [("Sec-WebSocket-Protocol", f"lexicons, {subprotocol_credential(name, value)}")]
    return f"{quote(name)}={quote(value, safe='')}", []


def build(placed: list[tuple[str, list[tuple[str, str]]]]) -> Request:
    query = "&".join(q for q, _ in placed if q)
    return request(
        # The noise key "(noise)" holds characters no header name (an HTTP token) can have.
        "/live" + (f"?%28noise%29=1&{query}" if query else ""),
        *[p for _, ps in placed for p in ps],
    )


@FAST
@given(st.data(), names, st.sampled_from(SOURCES))
def test_values_round_trip_through_every_source(
    data: st.DataObject, name: str, source: str
) -> None:
    value = data.draw(header_texts.map(str.strip) if source == "header" else texts)
    sent_as = data.draw(recased(name))
    assert find_value(name, build([place(sent_as, value, source)])) == value


@FAST
@given(names, st.lists(st.sampled_from(SOURCES), min_size=1, unique=True))
def test_sources_are_read_in_order(name: str, used: list[str]) -> None:
    placed = [place(name, f"value-from-{source}", source) for source in used]
    first = min(used, key=SOURCES.index)
    assert find_value(name, build(placed)) == f"value-from-{first}"


@FAST
@given(
    names,
    st.text(max_size=60),
    st.lists(
        st.tuples(st.sampled_from(["Cookie", "Sec-WebSocket-Protocol", "Login"]), header_texts),
        max_size=4,
    ),
)
def test_find_value_never_raises(name: str, path: str, pairs: list[tuple[str, str]]) -> None:
    value = find_value(name, request("/" + path, *pairs))
    assert value is None or isinstance(value, str)


# --- parsing ---------------------------------------------------------------------------------


def login(ws: Any, user: str, n: int = 0) -> bool:
    return True


def token(header: str) -> bool:
    return True


def anything(ws: Any = None, **kwargs: Any) -> bool:
    return True


def bare(ws: Any) -> bool:
    return True


class Credentials(msgspec.Struct):
    user: str
    password: str


def whole(credentials: Credentials) -> bool:
    return True


HANDLERS = {
    f.__name__: inspect_handler(f, f.__name__) for f in (login, token, anything, bare, whole)
}


@pytest.mark.parametrize(
    ("raw", "handler", "expected"),
    [
        ('{"user": "ada", "n": 3}', "login", {"user": "ada", "n": 3}),
        ('{"user": "ada"}', "login", {"user": "ada", "n": 0}),
        ("secret-token", "token", {"header": "secret-token"}),
        ('"a JSON string"', "token", {"header": '"a JSON string"'}),
        ("42", "token", {"header": "42"}),
        ("null", "token", {"header": "null"}),
        ("[1, 2]", "token", {"header": "[1, 2]"}),
        ("", "token", {"header": ""}),
        ("[" * 5000, "token", {"header": "[" * 5000}),
        ('{"a": 1}', "anything", {"a": 1}),
        ("plain", "anything", {"header": "plain"}),
        ('{"user": "u", "password": "p"}', "whole", {"credentials": Credentials("u", "p")}),
    ],
)
def test_header_arguments(raw: str, handler: str, expected: dict[str, Any]) -> None:
    kwargs = header_arguments(raw, HANDLERS[handler])
    kwargs.pop("ws", None)
    kwargs.pop("sv", None)
    kwargs.pop("db", None)
    assert kwargs == expected


@pytest.mark.parametrize(
    ("raw", "handler"),
    [
        ('{"user": 1}', "login"),
        ('{"n": 1}', "login"),
        ('{"user": "a", "extra": 1}', "login"),
        ('{"user": "a", "ws": 1}', "login"),  # a client cannot pass ws
        ("plain", "login"),  # no `header` parameter to receive it
        ("plain", "bare"),
        ('{"header": 5}', "token"),
        ("plain", "whole"),
    ],
)
def test_header_arguments_refuse_invalid_payloads(raw: str, handler: str) -> None:
    with pytest.raises(InvalidPayload):
        header_arguments(raw, HANDLERS[handler])


@FAST
@given(st.text(), st.sampled_from(sorted(HANDLERS)))
def test_arbitrary_text_gives_kwargs_or_invalid_payload(raw: str, handler: str) -> None:
    try:
        kwargs = header_arguments(raw, HANDLERS[handler])
    except InvalidPayload:
        return
    assert isinstance(kwargs, dict)


@FAST
@given(texts, st.integers(-(2**63), 2**63 - 1))
def test_json_objects_become_validated_kwargs(user: str, n: int) -> None:
    raw = msgspec.json.encode({"user": user, "n": n}).decode()
    assert header_arguments(raw, HANDLERS["login"]) == {"user": user, "n": n}


# --- running headers -------------------------------------------------------------------------


def caller(ws: Any = None) -> Callable[[Handler, dict[str, Any]], Any]:
    ws = ws if ws is not None else SimpleNamespace(auth=None)
    return lambda handler, kwargs: handler.call(kwargs, ws, "sv", "db")


async def test_run_headers_outcomes() -> None:
    ran: list[str] = []

    def Sent(ws: Any, header: str) -> bool:
        ran.append("Sent")
        ws.auth = header
        return True

    async def Async(ws: Any, header: str) -> bool:
        ran.append("Async")
        await asyncio.sleep(0)
        return bool(ws.auth == "alice")  # sees what the previous header set

    def Absent(header: str) -> bool:
        ran.append("Absent")
        return True

    def Invalid(n: int) -> bool:
        ran.append("Invalid")
        return True

    def Raises(header: str) -> bool:
        raise RuntimeError("database down")

    def Falsy(header: str) -> None:
        return None

    def Truthy(header: str) -> str:
        return "a user"

    handlers = [inspect_handler(f, f.__name__) for f in (Sent, Async, Absent, Invalid)]
    handlers += [inspect_handler(f, f.__name__) for f in (Raises, Falsy, Truthy)]
    req = request(
        "/?invalid=%7B%22n%22%3A%22x%22%7D&RAISES=1&falsy=1&truthy=1",
        ("Sent", "alice"),
        ("Cookie", "Async=1"),
    )
    ws = SimpleNamespace(auth=None)
    outcomes = await run_headers(handlers, req, caller(ws))
    assert [(o.name, o.passed, o.sent) for o in outcomes] == [
        ("Sent", True, True),
        ("Async", True, True),
        ("Absent", False, False),
        ("Invalid", False, True),
        ("Raises", False, True),
        ("Falsy", False, True),
        ("Truthy", True, True),  # bool(result) decides, as documented
    ]
    assert ran == ["Sent", "Async"]  # absent and invalid headers do not run
    assert ws.auth == "alice"
    reasons = {o.name: o.reason for o in outcomes}
    assert reasons["Absent"] == "not sent"
    assert reasons["Invalid"] is not None and reasons["Invalid"].startswith("invalid payload")
    assert reasons["Raises"] == "raised RuntimeError: database down"
    assert reasons["Falsy"] == "returned NoneType"
    assert reasons["Sent"] is None


async def test_run_headers_now_is_sync_until_a_result_must_be_awaited() -> None:
    async def Late(header: str) -> bool:
        return True

    sync = [HANDLERS["token"]]
    req = request("/?token=1&Late=1")
    assert run_headers_now(sync, req, caller()) == [HeaderOutcome("token", True, None, True)]
    pending = run_headers_now(
        sync + [inspect_handler(Late, "Late"), HANDLERS["token"]], req, caller()
    )
    assert not isinstance(pending, list)
    assert [o.passed for o in await pending] == [True, True, True]


async def test_a_result_whose_truth_raises_counts_as_false() -> None:
    class Weird:
        def __bool__(self) -> bool:
            raise TypeError("no truth")

    (outcome,) = await run_headers(
        [inspect_handler(lambda header: Weird(), "W")], request("/?W=1"), caller()
    )
    assert not outcome.passed and outcome.reason == "raised TypeError: no truth"


async def test_run_headers_with_no_headers() -> None:
    assert await run_headers([], request("/?a=1"), caller()) == []


async def test_cancellation_propagates() -> None:
    async def Slow(header: str) -> bool:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_headers([inspect_handler(Slow, "Slow")], request("/?Slow=1"), caller())


# --- the gate --------------------------------------------------------------------------------


def outcomes(*passed: bool) -> list[HeaderOutcome]:
    return [HeaderOutcome(f"H{i}", p) for i, p in enumerate(passed)]


def test_gate_admits() -> None:
    assert gate_admits(all, []) == (True, None)  # no headers: all([]) admits
    assert gate_admits(any, [])[0] is False
    assert gate_admits(all, outcomes(True, True)) == (True, None)
    assert gate_admits(all, outcomes(True, False)) == (False, "gate refused [True, False]")
    assert gate_admits(any, outcomes(True, False)) == (True, None)
    assert gate_admits(lambda r: r, outcomes(False))[0] is True  # a non-empty list is truthy
    assert gate_admits(lambda r: 1 / 0, outcomes(True)) == (
        False,
        "gate raised ZeroDivisionError: division by zero",
    )
    seen: list[list[bool]] = []
    gate_admits(lambda r: seen.append(r), outcomes(True, False, True))
    assert seen == [[True, False, True]]


def test_an_async_gate_rejects() -> None:
    async def gate(results: list[bool]) -> bool:
        return True

    admitted, reason = gate_admits(gate, outcomes(True))
    assert not admitted and reason is not None and "awaitable" in reason


def test_check_gate() -> None:
    assert check_gate(all) is all
    assert check_gate(any) is any

    async def gate(results: list[bool]) -> bool:
        return True

    with pytest.raises(ConfigurationError, match="gate: must be a plain function"):
        check_gate(gate)
    with pytest.raises(ConfigurationError, match="gate: 42 is not callable"):
        check_gate(42)


BEHAVIOURS = ("true", "false", "raise", "invalid", "truthy", "async_true", "async_raise")
PASSING = {"true", "truthy", "async_true"}
GATES: dict[str, Callable[[list[bool]], Any]] = {
    "all": all,
    "any": any,
    "at least two": lambda r: sum(r) >= 2,
    "first or last": lambda r: bool(r) and (r[0] or r[-1]),
    "exactly the first": lambda r: r[:1] == [True] and not any(r[1:]),
    "a count": lambda r: r.count(False),  # truthy integers count as yes
    "raises": lambda r: r[5],  # IndexError for fewer than six headers
}


def header_function(behaviour: str, ran: list[str], name: str) -> Callable[..., Any]:
    if behaviour == "invalid":

        def typed(n: int) -> bool:
            ran.append(name)
            return True

        return typed
    if behaviour.startswith("async"):

        async def coroutine(header: str) -> bool:
            ran.append(name)
            if behaviour == "async_raise":
                raise ValueError(header)
            return True

        return coroutine

    def plain(header: str) -> Any:
        ran.append(name)
        if behaviour == "raise":
            raise KeyError(header)
        return {"true": True, "false": False, "truthy": [1]}[behaviour]

    return plain


@FAST
@given(
    st.lists(
        st.tuples(st.sampled_from(BEHAVIOURS), st.booleans(), st.sampled_from(SOURCES)), max_size=6
    ),
    st.sampled_from(sorted(GATES)),
)
async def test_gate_property(headers: list[tuple[str, bool, str]], gate_name: str) -> None:
    """Admitted iff gate(results), with absent, raising and invalid headers as False."""
    gate = GATES[gate_name]
    ran: list[str] = []
    handlers = []
    placed = []
    expected = []
    for i, (behaviour, sent, source) in enumerate(headers):
        name = f"Check{i}"
        handlers.append(inspect_handler(header_function(behaviour, ran, name), name))
        if sent:
            value = '{"n": "not a number"}' if behaviour == "invalid" else f"value{i}"
            placed.append(place(name, value, source))
        expected.append(sent and behaviour in PASSING)
    results = await run_headers(handlers, build(placed), caller())
    assert [o.passed for o in results] == expected
    try:
        verdict = bool(gate(expected))
    except Exception:
        verdict = False
    assert gate_admits(gate, results)[0] is verdict
    # Absent headers never run; invalid payloads never reach the function.
    assert ran == [
        f"Check{i}" for i, (b, sent, _) in enumerate(headers) if sent and b != "invalid"
    ]


@FAST
@given(
    st.lists(
        st.tuples(st.sampled_from(["Cookie", "Sec-WebSocket-Protocol", "A", "b"]), header_texts),
        max_size=4,
    ),
    st.text(max_size=40),
)
async def test_run_headers_never_raises(pairs: list[tuple[str, str]], query: str) -> None:
    handlers = [HANDLERS["login"], HANDLERS["token"], HANDLERS["whole"]]
    handlers += [inspect_handler(lambda header: int(header) > 0, "A")]
    handlers += [inspect_handler(lambda **kw: kw["missing"], "B")]
    results = await run_headers(handlers, request("/?" + query, *pairs), caller())
    assert [o.name for o in results] == ["login", "token", "whole", "A", "B"]
    assert all(o.passed or o.reason for o in results)


# --- credentials never reach a log line or a reason ------------------------------------------


def test_scrub() -> None:
    assert scrub("invalid literal for int() with base 10: 'hunter2'", None) == (
        "invalid literal for int() with base 10: '***'"
    )
    assert (
        scrub("Invalid enum value 1234 - at `$.pin`", None)
        == "Invalid enum value *** - at `$.pin`"
    )
    assert scrub("no user alice-smith", '{"user": "alice-smith"}') == "no *** ***"
    assert scrub("no user alice-smith", '{"user": "alice-smith"}', ["user"]) == "no user ***"
    assert scrub("pin 42 is wrong", '{"pin": 42}', ["pin"]) == "pin *** is wrong"
    assert scrub("bad\nforged line", None) == "bad\\nforged line"
    assert len(scrub("x" * 1000, None)) == 200


def leaking(kind: str) -> Callable[..., Any]:
    """Header functions that fail in ways that would show the value they were given."""
    if kind == "int":
        return lambda header: int(header) > 0  # ValueError quoting the text
    if kind == "key":
        return lambda header: {}[header]  # KeyError with the text
    if kind == "message":

        def echo(header: str) -> bool:
            raise PermissionError(f"wrong password {header} for this account")

        return echo
    if kind == "enum":

        def role(role: Literal["admin", "user"], password: str) -> bool:
            return True

        return role
    if kind == "fields":

        def fields(user: str) -> bool:
            return True

        return fields
    return lambda header: False


LEAKS = ("int", "key", "message", "enum", "fields", "false")
secrets = st.from_regex(r"S3cr[A-Za-z0-9]{6,20}", fullmatch=True)


def leaky_value(kind: str, secret: str) -> str:
    if kind == "enum":
        return msgspec.json.encode({"role": secret, "password": secret}).decode()
    if kind == "fields":
        return msgspec.json.encode({"user": 1, secret: secret}).decode()
    return secret


@FAST
@given(secrets, st.sampled_from(LEAKS), st.sampled_from(SOURCES))
async def test_credentials_are_never_logged(secret: str, kind: str, source: str) -> None:
    handler = inspect_handler(leaking(kind), "Login")
    placed = [place("Login", leaky_value(kind, secret), source)]
    with Capture() as lines:
        (outcome,) = await run_headers([handler], build(placed), caller())
    assert not outcome.passed and outcome.reason
    assert secret not in outcome.reason
    assert lines, "a refused header is logged"
    assert not [line for line in lines if secret in line]


async def test_credentials_are_never_logged_caplog(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="lexicons")
    secret = "S3crHunter2Password"
    handlers = [inspect_handler(leaking(kind), f"H{i}") for i, kind in enumerate(LEAKS)]
    placed = [place(f"H{i}", leaky_value(kind, secret), "query") for i, kind in enumerate(LEAKS)]
    results = await run_headers(handlers, build(placed), caller())
    assert not any(o.passed for o in results)
    assert "raised ValueError" in caplog.text and "raised PermissionError" in caplog.text
    assert "Invalid enum value" in caplog.text
    assert secret not in caplog.text
    assert all(secret not in (o.reason or "") for o in results)


def crashing_login(header: str) -> bool:
    return lookup_account(header)


def lookup_account(token: str) -> bool:
    raise ConnectionError(f"account store unreachable for {token}")


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
async def test_a_raising_header_is_logged_with_its_traceback_in_debug(
    caplog: pytest.LogCaptureFixture, level: int
) -> None:
    """Debug on (the lexicons loggers at DEBUG): the frames, never the value sent."""
    caplog.set_level(level, logger="lexicons")
    secret = "S3crTokenValue42"
    handler = inspect_handler(crashing_login, "Login")
    (outcome,) = await run_headers([handler], build([place("Login", secret, "query")]), caller())
    assert outcome.reason == "raised ConnectionError: account store unreachable for ***"
    (record,) = [r for r in caplog.records if "raised ConnectionError" in r.getMessage()]
    text = record.getMessage()
    assert secret not in caplog.text
    if level == logging.DEBUG:
        assert "Traceback (most recent call last):" in text
        assert "in crashing_login" in text and "in lookup_account" in text
        assert "raise ConnectionError" in text and __file__ in text
    else:
        assert "Traceback" not in text and "in lookup_account" in text  # where it raised


class Welcome(module.Header):
    """The original's way: greet with self.send and subscribe, inside the header."""

    def execute(self, ws: Any = None, sv: Any = None, header: str = "", **kwargs: Any) -> bool:
        self.send(ws, {"Welcome": header})
        sv.channels["Lobby"].subscribe(ws.pk)
        return header != "refuse"


async def test_header_send_and_subscribe_take_effect_on_admission_only() -> None:
    from lexicons import Server
    from lexicons.testing import HandshakeFailed, TestClient

    app = Server(Welcome)
    lobby = app.channel("Lobby")
    async with TestClient(app) as client:
        ada = await client.connect(headers={"Welcome": "ada"})
        assert await ada.receive() == {"Welcome": "ada"}
        with pytest.raises(HandshakeFailed):
            await client.connect(headers={"Welcome": "refuse"})
        assert list(lobby.subscribers) == list(app.connections)
        app.broadcast({"news": 1}, "Lobby")
        assert await ada.receive() == {"news": 1}
