"""The two wire encodings: every message shape round-trips through JSON and MessagePack,
and hostile input fails with the same error codes in both."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexicons.broadcasts import Broadcast
from lexicons.channels import broadcast_frame
from lexicons.codecs import CODECS, JSON, MSGPACK, Codec, codec_for
from lexicons.errors import InvalidFrame, InvalidJSON, SignalError
from lexicons.headers import select_subprotocol
from lexicons.network.frames import flavour

# JSON values: what both encodings carry alike (no NaN: JSON has none).
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
names = st.text(min_size=1, max_size=12).filter(lambda name: name != "ref")
refs = st.none() | st.integers(-(2**31), 2**31) | st.text(max_size=8)
codecs = st.sampled_from(CODECS)


def _decode(codec: Codec, data: bytes) -> Any:
    return msgspec.msgpack.decode(data) if codec.binary else msgspec.json.decode(data)


def _encode(codec: Codec, value: Any) -> bytes:
    return msgspec.msgpack.encode(value) if codec.binary else msgspec.json.encode(value)


def _request(name: str, payload: Any, ref: Any) -> dict[str, Any]:
    body = {name: payload}
    if ref is not None:
        body["ref"] = ref
    return body


@given(codecs, names, values, refs)
def test_a_request_decodes_to_its_name_payload_and_ref(
    codec: Codec, name: str, payload: Any, ref: Any
) -> None:
    [request] = codec.decode_frame(_encode(codec, _request(name, payload, ref)))
    assert request.name == name
    assert request.binary is codec.binary
    assert _decode(codec, request.payload) == payload
    assert (None if request.ref is None else _decode(codec, request.ref)) == ref


@given(codecs, st.lists(st.tuples(names, values, refs), min_size=1, max_size=5))
def test_a_batch_decodes_in_order(codec: Codec, items: list[tuple[str, Any, Any]]) -> None:
    frame = _encode(codec, [_request(*item) for item in items])
    requests = codec.decode_frame(frame)
    assert [(r.name, _decode(codec, r.payload)) for r in requests] == [
        (name, payload) for name, payload, _ in items
    ]


@given(codecs, names, values, refs)
def test_a_reply_carries_the_requests_ref_in_its_encoding(
    codec: Codec, name: str, value: Any, ref: Any
) -> None:
    [request] = codec.decode_frame(_encode(codec, _request(name, {}, ref)))
    reply = _decode(codec, codec.encode_reply(name, value, request.ref))
    assert reply == _request(name, value, ref)


@given(codecs, st.none() | names, st.text(), refs)
def test_an_error_frame_has_the_same_shape_in_both(
    codec: Codec, name: str | None, message: str, ref: Any
) -> None:
    [request] = codec.decode_frame(_encode(codec, _request("x", {}, ref)))
    error = SignalError("invalid_payload", message)
    decoded = _decode(codec, codec.encode_errors(name, error, request.ref))
    assert decoded["Errors"] == [{"signal": name, "code": "invalid_payload", "message": message}]
    assert decoded.get("ref") == ref


@given(values)
def test_a_json_document_reencodes_to_the_same_structure(value: Any) -> None:
    data = msgspec.json.encode(value)
    assert JSON.from_json(data) is data
    assert msgspec.msgpack.decode(MSGPACK.from_json(data)) == msgspec.json.decode(data)
    assert msgspec.msgpack.decode(MSGPACK.encode(MSGPACK.embed(data))) == value


@given(
    names,
    st.dictionaries(st.text(max_size=8), values, max_size=3),
    st.text(min_size=1, max_size=20),
    st.integers(0, 2**40),
)
def test_a_history_broadcast_carries_channel_and_offset_in_both(
    name: str, payload: dict[str, Any], channel: str, offset: int
) -> None:
    broadcast = broadcast_frame(msgspec.json.encode({name: payload}), channel, offset)
    expected = {name: payload, "channel": channel, "offset": offset}
    for codec in CODECS:
        frame = broadcast[flavour(codec.binary, 0)]
        assert frame[0] == (0x82 if codec.binary else 0x81)
        assert _decode(codec, _payload(frame)) == expected


def _payload(frame: bytes) -> bytes:
    length = frame[1] & 0x7F
    return frame[2 if length < 126 else 4 if length == 126 else 10 :]


def test_a_broadcast_builds_each_flavour_once() -> None:
    broadcast = Broadcast(b'{"a":1}')
    first = broadcast[1]
    assert broadcast[1] is first
    assert set(broadcast) == {1}  # nobody asked for the JSON frame: it was not built


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize(
    "value",
    [1, "text", None, [1, 2], [{"a": {}}, 3], {}, {"a": {}, "b": {}}, {"ref": 1}],
)
def test_frames_that_are_not_requests_are_invalid_frames(codec: Codec, value: Any) -> None:
    with pytest.raises(InvalidFrame) as caught:
        codec.decode_frame(_encode(codec, value))
    assert caught.value.code == "invalid_frame"


@pytest.mark.parametrize(
    ("codec", "data"),
    [(JSON, data) for data in (b"", b"{", b'{"a":', b"\xff", b'{"a":1}x')]
    + [(MSGPACK, data) for data in (b"", b"\xc1", b"\x81\xa1a", b"\xdf\xff\xff\xff\xff")],
)
def test_malformed_data_is_invalid_json_in_both(codec: Codec, data: bytes) -> None:
    with pytest.raises(InvalidJSON) as caught:
        codec.decode_frame(data)
    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_deep_nesting_fails_cleanly(codec: Codec) -> None:
    frame = (
        b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        if not codec.binary
        else b"\x81\xa1x" + b"\x91" * 100_000 + b"\x01"
    )
    with pytest.raises(InvalidJSON, match="nested too deeply"):
        codec.decode_frame(frame)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_a_documented_error(data: bytes) -> None:
    for codec in CODECS:
        try:
            codec.decode_frame(data)
        except SignalError as exc:
            assert exc.code in ("invalid_json", "invalid_frame")


def test_huge_message_decodes_without_trouble() -> None:
    big = {"echo": {"text": "x" * 2**20}}
    [request] = MSGPACK.decode_frame(msgspec.msgpack.encode(big))
    assert len(msgspec.msgpack.decode(request.payload)["text"]) == 2**20


def test_the_selected_subprotocol_chooses_the_codec() -> None:
    assert select_subprotocol(["lexicons.Token.abc", "lexicons.msgpack"]) == "lexicons.msgpack"
    assert select_subprotocol(["lexicons", "lexicons.msgpack"]) == "lexicons"
    assert select_subprotocol(["lexicons.Token.abc"]) is None
    assert codec_for("lexicons.msgpack") is MSGPACK
    assert codec_for("lexicons") is JSON
    assert codec_for(None) is JSON
