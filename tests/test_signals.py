"""Signals as the original wrote them (response, send, tuples), and Model payloads."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lexicons import Channel, Database, Model, Response, Server, Signal, SignalError
from lexicons.signals import SignalRegistry, as_response
from lexicons.testing import TestClient


class Public(Channel):
    pass


def on_connect(ws: Any = None, sv: Any = None, db: Any = None) -> None:
    sv.channels["Public"].subscribe(ws.pk)


class GetData(Signal):
    """The original README's quick start, unchanged."""

    def execute(self, ws: Any = None, **kwargs: Any) -> Any:
        return self.response("Hello World!", ["Public"])


class Tupled(Signal):
    def execute(self, ws: Any = None, text: str = "", **kwargs: Any) -> Any:
        return {"text": text}, ["Public"]


class AsyncTupled(Signal):
    async def execute(self, ws: Any = None, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return "later", "Public"


class Whisper(Signal):
    def execute(self, ws: Any = None, text: str = "", **kwargs: Any) -> Any:
        self.send(ws, {"Whisper": text})


class Pair(Signal):
    def execute(self, **kwargs: Any) -> Any:
        return (1, 2)  # not (payload, channels): a reply like any other value


async def test_the_original_quick_start_runs_unchanged() -> None:
    app = Server(Public, GetData, on_connect=on_connect)
    async with TestClient(app) as client:
        alice, bob = await client.connect(), await client.connect()
        await alice.send("GetData")
        assert await alice.receive() == {"GetData": "Hello World!"}
        assert await bob.receive() == {"GetData": "Hello World!"}


async def test_a_payload_channels_tuple_from_execute_broadcasts() -> None:
    app = Server(Public, Tupled, AsyncTupled, Pair, on_connect=on_connect)
    async with TestClient(app) as client:
        alice, bob = await client.connect(), await client.connect()
        await alice.send("Tupled", text="hi")
        assert await bob.receive() == {"Tupled": {"text": "hi"}}
        assert await alice.receive() == {"Tupled": {"text": "hi"}}
        await bob.send("AsyncTupled")
        assert await alice.receive() == {"AsyncTupled": "later"}
        assert await bob.receive() == {"AsyncTupled": "later"}
        assert await alice.call("Pair") == [1, 2]
        await bob.assert_nothing_received()


async def test_signal_send_reaches_only_the_connection_given() -> None:
    app = Server(Public, Whisper, on_connect=on_connect)
    async with TestClient(app) as client:
        alice, bob = await client.connect(), await client.connect()
        await alice.send("Whisper", text="psst")
        assert await alice.receive() == {"Whisper": "psst"}
        await bob.assert_nothing_received()


def test_a_function_returning_a_tuple_still_replies_with_it() -> None:
    """Only class-style execute methods had the original's tuple convention."""

    def pair() -> Any:
        return "payload", ["Public"]

    registry = SignalRegistry()
    registry.add(pair)
    registry.add(Tupled)
    assert registry["pair"].call({}, None, None, None) == ("payload", ["Public"])
    result = registry["Tupled"].call({"text": "x"}, None, None, None)
    assert isinstance(result, Response) and result.channels == ["Public"]


@pytest.mark.parametrize(
    ("result", "channels"),
    [
        (("p", ["A", "B"]), ["A", "B"]),
        (("p", ("A",)), ["A"]),
        (("p", "A"), ["A"]),
        (("p", []), []),
        (("p", {"A"}), ["A"]),
    ],
)
def test_as_response_reads_the_original_tuple(result: Any, channels: list[str]) -> None:
    response = as_response(result)
    assert isinstance(response, Response)
    assert (response.payload, response.channels) == ("p", channels)


@pytest.mark.parametrize("result", [(1, 2), ("p", [1]), ("p", ["A"], 3), ["p", ["A"]], None, "x"])
def test_as_response_leaves_other_results_alone(result: Any) -> None:
    assert as_response(result) is result


def test_signal_response_is_a_lexicons_response() -> None:
    response = GetData().response({"a": 1}, "Public")
    assert isinstance(response, Response)
    assert (response.payload, response.channels) == ({"a": 1}, ["Public"])


# --- payloads decoded into Model rows -------------------------------------------------------


class Note(Model):
    text: str
    stars: int = 0


class Draft(Model, client_pk=True):
    text: str = ""


def typed_app() -> Server:
    app = Server(Note, Draft)

    @app.signal
    def post(db: Database, note: Note) -> Any:
        stored = db.create(note)
        return {"pk": stored.pk, "text": stored.text, "stored": db.get(Note, note.pk) == note}

    @app.signal
    def save(db: Database, draft: Draft) -> Any:
        return db.create(draft).pk

    return app


async def test_a_model_parameter_receives_a_row_the_server_keys_and_stores() -> None:
    app = typed_app()
    async with TestClient(app) as client:
        peer = await client.connect()
        first = await peer.call("post", text="hi")
        second = await peer.call("post", text="hi", stars=2)
        assert first["text"] == "hi" and first["stored"] and second["stored"]
        assert first["pk"] != second["pk"]
        assert [n.stars for n in app.db.query(Note)] == [0, 2]
        with pytest.raises(SignalError) as error:
            await peer.call("post", text="hi", pk="chosen-by-client")
        assert error.value.code == "invalid_payload" and "`pk`" in error.value.message
        with pytest.raises(SignalError, match=r"\$\.stars") as error:
            await peer.call("post", text="hi", stars="many")
        assert error.value.code == "invalid_payload"
        assert len(app.db.query(Note)) == 2


async def test_client_pk_models_take_the_clients_pk_once() -> None:
    app = typed_app()
    async with TestClient(app, expose_errors=True) as client:  # to read why it failed
        peer = await client.connect()
        assert await peer.call("save", pk="offline-1", text="t") == "offline-1"
        with pytest.raises(SignalError, match="already exists") as error:
            await peer.call("save", pk="offline-1", text="again")
        assert error.value.code == "internal_error"
        assert [d.text for d in app.db.query(Draft)] == ["t"]
