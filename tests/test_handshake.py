"""Handshake security over real sockets: trust, origin, headers, gate, wss, limits, logs.

Every test starts the app on 127.0.0.1 with :class:`lexicons.testing.TestClient` and
connects real WebSocket clients, sending credentials the way browsers and other
clients do. The login recipe of docs/security.md is run from the page itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from conftest import handshake_request

from lexicons import Server, Settings
from lexicons.errors import ConfigurationError
from lexicons.headers import subprotocol_credential
from lexicons.logs import configure_logging
from lexicons.testing import HandshakeFailed, TestClient

PASSWORD = "S3cr-correct horse+battery/\u00e9&=?"  # what a URL, a cookie and JSON must escape
TOKEN = "S3crT0kenValue"
SOURCES = ["header", "cookie", "subprotocol", "query"]


def browser_quote(text: str) -> str:
    """What JavaScript's ``encodeURIComponent`` makes of ``text``."""
    return quote(text, safe="-_.!~*'()")


def credential(source: str, name: str, value: str) -> dict[str, Any]:
    """``client.connect`` arguments sending header ``name`` as a client would from ``source``."""
    if source == "header":
        return {"headers": {name: value}}
    if source == "cookie":  # document.cookie = name + "=" + encodeURIComponent(value)
        return {"cookies": {name: browser_quote(value)}}
    if source == "subprotocol":  # new WebSocket(url, ["lexicons", "lexicons.Name.<b64url>"])
        return {"subprotocols": ["lexicons", subprotocol_credential(name, value)]}
    return {"path": f"/?{name}={browser_quote(value)}"}  # new WebSocket(url + "?Name=" + ...)


def login(user: str = "ada", password: str = PASSWORD) -> str:
    return json.dumps({"user": user, "password": password})


def make_app(seen: list[Any], **settings: Any) -> Server:
    """Login (async, JSON fields) or Token (sync, plain value); either one admits.

    Both send a message from the handshake; ``seen`` records what ran, with what.
    """
    app = Server(gate=any, **settings)

    @app.header
    async def Login(ws: Any, sv: Any, db: Any, user: str, password: str) -> bool:
        seen.append(("Login", sv is app, db is app.db))
        ws.send({"welcome": user})
        if user != "ada" or password != PASSWORD:
            return False
        ws.auth = user
        ws.state["via"] = "Login"
        return True

    @app.header
    def Token(ws: Any, header: str) -> bool:
        seen.append(("Token",))
        ws.send({"token": "checked"})
        if header != TOKEN:
            return False
        ws.auth = "robot"
        ws.state["via"] = "Token"
        return True

    @app.on_connect
    def hello(ws: Any) -> None:
        seen.append(("on_connect", ws.auth))
        ws.send({"hello": ws.auth})

    @app.signal
    def whoami(ws: Any) -> dict[str, Any]:
        return {"user": ws.auth, "via": ws.state.get("via")}

    return app


async def raw_handshake(port: int, path: str = "/", **headers: str) -> bytes:
    """Send a WebSocket handshake by hand; everything the server wrote until it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(handshake_request(f"127.0.0.1:{port}", path, **headers))
    data = await asyncio.wait_for(reader.read(), 5)  # a refused handshake ends with EOF
    writer.close()
    return data


@pytest.fixture
def cli_logging() -> Iterator[Callable[[bool], None]]:
    """Configure logging as ``lexicons run`` does for ``debug``; restored afterwards."""
    log, root = logging.getLogger("lexicons"), logging.getLogger()
    level, handlers = log.level, list(root.handlers)
    yield lambda debug: configure_logging(Settings(debug=debug))
    log.setLevel(level)
    root.handlers[:] = handlers


# --- trust, origin, gate ------------------------------------------------------------------


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
async def test_untrusted_address_gets_403_before_the_upgrade_and_a_log_line(
    debug: bool, caplog: pytest.LogCaptureFixture, cli_logging: Callable[[bool], None]
) -> None:
    cli_logging(debug)
    seen: list[Any] = []
    app = make_app(seen, trust=["10.0.0.0/8", "2001:db8::/32"], debug=debug)
    async with TestClient(app) as client:
        with pytest.raises(HandshakeFailed) as refused:
            await client.connect(**credential("query", "Login", login()))
        assert (refused.value.status, refused.value.body.strip()) == (403, "untrusted address")
        port = client.running.port  # type: ignore[union-attr]
        assert (await raw_handshake(port)).startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert seen == [] and app.connections == {}  # no header ran, nothing registered
    lines = [r for r in caplog.records if "untrusted address" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].name == "lexicons.security" and lines[0].levelno == logging.WARNING
    assert lines[0].getMessage().startswith("refused 127.0.0.1 /?Login=***: untrusted address")


async def test_disallowed_origin_gets_403_and_the_cookie_never_reaches_a_header() -> None:
    seen: list[Any] = []
    app = make_app(seen, origins=["https://app.example"])
    cookie = credential("cookie", "Login", login())
    async with TestClient(app) as client:
        for origin in ("https://evil.example", "null", "https://app.example.evil.example"):
            with pytest.raises(HandshakeFailed) as refused:
                await client.connect(origin=origin, **cookie)
            assert refused.value.status == 403
            assert refused.value.body.strip() == "origin not allowed"
        assert seen == [] and app.connections == {}
        peer = await client.connect(origin="https://app.example", **cookie)
        assert await peer.call("whoami") == {"user": "ada", "via": "Login"}


async def test_default_same_origin_admits_the_page_of_this_host_only() -> None:
    async with TestClient(make_app([])) as client:
        port = client.running.port  # type: ignore[union-attr]
        token = credential("query", "Token", TOKEN)
        with pytest.raises(HandshakeFailed) as refused:
            await client.connect(origin=f"http://localhost:{port}", **token)  # Host: 127.0.0.1
        assert refused.value.status == 403
        peer = await client.connect(origin=f"http://127.0.0.1:{port}", **token)
        assert await peer.call("whoami") == {"user": "robot", "via": "Token"}
        no_browser = await client.connect(**token)  # no Origin: not a browser
        assert await no_browser.call("whoami") == {"user": "robot", "via": "Token"}


@pytest.mark.parametrize("exposed", [True, False], ids=["expose_errors", "production"])
async def test_failed_gate_gets_403_and_a_passing_one_101(exposed: bool) -> None:
    app = Server(gate=lambda results: results == [True, True], expose_errors=exposed)
    connected: list[str] = []

    @app.header
    def Token(header: str) -> bool:
        return header == TOKEN

    @app.header
    async def Role(header: str) -> bool:
        return header == "admin"

    @app.on_connect
    def joined(ws: Any) -> None:
        connected.append(ws.pk)

    async with TestClient(app) as client:
        with pytest.raises(HandshakeFailed) as refused:
            await client.connect(headers={"Token": TOKEN})
        assert refused.value.status == 403
        if exposed:
            assert refused.value.body.strip() == (
                "refused by gate (Role: not sent; gate refused [True, False])"
            )
        else:
            assert refused.value.body.strip() == "refused by gate"
        assert connected == [] and app.connections == {}
        peer = await client.connect(headers={"Token": TOKEN, "Role": "admin"})
        assert peer.ws.response is not None and peer.ws.response.status_code == 101
        assert list(app.connections) == connected and len(connected) == 1


# --- credentials from every source, and what headers leave behind ---------------------------


@pytest.mark.parametrize("source", SOURCES)
async def test_credentials_from_every_source_reach_on_connect_and_signals(source: str) -> None:
    seen: list[Any] = []
    async with TestClient(make_app(seen), expose_errors=True) as client:
        peer = await client.connect(**credential(source, "Login", login()))
        # What the header sent comes first, right after the 101, then on_connect's.
        assert await peer.receive() == {"welcome": "ada"}
        assert await peer.receive() == {"hello": "ada"}
        assert await peer.call("whoami") == {"user": "ada", "via": "Login"}
        assert seen == [("Login", True, True), ("on_connect", "ada")]
        assert peer.subprotocol == ("lexicons" if source == "subprotocol" else None)

        robot = await client.connect(**credential(source, "Token", TOKEN))
        assert await robot.receive() == {"token": "checked"}
        assert await robot.receive() == {"hello": "robot"}
        assert await robot.call("whoami") == {"user": "robot", "via": "Token"}

        seen.clear()
        with pytest.raises(HandshakeFailed) as refused:
            await client.connect(**credential(source, "Login", login(password="wrong")))
        assert refused.value.status == 403
        assert refused.value.body.startswith("refused by gate (Login: returned False;")
        assert seen == [("Login", True, True)]  # ran, refused, and on_connect did not run
        assert len(client.app.connections) == 2  # peer and robot


@pytest.mark.parametrize("name", ["Login", "Token"])  # async and sync header
async def test_messages_a_header_sent_are_dropped_when_refused(name: str) -> None:
    seen: list[Any] = []
    async with TestClient(make_app(seen)) as client:
        port = client.running.port  # type: ignore[union-attr]
        value = login(password="wrong") if name == "Login" else "wrong"
        data = await raw_handshake(port, **{name: value})
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403 ")
        assert body.startswith(b"refused by gate")
        assert b"welcome" not in data and b"token" not in data  # no frame after the 403
        assert seen == [(name, True, True) if name == "Login" else (name,)]
        assert client.app.connections == {}


# --- wss ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the test CA only."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.mark.parametrize("how", ["context", "files"])
async def test_wss_round_trip(how: str, ca: trustme.CA, tmp_path: Path) -> None:
    cert = ca.issue_cert("127.0.0.1")
    settings: dict[str, Any]
    if how == "context":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        settings = {"ssl": context}
    else:
        certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
        certfile.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(keyfile))
        settings = {"certfile": str(certfile), "keyfile": str(keyfile)}
    async with TestClient(make_app([], protocol="wss", **settings)) as client:
        assert client.url.startswith("wss://127.0.0.1:")
        port = client.running.port  # type: ignore[union-attr]
        peer = await client.connect(
            ssl=trusting(ca),
            origin=f"https://127.0.0.1:{port}",  # the page served by this host
            **credential("subprotocol", "Login", login()),
        )
        assert await peer.receive() == {"welcome": "ada"}
        assert await peer.call("whoami") == {"user": "ada", "via": "Login"}
        with pytest.raises(ssl.SSLCertVerificationError):
            await client.connect(ssl=ssl.create_default_context())  # the CA is not trusted


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"protocol": "wss"}, "protocol: 'wss' needs TLS settings"),
        ({"protocol": "wss", "certfile": "/nonexistent/cert.pem"}, "certfile: cannot load"),
        ({"protocol": "wss", "ssl": "cert.pem"}, "ssl: 'cert.pem' is not an ssl.SSLContext"),
        ({"protocol": "wss", "keyfile": "key.pem"}, "keyfile: given without certfile"),
        ({"certfile": "cert.pem"}, "protocol: 'ws' serves without TLS"),
    ],
)
async def test_bad_tls_settings_fail_at_start_up(settings: dict[str, Any], message: str) -> None:
    app = Server(**settings)
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        async with TestClient(app):
            pass  # pragma: no cover - never started
    assert app.running is None


# --- limits (1009, 503 and the handshake timeout are in test_network.py) ---------------------


async def test_default_max_size_is_one_mebibyte() -> None:
    app = Server()

    @app.signal
    def echo(text: str) -> int:
        return len(text)

    async with TestClient(app) as client:
        peer = await client.connect()
        envelope = '{"echo": {"text": "%s"}}'
        fits = 2**20 - len(envelope % "")
        await peer.send_raw(envelope % ("x" * fits))
        assert await peer.receive() == {"echo": fits}
        await peer.send_raw(envelope % ("x" * (fits + 1)))
        assert (await peer.closed())[0] == 1009


async def test_max_connections_counts_admitted_connections_only() -> None:
    app = make_app([], max_connections=1)
    gone = asyncio.Event()
    app.on_disconnect(lambda: gone.set())
    token = credential("header", "Token", TOKEN)
    async with TestClient(app) as client:
        with pytest.raises(HandshakeFailed) as refused:
            await client.connect(headers={"Token": "wrong"})
        assert refused.value.status == 403  # a refusal takes no slot
        first = await client.connect(**token)
        with pytest.raises(HandshakeFailed) as full:
            await client.connect(**token)
        assert (full.value.status, full.value.body.strip()) == (503, "too many connections")
        await first.close()
        await gone.wait()  # the slot is free once the server has let the connection go
        second = await client.connect(**token)
        assert await second.call("whoami") == {"user": "robot", "via": "Token"}


async def test_max_connections_holds_while_async_headers_run() -> None:
    """Handshakes that passed the first count together are counted again when admitted."""
    app = Server(max_connections=1)
    waiting: list[str] = []
    all_in, release = asyncio.Event(), asyncio.Event()

    @app.header
    async def Token(header: str) -> bool:
        waiting.append(header)
        if len(waiting) == 3:
            all_in.set()
        await release.wait()
        return True

    async def attempt(client: TestClient, number: int) -> int:
        try:
            await client.connect(headers={"Token": str(number)})
        except HandshakeFailed as refused:
            return refused.status
        return 101

    async with TestClient(app) as client:
        attempts = [asyncio.create_task(attempt(client, n)) for n in range(3)]
        await all_in.wait()  # all three are past the first count, inside their header
        release.set()
        assert sorted(await asyncio.gather(*attempts)) == [101, 503, 503]
        assert len(app.connections) == 1


# --- logs ----------------------------------------------------------------------------------


def on_the_wire(arguments: dict[str, Any]) -> list[str]:
    """The credential texts that ``client.connect(**arguments)`` puts in the handshake."""
    if "path" in arguments:
        return [arguments["path"].partition("=")[2]]
    if "subprotocols" in arguments:
        return [arguments["subprotocols"][1]]
    return [*arguments.get("headers", {}).values(), *arguments.get("cookies", {}).values()]


async def test_no_credential_value_reaches_any_log_line(caplog: pytest.LogCaptureFixture) -> None:
    for name in (None, "lexicons", "lexicons.wire", "websockets"):
        caplog.set_level(logging.DEBUG, logger=name)
    # Each secret as the client wrote it, and each credential as it travelled.
    secrets = ["S3cr-correct horse+battery/", TOKEN, "S3crWrong", "S3crInvalid", "S3crBoom"]
    app = make_app([])

    @app.header
    def Boom(header: str) -> bool:
        raise ValueError(f"cannot read {header!r} ({header})")

    async def attempt(name: str, value: str, source: str, **extra: Any) -> None:
        arguments = credential(source, name, value)
        secrets.extend(on_the_wire(arguments))
        try:
            peer = await client.connect(**arguments, **extra)
        except HandshakeFailed:
            return
        await peer.call("whoami")

    async with TestClient(app) as client:
        for source in SOURCES:
            await attempt("Login", login(), source)
            await attempt("Token", TOKEN, source)
            await attempt("Login", login(password="S3crWrong"), source)
            await attempt(
                "Login", json.dumps({"user": "ada", "password": 7, "S3crInvalid": 1}), source
            )
            await attempt("Login", json.dumps({"user": ["S3crInvalid"], "password": "x"}), source)
            await attempt("Boom", "S3crBoom", source)
        await attempt("Token", TOKEN, "query", origin="https://evil.example")
    async with TestClient(make_app([], trust=["10.0.0.0/8"])) as client:
        await attempt("Login", login(), "query")

    messages = [record.getMessage() for record in caplog.records]
    untrusted = "refused 127.0.0.1 /?Login=***: untrusted address"  # the path, redacted
    assert any(m.startswith(untrusted) for m in messages)
    assert sum("refused 127.0.0.1 /?Login=***: refused by gate" in m for m in messages) == 3
    assert any("header Boom raised ValueError: cannot read '***' (***)" in m for m in messages)
    assert any(r.name == "lexicons.wire" for r in caplog.records)  # its debug lines were on
    assert any(r.name == "lexicons.testing" for r in caplog.records)  # and the client's
    for secret in secrets:
        assert secret not in caplog.text
        assert not [m for m in messages if secret in m]


# --- the login recipe of docs/security.md --------------------------------------------------

DOC = Path(__file__).parent.parent / "docs" / "security.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
RECIPE_PASSWORD = "correct horse battery staple"


def doc_block(first_line: str) -> dict[str, Any]:
    """Run the python block of docs/security.md that starts with ``first_line``."""
    blocks = [b for b in BLOCK.findall(DOC.read_text()) if b.startswith(first_line + "\n")]
    assert len(blocks) == 1, f"docs/security.md has no single block starting {first_line!r}"
    namespace: dict[str, Any] = {"__name__": "docs_security"}
    exec(compile(blocks[0], f"security.md ({first_line})", "exec"), namespace)
    return namespace


@pytest.fixture
def recipe() -> dict[str, Any]:
    return doc_block("# app.py")


@pytest.mark.parametrize("source", SOURCES)
async def test_docs_login_recipe_admits_the_right_password(
    recipe: dict[str, Any], source: str
) -> None:
    async with TestClient(recipe["app"]) as client:
        peer = await client.connect(**credential(source, "Login", login(password=RECIPE_PASSWORD)))
        assert await peer.call("whoami") == {"user": "ada"}


async def test_docs_login_recipe_refuses_everything_else(recipe: dict[str, Any]) -> None:
    stored = recipe["USERS"]["ada"]
    assert stored.startswith("scrypt$") and RECIPE_PASSWORD not in stored
    async with TestClient(recipe["app"]) as client:
        for value in (
            login(password="correct horse battery stapler"),
            login(user="eve", password=RECIPE_PASSWORD),
            json.dumps({"user": "ada"}),
            None,
        ):
            with pytest.raises(HandshakeFailed) as refused:
                await client.connect(**credential("subprotocol", "Login", value) if value else {})
            assert refused.value.status == 403
        assert client.app.connections == {}


async def test_docs_python_client(
    recipe: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    main = doc_block("# client.py")["main"]
    async with TestClient(recipe["app"]) as client:
        await main(client.url)
        assert json.loads(capsys.readouterr().out) == {"whoami": {"user": "ada"}}
        recipe["USERS"]["ada"] = recipe["hash_password"]("another password")
        await main(client.url)
        assert capsys.readouterr().out == "403\n"


async def test_docs_wss_test_example() -> None:
    await doc_block("# test_wss.py")["test_wss"]()


def server_messages(data: bytes) -> list[Any]:
    """The JSON text messages in what a server wrote after its 101 (short frames only)."""
    _, _, rest = data.partition(b"\r\n\r\n")
    messages = []
    while len(rest) >= 2 and rest[0] == 0x81:
        length = rest[1]
        assert length < 126, "a short test message"
        messages.append(json.loads(rest[2 : 2 + length]))
        rest = rest[2 + length :]
    return messages


@pytest.mark.parametrize("password", [PASSWORD, "wrong"])
async def test_frames_sent_with_the_handshake_wait_for_an_async_header(password: str) -> None:
    """A client should wait for the 101; one that does not loses nothing, gains nothing."""
    from websockets.frames import Frame, Opcode

    async with TestClient(make_app([])) as client:
        port = client.running.port  # type: ignore[union-attr]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        handshake = handshake_request(f"127.0.0.1:{port}", Login=login(password=password))
        frame = Frame(Opcode.TEXT, b'{"whoami": {}}').serialize(mask=True, extensions=[])
        writer.write(handshake + frame)  # in one packet, before any answer
        data = b""
        while b"whoami" not in data and not reader.at_eof():
            data += await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
    if password == PASSWORD:
        assert data.startswith(b"HTTP/1.1 101")
        assert server_messages(data) == [
            {"welcome": "ada"},
            {"hello": "ada"},
            {"whoami": {"user": "ada", "via": "Login"}},
        ]
    else:
        assert data.startswith(b"HTTP/1.1 403") and b"whoami" not in data
