"""The test client itself: async and blocking forms, credentials, HTTP, assertions."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from lexicons import (
    ConfigurationError,
    HandshakeRejected,
    Model,
    Response,
    Server,
    SignalError,
)
from lexicons.headers import subprotocol_credential
from lexicons.testing import HandshakeFailed, TestClient


@pytest.fixture
def app(tmp_path: Path) -> Server:
    (tmp_path / "index.html").write_text("<h1>hi</h1>")
    app = Server(static=str(tmp_path), data=str(tmp_path))
    app.channel("Room")
    app.state["stopped"] = False

    @app.header
    def Token(ws, header: str) -> bool:
        ws.auth = header
        return header == "s3cret"

    @app.on_connect
    def welcome(ws, sv):
        sv.channels["Room"].subscribe(ws.pk)
        ws.send({"welcome": {"thread": threading.current_thread().name}})

    @app.on_shutdown
    def stopped(sv):
        sv.state["stopped"] = True

    @app.signal
    def echo(text: str):
        return {"text": text}

    @app.signal
    def say(ws, text: str):
        return Response({"text": text}, ["Room"])

    @app.signal
    def refuse():
        raise SignalError("not_allowed", "no")

    @app.signal
    def bye(ws):
        ws.close(4000, "bye")

    return app


async def test_call_keeps_other_messages_for_receive(app: Server) -> None:
    async with TestClient(app) as client:
        ada = await client.connect(headers={"Token": "s3cret"})
        assert await ada.call("echo", text="hi") == {"text": "hi"}
        # The welcome arrived before the reply and waited in order.
        assert "welcome" in await ada.receive()
        await ada.assert_nothing_received()


async def test_expect_skips_to_a_signal_and_keeps_the_rest(app: Server) -> None:
    async with TestClient(app) as client:
        ada = await client.connect(query={"Token": "s3cret"})
        await ada.send("say", text="one")
        await ada.send("echo", text="reply")
        assert await ada.expect("say") == {"text": "one"}
        assert "welcome" in await ada.receive()
        assert await ada.receive() == {"echo": {"text": "reply"}}


@pytest.mark.parametrize(
    "credentials",
    [
        {"headers": {"Token": "s3cret"}},
        {"query": {"Token": "s3cret"}},
        {"cookies": {"Token": "s3cret"}},
        {"subprotocols": ["lexicons", subprotocol_credential("Token", "s3cret")]},
    ],
    ids=["header", "query", "cookie", "subprotocol"],
)
async def test_every_credential_route(app: Server, credentials: dict) -> None:
    async with TestClient(app) as client:
        peer = await client.connect(**credentials)
        assert "welcome" in await peer.receive()


async def test_refusal_is_handshake_failed_with_status_and_body(app: Server) -> None:
    async with TestClient(app) as client:
        with pytest.raises(HandshakeFailed) as refused:
            await client.connect(headers={"Token": "wrong"})
    assert isinstance(refused.value, HandshakeRejected)
    assert refused.value.status == 403
    assert "refused by gate" in refused.value.body


async def test_error_frames_raise_and_silence_is_checked(app: Server) -> None:
    async with TestClient(app) as client:
        ada = await client.connect(headers={"Token": "s3cret"})
        await ada.expect("welcome")
        with pytest.raises(SignalError) as refused:
            await ada.call("refuse")
        assert refused.value.code == "not_allowed"
        await ada.send("echo", text="unexpected")
        with pytest.raises(AssertionError, match="unexpected"):
            await ada.assert_nothing_received()


async def test_receive_fails_the_test_after_its_timeout(app: Server) -> None:
    async with TestClient(app) as client:
        ada = await client.connect(headers={"Token": "s3cret"})
        await ada.expect("welcome")
        with pytest.raises(AssertionError, match="no message within"):
            await ada.receive(timeout=0.05)


async def test_closed_reports_the_servers_close(app: Server) -> None:
    async with TestClient(app) as client:
        ada = await client.connect(headers={"Token": "s3cret"})
        await ada.send("bye")
        assert await ada.closed() == (4000, "bye")


async def test_get_serves_health_and_static_files(app: Server) -> None:
    async with TestClient(app) as client:
        health = await client.get("/healthz")
        page = await client.get("/")
        missing = await client.get("/missing.js")
    assert (health.status, health.text) == (200, "ok\n")
    assert page.status == 200 and page.text == "<h1>hi</h1>"
    assert page.headers["Content-Type"].startswith("text/html")
    assert missing.status == 404


async def test_settings_override_per_run(app: Server, tmp_path: Path) -> None:
    async with TestClient(app, durable=True, data=str(tmp_path / "run")) as client:
        assert client.running is not None and client.running.settings.durable
    assert (tmp_path / "run" / "lexicons.sqlite3").exists()


def test_blocking_form_for_synchronous_tests(app: Server) -> None:
    with TestClient(app) as client:
        ada = client.connect(headers={"Token": "s3cret"})
        bob = client.connect(cookies={"Token": "s3cret"})
        welcome = ada.expect("welcome")
        # The server runs in the client's thread, never the test's.
        assert welcome["thread"] == "lexicons-testclient"
        assert ada.call("echo", text="hi") == {"text": "hi"}
        ada.send("say", text="to all")
        assert bob.expect("say") == {"text": "to all"}
        assert "welcome" in bob.receive()
        bob.assert_nothing_received()
        assert client.get("/healthz").status == 200
        with pytest.raises(HandshakeFailed):
            client.connect()
        ada.send_raw(json.dumps({"bye": {}}))
        assert ada.closed() == (4000, "bye")
    assert app.state["stopped"] and app.running is None


def test_blocking_form_raises_start_up_errors(app: Server) -> None:
    with pytest.raises(ConfigurationError, match="static"):
        with TestClient(app, static="/no/such/dir"):
            pass
    assert app.running is None


def notes_app() -> Server:
    """An app with a durable-able model and a signal that stores one row."""
    app = Server()  # data "./", as an app is written

    @app.model
    class Note(Model):
        text: str

    @app.signal
    def write(db, text: str) -> int:
        db.create(Note, text=text)
        return len(db.query(Note))

    return app


@pytest.mark.parametrize("blocking", [False, True], ids=["async with", "with"])
async def test_data_goes_to_a_temporary_directory_removed_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blocking: bool
) -> None:
    """A test run never writes the working directory (where a dev server keeps its data),
    and runs the same the second time."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEXICONS_DATA", str(tmp_path))  # not even when the shell says so
    for _ in range(2):
        app = notes_app()
        if blocking:
            with TestClient(app, durable=True) as client:
                data = Path(client.client.running.settings.data)  # type: ignore[union-attr]
                assert client.connect().call("write", text="hi") == 1
                assert (data / "lexicons.sqlite3").is_file()
        else:
            async with TestClient(app, durable=True) as test_client:
                data = Path(test_client.running.settings.data)  # type: ignore[union-attr]
                peer = await test_client.connect()
                assert await peer.call("write", text="hi") == 1
                assert (data / "lexicons.sqlite3").is_file()
        assert not data.exists()
    assert list(tmp_path.iterdir()) == []


async def test_a_given_data_directory_is_used_and_kept(tmp_path: Path) -> None:
    for count in (1, 2):
        async with TestClient(notes_app(), durable=True, data=str(tmp_path)) as client:
            peer = await client.connect()
            assert await peer.call("write", text="hi") == count
    assert (tmp_path / "lexicons.sqlite3").is_file()


async def test_the_temporary_directory_is_removed_when_the_start_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    app = notes_app()

    @app.on_start
    def fail() -> None:
        raise RuntimeError("cannot start")

    with pytest.raises(RuntimeError, match="cannot start"):
        async with TestClient(app):
            pass
    assert list(tmp_path.iterdir()) == []
