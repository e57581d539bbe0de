"""permessage-deflate without sockets: frames lexicons compresses itself decode with
websockets' own client-side extension, and a session negotiates the parameters."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_network_session import Port, RecordingApp
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.streams import StreamReader
from websockets.uri import parse_uri

from lexicons.broadcasts import Broadcast
from lexicons.network.deflate import MIN_SIZE, compress, negotiated_bits, offer
from lexicons.network.frames import flavour, framer
from lexicons.network.session import Limits, Session

RSV1 = 0x40


def parse(data: bytes, extensions: list[Any]) -> list[Frame]:
    """The frames in ``data``, as a websockets client with ``extensions`` reads them."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser: Generator[Any, None, Frame] = Frame.parse(
            reader.read_exact, mask=False, max_size=None, extensions=extensions
        )
        try:
            while True:
                next(parser)
        except StopIteration as done:
            frames.append(done.value)
    return frames


def client_extension(bits: int) -> PerMessageDeflate:
    """A client's side of a connection whose server compresses with ``bits``, no context."""
    return PerMessageDeflate(True, False, bits, 15)


@given(st.binary(max_size=3000), st.integers(9, 15), st.booleans())
def test_a_frame_built_here_decodes_with_websockets_client_extension(
    data: bytes, bits: int, binary: bool
) -> None:
    frame = framer(flavour(binary, bits))(data)
    assert bool(frame[0] & RSV1) == (len(data) >= MIN_SIZE)
    [parsed] = parse(frame, [client_extension(bits)])
    assert parsed.data == data and parsed.fin
    assert parsed.opcode is (Opcode.BINARY if binary else Opcode.TEXT)


def test_frames_decode_one_after_another_with_one_client_decoder() -> None:
    messages = [b'{"n": %d, "text": "%s"}' % (n, b"x" * n) for n in range(0, 400, 37)]
    frame = framer(flavour(False, 12))
    extension = client_extension(12)
    assert [f.data for f in parse(b"".join(map(frame, messages)), [extension])] == messages


def test_compression_makes_repetitive_messages_smaller() -> None:
    data = b'{"position": {"x": 1.0, "y": 2.0}}' * 40
    assert len(compress(data, 15)) < len(data) // 4


def test_a_broadcast_is_compressed_once_per_window_size() -> None:
    broadcast = Broadcast(b'{"tick": "' + b"abc" * 100 + b'"}')
    first = broadcast[flavour(False, 15)]
    assert broadcast[flavour(False, 15)] is first
    assert first[0] & RSV1
    assert set(broadcast) == {flavour(False, 15)}


def test_short_messages_go_uncompressed() -> None:
    assert framer(flavour(False, 15))(b"{}") == b"\x81\x02{}"


# negotiation by a session


def session_with(client_factory: ClientPerMessageDeflateFactory | None, compression: bool) -> Any:
    app = RecordingApp()
    port = Port()
    extensions = [offer()] if compression else None
    session = Session(
        app, Limits(max_size=4096, max_buffer=8192), port, port.write, extensions=extensions
    )
    client = ClientProtocol(
        parse_uri("ws://127.0.0.1/"),
        extensions=[client_factory] if client_factory else None,
        max_size=None,
    )
    client.send_request(client.connect())
    session.receive_data(b"".join(client.data_to_send()))
    client.receive_data(b"".join(port.written))
    assert client.state is State.OPEN
    client.events_received()  # the handshake's response
    del port.written[:]
    return session, client, port, app


@pytest.mark.parametrize(
    ("factory", "compression", "bits"),
    [
        (ClientPerMessageDeflateFactory(), True, 15),
        (ClientPerMessageDeflateFactory(server_max_window_bits=10), True, 10),
        (ClientPerMessageDeflateFactory(server_max_window_bits=8), True, 0),
        (None, True, 0),
        (ClientPerMessageDeflateFactory(), False, 0),
    ],
)
def test_the_session_negotiates_no_context_takeover_and_its_flavour(
    factory: ClientPerMessageDeflateFactory | None, compression: bool, bits: int
) -> None:
    session, client, port, app = session_with(factory, compression)
    assert session.flavour == flavour(False, bits)
    assert negotiated_bits(session.proto.extensions) == bits
    if bits:
        assert session.proto.extensions[0].local_no_context_takeover
    long = "a" * 500
    client.send_text(f"{long},{long}".encode())  # compressed when negotiated
    session.receive_data(b"".join(client.data_to_send()))
    assert app.dispatched == [long, long]
    assert [bool(chunk[0] & RSV1) for chunk in port.written] == [bool(bits), bool(bits)]
    client.receive_data(b"".join(port.written))
    assert [event.data for event in client.events_received()] == [f"re:{long}".encode()] * 2


def test_one_broadcast_frame_serves_every_session_of_its_flavour() -> None:
    sessions = [session_with(ClientPerMessageDeflateFactory(), True) for _ in range(3)]
    broadcast = Broadcast(b'{"news": "' + b"n" * 300 + b'"}')
    for session, _, _, _ in sessions:
        assert session.writer is not None
        session.writer(broadcast[session.flavour])
    assert len(broadcast) == 1
    for _, client, port, _ in sessions:
        client.receive_data(b"".join(port.written))
        [event] = client.events_received()
        assert event.data == broadcast.message
