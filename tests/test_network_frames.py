"""Server frames built by hand, checked against websockets' own parser."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from lexicons.network.frames import binary_frame, text_frame


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("incomplete frame")


def test_text_frame_is_an_unmasked_final_text_frame() -> None:
    assert text_frame(b"hi") == b"\x81\x02hi"
    long = text_frame(b"x" * 300)
    assert long[:4] == b"\x81\x7e\x01\x2c" and len(long) == 304


@given(st.binary(max_size=70_000), st.booleans())
def test_every_length_parses_back_to_the_same_message(data: bytes, text: bool) -> None:
    frame = parse(text_frame(data) if text else binary_frame(data))
    assert frame.fin
    assert frame.opcode is (Opcode.TEXT if text else Opcode.BINARY)
    assert frame.data == data


def test_lengths_at_the_header_boundaries() -> None:
    for length in (0, 125, 126, 65535, 65536):
        assert parse(binary_frame(b"b" * length)).data == b"b" * length
