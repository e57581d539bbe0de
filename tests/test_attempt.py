"""The JavaScript client's files and its probe, ``GET /lexicons.attempt``, over real sockets.

A browser's WebSocket cannot see why a handshake failed; the probe answers the same
admission with a status a page can read: 200 where the upgrade would go ahead, the
handshake's own refusal (403, 429) where it would not. It must reveal nothing more than a
handshake, count against the same limits, and leave nothing behind.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import asgi_server
from hypothesis import given
from hypothesis import strategies as st
from websockets.datastructures import Headers
from websockets.http11 import Request

import lexicons
from lexicons import Server
from lexicons.headers import subprotocol_credential
from lexicons.network.http import attempt_handshake
from lexicons.testing import HandshakeFailed, TestClient

CLIENT = Path(lexicons.__file__).parent / "client_js"
GOOD = "lexicons, " + subprotocol_credential("Token", "ok")
BAD = "lexicons, " + subprotocol_credential("Token", "nope")


async def http(
    client: TestClient | int, method: str, path: str, *headers: tuple[str, str]
) -> tuple[int, Headers, bytes]:
    """One plain HTTP request with ``headers`` to a test client's server, or to a port:
    status, headers, body; status 0 when the server hung up without an answer (a request
    its parser refused)."""
    if isinstance(client, TestClient):
        assert client.running is not None
        port = client.running.port
    else:
        port = client
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    if not response:
        return 0, Headers(), b""
    head, _, body = response.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    return int(status.split()[1]), Headers(f.split(": ", 1) for f in fields), body


def token_app(**settings: object) -> Server:
    """Admits the token ``ok``; its header also subscribes and sends, to show that a
    probe keeps none of it; ``on_connect`` counts the connections really opened."""
    app = Server(debug=False, **settings)  # type: ignore[arg-type]
    app.channel("Public")
    opened: list[str] = []
    app.state = opened  # type: ignore[attr-defined]

    @app.header
    def Token(ws, sv, header: str) -> bool:
        sv.channels["Public"].subscribe(ws.pk)
        ws.send({"welcome": header})
        return header == "ok"

    @app.on_connect
    def count(ws) -> None:
        opened.append(ws.pk)

    @app.signal
    def ping() -> str:
        return "pong"

    return app


@pytest.mark.parametrize(
    ("path", "content_type", "name"),
    [
        ("/lexicons.js", "text/javascript; charset=utf-8", "lexicons.js"),
        ("/lexicons.js.map", "application/json", "lexicons.js.map"),
        ("/lexicons.d.ts", None, "lexicons.d.ts"),
    ],
)
async def test_every_server_serves_the_client(
    tmp_path: Path, path: str, content_type: str | None, name: str
) -> None:
    (tmp_path / "lexicons.js").write_text("not the client")  # the server's own file wins
    async with TestClient(Server(debug=False, static=str(tmp_path))) as client:
        status, headers, body = await http(client, "GET", path)
        assert status == 200
        assert body == (CLIENT / name).read_bytes()
        if content_type is not None:
            assert headers["Content-Type"] == content_type
        status, headers, body = await http(client, "HEAD", path)
        assert (status, body) == (200, b"")
        assert int(headers["Content-Length"]) == (CLIENT / name).stat().st_size


async def test_the_client_module_names_its_source_map() -> None:
    source = (CLIENT / "lexicons.js").read_text()
    assert "export class Client" in source
    assert source.rstrip().endswith("//# sourceMappingURL=lexicons.js.map")
    assert json.loads((CLIENT / "lexicons.js.map").read_text())["file"] == "lexicons.js"


async def test_the_probe_answers_as_the_handshake_would() -> None:
    app = token_app()
    async with TestClient(app) as client:
        assert (await http(client, "GET", "/lexicons.attempt"))[::2] == (403, b"refused by gate\n")
        offer = ("Lexicons-Protocol", GOOD)
        assert (await http(client, "GET", "/lexicons.attempt", offer))[::2] == (200, b"admitted\n")
        refused = ("Lexicons-Protocol", BAD)
        assert (await http(client, "GET", "/lexicons.attempt", refused))[0] == 403
        cookie = ("Cookie", "Token=ok")
        assert (await http(client, "GET", "/lexicons.attempt?x=1", cookie))[0] == 200
        assert (await http(client, "GET", "/lexicons.attempt?Token=ok"))[0] == 200
        # Its own Sec-WebSocket-Protocol counts for nothing: only the copy it names.
        forged = ("Sec-WebSocket-Protocol", GOOD)
        assert (await http(client, "GET", "/lexicons.attempt", forged))[0] == 403
        assert (await http(client, "POST", "/lexicons.attempt", offer))[0] == 405
        # Nothing of a probe stays: no connection, no subscriber, no on_connect.
        assert app.connections == {}
        assert list(app.channels["Public"].subscribers) == []
        assert app.state == []  # type: ignore[attr-defined]
        # A real handshake on the probe's path is an ordinary WebSocket.
        peer = await client.connect(path="/lexicons.attempt", headers={"Token": "ok"})
        assert await peer.call("ping") == "pong"
        assert len(app.state) == 1  # type: ignore[attr-defined]
        assert list(app.channels["Public"].subscribers) == list(app.connections)


async def test_the_probe_answers_over_asgi_as_on_the_listener() -> None:
    app = token_app()
    async with asgi_server(app.asgi) as url:
        port = int(url.rsplit(":", 1)[1])
        assert (await http(port, "GET", "/lexicons.attempt"))[::2] == (403, b"refused by gate\n")
        offer = ("Lexicons-Protocol", GOOD)
        assert (await http(port, "GET", "/lexicons.attempt", offer))[::2] == (200, b"admitted\n")
        assert (await http(port, "GET", "/lexicons.attempt", ("Lexicons-Protocol", BAD)))[0] == 403
        assert (await http(port, "GET", "/lexicons.attempt?Token=ok"))[0] == 200
        assert (await http(port, "GET", "/lexicons.js"))[0] == 200
        # Nothing of a probe stays under ASGI either.
        assert app.connections == {}
        assert list(app.channels["Public"].subscribers) == []
        assert app.state == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "offer",
    [
        "lexicons.Token.%%%",
        "lexicons.Token." + "A" * 6000,
        ", , ,",
        "lexicons.Token.b2s=",
        "\x7f",
        ",".join(["lexicons.Token.bm8"] * 500),
    ],
)
async def test_hostile_offers_are_refused_and_harm_nothing(offer: str) -> None:
    app = token_app()
    async with TestClient(app) as client:
        status, _, _ = await http(client, "GET", "/lexicons.attempt", ("Lexicons-Protocol", offer))
        assert status in (0, 400, 403, 413, 431)
        peer = await client.connect(headers={"Token": "ok"})
        assert await peer.call("ping") == "pong"


async def test_async_headers_are_awaited() -> None:
    app = Server(debug=False)

    @app.header
    async def Token(header: str) -> bool:
        await asyncio.sleep(0)
        return header == "ok"

    async with TestClient(app) as client:
        assert (await http(client, "GET", "/lexicons.attempt", ("Cookie", "Token=ok")))[0] == 200
        assert (await http(client, "GET", "/lexicons.attempt", ("Cookie", "Token=no")))[0] == 403


async def test_probes_count_against_the_handshake_limits() -> None:
    app = token_app(connection_rate="2/h")
    async with TestClient(app) as client:
        offer = ("Lexicons-Protocol", GOOD)
        assert (await http(client, "GET", "/lexicons.attempt", offer))[0] == 200
        assert (await http(client, "GET", "/lexicons.attempt", offer))[0] == 200
        assert (await http(client, "GET", "/lexicons.attempt", offer))[0] == 429
        with pytest.raises(HandshakeFailed) as refused:
            await client.connect(headers={"Token": "ok"})
        assert refused.value.status == 429


async def test_pages_of_admitted_origins_may_read_the_answer() -> None:
    app = token_app(origins=["https://app.example"])
    async with TestClient(app) as client:
        page = ("Origin", "https://app.example")
        status, headers, _ = await http(
            client, "GET", "/lexicons.attempt", page, ("Lexicons-Protocol", GOOD)
        )
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert headers["Access-Control-Allow-Credentials"] == "true"
        status, headers, _ = await http(client, "OPTIONS", "/lexicons.attempt", page)
        assert status == 200
        assert headers["Access-Control-Allow-Headers"] == "Lexicons-Protocol"
        # Another site learns nothing it could not from a handshake: refused, unreadable.
        other = ("Origin", "https://evil.example")
        status, headers, body = await http(
            client, "GET", "/lexicons.attempt", other, ("Lexicons-Protocol", GOOD)
        )
        assert (status, body) == (403, b"origin not allowed\n")
        assert "Access-Control-Allow-Origin" not in headers
        assert (await http(client, "OPTIONS", "/lexicons.attempt", other))[0] == 403
        doubled = await http(client, "OPTIONS", "/lexicons.attempt", page, page)
        assert doubled[0] == 403


_token = st.text(st.sampled_from("abcXYZ-"), min_size=1, max_size=8)


@given(
    st.lists(st.tuples(_token, st.text(st.characters(min_codepoint=32, max_codepoint=126)))),
    st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126))),
)
def test_the_probe_stands_for_the_handshake_it_copied(
    others: list[tuple[str, str]], offers: list[str]
) -> None:
    fields = [*others, *(("Lexicons-Protocol", offer) for offer in offers)]
    fields.append(("Sec-WebSocket-Protocol", "lexicons.Token.forged"))
    handshake = attempt_handshake(Request("/lexicons.attempt?q=1", Headers(fields)))
    assert handshake.path == "/lexicons.attempt?q=1"
    assert handshake.headers.get_all("Sec-WebSocket-Protocol") == offers
    assert handshake.headers.get_all("Lexicons-Protocol") == []
    kept = [(n, v) for n, v in handshake.headers.raw_items() if n != "Sec-WebSocket-Protocol"]
    replaced = ("lexicons-protocol", "sec-websocket-protocol")
    assert kept == [(n, v) for n, v in others if n.lower() not in replaced]
