"""The wire encodings: JSON in text frames, MessagePack in binary frames.

A connection speaks JSON unless it negotiated the :data:`MSGPACK` subprotocol; then the
same structures (requests, batches, ``ref``, replies, errors, ``$`` messages) travel as
MessagePack. A :class:`Codec` turns one encoding's frames into :class:`Request` objects
and encodes what goes back; both codecs raise the same errors, so a client learns the
same codes whichever it speaks::

    JSON.decode_frame(b'{"echo": {"text": "hi"}, "ref": 1}')
    MSGPACK.encode_reply("echo", {"text": "hi"}, None)

Broadcasts are encoded once as JSON (that is what crosses the broker); :meth:`Codec.
from_json` re-encodes such a document, once per broadcast, for the other encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from .errors import InvalidFrame, InvalidJSON, SignalError

__all__ = ["CODECS", "JSON", "MSGPACK", "MSGPACK_SUBPROTOCOL", "Codec", "Request", "codec_for"]

#: The subprotocol a client offers to speak MessagePack.
MSGPACK_SUBPROTOCOL = "lexicons.msgpack"

_FRAME_TYPE = dict[str, msgspec.Raw] | list[dict[str, msgspec.Raw]]
_NOT_A_FRAME = 'a frame must be an object {"Signal": {...}} or a list of such objects'
_json_decode = msgspec.json.decode


class Request(msgspec.Struct, gc=False):
    """One ``{"Name": payload}`` object of a frame, with its payload still encoded.

    ``binary`` says the payload (and ``ref``) are MessagePack; the reply uses the same
    encoding as the request.
    """

    # A Struct rather than a class with __slots__: built in C, 1,200 fewer instructions
    # (about 2% of an echo) per request.
    name: str
    payload: msgspec.Raw
    ref: msgspec.Raw | None
    binary: bool = False


class Codec:
    """One wire encoding: how frames decode into requests and how messages encode."""

    __slots__ = ("name", "binary", "encode", "_frame", "_malformed")

    def __init__(
        self,
        name: str,
        binary: bool,
        decoder: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any],
        encode: Callable[[Any], bytes],
    ) -> None:
        self.name = name
        #: Messages travel in binary frames (else text frames).
        self.binary = binary
        #: Encodes any value msgspec understands (Structs, datetimes, sets...).
        self.encode = encode
        self._frame: Any = decoder
        self._malformed = "MessagePack" if binary else "JSON"

    def decode_frame(self, data: bytes | bytearray | memoryview) -> list[Request]:
        """Split a frame into requests, in order; the payloads are validated later.

        Raises :class:`InvalidJSON` when the data is not in this encoding (the code is
        ``invalid_json`` for either), and :class:`InvalidFrame` when it is not an object
        (or list of objects) naming exactly one signal each.
        """
        try:
            decoded = self._frame.decode(data)
        except msgspec.ValidationError:
            raise InvalidFrame(_NOT_A_FRAME) from None
        except msgspec.DecodeError as exc:
            raise InvalidJSON(str(exc)) from None
        except RecursionError:
            raise InvalidJSON(f"{self._malformed} nested too deeply") from None
        binary = self.binary
        if isinstance(decoded, dict):
            return [_request(decoded, binary)]
        return [_request(item, binary) for item in decoded]

    def encode_reply(self, name: str, value: Any, ref: msgspec.Raw | None) -> bytes:
        """``{"Name": value}``, with ``"ref"`` when the request carried one."""
        if ref is None:
            return self.encode({name: value})
        return self.encode({name: value, "ref": ref})

    def encode_errors(
        self, name: str | None, error: SignalError, ref: msgspec.Raw | None = None
    ) -> bytes:
        """The error frame for one failed request (``name`` is ``None`` for a bad frame)."""
        body: dict[str, Any] = {
            "Errors": [{"signal": name, "code": error.code, "message": error.message}]
        }
        if ref is not None:
            body["ref"] = ref
        return self.encode(body)

    def from_json(self, data: bytes) -> bytes:
        """A JSON document (a broadcast, JSON a handler encoded itself) in this encoding.

        Raises :class:`msgspec.DecodeError` when ``data`` is not JSON.
        """
        if not self.binary:
            return data
        return self.encode(_json_decode(data))

    def embed(self, data: bytes) -> Any:
        """A JSON document as a value to place inside a message this codec encodes."""
        return _json_decode(data) if self.binary else msgspec.Raw(data)

    def __repr__(self) -> str:
        return f"<Codec {self.name}>"


def _request(obj: dict[str, msgspec.Raw], binary: bool) -> Request:
    ref = obj.pop("ref", None)
    if len(obj) != 1:
        names = ", ".join(map(repr, obj)) or "none"
        raise InvalidFrame(
            f"an object must name exactly one signal (found {names}); send a list for several"
        )
    name, payload = obj.popitem()
    return Request(name, payload, ref, binary)


JSON = Codec("json", False, msgspec.json.Decoder(_FRAME_TYPE), msgspec.json.Encoder().encode)
MSGPACK = Codec(
    "msgpack", True, msgspec.msgpack.Decoder(_FRAME_TYPE), msgspec.msgpack.Encoder().encode
)
#: The codecs by ``binary``: ``CODECS[request.binary]`` answers a request in its encoding.
CODECS = (JSON, MSGPACK)


def codec_for(subprotocol: str | None) -> Codec:
    """The codec of a connection that selected ``subprotocol`` at its handshake."""
    return MSGPACK if subprotocol == MSGPACK_SUBPROTOCOL else JSON
