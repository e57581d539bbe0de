"""The wire protocol without sockets: frames, dispatch, replies and error frames."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexicons.codecs import JSON, MSGPACK, Codec
from lexicons.errors import InvalidFrame, InvalidJSON, SignalError
from lexicons.protocol import (
    Dispatcher,
    decode_frame,
    encode_errors,
    encode_reply,
)
from lexicons.signals import Response, SignalRegistry

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


class Recorder:
    """Stands in for the network layer: collects what the dispatcher writes."""

    def __init__(self) -> None:
        self.replies: list[Any] = []
        self.broadcasts: list[tuple[list[str], Any]] = []

    def reply(self, ws: object, data: bytes) -> None:
        self.replies.append(json.loads(data))

    def publish(self, channels: list[str], data: bytes, key: str | None = None) -> None:
        self.broadcasts.append((channels, json.loads(data)))


class FakeWS:
    pk = "pk-1"


def dispatcher(
    signals: SignalRegistry, debug: bool = False, expose_errors: bool = False
) -> tuple[Dispatcher, Recorder]:
    recorder = Recorder()
    return (
        Dispatcher(
            signals,
            sv="the-server",
            db="the-db",
            debug=debug,
            expose_errors=expose_errors,
            reply=recorder.reply,
            publish=recorder.publish,
        ),
        recorder,
    )


def run(d: Dispatcher, frame: str) -> None:
    for request in decode_frame(frame):
        assert d.dispatch(request, FakeWS()) is None


# decode_frame


def test_single_object_is_one_request() -> None:
    (request,) = decode_frame(b'{"Echo": {"text": "hi"}, "ref": 3}')
    assert request.name == "Echo"
    assert bytes(request.payload) == b'{"text": "hi"}'
    assert request.ref is not None and bytes(request.ref) == b"3"


def test_list_keeps_order() -> None:
    requests = decode_frame('[{"A": {}}, {"B": {}}, {"C": null}]')
    assert [r.name for r in requests] == ["A", "B", "C"]
    assert all(r.ref is None for r in requests)


@pytest.mark.parametrize("frame", ["{", "nope", '{"a": }', ""])
def test_invalid_json(frame: str) -> None:
    with pytest.raises(InvalidJSON):
        decode_frame(frame)


@pytest.mark.parametrize("frame", ["1", '"text"', "[1, 2]", "null", "{}", '{"A": {}, "B": {}}'])
def test_invalid_frame(frame: str) -> None:
    with pytest.raises(InvalidFrame):
        decode_frame(frame)


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_input_decodes_or_raises_a_documented_error(data: str | bytes) -> None:
    try:
        requests = decode_frame(data)
    except (InvalidJSON, InvalidFrame) as exc:
        assert exc.code in ("invalid_json", "invalid_frame")
    else:
        assert requests and all(isinstance(r.name, str) for r in requests)


@given(st.text(min_size=1).filter(lambda s: s != "ref"), json_values, json_values)
def test_encode_decode_round_trip(name: str, payload: Any, ref: Any) -> None:
    (request,) = decode_frame(json.dumps({name: payload, "ref": ref}))
    assert request.name == name
    assert msgspec.json.decode(request.payload) == payload
    reply = json.loads(encode_reply(name, payload, request.ref))
    assert reply == {name: payload, "ref": ref}


def test_error_frame_shape() -> None:
    error = SignalError("not_allowed", "no")
    assert json.loads(encode_errors("Join", error, msgspec.Raw(b'"r1"'))) == {
        "Errors": [{"signal": "Join", "code": "not_allowed", "message": "no"}],
        "ref": "r1",
    }


# dispatch


def test_reply_none_and_broadcast() -> None:
    signals = SignalRegistry()
    signals.add(lambda text: {"text": text}, "Echo")
    signals.add(lambda: None, "Quiet")
    signals.add(lambda ws, text: Response({"from": ws.pk, "text": text}, "Public"), "Shout")
    d, out = dispatcher(signals)
    run(d, '[{"Echo": {"text": "a"}, "ref": 1}, {"Quiet": {}}, {"Shout": {"text": "b"}}]')
    assert out.replies == [{"Echo": {"text": "a"}, "ref": 1}]
    assert out.broadcasts == [(["Public"], {"Shout": {"from": "pk-1", "text": "b"}})]


def test_injection_by_name() -> None:
    seen = {}

    def probe(sv, db, ws, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(sv=sv, db=db, ws=ws.pk, kwargs=kwargs)

    signals = SignalRegistry()
    signals.add(probe, "Probe")
    d, _ = dispatcher(signals)
    run(d, '{"Probe": {"extra": 1}}')
    assert seen == {"sv": "the-server", "db": "the-db", "ws": "pk-1", "kwargs": {"extra": 1}}


class Move(msgspec.Struct):
    x: int
    y: int


def test_typed_errors_name_the_field_path() -> None:
    signals = SignalRegistry()
    signals.add(lambda text, count=1: text * count, "Echo")
    signals.add(lambda move: move, "Play")  # unannotated: any JSON value

    def place(move: Move) -> dict[str, int]:
        return {"x": move.x}

    signals.add(place, "Place")
    d, out = dispatcher(signals)
    run(d, '{"Place": {"x": 1, "y": "two"}, "ref": "a"}')
    run(d, '{"Place": {"x": 1}}')
    run(d, '{"Echo": {"text": "a", "bogus": 1}}')
    run(d, '{"Echo": {}}')
    run(d, '{"Place": {"x": 2, "y": 3}}')
    errors = [r["Errors"][0] for r in out.replies[:4]]
    assert {e["code"] for e in errors} == {"invalid_payload"}
    assert "$.y" in errors[0]["message"] and out.replies[0]["ref"] == "a"
    assert "`y`" in errors[1]["message"]
    assert "bogus" in errors[2]["message"]
    assert "`text`" in errors[3]["message"]
    assert out.replies[4] == {"Place": {"x": 2}}


def test_unknown_signal() -> None:
    d, out = dispatcher(SignalRegistry())
    run(d, '{"Nope": {}, "ref": 9}')
    assert out.replies == [
        {
            "Errors": [
                {"signal": "Nope", "code": "unknown_signal", "message": "no signal named 'Nope'"}
            ],
            "ref": 9,
        }
    ]


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("expose_errors", [True, False])
def test_handler_crash_is_internal_error_with_detail_only_when_exposed(
    debug: bool, expose_errors: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:
        raise RuntimeError("secret detail")

    signals = SignalRegistry()
    signals.add(boom, "Boom")
    d, out = dispatcher(signals, debug=debug, expose_errors=expose_errors)
    run(d, '{"Boom": {}}')
    (error,) = out.replies[0]["Errors"]
    assert error["code"] == "internal_error"
    assert ("secret detail" in error["message"]) is expose_errors  # debug is about logs
    assert "secret detail" in caplog.text  # always logged, with its traceback
    assert "Traceback" in caplog.text


def test_signal_error_keeps_its_code() -> None:
    def refuse() -> None:
        raise SignalError("not_allowed", "only owners")

    signals = SignalRegistry()
    signals.add(refuse, "Refuse")
    d, out = dispatcher(signals)
    run(d, '{"Refuse": {}}')
    assert out.replies[0]["Errors"][0] == {
        "signal": "Refuse",
        "code": "not_allowed",
        "message": "only owners",
    }


def test_unencodable_result_is_an_error_not_a_crash() -> None:
    signals = SignalRegistry()
    signals.add(lambda: object(), "Odd")
    d, out = dispatcher(signals)
    run(d, '{"Odd": {}}')
    assert out.replies[0]["Errors"][0]["code"] == "internal_error"


async def test_async_handler_returns_its_coroutine() -> None:
    async def later(x: int) -> int:
        return x + 1

    signals = SignalRegistry()
    signals.add(later, "Later")
    d, out = dispatcher(signals)
    (request,) = decode_frame('{"Later": {"x": 1}, "ref": 2}')
    pending = d.dispatch(request, FakeWS())
    assert out.replies == []
    assert pending is not None
    await pending  # the coroutine awaits the handler and writes its reply
    assert out.replies == [{"Later": 2, "ref": 2}]


def test_protocol_layer_does_no_io() -> None:
    """The protocol modules never import asyncio or sockets (see DESIGN.md)."""
    sans_io = [
        "protocol.py",
        "handlers.py",
        "signals.py",
        "brokers/base.py",
        "errors.py",
        "durable.py",
        "network/session.py",
        "network/http.py",
        "network/frames.py",
        "channels.py",
        "subscriptions.py",
        "history.py",
        "patterns.py",
        "policies.py",
        "ratelimit.py",
    ]
    root = Path(__file__).parent.parent / "src" / "lexicons"
    for name in sans_io:
        tree = ast.parse((root / name).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 0
        }
        assert not imported & {"asyncio", "socket", "ssl", "selectors"}, name


# the same requests in MessagePack


class Wire:
    """Collects raw replies, decoded in the encoding each arrived in."""

    def __init__(self) -> None:
        self.replies: list[bytes] = []
        self.broadcasts: list[bytes] = []


def _dispatch_in(codec: Codec, value: Any) -> tuple[list[Any], list[Any]]:
    signals = SignalRegistry()
    signals.add(lambda text: {"text": text}, "Echo")
    signals.add(lambda x, y: Move(x + 1, y + 1), "Step")
    signals.add(lambda text: Response({"text": text}, "Public"), "Shout")
    wire = Wire()
    d = Dispatcher(
        signals,
        sv=None,
        db=None,
        debug=False,
        reply=lambda ws, data: wire.replies.append(data),
        publish=lambda channels, data, key=None: wire.broadcasts.append(data),
    )
    encoded = msgspec.msgpack.encode(value) if codec.binary else msgspec.json.encode(value)
    try:
        requests = codec.decode_frame(encoded)
    except SignalError as exc:
        return [exc.code], []
    for request in requests:
        d.dispatch(request, FakeWS())
    decode = msgspec.msgpack.decode if codec.binary else msgspec.json.decode
    # Broadcasts are JSON whatever the request's encoding: the channels re-encode them.
    return [decode(r) for r in wire.replies], [msgspec.json.decode(b) for b in wire.broadcasts]


request_values = st.fixed_dictionaries(
    {},
    optional={
        "Echo": st.fixed_dictionaries({}, optional={"text": json_values}),
        "Step": st.fixed_dictionaries({}, optional={"x": st.integers(-9, 9), "y": json_values}),
        "Shout": st.fixed_dictionaries({"text": st.text()}),
        "Nope": json_values,
        "ref": json_values,
    },
)


@given(st.one_of(request_values, st.lists(request_values, max_size=3), json_values))
def test_a_request_gets_the_same_answer_in_msgpack_as_in_json(value: Any) -> None:
    assert _dispatch_in(MSGPACK, value) == _dispatch_in(JSON, value)
